//! How a provider call that did not simply succeed is settled for its row:
//! retries, a lookup for a row in doubt, holding it, or recording its
//! failure. Which errors are retried and which stop the run is
//! [`crate::engine::policy`]'s to say.

use std::sync::atomic::Ordering;
use std::sync::Mutex;

use super::Ctx;
use crate::engine::policy::{self, Caller};
use crate::engine::stop::StopReason;
use crate::model::phone::mask;
use crate::provider::{ErrorClass, ProviderError};
use crate::store::{QuotaKey, Setback, StoreError, WorkRow, WriteOp};

/// How one row's processing ended, for the caller's bookkeeping.
pub(super) enum CallFailure {
    /// Classified provider error to act on.
    Provider(ProviderError),
    /// Transient errors used up the attempts: the row waits for a resume.
    Budget(ProviderError),
    /// A stop was requested while waiting.
    Stopped,
    Store(StoreError),
}

impl From<StoreError> for CallFailure {
    fn from(e: StoreError) -> Self {
        CallFailure::Store(e)
    }
}

/// `--in-doubt hold`: leave the row `in_doubt`, with why, for an operator.
pub(super) fn hold(ctx: &Ctx, row: &WorkRow, code: &str, why: &str) -> Result<(), StoreError> {
    ctx.writer.post(WriteOp::MarkInDoubt {
        row_id: row.id,
        code: code.to_string(),
        message: format!("{why}; held (--in-doubt hold)"),
    })?;
    ctx.counters.held_in_doubt.fetch_add(1, Ordering::Relaxed);
    Ok(())
}

/// What a lookup by tracking id said about a row in doubt.
pub(super) enum Lookup {
    /// The provider has the message: the row is sent, nothing is resent.
    Found,
    /// The provider has no message under our key: the earlier attempt did
    /// not land, so sending is no repeat.
    Absent,
    /// The lookup failed: the row stays in doubt and the policy decides.
    Unknown,
}

/// Look a row in doubt up by its tracking id; a found message is recorded
/// as sent. Only called when the provider offers the lookup.
pub(super) async fn look_up_doubt(ctx: &Ctx, row: &WorkRow) -> Result<Lookup, StoreError> {
    let oa = &ctx.campaign.oa_id;
    let found = call_with_retry(ctx, || {
        ctx.provider.find_by_tracking_id(oa, &row.tracking_id)
    })
    .await;
    match found {
        Ok(Some(info)) => {
            ctx.writer.post(WriteOp::MarkSent {
                row_id: row.id,
                msg_id: Some(info.msg_id),
                resent_after_doubt: false,
                provider_quota: None,
            })?;
            ctx.counters.sent.fetch_add(1, Ordering::Relaxed);
            ctx.counters
                .reconciled_by_lookup
                .fetch_add(1, Ordering::Relaxed);
            tracing::debug!(phone = %mask(&row.phone), line = row.line, "in doubt, found by lookup: sent");
            Ok(Lookup::Found)
        }
        Ok(None) => {
            tracing::debug!(phone = %mask(&row.phone), line = row.line, "in doubt, not found by lookup: sending");
            Ok(Lookup::Absent)
        }
        Err(CallFailure::Store(e)) => Err(e),
        Err(_) => Ok(Lookup::Unknown),
    }
}

/// Record how a row ended when it did not end in `sent`.
pub(super) fn settle_failure(
    ctx: &Ctx,
    row: &WorkRow,
    failure: CallFailure,
    in_doubt: bool,
    release: Option<QuotaKey>,
) -> Result<(), StoreError> {
    let e = match failure {
        CallFailure::Stopped => return Ok(()),
        CallFailure::Store(e) => return Err(e),
        CallFailure::Budget(e) => {
            ctx.counters.deferred.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(phone = %mask(&row.phone), line = row.line, "giving up for this run: {e}");
            return Ok(());
        }
        CallFailure::Provider(e) => e,
    };
    let quota = ctx.quota_key();
    if let Some((reason, message)) = policy::stop_for(&e, Caller::Run(&quota)) {
        // Nothing was accepted: the row waits for a resume.
        if !in_doubt {
            back_to_pending(ctx, row, &e, release)?;
        }
        if reason == StopReason::Quota {
            ctx.writer.post(WriteOp::QuotaExhausted { quota })?;
        }
        ctx.stop.request(reason, message);
        return Ok(());
    }
    match e.class {
        ErrorClass::Retry => {
            // Only reached through token calls that ran out of attempts.
            ctx.counters.deferred.fetch_add(1, Ordering::Relaxed);
        }
        _ if !in_doubt && ctx.on_probation.load(Ordering::Relaxed) => {
            on_probation(ctx, row, e, release)?;
        }
        _ => {
            // Permanent for this recipient. If an earlier attempt is in
            // doubt the message may still have gone out: keep the unit.
            fail_row(ctx, row, &e, if in_doubt { None } else { release })?;
        }
    }
    Ok(())
}

/// Nothing was accepted: the row waits again (keeping its token), with the
/// provider's error for the report; `release` gives its quota unit back.
pub(super) fn back_to_pending(
    ctx: &Ctx,
    row: &WorkRow,
    e: &ProviderError,
    release: Option<QuotaKey>,
) -> Result<(), StoreError> {
    ctx.writer
        .post(WriteOp::MarkPending(setback(row, e, release)))
}

