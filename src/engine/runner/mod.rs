//! The send pipeline: stream open rows from the store, get each a journey
//! token, send it under the concurrency bound, the rate limit and the daily
//! quota, and checkpoint every step through the single writer.
//!
//! Safety rules held here:
//! - a row is durably `in_flight` (and its quota unit claimed) before its
//!   request leaves, so a kill at any moment leaves it either untouched or
//!   in doubt — never silently sent;
//! - an in-doubt row is resent only under the same tracking id, or held;
//! - a token is bought under a per-phone lock after re-reading the store,
//!   and stored before it is used, so one key is never bought twice.
//!
//! The runner decides each row's next step (`row.rs`), never the
//! campaign's outcome: it reports why it stopped, and the campaign core
//! (`crate::campaign`) decides and records the outcome once.

mod failure;
mod options;
mod row;
#[cfg(test)]
mod tests;
mod tokens;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::StreamExt;
use tokio::sync::mpsc;

pub use options::{InDoubtPolicy, RunCounters, RunOptions, RunReport, RunTotals};

use crate::engine::retry::Limiter;
use crate::engine::stop::{Stop, StopReason};
use crate::model::clock;
use crate::provider::{JourneyToken, Provider, ProviderError};
use crate::store::{
    Campaign, GroupWriter, LeaseFence, Location, QuotaKey, Store, StoreError, TokenKey, WorkRow,
    WriteOp, WriteResult, Writer,
};

/// Where a run's tokens and quota units are booked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Accounts {
    /// Tokens are reusable only where they were bought.
    pub tokens: String,
    /// The OA's daily count; it must not depend on anything that changes
    /// between runs (such as the embedded sandbox's port).
    pub quota: String,
}

/// Told how a run goes, so a face can show it (a progress bar, a live page).
/// Nothing below a face prints.
pub trait Observer: Send + Sync {
    /// The run is about to take up `total` rows; `counters` move as it goes.
    fn started(&self, total: u64, counters: Arc<RunCounters>);
    /// The send phase is over.
    fn finished(&self);
}

/// An observer that shows nothing.
pub struct Silent;

impl Observer for Silent {
    fn started(&self, _: u64, _: Arc<RunCounters>) {}
    fn finished(&self) {}
}

#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("cannot start the row reader: {0}")]
    Reader(String),
}

/// Rows read per page from the store.
const PAGE: usize = 512;
/// Page cache of the two reading connections (the writer keeps the default).
const READER_CACHE_KIB: u32 = 2048;

/// Rows being prepared beyond the requests in flight: enough to hide the
/// `in_flight` commit behind the requests ahead of it, few enough that a
/// kill leaves only a handful in doubt that never left, and a quota stop
/// only a handful of tokens bought for nothing. Where requests take
/// their time (a real provider, a small concurrency) a quarter of the
/// concurrency hides the commit; at a high concurrency and a fast
/// provider the claims of many rows share one commit (see
/// [`GroupWriter`]) whose round trip must not starve the sends: as many
/// rows as requests. Tokens bought and not yet stored stay within the
/// concurrency whatever the depth (`Ctx::token_slots`).
fn prepared_rows(concurrency: usize) -> usize {
    if concurrency < 16 {
        (concurrency / 4).max(2)
    } else {
        concurrency.min(256)
    }
}

/// Everything a row's processing needs, shared by the rows of one run.
struct Ctx {
    campaign: Campaign,
    accounts: Accounts,
    provider: Arc<dyn Provider>,
    opts: RunOptions,
    /// The run's writes, grouped into few messages to the writer thread.
    writer: GroupWriter,
    reader: Mutex<Store>,
    stop: Arc<Stop>,
    counters: Arc<RunCounters>,
    limiter: Option<Limiter>,
    /// One permit per request in flight (`--concurrency`). Rows are
    /// prepared (token looked up, row durably `in_flight`) outside it, so a
    /// finished request's permit goes straight to a row that is ready.
    permits: tokio::sync::Semaphore,
    /// One permit per token bought and not yet stored (`--concurrency`):
    /// a kill loses at most that many, however deep the look-ahead.
    token_slots: tokio::sync::Semaphore,
    /// Some phone may appear on more than one open row: re-read the store
    /// under the phone's lock before buying a token.
    repeated_phones: bool,
    token_locks: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
    uses_tokens: bool,
    /// The provider can look a message up by tracking id.
    lookup: bool,
    started: Instant,
    /// Milliseconds since `started` of the last successful provider call.
    last_success_ms: AtomicU64,
    /// Whether "waiting for the send window" has been said for this closing.
    window_wait_noted: AtomicBool,
    /// Refusals held open until the run's first success (see
    /// [`failure::Probation`]); `None` once a send succeeded.
    probation: Mutex<Option<failure::Probation>>,
    /// No send has succeeded yet: refusals go to `probation`.
    on_probation: AtomicBool,
    /// The run's lease on the campaign, checked by every claim.
    lease: Option<Arc<LeaseFence>>,
}

