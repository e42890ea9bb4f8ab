//! The PostgreSQL backend: the sync `postgres` client (no TLS yet: the
//! database is expected on a trusted network or a local socket), statements
//! prepared once per text with their `?N` placeholders rewritten to `$N`.

use std::cell::{Cell, RefCell, RefMut};
use std::collections::HashMap;
use std::time::Duration;

use postgres::error::SqlState;
use postgres::types::{IsNull, ToSql, Type};
use postgres::{Client, NoTls, Statement};

use super::{Backend, Begin, DbError, Dialect, EachRow, Row, Value};

/// `Begin::Immediate`: a transaction-scoped advisory lock, the same key
/// for every zns-batch process on the database (0x7A6E73, "zns" in ASCII).
const WRITE_LOCK_BEGIN: &str = "BEGIN; SELECT pg_advisory_xact_lock(8023667)";

/// Prepared statements kept per connection; past this the cache starts
/// over (texts built with values in them would otherwise pile up).
const STATEMENT_CACHE: usize = 512;

pub struct PgBackend {
    /// None only while being dropped.
    client: RefCell<Option<Client>>,
    statements: RefCell<HashMap<String, Statement>>,
    in_tx: Cell<bool>,
}

impl PgBackend {
    /// Connect; a lock held by another process is waited for at most
    /// `lock_wait` (then the error is the store's Busy, as on SQLite).
    pub fn connect(url: &str, lock_wait: Duration) -> Result<PgBackend, DbError> {
        let client = off_async(|| -> Result<Client, DbError> {
            let mut client = Client::connect(url, NoTls)?;
            client.batch_execute(&format!(
                "SET lock_timeout = {}; SET client_min_messages = warning",
                lock_wait.as_millis()
            ))?;
            Ok(client)
        })?;
        Ok(PgBackend {
            client: RefCell::new(Some(client)),
            statements: RefCell::new(HashMap::new()),
            in_tx: Cell::new(false),
        })
    }

    fn statement(
        &self,
        sql: &str,
        params: &[Value<'_>],
        cached: bool,
    ) -> Result<Statement, DbError> {
        if let Some(s) = self.statements.borrow().get(sql) {
            return Ok(s.clone());
        }
        let text = placeholders(sql);
        let types: Vec<Type> = params.iter().map(value_type).collect();
        let in_tx = self.in_tx.get();
        let mut client = self.client();
        let client = &mut *client;
        let stmt = off_async(move || -> Result<Statement, DbError> {
            // A failed parse aborts the transaction it is in: a savepoint
            // keeps the transaction when the first try is refused.
            if in_tx {
                client.batch_execute("SAVEPOINT zb_prepare")?;
            }
            // PostgreSQL infers each parameter's type from where it stands; where
            // it cannot (`?1 IS NOT NULL`) or finds two (`x = ?3 … ?3 <> 0`),
            // the values' own types decide.
            let stmt = match client.prepare(&text) {
                Ok(s) => s,
                Err(e)
                    if e.code() == Some(&SqlState::INDETERMINATE_DATATYPE)
                        || e.code() == Some(&SqlState::AMBIGUOUS_PARAMETER) =>
                {
                    if in_tx {
                        client.batch_execute("ROLLBACK TO SAVEPOINT zb_prepare")?;
                    }
                    client.prepare_typed(&text, &types)?
                }
                Err(e) => return Err(e.into()),
            };
            if in_tx {
                client.batch_execute("RELEASE SAVEPOINT zb_prepare")?;
            }
            Ok(stmt)
        })?;
        if cached {
            let mut cache = self.statements.borrow_mut();
            if cache.len() >= STATEMENT_CACHE {
                cache.clear();
            }
            cache.insert(sql.to_string(), stmt.clone());
        }
        Ok(stmt)
    }
}

impl PgBackend {
    fn client(&self) -> RefMut<'_, Client> {
        RefMut::map(self.client.borrow_mut(), |c| {
            c.as_mut().expect("the client is only taken by drop")
        })
    }
}

/// The client closes its connection and its runtime on a thread where
/// tokio allows blocking.
impl Drop for PgBackend {
    fn drop(&mut self) {
        if let Some(client) = self.client.get_mut().take() {
            off_async(move || drop(client));
        }
    }
}

/// The sync client blocks on a runtime of its own, which tokio refuses on
/// a thread that drives async tasks (it panics): there the call is made
/// with `block_in_place` (a multi-thread runtime) or on a thread of its own
/// (a current-thread runtime). Elsewhere — a plain or `spawn_blocking`
/// thread — it is made as it is.
fn off_async<R: Send>(call: impl FnOnce() -> R + Send) -> R {
    use tokio::runtime::{Handle, RuntimeFlavor};
    match Handle::try_current() {
        Err(_) => call(),
        Ok(h) if h.runtime_flavor() == RuntimeFlavor::MultiThread => {
            tokio::task::block_in_place(call)
        }
        Ok(_) => std::thread::scope(|s| match s.spawn(call).join() {
            Ok(r) => r,
            Err(panic) => std::panic::resume_unwind(panic),
        }),
    }
}

