//! Where the ledger lives: a SQLite file (the embedded default) or a
//! PostgreSQL database (`--state postgres://…`, shared by several
//! processes). The one place that tells the two apart by their spelling.

use std::ffi::OsStr;
use std::fmt;
use std::path::{Path, PathBuf};

/// A ledger's place. Its `Display` and `Debug` never show a password.
#[derive(Clone, PartialEq, Eq)]
pub enum Location {
    Sqlite(PathBuf),
    Postgres(PgUrl),
}

/// A PostgreSQL connection string and its form fit for messages.
#[derive(Clone, PartialEq, Eq)]
pub struct PgUrl {
    url: String,
    shown: String,
}

impl PgUrl {
    /// The string to connect with (it may hold a password: never log it).
    pub fn connect_string(&self) -> &str {
        &self.url
    }

    /// The URL without its password.
    pub fn shown(&self) -> &str {
        &self.shown
    }
}

/// Where uploads and other files live when the ledger is a database, not a
/// file: `state/` under the working directory, as with the default file.
const FILES_DIR_FOR_POSTGRES: &str = "state";

impl Location {
    /// `postgres://…` or `postgresql://…` is a PostgreSQL database;
    /// anything else is a SQLite file's path.
    pub fn parse(s: &OsStr) -> Location {
        match s.to_str() {
            Some(text) if is_postgres_url(text) => Location::Postgres(PgUrl {
                url: text.to_string(),
                shown: super::db::redact_url(text),
            }),
            _ => Location::Sqlite(PathBuf::from(s)),
        }
    }

    pub fn is_postgres(&self) -> bool {
        matches!(self, Location::Postgres(_))
    }

    /// The SQLite file, if the ledger is one.
    pub fn sqlite_path(&self) -> Option<&Path> {
        match self {
            Location::Sqlite(p) => Some(p),
            Location::Postgres(_) => None,
        }
    }

    /// The folder for files kept beside the ledger (uploads): the SQLite
    /// file's folder, or `state/` for a database.
    pub fn files_dir(&self) -> PathBuf {
        match self {
            Location::Sqlite(p) => match p.parent() {
                Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
                _ => PathBuf::from("."),
            },
            Location::Postgres(_) => PathBuf::from(FILES_DIR_FOR_POSTGRES),
        }
    }

    /// For messages: `{}` shows the path, or the URL without its password.
    pub fn display(&self) -> &Location {
        self
    }

    /// A path-like name for messages and errors (no password).
    pub fn shown(&self) -> PathBuf {
        match self {
            Location::Sqlite(p) => p.clone(),
            Location::Postgres(u) => PathBuf::from(u.shown()),
        }
    }
}

fn is_postgres_url(s: &str) -> bool {
    let lower = s.get(..13).unwrap_or(s).to_ascii_lowercase();
    lower.starts_with("postgres://") || lower.starts_with("postgresql://")
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Location::Sqlite(p) => write!(f, "{}", p.display()),
            Location::Postgres(u) => f.write_str(u.shown()),
        }
    }
}

impl fmt::Debug for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Location::Sqlite(p) => f.debug_tuple("Sqlite").field(p).finish(),
            Location::Postgres(u) => f.debug_tuple("Postgres").field(&u.shown()).finish(),
        }
    }
}

impl From<&Path> for Location {
    fn from(p: &Path) -> Location {
        Location::parse(p.as_os_str())
    }
}

impl From<&PathBuf> for Location {
    fn from(p: &PathBuf) -> Location {
        Location::parse(p.as_os_str())
    }
}

impl From<PathBuf> for Location {
    fn from(p: PathBuf) -> Location {
        Location::parse(p.as_os_str())
    }
}

impl From<&Location> for Location {
    fn from(l: &Location) -> Location {
        l.clone()
    }
}

impl From<&str> for Location {
    fn from(s: &str) -> Location {
        Location::parse(OsStr::new(s))
    }
}

impl std::str::FromStr for Location {
    type Err = std::convert::Infallible;
    fn from_str(s: &str) -> Result<Location, Self::Err> {
        Ok(Location::from(s))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_url_is_a_database_and_anything_else_a_file() {
        let pg = Location::from("postgres://zb:s3cret@db.local/zns");
        assert!(pg.is_postgres());
        assert_eq!(pg.to_string(), "postgres://zb@db.local/zns");
        assert!(!format!("{pg:?}").contains("s3cret"));
        assert_eq!(pg.files_dir(), PathBuf::from("state"));
        assert!(Location::from("PostgreSQL://db/zns").is_postgres());

        let file = Location::from("state/zns-batch.sqlite");
        assert_eq!(
            file.sqlite_path(),
            Some(Path::new("state/zns-batch.sqlite"))
        );
        assert_eq!(file.files_dir(), PathBuf::from("state"));
        assert_eq!(Location::from("x.sqlite").files_dir(), PathBuf::from("."));
        // A folder that happens to be called postgres is a file path.
        assert!(!Location::from("postgres/zns.sqlite").is_postgres());
    }
}
