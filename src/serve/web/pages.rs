//! The console's pages, as maud templates (checked at compile time; every
//! value is HTML-escaped, so a CSV cell `<script>` shows as text).

use maud::{html, Markup, DOCTYPE};
use serde_json::Value;

use crate::campaign::plan::Plan;
use crate::campaign::summary::{CampaignStatusLine, ErrorLine};
use crate::campaign::{AuditEntry, RowView};

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

/// What every page's frame needs: the forms' CSRF token, and whether to
/// offer "Sign out" (an access token is configured).
#[derive(Debug, Clone, Copy)]
pub struct Chrome<'a> {
    pub csrf: &'a str,
    pub sign_out: bool,
    /// Who is signed in, as the header says it (none on an open console).
    pub who: Option<&'a str>,
}

pub fn layout(title: &str, chrome: Chrome<'_>, body: Markup) -> Markup {
    let csrf = chrome.csrf;
    html! {
        (DOCTYPE)
        html lang="vi" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                meta name="csrf-token" content=(csrf);
                title { (title) " · zns-batch" }
                link rel="stylesheet" href="/assets/app.css";
                script src="/assets/app.js" defer {}
            }
            body {
                header.top {
                    a.brand href="/" { "zns-batch" }
                    nav {
                        a href="/" { "Campaigns" }
                        a href="/new" { "New campaign" }
                    }
                    @if let Some(who) = chrome.who {
                        span #signed-in-as.muted { "Signed in as " (who) }
                    }
                    @if chrome.sign_out {
                        form.signout method="post" action="/logout" {
                            input type="hidden" name="csrf" value=(csrf);
                            button #sign-out type="submit" { "Sign out" }
                        }
                    }
                }
                main { (body) }
            }
        }
    }
}

fn badge(status: &str) -> Markup {
    html! { span class={"badge badge-" (status)} { (status) } }
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
fn bar(done: u64, total: u64, id: Option<&str>) -> Markup {
    html! {
        progress.bar id=[id] value=(done) max=(total.max(1))
            title={(done) " of " (total) " accepted rows done"} {}
    }
}

pub fn campaigns(list: &[CampaignStatusLine], chrome: Chrome<'_>) -> Markup {
    let mut quota: Vec<(&str, &str, u64)> = Vec::new();
    for c in list {
        if !quota.iter().any(|(oa, _, _)| *oa == c.oa_id) {
            quota.push((&c.oa_id, &c.quota_day, c.quota_used_today));
        }
    }
    layout(
        "Campaigns",
        chrome,
        html! {
            // Refreshes itself: counts move while campaigns send.
            meta http-equiv="refresh" content="5";
            h1 { "Campaigns" }
            p.lead { "Every campaign in this state database. This page refreshes every 5 seconds." }
            @if list.is_empty() {
                p.empty { "No campaign yet. " a href="/new" { "Upload a CSV" } " to start one." }
            }
            div.cards {
                @for c in list {
                    @let (done, total) = progress(c);
                    a.card href={"/campaigns/" (enc(&c.campaign))} {
                        div.card-head { strong.name { (c.campaign) } (badge(&c.status)) }
                        (bar(done, total, None))
                        dl.counts {
                            div { dt { "sent" } dd { (c.counts.sent) } }
                            div { dt { "failed" } dd { (c.counts.failed) } }
                            div { dt { "rejected" } dd { (c.counts.rejected) } }
                            div { dt { "in doubt" } dd { (c.counts.in_doubt) } }
                            div { dt { "delivered" } dd { (c.delivery.received) } }
                            div { dt { "rows" } dd { (c.counts.total) } }
                        }
                        @if let Some(e) = &c.last_error { p.reason { (e) } }
                    }
                }
            }
            @if !quota.is_empty() {
                h2 { "Quota used today" }
                table.plain {
                    thead { tr { th { "OA" } th { "day (Asia/Ho_Chi_Minh)" } th { "messages" } } }
                    tbody {
                        @for (oa, day, used) in &quota {
                            tr { td { (oa) } td { (day) } td { (used) } }
                        }
                    }
                }
            }
        },
    )
}

/// The New campaign form; `error` is shown above it after a refused upload.
pub fn new_campaign(profiles: &[String], chrome: Chrome<'_>, error: Option<&str>) -> Markup {
    let csrf = chrome.csrf;
    layout(
        "New campaign",
        chrome,
        html! {
            h1 { "New campaign" }
            p.lead {
                "Upload the CSV of recipients (a " code { "phone" } " column and one column per template parameter). "
                "It is checked row by row on upload; nothing is sent until you press Send on the next page."
            }
            @if let Some(e) = error { p.error role="alert" id="upload-error" { (e) } }
            @else { p.error hidden role="alert" id="upload-error" {} }
            form #upload-form method="post" action="/ui/upload" enctype="multipart/form-data" {
                input type="hidden" name="csrf" value=(csrf);
                label.drop #drop {
                    span #drop-text { "Drop the CSV file here, or choose it" }
                    input #file type="file" name="file" accept=".csv,text/csv,.xlsx,.xlsm,.xls,.ods" required;
                }
                div.grid {
                    label { "Campaign name" input type="text" name="campaign" required maxlength="100" placeholder="bills-2026-11"; small { "Letters, digits, spaces, - and _. Names the campaign in reports." } }
                    label { "Template id" input type="text" name="template_id" inputmode="numeric" placeholder="246810"; small { "The ZNS template the rows fill in (or from the config)." } }
                    @if !profiles.is_empty() {
                        label { "Profile" select name="profile" { option value="" { "(serve's default)" } @for p in profiles { option value=(p) { (p) } } } small { "Provider account from the config file." } }
                    }
                    label { "Send window (optional)" input type="text" name="send_window" placeholder="07:00-22:00"; small { "Hours of the day (Asia/Ho_Chi_Minh) messages may go out." } }
                    label { "Deadline (optional)" input type="text" name="not_after" placeholder="2026-12-01T08:00"; small { "After it nothing more is sent (Asia/Ho_Chi_Minh time)." } }
                    label { "Sheet (optional)" input type="text" name="sheet" maxlength="100" placeholder="Sheet1"; small { "For an Excel or OpenDocument file: the sheet to read (default: the first)." } }
                    label { "Daily quota (optional)" input type="number" min="1" name="daily_quota" placeholder="5000"; small { "Messages per OA per day this campaign will not pass." } }
                }
                progress #upload-progress hidden max="100" value="0" {}
                p #upload-status.muted {}
                button.primary type="submit" { "Upload and check" }
            }
        },
    )
}

