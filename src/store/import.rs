//! The import: CSV records into a campaign's rows, batch by batch, with
//! how far it got, so a killed import resumes after its last whole batch.

use rusqlite::{params, Connection, OptionalExtension};

use super::errors::sql_err;
use super::{Result, Store};
use crate::quota;

/// One CSV record on its way into the campaign.
pub enum ImportRow<'a> {
    Accepted {
        line: u64,
        phone: &'a str,
        /// Given in the CSV; `None` means derived from prefix and line.
        tracking_id: Option<&'a str>,
        /// JSON array of template values in `template_keys` order.
        data_json: &'a str,
    },
    Rejected {
        line: u64,
        raw_phone: &'a str,
        reason: &'a str,
    },
}

#[derive(Debug, Default, Clone, Copy)]
pub struct ImportCounts {
    pub accepted: u64,
    pub rejected: u64,
}

impl Store {
    /// Pages of WAL after which a commit checkpoints (each checkpoint
    /// fsyncs). A bulk import raises it for its own connection: a million
    /// rows then fsync a handful of times instead of some forty.
    pub fn set_wal_autocheckpoint(&self, pages: u32) -> Result<()> {
        self.conn
            .query_row(&format!("PRAGMA wal_autocheckpoint = {pages}"), [], |_| {
                Ok(())
            })
            .map_err(|e| self.e(e))
    }

    /// Insert one batch of CSV records in one transaction, recording how far
    /// the import got so a killed import resumes after the last whole batch.
    /// A phone already in the campaign (when `dedup`) becomes a rejected row
    /// naming the line that has it.
    pub fn import_batch(
        &mut self,
        campaign_id: i64,
        rows: &[ImportRow<'_>],
        through_line: u64,
        done: bool,
        dedup: bool,
    ) -> Result<ImportCounts> {
        let path = self.path.clone();
        let err = |e| sql_err(&path, e);
        let now = quota::now_ms();
        let tx = self.conn.transaction().map_err(err)?;
        let mut counts = ImportCounts::default();
        {
            let mut insert = tx
                .prepare_cached(
                    "INSERT OR IGNORE INTO rows (campaign_id, line, phone, dedup_key, tracking_id, data, state, updated_ms) \
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, 'pending', ?7)",
                )
                .map_err(err)?;
            let mut reject = tx
                .prepare_cached(
                    "INSERT INTO rows (campaign_id, line, phone, state, error_code, error, updated_ms) \
                     VALUES (?1, ?2, ?3, 'rejected', ?4, ?5, ?6)",
                )
                .map_err(err)?;
            for row in rows {
                match *row {
                    ImportRow::Accepted {
                        line,
                        phone,
                        tracking_id,
                        data_json,
                    } => {
                        let key: Option<i64> = if dedup { phone.parse().ok() } else { None };
                        let inserted = insert
                            .execute(params![
                                campaign_id,
                                line as i64,
                                phone,
                                key,
                                tracking_id,
                                data_json,
                                now
                            ])
                            .map_err(err)?;
                        if inserted == 1 {
                            counts.accepted += 1;
                            continue;
                        }
                        // Ignored: a duplicate phone or tracking id. Say which line has it.
                        let (code, reason) =
                            duplicate_reason(&tx, campaign_id, key, tracking_id).map_err(err)?;
                        reject
                            .execute(params![campaign_id, line as i64, phone, code, reason, now])
                            .map_err(err)?;
                        counts.rejected += 1;
                    }
                    ImportRow::Rejected {
                        line,
                        raw_phone,
                        reason,
                    } => {
                        reject
                            .execute(params![
                                campaign_id,
                                line as i64,
                                raw_phone,
                                "invalid_row",
                                reason,
                                now
                            ])
                            .map_err(err)?;
                        counts.rejected += 1;
                    }
                }
            }
        }
        tx.execute(
            "UPDATE campaigns SET imported_through_line = ?2, import_done = ?3, \
             status = CASE WHEN ?3 THEN 'ready' ELSE status END, updated_ms = ?4 WHERE id = ?1",
            params![campaign_id, through_line as i64, done, now],
        )
        .map_err(err)?;
        tx.commit().map_err(err)?;
        Ok(counts)
    }
}

fn duplicate_reason(
    tx: &Connection,
    campaign_id: i64,
    key: Option<i64>,
    tracking_id: Option<&str>,
) -> rusqlite::Result<(&'static str, String)> {
    if let Some(key) = key {
        let first: Option<i64> = tx
            .query_row(
                "SELECT line FROM rows WHERE campaign_id = ?1 AND dedup_key = ?2",
                params![campaign_id, key],
                |r| r.get(0),
            )
            .optional()?;
        if let Some(first) = first {
            return Ok((
                "duplicate_phone",
                format!("duplicate phone: already at line {first} (use --allow-duplicate-phones to send to both)"),
            ));
        }
    }
    let first: Option<i64> = tx
        .query_row(
            "SELECT line FROM rows WHERE campaign_id = ?1 AND tracking_id = ?2",
            params![campaign_id, tracking_id],
            |r| r.get(0),
        )
        .optional()?;
    Ok((
        "duplicate_tracking_id",
        match first {
            Some(first) => format!("duplicate tracking_id: already used at line {first}"),
            None => "duplicate row".to_string(),
        },
    ))
}

#[cfg(test)]
mod tests {
    use super::super::test_support::*;
    use super::super::*;

    #[test]
    fn import_rejects_duplicates_with_the_first_line_and_keeps_every_row() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = Store::open(&dir.path().join("s.sqlite")).unwrap();
        let c = new_campaign(&mut store, "c1");
        let rows = [
            ImportRow::Accepted {
                line: 2,
                phone: "84912345678",
                tracking_id: None,
                data_json: r#"["A","1"]"#,
            },
            ImportRow::Rejected {
                line: 3,
                raw_phone: "abc",
                reason: "bad phone",
            },
            ImportRow::Accepted {
                line: 4,
                phone: "84912345678",
                tracking_id: None,
                data_json: r#"["B","2"]"#,
            },
            ImportRow::Accepted {
                line: 5,
                phone: "84987654321",
                tracking_id: Some("t-1"),
                data_json: r#"["C","3"]"#,
            },
            ImportRow::Accepted {
                line: 6,
                phone: "84911111111",
                tracking_id: Some("t-1"),
                data_json: r#"["D","4"]"#,
            },
        ];
        let counts = store.import_batch(c.id, &rows, 6, true, true).unwrap();
        assert_eq!((counts.accepted, counts.rejected), (2, 3));
        let rejects = store.rejects(c.id, 10).unwrap();
        assert_eq!(rejects.len(), 3);
        assert!(rejects[1].2.contains("already at line 2"), "{rejects:?}");
        assert!(rejects[2].2.contains("tracking_id"), "{rejects:?}");
        let c = store.find_campaign("c1").unwrap().unwrap();
        assert!(c.import_done);
        assert_eq!(c.status, CampaignStatus::Ready);

        let page = store.open_rows_page(&c, "acct", 0, 10, false).unwrap();
        assert_eq!(page.len(), 2);
        assert_eq!(page[0].tracking_id, "zb-test-2");
        assert_eq!(page[1].tracking_id, "t-1");
    }
}
