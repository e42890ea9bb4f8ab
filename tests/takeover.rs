//! Several `serve` processes on one ledger: one runner per campaign by a
//! lease, and a campaign taken over when its holder dies. Two real `serve`
//! processes on one SQLite file, and on one PostgreSQL database when
//! `ZNS_TEST_PG` names a server, the eTelecom-protocol sandbox on
//! 127.0.0.1, its delivery callbacks through a small forwarder that deals
//! them out to both processes (to the survivor alone after the kill).

mod common;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, Uri};
use common::*;
use zns_batch::provider::ProviderKind;
use zns_batch::sandbox::CallbackSettings;

const HOOK_TOKEN: &str = "hook-token-takeover-DO-NOT-LEAK-5e1a";
const ROWS: u64 = 5000;

/// Where the forwarder sends each callback: the next target in turn.
#[derive(Default)]
struct Targets {
    bases: Mutex<Vec<String>>,
    turn: AtomicU64,
    /// Callbacks answered 2xx, per target base.
    delivered: Mutex<std::collections::BTreeMap<String, u64>>,
    http: reqwest::Client,
}

async fn forward(
    State(t): State<Arc<Targets>>,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> StatusCode {
    let base = {
        let bases = t.bases.lock().unwrap();
        if bases.is_empty() {
            return StatusCode::SERVICE_UNAVAILABLE;
        }
        let i = t.turn.fetch_add(1, Ordering::Relaxed) as usize % bases.len();
        bases[i].clone()
    };
    let mut req = t.http.post(format!("{base}{uri}")).body(body);
    for (name, value) in headers.iter() {
        if name == "content-type" || name.as_str().starts_with("x-") {
            req = req.header(name, value);
        }
    }
    match req.send().await {
        Ok(r) => {
            if r.status().is_success() {
                *t.delivered.lock().unwrap().entry(base).or_default() += 1;
            }
            StatusCode::from_u16(r.status().as_u16()).unwrap_or(StatusCode::BAD_GATEWAY)
        }
        // The target is gone (killed): the sandbox retries, maybe elsewhere.
        Err(_) => StatusCode::BAD_GATEWAY,
    }
}

/// The forwarder on a free loopback port: its base URL.
async fn start_forwarder(targets: Arc<Targets>) -> String {
    let app = axum::Router::new()
        .fallback(axum::routing::post(forward))
        .with_state(targets);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    format!("http://{addr}")
}

async fn serve_on_shared_ledger(env: &Env) -> ServeHarness {
    start_web(env, &[("ZNS_WEBHOOK_TOKEN", HOOK_TOKEN)]).await
}

/// The web tests' config, paced at `rate` messages a second, with a short
/// lease (2 s) so a lapse is quick.
fn write_config(env: &Env, sb: &zns_batch::sandbox::Sandbox, rate: u32) {
    write_web_config(env, sb);
    let mut config = std::fs::read_to_string(env.path("zns-batch.toml")).unwrap();
    config.push_str(&format!("rate = {rate}\nlease_ttl = \"2s\"\n"));
    std::fs::write(env.path("zns-batch.toml"), config).unwrap();
}

/// The campaign's takeover entry in the audit log, as `serve` shows it,
/// once there is one (panics after `limit`).
async fn takeover_entry(web: &ServeHarness, campaign: &str, limit: Duration) -> serde_json::Value {
    let t0 = Instant::now();
    loop {
        let (_, audit) = web
            .get_json(&format!("/api/v1/audit?campaign={campaign}"))
            .await;
        let found = audit
            .as_array()
            .and_then(|all| all.iter().find(|e| e["action"] == "takeover").cloned());
        if let Some(e) = found {
            return e;
        }
        assert!(
            t0.elapsed() < limit,
            "no takeover recorded: {audit}\n{}",
            web.stderr_lines().join("\n")
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn ledger_count(env: &Env, sql: &str) -> i64 {
    env.ledger_i64(sql)
}

/// Wait for `check`, polling; panics with `what` after `limit`.
async fn wait_for(what: &str, limit: Duration, mut check: impl FnMut() -> bool) {
    let t0 = Instant::now();
    while !check() {
        assert!(t0.elapsed() < limit, "{what}: not after {limit:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// `rows` phones uploaded as `campaign` through `web` and started there;
/// back once `accepted` of them reached the sandbox.
async fn start_through(
    env: &Env,
    sb: &zns_batch::sandbox::Sandbox,
    web: &ServeHarness,
    campaign: &str,
    rows: u64,
    accepted: u64,
) {
    web.upload_and_start(env, campaign, rows as usize, &[])
        .await;
    wait_for(
        &format!("{accepted} accepted through A"),
        Duration::from_secs(60),
        || sb.stats_summary().accepted >= accepted,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_serve_s_campaign_is_finished_by_the_other_exactly_once() {
    killed_serve_finished_by_the_other(Env::new(), "SQLite").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_postgres_a_killed_serve_s_campaign_is_finished_by_the_other_exactly_once() {
    let test = "on_postgres_a_killed_serve_s_campaign_is_finished_by_the_other_exactly_once";
    let Some((env, _db)) = Env::postgres(test) else {
        return;
    };
    killed_serve_finished_by_the_other(env, "PostgreSQL").await;
}

async fn killed_serve_finished_by_the_other(env: Env, ledger: &str) {
    let targets = Arc::new(Targets::default());
    let forwarder = start_forwarder(targets.clone()).await;
    let sb = sandbox(ProviderKind::Etelecom, |c| {
        c.latency = Duration::from_millis(2);
        c.callback_url = Some(format!("{forwarder}/webhooks/etelecom/{HOOK_TOKEN}"));
        c.callbacks = CallbackSettings {
            delay: Duration::from_millis(50),
            attempts: 12,
            backoff: Duration::from_millis(100),
            concurrency: 16,
            ..CallbackSettings::default()
        };
    })
    .await;
    // Paced so the send lasts ~12 s.
    write_config(&env, &sb, 400);

    let a = serve_on_shared_ledger(&env).await;
    let b = serve_on_shared_ledger(&env).await;
    *targets.bases.lock().unwrap() = vec![a.base.clone(), b.base.clone()];
    let (a_pid, a_base) = (a.pid(), a.base.clone());

    start_through(&env, &sb, &a, "big", ROWS, 1500).await;

    // B refuses to start it while A runs, naming A's lease; so does the CLI.
    let (code, body) = b.post("/api/v1/campaigns/big/start").await;
    assert_eq!(code, 409, "{body}");
    let why = body["error"].as_str().unwrap_or_default();
    assert!(why.contains(&format!(":{a_pid}:")), "{why}");
    let mut cli = command(&env, &args(&["resume", "big"]));
    cli.env(API_KEY_ENV, KEY);
    let cli = run_with(cli).await;
    assert_eq!(cli.code, 2, "{cli}");
    assert!(
        cli.stderr
            .contains("being run by another zns-batch process")
            && cli.stderr.contains(&format!(":{a_pid}:"))
            && cli.stderr.contains("lease lapses at"),
        "{cli}"
    );
    let before_kill = targets.delivered.lock().unwrap().clone();

    // kill -9 mid-send: B carries on.
    let at_kill = sb.stats_summary().accepted;
    let killed = Instant::now();
    a.kill_9().await;
    *targets.bases.lock().unwrap() = vec![b.base.clone()];
    assert!(at_kill < ROWS, "A finished before the kill: {at_kill}");

    let takeover = takeover_entry(&b, "big", Duration::from_secs(20)).await;
    let taken_over_after = killed.elapsed();
    let detail = takeover["detail"].as_str().unwrap_or_default();
    assert!(
        detail.starts_with("taken over from ") && detail.contains(&format!(":{a_pid}:")),
        "{takeover}"
    );
    assert!(
        b.stderr_lines()
            .iter()
            .any(|l| l.contains("taken over from") && l.contains("big")),
        "the takeover is in B's log"
    );

    let done = b
        .wait_status("big", "finished", Duration::from_secs(90))
        .await;
    assert_eq!(done["counts"]["sent"], ROWS, "{done}");
    let finished_after = killed.elapsed();

    // Every row sent exactly once, as the sandbox counts.
    let stats = sb.stats();
    assert_eq!(stats.accepted, ROWS);
    assert_eq!(stats.deliveries.len() as u64, ROWS);
    assert!(stats.deliveries.values().all(|n| *n == 1));
    // The quota used is the messages, once each.
    assert_eq!(
        ledger_count(
            &env,
            "SELECT CAST(COALESCE(SUM(used), 0) AS BIGINT) FROM quota_days"
        ),
        ROWS as i64
    );
    assert_eq!(
        ledger_count(
            &env,
            "SELECT COUNT(*) FROM rows WHERE quota_day IS NOT NULL"
        ),
        ROWS as i64
    );
    // Nothing left holding the campaign.
    assert_eq!(ledger_count(&env, "SELECT COUNT(*) FROM leases"), 0);

    // Every callback in the ledger once, whichever process took it.
    wait_for(
        "every callback acknowledged",
        Duration::from_secs(90),
        || sb.stats_summary().callbacks_acknowledged >= ROWS,
    )
    .await;
    let s = sb.stats_summary();
    assert_eq!(s.callbacks_given_up, 0);
    assert_eq!(
        ledger_count(&env, "SELECT COUNT(*) FROM delivery_events"),
        ROWS as i64
    );
    assert_eq!(
        ledger_count(
            &env,
            "SELECT COUNT(*) FROM (SELECT msg_id FROM delivery_events GROUP BY msg_id HAVING COUNT(*) > 1) AS twice"
        ),
        0
    );
    let took =
        |m: &std::collections::BTreeMap<String, u64>, base: &str| m.get(base).copied().unwrap_or(0);
    assert!(
        took(&before_kill, &a_base) > 0 && took(&before_kill, &b.base) > 0,
        "both processes took callbacks before the kill: {before_kill:?}"
    );
    let rows = report_json(&env, "big").await;
    assert_eq!(rows.len() as u64, ROWS);
    assert!(
        rows.iter()
            .all(|r| r["state"] == "sent" && r["delivery_status"].is_string()),
        "every row sent with its delivery status"
    );
    eprintln!(
        "measured ({ledger}): {ROWS} rows, A killed at {at_kill} accepted; takeover recorded {:.1}s after the kill, \
         finished {:.1}s after it; callbacks before the kill {before_kill:?}, in all {:?}; detail: {detail}",
        taken_over_after.as_secs_f64(),
        finished_after.as_secs_f64(),
        targets.delivered.lock().unwrap()
    );
    b.stop_clean().await;
}

/// A holder on another machine (played by another lease host name): its
/// process cannot be looked at, so its campaign is taken over only once
/// its lease lapsed — about `lease_ttl` after its last heartbeat.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_holder_on_another_machine_is_taken_over_once_its_lease_lapses() {
    const N: u64 = 1000;
    let env = Env::new();
    let sb = sandbox(ProviderKind::Etelecom, |c| {
        c.latency = Duration::from_millis(2)
    })
    .await;
    write_config(&env, &sb, 200);
    let a = start_web(&env, &[("ZNS_LEASE_HOST", "machine-a")]).await;
    let b = start_web(&env, &[("ZNS_LEASE_HOST", "machine-b")]).await;
    start_through(&env, &sb, &a, "far", N, 200).await;
    let at_kill = sb.stats_summary().accepted;
    let killed = Instant::now();
    a.kill_9().await;
    let takeover = takeover_entry(&b, "far", Duration::from_secs(20)).await;
    let after = killed.elapsed();
    let detail = takeover["detail"].as_str().unwrap_or_default();
    assert!(
        detail.starts_with("taken over from machine-a:") && detail.ends_with("(its lease lapsed)"),
        "{takeover}"
    );
    assert!(takeover["actor"]
        .as_str()
        .unwrap_or_default()
        .starts_with("process:machine-b:"));
    // The last heartbeat was at most a third of the 2 s ttl before the kill.
    assert!(
        after >= Duration::from_millis(1300),
        "taken over {after:?} after the kill, before the lease lapsed"
    );
    let since_heartbeat: f64 = detail
        .split(" after ")
        .nth(1)
        .and_then(|s| s.split('s').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("{detail}"));
    assert!(since_heartbeat >= 2.0, "{detail}");
    let done = b
        .wait_status("far", "finished", Duration::from_secs(60))
        .await;
    assert_eq!(done["counts"]["sent"], N, "{done}");
    let stats = sb.stats();
    assert_eq!(stats.accepted, N);
    assert!(stats.deliveries.values().all(|n| *n == 1));
    eprintln!(
        "measured: holder on another machine killed at {at_kill} accepted; taken over {:.1}s after the kill ({detail})",
        after.as_secs_f64()
    );
    b.stop_clean().await;
}
