//! A whole ledger copied into another store (`zns-batch migrate`): SQLite
//! to PostgreSQL, or SQLite to a new SQLite file (a compaction).
//!
//! - One moment of the source: its reads run in one transaction that also
//!   keeps its writers out (SQLite's write lock; PostgreSQL's leases table
//!   locked), so no run can start on it while it is copied.
//! - One target transaction: a failure (a refused value, a count that
//!   differs, a lost connection) leaves the target as it was.
//! - Tables in an order that satisfies the foreign keys, ids kept; each
//!   read in key order a page at a time and written as multi-row INSERTs,
//!   so memory stays flat whatever the ledger's size.
//! - Sealed values (the OA's tokens, PKCE verifiers) and hashes are bytes
//!   copied as they are: nothing is opened or printed.
//! - Afterwards every table's rows are counted on both sides; PostgreSQL's
//!   identity sequences are set past the copied ids.

use super::db::{Db, DbError, Dialect, Value};
use super::{Store, StoreError};

/// Every table of the schema with the columns of its key (the order pages
/// are read in), parents before the tables that reference them.
/// `tests::the_table_list_is_the_schema` keeps it whole: a migration that
/// adds a table must add it here.
const TABLES: &[(&str, &[&str])] = &[
    ("campaigns", &["id"]),
    ("campaign_counts", &["campaign_id"]),
    ("rows", &["id"]),
    ("campaign_series", &["campaign_id", "minute"]),
    ("web_campaigns", &["campaign_id"]),
    ("schedules", &["campaign_id"]),
    ("test_sends", &["id"]),
    ("leases", &["campaign"]),
    ("tokens", &["account", "oa_id", "phone", "token_type"]),
    ("quota_days", &["account", "oa_id", "day"]),
    ("phone_sends", &["oa_id", "phone"]),
    ("template_cache", &["account", "template_id"]),
    ("delivery_events", &["id"]),
    ("zalo_oa_tokens", &["id"]),
    ("zalo_oa_pending", &["state_hash"]),
    ("users", &["id"]),
    ("api_tokens", &["id"]),
    ("audit", &["id"]),
];

/// Rows per INSERT, fewer for wide tables: parameters per statement stay
/// far under SQLite's 32766 and PostgreSQL's 65535.
const PAGE_ROWS: usize = 500;
const PAGE_PARAMS: usize = 8000;

/// Where a copy stands, told after every page and once per table at its end.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableCopy {
    pub table: &'static str,
    /// Rows of this table copied so far.
    pub copied: u64,
    /// Rows the table holds in the source.
    pub total: u64,
    /// The table is finished.
    pub done: bool,
}

/// What a finished copy copied, table by table (rows counted on both sides).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CopyReport {
    pub tables: Vec<(&'static str, u64)>,
}

impl CopyReport {
    pub fn rows(&self) -> u64 {
        self.tables.iter().map(|(_, n)| n).sum()
    }
}

