//! `GET /metrics`: Prometheus text (OpenMetrics) exposition.
//!
//! Webhook counters live in memory (they restart at zero with the process,
//! as Prometheus counters may); rows by state and today's quota use are
//! read from the state database at each scrape, so they are never stale.

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use super::ServeState;

type Labels = Vec<(String, String)>;

const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

pub struct Metrics {
    /// provider × result (matched, unmatched, repeat, ignored, applied, refused).
    webhook_events: Family<Labels, Counter>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Metrics {
        Metrics {
            webhook_events: Family::default(),
        }
    }

    pub fn webhook(&self, provider: &str, result: &str) {
        self.webhook_events
            .get_or_create(&vec![
                ("provider".to_string(), provider.to_string()),
                ("result".to_string(), result.to_string()),
            ])
            .inc();
    }
}

pub async fn handler(State(state): State<ServeState>) -> Response {
    // What the database says at scrape time.
    let snap = match state.with_reader(|r| r.metrics()).await {
        Ok(s) => s,
        Err(e) => {
            tracing::error!("metrics: {e:#}");
            return (
                StatusCode::SERVICE_UNAVAILABLE,
                "state database unavailable\n",
            )
                .into_response();
        }
    };
    let mut registry = Registry::default();
    registry.register(
        "zns_webhook_events",
        "Webhook callbacks received, by provider and result",
        state.metrics.webhook_events.clone(),
    );
    let rows = Family::<Labels, Gauge>::default();
    for (campaign, st, n) in snap.rows {
        rows.get_or_create(&vec![
            ("campaign".to_string(), campaign),
            ("state".to_string(), st),
        ])
        .set(n);
    }
    registry.register("zns_rows", "Rows per campaign and state", rows);
    let quota = Family::<Labels, Gauge>::default();
    for (oa, n) in snap.quota_used {
        quota.get_or_create(&vec![("oa_id".to_string(), oa)]).set(n);
    }
    registry.register(
        "zns_quota_used_today",
        "Messages counted against the OA's daily quota today (Asia/Ho_Chi_Minh)",
        quota,
    );
    gauge(
        &mut registry,
        "zns_delivery_events_unmatched",
        "Stored delivery events that match no row yet",
        snap.unmatched,
    );
    register_live(&mut registry, &state);
    let mut body = String::new();
    if let Err(e) = encode(&mut body, &registry) {
        tracing::error!("metrics encoding: {e}");
        return StatusCode::INTERNAL_SERVER_ERROR.into_response();
    }
    ([(header::CONTENT_TYPE, CONTENT_TYPE)], body).into_response()
}

/// Live-progress streams and the webhooks' group commits, from memory.
fn register_live(registry: &mut Registry, state: &ServeState) {
    gauge(
        registry,
        "zns_event_streams",
        "Live-progress (SSE) streams open now",
        state.live.open_streams() as i64,
    );
    gauge(
        registry,
        "zns_event_stream_pollers",
        "Live-progress pollers running now: one per campaign with open streams, whatever their number",
        state.live.pollers(),
    );
    counter(
        registry,
        "zns_event_stream_reads",
        "State database reads made by the live-progress pollers",
        state.live.reads(),
    );
    counter(
        registry,
        "zns_webhook_commits",
        "Transactions (each one fsync) that stored webhook callbacks; callbacks arriving together share one",
        state.ledger.commits(),
    );
}

/// A value as it is now.
fn gauge(registry: &mut Registry, name: &str, help: &str, value: i64) {
    let g = Gauge::<i64>::default();
    g.set(value);
    registry.register(name, help, g);
}

/// A count since the process started.
fn counter(registry: &mut Registry, name: &str, help: &str, value: u64) {
    let c = Counter::<u64>::default();
    c.inc_by(value);
    registry.register(name, help, c);
}
