//! What the operator sees: live progress, the end-of-run summary, the
//! `status` table and the per-row `report` CSV.

use std::io::{IsTerminal, Write};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde::Serialize;

use crate::campaign::{shell_word, Outcome};
use crate::quota;
use crate::runner::{Observer, RunCounters, RunTotals};
use crate::stop::StopReason;
use crate::store::{Campaign, DeliveryCounts, QuotaDay, ReportRow, StateCounts, Store, StoreError};
use crate::window::SendWindow;

/// Live progress: an indicatif bar on a terminal, a line every 10 s
/// otherwise (cron logs), nothing when disabled.
pub struct Progress {
    ticker: Option<tokio::task::JoinHandle<()>>,
    bar: Option<ProgressBar>,
}

impl Progress {
    pub fn start(total: u64, counters: Arc<RunCounters>) -> Progress {
        if total == 0 {
            return Progress {
                ticker: None,
                bar: None,
            };
        }
        let tty = std::io::stderr().is_terminal();
        let bar = tty.then(|| {
            let bar =
                ProgressBar::with_draw_target(Some(total), ProgressDrawTarget::stderr_with_hz(8));
            bar.set_style(
                ProgressStyle::with_template(
                    // wide_bar takes what the terminal has left, so the line never wraps.
                    "{spinner} {elapsed_precise} {wide_bar:.cyan/blue} {pos}/{len} {msg} ETA {eta}",
                )
                .unwrap_or_else(|_| ProgressStyle::default_bar()),
            );
            bar
        });
        let bar_for_task = bar.clone();
        let started = Instant::now();
        let ticker = tokio::spawn(async move {
            let mut last_line = Instant::now();
            loop {
                tokio::time::sleep(Duration::from_millis(125)).await;
                let sent = counters.sent.load(Ordering::Relaxed);
                let failed = counters.failed.load(Ordering::Relaxed);
                let done = counters.settled();
                let retrying = counters.retrying_now.load(Ordering::Relaxed);
                let rate = sent as f64 / started.elapsed().as_secs_f64().max(0.001);
                let msg =
                    format!("sent {sent} · failed {failed} · retrying {retrying} · {rate:.0}/s");
                match &bar_for_task {
                    Some(bar) => {
                        bar.set_position(done.min(total));
                        bar.set_message(msg);
                    }
                    None if last_line.elapsed() >= Duration::from_secs(10) => {
                        last_line = Instant::now();
                        eprintln!("progress: {done}/{total} {msg}");
                    }
                    None => {}
                }
            }
        });
        Progress {
            ticker: Some(ticker),
            bar,
        }
    }

    pub fn finish(self) {
        if let Some(t) = self.ticker {
            t.abort();
        }
        if let Some(bar) = self.bar {
            bar.finish_and_clear();
        }
    }
}

/// The command line's view of a run: a progress bar on a terminal, a line
/// every 10 s otherwise, nothing when quiet.
pub struct ProgressObserver {
    enabled: bool,
    progress: std::sync::Mutex<Option<Progress>>,
}

impl ProgressObserver {
    pub fn new(enabled: bool) -> Self {
        ProgressObserver {
            enabled,
            progress: std::sync::Mutex::new(None),
        }
    }
}

impl Observer for ProgressObserver {
    fn started(&self, total: u64, counters: Arc<RunCounters>) {
        if self.enabled {
            let mut p = self.progress.lock().unwrap_or_else(|p| p.into_inner());
            *p = Some(Progress::start(total, counters));
        }
    }
    fn finished(&self) {
        let taken = self
            .progress
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take();
        if let Some(p) = taken {
            p.finish();
        }
    }
}

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
    pub reason: String,
}

#[derive(Debug, Serialize)]
pub struct ErrorLine {
    pub code: String,
    pub message: String,
    pub rows: u64,
}

