//! The import: CSV records into a campaign's rows, batch by batch, with
//! how far it got, so a killed import resumes after its last whole batch.
//!
//! Rows are loaded without any unique index (a random-order unique b-tree
//! over a million phones was a third of the import's CPU); repeated phones
//! and tracking ids are found once the whole file is in, by one sort, and
//! the later lines marked rejected in the transaction of the last batch,
//! the one that marks the import done. Until that commit the campaign is
//! not `import_done`, so nothing is sent, and a resume (after a kill at any
//! point) redoes the pass over all the loaded rows: the result is the same
//! as an uninterrupted import's.

use std::fmt::Write as _;
use std::sync::LazyLock;

use super::db::{params, DbError, Stmt, Value};

use super::counters;
use super::errors::sql_err;
use super::events;
use super::repeats::{settle_repeats, PhoneKeys};
use super::{Result, Store};
use crate::model::clock;

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
        /// The English text, and the code with its parameters (JSON) when
        /// the reason has them (see model/reason.rs).
        reason: &'a str,
        code: Option<&'a str>,
        params: Option<&'a str>,
    },
}

#[derive(Debug, Default, Clone, Copy)]
pub struct ImportCounts {
    pub accepted: u64,
    pub rejected: u64,
}

/// Accepted rows per INSERT statement (fewer statements to run; SQLite
/// allows 32766 parameters, this uses 2 + 5 × 64).
const ROWS_PER_INSERT: usize = 64;

static INSERT_MANY_SQL: LazyLock<String> = LazyLock::new(|| insert_accepted_sql(ROWS_PER_INSERT));
static INSERT_ONE_SQL: LazyLock<String> = LazyLock::new(|| insert_accepted_sql(1));

fn insert_accepted_sql(rows: usize) -> String {
    let mut sql = String::from(
        "INSERT INTO rows (campaign_id, updated_ms, line, phone, dedup_key, tracking_id, data, state) VALUES ",
    );
    for i in 0..rows {
        let p = 3 + i * 5;
        let sep = if i == 0 { "" } else { ", " };
        let _ = write!(
            sql,
            "{sep}(?1, ?2, ?{}, ?{}, ?{}, ?{}, ?{}, 'pending')",
            p,
            p + 1,
            p + 2,
            p + 3,
            p + 4
        );
    }
    sql
}

/// An accepted record as it is inserted.
struct Loaded<'a> {
    line: u64,
    phone: &'a str,
    key: Option<i64>,
    tracking_id: Option<&'a str>,
    data_json: &'a str,
}

impl Store {
    /// Pages of WAL after which a commit checkpoints (each checkpoint
    /// fsyncs). A bulk import raises it for its own connection: a million
    /// rows then fsync a handful of times instead of some forty.
    pub fn set_wal_autocheckpoint(&self, pages: u32) -> Result<()> {
        if self.db.is_postgres() {
            return Ok(());
        }
        self.db
            .query_row(&format!("PRAGMA wal_autocheckpoint = {pages}"), (), |_| {
                Ok(())
            })
            .map_err(|e| self.e(e))
    }

