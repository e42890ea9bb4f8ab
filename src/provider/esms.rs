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

    /// Keys travel in every body, so any echo of them is blanked.
    fn redact(&self, err: ProviderError) -> ProviderError {
        match &self.settings.secret_key {
            Some(secret) => http::redact(err, &[&self.settings.api_key, secret]),
            None => http::redact(err, &[&self.settings.api_key]),
        }
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
            .map_err(|e| self.redact(e))
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
        self.send_inner(req).await.map_err(|e| self.redact(e))
    }

    /// eSMS reports the final status by callback (`CallbackUrl`); its status
    /// queries are not wired in.
    async fn get_message(&self, _oa_id: &str, _msg_id: &str) -> Result<MessageInfo, ProviderError> {
        Err(unsupported(
            "eSMS reports delivery status by callback (CallbackUrl); no message lookup here",
        ))
    }
}
