//! Reading rows: open-row paging for the runner, counts, rejects and the
//! report's rows.

use super::db::{params, unknown_value, DbError};
use serde::Serialize;

use super::{Campaign, Result, Store, StoreError};
use crate::model::clock;
use crate::model::error_note::ErrorNote;
use crate::model::fees::MessageFees;
use crate::model::row_state::{open_states_sql, RowState};
use crate::provider::JourneyToken;

/// A struct read from a query row's columns in their order: `from_row!(r
/// => Lease { campaign, holder })` is `Lease { campaign: r.get(0)?,
/// holder: r.get(1)? }`, the column numbers counted once here rather than
/// by hand in every read.
macro_rules! from_row {
    ($r:ident => $ty:ident { $($field:ident),+ $(,)? }) => {{
        let mut next = 0;
        let mut col = || {
            next += 1;
            next - 1
        };
        $ty { $($field: $r.get(col())?),+ }
    }};
}
pub(super) use from_row;

/// The ids of the rows tracking id `?1` names, explicit or derived as
/// `{prefix}-{line}`: what an event's `raise_rank` (events.rs) and the
/// chart's ledger times (series.rs) both match. CROSS JOIN: `campaigns`
/// (a few) outside, `rows` searched by index.
macro_rules! rows_of_tracking_id_sql {
    () => {
        concat!(
            "SELECT r.id FROM campaigns c CROSS JOIN rows r \
               WHERE r.campaign_id = c.id AND r.tracking_id = ?1 \
             UNION ALL \
             SELECT r.id FROM campaigns c CROSS JOIN rows r \
               WHERE substr(?1, 1, length(c.tracking_prefix) + 1) = c.tracking_prefix || '-' \
                 AND r.campaign_id = c.id \
                 AND r.line = ",
            line_of_sql!("?1"),
            " AND r.tracking_id IS NULL AND c.tracking_prefix || '-' || r.line = ?1"
        )
    };
}
pub(super) use rows_of_tracking_id_sql;

/// An open row, with the stored token for its phone if there is one.
#[derive(Debug, Clone)]
pub struct WorkRow {
    pub id: i64,
    pub line: u64,
    pub phone: String,
    pub tracking_id: String,
    pub data_json: String,
    pub state: RowState,
    pub attempts: u32,
    pub token: Option<JourneyToken>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct StateCounts {
    pub total: u64,
    pub pending: u64,
    pub token_ready: u64,
    pub in_flight: u64,
    pub in_doubt: u64,
    pub sent: u64,
    pub failed: u64,
    pub rejected: u64,
    pub expired: u64,
    pub skipped: u64,
    pub resent_after_doubt: u64,
}

impl StateCounts {
    pub fn open(&self) -> u64 {
        self.pending + self.token_ready + self.in_flight
    }

