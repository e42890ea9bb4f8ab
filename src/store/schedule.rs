//! Scheduled starts and test sends. A schedule is one row per campaign
//! (the time it is to start); `serve` reads them and starts each when due,
//! so a restart keeps them. Test sends are kept apart from the campaign's
//! rows: they are never counted in its totals, counts or report.

use super::db::{params, Begin, OptionalExtension};
use super::rows::from_row;
use serde::Serialize;

use super::{QuotaKey, Result, Store};
use crate::model::clock;

/// Appended to the schema's migrations (see schema.rs).
pub(super) const SCHEDULE_MIGRATION: &str = r#"
    CREATE TABLE IF NOT EXISTS schedules (
        campaign_id INTEGER PRIMARY KEY REFERENCES campaigns(id),
        start_at_ms INTEGER NOT NULL,
        set_ms INTEGER NOT NULL
    );
    CREATE TABLE IF NOT EXISTS test_sends (
        id INTEGER PRIMARY KEY,
        campaign_id INTEGER NOT NULL REFERENCES campaigns(id),
        phone TEXT NOT NULL,
        at_ms INTEGER NOT NULL,
        outcome TEXT NOT NULL,
        msg_id TEXT,
        error TEXT
    );
    CREATE INDEX IF NOT EXISTS test_sends_campaign ON test_sends(campaign_id, id);
"#;

/// One test message as recorded (phone as stored: mask it to show it).
#[derive(Debug, Clone, Serialize)]
pub struct TestSend {
    pub phone: String,
    pub at_ms: i64,
    /// `sent`, `failed` or `not_sent` (no quota left, nothing left).
    pub outcome: String,
    pub msg_id: Option<String>,
    pub error: Option<String>,
}

impl Store {
    /// Set (Some) or drop (None) the campaign's scheduled start.
    pub fn set_schedule(&mut self, campaign_id: i64, start_at_ms: Option<i64>) -> Result<()> {
        match start_at_ms {
            Some(at) => self.db.execute(
                "INSERT INTO schedules (campaign_id, start_at_ms, set_ms) VALUES (?1, ?2, ?3) \
                 ON CONFLICT(campaign_id) DO UPDATE SET start_at_ms = ?2, set_ms = ?3",
                params![campaign_id, at, clock::now_ms()],
            ),
            None => self.db.execute(
                "DELETE FROM schedules WHERE campaign_id = ?1",
                [campaign_id],
            ),
        }
        .map_err(|e| self.e(e))?;
        Ok(())
    }

    pub fn schedule(&self, campaign_id: i64) -> Result<Option<i64>> {
        self.db
            .query_row(
                "SELECT start_at_ms FROM schedules WHERE campaign_id = ?1",
                [campaign_id],
                |r| r.get(0),
            )
            .optional()
            .map_err(|e| self.e(e))
    }