/// Why a copy was refused or undone (the target is left as it was).
#[derive(Debug, thiserror::Error)]
pub enum CopyError {
    #[error("the target already has {0} campaign(s); migrate copies into an empty ledger")]
    TargetHasCampaigns(u64),
    #[error("the target's table `{table}` already has {rows} row(s); migrate copies into an empty ledger")]
    TargetNotEmpty { table: &'static str, rows: u64 },
    #[error("campaign `{campaign}` is being run now by {holder} (its lease lapses at {expires_at_ms} ms); stop it first (Pause, Ctrl-C, or wait for it to end) so none of its progress is left behind")]
    LiveLease {
        campaign: String,
        holder: String,
        expires_at_ms: i64,
    },
    #[error("the source is at schema version {source_version} and the target at {target_version}; both must be at the same version (open each with this zns-batch first)")]
    SchemaMismatch {
        source_version: i64,
        target_version: i64,
    },
    #[error("the {side} database's tables are not the ones this zns-batch copies: {detail}")]
    Tables { side: &'static str, detail: String },
    #[error("table `{table}`: the source holds {source_rows} row(s) but the target counts {target_rows} after the copy; nothing was kept")]
    CountMismatch {
        table: &'static str,
        source_rows: u64,
        target_rows: u64,
    },
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// A column value read from the source, owned for the length of a page.
#[derive(Debug, Clone, PartialEq)]
enum Owned {
    Null,
    Int(i64),
    Real(f64),
    Text(String),
    Blob(Vec<u8>),
}

impl Owned {
    fn of(v: Value<'_>) -> Owned {
        match v {
            Value::Null => Owned::Null,
            Value::Int(i) => Owned::Int(i),
            Value::Real(f) => Owned::Real(f),
            Value::Text(s) => Owned::Text(s.to_string()),
            Value::Blob(b) => Owned::Blob(b.to_vec()),
        }
    }

    fn value(&self) -> Value<'_> {
        match self {
            Owned::Null => Value::Null,
            Owned::Int(i) => Value::Int(*i),
            Owned::Real(f) => Value::Real(*f),
            Owned::Text(s) => Value::Text(s),
            Owned::Blob(b) => Value::Blob(b),
        }
    }
}

/// A column read as itself, whatever its kind.
struct Any(Owned);

impl super::db::FromValue for Any {
    fn from_value(v: Value<'_>) -> std::result::Result<Self, String> {
        Ok(Any(Owned::of(v)))
    }
}

impl Store {
    /// Copy every table of this store into `target` (see the module's
    /// note). `now_ms` and `gone` judge the source's leases: a live one of
    /// a holder not known to be gone refuses the copy.
    pub fn copy_into(
        &self,
        target: &mut Store,
        now_ms: i64,
        gone: &dyn Fn(&str) -> bool,
        progress: &mut dyn FnMut(&TableCopy),
    ) -> Result<CopyReport, CopyError> {
        let src = &self.db;
        let _hold = self.hold_still().map_err(|e| self.e(e))?;
        let tx = target
            .db
            .transaction_with(super::db::Begin::Immediate)
            .map_err(|e| target.e(e))?;
        let (sv, tv) = (
            schema_version(src).map_err(|e| self.e(e))?,
            schema_version(&tx).map_err(|e| target.e(e))?,
        );
        if sv != tv {
            return Err(CopyError::SchemaMismatch {
                source_version: sv,
                target_version: tv,
            });
        }
        check_tables(src, Side::Source).map_err(|f| f.at(self, target))?;
        check_tables(&tx, Side::Target).map_err(|f| f.at(self, target))?;
        self.refuse_live_leases(now_ms, gone)?;
        let campaigns = count(&tx, "campaigns").map_err(|e| target.e(e))?;
        if campaigns > 0 {
            return Err(CopyError::TargetHasCampaigns(campaigns));
        }
        for (table, _) in TABLES {
            let rows = count(&tx, table).map_err(|e| target.e(e))?;
            if rows > 0 {
                return Err(CopyError::TargetNotEmpty { table, rows });
            }
        }

        let mut report = CopyReport::default();
        for (table, key) in TABLES {
            let total = count(src, table).map_err(|e| self.e(e))?;
            // The campaigns' INSERT trigger made an empty counters row for
            // each: the source's own replace them.
            if *table == "campaign_counts" {
                tx.execute("DELETE FROM campaign_counts", ())
                    .map_err(|e| target.e(e))?;
            }
            let cols = same_columns(src, &tx, table).map_err(|f| f.at(self, target))?;
            let copied =
                copy_table(src, &tx, table, key, &cols, total, progress).map_err(|(side, e)| {
                    match side {
                        Side::Source => self.e(e),
                        Side::Target => target.e(e),
                    }
                })?;
            let in_target = count(&tx, table).map_err(|e| target.e(e))?;
            if copied != total || in_target != total {
                return Err(CopyError::CountMismatch {
                    table,
                    source_rows: total,
                    target_rows: in_target,
                });
            }
            report.tables.push((table, total));
        }
        if tx.is_postgres() {
            set_sequences(&tx).map_err(|e| target.e(e))?;
        }
        tx.commit().map_err(|e| target.e(e))?;
        Ok(report)
    }

    /// Begin the source's one transaction: a snapshot that writers wait
    /// for (rolled back when the guard drops; nothing is written).
    fn hold_still(&self) -> std::result::Result<super::db::Tx<'_>, DbError> {
        match self.db.dialect() {
            Dialect::Sqlite => self.db.transaction_with(super::db::Begin::Immediate),
            Dialect::Postgres => {
                let tx = self.db.transaction()?;
                tx.execute_batch(
                    "SET TRANSACTION ISOLATION LEVEL REPEATABLE READ; \
                     LOCK TABLE leases IN SHARE MODE",
                )?;
                Ok(tx)
            }
        }
    }

    fn refuse_live_leases(
        &self,
        now_ms: i64,
        gone: &dyn Fn(&str) -> bool,
    ) -> Result<(), CopyError> {
        let leases: Vec<(String, String, i64)> = self
            .db
            .query_map(
                "SELECT campaign, holder, expires_at_ms FROM leases ORDER BY campaign",
                (),
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
            )
            .map_err(|e| self.e(e))?;
        match leases
            .into_iter()
            .find(|(_, holder, expires)| *expires > now_ms && !gone(holder))
        {
            Some((campaign, holder, expires_at_ms)) => Err(CopyError::LiveLease {
                campaign,
                holder,
                expires_at_ms,
            }),
            None => Ok(()),
        }
    }
}

#[derive(Clone, Copy)]
enum Side {
    Source,
    Target,
}

impl Side {
    fn name(self) -> &'static str {
        match self {
            Side::Source => "source",
            Side::Target => "target",
        }
    }
}

