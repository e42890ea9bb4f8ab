//! What a run, a campaign and a reconcile say when asked: the data behind
//! the summary, `status` and their `--json` (the web API returns the same
//! shapes). Faces print them; nothing here prints.

use serde::Serialize;

use super::outcome::{Outcome, ReconcileResult};
use crate::engine::reconcile;
use crate::engine::runner::RunTotals;
use crate::engine::stop::StopReason;
use crate::model::clock;
use crate::model::shell::shell_word;
use crate::model::window::SendWindow;
use crate::store::{
    Campaign, DeliveryCounts, LedgerCounts, QuotaDay, StateCounts, Store, StoreError,
};

/// Everything the end-of-run summary says, also printed as JSON with `--json`.
#[derive(Debug, Serialize)]
pub struct Summary {
    pub campaign: String,
    /// finished | paused | expired | aborted
    pub result: &'static str,
    pub exit_code: i32,
    pub reason: Option<String>,
    pub stop: Option<StopReason>,
    pub provider: String,
    pub oa_id: String,
    pub template_id: String,
    pub counts: StateCounts,
    pub this_run: RunTotals,
    pub quota_today: QuotaDay,
    pub daily_quota: Option<u64>,
    pub first_rejects: Vec<RejectLine>,
    pub top_errors: Vec<ErrorLine>,
    pub next_step: Option<String>,
}

#[derive(Debug, Serialize)]
pub struct RejectLine {
    pub line: u64,
    pub phone: String,
    /// Today's English text.
    pub reason: String,
    /// A stable code for scripts (`phone.too_short_0`; several joined by
    /// `,`), null for a row rejected before codes were kept.
    pub reason_code: Option<String>,
}

#[derive(Debug, Serialize)]
pub struct ErrorLine {
    pub code: String,
    pub message: String,
    pub rows: u64,
}

impl ErrorLine {
    /// The campaign's `limit` most frequent errors, most rows first.
    pub(crate) fn top(
        store: &Store,
        campaign_id: i64,
        limit: usize,
    ) -> Result<Vec<ErrorLine>, StoreError> {
        Ok(store
            .top_errors(campaign_id, limit)?
            .into_iter()
            .map(|(code, message, rows)| ErrorLine {
                code,
                message,
                rows,
            })
            .collect())
    }
}

impl Summary {
    /// The summary of a run that ended in `outcome`.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn build(
        store: &Store,
        campaign: &Campaign,
        counts: StateCounts,
        outcome: &Outcome,
        provider: &str,
        this_run: RunTotals,
        quota_today: QuotaDay,
        daily_quota: Option<u64>,
        window: Option<SendWindow>,
    ) -> Result<Summary, StoreError> {
        let (first_rejects, top_errors) = Summary::rejects_and_errors(store, campaign.id)?;
        Ok(Summary {
            campaign: campaign.name.clone(),
            result: outcome.label(),
            exit_code: outcome.exit_code().code(),
            reason: outcome.message().map(str::to_string),
            stop: outcome.stop_reason(),
            provider: provider.to_string(),
            oa_id: campaign.oa_id.clone(),
            template_id: campaign.template_id.clone(),
            next_step: next_step(campaign, outcome, &counts, window),
            counts,
            this_run,
            quota_today,
            daily_quota,
            first_rejects,
            top_errors,
        })
    }

    pub(crate) fn rejects_and_errors(
        store: &Store,
        campaign_id: i64,
    ) -> Result<(Vec<RejectLine>, Vec<ErrorLine>), StoreError> {
        let rejects = store
            .rejects(campaign_id, 5)?
            .into_iter()
            .map(|(line, phone, reason, reason_code)| RejectLine {
                line,
                phone: crate::model::phone::mask(&phone),
                reason,
                reason_code,
            })
            .collect();
        Ok((rejects, ErrorLine::top(store, campaign_id, 5)?))
    }
}

