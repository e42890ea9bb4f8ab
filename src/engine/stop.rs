//! A shared stop flag for a run or a reconcile: why it stopped (the first
//! reason wins) and a way for sleepers to be woken. Faces set it (Ctrl-C,
//! a web Pause button); the runner sets it (quota, outage, auth); nobody
//! below a face prints or exits because of it.

use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::Serialize;
use tokio::sync::Notify;

/// Why a run stopped before finishing every row.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum StopReason {
    Quota = 1,
    Interrupted = 2,
    Outage = 3,
    Auth = 4,
    Config = 5,
    Store = 6,
    /// Outside the send window (without --wait).
    Window = 7,
    /// A person paused it (the console's or the API's Pause).
    Paused = 8,
    /// The provider disabled the template (a webhook said so): nothing
    /// more can be sent with it until it is enabled again.
    Template = 9,
    /// The Zalo OA's tokens could not be renewed: someone authorizes the
    /// OA again (`zns-batch zalo connect`), then resumes.
    Reauthorize = 10,
    /// Another process took the campaign over (this one's lease lapsed or
    /// was taken): it carries on, this one stops sending.
    LeaseLost = 11,
}

impl StopReason {
    fn from_u8(v: u8) -> Option<Self> {
        Some(match v {
            1 => Self::Quota,
            2 => Self::Interrupted,
            3 => Self::Outage,
            4 => Self::Auth,
            5 => Self::Config,
            6 => Self::Store,
            7 => Self::Window,
            8 => Self::Paused,
            9 => Self::Template,
            10 => Self::Reauthorize,
            11 => Self::LeaseLost,
            _ => return None,
        })
    }

    /// Aborts are fatal (exit 1); the rest pause resumably (exit 3).
    pub fn is_fatal(self) -> bool {
        matches!(self, Self::Auth | Self::Config | Self::Store)
    }
}

/// Why a run stopped after Ctrl-C / SIGTERM.
pub const INTERRUPTED: &str = "interrupted (Ctrl-C / SIGTERM); nothing is lost, resume to continue";

/// A shared stop flag: the first reason wins; sleepers are woken.
#[derive(Default)]
pub struct Stop {
    reason: AtomicU8,
    message: Mutex<Option<String>>,
    notify: Notify,
    /// Set by the signal handler itself. On the single-threaded runtime the
    /// task watching signals cannot run while the import holds the thread;
    /// this flag is seen before the first row is claimed all the same.
    signalled: Arc<AtomicBool>,
}

impl Stop {
    pub fn request(&self, reason: StopReason, message: impl Into<String>) {
        if self
            .reason
            .compare_exchange(0, reason as u8, Ordering::SeqCst, Ordering::SeqCst)
            .is_ok()
        {
            if let Ok(mut m) = self.message.lock() {
                *m = Some(message.into());
            }
        }
        self.notify.notify_waiters();
    }

    pub fn reason(&self) -> Option<StopReason> {
        self.is_set();
        StopReason::from_u8(self.reason.load(Ordering::SeqCst))
    }

    pub fn message(&self) -> Option<String> {
        self.is_set();
        self.message.lock().ok().and_then(|m| m.clone())
    }

    pub fn is_set(&self) -> bool {
        if self.reason.load(Ordering::Relaxed) != 0 {
            return true;
        }
        if self.signalled.load(Ordering::Relaxed) {
            self.request(StopReason::Interrupted, INTERRUPTED);
            return true;
        }
        false
    }

    /// The flag a signal handler sets (see `signalled`).
    pub fn signal_flag(&self) -> Arc<AtomicBool> {
        self.signalled.clone()
    }

    /// Sleep, cut short by a stop request. Returns false if stopped.
    pub async fn sleep(&self, d: Duration) -> bool {
        if self.is_set() {
            return false;
        }
        let notified = self.notify.notified();
        tokio::select! {
            _ = tokio::time::sleep(d) => !self.is_set(),
            _ = notified => false,
        }
    }

    /// Resolves once a stop is requested.
    pub async fn stopped(&self) {
        loop {
            let notified = self.notify.notified();
            if self.is_set() {
                return;
            }
            notified.await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_reason_wins_and_a_signal_reads_as_interrupted() {
        let stop = Stop::default();
        assert!(!stop.is_set());
        stop.request(StopReason::Quota, "quota");
        stop.request(StopReason::Auth, "auth");
        assert_eq!(stop.reason(), Some(StopReason::Quota));
        assert_eq!(stop.message().as_deref(), Some("quota"));

        let signalled = Stop::default();
        signalled
            .signal_flag()
            .store(true, std::sync::atomic::Ordering::Relaxed);
        assert_eq!(signalled.reason(), Some(StopReason::Interrupted));
        assert_eq!(signalled.message().as_deref(), Some(INTERRUPTED));
    }

    #[test]
    fn every_reason_survives_the_round_trip() {
        for r in [
            StopReason::Quota,
            StopReason::Interrupted,
            StopReason::Outage,
            StopReason::Auth,
            StopReason::Config,
            StopReason::Store,
            StopReason::Window,
            StopReason::Paused,
            StopReason::Template,
            StopReason::Reauthorize,
            StopReason::LeaseLost,
        ] {
            assert_eq!(StopReason::from_u8(r as u8), Some(r));
        }
    }
}
