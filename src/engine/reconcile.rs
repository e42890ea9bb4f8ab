//! Delivery reconcile: ask the provider about each sent message (eTelecom
//! GetMessage by `msg_id`; eSMS GetZaloMessageStatus for rows whose
//! callback never came) and store its delivery status, delivery time and
//! fees.
//!
//! Bounded (`max_lookups` per run), rate-limited, and resumable: results
//! are committed a page at a time, and a row is picked again only if it was
//! never answered or its answer was not final (`seen` is) and is older than
//! `recheck_after` — so a stopped run carries on instead of starting over.

use std::num::NonZeroU32;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use serde::Serialize;

use crate::engine::policy::{self, Caller, Retries};
use crate::engine::retry::{self, Backoff, Limiter};
use crate::engine::stop::{Stop, StopReason};
use crate::model::clock;
use crate::model::phone::mask;
use crate::provider::timestamp::parse_time;
use crate::provider::{ErrorClass, MessageInfo, Provider, ProviderError};
use crate::store::{Campaign, LookupAnswer, LookupRow, Store, StoreError};

/// Rows looked up between two commits.
const PAGE: usize = 64;
/// Transient failures in a row, with no success between, that mean an outage.
const OUTAGE_AFTER_FAILURES: u64 = 20;

#[derive(Debug, Clone)]
pub struct ReconcileOptions {
    pub max_lookups: u64,
    pub rate: NonZeroU32,
    pub concurrency: usize,
    pub recheck_after: Duration,
    pub max_attempts: u32,
    pub backoff: Duration,
}

impl Default for ReconcileOptions {
    fn default() -> Self {
        Self {
            max_lookups: 5000,
            rate: NonZeroU32::new(10).unwrap_or(NonZeroU32::MIN),
            concurrency: 4,
            recheck_after: Duration::from_secs(3600),
            max_attempts: 4,
            backoff: Duration::from_millis(250),
        }
    }
}

/// What this run of reconcile did.
#[derive(Debug, Clone, Default, Serialize)]
pub struct ReconcileTotals {
    /// Lookups answered and stored.
    pub looked_up: u64,
    /// The provider does not know the message id (stored as `unknown`).
    pub not_found: u64,
    /// Lookups that failed (transient errors past the attempts, other
    /// codes); those rows are asked again by a later reconcile.
    pub failed: u64,
    /// Rows still to look up after this run (bounded by --max-lookups,
    /// stopped, or failed).
    pub remaining: u64,
    /// The first few lookup errors, for the summary.
    pub errors: Vec<String>,
}

#[derive(Default)]
struct Counters {
    looked_up: AtomicU64,
    not_found: AtomicU64,
    failed: AtomicU64,
    failures_in_a_row: AtomicU64,
    errors: Mutex<Vec<String>>,
}

impl Counters {
    fn note_error(&self, row: &LookupRow, e: &ProviderError) {
        self.failed.fetch_add(1, Ordering::Relaxed);
        tracing::warn!(phone = %mask(&row.phone), line = row.line, code = %e.code, "lookup failed: {}", e.message);
        if let Ok(mut list) = self.errors.lock() {
            if list.len() < 5 {
                list.push(format!(
                    "line {}: {} (code {})",
                    row.line, e.message, e.code
                ));
            }
        }
    }
}

/// The status as stored: the three eTelecom documents (its docs capitalise
/// them), eSMS's failure, anything else as `unknown`.
pub fn normalise_status(s: Option<&str>) -> &'static str {
    match s.map(|s| s.trim().to_ascii_lowercase()).as_deref() {
        Some("received") => "received",
        Some("seen") => "seen",
        Some("failed_delivery") => "failed_delivery",
        _ => "unknown",
    }
}

fn answer_from(row: &LookupRow, info: &MessageInfo, checked_ms: i64) -> LookupAnswer {
    let status = normalise_status(info.delivery_status.as_deref());
    // A zero time ("0001-01-01…") means "not delivered yet", not a date.
    let delivery_ms = info
        .delivery_time
        .as_deref()
        .and_then(parse_time)
        .filter(|t| t.year() >= 2000 && status != "unknown")
        .map(clock::to_ms);
    LookupAnswer {
        row_id: row.id,
        status: Some(status.to_string()),
        delivery_ms,
        fees: info.fees,
        checked_ms,
    }
}

