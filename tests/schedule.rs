//! Scheduled starts and test sends (issue 22, part 3): the real binary, a
//! real sandbox on 127.0.0.1, a real SQLite state in a temp dir.

mod common;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::*;
use zns_batch::provider::ProviderKind;

/// `secs` from now as an operator writes it: OA local time, no offset.
fn local_in(secs: i64) -> (String, Instant) {
    let text = oa_local_input(time::Duration::seconds(secs), true);
    // Whole seconds: the time may be up to 1 s earlier than `secs`.
    let due = Instant::now() + Duration::from_secs(secs as u64) - Duration::from_secs(1);
    (text, due)
}

async fn status_of(env: &Env, name: &str) -> serde_json::Value {
    let r = run(env, &args(&["--json", "status", name])).await;
    assert_eq!(r.code, 0, "{r}");
    r.json()[0].clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_campaign_scheduled_through_serve_starts_by_itself_after_a_restart() {
    tokio::time::timeout(Duration::from_secs(150), async {
        let (env, sb, serve) = web_setup(Duration::ZERO).await;
        serve
            .upload_rows(&env.path("bills.csv"), 20, "nightly", &[])
            .await;

        // Malformed or past: 400, nothing stored.
        for bad in ["tomorrow", "2020-01-01T08:00"] {
            let (code, body) = serve
                .post(&format!("/api/v1/campaigns/nightly/start?start_at={bad}"))
                .await;
            assert_eq!(code, 400, "{bad}: {body}");
        }
        let (_, line) = serve.get_json("/api/v1/campaigns/nightly").await;
        assert!(line["scheduled_for"].is_null(), "{line}");

        let (at, due) = local_in(6);
        let (code, body) = serve
            .post(&format!("/api/v1/campaigns/nightly/start?start_at={at}"))
            .await;
        assert_eq!(code, 202, "{body}");
        assert!(body["scheduled_for"].is_string(), "{body}");
        let (_, line) = serve.get_json("/api/v1/campaigns/nightly").await;
        assert_eq!(line["status"], "scheduled", "{line}");

        // serve dies before the time; nothing was sent.
        serve.kill_9().await;
        assert_eq!(sb.stats().send_requests, 0);

        let serve = start_web(&env, &[]).await;
        let line = serve
            .wait_status("nightly", "finished", Duration::from_secs(60))
            .await;
        assert!(Instant::now() >= due, "started before its time: {line}");
        assert_eq!(line["counts"]["sent"], 20, "{line}");
        assert!(line["scheduled_for"].is_null(), "{line}");
        let stats = sb.stats();
        assert_eq!(stats.accepted, 20, "{stats:?}");
        assert_eq!(stats.send_requests, 20, "never started twice: {stats:?}");
        serve.stop().await;
    })
    .await
    .expect("test took too long");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_start_at_waits_then_sends_and_the_plan_and_status_show_it() {
    tokio::time::timeout(Duration::from_secs(150), async {
        let env = Env::new();
        let p = ProviderKind::Etelecom;
        let sb = sandbox(p, |_| {}).await;
        let csv = env.path("bills.csv");
        write_csv(&csv, 0, 10);

        // Bad times: exit 2 with a hint, before anything is imported.
        for bad in ["08:00", "2020-01-01 08:00"] {
            let r = run(
                &env,
                &run_args(&csv, "morning", &sb, p, &["--start-at", bad]),
            )
            .await;
            assert_eq!(r.code, 2, "{bad}: {r}");
            assert!(
                r.stderr.contains("--start-at") || r.stderr.contains("start time"),
                "{r}"
            );
        }
        assert!(!env.state().exists() || status_of(&env, "morning").await.is_null());

        // The dry-run plan shows the start; a dry run schedules nothing.
        let (at, _) = local_in(3600);
        let r = run(
            &env,
            &run_args(&csv, "morning", &sb, p, &["--dry-run", "--start-at", &at]),
        )
        .await;
        assert_eq!(r.code, 0, "{r}");
        assert!(r.json()["starts_at"].is_string(), "{r}");
        let r = run(
            &env,
            &human(run_args(
                &csv,
                "morning",
                &sb,
                p,
                &["--dry-run", "--start-at", &at],
            )),
        )
        .await;
        assert!(r.stdout.contains("starts at"), "{r}");
        assert!(status_of(&env, "morning").await["scheduled_for"].is_null());

        // A few seconds ahead: it waits, `status` lists it as scheduled.
        let (at, due) = local_in(5);
        let child = spawn_captured(command(
            &env,
            &human(resume_args("morning", &sb, p, &["--start-at", &at])),
        ));
        let t0 = Instant::now();
        let line = loop {
            let line = status_of(&env, "morning").await;
            if line["status"] == "scheduled" {
                break line;
            }
            assert!(
                t0.elapsed() < Duration::from_secs(30),
                "never scheduled: {line}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        };
        assert!(line["scheduled_for"].is_string(), "{line}");
        let text = run(&env, &args(&["status"])).await;
        assert!(text.stdout.contains("scheduled for"), "{text}");
        assert_eq!(sb.stats().send_requests, 0);

        let r = finish(child).await;
        assert_eq!(r.code, 0, "{r}");
        assert!(Instant::now() >= due);
        assert!(r.stderr.contains("scheduled for"), "{r}");
        assert_eq!(sb.stats().accepted, 10);
        let line = status_of(&env, "morning").await;
        assert_eq!(line["status"], "finished", "{line}");
        assert!(line["scheduled_for"].is_null(), "{line}");
    })
    .await
    .expect("test took too long");
}

/// What went through the recording proxy: (path, body) per request.
type Seen = Arc<Mutex<Vec<(String, String)>>>;

/// A proxy in front of the sandbox that keeps every request body, so the
/// test can read what a send carried (the sandbox keeps no template data).
async fn recording_proxy(target: std::net::SocketAddr) -> (String, Seen) {
    use axum::body::Bytes;
    use axum::http::{HeaderMap, Uri};
    let seen = Seen::default();
    let kept = seen.clone();
    let client = reqwest::Client::new();
    let app = axum::Router::new().fallback(move |uri: Uri, headers: HeaderMap, body: Bytes| {
        let kept = kept.clone();
        let client = client.clone();
        async move {
            let path = uri
                .path_and_query()
                .map(|p| p.as_str().to_string())
                .unwrap_or_default();
            kept.lock()
                .unwrap()
                .push((path.clone(), String::from_utf8_lossy(&body).into_owned()));
            let mut req = client.post(format!("http://{target}{path}")).body(body);
            for (k, v) in headers.iter() {
                if k != "host" && k != "content-length" {
                    req = req.header(k.as_str(), v.as_bytes());
                }
            }
            let r = req.send().await.expect("forward");
            let status = r.status().as_u16();
            let bytes = r.bytes().await.expect("forward body");
            (
                axum::http::StatusCode::from_u16(status).unwrap(),
                [("content-type", "application/json")],
                bytes,
            )
        }
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    (format!("http://{addr}/v1/shop"), seen)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_test_send_reaches_the_sandbox_and_is_not_counted_as_the_campaigns() {
    tokio::time::timeout(Duration::from_secs(150), async {
        let env = Env::new();
        let p = ProviderKind::Etelecom;
        let sb = sandbox(p, |_| {}).await;
        let (proxy, seen) = recording_proxy(sb.addr()).await;
        let csv = env.path("bills.csv");
        let phones = write_csv(&csv, 0, 8);
        let test_phone = "84912345678";
        assert!(!phones.contains(&test_phone.to_string()));
        let provider = [
            "--provider",
            "etelecom",
            "--base-url",
            &proxy,
            "--oa-id",
            OA,
            "--request-timeout",
            "2s",
            "--backoff",
            "20ms",
        ];

        // A bad phone: exit 2 naming it, nothing imported or sent.
        let mut argv = run_head(&csv, "bills");
        argv.extend(args(&provider));
        argv.extend(args(&["--test-phones", "0912345678,09x1"]));
        let r = run(&env, &argv).await;
        r.assert_usage("09x1");
        assert_eq!(sb.stats().send_requests, 0);

        let mut argv = run_head(&csv, "bills");
        argv.extend(args(&provider));
        argv.extend(args(&["--test-phones", "0912345678"]));
        let r = run(&env, &argv).await;
        assert_eq!(r.code, 0, "{r}");
        let out = r.json();
        assert_eq!(out["test_sends"][0]["outcome"], "sent", "{r}");
        assert!(out["test_sends"][0]["msg_id"].is_string(), "{r}");
        assert!(!r.stdout.contains(test_phone), "phones masked: {r}");
        assert_eq!(out["next_step"], "zns-batch resume bills", "{r}");

        // The sandbox got one message, to the test phone, with row 1's data.
        let stats = sb.stats();
        assert_eq!(stats.accepted, 1, "{stats:?}");
        assert_eq!(
            stats.tokens_created_per_phone.keys().collect::<Vec<_>>(),
            vec![test_phone],
            "{stats:?}"
        );
        let sends: Vec<serde_json::Value> = seen
            .lock()
            .unwrap()
            .iter()
            .filter_map(|(_, b)| serde_json::from_str::<serde_json::Value>(b).ok())
            .filter(|b| b.to_string().contains("Nguyễn"))
            .collect();
        assert_eq!(sends.len(), 1, "{sends:?}");
        let body = sends[0].to_string();
        assert!(body.contains(test_phone), "{body}");
        assert!(
            body.contains("Nguyễn Văn Ánh 0") && body.contains("100.000 đ"),
            "{body}"
        );

        // Not the campaign's: nothing sent in its counts or report; quota charged.
        let line = status_of(&env, "bills").await;
        assert_eq!(line["counts"]["sent"], 0, "{line}");
        assert_eq!(line["counts"]["total"], 8, "{line}");
        assert_eq!(line["quota_used_today"], 1, "{line}");
        let report = report_json(&env, "bills").await;
        assert_eq!(report.len(), 8);
        assert!(
            report.iter().all(|row| row["state"] == "pending"),
            "{report:?}"
        );
        assert!(report.iter().all(|row| row["phone"] != test_phone));

        // Then the campaign itself: its 8 rows, and the test stays apart.
        let mut argv = resume_head("bills");
        argv.extend(args(&provider));
        let r = run(&env, &argv).await;
        assert_eq!(r.code, 0, "{r}");
        assert_eq!(r.json()["counts"]["sent"], 8, "{r}");
        assert_eq!(sb.stats().accepted, 9);
        let report = report_json(&env, "bills").await;
        assert_eq!(report.len(), 8);
        assert!(
            report.iter().all(|row| row["state"] == "sent"),
            "{report:?}"
        );
        let line = status_of(&env, "bills").await;
        assert_eq!(line["counts"]["sent"], 8, "{line}");
        assert_eq!(line["quota_used_today"], 9, "{line}");
    })
    .await
    .expect("test took too long");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_console_schedules_cancels_and_sends_a_test() {
    tokio::time::timeout(Duration::from_secs(150), async {
        let (env, sb, web) = web_setup(Duration::ZERO).await;
        web.upload_rows(&env.path("bills.csv"), 5, "console", &[])
            .await;
        let (code, check) = web.get_text("/campaigns/console/check").await;
        assert_eq!(code, 200);
        assert!(
            check.contains("id=\"start-at\"") && check.contains("id=\"send-test\""),
            "{check}"
        );
        let csrf = csrf_of(&check).expect("csrf");

        // "Send a test": a bad phone is refused and sends nothing.
        let r = web
            .post_form(
                "/ui/campaigns/console/test",
                &[("csrf", &csrf), ("phones", "12345")],
            )
            .await;
        assert_eq!(r.status().as_u16(), 400);
        assert_eq!(sb.stats().send_requests, 0);
        let r = web
            .post_form(
                "/ui/campaigns/console/test",
                &[("csrf", &csrf), ("phones", "0912345678")],
            )
            .await;
        assert_eq!(r.status().as_u16(), 303, "{:?}", r.text().await);
        assert_eq!(sb.stats().accepted, 1);
        let (_, page) = web.get_text("/campaigns/console").await;
        assert!(page.contains("id=\"test-sends\""), "{page}");
        assert!(page.contains("0912****678"), "{page}");
        assert!(!page.contains("84912345678"), "masked: {page}");
        let (_, line) = web.get_json("/api/v1/campaigns/console").await;
        assert_eq!(line["counts"]["sent"], 0, "{line}");

        // The API's test route: JSON in, outcomes out, phones masked.
        let r = web
            .http
            .post(web.url("/api/v1/campaigns/console/test"))
            .json(&serde_json::json!({"phones": ["0987654321"]}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), 200);
        let body: serde_json::Value = r.json().await.unwrap();
        assert_eq!(body["test_sends"][0]["outcome"], "sent", "{body}");
        assert!(!body.to_string().contains("987654321"), "{body}");
        assert_eq!(sb.stats().accepted, 2);

        // "Send at" asks first (the count; nothing scheduled), the
        // confirmed form schedules; then Cancel: the schedule comes and goes.
        let (at, _) = local_in(3600);
        let at = &at[..16];
        let r = web
            .post_form(
                "/ui/campaigns/console/start",
                &[("csrf", &csrf), ("start_at", at)],
            )
            .await;
        assert_eq!(r.status().as_u16(), 200);
        let confirm = r.text().await.unwrap();
        assert!(
            confirm.contains(r#"id="confirm-at""#)
                && confirm.contains(r#"name="messages" value="5""#),
            "{confirm}"
        );
        let (_, line) = web.get_json("/api/v1/campaigns/console").await;
        assert!(line["scheduled_for"].is_null(), "{line}");
        let r = web
            .post_form(
                "/ui/campaigns/console/send",
                &[("csrf", &csrf), ("start_at", at)],
            )
            .await;
        assert_eq!(r.status().as_u16(), 400, "unconfirmed");
        let r = web
            .post_form(
                "/ui/campaigns/console/send",
                &[
                    ("csrf", &csrf),
                    ("start_at", at),
                    ("messages", "5"),
                    ("confirm", "yes"),
                ],
            )
            .await;
        assert_eq!(r.status().as_u16(), 303);
        let (_, page) = web.get_text("/campaigns/console").await;
        assert!(
            page.contains("id=\"scheduled-for\"") && page.contains("id=\"cancel-schedule\""),
            "{page}"
        );
        let (_, line) = web.get_json("/api/v1/campaigns/console").await;
        assert_eq!(line["status"], "scheduled", "{line}");
        let r = web
            .post_form("/ui/campaigns/console/pause", &[("csrf", &csrf)])
            .await;
        assert_eq!(r.status().as_u16(), 303);
        let (_, line) = web.get_json("/api/v1/campaigns/console").await;
        assert!(line["scheduled_for"].is_null(), "{line}");
        assert_ne!(line["status"], "scheduled", "{line}");
        assert_eq!(sb.stats().accepted, 2, "a cancelled schedule sends nothing");

        // Send now: the campaign's 5 rows; the tests stay apart.
        let r = web
            .post_form(
                "/ui/campaigns/console/start",
                &[("csrf", &csrf), ("start_at", "")],
            )
            .await;
        assert_eq!(r.status().as_u16(), 303);
        let line = web
            .wait_status("console", "finished", Duration::from_secs(60))
            .await;
        assert_eq!(line["counts"]["sent"], 5, "{line}");
        assert_eq!(sb.stats().accepted, 7);
        web.stop().await;
    })
    .await
    .expect("test took too long");
}
