//! One process sends a campaign at a time, whether it was started from the
//! command line or a web console, on this machine or another sharing the
//! ledger: a lease in the ledger (see `store::leases`), renewed every
//! third of its ttl by a heartbeat thread and deleted when the holder is
//! done.
//!
//! One policy, no file lock beside it: a file lock cannot be seen from
//! another machine, and two mechanisms would disagree on who holds a
//! campaign. What the file lock gave for free — a crashed holder freed at
//! once — the lease keeps for the same machine: a holder on this host
//! whose process is gone is taken over at once; one on another host only
//! once its lease lapsed (a kill there costs about `lease_ttl` of pause).

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use super::CampaignError;
use crate::engine::policy;
use crate::engine::stop::{Stop, StopReason};
use crate::model::clock;
use crate::store::{real_now_ms, Lease, LeaseFence, Location, Store, Take};

/// How long a lease lasts without a heartbeat (config `lease_ttl`).
pub const DEFAULT_LEASE_TTL: Duration = Duration::from_secs(15);
/// Below this a heartbeat every third of it would be mostly noise.
const MIN_LEASE_TTL: Duration = Duration::from_secs(1);

/// The lease, held for the whole run and given up when dropped. A holder
/// killed leaves it to lapse (or to be taken at once on this host).
pub struct CampaignLock {
    campaign: String,
    holder: String,
    /// The lease of another holder this one took over.
    previous: Option<Lease>,
    lost: Arc<AtomicBool>,
    /// Told when the heartbeat finds the lease gone.
    watcher: Arc<Mutex<Option<Arc<Stop>>>>,
    quit: Option<std::sync::mpsc::Sender<()>>,
    heartbeat: Option<std::thread::JoinHandle<()>>,
}

impl CampaignLock {
    /// What a claim checks: this holder's lease on the campaign.
    pub fn fence(&self) -> LeaseFence {
        LeaseFence {
            campaign: self.campaign.clone(),
            holder: self.holder.clone(),
        }
    }

    /// Stop `stop` (as `LeaseLost`) when the lease is found gone; at once
    /// if it already is.
    pub fn watch(&self, stop: Arc<Stop>) {
        if self.is_lost() {
            stop.request(StopReason::LeaseLost, policy::lease_lost(&self.campaign));
        }
        *self.watcher.lock().unwrap_or_else(|p| p.into_inner()) = Some(stop);
    }

    /// The heartbeat found the lease taken over.
    pub fn is_lost(&self) -> bool {
        self.lost.load(Ordering::SeqCst)
    }

    pub fn holder(&self) -> &str {
        &self.holder
    }

    /// The lease of another holder this take displaced, if any.
    pub fn taken_over(&self) -> Option<&Lease> {
        self.previous.as_ref()
    }
}

impl Drop for CampaignLock {
    fn drop(&mut self) {
        drop(self.quit.take());
        if let Some(t) = self.heartbeat.take() {
            let _ = t.join();
        }
    }
}

/// Take the campaign's lease with the default ttl.
pub fn lock(state: &Location, campaign: &str) -> Result<CampaignLock, CampaignError> {
    lock_for(state, campaign, DEFAULT_LEASE_TTL)
}

/// Take the campaign's lease for `ttl` (renewed every `ttl / 3`), or say
/// who holds it and until when.
pub fn lock_for(
    state: &Location,
    campaign: &str,
    ttl: Duration,
) -> Result<CampaignLock, CampaignError> {
    let ttl = ttl.max(MIN_LEASE_TTL);
    let ttl_ms = ttl.as_millis() as i64;
    let holder = new_holder();
    let mut store = Store::open(state)?;
    let previous = match store.lease_take(campaign, &holder, ttl_ms, real_now_ms(), &holder_gone)? {
        Take::Held(l) => return Err(locked(campaign, &l)),
        Take::Taken { previous } => previous,
    };
    let lost = Arc::new(AtomicBool::new(false));
    let watcher: Arc<Mutex<Option<Arc<Stop>>>> = Arc::default();
    let (quit, quitting) = std::sync::mpsc::channel::<()>();
    let beat = Heartbeat {
        store,
        campaign: campaign.to_string(),
        holder: holder.clone(),
        ttl,
        lost: lost.clone(),
        watcher: watcher.clone(),
    };
    let heartbeat = std::thread::Builder::new()
        .name("zns-lease".into())
        .spawn(move || beat.run(quitting))
        .map_err(|e| {
            CampaignError::Store(crate::store::StoreError::WriterGone(format!(
                "cannot start the lease heartbeat: {e}"
            )))
        })?;
    Ok(CampaignLock {
        campaign: campaign.to_string(),
        holder,
        previous,
        lost,
        watcher,
        quit: Some(quit),
        heartbeat: Some(heartbeat),
    })
}

