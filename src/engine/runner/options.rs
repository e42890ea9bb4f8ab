//! What a run is told (options, the in-doubt policy) and what it tells back
//! (live counters, totals).

use std::num::NonZeroU32;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::engine::policy::Retries;
use crate::engine::retry::Backoff;
use crate::engine::stop::StopReason;
use crate::model::window::SendWindow;

/// What to do with a row whose request may have been accepted but whose
/// reply was lost; [`InDoubtPolicy::about`] says what each does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum InDoubtPolicy {
    Resend,
    Hold,
}

impl InDoubtPolicy {
    /// Every policy, in the order a face lists them.
    pub const ALL: [InDoubtPolicy; 2] = [Self::Resend, Self::Hold];

    /// What the policy does, in one line (a face's list of choices shows it).
    pub fn about(self) -> &'static str {
        match self {
            InDoubtPolicy::Resend => {
                "Send again under the same tracking id (the provider can de-duplicate)"
            }
            InDoubtPolicy::Hold => {
                "Leave the row `in_doubt` for an operator: a possible miss over a possible duplicate"
            }
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            InDoubtPolicy::Resend => "resend",
            InDoubtPolicy::Hold => "hold",
        }
    }
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "resend" => Some(Self::Resend),
            "hold" => Some(Self::Hold),
            _ => None,
        }
    }

    /// Whether a run takes up rows left in doubt: to resend them, or to
    /// settle them by a lookup where the provider offers one. The plan and
    /// the run both ask this, so they count the same rows.
    pub fn takes_up_doubtful_rows(self, lookup_by_tracking_id: bool) -> bool {
        self == InDoubtPolicy::Resend || lookup_by_tracking_id
    }
}

impl std::fmt::Display for InDoubtPolicy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for InDoubtPolicy {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Self::parse(s).ok_or_else(|| {
            let names: Vec<&str> = Self::ALL.iter().map(|p| p.as_str()).collect();
            format!(
                "unknown in-doubt policy `{s}`: use one of {}",
                names.join(", ")
            )
        })
    }
}

#[derive(Debug, Clone)]
pub struct RunOptions {
    /// Requests in flight at once.
    pub concurrency: usize,
    /// Requests per second (all provider calls), if limited.
    pub rate: Option<NonZeroU32>,
    /// Our own cap on messages per OA day.
    pub daily_quota: Option<u64>,
    pub in_doubt: InDoubtPolicy,
    /// Attempts per provider call before the row is deferred to a resume.
    pub max_attempts: u32,
    pub backoff: Backoff,
    /// Without a single success for this long, the provider is down: pause.
    pub outage_after: Duration,
    /// A stored token is reused only if it outlives now by this much.
    pub token_margin: Duration,
    /// After a stop request, how long to wait for in-flight requests.
    pub drain_deadline: Duration,
    /// Hours of the OA's day in which requests may leave.
    pub send_window: Option<SendWindow>,
    /// Outside the window: sleep until it opens (else stop, resumable).
    pub wait_for_window: bool,
}

impl RunOptions {
    /// Its attempts and backoff, for every provider call made on its behalf
    /// (the run's, and the pre-flight's read-only ones).
    pub fn retries(&self) -> Retries {
        Retries {
            max_attempts: self.max_attempts,
            backoff: self.backoff,
        }
    }
}

impl Default for RunOptions {
    fn default() -> Self {
        Self {
            concurrency: 16,
            rate: None,
            daily_quota: None,
            in_doubt: InDoubtPolicy::Resend,
            max_attempts: 8,
            backoff: Backoff::starting_at(Duration::from_millis(250)),
            outage_after: Duration::from_secs(120),
            token_margin: Duration::from_secs(30 * 60),
            drain_deadline: Duration::from_secs(10),
            send_window: None,
            wait_for_window: false,
        }
    }
}

