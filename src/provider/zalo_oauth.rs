//! Zalo's OA authorization (OAuth v4 with PKCE): the authorization URL, the
//! code exchange and the refresh, as plain HTTP calls. Where the token pair
//! is kept, and who may refresh it when, is the core's (`campaign::zalo_oa`);
//! the adapter only asks an [`AccessTokens`] for the current access token.
//!
//! `POST {oauth_url}/access_token`, form-urlencoded, header `secret_key`;
//! reply `{"access_token","refresh_token","expires_in":"90000"}` or
//! `{"error": <negative>, "error_name", "error_description"}`.

use std::time::Duration;

use async_trait::async_trait;
use base64::Engine;
use reqwest::header::{HeaderName, CONTENT_TYPE};
use serde::Deserialize;
use sha2::{Digest, Sha256};

use super::{http, ProviderError, Secret};

/// Zalo's v4 OA endpoint base: `/permission` and `/access_token` below it.
pub const DEFAULT_OAUTH_URL: &str = "https://oauth.zaloapp.com/v4/oa";

/// A refresh or exchange is one small request: it either answers soon or
/// its reply is as good as lost.
pub const OAUTH_TIMEOUT: Duration = Duration::from_secs(10);

const SECRET_KEY: HeaderName = HeaderName::from_static("secret_key");

/// Where a running adapter gets the OA access token from (the ledger's
/// pair, renewed as needed).
#[async_trait]
pub trait AccessTokens: Send + Sync {
    /// The access token to use now (renewed ahead of its expiry).
    async fn current(&self) -> Result<Secret, ProviderError>;
    /// Zalo refused `refused` as invalid: a renewed token, unless another
    /// caller renewed it already (then that one).
    async fn after_refusal(&self, refused: &Secret) -> Result<Secret, ProviderError>;
}

/// A PKCE verifier (43 URL-safe characters) and its S256 challenge.
pub fn pkce_pair() -> (String, String) {
    let verifier = b64(&rand::random::<[u8; 32]>());
    let challenge = pkce_challenge(&verifier);
    (verifier, challenge)
}

/// `base64url(sha256(verifier))` without padding.
pub fn pkce_challenge(verifier: &str) -> String {
    b64(&Sha256::digest(verifier.as_bytes()))
}

/// A random `state` for one authorization.
pub fn random_state() -> String {
    b64(&rand::random::<[u8; 18]>())
}

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// `application/x-www-form-urlencoded` escaping of one value.
pub fn form_escape(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for b in value.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                out.push(b as char)
            }
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

/// The URL an OA admin opens to grant this app access.
pub fn authorization_url(
    oauth_url: &str,
    app_id: &str,
    redirect_uri: &str,
    challenge: &str,
    state: &str,
) -> String {
    format!(
        "{}/permission?app_id={}&redirect_uri={}&code_challenge={}&state={}",
        oauth_url.trim_end_matches('/'),
        form_escape(app_id),
        form_escape(redirect_uri),
        form_escape(challenge),
        form_escape(state)
    )
}

/// A fresh pair as Zalo issued it.
#[derive(Debug, Clone)]
pub struct TokenPair {
    pub access_token: Secret,
    pub refresh_token: Secret,
    /// Seconds the access token lives.
    pub expires_in: u64,
}

/// Why an exchange or refresh gave no pair.
#[derive(Debug, thiserror::Error)]
pub enum OAuthError {
    /// Nothing reached Zalo (connection refused): the stored pair is as
    /// good as before.
    #[error("cannot reach the Zalo OAuth endpoint: {0}")]
    Unreachable(String),
    /// The request went out and no usable reply came back: Zalo may have
    /// rotated the pair.
    #[error("the Zalo OAuth reply was lost: {0}")]
    Lost(String),
    /// Zalo answered with an error (a used or expired refresh token, a bad
    /// code or secret).
    #[error("Zalo refused: {0}")]
    Refused(String),
}

#[derive(Deserialize)]
struct Reply {
    access_token: Option<String>,
    refresh_token: Option<String>,
    expires_in: Option<serde_json::Value>,
    error: Option<serde_json::Value>,
    error_name: Option<String>,
    error_description: Option<String>,
    message: Option<String>,
}

