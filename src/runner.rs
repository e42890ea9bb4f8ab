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

use std::collections::HashMap;
use std::num::NonZeroU32;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::StreamExt;
use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use rand::Rng;
use serde::Serialize;
use tokio::sync::{mpsc, Notify};

use crate::phone::mask;
use crate::provider::{
    ErrorClass, JourneyToken, Provider, ProviderError, SendRequest, TokenCheck, TokenRequest,
};
use crate::quota;
use crate::store::{
    Campaign, CampaignStatus, QuotaKey, RowState, Store, StoreError, TokenKey, WorkRow, WriteOp,
    WriteResult, Writer,
};
use crate::window::SendWindow;

/// What to do with a row whose request may have been accepted but whose
/// reply was lost.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
pub enum InDoubtPolicy {
    /// Send again under the same tracking id (the provider can de-duplicate).
    Resend,
    /// Leave the row `in_doubt` for an operator: a possible miss over a possible duplicate.
    Hold,
}

impl InDoubtPolicy {
    pub fn as_str(self) -> &'static str {
        match self {
            InDoubtPolicy::Resend => "resend",
            InDoubtPolicy::Hold => "hold",
        }
    }
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "resend" => Some(Self::Resend),
            "hold" => Some(Self::Hold),
            _ => None,
        }
    }
}

#[derive(Debug, Clone)]
pub struct RunOptions {
    /// Requests in flight at once.
    pub concurrency: usize,
    /// Requests per second (all provider calls), if limited.
    pub rate: Option<NonZeroU32>,
    /// Our own cap on messages per OA day.
    pub daily_quota: Option<u64>,
    pub in_doubt: InDoubtPolicy,
    /// Attempts per provider call before the row is deferred to a resume.
    pub max_attempts: u32,
    pub backoff_base: Duration,
    pub backoff_cap: Duration,
    /// Without a single success for this long, the provider is down: pause.
    pub outage_after: Duration,
    /// A stored token is reused only if it outlives now by this much.
    pub token_margin: Duration,
    /// After a stop request, how long to wait for in-flight requests.
    pub drain_deadline: Duration,
    pub progress: bool,
    /// Hours of the OA's day in which requests may leave.
    pub send_window: Option<SendWindow>,
    /// Outside the window: sleep until it opens (else stop, resumable).
    pub wait_for_window: bool,
}

impl Default for RunOptions {
    fn default() -> Self {
        Self {
            concurrency: 16,
            rate: None,
            daily_quota: None,
            in_doubt: InDoubtPolicy::Resend,
            max_attempts: 8,
            backoff_base: Duration::from_millis(250),
            backoff_cap: Duration::from_secs(15),
            outage_after: Duration::from_secs(120),
            token_margin: Duration::from_secs(30 * 60),
            drain_deadline: Duration::from_secs(10),
            progress: true,
            send_window: None,
            wait_for_window: false,
        }
    }
}

/// Why a run stopped before finishing every row.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum StopReason {
    Quota = 1,
    Interrupted = 2,
    Outage = 3,
    Auth = 4,
    Config = 5,
    Store = 6,
    /// Outside the send window (without --wait).
    Window = 7,
}

impl StopReason {
    fn from_u8(v: u8) -> Option<Self> {
        Some(match v {
            1 => Self::Quota,
            2 => Self::Interrupted,
            3 => Self::Outage,
            4 => Self::Auth,
            5 => Self::Config,
            6 => Self::Store,
            7 => Self::Window,
            _ => return None,
        })
    }

    /// Aborts are fatal (exit 1); the rest pause resumably (exit 3).
    pub fn is_fatal(self) -> bool {
        matches!(self, Self::Auth | Self::Config | Self::Store)
    }
}

/// Why a run stopped after Ctrl-C / SIGTERM.
pub const INTERRUPTED: &str = "interrupted (Ctrl-C / SIGTERM); nothing is lost, resume to continue";

/// A shared stop flag: the first reason wins; sleepers are woken.
#[derive(Default)]
pub struct Stop {
    reason: AtomicU8,
    message: Mutex<Option<String>>,
    notify: Notify,
    /// Set by the signal handler itself. On the single-threaded runtime the
    /// task watching signals cannot run while the import holds the thread;
    /// this flag is seen before the first row is claimed all the same.
    signalled: Arc<AtomicBool>,
}

impl Stop {
    pub fn request(&self, reason: StopReason, message: impl Into<String>) {
        if self
            .reason
            .compare_exchange(0, reason as u8, Ordering::SeqCst, Ordering::SeqCst)
            .is_ok()
        {
            if let Ok(mut m) = self.message.lock() {
                *m = Some(message.into());
            }
        }
        self.notify.notify_waiters();
    }

    pub fn reason(&self) -> Option<StopReason> {
        self.is_set();
        StopReason::from_u8(self.reason.load(Ordering::SeqCst))
    }

    pub fn message(&self) -> Option<String> {
        self.is_set();
        self.message.lock().ok().and_then(|m| m.clone())
    }

