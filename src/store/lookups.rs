//! Reconcile's lookups: the sent rows to ask the provider about, and what
//! its answers said (delivery status, fees). Webhook deliveries are in
//! `events`.

use rusqlite::params;
use serde::Serialize;

use super::errors::sql_err;
use super::{Result, Store};

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
    pub fee_main: Option<i64>,
    pub fee_token: Option<i64>,
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
        let mut stmt = self
            .db
            .conn()
            .prepare_cached(&format!(
                "SELECT id, line, phone, msg_id FROM rows WHERE {LOOKUP_CANDIDATE_SQL} AND id > ?3 \
                 ORDER BY id LIMIT ?4"
            ))
            .map_err(|e| self.e(e))?;
        let out = stmt
            .query_map(
                params![campaign_id, recheck_before_ms, after_id, limit as i64],
                |r| {
                    Ok(LookupRow {
                        id: r.get(0)?,
                        line: r.get::<_, i64>(1)? as u64,
                        phone: r.get(2)?,
                        msg_id: r.get(3)?,
                    })
                },
            )
            .map_err(|e| self.e(e))?
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| self.e(e))?;
        Ok(out)
    }

    pub fn lookup_candidates_count(&self, campaign_id: i64, recheck_before_ms: i64) -> Result<u64> {
        self.db
            .conn()
            .query_row(
                &format!("SELECT COUNT(*) FROM rows WHERE {LOOKUP_CANDIDATE_SQL}"),
                params![campaign_id, recheck_before_ms],
                |r| r.get::<_, i64>(0),
            )
            .map(|n| n as u64)
            .map_err(|e| self.e(e))
    }

    /// Store lookup results in one transaction.
    pub fn save_lookup_answers(&mut self, updates: &[LookupAnswer]) -> Result<()> {
        let path = self.path.clone();
        let err = |e| sql_err(&path, e);
        let tx = self.db.conn().unchecked_transaction().map_err(err)?;
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
                    u.fee_main,
                    u.fee_token,
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
            .conn()
            .query_row(
                "SELECT COUNT(*), COALESCE(SUM(delivery_checked_ms IS NOT NULL), 0), \
                        COALESCE(SUM(delivery_status = 'unknown'), 0), \
                        COALESCE(SUM(delivery_status = 'received'), 0), \
                        COALESCE(SUM(delivery_status = 'seen'), 0), \
                        COALESCE(SUM(msg_id IS NULL), 0), \
                        COALESCE(SUM(fee_main), 0), COALESCE(SUM(fee_token), 0) \
                 FROM rows WHERE campaign_id = ?1 AND state = 'sent'",
                [campaign_id],
                |r| {
                    let n = |i: usize| r.get::<_, i64>(i).map(|v| v as u64);
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