/// What the runner is given.
pub struct RunInput {
    pub state: Location,
    pub campaign: Campaign,
    pub accounts: Accounts,
    pub provider: Arc<dyn Provider>,
    pub opts: RunOptions,
    pub stop: Arc<Stop>,
    pub counters: Arc<RunCounters>,
    /// The lease the run holds (see `store::leases`): a claim made after
    /// it was lost is refused, and the run stops.
    pub lease: Option<LeaseFence>,
}

/// Run a campaign's open rows to the end or to a stop.
pub async fn run(input: RunInput, observer: &dyn Observer) -> Result<RunReport, RunError> {
    let RunInput {
        state,
        campaign,
        accounts,
        provider,
        opts,
        stop,
        counters,
        lease,
    } = input;
    let started = Instant::now();
    let (writer, writer_thread) = Writer::start(&state)?;
    let reader = Store::open(&state)?;
    reader.set_cache_kib(READER_CACHE_KIB)?;
    let repeated_phones = reader.has_repeated_phones(campaign.id)?;
    let caps = provider.capabilities();
    let concurrency = opts.concurrency.max(1);
    let ctx = Arc::new(Ctx {
        uses_tokens: caps.tokens,
        lookup: caps.lookup_by_tracking_id,
        limiter: opts.rate.map(crate::engine::retry::limiter),
        campaign,
        accounts,
        provider,
        opts,
        writer: GroupWriter::start(writer),
        reader: Mutex::new(reader),
        stop: stop.clone(),
        counters: counters.clone(),
        permits: tokio::sync::Semaphore::new(concurrency),
        token_slots: tokio::sync::Semaphore::new(concurrency),
        repeated_phones,
        token_locks: Mutex::new(HashMap::new()),
        started,
        last_success_ms: AtomicU64::new(0),
        window_wait_noted: AtomicBool::new(false),
        probation: Mutex::new(Some(failure::Probation::new(concurrency))),
        on_probation: AtomicBool::new(true),
        lease: lease.map(Arc::new),
    });

    // Past the deadline before starting: nothing is claimed, all open rows expire.
    expire_if_past_deadline(&ctx).await?;

    // Pages of open rows come from a blocking reader thread on its own
    // connection, a page per message (one wake-up of the reader per page,
    // not per row).
    let (row_tx, row_rx) = mpsc::channel::<Vec<WorkRow>>(2);
    let reader_ctx = ctx.clone();
    let include_in_doubt = ctx.opts.in_doubt.takes_up_doubtful_rows(ctx.lookup);
    let reader_path = state.clone();
    let reader_task = tokio::task::spawn_blocking(move || -> Result<(), StoreError> {
        let store = Store::open(&reader_path)?;
        store.set_cache_kib(READER_CACHE_KIB)?;
        let mut after = 0i64;
        loop {
            if reader_ctx.stop.is_set() {
                return Ok(());
            }
            let page = store.open_rows_page(
                &reader_ctx.campaign,
                &reader_ctx.accounts.tokens,
                after,
                PAGE,
                include_in_doubt,
            )?;
            let Some(last) = page.last() else {
                return Ok(());
            };
            after = last.id;
            if row_tx.blocking_send(page).is_err() {
                return Ok(());
            }
        }
    });

    let template_watch = tokio::spawn(watch_template(ctx.clone()));

    let work_ctx = ctx.clone();
    let rows = futures::stream::unfold(
        (row_rx, Vec::<WorkRow>::new().into_iter()),
        |(mut rx, mut page)| async move {
            loop {
                if let Some(row) = page.next() {
                    return Some((row, (rx, page)));
                }
                page = rx.recv().await?.into_iter();
            }
        },
    );
    let stop_for_stream = stop.clone();
    let deadline_ctx = ctx.clone();
    let mut work = Box::pin(
        rows.take_while(move |_| {
            let past = deadline_ctx.campaign.past_deadline(clock::now_ms());
            futures::future::ready(!stop_for_stream.is_set() && !past)
        })
        .for_each_concurrent(concurrency + prepared_rows(concurrency), move |row| {
            let ctx = work_ctx.clone();
            async move { row::process(&ctx, row).await }
        }),
    );

    let todo = ctx
        .reader
        .lock()
        .map_err(|_| RunError::Reader("reader lock poisoned".into()))?
        .open_count(ctx.campaign.id, include_in_doubt)?;
    observer.started(todo, counters.clone());

    // Run until done; after a stop request, give in-flight requests a
    // deadline, then cut them off (they stay `in_flight`: in doubt).
    let deadline = ctx.opts.drain_deadline;
    let stop_wait = stop.clone();
    let send_started = Instant::now();
    tokio::select! {
        _ = &mut work => {}
        _ = async {
            stop_wait.stopped().await;
            tokio::time::sleep(deadline).await;
        } => {
            tracing::warn!("in-flight requests did not finish within {deadline:?}; they stay in doubt");
        }
    }
    let send_phase = send_started.elapsed();
    observer.finished();
    // Dropping the stream releases the row channel (unblocking the reader)
    // and its context clone, whose writer handle would keep the writer alive.
    drop(work);

    template_watch.abort();
    let _ = template_watch.await;
    let reader_result = reader_task.await;
    // The file ended before the refusals added up to a campaign-level
    // stop: the held rows were refused for themselves.
    let probation_settled = if stop.is_set() {
        Ok(())
    } else {
        failure::end_probation(&ctx)
    };
    // Rows the deadline caught before their claim: they expire now (not
    // by a run whose campaign another process took over: they are its).
    let expired_at_end = match stop.reason() {
        Some(r) if r.is_fatal() || r == StopReason::LeaseLost => Ok(()),
        _ => expire_if_past_deadline(&ctx).await,
    };
    // The last grouped writes committed; the writer thread ends once the
    // group's handle on it is gone.
    ctx.writer.close().await;
    drop(ctx);
    let thread_result = writer_thread
        .join()
        .map_err(|_| RunError::Reader("state writer thread panicked".into()))?;
    thread_result?;
    probation_settled?;
    expired_at_end?;
    match reader_result {
        Ok(Ok(())) => {}
        Ok(Err(e)) => return Err(e.into()),
        Err(e) => return Err(RunError::Reader(e.to_string())),
    }
    Ok(RunReport {
        stop: stop.reason(),
        stop_message: stop.message(),
        totals: counters.totals(started.elapsed(), send_phase),
    })
}

