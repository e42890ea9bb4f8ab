//! Each step of a row's way through a run, on a real state file and a real
//! sandbox server on 127.0.0.1.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use super::row::{
    after_error, after_success, claim, gate_before_token, settle_earlier_doubt, template_values,
    Attempts,
};
use super::{Accounts, Ctx, InDoubtPolicy, RunCounters, RunOptions};
use crate::campaign::{open_or_import, CampaignSpec};
use crate::csv_input::CsvOptions;
use crate::engine::stop::{Stop, StopReason};
use crate::model::row_state::RowState;
use crate::provider::{self, ProviderKind, ProviderSettings, Secret};
use crate::sandbox::{Sandbox, SandboxConfig};
use crate::store::{Setback, Store, WorkRow, WriteOp};

const KEY: &str = "runner-test-key";

struct Harness {
    _dir: tempfile::TempDir,
    _sandbox: Sandbox,
    store: Store,
    ctx: Ctx,
}

/// A campaign of `rows` rows on a fresh state file, and a run context for
/// it against a sandbox of `kind`.
async fn harness(
    kind: ProviderKind,
    rows: usize,
    tweak: impl FnOnce(&mut RunOptions, &mut Option<i64>),
) -> Harness {
    let dir = tempfile::tempdir().unwrap();
    let csv = dir.path().join("c.csv");
    let mut text = String::from("phone,customer_name\n");
    for i in 0..rows {
        text.push_str(&format!("8491{i:07},Ánh {i}\n"));
    }
    std::fs::write(&csv, text).unwrap();
    let state = dir.path().join("s.sqlite");
    let mut store = Store::open(&state).unwrap();
    let mut opts = RunOptions::default();
    let mut min_interval = None;
    tweak(&mut opts, &mut min_interval);
    let (campaign, _, _) = open_or_import(
        &mut store,
        &CampaignSpec {
            name: "c",
            csv: &csv,
            template_id: "246810",
            token_type: "token_logistics_7",
            provider: kind.as_str(),
            base_url: None,
            oa_id: "1",
            in_doubt_policy: opts.in_doubt.as_str(),
            not_after_ms: None,
            min_interval_ms: min_interval,
            csv_options: &CsvOptions::default(),
            dedup_phones: true,
            interrupted: None,
            progress: None,
            template: None,
        },
    )
    .unwrap();
    let sandbox = Sandbox::start(
        "127.0.0.1:0".parse().unwrap(),
        SandboxConfig {
            protocol: kind,
            api_key: KEY.into(),
            ..SandboxConfig::default()
        },
    )
    .await
    .unwrap();
    let provider = provider::build(ProviderSettings::new(
        kind,
        sandbox.base_url(),
        Secret::new(KEY),
    ))
    .unwrap();
    let (writer, _thread) = crate::store::Writer::start(&state).unwrap();
    let concurrency = opts.concurrency;
    let caps = provider.capabilities();
    let ctx = Ctx {
        uses_tokens: caps.tokens,
        lookup: caps.lookup_by_tracking_id,
        limiter: None,
        campaign,
        accounts: Accounts {
            tokens: "t".into(),
            quota: "q".into(),
        },
        provider,
        permits: tokio::sync::Semaphore::new(opts.concurrency),
        token_slots: tokio::sync::Semaphore::new(opts.concurrency),
        opts,
        writer: crate::store::GroupWriter::start(writer),
        reader: Mutex::new(Store::open(&state).unwrap()),
        stop: Arc::new(Stop::default()),
        counters: Arc::new(RunCounters::default()),
        repeated_phones: false,
        token_locks: Mutex::new(HashMap::new()),
        started: Instant::now(),
        last_success_ms: AtomicU64::new(0),
        window_wait_noted: AtomicBool::new(false),
        probation: Mutex::new(Some(super::failure::Probation::new(concurrency))),
        on_probation: AtomicBool::new(true),
        lease: None,
    };
    Harness {
        _dir: dir,
        _sandbox: sandbox,
        store,
        ctx,
    }
}

