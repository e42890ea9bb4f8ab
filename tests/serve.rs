//! `zns-batch serve`: the real binary on 127.0.0.1:0 with a real SQLite
//! state; campaigns sent through an in-process sandbox; callbacks posted
//! by the test as the providers would.

mod common;

use std::collections::{BTreeMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::*;
use rand::seq::SliceRandom;
use zns_batch::provider::ProviderKind;
use zns_batch::store::{DeliveryStatus, Store};

const APP_ID: &str = "app-7f3a";
const ZALO_SECRET: &str = "zalo-oa-secret-DO-NOT-LEAK-4d2e";
const HOOK_TOKEN: &str = "hook-token-DO-NOT-LEAK-0b9c";

/// Start `serve` on a free loopback port with the test's secrets in its
/// environment and `zalo_app_id` in ./zns-batch.toml.
async fn serve(env: &Env, extra_env: &[(&str, &str)]) -> ServeHarness {
    std::fs::write(
        env.path("zns-batch.toml"),
        format!("zalo_app_id = \"{APP_ID}\"\n"),
    )
    .unwrap();
    ServeOptions::default()
        .envs(&[
            ("ZNS_ZALO_OA_SECRET", ZALO_SECRET),
            ("ZNS_WEBHOOK_TOKEN", HOOK_TOKEN),
        ])
        .envs(extra_env)
        .http_timeout(Duration::from_secs(10))
        .start(env)
        .await
}

/// A Zalo signature with this file's app id and OA secret.
fn sign(body: &str, timestamp: &str) -> String {
    zalo_signature(APP_ID, body, timestamp, ZALO_SECRET)
}

fn zalo_receipt(msg_id: &str, tracking_id: &str, phone: &str, delivery_ms: i64) -> String {
    serde_json::json!({
        "app_id": APP_ID,
        "sender": {"id": OA},
        "recipient": {"id": phone},
        "event_name": "user_received_message",
        "message": {"msg_id": msg_id, "tracking_id": tracking_id, "delivery_time": delivery_ms.to_string()},
        "timestamp": (delivery_ms + 50).to_string(),
    })
    .to_string()
}

/// Send `n` rows through a sandbox; the report's rows as JSON.
async fn campaign(env: &Env, p: ProviderKind, name: &str, n: usize) -> Vec<serde_json::Value> {
    let sb = sandbox(p, |_| {}).await;
    let csv = env.path(&format!("{name}.csv"));
    write_csv(&csv, 0, n);
    let r = run(env, &run_args(&csv, name, &sb, p, &[])).await;
    assert_eq!(r.code, 0, "{r}");
    let rows = report_json(env, name).await;
    assert_eq!(rows.len(), n);
    rows
}

/// (line → status, time) for every row with a delivery status.
fn ledger(env: &Env, campaign: &str) -> BTreeMap<u64, (DeliveryStatus, Option<i64>)> {
    let store = Store::open_existing(env.state()).unwrap().unwrap();
    let c = store.find_campaign(campaign).unwrap().unwrap();
    let mut out = BTreeMap::new();
    store
        .for_each_row_delivery(c.id, |d| {
            if let Some(s) = d.status {
                out.insert(d.line, (s, d.at_ms));
            }
        })
        .unwrap();
    out
}

fn event_count(env: &Env) -> u64 {
    Store::open_existing(env.state())
        .unwrap()
        .unwrap()
        .event_count()
        .unwrap()
}

fn line(rows: &[serde_json::Value], i: usize) -> u64 {
    rows[i]["line"].as_u64().unwrap()
}

fn field(rows: &[serde_json::Value], i: usize, k: &str) -> String {
    rows[i][k].as_str().unwrap().to_string()
}

#[tokio::test]
async fn zalo_signature_ping_quota_template_health_metrics() {
    let env = Env::new();
    let rows = campaign(&env, ProviderKind::Zalo, "z1", 3).await;
    let s = serve(&env, &[]).await;
    assert_eq!(s.get_text("/healthz").await, (200, "ok".to_string()));

    assert_eq!(s.zalo("{}", None).await, 200, "the URL-saving ping");
    let body = zalo_receipt(
        &field(&rows, 0, "msg_id"),
        &field(&rows, 0, "tracking_id"),
        &field(&rows, 0, "phone"),
        1_700_000_000_123,
    );
    let ts = "1700000000173";
    // One byte changed in the body: the signature no longer matches.
    let forged = body.replace("1700000000123", "1700000000124");
    assert_eq!(s.zalo(&forged, Some(sign(&body, ts))).await, 401);
    assert_eq!(s.zalo(&body, None).await, 401, "unsigned");
    let mut bad_mac = sign(&body, ts);
    bad_mac.replace_range(8..9, if &bad_mac[8..9] == "0" { "1" } else { "0" });
    assert_eq!(s.zalo(&body, Some(bad_mac)).await, 401);
    assert_eq!(event_count(&env), 0, "refused callbacks store nothing");
    assert_eq!(s.zalo(&body, Some(sign(&body, ts))).await, 200);
    assert_eq!(
        ledger(&env, "z1").get(&line(&rows, 0)),
        Some(&(DeliveryStatus::Received, Some(1_700_000_000_123))),
        "the first row received at delivery_time"
    );

    // A chat receipt (no delivery_time) is kept but changes no row.
    let chat = serde_json::json!({"event_name": "user_received_message", "timestamp": "1",
        "message": {"msg_id": field(&rows, 1, "msg_id")}})
    .to_string();
    assert_eq!(s.zalo(&chat, Some(sign(&chat, "1"))).await, 200);
    assert_eq!(ledger(&env, "z1").len(), 1);

    let quota = serde_json::json!({"event_name": "change_oa_daily_quota", "oaId": OA,
        "quota": {"prev_value": "500", "new_value": "2000"}, "timestamp": "2"})
    .to_string();
    assert_eq!(s.zalo(&quota, Some(sign(&quota, "2"))).await, 200);
    let tpl = serde_json::json!({"event_name": "change_template_status", "oa_id": OA,
        "template_id": "246810", "status": {"prev_status": "ENABLE", "new_status": "DISABLE"},
        "reason": "low quality", "timestamp": "3"})
    .to_string();
    assert_eq!(s.zalo(&tpl, Some(sign(&tpl, "3"))).await, 200);
    {
        let store = Store::open_existing(env.state()).unwrap().unwrap();
        let block = store.template_block("246810").unwrap().expect("blocked");
        assert!(
            block.contains("DISABLE") && block.contains("low quality"),
            "{block}"
        );
        assert_eq!(store.template_block("999").unwrap(), None);
        let today = zns_batch::model::clock::today_key();
        assert_eq!(store.announced_quota(OA, &today).unwrap(), Some(2000));
    }
    let enabled = tpl
        .replace("\"DISABLE\"", "\"ENABLE\"")
        .replace("\"3\"", "\"4\"");
    assert_eq!(s.zalo(&enabled, Some(sign(&enabled, "4"))).await, 200);
    let store = Store::open_existing(env.state()).unwrap().unwrap();
    assert_eq!(
        store.template_block("246810").unwrap(),
        None,
        "enabled again"
    );

    let (code, metrics) = s.get_text("/metrics").await;
    assert_eq!(code, 200);
    for needle in [
        "zns_webhook_events_total{provider=\"zalo\",result=\"refused\"} 3",
        "zns_webhook_events_total{provider=\"zalo\",result=\"matched\"} 1",
        "zns_webhook_events_total{provider=\"zalo\",result=\"applied\"} 3",
        "zns_rows{campaign=\"z1\",state=\"sent\"} 3",
        &format!("zns_quota_used_today{{oa_id=\"{OA}\"}} 3"),
    ] {
        assert!(metrics.contains(needle), "{needle} missing from\n{metrics}");
    }
    let stderr = s.stop_clean().await.stderr;
    assert!(!metrics.contains(ZALO_SECRET) && !stderr.contains(ZALO_SECRET));
}

#[tokio::test]
async fn esms_token_statuses_and_bad_requests_store_nothing() {
    let env = Env::new();
    let rows = campaign(&env, ProviderKind::Esms, "e1", 4).await;
    let s = serve(&env, &[]).await;
    let q = |i: usize, tail: &str| {
        format!(
            "SMSID={}&phonenumber={}&{tail}",
            field(&rows, i, "msg_id"),
            field(&rows, i, "phone")
        )
    };

    assert_eq!(
        s.esms(
            "wrong-token",
            &q(0, "SendStatus=5&SendSuccess=1&SendFailed=0")
        )
        .await,
        404
    );
    // Malformed, huge, wrong type: 4xx and nothing stored.
    assert_eq!(s.esms(HOOK_TOKEN, "SendStatus=5").await, 400, "no SMSID");
    assert_eq!(s.esms(HOOK_TOKEN, &q(0, "SendStatus=five")).await, 400);
    let post = |path: String, ct: &'static str, body: Vec<u8>| {
        let http = s.http.clone();
        let url = format!("{}{path}", s.base);
        async move {
            http.post(url)
                .header("content-type", ct)
                .body(body)
                .send()
                .await
                .unwrap()
                .status()
                .as_u16()
        }
    };
    let et = format!("/webhooks/etelecom/{HOOK_TOKEN}");
    assert_eq!(
        post(et.clone(), "application/json", b"{\"msg_id\":".to_vec()).await,
        400
    );
    assert_eq!(
        post(et.clone(), "text/plain", b"{\"msg_id\":\"x\"}".to_vec()).await,
        415
    );
    let mut huge = b"{\"msg_id\":\"x\",\"pad\":\"".to_vec();
    huge.extend(std::iter::repeat_n(b'a', 100 * 1024));
    huge.extend(b"\"}");
    assert_eq!(
        post(et.clone(), "application/json", huge.clone()).await,
        413
    );
    assert_eq!(
        post("/webhooks/zalo".into(), "application/json", huge).await,
        413
    );
    assert_eq!(
        post(
            "/webhooks/zalo".into(),
            "application/json",
            b"{nope".to_vec()
        )
        .await,
        400
    );
    assert_eq!(
        post(
            "/webhooks/zalo".into(),
            "text/xml",
            b"{\"event_name\":\"x\"}".to_vec()
        )
        .await,
        415
    );
    assert_eq!(
        post(
            "/webhooks/etelecom/nope".into(),
            "application/json",
            b"{}".to_vec()
        )
        .await,
        404
    );
    assert_eq!(event_count(&env), 0, "refused callbacks store nothing");

    let error_info = "error_info=%7B%22error%22%3A-114%2C%22message%22%3A%22user%20blocked%22%7D";
    assert_eq!(
        s.esms(HOOK_TOKEN, &q(0, "SendStatus=5&SendSuccess=1&SendFailed=0"))
            .await,
        200
    );
    assert_eq!(
        s.esms(HOOK_TOKEN, &q(1, "SendStatus=5&SendSuccess=1&SendFailed=0"))
            .await,
        200
    );
    assert_eq!(
        s.esms(
            HOOK_TOKEN,
            &q(
                2,
                &format!("SendStatus=4&SendSuccess=0&SendFailed=1&{error_info}")
            )
        )
        .await,
        200
    );
    assert_eq!(
        s.esms(HOOK_TOKEN, &q(3, "SendStatus=7")).await,
        200,
        "progress"
    );
    // An eTelecom-style body naming the row's msg_id anywhere.
    let body = serde_json::json!({"entity": "zl_oa_message",
        "data": {"msg_id": field(&rows, 1, "msg_id"), "status": "seen"}});
    assert_eq!(
        post(et, "application/json", body.to_string().into_bytes()).await,
        200
    );

    let store = Store::open_existing(env.state()).unwrap().unwrap();
    let c = store.find_campaign("e1").unwrap().unwrap();
    let counts = store.ledger_counts(c.id).unwrap();
    assert_eq!(
        (
            counts.received,
            counts.seen,
            counts.failed_delivery,
            counts.unknown,
            counts.unmatched
        ),
        (1, 1, 1, 1, 0)
    );
    let mut failed = None;
    store
        .for_each_row_delivery(c.id, |d| {
            if d.status == Some(DeliveryStatus::FailedDelivery) {
                failed = Some((d.line, d.note.error_code, d.note.error));
            }
        })
        .unwrap();
    assert_eq!(
        failed,
        Some((
            line(&rows, 2),
            Some("-114".into()),
            Some("user blocked".into())
        ))
    );
    let stderr = s.stop_clean().await.stderr;
    assert!(
        !stderr.contains(HOOK_TOKEN),
        "the token leaked into the log"
    );
    let raw: String = rusqlite::Connection::open(env.state())
        .unwrap()
        .query_row(
            "SELECT group_concat(raw || dedup_key) FROM delivery_events",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert!(
        !raw.contains(HOOK_TOKEN),
        "the token is in the state database"
    );
}

/// Every callback twice, shuffled, gives the same ledger as once in order;
/// the second copies are counted as repeats; `seen` is never lowered by a
/// late `received`.
#[tokio::test]
async fn repeated_and_shuffled_callbacks_give_the_same_ledger() {
    let n = 30;
    let first = Env::new();
    let rows = campaign(&first, ProviderKind::Zalo, "z2", n).await;
    let second = Env::new();
    for suffix in ["", "-wal", "-shm"] {
        let from = format!("{}{suffix}", first.state().display());
        if std::path::Path::new(&from).exists() {
            std::fs::copy(&from, format!("{}{suffix}", second.state().display())).unwrap();
        }
    }
    // (path, content type, body, signature) for every row: a Zalo receipt,
    // and for every third row a later `seen` (eTelecom-style body).
    let mut calls: Vec<(String, String, Option<String>)> = Vec::new();
    for i in 0..n {
        let body = zalo_receipt(
            &field(&rows, i, "msg_id"),
            &field(&rows, i, "tracking_id"),
            &field(&rows, i, "phone"),
            1_700_000_000_000 + i as i64,
        );
        let ts = (1_700_000_000_050 + i as i64).to_string();
        let sig = sign(&body, &ts);
        calls.push(("/webhooks/zalo".into(), body, Some(sig)));
        if i % 3 == 0 {
            let seen = serde_json::json!({"message": {"msg_id": field(&rows, i, "msg_id"), "status": "seen", "timestamp": 1_700_000_009_000 + i as i64}});
            calls.push((
                format!("/webhooks/etelecom/{HOOK_TOKEN}"),
                seen.to_string(),
                None,
            ));
        }
    }
    async fn post_all(s: &ServeHarness, calls: &[(String, String, Option<String>)]) {
        for (path, body, sig) in calls {
            let mut req = s
                .http
                .post(format!("{}{path}", s.base))
                .header("content-type", "application/json")
                .header("X-ZEvent-Server", "ZNS")
                .body(body.clone());
            if let Some(sig) = sig {
                req = req.header("X-ZEvent-Signature", sig.clone());
            }
            assert_eq!(
                req.send().await.unwrap().status().as_u16(),
                200,
                "{path} {body}"
            );
        }
    }
    let s = serve(&first, &[]).await;
    post_all(&s, &calls).await;
    s.stop_clean().await;

    let mut doubled: Vec<_> = calls.iter().chain(calls.iter()).cloned().collect();
    doubled.shuffle(&mut rand::rng());
    let s2 = serve(&second, &[]).await;
    post_all(&s2, &doubled).await;
    let (_, metrics) = s2.get_text("/metrics").await;
    s2.stop_clean().await;

    let a = ledger(&first, "z2");
    assert_eq!(a.len(), n);
    assert_eq!(
        a.values()
            .filter(|(s, _)| *s == DeliveryStatus::Seen)
            .count(),
        n.div_ceil(3)
    );
    assert_eq!(
        a.get(&line(&rows, 1)),
        Some(&(DeliveryStatus::Received, Some(1_700_000_000_001)))
    );
    assert_eq!(
        ledger(&second, "z2"),
        a,
        "same ledger whatever the order and repeats"
    );
    assert_eq!(event_count(&first), calls.len() as u64);
    assert_eq!(event_count(&second), calls.len() as u64);
    let zalo_repeats =
        format!("zns_webhook_events_total{{provider=\"zalo\",result=\"repeat\"}} {n}");
    assert!(
        metrics.contains(&zalo_repeats),
        "{zalo_repeats} missing from\n{metrics}"
    );
}

/// A callback that outruns the row's send (here: before the campaign even
/// exists) is kept unmatched and applies once the row is there.
#[tokio::test]
async fn callback_before_the_send_applies_once_the_row_exists() {
    let env = Env::new();
    let s = serve(&env, &[]).await;
    let csv = env.path("early.csv");
    let mut text = String::from("phone,customer_name,amount,tracking_id\n");
    for i in 0..5 {
        text.push_str(&format!("{},Khách {i},{i}000,early-{i}\n", phone(i)));
    }
    std::fs::write(&csv, text).unwrap();
    for i in 0..5i64 {
        let body = zalo_receipt(
            &format!("not-yet-known-{i}"),
            &format!("early-{i}"),
            &phone(i as usize),
            1_700_000_100_000 + i,
        );
        assert_eq!(
            s.zalo(
                &body,
                Some(sign(&body, &(1_700_000_100_050 + i).to_string()))
            )
            .await,
            200
        );
    }
    let (_, metrics) = s.get_text("/metrics").await;
    assert!(
        metrics.contains("zns_webhook_events_total{provider=\"zalo\",result=\"unmatched\"} 5"),
        "{metrics}"
    );
    assert!(
        metrics.contains("zns_delivery_events_unmatched 5"),
        "{metrics}"
    );

    let sb = sandbox(ProviderKind::Zalo, |_| {}).await;
    let r = run(&env, &run_args(&csv, "early", &sb, ProviderKind::Zalo, &[])).await;
    assert_eq!(r.code, 0, "{r}");
    let got = ledger(&env, "early");
    assert_eq!(got.len(), 5, "{got:?}");
    // Line 4 is the third record (after the header).
    assert_eq!(
        got.get(&4),
        Some(&(DeliveryStatus::Received, Some(1_700_000_100_002)))
    );
    let store = Store::open_existing(env.state()).unwrap().unwrap();
    let c = store.find_campaign("early").unwrap().unwrap();
    let counts = store.ledger_counts(c.id).unwrap();
    assert_eq!(
        (counts.received, counts.unknown, counts.unmatched),
        (5, 0, 0)
    );
    let (_, metrics) = s.get_text("/metrics").await;
    assert!(
        metrics.contains("zns_delivery_events_unmatched 0"),
        "{metrics}"
    );
    s.stop_clean().await;
}

fn burst_url(base: &str, i: usize) -> String {
    format!(
        "{base}/webhooks/esms/{HOOK_TOKEN}?SMSID=burst-{i}&SendStatus=5&SendSuccess=1&SendFailed=0&phonenumber={}",
        phone(i)
    )
}

/// Post `total` distinct eSMS callbacks at concurrency 16; once a third are
/// acknowledged, send `sig` to serve. Returns the acknowledged ones and
/// serve's exit code (-1: ended by a signal).
async fn burst_then_signal(s: ServeHarness, total: usize, sig: &str) -> (HashSet<usize>, i32) {
    let acked = Arc::new(Mutex::new(HashSet::<usize>::new()));
    let (http, base) = (s.http.clone(), s.base.clone());
    let acked_by_burst = acked.clone();
    let posts = futures::stream::iter((0..total).map(move |i| {
        let (http, url) = (http.clone(), burst_url(&base, i));
        let acked = acked_by_burst.clone();
        async move {
            if let Ok(r) = http.get(url).send().await {
                if r.status().as_u16() == 200 {
                    acked.lock().unwrap().insert(i);
                }
            }
        }
    }));
    let burst = tokio::spawn(futures::StreamExt::for_each_concurrent(posts, 16, |f| f));
    let t0 = std::time::Instant::now();
    while acked.lock().unwrap().len() < total / 3 {
        assert!(t0.elapsed() < Duration::from_secs(60), "burst too slow");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let ended = s.signal_and_wait(sig, Duration::from_secs(30)).await;
    tokio::time::timeout(Duration::from_secs(30), burst)
        .await
        .unwrap()
        .unwrap();
    let acked = acked.lock().unwrap().clone();
    assert!(acked.len() < total, "the signal came after the burst ended");
    (acked, ended.code)
}

/// msg_id → how many times it is stored.
fn stored(env: &Env) -> BTreeMap<String, i64> {
    let conn = rusqlite::Connection::open(env.state()).unwrap();
    let mut st = conn
        .prepare("SELECT msg_id, COUNT(*) FROM delivery_events GROUP BY msg_id")
        .unwrap();
    st.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
        .unwrap()
        .map(Result::unwrap)
        .collect()
}

/// kill -9 in the middle of a burst: every acknowledged callback is in the
/// ledger, none twice, and reposting the unacknowledged ones completes it.
#[tokio::test]
async fn kill_9_mid_burst_loses_no_acknowledged_callback() {
    const TOTAL: usize = 3000;
    let env = Env::new();
    let (acked, _) = burst_then_signal(serve(&env, &[]).await, TOTAL, "KILL").await;
    let after_kill = stored(&env);
    for i in &acked {
        assert_eq!(
            after_kill.get(&format!("burst-{i}")),
            Some(&1),
            "acknowledged burst-{i} lost"
        );
    }

    let s = serve(&env, &[]).await;
    for i in (0..TOTAL).filter(|i| !acked.contains(i)) {
        let r = s.http.get(burst_url(&s.base, i)).send().await.unwrap();
        assert_eq!(r.status().as_u16(), 200);
    }
    let all = stored(&env);
    assert_eq!(all.len(), TOTAL);
    assert!(all.values().all(|n| *n == 1), "a callback stored twice");
    s.stop_clean().await;
    assert_eq!(integrity(&env.state()), "ok");
}

/// SIGTERM mid-burst: serve stops cleanly (exit 0) and every callback it
/// acknowledged, the last ones in flight included, is committed.
#[tokio::test]
async fn sigterm_mid_burst_commits_what_it_acknowledged() {
    let env = Env::new();
    let (acked, code) = burst_then_signal(serve(&env, &[]).await, 1500, "TERM").await;
    assert_eq!(code, 0);
    let all = stored(&env);
    assert_eq!(all.len(), acked.len(), "stored = acknowledged");
    for i in &acked {
        assert_eq!(all.get(&format!("burst-{i}")), Some(&1));
    }
    assert_eq!(integrity(&env.state()), "ok");
}

#[tokio::test]
async fn non_loopback_needs_a_token_and_then_metrics_need_it() {
    let env = Env::new();
    let r = run(&env, &args(&["serve", "--listen", "0.0.0.0:0"])).await;
    r.assert_usage("ZNS_SERVE_TOKEN");

    let token = "serve-token-DO-NOT-LEAK-5a5a";
    let s = serve(&env, &[("ZNS_SERVE_TOKEN", token)]).await;
    assert_eq!(s.get_text("/metrics").await.0, 401);
    assert_eq!(s.get_text("/healthz").await.0, 200);
    let r = s
        .http
        .get(format!("{}/metrics", s.base))
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    let stderr = s.stop_clean().await.stderr;
    assert!(!stderr.contains(token));
}

/// The harness keeps what serve writes, line by line, while it runs and
/// after it stops: the no-secret checks above read the same lines.
#[tokio::test]
async fn the_harness_keeps_serves_output_lines() {
    let env = Env::new();
    // No webhook secrets: serve warns about both on stderr.
    let s = ServeHarness::start(&env, &[]).await;
    assert_eq!(
        s.stdout_lines(),
        vec![format!("listening on {}", s.base)],
        "the address line"
    );
    assert_eq!(s.url("/healthz"), format!("http://{}/healthz", s.addr));
    let t0 = std::time::Instant::now();
    while !s
        .stderr_lines()
        .iter()
        .any(|l| l.contains("Zalo webhooks will be refused"))
    {
        assert!(
            t0.elapsed() < Duration::from_secs(10),
            "no warning on stderr: {:?}",
            s.stderr_lines()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(s.get_text("/healthz").await, (200, "ok".to_string()));
    let out = s.stop_clean().await;
    assert!(
        out.stderr.contains("eSMS and eTelecom webhooks are off"),
        "{out}"
    );
    assert!(
        out.stdout.starts_with("listening on http://127.0.0.1:"),
        "{out}"
    );

    // A kill -9 is reported as such, with what was written before it.
    let s = ServeHarness::start(&env, &[]).await;
    let out = s.kill_9().await;
    assert_eq!(out.code, -1, "ended by a signal: {out}");
    assert!(out.stdout.starts_with("listening on "), "{out}");
}
