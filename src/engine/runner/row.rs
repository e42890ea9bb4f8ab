//! One row's way through a run, in named steps:
//! 1. [`settle_earlier_doubt`]: a row left in doubt by an earlier run is
//!    looked up (where the provider can), held, or taken up again;
//! 2. [`template_values`]: its stored template data, refused loudly when
//!    it does not decode (a message never leaves with empty parameters);
//! 3. [`gate_before_token`]: deadline and frequency cap, before a token is
//!    bought that the row would not use;
//! 4. a usable token ([`super::tokens::ensure_token`]);
//! 5. attempts: [`before_attempt`] (pace, stop, window, doubt lookup),
//!    [`claim`] (the row durably `in_flight` with its quota unit), the send,
//!    then [`after_success`] or [`after_error`].

use std::borrow::Cow;
use std::sync::atomic::Ordering;

use super::failure::{
    back_to_pending, end_probation, hold, look_up_doubt, settle_failure, CallFailure, Lookup,
};
use super::tokens::{check_token, ensure_token, save_bought, token_stored, Bought};
use super::{Ctx, InDoubtPolicy};
use crate::engine::policy;
use crate::engine::stop::StopReason;
use crate::model::clock;
use crate::model::phone::mask;
use crate::model::row_state::RowState;
use crate::provider::{
    ErrorClass, JourneyToken, ProviderError, SendOutcome, SendRequest, TokenCheck,
};
use crate::store::{
    ClaimGate, QuotaKey, Setback, StoreError, StoreErrorKind, WorkRow, WriteOp, WriteResult,
};

/// Error code stored on a row whose stored data cannot be sent.
pub(super) const CORRUPT_ROW: &str = "corrupt_row";

pub(super) async fn process(ctx: &Ctx, row: WorkRow) {
    if ctx.stop.is_set() {
        return;
    }
    if let Err(e) = process_inner(ctx, &row).await {
        ctx.stop
            .request(StopReason::Store, format!("state database unusable: {e}"));
    }
}

/// The attempts of one row in this run.
pub(super) struct Attempts<'a> {
    pub(super) number: u32,
    /// An attempt (of this run or an earlier one) may have been accepted.
    in_doubt: bool,
    /// The token was already replaced once this run.
    refreshed: bool,
    token: Option<JourneyToken>,
    /// A token bought for this row and not yet stored: it is stored in the
    /// same transaction that marks the row `in_flight` (one commit instead
    /// of two), before the request leaves, with the phone's lock held.
    bought: Option<Bought<'a>>,
}

impl Attempts<'_> {
    pub(super) fn new(in_doubt: bool) -> Self {
        Attempts {
            number: 0,
            in_doubt,
            refreshed: false,
            token: None,
            bought: None,
        }
    }
}

/// What to do after an attempt.
pub(super) enum Next {
    Done,
    Retry,
}

async fn process_inner(ctx: &Ctx, row: &WorkRow) -> Result<(), StoreError> {
    let Some(in_doubt) = settle_earlier_doubt(ctx, row).await? else {
        return Ok(());
    };
    if !ctx.window_open().await {
        return Ok(());
    }
    let values = match template_values(&ctx.campaign.template_keys, &row.data_json) {
        Ok(v) => v,
        Err(why) => return fail_corrupt(ctx, row, &why),
    };
    let data: Vec<(&str, &str)> = ctx
        .campaign
        .template_keys
        .iter()
        .map(String::as_str)
        .zip(values.iter().map(|v| v.as_ref()))
        .collect();
    if ctx.campaign.past_deadline(clock::now_ms()) {
        // Left open: the end of the run expires it with the others.
        return Ok(());
    }
    if gate_before_token(ctx, row).await? {
        return Ok(());
    }
    let mut tries = Attempts::new(in_doubt);
    if ctx.uses_tokens {
        match ensure_token(ctx, row, None).await {
            Ok((t, b)) => {
                tries.token = Some(t);
                tries.bought = b;
            }
            Err(f) => return settle_failure(ctx, row, f, false, None),
        }
    }
    loop {
        tries.number += 1;
        if !before_attempt(ctx, row, &mut tries).await? {
            return Ok(());
        }
        let Some(quota_key) = claim(ctx, row, &mut tries).await? else {
            return Ok(());
        };
        // Wait for a free slot; a stop meanwhile gives the row back (its
        // request never left, so it is not in doubt).
        let Some(permit) = ctx.send_permit().await else {
            if !tries.in_doubt {
                ctx.writer.post(WriteOp::MarkPending(Setback::new(
                    row.id,
                    "stopped",
                    "stopped before the request left",
                    Some(quota_key),
                )))?;
            }
            return Ok(());
        };
        let req = SendRequest {
            oa_id: &ctx.campaign.oa_id,
            phone: &row.phone,
            template_id: &ctx.campaign.template_id,
            template_data: &data,
            tracking_id: &row.tracking_id,
            token: tries.token.as_ref(),
            campaign: &ctx.campaign.name,
        };
        ctx.counters.requests.fetch_add(1, Ordering::Relaxed);
        let result = ctx.provider.send(&req).await;
        drop(permit);
        let next = match result {
            Ok(outcome) => after_success(ctx, row, &tries, outcome, quota_key)?,
            Err(e) => after_error(ctx, row, &mut tries, e, quota_key).await?,
        };
        if let Next::Done = next {
            return Ok(());
        }
    }
}

