//! The daily quota: units claimed per (account, OA, quota day), what the
//! provider said its limit is, and whether it said the day is used up.

use rusqlite::{params, OptionalExtension};
use serde::Serialize;

use super::{Result, Store};
use crate::model::clock;

/// Which quota counter a send draws on.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct QuotaKey {
    pub account: String,
    pub oa_id: String,
    pub day: String,
}

impl QuotaKey {
    /// The counter sends draw on now: the account's, for the OA, on the
    /// OA's day (Asia/Ho_Chi_Minh). Every run, plan and start check makes
    /// its key here, so they all read the same counter.
    pub fn today(account: &str, oa_id: &str) -> Self {
        QuotaKey {
            account: account.to_string(),
            oa_id: oa_id.to_string(),
            day: clock::today_key(),
        }
    }
}

/// Whether a quota day has room for one more message: the provider has not
/// said it is used up, and it is under our `limit` and the provider's. The
/// one rule, for the claim (unit by unit) and the check before a run.
pub(super) fn has_room(
    used: u64,
    exhausted: bool,
    limit: Option<u64>,
    provider_limit: Option<u64>,
) -> bool {
    !exhausted && limit.is_none_or(|l| used < l) && provider_limit.is_none_or(|l| used < l)
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct QuotaDay {
    pub day: String,
    pub used: u64,
    pub provider_limit: Option<u64>,
    pub exhausted: bool,
}

impl QuotaDay {
    /// Room for one more message today under our `limit` ([`has_room`]).
    pub fn has_room(&self, limit: Option<u64>) -> bool {
        has_room(self.used, self.exhausted, limit, self.provider_limit)
    }
}

impl Store {
    pub fn quota_day(&self, key: &QuotaKey) -> Result<QuotaDay> {
        let found = self
            .db.conn()
            .query_row(
                "SELECT used, provider_limit, exhausted FROM quota_days WHERE account = ?1 AND oa_id = ?2 AND day = ?3",
                params![key.account, key.oa_id, key.day],
                |r| {
                    Ok(QuotaDay {
                        day: key.day.clone(),
                        used: r.get::<_, i64>(0)? as u64,
                        provider_limit: r.get::<_, Option<i64>>(1)?.map(|v| v as u64),
                        exhausted: r.get::<_, i64>(2)? != 0,
                    })
                },
            )
            .optional()
            .map_err(|e| self.e(e))?;
        Ok(found.unwrap_or(QuotaDay {
            day: key.day.clone(),
            ..Default::default()
        }))
    }

    /// What the provider's quota query said at the start of a run: its
    /// daily figure becomes the day's limit, and what it has counted as
    /// used (daily − remaining, other senders included) raises ours.
    pub fn record_provider_quota(
        &mut self,
        key: &QuotaKey,
        daily: u64,
        remaining: u64,
    ) -> Result<()> {
        let used_by_provider = daily.saturating_sub(remaining).min(i64::MAX as u64) as i64;
        let daily = daily.min(i64::MAX as u64) as i64;
        self.db.conn()
            .execute(
                "INSERT INTO quota_days (account, oa_id, day, used, provider_limit) VALUES (?1, ?2, ?3, ?5, ?4) \
                 ON CONFLICT (account, oa_id, day) DO UPDATE SET provider_limit = ?4, used = MAX(used, ?5), \
                 exhausted = CASE WHEN MAX(used, ?5) < ?4 THEN 0 ELSE exhausted END",
                params![key.account, key.oa_id, key.day, daily, used_by_provider],
            )
            .map_err(|e| self.e(e))?;
        Ok(())
    }

    /// Messages sent today by this OA through any campaign (for `status`).
    pub fn quota_used_on(&self, oa_id: &str, day: &str) -> Result<u64> {
        self.db
            .conn()
            .query_row(
                "SELECT COALESCE(SUM(used), 0) FROM quota_days WHERE oa_id = ?1 AND day = ?2",
                params![oa_id, day],
                |r| r.get::<_, i64>(0),
            )
            .map(|v| v as u64)
            .map_err(|e| self.e(e))
    }
}
