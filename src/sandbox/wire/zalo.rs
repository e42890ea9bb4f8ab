//! Zalo's own journey API (seed 003): `access_token` header, errors as HTTP
//! 200 with `{"error": <negative code>, "message": …}`.

use axum::http::Method;
use serde_json::{json, Map, Value};

use super::{
    check_zalo_send_data, header_str, normalize_phone, parse_object, string_field,
    template_id_field, Call, Endpoint, Reply,
};
use crate::sandbox::ids::{msg_id_of, unix_ms, JOURNEY_ID_BASE};
use crate::sandbox::state::{Admission, Message, Shared};

/// The OA and app an access token stands for (Zalo requests name no OA).
const OA_ID: &str = crate::sandbox::oauth::OA_ID;
const APP_ID: &str = crate::sandbox::DEFAULT_ZALO_APP_ID;

pub(crate) fn route(method: &Method, path: &str) -> Option<Endpoint> {
    match (method.as_str(), path.trim_end_matches('/')) {
        ("POST", "/journey/get-token") => Some(Endpoint::CreateToken),
        ("GET", "/journey/check-token") => Some(Endpoint::CheckToken),
        ("POST", "/message/template") => Some(Endpoint::Send),
        ("GET", "/template/info/v2") => Some(Endpoint::TemplateInfo),
        ("GET", "/message/quota") => Some(Endpoint::Quota),
        _ => None,
    }
}

fn error(code: i64, message: &str) -> Reply {
    Reply::ok(json!({ "error": code, "message": message }))
}

fn token_error() -> Reply {
    error(-133, "journey token invalid or expired")
}

pub(crate) fn handle(shared: &Shared, ep: Endpoint, call: &Call<'_>) -> Reply {
    let access = header_str(call.headers, "access_token").unwrap_or("");
    // The static key, or a token from the OAuth endpoint still alive.
    if access != shared.api_key && !shared.lock().oauth.access_valid(access) {
        shared.lock().stats.auth_failures += 1;
        return error(-124, "access token is invalid");
    }
    match ep {
        Endpoint::CreateToken => get_token(shared, call),
        Endpoint::CheckToken => check_token(shared, call),
        Endpoint::Send => send(shared, call),
        Endpoint::TemplateInfo => template_info(shared, call),
        Endpoint::Quota => quota(shared),
        Endpoint::GetMessage => error(-106, "method is not supported"),
    }
}

/// The request body as an object; garbage answers -112 (data invalid), not
/// -100, which a client would retry forever.
fn body(call: &Call<'_>) -> Result<Map<String, Value>, Reply> {
    parse_object(call.body).map_err(|e| error(-112, &format!("invalid request body: {e}")))
}

fn get_token(shared: &Shared, call: &Call<'_>) -> Reply {
    let obj = match body(call) {
        Ok(o) => o,
        Err(r) => return r,
    };
    let Some(phone) = string_field(&obj, "phone")
        .ok()
        .flatten()
        .and_then(|p| normalize_phone(&p))
    else {
        return error(-108, "phone number is invalid");
    };
    if shared.is_unknown_phone(&phone) {
        return error(-118, "Zalo account does not exist");
    }
    let ttl = shared.ttl_for("journey_7");
    let mut g = shared.lock();
    let n = g.create_journey(OA_ID, &phone, ttl);
    Reply::ok(json!({
        "error": 0,
        "message": "Success",
        "token": g.journeys[n].token,
        "journey_id": (JOURNEY_ID_BASE + n as u64).to_string(),
    }))
}

