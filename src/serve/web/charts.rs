//! Pictures for the console, drawn on the server as SVG: no script, no
//! font or library from the internet, nothing inline the CSP forbids
//! (colours come from classes in app.css; SVG geometry attributes are not
//! styles). Each function is pure: figures in, markup out.
//!
//! Every picture carries its figures as text too (`<title>`, a legend with
//! numbers), so it reads without colour and in a screen reader.

use maud::{html, Markup};

/// Width and height of a line chart's drawing area, in SVG units; the
/// picture scales to its box (`width: 100%` in app.css), so a phone shows
/// the whole of it.
const W: f64 = 320.0;
const H: f64 = 120.0;
/// Room for the y-axis figure on the left and the time labels below.
const PAD_L: f64 = 34.0;
const PAD_B: f64 = 16.0;
const PAD_T: f64 = 6.0;

/// One line of a chart: a cumulative figure at each bucket.
#[derive(Debug, Clone)]
pub struct Line<'a> {
    /// The series' key: its CSS class (`s-KEY`) and `data-series`.
    pub key: &'a str,
    /// The legend's words.
    pub label: &'a str,
    /// One value per bucket, in time order (all lines the same length).
    pub values: Vec<u64>,
}

/// A line chart of cumulative counts over time buckets.
#[derive(Debug, Clone)]
pub struct LineChart<'a> {
    pub id: &'a str,
    /// What the picture shows, in words (its `<title>`).
    pub title: &'a str,
    pub lines: Vec<Line<'a>>,
    /// Labels of the first and the last bucket (times).
    pub from: String,
    pub to: String,
}

/// The largest value on any line, at least 1 (an empty chart still has a scale).
fn top(lines: &[Line<'_>]) -> u64 {
    lines
        .iter()
        .flat_map(|l| l.values.iter().copied())
        .max()
        .unwrap_or(0)
        .max(1)
}

/// SVG `points` for values scaled into the drawing area: x spread evenly
/// over the buckets (one bucket: a flat line across), y from the bottom.
fn points(values: &[u64], top: u64) -> String {
    let n = values.len();
    let span = W - PAD_L;
    let mut out = String::new();
    let mut put = |x: f64, v: u64| {
        let y = PAD_T + (H - PAD_T - PAD_B) * (1.0 - v as f64 / top as f64);
        if !out.is_empty() {
            out.push(' ');
        }
        out.push_str(&format!("{x:.1},{y:.1}"));
    };
    match n {
        0 => {}
        1 => {
            put(PAD_L, values[0]);
            put(W, values[0]);
        }
        _ => {
            for (i, v) in values.iter().enumerate() {
                put(PAD_L + span * i as f64 / (n - 1) as f64, *v);
            }
        }
    }
    out
}

pub fn line_chart(c: &LineChart<'_>) -> Markup {
    let top = top(&c.lines);
    let base = H - PAD_B;
    html! {
        figure.chart #(c.id) {
            svg viewBox={"0 0 " (W) " " (H)} role="img" aria-label=(c.title)
                preserveAspectRatio="xMidYMid meet" {
                title { (c.title) }
                line.axis x1=(PAD_L) y1=(base) x2=(W) y2=(base) {}
                line.axis x1=(PAD_L) y1=(PAD_T) x2=(PAD_L) y2=(base) {}
                text.tick x=(PAD_L - 3.0) y=(PAD_T + 8.0) text-anchor="end" { (top) }
                text.tick x=(PAD_L - 3.0) y=(base) text-anchor="end" { "0" }
                text.tick x=(PAD_L) y=(H - 3.0) { (c.from) }
                text.tick x=(W) y=(H - 3.0) text-anchor="end" { (c.to) }
                @for l in &c.lines {
                    polyline class={"series s-" (l.key)} data-series=(l.key)
                        data-last=(l.values.last().copied().unwrap_or(0))
                        points=(points(&l.values, top)) {
                        title { (l.label) ": " (l.values.last().copied().unwrap_or(0)) }
                    }
                }
            }
            figcaption.legend {
                @for l in &c.lines {
                    span class={"key s-" (l.key)} { (l.label) " " strong { (l.values.last().copied().unwrap_or(0)) } }
                }
            }
        }
    }
}

/// One part of a stacked bar.
#[derive(Debug, Clone)]
pub struct Part<'a> {
    pub key: &'a str,
    pub label: &'a str,
    pub value: u64,
}