impl Summary {
    /// The summary of a run that ended in `outcome`.
    #[allow(clippy::too_many_arguments)]
    pub fn build(
        store: &Store,
        campaign: &Campaign,
        outcome: &Outcome,
        provider: &str,
        this_run: RunTotals,
        quota_today: QuotaDay,
        daily_quota: Option<u64>,
        window: Option<SendWindow>,
    ) -> Result<Summary, StoreError> {
        let counts = store.state_counts(campaign.id)?;
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

    pub fn rejects_and_errors(
        store: &Store,
        campaign_id: i64,
    ) -> Result<(Vec<RejectLine>, Vec<ErrorLine>), StoreError> {
        let rejects = store
            .rejects(campaign_id, 5)?
            .into_iter()
            .map(|(line, phone, reason)| RejectLine {
                line,
                phone: crate::phone::mask(&phone),
                reason,
            })
            .collect();
        let errors = store
            .top_errors(campaign_id, 5)?
            .into_iter()
            .map(|(code, message, rows)| ErrorLine {
                code,
                message,
                rows,
            })
            .collect();
        Ok((rejects, errors))
    }

    pub fn print(&self, json: bool) {
        if json {
            print_json(self);
            return;
        }
        let c = &self.counts;
        let t = &self.this_run;
        let mut out = String::new();
        out.push_str(&format!(
            "\nCampaign {} — {}\n",
            self.campaign,
            self.result.to_uppercase()
        ));
        if let Some(reason) = &self.reason {
            out.push_str(&format!("  {reason}\n"));
        }
        out.push_str(&format!(
            "  provider    {} · OA {} · template {}\n",
            self.provider, self.oa_id, self.template_id
        ));
        out.push_str(&format!(
            "  rows        {} in file: {} accepted, {} rejected\n",
            c.total,
            c.total - c.rejected,
            c.rejected
        ));
        let looked_up = if t.reconciled_by_lookup > 0 {
            format!("; found by lookup {}", t.reconciled_by_lookup)
        } else {
            String::new()
        };
        out.push_str(&format!(
            "  sent        {:>8}   (this run {}; resent after doubt {}{looked_up})\n",
            c.sent, t.sent, t.resent_after_doubt
        ));
        out.push_str(&format!("  failed      {:>8}\n", c.failed));
        for e in &self.top_errors {
            out.push_str(&format!(
                "                ×{} code {}: {}\n",
                e.rows, e.code, e.message
            ));
        }
        out.push_str(&format!("  rejected    {:>8}\n", c.rejected));
        for r in &self.first_rejects {
            out.push_str(&format!("                line {}: {}\n", r.line, r.reason));
        }
        if c.rejected as usize > self.first_rejects.len() {
            out.push_str("                … every reject is listed by `zns-batch report`\n");
        }
        if c.in_doubt > 0 {
            out.push_str(&format!(
                "  in doubt    {:>8}   (held: may or may not have been delivered)\n",
                c.in_doubt
            ));
        }
        if c.skipped > 0 {
            out.push_str(&format!(
                "  skipped     {:>8}   (a message went to the phone within --min-interval-per-phone; see the report)\n",
                c.skipped
            ));
        }
        if c.expired > 0 {
            out.push_str(&format!(
                "  expired     {:>8}   (not sent: the campaign's deadline passed)\n",
                c.expired
            ));
        }
        out.push_str(&format!(
            "  not yet sent{:>8}\n",
            c.pending + c.token_ready + c.in_flight
        ));
        out.push_str(&format!(
            "  tokens      {} bought, {} reused, {} refreshed\n",
            t.tokens_created, t.tokens_reused, t.tokens_refreshed
        ));
        if t.retries > 0 {
            out.push_str(&format!("  retries     {}\n", t.retries));
        }
        let limit = self
            .daily_quota
            .or(self.quota_today.provider_limit)
            .map(|l| format!(" of {l}"))
            .unwrap_or_default();
        out.push_str(&format!(
            "  quota       {}{} used on {} (Asia/Ho_Chi_Minh)\n",
            self.quota_today.used, limit, self.quota_today.day
        ));
        let rate = t.sent as f64 / t.send_secs.max(0.001);
        out.push_str(&format!(
            "  time        {:.1} s, {:.0} msg/s while sending, {} requests\n",
            t.elapsed_secs, rate, t.requests
        ));
        if let Some(next) = &self.next_step {
            out.push_str(&format!("  next        {next}\n"));
        }
        print!("{out}");
        let _ = std::io::stdout().flush();
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
    let now = quota::now();
    Some(match outcome {
        Outcome::Finished | Outcome::Expired { .. } => format!(
            "zns-batch report {name} --out {}",
            shell_word(&report_file_name(campaign))
        ),
        Outcome::Aborted { .. } => format!("fix the cause above, then: zns-batch resume {name}"),
        Outcome::Paused {
            reason: Some(StopReason::Quota),
            ..
        } => format!(
            "zns-batch resume {name}   (after {})",
            quota::fmt_local(quota::next_day_start(now))
        ),
        Outcome::Paused {
            reason: Some(StopReason::Window),
            ..
        } => match window {
            Some(w) => format!(
                "zns-batch resume {name}   (after {}), or add --wait",
                quota::fmt_local(w.next_open(now))
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
    let stem: String = campaign
        .name
        .chars()
        .map(|c| {
            if c.is_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '-'
            }
        })
        .collect();
    let input = std::path::Path::new(&campaign.csv_path);
    let taken = |name: &str| {
        let p = std::path::Path::new(name);
        p.exists()
            || crate::campaign::is_input_file(campaign, p)
            || input.file_name() == p.file_name()
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
    /// What `reconcile` found; counts are zero until it has run.
    pub delivery: DeliveryCounts,
}

/// `--json` output: one pretty JSON document on stdout.
pub fn print_json(value: &impl Serialize) {
    println!(
        "{}",
        serde_json::to_string_pretty(value).unwrap_or_else(|_| "{}".into())
    );
}

pub fn status_lines(
    store: &Store,
    only: Option<&str>,
) -> Result<Vec<CampaignStatusLine>, StoreError> {
    let today = quota::today_key();
    let next = quota::fmt_rfc3339(quota::next_day_start(quota::now()));
    let mut out = Vec::new();
    for c in store.list_campaigns()? {
        if only.is_some_and(|n| n != c.name) {
            continue;
        }
        let deadline_passed = c.past_deadline(quota::now_ms());
        out.push(CampaignStatusLine {
            counts: store.state_counts(c.id)?,
            quota_used_today: store.quota_used_on(&c.oa_id, &today)?,
            quota_day: today.clone(),
            next_quota_reset: next.clone(),
            campaign: c.name,
            status: c.status.as_str().to_string(),
            provider: c.provider,
            oa_id: c.oa_id,
            template_id: c.template_id,
            last_error: c.last_error,
            updated_at: quota::fmt_rfc3339(quota::from_ms(c.updated_ms)),
            not_after: c
                .not_after_ms
                .map(|ms| quota::fmt_rfc3339(quota::from_ms(ms))),
            deadline_passed,
            min_interval_per_phone_secs: c
                .min_interval_ms
                .filter(|ms| *ms > 0)
                .map(|ms| (ms / 1000) as u64),
            send_window: c.send_window,
            delivery: store.delivery_counts(c.id)?,
        });
    }
    Ok(out)
}

pub fn print_status(lines: &[CampaignStatusLine]) {
    if lines.is_empty() {
        println!("No campaigns yet. Start one with: zns-batch run <CSV> --campaign <NAME> --template-id <ID>");
        return;
    }
    println!(
        "{:<24} {:<9} {:<9} {:>8} {:>8} {:>7} {:>8} {:>8} {:>8} {:>10}",
        "CAMPAIGN",
        "STATUS",
        "PROVIDER",
        "ROWS",
        "SENT",
        "FAILED",
        "REJECTED",
        "OPEN",
        "IN DOUBT",
        "USED TODAY"
    );
    for l in lines {
        let c = &l.counts;
        println!(
            "{:<24} {:<9} {:<9} {:>8} {:>8} {:>7} {:>8} {:>8} {:>8} {:>10}",
            truncate(&l.campaign, 24),
            l.status,
            l.provider,
            c.total,
            c.sent,
            c.failed,
            c.rejected,
            c.open(),
            c.in_doubt,
            l.quota_used_today
        );
    }
    if let Some(first) = lines.first() {
        println!(
            "Quota day {} (Asia/Ho_Chi_Minh); next reset {}.",
            first.quota_day, first.next_quota_reset
        );
    }
    for l in lines {
        let c = &l.counts;
        let mut notes = Vec::new();
        if let Some(d) = &l.not_after {
            let when =
                time::OffsetDateTime::parse(d, &time::format_description::well_known::Rfc3339)
                    .map(quota::fmt_local)
                    .unwrap_or_else(|_| d.clone());
            notes.push(format!(
                "deadline {when}{}",
                if l.deadline_passed { " (passed)" } else { "" }
            ));
        }
        if let Some(s) = l.min_interval_per_phone_secs {
            notes.push(format!(
                "min interval per phone {}",
                quota::fmt_duration(std::time::Duration::from_secs(s))
            ));
        }
        if c.expired > 0 {
            notes.push(format!("{} expired", c.expired));
        }
        if c.skipped > 0 {
            notes.push(format!("{} skipped", c.skipped));
        }
        if !notes.is_empty() {
            println!("{}: {}", l.campaign, notes.join(", "));
        }
    }
    for l in lines.iter().filter(|l| l.delivery.checked > 0) {
        let d = &l.delivery;
        println!(
            "{}: delivery {}/{} sent checked: received {}, seen {}, unknown {}; fees {} VND",
            l.campaign,
            d.checked,
            d.sent,
            d.received,
            d.seen,
            d.unknown,
            crate::campaign::plan::thousands((d.fee_main + d.fee_token).max(0) as u64)
        );
    }
    for l in lines
        .iter()
        .filter(|l| l.last_error.is_some() && l.status != "finished")
    {
        println!(
            "{}: last stop: {}",
            l.campaign,
            l.last_error.as_deref().unwrap_or("")
        );
    }
}

fn truncate(s: &str, n: usize) -> String {
    if s.chars().count() <= n {
        s.to_string()
    } else {
        let mut t: String = s.chars().take(n - 1).collect();
        t.push('…');
        t
    }
}

/// A cell a spreadsheet shows as text: line breaks and other control
/// characters become spaces (one physical line per row, whatever the input
/// held), and a cell starting (after blanks) with `=`, `+`, `-` or `@` — which Excel,
/// LibreOffice and Sheets would run as a formula — gets a leading `'`.
fn spreadsheet_safe(s: &str) -> std::borrow::Cow<'_, str> {
    let s: std::borrow::Cow<'_, str> = if s.chars().any(char::is_control) {
        s.chars()
            .map(|c| if c.is_control() { ' ' } else { c })
            .collect::<String>()
            .into()
    } else {
        s.into()
    };
    // Leading blanks too: some importers trim before they decide.
    match s.trim_start().chars().next() {
        Some('=' | '+' | '-' | '@') => format!("'{s}").into(),
        _ => s,
    }
}

pub const REPORT_HEADER: [&str; 15] = [
    "line",
    "phone",
    "tracking_id",
    "state",
    "msg_id",
    "error_code",
    "error",
    "attempts",
    "resent_after_doubt",
    "updated_at",
    "sent_at",
    "delivery_status",
    "delivery_time",
    "fee_main",
    "fee_token",
];

/// One report row as `report --json` writes it (one object per line): the
/// CSV's columns, unescaped, with times in RFC 3339.
#[derive(Debug, Serialize)]
pub struct JsonReportRow<'a> {
    pub line: u64,
    pub phone: &'a str,
    pub tracking_id: &'a str,
    pub state: &'a str,
    pub msg_id: Option<&'a str>,
    pub error_code: Option<&'a str>,
    pub error: Option<&'a str>,
    pub attempts: u32,
    pub resent_after_doubt: bool,
    pub updated_at: Option<String>,
    pub sent_at: Option<String>,
    pub delivery_status: Option<&'a str>,
    pub delivery_time: Option<String>,
    pub fee_main: Option<i64>,
    pub fee_token: Option<i64>,
}

fn fmt_opt_ms(ms: Option<i64>) -> Option<String> {
    ms.map(|m| quota::fmt_rfc3339(quota::from_ms(m)))
}

/// `report --json`: one JSON object per input row, in file order.
pub fn write_report_json(
    store: &Store,
    campaign: &Campaign,
    out: impl Write,
) -> anyhow::Result<u64> {
    let mut out = std::io::BufWriter::new(out);
    let mut n = 0u64;
    let written = store.for_each_report_row(campaign, |r: &ReportRow| {
        n += 1;
        let row = JsonReportRow {
            line: r.line,
            phone: &r.phone,
            tracking_id: &r.tracking_id,
            state: &r.state,
            msg_id: r.msg_id.as_deref(),
            error_code: r.error_code.as_deref(),
            error: r.error.as_deref(),
            attempts: r.attempts,
            resent_after_doubt: r.resent_after_doubt,
            updated_at: fmt_opt_ms(r.updated_ms),
            sent_at: fmt_opt_ms(r.sent_ms),
            delivery_status: r.delivery_status.as_deref(),
            delivery_time: fmt_opt_ms(r.delivery_ms),
            fee_main: r.fee_main,
            fee_token: r.fee_token,
        };
        serde_json::to_writer(&mut out, &row).map_err(std::io::Error::other)?;
        out.write_all(b"\n")
    })?;
    written?;
    out.flush()?;
    Ok(n)
}

/// One CSV line per input row (rejects included), in file order.
pub fn write_report(
    store: &Store,
    campaign: &Campaign,
    out: impl Write,
    excel_bom: bool,
) -> anyhow::Result<u64> {
    let mut out = std::io::BufWriter::new(out);
    if excel_bom {
        out.write_all("\u{feff}".as_bytes())?;
    }
    let mut w = csv::Writer::from_writer(out);
    w.write_record(REPORT_HEADER)?;
    let mut n = 0u64;
    let fmt_ms = |ms: Option<i64>| {
        ms.map(|m| quota::fmt_rfc3339(quota::from_ms(m)))
            .unwrap_or_default()
    };
    let written = store.for_each_report_row(campaign, |r: &ReportRow| {
        n += 1;
        w.write_record([
            r.line.to_string().as_str(),
            &spreadsheet_safe(&r.phone),
            &spreadsheet_safe(&r.tracking_id),
            &r.state,
            &spreadsheet_safe(r.msg_id.as_deref().unwrap_or("")),
            &spreadsheet_safe(r.error_code.as_deref().unwrap_or("")),
            &spreadsheet_safe(r.error.as_deref().unwrap_or("")),
            &r.attempts.to_string(),
            if r.resent_after_doubt { "yes" } else { "" },
            &fmt_ms(r.updated_ms),
            &fmt_ms(r.sent_ms),
            r.delivery_status.as_deref().unwrap_or(""),
            &fmt_ms(r.delivery_ms),
            &r.fee_main.map(|f| f.to_string()).unwrap_or_default(),
            &r.fee_token.map(|f| f.to_string()).unwrap_or_default(),
        ])
        .map_err(std::io::Error::other)
    })?;
    written?;
    w.flush()?;
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formula_like_cells_are_escaped() {
        assert_eq!(spreadsheet_safe("=HYPERLINK(\"x\")"), "'=HYPERLINK(\"x\")");
        assert_eq!(spreadsheet_safe("-118"), "'-118");
        assert_eq!(spreadsheet_safe("84912345678"), "84912345678");
        assert_eq!(spreadsheet_safe("@SUM(A1)"), "'@SUM(A1)");
        assert_eq!(spreadsheet_safe("+84 912"), "'+84 912");
        assert_eq!(spreadsheet_safe("a\r\nb"), "a  b");
        assert_eq!(spreadsheet_safe("\t=1+1"), "' =1+1");
        assert_eq!(truncate("Hóa đơn tháng 11", 5), "Hóa …");
    }
}
