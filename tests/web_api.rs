//! The web console's JSON API and forms without a browser: the real `serve`
//! binary on 127.0.0.1:0, a real SQLite state, campaigns sent to an
//! in-process sandbox whose counts prove exactly-once.

mod common;

use std::time::{Duration, Instant};

use common::*;

/// 201 with the plan; 409 for the name with another file; 400s for bad
/// requests (and nothing stored); start 202 then 409 while it runs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upload_plan_conflicts_and_bad_requests() {
    let (env, sb, web) = web_setup(Duration::from_millis(30)).await;
    let csv = env.path("a.csv");
    write_csv(&csv, 0, 60);
    let other = env.path("b.csv");
    write_csv(&other, 100, 5);

    let (code, plan) = web.upload(&csv, "nov", &[]).await;
    assert_eq!(code, 201, "{plan}");
    assert_eq!(plan["accepted"], 60);
    assert_eq!(plan["messages_to_send"], 60);
    assert_eq!(plan["dry_run"], true);

    // The same file again is the same campaign; another file is a conflict.
    assert_eq!(web.upload(&csv, "nov", &[]).await.0, 201);
    let (code, body) = web.upload(&other, "nov", &[]).await;
    assert_eq!(code, 409, "{body}");
    assert!(body["error"].as_str().unwrap().contains("another file"));

    for (name, extra, why) in [
        ("a/b", vec![], "name with a slash"),
        ("", vec![], "no name"),
        ("w", vec![("send_window", "25:00-26:00")], "bad window"),
        ("q", vec![("daily_quota", "lots")], "bad quota"),
    ] {
        let (code, body) = web.upload(&csv, name, &extra).await;
        assert_eq!(code, 400, "{why}: {body}");
        assert!(!body["error"].as_str().unwrap().is_empty(), "{why}");
    }
    let (_, list) = web.get_json("/api/v1/campaigns").await;
    let names: Vec<_> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["campaign"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(names, vec!["nov"], "refused uploads store nothing");
    let uploads: Vec<_> = std::fs::read_dir(env.path("uploads")).unwrap().collect();
    assert_eq!(uploads.len(), 1, "only the campaign's own file is kept");

    assert_eq!(web.get_json("/api/v1/campaigns/nope").await.0, 404);
    // While another process (the CLI) holds the campaign's lock: 409.
    {
        let _cli = zns_batch::campaign::lock(&env.state().into(), "nov").unwrap();
        let (code, body) = web.post("/api/v1/campaigns/nov/start").await;
        assert_eq!(code, 409, "{body}");
        assert!(body["error"]
            .as_str()
            .unwrap()
            .contains("another zns-batch process"));
    }
    let (code, body) = web.post("/api/v1/campaigns/nov/start").await;
    assert_eq!(code, 202, "{body}");
    let (code, body) = web.post("/api/v1/campaigns/nov/start").await;
    assert_eq!(code, 409, "{body}");
    let done = web
        .wait_status("nov", "finished", Duration::from_secs(60))
        .await;
    assert_eq!(done["counts"]["sent"], 60);
    let (code, report) = web.get_text("/api/v1/campaigns/nov/report.csv").await;
    assert_eq!(code, 200);
    assert_eq!(report.lines().count(), 61, "header + one line per row");
    assert_eq!(sb.stats_summary().accepted, 60);
    // Pausing a campaign that is not running says so.
    assert_eq!(web.post("/api/v1/campaigns/nov/pause").await.0, 409);
    web.stop().await;
}

/// An upload over the cap is refused with 413 and leaves nothing behind.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upload_over_the_cap_is_413_and_stores_nothing() {
    let env = Env::new();
    let _sb = web_sandbox(&env, Duration::ZERO).await;
    let web = start_web(&env, &[("ZNS_UPLOAD_LIMIT_MB", "1")]).await;
    let csv = env.path("big.csv");
    write_csv(&csv, 0, 40_000); // ≈ 1.3 MB
    assert!(std::fs::metadata(&csv).unwrap().len() > 1024 * 1024);
    let (code, body) = web.upload(&csv, "big", &[]).await;
    assert_eq!(code, 413, "{body}");
    assert!(body["error"].as_str().unwrap().contains("upload limit"));
    let (_, list) = web.get_json("/api/v1/campaigns").await;
    assert_eq!(list.as_array().unwrap().len(), 0);
    let left = std::fs::read_dir(env.path("uploads"))
        .map(|d| d.count())
        .unwrap_or(0);
    assert_eq!(left, 0, "the partial upload is removed");
    web.stop().await;
}

