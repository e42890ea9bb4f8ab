//! Zalo's OA authorization as the zalo sandbox speaks it:
//! `GET /v4/oa/permission` redirects to the `redirect_uri` with a code, and
//! `POST /v4/oa/access_token` exchanges a code (PKCE S256 checked) or a
//! refresh token for a pair. Access tokens expire after
//! [`SandboxConfig::access_token_ttl`](super::SandboxConfig); a refresh
//! token works once, and a second use is refused and counted.
//!
//! Faults: `refresh_delay` holds a refresh's reply back, and the rotation
//! is committed only after the delay — a client that goes away meanwhile
//! (the connection closes, hyper drops the handler) leaves the old refresh
//! token valid. `lose_refresh_reply` commits the rotation and then breaks
//! the reply off: the client cannot know the new pair.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::{Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{json, Value};

pub use super::state::OAuthFaults;
use super::state::{Code, Inner, Shared};

/// The OA every authorization grants (as the zalo wire's).
pub(crate) const OA_ID: &str = "3886651700907664415";

fn error(code: i64, name: &str, description: &str) -> Response {
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "application/json")],
        json!({"error": code, "error_name": name, "error_description": description}).to_string(),
    )
        .into_response()
}

fn pkce(verifier: &str) -> String {
    use base64::Engine;
    use sha2::{Digest, Sha256};
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()))
}

pub(crate) async fn permission(
    State(shared): State<Arc<Shared>>,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let (Some(app_id), Some(redirect), Some(challenge)) = (
        q.get("app_id"),
        q.get("redirect_uri"),
        q.get("code_challenge"),
    ) else {
        return (
            StatusCode::BAD_REQUEST,
            "app_id, redirect_uri and code_challenge are required",
        )
            .into_response();
    };
    if *app_id != shared.zalo_app_id {
        return (StatusCode::BAD_REQUEST, "unknown app_id").into_response();
    }
    let code = {
        let mut g = shared.lock();
        g.oauth.serial += 1;
        let code = format!(
            "sbcode-{}-{}",
            g.oauth.serial,
            hex::encode(rand::random::<[u8; 8]>())
        );
        g.oauth.codes.insert(
            code.clone(),
            Code {
                challenge: challenge.clone(),
                issued: Instant::now(),
            },
        );
        g.stats.oauth_codes_issued += 1;
        code
    };
    let sep = if redirect.contains('?') { '&' } else { '?' };
    let state = q.get("state").map(String::as_str).unwrap_or("");
    let location = format!(
        "{redirect}{sep}code={code}&oa_id={OA_ID}&state={}",
        crate::provider::zalo_oauth::form_escape(state)
    );
    (StatusCode::FOUND, [(header::LOCATION, location)]).into_response()
}

/// A new pair, recorded.
fn issue(shared: &Shared, g: &mut Inner) -> Value {
    g.oauth.serial += 1;
    let n = g.oauth.serial;
    let access = format!("sbat-{n}-{}", hex::encode(rand::random::<[u8; 12]>()));
    let refresh = format!("sbrt-{n}-{}", hex::encode(rand::random::<[u8; 12]>()));
    g.oauth
        .access
        .insert(access.clone(), Instant::now() + shared.access_token_ttl);
    g.oauth.refresh.insert(refresh.clone(), false);
    json!({
        "access_token": access,
        "refresh_token": refresh,
        "expires_in": shared.access_token_ttl.as_secs().max(1).to_string(),
    })
}

