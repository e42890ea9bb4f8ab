//! The console's pages, as maud templates (checked at compile time; every
//! value is HTML-escaped, so a CSV cell `<script>` shows as text).

use maud::{html, Markup, DOCTYPE};
use rust_i18n::t;
use serde_json::Value;

use super::format as fmt;
use super::lang::Lang;
use super::pictures;
use crate::serve::words::reason_words as reject_reason_words;

use crate::campaign::plan::Plan;
use crate::campaign::summary::{CampaignStatusLine, ErrorLine};
use crate::campaign::{AuditEntry, DeliveryChart, OaMonth, RowView, TestSend};
use crate::serve::campaigns::NewCampaign;

/// A listed reject's reason in the page's language.
fn reject_words(locale: &str, r: &RowView) -> String {
    let reason = crate::campaign::Reason::from_stored(
        &r.text,
        r.reason_code.as_deref(),
        r.reason_params.as_deref(),
    );
    reject_reason_words(locale, &reason)
}

/// Rows per page of rejects.
pub const PAGE_ROWS: u64 = 50;

/// A campaign name as one URL path segment.
pub fn enc(name: &str) -> String {
    let mut out = String::new();
    for b in name.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// What every page's frame needs: the forms' CSRF token, whether to
/// offer "Sign out" (an access token is configured), the reader's
/// language and the page they are on (the language switch returns there).
#[derive(Debug, Clone, Copy)]
pub struct Chrome<'a> {
    pub csrf: &'a str,
    pub sign_out: bool,
    /// Who is signed in, as the header says it (none on an open console).
    pub who: Option<&'a str>,
    pub lang: Lang,
    pub here: &'a str,
}

/// The query-string form of a local path (for the switch's `next=`).
fn query_value(v: &str) -> String {
    let mut out = String::new();
    for b in v.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~' | b'/') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

pub fn layout(title: &str, chrome: Chrome<'_>, body: Markup) -> Markup {
    let csrf = chrome.csrf;
    let l = chrome.lang.code();
    let next = query_value(chrome.here);
    html! {
        (DOCTYPE)
        html lang=(l) {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                meta name="csrf-token" content=(csrf);
                // The script's own words, in the page's language.
                meta name="js-text" content=(js_text(chrome.lang));
                title { (title) " · zns-batch" }
                link rel="stylesheet" href="/assets/app.css";
                script src="/assets/app.js" defer {}
            }
            body {
                header.top {
                    a.brand href="/" { "zns-batch" }
                    nav {
                        a href="/" { (t!("nav.campaigns", locale = l)) }
                        a href="/new" { (t!("nav.new_campaign", locale = l)) }
                        a href="/zalo" { (t!("nav.connect_oa", locale = l)) }
                    }
                    nav.lang aria-label=(t!("nav.language", locale = l)) {
                        @for (i, other) in Lang::ALL.iter().enumerate() {
                            @if i > 0 { span.sep aria-hidden="true" { "|" } }
                            @if *other == chrome.lang {
                                strong #lang-current lang=(other.code()) aria-current="true" { (other.code().to_uppercase()) }
                            } @else {
                                a #{"lang-" (other.code())} lang=(other.code()) hreflang=(other.code())
                                    href={"/lang/" (other.code()) "?next=" (next)} { (other.code().to_uppercase()) }
                            }
                        }
                    }
                    @if let Some(who) = chrome.who {
                        span #signed-in-as.muted { (t!("nav.signed_in_as", locale = l, who = who)) }
                    }
                    @if chrome.sign_out {
                        form.signout method="post" action="/logout" {
                            input type="hidden" name="csrf" value=(csrf);
                            button #sign-out type="submit" { (t!("nav.sign_out", locale = l)) }
                        }
                    }
                }
                main { (body) }
            }
        }
    }
}

/// The words app.js shows, as JSON.
fn js_text(lang: Lang) -> String {
    let l = lang.code();
    let words = serde_json::json!({
        "uploading": t!("js.uploading", locale = l),
        "uploaded": t!("js.uploaded", locale = l),
        "importing": t!("js.importing", locale = l),
        "refused": t!("js.refused", locale = l),
        "offline": t!("js.offline", locale = l),
        "run_progress": t!("js.run_progress", locale = l),
        "eta": t!("js.eta", locale = l),
        "done_of": t!("js.done_of", locale = l),
        "status": status_words(lang),
        "thousands": match lang { Lang::Vi => ".", Lang::En => "," },
    });
    words.to_string()
}

/// Every campaign status in words, for the script's live badge.
fn status_words(lang: Lang) -> Value {
    let mut m = serde_json::Map::new();
    for s in [
        "importing",
        "ready",
        "running",
        "paused",
        "finished",
        "expired",
        "aborted",
        "pending",
        "scheduled",
    ] {
        m.insert(s.into(), Value::String(status_word(lang, s)));
    }
    Value::Object(m)
}

