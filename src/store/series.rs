//! Figures for the console's pictures: a campaign's messages sent,
//! delivered and seen per time bucket, and an OA's messages per month.
//! Each answer is a handful of buckets, never rows: grouped in SQL.

use super::db::{params, Dialect};

use super::{Result, Store};

/// The index that lets the sent-per-bucket read walk a campaign's sent
/// rows in time order without touching the table (appended to MIGRATIONS).
pub(super) const SERIES_MIGRATION: &str = r#"
    CREATE INDEX IF NOT EXISTS rows_sent_ms ON rows(campaign_id, sent_ms)
        WHERE sent_ms IS NOT NULL;
"#;

/// Each row once with its first delivered and first seen time: events
/// matched by msg_id, by explicit tracking id, or by a derived tracking id
/// (`$prefix_match`: the event's id starts with `?2-`; `$line`: the line it
/// names), and what `reconcile` stored.
macro_rules! firsts_sql {
    ($prefix_match:literal, $line:literal) => {
        concat!(
            "WITH ev(rid, st, t) AS ( \
               SELECT r.id, e.status, COALESCE(e.event_ms, e.received_ms) \
                 FROM delivery_events e JOIN rows r ON r.msg_id = e.msg_id \
                WHERE r.campaign_id = ?1 AND e.status IN ('received', 'seen') \
               UNION ALL \
               SELECT r.id, e.status, COALESCE(e.event_ms, e.received_ms) \
                 FROM delivery_events e JOIN rows r \
                   ON r.campaign_id = ?1 AND r.tracking_id = e.tracking_id \
                WHERE e.tracking_id IS NOT NULL AND e.status IN ('received', 'seen') \
               UNION ALL \
               SELECT r.id, e.status, COALESCE(e.event_ms, e.received_ms) \
                 FROM delivery_events e JOIN rows r \
                   ON r.campaign_id = ?1 AND r.tracking_id IS NULL AND r.line = ",
            $line,
            " WHERE ",
            $prefix_match,
            " AND e.status IN ('received', 'seen') \
               UNION ALL \
               SELECT id, delivery_status, delivery_ms FROM rows \
                WHERE campaign_id = ?1 AND delivery_status IN ('received', 'seen') \
                  AND delivery_ms IS NOT NULL) \
             SELECT MIN(t), MIN(CASE WHEN st = 'seen' THEN t END) FROM ev GROUP BY rid"
        )
    };
}

/// How many rows were sent, first delivered and first seen in one bucket
/// (`bucket` counts buckets from the first send).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct BucketCounts {
    pub bucket: i64,
    pub sent: u64,
    pub delivered: u64,
    pub seen: u64,
}

