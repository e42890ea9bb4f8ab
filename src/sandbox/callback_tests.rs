//! Delivery callbacks against a small receiver on 127.0.0.1, per protocol.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, StatusCode};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use super::tests::{
    client, esms_send_body, etelecom_journey, etelecom_send, reply_json, start, PHONE,
};
use super::*;

/// One request the receiver got.
#[derive(Debug, Clone)]
struct Got {
    method: String,
    query: String,
    headers: HeaderMap,
    body: String,
}

#[derive(Clone, Default)]
struct Receiver {
    got: Arc<Mutex<Vec<Got>>>,
    /// Answer 500 to this many requests first.
    fail_first: Arc<AtomicUsize>,
}

impl Receiver {
    async fn start(fail_first: usize) -> (Receiver, String, tokio::task::JoinHandle<()>) {
        let r = Receiver::default();
        r.fail_first.store(fail_first, Ordering::SeqCst);
        let app = axum::Router::new().fallback(receive).with_state(r.clone());
        let any: SocketAddr = ([127, 0, 0, 1], 0).into();
        let listener = tokio::net::TcpListener::bind(any).await.expect("bind");
        let url = format!("http://{}/hook", listener.local_addr().expect("addr"));
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        (r, url, task)
    }

    fn got(&self) -> Vec<Got> {
        self.got.lock().expect("lock").clone()
    }