/// A campaign status (the core's code) in words.
pub fn status_word(lang: Lang, status: &str) -> String {
    let l = lang.code();
    match status {
        "importing" => t!("status.importing", locale = l),
        "ready" => t!("status.ready", locale = l),
        "running" => t!("status.running", locale = l),
        "paused" => t!("status.paused", locale = l),
        "finished" => t!("status.finished", locale = l),
        "expired" => t!("status.expired", locale = l),
        "aborted" => t!("status.aborted", locale = l),
        "pending" => t!("status.pending", locale = l),
        "scheduled" => t!("status.scheduled", locale = l),
        other => return other.to_string(),
    }
    .into_owned()
}

fn badge(lang: Lang, status: &str) -> Markup {
    html! { span class={"badge badge-" (status)} { (status_word(lang, status)) } }
}

/// The status badge, saying so when a finished campaign left rows unsent
/// because they were rejected (not a plain green "finished").
fn status_badge(lang: Lang, c: &CampaignStatusLine) -> Markup {
    if pictures::finished_with_rejects(c) {
        let n = fmt::num(lang, c.counts.rejected);
        html! { span.badge.badge-partial { (t!("charts.finished_rejected", locale = lang.code(), n = n)) } }
    } else {
        badge(lang, &c.status)
    }
}

/// Accepted rows the campaign is done with, of all accepted rows
/// (rejected rows are never sent, so they count for neither).
fn progress(c: &CampaignStatusLine) -> (u64, u64) {
    let k = &c.counts;
    let done = k.sent + k.failed + k.expired + k.skipped;
    (done, k.total.saturating_sub(k.rejected))
}

/// A `<progress>`, not a div sized by an inline style: the
/// Content-Security-Policy allows no inline style.
fn bar(lang: Lang, done: u64, total: u64, id: Option<&str>) -> Markup {
    let l = lang.code();
    html! {
        progress.bar id=[id] value=(done) max=(total.max(1))
            title=(t!("common.done_of", locale = l, done = fmt::num(lang, done), total = fmt::num(lang, total))) {}
    }
}

pub fn campaigns(
    list: &[CampaignStatusLine],
    months: &[OaMonth],
    auto_resume: bool,
    chrome: Chrome<'_>,
) -> Markup {
    let csrf = chrome.csrf;
    let lang = chrome.lang;
    let l = lang.code();
    let n = |v: u64| fmt::num(lang, v);
    layout(
        &t!("campaigns.title", locale = l),
        chrome,
        html! {
            // Refreshes itself: counts move while campaigns send.
            meta http-equiv="refresh" content="5";
            h1 { (t!("campaigns.title", locale = l)) }
            p.lead { (t!("campaigns.lead", locale = l)) }
            @if list.is_empty() {
                p.empty { (t!("campaigns.empty", locale = l)) " " a href="/new" { (t!("campaigns.empty_link", locale = l)) } }
            }
            div.cards {
                @for c in list {
                    a.card href={"/campaigns/" (enc(&c.campaign))} data-campaign=(c.campaign) {
                        div.card-head { strong.name { (c.campaign) } (status_badge(lang, c)) }
                        (pictures::card_progress(c, lang))
                        dl.counts {
                            div { dt { (t!("counts.sent", locale = l)) } dd { (n(c.counts.sent)) } }
                            div { dt { (t!("counts.failed", locale = l)) } dd { (n(c.counts.failed)) } }
                            div { dt { (t!("counts.rejected", locale = l)) } dd { (n(c.counts.rejected)) } }
                            div { dt { (t!("counts.in_doubt", locale = l)) } dd { (n(c.counts.in_doubt)) } }
                            // Only when the provider said something: no "delivered 0" guess.
                            @if pictures::has_delivery_data(c) { div { dt { (t!("counts.delivered", locale = l)) } dd { (n(c.ledger.received + c.ledger.seen)) } } }
                            div { dt { (t!("counts.rows", locale = l)) } dd { (n(c.counts.total)) } }
                        }
                        @if let Some(e) = &c.last_error { p.reason { (e) } }
                    }
                }
            }
            (pictures::oa_month(months, lang))
            form.switch #auto-resume method="post" action="/ui/auto-resume" {
                input type="hidden" name="csrf" value=(csrf);
                @if auto_resume {
                    input type="hidden" name="on" value="0";
                    span { (t!("charts.auto_on", locale = l)) }
                    button #auto-resume-off type="submit" { (t!("charts.auto_off_button", locale = l)) }
                } @else {
                    input type="hidden" name="on" value="1";
                    span { (t!("charts.auto_off", locale = l)) }
                    button #auto-resume-on type="submit" { (t!("charts.auto_on_button", locale = l)) }
                }
            }
        },
    )
}