/// Counters for this run (the store holds the campaign's totals). A face
/// reads them while the run goes on (progress bar, live web page).
#[derive(Debug, Default)]
pub struct RunCounters {
    pub sent: AtomicU64,
    pub failed: AtomicU64,
    pub retries: AtomicU64,
    pub retrying_now: AtomicU64,
    pub tokens_created: AtomicU64,
    pub tokens_reused: AtomicU64,
    pub tokens_refreshed: AtomicU64,
    pub resent_after_doubt: AtomicU64,
    pub held_in_doubt: AtomicU64,
    pub deferred: AtomicU64,
    pub replayed_duplicates: AtomicU64,
    pub reconciled_by_lookup: AtomicU64,
    pub requests: AtomicU64,
    pub expired: AtomicU64,
    pub skipped: AtomicU64,
}

impl RunCounters {
    /// Rows this run is done with, whatever their fate.
    pub fn settled(&self) -> u64 {
        let g = |a: &AtomicU64| a.load(Ordering::Relaxed);
        g(&self.sent)
            + g(&self.failed)
            + g(&self.held_in_doubt)
            + g(&self.expired)
            + g(&self.skipped)
            + g(&self.deferred)
    }

    pub fn totals(&self, elapsed: Duration, send: Duration) -> RunTotals {
        let g = |a: &AtomicU64| a.load(Ordering::Relaxed);
        RunTotals {
            sent: g(&self.sent),
            failed: g(&self.failed),
            retries: g(&self.retries),
            tokens_created: g(&self.tokens_created),
            tokens_reused: g(&self.tokens_reused),
            tokens_refreshed: g(&self.tokens_refreshed),
            resent_after_doubt: g(&self.resent_after_doubt),
            held_in_doubt: g(&self.held_in_doubt),
            deferred: g(&self.deferred),
            replayed_duplicates: g(&self.replayed_duplicates),
            reconciled_by_lookup: g(&self.reconciled_by_lookup),
            requests: g(&self.requests),
            expired: g(&self.expired),
            skipped: g(&self.skipped),
            elapsed_secs: elapsed.as_secs_f64(),
            send_secs: send.as_secs_f64(),
        }
    }
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct RunTotals {
    pub sent: u64,
    pub failed: u64,
    pub retries: u64,
    pub tokens_created: u64,
    pub tokens_reused: u64,
    pub tokens_refreshed: u64,
    pub resent_after_doubt: u64,
    pub held_in_doubt: u64,
    pub deferred: u64,
    pub replayed_duplicates: u64,
    /// Rows in doubt that a lookup by tracking id found sent.
    pub reconciled_by_lookup: u64,
    pub requests: u64,
    pub expired: u64,
    pub skipped: u64,
    /// The whole run, opening and closing the state included.
    pub elapsed_secs: f64,
    /// The send phase alone: from the first row taken to the last reply
    /// settled. Throughput is measured over this.
    pub send_secs: f64,
}

/// What the runner reports back: why it stopped (if it did) and its totals.
/// The campaign's outcome is decided above, from this and the row counts.
#[derive(Debug, Clone, Serialize)]
pub struct RunReport {
    pub stop: Option<StopReason>,
    pub stop_message: Option<String>,
    pub totals: RunTotals,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doubtful_rows_are_taken_up_to_resend_or_to_look_up() {
        assert!(InDoubtPolicy::Resend.takes_up_doubtful_rows(false));
        assert!(InDoubtPolicy::Resend.takes_up_doubtful_rows(true));
        assert!(InDoubtPolicy::Hold.takes_up_doubtful_rows(true));
        assert!(!InDoubtPolicy::Hold.takes_up_doubtful_rows(false));
    }

    #[test]
    fn every_policy_reads_back_from_its_name() {
        for p in InDoubtPolicy::ALL {
            assert_eq!(p.to_string().parse::<InDoubtPolicy>(), Ok(p));
        }
        let err = "maybe".parse::<InDoubtPolicy>().unwrap_err();
        assert!(err.contains("resend, hold"), "{err}");
    }
}
