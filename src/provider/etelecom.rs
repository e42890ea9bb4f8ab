//! eTelecom Zalo Cloud API (seeds 000–002): Twirp-style `POST {base}.Zalo/<Method>`
//! with `Authorization: Bearer <key>`; int64 ids go out as JSON strings and
//! are accepted back as strings or numbers.

use std::borrow::Cow;

use async_trait::async_trait;
use reqwest::header::{HeaderValue, ACCEPT, AUTHORIZATION, CONTENT_TYPE};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::model::fees::MessageFees;

use super::common::{names_campaign_field, TemplateData, TemplateId, Unchecked};
use super::http::{self, lenient, Endpoint, RawReply, JSON};
use super::timestamp::parse_time;
// Lives in `timestamp`; kept reachable here for the sandbox's tests, which
// import it from this path (the sandbox is moving out of this module).
use super::timestamp;
use super::{
    ErrorClass, JourneyToken, MessageInfo, Provider, ProviderError, ProviderKind, ProviderSettings,
    QuotaInfo, SendOutcome, SendRequest, TemplateInfo, TokenCheck, TokenRequest,
};

pub struct Etelecom {
    client: reqwest::Client,
    settings: ProviderSettings,
    /// `{base}.Zalo/<Method>` per method, parsed once (not per request).
    urls: Urls,
    /// `Bearer <key>`, built once and marked sensitive so it never shows in
    /// a debug dump; each request shares it (a reference count, no copy).
    auth: HeaderValue,
}

struct Urls {
    create_journey: Endpoint,
    get_journey: Endpoint,
    send: Endpoint,
    get_message: Endpoint,
}

/// CreateJourney's body.
#[derive(Serialize)]
struct TokenBody<'a> {
    oa_id: &'a str,
    phone: &'a str,
    token_type: &'a str,
}

/// GetJourney's body.
#[derive(Serialize)]
struct JourneyBody<'a> {
    journey_id: &'a str,
    oa_id: &'a str,
}

/// GetMessage's body: by our message id, or (sandbox) by tracking id.
#[derive(Serialize)]
struct MessageBody<'a> {
    oa_id: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    msg_id: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    tracking_id: Option<&'a str>,
}

/// SendZNSJourney's body, serialised straight from borrowed fields.
#[derive(Serialize)]
struct SendBody<'a> {
    oa_id: &'a str,
    journey_id: &'a str,
    phone: &'a str,
    template_id: TemplateId<'a>,
    template_data: TemplateData<'a>,
    tracking_id: &'a str,
}

/// Every JSON reply of the API in one struct: a journey (CreateJourney and
/// GetJourney answer alike) or a message (SendZNSJourney and GetMessage).
/// Fields are borrowed from the reply's bytes; only what is kept is copied.
#[derive(Debug, Deserialize, Default)]
struct Reply<'a> {
    #[serde(default, deserialize_with = "lenient::code")]
    error_code: i64,
    #[serde(borrow, default, deserialize_with = "lenient::opt_text")]
    error_message: Option<Cow<'a, str>>,
    #[serde(borrow, default, deserialize_with = "lenient::opt_str")]
    id: Option<Cow<'a, str>>,
    #[serde(borrow, default, deserialize_with = "lenient::opt_str")]
    journey_id: Option<Cow<'a, str>>,
    #[serde(borrow, default, deserialize_with = "lenient::opt_text")]
    journey_token: Option<Cow<'a, str>>,
    // The seed's table says `expires_at`, its example `expired_at`.
    #[serde(
        borrow,
        default,
        alias = "expires_at",
        deserialize_with = "lenient::opt_str"
    )]
    expired_at: Option<Cow<'a, str>>,
    #[serde(borrow, default, deserialize_with = "lenient::opt_text")]
    status: Option<Cow<'a, str>>,
    #[serde(borrow, default, deserialize_with = "lenient::opt_str")]
    msg_id: Option<Cow<'a, str>>,
    #[serde(borrow, default, deserialize_with = "lenient::opt_str")]
    tracking_id: Option<Cow<'a, str>>,
    #[serde(borrow, default, deserialize_with = "lenient::opt_str")]
    delivery_status: Option<Cow<'a, str>>,
    #[serde(borrow, default, deserialize_with = "lenient::opt_str")]
    delivery_time: Option<Cow<'a, str>>,
    #[serde(borrow, default, deserialize_with = "lenient::opt_str")]
    fee_main: Option<Cow<'a, str>>,
    #[serde(borrow, default, deserialize_with = "lenient::opt_str")]
    fee_token: Option<Cow<'a, str>>,
}