/// The New campaign form; `error` is shown above it after a refused upload.
pub fn new_campaign(
    profiles: &[String],
    chrome: Chrome<'_>,
    error: Option<&str>,
    typed: Option<&NewCampaign>,
) -> Markup {
    let csrf = chrome.csrf;
    let l = chrome.lang.code();
    let v = typed.cloned().unwrap_or_default();
    let delim = match v.delimiter {
        None => "auto",
        Some(b';') => ";",
        Some(b'\t') => "tab",
        Some(_) => ",",
    };
    layout(
        &t!("new.title", locale = l),
        chrome,
        html! {
            h1 { (t!("new.title", locale = l)) }
            p.lead { (t!("new.lead", locale = l)) }
            @if let Some(e) = error { p.error role="alert" id="upload-error" { (e) } }
            @else { p.error hidden role="alert" id="upload-error" {} }
            form #upload-form method="post" action="/ui/upload" enctype="multipart/form-data" {
                input type="hidden" name="csrf" value=(csrf);
                label.drop #drop {
                    span #drop-text { (t!("new.drop", locale = l)) }
                    input #file type="file" name="file" accept=".csv,text/csv,.xlsx,.xlsm,.xls,.ods" required;
                }
                div.grid {
                    label { (t!("new.name", locale = l)) input type="text" name="campaign" required maxlength="100" placeholder=(t!("new.name_placeholder", locale = l)) value=(v.name); small { (t!("new.name_help", locale = l)) } }
                    label { (t!("new.template", locale = l)) input type="text" name="template_id" inputmode="numeric" placeholder="246810" value=[v.template_id.as_deref()]; small { (t!("new.template_help", locale = l)) } }
                    @if !profiles.is_empty() {
                        label { (t!("new.profile", locale = l)) select name="profile" { option value="" { (t!("new.profile_default", locale = l)) } @for p in profiles { option value=(p) selected[v.profile.as_deref() == Some(p.as_str())] { (p) } } } small { (t!("new.profile_help", locale = l)) } }
                    }
                    label { (t!("charts.delimiter", locale = l)) select #delimiter name="delimiter" {
                            option value="auto" selected[delim == "auto"] { (t!("charts.delimiter_auto", locale = l)) }
                            option value="," selected[delim == ","] { (t!("charts.delimiter_comma", locale = l)) }
                            option value=";" selected[delim == ";"] { (t!("charts.delimiter_semicolon", locale = l)) }
                            option value="tab" selected[delim == "tab"] { (t!("charts.delimiter_tab", locale = l)) }
                        }
                        small { (t!("charts.delimiter_help", locale = l)) } }
                    label { (t!("new.window", locale = l)) input type="text" name="send_window" placeholder="07:00-22:00" value=[v.send_window.as_deref()]; small { (t!("new.window_help", locale = l)) } }
                    label { (t!("new.deadline", locale = l)) input type="text" name="not_after" placeholder="2026-12-01T08:00" value=[v.not_after.as_deref()]; small { (t!("new.deadline_help", locale = l)) } }
                    label { (t!("new.sheet", locale = l)) input type="text" name="sheet" maxlength="100" placeholder="Sheet1" value=[v.sheet.as_deref()]; small { (t!("new.sheet_help", locale = l)) } }
                    label { (t!("new.quota", locale = l)) input type="number" min="1" name="daily_quota" placeholder="5000" value=[v.daily_quota]; small { (t!("new.quota_help", locale = l)) } }
                }
                @if typed.is_some() { p.muted #choose-again { (t!("charts.choose_again", locale = l)) } }
                progress #upload-progress hidden max="100" value="0" {}
                p #upload-status.muted {}
                button.primary type="submit" { (t!("new.submit", locale = l)) }
            }
        },
    )
}

/// A figure of the plan the plan may not have.
fn or_dash(v: Option<String>) -> String {
    v.unwrap_or_else(|| "—".into())
}

pub struct CheckPage<'a> {
    pub status: &'a CampaignStatusLine,
    pub plan: Result<&'a Plan, &'a str>,
    pub rejects: &'a [RowView],
    pub page: u64,
    pub preview: &'a [RowView],
    pub keys: &'a [String],
    pub auto_resume: bool,
    pub chrome: Chrome<'a>,
}

