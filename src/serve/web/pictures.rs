//! The page parts that show figures as pictures and keep numbers honest:
//! a campaign's chart and cost, a card's progress picture, the OAs' month,
//! the Check page's quota line and its Send step. Built from the core's
//! typed reads with [`super::charts`]; the pages place them.

use maud::{html, Markup};

use super::charts::{self, Line, LineChart, Part};
use crate::campaign::plan::Plan;
use crate::campaign::summary::CampaignStatusLine;
use crate::campaign::{DeliveryChart, OaMonth};

/// `14000` → `14.000` (Vietnamese thousands).
pub fn num(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push('.');
        }
        out.push(c);
    }
    out
}

/// Whole đồng: `14.000 ₫`.
pub fn money(vnd: u64) -> String {
    format!("{} ₫", num(vnd))
}

/// A bucket start as the axis shows it (the OA's zone): `dd/mm HH:MM`.
fn axis_time(ms: i64) -> String {
    let t = crate::model::clock::from_ms(ms).to_offset(crate::model::clock::OA_OFFSET);
    format!(
        "{:02}/{:02} {:02}:{:02}",
        t.day(),
        u8::from(t.month()),
        t.hour(),
        t.minute()
    )
}

/// Whether the provider's callbacks or lookups say anything about
/// delivery for this campaign yet; without, "delivered 0" would be a lie.
pub fn has_delivery_data(c: &CampaignStatusLine) -> bool {
    let l = &c.ledger;
    l.received + l.seen + l.failed_delivery > 0 || c.delivery.checked > 0
}

/// eSMS reports received or failed, never seen.
pub fn reports_seen(provider: &str) -> bool {
    !provider.eq_ignore_ascii_case("esms")
}

/// The campaign page's pictures: sent, delivered and seen over time, and
/// the cost so far against the plan.
pub fn campaign_chart(c: &CampaignStatusLine, chart: &DeliveryChart) -> Markup {
    let delivery = has_delivery_data(c);
    let mut lines = vec![Line {
        key: "sent",
        label: "sent",
        values: chart.sent.clone(),
    }];
    if delivery {
        lines.push(Line {
            key: "delivered",
            label: "delivered",
            values: chart.delivered.clone(),
        });
        if reports_seen(&c.provider) {
            lines.push(Line {
                key: "seen",
                label: "seen",
                values: chart.seen.clone(),
            });
        }
    }
    let n = chart.sent.len().max(1) as i64;
    let to = chart.start_ms + chart.bucket_ms * n;
    html! {
        section #pictures {
            h2 { "Messages over time" }
            @if chart.sent.is_empty() {
                p.muted #chart-empty { "Nothing sent yet: the chart starts with the first message." }
            } @else {
                (charts::line_chart(&LineChart {
                    id: "delivery-chart",
                    title: "Messages sent, delivered and seen over time",
                    lines,
                    from: axis_time(chart.start_ms),
                    to: axis_time(to),
                }))
            }
            @if !delivery {
                p.muted #no-delivery { "No delivery data from this provider yet: delivered and seen are not known (they come from its callbacks to this server, or from " code { "zns-batch reconcile" } ")." }
            } @else if !reports_seen(&c.provider) {
                p.muted #no-seen { "This provider does not report when a message is seen." }
            }
            h3 { "Cost" }
            @match (chart.cost_so_far(), chart.planned_fee) {
                (Some(spent), plan) => {
                    (charts::cost_bars("Cost so far against the plan", spent, plan, "spent so far", "the plan"))
                    p #cost-text {
                        @if chart.fees_reported.is_some() { "Spent so far (reported by the provider): " } @else { "Spent so far ≈ " }
                        strong { (money(spent)) }
                        @if let Some(p) = plan { " of the plan's ≈ " strong { (money(p)) } }
                    }
                }
                (None, _) => { p.muted #cost-text { "No prices configured (token_fee, message_fee): the cost is not known." } }
            }
        }
    }
}

/// A card's small progress picture: every row of the file in one bar —
/// sent, failed, in doubt, expired or skipped, rejected, still waiting.
pub fn card_progress(c: &CampaignStatusLine) -> Markup {
    let k = &c.counts;
    let parts = [
        Part {
            key: "sent",
            label: "sent",
            value: k.sent,
        },
        Part {
            key: "failed",
            label: "failed",
            value: k.failed,
        },
        Part {
            key: "in_doubt",
            label: "in doubt",
            value: k.in_doubt,
        },
        Part {
            key: "expired",
            label: "expired or skipped",
            value: k.expired + k.skipped,
        },
        Part {
            key: "rejected",
            label: "rejected",
            value: k.rejected,
        },
    ];
    let title = format!(
        "{} sent, {} failed, {} rejected, {} waiting of {} rows",
        num(k.sent),
        num(k.failed),
        num(k.rejected),
        num(k.open()),
        num(k.total)
    );
    charts::stacked_bar(None, &title, &parts, k.total)
}

/// A finished campaign with rejected rows is not simply "finished".
pub fn finished_with_rejects(c: &CampaignStatusLine) -> bool {
    c.status == "finished" && c.counts.rejected > 0
}

/// The OAs' month: messages and ≈ cost, today's quota as used/limit.
pub fn oa_month(months: &[OaMonth]) -> Markup {
    let top = months.iter().map(|m| m.messages).max().unwrap_or(0);
    html! {
        @if !months.is_empty() {
            section #oa-month {
                h2 { "This month per OA" }
                table.plain.figures {
                    thead { tr { th { "OA" } th { "messages" } th { "cost" } th { "quota today" } } }
                    tbody {
                        @for m in months {
                            tr.oa data-oa=(m.oa_id) {
                                td.oa-id { (m.oa_id) }
                                td {
                                    (num(m.messages))
                                    (charts::stacked_bar(None, &format!("{} messages this month", num(m.messages)),
                                        &[Part { key: "sent", label: "messages", value: m.messages }], top))
                                }
                                td { @if let Some(c) = m.cost { "≈ " (money(c)) } @else { span.muted { "no prices" } } }
                                td.quota { (quota_text(m.used_today, m.limit)) }
                            }
                        }
                    }
                }
            }
        }
    }
}