    pub fn is_set(&self) -> bool {
        if self.reason.load(Ordering::Relaxed) != 0 {
            return true;
        }
        if self.signalled.load(Ordering::Relaxed) {
            self.request(StopReason::Interrupted, INTERRUPTED);
            return true;
        }
        false
    }

    /// The flag a signal handler sets (see `signalled`).
    pub fn signal_flag(&self) -> Arc<AtomicBool> {
        self.signalled.clone()
    }

    /// Sleep, cut short by a stop request. Returns false if stopped.
    pub async fn sleep(&self, d: Duration) -> bool {
        if self.is_set() {
            return false;
        }
        let notified = self.notify.notified();
        tokio::select! {
            _ = tokio::time::sleep(d) => !self.is_set(),
            _ = notified => false,
        }
    }

    async fn stopped(&self) {
        loop {
            let notified = self.notify.notified();
            if self.is_set() {
                return;
            }
            notified.await;
        }
    }
}

/// Counters for this run (the store holds the campaign's totals).
#[derive(Debug, Default)]
pub struct RunCounters {
    pub sent: AtomicU64,
    pub failed: AtomicU64,
    pub retries: AtomicU64,
    pub retrying_now: AtomicU64,
    pub tokens_created: AtomicU64,
    pub tokens_reused: AtomicU64,
    pub tokens_refreshed: AtomicU64,
    pub resent_after_doubt: AtomicU64,
    pub held_in_doubt: AtomicU64,
    pub deferred: AtomicU64,
    pub replayed_duplicates: AtomicU64,
    pub reconciled_by_lookup: AtomicU64,
    pub requests: AtomicU64,
    pub expired: AtomicU64,
    pub skipped: AtomicU64,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct RunTotals {
    pub sent: u64,
    pub failed: u64,
    pub retries: u64,
    pub tokens_created: u64,
    pub tokens_reused: u64,
    pub tokens_refreshed: u64,
    pub resent_after_doubt: u64,
    pub held_in_doubt: u64,
    pub deferred: u64,
    pub replayed_duplicates: u64,
    /// Rows in doubt that a lookup by tracking id found sent.
    pub reconciled_by_lookup: u64,
    pub requests: u64,
    pub expired: u64,
    pub skipped: u64,
    /// The whole run, opening and closing the state included.
    pub elapsed_secs: f64,
    /// The send phase alone: from the first row taken to the last reply
    /// settled. Throughput is measured over this.
    pub send_secs: f64,
}

impl RunCounters {
    fn totals(&self, elapsed: Duration, send: Duration) -> RunTotals {
        let g = |a: &AtomicU64| a.load(Ordering::Relaxed);
        RunTotals {
            sent: g(&self.sent),
            failed: g(&self.failed),
            retries: g(&self.retries),
            tokens_created: g(&self.tokens_created),
            tokens_reused: g(&self.tokens_reused),
            tokens_refreshed: g(&self.tokens_refreshed),
            resent_after_doubt: g(&self.resent_after_doubt),
            held_in_doubt: g(&self.held_in_doubt),
            deferred: g(&self.deferred),
            replayed_duplicates: g(&self.replayed_duplicates),
            reconciled_by_lookup: g(&self.reconciled_by_lookup),
            requests: g(&self.requests),
            expired: g(&self.expired),
            skipped: g(&self.skipped),
            elapsed_secs: elapsed.as_secs_f64(),
            send_secs: send.as_secs_f64(),
        }
    }
}

/// How the run ended.
#[derive(Debug, Clone, Serialize)]
pub struct RunOutcome {
    pub stop: Option<StopReason>,
    pub stop_message: Option<String>,
    pub totals: RunTotals,
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
/// kill leaves only a handful in doubt that never left.
fn prepared_rows(concurrency: usize) -> usize {
    (concurrency / 4).clamp(2, 256)
}

struct Ctx {
    campaign: Campaign,
    account: String,
    provider: Arc<dyn Provider>,
    opts: RunOptions,
    writer: Writer,
    reader: Mutex<Store>,
    stop: Arc<Stop>,
    counters: Arc<RunCounters>,
    limiter: Option<DefaultDirectRateLimiter>,
    /// One permit per request in flight (`--concurrency`). Rows are
    /// prepared (token looked up, row durably `in_flight`) outside it, so a
    /// finished request's permit goes straight to a row that is ready.
    permits: tokio::sync::Semaphore,
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
    saw_failure: AtomicBool,
    /// Whether "waiting for the send window" has been said for this closing.
    window_wait_noted: AtomicBool,
}

/// How one row's processing ended, for the caller's bookkeeping.
enum CallFailure {
    /// Classified provider error to act on.
    Provider(ProviderError),
    /// Transient errors used up the attempts: the row waits for a resume.
    Budget(ProviderError),
    /// A stop was requested while waiting.
    Stopped,
    Store(StoreError),
}

impl From<StoreError> for CallFailure {
    fn from(e: StoreError) -> Self {
        CallFailure::Store(e)
    }
}

/// Run a campaign's open rows to the end or to a stop.
pub async fn run(
    state_path: PathBuf,
    campaign: Campaign,
    account: String,
    provider: Arc<dyn Provider>,
    opts: RunOptions,
    stop: Arc<Stop>,
    counters: Arc<RunCounters>,
) -> Result<RunOutcome, RunError> {
    let started = Instant::now();
    let (writer, writer_thread) = Writer::start(&state_path)?;
    let reader = Store::open(&state_path)?;
    reader.set_cache_kib(READER_CACHE_KIB)?;
    let repeated_phones = reader.has_repeated_phones(campaign.id)?;
    let limiter = opts.rate.map(|rate| {
        // A burst of a tenth of a second keeps the pipe full without a spike.
        let burst = NonZeroU32::new((rate.get() / 10).max(1)).unwrap_or(NonZeroU32::MIN);
        RateLimiter::direct(Quota::per_second(rate).allow_burst(burst))
    });
    let opts_concurrency = opts.concurrency.max(1);
    let ctx = Arc::new(Ctx {
        uses_tokens: provider.capabilities().tokens,
        lookup: provider.capabilities().lookup_by_tracking_id,
        campaign,
        account,
        provider,
        opts,
        writer: writer.clone(),
        reader: Mutex::new(reader),
        stop: stop.clone(),
        counters: counters.clone(),
        limiter,
        permits: tokio::sync::Semaphore::new(opts_concurrency),
        repeated_phones,
        token_locks: Mutex::new(HashMap::new()),
        started,
        last_success_ms: AtomicU64::new(0),
        saw_failure: AtomicBool::new(false),
        window_wait_noted: AtomicBool::new(false),
    });

    writer
        .write(WriteOp::CampaignStatus {
            campaign_id: ctx.campaign.id,
            status: CampaignStatus::Running,
            last_error: None,
        })
        .await?;
    // Past the deadline before starting: nothing is claimed, all open rows expire.
    expire_if_past_deadline(&ctx).await?;

    // Pages of open rows come from a blocking reader thread on its own connection.
    let (row_tx, row_rx) = mpsc::channel::<WorkRow>(PAGE * 2);
    let reader_ctx = ctx.clone();
    // Held rows are read again only where a lookup may settle them.
    let include_in_doubt = ctx.opts.in_doubt == InDoubtPolicy::Resend || ctx.lookup;
    let reader_path = state_path.clone();
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
                &reader_ctx.account,
                after,
                PAGE,
                include_in_doubt,
            )?;
            let Some(last) = page.last() else {
                return Ok(());
            };
            after = last.id;
            for row in page {
                if row_tx.blocking_send(row).is_err() {
                    return Ok(());
                }
            }
        }
    });

    let concurrency = ctx.opts.concurrency.max(1);
    let work_ctx = ctx.clone();
    let rows = futures::stream::unfold(row_rx, |mut rx| async move {
        rx.recv().await.map(|row| (row, rx))
    });
    let stop_for_stream = stop.clone();
    let deadline_ctx = ctx.clone();
    let mut work = Box::pin(
        rows.take_while(move |_| {
            let past = deadline_ctx.campaign.past_deadline(quota::now_ms());
            futures::future::ready(!stop_for_stream.is_set() && !past)
        })
        .for_each_concurrent(concurrency + prepared_rows(concurrency), move |row| {
            let ctx = work_ctx.clone();
            async move { process_row(&ctx, row).await }
        }),
    );

    let todo = ctx
        .reader
        .lock()
        .map_err(|_| RunError::Reader("reader lock poisoned".into()))?
        .open_count(ctx.campaign.id, include_in_doubt)?;
    let progress = crate::report::Progress::start(todo, ctx.opts.progress, counters.clone());

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
    progress.finish();
    // Dropping the stream releases the row channel (unblocking the reader)
    // and its context clone, whose writer handle would keep the writer alive.
    drop(work);

    let reader_result = reader_task.await;
    // Rows the deadline caught before their claim: they expire now.
    let expired_at_end = match stop.reason() {
        Some(r) if r.is_fatal() => Ok(()),
        _ => expire_if_past_deadline(&ctx).await,
    };
    let stop_reason = stop.reason();
    let status = match stop_reason {
        Some(r) if r.is_fatal() => CampaignStatus::Aborted,
        Some(_) => CampaignStatus::Paused,
        None => CampaignStatus::Running, // decided by the caller from the counts
    };
    let flush = writer
        .write(WriteOp::CampaignStatus {
            campaign_id: ctx.campaign.id,
            status,
            last_error: stop.message(),
        })
        .await;
    drop(ctx);
    drop(writer);
    let thread_result = writer_thread
        .join()
        .map_err(|_| RunError::Reader("state writer thread panicked".into()))?;
    thread_result?;
    flush?;
    expired_at_end?;
    match reader_result {
        Ok(Ok(())) => {}
        Ok(Err(e)) => return Err(e.into()),
        Err(e) => return Err(RunError::Reader(e.to_string())),
    }
    Ok(RunOutcome {
        stop: stop.reason(),
        stop_message: stop.message(),
        totals: counters.totals(started.elapsed(), send_phase),
    })
}