    /// Every scheduled campaign: (name, start time), soonest first.
    pub fn schedules(&self) -> Result<Vec<(String, i64)>> {
        self.db
            .query_map(
                "SELECT c.name, s.start_at_ms FROM schedules s JOIN campaigns c ON c.id = s.campaign_id \
                 ORDER BY s.start_at_ms, c.id",
                (),
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .map_err(|e| self.e(e))
    }

    /// The template data (JSON) of the campaign's first accepted row.
    pub fn first_accepted_data(&self, campaign_id: i64) -> Result<Option<String>> {
        self.db
            .query_row(
                "SELECT data FROM rows WHERE campaign_id = ?1 AND state <> 'rejected' \
                 AND data IS NOT NULL ORDER BY line, id LIMIT 1",
                [campaign_id],
                |r| r.get(0),
            )
            .optional()
            .map_err(|e| self.e(e))
    }

    /// Take one unit of the day's quota for a message that belongs to no
    /// row (a test send): false, and nothing taken, when there is no room.
    pub fn take_quota_unit(&mut self, key: &QuotaKey, limit: Option<u64>) -> Result<bool> {
        let path = self.path.clone();
        let err = |e| super::errors::sql_err(&path, e);
        let tx = self.db.transaction_with(Begin::Immediate).map_err(err)?;
        tx.execute(
            super::quota::ENSURE_ROW_SQL,
            params![key.account, key.oa_id, key.day],
        )
        .map_err(err)?;
        let read = super::quota::read_for_claim_sql(tx.dialect());
        let (used, exhausted, provider_limit): (i64, i64, Option<i64>) = tx
            .query_row(read, params![key.account, key.oa_id, key.day], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?))
            })
            .map_err(err)?;
        let room = super::quota::has_room(
            used as u64,
            exhausted != 0,
            limit,
            provider_limit.map(|v| v as u64),
        );
        if room {
            tx.execute(
                "UPDATE quota_days SET used = used + 1 WHERE account = ?1 AND oa_id = ?2 AND day = ?3",
                params![key.account, key.oa_id, key.day],
            )
            .map_err(err)?;
        }
        tx.commit().map_err(err)?;
        Ok(room)
    }

    /// Give back a unit taken by [`Self::take_quota_unit`] whose message
    /// surely never left.
    pub fn give_back_quota_unit(&mut self, key: &QuotaKey) -> Result<()> {
        // CASE, not SQLite's two-argument MAX (PostgreSQL has GREATEST).
        self.db
            .execute(
                "UPDATE quota_days SET used = CASE WHEN used > 0 THEN used - 1 ELSE 0 END \
                 WHERE account = ?1 AND oa_id = ?2 AND day = ?3",
                params![key.account, key.oa_id, key.day],
            )
            .map_err(|e| self.e(e))?;
        Ok(())
    }

    /// Store a journey token bought outside a run (a test send's).
    pub fn save_token(
        &mut self,
        key: &super::TokenKey,
        token: &crate::provider::JourneyToken,
    ) -> Result<()> {
        super::tokens::store_token(&self.db, key, token, clock::now_ms()).map_err(|e| self.e(e))?;
        Ok(())
    }

    pub fn add_test_send(&mut self, campaign_id: i64, t: &TestSend) -> Result<()> {
        self.db
            .execute(
                "INSERT INTO test_sends (campaign_id, phone, at_ms, outcome, msg_id, error) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                params![campaign_id, t.phone, t.at_ms, t.outcome, t.msg_id, t.error],
            )
            .map_err(|e| self.e(e))?;
        Ok(())
    }

    /// The campaign's test sends, newest first (at most `limit`).
    pub fn test_sends(&self, campaign_id: i64, limit: usize) -> Result<Vec<TestSend>> {
        self.db
            .query_map(
                "SELECT phone, at_ms, outcome, msg_id, error FROM test_sends \
                 WHERE campaign_id = ?1 ORDER BY id DESC LIMIT ?2",
                params![campaign_id, limit as i64],
                |r| Ok(from_row!(r => TestSend { phone, at_ms, outcome, msg_id, error })),
            )
            .map_err(|e| self.e(e))
    }
}

#[cfg(test)]
mod tests {
    use super::super::lookups::tests::import;
    use super::super::test_pg::on_both;
    use super::super::test_support::*;
    use super::super::*;
    use super::TestSend;

