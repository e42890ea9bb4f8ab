//! The store's database layer: one object-safe [`Backend`] trait, two
//! implementations (SQLite through rusqlite, PostgreSQL through the sync
//! `postgres` client), and [`Db`], the rusqlite-like API the store's
//! modules call. The SQL stays one text per decision, written for SQLite
//! with `?1` placeholders; the PostgreSQL backend rewrites the placeholders
//! (once per statement, cached) and a module picks another text by
//! [`Db::dialect`] only where the dialects truly differ.

mod postgres;
mod sqlite;
mod value;

use std::cell::Cell;

pub use self::postgres::{redact_url, PgBackend};
pub use self::sqlite::SqliteBackend;
pub(crate) use value::params;
pub use value::{FromValue, Params, ToValue, Value};

/// Which SQL a text must be written in, where the two differ.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    Sqlite,
    Postgres,
}

/// How a transaction starts. `Immediate` takes SQLite's write lock at once
/// (two writers never deadlock on an upgrade); on PostgreSQL it takes an
/// advisory lock first, for the same reason (see `postgres.rs`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Begin {
    Deferred,
    Immediate,
}

/// An error from either database, or from reading a column.
#[derive(Debug, thiserror::Error)]
pub enum DbError {
    #[error(transparent)]
    Sqlite(#[from] rusqlite::Error),
    #[error("{}", pg_message(.0))]
    Pg(#[from] ::postgres::Error),
    #[error("query returned no rows")]
    NoRows,
    #[error("column {col}: {msg}")]
    Conversion { col: usize, msg: String },
    /// A stored value this build does not know (see `StoreError::Corrupt`).
    #[error("{what} holds unknown value `{value}`")]
    Unknown { what: String, value: String },
}

/// The server's own message (with its detail) rather than the client's
/// "db error", which says nothing.
fn pg_message(e: &::postgres::Error) -> String {
    match e.as_db_error() {
        Some(db) => match db.detail() {
            Some(d) => format!("{} ({d})", db.message()),
            None => db.message().to_string(),
        },
        None => e.to_string(),
    }
}

/// One row of a result, from either database.
pub enum Row<'a> {
    Sqlite(&'a rusqlite::Row<'a>),
    Pg(&'a ::postgres::Row),
}

impl Row<'_> {
    /// Column `idx` (from 0) as `T`.
    pub fn get<T: FromValue>(&self, idx: usize) -> Result<T, DbError> {
        let v = match self {
            Row::Sqlite(r) => sqlite::column(r, idx)?,
            Row::Pg(r) => self::postgres::column(r, idx)?,
        };
        T::from_value(v).map_err(|msg| value::conversion(idx, msg))
    }
}

/// What a row callback gets; it says whether to go on (`true`) or stop.
pub type EachRow<'c> = dyn FnMut(&Row<'_>) -> Result<bool, DbError> + 'c;