/// After the campaign's deadline every open row becomes `expired`.
async fn expire_if_past_deadline(ctx: &Ctx) -> Result<(), StoreError> {
    let Some(deadline) = ctx.campaign.not_after_ms else {
        return Ok(());
    };
    if quota::now_ms() <= deadline {
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
                quota::fmt_local(quota::from_ms(deadline))
            );
        }
    }
    Ok(())
}

/// Count a row the claim checks settled; true when the row is done with.
fn gate_settled(ctx: &Ctx, result: WriteResult, row: &WorkRow) -> bool {
    match result {
        WriteResult::Expired => {
            ctx.counters.expired.fetch_add(1, Ordering::Relaxed);
            true
        }
        WriteResult::Skipped => {
            ctx.counters.skipped.fetch_add(1, Ordering::Relaxed);
            tracing::info!(phone = %mask(&row.phone), line = row.line, "skipped: a message went to this phone within --min-interval-per-phone");
            true
        }
        _ => false,
    }
}

async fn process_row(ctx: &Ctx, row: WorkRow) {
    if ctx.stop.is_set() {
        return;
    }
    if let Err(e) = process_row_inner(ctx, &row).await {
        ctx.stop
            .request(StopReason::Store, format!("state database unusable: {e}"));
    }
}

async fn process_row_inner(ctx: &Ctx, row: &WorkRow) -> Result<(), StoreError> {
    let doubt_from_before = row.state == RowState::InFlight || row.state == RowState::InDoubt;
    let mut in_doubt = doubt_from_before;
    // Where the provider can look a message up by our key, a lookup settles
    // the doubt before any policy applies.
    if in_doubt && ctx.lookup {
        match reconcile(ctx, row).await? {
            Lookup::Found => return Ok(()),
            Lookup::Absent => in_doubt = false,
            Lookup::Unknown => {}
        }
    }
    if in_doubt && ctx.opts.in_doubt == InDoubtPolicy::Hold {
        if row.state == RowState::InFlight {
            return hold(
                ctx,
                row,
                "in_doubt",
                "request left in an earlier run and its reply was never recorded",
            );
        }
        ctx.counters.held_in_doubt.fetch_add(1, Ordering::Relaxed);
        return Ok(());
    }

    if !ctx.window_open().await {
        return Ok(());
    }
    let values: Vec<String> = serde_json::from_str(&row.data_json).unwrap_or_default();
    let data: Vec<(&str, &str)> = ctx
        .campaign
        .template_keys
        .iter()
        .map(String::as_str)
        .zip(values.iter().map(String::as_str))
        .collect();

    if ctx.campaign.past_deadline(quota::now_ms()) {
        // Left open: the end of the run expires it with the others.
        return Ok(());
    }
    // Check the frequency cap before buying a token the row would not use
    // (the claim checks again, atomically; a row with a usable token buys
    // nothing, so the claim's check is enough).
    let buys_token = ctx.uses_tokens && !row.token.as_ref().is_some_and(|t| ctx.usable(t));
    if buys_token && ctx.campaign.min_interval_ms.is_some() {
        let result = ctx
            .writer
            .write(WriteOp::CheckGate {
                row_id: row.id,
                gate: ctx.campaign.claim_gate(&row.phone),
            })
            .await?;
        if gate_settled(ctx, result, row) {
            return Ok(());
        }
    }

    let mut token: Option<JourneyToken> = None;
    // A token bought for this row and not yet stored: it is stored in the
    // same transaction that marks the row `in_flight` (one commit instead
    // of two), before the request leaves, with the phone's lock held.
    let mut bought: Option<Bought<'_>> = None;
    if ctx.uses_tokens {
        match ensure_token(ctx, row, None).await {
            Ok((t, b)) => {
                token = Some(t);
                bought = b;
            }
            Err(f) => return settle_failure(ctx, row, f, false, None),
        }
    }

    let mut refreshed = false;
    let mut attempt = 0u32;
    loop {
        attempt += 1;
        if let Some(limiter) = &ctx.limiter {
            limiter.until_ready().await;
        }
        // A retry can fall after the window closed: it waits like a new row.
        if ctx.stop.is_set() || !ctx.window_open().await {
            save_bought(ctx, row, &mut bought).await?;
            return Ok(());
        }
        // An attempt of this run is in doubt: look it up (after the backoff,
        // so the provider has finished with it) before sending again.
        if in_doubt && ctx.lookup && attempt > 1 {
            match reconcile(ctx, row).await? {
                Lookup::Found => return save_bought(ctx, row, &mut bought).await,
                Lookup::Absent => in_doubt = false,
                Lookup::Unknown if ctx.opts.in_doubt == InDoubtPolicy::Hold => {
                    save_bought(ctx, row, &mut bought).await?;
                    return hold(
                        ctx,
                        row,
                        "in_doubt",
                        "reply lost and the lookup by tracking id failed",
                    );
                }
                Lookup::Unknown => {}
            }
        }
        let quota_key = ctx.quota_key();
        let (save_token, bought_lock) = match bought.take() {
            Some(b) => (Some((b.key, b.token)), Some(b.lock)),
            None => (None, None),
        };
        let claimed = ctx
            .writer
            .write(WriteOp::MarkInFlight {
                row_id: row.id,
                journey_id: token.as_ref().map(|t| t.journey_id.clone()),
                quota: quota_key.clone(),
                limit: ctx.opts.daily_quota,
                gate: ctx.campaign.claim_gate(&row.phone),
                save_token,
            })
            .await?;
        // Stored (whatever the claim said): other rows may use it now.
        if let Some(lock) = bought_lock {
            token_stored(ctx, &lock.phone);
        }
        match claimed {
            WriteResult::QuotaFull => {
                ctx.stop
                    .request(StopReason::Quota, quota_message(&quota_key));
                return Ok(());
            }
            r @ (WriteResult::Expired | WriteResult::Skipped) => {
                gate_settled(ctx, r, row);
                return Ok(());
            }
            WriteResult::Done | WriteResult::Count(_) => {}
        }
        // Wait for a free slot; a stop meanwhile gives the row back (its
        // request never left, so it is not in doubt).
        let Some(_permit) = ctx.send_permit().await else {
            if !in_doubt {
                ctx.writer.post(WriteOp::MarkPending {
                    row_id: row.id,
                    code: "stopped".into(),
                    message: "stopped before the request left".into(),
                    release: Some(quota_key),
                })?;
            }
            return Ok(());
        };
        let req = SendRequest {
            oa_id: &ctx.campaign.oa_id,
            phone: &row.phone,
            template_id: &ctx.campaign.template_id,
            template_data: &data,
            tracking_id: &row.tracking_id,
            token: token.as_ref(),
            campaign: &ctx.campaign.name,
        };
        ctx.counters.requests.fetch_add(1, Ordering::Relaxed);
        let result = ctx.provider.send(&req).await;
        drop(_permit);
        // Whatever the previous attempt's fate, this one decides from here.
        let release = (!in_doubt).then(|| quota_key.clone());
        match result {
            Ok(outcome) => {
                ctx.note_success();
                if outcome.duplicate {
                    ctx.counters
                        .replayed_duplicates
                        .fetch_add(1, Ordering::Relaxed);
                }
                if in_doubt {
                    ctx.counters
                        .resent_after_doubt
                        .fetch_add(1, Ordering::Relaxed);
                }
                ctx.writer.post(WriteOp::MarkSent {
                    row_id: row.id,
                    msg_id: outcome.msg_id,
                    resent_after_doubt: in_doubt,
                    provider_quota: outcome.quota.map(|q| (quota_key, q)),
                })?;
                ctx.counters.sent.fetch_add(1, Ordering::Relaxed);
                tracing::debug!(phone = %mask(&row.phone), line = row.line, "sent");
                return Ok(());
            }
            Err(e) => {
                tracing::debug!(phone = %mask(&row.phone), line = row.line, code = %e.code, class = ?e.class, in_doubt = e.in_doubt, "send failed: {}", e.message);
                match e.class {
                    ErrorClass::Retry => {
                        ctx.note_transient_failure(&e);
                        if e.in_doubt {
                            in_doubt = true;
                            // With a lookup the next attempt settles it first.
                            if !ctx.lookup && ctx.opts.in_doubt == InDoubtPolicy::Hold {
                                return hold(ctx, row, &e.code, &e.message);
                            }
                        } else if !in_doubt {
                            // Refused outright: the row is back to waiting, not in doubt.
                            ctx.writer.post(WriteOp::MarkPending {
                                row_id: row.id,
                                code: e.code.clone(),
                                message: e.message.clone(),
                                release: release.clone(),
                            })?;
                        }
                        if attempt >= ctx.opts.max_attempts {
                            ctx.counters.deferred.fetch_add(1, Ordering::Relaxed);
                            tracing::warn!(phone = %mask(&row.phone), line = row.line, "giving up for this run after {attempt} attempts: {e}");
                            return Ok(());
                        }
                        ctx.counters.retries.fetch_add(1, Ordering::Relaxed);
                        ctx.counters.retrying_now.fetch_add(1, Ordering::Relaxed);
                        let woke = ctx.stop.sleep(ctx.backoff(attempt, e.retry_after)).await;
                        ctx.counters.retrying_now.fetch_sub(1, Ordering::Relaxed);
                        if !woke {
                            return Ok(());
                        }
                    }
                    ErrorClass::AlreadySent => {
                        ctx.note_success();
                        ctx.counters
                            .replayed_duplicates
                            .fetch_add(1, Ordering::Relaxed);
                        ctx.writer.post(WriteOp::MarkSent {
                            row_id: row.id,
                            msg_id: None,
                            resent_after_doubt: in_doubt,
                            provider_quota: None,
                        })?;
                        ctx.counters.sent.fetch_add(1, Ordering::Relaxed);
                        return Ok(());
                    }
                    ErrorClass::RefreshToken | ErrorClass::CheckToken
                        if ctx.uses_tokens && !refreshed =>
                    {
                        ctx.note_success();
                        let current = token.clone();
                        let bad = match e.class {
                            ErrorClass::RefreshToken => true,
                            _ => match current.as_ref() {
                                Some(t) => match check_token(ctx, t).await {
                                    Ok(TokenCheck::Valid { .. }) => false,
                                    Ok(_) => true,
                                    Err(f) => {
                                        return settle_failure(ctx, row, f, in_doubt, release)
                                    }
                                },
                                None => true,
                            },
                        };
                        if !bad {
                            // The token is fine: the code is about this message.
                            return settle_failure(
                                ctx,
                                row,
                                CallFailure::Provider(e),
                                in_doubt,
                                release,
                            );
                        }
                        refreshed = true;
                        if !in_doubt {
                            ctx.writer.post(WriteOp::MarkPending {
                                row_id: row.id,
                                code: e.code.clone(),
                                message: format!("token refused ({}); buying a new one", e.message),
                                release: release.clone(),
                            })?;
                        }
                        match ensure_token(ctx, row, current.as_ref()).await {
                            Ok((t, b)) => {
                                ctx.counters
                                    .tokens_refreshed
                                    .fetch_add(1, Ordering::Relaxed);
                                token = Some(t);
                                bought = b;
                            }
                            Err(f) => return settle_failure(ctx, row, f, in_doubt, None),
                        }
                    }
                    _ => {
                        return settle_failure(
                            ctx,
                            row,
                            CallFailure::Provider(e),
                            in_doubt,
                            release,
                        )
                    }
                }
            }
        }
    }
}