impl Harness {
    /// The campaign's counts once every write posted so far is committed:
    /// the writer commits in order, so a write (a no-op gate check of the
    /// open `row`) after them sees them.
    async fn counts_after_posted(&self, row: &WorkRow) -> crate::store::StateCounts {
        let gate = self.ctx.campaign.claim_gate(&row.phone);
        let op = WriteOp::CheckGate {
            row_id: row.id,
            gate,
        };
        self.ctx.writer.write(op).await.unwrap();
        self.store.state_counts(self.ctx.campaign.id).unwrap()
    }

    fn rows(&self) -> Vec<WorkRow> {
        self.store
            .open_rows_page(&self.ctx.campaign, "t", 0, 100, true)
            .unwrap()
    }

    fn state_of(&self, id: i64) -> String {
        self.ctx
            .reader
            .lock()
            .unwrap()
            .open_rows_page(&self.ctx.campaign, "t", id - 1, 1, true)
            .unwrap()
            .first()
            .filter(|r| r.id == id)
            .map(|r| r.state.as_str().to_string())
            .unwrap_or_else(|| "settled".into())
    }
}

#[tokio::test]
async fn a_fresh_row_is_taken_up_and_a_held_row_stays_held() {
    let h = harness(ProviderKind::Etelecom, 2, |o, _| {
        o.in_doubt = InDoubtPolicy::Hold
    })
    .await;
    let rows = h.rows();
    assert_eq!(
        settle_earlier_doubt(&h.ctx, &rows[0]).await.unwrap(),
        Some(false)
    );

    // An earlier run's request whose reply never came, no lookup, hold: held.
    let mut left = rows[1].clone();
    left.state = RowState::InFlight;
    assert_eq!(settle_earlier_doubt(&h.ctx, &left).await.unwrap(), None);
    assert_eq!(h.ctx.counters.held_in_doubt.load(Ordering::Relaxed), 1);
}

#[tokio::test]
async fn a_lookup_settles_an_earlier_doubt_before_any_policy() {
    // The sandbox provider looks messages up by tracking id; it has none.
    let h = harness(ProviderKind::Sandbox, 1, |o, _| {
        o.in_doubt = InDoubtPolicy::Hold
    })
    .await;
    let mut row = h.rows()[0].clone();
    row.state = RowState::InFlight;
    assert_eq!(
        settle_earlier_doubt(&h.ctx, &row).await.unwrap(),
        Some(false),
        "not there: sending is no repeat, whatever the policy"
    );
}

#[tokio::test]
async fn stored_data_that_does_not_fit_the_campaign_is_refused() {
    let h = harness(ProviderKind::Etelecom, 1, |_, _| {}).await;
    let row = &h.rows()[0];
    let keys = &h.ctx.campaign.template_keys;
    assert_eq!(
        template_values(keys, &row.data_json).unwrap(),
        vec!["Ánh 0".to_string()]
    );
    assert!(template_values(keys, "[]").is_err());
}

#[tokio::test]
async fn the_frequency_cap_settles_a_row_before_a_token_is_bought() {
    let day = 24 * 3600 * 1000;
    let h = harness(ProviderKind::Etelecom, 2, |_, cap| *cap = Some(day)).await;
    let rows = h.rows();
    // Nothing sent to the phone yet: the row goes on.
    assert!(!gate_before_token(&h.ctx, &rows[0]).await.unwrap());
    // A claim records a send to the phone; a second row to it is skipped.
    let mut first = Attempts::new(false);
    assert!(claim(&h.ctx, &rows[0], &mut first).await.unwrap().is_some());
    let mut twin = rows[1].clone();
    twin.phone = rows[0].phone.clone();
    assert!(gate_before_token(&h.ctx, &twin).await.unwrap());
    assert_eq!(h.ctx.counters.skipped.load(Ordering::Relaxed), 1);
}

