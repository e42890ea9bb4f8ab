//! Reconcile's lookups: the sent rows to ask the provider about, and what
//! its answers said (delivery status, fees). Webhook deliveries are in
//! `events`.

use super::db::params;
use super::rows::from_row;
use serde::Serialize;

use super::errors::sql_err;
use super::{Result, Store};
use crate::model::fees::MessageFees;

/// A sent row to look up with the provider.
#[derive(Debug, Clone)]
pub struct LookupRow {
    pub id: i64,
    pub line: u64,
    pub phone: String,
    pub msg_id: String,
}

/// What one lookup found; `None` fields keep what is stored.
#[derive(Debug, Clone, Default)]
pub struct LookupAnswer {
    pub row_id: i64,
    pub status: Option<String>,
    pub delivery_ms: Option<i64>,
    pub fees: MessageFees,
    pub checked_ms: i64,
}

/// A campaign's delivery picture, from what `reconcile` stored. What faces
/// show goes through `campaign::summary::delivery_of`, which takes
/// received / seen / unknown from the ledger instead.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct DeliveryCounts {
    /// Rows in state `sent`.
    pub sent: u64,
    /// Sent rows looked up at least once.
    pub checked: u64,
    /// Here: rows `reconcile` found `unknown`; through `delivery_of`: sent
    /// rows with no delivery status yet.
    pub unknown: u64,
    pub received: u64,
    pub seen: u64,
    /// Sent rows the provider gave no message id for (cannot be looked up).
    pub no_msg_id: u64,
    /// Sums of the fees the provider reported for the checked rows.
    pub fee_main: i64,
    pub fee_token: i64,
}

impl Store {
    /// Sent rows with a message id that were never looked up, or whose last
    /// answer was not final (`seen` is) and is older than `recheck_before_ms`;
    /// after `after_id`, in file order.
    pub fn lookup_candidates(
        &self,
        campaign_id: i64,
        after_id: i64,
        recheck_before_ms: i64,
        limit: usize,
    ) -> Result<Vec<LookupRow>> {
        let sql = format!(
            "SELECT id, line, phone, msg_id FROM rows WHERE {LOOKUP_CANDIDATE_SQL} AND id > ?3 \
             ORDER BY id LIMIT ?4"
        );
        self.db
            .prepare_cached(&sql)
            .and_then(|mut stmt| {
                stmt.query_map(
                    params![campaign_id, recheck_before_ms, after_id, limit as i64],
                    |r| Ok(from_row!(r => LookupRow { id, line, phone, msg_id })),
                )
            })
            .map_err(|e| self.e(e))
    }

    pub fn lookup_candidates_count(&self, campaign_id: i64, recheck_before_ms: i64) -> Result<u64> {
        self.db
            .query_row(
                &format!("SELECT COUNT(*) FROM rows WHERE {LOOKUP_CANDIDATE_SQL}"),
                params![campaign_id, recheck_before_ms],
                |r| r.get::<u64>(0),
            )
            .map_err(|e| self.e(e))
    }

    /// Store lookup results in one transaction.
    pub fn save_lookup_answers(&mut self, updates: &[LookupAnswer]) -> Result<()> {
        let path = self.path.clone();
        let err = |e| sql_err(&path, e);
        let tx = self.db.transaction().map_err(err)?;
        {
            let mut stmt = tx
                .prepare_cached(
                    "UPDATE rows SET delivery_status = COALESCE(?2, delivery_status), \
                     delivery_ms = COALESCE(?3, delivery_ms), fee_main = COALESCE(?4, fee_main), \
                     fee_token = COALESCE(?5, fee_token), delivery_checked_ms = ?6 \
                     WHERE id = ?1 AND state = 'sent'",
                )
                .map_err(err)?;
            for u in updates {
                stmt.execute(params![
                    u.row_id,
                    u.status,
                    u.delivery_ms,
                    u.fees.fee_main,
                    u.fees.fee_token,
                    u.checked_ms
                ])
                .map_err(err)?;
            }
        }
        tx.commit().map_err(err)
    }

    /// What reconcile found, from the campaign's counters.
    pub fn delivery_counts(&self, campaign_id: i64) -> Result<DeliveryCounts> {
        Ok(self.counters(campaign_id)?.delivery)
    }

    /// The same counted from the sent rows (see `counters`).
    pub(super) fn recount_delivery(&self, campaign_id: i64) -> Result<DeliveryCounts> {
        self.db
            .query_row(
                "SELECT COUNT(*), \
                        COUNT(delivery_checked_ms), \
                        COUNT(CASE WHEN delivery_status = 'unknown' THEN 1 END), \
                        COUNT(CASE WHEN delivery_status = 'received' THEN 1 END), \
                        COUNT(CASE WHEN delivery_status = 'seen' THEN 1 END), \
                        COUNT(*) - COUNT(msg_id), \
                        CAST(COALESCE(SUM(fee_main), 0) AS BIGINT), \
                        CAST(COALESCE(SUM(fee_token), 0) AS BIGINT) \
                 FROM rows WHERE campaign_id = ?1 AND state = 'sent'",
                [campaign_id],
                |r| {
                    let n = |i: usize| r.get::<u64>(i);
                    Ok(DeliveryCounts {
                        sent: n(0)?,
                        checked: n(1)?,
                        unknown: n(2)?,
                        received: n(3)?,
                        seen: n(4)?,
                        no_msg_id: n(5)?,
                        fee_main: r.get(6)?,
                        fee_token: r.get(7)?,
                    })
                },
            )
            .map_err(|e| self.e(e))
    }
}

