//! eTelecom protocol tests: raw HTTP and the real adapter against the sandbox.

use std::time::Duration;

use serde_json::{json, Value};

use crate::provider::{self, ProviderKind, ProviderSettings, Secret};
use crate::sandbox::tests::{client, post_empty, start};
use crate::sandbox::{Faults, Sandbox, SandboxConfig};

const OA: &str = "1234567890123";
const PHONE: &str = "84987654321";

async fn call(base: &str, method: &str, key: &str, body: Value) -> (u16, Value) {
    let resp = client()
        .post(format!("{base}.Zalo/{method}"))
        .bearer_auth(key)
        .json(&body)
        .send()
        .await
        .expect("request");
    let status = resp.status().as_u16();
    let v = resp.json::<Value>().await.unwrap_or(Value::Null);
    (status, v)
}

/// [`call`] with the sandbox's key.
async fn api(base: &str, method: &str, body: Value) -> (u16, Value) {
    call(base, method, "sandbox-key", body).await
}

/// `SendZNSJourney` of [`send_body`]; the reply.
async fn send(base: &str, journey_id: &Value, tracking: &str) -> Value {
    api(base, "SendZNSJourney", send_body(journey_id, tracking))
        .await
        .1
}

/// `GetMessage` for `msg_id`; the reply.
async fn get_message(base: &str, msg_id: Value) -> Value {
    let body = json!({ "oa_id": OA, "msg_id": msg_id });
    api(base, "GetMessage", body).await.1
}

async fn token(base: &str, phone: &str) -> Value {
    let body = json!({ "oa_id": OA, "phone": phone, "token_type": "token_logistics_7" });
    let (s, v) = api(base, "CreateJourney", body).await;
    assert_eq!(s, 200, "{v}");
    v
}

/// A sandbox on `config`, its base URL and a journey for [`PHONE`].
async fn with_journey(config: SandboxConfig) -> (Sandbox, String, Value) {
    let sb = start(config).await;
    let base = sb.base_url();
    let j = token(&base, PHONE).await;
    (sb, base, j)
}

fn send_body(journey_id: &Value, tracking: &str) -> Value {
    json!({
        "oa_id": OA, "journey_id": journey_id, "phone": PHONE,
        "template_id": 217489, "template_data": { "name": "An" },
        "tracking_id": tracking,
    })
}

#[tokio::test]
async fn happy_path_token_send_get_message() {
    let (sb, base, j) = with_journey(SandboxConfig::default()).await;
    assert_eq!(j["error_code"], 0);
    assert_ne!(j["id"], j["journey_id"], "id and journey_id must differ");
    assert!(j["journey_id"].is_string() && j["expired_at"].is_string());

    let (s, m) = api(&base, "SendZNSJourney", send_body(&j["journey_id"], "t-1")).await;
    assert_eq!(s, 200);
    assert_eq!(m["error_code"], 0, "{m}");
    assert_eq!(m["tracking_id"], "t-1");
    assert_eq!(m["journey_id"], j["journey_id"]);
    assert_eq!(m["delivery_status"], "unknown");

    let got = get_message(&base, m["msg_id"].clone()).await;
    assert_eq!(got["error_code"], 0);
    assert_eq!(got["tracking_id"], "t-1");
    // Just sent: not delivered yet.
    assert_eq!(got["delivery_status"], "unknown");
    assert!(got.get("delivery_time").is_none(), "{got}");
    assert_eq!(got["fee_main"], super::MESSAGE_FEE);
    assert_eq!(
        got["fee_token"],
        super::TOKEN_FEE,
        "first message on its token"
    );
    sb.advance_day(1);
    let got = get_message(&base, m["msg_id"].clone()).await;
    assert_eq!(got["delivery_status"], "received");
    assert!(got["delivery_time"].is_string(), "{got}");
    sb.advance_day(-1);
    let none = get_message(&base, json!("nope")).await;
    assert_eq!(none["error_code"], -107);

    // A journey id sent as the `id` value is not a journey.
    let wrong = send(&base, &j["id"], "t-2").await;
    assert_eq!(wrong["error_code"], -133);

    let st = sb.stats();
    assert_eq!(st.tokens_created, 1);
    assert_eq!(st.tokens_created_per_phone.get(PHONE), Some(&1));
    assert_eq!(st.deliveries.get("t-1"), Some(&1));
    assert_eq!(st.accepted, 1);
    assert_eq!(st.send_requests, 2);
    assert_eq!(st.get_message_calls, 3);
    sb.stop().await;
}

#[test]
fn delivery_follows_the_clock_and_the_index() {
    use super::delivery_of;
    use time::Duration as D;
    assert_eq!(delivery_of(0, D::milliseconds(10)), ("unknown", false));
    assert_eq!(delivery_of(0, D::seconds(2)), ("received", true));
    assert_eq!(delivery_of(2, D::seconds(2)), ("received", true));
    assert_eq!(delivery_of(2, D::days(1)), ("seen", true));
    assert_eq!(delivery_of(9, D::days(1)), ("unknown", false));
}