pub(crate) async fn access_token(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    let form: HashMap<String, String> = match serde_urlencoded_pairs(&body) {
        Some(f) => f,
        None => return error(-14002, "Invalid parameter", "body is not a form"),
    };
    let secret = headers.get("secret_key").and_then(|v| v.to_str().ok());
    if secret != Some(shared.zalo_app_secret.as_str())
        || form.get("app_id") != Some(&shared.zalo_app_id)
    {
        shared.lock().stats.oauth_refused += 1;
        return error(-14001, "Invalid app", "app_id or secret_key is invalid");
    }
    match form.get("grant_type").map(String::as_str) {
        Some("authorization_code") => {
            let (Some(code), Some(verifier)) = (form.get("code"), form.get("code_verifier")) else {
                return error(
                    -14002,
                    "Invalid parameter",
                    "code and code_verifier are required",
                );
            };
            let mut g = shared.lock();
            let Some(c) = g.oauth.codes.remove(code) else {
                return refused(
                    &mut g,
                    -14019,
                    "Invalid code",
                    "authorization code is invalid or used",
                );
            };
            if c.issued.elapsed() > Duration::from_secs(600) || pkce(verifier) != c.challenge {
                return refused(
                    &mut g,
                    -14019,
                    "Invalid code",
                    "code expired or code_verifier does not match",
                );
            }
            g.stats.oauth_codes_exchanged += 1;
            let pair = issue(&shared, &mut g);
            json_ok(&pair)
        }
        Some("refresh_token") => {
            let Some(rt) = form.get("refresh_token").cloned() else {
                return error(-14002, "Invalid parameter", "refresh_token is required");
            };
            let faults = {
                let mut g = shared.lock();
                g.stats.oauth_refresh_requests += 1;
                match g.oauth.refresh.get(&rt) {
                    Some(false) => {}
                    Some(true) => return reused(&mut g),
                    None => {
                        return refused(
                            &mut g,
                            -14020,
                            "Invalid refresh token",
                            "refresh token is invalid",
                        )
                    }
                }
                g.oauth_faults.clone()
            };
            // Dropped with the connection if the client goes away: nothing
            // is rotated then.
            if !faults.refresh_delay.is_zero() {
                tokio::time::sleep(faults.refresh_delay).await;
            }
            let pair = {
                let mut g = shared.lock();
                match g.oauth.refresh.get_mut(&rt) {
                    Some(used @ false) => *used = true,
                    _ => return reused(&mut g),
                }
                g.stats.oauth_refreshes += 1;
                let pair = issue(&shared, &mut g);
                if faults.lose_refresh_reply {
                    g.stats.oauth_replies_lost += 1;
                }
                pair
            };
            if faults.lose_refresh_reply {
                return broken_off(&pair);
            }
            json_ok(&pair)
        }
        _ => error(-14002, "Invalid parameter", "unsupported grant_type"),
    }
}

/// A refused grant, counted.
fn refused(g: &mut Inner, code: i64, name: &str, description: &str) -> Response {
    g.stats.oauth_refused += 1;
    error(code, name, description)
}

/// A refresh token presented again (each is good once), counted as a
/// reuse too.
fn reused(g: &mut Inner) -> Response {
    g.stats.oauth_refresh_reuses += 1;
    refused(
        g,
        -14020,
        "Invalid refresh token",
        "refresh token has been used",
    )
}

/// A 200 whose body breaks off after its first half (as the server's
/// dropped send reply): the client sees a reply it cannot read.
fn broken_off(v: &Value) -> Response {
    let bytes = v.to_string().into_bytes();
    let half = axum::body::Bytes::copy_from_slice(&bytes[..bytes.len() / 2]);
    let head = futures::stream::once(async move { Ok::<_, std::io::Error>(half) });
    let tail = futures::stream::once(async {
        tokio::time::sleep(Duration::from_millis(5)).await;
        Err::<axum::body::Bytes, _>(std::io::Error::new(
            std::io::ErrorKind::ConnectionReset,
            "sandbox: refresh reply dropped",
        ))
    });
    let mut resp = Response::new(axum::body::Body::from_stream(futures::StreamExt::chain(
        head, tail,
    )));
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        axum::http::HeaderValue::from_static("application/json"),
    );
    resp
}

fn json_ok(v: &Value) -> Response {
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "application/json")],
        v.to_string(),
    )
        .into_response()
}

/// `a=b&c=d` with percent-decoding; None if not UTF-8.
fn serde_urlencoded_pairs(body: &[u8]) -> Option<HashMap<String, String>> {
    let text = std::str::from_utf8(body).ok()?;
    let mut out = HashMap::new();
    for part in text.split('&').filter(|p| !p.is_empty()) {
        let (k, v) = part.split_once('=').unwrap_or((part, ""));
        out.insert(decode(k)?, decode(v)?);
    }
    Some(out)
}

fn decode(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' => {
                let hex = s.get(i + 1..i + 3)?;
                out.push(u8::from_str_radix(hex, 16).ok()?);
                i += 2;
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8(out).ok()
}
