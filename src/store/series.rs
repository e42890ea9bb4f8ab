//! Figures for the console's pictures: a campaign's messages sent,
//! delivered and seen per time bucket, and an OA's messages per month.
//! Each answer is a handful of buckets, never rows: grouped in SQL.

use rusqlite::params;

use super::{Result, Store};

/// The index that lets the sent-per-bucket read walk a campaign's sent
/// rows in time order without touching the table (appended to MIGRATIONS).
pub(super) const SERIES_MIGRATION: &str = r#"
    CREATE INDEX IF NOT EXISTS rows_sent_ms ON rows(campaign_id, sent_ms)
        WHERE sent_ms IS NOT NULL;
"#;

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
            .conn()
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
        let mut sent = self
            .db
            .conn()
            .prepare_cached(
                "SELECT MAX(sent_ms - ?2, 0) / ?3, COUNT(*) FROM rows \
                 WHERE campaign_id = ?1 AND sent_ms IS NOT NULL GROUP BY 1",
            )
            .map_err(|e| self.e(e))?;
        let rows = sent
            .query_map(params![campaign_id, start_ms, bucket_ms], |r| {
                Ok((r.get::<_, i64>(0)?, r.get::<_, i64>(1)?))
            })
            .map_err(|e| self.e(e))?;
        for r in rows {
            let (b, n) = r.map_err(|e| self.e(e))?;
            let e = out.entry(b).or_insert(BucketCounts {
                bucket: b,
                ..Default::default()
            });
            e.sent += n as u64;
        }
        // Each row once: its first delivered time, its first seen time.
        let mut firsts = self
            .db
            .conn()
            .prepare_cached(
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
                       ON r.campaign_id = ?1 AND r.tracking_id IS NULL \
                      AND r.line = CAST(substr(e.tracking_id, length(?2) + 2) AS INTEGER) \
                    WHERE e.tracking_id >= ?2 || '-' AND e.tracking_id < ?2 || '.' \
                      AND e.status IN ('received', 'seen') \
                   UNION ALL \
                   SELECT id, delivery_status, delivery_ms FROM rows \
                    WHERE campaign_id = ?1 AND delivery_status IN ('received', 'seen') \
                      AND delivery_ms IS NOT NULL) \
                 SELECT MIN(t), MIN(CASE WHEN st = 'seen' THEN t END) FROM ev GROUP BY rid",
            )
            .map_err(|e| self.e(e))?;
        let rows = firsts
            .query_map(params![campaign_id, tracking_prefix], |r| {
                Ok((r.get::<_, Option<i64>>(0)?, r.get::<_, Option<i64>>(1)?))
            })
            .map_err(|e| self.e(e))?;
        for r in rows {
            let (delivered, seen) = r.map_err(|e| self.e(e))?;
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
        self.db.conn()
            .query_row(
                "SELECT COALESCE(SUM(COALESCE(fee_main, 0) + COALESCE(fee_token, 0)), 0), COUNT(*) \
                 FROM rows WHERE campaign_id = ?1 AND sent_ms IS NOT NULL \
                   AND (fee_main IS NOT NULL OR fee_token IS NOT NULL)",
                [campaign_id],
                |r| Ok((r.get::<_, i64>(0)? as u64, r.get::<_, i64>(1)? as u64)),
            )
            .map_err(|e| self.e(e))
    }

    /// Messages counted per OA in a month (`YYYY-MM`, the OA's days), every
    /// account summed: from the quota days, a row per OA and day.
    pub fn month_messages_by_oa(&self, month: &str) -> Result<Vec<(String, u64)>> {
        let mut stmt = self
            .db
            .conn()
            .prepare_cached(
                "SELECT oa_id, SUM(used) FROM quota_days \
                 WHERE day >= ?1 || '-01' AND day <= ?1 || '-31' GROUP BY oa_id ORDER BY oa_id",
            )
            .map_err(|e| self.e(e))?;
        let out = stmt
            .query_map([month], |r| Ok((r.get(0)?, r.get::<_, i64>(1)? as u64)))
            .map_err(|e| self.e(e))?
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| self.e(e))?;
        Ok(out)
    }
}