    /// Wait (bounded) until `n` requests arrived.
    async fn wait_for(&self, n: usize) -> Vec<Got> {
        let t = Instant::now();
        while self.got().len() < n && t.elapsed() < Duration::from_secs(5) {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        self.got()
    }
}

async fn receive(State(r): State<Receiver>, req: Request) -> StatusCode {
    let (parts, body) = req.into_parts();
    let body: Bytes = axum::body::to_bytes(body, 1 << 16)
        .await
        .unwrap_or_default();
    r.got.lock().expect("lock").push(Got {
        method: parts.method.to_string(),
        query: parts.uri.query().unwrap_or("").to_string(),
        headers: parts.headers,
        body: String::from_utf8_lossy(&body).into_owned(),
    });
    let fail = r
        .fail_first
        .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
        .is_ok();
    if fail {
        StatusCode::INTERNAL_SERVER_ERROR
    } else {
        StatusCode::OK
    }
}

fn fast() -> CallbackSettings {
    CallbackSettings {
        delay: Duration::from_millis(20),
        backoff: Duration::from_millis(10),
        ..CallbackSettings::default()
    }
}

/// [`fast`] with one fault or limit set.
fn fast_with(set: impl FnOnce(&mut CallbackSettings)) -> CallbackSettings {
    let mut callbacks = fast();
    set(&mut callbacks);
    callbacks
}

async fn zalo_send(sb: &Sandbox, tracking: &str) -> Value {
    super::tests::zalo_send(sb, 1, json!({"a": "b"}), tracking).await
}

/// A sandbox speaking `protocol` that calls `url` back with `callbacks`.
async fn calling_back(
    protocol: ProviderKind,
    url: Option<String>,
    callbacks: CallbackSettings,
) -> Sandbox {
    start(SandboxConfig {
        protocol,
        callback_url: url,
        callbacks,
        ..SandboxConfig::default()
    })
    .await
}

/// (sent, acknowledged, given up) callbacks so far.
fn callback_counts(sb: &Sandbox) -> (u64, u64, u64) {
    let st = sb.stats();
    (
        st.callbacks_sent,
        st.callbacks_acknowledged,
        st.callbacks_given_up,
    )
}

/// `(sent, acknowledged, given up)` once they reach `want`, or as they are
/// after 5 s: the receiver holds a callback before the sandbox has read
/// its answer and counted it, so a busy machine can see the count late.
async fn settled_counts(sb: &Sandbox, want: (u64, u64, u64)) -> (u64, u64, u64) {
    let t = Instant::now();
    while callback_counts(sb) != want && t.elapsed() < Duration::from_secs(5) {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    callback_counts(sb)
}

fn expected_mac(app_id: &str, body: &str, timestamp: &str, secret: &str) -> String {
    let digest = Sha256::digest(format!("{app_id}{body}{timestamp}{secret}").as_bytes());
    format!("mac={}", hex::encode(digest))
}

#[tokio::test]
async fn zalo_callback_is_shaped_and_signed_like_zalos() {
    let (rx, url, task) = Receiver::start(0).await;
    let sb = start(SandboxConfig {
        protocol: ProviderKind::Zalo,
        callback_url: Some(url),
        callbacks: fast(),
        zalo_app_id: "app-77".into(),
        zalo_oa_secret: "oa-secret-77".into(),
        ..SandboxConfig::default()
    })
    .await;
    let sent = zalo_send(&sb, "t-1").await;
    let got = rx.wait_for(1).await;
    assert_eq!(got.len(), 1, "{got:?}");
    let g = &got[0];
    assert_eq!(g.method, "POST");
    assert_eq!(g.headers["x-zevent-server"], "ZNS");
    let v: Value = serde_json::from_str(&g.body).expect("json body");
    assert_eq!(v["event_name"], "user_received_message");
    assert_eq!(v["recipient"]["id"], PHONE);
    assert_eq!(v["sender"]["id"].as_str().map(str::len), Some(19));
    assert_eq!(v["app_id"], "app-77");
    assert_eq!(v["message"]["msg_id"], sent["data"]["msg_id"]);
    assert_eq!(v["message"]["tracking_id"], "t-1");
    let delivered: i64 = v["message"]["delivery_time"]
        .as_str()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let sent_ms: i64 = sent["data"]["sent_time"]
        .as_str()
        .and_then(|s| s.parse().ok())
        .unwrap_or(i64::MAX);
    assert!(delivered > sent_ms, "{v}");
    let ts = v["timestamp"].as_str().expect("timestamp is a string");
    let mac = expected_mac("app-77", &g.body, ts, "oa-secret-77");
    assert_eq!(g.headers["x-zevent-signature"], mac.as_str());
    assert!(!g.body.contains("oa-secret-77"));
    assert_eq!(settled_counts(&sb, (1, 1, 0)).await, (1, 1, 0));
    sb.stop().await;

    // The bad-signature fault: same shape, a mac that does not verify.
    let (rx, url, task2) = Receiver::start(0).await;
    let callbacks = fast_with(|c| c.bad_signature = true);
    let sb = calling_back(ProviderKind::Zalo, Some(url), callbacks).await;
    zalo_send(&sb, "t-2").await;
    let got = rx.wait_for(1).await;
    let v: Value = serde_json::from_str(&got[0].body).expect("json");
    let ts = v["timestamp"].as_str().unwrap_or("");
    let good = expected_mac(
        DEFAULT_ZALO_APP_ID,
        &got[0].body,
        ts,
        DEFAULT_ZALO_OA_SECRET,
    );
    assert_ne!(got[0].headers["x-zevent-signature"], good.as_str());
    sb.stop().await;
    task.abort();
    task2.abort();
}

fn query_map(q: &str) -> std::collections::HashMap<String, String> {
    reqwest::Url::parse(&format!("http://x/?{q}"))
        .expect("url")
        .query_pairs()
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect()
}

#[tokio::test]
async fn esms_callback_is_a_get_to_the_sends_own_url() {
    let (rx, url, task) = Receiver::start(0).await;
    // No configured URL: each send's CallbackUrl decides.
    let sb = calling_back(ProviderKind::Esms, None, fast()).await;
    let mut smsids = Vec::new();
    for i in 0..10 {
        let cb = if i == 0 { "" } else { url.as_str() };
        let body = esms_send_body("217489", json!(["An"]), &format!("r-{i}"), cb);
        let url = format!("{}/SendZaloMessage_V4_post_json/", sb.base_url());
        let v: Value = reply_json(client().post(url).json(&body)).await;
        assert_eq!(v["CodeResult"], "100", "{v}");
        smsids.push(v["SMSID"].as_str().unwrap_or("").to_string());
    }
    let got = rx.wait_for(9).await;
    assert_eq!(got.len(), 9, "the send without a CallbackUrl gets none");
    let by_request: std::collections::HashMap<String, _> = got
        .iter()
        .map(|g| {
            assert_eq!(g.method, "GET");
            let q = query_map(&g.query);
            (q["RequestId"].clone(), q)
        })
        .collect();
    let ok = &by_request["r-1"];
    assert_eq!(ok["SMSID"], smsids[1]);
    assert_eq!(ok["partnerids"], smsids[1]);
    assert_eq!(
        (
            ok["SendStatus"].as_str(),
            ok["SendSuccess"].as_str(),
            ok["SendFailed"].as_str()
        ),
        ("5", "1", "0")
    );
    assert_eq!(
        (
            ok["oaid"].as_str(),
            ok["tempid"].as_str(),
            ok["phonenumber"].as_str()
        ),
        ("4097311281936189049", "217489", PHONE)
    );
    // The tenth message of the sandbox is never delivered: a failure report.
    let failed = &by_request["r-9"];
    assert_eq!(
        (failed["SendStatus"].as_str(), failed["SendFailed"].as_str()),
        ("4", "1")
    );
    let info: Value = serde_json::from_str(&failed["error_info"]).expect("error_info is JSON");
    assert_eq!(info["error"], -114);
    assert!(
        got.iter().all(|g| g.query.contains("error_info=%7B")),
        "URL-encoded"
    );
    sb.stop().await;
    task.abort();
}

#[tokio::test]
async fn callbacks_retry_after_a_500_and_give_up_when_bounded() {
    let (rx, url, task) = Receiver::start(2).await;
    let sb = calling_back(ProviderKind::Zalo, Some(url.clone()), fast()).await;
    zalo_send(&sb, "retry").await;
    let got = rx.wait_for(3).await;
    assert_eq!(got.len(), 3);
    assert!(
        got.iter().all(|g| g.body == got[0].body),
        "a retry resends the same body"
    );
    assert_eq!(settled_counts(&sb, (3, 1, 0)).await, (3, 1, 0));
    sb.stop().await;

    rx.fail_first.store(usize::MAX, Ordering::SeqCst);
    let callbacks = fast_with(|c| c.attempts = 2);
    let sb = calling_back(ProviderKind::Zalo, Some(url), callbacks).await;
    zalo_send(&sb, "never").await;
    rx.wait_for(5).await;
    assert_eq!(settled_counts(&sb, (2, 0, 1)).await, (2, 0, 1));
    sb.stop().await;
    task.abort();
}

#[tokio::test]
async fn duplicate_fault_sends_each_etelecom_callback_twice() {
    let (rx, url, task) = Receiver::start(0).await;
    let callbacks = fast_with(|c| c.duplicate = true);
    let sb = calling_back(SandboxConfig::default().protocol, Some(url), callbacks).await;
    let j = etelecom_journey(&sb).await;
    let body = json!({
        "oa_id": "1", "journey_id": j["journey_id"], "phone": PHONE,
        "template_id": 1, "template_data": {"a": "b"}, "tracking_id": "dup",
    });
    let sent: Value = reply_json(etelecom_send(&sb, &body)).await;
    let got = rx.wait_for(2).await;
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(rx.got().len(), 2, "exactly twice");
    assert_eq!(got[0].body, got[1].body);
    let v: Value = serde_json::from_str(&got[0].body).expect("json");
    assert_eq!(v["entity"], "zl_oa_message");
    assert_eq!(v["data"]["tracking_id"], "dup");
    assert_eq!(v["data"]["msg_id"], sent["msg_id"]);
    assert_eq!(v["data"]["delivery_status"], "received");
    assert_eq!(sb.stats().callbacks_acknowledged, 2);
    sb.stop().await;
    task.abort();
}

#[tokio::test]
async fn out_of_order_fault_shuffles_within_the_window() {
    let (rx, url, task) = Receiver::start(0).await;
    let callbacks = fast_with(|c| c.out_of_order = 6);
    let sb = calling_back(ProviderKind::Zalo, Some(url), callbacks).await;
    // Messages 0..6 of the sandbox are all delivered (every tenth is not).
    let sent: Vec<String> = (0..6).map(|i| format!("o-{i}")).collect();
    for t in &sent {
        zalo_send(&sb, t).await;
    }
    let got = rx.wait_for(6).await;
    let order: Vec<String> = got
        .iter()
        .map(|g| {
            let v: Value = serde_json::from_str(&g.body).expect("json");
            v["message"]["tracking_id"]
                .as_str()
                .unwrap_or("")
                .to_string()
        })
        .collect();
    let mut sorted = order.clone();
    sorted.sort();
    assert_eq!(sorted, sent, "each callback exactly once");
    assert_ne!(order, sent, "shuffled (fixed seed)");
    sb.stop().await;
    task.abort();
}

#[tokio::test]
async fn burst_fault_holds_callbacks_until_traffic_pauses() {
    let (rx, url, task) = Receiver::start(0).await;
    let callbacks = CallbackSettings {
        delay: Duration::from_secs(1),
        burst: true,
        ..fast()
    };
    let sb = calling_back(ProviderKind::Zalo, Some(url), callbacks).await;
    zalo_send(&sb, "b-1").await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let second = Instant::now();
    zalo_send(&sb, "b-2").await;
    // Without the fault b-1 would be out by `second` + 0.5 s; with it,
    // nothing goes before `second` + 1 s.
    tokio::time::sleep_until((second + Duration::from_millis(800)).into()).await;
    assert_eq!(rx.got().len(), 0, "held while traffic goes on");
    let got = rx.wait_for(2).await;
    assert_eq!(got.len(), 2);
    sb.stop().await;
    task.abort();
}
