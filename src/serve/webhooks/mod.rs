//! Provider callbacks into the delivery ledger. Each handler checks the
//! caller (signature or path token), parses, stores the event in one
//! transaction, and answers 2xx only after COMMIT. A request refused for
//! any reason (4xx) stores nothing.

mod esms;
mod etelecom;
mod zalo;

use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use sha2::{Digest, Sha256};

use super::auth::same_secret;
use super::ServeState;
use crate::campaign::{EventOutcome, NewEvent};

pub fn routes() -> Router<ServeState> {
    Router::new()
        .route("/webhooks/zalo", post(zalo::handler))
        .route("/webhooks/esms/{token}", get(esms::handler))
        .route("/webhooks/etelecom/{token}", post(etelecom::handler))
}

/// A refusal: counted, logged without the request's content, nothing stored.
fn refuse(state: &ServeState, provider: &str, code: StatusCode, why: &'static str) -> Response {
    state.metrics.webhook(provider, "refused");
    tracing::warn!(provider, status = code.as_u16(), "webhook refused: {why}");
    (code, format!("{why}\n")).into_response()
}

/// The path's webhook token (eSMS, eTelecom): a wrong or unset one gets
/// 404, as if there were no such page.
fn wrong_path_token(state: &ServeState, provider: &'static str, token: &str) -> Option<Response> {
    let token_ok = state
        .config
        .webhook_token
        .as_ref()
        .is_some_and(|t| same_secret(token, t.expose()));
    (!token_ok).then(|| refuse(state, provider, StatusCode::NOT_FOUND, "not found"))
}

/// A JSON body: `application/json` and parseable, else 415 / 400.
// The large `Err` is a refusal answered at once, on a cold path.
#[allow(clippy::result_large_err)]
fn json_body(
    state: &ServeState,
    provider: &'static str,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<serde_json::Value, Response> {
    if !is_json(headers) {
        return Err(refuse(
            state,
            provider,
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "Content-Type must be application/json",
        ));
    }
    serde_json::from_slice(body)
        .map_err(|_| refuse(state, provider, StatusCode::BAD_REQUEST, "body is not JSON"))
}

/// JSON bodies only: `application/json` (parameters allowed).
fn is_json(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .map(|v| v.trim().eq_ignore_ascii_case("application/json"))
        .unwrap_or(false)
}

fn sha256_hex(parts: &[&[u8]]) -> String {
    let mut h = Sha256::new();
    for p in parts {
        h.update(p);
    }
    hex::encode(h.finalize())
}

/// A JSON string or number as text (providers send ids and times as either).
fn text(v: Option<&serde_json::Value>) -> Option<String> {
    match v? {
        serde_json::Value::String(s) if !s.is_empty() => Some(s.clone()),
        serde_json::Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// Store and answer: 200 after COMMIT, 503 if the database failed (the
/// provider retries; nothing half-stored).
async fn store_and_answer(state: &ServeState, provider: &'static str, event: NewEvent) -> Response {
    match state.record(provider, event).await {
        Ok(outcome) => {
            if outcome == EventOutcome::Repeat {
                tracing::debug!(provider, "webhook repeat: already stored");
            }
            (StatusCode::OK, "ok\n").into_response()
        }
        Err(e) => {
            tracing::error!(provider, "webhook not stored: {e:#}");
            (StatusCode::SERVICE_UNAVAILABLE, "not stored, retry later\n").into_response()
        }
    }
}
