//! Tests common to every protocol: faults, control, stop/restart.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use super::*;
use crate::sandbox::wire::normalize_phone;

pub(crate) const PHONE: &str = "84987654321";

pub(crate) fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(3))
        .build()
        .expect("client")
}

pub(crate) async fn start(config: SandboxConfig) -> Sandbox {
    let any: SocketAddr = ([127, 0, 0, 1], 0).into();
    Sandbox::start(any, config).await.expect("sandbox starts")
}

/// Send `req` and read its reply as JSON.
pub(crate) async fn reply_json<T: serde::de::DeserializeOwned>(req: reqwest::RequestBuilder) -> T {
    req.send()
        .await
        .expect("request")
        .json()
        .await
        .expect("reply json")
}

/// POST `{}` to `url` without a key; the response.
pub(crate) async fn post_empty(url: String) -> reqwest::Response {
    client()
        .post(url)
        .json(&json!({}))
        .send()
        .await
        .expect("request")
}

/// An eTelecom journey (token) for [`PHONE`] on OA "1".
pub(crate) async fn etelecom_journey(sb: &Sandbox) -> Value {
    let req = client()
        .post(format!("{}.Zalo/CreateJourney", sb.base_url()))
        .bearer_auth(DEFAULT_API_KEY)
        .json(&json!({ "oa_id": "1", "phone": PHONE }));
    reply_json(req).await
}

pub(crate) fn etelecom_send(sb: &Sandbox, body: &Value) -> reqwest::RequestBuilder {
    client()
        .post(format!("{}.Zalo/SendZNSJourney", sb.base_url()))
        .bearer_auth(DEFAULT_API_KEY)
        .json(body)
}

/// An eTelecom token then a send body for it.
async fn etelecom_send_body(sb: &Sandbox, tracking: &str) -> Value {
    let j = etelecom_journey(sb).await;
    json!({
        "oa_id": "1", "journey_id": j["journey_id"], "phone": PHONE,
        "template_id": 1, "template_data": { "a": "b" }, "tracking_id": tracking,
    })
}

/// A Zalo journey token for [`PHONE`].
pub(crate) async fn zalo_token(sb: &Sandbox) -> Value {
    let req = client()
        .post(format!("{}/journey/get-token", sb.base_url()))
        .header("access_token", DEFAULT_API_KEY)
        .json(&json!({ "phone": PHONE }));
    reply_json(req).await
}

/// A Zalo template send of `body` (to [`PHONE`]) on a fresh token.
pub(crate) fn zalo_send_request(
    sb: &Sandbox,
    token: &Value,
    body: &Value,
) -> reqwest::RequestBuilder {
    client()
        .post(format!("{}/message/template", sb.base_url()))
        .header("access_token", DEFAULT_API_KEY)
        .header("journey_token", token["token"].as_str().unwrap_or(""))
        .json(body)
}

/// A token, then a Zalo send of `template_id` with `data`; the reply.
pub(crate) async fn zalo_send(
    sb: &Sandbox,
    template_id: i64,
    data: Value,
    tracking: &str,
) -> Value {
    let token = zalo_token(sb).await;
    let body = json!({
        "phone": PHONE, "template_id": template_id,
        "template_data": data, "tracking_id": tracking,
    });
    reply_json(zalo_send_request(sb, &token, &body)).await
}

/// An eSMS journey send body (`SendZaloMessage_V4_post_json`).
pub(crate) fn esms_send_body(temp: &str, params: Value, request_id: &str, callback: &str) -> Value {
    json!({
        "ApiKey": DEFAULT_API_KEY, "SecretKey": DEFAULT_SECRET_KEY,
        "Phone": PHONE, "Params": params, "TempID": temp,
        "OAID": "4097311281936189049", "IsJourney": "true", "OrderId": "J-1",
        "campaignid": "c1", "RequestId": request_id, "CallbackUrl": callback, "Sandbox": "0",
    })
}

/// Every fault off but those `set` turns on.
fn faults(set: impl FnOnce(&mut Faults)) -> Faults {
    let mut f = Faults::default();
    set(&mut f);
    f
}