/// `--in-doubt hold`: leave the row `in_doubt`, with why, for an operator.
fn hold(ctx: &Ctx, row: &WorkRow, code: &str, why: &str) -> Result<(), StoreError> {
    ctx.writer.post(WriteOp::MarkInDoubt {
        row_id: row.id,
        code: code.to_string(),
        message: format!("{why}; held (--in-doubt hold)"),
    })?;
    ctx.counters.held_in_doubt.fetch_add(1, Ordering::Relaxed);
    Ok(())
}

/// What a lookup by tracking id said about a row in doubt.
enum Lookup {
    /// The provider has the message: the row is sent, nothing is resent.
    Found,
    /// The provider has no message under our key: the earlier attempt did
    /// not land, so sending is no repeat.
    Absent,
    /// The lookup failed: the row stays in doubt and the policy decides.
    Unknown,
}

/// Look a row in doubt up by its tracking id; a found message is recorded
/// as sent. Only called when the provider offers the lookup.
async fn reconcile(ctx: &Ctx, row: &WorkRow) -> Result<Lookup, StoreError> {
    let oa = &ctx.campaign.oa_id;
    let found = call_with_retry(ctx, || {
        ctx.provider.find_by_tracking_id(oa, &row.tracking_id)
    })
    .await;
    match found {
        Ok(Some(info)) => {
            ctx.writer.post(WriteOp::MarkSent {
                row_id: row.id,
                msg_id: Some(info.msg_id),
                resent_after_doubt: false,
                provider_quota: None,
            })?;
            ctx.counters.sent.fetch_add(1, Ordering::Relaxed);
            ctx.counters
                .reconciled_by_lookup
                .fetch_add(1, Ordering::Relaxed);
            tracing::debug!(phone = %mask(&row.phone), line = row.line, "in doubt, found by lookup: sent");
            Ok(Lookup::Found)
        }
        Ok(None) => {
            tracing::debug!(phone = %mask(&row.phone), line = row.line, "in doubt, not found by lookup: sending");
            Ok(Lookup::Absent)
        }
        Err(CallFailure::Store(e)) => Err(e),
        Err(_) => Ok(Lookup::Unknown),
    }
}

