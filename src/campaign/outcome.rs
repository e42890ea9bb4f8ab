//! How a run of a campaign ended, decided once from why the runner stopped
//! and what is left open; the campaign's stored status, the exit code, the
//! summary's "next" line and the web badge are all read off it. The
//! endings of a reconcile and a validate are here too: every exit code a
//! face returns is decided in this file.

use serde::Serialize;

use crate::engine::stop::StopReason;
use crate::model::clock;
use crate::store::{Campaign, CampaignStatus, StateCounts};

/// Exit codes of the command line (also shown by the API as `exit_code`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum ExitCode {
    /// Finished: every row has its fate (per-row failures are in the report).
    Finished = 0,
    /// Fatal: credentials rejected, setup refused, state unusable.
    Fatal = 1,
    /// Bad usage or a bad input file.
    Usage = 2,
    /// Paused and resumable.
    Paused = 3,
    /// Over, but the deadline passed first: some rows were never sent.
    Expired = 4,
}

impl ExitCode {
    pub fn code(self) -> i32 {
        self as i32
    }
}

/// The end of a run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Nothing is left open.
    Finished,
    /// Rows are left open; a resume carries on.
    Paused {
        reason: Option<StopReason>,
        message: String,
    },
    /// The deadline passed: the rows left were expired, never to be sent.
    Expired { message: String },
    /// A fatal stop (credentials, setup, state): fix, then resume.
    Aborted { reason: StopReason, message: String },
}

impl Outcome {
    /// Decide from why the run stopped (if it did) and the rows' counts.
    /// A campaign with nothing open is over, whatever the window, the quota
    /// or a Ctrl-C say: it is never reported paused.
    pub fn decide(
        stop: Option<(StopReason, String)>,
        counts: &StateCounts,
        campaign: &Campaign,
    ) -> Outcome {
        let open = counts.open() + counts.in_doubt;
        if let Some((reason, message)) = &stop {
            if reason.is_fatal() {
                return Outcome::Aborted {
                    reason: *reason,
                    message: message.clone(),
                };
            }
        }
        if open == 0 && campaign.import_done {
            return match campaign.not_after_ms {
                Some(deadline) if counts.expired > 0 => {
                    Outcome::Expired {
                        message: format!(
                            "{} rows expired unsent: the campaign's deadline {} passed; nothing more will be sent",
                            counts.expired,
                            clock::fmt_local(clock::from_ms(deadline))
                        ),
                    }
                }
                _ => Outcome::Finished,
            };
        }
        let message = match stop {
            Some((reason, message)) => {
                return Outcome::Paused {
                    reason: Some(reason),
                    message,
                }
            }
            None if !campaign.import_done => format!(
                "the import of {} stopped before the end of the file; resume finishes it",
                campaign.csv_path
            ),
            None if counts.open() > 0 => format!(
                "{} rows still open after running out of attempts for this run",
                counts.open()
            ),
            None => format!(
                "{} rows held in doubt (--in-doubt hold): their reply was lost; check them with the provider, then resume with --in-doubt resend to resend them under the same tracking id",
                counts.in_doubt
            ),
        };
        Outcome::Paused {
            reason: None,
            message,
        }
    }

    /// finished | paused | expired | aborted (the summary's `result`): the
    /// name of the status it stores.
    pub fn label(&self) -> &'static str {
        self.status().as_str()
    }

    /// The status it stores and the exit code it gives, side by side.
    fn status_and_exit(&self) -> (CampaignStatus, ExitCode) {
        match self {
            Outcome::Finished => (CampaignStatus::Finished, ExitCode::Finished),
            Outcome::Paused { .. } => (CampaignStatus::Paused, ExitCode::Paused),
            Outcome::Expired { .. } => (CampaignStatus::Expired, ExitCode::Expired),
            Outcome::Aborted { .. } => (CampaignStatus::Aborted, ExitCode::Fatal),
        }
    }

    pub fn status(&self) -> CampaignStatus {
        self.status_and_exit().0
    }

    pub fn exit_code(&self) -> ExitCode {
        self.status_and_exit().1
    }

    pub fn stop_reason(&self) -> Option<StopReason> {
        match self {
            Outcome::Paused { reason, .. } => *reason,
            Outcome::Aborted { reason, .. } => Some(*reason),
            _ => None,
        }
    }

    /// Why it ended where it did, in words (None when it simply finished).
    pub fn message(&self) -> Option<&str> {
        match self {
            Outcome::Finished => None,
            Outcome::Paused { message, .. }
            | Outcome::Expired { message }
            | Outcome::Aborted { message, .. } => Some(message),
        }
    }
}

/// How a reconcile ended (its summary's `result`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ReconcileResult {
    /// Every sent row looked up (as far as the provider could say).
    Done,
    /// Stopped (a signal, a limit) or rows left to look up: run it again.
    Paused,
    /// A fatal stop (credentials, setup): fix, then run it again.
    Aborted,
}

impl ReconcileResult {
    pub fn as_str(self) -> &'static str {
        match self {
            ReconcileResult::Done => "done",
            ReconcileResult::Paused => "paused",
            ReconcileResult::Aborted => "aborted",
        }
    }

    pub fn exit_code(self) -> ExitCode {
        match self {
            ReconcileResult::Done => ExitCode::Finished,
            ReconcileResult::Paused => ExitCode::Paused,
            ReconcileResult::Aborted => ExitCode::Fatal,
        }
    }
}