    /// The rows a run takes up (the open-rows index's states; in-doubt
    /// ones when the run resends them).
    pub fn to_send(&self, include_in_doubt: bool) -> u64 {
        self.open() + if include_in_doubt { self.in_doubt } else { 0 }
    }
}

/// One line of the report; serialized as a line of `report --json`.
#[derive(Debug, Clone, Serialize)]
pub struct ReportRow {
    pub line: u64,
    pub phone: String,
    pub tracking_id: String,
    pub state: String,
    pub msg_id: Option<String>,
    #[serde(flatten)]
    pub note: ErrorNote,
    pub attempts: u32,
    pub resent_after_doubt: bool,
    #[serde(rename = "updated_at", serialize_with = "rfc3339")]
    pub updated_ms: Option<i64>,
    #[serde(rename = "sent_at", serialize_with = "rfc3339")]
    pub sent_ms: Option<i64>,
    /// From `reconcile`: unknown | received | seen; None if never looked up.
    pub delivery_status: Option<String>,
    #[serde(rename = "delivery_time", serialize_with = "rfc3339")]
    pub delivery_ms: Option<i64>,
    #[serde(flatten)]
    pub fees: MessageFees,
}

/// The report's times, as `report --json` writes them.
fn rfc3339<S: serde::Serializer>(ms: &Option<i64>, s: S) -> std::result::Result<S::Ok, S::Error> {
    ms.map(|m| clock::fmt_rfc3339(clock::from_ms(m)))
        .serialize(s)
}

fn derived_tracking_id(prefix: &str, line: u64) -> String {
    format!("{prefix}-{line}")
}

/// A listed reject: line, phone, English reason, reason code when stored.
pub type RejectListed = (u64, String, String, Option<String>);

impl Store {
    /// Up to `limit` open rows after `after_id`, in file order, each with the
    /// stored token for its phone (one query per page, not per row).
    pub fn open_rows_page(
        &self,
        campaign: &Campaign,
        account: &str,
        after_id: i64,
        limit: usize,
        include_in_doubt: bool,
    ) -> Result<Vec<WorkRow>> {
        let open_r = open_states_sql("r.");
        let sql = format!(
            "SELECT r.id, r.line, r.phone, r.tracking_id, r.data, r.state, r.attempts, \
                    t.journey_id, t.provider_ref, t.token, t.expires_ms, t.status \
             FROM rows r LEFT JOIN tokens t \
               ON t.account = ?1 AND t.oa_id = ?2 AND t.phone = r.phone AND t.token_type = ?3 \
             WHERE r.campaign_id = ?4 AND {open_r} AND r.id > ?5 \
             ORDER BY r.id LIMIT ?6"
        );
        let mut out = Vec::with_capacity(limit);
        self.db
            .prepare_cached(&sql)
            .and_then(|mut stmt| {
                stmt.query_each(
                    params![
                        account,
                        campaign.oa_id,
                        campaign.token_type,
                        campaign.id,
                        after_id,
                        limit as i64
                    ],
                    |r| {
                        let id: i64 = r.get(0)?;
                        let state: String = r.get(5)?;
                        let Some(state) = RowState::parse(&state) else {
                            return Err(unknown_value(
                                format!("row {id} (table rows) state"),
                                state,
                            ));
                        };
                        if state == RowState::InDoubt && !include_in_doubt {
                            return Ok(());
                        }
                        let line: i64 = r.get(1)?;
                        let tracking: Option<String> = r.get(3)?;
                        let journey_id: Option<String> = r.get(7)?;
                        let token = match journey_id {
                            Some(journey_id) => Some(JourneyToken {
                                journey_id,
                                provider_ref: r.get(8)?,
                                token: r.get(9)?,
                                expires_at: clock::from_ms(r.get(10)?),
                                status: r.get(11)?,
                            }),
                            None => None,
                        };
                        out.push(WorkRow {
                            id,
                            line: line as u64,
                            phone: r.get(2)?,
                            tracking_id: tracking.unwrap_or_else(|| {
                                derived_tracking_id(&campaign.tracking_prefix, line as u64)
                            }),
                            data_json: r.get::<Option<String>>(4)?.unwrap_or_default(),
                            state,
                            attempts: r.get::<i64>(6)? as u32,
                            token,
                        });
                        Ok(())
                    },
                )
            })
            .map_err(|e| self.e(e))?;
        Ok(out)
    }

    /// Whether some phone is on more than one row of the campaign (imported
    /// with `--allow-duplicate-phones`): without, every accepted row has a
    /// `dedup_key` and the import's repeat pass leaves one row per phone.
    pub fn has_repeated_phones(&self, campaign_id: i64) -> Result<bool> {
        Ok(self.counters(campaign_id)?.no_dedup_key > 0)
    }