/// Record how a row ended when it did not end in `sent`.
fn settle_failure(
    ctx: &Ctx,
    row: &WorkRow,
    failure: CallFailure,
    in_doubt: bool,
    release: Option<QuotaKey>,
) -> Result<(), StoreError> {
    let e = match failure {
        CallFailure::Stopped => return Ok(()),
        CallFailure::Store(e) => return Err(e),
        CallFailure::Budget(e) => {
            ctx.counters.deferred.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(phone = %mask(&row.phone), line = row.line, "giving up for this run: {e}");
            return Ok(());
        }
        CallFailure::Provider(e) => e,
    };
    let back_to_pending = |ctx: &Ctx| -> Result<(), StoreError> {
        if !in_doubt {
            ctx.writer.post(WriteOp::MarkPending {
                row_id: row.id,
                code: e.code.clone(),
                message: e.message.clone(),
                release: release.clone(),
            })?;
        }
        Ok(())
    };
    match e.class {
        ErrorClass::PauseQuota => {
            back_to_pending(ctx)?;
            let key = ctx.quota_key();
            ctx.writer
                .post(WriteOp::QuotaExhausted { quota: key.clone() })?;
            ctx.stop.request(
                StopReason::Quota,
                format!(
                    "provider: {} (code {}). {}",
                    e.message,
                    e.code,
                    quota_message(&key)
                ),
            );
        }
        ErrorClass::AbortAuth => {
            back_to_pending(ctx)?;
            ctx.stop.request(
                StopReason::Auth,
                format!(
                    "the provider rejected the credentials: {} (code {}). Check --api-key / ZNS_API_KEY and --oa-id",
                    e.message, e.code
                ),
            );
        }
        ErrorClass::AbortConfig => {
            back_to_pending(ctx)?;
            ctx.stop.request(
                StopReason::Config,
                format!(
                    "the provider refused the campaign setup: {} (code {}). Check --template-id, --oa-id and the provider account",
                    e.message, e.code
                ),
            );
        }
        ErrorClass::Retry => {
            // Only reached through token calls that ran out of attempts.
            ctx.counters.deferred.fetch_add(1, Ordering::Relaxed);
        }
        _ => {
            // Permanent for this recipient. If an earlier attempt is in
            // doubt the message may still have gone out: keep the unit.
            ctx.writer.post(WriteOp::MarkFailed {
                row_id: row.id,
                code: e.code.clone(),
                message: e.message.clone(),
                release: if in_doubt { None } else { release },
            })?;
            ctx.counters.failed.fetch_add(1, Ordering::Relaxed);
            tracing::info!(phone = %mask(&row.phone), line = row.line, code = %e.code, "failed: {}", e.message);
        }
    }
    Ok(())
}

