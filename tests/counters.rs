//! A campaign's counters (what `status`, the console's pages and
//! `/metrics` read, see src/store/counters.rs) against a full recount of
//! its rows and delivery events, after each step of real work: the real
//! binary, sandboxes on loopback, a real `serve` taking real callbacks.

mod common;

use std::time::{Duration, Instant};

use common::*;
use zns_batch::provider::ProviderKind;
use zns_batch::sandbox::{CallbackSettings, Faults, Sandbox};
use zns_batch::store::{Counters, MinuteCounts, Store};

/// The campaign's counters, after checking they equal a recount, and so do
/// the delivery chart's minutes (src/store/series.rs).
fn counted(env: &Env, campaign: &str, step: &str) -> Counters {
    counted_with_chart(env, campaign, step).0
}

/// The counters and the chart's minutes summed (sent, delivered, seen,
/// rows with a fee), each checked against a recount.
fn counted_with_chart(env: &Env, campaign: &str, step: &str) -> (Counters, [i64; 4]) {
    let store = Store::open(env.state()).unwrap();
    let c = store
        .find_campaign(campaign)
        .unwrap()
        .unwrap_or_else(|| panic!("{step}: no campaign `{campaign}`"));
    let kept = store.counters(c.id).unwrap();
    let recount = store.recount(c.id).unwrap();
    assert_eq!(kept, recount, "{step}: the counters are not a recount");
    let minutes = store.series_minutes(c.id).unwrap();
    let recounted = store.recount_series(c.id).unwrap();
    assert_eq!(
        minutes, recounted,
        "{step}: the chart's minutes are not a recount"
    );
    let sum = |f: fn(&MinuteCounts) -> i64| minutes.iter().map(f).sum::<i64>();
    let totals = [
        sum(|m| m.sent),
        sum(|m| m.delivered),
        sum(|m| m.seen),
        sum(|m| m.with_fee),
    ];
    // Every row marked sent is in the chart's sends.
    assert_eq!(totals[0], kept.states.sent as i64, "{step}: {minutes:?}");
    (kept, totals)
}