/// Look up the campaign's sent rows until done, `max_lookups`, or a stop.
pub async fn run(
    store: &mut Store,
    campaign: &Campaign,
    provider: Arc<dyn Provider>,
    opts: &ReconcileOptions,
    stop: Arc<Stop>,
) -> Result<ReconcileTotals, StoreError> {
    let recheck = time::Duration::try_from(opts.recheck_after).unwrap_or(time::Duration::ZERO);
    // Rows answered in this run are checked after this instant: never picked twice.
    let recheck_before = clock::to_ms(clock::now() - recheck);
    let limiter = retry::limiter(opts.rate);
    let counters = Counters::default();
    let skip_reported = provider.kind() == crate::provider::ProviderKind::Esms;
    let mut budget = opts.max_lookups;
    let mut after = 0i64;
    while budget > 0 && !stop.is_set() {
        let take = (budget as usize).min(PAGE);
        let page = store.lookup_candidates(campaign.id, after, recheck_before, take)?;
        let Some(last) = page.last() else {
            break;
        };
        after = last.id;
        // Where delivery comes by callback (eSMS), a row the ledger already
        // has an answer for is not asked again: it is marked checked.
        let (reported, page): (Vec<LookupRow>, Vec<LookupRow>) = if skip_reported {
            let mut split = (Vec::new(), Vec::new());
            for row in page {
                if store.delivery_reported(&row.msg_id)? {
                    split.0.push(row);
                } else {
                    split.1.push(row);
                }
            }
            split
        } else {
            (Vec::new(), page)
        };
        budget -= page.len() as u64;
        let checked_ms = clock::now_ms();
        let skipped = reported.iter().map(|row| LookupAnswer {
            row_id: row.id,
            checked_ms,
            ..LookupAnswer::default()
        });
        let mut updates: Vec<LookupAnswer> = futures::stream::iter(page)
            .map(|row| {
                let (provider, limiter, counters, stop) = (&provider, &limiter, &counters, &stop);
                async move {
                    lookup(
                        row,
                        provider.as_ref(),
                        limiter,
                        counters,
                        stop,
                        opts,
                        campaign,
                    )
                    .await
                }
            })
            .buffer_unordered(opts.concurrency.max(1))
            .filter_map(futures::future::ready)
            .collect()
            .await;
        updates.extend(skipped);
        store.save_lookup_answers(&updates)?;
    }
    let remaining = store.lookup_candidates_count(campaign.id, recheck_before)?;
    let errors = counters
        .errors
        .lock()
        .map(|e| e.clone())
        .unwrap_or_default();
    Ok(ReconcileTotals {
        looked_up: counters.looked_up.load(Ordering::Relaxed),
        not_found: counters.not_found.load(Ordering::Relaxed),
        failed: counters.failed.load(Ordering::Relaxed),
        remaining,
        errors,
    })
}

/// One row: rate-limited, transient errors retried with backoff. `None`
/// leaves the row as it was (asked again by a later reconcile).
async fn lookup(
    row: LookupRow,
    provider: &dyn Provider,
    limiter: &Limiter,
    counters: &Counters,
    stop: &Stop,
    opts: &ReconcileOptions,
    campaign: &Campaign,
) -> Option<LookupAnswer> {
    let retries = Retries {
        max_attempts: opts.max_attempts,
        backoff: Backoff::starting_at(opts.backoff),
    };
    let mut attempt = 0u32;
    loop {
        attempt += 1;
        limiter.until_ready().await;
        if stop.is_set() {
            return None;
        }
        let e = match provider.get_message(&campaign.oa_id, &row.msg_id).await {
            Ok(info) => {
                counters.failures_in_a_row.store(0, Ordering::Relaxed);
                counters.looked_up.fetch_add(1, Ordering::Relaxed);
                let u = answer_from(&row, &info, clock::now_ms());
                tracing::debug!(phone = %mask(&row.phone), line = row.line, status = u.status.as_deref().unwrap_or(""), "delivery");
                return Some(u);
            }
            Err(e) => e,
        };
        if policy::is_transient(&e) {
            let n = counters.failures_in_a_row.fetch_add(1, Ordering::Relaxed) + 1;
            if n >= OUTAGE_AFTER_FAILURES {
                stop.request(
                    StopReason::Outage,
                    format!(
                        "{n} lookups in a row failed; last error: {} (code {}). Run reconcile again later",
                        e.message, e.code
                    ),
                );
            }
            let Some(wait) = retries.wait_after(attempt, &e) else {
                counters.note_error(&row, &e);
                return None;
            };
            if !stop.sleep(wait).await {
                return None;
            }
            continue;
        }
        if let Some((reason, message)) = policy::stop_for(&e, Caller::Reconcile) {
            stop.request(reason, message);
            return None;
        }
        match e.class {
            ErrorClass::FailRow => {
                // "message id invalid": the provider has no such message.
                counters.failures_in_a_row.store(0, Ordering::Relaxed);
                counters.not_found.fetch_add(1, Ordering::Relaxed);
                tracing::info!(phone = %mask(&row.phone), line = row.line, code = %e.code, "message not found: {}", e.message);
                return Some(LookupAnswer {
                    row_id: row.id,
                    status: Some("unknown".into()),
                    checked_ms: clock::now_ms(),
                    ..LookupAnswer::default()
                });
            }
            _ => {
                // Some other code: note it, and do not ask again until the
                // recheck interval has passed.
                counters.failures_in_a_row.store(0, Ordering::Relaxed);
                counters.note_error(&row, &e);
                return Some(LookupAnswer {
                    row_id: row.id,
                    checked_ms: clock::now_ms(),
                    ..LookupAnswer::default()
                });
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::fees::MessageFees;

    #[test]
    fn statuses_are_normalised_and_zero_times_dropped() {
        assert_eq!(normalise_status(Some("Received")), "received");
        assert_eq!(normalise_status(Some("seen")), "seen");
        assert_eq!(normalise_status(Some("Unkown")), "unknown");
        assert_eq!(normalise_status(None), "unknown");
        let row = LookupRow {
            id: 1,
            line: 2,
            phone: "84912345678".into(),
            msg_id: "m".into(),
        };
        let info = MessageInfo {
            msg_id: "m".into(),
            delivery_status: Some("received".into()),
            delivery_time: Some("0001-01-01T00:00:00Z".into()),
            fees: MessageFees {
                fee_main: Some(200),
                ..MessageFees::default()
            },
            ..MessageInfo::default()
        };
        let u = answer_from(&row, &info, 5);
        assert_eq!(u.status.as_deref(), Some("received"));
        assert_eq!(u.delivery_ms, None);
        assert_eq!(u.fees.fee_main, Some(200));
        let info = MessageInfo {
            delivery_time: Some("2026-11-24T01:00:00Z".into()),
            ..info
        };
        assert!(answer_from(&row, &info, 5).delivery_ms.is_some());
    }
}