/// A check's failure: a database error on one side, or a refusal.
enum Fail {
    Db(Side, DbError),
    Refused(CopyError),
}

impl Fail {
    fn at(self, source: &Store, target: &Store) -> CopyError {
        match self {
            Fail::Db(Side::Source, e) => CopyError::Store(source.e(e)),
            Fail::Db(Side::Target, e) => CopyError::Store(target.e(e)),
            Fail::Refused(e) => e,
        }
    }
}

fn schema_version(db: &Db) -> std::result::Result<i64, DbError> {
    match db.dialect() {
        Dialect::Sqlite => db.query_row("PRAGMA user_version", (), |r| r.get(0)),
        Dialect::Postgres => db
            .query_row("SELECT MAX(version) FROM schema_version", (), |r| {
                r.get::<Option<i64>>(0)
            })
            .map(|v| v.unwrap_or(0)),
    }
}

fn count(db: &Db, table: &str) -> std::result::Result<u64, DbError> {
    // The names come from TABLES, never from input.
    db.query_row(
        &format!("SELECT CAST(COUNT(*) AS BIGINT) FROM {table}"),
        (),
        |r| r.get::<u64>(0),
    )
}

/// The database's own tables, by name.
fn table_names(db: &Db) -> std::result::Result<Vec<String>, DbError> {
    db.query_map(
        match db.dialect() {
            Dialect::Sqlite => {
                "SELECT name FROM sqlite_master WHERE type = 'table' \
                 AND name NOT LIKE 'sqlite\\_%' ESCAPE '\\' ORDER BY name"
            }
            Dialect::Postgres => {
                "SELECT table_name::text FROM information_schema.tables \
                 WHERE table_schema = current_schema() AND table_type = 'BASE TABLE' \
                 AND table_name <> 'schema_version' ORDER BY table_name"
            }
        },
        (),
        |r| r.get(0),
    )
}

/// A table's columns in their order.
fn columns(db: &Db, table: &str) -> std::result::Result<Vec<String>, DbError> {
    db.query_map(
        match db.dialect() {
            Dialect::Sqlite => "SELECT name FROM pragma_table_info(?1) ORDER BY cid",
            Dialect::Postgres => {
                "SELECT column_name::text FROM information_schema.columns \
                 WHERE table_schema = current_schema() AND table_name = ?1 \
                 ORDER BY ordinal_position"
            }
        },
        [table],
        |r| r.get(0),
    )
}