/// A figure of the plan the plan may not have.
fn or_dash(v: Option<impl std::fmt::Display>) -> String {
    v.map(|v| v.to_string()).unwrap_or_else(|| "—".into())
}

/// The Check page: rejects (paged), a preview of the data, the plan, Send.
pub fn check(
    status: &CampaignStatusLine,
    plan: Result<&Plan, &str>,
    rejects: &[RowView],
    page: u64,
    preview: &[RowView],
    keys: &[String],
    chrome: Chrome<'_>,
) -> Markup {
    let csrf = chrome.csrf;
    let name = &status.campaign;
    let pages = status.counts.rejected.div_ceil(PAGE_ROWS).max(1);
    layout(
        &format!("Check {name}"),
        chrome,
        html! {
            h1 { "Check " span.name { (name) } }
            p.lead #check-summary {
                strong #accepted { (status.counts.total - status.counts.rejected) } " rows accepted, "
                strong #rejected { (status.counts.rejected) } " rejected (of " (status.counts.total) "). "
                "Rejected rows are never sent; fix them in the file and upload it as a new campaign if they matter."
            }
            section {
                h2 { "The plan" }
                @match plan {
                    Ok(p) => {
                        table.plain #plan {
                            tr { th { "messages to send" } td #plan-messages { (p.messages_to_send) } }
                            tr { th { "already sent" } td { (p.already_sent) } }
                            @if p.uses_tokens {
                                tr { th { "journey tokens to buy" } td { (p.tokens_to_buy) } }
                                tr { th { "tokens to reuse" } td { (p.tokens_to_reuse) } }
                            }
                            tr { th { "fee estimate (VND)" } td { @if let Some(f) = &p.estimated_fees { "≈ " (f.total) } @else { "no prices configured (token_fee, message_fee)" } } }
                            tr { th { "quota used today" } td { (p.quota_used_today) } }
                            tr { th { "quota days needed" } td { (or_dash(p.quota_days_needed)) } }
                            tr { th { "send window" } td { (p.settings.send_window.as_deref().unwrap_or("none")) @if p.send_window_open_now == Some(false) { " (closed now; opens " (or_dash(p.send_window_opens_at.as_deref())) ")" } } }
                            tr { th { "deadline" } td { (or_dash(p.not_after.as_deref())) } }
                            tr { th { "would skip (frequency cap)" } td { (p.would_skip_min_interval) } }
                            tr { th { "provider · OA · template" } td { (p.settings.provider) " · " (p.settings.oa_id) " · " (p.settings.template_id) } }
                        }
                        form method="post" action={"/ui/campaigns/" (enc(name)) "/start"} {
                            input type="hidden" name="csrf" value=(csrf);
                            button.primary #send type="submit" { "Send" }
                        }
                    }
                    Err(why) => { p.error { (why) } a href={"/campaigns/" (enc(name))} { "Open the campaign" } }
                }
            }
            section {
                h2 { "Preview: the data of the first rows" }
                @if preview.is_empty() { p.muted { "No row waits to be sent." } }
                @for r in preview {
                    div.preview {
                        div.muted { "line " (r.line) " · " (r.phone) }
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
                h2 { "Rejected rows" }
                @if rejects.is_empty() { p.muted { "None: every row is valid." } }
                @else {
                    table.plain {
                        thead { tr { th { "line" } th { "phone" } th { "reason" } } }
                        tbody { @for r in rejects { tr.reject { td.line { (r.line) } td { (r.phone) } td { (r.text) } } } }
                    }
                    @if pages > 1 {
                        nav.pager {
                            @if page > 1 { a href={"?page=" (page - 1) "#rejects"} { "← previous" } }
                            span { "page " (page) " of " (pages) }
                            @if page < pages { a href={"?page=" (page + 1) "#rejects"} { "next →" } }
                        }
                    }
                }
            }
        },
    )
}

/// Stop reasons in words, for a paused campaign.
fn reason_words(c: &CampaignStatusLine) -> Option<String> {
    let e = c.last_error.clone()?;
    let hint = if e.contains("quota") {
        "Daily quota: sending resumes after midnight Asia/Ho_Chi_Minh (press Resume then)."
    } else if e.contains("window") {
        "Outside the send window: press Resume when it opens."
    } else if e.contains("deadline") || c.deadline_passed {
        "The deadline has passed: the remaining rows are expired."
    } else if e.contains("outage") || e.contains("no request has succeeded") {
        "The provider looked down: press Resume when it is back."
    } else if e.contains("paused from the web console") {
        "Paused by a person."
    } else {
        ""
    };
    Some(if hint.is_empty() {
        e
    } else {
        format!("{hint} ({e})")
    })
}

pub struct CampaignPage<'a> {
    pub status: &'a CampaignStatusLine,
    pub running_here: bool,
    pub top_errors: &'a [ErrorLine],
    pub in_doubt: &'a [RowView],
    /// The newest audit entries about this campaign.
    pub audit: &'a [AuditEntry],
    pub chrome: Chrome<'a>,
}

