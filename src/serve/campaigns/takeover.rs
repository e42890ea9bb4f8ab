//! Several `serve` processes on one ledger: a campaign a person started
//! whose runner died (its lease lapsed, or its process on this host is
//! gone) is taken over by whichever `serve` looks first. The lease makes
//! the start single; the core records the takeover (audit log and log)
//! and the runner settles the rows left in flight by the in-doubt rules,
//! as `resume` does.

use super::*;

/// How often the ledger is looked at for orphaned campaigns: a third of
/// the lease's ttl, so a takeover follows a lapse within about that.
pub fn takeover_poll(lease_ttl: Duration) -> Duration {
    (lease_ttl / 3).clamp(Duration::from_millis(250), Duration::from_secs(5))
}

impl Campaigns {
    /// While serve runs: every `every`, start the campaigns that want to
    /// run, show `running` in the ledger and have no live holder.
    pub async fn takeover_loop(self: Arc<Self>, every: Duration) {
        loop {
            tokio::time::sleep(every).await;
            if self.is_shutting_down() {
                return;
            }
            let base = self.base.clone();
            let orphaned =
                match tokio::task::spawn_blocking(move || base.orphaned_campaigns()).await {
                    Ok(Ok(names)) => names,
                    Ok(Err(e)) => {
                        tracing::warn!("cannot look for campaigns to take over: {e}");
                        continue;
                    }
                    Err(e) => {
                        tracing::warn!("cannot look for campaigns to take over: {e}");
                        continue;
                    }
                };
            for name in orphaned {
                if self.is_shutting_down() || self.running_here(&name) {
                    continue;
                }
                // Serve carries on a campaign a person started: no actor.
                match self.start(&name, None, None).await {
                    Ok(()) => {
                        tracing::info!(campaign = %name, "carrying on a campaign whose runner stopped")
                    }
                    // Another serve was quicker: it holds the lease now.
                    Err(WebError::Conflict(why)) => {
                        tracing::debug!(campaign = %name, "not taken over: {why}")
                    }
                    Err(e) => {
                        tracing::warn!(campaign = %name, "not taken over: {}", e.public_message())
                    }
                }
            }
        }
    }
}
