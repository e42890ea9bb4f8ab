//! Claiming a row for a send, and giving a claim back. A claim passes the
//! run-safety gate (deadline, frequency cap) and takes the row's quota unit
//! in the same transaction that marks it `in_flight`, so neither a crash nor
//! a concurrent campaign can slip past them.
//!
//! The quota counts messages, not attempts: a row holds at most one unit
//! per quota day (`rows.quota_day`), from its first claim until it is sent
//! (kept) or refused outright (given back). A retry in doubt claims no other.

use std::sync::LazyLock;

use crate::store::db::{params, Db, DbError, Dialect, OptionalExtension};

type DbResult<T> = std::result::Result<T, DbError>;

use super::result::WriteResult;
use super::tally::QuotaTally;
use crate::model::clock;
use crate::model::row_state::{self, states_sql, Move, RowState};
use crate::store::{ClaimGate, QuotaKey, StoreError};

/// What a row holds before a write changes it.
pub(super) struct HeldRow {
    /// `None`: a state this build does not know (no move is legal from it).
    pub state: Option<RowState>,
    pub phone: String,
    /// The quota day whose unit the row holds, if any.
    pub quota_day: Option<String>,
}

impl HeldRow {
    pub fn read(tx: &Db, row_id: i64) -> DbResult<Option<HeldRow>> {
        Self::read_sql(
            tx,
            "SELECT state, phone, quota_day FROM rows WHERE id = ?1",
            row_id,
        )
    }

    /// The row for a claim: on PostgreSQL locked until the batch commits,
    /// and skipped (None) when another process's batch holds it — so two
    /// writers never claim one row; SQLite's write lock already did that.
    pub fn read_for_claim(tx: &Db, row_id: i64) -> DbResult<Option<HeldRow>> {
        let sql = match tx.dialect() {
            Dialect::Sqlite => "SELECT state, phone, quota_day FROM rows WHERE id = ?1",
            Dialect::Postgres => {
                "SELECT state, phone, quota_day FROM rows WHERE id = ?1 FOR UPDATE SKIP LOCKED"
            }
        };
        Self::read_sql(tx, sql, row_id)
    }

    fn read_sql(tx: &Db, sql: &str, row_id: i64) -> DbResult<Option<HeldRow>> {
        tx.prepare_cached(sql)?
            .query_row([row_id], |r| {
                Ok(HeldRow {
                    state: RowState::parse(&r.get::<String>(0)?),
                    phone: r.get(1)?,
                    quota_day: r.get(2)?,
                })
            })
            .optional()
    }
}

pub(super) struct Claim<'a> {
    pub row_id: i64,
    pub journey_id: Option<&'a str>,
    pub quota: &'a QuotaKey,
    pub limit: Option<u64>,
    pub gate: &'a ClaimGate,
    pub now: i64,
}

static MARK_IN_FLIGHT: LazyLock<String> = LazyLock::new(|| {
    format!(
        "UPDATE rows SET state = '{}', attempts = attempts + 1, \
         journey_id = COALESCE(?2, journey_id), quota_day = ?3, updated_ms = ?4 \
         WHERE id = ?1 AND {}",
        RowState::InFlight.as_str(),
        Move::Claimed.guard_sql("")
    )
});

