//! Zalo's own ZNS Journey API (seed 003, spec §2): JSON over HTTPS, the OA
//! access token in an `access_token` header and the journey token in a
//! `journey_token` header. Replies carry `error` (0 = success) and `message`,
//! usually with HTTP 200 even for business errors.

use async_trait::async_trait;
use reqwest::header::{HeaderValue, CONTENT_TYPE};
use reqwest::RequestBuilder;
use serde::Deserialize;
use serde_json::{json, Map, Value};
use time::OffsetDateTime;

use super::etelecom::parse_time;
use super::http::{self, lenient, RawReply};
use super::{
    Capabilities, Dedup, ErrorClass, JourneyToken, MessageInfo, Provider, ProviderError,
    ProviderKind, ProviderSettings, QuotaInfo, SendOutcome, SendRequest, TokenCheck, TokenRequest,
};

/// "journey_token chỉ tồn tại trong 7 ngày từ thời điểm được kích hoạt"
/// (seed 003); the get-token reply carries no expiry of its own.
const TOKEN_LIFETIME: time::Duration = time::Duration::days(7);

pub struct Zalo {
    client: reqwest::Client,
    settings: ProviderSettings,
}

/// `error`/`message`, common to every reply; read first so that an error
/// reply never fails on the shape of a `data` it doesn't have.
#[derive(Debug, Deserialize)]
struct Status {
    #[serde(default, deserialize_with = "lenient::code")]
    error: i64,
    #[serde(default, deserialize_with = "lenient::opt_string")]
    message: Option<String>,
}

#[derive(Debug, Deserialize)]
struct TokenReply {
    #[serde(default)]
    token: Option<String>,
    #[serde(default, deserialize_with = "lenient::opt_string")]
    journey_id: Option<String>,
}

#[derive(Debug, Deserialize)]
struct SendReply {
    #[serde(default)]
    data: Option<SendData>,
}

#[derive(Debug, Deserialize)]
struct SendData {
    #[serde(default, deserialize_with = "lenient::opt_string")]
    msg_id: Option<String>,
    #[serde(default)]
    quota: Option<Quota>,
}

/// Documented as strings ("480"); numbers are accepted too.
#[derive(Debug, Deserialize)]
struct Quota {
    #[serde(
        rename = "remainingQuota",
        default,
        deserialize_with = "lenient::opt_u64"
    )]
    remaining: Option<u64>,
    #[serde(rename = "dailyQuota", default, deserialize_with = "lenient::opt_u64")]
    daily: Option<u64>,
}

#[derive(Debug, Deserialize)]
struct CheckReply {
    #[serde(default)]
    data: Option<CheckData>,
}

#[derive(Debug, Deserialize)]
struct CheckData {
    // The seed's table says `expired_at`, its example `expiredAt` (ms).
    #[serde(
        rename = "expiredAt",
        alias = "expired_at",
        default,
        deserialize_with = "lenient::opt_string"
    )]
    expired_at: Option<String>,
}

/// A header value that reqwest keeps out of its Debug output. A value HTTP
/// cannot carry is refused here, before anything is sent, and without
/// quoting it.
fn secret_header(value: &str, what: &str, class: ErrorClass) -> Result<HeaderValue, ProviderError> {
    let mut v = HeaderValue::from_str(value).map_err(|_| {
        ProviderError::new(
            class,
            "bad_header",
            format!("{what} contains characters an HTTP header cannot carry"),
        )
    })?;
    v.set_sensitive(true);
    Ok(v)
}

fn unsupported(message: &str) -> ProviderError {
    ProviderError::new(ErrorClass::AbortConfig, "unsupported", message)
}

