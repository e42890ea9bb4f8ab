//! The writes the runner asks for, and their SQL. Every UPDATE of a row's
//! state is guarded by the source states of its move (see `row_state`), so
//! an illegal move changes nothing.

use std::sync::LazyLock;

use crate::store::db::{params, Db, DbError};

type DbResult<T> = std::result::Result<T, DbError>;

use super::claim::{self, HeldRow};
use super::result::WriteResult;
use super::tally::QuotaTally;
use crate::model::clock;
use crate::model::row_state::{Move, RowState};
use crate::provider::{JourneyToken, QuotaInfo};
use crate::store::tokens::store_token;
use crate::store::{CampaignStatus, ClaimGate, QuotaKey, StoreError, TokenKey};

/// A row transition or bookkeeping write.
#[derive(Debug)]
pub enum WriteOp {
    /// A bought token; the row moves to `token_ready`.
    SaveToken {
        key: TokenKey,
        token: JourneyToken,
        row_id: i64,
    },
    /// Claim a quota unit (unless the row holds one for this quota day) and
    /// mark the row `in_flight`. Refused (nothing written) when the day's
    /// quota is used up.
    MarkInFlight {
        row_id: i64,
        journey_id: Option<String>,
        quota: QuotaKey,
        limit: Option<u64>,
        gate: ClaimGate,
        /// A token bought for this row, stored first (even when the claim
        /// is refused: it was paid for).
        save_token: Option<(TokenKey, JourneyToken)>,
    },
    /// Apply the claim checks alone (before buying a token for the row):
    /// the row becomes `expired`/`skipped`, or nothing changes.
    CheckGate {
        row_id: i64,
        gate: ClaimGate,
    },
    /// The deadline passed: every open row of the campaign becomes `expired`.
    ExpireOpen {
        campaign_id: i64,
        not_after_ms: i64,
    },
    MarkSent {
        row_id: i64,
        msg_id: Option<String>,
        resent_after_doubt: bool,
        provider_quota: Option<(QuotaKey, QuotaInfo)>,
    },
    /// Permanent failure.
    MarkFailed(Setback),
    /// Back to `pending` (or `token_ready`): nothing was accepted (429,
    /// refused connection, quota, abort).
    MarkPending(Setback),
    /// Held for an operator (`--in-doubt hold`).
    MarkInDoubt {
        row_id: i64,
        code: String,
        message: String,
    },
    QuotaExhausted {
        quota: QuotaKey,
    },
    CampaignStatus {
        campaign_id: i64,
        status: CampaignStatus,
        last_error: Option<String>,
    },
}

/// A row leaving `in_flight` unsent, and the error that sent it back (kept
/// for the report); `release` gives the row's quota unit back (the provider
/// did not accept the message).
#[derive(Debug)]
pub struct Setback {
    pub row_id: i64,
    pub code: String,
    pub message: String,
    pub release: Option<QuotaKey>,
}

impl Setback {
    pub fn new(
        row_id: i64,
        code: impl Into<String>,
        message: impl Into<String>,
        release: Option<QuotaKey>,
    ) -> Self {
        Self {
            row_id,
            code: code.into(),
            message: message.into(),
            release,
        }
    }
}

static MARK_SENT: LazyLock<String> = LazyLock::new(|| {
    format!(
        "UPDATE rows SET state = '{}', msg_id = ?2, error_code = NULL, error = NULL, \
         resent_after_doubt = CASE WHEN ?3 <> 0 THEN 1 ELSE resent_after_doubt END, updated_ms = ?4, sent_ms = ?4 \
         WHERE id = ?1 AND {}",
        RowState::Sent.as_str(),
        Move::Accepted.guard_sql("")
    )
});

static MARK_FAILED: LazyLock<String> = LazyLock::new(|| {
    with_error_sql(
        &format!("'{}'", RowState::Failed.as_str()),
        Move::FailedForGood,
    )
});

static MARK_PENDING: LazyLock<String> = LazyLock::new(|| {
    with_error_sql(
        &format!(
            "CASE WHEN journey_id IS NULL THEN '{}' ELSE '{}' END",
            RowState::after_refusal(false).as_str(),
            RowState::after_refusal(true).as_str(),
        ),
        Move::Refused,
    )
});

static MARK_IN_DOUBT: LazyLock<String> =
    LazyLock::new(|| with_error_sql(&format!("'{}'", RowState::InDoubt.as_str()), Move::Held));

/// The guarded move of row `?1` to the `state` expression, keeping the error
/// that caused it (`?2` code, `?3` message) for the report.
fn with_error_sql(state: &str, mv: Move) -> String {
    format!(
        "UPDATE rows SET state = {state}, error_code = ?2, error = ?3, updated_ms = ?4 \
         WHERE id = ?1 AND {}",
        mv.guard_sql("")
    )
}

static TOKEN_READY: LazyLock<String> = LazyLock::new(|| {
    format!(
        "UPDATE rows SET state = '{}', journey_id = ?2, updated_ms = ?3 WHERE id = ?1 AND {}",
        RowState::TokenReady.as_str(),
        Move::TokenBought.guard_sql("")
    )
});