fn value_type(v: &Value<'_>) -> Type {
    match v {
        Value::Int(_) => Type::INT8,
        Value::Real(_) => Type::FLOAT8,
        Value::Blob(_) => Type::BYTEA,
        Value::Null | Value::Text(_) => Type::TEXT,
    }
}

/// SQLite's `?N` (and bare `?`) as PostgreSQL's `$N`, outside string
/// literals, quoted names and comments.
pub(super) fn placeholders(sql: &str) -> String {
    let b = sql.as_bytes();
    let mut out = String::with_capacity(sql.len() + 8);
    let mut i = 0;
    let mut next_bare = 1;
    let mut copied = 0;
    while i < b.len() {
        match b[i] {
            q @ (b'\'' | b'"') => {
                i += 1;
                while i < b.len() && b[i] != q {
                    i += 1;
                }
                i += 1;
            }
            b'-' if b.get(i + 1) == Some(&b'-') => {
                while i < b.len() && b[i] != b'\n' {
                    i += 1;
                }
            }
            b'/' if b.get(i + 1) == Some(&b'*') => {
                i += 2;
                while i + 1 < b.len() && !(b[i] == b'*' && b[i + 1] == b'/') {
                    i += 1;
                }
                i += 2;
            }
            b'?' => {
                out.push_str(&sql[copied..i]);
                let start = i + 1;
                let mut end = start;
                while end < b.len() && b[end].is_ascii_digit() {
                    end += 1;
                }
                if end == start {
                    out.push_str(&format!("${next_bare}"));
                    next_bare += 1;
                } else {
                    out.push('$');
                    out.push_str(&sql[start..end]);
                    next_bare = sql[start..end].parse::<usize>().unwrap_or(0) + 1;
                }
                i = end;
                copied = end;
            }
            _ => i += 1,
        }
    }
    out.push_str(&sql[copied.min(sql.len())..]);
    out
}

/// A parameter in whatever type PostgreSQL inferred for its place: an
/// integer where a BIGINT, INT, DOUBLE or BOOLEAN is expected, text for text.
impl ToSql for Value<'_> {
    fn to_sql(
        &self,
        ty: &Type,
        out: &mut bytes::BytesMut,
    ) -> Result<IsNull, Box<dyn std::error::Error + Sync + Send>> {
        match *self {
            Value::Null => Ok(IsNull::Yes),
            Value::Int(i) => {
                if *ty == Type::INT8 {
                    i.to_sql(ty, out)
                } else if *ty == Type::INT4 {
                    i32::try_from(i)?.to_sql(ty, out)
                } else if *ty == Type::INT2 {
                    i16::try_from(i)?.to_sql(ty, out)
                } else if *ty == Type::FLOAT8 {
                    (i as f64).to_sql(ty, out)
                } else if *ty == Type::BOOL {
                    (i != 0).to_sql(ty, out)
                } else {
                    i.to_string().to_sql(ty, out)
                }
            }
            Value::Real(f) => {
                if *ty == Type::FLOAT4 {
                    (f as f32).to_sql(ty, out)
                } else {
                    f.to_sql(ty, out)
                }
            }
            Value::Text(s) => s.to_sql(ty, out),
            Value::Blob(b) => b.to_sql(ty, out),
        }
    }

    fn accepts(_: &Type) -> bool {
        true
    }

    postgres::types::to_sql_checked!();
}

/// Column `idx` of a row, in the store's five kinds. A SUM must be CAST to
/// BIGINT in the SQL (PostgreSQL's is NUMERIC, which has no kind here).
pub(super) fn column(r: &postgres::Row, idx: usize) -> Result<Value<'_>, DbError> {
    let ty = r
        .columns()
        .get(idx)
        .ok_or_else(|| super::value::conversion(idx, "no such column".into()))?
        .type_()
        .clone();
    let v = if ty == Type::INT8 {
        r.try_get::<_, Option<i64>>(idx)?.map(Value::Int)
    } else if ty == Type::INT4 {
        r.try_get::<_, Option<i32>>(idx)?
            .map(|v| Value::Int(v.into()))
    } else if ty == Type::INT2 {
        r.try_get::<_, Option<i16>>(idx)?
            .map(|v| Value::Int(v.into()))
    } else if ty == Type::BOOL {
        r.try_get::<_, Option<bool>>(idx)?
            .map(|v| Value::Int(v.into()))
    } else if ty == Type::FLOAT8 {
        r.try_get::<_, Option<f64>>(idx)?.map(Value::Real)
    } else if ty == Type::FLOAT4 {
        r.try_get::<_, Option<f32>>(idx)?
            .map(|v| Value::Real(v.into()))
    } else if ty == Type::BYTEA {
        r.try_get::<_, Option<&[u8]>>(idx)?.map(Value::Blob)
    } else if ty == Type::TEXT || ty == Type::VARCHAR || ty == Type::BPCHAR || ty == Type::NAME {
        r.try_get::<_, Option<&str>>(idx)?.map(Value::Text)
    } else {
        return Err(super::value::conversion(
            idx,
            format!("PostgreSQL type {ty} is not read by the store (CAST it in the SQL)"),
        ));
    };
    Ok(v.unwrap_or(Value::Null))
}