#[tokio::test]
async fn drop_reply_breaks_the_reply_after_accepting() {
    let sb = start(SandboxConfig::default()).await;
    let body = etelecom_send_body(&sb, "lost").await;
    sb.set_faults(faults(|f| f.drop_reply = 1.0));
    let outcome = match etelecom_send(&sb, &body).send().await {
        Err(e) => format!("send error: {e}"),
        Ok(resp) => {
            assert_eq!(resp.status().as_u16(), 200);
            match resp.bytes().await {
                Err(e) => format!("body error: {e}"),
                Ok(b) => panic!("full body delivered: {b:?}"),
            }
        }
    };
    eprintln!("drop outcome: {outcome}");
    assert!(outcome.starts_with("body error"), "{outcome}");
    let st = sb.stats();
    assert_eq!(st.deliveries.get("lost"), Some(&1));
    assert_eq!(st.faults_injected.get("drop"), Some(&1));
    // Token calls are never dropped.
    etelecom_send_body(&sb, "x").await;
    sb.stop().await;
}

#[tokio::test]
async fn malformed_reply_is_unparseable_200() {
    let sb = start(SandboxConfig::default()).await;
    let body = etelecom_send_body(&sb, "m").await;
    sb.set_faults(faults(|f| f.malformed = 1.0));
    let resp = etelecom_send(&sb, &body).send().await.expect("reply");
    assert_eq!(resp.status().as_u16(), 200);
    let text = resp.text().await.expect("body");
    assert!(serde_json::from_str::<Value>(&text).is_err(), "{text}");
    assert_eq!(sb.stats().accepted, 1);
    sb.stop().await;
}

#[tokio::test]
async fn http_429_carries_retry_after_and_processes_nothing() {
    let sb = start(SandboxConfig::default()).await;
    let body = etelecom_send_body(&sb, "r").await;
    sb.set_faults(faults(|f| {
        f.http_429 = 1.0;
        f.retry_after_secs = Some(7);
    }));
    let resp = etelecom_send(&sb, &body).send().await.expect("reply");
    assert_eq!(resp.status().as_u16(), 429);
    assert_eq!(
        resp.headers()
            .get("retry-after")
            .and_then(|v| v.to_str().ok()),
        Some("7")
    );
    let st = sb.stats();
    assert_eq!((st.accepted, st.send_requests), (0, 1));
    assert!(st.send_requests_per_tracking_id.is_empty());
    assert_eq!(st.faults_injected.get("429"), Some(&1));
    sb.stop().await;
}

#[tokio::test]
async fn http_5xx_rotates_and_token_calls_can_be_spared() {
    let sb = start(SandboxConfig {
        protocol: ProviderKind::Zalo,
        faults: faults(|f| {
            f.http_5xx = 1.0;
            f.apply_to_tokens = false;
        }),
        ..SandboxConfig::default()
    })
    .await;
    let tok = zalo_token(&sb).await;
    assert_eq!(tok["error"], 0);
    let body = json!({ "phone": PHONE, "template_id": 1, "template_data": {"a": "b"} });
    let mut seen = Vec::new();
    for _ in 0..3 {
        let resp = zalo_send_request(&sb, &tok, &body).send().await;
        seen.push(resp.expect("reply").status().as_u16());
    }
    assert_eq!(seen, [500, 502, 503]);
    assert_eq!(sb.stats().accepted, 0);
    sb.stop().await;
}

#[tokio::test]
async fn timeout_hangs_then_504_and_stop_cuts_hangs_short() {
    let sb = start(SandboxConfig {
        faults: faults(|f| {
            f.timeout = 1.0;
            f.hang = Duration::from_millis(150);
        }),
        ..SandboxConfig::default()
    })
    .await;
    let t = Instant::now();
    let resp = post_empty(format!("{}.Zalo/GetJourney", sb.base_url())).await;
    assert_eq!(resp.status().as_u16(), 504);
    assert!(t.elapsed() >= Duration::from_millis(150));

    // A client with a short timeout gives up; stop() does not wait for the hang.
    sb.set_faults(faults(|f| {
        f.timeout = 1.0;
        f.hang = Duration::from_secs(30);
    }));
    let short = reqwest::Client::builder()
        .timeout(Duration::from_millis(100))
        .build()
        .expect("client");
    let err = short
        .post(format!("{}.Zalo/GetJourney", sb.base_url()))
        .json(&json!({}))
        .send()
        .await
        .expect_err("times out");
    assert!(err.is_timeout());
    let url = format!("{}.Zalo/GetJourney", sb.base_url());
    let hung = tokio::spawn(async move { client().post(url).json(&json!({})).send().await });
    tokio::time::sleep(Duration::from_millis(50)).await;
    let t = Instant::now();
    sb.stop().await;
    assert!(
        t.elapsed() < Duration::from_secs(1),
        "stop took {:?}",
        t.elapsed()
    );
    let _ = hung.await;
}