/// One database connection. Object safe: [`Db`] holds a `Box<dyn Backend>`.
/// Methods take `&self` (a connection is used by one thread; each backend
/// keeps what it mutates in cells), so a statement can run while another's
/// rows are being read, as rusqlite allows.
pub trait Backend: Send {
    fn dialect(&self) -> Dialect;
    /// Run one statement; how many rows it changed. `cached`: keep the
    /// prepared statement for the next run of the same text.
    fn execute(&self, sql: &str, params: &[Value<'_>], cached: bool) -> Result<usize, DbError>;
    /// Run a query, calling `each` for every row until it returns false.
    fn query(
        &self,
        sql: &str,
        params: &[Value<'_>],
        cached: bool,
        each: &mut EachRow<'_>,
    ) -> Result<(), DbError>;
    /// Run several statements without parameters.
    fn batch(&self, sql: &str) -> Result<(), DbError>;
    fn begin(&self, how: Begin) -> Result<(), DbError>;
    fn commit(&self) -> Result<(), DbError>;
    fn rollback(&self) -> Result<(), DbError>;
    /// Inside a transaction (BEGIN seen, no COMMIT/ROLLBACK yet)?
    fn in_transaction(&self) -> bool;
    /// The SQLite connection, for what only SQLite has (PRAGMAs, tests).
    fn as_sqlite(&self) -> Option<&rusqlite::Connection> {
        None
    }
}

/// The API the store's modules use, shaped like rusqlite's so a module's
/// conversion is mechanical.
pub struct Db {
    backend: Box<dyn Backend>,
}

impl Db {
    pub fn new(backend: Box<dyn Backend>) -> Db {
        Db { backend }
    }

    pub fn dialect(&self) -> Dialect {
        self.backend.dialect()
    }

    pub fn is_postgres(&self) -> bool {
        self.dialect() == Dialect::Postgres
    }

    /// The SQLite connection underneath (None on PostgreSQL).
    pub fn as_sqlite(&self) -> Option<&rusqlite::Connection> {
        self.backend.as_sqlite()
    }

    pub fn execute<P: Params>(&self, sql: &str, params: P) -> Result<usize, DbError> {
        self.backend.execute(sql, &params.values(), false)
    }

    pub fn execute_batch(&self, sql: &str) -> Result<(), DbError> {
        self.backend.batch(sql)
    }

    /// The first row mapped by `f`; [`DbError::NoRows`] when there is none.
    pub fn query_row<T, P, F>(&self, sql: &str, params: P, f: F) -> Result<T, DbError>
    where
        P: Params,
        F: FnOnce(&Row<'_>) -> Result<T, DbError>,
    {
        query_row(&*self.backend, sql, &params.values(), false, f)
    }

    /// Every row mapped by `f`.
    pub fn query_map<T, P, F>(&self, sql: &str, params: P, f: F) -> Result<Vec<T>, DbError>
    where
        P: Params,
        F: FnMut(&Row<'_>) -> Result<T, DbError>,
    {
        query_map(&*self.backend, sql, &params.values(), false, f)
    }

    /// Every row handed to `f` in turn, none kept (a long walk).
    pub fn query_each<P, F>(&self, sql: &str, params: P, mut f: F) -> Result<(), DbError>
    where
        P: Params,
        F: FnMut(&Row<'_>) -> Result<(), DbError>,
    {
        self.backend
            .query(sql, &params.values(), false, &mut |r| f(r).map(|()| true))
    }

    /// Rows handed to `f` in turn until it returns false (a walk that
    /// may stop early, e.g. when its output fails).
    pub fn query_while<P, F>(&self, sql: &str, params: P, mut f: F) -> Result<(), DbError>
    where
        P: Params,
        F: FnMut(&Row<'_>) -> Result<bool, DbError>,
    {
        self.backend.query(sql, &params.values(), false, &mut f)
    }

    /// A statement run once or a few times (not kept).
    pub fn prepare<'a>(&'a self, sql: &'a str) -> Result<Stmt<'a>, DbError> {
        Ok(Stmt {
            db: self,
            sql,
            cached: false,
        })
    }

    /// A statement kept prepared by the backend for its next run.
    pub fn prepare_cached<'a>(&'a self, sql: &'a str) -> Result<Stmt<'a>, DbError> {
        Ok(Stmt {
            db: self,
            sql,
            cached: true,
        })
    }

    /// A transaction rolled back unless committed.
    pub fn transaction(&self) -> Result<Tx<'_>, DbError> {
        self.transaction_with(Begin::Deferred)
    }

    pub fn transaction_with(&self, how: Begin) -> Result<Tx<'_>, DbError> {
        self.backend.begin(how)?;
        Ok(Tx {
            db: self,
            done: Cell::new(false),
        })
    }

    /// BEGIN/COMMIT/ROLLBACK by hand (the writer's batches, whose
    /// transaction outlives any one borrow of the store).
    pub fn begin(&self, how: Begin) -> Result<(), DbError> {
        self.backend.begin(how)
    }
    pub fn commit(&self) -> Result<(), DbError> {
        self.backend.commit()
    }
    pub fn rollback(&self) -> Result<(), DbError> {
        self.backend.rollback()
    }
    pub fn is_autocommit(&self) -> bool {
        !self.backend.in_transaction()
    }
}

fn query_row<T, F>(
    backend: &dyn Backend,
    sql: &str,
    params: &[Value<'_>],
    cached: bool,
    f: F,
) -> Result<T, DbError>
where
    F: FnOnce(&Row<'_>) -> Result<T, DbError>,
{
    let mut f = Some(f);
    let mut out = None;
    backend.query(sql, params, cached, &mut |r| {
        if let Some(f) = f.take() {
            out = Some(f(r)?);
        }
        Ok(false)
    })?;
    out.ok_or(DbError::NoRows)
}

fn query_map<T, F>(
    backend: &dyn Backend,
    sql: &str,
    params: &[Value<'_>],
    cached: bool,
    mut f: F,
) -> Result<Vec<T>, DbError>
where
    F: FnMut(&Row<'_>) -> Result<T, DbError>,
{
    let mut out = Vec::new();
    backend.query(sql, params, cached, &mut |r| {
        out.push(f(r)?);
        Ok(true)
    })?;
    Ok(out)
}

/// A statement's text with its connection; run as often as needed.
pub struct Stmt<'a> {
    db: &'a Db,
    sql: &'a str,
    cached: bool,
}

impl Stmt<'_> {
    pub fn execute<P: Params>(&mut self, params: P) -> Result<usize, DbError> {
        self.db
            .backend
            .execute(self.sql, &params.values(), self.cached)
    }

    pub fn query_row<T, P, F>(&mut self, params: P, f: F) -> Result<T, DbError>
    where
        P: Params,
        F: FnOnce(&Row<'_>) -> Result<T, DbError>,
    {
        query_row(
            &*self.db.backend,
            self.sql,
            &params.values(),
            self.cached,
            f,
        )
    }

    pub fn query_map<T, P, F>(&mut self, params: P, f: F) -> Result<Vec<T>, DbError>
    where
        P: Params,
        F: FnMut(&Row<'_>) -> Result<T, DbError>,
    {
        query_map(
            &*self.db.backend,
            self.sql,
            &params.values(),
            self.cached,
            f,
        )
    }

    pub fn query_each<P, F>(&mut self, params: P, mut f: F) -> Result<(), DbError>
    where
        P: Params,
        F: FnMut(&Row<'_>) -> Result<(), DbError>,
    {
        self.db
            .backend
            .query(self.sql, &params.values(), self.cached, &mut |r| {
                f(r).map(|()| true)
            })
    }

    pub fn exists<P: Params>(&mut self, params: P) -> Result<bool, DbError> {
        let mut found = false;
        self.db
            .backend
            .query(self.sql, &params.values(), self.cached, &mut |_| {
                found = true;
                Ok(false)
            })?;
        Ok(found)
    }
}

/// An open transaction; rolled back when dropped without [`Tx::commit`].
pub struct Tx<'a> {
    db: &'a Db,
    done: Cell<bool>,
}

impl Tx<'_> {
    /// On failure the transaction is still rolled back (when dropped).
    pub fn commit(self) -> Result<(), DbError> {
        self.db.backend.commit()?;
        self.done.set(true);
        Ok(())
    }

    #[allow(dead_code)]
    pub fn rollback(self) -> Result<(), DbError> {
        self.done.set(true);
        self.db.backend.rollback()
    }
}

impl std::ops::Deref for Tx<'_> {
    type Target = Db;
    fn deref(&self) -> &Db {
        self.db
    }
}

impl Drop for Tx<'_> {
    fn drop(&mut self) {
        if !self.done.get() && self.db.backend.in_transaction() {
            let _ = self.db.backend.rollback();
        }
    }
}

/// `.optional()` on a single-row result, as rusqlite has.
pub trait OptionalExtension<T> {
    fn optional(self) -> Result<Option<T>, DbError>;
}

impl<T> OptionalExtension<T> for Result<T, DbError> {
    fn optional(self) -> Result<Option<T>, DbError> {
        match self {
            Ok(v) => Ok(Some(v)),
            Err(DbError::NoRows) => Ok(None),
            Err(DbError::Sqlite(rusqlite::Error::QueryReturnedNoRows)) => Ok(None),
            Err(e) => Err(e),
        }
    }
}

/// The error for a stored value this build does not know, raised from a
/// row callback (see `StoreError::Corrupt`).
pub fn unknown_value(what: String, value: String) -> DbError {
    DbError::Unknown { what, value }
}

/// Is this the other process holding the database (SQLite busy/locked; a
/// PostgreSQL serialization failure, deadlock or lock timeout)?
pub fn is_busy(e: &DbError) -> bool {
    match e {
        DbError::Sqlite(rusqlite::Error::SqliteFailure(f, _)) => {
            f.code == rusqlite::ErrorCode::DatabaseBusy
                || f.code == rusqlite::ErrorCode::DatabaseLocked
        }
        DbError::Pg(e) => {
            use ::postgres::error::SqlState;
            matches!(
                e.code(),
                Some(c) if *c == SqlState::T_R_SERIALIZATION_FAILURE
                    || *c == SqlState::T_R_DEADLOCK_DETECTED
                    || *c == SqlState::LOCK_NOT_AVAILABLE
            )
        }
        _ => false,
    }
}