/// `308 / 1.000` or `308 (no limit known)`.
pub fn quota_text(used: u64, limit: Option<u64>) -> String {
    match limit {
        Some(l) => format!("{} / {}", num(used), num(l)),
        None => format!("{} (no limit known)", num(used)),
    }
}

/// The day's limit the plan counts on: the smaller of `--daily-quota` and
/// what the provider reported.
pub fn plan_limit(p: &Plan) -> Option<u64> {
    let ours = p.settings.daily_quota.filter(|l| *l > 0);
    let theirs = p.provider_quota.as_ref().map(|q| q.daily);
    match (ours, theirs) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

/// When nothing can go today (quota used up, or the window closed), the
/// words saying when sending will start; None when it can start now.
pub fn starts_later(p: &Plan, auto_resume: bool) -> Option<String> {
    let then = if auto_resume {
        "; it resumes by itself then while this server runs"
    } else {
        "; press Resume then"
    };
    if let Some(limit) = plan_limit(p) {
        let remaining = p.provider_quota.as_ref().map(|q| q.remaining);
        if p.quota_used_today >= limit || remaining == Some(0) {
            let next = crate::model::clock::next_day_start(crate::model::clock::now());
            return Some(format!(
                "Nothing can go today: the daily quota is used up ({}). Sending starts at {} (the next quota day, Asia/Ho_Chi_Minh){then}.",
                quota_text(p.quota_used_today, Some(limit)),
                local_day_time(next),
            ));
        }
    }
    if p.send_window_open_now == Some(false) {
        return Some(format!(
            "The send window is closed now: sending starts when it opens ({}){then}.",
            p.send_window_opens_at.as_deref().unwrap_or("later")
        ));
    }
    None
}

/// `dd/mm/yyyy HH:MM` in the OA's zone.
fn local_day_time(t: time::OffsetDateTime) -> String {
    let l = t.to_offset(crate::model::clock::OA_OFFSET);
    format!(
        "{:02}/{:02}/{} {:02}:{:02}",
        l.day(),
        u8::from(l.month()),
        l.year(),
        l.hour(),
        l.minute()
    )
}

/// The Check page's last step: what pressing Send will do, a box to tick
/// (the browser will not submit without it; the server checks it too),
/// and the button naming the count and the cost.
pub fn send_step(action: &str, csrf: &str, p: &Plan, auto_resume: bool) -> Markup {
    let n = p.messages_to_send;
    let cost = p.estimated_fees.as_ref().map(|f| f.total);
    let what = match cost {
        Some(c) => format!("Send {} messages, ≈ {}", num(n), money(c)),
        None => format!("Send {} messages", num(n)),
    };
    html! {
        section #send-step {
            h2 { "Send" }
            @if let Some(later) = starts_later(p, auto_resume) { p.reason #starts-later { (later) } }
            @if n == 0 {
                p.muted { "No message to send." }
            } @else {
                form method="post" action=(action) {
                    input type="hidden" name="csrf" value=(csrf);
                    input type="hidden" name="messages" value=(n);
                    label.confirm {
                        input #confirm type="checkbox" name="confirm" value="yes" required;
                        " I checked the preview and the rejected rows: " strong #confirm-what { (what) } "."
                    }
                    button.primary #send type="submit" { (what) }
                }
            }
        }
    }
}

/// A reject reason as the core words it names command-line flags; on the
/// console's form the fix is said the form's way.
pub fn form_words(reason: &str) -> String {
    let mut r = reason.to_string();
    for (from, to) in [
        (
            " (use --allow-duplicate-phones to send to both)",
            " (one message per phone: the later line is left out)",
        ),
        (
            " (fill it in or list the column in --optional-columns)",
            " (fill it in the file and upload it again)",
        ),
        (
            " (fill them in or list the columns in --optional-columns)",
            " (fill them in the file and upload it again)",
        ),
        (
            "use --phone-column to name the column holding the phone numbers",
            "name the column holding the phone numbers `phone`",
        ),
        ("set the delimiter to", "choose on the form the delimiter"),
    ] {
        r = r.replace(from, to);
    }
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_and_money_as_vietnamese_readers_write_them() {
        assert_eq!(num(0), "0");
        assert_eq!(num(999), "999");
        assert_eq!(num(14_000), "14.000");
        assert_eq!(num(1_234_567), "1.234.567");
        assert_eq!(money(14_000), "14.000 ₫");
        assert_eq!(quota_text(308, Some(1000)), "308 / 1.000");
        assert!(quota_text(3, None).contains("no limit"));
    }

    #[test]
    fn reasons_name_the_form_not_flags() {
        let r = form_words(
            "duplicate phone: already at line 2 (use --allow-duplicate-phones to send to both)",
        );
        assert!(!r.contains("--"), "{r}");
        let r = form_words("empty value in required column `name` (fill it in or list the column in --optional-columns)");
        assert!(!r.contains("--") && r.contains("upload it again"), "{r}");
        let r = form_words("no `phone` column in the header (found: `phone;name`); use --phone-column to name the column holding the phone numbers; the file seems to be separated by `;`, not `,`: set the delimiter to `;`");
        assert!(!r.contains("--") && r.contains("on the form"), "{r}");
    }
}