/// A stacked horizontal bar: the parts side by side in proportion to the
/// whole (`total`, at least their sum). A small picture for a card.
pub fn stacked_bar(id: Option<&str>, title: &str, parts: &[Part<'_>], total: u64) -> Markup {
    let sum: u64 = parts.iter().map(|p| p.value).sum();
    let whole = total.max(sum).max(1) as f64;
    // Each drawn part with where it starts and how wide it is.
    let mut x = 0.0;
    let drawn: Vec<(&Part<'_>, f64, f64)> = parts
        .iter()
        .filter(|p| p.value > 0)
        .map(|p| {
            let w = 100.0 * p.value as f64 / whole;
            let at = x;
            x += w;
            (p, at, w)
        })
        .collect();
    html! {
        svg.stack id=[id] viewBox="0 0 100 8" preserveAspectRatio="none" role="img" aria-label=(title) {
            title { (title) }
            rect.track x="0" y="0" width="100" height="8" {}
            @for (p, x, w) in &drawn {
                rect class={"part s-" (p.key)} data-series=(p.key) data-value=(p.value)
                    x=(format!("{x:.2}")) y="0" width=(format!("{w:.2}")) height="8" {
                    title { (p.label) ": " (p.value) }
                }
            }
        }
    }
}

/// Money spent so far against the plan, as two bars on one scale; `plan`
/// None: no estimate (no prices configured), only what was spent.
pub fn cost_bars(
    title: &str,
    spent: u64,
    plan: Option<u64>,
    spent_label: &str,
    plan_label: &str,
) -> Markup {
    let whole = plan.unwrap_or(0).max(spent).max(1) as f64;
    let sw = 100.0 * spent as f64 / whole;
    html! {
        svg.cost #cost-chart viewBox="0 0 100 14" preserveAspectRatio="none" role="img" aria-label=(title) {
            title { (title) }
            @if let Some(p) = plan {
                rect.plan data-series="plan" data-value=(p) x="0" y="0"
                    width=(format!("{:.2}", 100.0 * p as f64 / whole)) height="6" {
                    title { (plan_label) ": " (p) }
                }
            }
            rect.spent data-series="spent" data-value=(spent) x="0" y="8"
                width=(format!("{sw:.2}")) height="6" {
                title { (spent_label) ": " (spent) }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A bar with these attributes is drawn.
    #[track_caller]
    fn assert_bar(svg: &str, series: &str, value: u64, x: &str, y: &str, width: &str) {
        let bar = format!(
            r#"data-series="{series}" data-value="{value}" x="{x}" y="{y}" width="{width}""#
        );
        assert!(svg.contains(&bar), "no {bar} in {svg}");
    }

    /// Parts labelled by their key.
    fn parts(list: &[(&'static str, u64)]) -> Vec<Part<'static>> {
        list.iter()
            .map(|&(key, value)| Part {
                key,
                label: key,
                value,
            })
            .collect()
    }

    fn chart(values: Vec<Vec<u64>>) -> String {
        let keys = ["sent", "delivered", "seen"];
        line_chart(&LineChart {
            id: "c",
            title: "Sent, delivered and seen",
            lines: values
                .into_iter()
                .zip(keys)
                .map(|(values, key)| Line {
                    key,
                    label: key,
                    values,
                })
                .collect(),
            from: "08:00".into(),
            to: "09:00".into(),
        })
        .into_string()
    }

    fn points_of(svg: &str, key: &str) -> Vec<(f64, f64)> {
        let at = svg
            .find(&format!(r#"data-series="{key}""#))
            .expect("series drawn");
        let rest = &svg[at..];
        let p = rest.find("points=\"").expect("points") + 8;
        let end = rest[p..].find('"').unwrap();
        rest[p..p + end]
            .split(' ')
            .map(|xy| {
                let (x, y) = xy.split_once(',').unwrap();
                (x.parse().unwrap(), y.parse().unwrap())
            })
            .collect()
    }

    #[test]
    fn a_line_per_series_scaled_to_the_largest_value() {
        let svg = chart(vec![vec![0, 5, 10], vec![0, 2, 8], vec![0, 0, 4]]);
        let sent = points_of(&svg, "sent");
        let seen = points_of(&svg, "seen");
        assert_eq!(sent.len(), 3);
        // The top of the scale is the largest value; 0 sits on the axis.
        assert_eq!(sent[2].1, PAD_T);
        assert_eq!(sent[0].1, H - PAD_B);
        // Seen (4 of 10) is lower on the picture (greater y) than sent.
        assert!(seen[2].1 > sent[2].1);
        assert!((seen[2].1 - (PAD_T + (H - PAD_T - PAD_B) * 0.6)).abs() < 0.11);
        // First bucket at the axis, last at the right edge.
        assert_eq!((sent[0].0, sent[2].0), (PAD_L, W));
        assert!(svg.contains(r#"data-last="10""#), "{svg}");
        assert!(svg.contains("<text class=\"tick\""), "{svg}");
        assert!(
            svg.contains(">10</text>"),
            "the scale's top is labelled: {svg}"
        );
        assert!(svg.contains("08:00") && svg.contains("09:00"));
        assert!(svg.contains("<title>Sent, delivered and seen</title>"));
        assert!(!svg.contains("style="), "no inline style (CSP)");
    }

    #[test]
    fn one_bucket_and_no_data_still_draw_a_picture() {
        let one = chart(vec![vec![3]]);
        let p = points_of(&one, "sent");
        assert_eq!(p.len(), 2, "a flat line across: {one}");
        assert_eq!(p[0].1, p[1].1);
        let empty = chart(vec![vec![], vec![]]);
        assert!(empty.contains("<svg"), "{empty}");
        assert!(
            empty.contains(">1</text>"),
            "a scale of 1 for nothing: {empty}"
        );
    }

    #[test]
    fn a_stacked_bar_keeps_the_proportions_and_skips_empty_parts() {
        let svg = stacked_bar(
            Some("p"),
            "progress",
            &parts(&[("sent", 30), ("failed", 10), ("rejected", 0)]),
            80,
        )
        .into_string();
        assert_bar(&svg, "sent", 30, "0.00", "0", "37.50");
        assert_bar(&svg, "failed", 10, "37.50", "0", "12.50");
        assert!(!svg.contains(r#"data-series="rejected""#), "{svg}");
        // More done than the total (a stale total) never draws past the end.
        let over = stacked_bar(None, "t", &parts(&[("sent", 5)]), 2).into_string();
        assert!(over.contains(r#"width="100.00""#), "{over}");
    }

    #[test]
    fn cost_so_far_is_drawn_against_the_plan() {
        let svg = cost_bars("cost", 4_000, Some(16_000), "spent", "plan").into_string();
        assert_bar(&svg, "plan", 16000, "0", "0", "100.00");
        assert_bar(&svg, "spent", 4000, "0", "8", "25.00");
        let no_plan = cost_bars("cost", 500, None, "spent", "plan").into_string();
        assert!(!no_plan.contains("data-series=\"plan\""), "{no_plan}");
        assert!(no_plan.contains(r#"width="100.00""#), "{no_plan}");
    }
}
