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