fn refs<'a>(params: &'a [Value<'a>]) -> Vec<&'a (dyn ToSql + Sync)> {
    params.iter().map(|v| v as &(dyn ToSql + Sync)).collect()
}

impl PgBackend {
    fn tx_statement(&self, sql: &str) -> Result<(), DbError> {
        let mut client = self.client();
        let client = &mut *client;
        off_async(move || client.batch_execute(sql))?;
        Ok(())
    }
}

impl Backend for PgBackend {
    fn dialect(&self) -> Dialect {
        Dialect::Postgres
    }

    fn execute(&self, sql: &str, params: &[Value<'_>], cached: bool) -> Result<usize, DbError> {
        let stmt = self.statement(sql, params, cached)?;
        let mut client = self.client();
        let client = &mut *client;
        let n = off_async(move || client.execute(&stmt, &refs(params)))?;
        Ok(n as usize)
    }

    /// The rows are fetched first, then handed out: the connection is free
    /// again while `each` runs (it may run statements of its own).
    fn query(
        &self,
        sql: &str,
        params: &[Value<'_>],
        cached: bool,
        each: &mut EachRow<'_>,
    ) -> Result<(), DbError> {
        let stmt = self.statement(sql, params, cached)?;
        let rows = {
            let mut client = self.client();
            let client = &mut *client;
            off_async(move || client.query(&stmt, &refs(params)))?
        };
        for r in &rows {
            if !each(&Row::Pg(r))? {
                break;
            }
        }
        Ok(())
    }

    fn batch(&self, sql: &str) -> Result<(), DbError> {
        self.tx_statement(sql)
    }

    fn begin(&self, how: Begin) -> Result<(), DbError> {
        // IMMEDIATE is SQLite's one writer at a time, here a lock every
        // process's writing transactions take first: the state writer's
        // batch and a batch of callbacks both change rows and the same
        // campaign's counters, and in two orders they would deadlock.
        // Reads and claims lock rows as they go (FOR UPDATE SKIP LOCKED).
        self.tx_statement(match how {
            Begin::Deferred => "BEGIN",
            Begin::Immediate => WRITE_LOCK_BEGIN,
        })?;
        self.in_tx.set(true);
        Ok(())
    }

    fn commit(&self) -> Result<(), DbError> {
        let r = self.tx_statement("COMMIT");
        // A failed COMMIT ends the transaction too (PostgreSQL rolls it back).
        self.in_tx.set(false);
        r
    }

    fn rollback(&self) -> Result<(), DbError> {
        self.in_tx.set(false);
        self.tx_statement("ROLLBACK")
    }

    fn in_transaction(&self) -> bool {
        self.in_tx.get()
    }
}

/// A connection URL fit for an error message or a log: no password.
pub fn redact_url(url: &str) -> String {
    // postgres://user:password@host/db → postgres://user@host/db
    if let Some((scheme, rest)) = url.split_once("://") {
        let (auth, tail) = match rest.find('@') {
            Some(at) => (&rest[..at], &rest[at..]),
            None => ("", rest),
        };
        let user = auth.split(':').next().unwrap_or("");
        let tail = redact_pairs(tail, '&');
        return format!("{scheme}://{user}{tail}");
    }
    // key=value form: host=… password=…
    redact_pairs(url, ' ')
}

fn redact_pairs(s: &str, sep: char) -> String {
    s.split(sep)
        .map(|part| {
            let key = part.rsplit(['?', '&', ' ']).next().unwrap_or(part);
            if key.to_ascii_lowercase().starts_with("password=") {
                let keep = part.len() - key.len();
                format!("{}password=***", &part[..keep])
            } else {
                part.to_string()
            }
        })
        .collect::<Vec<_>>()
        .join(&sep.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders_become_dollar_numbers_outside_literals() {
        assert_eq!(
            placeholders("SELECT ?1, '?2', \"a?\", ? -- ?9\n, ?12 /* ?3 */"),
            "SELECT $1, '?2', \"a?\", $2 -- ?9\n, $12 /* ?3 */"
        );
        assert_eq!(placeholders("x = ? AND y = ?"), "x = $1 AND y = $2");
        assert_eq!(placeholders("'it''s' || ?2"), "'it''s' || $2");
    }

    #[test]
    fn a_url_loses_its_password() {
        assert_eq!(
            redact_url("postgres://zb:s3cret@db.local:5432/zns"),
            "postgres://zb@db.local:5432/zns"
        );
        assert_eq!(
            redact_url("postgres://zb@db/zns?password=s3cret&sslmode=disable"),
            "postgres://zb@db/zns?password=***&sslmode=disable"
        );
        assert_eq!(
            redact_url("host=db user=zb password=s3cret"),
            "host=db user=zb password=***"
        );
    }
}
