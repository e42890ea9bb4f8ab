//! What can go wrong with the state database, and how SQLite's errors map
//! onto it: busy, read-only, disk, corrupt data, a writer that stopped.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::BUSY_TIMEOUT;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("state database {path}: {source}")]
    Sqlite {
        path: PathBuf,
        #[source]
        source: rusqlite::Error,
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
        source: rusqlite::Error,
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

/// An unknown stored value, carried through rusqlite's conversion error out
/// of a row-mapping closure and turned into [`StoreError::Corrupt`].
#[derive(Debug)]
pub(super) struct UnknownValue {
    pub what: String,
    pub value: String,
}

impl std::fmt::Display for UnknownValue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} holds unknown value `{}`", self.what, self.value)
    }
}

impl std::error::Error for UnknownValue {}

/// The rusqlite error for an unknown value in column `col`.
pub(super) fn unknown_value(col: usize, what: String, value: String) -> rusqlite::Error {
    rusqlite::Error::FromSqlConversionFailure(
        col,
        rusqlite::types::Type::Text,
        Box::new(UnknownValue { what, value }),
    )
}

pub(super) fn is_busy(e: &rusqlite::Error) -> bool {
    matches!(e, rusqlite::Error::SqliteFailure(f, _)
        if f.code == rusqlite::ErrorCode::DatabaseBusy || f.code == rusqlite::ErrorCode::DatabaseLocked)
}

pub(super) fn sql_err(path: &Path, e: rusqlite::Error) -> StoreError {
    if let rusqlite::Error::FromSqlConversionFailure(_, _, inner) = &e {
        if let Some(u) = inner.downcast_ref::<UnknownValue>() {
            return StoreError::Corrupt {
                path: path.to_path_buf(),
                what: u.what.clone(),
                value: u.value.clone(),
            };
        }
    }
    if let rusqlite::Error::SqliteFailure(f, _) = &e {
        if f.code == rusqlite::ErrorCode::DatabaseBusy
            || f.code == rusqlite::ErrorCode::DatabaseLocked
        {
            return StoreError::Busy {
                path: path.to_path_buf(),
                secs: BUSY_TIMEOUT.as_secs(),
            };
        }
        if f.code == rusqlite::ErrorCode::ReadOnly {
            return StoreError::ReadOnly {
                path: path.to_path_buf(),
            };
        }
        if f.code == rusqlite::ErrorCode::DiskFull || f.code == rusqlite::ErrorCode::SystemIoFailure
        {
            return StoreError::Disk {
                path: path.to_path_buf(),
                source: e,
            };
        }
    }
    StoreError::Sqlite {
        path: path.to_path_buf(),
        source: e,
    }
}
