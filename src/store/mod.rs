//! The SQLite checkpoint store. All SQL lives here, one file per concern:
//! `schema` (migrations), `campaigns`, `import` (and `repeats`, its pass
//! over the whole file), `rows` (open-row paging, counts, rejects, report
//! rows), `tokens`, `quota`, `lookups` (what reconcile asks the provider
//! about, and its answers), and the `writer` that applies row transitions.
//!
//! One process-wide writer thread owns a connection and applies row
//! transitions in batched transactions (group commit): callers that must
//! know a change is durable (a row going `in_flight` before its request
//! leaves, a bought token) await the acknowledgement, which comes only after
//! COMMIT. Readers use their own connections (WAL lets them run beside the
//! writer).

/// The line a derived tracking id (`{prefix}-{line}`, `c` the campaign)
/// names, NULL when its tail is not digits: one text on both databases
/// (PostgreSQL's CAST fails on what is not a number, SQLite's read the
/// leading digits; `trim(x, chars)` is btrim on PostgreSQL).
macro_rules! line_of_sql {
    ($tracking:literal) => {
        concat!(
            "CASE WHEN length(substr(",
            $tracking,
            ", length(c.tracking_prefix) + 2)) BETWEEN 1 AND 18 \
               AND trim(substr(",
            $tracking,
            ", length(c.tracking_prefix) + 2), '0123456789') = '' \
             THEN CAST(substr(",
            $tracking,
            ", length(c.tracking_prefix) + 2) AS BIGINT) END"
        )
    };
}

/// Does a row with this msg_id or tracking id (explicit, or derived as
/// `{prefix}-{line}`) exist? Both given as SQL (parameters or columns;
/// either may be NULL). CROSS JOIN keeps `campaigns` (a few) outside, so
/// `rows` is only ever searched by index. A macro, so a migration (a
/// literal) can hold it too.
macro_rules! row_exists_sql {
    ($msg:literal, $tracking:literal) => {
        concat!(
            "(",
            $msg,
            " IS NOT NULL AND EXISTS (SELECT 1 FROM rows r WHERE r.msg_id = ",
            $msg,
            ")) \
             OR (",
            $tracking,
            " IS NOT NULL AND EXISTS (SELECT 1 FROM campaigns c CROSS JOIN rows r \
                     WHERE r.campaign_id = c.id AND r.tracking_id = ",
            $tracking,
            ")) \
             OR (",
            $tracking,
            " IS NOT NULL AND EXISTS (SELECT 1 FROM campaigns c CROSS JOIN rows r \
                     WHERE substr(",
            $tracking,
            ", 1, length(c.tracking_prefix) + 1) = c.tracking_prefix || '-' \
                       AND r.campaign_id = c.id \
                       AND r.line = ",
            line_of_sql!($tracking),
            " \
                       AND r.tracking_id IS NULL))"
        )
    };
}

mod audit;
mod campaigns;
mod copy;
mod counters;
pub(crate) mod db;
mod errors;
mod events;
mod import;
mod leases;
mod location;
mod lookups;
mod quota;
mod repeats;
mod rows;
mod schedule;
mod schema;
mod schema_pg;
mod series;
mod templates;
/// Fresh PostgreSQL databases for the tests (unit and integration); the
/// product never calls it.
#[doc(hidden)]
pub mod test_pg;
mod tokens;
mod users;
mod web;
mod writer;
mod zalo_oauth;

use std::path::{Path, PathBuf};
use std::time::Duration;

use rusqlite::{Connection, OpenFlags};

use db::{Db, OptionalExtension};

pub use crate::model::row_state::RowState;
pub use audit::{AuditRecord, NewAudit};
pub use campaigns::{Campaign, CampaignStatus, ClaimGate, NewCampaign};
pub use copy::{CopyError, CopyReport, TableCopy};
pub use counters::Counters;
pub use errors::{StoreError, StoreErrorKind};
pub use events::*;
pub use import::{ImportCounts, ImportRow};
pub use leases::{real_now_ms, Lease, LeaseFence, Take};
pub use location::{Location, PgUrl};
pub use lookups::{DeliveryCounts, LookupAnswer, LookupRow};
pub use quota::{QuotaDay, QuotaKey};
pub use repeats::PhoneKeys;
pub use rows::{ReportRow, StateCounts, WorkRow};
pub use schedule::TestSend;
pub use series::{BucketCounts, MinuteCounts};
pub use tokens::TokenKey;
pub use users::{TokenRecord, UserRecord};
pub use web::WebRow;
pub use writer::{GroupWriter, Setback, WriteOp, WriteResult, Writer};
pub use zalo_oauth::{NewPair, OaTokens, Pending};

use errors::sql_err;