/// How often a run looks for the provider disabling its template (the
/// Zalo webhook records it): often enough to stop within a second or so,
/// rarely enough to cost nothing next to the sends.
const TEMPLATE_CHECK_EVERY: Duration = Duration::from_secs(1);

/// Why a run stops when the template is disabled, and what to do.
pub fn template_stop_message(why: &str, campaign: &str) -> String {
    format!(
        "{why} (the provider reported it), so no more rows are sent with it; \
         fix the template with the provider, and once it is enabled again \
         `zns-batch resume {}`",
        crate::model::shell::shell_word(campaign)
    )
}

/// Stop the run (paused, `StopReason::Template`) once the ledger says the
/// provider disabled the campaign's template.
async fn watch_template(ctx: Arc<Ctx>) {
    while ctx.stop.sleep(TEMPLATE_CHECK_EVERY).await {
        let block = match ctx.reader.lock() {
            Ok(store) => store.template_block(&ctx.campaign.template_id),
            Err(_) => return,
        };
        match block {
            Ok(Some(why)) => {
                tracing::warn!("{why}: stopping the run");
                ctx.stop.request(
                    StopReason::Template,
                    template_stop_message(&why, &ctx.campaign.name),
                );
                return;
            }
            Ok(None) => {}
            // The row reads will meet the same error and stop the run.
            Err(e) => tracing::warn!("cannot read the template's status: {e}"),
        }
    }
}