    /// How many rows a run has left (cheap: counts the partial index).
    pub fn open_count(&self, campaign_id: i64, include_in_doubt: bool) -> Result<u64> {
        let open = open_states_sql("");
        // CASE, not a sum of booleans (PostgreSQL sums no booleans), and
        // CAST: PostgreSQL's SUM of BIGINT is NUMERIC.
        let (open, doubt): (i64, i64) = self
            .db
            .query_row(
                &format!(
                    "SELECT COUNT(*), \
                            CAST(COALESCE(SUM(CASE WHEN state = 'in_doubt' THEN 1 ELSE 0 END), 0) AS BIGINT) \
                     FROM rows WHERE campaign_id = ?1 AND {open}"
                ),
                [campaign_id],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .map_err(|e| self.e(e))?;
        Ok((if include_in_doubt { open } else { open - doubt }) as u64)
    }

    /// Open rows whose phone had a message from the campaign's OA within its
    /// frequency cap as of `now_ms` (for the dry-run plan).
    pub fn would_skip_count(&self, campaign: &Campaign, now_ms: i64) -> Result<u64> {
        let Some(interval) = campaign.min_interval_ms else {
            return Ok(0);
        };
        // Nobody had a message from the OA within the cap (a new OA, a
        // first campaign): nothing to skip, and no pass over the rows.
        let recent: bool = self
            .db
            .prepare_cached("SELECT 1 FROM phone_sends WHERE oa_id = ?1 AND last_ms > ?2 LIMIT 1")
            .and_then(|mut s| s.exists(params![campaign.oa_id, now_ms - interval]))
            .map_err(|e| self.e(e))?;
        if !recent {
            return Ok(0);
        }
        self.db
            .query_row(
                &format!(
                    "SELECT COUNT(*) FROM rows r JOIN phone_sends p ON p.oa_id = ?2 AND p.phone = r.phone \
                     WHERE r.campaign_id = ?1 AND {} AND p.row_id <> r.id AND p.last_ms > ?3",
                    open_states_sql("r.")
                ),
                params![campaign.id, campaign.oa_id, now_ms - interval],
                |r| r.get::<i64>(0),
            )
            .map(|n| n as u64)
            .map_err(|e| self.e(e))
    }

    /// Rows per state, from the campaign's counters (see `counters`).
    pub fn state_counts(&self, campaign_id: i64) -> Result<StateCounts> {
        let c = self.counters(campaign_id)?.states;
        self.all_known(campaign_id, c)
    }

    /// Rows per state counted from the rows, in one pass that needs no
    /// sort (a GROUP BY over a million rows would sort them all, in memory).
    pub(super) fn recount_states(&self, campaign_id: i64) -> Result<StateCounts> {
        // One text for both databases: sums of CASE (PostgreSQL has no
        // TOTAL and sums no booleans), cast back from PostgreSQL's NUMERIC.
        let n = |cond: &str| {
            format!("CAST(COALESCE(SUM(CASE WHEN {cond} THEN 1 ELSE 0 END), 0) AS BIGINT)")
        };
        let sql = format!(
            "SELECT COUNT(*), {}, {}, {}, {}, {}, {}, {}, {}, {}, {} FROM rows WHERE campaign_id = ?1",
            n("state = 'pending'"),
            n("state = 'token_ready'"),
            n("state = 'in_flight'"),
            n("state = 'in_doubt'"),
            n("state = 'sent'"),
            n("state = 'failed'"),
            n("state = 'expired'"),
            n("state = 'skipped'"),
            n("resent_after_doubt <> 0"),
            n("state = 'rejected'"),
        );
        let c = self
            .db
            .prepare_cached(&sql)
            .and_then(|mut stmt| {
                stmt.query_row([campaign_id], |r| {
                    let n = |i: usize| -> std::result::Result<u64, DbError> {
                        Ok(r.get::<i64>(i)? as u64)
                    };
                    Ok(StateCounts {
                        total: n(0)?,
                        pending: n(1)?,
                        token_ready: n(2)?,
                        in_flight: n(3)?,
                        in_doubt: n(4)?,
                        sent: n(5)?,
                        failed: n(6)?,
                        expired: n(7)?,
                        skipped: n(8)?,
                        rejected: n(10)?,
                        resent_after_doubt: n(9)?,
                    })
                })
            })
            .map_err(|e| self.e(e))?;
        self.all_known(campaign_id, c)
    }

    /// The counts, if every row is in a state this build knows.
    fn all_known(&self, campaign_id: i64, c: StateCounts) -> Result<StateCounts> {
        let known = c.pending
            + c.token_ready
            + c.in_flight
            + c.in_doubt
            + c.sent
            + c.failed
            + c.expired
            + c.skipped
            + c.rejected;
        if known != c.total {
            return Err(self.unknown_state(campaign_id));
        }
        Ok(c)
    }

    /// The error for a campaign with a row in a state no build knows
    /// (rare: only when counts do not add up, so its query costs nothing).
    fn unknown_state(&self, campaign_id: i64) -> StoreError {
        let known: Vec<String> = RowState::ALL
            .iter()
            .map(|s| format!("'{}'", s.as_str()))
            .collect();
        let found = self.db.query_row(
            &format!(
                "SELECT id, state FROM rows WHERE campaign_id = ?1 AND state NOT IN ({}) LIMIT 1",
                known.join(", ")
            ),
            [campaign_id],
            |r| Ok((r.get::<i64>(0)?, r.get::<String>(1)?)),
        );
        match found {
            Ok((id, state)) => StoreError::Corrupt {
                path: self.path.clone(),
                what: format!("row {id} (table rows) state"),
                value: state,
            },
            Err(e) => self.e(e),
        }
    }

    /// The first few rejects, for summaries and plans.
    /// `(line, phone, reason, reason code)` of the first `limit` rejects.
    pub fn rejects(&self, campaign_id: i64, limit: usize) -> Result<Vec<RejectListed>> {
        if self.state_counts(campaign_id)?.rejected == 0 {
            return Ok(Vec::new());
        }
        self.db
            .prepare_cached(
                "SELECT line, phone, COALESCE(error, ''), reason_code FROM rows \
                 WHERE campaign_id = ?1 AND state = 'rejected' ORDER BY line LIMIT ?2",
            )
            .and_then(|mut stmt| {
                stmt.query_map(params![campaign_id, limit as i64], |r| {
                    Ok((r.get::<i64>(0)? as u64, r.get(1)?, r.get(2)?, r.get(3)?))
                })
            })
            .map_err(|e| self.e(e))
    }

    /// Most frequent failure reasons, for the summary.
    pub fn top_errors(&self, campaign_id: i64, limit: usize) -> Result<Vec<(String, String, u64)>> {
        if self.state_counts(campaign_id)?.failed == 0 {
            return Ok(Vec::new());
        }
        self.db
            .prepare_cached(
                "SELECT COALESCE(error_code, ''), COALESCE(error, ''), COUNT(*) AS n FROM rows \
                 WHERE campaign_id = ?1 AND state = 'failed' GROUP BY 1, 2 ORDER BY n DESC LIMIT ?2",
            )
            .and_then(|mut stmt| {
                stmt.query_map(params![campaign_id, limit as i64], |r| {
                    Ok((r.get(0)?, r.get(1)?, r.get::<i64>(2)? as u64))
                })
            })
            .map_err(|e| self.e(e))
    }

    /// Every row of a campaign in file order, streamed to `f`.
    pub fn for_each_report_row(
        &self,
        campaign: &Campaign,
        mut f: impl FnMut(&mut ReportRow) -> std::io::Result<()>,
    ) -> Result<std::io::Result<()>> {
        let mut written = Ok(());
        self.db
            .query_while(
                "SELECT line, phone, tracking_id, state, msg_id, error_code, error, attempts, \
                        resent_after_doubt, updated_ms, sent_ms, delivery_status, delivery_ms, \
                        fee_main, fee_token \
                 FROM rows WHERE campaign_id = ?1 ORDER BY line, id",
                [campaign.id],
                |r| {
                    let line = r.get::<i64>(0)? as u64;
                    let state: String = r.get(3)?;
                    let tracking: Option<String> = r.get(2)?;
                    let tracking_id = match tracking {
                        Some(t) => t,
                        None if state == "rejected" => String::new(),
                        None => derived_tracking_id(&campaign.tracking_prefix, line),
                    };
                    let mut row = ReportRow {
                        line,
                        phone: r.get(1)?,
                        tracking_id,
                        state,
                        msg_id: r.get(4)?,
                        note: ErrorNote {
                            error_code: r.get(5)?,
                            error: r.get(6)?,
                        },
                        attempts: r.get::<i64>(7)? as u32,
                        resent_after_doubt: r.get::<i64>(8)? != 0,
                        updated_ms: r.get(9)?,
                        sent_ms: r.get(10)?,
                        delivery_status: r.get(11)?,
                        delivery_ms: r.get(12)?,
                        fees: MessageFees {
                            fee_main: r.get(13)?,
                            fee_token: r.get(14)?,
                        },
                    };
                    // A failed write (a closed pipe) stops the walk. Handed
                    // over `&mut`: a writer may adjust it without a copy.
                    written = f(&mut row);
                    Ok(written.is_ok())
                },
            )
            .map_err(|e| self.e(e))?;
        Ok(written)
    }
}

#[cfg(test)]
mod tests {
    use super::super::test_support::*;
    use super::super::*;
    use crate::model::row_state::open_states_sql;