fn check_token(shared: &Shared, call: &Call<'_>) -> Reply {
    let token = header_str(call.headers, "journey_token").unwrap_or("");
    let mut g = shared.lock();
    g.stats.token_checks += 1;
    let Some(n) = g.journey_by_token(token) else {
        return token_error();
    };
    let j = &g.journeys[n];
    // Expired tokens answer with their past expiry, like eTelecom's GetJourney.
    Reply::ok(json!({
        "error": 0,
        "message": "Success",
        "data": {
            "appId": APP_ID,
            "oaId": j.oa,
            "createdAt": unix_ms(g.wire(j.created)).to_string(),
            "expiredAt": unix_ms(g.wire(j.expires)).to_string(),
        }
    }))
}

fn send(shared: &Shared, call: &Call<'_>) -> Reply {
    let obj = match body(call) {
        Ok(o) => o,
        Err(r) => return r,
    };
    let phone = match string_field(&obj, "phone") {
        Ok(Some(p)) => p,
        _ => return error(-108, "phone number is invalid"),
    };
    let template_id = match template_id_field(&obj, "template_id") {
        Ok(t) => t,
        Err(e) => return error(-109, &format!("template id is invalid: {e}")),
    };
    let tracking_id = match string_field(&obj, "tracking_id") {
        Ok(t) => t.unwrap_or_default(),
        Err(e) => return error(-112, &e),
    };
    let token = header_str(call.headers, "journey_token").unwrap_or("");

    let mut g = shared.lock();
    g.count_send_attempt(&tracking_id);
    let Some(phone) = normalize_phone(&phone) else {
        return error(-108, "phone number is invalid");
    };
    let journey = match g.journey_by_token(token) {
        Some(n) if !g.journey_expired(n) && g.journeys[n].phone == phone => n,
        _ => return token_error(),
    };
    if let Err((code, msg)) = check_zalo_send_data(shared, &mut g, &template_id.to_string(), &obj) {
        return error(code, &msg);
    }
    if shared.is_unknown_phone(&phone) {
        return error(-118, "Zalo account does not exist");
    }
    let msg = Message {
        oa: OA_ID.to_string(),
        journey: Some(journey),
        phone,
        template_id,
        tracking_id,
        sent: g.now(),
        token_charged: false,
    };
    let admission = g.admit(shared.dedup, msg);
    if let Admission::New(n) = admission {
        shared.on_accepted(&mut g, n, None);
    }
    match admission {
        Admission::New(n) | Admission::Replay(n) => {
            let (remaining, daily) = g.quota_report(OA_ID);
            let sent = g
                .messages
                .get(n)
                .map(|m| unix_ms(g.wire(m.sent)))
                .unwrap_or(0);
            Reply::accepted(json!({
                "error": 0,
                "message": "Success",
                "data": {
                    "msg_id": msg_id_of(n),
                    "sent_time": sent.to_string(),
                    "quota": {
                        "remainingQuota": remaining.to_string(),
                        "dailyQuota": daily.to_string(),
                    }
                }
            }))
        }
        Admission::OverQuota => error(-144, "OA exceeded daily ZNS quota"),
    }
}

/// `GET /template/info/v2?template_id=…`: a declared template's limits.
fn template_info(shared: &Shared, call: &Call<'_>) -> Reply {
    let id = call
        .query
        .unwrap_or("")
        .split('&')
        .find_map(|kv| kv.strip_prefix("template_id="))
        .unwrap_or("")
        .trim();
    match shared.templates.get(id) {
        Some(spec) => Reply::ok(json!({
            "error": 0,
            "message": "Success",
            "data": spec.zalo_info(id),
        })),
        // A sandbox that declares no template accepts any id on send, so
        // it describes any id as enabled with no parameter limits.
        None if shared.templates.is_empty() => Reply::ok(json!({
            "error": 0,
            "message": "Success",
            "data": {"templateId": id, "status": "ENABLE", "listParams": []},
        })),
        None => error(-109, "template id is invalid"),
    }
}

/// `GET /message/quota`: the OA's daily quota and what is left today, as
/// strings like the send reply's `data.quota`.
fn quota(shared: &Shared) -> Reply {
    let (remaining, daily) = shared.lock().quota_report(OA_ID);
    Reply::ok(json!({
        "error": 0,
        "message": "Success",
        "data": {
            "dailyQuota": daily.to_string(),
            "remainingQuota": remaining.to_string(),
        }
    }))
}

