//! Delivery status end to end: the real binary sends a campaign through a
//! sandbox on loopback, the sandbox posts protocol-true callbacks to a real
//! `zns-batch serve` (127.0.0.1:0, real SQLite), and `report`/`status` show
//! what the ledger holds. Also: faults (duplicates, shuffling, callbacks
//! before the send is committed), kill -9 of `serve` in a burst, the
//! template-disabled stop, and eSMS's status call for `reconcile`.

mod common;

use std::time::{Duration, Instant};

use common::*;
use zns_batch::provider::ProviderKind;
use zns_batch::sandbox::{CallbackSettings, Sandbox};

const APP_ID: &str = "app-delivery-51";
const ZALO_SECRET: &str = "zalo-oa-secret-DO-NOT-LEAK-a81f";
const HOOK_TOKEN: &str = "hook-token-DO-NOT-LEAK-c3d9";
const TEMPLATE: &str = "246810";

/// `zalo_app_id` (and `public_url` when given) in ./zns-batch.toml, which
/// both `serve` and `run` read.
fn write_config(env: &Env, public_url: Option<&str>) {
    let mut text = format!("zalo_app_id = \"{APP_ID}\"\n");
    if let Some(u) = public_url {
        text.push_str(&format!("public_url = \"{u}\"\n"));
    }
    std::fs::write(env.path("zns-batch.toml"), text).unwrap();
}

/// Start `serve` on `listen` (port 0: a free one) with the test's secrets.
async fn serve(env: &Env, listen: &str) -> ServeHarness {
    ServeOptions::default()
        .listen(listen)
        .envs(&[
            ("ZNS_ZALO_OA_SECRET", ZALO_SECRET),
            ("ZNS_WEBHOOK_TOKEN", HOOK_TOKEN),
        ])
        .start(env)
        .await
}

/// A test folder with the config, and `serve` on a free port in it.
async fn serving() -> (Env, ServeHarness) {
    let env = Env::new();
    write_config(&env, None);
    let s = serve(&env, "127.0.0.1:0").await;
    (env, s)
}

/// Where the sandbox of protocol `p` posts its callbacks.
fn hook_url(p: ProviderKind, base: &str) -> String {
    match p {
        ProviderKind::Zalo => format!("{base}/webhooks/zalo"),
        ProviderKind::Esms => format!("{base}/webhooks/esms/{HOOK_TOKEN}"),
        _ => format!("{base}/webhooks/etelecom/{HOOK_TOKEN}"),
    }
}

/// A sandbox whose callbacks go to `serve` (eSMS: to the send's
/// `CallbackUrl`, which the run fills), signed with the test's Zalo secrets.
async fn sandbox_to(
    p: ProviderKind,
    base: &str,
    tweak: impl FnOnce(&mut CallbackSettings),
) -> Sandbox {
    let mut cb = CallbackSettings {
        delay: Duration::from_millis(50),
        attempts: 8,
        backoff: Duration::from_millis(200),
        concurrency: 16,
        ..CallbackSettings::default()
    };
    tweak(&mut cb);
    let url = (p != ProviderKind::Esms).then(|| hook_url(p, base));
    sandbox(p, move |c| {
        c.callback_url = url;
        c.callbacks = cb;
        c.zalo_app_id = APP_ID.into();
        c.zalo_oa_secret = ZALO_SECRET.into();
    })
    .await
}

/// A run whose environment carries the webhook token (for eSMS's CallbackUrl).
async fn run_with_token(env: &Env, argv: &[String]) -> Run {
    let mut cmd = command(env, argv);
    cmd.env("ZNS_WEBHOOK_TOKEN", HOOK_TOKEN);
    run_with(cmd).await
}

/// A run of `rows` rows through `sb`, its callbacks (eSMS: the CallbackUrl
/// the run sends) going to serve at `base`.
async fn run_calling_back(
    env: &Env,
    sb: &Sandbox,
    p: ProviderKind,
    base: &str,
    campaign: &str,
    rows: u64,
    extra: &[&str],
) -> Run {
    let csv = env.path("c.csv");
    write_csv(&csv, 0, rows as usize);
    let mut argv = run_args(&csv, campaign, sb, p, extra);
    argv.extend(args(&["--callback-url", &hook_url(p, base)]));
    run_with_token(env, &argv).await
}

/// Callbacks the sandbox makes for `n` messages: Zalo reports deliveries
/// only (every tenth message is not delivered), the others every outcome.
fn expected_callbacks(p: ProviderKind, n: u64) -> u64 {
    match p {
        ProviderKind::Zalo => n - n / 10,
        _ => n,
    }
}