/// The row sent back by the provider's error `e`, which the report shows.
fn setback(row: &WorkRow, e: &ProviderError, release: Option<QuotaKey>) -> Setback {
    Setback::new(row.id, e.code.clone(), e.message.clone(), release)
}

/// Until the run's first success, a row refused "for this recipient" is
/// held open rather than failed: when the first sends are refused with one
/// code again and again, the refusal is the campaign's (template, OA), not
/// the rows'. A success settles the held rows as failed after all.
pub(super) struct Probation {
    /// Refusals held so far: the row and its error, with its quota unit.
    held: Vec<(WorkRow, ProviderError, Option<QuotaKey>)>,
    /// That many refusals with one code and no success stop the campaign.
    limit: usize,
}

impl Probation {
    pub(super) fn new(concurrency: usize) -> Self {
        Self {
            held: Vec::new(),
            limit: concurrency.max(PROBATION_MIN),
        }
    }
}

fn lock(m: &Mutex<Option<Probation>>) -> std::sync::MutexGuard<'_, Option<Probation>> {
    // A panic elsewhere cannot leave the list half-written: keep using it.
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// At least this many identical refusals before a campaign-level stop, so
/// `--concurrency 1` does not stop on one bad row.
const PROBATION_MIN: usize = 3;

fn on_probation(
    ctx: &Ctx,
    row: &WorkRow,
    e: ProviderError,
    release: Option<QuotaKey>,
) -> Result<(), StoreError> {
    let mut guard = lock(&ctx.probation);
    let Some(p) = guard.as_mut() else {
        drop(guard);
        return fail_row(ctx, row, &e, release);
    };
    back_to_pending(ctx, row, &e, release)?;
    p.held.push((row.clone(), e.clone(), None));
    let same = p.held.iter().filter(|(_, h, _)| h.code == e.code).count();
    // One code `limit` times, or refusals of any kind twice that often,
    // and not one success: the campaign's setup is at fault.
    if same >= p.limit || p.held.len() >= 2 * p.limit {
        let n = p.held.len();
        ctx.stop.request(
            StopReason::Config,
            format!(
                "the first {n} sends were refused ({same} with the same error) and none succeeded: {} (code {}). \
                 This is the campaign's setup (template, OA), not the rows: they stay open. Check --template-id and the template's parameters",
                e.message, e.code
            ),
        );
    }
    Ok(())
}

/// The run's first success ends the probation: refusals held so far were
/// the rows' own after all, and are settled as failed.
pub(super) fn end_probation(ctx: &Ctx) -> Result<(), StoreError> {
    // Every success calls this: after the first, no lock is taken.
    if !ctx.on_probation.swap(false, Ordering::Relaxed) {
        return Ok(());
    }
    let held = match lock(&ctx.probation).take() {
        Some(p) => p.held,
        None => return Ok(()),
    };
    for (r, err, _) in held {
        // Their quota unit was given back when they were held.
        fail_row(ctx, &r, &err, None)?;
    }
    Ok(())
}

fn fail_row(
    ctx: &Ctx,
    row: &WorkRow,
    e: &ProviderError,
    release: Option<QuotaKey>,
) -> Result<(), StoreError> {
    ctx.writer
        .post(WriteOp::MarkFailed(setback(row, e, release)))?;
    ctx.counters.failed.fetch_add(1, Ordering::Relaxed);
    tracing::info!(phone = %mask(&row.phone), line = row.line, code = %e.code, "failed: {}", e.message);
    Ok(())
}

/// A provider call that is safe to repeat (token calls), retried on
/// transient errors with backoff, under the rate limit.
pub(super) async fn call_with_retry<T, F, Fut>(ctx: &Ctx, mut call: F) -> Result<T, CallFailure>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, ProviderError>>,
{
    let mut attempt = 0u32;
    loop {
        attempt += 1;
        if let Some(limiter) = &ctx.limiter {
            limiter.until_ready().await;
        }
        if ctx.stop.is_set() {
            return Err(CallFailure::Stopped);
        }
        let permit = tokio::select! {
            p = ctx.permits.acquire() => p.ok(),
            _ = ctx.stop.stopped() => None,
        };
        let Some(permit) = permit else {
            return Err(CallFailure::Stopped);
        };
        ctx.counters.requests.fetch_add(1, Ordering::Relaxed);
        let result = call().await;
        drop(permit);
        match result {
            Ok(v) => {
                ctx.note_success();
                return Ok(v);
            }
            Err(e) if policy::is_transient(&e) => {
                ctx.note_transient_failure(&e);
                let Some(wait) = ctx.opts.retries().wait_after(attempt, &e) else {
                    return Err(CallFailure::Budget(e));
                };
                ctx.counters.retries.fetch_add(1, Ordering::Relaxed);
                ctx.counters.retrying_now.fetch_add(1, Ordering::Relaxed);
                let woke = ctx.stop.sleep(wait).await;
                ctx.counters.retrying_now.fetch_sub(1, Ordering::Relaxed);
                if !woke {
                    return Err(CallFailure::Stopped);
                }
            }
            Err(e) => {
                ctx.note_success();
                return Err(CallFailure::Provider(e));
            }
        }
    }
}