#[tokio::test]
async fn stop_then_restart_on_the_same_port() {
    let sb = start(SandboxConfig::default()).await;
    let addr = sb.addr();
    // A kept-alive connection must not keep the port.
    let c = client();
    let health = format!("http://{addr}/__sandbox/health");
    assert_eq!(
        c.get(&health)
            .send()
            .await
            .expect("up")
            .text()
            .await
            .ok()
            .as_deref(),
        Some("ok")
    );
    sb.stop().await;
    assert!(
        client().get(&health).send().await.is_err(),
        "refused while down"
    );
    let sb2 = Sandbox::start(addr, SandboxConfig::default())
        .await
        .expect("same port again");
    assert_eq!(sb2.addr(), addr);
    assert_eq!(
        c.get(&health).send().await.expect("up").status().as_u16(),
        200
    );
    sb2.stop().await;
}

#[tokio::test]
async fn control_and_stats_endpoints() {
    let sb = start(SandboxConfig::default()).await;
    let body = etelecom_send_body(&sb, "c").await;
    etelecom_send(&sb, &body).send().await.expect("send");
    let base = format!("http://{}", sb.addr());

    let full: Stats = reply_json(client().get(format!("{base}/__sandbox/stats"))).await;
    assert_eq!(full.deliveries.get("c"), Some(&1));
    let brief: Stats =
        reply_json(client().get(format!("{base}/__sandbox/stats?detail=false"))).await;
    assert!(brief.deliveries.is_empty() && brief.tokens_created_per_phone.is_empty());
    assert_eq!(
        (brief.accepted, brief.tokens_created, brief.quota_used_today),
        (1, 1, 1)
    );

    let control = |body: &Value| {
        client()
            .post(format!("{base}/__sandbox/control"))
            .json(body)
    };
    let resp = control(&json!({
        "faults": { "http_429": 1.0, "retry_after_secs": 3, "hang_ms": 10 },
        "daily_quota": 5, "latency_ms": 1, "advance_days": 1, "expire_tokens": true,
    }))
    .send()
    .await
    .expect("control");
    assert_eq!(resp.status().as_u16(), 200);
    let after: Stats = resp.json().await.expect("json");
    assert_ne!(after.day, brief.day);
    assert_eq!(after.quota_used_today, 0, "a new day");
    {
        let g = sb.handle.0.lock();
        assert_eq!(g.faults.http_429, 1.0);
        assert_eq!(g.faults.retry_after_secs, Some(3));
        assert_eq!(g.faults.hang, Duration::from_millis(10));
        assert_eq!((g.daily_quota, g.latency), (5, Duration::from_millis(1)));
    }
    for bad in [
        json!({ "faults": { "http_5xx": 2.0 } }),
        json!({ "faults": { "hang": 1 } }),
        json!({ "bogus": 1 }),
        json!([1]),
    ] {
        let resp = control(&bad).send().await.expect("control");
        assert_eq!(resp.status().as_u16(), 400, "{bad}");
    }
    // Control and stats are never faulted.
    let resp = client()
        .get(format!("{base}/__sandbox/health"))
        .send()
        .await
        .expect("health");
    assert_eq!(resp.status().as_u16(), 200);
    sb.stop().await;
}

#[tokio::test]
async fn latency_is_added() {
    let sb = start(SandboxConfig {
        latency: Duration::from_millis(80),
        ..SandboxConfig::default()
    })
    .await;
    let t = Instant::now();
    client()
        .post(format!("{}.Zalo/GetJourney", sb.base_url()))
        .bearer_auth("sandbox-key")
        .json(&json!({ "journey_id": "1" }))
        .send()
        .await
        .expect("reply");
    assert!(t.elapsed() >= Duration::from_millis(80));
    sb.stop().await;
}

#[test]
fn phone_normalisation() {
    for (input, normal) in [
        ("84987654321", Some("84987654321")),
        ("+84987654321", Some("84987654321")),
        ("0987654321", Some("84987654321")),
        ("987654321", None),
        ("84-98765", None),
        ("", None),
    ] {
        assert_eq!(normalize_phone(input).as_deref(), normal, "{input:?}");
    }
}
