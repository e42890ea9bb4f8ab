//! eSMS `SendZaloMessage_V4` with `IsJourney` (seed 004, spec §3): JSON
//! bodies whose values are all strings, credentials (`ApiKey`, `SecretKey`)
//! in the body, replies `{CodeResult, SMSID, ErrorMessage}` with `"100"` for
//! accepted. eSMS has no token step: it manages the journey from `OrderId`.

use std::borrow::Cow;

use async_trait::async_trait;
use reqwest::header::{ACCEPT, CONTENT_TYPE};
use serde::{Deserialize, Serialize};

use super::common::{campaign_level, unsupported, TemplateValues, Unchecked};
use super::http::{self, lenient, Endpoint, RawReply, JSON};
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
    /// Every endpoint, parsed once (not per request).
    urls: Urls,
}

struct Urls {
    send: Endpoint,
    quota: Endpoint,
    template_info: Endpoint,
    message_status: Endpoint,
}

/// `SendZaloMessage_V4_post_json`'s body, written from borrowed fields:
/// every value a string, as eSMS documents them.
#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct SendBody<'a> {
    api_key: &'a str,
    secret_key: &'a str,
    phone: &'a str,
    /// Positional, in CSV column order: eSMS maps them onto the template by
    /// order, not by name.
    params: TemplateValues<'a>,
    #[serde(rename = "TempID")]
    temp_id: &'a str,
    #[serde(rename = "OAID")]
    oa_id: &'a str,
    is_journey: &'a str,
    /// OrderId names the journey eSMS groups messages under. A batch row is
    /// one recipient's journey, and the tracking id is the row's stable id,
    /// so it stays the same across resends.
    order_id: &'a str,
    #[serde(rename = "campaignid")]
    campaign_id: &'a str,
    /// The documented de-dup key: a resend after a lost reply answers 124
    /// instead of sending twice.
    request_id: &'a str,
    /// "1" only validates; a batch run always means to send.
    sandbox: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    callback_url: Option<&'a str>,
}

/// A campaign-level read's body: the credentials, the OA, and what the
/// call is about.
#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct ReadBody<'a> {
    api_key: &'a str,
    secret_key: &'a str,
    #[serde(rename = "OAID")]
    oa_id: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    template_id: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    message_id: Option<&'a str>,
}

/// A send's reply, borrowed from the reply's bytes. Every field may be
/// missing (`default`): the caller says what an absent one means.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct SendReply<'a> {
    #[serde(rename = "CodeResult", borrow, deserialize_with = "lenient::opt_str")]
    code: Option<Cow<'a, str>>,
    #[serde(rename = "SMSID", borrow, deserialize_with = "lenient::opt_str")]
    sms_id: Option<Cow<'a, str>>,
    #[serde(rename = "ErrorMessage", borrow, deserialize_with = "lenient::opt_str")]
    error_message: Option<Cow<'a, str>>,
}

/// Our choice of paths for the campaign-level reads. eSMS documents the
/// names (`ZNS/GetQuota`, `GetZnsTemplateInfo`) and the reply fields, not the
/// request form: POST JSON keeps the keys out of URLs. The sandbox serves
/// exactly these paths and fields.
const QUOTA_PATH: &str = "ZNS/GetQuota";
const TEMPLATE_INFO_PATH: &str = "GetZnsTemplateInfo";

/// A read's reply (GetQuota, GetZnsTemplateInfo, GetZaloMessageStatus):
/// documented as strings, numbers accepted too (GetQuota's own example
/// answers numbers).
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct Reply {
    #[serde(rename = "CodeResult", deserialize_with = "lenient::opt_string")]
    code: Option<String>,
    #[serde(rename = "ErrorMessage", deserialize_with = "lenient::opt_string")]
    error_message: Option<String>,
    #[serde(rename = "DailyQuota", deserialize_with = "lenient::opt_u64")]
    daily_quota: Option<u64>,
    #[serde(rename = "RemainingQuota", deserialize_with = "lenient::opt_u64")]
    remaining_quota: Option<u64>,
    /// GetZnsTemplateInfo only.
    #[serde(rename = "Status", deserialize_with = "lenient::opt_string")]
    status: Option<String>,
    #[serde(rename = "ListParams")]
    list_params: Option<Vec<WireParam>>,
    /// GetZaloMessageStatus only.
    #[serde(rename = "Data")]
    data: Option<StatusData>,
}

