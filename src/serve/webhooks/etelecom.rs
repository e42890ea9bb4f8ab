//! `POST /webhooks/etelecom/{token}`: eTelecom's webhook (`zl_oa_message`).
//! Its body is not documented: `msg_id` / `tracking_id` are looked for
//! anywhere in the JSON; a `status` beside them is read when it says
//! something known (or `delivery_status`, GetMessage's name), a
//! `delivery_time` / `timestamp` / `time` (ms or RFC 3339) as the event's
//! time; the body is always kept raw.

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::response::Response;
use serde_json::Value;

use super::{json_body, sha256_hex, store_and_answer, text, wrong_path_token};
use crate::campaign::{DeliveryStatus, NewEvent};
use crate::model::error_note::ErrorNote;
use crate::provider::timestamp::parse_time;
use crate::serve::ServeState;

const PROVIDER: &str = "etelecom";

pub async fn handler(
    State(state): State<ServeState>,
    Path(token): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if let Some(refused) = wrong_path_token(&state, PROVIDER, &token) {
        return refused;
    }
    let json = match json_body(&state, PROVIDER, &headers, &body) {
        Ok(json) => json,
        Err(refused) => return refused,
    };
    let event = event_from(&json, &body, crate::model::clock::now_ms());
    store_and_answer(&state, PROVIDER, event).await
}

/// The first object (depth first) holding `msg_id` or `tracking_id`.
fn find_message(v: &Value) -> Option<&serde_json::Map<String, Value>> {
    match v {
        Value::Object(o) => {
            if o.contains_key("msg_id") || o.contains_key("tracking_id") {
                return Some(o);
            }
            o.values().find_map(find_message)
        }
        Value::Array(a) => a.iter().find_map(find_message),
        _ => None,
    }
}

fn status_word(s: &str) -> Option<DeliveryStatus> {
    match s.to_ascii_lowercase().as_str() {
        "received" | "delivered" => Some(DeliveryStatus::Received),
        "seen" | "read" => Some(DeliveryStatus::Seen),
        "failed" | "failed_delivery" | "undelivered" => Some(DeliveryStatus::FailedDelivery),
        _ => None,
    }
}

fn event_from(json: &Value, body: &[u8], now_ms: i64) -> NewEvent {
    let found = find_message(json);
    let get = |k: &str| found.and_then(|o| text(o.get(k)));
    let msg_id = get("msg_id");
    let tracking_id = get("tracking_id");
    // `delivery_status` is GetMessage's name for it (the sandbox mirrors that).
    let status = ["status", "delivery_status"]
        .iter()
        .find_map(|k| get(k).as_deref().and_then(status_word));
    NewEvent {
        provider: PROVIDER.to_string(),
        kind: "delivery".to_string(),
        status,
        phone: get("phone"),
        note: ErrorNote {
            error_code: get("error_code"),
            error: get("error"),
        },
        oa_id: get("oa_id"),
        event_ms: ["delivery_time", "timestamp", "time"].iter().find_map(|k| {
            get(k)
                .as_deref()
                .and_then(parse_time)
                .map(crate::model::clock::to_ms)
        }),
        msg_id,
        tracking_id,
        raw: String::from_utf8_lossy(body).into_owned(),
        received_ms: now_ms,
        dedup_key: format!("etelecom:{}", sha256_hex(&[body])),
        ..NewEvent::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_ids_anywhere() {
        let body = br#"{"entity":"zl_oa_message","changes":[{"data":{"msg_id":"m9","tracking_id":"t-9","status":"delivered"}}]}"#;
        let json: Value = serde_json::from_slice(body).unwrap();
        let e = event_from(&json, body, 1);
        assert_eq!(e.msg_id.as_deref(), Some("m9"));
        assert_eq!(e.tracking_id.as_deref(), Some("t-9"));
        assert_eq!(e.status, Some(DeliveryStatus::Received));
    }
}
