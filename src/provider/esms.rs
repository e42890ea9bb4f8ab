//! eSMS `SendZaloMessage_V4` with `IsJourney` (seed 004, spec §3): JSON
//! bodies whose values are all strings, credentials (`ApiKey`, `SecretKey`)
//! in the body, replies `{CodeResult, SMSID, ErrorMessage}` with `"100"` for
//! accepted. eSMS has no token step: it manages the journey from `OrderId`.

use async_trait::async_trait;
use serde::Deserialize;
use serde_json::{json, Value};

use super::http::{self, lenient, RawReply};
use super::{
    Capabilities, Dedup, ErrorClass, JourneyToken, MessageInfo, Provider, ProviderError,
    ProviderKind, ProviderSettings, QuotaInfo, Secret, SendOutcome, SendRequest, TokenCheck,
    TokenRequest,
};

/// "RequestId … Max length: 50" (seed 004).
const MAX_REQUEST_ID: usize = 50;

/// eSMS's success code: accepted, final status comes by callback.
const ACCEPTED: &str = "100";

pub struct Esms {
    client: reqwest::Client,
    settings: ProviderSettings,
}

/// Every eSMS reply: documented as strings, numbers accepted too (GetQuota's
/// own example answers numbers).
#[derive(Debug, Deserialize)]
struct Reply {
    #[serde(
        rename = "CodeResult",
        default,
        deserialize_with = "lenient::opt_string"
    )]
    code: Option<String>,
    #[serde(rename = "SMSID", default, deserialize_with = "lenient::opt_string")]
    sms_id: Option<String>,
    #[serde(
        rename = "ErrorMessage",
        default,
        deserialize_with = "lenient::opt_string"
    )]
    error_message: Option<String>,
    #[serde(rename = "DailyQuota", default, deserialize_with = "lenient::opt_u64")]
    daily_quota: Option<u64>,
    #[serde(
        rename = "RemainingQuota",
        default,
        deserialize_with = "lenient::opt_u64"
    )]
    remaining_quota: Option<u64>,
}

fn unsupported(message: &str) -> ProviderError {
    ProviderError::new(ErrorClass::AbortConfig, "unsupported", message)
}

pub(crate) const NO_MESSAGE_LOOKUP: &str =
    "eSMS reports delivery status by callback (CallbackUrl); no message lookup here";

const NO_TOKEN_STEP: &str = "eSMS has no journey token step; OrderId carries the journey";

impl Esms {
    pub fn new(client: reqwest::Client, settings: ProviderSettings) -> Self {
        Self { client, settings }
    }

    fn secret_key(&self) -> Result<&Secret, ProviderError> {
        self.settings
            .secret_key
            .as_ref()
            .filter(|s| !s.is_empty())
            .ok_or_else(|| {
                ProviderError::new(
                    ErrorClass::AbortConfig,
                    "no_secret_key",
                    "eSMS needs --secret-key / ZNS_SECRET_KEY",
                )
            })
    }

    /// POST a JSON body to `{base}/<path>`; a non-2xx reply is classified by
    /// status, a 2xx one decoded.
    async fn post(&self, path: &str, body: &Value) -> Result<Reply, ProviderError> {
        let url = format!("{}/{path}", self.settings.base_url.trim_end_matches('/'));
        let req = self
            .client
            .post(url)
            .header(reqwest::header::ACCEPT, "application/json")
            .json(body);
        let reply: RawReply = http::execute(req).await?;
        if !reply.status.is_success() {
            return Err(http::status_error(&reply));
        }
        http::decode(&reply)
    }

    fn code_error(&self, code: &str, message: Option<&str>) -> ProviderError {
        let class = self.settings.codes.classify(ProviderKind::Esms, code);
        ProviderError::new(class, code, message.unwrap_or("eSMS error").to_string())
    }