/// Step 1. `None`: the row is settled (found by lookup, or held);
/// `Some(in_doubt)`: take it up, knowing whether an earlier attempt may
/// have landed.
pub(super) async fn settle_earlier_doubt(
    ctx: &Ctx,
    row: &WorkRow,
) -> Result<Option<bool>, StoreError> {
    let mut in_doubt = row.state == RowState::InFlight || row.state == RowState::InDoubt;
    // Where the provider can look a message up by our key, a lookup settles
    // the doubt before any policy applies.
    if in_doubt && ctx.lookup {
        match look_up_doubt(ctx, row).await? {
            Lookup::Found => return Ok(None),
            Lookup::Absent => in_doubt = false,
            Lookup::Unknown => {}
        }
    }
    if in_doubt && ctx.opts.in_doubt == InDoubtPolicy::Hold {
        if row.state == RowState::InFlight {
            hold(
                ctx,
                row,
                "in_doubt",
                "request left in an earlier run and its reply was never recorded",
            )?;
        } else {
            ctx.counters.held_in_doubt.fetch_add(1, Ordering::Relaxed);
        }
        return Ok(None);
    }
    Ok(Some(in_doubt))
}

/// Step 2. The row's template values, one per template key. Stored data
/// that does not decode, or does not match the campaign's parameters, is
/// an error: sending it would deliver a message with empty parameters.
pub(super) fn template_values<'a>(
    keys: &[String],
    data_json: &'a str,
) -> Result<Vec<Cow<'a, str>>, String> {
    // Borrowed from the stored JSON (no copy per value per row); a value
    // with an escape in it is copied. serde reads a bare `Cow` as owned,
    // hence the wrapper.
    #[derive(serde::Deserialize)]
    struct Value<'a>(#[serde(borrow)] Cow<'a, str>);
    let values: Vec<Value<'a>> = serde_json::from_str(data_json).map_err(|e| {
        format!("the row's stored template data is unreadable ({e}); nothing was sent for it")
    })?;
    let values: Vec<Cow<'a, str>> = values.into_iter().map(|v| v.0).collect();
    if values.len() != keys.len() {
        return Err(format!(
            "the row's stored template data has {} values for the campaign's {} parameters; nothing was sent for it",
            values.len(),
            keys.len()
        ));
    }
    Ok(values)
}

fn fail_corrupt(ctx: &Ctx, row: &WorkRow, why: &str) -> Result<(), StoreError> {
    tracing::error!(phone = %mask(&row.phone), line = row.line, "{why}");
    ctx.writer.post(WriteOp::MarkFailed(Setback::new(
        row.id,
        CORRUPT_ROW,
        why,
        None,
    )))?;
    ctx.counters.failed.fetch_add(1, Ordering::Relaxed);
    Ok(())
}