/// `?1` campaign id, `?2` recheck rows last checked before this (ms).
const LOOKUP_CANDIDATE_SQL: &str = "campaign_id = ?1 AND state = 'sent' AND msg_id IS NOT NULL \
    AND (delivery_checked_ms IS NULL \
         OR (COALESCE(delivery_status, 'unknown') <> 'seen' AND delivery_checked_ms < ?2))";

#[cfg(test)]
pub(super) mod tests {
    use super::super::db::params;
    use super::super::import::tests::accepted;
    use super::super::test_pg::on_both;
    use super::super::test_support::new_campaign;
    use super::super::{Campaign, ImportRow, Store};
    use super::LookupAnswer;
    use crate::model::fees::MessageFees;

    /// Import one row per entry (lines 2, 3, …; an explicit tracking id
    /// where given) and return their ids in file order.
    pub(in crate::store) fn import(
        store: &mut Store,
        c: &Campaign,
        tracking: &[Option<&str>],
    ) -> Vec<i64> {
        let phones: Vec<String> = (0..tracking.len())
            .map(|i| format!("8491234{i:04}"))
            .collect();
        let rows: Vec<ImportRow<'_>> = tracking
            .iter()
            .zip(&phones)
            .enumerate()
            .map(|(i, (t, phone))| accepted(i as u64 + 2, phone, *t))
            .collect();
        store
            .import_batch(c.id, &rows, rows.len() as u64 + 1, true, true)
            .unwrap();
        store
            .db
            .query_map(
                "SELECT id FROM rows WHERE campaign_id = ?1 ORDER BY line",
                [c.id],
                |r| r.get(0),
            )
            .unwrap()
    }

    /// Row `id` sent at `sent_ms` (with `msg_id` if the provider gave one),
    /// as the writer leaves it.
    pub(in crate::store) fn mark_sent(store: &Store, id: i64, msg_id: Option<&str>, sent_ms: i64) {
        store
            .db
            .execute(
                "UPDATE rows SET state = 'sent', msg_id = ?2, sent_ms = ?3 WHERE id = ?1",
                params![id, msg_id, sent_ms],
            )
            .unwrap();
    }

    fn answer(row_id: i64, status: Option<&str>, checked_ms: i64) -> LookupAnswer {
        LookupAnswer {
            row_id,
            status: status.map(str::to_string),
            checked_ms,
            ..Default::default()
        }
    }

    #[test]
    fn store_lookups_pick_unchecked_or_stale_sent_rows_and_keep_answers() {
        on_both(
            "store_lookups_pick_unchecked_or_stale_sent_rows_and_keep_answers",
            |store, _| {
                let c = new_campaign(store, "lk");
                let ids = import(store, &c, &[None, None, None, None]);
                mark_sent(store, ids[0], Some("m1"), 1000);
                mark_sent(store, ids[1], Some("m2"), 2000);
                mark_sent(store, ids[2], None, 3000);
                let picked = |s: &Store, after: i64, before: i64, limit: usize| {
                    s.lookup_candidates(c.id, after, before, limit)
                        .unwrap()
                        .iter()
                        .map(|r| (r.id, r.line, r.msg_id.clone()))
                        .collect::<Vec<_>>()
                };
                assert_eq!(
                    picked(store, 0, 10_000, 10),
                    [(ids[0], 2, "m1".to_string()), (ids[1], 3, "m2".to_string())]
                );
                assert_eq!(picked(store, ids[0], 10_000, 10).len(), 1);
                assert_eq!(picked(store, 0, 10_000, 1)[0].0, ids[0]);
                assert_eq!(store.lookup_candidates_count(c.id, 10_000).unwrap(), 2);

                store
                    .save_lookup_answers(&[
                        LookupAnswer {
                            delivery_ms: Some(1500),
                            fees: MessageFees {
                                fee_main: Some(100),
                                fee_token: Some(20),
                            },
                            ..answer(ids[0], Some("seen"), 5000)
                        },
                        answer(ids[1], Some("received"), 5000),
                        // Not sent: an answer for it changes nothing.
                        answer(ids[3], Some("seen"), 5000),
                    ])
                    .unwrap();
                assert!(picked(store, 0, 4000, 10).is_empty());
                assert_eq!(store.lookup_candidates_count(c.id, 4000).unwrap(), 0);
                // Seen is final; received is asked again once stale.
                assert_eq!(picked(store, 0, 6000, 10)[0].0, ids[1]);
                assert_eq!(store.lookup_candidates_count(c.id, 6000).unwrap(), 1);
                // No status in an answer keeps the stored one.
                store
                    .save_lookup_answers(&[answer(ids[1], None, 7000)])
                    .unwrap();
                assert!(picked(store, 0, 6000, 10).is_empty());

                let d = store.recount_delivery(c.id).unwrap();
                assert_eq!(
                    (
                        d.sent,
                        d.checked,
                        d.unknown,
                        d.received,
                        d.seen,
                        d.no_msg_id
                    ),
                    (3, 2, 0, 1, 1, 1)
                );
                assert_eq!((d.fee_main, d.fee_token), (100, 20));
                let pending_status: Option<String> = store
                    .db
                    .query_row(
                        "SELECT delivery_status FROM rows WHERE id = ?1",
                        [ids[3]],
                        |r| r.get(0),
                    )
                    .unwrap();
                assert_eq!(pending_status, None);
            },
        );
    }
}