#[cfg(test)]
mod tests {
    use serde_json::{json, Value};

    use crate::sandbox::tests::{client, start};
    use crate::sandbox::{Faults, ProviderKind, Sandbox, SandboxConfig};

    const PHONE: &str = "84987654321";

    fn cfg() -> SandboxConfig {
        SandboxConfig {
            protocol: ProviderKind::Zalo,
            ..SandboxConfig::default()
        }
    }

    async fn post(
        sb: &Sandbox,
        path: &str,
        access: &str,
        journey: Option<&str>,
        body: Value,
    ) -> (u16, Value) {
        let mut req = client()
            .post(format!("{}{path}", sb.base_url()))
            .header("access_token", access)
            .json(&body);
        if let Some(j) = journey {
            req = req.header("journey_token", j);
        }
        let resp = req.send().await.expect("request");
        let s = resp.status().as_u16();
        (s, resp.json().await.unwrap_or(Value::Null))
    }

    async fn token(sb: &Sandbox) -> String {
        let (s, v) = post(
            sb,
            "/journey/get-token",
            "sandbox-key",
            None,
            json!({ "phone": PHONE }),
        )
        .await;
        assert_eq!((s, &v["error"]), (200, &json!(0)), "{v}");
        assert!(v["journey_id"]
            .as_str()
            .is_some_and(|j| j.bytes().all(|b| b.is_ascii_digit())));
        v["token"].as_str().unwrap_or_default().to_string()
    }

    async fn send(sb: &Sandbox, tok: &str, tracking: &str) -> Value {
        let body = json!({
            "phone": PHONE, "template_id": 217489,
            "template_data": { "name": "An" }, "tracking_id": tracking,
        });
        post(sb, "/message/template", "sandbox-key", Some(tok), body)
            .await
            .1
    }

    async fn check_token(sb: &Sandbox, tok: &str) -> Value {
        let resp = client()
            .get(format!("{}/journey/check-token", sb.base_url()))
            .header("access_token", "sandbox-key")
            .header("journey_token", tok)
            .send()
            .await
            .expect("request");
        resp.json().await.unwrap_or(Value::Null)
    }

    #[tokio::test]
    async fn happy_path_and_check_token() {
        let sb = start(cfg()).await;
        let tok = token(&sb).await;
        let v = send(&sb, &tok, "z-1").await;
        assert_eq!(v["error"], 0, "{v}");
        assert_eq!(v["data"]["quota"]["dailyQuota"], "500000");
        assert_eq!(v["data"]["quota"]["remainingQuota"], "499999");
        assert!(v["data"]["msg_id"].is_string() && v["data"]["sent_time"].is_string());

        let c = check_token(&sb, &tok).await;
        assert_eq!(c["error"], 0);
        let ms = |field: &str| {
            c["data"][field]
                .as_str()
                .and_then(|s| s.parse::<i64>().ok())
                .unwrap_or(0)
        };
        assert_eq!(ms("expiredAt") - ms("createdAt"), 7 * 86_400_000);
        assert_eq!(check_token(&sb, "bogus").await["error"], -133);

        let st = sb.stats();
        assert_eq!((st.tokens_created, st.accepted, st.token_checks), (1, 1, 2));
        assert_eq!(st.deliveries.get("z-1"), Some(&1));
        sb.stop().await;
    }