type Result<T, E = StoreError> = std::result::Result<T, E>;

/// How long a connection waits for another process's transaction.
const BUSY_TIMEOUT: Duration = Duration::from_secs(10);

pub struct Store {
    db: db::Db,
    path: PathBuf,
    /// Writer only: quota_days rows known to exist (they are never deleted),
    /// so a claim skips the INSERT that creates one.
    quota_rows: std::collections::HashSet<QuotaKey>,
}

impl Store {
    /// Open (creating if needed) and migrate: a SQLite file, or a
    /// PostgreSQL database when the location is a `postgres://` URL.
    pub fn open(at: impl Into<Location>) -> Result<Store> {
        match at.into() {
            Location::Sqlite(path) => Store::open_sqlite(&path),
            Location::Postgres(url) => Store::open_postgres(url.connect_string()),
        }
    }

    fn open_sqlite(path: &Path) -> Result<Store> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|source| StoreError::Dir {
                path: path.to_path_buf(),
                source,
            })?;
        }
        let conn = Connection::open(path).map_err(|e| sql_err(path, e))?;
        // SQLite quietly falls back to read-only; say so now, not at the
        // first checkpoint of a run.
        if conn
            .is_readonly(rusqlite::MAIN_DB)
            .map_err(|e| sql_err(path, e))?
        {
            return Err(StoreError::ReadOnly {
                path: path.to_path_buf(),
            });
        }
        Store::ready(conn, path)
    }

    /// Connect to a PostgreSQL database (a `postgres://` URL) and migrate.
    /// Errors name the URL without its password.
    pub fn open_postgres(url: &str) -> Result<Store> {
        let path = PathBuf::from(db::redact_url(url));
        let backend = db::PgBackend::connect(url, BUSY_TIMEOUT).map_err(|e| sql_err(&path, e))?;
        let mut store = Store {
            db: Db::new(Box::new(backend)),
            path,
            quota_rows: Default::default(),
        };
        store.migrate()?;
        Ok(store)
    }

    /// The connection configured and the schema brought up to date.
    fn ready(conn: Connection, path: &Path) -> Result<Store> {
        let mut store = Store {
            db: Db::new(Box::new(db::SqliteBackend::new(conn))),
            path: path.to_path_buf(),
            quota_rows: Default::default(),
        };
        store.configure()?;
        store.migrate()?;
        Ok(store)
    }

    /// Which database this store is on.
    pub fn is_postgres(&self) -> bool {
        self.db.is_postgres()
    }

    /// Open for commits that back an answer given to someone else (a
    /// webhook's 2xx): `synchronous=FULL`, so each COMMIT fsyncs the WAL
    /// and survives a power loss, not only a killed process. Other
    /// connections keep NORMAL (their work is redone after a crash).
    pub fn open_durable(at: impl Into<Location>) -> Result<Store> {
        let store = Store::open(at)?;
        if store.is_postgres() {
            return Ok(store); // synchronous_commit is on: a COMMIT is flushed
        }
        store
            .db
            .execute_batch("PRAGMA synchronous=FULL")
            .map_err(|e| store.e(e))?;
        Ok(store)
    }

    /// This connection's `PRAGMA synchronous` (1 NORMAL, 2 FULL); on
    /// PostgreSQL 2 when `synchronous_commit` is on (each COMMIT is flushed).
    pub fn synchronous(&self) -> Result<i64> {
        match self.db.dialect() {
            db::Dialect::Sqlite => self.db.query_row("PRAGMA synchronous", (), |r| r.get(0)),
            db::Dialect::Postgres => self.db.query_row(
                "SELECT CASE WHEN current_setting('synchronous_commit') = 'off' THEN 1 ELSE 2 END",
                (),
                |r| r.get(0),
            ),
        }
        .map_err(|e| self.e(e))
    }

    /// Open an existing database without creating it (a PostgreSQL
    /// database exists once its URL is given: it is connected to).
    pub fn open_existing(at: impl Into<Location>) -> Result<Option<Store>> {
        let path = match at.into() {
            Location::Sqlite(path) => path,
            pg @ Location::Postgres(_) => return Store::open(pg).map(Some),
        };
        let path = path.as_path();
        if !path.exists() {
            return Ok(None);
        }
        let conn = Connection::open_with_flags(
            path,
            OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_URI,
        )
        .map_err(|e| sql_err(path, e))?;
        Store::ready(conn, path).map(Some)
    }

    /// Cap this connection's page cache (KiB); memory stays flat whatever
    /// the campaign's size. A run holds four connections.
    pub fn set_cache_kib(&self, kib: u32) -> Result<()> {
        if self.db.is_postgres() {
            return Ok(()); // the server's memory, not ours
        }
        self.db
            .execute_batch(&format!("PRAGMA cache_size = -{kib}"))
            .map_err(|e| self.e(e))
    }

    /// Give back the page cache (before a long phase that does not use
    /// this connection).
    pub fn release_memory(&self) -> Result<()> {
        if self.db.is_postgres() {
            return Ok(());
        }
        self.db
            .query_row("PRAGMA shrink_memory", (), |_| Ok(()))
            .optional()
            .map(|_| ())
            .map_err(|e| self.e(e))
    }

    fn e(&self, e: impl Into<db::DbError>) -> StoreError {
        sql_err(&self.path, e)
    }

    /// The first column of every row a parameterless query returns, as text.
    fn texts(&self, sql: &str) -> Result<Vec<String>> {
        self.db
            .query_map(sql, (), |r| r.get(0))
            .map_err(|e| self.e(e))
    }

    /// SQLite's settings (PostgreSQL's are the server's).
    fn configure(&mut self) -> Result<()> {
        let Some(conn) = self.db.as_sqlite() else {
            return Ok(());
        };
        conn.busy_timeout(BUSY_TIMEOUT).map_err(|e| self.e(e))?;
        // WAL: readers beside the one writer. Turning a new file to WAL
        // needs it alone for a moment, and a twin process opening the same
        // new file then gets BUSY at once (SQLite skips the busy handler for
        // that lock upgrade): retry within the busy timeout.
        let started = std::time::Instant::now();
        loop {
            match self
                .db
                .query_row("PRAGMA journal_mode=WAL", (), |r| r.get::<String>(0))
            {
                Ok(_) => break,
                Err(e) if db::is_busy(&e) && started.elapsed() < BUSY_TIMEOUT => {
                    std::thread::sleep(Duration::from_millis(5));
                }
                Err(e) => return Err(self.e(e)),
            }
        }
        // NORMAL: a commit survives a killed process (the case we
        // guarantee); fsync happens at checkpoint.
        self.db
            .execute_batch(
                "PRAGMA synchronous=NORMAL; PRAGMA foreign_keys=ON; \
                 PRAGMA temp_store=MEMORY; PRAGMA cache_size=-8000;",
            )
            .map_err(|e| self.e(e))
    }
}