/// The database holds exactly the tables of [`TABLES`].
fn check_tables(db: &Db, side: Side) -> std::result::Result<(), Fail> {
    let found = table_names(db).map_err(|e| Fail::Db(side, e))?;
    let mut known: Vec<&str> = TABLES.iter().map(|(t, _)| *t).collect();
    known.sort_unstable();
    let extra: Vec<&str> = found
        .iter()
        .map(String::as_str)
        .filter(|t| !known.contains(t))
        .collect();
    let missing: Vec<&str> = known
        .iter()
        .copied()
        .filter(|t| !found.iter().any(|f| f == t))
        .collect();
    if extra.is_empty() && missing.is_empty() {
        return Ok(());
    }
    Err(Fail::Refused(CopyError::Tables {
        side: side.name(),
        detail: format!(
            "not copied: [{}]; missing: [{}]",
            extra.join(", "),
            missing.join(", ")
        ),
    }))
}

/// The table's columns, the same set on both sides (in the source's order).
fn same_columns(src: &Db, dst: &Db, table: &'static str) -> std::result::Result<Vec<String>, Fail> {
    let cols = columns(src, table).map_err(|e| Fail::Db(Side::Source, e))?;
    let theirs = columns(dst, table).map_err(|e| Fail::Db(Side::Target, e))?;
    let (mut a, mut b) = (cols.clone(), theirs.clone());
    a.sort();
    b.sort();
    if a != b || cols.is_empty() {
        return Err(Fail::Refused(CopyError::Tables {
            side: "target",
            detail: format!(
                "table {table} has columns [{}] in the source, [{}] in the target",
                cols.join(", "),
                theirs.join(", ")
            ),
        }));
    }
    Ok(cols)
}

/// Copy one table page by page; the rows copied.
fn copy_table(
    src: &Db,
    dst: &Db,
    table: &'static str,
    key: &[&str],
    cols: &[String],
    total: u64,
    progress: &mut dyn FnMut(&TableCopy),
) -> std::result::Result<u64, (Side, DbError)> {
    let width = cols.len();
    let page = PAGE_ROWS.min(PAGE_PARAMS / width).max(1);
    let key_at: Vec<usize> = key
        .iter()
        .map(|k| cols.iter().position(|c| c == k).unwrap_or(0))
        .collect();
    let list = cols.join(", ");
    let order = key.join(", ");
    let first = format!("SELECT {list} FROM {table} ORDER BY {order} LIMIT {page}");
    // A row value compares the whole key at once (both databases).
    let after = format!(
        "SELECT {list} FROM {table} WHERE ({order}) > ({}) ORDER BY {order} LIMIT {page}",
        (1..=key.len())
            .map(|i| format!("?{i}"))
            .collect::<Vec<_>>()
            .join(", ")
    );
    let full_insert = insert_sql(table, &list, width, page);
    let mut copied = 0u64;
    let mut last: Option<Vec<Owned>> = None;
    let mut values: Vec<Owned> = Vec::with_capacity(page * width);
    loop {
        values.clear();
        let mut read = |r: &super::db::Row<'_>| {
            for i in 0..width {
                values.push(r.get::<Any>(i)?.0);
            }
            Ok(())
        };
        let got = match &last {
            None => src
                .prepare(&first)
                .and_then(|mut s| s.query_each((), &mut read)),
            Some(k) => {
                let params: Vec<Value<'_>> = k.iter().map(Owned::value).collect();
                src.prepare_cached(&after)
                    .and_then(|mut s| s.query_each(params, &mut read))
            }
        };
        got.map_err(|e| (Side::Source, e))?;
        let n = values.len() / width;
        if n == 0 {
            break;
        }
        let params: Vec<Value<'_>> = values.iter().map(Owned::value).collect();
        let written = if n == page {
            dst.prepare_cached(&full_insert)
                .and_then(|mut s| s.execute(params))
        } else {
            dst.execute(&insert_sql(table, &list, width, n), params)
        }
        .map_err(|e| (Side::Target, e))?;
        copied += written as u64;
        let row = &values[(n - 1) * width..];
        last = Some(key_at.iter().map(|&i| row[i].clone()).collect());
        progress(&TableCopy {
            table,
            copied,
            total,
            done: false,
        });
        if n < page {
            break;
        }
    }
    progress(&TableCopy {
        table,
        copied,
        total,
        done: true,
    });
    Ok(copied)
}