/// Step 3. Check the frequency cap before buying a token the row would not
/// use (the claim checks again, atomically; a row with a usable token buys
/// nothing, so the claim's check is enough). True when the row is settled.
pub(super) async fn gate_before_token(ctx: &Ctx, row: &WorkRow) -> Result<bool, StoreError> {
    let buys_token = ctx.uses_tokens && !row.token.as_ref().is_some_and(|t| ctx.usable(t));
    if !buys_token || ctx.campaign.min_interval_ms.is_none() {
        return Ok(false);
    }
    let result = ctx
        .writer
        .write(WriteOp::CheckGate {
            row_id: row.id,
            gate: ctx.campaign.claim_gate(&row.phone),
        })
        .await?;
    Ok(gate_settled(ctx, result, row))
}

/// Count a row the claim checks settled; true when the row is done with.
fn gate_settled(ctx: &Ctx, result: WriteResult, row: &WorkRow) -> bool {
    match result {
        WriteResult::Expired => {
            ctx.counters.expired.fetch_add(1, Ordering::Relaxed);
            true
        }
        WriteResult::Skipped => {
            ctx.counters.skipped.fetch_add(1, Ordering::Relaxed);
            tracing::info!(phone = %mask(&row.phone), line = row.line, "skipped: a message went to this phone within --min-interval-per-phone");
            true
        }
        _ => false,
    }
}

/// Step 5a. Pace, then check the run may still send. An attempt of this run
/// that is in doubt is looked up first (after the backoff, so the provider
/// has finished with it). False when the row is done with for this run.
async fn before_attempt<'a>(
    ctx: &'a Ctx,
    row: &WorkRow,
    tries: &mut Attempts<'a>,
) -> Result<bool, StoreError> {
    if let Some(limiter) = &ctx.limiter {
        limiter.until_ready().await;
    }
    // A retry can fall after the window closed: it waits like a new row.
    if ctx.stop.is_set() || !ctx.window_open().await {
        save_bought(ctx, row, &mut tries.bought).await?;
        return Ok(false);
    }
    if tries.in_doubt && ctx.lookup && tries.number > 1 {
        match look_up_doubt(ctx, row).await? {
            Lookup::Found => {
                save_bought(ctx, row, &mut tries.bought).await?;
                return Ok(false);
            }
            Lookup::Absent => tries.in_doubt = false,
            Lookup::Unknown if ctx.opts.in_doubt == InDoubtPolicy::Hold => {
                save_bought(ctx, row, &mut tries.bought).await?;
                hold(
                    ctx,
                    row,
                    "in_doubt",
                    "reply lost and the lookup by tracking id failed",
                )?;
                return Ok(false);
            }
            Lookup::Unknown => {}
        }
    }
    Ok(true)
}

/// Step 5b. Make the row durably `in_flight` with its quota unit (and a
/// token just bought), through the claim's atomic checks. `None` when the
/// claim settled the row or stopped the run instead.
pub(super) async fn claim<'a>(
    ctx: &'a Ctx,
    row: &WorkRow,
    tries: &mut Attempts<'a>,
) -> Result<Option<QuotaKey>, StoreError> {
    let quota_key = ctx.quota_key();
    let (save_token, bought_lock) = match tries.bought.take() {
        // The lock and the token's slot are held until the token is stored.
        Some(b) => (Some((b.key, b.token)), Some((b.lock, b.slot))),
        None => (None, None),
    };
    let claimed = ctx
        .writer
        .write(WriteOp::MarkInFlight {
            row_id: row.id,
            journey_id: tries.token.as_ref().map(|t| t.journey_id.clone()),
            quota: quota_key.clone(),
            limit: ctx.opts.daily_quota,
            gate: ClaimGate {
                lease: ctx.lease.clone(),
                ..ctx.campaign.claim_gate(&row.phone)
            },
            save_token,
        })
        .await;
    let claimed = match claimed {
        // Under a lease, a row settled by the process that took the
        // campaign over (a reply it saw late) is its business, not a
        // broken ledger: this run leaves it alone.
        Err(e) if ctx.lease.is_some() && e.kind() == StoreErrorKind::IllegalMove => {
            tracing::warn!(line = row.line, "row not claimed: {e}");
            if let Some((lock, _slot)) = bought_lock {
                token_stored(ctx, &lock.phone);
            }
            return Ok(None);
        }
        other => other?,
    };
    // Stored (whatever the claim said): other rows may use it now.
    if let Some((lock, _slot)) = bought_lock {
        token_stored(ctx, &lock.phone);
    }
    match claimed {
        WriteResult::QuotaFull => {
            ctx.stop
                .request(StopReason::Quota, policy::quota_used_up(&quota_key));
            Ok(None)
        }
        r @ (WriteResult::Expired | WriteResult::Skipped) => {
            gate_settled(ctx, r, row);
            Ok(None)
        }
        WriteResult::LeaseLost => {
            ctx.stop.request(
                StopReason::LeaseLost,
                policy::lease_lost(&ctx.campaign.name),
            );
            Ok(None)
        }
        WriteResult::Done | WriteResult::Count(_) => Ok(Some(quota_key)),
    }
}

