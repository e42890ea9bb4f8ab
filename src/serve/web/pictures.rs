//! The page parts that show figures as pictures and keep numbers honest:
//! a campaign's chart and cost, a card's progress picture, the OAs' month,
//! the Check page's quota line and its Send step. Built from the core's
//! typed reads with [`super::charts`]; the pages place them.

use maud::{html, Markup};
use rust_i18n::t;

use super::charts::{self, Line, LineChart, Part};
use super::format;
use super::lang::Lang;
use crate::campaign::plan::Plan;
use crate::campaign::summary::CampaignStatusLine;
use crate::campaign::{DeliveryChart, OaMonth};

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
pub fn campaign_chart(c: &CampaignStatusLine, chart: &DeliveryChart, lang: Lang) -> Markup {
    let l = lang.code();
    let (sent, delivered, seen) = (
        t!("counts.sent", locale = l),
        t!("counts.delivered", locale = l),
        t!("counts.seen", locale = l),
    );
    let (title, alt) = (
        t!("charts.chart_title", locale = l),
        t!("charts.chart_alt", locale = l),
    );
    let delivery = has_delivery_data(c);
    let mut lines = vec![Line {
        key: "sent",
        label: &sent,
        values: chart.sent.clone(),
    }];
    if delivery {
        lines.push(Line {
            key: "delivered",
            label: &delivered,
            values: chart.delivered.clone(),
        });
        if reports_seen(&c.provider) {
            lines.push(Line {
                key: "seen",
                label: &seen,
                values: chart.seen.clone(),
            });
        }
    }
    let n = chart.sent.len().max(1) as i64;
    let to = chart.start_ms + chart.bucket_ms * n;
    html! {
        section #pictures {
            h2 { (title) }
            @if chart.sent.is_empty() {
                p.muted #chart-empty { (t!("charts.chart_empty", locale = l)) }
            } @else {
                (charts::line_chart(&LineChart {
                    id: "delivery-chart",
                    title: &alt,
                    lines,
                    from: axis_time(chart.start_ms),
                    to: axis_time(to),
                }))
            }
            @if !delivery {
                p.muted #no-delivery { (t!("charts.no_delivery", locale = l)) }
            } @else if !reports_seen(&c.provider) {
                p.muted #no-seen { (t!("charts.no_seen", locale = l)) }
            }
            h3 { (t!("charts.cost", locale = l)) }
            @match (chart.cost_so_far(), chart.planned_fee) {
                (Some(spent), plan) => {
                    (charts::cost_bars(&t!("charts.cost_alt", locale = l), spent, plan, &t!("charts.spent_label", locale = l), &t!("charts.plan_label", locale = l)))
                    p #cost-text {
                        @if chart.fees_reported.is_some() { (t!("charts.spent_reported", locale = l)) } @else { (t!("charts.spent_estimate", locale = l)) }
                        strong.money { (format::money(lang, spent)) }
                        @if let Some(p) = plan { (t!("charts.of_plan", locale = l)) strong.money { (format::money(lang, p)) } }
                    }
                }
                (None, _) => { p.muted #cost-text { (t!("charts.no_prices", locale = l)) } }
            }
        }
    }
}

/// A card's small progress picture: every row of the file in one bar —
/// sent, failed, in doubt, expired or skipped, rejected, still waiting.
pub fn card_progress(c: &CampaignStatusLine, lang: Lang) -> Markup {
    let l = lang.code();
    let k = &c.counts;
    let counted = [
        ("sent", t!("counts.sent", locale = l), k.sent),
        ("failed", t!("counts.failed", locale = l), k.failed),
        ("in_doubt", t!("counts.in_doubt", locale = l), k.in_doubt),
        (
            "expired",
            t!("charts.expired_skipped", locale = l),
            k.expired + k.skipped,
        ),
        ("rejected", t!("counts.rejected", locale = l), k.rejected),
    ];
    let parts: Vec<Part<'_>> = counted
        .iter()
        .map(|(key, label, value)| Part {
            key,
            label,
            value: *value,
        })
        .collect();
    let num = |n: u64| format::num(lang, n);
    let title = t!(
        "charts.progress_alt",
        locale = l,
        sent = num(k.sent),
        failed = num(k.failed),
        rejected = num(k.rejected),
        waiting = num(k.open()),
        total = num(k.total)
    );
    charts::stacked_bar(None, &title, &parts, k.total)
}

/// A finished campaign with rejected rows is not simply "finished".
pub fn finished_with_rejects(c: &CampaignStatusLine) -> bool {
    c.status == "finished" && c.counts.rejected > 0
}

