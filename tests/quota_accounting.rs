//! The daily quota counts messages, not attempts (issue 16, item 1): with
//! most requests failing on 5xx, every row retried several times, the quota
//! zns-batch records equals what the provider itself accepted.

mod common;

use common::*;
use zns_batch::provider::ProviderKind;
use zns_batch::sandbox::Faults;

const ROWS: usize = 40;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quota_used_equals_what_the_provider_accepted_under_5xx_faults() {
    for p in [ProviderKind::Zalo, ProviderKind::Etelecom] {
        quota_counts_messages_not_attempts(p).await;
    }
}

async fn quota_counts_messages_not_attempts(p: ProviderKind) {
    let env = Env::new();
    let sb = sandbox(p, |_| {}).await;
    sb.set_faults(Faults {
        http_5xx: 0.7,
        ..Faults::default()
    });
    let csv = env.path("q.csv");
    write_csv(&csv, 0, ROWS);

    let mut r = run(&env, &run_args(&csv, "q", &sb, p, &["--max-attempts", "3"])).await;
    let mut runs = 1;
    while r.code != 0 {
        assert!(matches!(r.code, 1 | 3), "{r}");
        runs += 1;
        assert!(runs <= 30, "not finished after {runs} runs: {r}");
        r = run(&env, &resume_args("q", &sb, p, &["--max-attempts", "3"])).await;
    }
    assert_eq!(r.json()["counts"]["sent"], ROWS as u64, "{r}");

    let stats = sb.stats();
    assert!(
        stats.faults_injected.get("5xx").copied().unwrap_or(0) > ROWS as u64,
        "the faults must force retries: {:?}",
        stats.faults_injected
    );
    let status = run(&env, &args(&["--json", "status", "q"])).await;
    assert_eq!(status.code, 0, "{status}");
    let used = status.json()[0]["quota_used_today"].clone();
    assert_eq!(
        used, stats.accepted,
        "{p:?}: zns-batch's quota used today must equal the messages the provider accepted ({} runs)",
        runs
    );
}

/// Issue 15: claims take quota units in blocks, and rows are claimed ahead
/// of their requests. A stop mid-run (Ctrl-C) gives back the units of the
/// claimed rows whose requests never left: the quota recorded equals the
/// messages the provider accepted, and a resume sends the rest within it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stop_mid_run_leaves_the_quota_equal_to_the_messages_sent() {
    const ROWS: usize = 1500;
    let p = ProviderKind::Etelecom;
    let (env, sb, csv, _) = setup(p, "s.csv", ROWS, |c| {
        c.latency = std::time::Duration::from_millis(3)
    })
    .await;
    let mut child = spawn_captured(command(
        &env,
        &run_args(&csv, "s", &sb, p, &["--concurrency", "32"]),
    ));
    wait_accepted(&sb, &mut child, 200, std::time::Duration::from_secs(30)).await;
    signal(child.id().expect("pid"), "INT");
    let r = finish(child).await;
    assert_eq!(r.code, 3, "paused by the stop: {r}");
    let accepted = sb.stats().accepted;
    assert!(accepted < ROWS as u64, "stopped mid-run: {accepted}");
    let quota_used = |status: &Run| status.json()[0]["quota_used_today"].clone();
    let status = run(&env, &args(&["--json", "status", "s"])).await;
    assert_eq!(status.code, 0, "{status}");
    assert_eq!(
        quota_used(&status),
        accepted,
        "after the stop, the quota used must equal the messages accepted"
    );

    let r = run(&env, &resume_args("s", &sb, p, &[])).await;
    assert_eq!(r.code, 0, "{r}");
    assert_eq!(sb.stats().accepted, ROWS as u64);
    let status = run(&env, &args(&["--json", "status", "s"])).await;
    assert_eq!(quota_used(&status), ROWS as u64, "{status}");
}