/// Wait until the sandbox has had `n` callbacks acknowledged.
async fn wait_acknowledged(sb: &Sandbox, n: u64, limit: Duration) {
    let t0 = Instant::now();
    loop {
        let s = sb.stats_summary();
        if s.callbacks_acknowledged >= n {
            return;
        }
        assert!(
            t0.elapsed() < limit,
            "{} of {n} callbacks acknowledged ({} given up) after {limit:?}",
            s.callbacks_acknowledged,
            s.callbacks_given_up
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// (received, failed, rows with no status) among the report's sent rows.
fn delivery_tally(rows: &[serde_json::Value]) -> (u64, u64, u64) {
    let mut t = (0, 0, 0);
    for r in rows.iter().filter(|r| r["state"] == "sent") {
        match r["delivery_status"].as_str() {
            Some("received") | Some("seen") => {
                assert!(r["delivery_time"].is_string(), "a time: {r}");
                t.0 += 1
            }
            Some("failed_delivery") => t.1 += 1,
            _ => t.2 += 1,
        }
    }
    t
}

/// Delivery events per message id in the ledger: (events, most for one id).
fn delivery_events(env: &Env) -> (u64, u64) {
    let db = rusqlite::Connection::open(env.state()).unwrap();
    db.query_row(
        "SELECT COUNT(*), COALESCE(MAX(n), 0) FROM \
         (SELECT COUNT(*) AS n FROM delivery_events WHERE kind = 'delivery' GROUP BY msg_id)",
        [],
        |r| Ok((r.get::<_, i64>(0)? as u64, r.get::<_, i64>(1)? as u64)),
    )
    .unwrap()
}

fn assert_no_secret(what: &str, text: &str) {
    for s in [HOOK_TOKEN, ZALO_SECRET, KEY, SECRET] {
        assert!(!text.contains(s), "{what} shows a secret");
    }
}

fn state_bytes(env: &Env) -> String {
    let mut all = String::new();
    for suffix in ["", "-wal"] {
        let p = format!("{}{suffix}", env.state().display());
        if let Ok(b) = std::fs::read(p) {
            all.push_str(&String::from_utf8_lossy(&b));
        }
    }
    all
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_provider_end_to_end_through_serve() {
    const N: u64 = 1000;
    for p in [
        ProviderKind::Zalo,
        ProviderKind::Esms,
        ProviderKind::Etelecom,
    ] {
        let (env, s) = serving().await;
        // eSMS: the run fills CallbackUrl from public_url and the token.
        write_config(&env, Some(&s.base));
        let sb = sandbox_to(p, &s.base, |_| {}).await;
        let csv = env.path("c.csv");
        write_csv(&csv, 0, N as usize);
        let r = run_with_token(&env, &run_args(&csv, "d", &sb, p, &["--concurrency", "32"])).await;
        assert_eq!(r.code, 0, "{p}: {r}");
        assert_no_secret("run output", &format!("{}{}", r.stdout, r.stderr));

        let expected = expected_callbacks(p, N);
        wait_acknowledged(&sb, expected, Duration::from_secs(90)).await;
        let stats = sb.stats_summary();
        assert_eq!(stats.callbacks_given_up, 0, "{p}");

        let rows = report_json(&env, "d").await;
        assert_eq!(rows.len(), N as usize);
        let (received, failed, none) = delivery_tally(&rows);
        // The sandbox delivers all but every tenth message.
        assert_eq!(received, N - N / 10, "{p}: received");
        assert_eq!(received + failed, stats.callbacks_acknowledged, "{p}");
        match p {
            // Zalo has no failure event: those rows stay without a status.
            ProviderKind::Zalo => assert_eq!((failed, none), (0, N / 10), "{p}"),
            _ => assert_eq!((failed, none), (N / 10, 0), "{p}"),
        }
        assert_eq!(delivery_events(&env), (expected, 1), "{p}: once each");
        if p == ProviderKind::Esms {
            // error_info's code and message reach the report.
            for r in rows
                .iter()
                .filter(|r| r["delivery_status"] == "failed_delivery")
            {
                let why = r["delivery_error"].as_str().unwrap_or_default();
                assert!(why.starts_with("-114: "), "{r}");
            }
        }

        let r = run(&env, &args(&["status"])).await;
        assert_eq!(r.code, 0, "{r}");
        assert!(
            r.stdout.contains(&format!(
                "delivery of {N} sent: received {received}, seen 0, failed {failed}, no status yet {none}"
            )),
            "{p}: {r}"
        );
        let r = run(&env, &args(&["report", "d"])).await;
        assert!(
            r.stdout.lines().next().unwrap().ends_with("delivery_error"),
            "{r}"
        );
        assert_no_secret("report", &r.stdout);
        assert!(!state_bytes(&env).contains(HOOK_TOKEN), "{p}: token stored");
        s.kill_9().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn duplicated_shuffled_and_early_callbacks_give_the_same_ledger() {
    const N: u64 = 300;
    for p in [ProviderKind::Esms, ProviderKind::Zalo] {
        let (env, s) = serving().await;
        // No delay: a callback may outrun the commit of its send reply.
        let sb = sandbox_to(p, &s.base, |c| {
            c.delay = Duration::ZERO;
            c.duplicate = true;
            c.out_of_order = 40;
        })
        .await;
        let r = run_calling_back(&env, &sb, p, &s.base, "x", N, &["--concurrency", "16"]).await;
        assert_eq!(r.code, 0, "{p}: {r}");
        let expected = expected_callbacks(p, N);
        // Each callback twice.
        wait_acknowledged(&sb, 2 * expected, Duration::from_secs(90)).await;
        let rows = report_json(&env, "x").await;
        let (received, failed, _) = delivery_tally(&rows);
        assert_eq!(received, N - N / 10, "{p}");
        assert_eq!(received + failed, expected, "{p}");
        assert_eq!(
            delivery_events(&env),
            (expected, 1),
            "{p}: repeats stored once"
        );
        s.kill_9().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_of_serve_in_a_burst_loses_and_doubles_nothing() {
    const N: u64 = 5000;
    let p = ProviderKind::Esms;
    let (env, s) = serving().await;
    let addr = s.addr.clone();
    let sb = sandbox_to(p, &s.base, |c| {
        c.delay = Duration::from_millis(500);
        c.burst = true;
        c.concurrency = 64;
        // Generous: the restart must come within the retries.
        c.attempts = 30;
        c.backoff = Duration::from_millis(100);
    })
    .await;
    let r = run_calling_back(&env, &sb, p, &s.base, "k", N, &["--concurrency", "64"]).await;
    assert_eq!(r.code, 0, "{r}");

    // Kill serve in the middle of the burst.
    let t0 = Instant::now();
    while sb.stats_summary().callbacks_acknowledged < N / 4 {
        assert!(
            t0.elapsed() < Duration::from_secs(60),
            "burst did not start"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    s.kill_9().await;
    let acknowledged_before = sb.stats_summary().callbacks_acknowledged;
    assert!(acknowledged_before < N, "killed too late to test anything");
    tokio::time::sleep(Duration::from_millis(300)).await;
    let s = serve(&env, &addr).await;
    wait_acknowledged(&sb, N, Duration::from_secs(120)).await;
    let stats = sb.stats_summary();
    assert_eq!(stats.callbacks_given_up, 0);
    assert_eq!(
        delivery_events(&env),
        (N, 1),
        "every acknowledged callback once"
    );
    let rows = report_json(&env, "k").await;
    let (received, failed, none) = delivery_tally(&rows);
    assert_eq!((received, failed, none), (N - N / 10, N / 10, 0));
    assert_eq!(integrity(&env.state()), "ok");
    s.kill_9().await;
}

/// Post a signed `change_template_status` for the campaigns' template.
async fn template_status(s: &ServeHarness, new_status: &str) {
    let ts = (time::OffsetDateTime::now_utc().unix_timestamp_nanos() / 1_000_000).to_string();
    let body = serde_json::json!({"event_name": "change_template_status", "oa_id": OA,
        "app_id": APP_ID, "template_id": TEMPLATE,
        "status": {"prev_status": "ENABLE", "new_status": new_status},
        "reason": "low quality", "timestamp": ts})
    .to_string();
    let signature = zalo_signature(APP_ID, &body, &ts, ZALO_SECRET);
    assert_eq!(s.zalo(&body, Some(signature)).await, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_disabled_template_pauses_the_run_and_refuses_a_start() {
    let p = ProviderKind::Zalo;
    let (env, s) = serving().await;
    let sb = sandbox(p, |_| {}).await;
    let csv = env.path("c.csv");
    write_csv(&csv, 0, 2000);
    let argv = run_args(&csv, "t", &sb, p, &["--rate", "100", "--concurrency", "4"]);
    let mut child = spawn_captured(command(&env, &argv));
    wait_accepted(&sb, &mut child, 50, Duration::from_secs(60)).await;
    template_status(&s, "DISABLE").await;
    let t0 = Instant::now();
    let r = finish(child).await;
    assert!(t0.elapsed() < Duration::from_secs(10), "stopped promptly");
    assert_eq!(r.code, 3, "paused: {r}");
    let j = r.json();
    let reason = j.to_string();
    assert!(
        reason.contains("template 246810 is DISABLE") && reason.contains("resume"),
        "{reason}"
    );
    let sent = sb.stats_summary().accepted;
    assert!(sent < 2000, "stopped before the end: {sent}");

    // Still disabled: a resume sends nothing.
    let r = run(&env, &resume_args("t", &sb, p, &[])).await;
    assert_eq!(r.code, 3, "{r}");
    assert!(r.stdout.contains("DISABLE"), "{r}");
    assert_eq!(sb.stats_summary().accepted, sent);

    // Enabled again: the resume finishes.
    template_status(&s, "ENABLE").await;
    let r = run(&env, &resume_args("t", &sb, p, &["--rate", "2000"])).await;
    assert_eq!(r.code, 0, "{r}");
    assert_eq!(sb.stats_summary().accepted, 2000);
    s.kill_9().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn esms_reconcile_asks_the_status_call_for_missed_callbacks() {
    let p = ProviderKind::Esms;
    let env = Env::new();
    // No callbacks at all: nobody listens.
    let sb = sandbox(p, |_| {}).await;
    let csv = env.path("c.csv");
    write_csv(&csv, 0, 50);
    let r = run(&env, &run_args(&csv, "e", &sb, p, &[])).await;
    assert_eq!(r.code, 0, "{r}");
    // The sandbox's delivery takes a second.
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let mut a = args(&["reconcile", "e"]);
    a.extend(provider_args(&sb, p));
    let r = run(&env, &a).await;
    assert_eq!(r.code, 0, "{r}");
    assert_eq!(sb.stats_summary().get_message_calls, 50);
    let rows = report_json(&env, "e").await;
    let (received, failed, none) = delivery_tally(&rows);
    assert_eq!((received, failed, none), (45, 5, 0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_callback_url_is_refused_naming_the_flag_without_echoing_it() {
    let (env, sb, csv, _) = setup(ProviderKind::Esms, "c.csv", 3, |_| {}).await;
    let bogus = format!("ftp://host/{HOOK_TOKEN}");
    let r = run(
        &env,
        &run_args(
            &csv,
            "b",
            &sb,
            ProviderKind::Esms,
            &["--callback-url", &bogus],
        ),
    )
    .await;
    r.assert_usage("--callback-url");
    assert_no_secret("error", &r.stderr);

    // public_url without the token: eSMS would report to a 404.
    write_config(&env, Some("https://zns.example.vn"));
    let r = run(&env, &run_args(&csv, "b", &sb, ProviderKind::Esms, &[])).await;
    r.assert_usage("ZNS_WEBHOOK_TOKEN");
    assert_eq!(sb.stats_summary().accepted, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn esms_reconcile_does_not_ask_about_rows_a_callback_answered() {
    let p = ProviderKind::Esms;
    let (env, s) = serving().await;
    let sb = sandbox_to(p, &s.base, |_| {}).await;
    let r = run_calling_back(&env, &sb, p, &s.base, "e", 40, &[]).await;
    assert_eq!(r.code, 0, "{r}");
    wait_acknowledged(&sb, 40, Duration::from_secs(60)).await;
    let mut a = args(&["reconcile", "e"]);
    a.extend(provider_args(&sb, p));
    let r = run(&env, &a).await;
    assert_eq!(r.code, 0, "{r}");
    assert_eq!(sb.stats_summary().get_message_calls, 0, "{r}");
    let (received, failed, none) = delivery_tally(&report_json(&env, "e").await);
    assert_eq!((received, failed, none), (36, 4, 0));
    s.kill_9().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_embedded_sandbox_reports_delivery_when_told_where() {
    let (env, s) = serving().await;
    let csv = env.path("c.csv");
    write_csv(&csv, 0, 20);
    let mut argv = run_head(&csv, "m");
    argv.extend(args(&[
        "--provider",
        "zalo",
        "--embedded-sandbox",
        "--callback-url",
        &hook_url(ProviderKind::Zalo, &s.base),
    ]));
    let mut cmd = command(&env, &argv);
    // Signed as serve checks: the config's app id, the OA secret's env.
    cmd.env("ZNS_ZALO_OA_SECRET", ZALO_SECRET);
    let r = run_with(cmd).await;
    assert_eq!(r.code, 0, "{r}");
    assert_no_secret("run output", &format!("{}{}", r.stdout, r.stderr));
    // The run waits for the embedded sandbox's last callbacks.
    let (received, failed, none) = delivery_tally(&report_json(&env, "m").await);
    assert_eq!((received, failed, none), (18, 0, 2));
    s.kill_9().await;
}