    async fn send_inner(&self, req: &SendRequest<'_>) -> Result<SendOutcome, ProviderError> {
        let secret = self.secret_key()?;
        // eSMS would refuse it anyway; refusing here keeps the row out of doubt.
        if req.tracking_id.chars().count() > MAX_REQUEST_ID {
            return Err(ProviderError::new(
                ErrorClass::FailRow,
                "request_id_too_long",
                format!(
                    "tracking id is {} characters; eSMS RequestId allows {MAX_REQUEST_ID}",
                    req.tracking_id.chars().count()
                ),
            ));
        }
        // Positional, in CSV column order: eSMS maps them onto the template
        // by order, not by name.
        let params: Vec<Value> = req
            .template_data
            .iter()
            .map(|(_, v)| Value::String(v.to_string()))
            .collect();
        let mut body = json!({
            "ApiKey": self.settings.api_key.expose(),
            "SecretKey": secret.expose(),
            "Phone": req.phone,
            "Params": params,
            "TempID": req.template_id,
            "OAID": req.oa_id,
            "IsJourney": "true",
            // OrderId names the journey eSMS groups messages under. A batch
            // row is one recipient's journey, and the tracking id is the
            // row's stable id, so it stays the same across resends.
            "OrderId": req.tracking_id,
            "campaignid": req.campaign,
            // The documented de-dup key: a resend after a lost reply
            // answers 124 instead of sending twice.
            "RequestId": req.tracking_id,
            "Sandbox": if self.settings.esms_sandbox { "1" } else { "0" },
        });
        if let (Some(url), Some(obj)) = (&self.settings.callback_url, body.as_object_mut()) {
            obj.insert("CallbackUrl".into(), Value::String(url.clone()));
        }
        let r = self.post("SendZaloMessage_V4_post_json/", &body).await?;
        let code = r.code.ok_or_else(|| {
            // A 2xx without a code may hide an accepted message.
            ProviderError::new(ErrorClass::Retry, "decode", "eSMS reply has no CodeResult")
                .in_doubt(true)
        })?;
        if code.trim() == ACCEPTED {
            return Ok(SendOutcome {
                msg_id: r.sms_id,
                ..SendOutcome::default()
            });
        }
        let err = self.code_error(code.trim(), r.error_message.as_deref());
        if err.class == ErrorClass::AlreadySent {
            // eSMS already holds this RequestId: an idempotent replay.
            return Ok(SendOutcome {
                msg_id: r.sms_id,
                duplicate: true,
                ..SendOutcome::default()
            });
        }
        Err(err)
    }

    /// The OA's daily ZNS quota: `POST {base}/ZNS/GetQuota/` with
    /// `{ApiKey, SecretKey, OAID}`, answered with `DailyQuota` and
    /// `RemainingQuota` (developers.esms.vn, "Lấy quota tin zalo theo OAID";
    /// POST JSON is the documented form, and keeps the keys out of URLs).
    pub async fn get_quota(&self, oa_id: &str) -> Result<QuotaInfo, ProviderError> {
        self.get_quota_inner(oa_id)
            .await
            .map_err(|e| self.settings.redact(e))
    }

    async fn get_quota_inner(&self, oa_id: &str) -> Result<QuotaInfo, ProviderError> {
        let secret = self.secret_key()?;
        let body = json!({
            "ApiKey": self.settings.api_key.expose(),
            "SecretKey": secret.expose(),
            "OAID": oa_id,
        });
        let r = self.post("ZNS/GetQuota/", &body).await?;
        // A read: nothing is in doubt if the reply is unreadable.
        let unreadable = |what: &str| {
            ProviderError::new(
                ErrorClass::Retry,
                "decode",
                format!("GetQuota reply has no {what}"),
            )
        };
        let code = r.code.ok_or_else(|| unreadable("CodeResult"))?;
        if code.trim() != ACCEPTED {
            return Err(self.code_error(code.trim(), r.error_message.as_deref()));
        }
        Ok(QuotaInfo {
            remaining: r
                .remaining_quota
                .ok_or_else(|| unreadable("RemainingQuota"))?,
            daily: r.daily_quota.ok_or_else(|| unreadable("DailyQuota"))?,
        })
    }
}

