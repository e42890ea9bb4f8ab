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

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use serde_json::json;

    use super::*;
    use crate::provider::http::test_server::{Canned, TestServer};
    use crate::provider::{Dedup, Secret};

    const KEY: &str = "KEY-SHOULD-NOT-LEAK";

    fn settings(base: &str) -> ProviderSettings {
        ProviderSettings::new(ProviderKind::Zalo, base, Secret::new(KEY))
            .with_timeout(Duration::from_secs(2))
    }

    fn zalo(server: &TestServer) -> Zalo {
        let client = http::client(Duration::from_secs(2)).unwrap();
        Zalo::new(client, settings(&server.base))
    }

    fn token() -> JourneyToken {
        JourneyToken {
            journey_id: "123456789".into(),
            provider_ref: None,
            token: Some("JT-abc=".into()),
            expires_at: OffsetDateTime::now_utc() + time::Duration::days(6),
            status: None,
        }
    }

    fn send_req<'a>(token: &'a JourneyToken, data: &'a [(&'a str, &'a str)]) -> SendRequest<'a> {
        SendRequest {
            oa_id: "3886651700907664415",
            phone: "84987654321",
            template_id: "217489",
            template_data: data,
            tracking_id: "row-7",
            token: Some(token),
            campaign: "c1",
        }
    }

    fn assert_no_leak(err: &ProviderError) {
        let shown = format!("{err} {err:?}");
        assert!(!shown.contains(KEY), "key leaked: {shown}");
    }

    async fn send_with_reply(reply: Canned) -> Result<SendOutcome, ProviderError> {
        let server = TestServer::start(reply).await;
        let t = token();
        let out = zalo(&server).send(&send_req(&t, &[("name", "An")])).await;
        if let Err(e) = &out {
            assert_no_leak(e);
        }
        out
    }

    #[tokio::test]
    async fn create_token_posts_phone_with_access_token_header() {
        let server = TestServer::start(Canned::json(json!({
            "error": 0, "message": "Success", "token": "JT-new", "journey_id": "123456789"
        })))
        .await;
        let provider = super::super::build(settings(&server.base)).unwrap();
        assert_eq!(provider.kind(), ProviderKind::Zalo);
        let req = TokenRequest {
            oa_id: "3886651700907664415",
            phone: "84987654321",
            token_type: "token_logistics_30",
        };
        let t = provider.create_token(&req).await.unwrap();

        let r = server.only_request();
        assert_eq!(r.method, "POST");
        assert_eq!(r.path, "/journey/get-token");
        assert_eq!(r.header("access_token"), Some(KEY));
        assert_eq!(r.header("content-type"), Some("application/json"));
        // Only the phone: no oa_id, no token_type.
        assert_eq!(r.json(), json!({ "phone": "84987654321" }));

        assert_eq!(t.journey_id, "123456789");
        assert_eq!(t.token.as_deref(), Some("JT-new"));
        assert_eq!(t.provider_ref, None);
        assert_eq!(t.status, None);
        let left = t.expires_at - OffsetDateTime::now_utc();
        assert!(
            left > time::Duration::days(7) - time::Duration::minutes(1) && left <= TOKEN_LIFETIME
        );
    }

    #[tokio::test]
    async fn create_token_numeric_journey_id_and_errors() {
        let server = TestServer::start(Canned::json(json!({
            "error": 0, "message": "Success", "token": "JT", "journey_id": 42
        })))
        .await;
        let req = TokenRequest {
            oa_id: "1",
            phone: "84987654321",
            token_type: "",
        };
        assert_eq!(
            zalo(&server).create_token(&req).await.unwrap().journey_id,
            "42"
        );

        // An unknown code cannot mean "check the token" while buying one.
        let server = TestServer::start(Canned::json(json!({"error": -999, "message": "?"}))).await;
        let e = zalo(&server).create_token(&req).await.unwrap_err();
        assert_eq!((e.class, e.code.as_str()), (ErrorClass::FailRow, "-999"));

        // Success without a token: possibly charged, so in doubt.
        let server = TestServer::start(Canned::json(json!({"error": 0, "journey_id": "1"}))).await;
        let e = zalo(&server).create_token(&req).await.unwrap_err();
        assert_eq!(e.class, ErrorClass::Retry);
        assert!(e.in_doubt);
    }

    #[tokio::test]
    async fn send_request_shape_and_string_quota() {
        let server = TestServer::start(Canned::json(json!({
            "error": 0, "message": "Success",
            "data": {
                "sent_time": "1640144305350",
                "quota": { "remainingQuota": "480", "dailyQuota": "500" },
                "msg_id": "6e84304c259208ce5181"
            }
        })))
        .await;
        let t = token();
        let data = [("order_code", "A-1"), ("amount", "150000")];
        let out = zalo(&server).send(&send_req(&t, &data)).await.unwrap();

        let r = server.only_request();
        assert_eq!(r.method, "POST");
        assert_eq!(r.path, "/message/template");
        assert_eq!(r.header("access_token"), Some(KEY));
        assert_eq!(r.header("journey_token"), Some("JT-abc="));
        assert_eq!(r.header("content-type"), Some("application/json"));
        assert_eq!(
            r.json(),
            json!({
                "phone": "84987654321",
                // A JSON number, as in seed 003's example.
                "template_id": 217489,
                "template_data": { "order_code": "A-1", "amount": "150000" },
                "tracking_id": "row-7"
            })
        );

        assert_eq!(out.msg_id.as_deref(), Some("6e84304c259208ce5181"));
        assert_eq!(
            out.quota,
            Some(QuotaInfo {
                remaining: 480,
                daily: 500
            })
        );
        assert!(!out.duplicate);
    }

    #[tokio::test]
    async fn quota_as_numbers_and_non_numeric_template_id() {
        let server = TestServer::start(Canned::json(json!({
            "error": 0,
            "data": { "msg_id": "m1", "quota": { "remainingQuota": 7, "dailyQuota": 5000 } }
        })))
        .await;
        let t = token();
        let mut req = send_req(&t, &[]);
        req.template_id = "7895417a7d3f9461cd2e";
        let out = zalo(&server).send(&req).await.unwrap();
        assert_eq!(
            out.quota,
            Some(QuotaInfo {
                remaining: 7,
                daily: 5000
            })
        );
        let body = server.only_request().json();
        assert_eq!(body["template_id"], json!("7895417a7d3f9461cd2e"));
        assert_eq!(body["template_data"], json!({}));
    }

    #[tokio::test]
    async fn error_codes_are_classified_by_the_table() {
        for (code, class) in [
            (-124, ErrorClass::AbortAuth),
            (-118, ErrorClass::FailRow),
            (-144, ErrorClass::PauseQuota),
            (-100, ErrorClass::Retry),
            (-999, ErrorClass::CheckToken),
        ] {
            let e = send_with_reply(Canned::json(json!({"error": code, "message": "nope"})))
                .await
                .unwrap_err();
            assert_eq!(e.class, class, "code {code}");
            assert_eq!(e.code, code.to_string());
            assert_eq!(e.message, "nope");
            assert!(!e.in_doubt);
        }
        // The code may come as a string too.
        let e = send_with_reply(Canned::json(json!({"error": "-118"})))
            .await
            .unwrap_err();
        assert_eq!(e.class, ErrorClass::FailRow);
    }

    #[tokio::test]
    async fn transport_failures() {
        let e = send_with_reply(Canned::raw(500, "boom")).await.unwrap_err();
        assert_eq!(
            (e.class, e.code.as_str(), e.in_doubt),
            (ErrorClass::Retry, "http_500", true)
        );

        let e = send_with_reply(Canned::raw(429, "slow down").header("retry-after", "7"))
            .await
            .unwrap_err();
        assert_eq!(e.class, ErrorClass::Retry);
        assert_eq!(e.retry_after, Some(Duration::from_secs(7)));
        assert!(!e.in_doubt);

        let e = send_with_reply(Canned::raw(200, "<html>gateway</html>"))
            .await
            .unwrap_err();
        assert_eq!(
            (e.class, e.code.as_str(), e.in_doubt),
            (ErrorClass::Retry, "decode", true)
        );

        let e = send_with_reply(Canned::raw(401, "")).await.unwrap_err();
        assert_eq!(e.class, ErrorClass::AbortAuth);
    }

    #[tokio::test]
    async fn echoed_keys_are_blanked() {
        let e = send_with_reply(Canned::json(json!({
            "error": -124, "message": format!("access token {KEY} is invalid")
        })))
        .await
        .unwrap_err();
        assert_eq!(e.message, "access token *** is invalid");

        let e = send_with_reply(Canned::raw(502, &format!("upstream said {KEY}")))
            .await
            .unwrap_err();
        assert!(e.message.contains("***"));
    }

    #[tokio::test]
    async fn check_token_request_and_verdicts() {
        let future = (OffsetDateTime::now_utc() + time::Duration::days(3)).unix_timestamp() * 1000;
        let server = TestServer::start(Canned::json(json!({
            "error": 0, "message": "Success",
            "data": { "appId": "1", "oaId": "2", "createdAt": "1641269204370", "expiredAt": future.to_string() }
        })))
        .await;
        let check = zalo(&server)
            .check_token("ignored", &token())
            .await
            .unwrap();
        assert_eq!(
            check,
            TokenCheck::Valid {
                expires_at: OffsetDateTime::from_unix_timestamp(future / 1000).unwrap()
            }
        );
        let r = server.only_request();
        assert_eq!(r.method, "GET");
        assert_eq!(r.path, "/journey/check-token");
        assert_eq!(r.header("access_token"), Some(KEY));
        assert_eq!(r.header("journey_token"), Some("JT-abc="));
        assert!(r.body.is_empty());

        // The seed's own example: long expired, as a number here.
        let server = TestServer::start(Canned::json(json!({
            "error": 0, "data": { "expiredAt": 1641269384370_i64 }
        })))
        .await;
        assert_eq!(
            zalo(&server).check_token("", &token()).await.unwrap(),
            TokenCheck::Expired
        );

        for (code, verdict) in [
            (-118, Some(TokenCheck::NotFound)),
            (-999, Some(TokenCheck::NotFound)),
        ] {
            let server = TestServer::start(Canned::json(json!({"error": code}))).await;
            assert_eq!(zalo(&server).check_token("", &token()).await.ok(), verdict);
        }
        for (reply, class) in [
            (Canned::json(json!({"error": -124})), ErrorClass::AbortAuth),
            (
                Canned::json(json!({"error": -101})),
                ErrorClass::AbortConfig,
            ),
            (Canned::raw(503, ""), ErrorClass::Retry),
            (Canned::raw(200, "not json"), ErrorClass::Retry),
        ] {
            let server = TestServer::start(reply).await;
            let e = zalo(&server).check_token("", &token()).await.unwrap_err();
            assert_eq!(e.class, class);
            assert_no_leak(&e);
        }
    }

    #[tokio::test]
    async fn refusals_without_a_request() {
        let server = TestServer::start(Canned::json(json!({"error": 0}))).await;
        let z = zalo(&server);
        let t = token();
        let no_token = SendRequest {
            token: None,
            ..send_req(&t, &[])
        };
        assert_eq!(
            z.send(&no_token).await.unwrap_err().class,
            ErrorClass::RefreshToken
        );

        let mut tokenless = token();
        tokenless.token = None;
        assert_eq!(
            z.check_token("", &tokenless).await.unwrap(),
            TokenCheck::NotFound
        );

        let e = z.get_message("", "m1").await.unwrap_err();
        assert_eq!(
            (e.class, e.code.as_str()),
            (ErrorClass::AbortConfig, "unsupported")
        );
        assert!(server.requests().is_empty());
        assert_eq!(z.capabilities(), ProviderKind::Zalo.capabilities());
        assert!(z.capabilities().tokens);
        assert_eq!(z.capabilities().dedup, Dedup::Inferred);
    }

    #[tokio::test]
    async fn template_info_request_and_reply() {
        // The shape of template/info/v2 (spec, "Zalo — quota and template info").
        let server = TestServer::start(Canned::json(json!({
            "error": 0, "message": "Success",
            "data": {
                "templateId": 217489, "templateName": "Order", "status": "ENABLE",
                "listParams": [
                    {"name": "customer_name", "require": true, "type": "STRING",
                     "maxLength": 30, "minLength": 0, "acceptNull": false},
                    {"name": "note", "require": false, "type": "STRING",
                     "maxLength": "100", "minLength": "0", "acceptNull": true}
                ],
                "listButtons": [], "timeout": 7200000, "previewUrl": "https://x.test/p",
                "templateQuality": "HIGH", "templateTag": "TRANSACTION", "price": "300"
            }
        })))
        .await;
        let info = zalo(&server)
            .template_info("ignored", "217489")
            .await
            .unwrap()
            .unwrap();
        let r = server.only_request();
        assert_eq!(r.method, "GET");
        assert_eq!(r.path, "/template/info/v2");
        assert_eq!(r.query.as_deref(), Some("template_id=217489"));
        assert_eq!(r.header("access_token"), Some(KEY));
        assert!(r.body.is_empty());

        assert_eq!(info.template_id, "217489");
        assert!(info.enabled);
        assert_eq!(info.status_raw, "ENABLE");
        assert_eq!(info.params.len(), 2);
        assert_eq!(info.params[0].name, "customer_name");
        assert_eq!(
            (
                info.params[0].required,
                info.params[0].max_length,
                info.params[0].accept_null
            ),
            (true, Some(30), false)
        );
        assert_eq!(
            (
                info.params[1].required,
                info.params[1].max_length,
                info.params[1].accept_null
            ),
            (false, Some(100), true)
        );
    }

    #[tokio::test]
    async fn template_info_refusals() {
        let server = TestServer::start(Canned::json(json!({
            "error": 0, "data": {"status": "PENDING_REVIEW", "listParams": []}
        })))
        .await;
        let info = zalo(&server).template_info("", "1").await.unwrap().unwrap();
        assert!(!info.enabled);
        assert_eq!(info.status_raw, "PENDING_REVIEW");

        for (reply, class) in [
            // Template id invalid (Zalo's -109) and an unlisted code alike
            // refuse the campaign, not a row.
            (
                Canned::json(json!({"error": -109, "message": "template id is invalid"})),
                ErrorClass::AbortConfig,
            ),
            (
                Canned::json(json!({"error": -1123, "message": "?"})),
                ErrorClass::AbortConfig,
            ),
            (
                Canned::json(json!({"error": -124, "message": format!("token {KEY} invalid")})),
                ErrorClass::AbortAuth,
            ),
            (Canned::raw(404, ""), ErrorClass::AbortConfig),
            (Canned::raw(503, ""), ErrorClass::Retry),
            (Canned::json(json!({"error": 0})), ErrorClass::Retry),
        ] {
            let server = TestServer::start(reply).await;
            let e = zalo(&server).template_info("", "1").await.unwrap_err();
            assert_eq!(e.class, class, "{e}");
            assert!(!e.in_doubt);
            assert_no_leak(&e);
        }
    }

    #[tokio::test]
    async fn quota_request_strings_and_numbers() {
        let server = TestServer::start(Canned::json(json!({
            "error": 0, "message": "Success",
            "data": {
                "dailyQuota": "500", "remainingQuota": "480",
                "dailyQuotaPromotion": null, "remainingQuotaPromotion": null,
                "monthlyPromotionQuota": 0
            }
        })))
        .await;
        let q = zalo(&server).quota("ignored").await.unwrap();
        assert_eq!(
            q,
            Some(QuotaInfo {
                remaining: 480,
                daily: 500
            })
        );
        let r = server.only_request();
        assert_eq!(r.method, "GET");
        assert_eq!(r.path, "/message/quota");
        assert_eq!(r.query, None);
        assert_eq!(r.header("access_token"), Some(KEY));

        let server = TestServer::start(Canned::json(json!({
            "error": 0, "data": {"dailyQuota": 5000, "remainingQuota": 0}
        })))
        .await;
        assert_eq!(
            zalo(&server).quota("").await.unwrap(),
            Some(QuotaInfo {
                remaining: 0,
                daily: 5000
            })
        );

        for (reply, class) in [
            (
                Canned::json(json!({"error": 0, "data": {"dailyQuota": "5"}})),
                ErrorClass::Retry,
            ),
            (Canned::json(json!({"error": -124})), ErrorClass::AbortAuth),
            (Canned::raw(401, ""), ErrorClass::AbortAuth),
        ] {
            let server = TestServer::start(reply).await;
            let e = zalo(&server).quota("").await.unwrap_err();
            assert_eq!((e.class, e.in_doubt), (class, false));
        }
    }
}