/// The OAs' month: messages and ≈ cost, today's quota as used/limit.
pub fn oa_month(months: &[OaMonth], lang: Lang) -> Markup {
    let l = lang.code();
    let num = |n: u64| format::num(lang, n);
    let messages = t!("charts.month_messages", locale = l);
    let top = months.iter().map(|m| m.messages).max().unwrap_or(0);
    html! {
        @if !months.is_empty() {
            section #oa-month {
                h2 { (t!("charts.month_title", locale = l)) }
                div.scroll { table.plain.figures {
                    // The quota day is the OA's (Asia/Ho_Chi_Minh): named, since a
                    // reader elsewhere may already be on another date.
                    thead { tr { th { "OA" } th { (messages) } th { (t!("charts.month_cost", locale = l)) } th { (t!("charts.month_quota", locale = l)) " " span.muted #quota-day { (format::date(crate::model::clock::oa_day(crate::model::clock::now()))) } } } }
                    tbody {
                        @for m in months {
                            tr.oa data-oa=(m.oa_id) {
                                td.oa-id { (m.oa_id) }
                                td {
                                    (num(m.messages))
                                    (charts::stacked_bar(None, &t!("charts.month_alt", locale = l, n = num(m.messages)),
                                        &[Part { key: "sent", label: &messages, value: m.messages }], top))
                                }
                                td.money { @if let Some(c) = m.cost { "≈ " (format::money(lang, c)) } @else { span.muted { (t!("charts.no_prices_short", locale = l)) } } }
                                td.quota { (quota_text(m.used_today, m.limit, lang)) }
                            }
                        }
                    }
                } }
            }
        }
    }
}

/// `308 / 1.000` or `308 (no limit known)`.
pub fn quota_text(used: u64, limit: Option<u64>, lang: Lang) -> String {
    match limit {
        Some(n) => format!("{} / {}", format::num(lang, used), format::num(lang, n)),
        None => t!(
            "charts.quota_no_limit",
            locale = lang.code(),
            used = format::num(lang, used)
        )
        .into_owned(),
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
pub fn starts_later(p: &Plan, auto_resume: bool, lang: Lang) -> Option<String> {
    let l = lang.code();
    let then = if auto_resume {
        t!("charts.then_auto", locale = l)
    } else {
        t!("charts.then_manual", locale = l)
    };
    if let Some(limit) = plan_limit(p) {
        let remaining = p.provider_quota.as_ref().map(|q| q.remaining);
        if p.quota_used_today >= limit || remaining == Some(0) {
            let next = crate::model::clock::next_day_start(crate::model::clock::now());
            return Some(
                t!(
                    "charts.quota_up",
                    locale = l,
                    quota = quota_text(p.quota_used_today, Some(limit), lang),
                    at = format::instant(next),
                    then = then
                )
                .into_owned(),
            );
        }
    }
    if p.send_window_open_now == Some(false) {
        let later = t!("charts.later", locale = l);
        return Some(
            t!(
                "charts.window_closed",
                locale = l,
                at = p
                    .send_window_opens_at
                    .as_deref()
                    .map(format::instant_text)
                    .unwrap_or_else(|| later.into_owned()),
                then = then
            )
            .into_owned(),
        );
    }
    None
}

/// "Send N messages, ≈ X" (or "Schedule N messages, ≈ X" when `later`):
/// the words a person confirms, the count and the cost of the plan.
pub fn send_what(p: &Plan, later: bool, lang: Lang) -> String {
    let l = lang.code();
    let n = format::num(lang, p.messages_to_send);
    let cost = p
        .estimated_fees
        .as_ref()
        .map(|f| format::money(lang, f.total));
    match (later, cost) {
        (false, Some(cost)) => t!("charts.send_what_cost", locale = l, n = n, cost = cost),
        (false, None) => t!("charts.send_what", locale = l, n = n),
        (true, Some(cost)) => t!("schedule.confirm_what_cost", locale = l, n = n, cost = cost),
        (true, None) => t!("schedule.confirm_what", locale = l, n = n),
    }
    .into_owned()
}

/// The Check page's last step: what pressing Send will do, a box to tick
/// (the browser will not submit without it; the server checks it too),
/// and the button naming the count and the cost.
pub fn send_step(action: &str, csrf: &str, p: &Plan, auto_resume: bool, lang: Lang) -> Markup {
    let l = lang.code();
    let n = p.messages_to_send;
    let what = send_what(p, false, lang);
    html! {
        section #send-step {
            h2 { (t!("charts.send_title", locale = l)) }
            @if let Some(later) = starts_later(p, auto_resume, lang) { p.reason #starts-later { (later) } }
            @if n == 0 {
                p.muted { (t!("charts.nothing_to_send", locale = l)) }
            } @else {
                form method="post" action=(action) {
                    input type="hidden" name="csrf" value=(csrf);
                    input type="hidden" name="messages" value=(n);
                    label.confirm {
                        input #confirm type="checkbox" name="confirm" value="yes" required;
                        " " (t!("charts.confirm", locale = l)) strong #confirm-what { (what) } "."
                    }
                    button.primary #send type="submit" { (what) }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quota_in_each_language() {
        assert_eq!(quota_text(308, Some(1000), Lang::Vi), "308 / 1.000");
        assert_eq!(quota_text(308, Some(1000), Lang::En), "308 / 1,000");
        assert!(quota_text(3, None, Lang::En).contains("no limit"));
    }
}
