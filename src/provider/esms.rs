//! eSMS `SendZaloMessage_V4` with `IsJourney` (seed 004, spec §3): JSON
//! bodies whose values are all strings, credentials (`ApiKey`, `SecretKey`)
//! in the body, replies `{CodeResult, SMSID, ErrorMessage}` with `"100"` for
//! accepted. eSMS has no token step: it manages the journey from `OrderId`.

use async_trait::async_trait;
use serde::Deserialize;
use serde_json::{json, Value};

use super::common::{campaign_level, Unchecked};
use super::http::{self, lenient, RawReply};
use super::template::WireParam;
use super::{
    ErrorClass, JourneyToken, MessageInfo, Provider, ProviderError, ProviderKind, ProviderSettings,
    QuotaInfo, Secret, SendOutcome, SendRequest, TemplateInfo, TokenCheck, TokenRequest,
};

/// "RequestId … Max length: 50" (seed 004).
const MAX_REQUEST_ID: usize = 50;

/// eSMS's success code: accepted, final status comes by callback.
const ACCEPTED: &str = "100";

pub struct Esms {
    client: reqwest::Client,
    settings: ProviderSettings,
}

/// Our choice of paths for the campaign-level reads. eSMS documents the
/// names (`ZNS/GetQuota`, `GetZnsTemplateInfo`) and the reply fields, not the
/// request form: POST JSON keeps the keys out of URLs. The sandbox serves
/// exactly these paths and fields.
const QUOTA_PATH: &str = "ZNS/GetQuota";
const TEMPLATE_INFO_PATH: &str = "GetZnsTemplateInfo";

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
    /// GetZnsTemplateInfo only.
    #[serde(rename = "Status", default, deserialize_with = "lenient::opt_string")]
    status: Option<String>,
    #[serde(rename = "ListParams", default)]
    list_params: Option<Vec<WireParam>>,
}

fn unsupported(message: &str) -> ProviderError {
    ProviderError::new(ErrorClass::AbortConfig, "unsupported", message)
}

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
        self.settings.code_error(code, message)
    }

    /// `ApiKey`, `SecretKey` and `OAID`: the start of every campaign-level read.
    fn credentials(&self, oa_id: &str) -> Result<serde_json::Map<String, Value>, ProviderError> {
        let secret = self.secret_key()?;
        let mut body = serde_json::Map::new();
        body.insert("ApiKey".into(), self.settings.api_key.expose().into());
        body.insert("SecretKey".into(), secret.expose().into());
        body.insert("OAID".into(), oa_id.into());
        Ok(body)
    }

    /// A campaign-level read: POST, then a `CodeResult` other than 100 is
    /// classified and raised to a campaign refusal where it would fail a row.
    async fn read(&self, call: &str, path: &str, body: Value) -> Result<Reply, ProviderError> {
        let r = self.post(path, &body).await.map_err(campaign_level)?;
        let code = r.code.as_deref().map(str::trim).ok_or_else(|| {
            // A read: nothing is in doubt if the reply is unreadable.
            ProviderError::new(
                ErrorClass::Retry,
                "decode",
                format!("{call} reply has no CodeResult"),
            )
        })?;
        if code != ACCEPTED {
            return Err(campaign_level(
                self.code_error(code, r.error_message.as_deref()),
            ));
        }
        Ok(r)
    }

    async fn send_inner(&self, req: &SendRequest<'_>) -> Unchecked<SendOutcome> {
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
            )
            .into());
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
            // "1" only validates; a batch run always means to send.
            "Sandbox": "0",
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
        Err(err.into())
    }

    /// The OA's daily ZNS quota: `POST {base}/ZNS/GetQuota` with
    /// `{ApiKey, SecretKey, OAID}`, answered with `DailyQuota` and
    /// `RemainingQuota` (developers.esms.vn, "Lấy quota tin zalo theo OAID").
    async fn quota_inner(&self, oa_id: &str) -> Unchecked<QuotaInfo> {
        let body = self.credentials(oa_id)?;
        let r = self.read("GetQuota", QUOTA_PATH, body.into()).await?;
        match (r.remaining_quota, r.daily_quota) {
            (Some(remaining), Some(daily)) => Ok(QuotaInfo { remaining, daily }),
            _ => Err(ProviderError::new(
                ErrorClass::Retry,
                "decode",
                "GetQuota reply has no RemainingQuota / DailyQuota",
            )
            .into()),
        }
    }

    /// `POST {base}/GetZnsTemplateInfo` with `{ApiKey, SecretKey, OAID,
    /// TemplateId}` → `Status`, `ListParams[]`.
    async fn template_info_inner(&self, oa_id: &str, template_id: &str) -> Unchecked<TemplateInfo> {
        let mut body = self.credentials(oa_id)?;
        body.insert("TemplateId".into(), template_id.into());
        let r = self
            .read("GetZnsTemplateInfo", TEMPLATE_INFO_PATH, body.into())
            .await?;
        let params = r.list_params.ok_or_else(|| {
            ProviderError::new(
                ErrorClass::Retry,
                "decode",
                "GetZnsTemplateInfo reply has no ListParams",
            )
        })?;
        Ok(TemplateInfo::from_wire(template_id, r.status, params))
    }
}