pub fn campaign(p: CampaignPage<'_>) -> Markup {
    let c = p.status;
    let name = &c.campaign;
    let (done, total) = progress(c);
    let action = |what: &str| format!("/ui/campaigns/{}/{what}", enc(name));
    let csrf = p.chrome.csrf;
    layout(
        name,
        p.chrome,
        html! {
            div #campaign data-events={"/api/v1/campaigns/" (enc(name)) "/events"} data-status=(c.status) data-running-here=(if p.running_here { "1" } else { "0" }) {
                h1 { span.name { (name) } " " span #status-badge { (badge(&c.status)) } }
                p.muted { (c.provider) " · OA " (c.oa_id) " · template " (c.template_id) }
                (bar(done, total, Some("progress-fill")))
                p #live.muted { (done) " of " (total) " accepted rows done" }
                dl.counts.big {
                    div { dt { "sent" } dd #count-sent { (c.counts.sent) } }
                    div { dt { "failed" } dd #count-failed { (c.counts.failed) } }
                    div { dt { "rejected" } dd #count-rejected { (c.counts.rejected) } }
                    div { dt { "in doubt" } dd #count-in_doubt { (c.counts.in_doubt) } }
                    div { dt { "waiting" } dd #count-open { (c.counts.pending + c.counts.token_ready + c.counts.in_flight) } }
                    div { dt { "expired" } dd #count-expired { (c.counts.expired) } }
                }
                @if let Some(words) = reason_words(c) { @if c.status != "finished" { p.reason #reason { (words) } } }
                div.actions {
                    @if p.running_here {
                        form method="post" action=(action("pause")) {
                            input type="hidden" name="csrf" value=(csrf);
                            button #pause type="submit" { "Pause" }
                        }
                    } @else if c.status != "finished" {
                        form method="post" action=(action("start")) {
                            input type="hidden" name="csrf" value=(csrf);
                            button.primary #resume type="submit" { @if c.status == "pending" { "Send" } @else { "Resume" } }
                        }
                    }
                    a.button #report-csv href={"/api/v1/campaigns/" (enc(name)) "/report.csv"} { "Report (CSV)" }
                    a.button href={"/api/v1/campaigns/" (enc(name)) "/report.csv?excel=1"} { "Report for Excel" }
                    a.button href={"/campaigns/" (enc(name)) "/check"} { "Check page" }
                }
                @if !p.in_doubt.is_empty() {
                    section {
                        h2 { "Rows in doubt" }
                        p { "The provider's reply to these rows was lost: they may or may not have been delivered. "
                            "Resend them under the same tracking id (the provider can de-duplicate), or hold them for a check." }
                        table.plain { tbody { @for r in p.in_doubt { tr { td { "line " (r.line) } td { (r.phone) } td { (r.text) } } } } }
                        div.actions {
                            form method="post" action={(action("start")) "?in_doubt=resend"} {
                                input type="hidden" name="csrf" value=(csrf);
                                button type="submit" { "Resume, resending them" }
                            }
                            form method="post" action={(action("start")) "?in_doubt=hold"} {
                                input type="hidden" name="csrf" value=(csrf);
                                button type="submit" { "Resume, holding them" }
                            }
                        }
                    }
                }
                @if !p.top_errors.is_empty() {
                    section {
                        h2 { "Top errors" }
                        table.plain {
                            thead { tr { th { "code" } th { "message" } th { "rows" } } }
                            tbody { @for e in p.top_errors { tr { td { (e.code) } td { (e.message) } td { (e.rows) } } } }
                        }
                    }
                }
                section {
                    h2 { "Delivery" }
                    dl.counts {
                        div { dt { "sent" } dd { (c.delivery.sent) } }
                        div { dt { "delivered" } dd { (c.delivery.received) } }
                        div { dt { "seen" } dd { (c.delivery.seen) } }
                        div { dt { "unknown" } dd { (c.delivery.unknown) } }
                    }
                    p.muted { "Delivery comes from the providers' callbacks to this server, or from " code { "zns-batch reconcile" } "." }
                }
                section #audit {
                    h2 { "Who did what" }
                    @if p.audit.is_empty() {
                        p.muted { "Nothing recorded yet." }
                    } @else {
                        table.plain {
                            thead { tr { th { "when (UTC)" } th { "who" } th { "action" } th { "detail" } th { "outcome" } } }
                            tbody { @for a in p.audit { tr { td { (a.at) } td { (a.actor) } td { (a.action) } td { (a.detail) } td { (a.outcome) } } } }
                        }
                        p.muted { "The whole log: " code { "zns-batch audit " (name) } " or " code { "GET /api/v1/audit?campaign=" (enc(name)) } "." }
                    }
                }
            }
        },
    )
}

/// The sign-in form: a user's name and password, or (when serve has one)
/// the access token — one form, so either works with one button.
pub fn login(csrf: &str, error: Option<&str>, with_token: bool) -> Markup {
    let chrome = Chrome {
        csrf,
        sign_out: false,
        who: None,
    };
    layout(
        "Sign in",
        chrome,
        html! {
            h1 { "Sign in" }
            p.lead { "Sign in with your name and password (" code { "zns-batch users add" } ")"
                @if with_token { ", or with the access token set in serve's environment (" code { "ZNS_SERVE_TOKEN" } " by default)" } "." }
            @if let Some(e) = error { p.error role="alert" { (e) } }
            form method="post" action="/login" {
                input type="hidden" name="csrf" value=(csrf);
                label { "Name" input type="text" name="name" autocomplete="username"; }
                label { "Password" input type="password" name="password" autocomplete="current-password"; }
                @if with_token {
                    label { "or the access token" input type="password" name="token" autocomplete="off"; }
                }
                button.primary #sign-in type="submit" { "Sign in" }
            }
        },
    )
}

/// A refused form, in words, with a way back.
pub fn problem(title: &str, message: &str, back: &str, chrome: Chrome<'_>) -> Markup {
    layout(
        title,
        chrome,
        html! {
            h1 { (title) }
            p.error role="alert" { (message) }
            a.button href=(back) { "Back" }
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
        let html = check(&status, Ok(&plan), &rejects, 1, &preview, &keys, chrome()).into_string();
        assert!(html.contains(r#"<td id="plan-messages">2</td>"#), "{html}");
        assert!(
            html.contains("<th>quota days needed</th><td>—</td>"),
            "{html}"
        );
        assert!(html.contains("<th>deadline</th><td>—</td>"), "{html}");
        assert!(html.contains("<th>send window</th><td>none</td>"), "{html}");
        assert!(html.contains("sandbox · 42 · 246810"), "{html}");
        assert!(html.contains("no prices configured"), "{html}");
        assert!(html.contains("<dt>name</dt><dd>An</dd>"), "{html}");
        assert!(html.contains(r#"<td class="line">4</td>"#), "{html}");

        let refused = check(
            &status,
            Err("campaign `c` is running"),
            &[],
            1,
            &[],
            &keys,
            chrome(),
        );
        let refused = refused.into_string();
        assert!(refused.contains("campaign `c` is running"));
        assert!(!refused.contains("plan-messages"));
    }
}
