//! What the web console remembers about a campaign: whether a person wants
//! it running (so a restarted `serve` carries on with it) and the options
//! given on its upload form that the campaign row does not keep (profile,
//! daily quota). Never a secret: a profile names its key's variable only.

use super::db::{params, OptionalExtension};

use super::{Result, RowState, Store};

/// Appended to the schema's migrations (see schema.rs).
pub(super) const WEB_MIGRATION: &str = r#"
    CREATE TABLE IF NOT EXISTS web_campaigns (
        campaign_id INTEGER PRIMARY KEY REFERENCES campaigns(id),
        wanted_running INTEGER NOT NULL DEFAULT 0,
        options TEXT NOT NULL DEFAULT '{}',
        updated_ms INTEGER NOT NULL
    );
"#;

/// A rejected row as the download reads it: line, English reason, reason
/// code and parameters (JSON) when stored.
pub type StoredReject = (u64, String, Option<String>, Option<String>);

/// One row of a page listing (rejects, previews, in-doubt rows).
#[derive(Debug, Clone)]
pub struct WebRow {
    pub line: u64,
    pub phone: String,
    /// The reason (rejects, failures) or the template data as JSON (preview).
    pub text: String,
    /// A reject's reason code and parameters (JSON), when stored.
    pub reason_code: Option<String>,
    pub reason_params: Option<String>,
}

fn now_ms() -> i64 {
    crate::model::clock::now_ms()
}

impl Store {
    /// Remember the form's options (JSON) for the campaign.
    pub fn set_web_options(&mut self, campaign_id: i64, options: &str) -> Result<()> {
        self.db
            .execute(
                "INSERT INTO web_campaigns (campaign_id, options, updated_ms) VALUES (?1, ?2, ?3) \
                 ON CONFLICT(campaign_id) DO UPDATE SET options = ?2, updated_ms = ?3",
                params![campaign_id, options, now_ms()],
            )
            .map_err(|e| self.e(e))?;
        Ok(())
    }

    pub fn web_options(&self, campaign_id: i64) -> Result<Option<String>> {
        self.db
            .query_row(
                "SELECT options FROM web_campaigns WHERE campaign_id = ?1",
                [campaign_id],
                |r| r.get(0),
            )
            .optional()
            .map_err(|e| self.e(e))
    }

    /// A person started (true) or paused (false) the campaign from the web.
    pub fn set_wanted_running(&mut self, campaign_id: i64, wanted: bool) -> Result<()> {
        self.db
            .execute(
                "INSERT INTO web_campaigns (campaign_id, wanted_running, updated_ms) VALUES (?1, ?2, ?3) \
                 ON CONFLICT(campaign_id) DO UPDATE SET wanted_running = ?2, updated_ms = ?3",
                params![campaign_id, wanted as i64, now_ms()],
            )
            .map_err(|e| self.e(e))?;
        Ok(())
    }

    /// Campaign names a person started from the web and did not pause.
    pub fn wanted_running(&self) -> Result<Vec<String>> {
        self.texts(
            "SELECT c.name FROM web_campaigns w JOIN campaigns c ON c.id = w.campaign_id \
             WHERE w.wanted_running = 1 ORDER BY c.id",
        )
    }

    /// Rejected rows after `after_line`, in file order: (line, reason), at
    /// most `limit` (a keyset page: no OFFSET to walk past a million).
    pub fn rejects_after(
        &self,
        campaign_id: i64,
        after_line: u64,
        limit: u64,
    ) -> Result<Vec<StoredReject>> {
        self.db
            .prepare_cached(
                "SELECT line, COALESCE(error, ''), reason_code, reason_params FROM rows \
                 WHERE campaign_id = ?1 AND line > ?2 AND state = 'rejected' \
                 ORDER BY line LIMIT ?3",
            )
            .and_then(|mut stmt| {
                stmt.query_map(params![campaign_id, after_line as i64, limit as i64], |r| {
                    Ok((r.get::<i64>(0)? as u64, r.get(1)?, r.get(2)?, r.get(3)?))
                })
            })
            .map_err(|e| self.e(e))
    }

