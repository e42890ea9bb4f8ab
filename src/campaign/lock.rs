//! The per-campaign lock: one process sends a campaign at a time, whether
//! it was started from the command line or the web console.

use std::fs::File;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use super::CampaignError;

/// Held for the whole run; the OS releases it if the process dies.
pub struct CampaignLock {
    _file: File,
}

pub fn lock(state: &Path, campaign: &str) -> Result<CampaignLock, CampaignError> {
    let digest = hex::encode(Sha256::digest(campaign.as_bytes()));
    // One lock per database file however it is named (symlink, `./`,
    // relative or absolute): the lock sits beside the file itself.
    let state = std::fs::canonicalize(state).unwrap_or_else(|_| state.to_path_buf());
    let mut name = state.as_os_str().to_owned();
    name.push(format!(".{}.lock", &digest[..12]));
    let path = PathBuf::from(name);
    let file = File::options()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(|source| CampaignError::LockFile {
            path: path.clone(),
            source,
        })?;
    match file.try_lock() {
        Ok(()) => Ok(CampaignLock { _file: file }),
        Err(std::fs::TryLockError::WouldBlock) => Err(CampaignError::Locked {
            name: campaign.to_string(),
            lock: path,
        }),
        Err(std::fs::TryLockError::Error(source)) => Err(CampaignError::LockFile { path, source }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_lock_on_the_same_campaign_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let state = dir.path().join("s.sqlite");
        let first = lock(&state, "c").unwrap();
        assert!(matches!(
            lock(&state, "c"),
            Err(CampaignError::Locked { .. })
        ));
        let _other = lock(&state, "other").unwrap();
        drop(first);
        lock(&state, "c").unwrap();
    }

    #[cfg(unix)]
    #[test]
    fn the_same_file_through_a_symlink_is_the_same_lock() {
        let dir = tempfile::tempdir().unwrap();
        let state = dir.path().join("s.sqlite");
        std::fs::write(&state, b"").unwrap();
        let link = dir.path().join("link.sqlite");
        std::os::unix::fs::symlink(&state, &link).unwrap();
        let _first = lock(&state, "c").unwrap();
        assert!(matches!(
            lock(&link, "c"),
            Err(CampaignError::Locked { .. })
        ));
    }
}
