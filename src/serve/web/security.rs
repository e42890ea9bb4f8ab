//! Who may use the console and the API, and from where: the access token
//! (Bearer, or the login form's HttpOnly cookie), the CSRF token of every
//! form, and the same-origin rule for state-changing requests (a page on
//! another site must not drive a local `serve` through the user's browser).

use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Redirect, Response};
use sha2::{Digest, Sha256};

use crate::serve::auth::same_secret;
use crate::serve::ServeState;

pub const SESSION_COOKIE: &str = "zns_session";

/// What the session cookie holds: derived from the token, never the token.
pub fn session_value(token: &str) -> String {
    let mut h = Sha256::new();
    h.update(b"zns-batch web session v1\0");
    h.update(token.as_bytes());
    hex::encode(h.finalize())
}

fn cookie(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.to_string())
}

/// Whether the request carries the access token (or no token is needed).
pub fn signed_in(state: &ServeState, headers: &HeaderMap) -> bool {
    let Some(expected) = &state.config.auth_token else {
        return true;
    };
    let bearer = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim);
    if bearer.is_some_and(|t| same_secret(t, expected.expose())) {
        return true;
    }
    cookie(headers, SESSION_COOKIE)
        .is_some_and(|c| same_secret(&c, &session_value(expected.expose())))
}

/// Console pages and `/api/v1`: signed in, else the login page (pages) or 401.
pub async fn require_sign_in(
    State(state): State<ServeState>,
    req: Request,
    next: Next,
) -> Response {
    if signed_in(&state, req.headers()) {
        return next.run(req).await;
    }
    if req.uri().path().starts_with("/api/") || req.method() != Method::GET {
        return (
            StatusCode::UNAUTHORIZED,
            [(header::WWW_AUTHENTICATE, "Bearer")],
            axum::Json(serde_json::json!({
                "error": "an access token is required: send `Authorization: Bearer TOKEN`, or sign in at /login"
            })),
        )
            .into_response();
    }
    Redirect::to("/login").into_response()
}

/// A state-changing request that says where it comes from must come from
/// this site; scripts that send neither `Origin` nor `Sec-Fetch-Site` pass.
pub async fn same_origin_only(req: Request, next: Next) -> Response {
    if matches!(*req.method(), Method::GET | Method::HEAD | Method::OPTIONS) {
        return next.run(req).await;
    }
    if let Err(why) = check_origin(req.headers()) {
        return (
            StatusCode::FORBIDDEN,
            axum::Json(serde_json::json!({ "error": why })),
        )
            .into_response();
    }
    next.run(req).await
}

fn check_origin(headers: &HeaderMap) -> Result<(), String> {
    if let Some(site) = headers.get("sec-fetch-site").and_then(|v| v.to_str().ok()) {
        if site != "same-origin" && site != "none" {
            return Err(format!(
                "refused: this request came from another site (Sec-Fetch-Site: {site})"
            ));
        }
    }
    if let Some(origin) = headers.get(header::ORIGIN) {
        let origin = origin.to_str().unwrap_or("");
        let host = headers
            .get(header::HOST)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        let forwarded_host = headers
            .get("x-forwarded-host")
            .and_then(|v| v.to_str().ok());
        let origin_host = origin
            .strip_prefix("http://")
            .or_else(|| origin.strip_prefix("https://"))
            .unwrap_or("");
        let same =
            !origin_host.is_empty() && (origin_host == host || forwarded_host == Some(origin_host));
        if !same {
            return Err(format!(
                "refused: this request came from another origin ({origin}); use the console at this address"
            ));
        }
    }
    Ok(())
}

/// The CSRF token of forms: fixed for the process, random at start.
pub fn new_csrf_token() -> String {
    hex::encode(rand::random::<[u8; 24]>())
}

/// Whether a form's (or header's) CSRF token is this process's.
pub fn csrf_ok(expected: &str, given: Option<&str>) -> bool {
    given.is_some_and(|g| same_secret(g, expected))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(list: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in list {
            h.insert(*k, v.parse().unwrap());
        }
        h
    }

    #[test]
    fn only_this_site_may_change_state() {
        assert!(check_origin(&headers(&[("host", "127.0.0.1:8080")])).is_ok());
        assert!(check_origin(&headers(&[
            ("host", "127.0.0.1:8080"),
            ("origin", "http://127.0.0.1:8080"),
            ("sec-fetch-site", "same-origin"),
        ]))
        .is_ok());
        assert!(check_origin(&headers(&[
            ("host", "127.0.0.1:8080"),
            ("origin", "https://evil.example"),
        ]))
        .is_err());
        assert!(check_origin(&headers(&[
            ("host", "127.0.0.1:8080"),
            ("sec-fetch-site", "cross-site"),
        ]))
        .is_err());
        assert!(check_origin(&headers(&[("host", "127.0.0.1:8080"), ("origin", "null")])).is_err());
    }

    #[test]
    fn the_cookie_never_holds_the_token() {
        let v = session_value("secret-token");
        assert!(!v.contains("secret-token"));
        assert_eq!(v, session_value("secret-token"));
        assert_ne!(v, session_value("other"));
    }
}