/// The Check page: what was accepted, a preview of the data, the rejects
/// (paged, downloadable), the plan, and last of all Send with the count
/// and the cost to confirm.
pub fn check(c: CheckPage<'_>) -> Markup {
    let CheckPage {
        status,
        plan,
        rejects,
        page,
        preview,
        keys,
        auto_resume,
        chrome,
    } = c;
    let csrf = chrome.csrf;
    let lang = chrome.lang;
    let l = lang.code();
    let n = |v: u64| fmt::num(lang, v);
    let name = &status.campaign;
    let pages = status.counts.rejected.div_ceil(PAGE_ROWS).max(1);
    layout(
        &t!("check.title", locale = l, name = name),
        chrome,
        html! {
            h1 { (t!("check.heading", locale = l)) " " span.name { (name) } }
            p.lead #check-summary {
                strong #accepted { (n(status.counts.total - status.counts.rejected)) } " " (t!("check.accepted", locale = l)) " "
                strong #rejected { (n(status.counts.rejected)) } " " (t!("check.rejected_of", locale = l, total = n(status.counts.total))) " "
                (t!("check.rejected_note", locale = l))
            }
            section {
                h2 { (t!("check.preview", locale = l)) }
                @if preview.is_empty() { p.muted { (t!("check.preview_empty", locale = l)) } }
                @for r in preview {
                    div.preview {
                        div.muted { (t!("common.line", locale = l)) " " (r.line) " · " (r.phone) }
                        @match serde_json::from_str::<Vec<Value>>(&r.text) {
                            Ok(values) => {
                                dl.data { @for (k, v) in keys.iter().zip(&values) { div { dt { (k) } dd { (v.as_str().map(str::to_string).unwrap_or_else(|| v.to_string())) } } } }
                            }
                            Err(_) => { pre { (r.text) } }
                        }
                    }
                }
            }
            section #rejects {
                h2 { (t!("check.rejects", locale = l)) }
                @if rejects.is_empty() { p.muted { (t!("check.rejects_none", locale = l)) } }
                @else {
                    p { a.button #rejects-download href={"/campaigns/" (enc(name)) "/rejects.csv"} download { (t!("charts.rejects_download", locale = l)) }
                        " " span.muted { (t!("charts.rejects_download_help", locale = l)) } }
                    table.plain.rejects {
                        thead { tr { th { (t!("common.line", locale = l)) } th { (t!("common.phone", locale = l)) } th { (t!("common.reason", locale = l)) } } }
                        tbody { @for r in rejects { tr.reject { td.line { (r.line) } td { (r.phone) } td.why { (reject_words(l, r)) } } } }
                    }
                    @if pages > 1 {
                        nav.pager {
                            @if page > 1 { a href={"?page=" (page - 1) "#rejects"} { (t!("pager.previous", locale = l)) } }
                            span { (t!("pager.page_of", locale = l, page = page, pages = pages)) }
                            @if page < pages { a href={"?page=" (page + 1) "#rejects"} { (t!("pager.next", locale = l)) } }
                        }
                    }
                }
            }
            section {
                h2 { (t!("check.plan", locale = l)) }
                @match plan {
                    Ok(p) => {
                        table.plain.figures #plan {
                            tr { th { (t!("plan.to_send", locale = l)) } td #plan-messages { (n(p.messages_to_send)) } }
                            @if p.already_sent > 0 { tr { th { (t!("plan.already_sent", locale = l)) } td { (n(p.already_sent)) } } }
                            @if p.uses_tokens {
                                tr { th { (t!("plan.tokens_to_buy", locale = l)) } td { (n(p.tokens_to_buy)) } }
                                tr { th { (t!("plan.tokens_to_reuse", locale = l)) } td { (n(p.tokens_to_reuse)) } }
                            }
                            tr { th { (t!("plan.fee", locale = l)) } td #plan-fee { @if let Some(f) = &p.estimated_fees { span.money { "≈ " (fmt::money(lang, f.total)) } } @else { (t!("plan.no_prices", locale = l)) } } }
                            tr { th { (t!("charts.quota_today", locale = l)) } td #plan-quota { (pictures::quota_text(p.quota_used_today, pictures::plan_limit(p), lang)) } }
                            @if let Some(days) = p.quota_days_needed.filter(|d| *d > 1) { tr { th { (t!("plan.quota_days", locale = l)) } td { (n(days)) } } }
                            tr { th { (t!("plan.window", locale = l)) } td { (p.settings.send_window.clone().unwrap_or_else(|| t!("plan.window_none", locale = l).into_owned())) @if p.send_window_open_now == Some(false) { " " (t!("plan.window_closed", locale = l, at = or_dash(p.send_window_opens_at.as_deref().map(fmt::instant_text)))) } } }
                            tr { th { (t!("plan.deadline", locale = l)) } td { (or_dash(p.not_after.as_deref().map(fmt::instant_text))) } }
                            @if p.would_skip_min_interval > 0 { tr { th { (t!("plan.would_skip", locale = l)) } td { (n(p.would_skip_min_interval)) } } }
                            tr { th { (t!("plan.provider_line", locale = l)) } td { (p.settings.provider) " · " (p.settings.oa_id) " · " (p.settings.template_id) } }
                        }
                        (pictures::send_step(&format!("/ui/campaigns/{}/send", enc(name)), csrf, p, auto_resume, lang))
                        (later_or_test(lang, name, csrf))
                    }
                    Err(why) => { p.error { (why) } a href={"/campaigns/" (enc(name))} { (t!("check.open_campaign", locale = l)) } }
                }
            }
        },
    )
}