/// Step 5c. The provider accepted the message.
pub(super) fn after_success(
    ctx: &Ctx,
    row: &WorkRow,
    tries: &Attempts<'_>,
    outcome: SendOutcome,
    quota_key: QuotaKey,
) -> Result<Next, StoreError> {
    ctx.note_success();
    end_probation(ctx)?;
    if outcome.duplicate {
        ctx.counters
            .replayed_duplicates
            .fetch_add(1, Ordering::Relaxed);
    }
    if tries.in_doubt {
        ctx.counters
            .resent_after_doubt
            .fetch_add(1, Ordering::Relaxed);
    }
    ctx.writer.post(WriteOp::MarkSent {
        row_id: row.id,
        msg_id: outcome.msg_id,
        resent_after_doubt: tries.in_doubt,
        provider_quota: outcome.quota.map(|q| (quota_key, q)),
    })?;
    ctx.counters.sent.fetch_add(1, Ordering::Relaxed);
    tracing::debug!(phone = %mask(&row.phone), line = row.line, "sent");
    Ok(Next::Done)
}

/// Step 5d. The provider refused, or the reply was lost: retry, refresh the
/// token, record the row as sent after all, or settle its failure.
pub(super) async fn after_error<'a>(
    ctx: &'a Ctx,
    row: &WorkRow,
    tries: &mut Attempts<'a>,
    e: ProviderError,
    quota_key: QuotaKey,
) -> Result<Next, StoreError> {
    tracing::debug!(phone = %mask(&row.phone), line = row.line, code = %e.code, class = ?e.class, in_doubt = e.in_doubt, "send failed: {}", e.message);
    // Whatever the previous attempt's fate, this one decides from here.
    let release = (!tries.in_doubt).then(|| quota_key.clone());
    match e.class {
        ErrorClass::Retry => retry_after_transient(ctx, row, tries, e, release).await,
        ErrorClass::AlreadySent => {
            // The provider has the message: a success like any other.
            ctx.note_success();
            end_probation(ctx)?;
            ctx.counters
                .replayed_duplicates
                .fetch_add(1, Ordering::Relaxed);
            ctx.writer.post(WriteOp::MarkSent {
                row_id: row.id,
                msg_id: None,
                resent_after_doubt: tries.in_doubt,
                provider_quota: None,
            })?;
            ctx.counters.sent.fetch_add(1, Ordering::Relaxed);
            Ok(Next::Done)
        }
        ErrorClass::RefreshToken | ErrorClass::CheckToken
            if ctx.uses_tokens && !tries.refreshed =>
        {
            refresh_token(ctx, row, tries, e, release).await
        }
        _ => {
            settle_failure(ctx, row, CallFailure::Provider(e), tries.in_doubt, release)?;
            Ok(Next::Done)
        }
    }
}

