//! Zalo's own ZNS Journey API (seed 003, spec §2): JSON over HTTPS, the OA
//! access token in an `access_token` header and the journey token in a
//! `journey_token` header. Replies carry `error` (0 = success) and `message`,
//! usually with HTTP 200 even for business errors.

use std::borrow::Cow;
use std::future::Future;
use std::sync::Arc;

use async_trait::async_trait;
use reqwest::header::{HeaderName, HeaderValue, ACCEPT, CONTENT_TYPE};
use reqwest::{Method, RequestBuilder};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use super::common::{campaign_level, unsupported, TemplateData, TemplateId, Unchecked};
use super::http::{self, Endpoint, RawReply, JSON};
use super::timestamp;
use super::zalo_oauth::AccessTokens;
use replies::{
    CheckReply, Quota, QuotaReply, SendReply, Status, TemplateReply, TokenReply, WithStatus,
};

use super::{
    ErrorClass, JourneyToken, MessageInfo, Provider, ProviderError, ProviderKind, ProviderSettings,
    QuotaInfo, SendOutcome, SendRequest, TemplateInfo, TokenCheck, TokenRequest,
};

/// "journey_token chỉ tồn tại trong 7 ngày từ thời điểm được kích hoạt"
/// (seed 003); the get-token reply carries no expiry of its own.
const TOKEN_LIFETIME: time::Duration = time::Duration::days(7);

const ACCESS_TOKEN: HeaderName = HeaderName::from_static("access_token");
const JOURNEY_TOKEN: HeaderName = HeaderName::from_static("journey_token");

pub struct Zalo {
    client: reqwest::Client,
    settings: ProviderSettings,
    /// The OA access token header, built once (each request shares it). One
    /// HTTP cannot carry is refused at every call, before anything is sent.
    access: Result<HeaderValue, ProviderError>,
    /// Without an API key: the OA's stored token pair, renewed as needed;
    /// `access` is then unused.
    managed: Option<Arc<dyn AccessTokens>>,
    /// Every endpoint, parsed once (not per request).
    urls: Urls,
}

struct Urls {
    get_token: Endpoint,
    check_token: Endpoint,
    send: Endpoint,
    template_info: Endpoint,
    quota: Endpoint,
}

/// get-token's body: `token_type` is an eTelecom parameter; Zalo's
/// get-token takes only the phone.
#[derive(Serialize)]
struct TokenBody<'a> {
    phone: &'a str,
}

/// message/template's body, written from the row's borrowed fields.
#[derive(Serialize)]
struct SendBody<'a> {
    phone: &'a str,
    template_id: TemplateId<'a>,
    template_data: TemplateData<'a>,
    tracking_id: &'a str,
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

impl Zalo {
    pub fn new(client: reqwest::Client, settings: ProviderSettings) -> Self {
        let base = settings.base_url.trim_end_matches('/');
        let url = |path: &str| Endpoint::new(format!("{base}{path}"));
        let urls = Urls {
            get_token: url("/journey/get-token"),
            check_token: url("/journey/check-token"),
            send: url("/message/template"),
            template_info: url("/template/info/v2"),
            quota: url("/message/quota"),
        };
        let access = secret_header(
            settings.api_key.expose(),
            "the Zalo access token",
            ErrorClass::AbortAuth,
        );
        let managed = settings.access_tokens.clone();
        Self {
            client,
            settings,
            access,
            managed,
            urls,
        }
    }

    /// Run `call` with the access token: the fixed one, or the stored
    /// pair's. A stored token Zalo calls invalid (-124) is renewed once and
    /// the call made again: the refusal means nothing was sent, so the
    /// second call sends nothing twice.
    async fn with_access<T, F, Fut>(&self, call: F) -> Unchecked<T>
    where
        F: Fn(HeaderValue) -> Fut,
        Fut: Future<Output = Unchecked<T>>,
    {
        let Some(managed) = &self.managed else {
            return call(self.access.clone()?).await;
        };
        let token = managed.current().await?;
        let header = secret_header(
            token.expose(),
            "the Zalo access token",
            ErrorClass::AbortAuth,
        )?;
        match call(header).await {
            Err(e) if e.code() == "-124" => {
                let renewed = managed.after_refusal(&token).await?;
                let header = secret_header(
                    renewed.expose(),
                    "the Zalo access token",
                    ErrorClass::AbortAuth,
                )?;
                call(header).await
            }
            other => other,
        }
    }