/// Stop reasons in words, for a paused campaign.
fn reason_words(lang: Lang, c: &CampaignStatusLine) -> Option<String> {
    let l = lang.code();
    let e = c.last_error.clone()?;
    let hint = if e.contains("quota") {
        t!("reason.quota", locale = l)
    } else if e.contains("window") {
        t!("reason.window", locale = l)
    } else if e.contains("deadline") || c.deadline_passed {
        t!("reason.deadline", locale = l)
    } else if e.contains("outage") || e.contains("no request has succeeded") {
        t!("reason.outage", locale = l)
    } else if e.contains("paused from the web console") {
        t!("reason.paused_by_person", locale = l)
    } else {
        return Some(e);
    };
    Some(format!("{hint} ({e})"))
}

pub struct CampaignPage<'a> {
    pub status: &'a CampaignStatusLine,
    pub chart: &'a DeliveryChart,
    /// When a quota or window pause resumes by itself (None: it will not).
    pub resumes_at: Option<&'a str>,
    pub running_here: bool,
    pub top_errors: &'a [ErrorLine],
    pub in_doubt: &'a [RowView],
    /// The newest audit entries about this campaign.
    pub audit: &'a [AuditEntry],
    /// Newest first, phones masked.
    pub test_sends: &'a [TestSend],
    pub chrome: Chrome<'a>,
}