#[async_trait]
impl Provider for Esms {
    fn kind(&self) -> ProviderKind {
        ProviderKind::Esms
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
        self.settings.redacting(self.send_inner(req)).await
    }

    /// eSMS reports the final status by callback (`CallbackUrl`); its status
    /// queries are not wired in.
    async fn get_message(&self, _oa_id: &str, _msg_id: &str) -> Result<MessageInfo, ProviderError> {
        Err(unsupported(
            self.capabilities()
                .no_message_lookup
                .unwrap_or("no message lookup"),
        ))
    }

    async fn template_info(
        &self,
        oa_id: &str,
        template_id: &str,
    ) -> Result<Option<TemplateInfo>, ProviderError> {
        self.settings
            .redacting(self.template_info_inner(oa_id, template_id))
            .await
            .map(Some)
    }

    async fn quota(&self, oa_id: &str) -> Result<Option<QuotaInfo>, ProviderError> {
        self.settings
            .redacting(self.quota_inner(oa_id))
            .await
            .map(Some)
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use serde_json::json;
    use time::OffsetDateTime;

    use super::*;
    use crate::provider::http::test_server::{Canned, TestServer};
    use crate::provider::{Dedup, TemplateParam};

    const KEY: &str = "KEY-SHOULD-NOT-LEAK";
    const SECRET: &str = "SECRET-SHOULD-NOT-LEAK";

    fn settings(base: &str) -> ProviderSettings {
        ProviderSettings::new(
            ProviderKind::Esms,
            format!("{base}/MainService.svc/json"),
            Secret::new(KEY),
        )
        .with_secret_key(Some(Secret::new(SECRET)))
        .with_timeout(Duration::from_secs(2))
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
    async fn callback_url_is_sent_when_set_and_numeric_code() {
        let server =
            TestServer::start(Canned::json(json!({"CodeResult": 100, "SMSID": 991}))).await;
        let s =
            settings(&server.base).with_callback_url(Some("https://example.test/cb?c=july".into()));
        let e = Esms::new(http::client(Duration::from_secs(2)).unwrap(), s);
        let out = e.send(&send_req()).await.unwrap();
        assert_eq!(out.msg_id.as_deref(), Some("991"));
        let r = server.only_request();
        assert_eq!(
            r.path,
            "/MainService.svc/json/SendZaloMessage_V4_post_json/"
        );
        assert_eq!(
            r.json(),
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
                "Sandbox": "0",
                "CallbackUrl": "https://example.test/cb?c=july"
            })
        );
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
        let e = no_secret.quota("1").await.unwrap_err();
        assert_eq!(e.class, ErrorClass::AbortConfig);
        let e = no_secret.template_info("1", "217489").await.unwrap_err();
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
        assert_eq!(caps, ProviderKind::Esms.capabilities());
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
            .quota("4097311281936189049")
            .await
            .unwrap()
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
        assert_eq!(r.path, "/MainService.svc/json/ZNS/GetQuota");
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
        let q = esms(&server).quota("1").await.unwrap().unwrap();
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
        let e = esms(&server).quota("1").await.unwrap_err();
        assert_eq!((e.class, e.code.as_str()), (ErrorClass::AbortAuth, "101"));
        assert_no_leak(&e);

        let server = TestServer::start(Canned::json(json!({"CodeResult": "100"}))).await;
        let e = esms(&server).quota("1").await.unwrap_err();
        assert_eq!((e.class, e.in_doubt), (ErrorClass::Retry, false));
    }