/// Gate, quota, then the row `in_flight`. The inner error refuses a claim
/// of a row no claim may take (sent, failed, …): nothing is written.
pub(super) fn mark_in_flight(
    tx: &Db,
    c: &Claim<'_>,
    quota: &mut QuotaTally<'_>,
) -> DbResult<Result<WriteResult, StoreError>> {
    let row = HeldRow::read_for_claim(tx, c.row_id)?;
    if row.is_none() && tx.is_postgres() && row_exists(tx, c.row_id)? {
        return Ok(Err(StoreError::IllegalMove {
            row_id: c.row_id,
            state: "claimed by another writer".to_string(),
            op: "claimed for a send",
        }));
    }
    let claimable = row
        .as_ref()
        .and_then(|r| r.state)
        .is_some_and(|s| Move::Claimed.sources().contains(&s));
    let Some(row) = row.filter(|_| claimable) else {
        return Ok(Err(StoreError::IllegalMove {
            row_id: c.row_id,
            state: state_name(tx, c.row_id)?,
            op: "claimed for a send",
        }));
    };
    // The fence first: a holder that lost its lease settles nothing either.
    if let Some(fence) = &c.gate.lease {
        if !crate::store::leases::lease_live(tx, fence)? {
            return Ok(Ok(WriteResult::LeaseLost));
        }
    }
    if let Some(settled) = apply_gate(tx, c.row_id, c.gate, c.now)? {
        return Ok(Ok(settled));
    }
    let q = c.quota;
    if row.quota_day.as_deref() == Some(q.day.as_str()) {
        // Holds today's unit already (an attempt in doubt): only the
        // provider's "used up" stops it.
        let exhausted: bool = tx
            .prepare_cached(
                "SELECT exhausted FROM quota_days WHERE account = ?1 AND oa_id = ?2 AND day = ?3",
            )?
            .query_row(params![q.account, q.oa_id, q.day], |r| r.get(0))
            .optional()?
            .unwrap_or(false);
        if exhausted {
            return Ok(Ok(WriteResult::QuotaFull));
        }
    } else if !quota.claim(tx, q, c.limit)? {
        return Ok(Ok(WriteResult::QuotaFull));
    }
    tx.prepare_cached(&MARK_IN_FLIGHT)?
        .execute(params![c.row_id, c.journey_id, q.day, c.now])?;
    record_phone_send(tx, c.gate, c.row_id, c.now)?;
    Ok(Ok(WriteResult::Done))
}

fn row_exists(tx: &Db, row_id: i64) -> DbResult<bool> {
    tx.prepare_cached("SELECT 1 FROM rows WHERE id = ?1")?
        .exists([row_id])
}

fn state_name(tx: &Db, row_id: i64) -> DbResult<String> {
    Ok(tx
        .prepare_cached("SELECT state FROM rows WHERE id = ?1")?
        .query_row([row_id], |r| r.get(0))
        .optional()?
        .unwrap_or_else(|| "missing".to_string()))
}

/// The phone's latest claimed send (for the frequency cap), keeping the one
/// before so a refused claim can be taken back. The old row's columns are
/// named by their table (bare, PostgreSQL finds them ambiguous).
fn record_phone_send(tx: &Db, gate: &ClaimGate, row_id: i64, now: i64) -> DbResult<()> {
    tx.prepare_cached(
        "INSERT INTO phone_sends (oa_id, phone, last_ms, row_id) VALUES (?1, ?2, ?3, ?4) \
         ON CONFLICT (oa_id, phone) DO UPDATE SET \
         prev_ms = CASE WHEN phone_sends.row_id = excluded.row_id \
           THEN phone_sends.prev_ms ELSE phone_sends.last_ms END, \
         prev_row_id = CASE WHEN phone_sends.row_id = excluded.row_id \
           THEN phone_sends.prev_row_id ELSE phone_sends.row_id END, \
         last_ms = excluded.last_ms, row_id = excluded.row_id",
    )?
    .execute(params![gate.oa_id, gate.phone, now, row_id])?;
    Ok(())
}

/// Give back what a claim took when the provider did not accept the
/// message: the quota unit the row holds (of the day it was claimed), and
/// the phone's "last message" mark.
pub(super) fn release_claim(tx: &Db, row_id: i64, key: &QuotaKey, held: &HeldRow) -> DbResult<()> {
    if let Some(day) = &held.quota_day {
        tx.prepare_cached(
            "UPDATE quota_days SET used = CASE WHEN used > 0 THEN used - 1 ELSE 0 END WHERE account = ?1 AND oa_id = ?2 AND day = ?3",
        )?
        .execute(params![key.account, key.oa_id, day])?;
        tx.prepare_cached("UPDATE rows SET quota_day = NULL WHERE id = ?1")?
            .execute([row_id])?;
    }
    tx.prepare_cached(
        "DELETE FROM phone_sends WHERE oa_id = ?1 AND phone = ?2 AND row_id = ?3 AND prev_ms IS NULL",
    )?
    .execute(params![key.oa_id, held.phone, row_id])?;
    tx.prepare_cached(
        "UPDATE phone_sends SET last_ms = prev_ms, row_id = prev_row_id, prev_ms = NULL, prev_row_id = NULL \
         WHERE oa_id = ?1 AND phone = ?2 AND row_id = ?3",
    )?
    .execute(params![key.oa_id, held.phone, row_id])?;
    Ok(())
}