    #[test]
    fn open_rows_query_uses_the_partial_index() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path().join("s.sqlite")).unwrap();
        assert_uses_open_rows_index(
            &store,
            &format!(
                "SELECT r.id FROM rows r WHERE r.campaign_id = 1 AND {} AND r.id > 0 ORDER BY r.id LIMIT 10",
                open_states_sql("r.")
            ),
        );
    }

    #[test]
    fn an_unknown_row_state_is_an_error_naming_the_row_and_the_value() {
        test_pg::on_both(
            "an_unknown_row_state_is_an_error_naming_the_row_and_the_value",
            |store, _| an_unknown_row_state(store),
        );
    }

    fn an_unknown_row_state(store: &mut Store) {
        let c = new_campaign(store, "c1");
        let ids = import_phones(store, &c, &["84912345670", "84912345671"]);
        assert_eq!(store.state_counts(c.id).unwrap().pending, 2);
        store
            .db
            .execute("UPDATE rows SET state = 'snet' WHERE id = ?1", [ids[1]])
            .unwrap();
        let e = store.state_counts(c.id).unwrap_err();
        assert_eq!(e.kind(), StoreErrorKind::Corrupt, "{e}");
        let msg = e.to_string();
        assert!(
            msg.contains(&format!("row {} (table rows) state", ids[1])) && msg.contains("`snet`"),
            "{msg}"
        );
        assert_eq!(
            store.recount_states(c.id).unwrap_err().kind(),
            StoreErrorKind::Corrupt
        );
    }