#[async_trait]
impl Provider for Esms {
    fn kind(&self) -> ProviderKind {
        ProviderKind::Esms
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities {
            tokens: false,
            // RequestId de-duplication is documented (code 124).
            dedup: Dedup::Documented,
            lookup_by_tracking_id: false,
            no_message_lookup: Some(NO_MESSAGE_LOOKUP),
        }
    }

    async fn create_token(&self, _req: &TokenRequest<'_>) -> Result<JourneyToken, ProviderError> {
        Err(unsupported(NO_TOKEN_STEP))
    }

    async fn check_token(
        &self,
        _oa_id: &str,
        _token: &JourneyToken,
    ) -> Result<TokenCheck, ProviderError> {
        Err(unsupported(NO_TOKEN_STEP))
    }

    async fn send(&self, req: &SendRequest<'_>) -> Result<SendOutcome, ProviderError> {
        self.send_inner(req)
            .await
            .map_err(|e| self.settings.redact(e))
    }

    /// eSMS reports the final status by callback (`CallbackUrl`); its status
    /// queries are not wired in.
    async fn get_message(&self, _oa_id: &str, _msg_id: &str) -> Result<MessageInfo, ProviderError> {
        Err(unsupported(NO_MESSAGE_LOOKUP))
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use serde_json::json;
    use time::OffsetDateTime;

    use super::*;
    use crate::provider::http::test_server::{Canned, TestServer};
    use crate::provider::ErrorTable;

    const KEY: &str = "KEY-SHOULD-NOT-LEAK";
    const SECRET: &str = "SECRET-SHOULD-NOT-LEAK";

    fn settings(base: &str) -> ProviderSettings {
        ProviderSettings {
            kind: ProviderKind::Esms,
            base_url: format!("{base}/MainService.svc/json"),
            api_key: Secret::new(KEY),
            secret_key: Some(Secret::new(SECRET)),
            request_timeout: Duration::from_secs(2),
            codes: ErrorTable::default(),
            esms_sandbox: false,
            callback_url: None,
        }
    }

    fn esms(server: &TestServer) -> Esms {
        Esms::new(
            http::client(Duration::from_secs(2)).unwrap(),
            settings(&server.base),
        )
    }

    // Keys deliberately out of alphabetical order: Params must keep CSV order.
    const DATA: &[(&str, &str)] = &[("ten", "An"), ("ma_don", "A-1"), ("amount", "150000")];

    fn send_req() -> SendRequest<'static> {
        SendRequest {
            oa_id: "4097311281936189049",
            phone: "84987654321",
            template_id: "217489",
            template_data: DATA,
            tracking_id: "row-7",
            token: None,
            campaign: "july",
        }
    }

    fn assert_no_leak(err: &ProviderError) {
        let shown = format!("{err} {err:?}");
        assert!(
            !shown.contains(KEY) && !shown.contains(SECRET),
            "key leaked: {shown}"
        );
    }

    async fn send_with_reply(reply: Canned) -> Result<SendOutcome, ProviderError> {
        let server = TestServer::start(reply).await;
        let out = esms(&server).send(&send_req()).await;
        if let Err(e) = &out {
            assert_no_leak(e);
        }
        out
    }

    #[tokio::test]
    async fn send_request_shape() {
        let server = TestServer::start(Canned::json(json!({
            "CodeResult": "100", "SMSID": "b1e2-77", "ErrorMessage": ""
        })))
        .await;
        let out = esms(&server).send(&send_req()).await.unwrap();

        let r = server.only_request();
        assert_eq!(r.method, "POST");
        assert_eq!(
            r.path,
            "/MainService.svc/json/SendZaloMessage_V4_post_json/"
        );
        assert_eq!(r.query, None);
        assert_eq!(r.header("content-type"), Some("application/json"));
        let body = r.json();
        assert_eq!(
            body,
            json!({
                "ApiKey": KEY,
                "SecretKey": SECRET,
                "Phone": "84987654321",
                "Params": ["An", "A-1", "150000"],
                "TempID": "217489",
                "OAID": "4097311281936189049",
                "IsJourney": "true",
                "OrderId": "row-7",
                "campaignid": "july",
                "RequestId": "row-7",
                "Sandbox": "0"
            })
        );
        // Every field a string, Params an array of strings (seed 004).
        for (k, v) in body.as_object().unwrap() {
            match k.as_str() {
                "Params" => assert!(v.as_array().unwrap().iter().all(Value::is_string)),
                _ => assert!(v.is_string(), "{k} is not a string"),
            }
        }
        assert_eq!(
            out,
            SendOutcome {
                msg_id: Some("b1e2-77".into()),
                ..SendOutcome::default()
            }
        );
    }