const NO_TOKEN_STEP: &str = "eSMS has no journey token step; OrderId carries the journey";

impl Esms {
    pub fn new(client: reqwest::Client, settings: ProviderSettings) -> Self {
        let base = settings.base_url.trim_end_matches('/');
        let url = |path: &str| Endpoint::new(format!("{base}/{path}"));
        let urls = Urls {
            send: url("SendZaloMessage_V4_post_json/"),
            quota: url(QUOTA_PATH),
            template_info: url(TEMPLATE_INFO_PATH),
            message_status: url(MESSAGE_STATUS_PATH),
        };
        Self {
            client,
            settings,
            urls,
        }
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

    /// POST a JSON body; a non-2xx reply is classified by status, a 2xx
    /// one handed back for decoding.
    async fn post<B: Serialize>(
        &self,
        endpoint: &Endpoint,
        body: &B,
    ) -> Result<RawReply, ProviderError> {
        let req = self
            .client
            .post(endpoint.url()?)
            .header(ACCEPT, JSON)
            .header(CONTENT_TYPE, JSON)
            .body(http::encode(body)?);
        let reply = http::execute(req).await?;
        if !reply.status.is_success() {
            return Err(http::status_error(&reply));
        }
        Ok(reply)
    }

    fn code_error(&self, code: &str, message: Option<&str>) -> ProviderError {
        self.settings.code_error(code, message)
    }

    /// `ApiKey`, `SecretKey` and `OAID`: every campaign-level read's body.
    fn credentials<'a>(&'a self, oa_id: &'a str) -> Result<ReadBody<'a>, ProviderError> {
        let secret = self.secret_key()?;
        Ok(ReadBody {
            api_key: self.settings.api_key.expose(),
            secret_key: secret.expose(),
            oa_id,
            template_id: None,
            message_id: None,
        })
    }

    /// A campaign-level read: POST, then a `CodeResult` other than 100 is
    /// classified and raised to a campaign refusal where it would fail a row.
    async fn read(
        &self,
        call: &str,
        endpoint: &Endpoint,
        body: ReadBody<'_>,
    ) -> Result<Reply, ProviderError> {
        let reply = self.post(endpoint, &body).await.map_err(campaign_level)?;
        let r: Reply = http::decode(&reply).map_err(campaign_level)?;
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
        let body = SendBody {
            api_key: self.settings.api_key.expose(),
            secret_key: secret.expose(),
            phone: req.phone,
            params: TemplateValues(req.template_data),
            temp_id: req.template_id,
            oa_id: req.oa_id,
            is_journey: "true",
            order_id: req.tracking_id,
            campaign_id: req.campaign,
            request_id: req.tracking_id,
            sandbox: "0",
            callback_url: self.settings.callback_url.as_ref().map(|u| u.expose()),
        };
        let reply = self.post(&self.urls.send, &body).await?;
        let r: SendReply = http::decode(&reply)?;
        let code = r.code.ok_or_else(|| {
            // A 2xx without a code may hide an accepted message.
            ProviderError::new(ErrorClass::Retry, "decode", "eSMS reply has no CodeResult")
                .in_doubt(true)
        })?;
        if code.trim() == ACCEPTED {
            return Ok(SendOutcome {
                msg_id: r.sms_id.map(Cow::into_owned),
                ..SendOutcome::default()
            });
        }
        let err = self.code_error(code.trim(), r.error_message.as_deref());
        if err.class == ErrorClass::AlreadySent {
            // eSMS already holds this RequestId: an idempotent replay.
            return Ok(SendOutcome {
                msg_id: r.sms_id.map(Cow::into_owned),
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
        let r = self.read("GetQuota", &self.urls.quota, body).await?;
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
        let body = ReadBody {
            template_id: Some(template_id),
            ..self.credentials(oa_id)?
        };
        let r = self
            .read("GetZnsTemplateInfo", &self.urls.template_info, body)
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
        let body = ReadBody {
            message_id: Some(msg_id),
            ..self.credentials(oa_id)?
        };
        let reply: RawReply = self.post(&self.urls.message_status, &body).await?;
        let r: Reply = http::decode(&reply)?;
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