fn quota_message(key: &QuotaKey) -> String {
    format!(
        "daily quota for OA {} used up on {} (Asia/Ho_Chi_Minh); the next quota day starts {}",
        key.oa_id,
        key.day,
        quota::fmt_local(quota::next_day_start(quota::now()))
    )
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
        QuotaKey {
            account: self.account.clone(),
            oa_id: self.campaign.oa_id.clone(),
            day: quota::today_key(),
        }
    }

    fn token_key(&self, phone: &str) -> TokenKey {
        TokenKey {
            account: self.account.clone(),
            oa_id: self.campaign.oa_id.clone(),
            phone: phone.to_string(),
            token_type: self.campaign.token_type.clone(),
        }
    }

    fn usable(&self, t: &JourneyToken) -> bool {
        let margin =
            time::Duration::try_from(self.opts.token_margin).unwrap_or(time::Duration::ZERO);
        t.status.as_deref() != Some("N") && t.expires_at > quota::now() + margin
    }

    fn backoff(&self, attempt: u32, retry_after: Option<Duration>) -> Duration {
        let exp = self
            .opts
            .backoff_base
            .saturating_mul(1u32 << attempt.saturating_sub(1).min(16))
            .min(self.opts.backoff_cap);
        // Jitter over the upper half spreads retries without starving them.
        let jittered = exp.mul_f64(rand::rng().random_range(0.5..=1.0));
        match retry_after {
            Some(ra) => jittered.max(ra.min(Duration::from_secs(300))),
            None => jittered,
        }
    }

    /// Inside the send window (or none set): true. Outside: with --wait,
    /// sleep until it opens (false if stopped meanwhile); else stop the run.
    async fn window_open(&self) -> bool {
        let Some(w) = self.opts.send_window else {
            return true;
        };
        loop {
            let now = quota::now();
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
        self.saw_failure.store(true, Ordering::Relaxed);
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

    fn stored_token(&self, key: &TokenKey) -> Result<Option<JourneyToken>, StoreError> {
        match self.reader.lock() {
            Ok(store) => store.token(key),
            Err(_) => Err(StoreError::WriterGone("token reader lock poisoned".into())),
        }
    }

    /// One lock per phone while a token is bought for it.
    async fn lock_phone(&self, phone: &str) -> PhoneLock<'_> {
        let lock = {
            let mut map = self.token_locks.lock().unwrap_or_else(|p| p.into_inner());
            map.entry(phone.to_string()).or_default().clone()
        };
        let (guard, waited) = match lock.clone().try_lock_owned() {
            Ok(g) => (g, false),
            Err(_) => (lock.clone().lock_owned().await, true),
        };
        PhoneLock {
            ctx: self,
            phone: phone.to_string(),
            lock,
            guard: Some(guard),
            waited,
        }
    }
}