/// Refused if another process holds a live lease on the campaign; takes
/// nothing (the start that follows takes it, and records a takeover).
pub fn check_free(state: &Location, campaign: &str) -> Result<(), CampaignError> {
    let Some(store) = Store::open_existing(state)? else {
        return Ok(());
    };
    match store.lease(campaign)? {
        Some(l) if !l.lapsed(real_now_ms()) && !holder_gone(&l.holder) => Err(locked(campaign, &l)),
        _ => Ok(()),
    }
}

/// The leases of campaigns a person started from the web, that the ledger
/// says are running, and whose holder is gone (lapsed, or its process
/// ended on this host) or that have none: a `serve` takes them over.
pub fn orphaned(state: &Location) -> Result<Vec<String>, CampaignError> {
    let Some(store) = Store::open_existing(state)? else {
        return Ok(Vec::new());
    };
    let now = real_now_ms();
    Ok(store
        .running_wanted_leases()?
        .into_iter()
        .filter(|(_, lease)| {
            lease
                .as_ref()
                .is_none_or(|l| l.lapsed(now) || holder_gone(&l.holder))
        })
        .map(|(name, _)| name)
        .collect())
}

fn locked(campaign: &str, l: &Lease) -> CampaignError {
    let left = ((l.expires_at_ms - real_now_ms()).max(0) + 999) / 1000;
    CampaignError::Locked {
        name: campaign.to_string(),
        holder: l.holder.clone(),
        until: clock::fmt_local(clock::from_ms(l.expires_at_ms)),
        secs: left as u64,
    }
}

/// What a takeover is recorded as: from whom, how long after its last
/// heartbeat, and why it was free.
pub fn takeover_detail(previous: &Lease) -> String {
    let now = real_now_ms();
    let secs = (now - previous.renewed_at_ms).max(0) as f64 / 1000.0;
    let why = if previous.lapsed(now) {
        "its lease lapsed"
    } else {
        "its process on this host had ended"
    };
    format!(
        "taken over from {} after {secs:.1}s ({why})",
        previous.holder
    )
}

struct Heartbeat {
    store: Store,
    campaign: String,
    holder: String,
    ttl: Duration,
    lost: Arc<AtomicBool>,
    watcher: Arc<Mutex<Option<Arc<Stop>>>>,
}

impl Heartbeat {
    fn run(mut self, quitting: std::sync::mpsc::Receiver<()>) {
        let ttl_ms = self.ttl.as_millis() as i64;
        // Until the lock is dropped (the run is over).
        while let Err(std::sync::mpsc::RecvTimeoutError::Timeout) =
            quitting.recv_timeout(self.ttl / 3)
        {
            match self
                .store
                .lease_renew(&self.campaign, &self.holder, ttl_ms, real_now_ms())
            {
                Ok(true) => {}
                Ok(false) => {
                    self.lost.store(true, Ordering::SeqCst);
                    tracing::warn!(campaign = %self.campaign, holder = %self.holder,
                        "lease lost: another process took the campaign over; this one stops sending");
                    if let Some(stop) = self
                        .watcher
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .as_ref()
                    {
                        stop.request(StopReason::LeaseLost, policy::lease_lost(&self.campaign));
                    }
                    // Not ours any more: nothing to release.
                    return;
                }
                // A busy or failing database: try again next beat; if the
                // lease lapses meanwhile, the claims' fence stops the run.
                Err(e) => tracing::warn!(campaign = %self.campaign, "lease not renewed: {e}"),
            }
        }
        if let Err(e) = self.store.lease_release(&self.campaign, &self.holder) {
            tracing::warn!(campaign = %self.campaign, "lease not released (it lapses by itself): {e}");
        }
    }
}

/// `host:pid:random`, new for every take: two runs in one process are two
/// holders.
fn new_holder() -> String {
    format!(
        "{}:{}:{}",
        hostname(),
        std::process::id(),
        hex::encode(rand::random::<[u8; 4]>())
    )
}

/// Env `ZNS_LEASE_HOST`: the host name leases give (default the
/// machine's). Containers sharing a ledger under one host name set it
/// apart; tests use it to play a second machine.
pub const LEASE_HOST_ENV: &str = "ZNS_LEASE_HOST";