#[tokio::test]
async fn a_claim_makes_the_row_in_flight_within_the_daily_quota() {
    let h = harness(ProviderKind::Etelecom, 2, |o, _| o.daily_quota = Some(1)).await;
    let rows = h.rows();
    let mut tries = Attempts::new(false);
    let key = claim(&h.ctx, &rows[0], &mut tries).await.unwrap();
    assert!(key.is_some());
    assert_eq!(h.state_of(rows[0].id), "in_flight");

    let mut tries = Attempts::new(false);
    assert!(claim(&h.ctx, &rows[1], &mut tries).await.unwrap().is_none());
    assert_eq!(h.ctx.stop.reason(), Some(StopReason::Quota));
    assert_eq!(h.state_of(rows[1].id), "pending", "not claimed: untouched");

    // Giving the unit back (the request never left) frees the quota again.
    h.ctx
        .writer
        .write(WriteOp::MarkPending(Setback::new(
            rows[0].id,
            "stopped",
            "stopped before the request left",
            key,
        )))
        .await
        .unwrap();
    assert_eq!(h.state_of(rows[0].id), "pending");
}

/// `row` claimed for its first attempt.
async fn first_attempt<'a>(ctx: &'a Ctx, row: &WorkRow) -> (Attempts<'a>, crate::store::QuotaKey) {
    let mut tries = Attempts::new(false);
    let key = claim(ctx, row, &mut tries).await.unwrap().unwrap();
    tries.number = 1;
    (tries, key)
}

/// `row`'s first attempt, answered by the provider with `e`.
async fn answered(ctx: &Ctx, row: &WorkRow, e: provider::ProviderError) {
    let (mut tries, key) = first_attempt(ctx, row).await;
    after_error(ctx, row, &mut tries, e, key).await.unwrap();
}

#[tokio::test]
async fn after_a_reply_the_row_is_sent_failed_or_waiting_again() {
    use crate::provider::{ErrorClass, ProviderError, SendOutcome};
    let h = harness(ProviderKind::Etelecom, 3, |o, _| o.max_attempts = 1).await;
    let rows = h.rows();
    let (tries, key) = first_attempt(&h.ctx, &rows[0]).await;
    after_success(&h.ctx, &rows[0], &tries, SendOutcome::default(), key).unwrap();
    let refused = ProviderError::new(ErrorClass::FailRow, "-118", "not on Zalo");
    answered(&h.ctx, &rows[1], refused).await;
    let busy = ProviderError::new(ErrorClass::Retry, "http_429", "slow down");
    answered(&h.ctx, &rows[2], busy).await;

    let counts = h.counts_after_posted(&rows[2]).await;
    assert_eq!((counts.sent, counts.failed, counts.pending), (1, 1, 1));
    assert_eq!(
        h.ctx.counters.deferred.load(Ordering::Relaxed),
        1,
        "out of attempts: waits for the next run"
    );
}

#[tokio::test]
async fn refusals_before_the_first_success_wait_and_a_replayed_send_ends_the_wait() {
    use crate::provider::{ErrorClass, ProviderError};
    let h = harness(ProviderKind::Etelecom, 2, |o, _| o.concurrency = 8).await;
    let rows = h.rows();
    // A refusal is held open while nothing has succeeded; then the provider
    // says it has the second row's message already: a success.
    let steps = [
        (
            ProviderError::new(ErrorClass::FailRow, "-118", "not on Zalo"),
            (0, 0, 2),
            "no success yet: held open",
        ),
        (
            ProviderError::new(ErrorClass::AlreadySent, "124", "duplicate RequestId"),
            (1, 1, 0),
            "the held refusal was the row's own after all",
        ),
    ];
    for (row, (e, sent_failed_pending, why)) in rows.iter().zip(steps) {
        answered(&h.ctx, row, e).await;
        let c = h.counts_after_posted(&rows[1]).await;
        assert_eq!((c.sent, c.failed, c.pending), sent_failed_pending, "{why}");
    }
}
