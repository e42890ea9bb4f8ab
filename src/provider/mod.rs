//! One trait for every provider; the runner never sees protocol details.
//!
//! Each adapter turns its wire format into the same few outcomes: a token, a
//! send outcome, or a [`ProviderError`] carrying an [`ErrorClass`] that tells
//! the runner what to do next.

pub mod codes;
pub mod esms;
pub mod etelecom;
pub mod http;
pub mod zalo;

use std::time::Duration;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

pub use codes::{ErrorClass, ErrorTable};

/// Which provider protocol a campaign speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
pub enum ProviderKind {
    /// Embedded sandbox speaking the eTelecom protocol (no network, no key).
    Sandbox,
    /// eTelecom Zalo Cloud API (`{base}.Zalo/<Method>`).
    Etelecom,
    /// Zalo's own ZNS API (business.openapi.zalo.me).
    Zalo,
    /// eSMS SendZaloMessage_V4 with IsJourney.
    Esms,
}

impl ProviderKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ProviderKind::Sandbox => "sandbox",
            ProviderKind::Etelecom => "etelecom",
            ProviderKind::Zalo => "zalo",
            ProviderKind::Esms => "esms",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "sandbox" => Some(Self::Sandbox),
            "etelecom" => Some(Self::Etelecom),
            "zalo" => Some(Self::Zalo),
            "esms" => Some(Self::Esms),
            _ => None,
        }
    }

    /// The wire protocol: the sandbox speaks eTelecom's.
    pub fn protocol(self) -> ProviderKind {
        match self {
            ProviderKind::Sandbox => ProviderKind::Etelecom,
            other => other,
        }
    }

    /// The provider's real endpoint, used when no `--base-url` is given.
    pub fn default_base_url(self) -> Option<&'static str> {
        match self {
            ProviderKind::Sandbox => None,
            // eTelecom has distinct Shop and Partner bases; the shop one is the common case.
            ProviderKind::Etelecom => Some("https://api.etelecom.vn/v1/shop"),
            ProviderKind::Zalo => Some("https://business.openapi.zalo.me"),
            ProviderKind::Esms => Some("https://rest.esms.vn/MainService.svc/json"),
        }
    }
}

impl std::fmt::Display for ProviderKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A provider answer that is not a success, already classified.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{message} (code {code})")]
pub struct ProviderError {
    pub class: ErrorClass,
    /// The provider's code as text: `-118`, `124`, `http_503`, `timeout`, `connect`, `decode`.
    pub code: String,
    pub message: String,
    /// From a 429's `Retry-After`, when given.
    pub retry_after: Option<Duration>,
    /// The request may have reached the provider and been acted on (reply
    /// lost, timed out after sending, garbled success). Only such errors make
    /// a row *in doubt*; the others prove nothing was sent.
    pub in_doubt: bool,
}

impl ProviderError {
    pub fn new(class: ErrorClass, code: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            class,
            code: code.into(),
            message: message.into(),
            retry_after: None,
            in_doubt: false,
        }
    }

    pub fn in_doubt(mut self, in_doubt: bool) -> Self {
        self.in_doubt = in_doubt;
        self
    }

    pub fn with_retry_after(mut self, retry_after: Option<Duration>) -> Self {
        self.retry_after = retry_after;
        self
    }
}

/// A journey token as the runner stores and reuses it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JourneyToken {
    /// The id a send names the journey by (eTelecom/Zalo `journey_id`).
    pub journey_id: String,
    /// eTelecom's own numeric `id` for the journey, when it differs.
    pub provider_ref: Option<String>,
    /// The token itself (Zalo sends it as the `journey_token` header).
    pub token: Option<String>,
    pub expires_at: OffsetDateTime,
    /// eTelecom status letter: Z new, P enabled, N disabled.
    pub status: Option<String>,
}

/// What `check_token` found out about a stored token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TokenCheck {
    Valid { expires_at: OffsetDateTime },
    Expired,
    Disabled,
    NotFound,
}

/// Daily quota figures as a provider reports them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QuotaInfo {
    pub remaining: u64,
    pub daily: u64,
}

pub struct TokenRequest<'a> {
    pub oa_id: &'a str,
    pub phone: &'a str,
    pub token_type: &'a str,
}