    #[tokio::test]
    async fn sandbox_flag_callback_and_numeric_code() {
        let server =
            TestServer::start(Canned::json(json!({"CodeResult": 100, "SMSID": 991}))).await;
        let mut s = settings(&server.base);
        s.esms_sandbox = true;
        s.callback_url = Some("https://example.test/cb".into());
        let e = Esms::new(http::client(Duration::from_secs(2)).unwrap(), s);
        let out = e.send(&send_req()).await.unwrap();
        assert_eq!(out.msg_id.as_deref(), Some("991"));
        let body = server.only_request().json();
        assert_eq!(body["Sandbox"], json!("1"));
        assert_eq!(body["CallbackUrl"], json!("https://example.test/cb"));
    }

    #[tokio::test]
    async fn codes_are_classified_and_124_is_a_replay() {
        for (code, class) in [
            ("101", ErrorClass::AbortAuth),
            ("103", ErrorClass::PauseQuota),
            ("99", ErrorClass::FailRow),
            ("204", ErrorClass::AbortConfig),
            ("777", ErrorClass::FailRow),
        ] {
            let e = send_with_reply(Canned::json(json!({
                "CodeResult": code, "ErrorMessage": "no luck"
            })))
            .await
            .unwrap_err();
            assert_eq!((e.class, e.code.as_str()), (class, code));
            assert_eq!(e.message, "no luck");
            assert!(!e.in_doubt);
        }

        let out = send_with_reply(Canned::json(json!({
            "CodeResult": "124", "ErrorMessage": "Duplicate RequestId"
        })))
        .await
        .unwrap();
        assert!(out.duplicate);
        assert_eq!(out.msg_id, None);

        let out = send_with_reply(Canned::json(json!({"CodeResult": 124, "SMSID": "s-1"})))
            .await
            .unwrap();
        assert!(out.duplicate);
        assert_eq!(out.msg_id.as_deref(), Some("s-1"));
    }

    #[tokio::test]
    async fn transport_failures() {
        let e = send_with_reply(Canned::raw(500, "boom")).await.unwrap_err();
        assert_eq!(
            (e.class, e.code.as_str(), e.in_doubt),
            (ErrorClass::Retry, "http_500", true)
        );

        let e = send_with_reply(Canned::raw(429, "").header("retry-after", "3"))
            .await
            .unwrap_err();
        assert_eq!(e.class, ErrorClass::Retry);
        assert_eq!(e.retry_after, Some(Duration::from_secs(3)));
        assert!(!e.in_doubt);

        let e = send_with_reply(Canned::raw(200, "Service Unavailable"))
            .await
            .unwrap_err();
        assert_eq!(
            (e.class, e.code.as_str(), e.in_doubt),
            (ErrorClass::Retry, "decode", true)
        );

        // JSON, but no code: the message may have been accepted.
        let e = send_with_reply(Canned::json(json!({"SMSID": "x"})))
            .await
            .unwrap_err();
        assert_eq!((e.class, e.in_doubt), (ErrorClass::Retry, true));
    }

    #[tokio::test]
    async fn echoed_keys_are_blanked() {
        let e = send_with_reply(Canned::json(json!({
            "CodeResult": "101",
            "ErrorMessage": format!("ApiKey {KEY} / SecretKey {SECRET} rejected")
        })))
        .await
        .unwrap_err();
        assert_eq!(e.message, "ApiKey *** / SecretKey *** rejected");

        let e = send_with_reply(Canned::raw(
            400,
            &format!("bad body {{\"SecretKey\":\"{SECRET}\"}}"),
        ))
        .await
        .unwrap_err();
        assert!(e.message.contains("***"));
    }