#[cfg(test)]
pub(crate) mod test_support {
    use super::*;

    pub fn new_campaign(store: &mut Store, name: &str) -> Campaign {
        store
            .create_campaign(&NewCampaign {
                name,
                csv_path: "x.csv",
                csv_sha256: "abc",
                template_keys: &["name".to_string(), "amount".to_string()],
                provider: "sandbox",
                base_url: None,
                oa_id: "1",
                template_id: "100",
                token_type: "token_logistics_7",
                tracking_prefix: "zb-test",
                in_doubt_policy: "resend",
                not_after_ms: None,
                min_interval_ms: None,
            })
            .unwrap()
    }

    /// Import `phones` as accepted rows (lines 2, 3, …) and return their ids.
    pub fn import_phones(store: &mut Store, c: &Campaign, phones: &[&str]) -> Vec<i64> {
        let rows: Vec<ImportRow<'_>> = phones
            .iter()
            .enumerate()
            .map(|(i, phone)| ImportRow::Accepted {
                line: i as u64 + 2,
                phone,
                tracking_id: None,
                data_json: "[]",
            })
            .collect();
        store
            .import_batch(c.id, &rows, phones.len() as u64 + 1, true, true)
            .unwrap();
        store
            .open_rows_page(c, "a", 0, phones.len() + 10, true)
            .unwrap()
            .iter()
            .map(|r| r.id)
            .collect()
    }

    /// SQLite's plan (PostgreSQL plans by its statistics, not checked).
    pub fn assert_uses_open_rows_index(store: &Store, query: &str) {
        let plan: Vec<String> = store
            .db
            .query_map(&format!("EXPLAIN QUERY PLAN {query}"), (), |r| {
                r.get::<String>(3)
            })
            .unwrap();
        assert!(plan.iter().any(|p| p.contains("rows_open")), "{plan:?}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn processes_opening_a_new_database_at_once_all_succeed() {
        for _ in 0..5 {
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("s.sqlite");
            let barrier = std::sync::Arc::new(std::sync::Barrier::new(8));
            let opened: Vec<_> = (0..8)
                .map(|_| {
                    let (path, barrier) = (path.clone(), barrier.clone());
                    std::thread::spawn(move || {
                        barrier.wait();
                        Store::open(&path).map(|_| ()).map_err(|e| e.to_string())
                    })
                })
                .collect();
            for t in opened {
                t.join().unwrap().unwrap();
            }
        }
    }
}
