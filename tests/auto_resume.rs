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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_campaign_paused_by_the_send_window_resumes_when_it_opens() {
    let env = Env::new();
    let sb = web_sandbox(&env, Duration::ZERO).await;
    // Three seconds before the window opens (Asia/Ho_Chi_Minh).
    let web = serve_at(&env, "2026-12-07T06:59:57+07:00").await;
    let csv = env.path("w.csv");
    write_csv(&csv, 0, 5);
    let (code, plan) = web
        .upload(&csv, "morning", &[("send_window", "07:00-22:00")])
        .await;
    assert_eq!(code, 201, "{plan}");
    assert_eq!(web.post("/api/v1/campaigns/morning/start").await.0, 202);
    let paused = web
        .wait_status("morning", "paused", Duration::from_secs(3))
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
    let done = web
        .wait_status("morning", "finished", Duration::from_secs(20))
        .await;
    assert_eq!(done["counts"]["sent"], 5, "{done}");
    assert_eq!(sb.stats_summary().accepted, 5);
    web.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_campaign_paused_by_the_daily_quota_resumes_on_the_next_quota_day() {
    let env = Env::new();
    let sb = web_sandbox(&env, Duration::ZERO).await;
    // Ten seconds before midnight: two messages today, the rest tomorrow.
    let web = serve_at(&env, "2026-12-07T23:59:50+07:00").await;
    let csv = env.path("q.csv");
    write_csv(&csv, 0, 4);
    let (code, plan) = web.upload(&csv, "nightly", &[("daily_quota", "2")]).await;
    assert_eq!(code, 201, "{plan}");
    assert_eq!(web.post("/api/v1/campaigns/nightly/start").await.0, 202);
    let paused = web
        .wait_status("nightly", "paused", Duration::from_secs(8))
        .await;
    assert_eq!(paused["counts"]["sent"], 2, "{paused}");
    // The Check page says the quota as used / limit and when sending starts.
    let check = web.get_text("/campaigns/nightly/check").await.1;
    assert!(check.contains("2 / 2"), "{check}");
    assert!(
        check.contains("Hôm nay không gửi được nữa") && check.contains("08/12/2026 00:00"),
        "{check}"
    );
    let done = web
        .wait_status("nightly", "finished", Duration::from_secs(20))
        .await;
    assert_eq!(done["counts"]["sent"], 4, "{done}");
    assert_eq!(sb.stats_summary().accepted, 4);
    web.stop().await;
}
