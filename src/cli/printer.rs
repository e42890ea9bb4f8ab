//! The command line's printer: the live progress bar, the end-of-run
//! summary, the dry-run plan, the `status` table, a reconcile's summary,
//! and `--json` output. Only the command-line face prints.

use std::io::{IsTerminal, Write};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde::Serialize;

use crate::campaign::plan::{self, Plan};
use crate::campaign::summary::{CampaignStatusLine, ReconcileSummary, Summary};
use crate::campaign::{Observer, RunCounters};
use crate::model::clock;

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

pub fn print_summary(summary: &Summary, json: bool) {
    print_text_or_json(summary, json, summary_text);
}

fn summary_text(this: &Summary) -> String {
    let c = &this.counts;
    let t = &this.this_run;
    let mut out = String::new();
    out.push_str(&format!(
        "\nCampaign {} — {}\n",
        this.campaign,
        this.result.to_uppercase()
    ));
    if let Some(reason) = &this.reason {
        out.push_str(&format!("  {reason}\n"));
    }
    out.push_str(&format!(
        "  provider    {} · OA {} · template {}\n",
        this.provider, this.oa_id, this.template_id
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
    for e in &this.top_errors {
        out.push_str(&format!(
            "                ×{} code {}: {}\n",
            e.rows, e.code, e.message
        ));
    }
    out.push_str(&format!("  rejected    {:>8}\n", c.rejected));
    for r in &this.first_rejects {
        out.push_str(&format!("                line {}: {}\n", r.line, r.reason));
    }
    if c.rejected as usize > this.first_rejects.len() {
        out.push_str("                … every reject is listed by `zns-batch report`\n");
    }
    // Rare fates: a line only when some row has one.
    for (label, n, why) in [
        (
            "in doubt",
            c.in_doubt,
            "held: may or may not have been delivered",
        ),
        (
            "skipped",
            c.skipped,
            "a message went to the phone within --min-interval-per-phone; see the report",
        ),
        (
            "expired",
            c.expired,
            "not sent: the campaign's deadline passed",
        ),
    ] {
        if n > 0 {
            out.push_str(&format!("  {label:<12}{n:>8}   ({why})\n"));
        }
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
    let limit = this
        .daily_quota
        .or(this.quota_today.provider_limit)
        .map(|l| format!(" of {l}"))
        .unwrap_or_default();
    out.push_str(&format!(
        "  quota       {}{} used on {} (Asia/Ho_Chi_Minh)\n",
        this.quota_today.used, limit, this.quota_today.day
    ));
    let rate = t.sent as f64 / t.send_secs.max(0.001);
    out.push_str(&format!(
        "  time        {:.1} s, {:.0} msg/s while sending, {} requests\n",
        t.elapsed_secs, rate, t.requests
    ));
    if let Some(next) = &this.next_step {
        out.push_str(&format!("  next        {next}\n"));
    }
    out
}

pub fn print_plan(plan: &Plan, json: bool) {
    print_text_or_json(plan, json, plan_text);
}

fn plan_text(this: &Plan) -> String {
    let s = &this.settings;
    let mut o = String::new();
    o.push_str(&format!(
        "\nDry run for campaign {} — nothing sent, nothing bought\n",
        this.campaign
    ));
    let profile = s
        .profile
        .as_deref()
        .map(|p| format!(" · profile {p}"))
        .unwrap_or_default();
    o.push_str(&format!(
        "  provider     {} · OA {} · template {}{profile}\n",
        s.provider, s.oa_id, s.template_id
    ));
    o.push_str(&format!("  pre-flight   {}\n", this.template_check));
    if let Some(w) = &this.template_warning {
        o.push_str(&format!("  warning      {w}\n"));
    }
    o.push_str(&format!(
        "  rows         {} in file: {} accepted, {} rejected\n",
        this.rows, this.accepted, this.rejected
    ));
    for r in &this.first_rejects {
        o.push_str(&format!("                 line {}: {}\n", r.line, r.reason));
    }
    if this.rejected as usize > this.first_rejects.len() {
        o.push_str("                 … every reject: zns-batch validate FILE, or the report\n");
    }
    o.push_str(&format!(
        "  messages     {} to send ({} already sent, {} failed)\n",
        this.messages_to_send, this.already_sent, this.already_failed
    ));
    if this.would_skip_min_interval > 0 {
        o.push_str(&format!(
            "  would skip   {} rows: their phone got a message from this OA within --min-interval-per-phone\n",
            this.would_skip_min_interval
        ));
    }
    if let Some(d) = &this.not_after {
        let when = time::OffsetDateTime::parse(d, &time::format_description::well_known::Rfc3339)
            .map(clock::fmt_local)
            .unwrap_or_else(|_| d.clone());
        o.push_str(&format!(
            "  deadline     {when} (rows not sent by then expire)\n"
        ));
    }
    if let Some(at) = this.starts_at.as_deref().and_then(parse_rfc3339_ms) {
        o.push_str(&format!(
            "  starts at    {} (OA time, in {})\n",
            crate::campaign::fmt_when(at),
            crate::campaign::fmt_until(at)
        ));
    }
    if this.uses_tokens {
        o.push_str(&format!(
            "  tokens       {} to buy, {} to reuse ({})\n",
            this.tokens_to_buy, this.tokens_to_reuse, s.token_type
        ));
    } else {
        o.push_str("  tokens       none needed by this provider\n");
    }
    match &this.estimated_fees {
        Some(f) => o.push_str(&format!(
            "  fees         ≈ {} VND = {} tokens × {} + {} messages × {}\n",
            plan::thousands(f.total),
            f.tokens,
            plan::thousands(f.token_fee),
            f.messages,
            plan::thousands(f.message_fee)
        )),
        None => o.push_str(
            "  fees         not estimated: set token_fee and message_fee in the config file\n",
        ),
    }
    match (this.quota_days_needed, s.daily_quota, this.provider_quota) {
        (Some(d), ours, Some(p)) => {
            let ours = ours
                .map(|q| format!("; --daily-quota {q}"))
                .unwrap_or_default();
            o.push_str(&format!(
                "  quota        {d} quota day(s): the provider says {} of {}/day left today{ours} ({} used today here, Asia/Ho_Chi_Minh)\n",
                p.remaining, p.daily, this.quota_used_today
            ))
        }
        (Some(d), Some(q), None) => o.push_str(&format!(
            "  quota        {d} quota day(s) at {q}/day ({} used today, Asia/Ho_Chi_Minh)\n",
            this.quota_used_today
        )),
        _ => o.push_str("  quota        no daily quota set (--daily-quota): days needed unknown\n"),
    }
    if let (Some(w), Some(open)) = (&s.send_window, this.send_window_open_now) {
        if open {
            o.push_str(&format!("  send window  {w} (open now)\n"));
        } else {
            o.push_str(&format!(
                "  send window  {w} (closed now; opens {})\n",
                this.send_window_opens_at.as_deref().unwrap_or("?")
            ));
        }
    }
    o.push_str(&format!(
        "  pace         concurrency {}, rate {}\n",
        s.concurrency,
        s.rate
            .map(|r| format!("{r}/s"))
            .unwrap_or_else(|| "unlimited".into())
    ));
    o.push_str(&format!("  next         {}\n", this.next_step));
    o
}

pub fn print_reconcile(s: &ReconcileSummary) {
    let t = &s.this_run;
    let d = &s.delivery;
    let mut o = format!(
        "\nReconcile {} — {}\n",
        s.campaign,
        s.result.as_str().to_uppercase()
    );
    if let Some(r) = &s.reason {
        o.push_str(&format!("  {r}\n"));
    }
    o.push_str(&format!("  provider    {}\n", s.provider));
    o.push_str(&format!(
        "  this run    {} looked up, {} not found, {} failed, {} left\n",
        t.looked_up, t.not_found, t.failed, t.remaining
    ));
    for e in &t.errors {
        o.push_str(&format!("                {e}\n"));
    }
    o.push_str(&format!(
        "  delivery    {} of {} sent rows checked: received {}, seen {}, unknown {}\n",
        d.checked, d.sent, d.received, d.seen, d.unknown
    ));
    if d.no_msg_id > 0 {
        o.push_str(&format!(
            "              {} sent rows have no message id (cannot be looked up)\n",
            d.no_msg_id
        ));
    }
    o.push_str(&format!(
        "  fees        {} VND message + {} VND token (as reported by the provider)\n",
        plan::thousands(d.fee_main.max(0) as u64),
        plan::thousands(d.fee_token.max(0) as u64)
    ));
    if let Some(n) = &s.next_step {
        o.push_str(&format!("  next        {n}\n"));
    }
    print!("{o}");
}

/// `--json` output: one pretty JSON document on stdout.
/// `--json`: the value as JSON; else the text made of it.
fn print_text_or_json<T: Serialize>(value: &T, json: bool, text: fn(&T) -> String) {
    if json {
        print_json(value);
    } else {
        print!("{}", text(value));
        let _ = std::io::stdout().flush();
    }
}

pub fn print_json(value: &impl Serialize) {
    println!(
        "{}",
        serde_json::to_string_pretty(value).unwrap_or_else(|_| "{}".into())
    );
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
                    .map(clock::fmt_local)
                    .unwrap_or_else(|_| d.clone());
            notes.push(format!(
                "deadline {when}{}",
                if l.deadline_passed { " (passed)" } else { "" }
            ));
        }
        if let Some(s) = l.min_interval_per_phone_secs {
            notes.push(format!(
                "min interval per phone {}",
                clock::fmt_duration(std::time::Duration::from_secs(s))
            ));
        }
        if let Some(at) = l.scheduled_for.as_deref().and_then(parse_rfc3339_ms) {
            notes.push(format!(
                "scheduled for {} (OA time, in {})",
                crate::campaign::fmt_when(at),
                crate::campaign::fmt_until(at)
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
    for l in lines.iter().filter(|l| l.counts.sent > 0) {
        let d = &l.ledger;
        let mut line = format!(
            "{}: delivery of {} sent: received {}, seen {}, failed {}, no status yet {}",
            l.campaign, l.counts.sent, d.received, d.seen, d.failed_delivery, d.unknown
        );
        if d.unmatched > 0 {
            line.push_str(&format!(
                " ({} callbacks match no row of any campaign yet)",
                d.unmatched
            ));
        }
        println!("{line}");
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

/// An RFC 3339 time the core wrote, as ms.
fn parse_rfc3339_ms(s: &str) -> Option<i64> {
    time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339)
        .ok()
        .map(clock::to_ms)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_cells_are_cut_with_an_ellipsis() {
        assert_eq!(truncate("Hóa đơn tháng 11", 5), "Hóa …");
        assert_eq!(truncate("ngắn", 5), "ngắn");
    }
}