/// A campaign started from the web survives a restart of serve: it is
/// resumed and finishes with every row delivered exactly once. A paused
/// one is not resumed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_restart_resumes_a_started_campaign_exactly_once() {
    let env = Env::new();
    let sb = web_sandbox(&env, Duration::from_millis(40)).await;
    let csv = env.path("a.csv");
    write_csv(&csv, 0, 300);
    let paused_csv = env.path("p.csv");
    write_csv(&paused_csv, 1000, 200);

    let web = start_web(&env, &[]).await;
    assert_eq!(web.upload(&csv, "run-on", &[]).await.0, 201);
    assert_eq!(web.upload(&paused_csv, "held", &[]).await.0, 201);
    assert_eq!(web.post("/api/v1/campaigns/held/start").await.0, 202);
    assert_eq!(web.post("/api/v1/campaigns/held/pause").await.0, 202);
    web.wait_status("held", "paused", Duration::from_secs(30))
        .await;
    let held_sent = sb.stats_summary().accepted;
    assert_eq!(web.post("/api/v1/campaigns/run-on/start").await.0, 202);
    let t0 = Instant::now();
    while sb.stats_summary().accepted < held_sent + 30 {
        assert!(t0.elapsed() < Duration::from_secs(30), "nothing sent");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(web.stop().await.code, 0, "graceful stop");
    let mid = sb.stats_summary().accepted - held_sent;
    assert!(mid < 300, "stopped mid-campaign ({mid} sent)");

    let web = start_web(&env, &[]).await;
    let done = web
        .wait_status("run-on", "finished", Duration::from_secs(90))
        .await;
    assert_eq!(done["counts"]["sent"], 300);
    let (_, held) = web.get_json("/api/v1/campaigns/held").await;
    assert_eq!(held["status"], "paused", "a person's pause is kept");
    web.stop().await;

    let rows = report_rows(&env, "run-on").await;
    let sent = tracking_ids_in_state(&rows, "sent");
    let stats = sb.stats();
    let mut run_on = stats.clone();
    run_on.deliveries.retain(|t, _| sent.contains(t));
    assert_exactly_once(&run_on, &sent, 300);
    let total: u64 = stats.deliveries.values().sum();
    assert_eq!(total, 300 + held_sent, "nothing else was delivered");
}