impl Store {
    /// The first and the last send of a campaign (ms), if any was sent.
    pub fn sent_span(&self, campaign_id: i64) -> Result<Option<(i64, i64)>> {
        let (lo, hi): (Option<i64>, Option<i64>) = self
            .db
            .query_row(
                "SELECT MIN(sent_ms), MAX(sent_ms) FROM rows \
                 WHERE campaign_id = ?1 AND sent_ms IS NOT NULL",
                [campaign_id],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .map_err(|e| self.e(e))?;
        Ok(lo.zip(hi))
    }

    /// Per bucket of `bucket_ms` from `start_ms`: rows sent, rows first
    /// delivered (received or seen), rows first seen. A row's delivery is
    /// its earliest event of that status in the ledger (by msg_id or
    /// tracking id, as `for_each_row_delivery` matches them) or what
    /// `reconcile` stored. Times before `start_ms` count in bucket 0.
    pub fn delivery_buckets(
        &self,
        campaign_id: i64,
        tracking_prefix: &str,
        start_ms: i64,
        bucket_ms: i64,
    ) -> Result<Vec<BucketCounts>> {
        let bucket_ms = bucket_ms.max(1);
        let mut out: std::collections::BTreeMap<i64, BucketCounts> = Default::default();
        let at = |t: i64| ((t - start_ms).max(0)) / bucket_ms;
        // CASE, not SQLite's two-argument MAX (PostgreSQL's is GREATEST).
        let rows = self
            .db
            .prepare_cached(
                "SELECT CASE WHEN sent_ms > ?2 THEN sent_ms - ?2 ELSE 0 END / ?3, COUNT(*) \
                 FROM rows WHERE campaign_id = ?1 AND sent_ms IS NOT NULL GROUP BY 1",
            )
            .and_then(|mut sent| {
                sent.query_map(params![campaign_id, start_ms, bucket_ms], |r| {
                    Ok((r.get::<i64>(0)?, r.get::<i64>(1)?))
                })
            })
            .map_err(|e| self.e(e))?;
        for (b, n) in rows {
            let e = out.entry(b).or_insert(BucketCounts {
                bucket: b,
                ..Default::default()
            });
            e.sent += n as u64;
        }
        // Each row once: its first delivered time, its first seen time.
        let rows = self
            .db
            .prepare_cached(match self.db.dialect() {
                Dialect::Sqlite => firsts_sql!(
                    "e.tracking_id >= ?2 || '-' AND e.tracking_id < ?2 || '.'",
                    "CAST(substr(e.tracking_id, length(?2) + 2) AS INTEGER)"
                ),
                // PostgreSQL's CAST fails on what is not a number (SQLite's
                // reads the leading digits), and its text order follows the
                // database's collation, where '-' and '.' may not count.
                Dialect::Postgres => firsts_sql!(
                    "substr(e.tracking_id, 1, length(?2) + 1) = ?2 || '-'",
                    "CASE WHEN substr(e.tracking_id, length(?2) + 2) ~ '^[0-9]{1,18}$' \
                     THEN CAST(substr(e.tracking_id, length(?2) + 2) AS BIGINT) END"
                ),
            })
            .and_then(|mut firsts| {
                firsts.query_map(params![campaign_id, tracking_prefix], |r| {
                    Ok((r.get::<Option<i64>>(0)?, r.get::<Option<i64>>(1)?))
                })
            })
            .map_err(|e| self.e(e))?;
        for (delivered, seen) in rows {
            for (t, is_seen) in [(delivered, false), (seen, true)] {
                let Some(t) = t else { continue };
                let b = at(t);
                let e = out.entry(b).or_insert(BucketCounts {
                    bucket: b,
                    ..Default::default()
                });
                if is_seen {
                    e.seen += 1;
                } else {
                    e.delivered += 1;
                }
            }
        }
        Ok(out.into_values().collect())
    }

    /// Provider-reported fees (fee_main + fee_token, VND) of a campaign's
    /// rows, and how many rows had one; (0, 0) when none was reported.
    pub fn reported_fees(&self, campaign_id: i64) -> Result<(u64, u64)> {
        self.db
            .query_row(
                "SELECT CAST(COALESCE(SUM(COALESCE(fee_main, 0) + COALESCE(fee_token, 0)), 0) AS BIGINT), COUNT(*) \
                 FROM rows WHERE campaign_id = ?1 AND sent_ms IS NOT NULL \
                   AND (fee_main IS NOT NULL OR fee_token IS NOT NULL)",
                [campaign_id],
                |r| Ok((r.get::<i64>(0)? as u64, r.get::<i64>(1)? as u64)),
            )
            .map_err(|e| self.e(e))
    }

    /// Messages counted per OA in a month (`YYYY-MM`, the OA's days), every
    /// account summed: from the quota days, a row per OA and day.
    pub fn month_messages_by_oa(&self, month: &str) -> Result<Vec<(String, u64)>> {
        self.db
            .prepare_cached(
                "SELECT oa_id, CAST(SUM(used) AS BIGINT) FROM quota_days \
                 WHERE day >= ?1 || '-01' AND day <= ?1 || '-31' GROUP BY oa_id ORDER BY oa_id",
            )
            .and_then(|mut stmt| {
                stmt.query_map([month], |r| Ok((r.get(0)?, r.get::<i64>(1)? as u64)))
            })
            .map_err(|e| self.e(e))
    }
}

#[cfg(test)]
mod tests {
    use super::super::db::params;
    use super::super::lookups::tests::{import, mark_sent};
    use super::super::test_pg::on_both;
    use super::super::test_support::new_campaign;
    use super::BucketCounts;

    fn bucket(bucket: i64, sent: u64, delivered: u64, seen: u64) -> BucketCounts {
        BucketCounts {
            bucket,
            sent,
            delivered,
            seen,
        }
    }