struct PhoneLock<'a> {
    ctx: &'a Ctx,
    phone: String,
    lock: Arc<tokio::sync::Mutex<()>>,
    guard: Option<tokio::sync::OwnedMutexGuard<()>>,
    /// Another row held the lock first (and may have bought a token).
    waited: bool,
}

impl Drop for PhoneLock<'_> {
    fn drop(&mut self) {
        self.guard.take();
        let mut map = self
            .ctx
            .token_locks
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        // Only the map and we hold it: nobody waits, so the entry can go.
        if Arc::strong_count(&self.lock) == 2 {
            map.remove(&self.phone);
        }
    }
}

/// A token just bought for a row and not stored yet. Its phone stays
/// locked until it is stored, so no other row of this run buys another.
/// Usually stored with the row's `in_flight` mark (see [`save_bought`] for
/// the other cases).
struct Bought<'a> {
    key: TokenKey,
    token: JourneyToken,
    lock: PhoneLock<'a>,
}

/// A bought token is stored: count it (the caller then lets the phone go).
fn token_stored(ctx: &Ctx, phone: &str) {
    ctx.counters.tokens_created.fetch_add(1, Ordering::Relaxed);
    tracing::debug!(phone = %mask(phone), "journey token bought");
}

/// Store a token bought for the row and not stored yet (the row is not
/// claimed in this attempt after all): it was paid for.
async fn save_bought(
    ctx: &Ctx,
    row: &WorkRow,
    bought: &mut Option<Bought<'_>>,
) -> Result<(), StoreError> {
    let Some(Bought { key, token, lock }) = bought.take() else {
        return Ok(());
    };
    ctx.writer
        .write(WriteOp::SaveToken {
            key,
            token,
            row_id: row.id,
        })
        .await?;
    token_stored(ctx, &lock.phone);
    Ok(())
}

