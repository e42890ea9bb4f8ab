//! `serve` resumes by itself a console campaign paused by the send window
//! or the quota day, once sending may go on: the real binary with its
//! clock set just before the window opens / midnight (`ZNS_BATCH_NOW`),
//! the sandbox on 127.0.0.1, a real state database.

mod common;

use std::time::Duration;

use common::*;

/// Start serve with its clock at `now` and the paused runs looked at
/// every 200 ms.
async fn serve_at(env: &Env, now: &str) -> ServeHarness {
    start_web(
        env,
        &[("ZNS_BATCH_NOW", now), ("ZNS_AUTO_RESUME_POLL_MS", "200")],
    )
    .await
}

/// Serve with its clock at `now`; `campaign` (name, rows) uploaded with
/// `extra` and started: back once it paused (within `limit`), with its
/// status.
async fn started_until_paused(
    env: &Env,
    now: &str,
    (campaign, rows): (&str, usize),
    extra: &[(&str, &str)],
    limit: Duration,
) -> (ServeHarness, serde_json::Value) {
    let web = serve_at(env, now).await;
    web.upload_and_start(env, campaign, rows, extra).await;
    let paused = web.wait_status(campaign, "paused", limit).await;
    (web, paused)
}

/// The paused campaign resumes by itself and finishes: every row sent once.
async fn finishes_by_itself(
    web: &ServeHarness,
    sb: &zns_batch::sandbox::Sandbox,
    campaign: &str,
    rows: u64,
) {
    let done = web
        .wait_status(campaign, "finished", Duration::from_secs(20))
        .await;
    assert_eq!(done["counts"]["sent"], rows, "{done}");
    assert_eq!(sb.stats_summary().accepted, rows);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_campaign_paused_by_the_send_window_resumes_when_it_opens() {
    let env = Env::new();
    let sb = web_sandbox(&env, Duration::ZERO).await;
    // Three seconds before the window opens (Asia/Ho_Chi_Minh).
    let (web, paused) = started_until_paused(
        &env,
        "2026-12-07T06:59:57+07:00",
        ("morning", 5),
        &[("send_window", "07:00-22:00")],
        Duration::from_secs(3),
    )
    .await;
    assert_eq!(paused["counts"]["sent"], 0, "{paused}");
    assert!(
        paused["last_error"]
            .as_str()
            .unwrap_or("")
            .contains("window"),
        "{paused}"
    );
    // The status is stored before the run's end is handled (the lease
    // given back, the wait noted): the page says so a moment later.
    let t0 = std::time::Instant::now();
    loop {
        let page = web.get_text("/campaigns/morning").await.1;
        if page.contains("Chiến dịch tự tiếp tục lúc 07/12/2026 07:00") {
            break;
        }
        assert!(t0.elapsed() < Duration::from_secs(2), "{page}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    finishes_by_itself(&web, &sb, "morning", 5).await;
    web.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_campaign_paused_by_the_daily_quota_resumes_on_the_next_quota_day() {
    let env = Env::new();
    let sb = web_sandbox(&env, Duration::ZERO).await;
    // Ten seconds before midnight: two messages today, the rest tomorrow.
    let (web, paused) = started_until_paused(
        &env,
        "2026-12-07T23:59:50+07:00",
        ("nightly", 4),
        &[("daily_quota", "2")],
        Duration::from_secs(8),
    )
    .await;
    assert_eq!(paused["counts"]["sent"], 2, "{paused}");
    // The Check page says the quota as used / limit and when sending starts.
    let check = web.get_text("/campaigns/nightly/check").await.1;
    assert!(check.contains("2 / 2"), "{check}");
    assert!(
        check.contains("Hôm nay không gửi được nữa") && check.contains("08/12/2026 00:00"),
        "{check}"
    );
    finishes_by_itself(&web, &sb, "nightly", 4).await;
    web.stop().await;
}