    #[tokio::test]
    async fn quota_refusals_are_campaign_level() {
        // An unlisted code, or a 404, would fail one row on a send; on the
        // quota read it refuses the setup.
        for reply in [
            Canned::json(json!({"CodeResult": "777", "ErrorMessage": "?"})),
            Canned::raw(404, "no such method"),
        ] {
            let server = TestServer::start(reply).await;
            let e = esms(&server).quota("1").await.unwrap_err();
            assert_eq!((e.class, e.in_doubt), (ErrorClass::AbortConfig, false));
        }
        let server = TestServer::start(Canned::raw(503, "")).await;
        let e = esms(&server).quota("1").await.unwrap_err();
        assert_eq!((e.class, e.in_doubt), (ErrorClass::Retry, false));
    }

    #[tokio::test]
    async fn template_info_request_and_reply() {
        let server = TestServer::start(Canned::json(json!({
            "CodeResult": "100",
            "ErrorMessage": "",
            "Status": "ENABLE",
            "ListParams": [
                {"Name": "ten", "Require": true, "Type": "STRING",
                 "MaxLength": 30, "MinLength": 1, "AcceptNull": false},
                {"Name": "ma_don", "Require": "false", "Type": "STRING",
                 "MaxLength": "20", "MinLength": "0", "AcceptNull": "true"}
            ]
        })))
        .await;
        let info = esms(&server)
            .template_info("4097311281936189049", "217489")
            .await
            .unwrap()
            .unwrap();
        let r = server.only_request();
        assert_eq!(r.method, "POST");
        assert_eq!(r.path, "/MainService.svc/json/GetZnsTemplateInfo");
        assert_eq!(r.query, None, "keys must not travel in the URL");
        assert_eq!(r.header("content-type"), Some("application/json"));
        assert_eq!(
            r.json(),
            json!({
                "ApiKey": KEY, "SecretKey": SECRET,
                "OAID": "4097311281936189049", "TemplateId": "217489"
            })
        );
        assert_eq!(
            info,
            TemplateInfo {
                template_id: "217489".into(),
                status_raw: "ENABLE".into(),
                enabled: true,
                params: vec![
                    TemplateParam {
                        name: "ten".into(),
                        required: true,
                        kind: "STRING".into(),
                        min_length: Some(1),
                        max_length: Some(30),
                        accept_null: false,
                    },
                    TemplateParam {
                        name: "ma_don".into(),
                        required: false,
                        kind: "STRING".into(),
                        min_length: Some(0),
                        max_length: Some(20),
                        accept_null: true,
                    },
                ],
            }
        );
    }

    #[tokio::test]
    async fn template_info_errors() {
        // A disabled template is an answer, not an error.
        let server = TestServer::start(Canned::json(json!({
            "CodeResult": 100, "Status": "DISABLE", "ListParams": []
        })))
        .await;
        let info = esms(&server)
            .template_info("1", "9")
            .await
            .unwrap()
            .unwrap();
        assert!(!info.enabled);
        assert_eq!(info.status_raw, "DISABLE");

        for (reply, class) in [
            (
                Canned::json(json!({"CodeResult": "101", "ErrorMessage": format!("bad {KEY}")})),
                ErrorClass::AbortAuth,
            ),
            // An unknown template: whatever the code, the campaign stops.
            (
                Canned::json(json!({"CodeResult": "146", "ErrorMessage": "Template not found"})),
                ErrorClass::AbortConfig,
            ),
            (
                Canned::raw(400, &format!("{{\"SecretKey\":\"{SECRET}\"}}")),
                ErrorClass::AbortConfig,
            ),
            (
                Canned::json(json!({"CodeResult": "100"})),
                ErrorClass::Retry,
            ),
            (Canned::raw(200, "<html>"), ErrorClass::Retry),
        ] {
            let server = TestServer::start(reply).await;
            let e = esms(&server).template_info("1", "9").await.unwrap_err();
            assert_eq!(e.class, class, "{e}");
            assert!(!e.in_doubt);
            assert_no_leak(&e);
        }
    }
}