    /// Rows of one state in file order, a page at a time: `text` is the
    /// row's error (rejects, failures, in doubt) or its data (`pending`).
    pub fn rows_in_state(
        &self,
        campaign_id: i64,
        state: &str,
        offset: u64,
        limit: u64,
    ) -> Result<Vec<WebRow>> {
        let Some(state) = RowState::parse(state) else {
            return Ok(Vec::new());
        };
        // The counters say when there is nothing to find: a page of a
        // state no row is in must not walk a million rows to say so.
        let c = self.state_counts(campaign_id)?;
        let in_state = match state {
            RowState::Pending => c.pending,
            RowState::TokenReady => c.token_ready,
            RowState::InFlight => c.in_flight,
            RowState::InDoubt => c.in_doubt,
            RowState::Sent => c.sent,
            RowState::Failed => c.failed,
            RowState::Rejected => c.rejected,
            RowState::Expired => c.expired,
            RowState::Skipped => c.skipped,
        };
        if offset >= in_state || limit == 0 {
            return Ok(Vec::new());
        }
        let column = if state == RowState::Pending {
            "COALESCE(data, '')"
        } else {
            "COALESCE(error, '')"
        };
        // The state as a literal: a partial index on it (rejects) applies.
        let sql = format!(
            "SELECT line, phone, {column}, reason_code, reason_params FROM rows WHERE campaign_id = ?1 AND state = '{}' \
             ORDER BY line, id LIMIT ?2 OFFSET ?3",
            state.as_str()
        );
        self.db
            .prepare_cached(&sql)
            .and_then(|mut stmt| {
                stmt.query_map(params![campaign_id, limit as i64, offset as i64], |r| {
                    Ok(WebRow {
                        line: r.get::<i64>(0)? as u64,
                        phone: r.get(1)?,
                        text: r.get(2)?,
                        reason_code: r.get(3)?,
                        reason_params: r.get(4)?,
                    })
                })
            })
            .map_err(|e| self.e(e))
    }
}

#[cfg(test)]
mod tests {
    use super::super::test_pg::on_both;
    use super::super::test_support::*;
    use super::super::*;

    #[test]
    fn wanted_running_survives_reopening_and_pausing_clears_it() {
        on_both(
            "wanted_running_survives_reopening_and_pausing_clears_it",
            |store, place| {
                let c = new_campaign(store, "web-a");
                store.set_web_options(c.id, r#"{"daily_quota":5}"#).unwrap();
                store.set_web_options(c.id, r#"{"daily_quota":6}"#).unwrap();
                store.set_wanted_running(c.id, true).unwrap();
                let mut store = place.open();
                assert_eq!(store.wanted_running().unwrap(), vec!["web-a".to_string()]);
                assert_eq!(
                    store.web_options(c.id).unwrap().as_deref(),
                    Some(r#"{"daily_quota":6}"#)
                );
                store.set_wanted_running(c.id, false).unwrap();
                assert!(store.wanted_running().unwrap().is_empty());
                // Options outlive the flag.
                assert!(store.web_options(c.id).unwrap().is_some());
                assert_eq!(store.web_options(c.id + 1).unwrap(), None);
            },
        );
    }

    #[test]
    fn store_pages_rows_by_state_and_rejects_after_a_line() {
        on_both(
            "store_pages_rows_by_state_and_rejects_after_a_line",
            |store, _| {
                let c = new_campaign(store, "web-b");
                let rows = [
                    ImportRow::Accepted {
                        line: 2,
                        phone: "84912345670",
                        tracking_id: None,
                        data_json: r#"["a"]"#,
                    },
                    ImportRow::Rejected {
                        line: 3,
                        raw_phone: "12",
                        reason: "bad phone",
                        code: None,
                        params: None,
                    },
                    ImportRow::Accepted {
                        line: 4,
                        phone: "84912345671",
                        tracking_id: None,
                        data_json: r#"["b"]"#,
                    },
                    ImportRow::Rejected {
                        line: 5,
                        raw_phone: "",
                        reason: "no phone",
                        code: None,
                        params: None,
                    },
                ];
                store.import_batch(c.id, &rows, 5, true, true).unwrap();
                let pending = store.rows_in_state(c.id, "pending", 0, 10).unwrap();
                assert_eq!(
                    pending
                        .iter()
                        .map(|r| (r.line, r.phone.as_str(), r.text.as_str()))
                        .collect::<Vec<_>>(),
                    [
                        (2, "84912345670", r#"["a"]"#),
                        (4, "84912345671", r#"["b"]"#)
                    ]
                );
                let second = store.rows_in_state(c.id, "pending", 1, 10).unwrap();
                assert_eq!(second.iter().map(|r| r.line).collect::<Vec<_>>(), [4]);
                let rejected = store.rows_in_state(c.id, "rejected", 0, 1).unwrap();
                assert_eq!(
                    (rejected.len(), rejected[0].text.as_str()),
                    (1, "bad phone")
                );
                assert!(store.rows_in_state(c.id, "sent", 0, 10).unwrap().is_empty());
                assert!(store
                    .rows_in_state(c.id, "nonsense", 0, 10)
                    .unwrap()
                    .is_empty());
                assert_eq!(
                    store.rejects_after(c.id, 0, 10).unwrap(),
                    [
                        (3, "bad phone".to_string(), None, None),
                        (5, "no phone".to_string(), None, None)
                    ]
                );
                assert_eq!(
                    store.rejects_after(c.id, 3, 10).unwrap(),
                    [(5, "no phone".to_string(), None, None)]
                );
            },
        );
    }
}