pub struct SendRequest<'a> {
    pub oa_id: &'a str,
    pub phone: &'a str,
    pub template_id: &'a str,
    /// Template parameters in CSV column order (eSMS needs the order).
    pub template_data: &'a [(&'a str, &'a str)],
    /// Our idempotency key: eTelecom/Zalo `tracking_id`, eSMS `RequestId`.
    pub tracking_id: &'a str,
    /// `None` only for providers without a token step.
    pub token: Option<&'a JourneyToken>,
    /// Campaign name, for providers that accept one (eSMS `campaignid`).
    pub campaign: &'a str,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SendOutcome {
    /// The provider's message id (eTelecom/Zalo `msg_id`, eSMS `SMSID`).
    pub msg_id: Option<String>,
    /// eTelecom's own numeric message `id`.
    pub provider_ref: Option<String>,
    pub quota: Option<QuotaInfo>,
    /// The provider said it had this idempotency key already (eSMS 124).
    pub duplicate: bool,
}

/// Delivery details for a sent message (GetMessage).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MessageInfo {
    pub msg_id: String,
    pub tracking_id: Option<String>,
    pub delivery_status: Option<String>,
    pub delivery_time: Option<String>,
    pub fee_main: Option<i64>,
    pub fee_token: Option<i64>,
}

/// How far a provider can be trusted with a repeated idempotency key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Dedup {
    /// The provider documents de-duplication (eSMS `RequestId`, code 124).
    Documented,
    /// The key is echoed for reconciliation; de-duplication is our inference.
    Inferred,
}

#[derive(Debug, Clone, Copy)]
pub struct Capabilities {
    /// The provider needs a journey token before a send.
    pub tokens: bool,
    pub dedup: Dedup,
    /// A lost reply can be looked up by our idempotency key.
    pub lookup_by_tracking_id: bool,
    /// `Some(why)` when the provider offers no message lookup by its id
    /// ([`Provider::get_message`]), so delivery cannot be reconciled.
    pub no_message_lookup: Option<&'static str>,
}

#[async_trait]
pub trait Provider: Send + Sync {
    fn kind(&self) -> ProviderKind;
    fn capabilities(&self) -> Capabilities;

    /// Buy a journey token (charged by the provider).
    async fn create_token(&self, req: &TokenRequest<'_>) -> Result<JourneyToken, ProviderError>;

    /// Ask the provider whether a stored token is still usable.
    async fn check_token(
        &self,
        oa_id: &str,
        token: &JourneyToken,
    ) -> Result<TokenCheck, ProviderError>;

    async fn send(&self, req: &SendRequest<'_>) -> Result<SendOutcome, ProviderError>;

    /// Look a message up by its provider id (delivery reconcile).
    async fn get_message(&self, oa_id: &str, msg_id: &str) -> Result<MessageInfo, ProviderError>;

    /// Find a message by our idempotency key after a lost reply. `Ok(None)`
    /// means "looked, not there". Only called when
    /// [`Capabilities::lookup_by_tracking_id`] is true.
    async fn find_by_tracking_id(
        &self,
        _oa_id: &str,
        _tracking_id: &str,
    ) -> Result<Option<MessageInfo>, ProviderError> {
        Ok(None)
    }
}

/// Everything needed to build an adapter.
#[derive(Clone)]
pub struct ProviderSettings {
    pub kind: ProviderKind,
    pub base_url: String,
    /// eTelecom API key, Zalo OA access token, eSMS ApiKey.
    pub api_key: Secret,
    /// eSMS SecretKey.
    pub secret_key: Option<Secret>,
    pub request_timeout: Duration,
    pub codes: ErrorTable,
    /// eSMS `Sandbox` flag: validate only, nothing sent or charged.
    pub esms_sandbox: bool,
    /// eSMS `CallbackUrl`.
    pub callback_url: Option<String>,
}

impl ProviderSettings {
    /// Blank the key and secret out of an error: a provider may quote them
    /// back (an error message, a body excerpt), and errors reach logs and
    /// the state database.
    pub fn redact(&self, err: ProviderError) -> ProviderError {
        match &self.secret_key {
            Some(secret) => http::redact(err, &[&self.api_key, secret]),
            None => http::redact(err, &[&self.api_key]),
        }
    }
}

/// A secret string whose Debug/Display never shows the value.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }
    pub fn expose(&self) -> &str {
        &self.0
    }
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(***)")
    }
}

/// Build the adapter for `settings.kind` (the sandbox uses the eTelecom one).
pub fn build(settings: ProviderSettings) -> anyhow::Result<std::sync::Arc<dyn Provider>> {
    let client = http::client(settings.request_timeout)?;
    Ok(match settings.kind.protocol() {
        ProviderKind::Etelecom | ProviderKind::Sandbox => {
            std::sync::Arc::new(etelecom::Etelecom::new(client, settings))
        }
        ProviderKind::Zalo => std::sync::Arc::new(zalo::Zalo::new(client, settings)),
        ProviderKind::Esms => std::sync::Arc::new(esms::Esms::new(client, settings)),
    })
}