/// A transient error: the row waits (or is held) and the attempt is
/// repeated after a backoff, within the attempts budget.
async fn retry_after_transient(
    ctx: &Ctx,
    row: &WorkRow,
    tries: &mut Attempts<'_>,
    e: ProviderError,
    release: Option<QuotaKey>,
) -> Result<Next, StoreError> {
    ctx.note_transient_failure(&e);
    if e.in_doubt {
        tries.in_doubt = true;
        // With a lookup the next attempt settles it first.
        if !ctx.lookup && ctx.opts.in_doubt == InDoubtPolicy::Hold {
            hold(ctx, row, &e.code, &e.message)?;
            return Ok(Next::Done);
        }
    } else if !tries.in_doubt {
        // Refused outright: the row is back to waiting, not in doubt.
        back_to_pending(ctx, row, &e, release)?;
    }
    let Some(wait) = ctx.opts.retries().wait_after(tries.number, &e) else {
        ctx.counters.deferred.fetch_add(1, Ordering::Relaxed);
        tracing::warn!(phone = %mask(&row.phone), line = row.line, "giving up for this run after {} attempts: {e}", tries.number);
        return Ok(Next::Done);
    };
    ctx.counters.retries.fetch_add(1, Ordering::Relaxed);
    ctx.counters.retrying_now.fetch_add(1, Ordering::Relaxed);
    let woke = ctx.stop.sleep(wait).await;
    ctx.counters.retrying_now.fetch_sub(1, Ordering::Relaxed);
    Ok(if woke { Next::Retry } else { Next::Done })
}

/// The provider refused the token (or may have): check it where the code
/// is ambiguous, and buy a new one once per run.
async fn refresh_token<'a>(
    ctx: &'a Ctx,
    row: &WorkRow,
    tries: &mut Attempts<'a>,
    e: ProviderError,
    release: Option<QuotaKey>,
) -> Result<Next, StoreError> {
    ctx.note_success();
    let current = tries.token.clone();
    let bad = match e.class {
        ErrorClass::RefreshToken => true,
        _ => match current.as_ref() {
            Some(t) => match check_token(ctx, t).await {
                Ok(TokenCheck::Valid { .. }) => false,
                Ok(_) => true,
                Err(CallFailure::Stopped) if !tries.in_doubt => {
                    // The send was refused (not in doubt) and the check cut
                    // short by a stop: the row is simply open again.
                    back_to_pending(ctx, row, &e, release)?;
                    return Ok(Next::Done);
                }
                Err(f) => {
                    settle_failure(ctx, row, f, tries.in_doubt, release)?;
                    return Ok(Next::Done);
                }
            },
            None => true,
        },
    };
    if !bad {
        // The token is fine: the code is about this message.
        settle_failure(ctx, row, CallFailure::Provider(e), tries.in_doubt, release)?;
        return Ok(Next::Done);
    }
    tries.refreshed = true;
    if !tries.in_doubt {
        ctx.writer.post(WriteOp::MarkPending(Setback::new(
            row.id,
            e.code.clone(),
            format!("token refused ({}); buying a new one", e.message),
            release,
        )))?;
    }
    match ensure_token(ctx, row, current.as_ref()).await {
        Ok((t, b)) => {
            ctx.counters
                .tokens_refreshed
                .fetch_add(1, Ordering::Relaxed);
            tries.token = Some(t);
            tries.bought = b;
            Ok(Next::Retry)
        }
        Err(f) => {
            settle_failure(ctx, row, f, tries.in_doubt, None)?;
            Ok(Next::Done)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys(k: &[&str]) -> Vec<String> {
        k.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn template_values_decode_or_refuse_loudly() {
        let k = keys(&["customer_name", "amount"]);
        assert_eq!(
            template_values(&k, r#"["Ánh","100.000 đ"]"#).unwrap(),
            vec!["Ánh".to_string(), "100.000 đ".to_string()]
        );
        let plain = template_values(&k, r#"["Ánh","100.000 đ"]"#).unwrap();
        assert!(
            plain.iter().all(|v| matches!(v, Cow::Borrowed(_))),
            "plain values are read in place"
        );
        assert_eq!(
            template_values(&k, r#"["Ánh \"Bé\"","a\\b"]"#).unwrap(),
            vec!["Ánh \"Bé\"".to_string(), "a\\b".to_string()],
            "escaped values are unescaped"
        );
        let garbled = template_values(&k, "not json").unwrap_err();
        assert!(garbled.contains("unreadable"), "{garbled}");
        let short = template_values(&k, r#"["Ánh"]"#).unwrap_err();
        assert!(short.contains("1 values for the campaign's 2"), "{short}");
        assert!(
            template_values(&k, "[]").is_err(),
            "empty parameters never leave"
        );
    }
}
