//! `migrate`: a whole ledger copied from a SQLite file into PostgreSQL (a
//! `postgres://` URL) or into a new SQLite file (a copy that also
//! compacts). The copy itself is the store's (`Store::copy_into`); here the
//! two ends are opened, the source's leases judged with this host's
//! knowledge of its processes, and the outcome given an exit code.

use std::path::{Path, PathBuf};
use std::time::Instant;

use crate::store::{real_now_ms, CopyError, Location, Store, TableCopy};

use super::{lock, usage, CoreError};

/// A table's progress, told as the copy goes.
pub type MigrateProgress = TableCopy;

/// What a finished migrate copied.
#[derive(Debug, Clone, serde::Serialize)]
pub struct MigrateSummary {
    pub from: String,
    pub to: String,
    /// Rows per table, in the order they were copied.
    pub tables: Vec<(String, u64)>,
    pub rows: u64,
    pub secs: f64,
}

/// Copy the ledger at `from` (a SQLite file that must exist) into `to`
/// (which must hold no campaign yet).
pub fn migrate(
    from: &Path,
    to: &Location,
    progress: &mut dyn FnMut(&MigrateProgress),
) -> Result<MigrateSummary, CoreError> {
    let started = Instant::now();
    if let from @ Location::Postgres(_) = Location::from(from) {
        return Err(usage(format!(
            "migrate: --from {from} is a PostgreSQL URL; migrate copies from a SQLite state file"
        )));
    }
    if !from.is_file() {
        return Err(usage(format!(
            "migrate: no ledger at {} (--from names the SQLite state file to copy)",
            from.display()
        )));
    }
    let source = Store::open_existing(from)?
        .ok_or_else(|| usage(format!("migrate: no ledger at {}", from.display())))?;
    let created = match to {
        Location::Sqlite(path) => {
            if same_file(from, path) {
                return Err(usage(format!(
                    "migrate: --to {} is the --from ledger itself; name another file or a postgres:// URL",
                    path.display()
                )));
            }
            !path.exists()
        }
        Location::Postgres(_) => false,
    };
    let copied = open_target(to).and_then(|mut target| {
        source
            .copy_into(&mut target, real_now_ms(), &lock::holder_gone, progress)
            .map_err(copy_error)
    });
    let report = match copied {
        Ok(r) => r,
        Err(e) => {
            // A SQLite file this command made holds nothing worth keeping.
            if let (true, Location::Sqlite(path)) = (created, to) {
                for end in ["", "-wal", "-shm"] {
                    let mut p = path.as_os_str().to_owned();
                    p.push(end);
                    let _ = std::fs::remove_file(PathBuf::from(p));
                }
            }
            return Err(e);
        }
    };
    Ok(MigrateSummary {
        from: from.display().to_string(),
        to: to.to_string(),
        rows: report.rows(),
        tables: report
            .tables
            .iter()
            .map(|(t, n)| (t.to_string(), *n))
            .collect(),
        secs: started.elapsed().as_secs_f64(),
    })
}

fn open_target(to: &Location) -> Result<Store, CoreError> {
    Ok(Store::open(to)?)
}

/// A refusal is the user's to fix (exit 2); a failed or undone copy is not.
fn copy_error(e: CopyError) -> CoreError {
    match e {
        CopyError::Store(e) => e.into(),
        CopyError::CountMismatch { .. } => CoreError::Fatal(anyhow::Error::new(e)),
        CopyError::LiveLease {
            campaign,
            holder,
            expires_at_ms,
        } => usage(format!(
            "migrate: campaign `{campaign}` is being run now by {holder} (its lease lapses at {}); \
             stop it first (Pause, Ctrl-C, or let it finish) so none of its progress is left behind",
            crate::model::clock::fmt_local(crate::model::clock::from_ms(expires_at_ms))
        )),
        refused => usage(format!("migrate: {refused}")),
    }
}

/// The same file under two names (a symlink, `./`)?
fn same_file(a: &Path, b: &Path) -> bool {
    match (a.canonicalize(), b.canonicalize()) {
        (Ok(a), Ok(b)) => a == b,
        _ => false,
    }
}