/// A CSV of `good` rows, then 4 bad phones and 3 repeats of earlier phones
/// (in other formats). Returns how many lines it has after the header.
fn csv_with_rejects(env: &Env, good: usize) -> (std::path::PathBuf, u64) {
    let path = env.path("c.csv");
    write_csv(&path, 0, good);
    let mut text = std::fs::read_to_string(&path).unwrap();
    for bad in ["12345", "not-a-phone", "0000", "+1 555 0100"] {
        text.push_str(&format!("{bad},Trần Bình,100.000 đ\n"));
    }
    for i in [0, 5, 9] {
        text.push_str(&format!("0{},Lê Lặp,200.000 đ\n", &phone(i)[2..]));
    }
    std::fs::write(&path, text).unwrap();
    (path, good as u64 + 7)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn counters_equal_a_recount_through_import_failures_kill_9_and_in_doubt_decisions() {
    const GOOD: usize = 400;
    let p = ProviderKind::Etelecom;
    let (env, sb) = (
        Env::new(),
        sandbox(p, |c| {
            c.faults = Faults {
                drop_reply: 0.05,
                ..Faults::default()
            };
            c.unknown_phone_suffixes = vec!["7".into()];
            c.latency = Duration::from_millis(2);
        })
        .await,
    );
    let (csv, lines) = csv_with_rejects(&env, GOOD);

    // Import (rejects and repeats), no send.
    let r = run(&env, &run_args(&csv, "k", &sb, p, &["--dry-run"])).await;
    assert_eq!(r.code, 0, "{r}");
    let k = counted(&env, "k", "import");
    assert_eq!((k.states.total, k.states.rejected), (lines, 7));
    assert_eq!(k.states.pending, GOOD as u64);

    // A run killed mid-way: rows in flight, tokens bought, some sent.
    let mut child = spawn_captured(command(
        &env,
        &run_args(
            &csv,
            "k",
            &sb,
            p,
            &["--in-doubt", "hold", "--concurrency", "8"],
        ),
    ));
    wait_accepted(&sb, &mut child, 120, PROCESS_TIMEOUT).await;
    kill_9(child).await;
    let k = counted(&env, "k", "kill -9");
    assert!(k.states.sent > 0 && k.states.open() > 0, "{k:?}");

    // Resumed to the end, lost replies held in doubt, unknown phones failed.
    let r = run(
        &env,
        &resume_args("k", &sb, p, &["--in-doubt", "hold", "--concurrency", "8"]),
    )
    .await;
    assert!(r.code == 0 || r.code == 3, "{r}");
    let k = counted(&env, "k", "resume, in doubt held");
    assert!(k.states.failed > 0, "{k:?}");
    assert!(k.states.in_doubt > 0, "{k:?}");
    assert_eq!(k.states.open(), 0, "{k:?}");

    // The operator's decision: resend the rows in doubt.
    sb.set_faults(Faults::default());
    let r = run(&env, &resume_args("k", &sb, p, &["--in-doubt", "resend"])).await;
    assert_eq!(r.code, 0, "{r}");
    let k = counted(&env, "k", "in-doubt rows resent");
    assert_eq!(k.states.in_doubt, 0, "{k:?}");
    assert!(k.states.resent_after_doubt > 0, "{k:?}");
    assert_eq!(
        k.states.sent + k.states.failed + k.states.rejected,
        k.states.total,
        "{k:?}"
    );
    assert_eq!(k.delivery.sent, k.states.sent);

    // What `status --json` shows is the same counters.
    let r = run(&env, &args(&["--json", "status", "k"])).await;
    assert_eq!(r.code, 0, "{r}");
    let shown = r.json();
    let shown = shown.as_array().map(|a| a[0].clone()).unwrap_or(shown);
    assert_eq!(shown["counts"]["sent"], k.states.sent, "{shown}");
    assert_eq!(shown["counts"]["rejected"], 7, "{shown}");
}

const APP_ID: &str = "app-counters-23";
const ZALO_SECRET: &str = "zalo-oa-secret-DO-NOT-LEAK-c0u7";
const HOOK_TOKEN: &str = "hook-token-DO-NOT-LEAK-c0u7";

/// Zalo's callbacks name the tracking id too; eSMS's only its message id,
/// so an early one counts when the row's msg_id is stored.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delivery_counters_follow_callbacks_that_come_early_twice_and_out_of_order() {
    const N: u64 = 300;
    for p in [ProviderKind::Zalo, ProviderKind::Esms] {
        let env = Env::new();
        std::fs::write(
            env.path("zns-batch.toml"),
            format!("zalo_app_id = \"{APP_ID}\"\n"),
        )
        .unwrap();
        let s = ServeOptions::default()
            .envs(&[
                ("ZNS_ZALO_OA_SECRET", ZALO_SECRET),
                ("ZNS_WEBHOOK_TOKEN", HOOK_TOKEN),
            ])
            .start(&env)
            .await;
        let hook = match p {
            ProviderKind::Zalo => format!("{}/webhooks/zalo", s.base),
            _ => format!("{}/webhooks/esms/{HOOK_TOKEN}", s.base),
        };
        // No delay: a callback may come before its send reply is committed.
        let url = (p != ProviderKind::Esms).then(|| hook.clone());
        let sb: Sandbox = sandbox(p, |c| {
            c.callback_url = url;
            c.callbacks = CallbackSettings {
                delay: Duration::ZERO,
                attempts: 8,
                backoff: Duration::from_millis(200),
                concurrency: 16,
                duplicate: true,
                out_of_order: 40,
                ..CallbackSettings::default()
            };
            c.zalo_app_id = APP_ID.into();
            c.zalo_oa_secret = ZALO_SECRET.into();
        })
        .await;
        let csv = env.path("c.csv");
        write_csv(&csv, 0, N as usize);
        let mut argv = run_args(&csv, "d", &sb, p, &["--concurrency", "16"]);
        argv.extend(args(&["--callback-url", &hook]));
        let mut cmd = command(&env, &argv);
        cmd.env("ZNS_WEBHOOK_TOKEN", HOOK_TOKEN);
        let r = run_with(cmd).await;
        assert_eq!(r.code, 0, "{p}: {r}");
        // Zalo reports deliveries only (every tenth message is not
        // delivered), eSMS every outcome; each callback twice here.
        let expected = 2 * if p == ProviderKind::Zalo {
            N - N / 10
        } else {
            N
        };
        let t0 = Instant::now();
        while sb.stats_summary().callbacks_acknowledged < expected {
            assert!(
                t0.elapsed() < Duration::from_secs(90),
                "{p}: {} of {expected} callbacks acknowledged",
                sb.stats_summary().callbacks_acknowledged
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let (k, chart) = counted_with_chart(&env, "d", &format!("{p}: callbacks"));
        assert_eq!(k.states.sent, N, "{p}");
        // Each row delivered counts once in the chart, at its first callback.
        assert_eq!(
            (chart[1], chart[2]),
            (
                (k.ledger.received + k.ledger.seen) as i64,
                k.ledger.seen as i64
            ),
            "{p}: {k:?}"
        );
        assert_eq!(k.ledger.received + k.ledger.seen, N - N / 10, "{p}: {k:?}");
        assert_eq!(
            k.ledger.failed_delivery + k.ledger.unknown,
            N / 10,
            "{p}: {k:?}"
        );
        assert_eq!(k.ledger.unmatched, 0, "{p}: {k:?}");
        // The pages show them: the campaign's status object over the API.
        let (code, status) = s.get_json("/api/v1/campaigns/d").await;
        assert_eq!(code, 200, "{status}");
        assert_eq!(
            status["ledger"]["received"], k.ledger.received,
            "{p}: {status}"
        );
        if p == ProviderKind::Esms {
            // Reconcile's answers (status, time, fees) move rows in the
            // chart too; the sandbox's delivery takes a second.
            tokio::time::sleep(Duration::from_millis(1200)).await;
            let mut a = args(&["reconcile", "d"]);
            a.extend(provider_args(&sb, p));
            let r = run(&env, &a).await;
            assert_eq!(r.code, 0, "{p}: {r}");
            let (k, chart) = counted_with_chart(&env, "d", &format!("{p}: reconcile"));
            assert!(k.delivery.checked > 0, "{p}: {k:?}");
            assert!(chart[1] >= (N - N / 10) as i64, "{p}: {chart:?}");
        }
        s.stop().await;
    }
}