/// Which open rows a deadline expires.
pub(super) enum Expire {
    Row(i64),
    Campaign(i64),
}

fn expire_sql(scope: &str) -> String {
    let left: Vec<RowState> = RowState::ALL
        .into_iter()
        .filter(|s| s.may_have_left())
        .collect();
    format!(
        "UPDATE rows SET state = '{}', error_code = 'expired', \
         error = CASE WHEN {} \
           THEN ?2 || ' (an earlier attempt''s reply was never recorded: it may have been delivered)' \
           ELSE ?2 END, updated_ms = ?3 \
         WHERE {scope} AND {}",
        RowState::Expired.as_str(),
        states_sql(&left, ""),
        Move::DeadlinePassed.guard_sql("")
    )
}

static EXPIRE_ROW: LazyLock<String> = LazyLock::new(|| expire_sql("id = ?1"));
/// Its guard is the open states, so the partial index finds the rows.
static EXPIRE_CAMPAIGN: LazyLock<String> = LazyLock::new(|| expire_sql("campaign_id = ?1"));

/// The deadline passed: the row, or every open row of the campaign, becomes
/// `expired`, saying so. Returns how many rows expired.
pub(super) fn expire(tx: &Db, scope: Expire, deadline_ms: i64, now: i64) -> DbResult<u64> {
    let (sql, id) = match scope {
        Expire::Row(id) => (&*EXPIRE_ROW, id),
        Expire::Campaign(id) => (&*EXPIRE_CAMPAIGN, id),
    };
    let why = format!(
        "not sent: the campaign's deadline {} passed",
        clock::fmt_local(clock::from_ms(deadline_ms))
    );
    let n = tx.prepare_cached(sql)?.execute(params![id, why, now])?;
    Ok(n as u64)
}

static SKIP_ROW: LazyLock<String> = LazyLock::new(|| {
    format!(
        "UPDATE rows SET state = '{}', error_code = 'min_interval', error = ?2, updated_ms = ?3 \
         WHERE id = ?1 AND {}",
        RowState::Skipped.as_str(),
        Move::TooSoon.guard_sql("")
    )
});

/// The deadline and frequency-cap checks of a claim. `Some` means the row
/// was settled (`expired` / `skipped`) instead of claimed.
pub(super) fn apply_gate(
    tx: &Db,
    row_id: i64,
    gate: &ClaimGate,
    now: i64,
) -> DbResult<Option<WriteResult>> {
    if let Some(deadline) = gate
        .not_after_ms
        .filter(|_| row_state::deadline_passed(gate.not_after_ms, now))
    {
        expire(tx, Expire::Row(row_id), deadline, now)?;
        return Ok(Some(WriteResult::Expired));
    }
    let Some(interval) = gate.min_interval_ms else {
        return Ok(None);
    };
    let last: Option<(i64, i64, Option<String>, Option<i64>)> = tx
        .prepare_cached(
            "SELECT p.last_ms, p.row_id, c.name, r.line FROM phone_sends p \
             LEFT JOIN rows r ON r.id = p.row_id LEFT JOIN campaigns c ON c.id = r.campaign_id \
             WHERE p.oa_id = ?1 AND p.phone = ?2",
        )?
        .query_row(params![gate.oa_id, gate.phone], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?))
        })
        .optional()?;
    let Some((last_ms, last_row, campaign, line)) = last else {
        return Ok(None);
    };
    // A row's own earlier attempt (a resend in doubt) never blocks it.
    if last_row == row_id || !row_state::too_soon(last_ms, now, interval) {
        return Ok(None);
    }
    let source = match (campaign, line) {
        (Some(c), Some(l)) => format!(" (campaign {c}, line {l})"),
        _ => String::new(),
    };
    tx.prepare_cached(&SKIP_ROW)?.execute(params![
        row_id,
        format!(
            "skipped: this phone got a message from OA {} at {}{source}, within --min-interval-per-phone {}",
            gate.oa_id,
            clock::fmt_local(clock::from_ms(last_ms)),
            clock::fmt_duration(std::time::Duration::from_millis(interval as u64))
        ),
        now
    ])?;
    Ok(Some(WriteResult::Skipped))
}