    #[tokio::test]
    async fn refusals_without_a_request() {
        let server = TestServer::start(Canned::json(json!({"CodeResult": "100"}))).await;
        let mut s = settings(&server.base);
        s.secret_key = None;
        let no_secret = Esms::new(http::client(Duration::from_secs(2)).unwrap(), s);
        let e = no_secret.send(&send_req()).await.unwrap_err();
        assert_eq!(e.class, ErrorClass::AbortConfig);
        assert!(e.message.contains("--secret-key"));
        let e = no_secret.get_quota("1").await.unwrap_err();
        assert_eq!(e.class, ErrorClass::AbortConfig);

        let e = esms(&server);
        let long = "x".repeat(51);
        let req = SendRequest {
            tracking_id: &long,
            ..send_req()
        };
        let err = e.send(&req).await.unwrap_err();
        assert_eq!((err.class, err.in_doubt), (ErrorClass::FailRow, false));

        let token = JourneyToken {
            journey_id: "1".into(),
            provider_ref: None,
            token: None,
            expires_at: OffsetDateTime::now_utc(),
            status: None,
        };
        let tr = TokenRequest {
            oa_id: "1",
            phone: "84987654321",
            token_type: "",
        };
        for err in [
            e.create_token(&tr).await.unwrap_err(),
            e.check_token("1", &token).await.unwrap_err(),
            e.get_message("1", "m").await.unwrap_err(),
        ] {
            assert_eq!(
                (err.class, err.code.as_str()),
                (ErrorClass::AbortConfig, "unsupported")
            );
        }
        assert!(server.requests().is_empty());

        let caps = e.capabilities();
        assert!(!caps.tokens);
        assert_eq!(caps.dedup, Dedup::Documented);
        assert!(!caps.lookup_by_tracking_id);

        // Exactly 50 characters is allowed.
        let fifty = "y".repeat(50);
        let req = SendRequest {
            tracking_id: &fifty,
            ..send_req()
        };
        e.send(&req).await.unwrap();
        assert_eq!(server.only_request().json()["RequestId"], json!(fifty));
    }

    #[tokio::test]
    async fn get_quota_request_and_replies() {
        let server = TestServer::start(Canned::json(json!({
            "CodeResult": "100", "ErrorMessage": "success",
            "DailyQuota": 5000, "DailyQuotaPromotion": 0, "RemainingQuota": 4992
        })))
        .await;
        let q = esms(&server)
            .get_quota("4097311281936189049")
            .await
            .unwrap();
        assert_eq!(
            q,
            QuotaInfo {
                remaining: 4992,
                daily: 5000
            }
        );
        let r = server.only_request();
        assert_eq!(r.method, "POST");
        assert_eq!(r.path, "/MainService.svc/json/ZNS/GetQuota/");
        assert_eq!(r.query, None, "keys must not travel in the URL");
        assert_eq!(r.header("content-type"), Some("application/json"));
        assert_eq!(
            r.json(),
            json!({ "ApiKey": KEY, "SecretKey": SECRET, "OAID": "4097311281936189049" })
        );

        // The documented type is string.
        let server = TestServer::start(Canned::json(json!({
            "CodeResult": "100", "DailyQuota": "500", "RemainingQuota": "480"
        })))
        .await;
        let q = esms(&server).get_quota("1").await.unwrap();
        assert_eq!(
            q,
            QuotaInfo {
                remaining: 480,
                daily: 500
            }
        );

        let server = TestServer::start(Canned::json(json!({
            "CodeResult": "101", "ErrorMessage": "Authorize Failed"
        })))
        .await;
        let e = esms(&server).get_quota("1").await.unwrap_err();
        assert_eq!((e.class, e.code.as_str()), (ErrorClass::AbortAuth, "101"));
        assert_no_leak(&e);

        let server = TestServer::start(Canned::json(json!({"CodeResult": "100"}))).await;
        let e = esms(&server).get_quota("1").await.unwrap_err();
        assert_eq!((e.class, e.in_doubt), (ErrorClass::Retry, false));
    }
}