/// The app's OAuth client: endpoint, app id, app secret.
#[derive(Clone)]
pub struct OAuthApp {
    client: reqwest::Client,
    pub oauth_url: String,
    pub app_id: String,
    secret: Secret,
}

impl OAuthApp {
    pub fn new(oauth_url: &str, app_id: &str, secret: Secret) -> anyhow::Result<Self> {
        Ok(Self {
            client: http::pooled_client(OAUTH_TIMEOUT, 1)?,
            oauth_url: oauth_url.trim_end_matches('/').to_string(),
            app_id: app_id.to_string(),
            secret,
        })
    }

    pub async fn exchange_code(&self, code: &str, verifier: &str) -> Result<TokenPair, OAuthError> {
        self.token_call(&[
            ("app_id", &self.app_id),
            ("grant_type", "authorization_code"),
            ("code", code),
            ("code_verifier", verifier),
        ])
        .await
    }

    pub async fn refresh(&self, refresh_token: &Secret) -> Result<TokenPair, OAuthError> {
        self.token_call(&[
            ("app_id", &self.app_id),
            ("grant_type", "refresh_token"),
            ("refresh_token", refresh_token.expose()),
        ])
        .await
    }

    async fn token_call(&self, form: &[(&str, &str)]) -> Result<TokenPair, OAuthError> {
        let body = form
            .iter()
            .map(|(k, v)| format!("{k}={}", form_escape(v)))
            .collect::<Vec<_>>()
            .join("&");
        let mut secret =
            reqwest::header::HeaderValue::from_str(self.secret.expose()).map_err(|_| {
                OAuthError::Refused("the app secret is not a valid header value".into())
            })?;
        secret.set_sensitive(true);
        let req = self
            .client
            .post(format!("{}/access_token", self.oauth_url))
            .header(CONTENT_TYPE, "application/x-www-form-urlencoded")
            .header(SECRET_KEY, secret)
            .body(body);
        // Nothing of the request (the refresh token) is quoted in errors.
        let reply = http::execute(req).await.map_err(|e| {
            if e.code == "connect" {
                OAuthError::Unreachable(e.message)
            } else {
                OAuthError::Lost(e.message)
            }
        })?;
        let parsed: Reply = match serde_json::from_slice(&reply.body) {
            Ok(p) => p,
            Err(_) if reply.status.is_success() => {
                return Err(OAuthError::Lost("unreadable reply".into()))
            }
            Err(_) => {
                return Err(OAuthError::Refused(format!(
                    "HTTP {}",
                    reply.status.as_u16()
                )))
            }
        };
        let error = parsed.error.as_ref().and_then(|e| match e {
            serde_json::Value::Number(n) => n.as_i64(),
            serde_json::Value::String(s) => s.parse().ok(),
            _ => None,
        });
        if let (Some(a), Some(r)) = (&parsed.access_token, &parsed.refresh_token) {
            if error.unwrap_or(0) == 0 && !a.is_empty() && !r.is_empty() {
                let expires_in = match &parsed.expires_in {
                    Some(serde_json::Value::String(s)) => s.trim().parse().ok(),
                    Some(serde_json::Value::Number(n)) => n.as_u64(),
                    _ => None,
                }
                .unwrap_or(90_000);
                return Ok(TokenPair {
                    access_token: Secret::new(a.clone()),
                    refresh_token: Secret::new(r.clone()),
                    expires_in,
                });
            }
        }
        let why = parsed
            .error_description
            .or(parsed.error_name)
            .or(parsed.message)
            .unwrap_or_else(|| format!("HTTP {}", reply.status.as_u16()));
        Err(OAuthError::Refused(match error {
            Some(code) => format!("{why} (error {code})"),
            None => why,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pkce_challenge_is_rfc7636_s256() {
        // RFC 7636 appendix B.
        assert_eq!(
            pkce_challenge("dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"),
            "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"
        );
        let (v, c) = pkce_pair();
        assert_eq!(v.len(), 43);
        assert_eq!(pkce_challenge(&v), c);
    }

    #[test]
    fn authorization_url_escapes_its_values() {
        let u = authorization_url("https://o/v4/oa/", "1", "http://h/cb?x=1", "c", "s");
        assert_eq!(
            u,
            "https://o/v4/oa/permission?app_id=1&redirect_uri=http%3A%2F%2Fh%2Fcb%3Fx%3D1&code_challenge=c&state=s"
        );
    }
}
