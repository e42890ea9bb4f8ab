//! `POST /webhooks/zalo`: Zalo OA events, signed
//! `X-ZEvent-Signature: mac=<hex sha256(app_id + raw body + timestamp + oa_secret_key)>`
//! with `timestamp` taken from the body.

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::Value;

use super::{json_body, refuse, sha256_hex, store_and_answer, text};
use crate::campaign::{DeliveryStatus, NewEvent};
use crate::serve::auth::same_secret;
use crate::serve::ServeState;

const PROVIDER: &str = "zalo";

pub async fn handler(State(state): State<ServeState>, headers: HeaderMap, body: Bytes) -> Response {
    let signature = headers
        .get("x-zevent-signature")
        .and_then(|v| v.to_str().ok());
    // Saving the webhook URL in Zalo's console posts an unsigned `{}`
    // (whatever its content type): answer it, store nothing.
    if signature.is_none() && is_empty_object(&body) {
        state.metrics.webhook(PROVIDER, "ignored");
        return (StatusCode::OK, "ok\n").into_response();
    }
    let json = match json_body(&state, PROVIDER, &headers, &body) {
        Ok(json) => json,
        Err(refused) => return refused,
    };
    if !signature_ok(&state, &json, &body, signature) {
        return refuse(
            &state,
            PROVIDER,
            StatusCode::UNAUTHORIZED,
            "X-ZEvent-Signature missing or wrong",
        );
    }
    let zns_server = headers
        .get("x-zevent-server")
        .and_then(|v| v.to_str().ok())
        .map(|v| v.trim().eq_ignore_ascii_case("ZNS"));
    let event = event_from(&json, &body, zns_server, crate::model::clock::now_ms());
    store_and_answer(&state, PROVIDER, event).await
}

fn is_empty_object(body: &[u8]) -> bool {
    serde_json::from_slice::<Value>(body).is_ok_and(|v| v.as_object().is_some_and(|o| o.is_empty()))
}

fn signature_ok(state: &ServeState, json: &Value, body: &[u8], header: Option<&str>) -> bool {
    let (Some(app_id), Some(secret)) = (&state.config.zalo_app_id, &state.config.zalo_secret)
    else {
        return false;
    };
    let Some(given) = header.and_then(|h| h.trim().strip_prefix("mac=")) else {
        return false;
    };
    let timestamp = text(json.get("timestamp")).unwrap_or_default();
    let expected = crate::provider::zalo::webhook_mac(app_id, body, &timestamp, secret.expose());
    same_secret(&given.trim().to_ascii_lowercase(), &expected)
}

/// What one (authentic) event means for the ledger. `zns_server`: the
/// `X-ZEvent-Server` header said ZNS (Some(true)), something else, or was absent.
fn event_from(json: &Value, body: &[u8], zns_server: Option<bool>, now_ms: i64) -> NewEvent {
    let name = json
        .get("event_name")
        .and_then(Value::as_str)
        .unwrap_or("unknown")
        .to_string();
    let msg = json.get("message");
    let mut e = NewEvent {
        provider: PROVIDER.to_string(),
        kind: name.clone(),
        raw: String::from_utf8_lossy(body).into_owned(),
        received_ms: now_ms,
        event_ms: text(json.get("timestamp")).and_then(|t| t.parse().ok()),
        oa_id: text(json.pointer("/sender/id"))
            .or_else(|| text(json.get("oa_id")))
            .or_else(|| text(json.get("oaId"))),
        dedup_key: format!("zalo:body:{}", sha256_hex(&[body])),
        ..NewEvent::default()
    };
    match name.as_str() {
        "user_received_message" => {
            let delivery_ms = text(msg.and_then(|m| m.get("delivery_time")));
            e.msg_id = text(msg.and_then(|m| m.get("msg_id")));
            e.tracking_id = text(msg.and_then(|m| m.get("tracking_id")));
            e.phone = text(json.pointer("/recipient/id"));
            // The same event name serves ordinary chat receipts: ZNS ones carry
            // delivery_time (and the ZNS server header, when it is sent).
            let is_zns = delivery_ms.is_some() && zns_server != Some(false);
            if is_zns && (e.msg_id.is_some() || e.tracking_id.is_some()) {
                e.kind = "delivery".into();
                e.status = Some(DeliveryStatus::Received);
                e.event_ms = delivery_ms.and_then(|t| t.parse().ok()).or(e.event_ms);
                // Zalo retries may re-stamp `timestamp`: one receipt per message.
                let id = e.msg_id.clone().or_else(|| e.tracking_id.clone());
                e.dedup_key = format!("zalo:received:{}", id.unwrap_or_default());
            } else {
                e.kind = "chat_receipt".into();
            }
        }
        "change_oa_daily_quota" => {
            e.kind = "quota".into();
            e.oa_id = text(json.get("oaId"))
                .or_else(|| text(json.get("oa_id")))
                .or(e.oa_id);
            e.detail = text(json.pointer("/quota/new_value"));
        }
        "change_template_status" => {
            e.kind = "template_status".into();
            e.template_id = text(json.get("template_id"));
            e.detail = text(json.pointer("/status/new_status"));
            e.note.error = text(json.get("reason"));
        }
        _ => {}
    }
    e
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chat_receipt_is_not_a_delivery() {
        let body =
            br#"{"event_name":"user_received_message","message":{"msg_id":"m1"},"timestamp":"1"}"#;
        let json: Value = serde_json::from_slice(body).unwrap();
        let e = event_from(&json, body, None, 5);
        assert_eq!(e.kind, "chat_receipt");
        assert_eq!(e.status, None);
    }

    #[test]
    fn zns_receipt_is_received_at_delivery_time() {
        let body = br#"{"event_name":"user_received_message","recipient":{"id":"84912345678"},"message":{"msg_id":"m1","tracking_id":"t-1","delivery_time":"1602960467432"},"timestamp":"1602560967477"}"#;
        let json: Value = serde_json::from_slice(body).unwrap();
        let e = event_from(&json, body, Some(true), 5);
        assert_eq!(e.kind, "delivery");
        assert_eq!(e.status, Some(DeliveryStatus::Received));
        assert_eq!(e.event_ms, Some(1602960467432));
        assert_eq!(e.msg_id.as_deref(), Some("m1"));
        // Another server header: a chat receipt, kept but not applied.
        assert_eq!(event_from(&json, body, Some(false), 5).kind, "chat_receipt");
    }
}