#[tokio::test]
async fn real_adapter_round_trip() {
    let sb = start(SandboxConfig::default()).await;
    let settings = ProviderSettings {
        kind: ProviderKind::Sandbox,
        base_url: sb.base_url(),
        api_key: Secret::new("sandbox-key"),
        secret_key: None,
        request_timeout: Duration::from_secs(2),
        codes: Default::default(),
        callback_url: None,
        pool_size: 4,
        access_tokens: None,
    };
    let p = provider::build(settings).expect("adapter");
    let new_token = |token_type: &'static str| {
        let p = &p;
        async move {
            let req = provider::TokenRequest {
                oa_id: OA,
                phone: PHONE,
                token_type,
            };
            p.create_token(&req).await.expect("token")
        }
    };
    let tok = new_token("token_logistics_30").await;
    assert!(tok.expires_at > time::OffsetDateTime::now_utc() + time::Duration::days(29));
    assert!(matches!(
        p.check_token(OA, &tok).await,
        Ok(provider::TokenCheck::Valid { .. })
    ));
    let data = [("name", "An")];
    let req = provider::SendRequest {
        oa_id: OA,
        phone: PHONE,
        template_id: "217489",
        template_data: &data,
        tracking_id: "row-1",
        token: Some(&tok),
        campaign: "c",
    };
    let out = p.send(&req).await.expect("send");
    let info = p
        .get_message(OA, out.msg_id.as_deref().unwrap_or(""))
        .await
        .expect("lookup");
    assert_eq!(info.tracking_id.as_deref(), Some("row-1"));

    sb.expire_tokens();
    assert_eq!(
        p.check_token(OA, &tok).await.ok(),
        Some(provider::TokenCheck::Expired)
    );
    let err = p.send(&req).await.expect_err("expired token");
    assert_eq!(err.code, "-133");

    sb.set_faults(Faults {
        drop_reply: 1.0,
        ..Faults::default()
    });
    let tok2 = new_token("token_logistics_7").await;
    let req2 = provider::SendRequest {
        tracking_id: "row-2",
        token: Some(&tok2),
        ..req
    };
    let err = p.send(&req2).await.expect_err("dropped reply");
    assert!(err.in_doubt, "{err:?}");
    let st = sb.stats();
    assert_eq!(st.deliveries.get("row-2"), Some(&1));
    assert_eq!(st.tokens_created, 2);
    sb.stop().await;
}

#[tokio::test]
async fn auth_failure_is_401_twirp() {
    let sb = start(SandboxConfig::default()).await;
    let (s, v) = call(
        &sb.base_url(),
        "CreateJourney",
        "wrong",
        json!({ "oa_id": OA, "phone": PHONE }),
    )
    .await;
    assert_eq!(s, 401);
    assert_eq!(v["code"], "unauthenticated");
    let resp = post_empty(format!("{}.Zalo/CreateJourney", sb.base_url())).await;
    assert_eq!(resp.status().as_u16(), 401);
    assert_eq!(sb.stats().auth_failures, 2);
    assert_eq!(sb.stats().tokens_created, 0);
    sb.stop().await;
}

#[tokio::test]
async fn unknown_phone_and_partner_prefix() {
    let sb = start(SandboxConfig {
        unknown_phone_suffixes: vec!["999".into()],
        ..SandboxConfig::default()
    })
    .await;
    let partner = format!("http://{}/v1/partner", sb.addr());
    let (s, v) = api(
        &partner,
        "CreateJourney",
        json!({ "oa_id": 7, "phone": "84900000999" }),
    )
    .await;
    assert_eq!(s, 200);
    assert_eq!(v["error_code"], -118);
    assert_eq!(v["error_message"], "Zalo account does not exist");
    let (_, v) = api(
        &partner,
        "GetJourney",
        json!({ "oa_id": 7, "journey_id": "7000000099" }),
    )
    .await;
    assert_eq!(v["error_code"], -133);
    assert_eq!(sb.stats().tokens_created, 0);
    sb.stop().await;
}

#[tokio::test]
async fn dedup_and_no_dedup() {
    for (dedup, deliveries, absorbed) in [(true, 1, 1), (false, 2, 0)] {
        let (sb, base, j) = with_journey(SandboxConfig {
            dedup,
            ..SandboxConfig::default()
        })
        .await;
        let a = send(&base, &j["journey_id"], "t-1").await;
        let b = send(&base, &j["journey_id"], "t-1").await;
        assert_eq!(a["error_code"], 0);
        assert_eq!(b["error_code"], 0);
        assert_eq!(a["msg_id"] == b["msg_id"], dedup);
        let st = sb.stats();
        assert_eq!(st.deliveries.get("t-1"), Some(&deliveries));
        assert_eq!(st.send_requests_per_tracking_id.get("t-1"), Some(&2));
        assert_eq!(st.duplicates_absorbed, absorbed);
        assert_eq!(st.accepted, deliveries);
        sb.stop().await;
    }
}

