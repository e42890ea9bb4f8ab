//! Typed reads for the faces: what `status`, the console's pages, the API
//! and `/metrics` show. A face gets answers, never a connection: the SQL
//! stays in the store, and a `None` answer means "no such campaign" (the
//! face says it its own way: a usage error, a 404).

use super::summary::{status_lines, CampaignStatusLine, ErrorLine};
use super::{CoreError, Workspace};
use crate::model::row_state::RowState;
use crate::store::{Campaign, Store};

/// One row as a page lists it (rejects, the preview, rows in doubt): its
/// line, its phone (masked) and its reason or its template data (JSON).
pub use crate::store::WebRow as RowView;

/// A reading connection to the state database. `serve` keeps one beside
/// its writing connection, so slow reads never hold up a callback (WAL).
pub struct Reader {
    pub(super) store: Store,
}

/// What `/metrics` reads from the database at each scrape.
#[derive(Debug, Default)]
pub struct MetricsFigures {
    /// (campaign, state, rows); states named as in `status --json`.
    pub rows: Vec<(String, String, i64)>,
    /// (oa_id, messages counted today, Asia/Ho_Chi_Minh).
    pub quota_used: Vec<(String, i64)>,
    /// Stored delivery events that match no row yet.
    pub unmatched: i64,
}

impl Workspace {
    /// A reading connection (the database is created if it is not there:
    /// `serve` starts on an empty state).
    pub fn reader(&self) -> Result<Reader, CoreError> {
        Ok(Reader {
            store: self.open_store()?,
        })
    }

    /// `status`: every campaign's line, or the named one's. `None` when
    /// there is no state database yet (reading never creates one).
    pub fn status(&self, only: Option<&str>) -> Result<Option<Vec<CampaignStatusLine>>, CoreError> {
        match self.existing_store()? {
            Some(store) => Ok(Some(status_lines(&store, only)?)),
            None => Ok(None),
        }
    }
}

impl Reader {
    fn campaign(&self, name: &str) -> Result<Option<Campaign>, CoreError> {
        Ok(self.store.find_campaign(name)?)
    }

    /// Every campaign's status line (the objects of `status --json`).
    pub fn status_all(&self) -> Result<Vec<CampaignStatusLine>, CoreError> {
        Ok(status_lines(&self.store, None)?)
    }

    /// One campaign's status line.
    pub fn status_of(&self, name: &str) -> Result<Option<CampaignStatusLine>, CoreError> {
        Ok(status_lines(&self.store, Some(name))?.into_iter().next())
    }

    pub fn exists(&self, name: &str) -> Result<bool, CoreError> {
        Ok(self.campaign(name)?.is_some())
    }

    /// One page of a campaign's rows in `state`, in file order, phones masked.
    pub fn rows_page(
        &self,
        name: &str,
        state: RowState,
        offset: u64,
        limit: u64,
    ) -> Result<Option<Vec<RowView>>, CoreError> {
        let Some(c) = self.campaign(name)? else {
            return Ok(None);
        };
        let mut rows = self
            .store
            .rows_in_state(c.id, state.as_str(), offset, limit)?;
        for r in &mut rows {
            r.phone = crate::model::phone::mask(&r.phone);
        }
        Ok(Some(rows))
    }

    /// The campaign's template parameters (its CSV columns), in order.
    pub fn template_keys(&self, name: &str) -> Result<Option<Vec<String>>, CoreError> {
        Ok(self.campaign(name)?.map(|c| c.template_keys))
    }

    /// The campaign's test sends, newest first, phones masked.
    pub fn test_sends(
        &self,
        name: &str,
        limit: usize,
    ) -> Result<Option<Vec<super::TestSend>>, CoreError> {
        let Some(c) = self.campaign(name)? else {
            return Ok(None);
        };
        let mut list = self.store.test_sends(c.id, limit)?;
        for t in &mut list {
            t.phone = crate::model::phone::mask(&t.phone);
        }
        Ok(Some(list))
    }

    /// The most frequent errors of the campaign's rows.
    pub fn top_errors(
        &self,
        name: &str,
        limit: usize,
    ) -> Result<Option<Vec<ErrorLine>>, CoreError> {
        let Some(c) = self.campaign(name)? else {
            return Ok(None);
        };
        Ok(Some(ErrorLine::top(&self.store, c.id, limit)?))
    }

    /// Rows per campaign and state, quota used today per OA, unmatched events.
    pub fn metrics(&self) -> Result<MetricsFigures, CoreError> {
        let store = &self.store;
        let mut rows = Vec::new();
        for c in store.list_campaigns()? {
            let counts = store.state_counts(c.id)?;
            // Field names are the state names (the same as `status --json`).
            if let Ok(serde_json::Value::Object(map)) = serde_json::to_value(&counts) {
                for (state, n) in map {
                    if state == "total" {
                        continue;
                    }
                    if let Some(n) = n.as_i64() {
                        rows.push((c.name.clone(), state, n));
                    }
                }
            }
        }
        let quota_used = store
            .quota_used_by_oa(&crate::model::clock::today_key())?
            .into_iter()
            .map(|(oa, n)| (oa, n as i64))
            .collect();
        let unmatched = store.unmatched_events()? as i64;
        Ok(MetricsFigures {
            rows,
            quota_used,
            unmatched,
        })
    }
}
