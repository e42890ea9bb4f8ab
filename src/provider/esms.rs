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
            obj.insert(
                "CallbackUrl".into(),
                Value::String(url.expose().to_string()),
            );
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

/// `GetZaloMessageStatus` (spec, "Callbacks…"): `{ApiKey, SecretKey, OAID,
/// MessageId}` → `{CodeResult, Data{delivery_time, message, status}}`,
/// status −1 failed, 0 not yet known, 1 received. The path is our choice,
/// as for the other reads; the sandbox serves it.
const MESSAGE_STATUS_PATH: &str = "GetZaloMessageStatus";

#[derive(Debug, Deserialize)]
struct StatusReply {
    #[serde(
        rename = "CodeResult",
        default,
        deserialize_with = "lenient::opt_string"
    )]
    code: Option<String>,
    #[serde(
        rename = "ErrorMessage",
        default,
        deserialize_with = "lenient::opt_string"
    )]
    error_message: Option<String>,
    #[serde(rename = "Data", default)]
    data: Option<StatusData>,
}

#[derive(Debug, Deserialize)]
struct StatusData {
    #[serde(default, deserialize_with = "lenient::opt_string")]
    status: Option<String>,
    #[serde(default, deserialize_with = "lenient::opt_string")]
    delivery_time: Option<String>,
}

impl Esms {
    /// The stored message id is the send reply's `SMSID` (the sandbox's
    /// equals the Zalo msg id that callbacks carry as `partnerids`).
    async fn message_status_inner(&self, oa_id: &str, msg_id: &str) -> Unchecked<MessageInfo> {
        let mut body = self.credentials(oa_id)?;
        body.insert("MessageId".into(), msg_id.into());
        let url = format!(
            "{}/{MESSAGE_STATUS_PATH}",
            self.settings.base_url.trim_end_matches('/')
        );
        let req = self
            .client
            .post(url)
            .header(reqwest::header::ACCEPT, "application/json")
            .json(&Value::from(body));
        let reply: RawReply = http::execute(req).await?;
        if !reply.status.is_success() {
            return Err(http::status_error(&reply).into());
        }
        let r: StatusReply = http::decode(&reply)?;
        let code = r.code.as_deref().map(str::trim).unwrap_or(ACCEPTED);
        if code != ACCEPTED {
            return Err(self.code_error(code, r.error_message.as_deref()).into());
        }
        let data = r.data.ok_or_else(|| {
            ProviderError::new(
                ErrorClass::Retry,
                "decode",
                "GetZaloMessageStatus reply has no Data",
            )
        })?;
        let status = match data.status.as_deref().map(str::trim) {
            Some("1") => "received",
            Some("-1") => "failed_delivery",
            _ => "unknown",
        };
        Ok(MessageInfo {
            msg_id: msg_id.to_string(),
            delivery_status: Some(status.to_string()),
            delivery_time: data.delivery_time.filter(|t| !t.is_empty()),
            ..MessageInfo::default()
        })
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

    /// For a row whose callback never came: eSMS's status call.
    async fn get_message(&self, oa_id: &str, msg_id: &str) -> Result<MessageInfo, ProviderError> {
        self.settings
            .redacting(self.message_status_inner(oa_id, msg_id))
            .await
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
mod tests;