/// What `validate` says of a file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ValidateVerdict {
    /// Every row is valid.
    Accepted,
    /// Some rows are rejected: a bad input file, as for a usage error.
    Rejected,
}

impl ValidateVerdict {
    pub fn exit_code(self) -> ExitCode {
        match self {
            ValidateVerdict::Accepted => ExitCode::Finished,
            ValidateVerdict::Rejected => ExitCode::Usage,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn campaign() -> Campaign {
        let dir = tempfile::tempdir().unwrap();
        let mut store = crate::store::Store::open(dir.path().join("s.sqlite")).unwrap();
        let mut c = store
            .create_campaign(&crate::store::NewCampaign {
                name: "c",
                csv_path: "c.csv",
                csv_sha256: "00",
                template_keys: &["name".to_string()],
                provider: "sandbox",
                base_url: None,
                oa_id: "1",
                template_id: "2",
                token_type: "t",
                tracking_prefix: "zb",
                in_doubt_policy: "resend",
                not_after_ms: None,
                min_interval_ms: None,
            })
            .unwrap();
        c.import_done = true;
        c
    }

    fn counts(pending: u64, in_doubt: u64, expired: u64) -> StateCounts {
        StateCounts {
            total: 10,
            sent: 10 - pending - in_doubt - expired,
            pending,
            in_doubt,
            expired,
            ..StateCounts::default()
        }
    }

    #[test]
    fn nothing_open_is_finished_whatever_stopped_the_run() {
        let c = campaign();
        for reason in [
            StopReason::Window,
            StopReason::Quota,
            StopReason::Interrupted,
        ] {
            let o = Outcome::decide(Some((reason, "x".into())), &counts(0, 0, 0), &c);
            assert_eq!(o, Outcome::Finished, "{reason:?}");
            assert_eq!(o.exit_code().code(), 0);
        }
    }

    #[test]
    fn open_rows_pause_and_fatal_stops_abort() {
        let c = campaign();
        let o = Outcome::decide(Some((StopReason::Quota, "q".into())), &counts(3, 0, 0), &c);
        assert_eq!(o.exit_code(), ExitCode::Paused);
        assert_eq!(o.stop_reason(), Some(StopReason::Quota));
        let o = Outcome::decide(Some((StopReason::Auth, "a".into())), &counts(0, 0, 0), &c);
        assert_eq!(o.exit_code(), ExitCode::Fatal);
        assert_eq!(o.status(), CampaignStatus::Aborted);
        let mut importing = c.clone();
        importing.import_done = false;
        let o = Outcome::decide(
            Some((StopReason::Interrupted, "i".into())),
            &counts(0, 0, 0),
            &importing,
        );
        assert_eq!(
            o.exit_code(),
            ExitCode::Paused,
            "an unfinished import is not a finished campaign"
        );
        let o = Outcome::decide(None, &counts(0, 2, 0), &c);
        assert_eq!(o.label(), "paused");
        assert!(o.message().unwrap_or("").contains("--in-doubt resend"));
    }

    #[test]
    fn reconcile_endings_have_one_exit_code_and_their_json_name() {
        for (r, name, code) in [
            (ReconcileResult::Done, "done", 0),
            (ReconcileResult::Paused, "paused", 3),
            (ReconcileResult::Aborted, "aborted", 1),
        ] {
            assert_eq!(r.as_str(), name);
            assert_eq!(serde_json::to_value(r).unwrap(), name);
            assert_eq!(r.exit_code().code(), code);
        }
        assert_eq!(ValidateVerdict::Accepted.exit_code().code(), 0);
        assert_eq!(ValidateVerdict::Rejected.exit_code().code(), 2);
    }

    #[test]
    fn a_reconcile_summary_takes_its_exit_code_from_its_ending() {
        use crate::campaign::summary::ReconcileSummary;
        use crate::engine::reconcile::{ReconcileOptions, ReconcileTotals};
        let c = campaign();
        let opts = ReconcileOptions::default();
        let summary = |totals: ReconcileTotals, stop| {
            ReconcileSummary::new(&c, "sandbox", totals, Default::default(), &opts, stop)
        };
        let done = summary(ReconcileTotals::default(), None);
        assert_eq!((done.result, done.exit_code), (ReconcileResult::Done, 0));
        let left = ReconcileTotals {
            remaining: 4,
            ..ReconcileTotals::default()
        };
        let paused = summary(left, None);
        assert_eq!(
            (paused.result, paused.exit_code),
            (ReconcileResult::Paused, 3)
        );
        assert!(paused
            .reason
            .unwrap_or_default()
            .contains("4 rows still to look up"));
        let aborted = summary(
            ReconcileTotals::default(),
            Some((StopReason::Auth, "key refused".into())),
        );
        assert_eq!(
            (aborted.result, aborted.exit_code),
            (ReconcileResult::Aborted, 1)
        );
        let json = serde_json::to_value(&aborted).unwrap();
        assert_eq!(json["result"], "aborted");
        assert_eq!(json["exit_code"], 1);
    }
}
