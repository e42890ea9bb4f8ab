//! eTelecom Zalo Cloud API (seeds 000–002): Twirp-style `POST …​.Zalo/<Method>`
//! with `Authorization: Bearer <key>`; int64s answered as strings.

use axum::http::{header, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{json, Map, Value};

use super::{
    check_zalo_send_data, header_str, int64_field, normalize_phone, parse_object, string_field,
    template_id_field, Call, Endpoint, Reply,
};
use crate::sandbox::fate::{delivery_of, DELIVERY_DELAY};
use crate::sandbox::ids::{
    msg_id_of, rfc3339, JOURNEY_ID_BASE, JOURNEY_REF_BASE, MESSAGE_REF_BASE,
};
use crate::sandbox::state::{Admission, Inner, Message, Shared};

/// Any prefix before `.Zalo/<Method>` (shop or partner base).
pub(crate) fn route(method: &Method, path: &str) -> Option<Endpoint> {
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
pub(crate) fn twirp_error(status: StatusCode, code: &str, msg: &str) -> Response {
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

pub(crate) fn handle(shared: &Shared, ep: Endpoint, call: &Call<'_>) -> Reply {
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
        Endpoint::Quota | Endpoint::TemplateInfo => Err("no such method".to_string()),
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
    // eTelecom relays Zalo's code in its business-error shape.
    if let Err((code, msg)) = check_zalo_send_data(shared, &mut g, &template_id.to_string(), obj) {
        return Ok(biz_error(code, &msg));
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
    let admission = g.admit(shared.dedup, msg);
    if let Admission::New(n) = admission {
        shared.on_accepted(&mut g, n, None);
    }
    Ok(match admission {
        Admission::New(n) | Admission::Replay(n) => Reply::accepted(message_json(&g, n, false)),
        Admission::OverQuota => biz_error(-144, "OA exceeded daily ZNS quota"),
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
#[path = "etelecom_tests.rs"]
mod tests;
