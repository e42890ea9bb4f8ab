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

use super::common::{campaign_level, TemplateId, Unchecked};
use super::http::{self, lenient, RawReply};
use super::template::WireParam;
use super::timestamp;
use super::{
    ErrorClass, JourneyToken, MessageInfo, Provider, ProviderError, ProviderKind, ProviderSettings,
    QuotaInfo, SendOutcome, SendRequest, TemplateInfo, TokenCheck, TokenRequest,
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

/// `GET message/quota`: the figures sit in `data`.
#[derive(Debug, Deserialize)]
struct QuotaReply {
    #[serde(default)]
    data: Option<Quota>,
}

impl Quota {
    fn both(&self) -> Option<QuotaInfo> {
        Some(QuotaInfo {
            remaining: self.remaining?,
            daily: self.daily?,
        })
    }
}

/// `GET template/info/v2`: status and parameters in `data`.
#[derive(Debug, Deserialize)]
struct TemplateReply {
    #[serde(default)]
    data: Option<TemplateData>,
}

#[derive(Debug, Deserialize)]
struct TemplateData {
    #[serde(default, deserialize_with = "lenient::opt_string")]
    status: Option<String>,
    #[serde(rename = "listParams", default)]
    list_params: Vec<WireParam>,
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
        self.settings.code_error(&code.to_string(), message)
    }

    async fn create_token_inner(&self, req: &TokenRequest<'_>) -> Unchecked<JourneyToken> {
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
                return Err(err.into());
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

    async fn check_token_inner(&self, token: &JourneyToken) -> Unchecked<TokenCheck> {
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
                    ErrorClass::Retry | ErrorClass::AbortAuth | ErrorClass::AbortConfig => {
                        Err(e.into())
                    }
                    _ => Ok(TokenCheck::NotFound),
                };
            }
        };
        let c: CheckReply = http::decode(&reply)?;
        let reported = c.data.and_then(|d| d.expired_at);
        Ok(timestamp::token_check(
            reported.as_deref(),
            token.expires_at,
        ))
    }

    async fn send_inner(&self, req: &SendRequest<'_>) -> Unchecked<SendOutcome> {
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
        let body = json!({
            "phone": req.phone,
            "template_id": TemplateId::of(req.template_id),
            "template_data": data,
            "tracking_id": req.tracking_id,
        });
        let http_req = self.request(reqwest::Method::POST, "/message/template")?;
        let http_req = Self::with_journey_token(http_req, token)?.json(&body);
        let reply = self.call(http_req).await?;
        let s: SendReply = http::decode(&reply)?;
        let data = s.data;
        let quota = data
            .as_ref()
            .and_then(|d| d.quota.as_ref())
            .and_then(Quota::both);
        Ok(SendOutcome {
            msg_id: data.and_then(|d| d.msg_id),
            provider_ref: None,
            quota,
            duplicate: false,
        })
    }

    /// `GET template/info/v2?template_id=…` → `data.status`, `data.listParams`.
    async fn template_info_inner(&self, template_id: &str) -> Unchecked<TemplateInfo> {
        let req = self
            .request(reqwest::Method::GET, "/template/info/v2")?
            .query(&[("template_id", template_id)]);
        let reply = self.call(req).await.map_err(campaign_level)?;
        let t: TemplateReply = http::decode(&reply).map_err(campaign_level)?;
        let data = t.data.ok_or_else(|| unreadable("template info", "data"))?;
        Ok(TemplateInfo::from_wire(
            template_id,
            data.status,
            data.list_params,
        ))
    }

    /// `GET message/quota` → `data.dailyQuota`, `data.remainingQuota`.
    async fn quota_inner(&self) -> Unchecked<QuotaInfo> {
        let req = self.request(reqwest::Method::GET, "/message/quota")?;
        let reply = self.call(req).await.map_err(campaign_level)?;
        let q: QuotaReply = http::decode(&reply).map_err(campaign_level)?;
        q.data
            .as_ref()
            .and_then(Quota::both)
            .ok_or_else(|| unreadable("quota", "data.dailyQuota / data.remainingQuota").into())
    }
}

/// A read whose success reply lacks what it is for: worth another try later,
/// and nothing is in doubt (a read changes nothing).
fn unreadable(call: &str, what: &str) -> ProviderError {
    ProviderError::new(
        ErrorClass::Retry,
        "decode",
        format!("Zalo {call} reply has no {what}"),
    )
}

#[async_trait]
impl Provider for Zalo {
    fn kind(&self) -> ProviderKind {
        ProviderKind::Zalo
    }

    async fn create_token(&self, req: &TokenRequest<'_>) -> Result<JourneyToken, ProviderError> {
        self.settings.redacting(self.create_token_inner(req)).await
    }

    async fn check_token(
        &self,
        _oa_id: &str,
        token: &JourneyToken,
    ) -> Result<TokenCheck, ProviderError> {
        self.settings.redacting(self.check_token_inner(token)).await
    }

    async fn send(&self, req: &SendRequest<'_>) -> Result<SendOutcome, ProviderError> {
        self.settings.redacting(self.send_inner(req)).await
    }

    /// Seed 003 documents no lookup for journey messages; Zalo reports
    /// delivery by webhook instead.
    async fn get_message(&self, _oa_id: &str, _msg_id: &str) -> Result<MessageInfo, ProviderError> {
        Err(unsupported(
            self.capabilities()
                .no_message_lookup
                .unwrap_or("no message lookup"),
        ))
    }

    /// The OA comes from the access token; `oa_id` is not sent.
    async fn template_info(
        &self,
        _oa_id: &str,
        template_id: &str,
    ) -> Result<Option<TemplateInfo>, ProviderError> {
        self.settings
            .redacting(self.template_info_inner(template_id))
            .await
            .map(Some)
    }

    /// The OA comes from the access token; `oa_id` is not sent.
    async fn quota(&self, _oa_id: &str) -> Result<Option<QuotaInfo>, ProviderError> {
        self.settings.redacting(self.quota_inner()).await.map(Some)
    }
}

/// Zalo's webhook signature (`X-ZEvent-Signature: mac=<hex>`): SHA-256 of
/// app id, raw body, the body's `timestamp` and the OA secret. The sandbox
/// signs with it and `serve` checks with it.
pub fn webhook_mac(app_id: &str, body: &[u8], timestamp: &str, secret: &str) -> String {
    use sha2::{Digest, Sha256};
    let mut h = Sha256::new();
    h.update(app_id.as_bytes());
    h.update(body);
    h.update(timestamp.as_bytes());
    h.update(secret.as_bytes());
    hex::encode(h.finalize())
}

#[cfg(test)]
mod tests;