/// With an access token nothing answers without it; the login form sets
/// an HttpOnly cookie; a form without its CSRF token and a request from
/// another site are refused; CSV values and names are shown as text.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn token_login_csrf_origin_and_escaping() {
    const TOKEN: &str = "serve-token-DO-NOT-LEAK-55aa";
    let env = Env::new();
    let _sb = web_sandbox(&env, Duration::ZERO).await;
    let web = start_web(&env, &[("ZNS_SERVE_TOKEN", TOKEN)]).await;
    for path in ["/", "/new", "/api/v1/campaigns", "/campaigns/x", "/metrics"] {
        let r = web.http.get(web.url(path)).send().await.unwrap();
        assert!(
            matches!(r.status().as_u16(), 401 | 303),
            "{path} answered {} without the token",
            r.status()
        );
    }
    let r = web.get_bearer("/api/v1/campaigns", TOKEN).await;
    assert_eq!(r.status(), 200);

    // The login page's form carries the CSRF token.
    let (_, login) = web.get_text("/login").await;
    let csrf = csrf_of(&login).expect("csrf field on the login form");
    let r = web.post_form("/login", &[("token", TOKEN)]).await;
    assert_eq!(r.status(), 403, "login without CSRF");
    let r = web
        .post_form("/login", &[("token", TOKEN), ("csrf", &csrf)])
        .await;
    assert_eq!(r.status(), 303);
    let cookie = r.headers()["set-cookie"].to_str().unwrap().to_string();
    assert!(cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict"));
    assert!(!cookie.contains(TOKEN), "the cookie never holds the token");
    let session = cookie.split(';').next().unwrap().to_string();
    let r = web
        .http
        .get(web.url("/"))
        .header("cookie", &session)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    // The harness's client kept the cookie, as a browser does.
    assert_eq!(web.get_text("/").await.0, 200, "signed in without a header");

    // An upload whose name and rows carry markup.
    let csv = env.path("xss.csv");
    std::fs::write(
        &csv,
        "phone,customer_name,amount\n84912345678,<script>alert(1)</script>,1.000 đ\n84912345679,Nguyễn Thị Ánh,2.000 đ\n",
    )
    .unwrap();
    let name = "<img src=x onerror=alert(2)> & co";
    let (ctype, body) = multipart(
        &[("campaign", name), ("template_id", "246810")],
        &std::fs::read(&csv).unwrap(),
    );
    let r = web
        .http
        .post(web.url("/api/v1/campaigns"))
        .bearer_auth(TOKEN)
        .header("content-type", &ctype)
        .header("origin", "https://evil.example")
        .body(body.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403, "a POST from another site");
    let r = web
        .http
        .post(web.url("/api/v1/campaigns"))
        .bearer_auth(TOKEN)
        .header("content-type", &ctype)
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let check_url = web.url(&format!("/campaigns/{}/check", enc(name)));
    let page = page_with(&web.http, &check_url, &session).await;
    assert!(
        page.contains("&lt;script&gt;alert(1)&lt;/script&gt;"),
        "{page}"
    );
    assert!(
        !page.contains("<script>alert"),
        "markup from the CSV is escaped"
    );
    assert!(page.contains("&lt;img src=x onerror=alert(2)&gt; &amp; co"));
    assert!(!page.contains("<img src=x"));
    assert!(page.contains("Nguyễn Thị Ánh"), "Vietnamese shown as is");
    assert!(!page.contains("84912345678"), "phones are masked in lists");
    assert!(
        !page.contains(TOKEN) && !page.contains(KEY),
        "no secret on a page"
    );

    // A console form without its CSRF token is refused, with it accepted.
    let start_url = web.url(&format!("/ui/campaigns/{}/start", enc(name)));
    let r = web
        .http
        .post(&start_url)
        .header("cookie", &session)
        .form(&[("x", "1")])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    let page_csrf = csrf_of(&page).unwrap();
    let r = web
        .http
        .post(&start_url)
        .header("cookie", &session)
        .form(&[("csrf", page_csrf.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 303);
    web.stop().await;
}

/// The Check page's Send carries the count it showed: once the plan
/// changed (here a `resume` from the command line sent the campaign in
/// between), the stale form is refused with 409 and the plan's new count,
/// sends nothing and schedules nothing; the page drawn again offers no Send.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn send_is_refused_when_the_plan_changed_since_the_check_page() {
    tokio::time::timeout(Duration::from_secs(120), async {
        let (env, sb, web) = web_setup(Duration::ZERO).await;
        let csv = env.path("six.csv");
        write_csv(&csv, 0, 6);
        assert_eq!(web.upload(&csv, "changed", &[]).await.0, 201);
        let (code, check) = web.get_text("/campaigns/changed/check").await;
        assert_eq!(code, 200);
        assert!(
            check.contains(r#"name="messages" value="6""#),
            "the form carries the count it shows: {check}"
        );
        let csrf = csrf_of(&check).expect("csrf");

        // Meanwhile, a run elsewhere: the command line sends all six.
        let mut resume = command(&env, &args(&["resume", "changed"]));
        resume.env(API_KEY_ENV, KEY);
        let r = run_with(resume).await;
        assert_eq!(r.code, 0, "{r}");
        assert_eq!(sb.stats_summary().accepted, 6);

        // The page's stale form, now and at a time: refused, nothing done.
        let at = oa_local_input(time::Duration::hours(1), false);
        for start_at in ["", at.as_str()] {
            let r = web
                .post_form(
                    "/ui/campaigns/changed/send",
                    &[
                        ("csrf", &csrf),
                        ("confirm", "yes"),
                        ("messages", "6"),
                        ("start_at", start_at),
                    ],
                )
                .await;
            assert_eq!(r.status().as_u16(), 409, "start_at {start_at:?}");
            let body = r.text().await.unwrap();
            assert!(
                body.contains("Kế hoạch đã thay đổi") && body.contains("giờ có 0 tin nhắn"),
                "says why, in the console's language: {body}"
            );
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert_eq!(sb.stats_summary().accepted, 6, "nothing sent again");
        let (_, line) = web.get_json("/api/v1/campaigns/changed").await;
        assert!(line["scheduled_for"].is_null(), "{line}");
        assert_eq!(line["counts"]["sent"], 6, "{line}");
        let (_, check) = web.get_text("/campaigns/changed/check").await;
        assert!(
            !check.contains(r#"id="send""#),
            "nothing left to send: {check}"
        );
        web.stop().await;
    })
    .await
    .expect("test took too long");
}