/// After the campaign's deadline every open row becomes `expired`.
async fn expire_if_past_deadline(ctx: &Ctx) -> Result<(), StoreError> {
    let Some(deadline) = ctx.campaign.not_after_ms else {
        return Ok(());
    };
    if !ctx.campaign.past_deadline(clock::now_ms()) {
        return Ok(());
    }
    if let WriteResult::Count(n) = ctx
        .writer
        .write(WriteOp::ExpireOpen {
            campaign_id: ctx.campaign.id,
            not_after_ms: deadline,
        })
        .await?
    {
        ctx.counters.expired.fetch_add(n, Ordering::Relaxed);
        if n > 0 {
            tracing::warn!(
                "{n} rows expired: the campaign's deadline {} passed",
                clock::fmt_local(clock::from_ms(deadline))
            );
        }
    }
    Ok(())
}

impl Ctx {
    /// A slot for a send whose row is already `in_flight` with its quota
    /// unit claimed. A quota stop lets it go out (it is within the quota);
    /// any other stop gives it up (None).
    async fn send_permit(&self) -> Option<tokio::sync::SemaphorePermit<'_>> {
        tokio::select! {
            p = self.permits.acquire() => return p.ok(),
            _ = self.stop.stopped() => {}
        }
        match self.stop.reason() {
            Some(StopReason::Quota) => self.permits.acquire().await.ok(),
            _ => None,
        }
    }

    fn quota_key(&self) -> QuotaKey {
        QuotaKey::today(&self.accounts.quota, &self.campaign.oa_id)
    }

    fn token_key(&self, phone: &str) -> TokenKey {
        TokenKey {
            account: self.accounts.tokens.clone(),
            oa_id: self.campaign.oa_id.clone(),
            phone: phone.to_string(),
            token_type: self.campaign.token_type.clone(),
        }
    }

    fn usable(&self, t: &JourneyToken) -> bool {
        let margin =
            time::Duration::try_from(self.opts.token_margin).unwrap_or(time::Duration::ZERO);
        t.status.as_deref() != Some("N") && t.expires_at > clock::now() + margin
    }

    /// Inside the send window (or none set): true. Outside: with --wait,
    /// sleep until it opens (false if stopped meanwhile); else stop the run.
    async fn window_open(&self) -> bool {
        let Some(w) = self.opts.send_window else {
            return true;
        };
        loop {
            let now = clock::now();
            if w.contains(now) {
                self.window_wait_noted.store(false, Ordering::Relaxed);
                return true;
            }
            if !self.opts.wait_for_window {
                self.stop.request(StopReason::Window, w.closed_message(now));
                return false;
            }
            if !self.window_wait_noted.swap(true, Ordering::Relaxed) {
                tracing::warn!("{}; waiting (--wait)", w.closed_message(now));
            }
            let until = w.next_open(now) - now;
            // A little past the edge, so the check after waking sees it open.
            let nap =
                Duration::try_from(until).unwrap_or(Duration::ZERO) + Duration::from_millis(20);
            if !self.stop.sleep(nap).await {
                return false;
            }
            // Hours of waiting are not an outage.
            self.note_success();
        }
    }

    fn note_success(&self) {
        self.last_success_ms
            .store(self.started.elapsed().as_millis() as u64, Ordering::Relaxed);
    }

    /// A provider that has not answered well for `outage_after` is down:
    /// pause rather than burn through every row's retries.
    fn note_transient_failure(&self, e: &ProviderError) {
        let now = self.started.elapsed().as_millis() as u64;
        let last = self.last_success_ms.load(Ordering::Relaxed);
        if now.saturating_sub(last) > self.opts.outage_after.as_millis() as u64 {
            self.stop.request(
                StopReason::Outage,
                format!(
                    "no successful reply from the provider for {}s; last error: {} (code {})",
                    self.opts.outage_after.as_secs(),
                    e.message,
                    e.code
                ),
            );
        }
    }
}
