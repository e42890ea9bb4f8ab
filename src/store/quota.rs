//! The daily quota: units claimed per (account, OA, quota day), what the
//! provider said its limit is, and whether it said the day is used up.

use super::db::{params, OptionalExtension};
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
/// The day's quota row created if missing (a no-op when it exists).
pub(super) const ENSURE_ROW_SQL: &str =
    "INSERT INTO quota_days (account, oa_id, day) VALUES (?1, ?2, ?3) ON CONFLICT DO NOTHING";

/// What a claim reads of the day's row: used, exhausted, provider_limit.
/// On PostgreSQL the row stays locked until the transaction ends, so two
/// processes taking the last unit at once cannot both see room (SQLite's
/// IMMEDIATE transaction already holds the whole file).
pub(super) fn read_for_claim_sql(d: super::db::Dialect) -> &'static str {
    match d {
        super::db::Dialect::Sqlite => {
            "SELECT used, exhausted, provider_limit FROM quota_days \
             WHERE account = ?1 AND oa_id = ?2 AND day = ?3"
        }
        super::db::Dialect::Postgres => {
            "SELECT used, exhausted, provider_limit FROM quota_days \
             WHERE account = ?1 AND oa_id = ?2 AND day = ?3 FOR UPDATE"
        }
    }
}

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
            .db
            .query_row(
                "SELECT used, provider_limit, exhausted FROM quota_days WHERE account = ?1 AND oa_id = ?2 AND day = ?3",
                params![key.account, key.oa_id, key.day],
                |r| {
                    Ok(QuotaDay {
                        day: key.day.clone(),
                        used: r.get::<i64>(0)? as u64,
                        provider_limit: r.get::<Option<i64>>(1)?.map(|v| v as u64),
                        exhausted: r.get::<i64>(2)? != 0,
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
        // CASE, not SQLite's two-argument MAX (PostgreSQL has GREATEST);
        // the old row named by its table (a bare `used` is ambiguous there).
        self.db
            .execute(
                "INSERT INTO quota_days (account, oa_id, day, used, provider_limit) VALUES (?1, ?2, ?3, ?5, ?4) \
                 ON CONFLICT (account, oa_id, day) DO UPDATE SET provider_limit = ?4, \
                 used = CASE WHEN quota_days.used > ?5 THEN quota_days.used ELSE ?5 END, \
                 exhausted = CASE WHEN quota_days.used < ?4 AND ?5 < ?4 THEN 0 ELSE quota_days.exhausted END",
                params![key.account, key.oa_id, key.day, daily, used_by_provider],
            )
            .map_err(|e| self.e(e))?;
        Ok(())
    }

    /// Messages sent today by this OA through any campaign (for `status`).
    pub fn quota_used_on(&self, oa_id: &str, day: &str) -> Result<u64> {
        self.db
            .query_row(
                "SELECT CAST(COALESCE(SUM(used), 0) AS BIGINT) FROM quota_days WHERE oa_id = ?1 AND day = ?2",
                params![oa_id, day],
                |r| r.get::<i64>(0),
            )
            .map(|v| v as u64)
            .map_err(|e| self.e(e))
    }
}

#[cfg(test)]
mod tests {
    use super::super::import::tests::accepted;
    use super::super::test_pg::on_both;
    use super::super::test_support::*;
    use super::super::ImportRow;
    use super::*;
    use crate::provider::JourneyToken;

    #[test]
    fn the_provider_quota_raises_used_and_a_new_limit_clears_exhausted_on_both() {
        on_both(
            "the_provider_quota_raises_used_and_a_new_limit_clears_exhausted_on_both",
            |store, _| {
                let key = QuotaKey {
                    account: "a".into(),
                    oa_id: "1".into(),
                    day: "2026-12-07".into(),
                };
                assert_eq!(store.quota_day(&key).unwrap().used, 0);
                store.record_provider_quota(&key, 10, 7).unwrap();
                let d = store.quota_day(&key).unwrap();
                assert_eq!(
                    (d.used, d.provider_limit, d.exhausted),
                    (3, Some(10), false)
                );
                // The provider counting fewer never lowers ours.
                store.record_provider_quota(&key, 10, 9).unwrap();
                assert_eq!(store.quota_day(&key).unwrap().used, 3);
                store
                    .db
                    .execute("UPDATE quota_days SET exhausted = 1", ())
                    .unwrap();
                // Used up by the provider's count: still exhausted.
                store.record_provider_quota(&key, 3, 0).unwrap();
                assert!(store.quota_day(&key).unwrap().exhausted);
                // A larger limit with room: no longer.
                store.record_provider_quota(&key, 20, 17).unwrap();
                let d = store.quota_day(&key).unwrap();
                assert_eq!((d.used, d.exhausted, d.has_room(Some(4))), (3, false, true));
                assert_eq!(store.quota_used_on("1", "2026-12-07").unwrap(), 3);
                assert_eq!(store.quota_used_on("1", "2026-12-08").unwrap(), 0);
            },
        );
    }

    #[test]
    fn a_stored_token_is_read_back_and_planned_as_reusable_on_both() {
        on_both(
            "a_stored_token_is_read_back_and_planned_as_reusable_on_both",
            |store, _| {
                let c = new_campaign(store, "c1");
                import_phones(store, &c, &["84912345670", "84912345671"]);
                assert_eq!(store.token_plan(&c, "a", 1000, true, 0).unwrap(), (2, 0));
                let key = super::super::TokenKey {
                    account: "a".into(),
                    oa_id: "1".into(),
                    phone: "84912345670".into(),
                    token_type: c.token_type.clone(),
                };
                assert!(store.token(&key).unwrap().is_none());
                let token = JourneyToken {
                    journey_id: "j1".into(),
                    provider_ref: Some("p1".into()),
                    token: Some("t1".into()),
                    expires_at: clock::from_ms(5_000_000),
                    status: None,
                };
                store.save_token(&key, &token).unwrap();
                let back = store.token(&key).unwrap().unwrap();
                assert_eq!(
                    (back.journey_id.as_str(), back.token.as_deref()),
                    ("j1", Some("t1"))
                );
                assert_eq!(store.token_plan(&c, "a", 1000, true, 0).unwrap(), (1, 1));
                // Expired by then: bought again.
                assert_eq!(
                    store.token_plan(&c, "a", 6_000_000, true, 0).unwrap(),
                    (2, 0)
                );
                // A campaign allowing repeats counts phones (its GROUP BY
                // branch): the known phone twice and a new one.
                let r = new_campaign(store, "repeats");
                let rows: Vec<ImportRow<'_>> = ["84912345670", "84912345670", "84912345672"]
                    .iter()
                    .enumerate()
                    .map(|(i, phone)| accepted(i as u64 + 2, phone, None))
                    .collect();
                store.import_batch(r.id, &rows, 4, true, false).unwrap();
                assert!(store.has_repeated_phones(r.id).unwrap());
                assert_eq!(store.token_plan(&r, "a", 1000, true, 0).unwrap(), (1, 1));
            },
        );
    }
}