    /// A request with the OA access token. `oa_id` is never sent: Zalo
    /// derives the OA from the access token.
    fn request(
        &self,
        access: HeaderValue,
        method: Method,
        endpoint: &Endpoint,
    ) -> Result<RequestBuilder, ProviderError> {
        Ok(self
            .client
            .request(method, endpoint.url()?)
            .header(ACCEPT, JSON)
            .header(ACCESS_TOKEN, access))
    }

    /// A POST of a JSON body with the access token (and the journey token,
    /// when given).
    fn post<B: Serialize>(
        &self,
        access: HeaderValue,
        endpoint: &Endpoint,
        token: Option<&JourneyToken>,
        body: &B,
    ) -> Result<RequestBuilder, ProviderError> {
        let mut req = self.request(access, Method::POST, endpoint)?;
        if let Some(token) = token {
            req = Self::with_journey_token(req, token)?;
        }
        Ok(req.header(CONTENT_TYPE, JSON).body(http::encode(body)?))
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
        Ok(req.header(JOURNEY_TOKEN, value))
    }

    /// Send; a non-2xx reply is classified by its status.
    async fn exchange(&self, req: RequestBuilder) -> Result<RawReply, ProviderError> {
        let reply = http::execute(req).await?;
        if !reply.status.is_success() {
            return Err(http::status_error(&reply));
        }
        Ok(reply)
    }

    /// Decode a 2xx reply once; a nonzero `error` is classified. A body
    /// that does not fit `T` is read again for `error`/`message` alone: an
    /// error reply is an error whatever the rest of it looks like.
    fn decode_checked<'a, T: Deserialize<'a> + WithStatus>(
        &self,
        reply: &'a RawReply,
    ) -> Result<T, ProviderError> {
        let whole = match serde_json::from_slice::<T>(&reply.body) {
            Ok(whole) => whole,
            Err(_) => {
                let status: Status = http::decode(reply)?;
                if status.error != 0 {
                    return Err(self.code_error(status.error, status.message.as_deref()));
                }
                // Success with a body of the wrong shape: its own error.
                http::decode::<T>(reply)?
            }
        };
        match whole.status() {
            (0, _) => Ok(whole),
            (error, message) => Err(self.code_error(error, message)),
        }
    }

    fn code_error(&self, code: i64, message: Option<&str>) -> ProviderError {
        self.settings.code_error(&code.to_string(), message)
    }