    #[test]
    fn counts_pages_and_the_report_read_the_rows_on_both() {
        test_pg::on_both(
            "counts_pages_and_the_report_read_the_rows_on_both",
            |store, _| {
                let c = new_campaign(store, "c1");
                let ids = import_phones(store, &c, &["84912345670", "84912345671", "84912345672"]);
                store
                .db
                .execute_batch(&format!(
                    "UPDATE rows SET state = 'in_doubt' WHERE id = {}; \
                     UPDATE rows SET state = 'failed', error_code = 'e1', error = 'bad' WHERE id = {};",
                    ids[0], ids[1]
                ))
                .unwrap();
                assert_eq!(store.open_count(c.id, true).unwrap(), 2);
                assert_eq!(store.open_count(c.id, false).unwrap(), 1);
                let page = store.open_rows_page(&c, "a", 0, 10, false).unwrap();
                assert_eq!(page.iter().map(|r| r.id).collect::<Vec<_>>(), vec![ids[2]]);
                assert_eq!(page[0].tracking_id, "zb-test-4");
                let counted = store.recount_states(c.id).unwrap();
                assert_eq!(
                    (counted.in_doubt, counted.failed, counted.pending),
                    (1, 1, 1)
                );
                assert_eq!(counted, store.state_counts(c.id).unwrap());
                assert_eq!(
                    store.top_errors(c.id, 5).unwrap(),
                    vec![("e1".to_string(), "bad".to_string(), 1)]
                );
                let mut lines = Vec::new();
                store
                    .for_each_report_row(&c, |r| {
                        lines.push((r.line, r.state.clone()));
                        Ok(())
                    })
                    .unwrap()
                    .unwrap();
                assert_eq!(lines.len(), 3);
                assert_eq!(lines[1], (3, "failed".to_string()));
                // A failing output stops the walk after its first row.
                let mut seen = 0;
                let out = store
                    .for_each_report_row(&c, |_| {
                        seen += 1;
                        Err(std::io::Error::other("closed"))
                    })
                    .unwrap();
                assert!(out.is_err() && seen == 1);
            },
        );
    }
}