/// The command that carries on from `outcome`, pasteable as it is.
pub fn next_step(
    campaign: &Campaign,
    outcome: &Outcome,
    counts: &StateCounts,
    window: Option<SendWindow>,
) -> Option<String> {
    let name = shell_word(&campaign.name);
    let now = clock::now();
    Some(match outcome {
        Outcome::Finished | Outcome::Expired { .. } => format!(
            "zns-batch report {name} --out {}",
            shell_word(&report_file_name(campaign))
        ),
        // Nothing sent: the template may still change (resume --template-id).
        Outcome::Aborted {
            reason: StopReason::Config,
            ..
        } if counts.sent + counts.in_doubt + counts.in_flight == 0 => format!(
            "fix the template (or the OA's setup), then: zns-batch resume {name} --template-id ID   (the right template id; the campaign sent nothing, so it may change)"
        ),
        Outcome::Aborted { .. } => format!("fix the cause above, then: zns-batch resume {name}"),
        Outcome::Paused {
            reason: Some(StopReason::Quota),
            ..
        } => format!(
            "zns-batch resume {name}   (after {})",
            clock::fmt_local(clock::next_day_start(now))
        ),
        Outcome::Paused {
            reason: Some(StopReason::Window),
            ..
        } => match window {
            Some(w) => format!(
                "zns-batch resume {name}   (after {}), or add --wait",
                clock::fmt_local(w.next_open(now))
            ),
            None => format!("zns-batch resume {name}"),
        },
        Outcome::Paused { reason: None, .. } if counts.open() == 0 && counts.in_doubt > 0 => {
            let key = match campaign.provider.as_str() {
                "sandbox" => String::new(),
                _ => " (with the provider's key as for the run: --api-key or ZNS_API_KEY)"
                    .to_string(),
            };
            format!("zns-batch resume {name} --in-doubt resend{key}")
        }
        Outcome::Paused { .. } => format!("zns-batch resume {name}"),
    })
}

/// A file name for the campaign's report that is neither its input file
/// nor a file already here.
pub fn report_file_name(campaign: &Campaign) -> String {
    let stem = crate::model::file_name::file_stem(&campaign.name, '-');
    let input = std::path::Path::new(&campaign.csv_path);
    let taken = |name: &str| {
        let p = std::path::Path::new(name);
        p.exists() || super::is_input_file(campaign, p) || input.file_name() == p.file_name()
    };
    let first = format!("{stem}-report.csv");
    if !taken(&first) {
        return first;
    }
    (2..)
        .map(|n| format!("{stem}-report-{n}.csv"))
        .find(|n| !taken(n))
        .unwrap_or(first)
}

/// One campaign's line in `status`.
#[derive(Debug, Serialize)]
pub struct CampaignStatusLine {
    pub campaign: String,
    pub status: String,
    pub provider: String,
    pub oa_id: String,
    pub template_id: String,
    pub counts: StateCounts,
    pub quota_used_today: u64,
    pub quota_day: String,
    pub next_quota_reset: String,
    pub last_error: Option<String>,
    pub updated_at: String,
    /// Deadline (`--not-after`), RFC 3339, if the campaign has one.
    pub not_after: Option<String>,
    pub deadline_passed: bool,
    /// Frequency cap in seconds, if the campaign has one.
    pub min_interval_per_phone_secs: Option<u64>,
    /// `HH:MM-HH:MM` (Asia/Ho_Chi_Minh) a resume keeps using, if any.
    pub send_window: Option<String>,
    /// Its scheduled start, RFC 3339 (status `scheduled` until then).
    pub scheduled_for: Option<String>,
    /// Delivery: `received`, `seen`, `unknown` are the ledger's (as in
    /// `ledger`); `checked` and the fees are what `reconcile` found.
    pub delivery: DeliveryCounts,
    /// Delivery from the webhook ledger merged with `reconcile`'s answers
    /// (every provider); `unmatched` is ledger-wide.
    pub ledger: LedgerCounts,
}