    /// Insert one batch of CSV records in one transaction, recording how far
    /// the import got so a killed import resumes after the last whole batch.
    /// The accepted rows' phone keys (when `dedup`) are appended to `keys`;
    /// the last batch (`done`) then settles repeats over all of them (`keys`
    /// must hold every loaded row's: see [`Store::loaded_phone_keys`]) and
    /// marks the import done, in the same transaction. Returns the batch's
    /// counts and how many loaded rows (of any batch) the pass rejected.
    pub fn load_batch(
        &mut self,
        campaign_id: i64,
        rows: &[ImportRow<'_>],
        through_line: u64,
        dedup: bool,
        keys: &mut PhoneKeys,
        done: bool,
    ) -> Result<(ImportCounts, u64)> {
        let path = self.path.clone();
        let err = |e| sql_err(&path, e);
        let now = clock::now_ms();
        let tx = self.db.transaction().map_err(err)?;
        let mut counts = ImportCounts::default();
        let mut without_key = 0;
        {
            let mut many = tx.prepare_cached(&INSERT_MANY_SQL).map_err(err)?;
            let mut one = tx.prepare_cached(&INSERT_ONE_SQL).map_err(err)?;
            let mut reject = tx
                .prepare_cached(
                    "INSERT INTO rows (campaign_id, line, phone, state, error_code, error, updated_ms, \
                     reason_code, reason_params) \
                     VALUES (?1, ?2, ?3, 'rejected', 'invalid_row', ?4, ?5, ?6, ?7)",
                )
                .map_err(err)?;
            // Runs of accepted records go in ROWS_PER_INSERT at a time, in
            // file order (row ids follow the lines: the send order).
            let mut run: Vec<Loaded<'_>> = Vec::with_capacity(ROWS_PER_INSERT);
            for row in rows {
                match *row {
                    ImportRow::Accepted {
                        line,
                        phone,
                        tracking_id,
                        data_json,
                    } => {
                        let key: Option<i64> = if dedup { phone.parse().ok() } else { None };
                        without_key += u64::from(key.is_none());
                        if let Some(key) = key {
                            keys.push((key, line));
                        }
                        run.push(Loaded {
                            line,
                            phone,
                            key,
                            tracking_id,
                            data_json,
                        });
                        counts.accepted += 1;
                        if run.len() == ROWS_PER_INSERT {
                            insert_run(&mut many, &mut one, campaign_id, now, &run).map_err(err)?;
                            run.clear();
                        }
                    }
                    ImportRow::Rejected {
                        line,
                        raw_phone,
                        reason,
                        code,
                        params,
                    } => {
                        insert_run(&mut many, &mut one, campaign_id, now, &run).map_err(err)?;
                        run.clear();
                        reject
                            .execute(params![
                                campaign_id,
                                line as i64,
                                raw_phone,
                                reason,
                                now,
                                code,
                                params
                            ])
                            .map_err(err)?;
                        counts.rejected += 1;
                    }
                }
            }
            insert_run(&mut many, &mut one, campaign_id, now, &run).map_err(err)?;
        }
        // Inserts are counted here, a batch at a time (updates by trigger).
        counters::add_imported(
            &tx,
            campaign_id,
            counts.accepted,
            counts.rejected,
            without_key,
        )
        .map_err(err)?;
        let repeats = if done {
            settle_repeats(&tx, campaign_id, std::mem::take(keys), now).map_err(err)?
        } else {
            0
        };
        events::rematch_events(&tx).map_err(err)?;
        tx.execute(
            "UPDATE campaigns SET imported_through_line = ?2, import_done = ?3, \
             status = CASE WHEN ?3 <> 0 THEN 'ready' ELSE status END, updated_ms = ?4 WHERE id = ?1",
            params![campaign_id, through_line as i64, done, now],
        )
        .map_err(err)?;
        tx.commit().map_err(err)?;
        Ok((counts, repeats))
    }

    /// The phone keys of the rows an earlier, interrupted import loaded:
    /// where a resumed import's `keys` start.
    pub fn loaded_phone_keys(&self, campaign_id: i64) -> Result<PhoneKeys> {
        let mut stmt = self
            .db
            .prepare(
                "SELECT dedup_key, line FROM rows \
                 WHERE campaign_id = ?1 AND dedup_key IS NOT NULL AND state = 'pending'",
            )
            .map_err(|e| self.e(e))?;
        let keys = stmt
            .query_map([campaign_id], |r| {
                Ok((r.get::<i64>(0)?, r.get::<i64>(1)? as u64))
            })
            .map_err(|e| self.e(e))?;
        Ok(keys)
    }

    /// One batch then, when `done`, the de-duplication pass over all the
    /// campaign's loaded rows: a whole import in small steps, for tests
    /// (the import itself keeps the keys between batches: `load_batch`).
    #[cfg(test)]
    pub fn import_batch(
        &mut self,
        campaign_id: i64,
        rows: &[ImportRow<'_>],
        through_line: u64,
        done: bool,
        dedup: bool,
    ) -> Result<ImportCounts> {
        let mut keys = if done {
            self.loaded_phone_keys(campaign_id)?
        } else {
            Vec::new()
        };
        let (mut counts, repeats) =
            self.load_batch(campaign_id, rows, through_line, dedup, &mut keys, done)?;
        counts.accepted = counts.accepted.saturating_sub(repeats);
        counts.rejected += repeats;
        Ok(counts)
    }
}

fn insert_run(
    many: &mut Stmt<'_>,
    one: &mut Stmt<'_>,
    campaign_id: i64,
    now: i64,
    run: &[Loaded<'_>],
) -> Result<(), DbError> {
    let mut chunks = run.chunks_exact(ROWS_PER_INSERT);
    for chunk in &mut chunks {
        bind_and_insert(many, campaign_id, now, chunk)?;
    }
    for row in chunks.remainder() {
        bind_and_insert(one, campaign_id, now, std::slice::from_ref(row))?;
    }
    Ok(())
}

fn bind_and_insert(
    stmt: &mut Stmt<'_>,
    campaign_id: i64,
    now: i64,
    rows: &[Loaded<'_>],
) -> Result<(), DbError> {
    let mut values = Vec::with_capacity(2 + rows.len() * 5);
    values.extend([Value::Int(campaign_id), Value::Int(now)]);
    for r in rows {
        values.extend([
            Value::Int(r.line as i64),
            Value::Text(r.phone),
            r.key.map_or(Value::Null, Value::Int),
            r.tracking_id.map_or(Value::Null, Value::Text),
            Value::Text(r.data_json),
        ]);
    }
    stmt.execute(values)?;
    Ok(())
}

#[cfg(test)]
pub(super) mod tests {
    use super::super::test_support::*;
    use super::super::*;

    #[test]
    fn store_import_on_both_rejects_repeats_counts_and_marks_done() {
        super::super::test_pg::on_both(
            "store_import_on_both_rejects_repeats_counts_and_marks_done",
            |store, _| {
                let c = new_campaign(store, "c1");
                let phones: Vec<String> = (0..150).map(|i| format!("849{:08}", i % 100)).collect();
                let rows: Vec<ImportRow<'_>> = phones
                    .iter()
                    .enumerate()
                    .map(|(i, phone)| {
                        accepted(i as u64 + 2, phone, (i == 7 || i == 9).then_some("t-1"))
                    })
                    .chain([ImportRow::Rejected {
                        line: 152,
                        raw_phone: "abc",
                        reason: "bad phone",
                        code: None,
                        params: None,
                    }])
                    .collect();
                // Two batches: the repeat pass runs with the last.
                store
                    .import_batch(c.id, &rows[..70], 71, false, true)
                    .unwrap();
                let counts = store
                    .import_batch(c.id, &rows[70..], 152, true, true)
                    .unwrap();
                // 49 later phones repeat an earlier one (lines 102–150) and line 11
                // repeats line 9's tracking id (so line 111, its phone, stays).
                assert_eq!((counts.accepted, counts.rejected), (30, 51));
                let rejected: Vec<(i64, String)> = store
                    .db
                    .query_map(
                        "SELECT line, error FROM rows WHERE campaign_id = ?1 AND state = 'rejected' \
                         ORDER BY line",
                        [c.id],
                        |r| Ok((r.get(0)?, r.get(1)?)),
                    )
                    .unwrap();
                assert_eq!(rejected.len(), 51, "{rejected:?}");
                assert!(rejected
                    .iter()
                    .any(|(l, e)| *l == 11 && e.contains("tracking_id")));
                assert!(rejected
                    .iter()
                    .any(|(l, e)| *l == 102 && e.contains("line 2")));
                let (total, pending, rej): (i64, i64, i64) = store
                    .db
                    .query_row(
                        "SELECT total, pending, rejected FROM campaign_counts WHERE campaign_id = ?1",
                        [c.id],
                        |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
                    )
                    .unwrap();
                assert_eq!((total, pending, rej), (151, 100, 51));
                let c = store.find_campaign("c1").unwrap().unwrap();
                assert!(c.import_done);
                assert_eq!(c.status, CampaignStatus::Ready);
                assert_eq!(c.imported_through_line, 152);
            },
        );
    }

    #[test]
    fn import_rejects_duplicates_with_the_first_line_and_keeps_every_row() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = Store::open(dir.path().join("s.sqlite")).unwrap();
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
                code: None,
                params: None,
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

    /// An accepted row with no template data (the store's tests' rows).
    pub(in crate::store) fn accepted<'a>(
        line: u64,
        phone: &'a str,
        tracking_id: Option<&'a str>,
    ) -> ImportRow<'a> {
        ImportRow::Accepted {
            line,
            phone,
            tracking_id,
            data_json: "[]",
        }
    }

    /// `(line, state, error)` of every row, by line.
    fn fates(store: &Store, campaign_id: i64) -> Vec<(i64, String, Option<String>)> {
        store
            .db
            .prepare("SELECT line, state, error FROM rows WHERE campaign_id = ?1 ORDER BY line")
            .unwrap()
            .query_map([campaign_id], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
            .unwrap()
    }

    #[test]
    fn repeats_are_settled_line_by_line_as_a_per_row_check_would() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = Store::open(dir.path().join("s.sqlite")).unwrap();
        let c = new_campaign(&mut store, "c1");
        let (a, b, cc) = ("84912345671", "84912345672", "84912345673");
        let rows = [
            accepted(2, a, Some("t1")),
            accepted(3, a, Some("t2")),
            // t2's line 3 lost its phone: t2 is free.
            accepted(4, b, Some("t2")),
            accepted(5, cc, Some("t1")),
            // cc's line 5 lost its tracking id: cc is free.
            accepted(6, cc, Some("t3")),
            accepted(7, b, None),
        ];
        let counts = store.import_batch(c.id, &rows, 7, true, true).unwrap();
        assert_eq!((counts.accepted, counts.rejected), (3, 3));
        let phone = |l: u64| {
            format!("duplicate phone: already at line {l} (use --allow-duplicate-phones to send to both)")
        };
        let t = |l: u64| format!("duplicate tracking_id: already used at line {l}");
        let p = "pending".to_string();
        let r = "rejected".to_string();
        assert_eq!(
            fates(&store, c.id),
            vec![
                (2, p.clone(), None),
                (3, r.clone(), Some(phone(2))),
                (4, p.clone(), None),
                (5, r.clone(), Some(t(2))),
                (6, p.clone(), None),
                (7, r.clone(), Some(phone(4))),
            ]
        );
        let codes: Vec<Option<String>> = store
            .db
            .prepare("SELECT error_code FROM rows WHERE state = 'rejected' ORDER BY line")
            .unwrap()
            .query_map((), |r| r.get(0))
            .unwrap();
        let code = |s: &str| Some(s.to_string());
        assert_eq!(
            codes,
            vec![
                code("duplicate_phone"),
                code("duplicate_tracking_id"),
                code("duplicate_phone")
            ]
        );
    }

    #[test]
    fn a_load_stopped_before_the_pass_is_not_done_and_resumes_to_the_same_fates() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = Store::open(dir.path().join("s.sqlite")).unwrap();
        let phones: Vec<String> = (0..300).map(|i| format!("8491{:07}", i % 120)).collect();
        let tracking: Vec<String> = (0..300).map(|i| format!("t{}", i % 170)).collect();
        let rows: Vec<ImportRow<'_>> = (0..300)
            .map(|i| {
                let t = (i % 4 == 0).then(|| tracking[i].as_str());
                accepted(i as u64 + 2, &phones[i], t)
            })
            .collect();
        let whole = new_campaign(&mut store, "whole");
        store
            .import_batch(whole.id, &rows, 301, true, true)
            .unwrap();

        let split = new_campaign(&mut store, "split");
        let mut keys = Vec::new();
        store
            .load_batch(split.id, &rows[..100], 101, true, &mut keys, false)
            .unwrap();
        store
            .load_batch(split.id, &rows[100..], 301, true, &mut keys, false)
            .unwrap();
        // Killed here: the keys are lost, nothing is settled, nothing sendable.
        drop(keys);
        let c = store.find_campaign("split").unwrap().unwrap();
        assert!(!c.import_done);
        assert_eq!(c.imported_through_line, 301);
        assert!(fates(&store, split.id).iter().all(|f| f.1 == "pending"));
        // The resume: the file's end (no records left) settles everything.
        let mut keys = store.loaded_phone_keys(split.id).unwrap();
        assert_eq!(keys.len(), 300);
        let (_, repeats) = store
            .load_batch(split.id, &[], 301, true, &mut keys, true)
            .unwrap();
        assert!(repeats >= 180, "{repeats}");
        assert!(store.find_campaign("split").unwrap().unwrap().import_done);
        assert_eq!(fates(&store, split.id), fates(&store, whole.id));
    }

    #[test]
    fn the_tracking_pass_walks_the_tracking_index() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path().join("s.sqlite")).unwrap();
        let plan: Vec<String> = store
            .db
            .query_map(
                "EXPLAIN QUERY PLAN SELECT tracking_id, line FROM rows INDEXED BY rows_tracking \
                 WHERE campaign_id = 1 AND tracking_id IS NOT NULL ORDER BY tracking_id",
                (),
                |r| r.get::<String>(3),
            )
            .unwrap();
        assert!(plan.iter().all(|p| !p.contains("TEMP B-TREE")), "{plan:?}");
    }
}