fn hostname() -> &'static str {
    static NAME: OnceLock<String> = OnceLock::new();
    NAME.get_or_init(|| {
        std::env::var(LEASE_HOST_ENV)
            .ok()
            .filter(|h| !h.trim().is_empty())
            .or_else(|| std::fs::read_to_string("/proc/sys/kernel/hostname").ok())
            .or_else(|| std::env::var("HOSTNAME").ok())
            .map(|h| h.trim().replace(':', "-"))
            .filter(|h| !h.is_empty())
            .unwrap_or_else(|| "localhost".into())
    })
}

/// Is `holder`'s process known to be gone? Only on this host (same host
/// name) and where `/proc` tells; anything else counts as alive, so only
/// its lease's lapse frees it.
pub(super) fn holder_gone(holder: &str) -> bool {
    let mut parts = holder.rsplitn(3, ':');
    let (Some(_random), Some(pid), Some(host)) = (parts.next(), parts.next(), parts.next()) else {
        return false;
    };
    let Ok(pid) = pid.parse::<u32>() else {
        return false;
    };
    if host != hostname() || pid == std::process::id() || !Path::new("/proc/self").exists() {
        return false;
    }
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        // A zombie (killed, not yet reaped) is gone too.
        Ok(stat) => stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.trim_start().chars().next())
            .is_some_and(|state| matches!(state, 'Z' | 'X')),
        Err(e) => e.kind() == std::io::ErrorKind::NotFound,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_lock_on_the_same_campaign_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let state = Location::from(dir.path().join("s.sqlite"));
        let first = lock(&state, "c").unwrap();
        match lock(&state, "c") {
            Err(e @ CampaignError::Locked { .. }) => {
                let text = e.to_string();
                assert!(text.contains(first.holder()), "{text}");
                assert!(text.contains("lapses"), "{text}");
            }
            other => panic!("{:?}", other.err()),
        }
        assert!(check_free(&state, "c").is_err());
        let _other = lock(&state, "other").unwrap();
        drop(first);
        check_free(&state, "c").unwrap();
        lock(&state, "c").unwrap();
    }

    #[cfg(unix)]
    #[test]
    fn the_same_file_through_a_symlink_is_the_same_lock() {
        let dir = tempfile::tempdir().unwrap();
        let state = Location::from(dir.path().join("s.sqlite"));
        Store::open(&state).unwrap();
        let link = dir.path().join("link.sqlite");
        std::os::unix::fs::symlink(dir.path().join("s.sqlite"), &link).unwrap();
        let link = Location::from(link);
        let _first = lock(&state, "c").unwrap();
        assert!(matches!(
            lock(&link, "c"),
            Err(CampaignError::Locked { .. })
        ));
    }

    #[test]
    fn a_holder_whose_process_ended_on_this_host_is_gone() {
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let pid = child.id();
        child.wait().unwrap();
        assert!(holder_gone(&format!("{}:{pid}:ab", hostname())));
        assert!(!holder_gone(&format!(
            "{}:{}:ab",
            hostname(),
            std::process::id()
        )));
        assert!(!holder_gone(&format!("elsewhere:{pid}:ab")));
        assert!(!holder_gone("garbage"));
    }

    /// The heartbeat keeps a short lease alive past its ttl; once another
    /// holder takes it, the watcher is stopped.
    #[test]
    fn the_heartbeat_renews_and_tells_a_loss() {
        let dir = tempfile::tempdir().unwrap();
        let state = Location::from(dir.path().join("s.sqlite"));
        let held = lock_for(&state, "c", Duration::from_secs(1)).unwrap();
        let stop = Arc::new(Stop::default());
        held.watch(stop.clone());
        std::thread::sleep(Duration::from_millis(1600));
        assert!(check_free(&state, "c").is_err(), "renewed past its ttl");
        // Someone takes it over behind its back (as if it had lapsed).
        let mut store = Store::open(&state).unwrap();
        let gone = |_: &str| true;
        store
            .lease_take("c", "other:1:x", 60_000, real_now_ms(), &gone)
            .unwrap();
        let t0 = std::time::Instant::now();
        while !held.is_lost() && t0.elapsed() < Duration::from_secs(5) {
            std::thread::sleep(Duration::from_millis(50));
        }
        assert!(held.is_lost());
        assert_eq!(stop.reason(), Some(StopReason::LeaseLost));
        drop(held);
        assert_eq!(store.lease("c").unwrap().unwrap().holder, "other:1:x");
    }
}