/// A usable token for the row's phone: the stored one, or a newly bought
/// one, returned with its [`Bought`] (the caller stores it before use).
/// `stale`: a token the provider refused, which must not be handed back.
async fn ensure_token<'a>(
    ctx: &'a Ctx,
    row: &WorkRow,
    stale: Option<&JourneyToken>,
) -> Result<(JourneyToken, Option<Bought<'a>>), CallFailure> {
    let is_stale = |t: &JourneyToken| stale.is_some_and(|s| s.journey_id == t.journey_id);
    if let Some(t) = &row.token {
        if stale.is_none() && ctx.usable(t) {
            ctx.counters.tokens_reused.fetch_add(1, Ordering::Relaxed);
            return Ok((t.clone(), None));
        }
    }
    let lock = ctx.lock_phone(&row.phone).await;
    let key = ctx.token_key(&row.phone);
    // Another row may have bought one since this row was read (only
    // possible when a phone repeats, or after a refresh), or while we
    // waited for the lock.
    if ctx.repeated_phones || stale.is_some() || lock.waited {
        if let Some(t) = ctx.stored_token(&key)? {
            if ctx.usable(&t) && !is_stale(&t) {
                ctx.counters.tokens_reused.fetch_add(1, Ordering::Relaxed);
                return Ok((t, None));
            }
        }
    }
    let req = TokenRequest {
        oa_id: &ctx.campaign.oa_id,
        phone: &row.phone,
        token_type: &ctx.campaign.token_type,
    };
    let token = call_with_retry(ctx, || ctx.provider.create_token(&req)).await?;
    Ok((token.clone(), Some(Bought { key, token, lock })))
}

async fn check_token(ctx: &Ctx, token: &JourneyToken) -> Result<TokenCheck, CallFailure> {
    call_with_retry(ctx, || ctx.provider.check_token(&ctx.campaign.oa_id, token)).await
}

/// A provider call that is safe to repeat (token calls), retried on
/// transient errors with backoff, under the rate limit.
async fn call_with_retry<T, F, Fut>(ctx: &Ctx, mut call: F) -> Result<T, CallFailure>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, ProviderError>>,
{
    let mut attempt = 0u32;
    loop {
        attempt += 1;
        if let Some(limiter) = &ctx.limiter {
            limiter.until_ready().await;
        }
        if ctx.stop.is_set() {
            return Err(CallFailure::Stopped);
        }
        let permit = tokio::select! {
            p = ctx.permits.acquire() => p.ok(),
            _ = ctx.stop.stopped() => None,
        };
        let Some(permit) = permit else {
            return Err(CallFailure::Stopped);
        };
        ctx.counters.requests.fetch_add(1, Ordering::Relaxed);
        let result = call().await;
        drop(permit);
        match result {
            Ok(v) => {
                ctx.note_success();
                return Ok(v);
            }
            Err(e) if e.class == ErrorClass::Retry => {
                ctx.note_transient_failure(&e);
                if attempt >= ctx.opts.max_attempts {
                    return Err(CallFailure::Budget(e));
                }
                ctx.counters.retries.fetch_add(1, Ordering::Relaxed);
                ctx.counters.retrying_now.fetch_add(1, Ordering::Relaxed);
                let woke = ctx.stop.sleep(ctx.backoff(attempt, e.retry_after)).await;
                ctx.counters.retrying_now.fetch_sub(1, Ordering::Relaxed);
                if !woke {
                    return Err(CallFailure::Stopped);
                }
            }
            Err(e) => {
                ctx.note_success();
                return Err(CallFailure::Provider(e));
            }
        }
    }
}