impl Reply<'_> {
    /// The delivery details, copied out of the reply.
    fn info(self, msg_id: String) -> MessageInfo {
        MessageInfo {
            msg_id,
            tracking_id: owned(self.tracking_id),
            delivery_status: owned(self.delivery_status),
            delivery_time: owned(self.delivery_time),
            fees: MessageFees {
                fee_main: self.fee_main.and_then(|f| f.parse().ok()),
                fee_token: self.fee_token.and_then(|f| f.parse().ok()),
            },
        }
    }
}

fn owned(field: Option<Cow<'_, str>>) -> Option<String> {
    field.map(Cow::into_owned)
}

/// Twirp's error body; `meta.argument` names the field an
/// `invalid_argument` is about (Twirp's `InvalidArgumentError`).
#[derive(Debug, Deserialize)]
struct TwirpError {
    code: String,
    #[serde(default)]
    msg: String,
    #[serde(default)]
    meta: TwirpMeta,
}

#[derive(Debug, Deserialize, Default)]
struct TwirpMeta {
    #[serde(default, deserialize_with = "lenient::opt_string")]
    argument: Option<String>,
}

/// Validity implied by the token type's suffix (`token_logistics_30` → 30 days).
pub fn token_type_validity(token_type: &str) -> time::Duration {
    let days = token_type
        .rsplit('_')
        .next()
        .and_then(|d| d.parse::<i64>().ok())
        .unwrap_or(7);
    time::Duration::days(days)
}

impl Etelecom {
    pub fn new(client: reqwest::Client, settings: ProviderSettings) -> Self {
        let base = settings.base_url.trim_end_matches('/').to_string();
        let url = |method: &str| Endpoint::new(format!("{base}.Zalo/{method}"));
        let urls = Urls {
            create_journey: url("CreateJourney"),
            get_journey: url("GetJourney"),
            send: url("SendZNSJourney"),
            get_message: url("GetMessage"),
        };
        let mut auth = HeaderValue::from_str(&format!("Bearer {}", settings.api_key.expose()))
            .unwrap_or_else(|_| HeaderValue::from_static("Bearer -"));
        auth.set_sensitive(true);
        Self {
            client,
            settings,
            urls,
            auth,
        }
    }

    async fn call<B: Serialize + ?Sized>(
        &self,
        endpoint: &Endpoint,
        body: &B,
    ) -> Result<RawReply, ProviderError> {
        let url = endpoint.url()?;
        let body = http::encode(body)?;
        let req = self
            .client
            .post(url)
            .header(ACCEPT, JSON)
            .header(CONTENT_TYPE, JSON)
            .header(AUTHORIZATION, self.auth.clone())
            .body(body);
        let reply = http::execute(req).await?;
        if reply.status.is_success() {
            Ok(reply)
        } else {
            Err(self.error_reply(&reply))
        }
    }