#[tokio::test]
async fn quota_then_next_day() {
    let (sb, base, j) = with_journey(SandboxConfig {
        daily_quota: 2,
        ..SandboxConfig::default()
    })
    .await;
    for t in ["q1", "q2"] {
        let v = send(&base, &j["journey_id"], t).await;
        assert_eq!(v["error_code"], 0);
    }
    // A replay does not count against the quota, even when it is used up.
    let v = send(&base, &j["journey_id"], "q1").await;
    assert_eq!(v["error_code"], 0);
    let v = send(&base, &j["journey_id"], "q3").await;
    assert_eq!(v["error_code"], -144);
    let day0 = sb.stats().day;
    assert_eq!(sb.stats().quota_rejections, 1);
    assert_eq!(sb.stats().quota_used_today, 2);
    sb.advance_day(1);
    assert_ne!(sb.stats().day, day0);
    let v = send(&base, &j["journey_id"], "q3").await;
    assert_eq!(v["error_code"], 0, "{v}");
    assert_eq!(sb.stats().accepted, 3);
    sb.stop().await;
}

#[tokio::test]
async fn expired_tokens_are_rejected_and_show_past_expiry() {
    let (sb, base, j) = with_journey(SandboxConfig::default()).await;
    sb.expire_tokens();
    let v = send(&base, &j["journey_id"], "t").await;
    assert_eq!(v["error_code"], -133);
    assert_eq!(v["error_message"], "journey token invalid or expired");
    let (_, g) = api(
        &base,
        "GetJourney",
        json!({ "oa_id": OA, "journey_id": j["journey_id"] }),
    )
    .await;
    assert_eq!(g["error_code"], 0);
    let exp = crate::provider::timestamp::parse_time(g["expired_at"].as_str().unwrap_or(""));
    assert!(exp.is_some_and(|t| t < time::OffsetDateTime::now_utc()));

    // Advancing past a token's lifetime expires it too.
    let j2 = token(&base, PHONE).await;
    sb.advance_day(8);
    let v = send(&base, &j2["journey_id"], "t").await;
    assert_eq!(v["error_code"], -133);
    assert_eq!(sb.stats().token_checks, 1);
    sb.stop().await;
}

#[tokio::test]
async fn template_data_and_phone_checks() {
    let (sb, base, j) = with_journey(SandboxConfig::default()).await;
    let error_code = |body: Value| {
        let base = &base;
        async move { api(base, "SendZNSJourney", body).await.1["error_code"].clone() }
    };
    let mut body = send_body(&j["journey_id"], "t");
    body["template_data"] = json!({});
    assert_eq!(error_code(body.clone()).await, -111);
    body["template_data"] = json!({ "n": 5 });
    assert_eq!(error_code(body.clone()).await, -112);
    body["template_data"] = json!({ "n": "5" });
    body["phone"] = json!("84111111111");
    assert_eq!(error_code(body.clone()).await, -133);
    body["phone"] = json!("12");
    assert_eq!(error_code(body.clone()).await, -108);
    // int64s as numbers, template_id as a string.
    body["phone"] = json!(PHONE);
    body["oa_id"] = json!(1234567890123u64);
    body["journey_id"] = json!(j["journey_id"].as_str().and_then(|s| s.parse::<u64>().ok()));
    body["template_id"] = json!("217489");
    let (_, ok) = api(&base, "SendZNSJourney", body).await;
    assert_eq!(ok["error_code"], 0, "{ok}");
    assert_eq!(ok["oa_id"], OA);
    sb.stop().await;
}

#[tokio::test]
async fn garbage_bodies_are_400_not_panics() {
    let sb = start(SandboxConfig::default()).await;
    let base = sb.base_url();
    for (method, body) in [
        ("CreateJourney", "not json"),
        ("CreateJourney", "[1,2]"),
        (
            "CreateJourney",
            r#"{"oa_id":{"x":1},"phone":"84987654321"}"#,
        ),
        ("CreateJourney", r#"{"oa_id":-5,"phone":"84987654321"}"#),
        ("SendZNSJourney", r#"{"oa_id":"1","journey_id":"abc"}"#),
        (
            "SendZNSJourney",
            r#"{"oa_id":"1","journey_id":"1","phone":"84987654321","template_id":"x"}"#,
        ),
        ("GetJourney", "{}"),
        ("GetMessage", r#"{"msg_id":5}"#),
        ("SendZNSJourney", "\u{0}\u{1}\u{ff}"),
    ] {
        let resp = client()
            .post(format!("{base}.Zalo/{method}"))
            .bearer_auth("sandbox-key")
            .body(body)
            .send()
            .await
            .expect("request");
        assert_eq!(resp.status().as_u16(), 400, "{method} {body}");
        let v: Value = resp.json().await.unwrap_or(Value::Null);
        assert_eq!(v["code"], "invalid_argument");
    }
    // No such method; a known one but not by POST.
    for (method, path) in [
        (reqwest::Method::POST, "Nope"),
        (reqwest::Method::GET, "GetJourney"),
    ] {
        let resp = client()
            .request(method.clone(), format!("{base}.Zalo/{path}"))
            .send()
            .await
            .expect("request");
        assert_eq!(resp.status().as_u16(), 404, "{method} {path}");
    }
    sb.stop().await;
}