impl Zalo {
    pub fn new(client: reqwest::Client, settings: ProviderSettings) -> Self {
        Self { client, settings }
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.settings.base_url.trim_end_matches('/'))
    }

    /// A request with the OA access token. `oa_id` is never sent: Zalo
    /// derives the OA from the access token.
    fn request(
        &self,
        method: reqwest::Method,
        path: &str,
    ) -> Result<RequestBuilder, ProviderError> {
        let access = secret_header(
            self.settings.api_key.expose(),
            "the Zalo access token",
            ErrorClass::AbortAuth,
        )?;
        Ok(self
            .client
            .request(method, self.url(path))
            .header(reqwest::header::ACCEPT, "application/json")
            .header("access_token", access))
    }

    fn with_journey_token(
        req: RequestBuilder,
        token: &JourneyToken,
    ) -> Result<RequestBuilder, ProviderError> {
        let value = token.token.as_deref().ok_or_else(|| {
            ProviderError::new(
                ErrorClass::RefreshToken,
                "no_token",
                "journey has no token string",
            )
        })?;
        // A token we cannot put on the wire is as good as a bad one.
        let value = secret_header(value, "the journey token", ErrorClass::RefreshToken)?;
        Ok(req.header("journey_token", value))
    }

    /// Send, then turn a non-2xx reply or a nonzero `error` into a classified
    /// error. The 2xx reply is handed back for the caller's own decoding.
    async fn call(&self, req: RequestBuilder) -> Result<RawReply, ProviderError> {
        let reply = http::execute(req).await?;
        if !reply.status.is_success() {
            return Err(http::status_error(&reply));
        }
        let status: Status = http::decode(&reply)?;
        if status.error != 0 {
            return Err(self.code_error(status.error, status.message.as_deref()));
        }
        Ok(reply)
    }

    fn code_error(&self, code: i64, message: Option<&str>) -> ProviderError {
        let code = code.to_string();
        let class = self.settings.codes.classify(ProviderKind::Zalo, &code);
        ProviderError::new(class, code, message.unwrap_or("Zalo error").to_string())
    }

    fn redact(&self, err: ProviderError) -> ProviderError {
        http::redact(err, &[&self.settings.api_key])
    }

    async fn create_token_inner(
        &self,
        req: &TokenRequest<'_>,
    ) -> Result<JourneyToken, ProviderError> {
        // `token_type` is an eTelecom parameter; Zalo's get-token takes only the phone.
        let body = json!({ "phone": req.phone });
        let http_req = self
            .request(reqwest::Method::POST, "/journey/get-token")?
            .json(&body);
        let reply = match self.call(http_req).await {
            Ok(reply) => reply,
            Err(mut err) => {
                // "Check the token" or "refresh it" mean nothing while buying one.
                if matches!(err.class, ErrorClass::CheckToken | ErrorClass::RefreshToken) {
                    err.class = ErrorClass::FailRow;
                }
                return Err(err);
            }
        };
        let t: TokenReply = http::decode(&reply)?;
        // A success without a token may still have been charged: in doubt.
        let missing = |what: &str| {
            ProviderError::new(
                ErrorClass::Retry,
                "decode",
                format!("get-token reply has no {what}"),
            )
            .in_doubt(true)
        };
        let token = t
            .token
            .filter(|t| !t.is_empty())
            .ok_or_else(|| missing("token"))?;
        let journey_id = t.journey_id.ok_or_else(|| missing("journey_id"))?;
        Ok(JourneyToken {
            journey_id,
            provider_ref: None,
            token: Some(token),
            expires_at: OffsetDateTime::now_utc() + TOKEN_LIFETIME,
            status: None,
        })
    }

    async fn check_token_inner(&self, token: &JourneyToken) -> Result<TokenCheck, ProviderError> {
        if token.token.is_none() {
            return Ok(TokenCheck::NotFound);
        }
        // The seed's curl sends Content-Type on this bodyless GET; so do we.
        let req = self
            .request(reqwest::Method::GET, "/journey/check-token")?
            .header(CONTENT_TYPE, "application/json");
        let req = Self::with_journey_token(req, token)?;
        let reply = match self.call(req).await {
            Ok(reply) => reply,
            Err(e) => {
                return match e.class {
                    // Says nothing about the token: let the runner handle it.
                    ErrorClass::Retry | ErrorClass::AbortAuth | ErrorClass::AbortConfig => Err(e),
                    _ => Ok(TokenCheck::NotFound),
                };
            }
        };
        let c: CheckReply = http::decode(&reply)?;
        match c
            .data
            .and_then(|d| d.expired_at)
            .as_deref()
            .and_then(parse_time)
        {
            Some(t) if t <= OffsetDateTime::now_utc() => Ok(TokenCheck::Expired),
            Some(t) => Ok(TokenCheck::Valid { expires_at: t }),
            None => Ok(TokenCheck::Valid {
                expires_at: token.expires_at,
            }),
        }
    }

    async fn send_inner(&self, req: &SendRequest<'_>) -> Result<SendOutcome, ProviderError> {
        let token = req.token.ok_or_else(|| {
            ProviderError::new(
                ErrorClass::RefreshToken,
                "no_token",
                "send without a journey token",
            )
        })?;
        let data: Map<String, Value> = req
            .template_data
            .iter()
            .map(|(k, v)| (k.to_string(), Value::String(v.to_string())))
            .collect();
        // Seed 003's example sends `"template_id":217489`, a JSON number; an
        // id that is not all digits can only go as a string.
        let template_id = req
            .template_id
            .parse::<i64>()
            .map(Value::from)
            .unwrap_or_else(|_| Value::String(req.template_id.to_string()));
        let body = json!({
            "phone": req.phone,
            "template_id": template_id,
            "template_data": data,
            "tracking_id": req.tracking_id,
        });
        let http_req = self.request(reqwest::Method::POST, "/message/template")?;
        let http_req = Self::with_journey_token(http_req, token)?.json(&body);
        let reply = self.call(http_req).await?;
        let s: SendReply = http::decode(&reply)?;
        let data = s.data;
        let quota = data.as_ref().and_then(|d| d.quota.as_ref()).and_then(|q| {
            match (q.remaining, q.daily) {
                (Some(remaining), Some(daily)) => Some(QuotaInfo { remaining, daily }),
                _ => None,
            }
        });
        Ok(SendOutcome {
            msg_id: data.and_then(|d| d.msg_id),
            provider_ref: None,
            quota,
            duplicate: false,
        })
    }
}

#[async_trait]
impl Provider for Zalo {
    fn kind(&self) -> ProviderKind {
        ProviderKind::Zalo
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities {
            tokens: true,
            // `tracking_id` is echoed for reconciliation; de-dup is not documented.
            dedup: Dedup::Inferred,
            lookup_by_tracking_id: false,
        }
    }

    async fn create_token(&self, req: &TokenRequest<'_>) -> Result<JourneyToken, ProviderError> {
        self.create_token_inner(req)
            .await
            .map_err(|e| self.redact(e))
    }

    async fn check_token(
        &self,
        _oa_id: &str,
        token: &JourneyToken,
    ) -> Result<TokenCheck, ProviderError> {
        self.check_token_inner(token)
            .await
            .map_err(|e| self.redact(e))
    }

    async fn send(&self, req: &SendRequest<'_>) -> Result<SendOutcome, ProviderError> {
        self.send_inner(req).await.map_err(|e| self.redact(e))
    }

    /// Seed 003 documents no lookup for journey messages; Zalo reports
    /// delivery by webhook instead.
    async fn get_message(&self, _oa_id: &str, _msg_id: &str) -> Result<MessageInfo, ProviderError> {
        Err(unsupported(
            "Zalo documents no message lookup for journey sends; delivery status comes by webhook",
        ))
    }
}