pub fn campaign(p: CampaignPage<'_>) -> Markup {
    let c = p.status;
    let lang = p.chrome.lang;
    let l = lang.code();
    let n = |v: u64| fmt::num(lang, v);
    let name = &c.campaign;
    let (done, total) = progress(c);
    let action = |what: &str| format!("/ui/campaigns/{}/{what}", enc(name));
    let csrf = p.chrome.csrf;
    layout(
        name,
        p.chrome,
        html! {
            div #campaign data-events={"/api/v1/campaigns/" (enc(name)) "/events"} data-status=(c.status) data-running-here=(if p.running_here { "1" } else { "0" }) {
                h1 { span.name { (name) } " " span #status-badge { (status_badge(lang, c)) } }
                p.muted { (c.provider) " · OA " (c.oa_id) " · " (t!("campaign.template", locale = l)) " " (c.template_id) }
                // With rejects, the picture of every row (rejected ones
                // included) rather than a bar that fills for the accepted.
                @if pictures::finished_with_rejects(c) { (pictures::card_progress(c, lang)) }
                @else { (bar(lang, done, total, Some("progress-fill"))) }
                p #live.muted { (t!("common.done_of", locale = l, done = n(done), total = n(total))) }
                @if c.counts.rejected > 0 {
                    p #rejected-note {
                        @if c.status == "finished" { (t!("charts.finished_accepted", locale = l)) }
                        (t!("charts.rejected_note", locale = l, n = n(c.counts.rejected), total = n(c.counts.total)))
                        a href={"/campaigns/" (enc(name)) "/rejects.csv"} { (t!("charts.download_them", locale = l)) } (t!("charts.fix_upload", locale = l))
                    }
                }
                dl.counts.big {
                    div { dt { (t!("counts.sent", locale = l)) } dd #count-sent { (n(c.counts.sent)) } }
                    div { dt { (t!("counts.failed", locale = l)) } dd #count-failed { (n(c.counts.failed)) } }
                    div { dt { (t!("counts.rejected", locale = l)) } dd #count-rejected { (n(c.counts.rejected)) } }
                    div { dt { (t!("counts.in_doubt", locale = l)) } dd #count-in_doubt { (n(c.counts.in_doubt)) } }
                    div { dt { (t!("counts.waiting", locale = l)) } dd #count-open { (n(c.counts.pending + c.counts.token_ready + c.counts.in_flight)) } }
                    div { dt { (t!("counts.expired", locale = l)) } dd #count-expired { (n(c.counts.expired)) } }
                }
                @if let Some(words) = reason_words(lang, c) { @if c.status != "finished" { p.reason #reason { (words) } } }
                @if let Some(at) = p.resumes_at { @if !p.running_here { p.reason #resumes-at { (t!("charts.resumes_at", locale = l, at = at)) } } }
                @if let Some(at) = c.scheduled_for.as_deref().and_then(rfc3339_ms) {
                    div.scheduled #scheduled {
                        p { (t!("schedule.scheduled_for", locale = l)) " " strong #scheduled-for { (crate::campaign::fmt_when(at)) } " " (t!("schedule.scheduled_note", locale = l, until = crate::campaign::fmt_until(at))) }
                        form method="post" action=(action("pause")) {
                            input type="hidden" name="csrf" value=(csrf);
                            button #cancel-schedule type="submit" { (t!("schedule.cancel", locale = l)) }
                        }
                    }
                }
                div.actions {
                    @if p.running_here {
                        form method="post" action=(action("pause")) {
                            input type="hidden" name="csrf" value=(csrf);
                            button #pause type="submit" { (t!("campaign.pause", locale = l)) }
                        }
                    } @else if c.status != "finished" {
                        form method="post" action=(action("start")) {
                            input type="hidden" name="csrf" value=(csrf);
                            button.primary #resume type="submit" { @if c.status == "pending" { (t!("check.send", locale = l)) } @else if c.status == "scheduled" { (t!("schedule.send_now", locale = l)) } @else { (t!("campaign.resume", locale = l)) } }
                        }
                    }
                    a.button #report-csv href={"/api/v1/campaigns/" (enc(name)) "/report.csv"} { (t!("campaign.report_csv", locale = l)) }
                    a.button href={"/api/v1/campaigns/" (enc(name)) "/report.csv?excel=1"} { (t!("campaign.report_excel", locale = l)) }
                    a.button href={"/campaigns/" (enc(name)) "/check"} { (t!("campaign.check_page", locale = l)) }
                }
                @if !p.running_here && c.status != "finished" && c.status != "expired" {
                    (later_or_test(lang, name, csrf))
                }
                @if !p.test_sends.is_empty() {
                    section #test-sends {
                        h2 { (t!("schedule.test_sends", locale = l)) }
                        p.muted { (t!("schedule.test_sends_help", locale = l)) }
                        table.plain {
                            thead { tr { th { (t!("common.phone", locale = l)) } th { (t!("schedule.when", locale = l)) } th { (t!("schedule.outcome", locale = l)) } th { (t!("schedule.msg_or_error", locale = l)) } } }
                            tbody { @for t in p.test_sends {
                                tr.test-send { td { (t.phone) } td { (crate::campaign::fmt_when(t.at_ms)) } td { (t.outcome) } td { (t.msg_id.as_deref().or(t.error.as_deref()).unwrap_or("")) } }
                            } }
                        }
                    }
                }
                @if !p.in_doubt.is_empty() {
                    section {
                        h2 { (t!("campaign.in_doubt", locale = l)) }
                        p { (t!("campaign.in_doubt_help", locale = l)) }
                        table.plain { tbody { @for r in p.in_doubt { tr { td { (t!("common.line", locale = l)) " " (r.line) } td { (r.phone) } td { (r.text) } } } } }
                        div.actions {
                            form method="post" action={(action("start")) "?in_doubt=resend"} {
                                input type="hidden" name="csrf" value=(csrf);
                                button type="submit" { (t!("campaign.resume_resend", locale = l)) }
                            }
                            form method="post" action={(action("start")) "?in_doubt=hold"} {
                                input type="hidden" name="csrf" value=(csrf);
                                button type="submit" { (t!("campaign.resume_hold", locale = l)) }
                            }
                        }
                    }
                }
                @if !p.top_errors.is_empty() {
                    section {
                        h2 { (t!("campaign.top_errors", locale = l)) }
                        table.plain {
                            thead { tr { th { (t!("campaign.error_code", locale = l)) } th { (t!("campaign.error_message", locale = l)) } th { (t!("counts.rows", locale = l)) } } }
                            tbody { @for e in p.top_errors { tr { td { (e.code) } td { (e.message) } td { (n(e.rows)) } } } }
                        }
                    }
                }
                section #delivery {
                    h2 { (t!("campaign.delivery", locale = l)) }
                    @if pictures::has_delivery_data(c) {
                        dl.counts {
                            div { dt { (t!("counts.delivered", locale = l)) } dd #delivered { (n(c.ledger.received + c.ledger.seen)) } }
                            @if pictures::reports_seen(&c.provider) { div { dt { (t!("counts.seen", locale = l)) } dd #seen { (n(c.ledger.seen)) } } }
                            div { dt { (t!("charts.failed_delivery", locale = l)) } dd { (n(c.ledger.failed_delivery)) } }
                            div { dt { (t!("charts.not_known", locale = l)) } dd { (n(c.ledger.unknown)) } }
                        }
                    } @else {
                        p #no-delivery-data { (t!("charts.no_delivery_data", locale = l)) }
                    }
                    p.muted { (t!("campaign.delivery_help", locale = l)) }
                }
                (pictures::campaign_chart(c, p.chart, lang))
                section #audit {
                    h2 { (t!("audit.title", locale = l)) }
                    @if p.audit.is_empty() {
                        p.muted { (t!("audit.none", locale = l)) }
                    } @else {
                        div.scroll { table.plain {
                            thead { tr { th { (t!("audit.when", locale = l)) } th { (t!("audit.who", locale = l)) } th { (t!("audit.action", locale = l)) } th { (t!("audit.detail", locale = l)) } th { (t!("audit.outcome", locale = l)) } } }
                            tbody { @for a in p.audit { tr { td.when { (a.at) } td { (a.actor) } td { (a.action) } td { (a.detail) } td { (a.outcome) } } } }
                        } }
                        p.muted { (t!("audit.whole_log", locale = l)) " " code { "zns-batch audit " (name) } " " (t!("audit.or", locale = l)) " " code { "GET /api/v1/audit?campaign=" (enc(name)) } "." }
                    }
                }
            }
        },
    )
}

/// "Send at" (a scheduled start) and "Send a test", beside Send.
fn later_or_test(lang: Lang, name: &str, csrf: &str) -> Markup {
    let l = lang.code();
    html! {
        div.later {
            form.inline #send-at-form method="post" action={"/ui/campaigns/" (enc(name)) "/start"} {
                input type="hidden" name="csrf" value=(csrf);
                label { (t!("schedule.send_at", locale = l)) " " input #start-at type="datetime-local" name="start_at" step="1" required; }
                button #schedule type="submit" { (t!("schedule.schedule", locale = l)) }
            }
            form.inline #test-form method="post" action={"/ui/campaigns/" (enc(name)) "/test"} {
                input type="hidden" name="csrf" value=(csrf);
                label { (t!("schedule.test_phones", locale = l)) " " input #test-phones type="text" name="phones" required placeholder="0912345678, 0987654321" inputmode="tel"; }
                button #send-test type="submit" { (t!("schedule.send_test", locale = l)) }
            }
        }
    }
}

/// "Send at" asks before it schedules, as Send does: the count and the
/// cost of the plan at the chosen time, a box to tick, then the Check
/// page's send route (which checks the count again).
pub fn schedule_confirm(
    name: &str,
    start_at: &str,
    at_ms: i64,
    plan: &Plan,
    auto_resume: bool,
    chrome: Chrome<'_>,
) -> Markup {
    let csrf = chrome.csrf;
    let lang = chrome.lang;
    let l = lang.code();
    let what = pictures::send_what(plan, true, lang);
    layout(
        &t!("schedule.confirm_title", locale = l, name = name),
        chrome,
        html! {
            h1 { (t!("schedule.confirm_heading", locale = l)) " " span.name { (name) } }
            p.lead #schedule-when { (t!("schedule.confirm_lead", locale = l)) " " strong { (crate::campaign::fmt_when(at_ms)) } " " (t!("schedule.confirm_oa_time", locale = l, until = crate::campaign::fmt_until(at_ms))) }
            @if let Some(later) = pictures::starts_later(plan, auto_resume, lang) { p.reason { (later) } }
            @if plan.messages_to_send == 0 {
                p.muted { (t!("charts.nothing_to_send", locale = l)) }
            } @else {
                form #schedule-confirm-form method="post" action={"/ui/campaigns/" (enc(name)) "/send"} {
                    input type="hidden" name="csrf" value=(csrf);
                    input type="hidden" name="messages" value=(plan.messages_to_send);
                    input type="hidden" name="start_at" value=(start_at);
                    label.confirm {
                        input #confirm-at type="checkbox" name="confirm" value="yes" required;
                        " " (t!("schedule.confirm_box", locale = l)) strong #confirm-at-what { (what) } "."
                    }
                    button.primary #schedule-confirm type="submit" { (what) }
                }
            }
            p { a.button #schedule-back href={"/campaigns/" (enc(name))} { (t!("common.back", locale = l)) } }
        },
    )
}

/// An RFC 3339 time the core wrote, as ms.
fn rfc3339_ms(s: &str) -> Option<i64> {
    time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339)
        .ok()
        .map(crate::model::clock::to_ms)
}

/// The sign-in form: a user's name and password, or (when serve has one)
/// the access token — one form, so either works with one button.
pub fn login(csrf: &str, lang: Lang, here: &str, error: Option<&str>, with_token: bool) -> Markup {
    let chrome = Chrome {
        csrf,
        sign_out: false,
        lang,
        here,
        who: None,
    };
    let l = lang.code();
    layout(
        &t!("login.title", locale = l),
        chrome,
        html! {
            h1 { (t!("login.title", locale = l)) }
            p.lead { (t!("login.lead_users", locale = l)) " (" code { "zns-batch users add" } ")"
                @if with_token { (t!("login.lead_token", locale = l)) " (" code { "ZNS_SERVE_TOKEN" } ")" } "." }
            @if let Some(e) = error { p.error role="alert" { (e) } }
            form method="post" action="/login" {
                input type="hidden" name="csrf" value=(csrf);
                label { (t!("login.name", locale = l)) input type="text" name="name" autocomplete="username"; }
                label { (t!("login.password", locale = l)) input type="password" name="password" autocomplete="current-password"; }
                @if with_token {
                    label { (t!("login.or_token", locale = l)) input type="password" name="token" autocomplete="off"; }
                }
                button.primary #sign-in type="submit" { (t!("login.submit", locale = l)) }
            }
        },
    )
}

/// A refused form, in words, with a way back.
pub fn problem(title: &str, message: &str, back: &str, chrome: Chrome<'_>) -> Markup {
    let l = chrome.lang.code();
    layout(
        title,
        chrome,
        html! {
            h1 { (title) }
            p.error role="alert" { (message) }
            a.button href=(back) { (t!("common.back", locale = l)) }
        },
    )
}

pub const CSS: &str = include_str!("assets/app.css");
pub const JS: &str = include_str!("assets/app.js");

#[cfg(test)]
mod tests {
    use super::*;

    fn chrome() -> Chrome<'static> {
        Chrome {
            csrf: "t",
            sign_out: false,
            who: None,
            lang: Lang::En,
            here: "/",
        }
    }
    use crate::campaign::config::ConfigFile;
    use crate::campaign::settings::ProviderOpts;
    use crate::campaign::{Hooks, Mode, Request, Workspace};
    use crate::model::row_state::RowState;

    /// The Check page reads the core's typed plan: its figures, the dashes
    /// for what the plan does not know, and the provider line.
    #[test]
    fn the_check_page_shows_the_typed_plan() {
        let dir = tempfile::tempdir().unwrap();
        let csv = dir.path().join("c.csv");
        std::fs::write(
            &csv,
            "phone,name\n0912345678,An\n0987654321,Binh\nabc,Chi\n",
        )
        .unwrap();
        let ws = Workspace::new(
            Some(dir.path().join("state.sqlite")),
            ConfigFile::default(),
            None,
        );
        let req = Request {
            campaign: "c".into(),
            csv: Some(csv),
            template_id: Some("246810".into()),
            provider: ProviderOpts {
                provider: Some(crate::provider::ProviderKind::Sandbox),
                embedded_sandbox: true,
                oa_id: Some("42".into()),
                ..Default::default()
            },
            ..Request::default()
        };
        let prepared = ws.prepare(&req, Mode::Run, Hooks::default()).unwrap();
        let plan = ws.plan(&prepared).unwrap();
        drop(prepared);
        let r = ws.reader().unwrap();
        let status = r.status_of("c").unwrap().unwrap();
        let rejects = r
            .rows_page("c", RowState::Rejected, 0, PAGE_ROWS)
            .unwrap()
            .unwrap();
        let preview = r.rows_page("c", RowState::Pending, 0, 3).unwrap().unwrap();
        let keys = r.template_keys("c").unwrap().unwrap();
        let page = |plan: Result<&Plan, &'static str>, rejects: &[RowView], preview: &[RowView]| {
            check(CheckPage {
                status: &status,
                plan,
                rejects,
                page: 1,
                preview,
                keys: &keys,
                auto_resume: true,
                chrome: chrome(),
            })
            .into_string()
        };
        let html = page(Ok(&plan), &rejects, &preview);
        assert!(html.contains(r#"<td id="plan-messages">2</td>"#), "{html}");
        assert!(html.contains("0 (no limit known)"), "{html}");
        // Send comes last: after the preview and the rejects.
        let send = html.find(r#"id="send""#).expect("a Send button");
        assert!(send > html.find(r#"id="rejects""#).unwrap(), "{html}");
        assert!(html.contains("Send 2 messages"), "{html}");
        assert!(
            html.contains(r#"name="confirm" value="yes" required"#),
            "{html}"
        );
        assert!(html.contains("<th>deadline</th><td>—</td>"), "{html}");
        assert!(html.contains("<th>send window</th><td>none</td>"), "{html}");
        assert!(html.contains("sandbox · 42 · 246810"), "{html}");
        assert!(html.contains("no prices configured"), "{html}");
        assert!(html.contains("<dt>name</dt><dd>An</dd>"), "{html}");
        assert!(html.contains(r#"<td class="line">4</td>"#), "{html}");

        let refused = page(Err("campaign `c` is running"), &[], &[]);
        assert!(refused.contains("campaign `c` is running"));
        assert!(!refused.contains("plan-messages"));
    }
}