    /// A non-2xx reply: an `error_code` in the body is classified by the
    /// table, a Twirp `{code,msg}` by its code, anything else by status.
    fn error_reply(&self, reply: &RawReply) -> ProviderError {
        if matches!(reply.status.as_u16(), 401 | 403) {
            return http::status_error(reply);
        }
        if let Ok(body) = serde_json::from_slice::<Reply>(&reply.body) {
            if let Some(err) = self.reply_error(&body) {
                return err;
            }
        }
        if let Ok(tw) = serde_json::from_slice::<TwirpError>(&reply.body) {
            let class = match tw.code.as_str() {
                "unauthenticated" | "permission_denied" => Some(ErrorClass::AbortAuth),
                "resource_exhausted" | "unavailable" | "deadline_exceeded" => {
                    Some(ErrorClass::Retry)
                }
                // A refused template id or OA id would be refused for every
                // row alike: stop the campaign instead of failing each row
                // (after buying each one a token).
                "invalid_argument" | "malformed" | "out_of_range" | "failed_precondition"
                    if tw
                        .meta
                        .argument
                        .as_deref()
                        .is_some_and(names_campaign_field)
                        || names_campaign_field(&tw.msg) =>
                {
                    Some(ErrorClass::AbortConfig)
                }
                "invalid_argument" | "malformed" | "out_of_range" | "failed_precondition" => {
                    Some(ErrorClass::FailRow)
                }
                _ => None,
            };
            if let Some(class) = class {
                let mut err = http::status_error(reply);
                err.class = class;
                err.message = format!("{} ({}): {}", reply.status, tw.code, tw.msg);
                return err;
            }
        }
        http::status_error(reply)
    }

    /// A reply's non-zero `error_code`, classified by the table.
    fn reply_error(&self, r: &Reply<'_>) -> Option<ProviderError> {
        (r.error_code != 0).then(|| {
            self.settings
                .code_error(&r.error_code.to_string(), r.error_message.as_deref())
        })
    }
}

/// The calls themselves. They answer [`Unchecked`], which only
/// [`ProviderSettings::redacting`] turns into a `ProviderError`: no error a
/// reply provokes can carry the key onward (into logs or the state database).
impl Etelecom {
    async fn create_token_inner(&self, req: &TokenRequest<'_>) -> Unchecked<JourneyToken> {
        let body = TokenBody {
            oa_id: req.oa_id,
            phone: req.phone,
            token_type: req.token_type,
        };
        let reply = self.call(&self.urls.create_journey, &body).await?;
        let j: Reply = http::decode(&reply)?;
        if let Some(mut err) = self.reply_error(&j) {
            // "Check the token" means nothing while buying one.
            if err.class == ErrorClass::CheckToken {
                err.class = ErrorClass::FailRow;
            }
            return Err(err.into());
        }
        let journey_id = j
            .journey_id
            .as_deref()
            .or(j.id.as_deref())
            .map(str::to_string)
            .ok_or_else(|| {
                ProviderError::new(
                    ErrorClass::Retry,
                    "decode",
                    "CreateJourney reply has no journey id",
                )
                .in_doubt(true)
            })?;
        let expires_at = j
            .expired_at
            .as_deref()
            .and_then(parse_time)
            .unwrap_or_else(|| OffsetDateTime::now_utc() + token_type_validity(req.token_type));
        Ok(JourneyToken {
            provider_ref: owned(j.id.filter(|id| *id != journey_id)),
            journey_id,
            token: owned(j.journey_token),
            expires_at,
            status: owned(j.status),
        })
    }

    async fn check_token_inner(&self, oa_id: &str, token: &JourneyToken) -> Unchecked<TokenCheck> {
        let body = JourneyBody {
            journey_id: &token.journey_id,
            oa_id,
        };
        let reply = match self.call(&self.urls.get_journey, &body).await {
            Ok(reply) => reply,
            Err(e) if e.class == ErrorClass::FailRow => return Ok(TokenCheck::NotFound),
            Err(e) => return Err(e.into()),
        };
        let j: Reply = http::decode(&reply)?;
        if let Some(err) = self.reply_error(&j) {
            return match err.class {
                ErrorClass::Retry | ErrorClass::AbortAuth | ErrorClass::AbortConfig => {
                    Err(err.into())
                }
                _ => Ok(TokenCheck::NotFound),
            };
        }
        if j.status.as_deref() == Some("N") {
            return Ok(TokenCheck::Disabled);
        }
        Ok(timestamp::token_check(
            j.expired_at.as_deref(),
            token.expires_at,
        ))
    }

