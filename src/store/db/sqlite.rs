//! The SQLite backend: today's rusqlite connection, its statement cache,
//! and parameters bound without a copy. Opening, PRAGMAs and WAL stay in
//! `Store` (they are SQLite's alone).

use rusqlite::types::{ToSqlOutput, ValueRef};
use rusqlite::{Connection, Statement};

use super::{Backend, Begin, DbError, Dialect, EachRow, Row, Value};

/// Statements kept prepared: the writer's ops, the import's inserts, the
/// readers' pages, with room to spare (rusqlite keeps 16 by default).
const STATEMENT_CACHE: usize = 128;

pub struct SqliteBackend {
    conn: Connection,
}

impl SqliteBackend {
    pub fn new(conn: Connection) -> SqliteBackend {
        conn.set_prepared_statement_cache_capacity(STATEMENT_CACHE);
        SqliteBackend { conn }
    }
}

impl rusqlite::ToSql for Value<'_> {
    fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
        Ok(ToSqlOutput::Borrowed(match *self {
            Value::Null => ValueRef::Null,
            Value::Int(i) => ValueRef::Integer(i),
            Value::Real(f) => ValueRef::Real(f),
            Value::Text(s) => ValueRef::Text(s.as_bytes()),
            Value::Blob(b) => ValueRef::Blob(b),
        }))
    }
}

/// Column `idx` of a row, borrowed.
pub(super) fn column<'r>(r: &'r rusqlite::Row<'_>, idx: usize) -> Result<Value<'r>, DbError> {
    Ok(match r.get_ref(idx)? {
        ValueRef::Null => Value::Null,
        ValueRef::Integer(i) => Value::Int(i),
        ValueRef::Real(f) => Value::Real(f),
        ValueRef::Text(t) => Value::Text(
            std::str::from_utf8(t).map_err(|e| super::value::conversion(idx, e.to_string()))?,
        ),
        ValueRef::Blob(b) => Value::Blob(b),
    })
}

fn run(
    stmt: &mut Statement<'_>,
    params: &[Value<'_>],
    each: &mut EachRow<'_>,
) -> Result<(), DbError> {
    let mut rows = stmt.query(rusqlite::params_from_iter(params.iter()))?;
    while let Some(r) = rows.next()? {
        if !each(&Row::Sqlite(r))? {
            break;
        }
    }
    Ok(())
}

impl Backend for SqliteBackend {
    fn dialect(&self) -> Dialect {
        Dialect::Sqlite
    }

    fn execute(&self, sql: &str, params: &[Value<'_>], cached: bool) -> Result<usize, DbError> {
        let params = rusqlite::params_from_iter(params.iter());
        Ok(if cached {
            self.conn.prepare_cached(sql)?.execute(params)?
        } else {
            self.conn.execute(sql, params)?
        })
    }

    fn query(
        &self,
        sql: &str,
        params: &[Value<'_>],
        cached: bool,
        each: &mut EachRow<'_>,
    ) -> Result<(), DbError> {
        if cached {
            let mut stmt = self.conn.prepare_cached(sql)?;
            run(&mut stmt, params, each)
        } else {
            run(&mut self.conn.prepare(sql)?, params, each)
        }
    }

    fn batch(&self, sql: &str) -> Result<(), DbError> {
        Ok(self.conn.execute_batch(sql)?)
    }

    fn begin(&self, how: Begin) -> Result<(), DbError> {
        let sql = match how {
            Begin::Deferred => "BEGIN",
            Begin::Immediate => "BEGIN IMMEDIATE",
        };
        self.conn.prepare_cached(sql)?.execute([])?;
        Ok(())
    }

    fn commit(&self) -> Result<(), DbError> {
        self.conn.prepare_cached("COMMIT")?.execute([])?;
        Ok(())
    }

    fn rollback(&self) -> Result<(), DbError> {
        self.conn.execute_batch("ROLLBACK")?;
        Ok(())
    }

    fn in_transaction(&self) -> bool {
        !self.conn.is_autocommit()
    }

    fn as_sqlite(&self) -> Option<&Connection> {
        Some(&self.conn)
    }
}
