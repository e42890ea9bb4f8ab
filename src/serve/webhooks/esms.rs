//! `GET /webhooks/esms/{token}`: eSMS's `CallbackUrl`. eSMS signs nothing,
//! so the path carries a secret token; a wrong one gets 404 (as if there
//! were no such page). Everything else is in the query string.

use axum::extract::{Path, Query, State};
use axum::http::{StatusCode, Uri};
use axum::response::Response;

use super::{refuse, sha256_hex, store_and_answer, wrong_path_token};
use crate::campaign::{DeliveryStatus, NewEvent};
use crate::model::error_note::ErrorNote;
use crate::serve::ServeState;

const PROVIDER: &str = "esms";

pub async fn handler(
    State(state): State<ServeState>,
    Path(token): Path<String>,
    uri: Uri,
) -> Response {
    if let Some(refused) = wrong_path_token(&state, PROVIDER, &token) {
        return refused;
    }
    let Ok(Query(pairs)) = Query::<Vec<(String, String)>>::try_from_uri(&uri) else {
        return refuse(
            &state,
            PROVIDER,
            StatusCode::BAD_REQUEST,
            "query string is not URL-encoded",
        );
    };
    let raw = uri.query().unwrap_or_default().to_string();
    match event_from(&pairs, raw, crate::model::clock::now_ms()) {
        Ok(event) => store_and_answer(&state, PROVIDER, event).await,
        Err(why) => refuse(&state, PROVIDER, StatusCode::BAD_REQUEST, why),
    }
}

fn field<'a>(pairs: &'a [(String, String)], name: &str) -> Option<&'a str> {
    pairs
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.trim())
        .filter(|v| !v.is_empty())
}

fn event_from(
    pairs: &[(String, String)],
    raw: String,
    now_ms: i64,
) -> Result<NewEvent, &'static str> {
    let sms_id = field(pairs, "SMSID");
    let request_id = field(pairs, "RequestId");
    if sms_id.is_none() && request_id.is_none() {
        return Err("SMSID or RequestId is required");
    }
    let send_status: i64 = field(pairs, "SendStatus")
        .ok_or("SendStatus is required")?
        .parse()
        .map_err(|_| "SendStatus must be a number (1, 2, 4, 5 or 7)")?;
    let count = |name| field(pairs, name).and_then(|v| v.parse::<i64>().ok());
    let (success, failed) = (count("SendSuccess"), count("SendFailed"));
    // 5 = done: SendSuccess / SendFailed tell which; 4 = rejected; 1, 2, 7
    // are progress (awaiting approval, waiting, awaiting the report).
    let status = match send_status {
        5 if success.unwrap_or(0) > 0 && failed.unwrap_or(0) == 0 => Some(DeliveryStatus::Received),
        5 | 4 => Some(DeliveryStatus::FailedDelivery),
        _ => None,
    };
    let (error_code, error) = match (status, field(pairs, "error_info")) {
        (Some(DeliveryStatus::FailedDelivery), Some(info)) => error_info(info),
        _ => (None, None),
    };
    // Same callback retried = same fields: the key ignores their order.
    let mut sorted: Vec<String> = pairs.iter().map(|(k, v)| format!("{k}={v}")).collect();
    sorted.sort();
    Ok(NewEvent {
        provider: PROVIDER.to_string(),
        kind: if status.is_some() {
            "delivery"
        } else {
            "progress"
        }
        .to_string(),
        msg_id: sms_id.map(str::to_string),
        tracking_id: request_id.map(str::to_string),
        phone: field(pairs, "phonenumber").map(str::to_string),
        status,
        note: ErrorNote { error_code, error },
        event_ms: None,
        oa_id: field(pairs, "oaid").map(str::to_string),
        template_id: None,
        detail: Some(send_status.to_string()),
        dedup_key: format!("esms:{}", sha256_hex(&[sorted.join("&").as_bytes()])),
        raw,
        received_ms: now_ms,
    })
}

/// `{"error":-114,"message":"…"}` (already URL-decoded); anything else is
/// kept as the message.
fn error_info(info: &str) -> (Option<String>, Option<String>) {
    match serde_json::from_str::<serde_json::Value>(info) {
        Ok(v) => (super::text(v.get("error")), super::text(v.get("message"))),
        Err(_) => (None, Some(info.chars().take(500).collect())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pairs(q: &str) -> Vec<(String, String)> {
        let uri: Uri = format!("/x?{q}").parse().unwrap();
        Query::<Vec<(String, String)>>::try_from_uri(&uri)
            .unwrap()
            .0
    }

    #[test]
    fn done_with_success_is_received_and_failure_carries_the_error() {
        let ok = event_from(
            &pairs("SMSID=s1&SendStatus=5&SendSuccess=1&SendFailed=0"),
            String::new(),
            1,
        )
        .unwrap();
        assert_eq!(ok.status, Some(DeliveryStatus::Received));
        let bad = event_from(
            &pairs("SMSID=s2&SendStatus=5&SendSuccess=0&SendFailed=1&error_info=%7B%22error%22%3A-114%2C%22message%22%3A%22blocked%22%7D"),
            String::new(),
            1,
        )
        .unwrap();
        assert_eq!(bad.status, Some(DeliveryStatus::FailedDelivery));
        assert_eq!(bad.note.error_code.as_deref(), Some("-114"));
        assert_eq!(bad.note.error.as_deref(), Some("blocked"));
        let waiting = event_from(&pairs("SMSID=s3&SendStatus=7"), String::new(), 1).unwrap();
        assert_eq!((waiting.kind.as_str(), waiting.status), ("progress", None));
        assert!(event_from(&pairs("SendStatus=5"), String::new(), 1).is_err());
        assert!(event_from(&pairs("SMSID=s&SendStatus=x"), String::new(), 1).is_err());
    }
}
