//! What can go wrong with the state database, and how SQLite's errors map
//! onto it: busy, read-only, disk, corrupt data, a writer that stopped.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::db::DbError;
use super::BUSY_TIMEOUT;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("state database {path}: {source}")]
    Sqlite {
        path: PathBuf,
        #[source]
        source: DbError,
    },
    #[error("state database {path}: cannot create its folder: {source}")]
    Dir {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("state database {path} was written by a newer zns-batch (schema {found}, this build knows {known}); upgrade zns-batch")]
    TooNew {
        path: PathBuf,
        found: i64,
        known: i64,
    },
    #[error("state database {path} is locked by another zns-batch process (busy for {secs}s)")]
    Busy { path: PathBuf, secs: u64 },
    #[error("state database {path} is read-only: make the file and its folder writable (every step is recorded before it is taken, so nothing can be sent without it)")]
    ReadOnly { path: PathBuf },
    #[error("cannot write the state database {path}: is the disk full or failing?")]
    Disk {
        path: PathBuf,
        #[source]
        source: DbError,
    },
    /// A stored value this build does not know: never guessed at.
    #[error("state database {path}: {what} holds `{value}`, which this zns-batch does not know; the file was changed outside zns-batch (restore it, or fix the value with sqlite3)")]
    Corrupt {
        path: PathBuf,
        what: String,
        value: String,
    },
    /// A write asked for a move the row's state does not allow.
    #[error("row {row_id} is `{state}` and cannot be {op}; nothing was written (is another zns-batch working on the same campaign?)")]
    IllegalMove {
        row_id: i64,
        state: String,
        op: &'static str,
    },
    /// The writer thread failed on this error and stopped; the original
    /// error (disk full, read-only, …) is kept so callers can match its kind.
    #[error("the state writer stopped: {0}")]
    Writer(Arc<StoreError>),
    #[error("the state writer stopped: {0}")]
    WriterGone(String),
}

/// The kind of a [`StoreError`], the same through the writer thread.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoreErrorKind {
    Sqlite,
    Dir,
    TooNew,
    Busy,
    ReadOnly,
    Disk,
    Corrupt,
    IllegalMove,
    /// The writer is gone without a database error (a thread ended).
    WriterGone,
}

impl StoreError {
    pub fn kind(&self) -> StoreErrorKind {
        match self {
            StoreError::Sqlite { .. } => StoreErrorKind::Sqlite,
            StoreError::Dir { .. } => StoreErrorKind::Dir,
            StoreError::TooNew { .. } => StoreErrorKind::TooNew,
            StoreError::Busy { .. } => StoreErrorKind::Busy,
            StoreError::ReadOnly { .. } => StoreErrorKind::ReadOnly,
            StoreError::Disk { .. } => StoreErrorKind::Disk,
            StoreError::Corrupt { .. } => StoreErrorKind::Corrupt,
            StoreError::IllegalMove { .. } => StoreErrorKind::IllegalMove,
            StoreError::Writer(inner) => inner.kind(),
            StoreError::WriterGone(_) => StoreErrorKind::WriterGone,
        }
    }
}

/// A database error as the store's: the same kinds on both databases
/// (PostgreSQL's serialization failure, deadlock and lock timeout are Busy;
/// a read-only transaction ReadOnly; disk full or I/O error Disk).
pub(super) fn sql_err(path: &Path, e: impl Into<DbError>) -> StoreError {
    let e = e.into();
    let path = path.to_path_buf();
    match &e {
        DbError::Unknown { what, value } => {
            return StoreError::Corrupt {
                path,
                what: what.clone(),
                value: value.clone(),
            }
        }
        DbError::Sqlite(rusqlite::Error::SqliteFailure(f, _)) => {
            if f.code == rusqlite::ErrorCode::ReadOnly {
                return StoreError::ReadOnly { path };
            }
            if f.code == rusqlite::ErrorCode::DiskFull
                || f.code == rusqlite::ErrorCode::SystemIoFailure
            {
                return StoreError::Disk { path, source: e };
            }
        }
        DbError::Pg(pg) => {
            use postgres::error::SqlState;
            match pg.code() {
                Some(c) if *c == SqlState::READ_ONLY_SQL_TRANSACTION => {
                    return StoreError::ReadOnly { path }
                }
                Some(c) if *c == SqlState::DISK_FULL || *c == SqlState::IO_ERROR => {
                    return StoreError::Disk { path, source: e }
                }
                _ => {}
            }
        }
        _ => {}
    }
    if super::db::is_busy(&e) {
        return StoreError::Busy {
            path,
            secs: BUSY_TIMEOUT.as_secs(),
        };
    }
    StoreError::Sqlite { path, source: e }
}