    #[test]
    fn a_schedule_is_kept_until_dropped_and_test_sends_stay_apart_from_the_rows() {
        on_both(
            "a_schedule_is_kept_until_dropped_and_test_sends_stay_apart_from_the_rows",
            |store, place| {
                let c = new_campaign(store, "c1");
                import(store, &c, &[None]);
                store.set_schedule(c.id, Some(1_700_000_000_000)).unwrap();
                store.set_schedule(c.id, Some(1_800_000_000_000)).unwrap();
                for (i, outcome) in ["sent", "failed"].iter().enumerate() {
                    store
                        .add_test_send(
                            c.id,
                            &TestSend {
                                phone: "84912345678".into(),
                                at_ms: i as i64 + 1,
                                outcome: outcome.to_string(),
                                msg_id: Some("m1".into()).filter(|_| i == 0),
                                error: None,
                            },
                        )
                        .unwrap();
                }
                let mut store = place.open();
                assert_eq!(store.schedule(c.id).unwrap(), Some(1_800_000_000_000));
                assert_eq!(
                    store.schedules().unwrap(),
                    vec![("c1".to_string(), 1_800_000_000_000)]
                );
                let sends = store.test_sends(c.id, 10).unwrap();
                assert_eq!(
                    sends
                        .iter()
                        .map(|t| (t.outcome.as_str(), t.msg_id.as_deref()))
                        .collect::<Vec<_>>(),
                    [("failed", None), ("sent", Some("m1"))],
                    "newest first"
                );
                assert_eq!(store.test_sends(c.id, 1).unwrap().len(), 1);
                let rows: i64 = store
                    .db
                    .query_row(
                        "SELECT COUNT(*) FROM rows WHERE campaign_id = ?1",
                        [c.id],
                        |r| r.get(0),
                    )
                    .unwrap();
                assert_eq!(rows, 1);
                assert_eq!(store.state_counts(c.id).unwrap().total, 1);
                assert_eq!(
                    store.first_accepted_data(c.id).unwrap().as_deref(),
                    Some("[]")
                );
                store.set_schedule(c.id, None).unwrap();
                assert!(store.schedules().unwrap().is_empty());
                assert_eq!(store.schedule(c.id).unwrap(), None);
            },
        );
    }

    fn used(store: &Store, key: &QuotaKey) -> i64 {
        store
            .db
            .query_row(
                "SELECT used FROM quota_days WHERE account = ?1 AND oa_id = ?2 AND day = ?3",
                db::params![key.account, key.oa_id, key.day],
                |r| r.get(0),
            )
            .unwrap()
    }

    #[test]
    fn a_test_send_takes_a_quota_unit_only_when_there_is_room() {
        on_both(
            "a_test_send_takes_a_quota_unit_only_when_there_is_room",
            |store, _| {
                let key = QuotaKey::today("acct", "oa");
                assert!(store.take_quota_unit(&key, Some(2)).unwrap());
                assert!(store.take_quota_unit(&key, Some(2)).unwrap());
                assert!(!store.take_quota_unit(&key, Some(2)).unwrap());
                assert_eq!(used(store, &key), 2);
                store.give_back_quota_unit(&key).unwrap();
                assert_eq!(used(store, &key), 1);
                store.give_back_quota_unit(&key).unwrap();
                store.give_back_quota_unit(&key).unwrap();
                assert_eq!(used(store, &key), 0, "never below zero");
            },
        );
    }

    /// Four connections take units of one day at once: never more than
    /// the limit in all (on PostgreSQL the row is read FOR UPDATE).
    #[test]
    fn store_test_sends_from_several_connections_never_overshoot_the_quota() {
        on_both(
            "store_test_sends_from_several_connections_never_overshoot_the_quota",
            |store, place| {
                let key = QuotaKey::today("acct", "oa");
                let barrier = std::sync::Arc::new(std::sync::Barrier::new(4));
                let takers: Vec<_> = (0..4)
                    .map(|_| {
                        let mut s = place.open();
                        let (key, barrier) = (key.clone(), barrier.clone());
                        std::thread::spawn(move || {
                            barrier.wait();
                            (0..10)
                                .filter(|_| s.take_quota_unit(&key, Some(25)).unwrap())
                                .count()
                        })
                    })
                    .collect();
                let taken: usize = takers.into_iter().map(|t| t.join().unwrap()).sum();
                assert_eq!(taken, 25);
                assert_eq!(used(store, &key), 25);
            },
        );
    }
}