/// Apply one write inside the batch's transaction. The outer error is the
/// database's (the batch rolls back); the inner one refuses this write
/// alone (nothing of it was written).
pub(super) fn apply_op(
    tx: &Db,
    op: &WriteOp,
    quota: &mut QuotaTally<'_>,
) -> DbResult<Result<WriteResult, StoreError>> {
    let now = clock::now_ms();
    let done = Ok(Ok(WriteResult::Done));
    match op {
        WriteOp::SaveToken { key, token, row_id } => {
            store_token(tx, key, token, now)?;
            row_token_ready(tx, *row_id, token, now)?;
            done
        }
        WriteOp::MarkInFlight {
            row_id,
            journey_id,
            quota: key,
            limit,
            gate,
            save_token: bought,
        } => {
            // The token was paid for: stored whatever the claim decides.
            if let Some((key, token)) = bought {
                store_token(tx, key, token, now)?;
            }
            let claim = claim::Claim {
                row_id: *row_id,
                journey_id: journey_id.as_deref(),
                quota: key,
                limit: *limit,
                gate,
                now,
            };
            let claimed = claim::mark_in_flight(tx, &claim, quota)?;
            if let (Ok(WriteResult::QuotaFull), Some((_, token))) = (&claimed, bought) {
                // Not sent now: the row keeps its token for the next run.
                row_token_ready(tx, *row_id, token, now)?;
            }
            Ok(claimed)
        }
        WriteOp::CheckGate { row_id, gate } => Ok(Ok(
            claim::apply_gate(tx, *row_id, gate, now)?.unwrap_or(WriteResult::Done)
        )),
        WriteOp::ExpireOpen {
            campaign_id,
            not_after_ms,
        } => {
            let n = claim::expire(
                tx,
                claim::Expire::Campaign(*campaign_id),
                *not_after_ms,
                now,
            )?;
            Ok(Ok(WriteResult::Count(n)))
        }
        WriteOp::MarkSent {
            row_id,
            msg_id,
            resent_after_doubt,
            provider_quota,
        } => {
            let n = tx.prepare_cached(&MARK_SENT)?.execute(params![
                row_id,
                msg_id,
                resent_after_doubt,
                now
            ])?;
            unchanged(n, *row_id, "MarkSent");
            if let (1, Some(m)) = (n, msg_id) {
                crate::store::events::on_msg_id(tx, *row_id, m)?;
            }
            if let Some((q, info)) = provider_quota {
                quota.write_back(tx)?;
                let used_by_provider = info.daily.saturating_sub(info.remaining) as i64;
                tx.prepare_cached(
                    "UPDATE quota_days SET provider_limit = ?4, \
                     used = CASE WHEN used > ?5 THEN used ELSE ?5 END \
                     WHERE account = ?1 AND oa_id = ?2 AND day = ?3",
                )?
                .execute(params![
                    q.account,
                    q.oa_id,
                    q.day,
                    info.daily as i64,
                    used_by_provider
                ])?;
            }
            done
        }
        WriteOp::MarkFailed(back) => {
            settle(tx, quota, "MarkFailed", &MARK_FAILED, back, now)?;
            done
        }
        WriteOp::MarkPending(back) => {
            settle(tx, quota, "MarkPending", &MARK_PENDING, back, now)?;
            done
        }
        WriteOp::MarkInDoubt {
            row_id,
            code,
            message,
        } => {
            let n = tx
                .prepare_cached(&MARK_IN_DOUBT)?
                .execute(params![row_id, code, message, now])?;
            unchanged(n, *row_id, "MarkInDoubt");
            done
        }
        WriteOp::QuotaExhausted { quota: q } => {
            quota.write_back(tx)?;
            tx.prepare_cached(
                "INSERT INTO quota_days (account, oa_id, day, exhausted) VALUES (?1, ?2, ?3, 1) \
                 ON CONFLICT (account, oa_id, day) DO UPDATE SET exhausted = 1",
            )?
            .execute(params![q.account, q.oa_id, q.day])?;
            done
        }
        WriteOp::CampaignStatus {
            campaign_id,
            status,
            last_error,
        } => {
            tx.prepare_cached(
                "UPDATE campaigns SET status = ?2, last_error = COALESCE(?3, last_error), updated_ms = ?4 WHERE id = ?1",
            )?
            .execute(params![campaign_id, status.as_str(), last_error, now])?;
            done
        }
    }
}

/// A row leaving `in_flight` without being sent (`sql`, the op's guarded
/// UPDATE), and — only when it happened and `release` says the provider did
/// not accept the message — the quota unit and the frequency-cap mark given
/// back.
fn settle(
    tx: &Db,
    quota: &mut QuotaTally<'_>,
    op: &str,
    sql: &str,
    back: &Setback,
    now: i64,
) -> DbResult<()> {
    let row_id = back.row_id;
    let n = tx
        .prepare_cached(sql)?
        .execute(params![row_id, back.code, back.message, now])?;
    unchanged(n, row_id, op);
    // Only a move that happened gives its unit back; the update leaves the
    // row's phone and quota day as they were, so they are read after it,
    // and only when there is something to give back.
    if let (1, Some(key)) = (n, &back.release) {
        if let Some(held) = HeldRow::read(tx, row_id)? {
            quota.write_back(tx)?;
            claim::release_claim(tx, row_id, key, &held)?;
        }
    }
    Ok(())
}

/// An illegal move changes nothing; say so in the log (it points at a bug,
/// or at a second process working on the same rows).
fn unchanged(n: usize, row_id: i64, op: &str) {
    if n == 0 {
        tracing::warn!(
            row_id,
            "{op} ignored: not a legal move from the row's state"
        );
    }
}

/// A pending row with a token for it waits as `token_ready`; in any other
/// state the row is left as it is (the token is stored for the phone).
fn row_token_ready(tx: &Db, row_id: i64, token: &JourneyToken, now: i64) -> DbResult<()> {
    tx.prepare_cached(&TOKEN_READY)?
        .execute(params![row_id, token.journey_id, now])?;
    Ok(())
}
