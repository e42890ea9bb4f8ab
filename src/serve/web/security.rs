//! Who may use the console and the API, and from where: signed in (see
//! [`crate::serve::auth`]), the CSRF token of every form, and the
//! same-origin rule for state-changing requests (a page on
//! another site must not drive a local `serve` through the user's browser).

use axum::extract::{Form, FromRequest, Request};
use axum::http::{header, HeaderMap, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{Html, IntoResponse, Response};
use serde::de::DeserializeOwned;
use serde::Deserialize;

use super::lang::Viewer;
use super::pages;
use crate::serve::auth::{same_secret, Caller};
use crate::serve::ServeState;
use rust_i18n::t;

/// Console pages and `/api/v1`: any signed-in caller (see [`Caller`]: its
/// rejection sends pages to the sign-in form and answers the rest 401).
pub async fn require_sign_in(_caller: Caller, req: Request, next: Next) -> Response {
    next.run(req).await
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

/// Whether a form's CSRF token is this process's: the one check, used by
/// [`CsrfForm`] and by the multipart upload (whose token is a part).
pub fn csrf_ok(expected: &str, given: Option<&str>) -> bool {
    given.is_some_and(|g| same_secret(g, expected))
}

/// A URL-encoded form whose `csrf` field was checked: a missing or wrong
/// token is refused (403, a page saying so) before the handler runs.
pub struct CsrfForm<T>(pub T);

#[derive(Deserialize)]
struct WithCsrf<T> {
    csrf: Option<String>,
    #[serde(flatten)]
    form: T,
}

/// A form with nothing but its CSRF token.
#[derive(Debug, Deserialize, Default)]
pub struct NoFields {}

impl<T: DeserializeOwned + Send> FromRequest<ServeState> for CsrfForm<T> {
    type Rejection = Response;

    async fn from_request(req: Request, s: &ServeState) -> Result<Self, Response> {
        let (parts, body) = req.into_parts();
        let viewer = Viewer::of(&parts);
        let req = Request::from_parts(parts, body);
        let Form(f) = Form::<WithCsrf<T>>::from_request(req, s)
            .await
            .map_err(IntoResponse::into_response)?;
        if !csrf_ok(&s.web.csrf, f.csrf.as_deref()) {
            return Err(csrf_refused(s, &viewer));
        }
        Ok(CsrfForm(f.form))
    }
}

/// The page for a form without its (right) CSRF token.
pub fn csrf_refused(s: &ServeState, v: &Viewer) -> Response {
    let l = v.lang.code();
    (
        StatusCode::FORBIDDEN,
        Html(
            pages::problem(
                &t!("problem.form_expired", locale = l),
                &t!("problem.form_expired_message", locale = l),
                "/",
                s.web.chrome(v),
            )
            .into_string(),
        ),
    )
        .into_response()
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
}