    async fn create_token_inner(
        &self,
        access: HeaderValue,
        req: &TokenRequest<'_>,
    ) -> Unchecked<JourneyToken> {
        let body = TokenBody { phone: req.phone };
        let http_req = self.post(access, &self.urls.get_token, None, &body)?;
        // "Check the token" or "refresh it" mean nothing while buying one.
        let for_purchase = |mut err: ProviderError| {
            if matches!(err.class, ErrorClass::CheckToken | ErrorClass::RefreshToken) {
                err.class = ErrorClass::FailRow;
            }
            err
        };
        let reply = self.exchange(http_req).await.map_err(for_purchase)?;
        let t: TokenReply = self.decode_checked(&reply).map_err(for_purchase)?;
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
            journey_id: journey_id.into_owned(),
            provider_ref: None,
            token: Some(token.into_owned()),
            expires_at: OffsetDateTime::now_utc() + TOKEN_LIFETIME,
            status: None,
        })
    }

    async fn check_token_inner(
        &self,
        access: HeaderValue,
        token: &JourneyToken,
    ) -> Unchecked<TokenCheck> {
        if token.token.is_none() {
            return Ok(TokenCheck::NotFound);
        }
        // The seed's curl sends Content-Type on this bodyless GET; so do we.
        let req = self
            .request(access, Method::GET, &self.urls.check_token)?
            .header(CONTENT_TYPE, JSON);
        let req = Self::with_journey_token(req, token)?;
        let checked = match self.exchange(req).await {
            Ok(reply) => self
                .decode_checked::<CheckReply>(&reply)
                .map(|c| c.data.and_then(|d| d.expired_at).map(Cow::into_owned)),
            Err(e) => Err(e),
        };
        match checked {
            Ok(reported) => Ok(timestamp::token_check(
                reported.as_deref(),
                token.expires_at,
            )),
            Err(e) => match e.class {
                // Says nothing about the token: let the runner handle it.
                ErrorClass::Retry | ErrorClass::AbortAuth | ErrorClass::AbortConfig => {
                    Err(e.into())
                }
                _ => Ok(TokenCheck::NotFound),
            },
        }
    }

    async fn send_inner(
        &self,
        access: HeaderValue,
        req: &SendRequest<'_>,
    ) -> Unchecked<SendOutcome> {
        let token = req.journey_token()?;
        let body = SendBody {
            phone: req.phone,
            template_id: TemplateId::of(req.template_id),
            template_data: TemplateData(req.template_data),
            tracking_id: req.tracking_id,
        };
        let http_req = self.post(access, &self.urls.send, Some(token), &body)?;
        let reply = self.exchange(http_req).await?;
        let s: SendReply = self.decode_checked(&reply)?;
        let data = s.data;
        let quota = data
            .as_ref()
            .and_then(|d| d.quota.as_ref())
            .and_then(Quota::both);
        Ok(SendOutcome {
            msg_id: data.and_then(|d| d.msg_id).map(Cow::into_owned),
            provider_ref: None,
            quota,
            duplicate: false,
        })
    }

    /// `GET template/info/v2?template_id=…` → `data.status`, `data.listParams`.
    async fn template_info_inner(
        &self,
        access: HeaderValue,
        template_id: &str,
    ) -> Unchecked<TemplateInfo> {
        let req = self
            .request(access, Method::GET, &self.urls.template_info)?
            .query(&[("template_id", template_id)]);
        let reply = self.exchange(req).await.map_err(campaign_level)?;
        let t: TemplateReply = self.decode_checked(&reply).map_err(campaign_level)?;
        let data = t.data.ok_or_else(|| unreadable("template info", "data"))?;
        Ok(TemplateInfo::from_wire(
            template_id,
            data.status,
            data.list_params,
        ))
    }

    /// `GET message/quota` → `data.dailyQuota`, `data.remainingQuota`.
    async fn quota_inner(&self, access: HeaderValue) -> Unchecked<QuotaInfo> {
        let req = self.request(access, Method::GET, &self.urls.quota)?;
        let reply = self.exchange(req).await.map_err(campaign_level)?;
        let q: QuotaReply = self.decode_checked(&reply).map_err(campaign_level)?;
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
        self.settings
            .redacting(self.with_access(|a| self.create_token_inner(a, req)))
            .await
    }

    async fn check_token(
        &self,
        _oa_id: &str,
        token: &JourneyToken,
    ) -> Result<TokenCheck, ProviderError> {
        self.settings
            .redacting(self.with_access(|a| self.check_token_inner(a, token)))
            .await
    }

    async fn send(&self, req: &SendRequest<'_>) -> Result<SendOutcome, ProviderError> {
        self.settings
            .redacting(self.with_access(|a| self.send_inner(a, req)))
            .await
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
            .redacting(self.with_access(|a| self.template_info_inner(a, template_id)))
            .await
            .map(Some)
    }

    /// The OA comes from the access token; `oa_id` is not sent.
    async fn quota(&self, _oa_id: &str) -> Result<Option<QuotaInfo>, ProviderError> {
        self.settings
            .redacting(self.with_access(|a| self.quota_inner(a)))
            .await
            .map(Some)
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

mod replies;
#[cfg(test)]
mod tests;
