//! The access token: when one is configured, protected routes (`/metrics`,
//! later `/api/*` and the console) need `Authorization: Bearer TOKEN`.

use axum::extract::{Request, State};
use axum::http::{header, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use subtle::ConstantTimeEq;

use super::ServeState;

/// Equal in time independent of where the strings differ.
pub fn same_secret(given: &str, expected: &str) -> bool {
    given.as_bytes().ct_eq(expected.as_bytes()).into()
}

pub async fn require_token(State(state): State<ServeState>, req: Request, next: Next) -> Response {
    let Some(expected) = &state.config.auth_token else {
        return next.run(req).await;
    };
    let given = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim);
    match given {
        Some(token) if same_secret(token, expected.expose()) => next.run(req).await,
        _ => (
            StatusCode::UNAUTHORIZED,
            [(header::WWW_AUTHENTICATE, "Bearer")],
            "an access token is required: send `Authorization: Bearer TOKEN`\n",
        )
            .into_response(),
    }
}
