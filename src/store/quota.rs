//! The daily quota: units claimed per (account, OA, quota day), what the
//! provider said its limit is, and whether it said the day is used up.

use rusqlite::{params, OptionalExtension};
use serde::Serialize;

use super::{Result, Store};

/// Which quota counter a send draws on.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct QuotaKey {
    pub account: String,
    pub oa_id: String,
    pub day: String,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct QuotaDay {
    pub day: String,
    pub used: u64,
    pub provider_limit: Option<u64>,
    pub exhausted: bool,
}

impl Store {
    pub fn quota_day(&self, key: &QuotaKey) -> Result<QuotaDay> {
        let found = self
            .conn
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
        self.conn
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
        self.conn
            .query_row(
                "SELECT COALESCE(SUM(used), 0) FROM quota_days WHERE oa_id = ?1 AND day = ?2",
                params![oa_id, day],
                |r| r.get::<_, i64>(0),
            )
            .map(|v| v as u64)
            .map_err(|e| self.e(e))
    }
}