    #[tokio::test]
    async fn auth_unknown_phone_garbage() {
        let sb = start(SandboxConfig {
            unknown_phone_suffixes: vec!["000".into()],
            ..cfg()
        })
        .await;
        let refused = [
            ("bad", PHONE, -124),
            ("sandbox-key", "84900000000", -118),
            ("sandbox-key", "abc", -108),
        ];
        for (access, phone, error) in refused {
            let (s, v) = post(
                &sb,
                "/journey/get-token",
                access,
                None,
                json!({ "phone": phone }),
            )
            .await;
            assert_eq!((s, &v["error"]), (200, &json!(error)), "{phone}");
        }
        for garbage in ["not json", "[]", "{\"phone\": 5}", ""] {
            let resp = client()
                .post(format!("{}/message/template", sb.base_url()))
                .header("access_token", "sandbox-key")
                .header("journey_token", "x")
                .body(garbage)
                .send()
                .await
                .expect("request");
            assert_eq!(resp.status().as_u16(), 200);
            let v: Value = resp.json().await.unwrap_or(Value::Null);
            assert!(v["error"].as_i64().is_some_and(|e| e < 0), "{garbage}: {v}");
        }
        // Missing token header, then template_data checks.
        let tok = token(&sb).await;
        let full = json!({ "phone": PHONE, "template_id": 1, "template_data": {"a": "b"} });
        let no_data = json!({ "phone": PHONE, "template_id": 1 });
        for (journey, body, error) in [(None, full, -133), (Some(tok.as_str()), no_data, -111)] {
            let (_, v) = post(&sb, "/message/template", "sandbox-key", journey, body).await;
            assert_eq!(v["error"], error);
        }
        assert_eq!(sb.stats().tokens_created, 1);
        assert_eq!(sb.stats().auth_failures, 1);
        sb.stop().await;
    }

    #[tokio::test]
    async fn dedup_quota_expiry() {
        let sb = start(SandboxConfig {
            daily_quota: 2,
            ..cfg()
        })
        .await;
        let tok = token(&sb).await;
        let a = send(&sb, &tok, "d").await;
        let b = send(&sb, &tok, "d").await;
        assert_eq!(a["data"]["msg_id"], b["data"]["msg_id"]);
        assert_eq!(b["data"]["quota"]["remainingQuota"], "1");
        assert_eq!(send(&sb, &tok, "e").await["error"], 0);
        let over = send(&sb, &tok, "f").await;
        assert_eq!(over["error"], -144, "{over}");
        let st = sb.stats();
        assert_eq!(
            (st.accepted, st.duplicates_absorbed, st.quota_rejections),
            (2, 1, 1)
        );
        assert_eq!(st.deliveries.get("d"), Some(&1));
        sb.advance_day(1);
        assert_eq!(send(&sb, &tok, "f").await["error"], 0);
        sb.expire_tokens();
        assert_eq!(send(&sb, &tok, "g").await["error"], -133);
        sb.stop().await;

        let sb = start(SandboxConfig {
            dedup: false,
            ..cfg()
        })
        .await;
        let tok = token(&sb).await;
        send(&sb, &tok, "d").await;
        send(&sb, &tok, "d").await;
        assert_eq!(sb.stats().deliveries.get("d"), Some(&2));
        sb.stop().await;
    }

    #[tokio::test]
    async fn faults_on_zalo_sends() {
        let sb = start(cfg()).await;
        let tok = token(&sb).await;
        sb.set_faults(Faults {
            malformed: 1.0,
            ..Faults::default()
        });
        let resp = client()
            .post(format!("{}/message/template", sb.base_url()))
            .header("access_token", "sandbox-key")
            .header("journey_token", &tok)
            .json(&json!({ "phone": PHONE, "template_id": 1, "template_data": {"a": "b"}, "tracking_id": "m" }))
            .send()
            .await
            .expect("request");
        assert_eq!(resp.status().as_u16(), 200);
        let text = resp.text().await.expect("body");
        assert!(serde_json::from_str::<Value>(&text).is_err(), "{text}");
        assert_eq!(sb.stats().deliveries.get("m"), Some(&1));
        assert_eq!(sb.stats().faults_injected.get("malformed"), Some(&1));
        sb.stop().await;
    }
}