/// `INSERT INTO table (list) VALUES (?1, …), (…)` for `rows` rows.
fn insert_sql(table: &str, list: &str, width: usize, rows: usize) -> String {
    let mut sql = format!("INSERT INTO {table} ({list}) VALUES ");
    for r in 0..rows {
        if r > 0 {
            sql.push_str(", ");
        }
        sql.push('(');
        for c in 0..width {
            if c > 0 {
                sql.push_str(", ");
            }
            sql.push('?');
            sql.push_str(&(r * width + c + 1).to_string());
        }
        sql.push(')');
    }
    sql
}

/// Every identity column's sequence set past the largest id copied, so the
/// next row PostgreSQL numbers does not collide with a copied one.
fn set_sequences(db: &Db) -> std::result::Result<(), DbError> {
    let identities: Vec<(String, String)> = db.query_map(
        "SELECT table_name::text, column_name::text FROM information_schema.columns \
         WHERE table_schema = current_schema() AND is_identity = 'YES' ORDER BY table_name",
        (),
        |r| Ok((r.get(0)?, r.get(1)?)),
    )?;
    for (table, column) in identities {
        db.query_row(
            &format!(
                "SELECT setval(pg_get_serial_sequence(?1, ?2), COALESCE(MAX({column}), 0) + 1, false) \
                 FROM {table}"
            ),
            [table.as_str(), column.as_str()],
            |_| Ok(()),
        )?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::super::test_pg::{self, Place};
    use super::super::test_support::*;
    use super::super::*;
    use super::*;

    const HOUR: i64 = 3_600_000;
    const SEALED: &[u8] = b"\x00sealed-pair\xff\x01 not a secret in clear";

    fn nobody_gone(_: &str) -> bool {
        false
    }

    fn event(msg: Option<&str>, tracking: Option<&str>, status: &str, key: &str) -> NewEvent {
        NewEvent {
            provider: "sandbox".into(),
            kind: "delivery".into(),
            msg_id: msg.map(Into::into),
            tracking_id: tracking.map(Into::into),
            status: DeliveryStatus::parse(status),
            raw: "{\"x\":1}".into(),
            received_ms: 1_700_000_000_000,
            dedup_key: key.into(),
            ..NewEvent::default()
        }
    }

    /// A SQLite ledger with something in every table: a campaign partly
    /// sent (one row in flight, one failed, delivery events, a lapsed
    /// lease), an empty campaign, tokens, quota, users, an API token, the
    /// audit log, the OA's sealed tokens, a pending authorization.
    fn ledger(dir: &tempfile::TempDir) -> Store {
        let mut s = Store::open(dir.path().join("source.sqlite")).unwrap();
        let c = new_campaign(&mut s, "c1");
        new_campaign(&mut s, "empty");
        let phones: Vec<String> = (0..7).map(|i| format!("8491234567{i}")).collect();
        let phones: Vec<&str> = phones.iter().map(String::as_str).collect();
        let ids = import_phones(&mut s, &c, &phones);
        s.db.execute_batch(&format!(
            "UPDATE rows SET state = 'sent', msg_id = 'm0', sent_ms = 1700000000000, fee_main = 300 WHERE id = {a}; \
             UPDATE rows SET state = 'sent', msg_id = 'm1', sent_ms = 1700000060000 WHERE id = {b}; \
             UPDATE rows SET state = 'in_flight', quota_day = '2026-12-07', attempts = 1 WHERE id = {f}; \
             UPDATE rows SET state = 'failed', error_code = 'E1', error = 'Số điện thoại sai' WHERE id = {x};",
            a = ids[0],
            b = ids[1],
            f = ids[2],
            x = ids[3]
        ))
        .unwrap();
        s.record_events(&[
            event(Some("m0"), None, "seen", "e1"),
            event(Some("m1"), None, "received", "e2"),
            event(Some("stray"), None, "received", "e3"),
        ])
        .unwrap();
        let key = QuotaKey::today("sandbox", "1");
        for _ in 0..3 {
            assert!(s.take_quota_unit(&key, Some(100)).unwrap());
        }
        s.save_token(
            &TokenKey {
                account: "sandbox".into(),
                oa_id: "1".into(),
                phone: phones[0].into(),
                token_type: "token_logistics_7".into(),
            },
            &crate::provider::JourneyToken {
                journey_id: "j0".into(),
                provider_ref: Some("77".into()),
                token: Some("tok".into()),
                expires_at: crate::model::clock::from_ms(1_900_000_000_000),
                status: Some("P".into()),
            },
        )
        .unwrap();
        s.add_user("anh", "operator", "$argon2id$hash").unwrap();
        s.add_token("nightly", "operator", "ab12cd").unwrap();
        for action in ["upload", "start"] {
            s.append_audit(&NewAudit {
                actor: "user:anh",
                action,
                campaign: Some("c1"),
                detail: "",
                outcome: "allowed",
            })
            .unwrap();
        }
        s.oa_connected(&NewPair {
            oa_id: Some("1"),
            app_id: "app",
            sealed_pair: SEALED,
            access_expires_ms: 1_900_000_000_000,
            access_ttl_ms: HOUR,
            now_ms: real_now_ms(),
        })
        .unwrap();
        s.oa_pending_put("hash", b"\x01\x02sealed", "http://x/cb", real_now_ms())
            .unwrap();
        s.set_schedule(c.id, Some(1_900_000_000_000)).unwrap();
        s.add_test_send(
            c.id,
            &TestSend {
                phone: phones[0].into(),
                at_ms: 1,
                outcome: "sent".into(),
                msg_id: Some("t0".into()),
                error: None,
            },
        )
        .unwrap();
        s.set_wanted_running(c.id, true).unwrap();
        s.set_web_options(c.id, "{\"rate\":5}").unwrap();
        // A run that died: its lease lapsed an hour ago.
        let gone = |_: &str| false;
        s.lease_take("c1", "elsewhere:1:ab", 1000, real_now_ms() - HOUR, &gone)
            .unwrap();
        s.db.execute(
            "INSERT INTO phone_sends (oa_id, phone, last_ms, row_id) \
             SELECT '1', phone, sent_ms, id FROM rows WHERE sent_ms IS NOT NULL",
            (),
        )
        .unwrap();
        s.db.execute(
            "INSERT INTO template_cache (account, template_id, spec, fetched_ms) VALUES ('sandbox', '100', '{}', 1)",
            (),
        )
        .unwrap();
        s
    }

    fn counts(s: &Store) -> Vec<(&'static str, u64)> {
        TABLES
            .iter()
            .map(|(t, _)| (*t, count(&s.db, t).unwrap()))
            .collect()
    }

    /// Every column of every row, table by table, in key order.
    fn dump(s: &Store) -> Vec<Vec<Owned>> {
        let mut out = Vec::new();
        for (table, key) in TABLES {
            let mut cols = columns(&s.db, table).unwrap();
            cols.sort();
            s.db.query_each(
                &format!(
                    "SELECT {} FROM {table} ORDER BY {}",
                    cols.join(", "),
                    key.join(", ")
                ),
                (),
                |r| {
                    let mut row = vec![Owned::Text(table.to_string())];
                    for i in 0..cols.len() {
                        row.push(r.get::<Any>(i)?.0);
                    }
                    out.push(row);
                    Ok(())
                },
            )
            .unwrap();
        }
        out
    }

    #[test]
    fn the_table_list_is_the_schema() {
        test_pg::on_both("the_table_list_is_the_schema", |store, _| {
            assert!(check_tables(&store.db, Side::Source).is_ok());
            for (table, key) in TABLES {
                let cols = columns(&store.db, table).unwrap();
                assert!(key.iter().all(|k| cols.iter().any(|c| c == k)), "{table}");
            }
        });
    }

    #[test]
    fn a_ledger_is_copied_whole_once_and_the_target_numbers_on_past_it() {
        let dir = tempfile::tempdir().unwrap();
        let source = ledger(&dir);
        let before = dump(&source);
        test_pg::on_both(
            "a_ledger_is_copied_whole_once_and_the_target_numbers_on_past_it",
            |target, place| {
                let mut told: Vec<TableCopy> = Vec::new();
                let report = source
                    .copy_into(target, real_now_ms(), &nobody_gone, &mut |p| {
                        told.push(p.clone())
                    })
                    .unwrap();
                assert_eq!(report.tables, counts(&source));
                assert!(report.tables.iter().all(|(_, n)| *n > 0), "{report:?}");
                assert_eq!(counts(target), counts(&source));
                let done: Vec<(&str, u64)> = told
                    .iter()
                    .filter(|p| p.done)
                    .map(|p| (p.table, p.copied))
                    .collect();
                assert_eq!(done, report.tables);
                // Every value, blobs and Vietnamese text included.
                assert_eq!(dump(target), before, "on {}", place.name());
                assert_eq!(
                    target.oa_tokens().unwrap().unwrap().sealed_pair,
                    SEALED.to_vec()
                );
                let c = target.find_campaign("c1").unwrap().unwrap();
                let kept = target.counters(c.id).unwrap();
                assert_eq!(kept, target.recount(c.id).unwrap());
                assert_eq!(
                    (kept.states.sent, kept.states.in_flight, kept.states.failed),
                    (2, 1, 1)
                );
                assert_eq!((kept.ledger.seen, kept.ledger.received), (1, 1));
                assert_eq!(target.schedule(c.id).unwrap(), Some(1_900_000_000_000));
                // New rows get ids past the copied ones (PostgreSQL's
                // sequences were moved).
                let max_audit: i64 = target
                    .db
                    .query_row("SELECT MAX(id) FROM audit", (), |r| r.get(0))
                    .unwrap();
                let id = target
                    .append_audit(&NewAudit {
                        actor: "local",
                        action: "pause",
                        campaign: Some("c1"),
                        detail: "",
                        outcome: "allowed",
                    })
                    .unwrap();
                assert_eq!(id, max_audit + 1);
                let next = new_campaign(target, "after");
                assert_eq!(next.id, 3);
                // A second copy into the same ledger is refused.
                let again = source
                    .copy_into(target, real_now_ms(), &nobody_gone, &mut |_| {})
                    .unwrap_err();
                assert_eq!(
                    again.to_string(),
                    "the target already has 3 campaign(s); migrate copies into an empty ledger"
                );
            },
        );
        assert_eq!(dump(&source), before, "the source is left as it was");
    }

    #[test]
    fn a_live_lease_on_the_source_refuses_the_copy_and_a_gone_holder_does_not() {
        let dir = tempfile::tempdir().unwrap();
        let mut source = ledger(&dir);
        let gone = |_: &str| false;
        source
            .lease_take("empty", "host:42:cd", 60_000, real_now_ms(), &gone)
            .unwrap();
        test_pg::on_both(
            "a_live_lease_on_the_source_refuses_the_copy_and_a_gone_holder_does_not",
            |target, _| {
                let e = source
                    .copy_into(target, real_now_ms(), &nobody_gone, &mut |_| {})
                    .unwrap_err();
                assert!(
                    matches!(&e, CopyError::LiveLease { campaign, holder, .. }
                        if campaign == "empty" && holder == "host:42:cd"),
                    "{e}"
                );
                assert_eq!(counts(target).iter().map(|(_, n)| n).sum::<u64>(), 0);
                // Its process is known to be gone: nothing runs, copy it.
                let report = source
                    .copy_into(target, real_now_ms(), &|h| h == "host:42:cd", &mut |_| {})
                    .unwrap();
                assert_eq!(report.tables, counts(&source));
            },
        );
    }

    #[test]
    fn a_failure_mid_copy_leaves_the_target_as_it_was() {
        let dir = tempfile::tempdir().unwrap();
        let source = ledger(&dir);
        // A row of a campaign that does not exist (written with the
        // foreign keys off): the target refuses it after the campaigns and
        // their counters went in.
        source
            .db
            .execute_batch(
                "PRAGMA foreign_keys = OFF; \
                 INSERT INTO rows (campaign_id, line, phone, state) VALUES (99, 2, '84900000000', 'pending'); \
                 PRAGMA foreign_keys = ON;",
            )
            .unwrap();
        test_pg::on_both(
            "a_failure_mid_copy_leaves_the_target_as_it_was",
            |target, _| {
                let mut told = Vec::new();
                let e = source
                    .copy_into(target, real_now_ms(), &nobody_gone, &mut |p| {
                        told.push(p.table)
                    })
                    .unwrap_err();
                assert!(matches!(e, CopyError::Store(_)), "{e}");
                assert!(told.contains(&"campaigns"), "{told:?}");
                assert_eq!(counts(target).iter().map(|(_, n)| n).sum::<u64>(), 0);
            },
        );
    }

    #[test]
    fn a_target_at_another_schema_version_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let source = ledger(&dir);
        test_pg::on_both(
            "a_target_at_another_schema_version_is_refused",
            |target, place| {
                let older = super::super::schema::SCHEMA_VERSION - 1;
                match place {
                    Place::Sqlite(_) => target
                        .db
                        .execute_batch(&format!("PRAGMA user_version = {older}")),
                    Place::Postgres(_) => target
                        .db
                        .execute("UPDATE schema_version SET version = ?1", [older])
                        .map(|_| ()),
                }
                .unwrap();
                let e = source
                    .copy_into(target, real_now_ms(), &nobody_gone, &mut |_| {})
                    .unwrap_err();
                assert!(
                    matches!(e, CopyError::SchemaMismatch { source_version, target_version }
                        if source_version == older + 1 && target_version == older),
                    "{e}"
                );
                assert_eq!(count(&target.db, "campaigns").unwrap(), 0);
            },
        );
    }

    /// Pages: a table many pages long, the last one partial, keys compared
    /// as a whole (composite keys too).
    #[test]
    fn long_tables_are_copied_page_by_page() {
        let dir = tempfile::tempdir().unwrap();
        let mut source = Store::open(dir.path().join("s.sqlite")).unwrap();
        let c = new_campaign(&mut source, "big");
        let phones: Vec<String> = (0..1234).map(|i| format!("849{i:08}")).collect();
        let refs: Vec<&str> = phones.iter().map(String::as_str).collect();
        import_phones(&mut source, &c, &refs);
        source
            .db
            .execute_batch(
                "INSERT INTO phone_sends (oa_id, phone, last_ms, row_id) \
                 SELECT CASE WHEN id % 2 = 0 THEN 'a' ELSE 'b' END, phone, id, id FROM rows",
            )
            .unwrap();
        let before = dump(&source);
        test_pg::on_both("long_tables_are_copied_page_by_page", |target, _| {
            let mut pages = 0;
            source
                .copy_into(target, real_now_ms(), &nobody_gone, &mut |p| {
                    if p.table == "rows" && !p.done {
                        pages += 1;
                    }
                })
                .unwrap();
            assert!(pages >= 3, "{pages} pages");
            assert_eq!(dump(target), before);
        });
    }
}