pub(crate) fn status_lines(
    store: &Store,
    only: Option<&str>,
) -> Result<Vec<CampaignStatusLine>, StoreError> {
    let today = clock::today_key();
    let next = clock::fmt_rfc3339(clock::next_day_start(clock::now()));
    let mut out = Vec::new();
    for c in store.list_campaigns()? {
        if only.is_some_and(|n| n != c.name) {
            continue;
        }
        let deadline_passed = c.past_deadline(clock::now_ms());
        let (delivery, ledger) = delivery_of(store, c.id)?;
        let scheduled = store.schedule(c.id)?;
        // A run under way outranks its schedule (the start clears it).
        let status = match scheduled {
            Some(_) if c.status != crate::store::CampaignStatus::Running => "scheduled",
            _ => c.status.as_str(),
        };
        out.push(CampaignStatusLine {
            scheduled_for: scheduled.map(|ms| clock::fmt_rfc3339(clock::from_ms(ms))),
            counts: store.state_counts(c.id)?,
            quota_used_today: store.quota_used_on(&c.oa_id, &today)?,
            quota_day: today.clone(),
            next_quota_reset: next.clone(),
            campaign: c.name,
            status: status.to_string(),
            provider: c.provider,
            oa_id: c.oa_id,
            template_id: c.template_id,
            last_error: c.last_error,
            updated_at: clock::fmt_rfc3339(clock::from_ms(c.updated_ms)),
            not_after: c
                .not_after_ms
                .map(|ms| clock::fmt_rfc3339(clock::from_ms(ms))),
            deadline_passed,
            min_interval_per_phone_secs: c
                .min_interval_ms
                .filter(|ms| *ms > 0)
                .map(|ms| (ms / 1000) as u64),
            send_window: c.send_window,
            delivery,
            ledger,
        });
    }
    Ok(out)
}

/// A campaign's delivery counts, the one place they come from (`status`,
/// the API, the console, a reconcile's summary): the ledger (webhook
/// events merged with `reconcile`'s answers) for received / seen /
/// unknown, `reconcile`'s columns for what only it knows (rows checked,
/// fees, rows without a message id). Counting from `reconcile`'s columns
/// alone showed 0 delivered after thousands of callbacks.
pub fn delivery_of(
    store: &Store,
    campaign_id: i64,
) -> Result<(DeliveryCounts, LedgerCounts), StoreError> {
    let counted = store.counters(campaign_id)?;
    let ledger = counted.ledger;
    let delivery = DeliveryCounts {
        received: ledger.received,
        seen: ledger.seen,
        unknown: ledger.unknown,
        ..counted.delivery
    };
    Ok((delivery, ledger))
}

/// What a reconcile says at its end (also its `--json`).
#[derive(Debug, Serialize)]
pub struct ReconcileSummary {
    pub campaign: String,
    /// done | paused | aborted
    pub result: ReconcileResult,
    pub exit_code: i32,
    pub reason: Option<String>,
    pub provider: String,
    pub this_run: reconcile::ReconcileTotals,
    pub delivery: DeliveryCounts,
    pub next_step: Option<String>,
}

impl ReconcileSummary {
    pub fn new(
        campaign: &Campaign,
        provider: &str,
        totals: reconcile::ReconcileTotals,
        delivery: DeliveryCounts,
        opts: &reconcile::ReconcileOptions,
        stopped: Option<(StopReason, String)>,
    ) -> ReconcileSummary {
        let result = match &stopped {
            Some((r, _)) if r.is_fatal() => ReconcileResult::Aborted,
            Some(_) => ReconcileResult::Paused,
            None if totals.remaining > 0 => ReconcileResult::Paused,
            None => ReconcileResult::Done,
        };
        let reason = stopped.map(|(_, m)| m).or_else(|| {
            (totals.remaining > 0).then(|| {
                format!(
                    "{} rows still to look up (--max-lookups {} per run, or lookups that failed)",
                    totals.remaining, opts.max_lookups
                )
            })
        });
        let name = shell_word(&campaign.name);
        let next_step = Some(match result {
            ReconcileResult::Done => format!(
                "zns-batch report {name} --out {}   (rows still unknown/received are asked again after {})",
                shell_word(&report_file_name(campaign)),
                clock::fmt_duration(opts.recheck_after)
            ),
            ReconcileResult::Aborted => {
                format!("fix the cause above, then: zns-batch reconcile {name}")
            }
            ReconcileResult::Paused => format!("zns-batch reconcile {name}"),
        });
        ReconcileSummary {
            campaign: campaign.name.clone(),
            result,
            exit_code: result.exit_code().code(),
            reason,
            provider: provider.to_string(),
            this_run: totals,
            delivery,
            next_step,
        }
    }
}