    #[test]
    fn store_buckets_count_first_delivery_and_seen_by_msg_id_tracking_id_or_lookup() {
        on_both(
            "store_buckets_count_first_delivery_and_seen_by_msg_id_tracking_id_or_lookup",
            |store, _| {
                let c = new_campaign(store, "series");
                let ids = import(store, &c, &[None, None, None, Some("T-9"), None]);
                assert_eq!(store.sent_span(c.id).unwrap(), None);
                mark_sent(store, ids[0], Some("m1"), 1000);
                mark_sent(store, ids[1], Some("m2"), 2000);
                mark_sent(store, ids[2], None, 3000);
                mark_sent(store, ids[3], None, 3900);
                assert_eq!(store.sent_span(c.id).unwrap(), Some((1000, 3900)));
                // What reconcile stored for row 1; fees for rows 0 and 1.
                store
                    .db
                    .execute(
                        "UPDATE rows SET delivery_status = 'received', delivery_ms = 2200, \
                         fee_main = 5 WHERE id = ?1",
                        [ids[1]],
                    )
                    .unwrap();
                store
                    .db
                    .execute(
                        "UPDATE rows SET fee_main = 100, fee_token = 20 WHERE id = ?1",
                        [ids[0]],
                    )
                    .unwrap();
                let events: [(Option<&str>, Option<&str>, &str, i64); 6] = [
                    (Some("m1"), None, "received", 1200),
                    (Some("m1"), None, "seen", 2600),
                    // Line 4 by the derived tracking id (row 2 has no msg_id).
                    (None, Some("zb-test-4"), "received", 3500),
                    (None, Some("T-9"), "seen", 4100),
                    // Not a line: matches nothing, breaks nothing.
                    (None, Some("zb-test-x4"), "seen", 1100),
                    // Another campaign's prefix.
                    (None, Some("zb-other-2"), "seen", 1100),
                ];
                for (i, (msg, tracking, status, at)) in events.iter().enumerate() {
                    store
                        .db
                        .execute(
                            "INSERT INTO delivery_events (provider, kind, msg_id, tracking_id, \
                             status, event_ms, raw, received_ms, dedup_key) \
                             VALUES ('sandbox', 'delivery', ?1, ?2, ?3, ?4, '{}', ?4, ?5)",
                            params![msg, tracking, status, at, format!("k{i}")],
                        )
                        .unwrap();
                }
                assert_eq!(
                    store
                        .delivery_buckets(c.id, &c.tracking_prefix, 1000, 1000)
                        .unwrap(),
                    [
                        bucket(0, 1, 1, 0),
                        bucket(1, 1, 1, 1),
                        bucket(2, 2, 1, 0),
                        bucket(3, 0, 1, 1),
                    ]
                );
                // Times before the start count in bucket 0.
                assert_eq!(
                    store
                        .delivery_buckets(c.id, &c.tracking_prefix, 5000, 60_000)
                        .unwrap(),
                    [bucket(0, 4, 4, 2)]
                );
                assert_eq!(store.reported_fees(c.id).unwrap(), (125, 2));
            },
        );
    }

    #[test]
    fn store_month_messages_sum_every_account_per_oa() {
        on_both(
            "store_month_messages_sum_every_account_per_oa",
            |store, _| {
                for (account, oa, day, used) in [
                    ("a", "oa1", "2026-03-01", 3),
                    ("b", "oa1", "2026-03-31", 4),
                    ("a", "oa2", "2026-03-15", 1),
                    ("a", "oa1", "2026-04-01", 9),
                    ("a", "oa1", "2026-02-28", 9),
                ] {
                    store
                    .db
                    .execute(
                        "INSERT INTO quota_days (account, oa_id, day, used) VALUES (?1, ?2, ?3, ?4)",
                        params![account, oa, day, used],
                    )
                    .unwrap();
                }
                assert_eq!(
                    store.month_messages_by_oa("2026-03").unwrap(),
                    [("oa1".to_string(), 7), ("oa2".to_string(), 1)]
                );
                assert!(store.month_messages_by_oa("2025-03").unwrap().is_empty());
            },
        );
    }
}
