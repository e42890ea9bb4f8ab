//! eTelecom Zalo Cloud API (seeds 000–002): Twirp-style `POST …​.Zalo/<Method>`
//! with `Authorization: Bearer <key>`; int64s answered as strings.

use axum::http::{header, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{json, Map, Value};

use super::{
    check_template_data, header_str, int64_field, msg_id_of, normalize_phone, parse_object,
    rfc3339, string_field, template_id_field, Call, Delivery, Endpoint, Inner, Message, Reply,
    Shared, JOURNEY_ID_BASE, JOURNEY_REF_BASE, MESSAGE_REF_BASE,
};

/// Any prefix before `.Zalo/<Method>` (shop or partner base).
pub(super) fn route(method: &Method, path: &str) -> Option<Endpoint> {
    if method != Method::POST {
        return None;
    }
    let (prefix, name) = path.rsplit_once('/')?;
    if !prefix.ends_with(".Zalo") {
        return None;
    }
    match name {
        "CreateJourney" => Some(Endpoint::CreateToken),
        "GetJourney" => Some(Endpoint::CheckToken),
        "SendZNSJourney" => Some(Endpoint::Send),
        "GetMessage" => Some(Endpoint::GetMessage),
        _ => None,
    }
}

/// Twirp's error body.
pub(super) fn twirp_error(status: StatusCode, code: &str, msg: &str) -> Response {
    let body = json!({ "code": code, "msg": msg }).to_string();
    (status, [(header::CONTENT_TYPE, "application/json")], body).into_response()
}

fn invalid(msg: impl Into<String>) -> Reply {
    Reply::with_status(
        StatusCode::BAD_REQUEST,
        json!({ "code": "invalid_argument", "msg": msg.into() }),
    )
}

/// A business error: HTTP 200 with Zalo's code relayed.
fn biz_error(code: i64, msg: &str) -> Reply {
    Reply::ok(json!({ "error_code": code, "error_message": msg }))
}

pub(super) fn handle(shared: &Shared, ep: Endpoint, call: &Call<'_>) -> Reply {
    let authorized = header_str(call.headers, "authorization")
        .and_then(|v| {
            let (scheme, key) = v.split_once(' ')?;
            scheme.eq_ignore_ascii_case("bearer").then(|| key.trim())
        })
        .is_some_and(|key| key == shared.api_key);
    if !authorized {
        shared.lock().stats.auth_failures += 1;
        return Reply::with_status(
            StatusCode::UNAUTHORIZED,
            json!({ "code": "unauthenticated", "msg": "invalid api key" }),
        );
    }
    let obj = match parse_object(call.body) {
        Ok(o) => o,
        Err(e) => return invalid(e),
    };
    let result = match ep {
        Endpoint::CreateToken => create_journey(shared, &obj),
        Endpoint::CheckToken => get_journey(shared, &obj),
        Endpoint::Send => send(shared, &obj),
        Endpoint::GetMessage => get_message(shared, &obj),
        Endpoint::Quota => Err("no such method".to_string()),
    };
    result.unwrap_or_else(invalid)
}

fn required<T>(v: Result<Option<T>, String>, key: &str) -> Result<T, String> {
    v?.ok_or_else(|| format!("{key} is required"))
}

fn journey_json(g: &Inner, n: usize) -> Value {
    let Some(j) = g.journeys.get(n) else {
        return json!({ "error_code": -133, "error_message": "journey not found" });
    };
    json!({
        "id": (JOURNEY_REF_BASE + n as u64).to_string(),
        "journey_id": (JOURNEY_ID_BASE + n as u64).to_string(),
        "journey_token": j.token,
        "expired_at": rfc3339(g.wire(j.expires)),
        "oa_id": j.oa,
        "phone": j.phone,
        "status": "P",
        "is_charged": true,
        "error_code": 0,
        "error_message": "",
        "created_at": rfc3339(g.wire(j.created)),
        "updated_at": rfc3339(g.wire(j.created)),
    })
}

fn create_journey(shared: &Shared, obj: &Map<String, Value>) -> Result<Reply, String> {
    let oa = required(int64_field(obj, "oa_id"), "oa_id")?.to_string();
    let phone = required(string_field(obj, "phone"), "phone")?;
    let token_type = string_field(obj, "token_type")?
        .filter(|t| !t.is_empty())
        .unwrap_or_else(|| "token_logistics_7".to_string());
    let Some(phone) = normalize_phone(&phone) else {
        return Ok(biz_error(-108, "phone number is invalid"));
    };
    if shared.is_unknown_phone(&phone) {
        return Ok(biz_error(-118, "Zalo account does not exist"));
    }
    let ttl = shared.ttl_for(&token_type);
    let mut g = shared.lock();
    let n = g.create_journey(&oa, &phone, ttl);
    Ok(Reply::ok(journey_json(&g, n)))
}

fn get_journey(shared: &Shared, obj: &Map<String, Value>) -> Result<Reply, String> {
    let journey_id = required(int64_field(obj, "journey_id"), "journey_id")?;
    let oa = int64_field(obj, "oa_id")?.map(|o| o.to_string());
    let mut g = shared.lock();
    g.stats.token_checks += 1;
    let found = g
        .journey_by_id(journey_id)
        .filter(|&n| oa.as_ref().is_none_or(|oa| g.journeys[n].oa == *oa));
    Ok(match found {
        Some(n) => Reply::ok(journey_json(&g, n)),
        // -133 is deliberately outside the client's table.
        None => biz_error(-133, "journey not found"),
    })
}

/// Fees the sandbox charges (VND, in the range of real ZNS prices).
pub(crate) const MESSAGE_FEE: i64 = 200;
pub(crate) const TOKEN_FEE: i64 = 150;
/// A message reaches the phone this long after it is sent (sandbox clock)…
const DELIVERY_DELAY: time::Duration = time::Duration::seconds(1);
/// …and every third one is opened this long after.
const SEEN_DELAY: time::Duration = time::Duration::seconds(5);

/// Delivery as GetMessage reports it, decided by the message's index and
/// the sandbox clock: one in ten is never delivered (phone off, Zalo never
/// opened) and stays `unknown`; the rest are `unknown` until delivered,
/// then `received`; every third of those turns `seen`.
pub(crate) fn delivery_of(n: usize, age: time::Duration) -> (&'static str, bool) {
    if n % 10 == 9 || age < DELIVERY_DELAY {
        ("unknown", false)
    } else if n % 3 == 2 && age >= SEEN_DELAY {
        ("seen", true)
    } else {
        ("received", true)
    }
}

fn message_json(g: &Inner, n: usize, looked_up: bool) -> Value {
    let Some(m) = g.messages.get(n) else {
        return json!({ "error_code": -107, "error_message": "message id invalid" });
    };
    let sent = rfc3339(g.wire(m.sent));
    let mut v = json!({
        "id": (MESSAGE_REF_BASE + n as u64).to_string(),
        "msg_id": msg_id_of(n),
        "oa_id": m.oa,
        "journey_id": m.journey.map(|j| (JOURNEY_ID_BASE + j as u64).to_string()).unwrap_or_default(),
        "phone": m.phone,
        "template_id": m.template_id,
        "tracking_id": m.tracking_id,
        "msg_type": "journey",
        "type": "journey",
        "is_charged": true,
        "fee_main": MESSAGE_FEE,
        "fee_token": if m.token_charged { TOKEN_FEE } else { 0 },
        "sent_time": sent,
        "delivery_status": "unknown",
        "status": "P",
        "error_code": 0,
        "error_message": "",
        "created_at": sent,
        "updated_at": sent,
    });
    if looked_up {
        let (status, delivered) = delivery_of(n, g.now() - m.sent);
        v["delivery_status"] = json!(status);
        if delivered {
            v["delivery_time"] = json!(rfc3339(g.wire(m.sent + DELIVERY_DELAY)));
        }
    }
    v
}

fn send(shared: &Shared, obj: &Map<String, Value>) -> Result<Reply, String> {
    let oa = required(int64_field(obj, "oa_id"), "oa_id")?.to_string();
    let journey_id = required(int64_field(obj, "journey_id"), "journey_id")?;
    let phone = required(string_field(obj, "phone"), "phone")?;
    let template_id = template_id_field(obj, "template_id")?;
    let tracking_id = string_field(obj, "tracking_id")?.unwrap_or_default();

    let mut g = shared.lock();
    g.count_send_attempt(&tracking_id);
    let Some(phone) = normalize_phone(&phone) else {
        return Ok(biz_error(-108, "phone number is invalid"));
    };
    let journey = g
        .journey_by_id(journey_id)
        .filter(|&n| g.journeys[n].oa == oa && g.journeys[n].phone == phone);
    let journey = match journey {
        Some(n) if !g.journey_expired(n) => n,
        _ => return Ok(biz_error(-133, "journey token invalid or expired")),
    };
    if let Err((code, msg)) = check_template_data(obj.get("template_data")) {
        return Ok(biz_error(code, msg));
    }
    if shared.is_unknown_phone(&phone) {
        return Ok(biz_error(-118, "Zalo account does not exist"));
    }
    let sent = g.now();
    let msg = Message {
        oa,
        journey: Some(journey),
        phone,
        template_id,
        tracking_id,
        sent,
        token_charged: false,
    };
    Ok(match g.deliver(shared.dedup, msg) {
        Delivery::New(n) | Delivery::Replay(n) => Reply::accepted(message_json(&g, n, false)),
        Delivery::OverQuota => biz_error(-144, "OA exceeded daily ZNS quota"),
    })
}

/// GetMessage by `msg_id` (documented). Sandbox extension: by `tracking_id`
/// with `oa_id` when no `msg_id` is given — no real provider documents such a
/// lookup; it lets the runner's reconcile-by-lookup path be exercised.
fn get_message(shared: &Shared, obj: &Map<String, Value>) -> Result<Reply, String> {
    let msg_id = string_field(obj, "msg_id")?;
    let tracking_id = string_field(obj, "tracking_id")?.filter(|t| !t.is_empty());
    let oa = int64_field(obj, "oa_id")?.map(|o| o.to_string());
    let mut g = shared.lock();
    g.stats.get_message_calls += 1;
    let found = match (msg_id, tracking_id, &oa) {
        (Some(msg_id), _, _) => g.message_by_msg_id(&msg_id),
        (None, Some(t), Some(oa)) => g.message_by_tracking_id(oa, &t),
        _ => return Err("msg_id is required".to_string()),
    };
    let found = found.filter(|&n| oa.as_ref().is_none_or(|oa| g.messages[n].oa == *oa));
    Ok(match found {
        Some(n) => Reply::ok(message_json(&g, n, true)),
        None => biz_error(-107, "message id invalid"),
    })
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use serde_json::{json, Value};

    use super::super::tests::{client, start};
    use super::super::{Faults, SandboxConfig};
    use crate::provider::{self, ProviderKind, ProviderSettings, Secret};

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

    async fn token(base: &str, phone: &str) -> Value {
        let (s, v) = call(
            base,
            "CreateJourney",
            "sandbox-key",
            json!({ "oa_id": OA, "phone": phone, "token_type": "token_logistics_7" }),
        )
        .await;
        assert_eq!(s, 200, "{v}");
        v
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
        let sb = start(SandboxConfig::default()).await;
        let base = sb.base_url();
        let j = token(&base, PHONE).await;
        assert_eq!(j["error_code"], 0);
        assert_ne!(j["id"], j["journey_id"], "id and journey_id must differ");
        assert!(j["journey_id"].is_string() && j["expired_at"].is_string());

        let (s, m) = call(
            &base,
            "SendZNSJourney",
            "sandbox-key",
            send_body(&j["journey_id"], "t-1"),
        )
        .await;
        assert_eq!(s, 200);
        assert_eq!(m["error_code"], 0, "{m}");
        assert_eq!(m["tracking_id"], "t-1");
        assert_eq!(m["journey_id"], j["journey_id"]);
        assert_eq!(m["delivery_status"], "unknown");

        let (_, got) = call(
            &base,
            "GetMessage",
            "sandbox-key",
            json!({ "oa_id": OA, "msg_id": m["msg_id"] }),
        )
        .await;
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
        let (_, got) = call(
            &base,
            "GetMessage",
            "sandbox-key",
            json!({ "oa_id": OA, "msg_id": m["msg_id"] }),
        )
        .await;
        assert_eq!(got["delivery_status"], "received");
        assert!(got["delivery_time"].is_string(), "{got}");
        sb.advance_day(-1);
        let (_, none) = call(
            &base,
            "GetMessage",
            "sandbox-key",
            json!({ "oa_id": OA, "msg_id": "nope" }),
        )
        .await;
        assert_eq!(none["error_code"], -107);

        // A journey id sent as the `id` value is not a journey.
        let (_, wrong) = call(
            &base,
            "SendZNSJourney",
            "sandbox-key",
            send_body(&j["id"], "t-2"),
        )
        .await;
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
        };
        let p = provider::build(settings).expect("adapter");
        let tok = p
            .create_token(&provider::TokenRequest {
                oa_id: OA,
                phone: PHONE,
                token_type: "token_logistics_30",
            })
            .await
            .expect("token");
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
        let tok2 = p
            .create_token(&provider::TokenRequest {
                oa_id: OA,
                phone: PHONE,
                token_type: "token_logistics_7",
            })
            .await
            .expect("token");
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
        let resp = client()
            .post(format!("{}.Zalo/CreateJourney", sb.base_url()))
            .json(&json!({}))
            .send()
            .await
            .expect("request");
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
        let (s, v) = call(
            &partner,
            "CreateJourney",
            "sandbox-key",
            json!({ "oa_id": 7, "phone": "84900000999" }),
        )
        .await;
        assert_eq!(s, 200);
        assert_eq!(v["error_code"], -118);
        assert_eq!(v["error_message"], "Zalo account does not exist");
        let (_, v) = call(
            &partner,
            "GetJourney",
            "sandbox-key",
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
            let sb = start(SandboxConfig {
                dedup,
                ..SandboxConfig::default()
            })
            .await;
            let base = sb.base_url();
            let j = token(&base, PHONE).await;
            let (_, a) = call(
                &base,
                "SendZNSJourney",
                "sandbox-key",
                send_body(&j["journey_id"], "t-1"),
            )
            .await;
            let (_, b) = call(
                &base,
                "SendZNSJourney",
                "sandbox-key",
                send_body(&j["journey_id"], "t-1"),
            )
            .await;
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
        let sb = start(SandboxConfig {
            daily_quota: 2,
            ..SandboxConfig::default()
        })
        .await;
        let base = sb.base_url();
        let j = token(&base, PHONE).await;
        for t in ["q1", "q2"] {
            let (_, v) = call(
                &base,
                "SendZNSJourney",
                "sandbox-key",
                send_body(&j["journey_id"], t),
            )
            .await;
            assert_eq!(v["error_code"], 0);
        }
        // A replay does not count against the quota, even when it is used up.
        let (_, v) = call(
            &base,
            "SendZNSJourney",
            "sandbox-key",
            send_body(&j["journey_id"], "q1"),
        )
        .await;
        assert_eq!(v["error_code"], 0);
        let (_, v) = call(
            &base,
            "SendZNSJourney",
            "sandbox-key",
            send_body(&j["journey_id"], "q3"),
        )
        .await;
        assert_eq!(v["error_code"], -144);
        let day0 = sb.stats().day;
        assert_eq!(sb.stats().quota_rejections, 1);
        assert_eq!(sb.stats().quota_used_today, 2);
        sb.advance_day(1);
        assert_ne!(sb.stats().day, day0);
        let (_, v) = call(
            &base,
            "SendZNSJourney",
            "sandbox-key",
            send_body(&j["journey_id"], "q3"),
        )
        .await;
        assert_eq!(v["error_code"], 0, "{v}");
        assert_eq!(sb.stats().accepted, 3);
        sb.stop().await;
    }

    #[tokio::test]
    async fn expired_tokens_are_rejected_and_show_past_expiry() {
        let sb = start(SandboxConfig::default()).await;
        let base = sb.base_url();
        let j = token(&base, PHONE).await;
        sb.expire_tokens();
        let (_, v) = call(
            &base,
            "SendZNSJourney",
            "sandbox-key",
            send_body(&j["journey_id"], "t"),
        )
        .await;
        assert_eq!(v["error_code"], -133);
        assert_eq!(v["error_message"], "journey token invalid or expired");
        let (_, g) = call(
            &base,
            "GetJourney",
            "sandbox-key",
            json!({ "oa_id": OA, "journey_id": j["journey_id"] }),
        )
        .await;
        assert_eq!(g["error_code"], 0);
        let exp = crate::provider::etelecom::parse_time(g["expired_at"].as_str().unwrap_or(""));
        assert!(exp.is_some_and(|t| t < time::OffsetDateTime::now_utc()));

        // Advancing past a token's lifetime expires it too.
        let j2 = token(&base, PHONE).await;
        sb.advance_day(8);
        let (_, v) = call(
            &base,
            "SendZNSJourney",
            "sandbox-key",
            send_body(&j2["journey_id"], "t"),
        )
        .await;
        assert_eq!(v["error_code"], -133);
        assert_eq!(sb.stats().token_checks, 1);
        sb.stop().await;
    }

    #[tokio::test]
    async fn template_data_and_phone_checks() {
        let sb = start(SandboxConfig::default()).await;
        let base = sb.base_url();
        let j = token(&base, PHONE).await;
        let mut body = send_body(&j["journey_id"], "t");
        body["template_data"] = json!({});
        assert_eq!(
            call(&base, "SendZNSJourney", "sandbox-key", body.clone())
                .await
                .1["error_code"],
            -111
        );
        body["template_data"] = json!({ "n": 5 });
        assert_eq!(
            call(&base, "SendZNSJourney", "sandbox-key", body.clone())
                .await
                .1["error_code"],
            -112
        );
        body["template_data"] = json!({ "n": "5" });
        body["phone"] = json!("84111111111");
        assert_eq!(
            call(&base, "SendZNSJourney", "sandbox-key", body.clone())
                .await
                .1["error_code"],
            -133
        );
        body["phone"] = json!("12");
        assert_eq!(
            call(&base, "SendZNSJourney", "sandbox-key", body.clone())
                .await
                .1["error_code"],
            -108
        );
        // int64s as numbers, template_id as a string.
        body["phone"] = json!(PHONE);
        body["oa_id"] = json!(1234567890123u64);
        body["journey_id"] = json!(j["journey_id"].as_str().and_then(|s| s.parse::<u64>().ok()));
        body["template_id"] = json!("217489");
        let (_, ok) = call(&base, "SendZNSJourney", "sandbox-key", body).await;
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
        let resp = client()
            .post(format!("{base}.Zalo/Nope"))
            .send()
            .await
            .expect("request");
        assert_eq!(resp.status().as_u16(), 404);
        let resp = client()
            .get(format!("{base}.Zalo/GetJourney"))
            .send()
            .await
            .expect("request");
        assert_eq!(resp.status().as_u16(), 404);
        sb.stop().await;
    }
}