    async fn send_inner(&self, req: &SendRequest<'_>) -> Unchecked<SendOutcome> {
        let token = req.journey_token()?;
        let body = SendBody {
            oa_id: req.oa_id,
            journey_id: &token.journey_id,
            phone: req.phone,
            template_id: TemplateId::of(req.template_id),
            template_data: TemplateData(req.template_data),
            tracking_id: req.tracking_id,
        };
        let reply = self.call(&self.urls.send, &body).await?;
        let m: Reply = http::decode(&reply)?;
        if let Some(err) = self.reply_error(&m) {
            return Err(err.into());
        }
        Ok(SendOutcome {
            msg_id: owned(m.msg_id),
            provider_ref: owned(m.id),
            quota: None,
            duplicate: false,
        })
    }

    /// Sandbox only: GetMessage by tracking_id; "message id invalid" means
    /// no message was created under it.
    async fn find_by_tracking_id_inner(
        &self,
        oa_id: &str,
        tracking_id: &str,
    ) -> Unchecked<Option<MessageInfo>> {
        let body = MessageBody {
            oa_id,
            msg_id: None,
            tracking_id: Some(tracking_id),
        };
        let reply = self.call(&self.urls.get_message, &body).await?;
        let m: Reply = http::decode(&reply)?;
        if m.error_code == -107 {
            return Ok(None);
        }
        if let Some(err) = self.reply_error(&m) {
            // A lookup that fails says nothing about the row: it stays in doubt.
            return Err(err.into());
        }
        match (&m.msg_id, &m.tracking_id) {
            (Some(msg_id), Some(t)) if t == tracking_id => {
                let msg_id = msg_id.to_string();
                Ok(Some(m.info(msg_id)))
            }
            _ => Err(ProviderError::new(
                ErrorClass::Retry,
                "decode",
                "GetMessage by tracking_id answered another message",
            )
            .into()),
        }
    }

    async fn get_message_inner(&self, oa_id: &str, msg_id: &str) -> Unchecked<MessageInfo> {
        let body = MessageBody {
            oa_id,
            msg_id: Some(msg_id),
            tracking_id: None,
        };
        let reply = self.call(&self.urls.get_message, &body).await?;
        let m: Reply = http::decode(&reply)?;
        if let Some(err) = self.reply_error(&m) {
            return Err(err.into());
        }
        let msg_id = m.msg_id.as_deref().unwrap_or(msg_id).to_string();
        Ok(m.info(msg_id))
    }
}

#[async_trait]
impl Provider for Etelecom {
    fn kind(&self) -> ProviderKind {
        self.settings.kind
    }

    async fn create_token(&self, req: &TokenRequest<'_>) -> Result<JourneyToken, ProviderError> {
        self.settings.redacting(self.create_token_inner(req)).await
    }

    async fn check_token(
        &self,
        oa_id: &str,
        token: &JourneyToken,
    ) -> Result<TokenCheck, ProviderError> {
        self.settings
            .redacting(self.check_token_inner(oa_id, token))
            .await
    }

    async fn send(&self, req: &SendRequest<'_>) -> Result<SendOutcome, ProviderError> {
        self.settings.redacting(self.send_inner(req)).await
    }

    async fn get_message(&self, oa_id: &str, msg_id: &str) -> Result<MessageInfo, ProviderError> {
        self.settings
            .redacting(self.get_message_inner(oa_id, msg_id))
            .await
    }

    async fn find_by_tracking_id(
        &self,
        oa_id: &str,
        tracking_id: &str,
    ) -> Result<Option<MessageInfo>, ProviderError> {
        if !self.capabilities().lookup_by_tracking_id {
            return Ok(None);
        }
        self.settings
            .redacting(self.find_by_tracking_id_inner(oa_id, tracking_id))
            .await
    }

    /// eTelecom documents no template info: the config's `[templates.<id>]`
    /// stands in for it.
    async fn template_info(
        &self,
        _oa_id: &str,
        _template_id: &str,
    ) -> Result<Option<TemplateInfo>, ProviderError> {
        Ok(None)
    }

    /// eTelecom documents no quota query for an OA's daily ZNS quota.
    async fn quota(&self, _oa_id: &str) -> Result<Option<QuotaInfo>, ProviderError> {
        Ok(None)
    }
}

#[cfg(test)]
mod tests;
