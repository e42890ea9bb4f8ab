//! One trait for every provider; the runner never sees protocol details.
//!
//! Each adapter turns its wire format into the same few outcomes: a token, a
//! send outcome, or a [`ProviderError`] carrying an [`ErrorClass`] that tells
//! the runner what to do next.

pub mod codes;
pub mod common;
pub mod esms;
pub mod etelecom;
pub mod http;
pub mod kind;
pub mod template;
pub mod timestamp;
pub mod zalo;
pub mod zalo_oauth;

use std::time::Duration;

use async_trait::async_trait;
use time::OffsetDateTime;

use crate::model::fees::MessageFees;

pub use codes::{ErrorClass, ErrorTable};
pub use kind::{Capabilities, Dedup, ProviderKind};
pub use template::{TemplateInfo, TemplateParam};

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

impl<'a> SendRequest<'a> {
    /// The journey token a Zalo-style send needs; without one the runner
    /// buys one first (RefreshToken).
    pub fn journey_token(&self) -> Result<&'a JourneyToken, ProviderError> {
        self.token.ok_or_else(|| {
            ProviderError::new(
                ErrorClass::RefreshToken,
                "no_token",
                "send without a journey token",
            )
        })
    }
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
    pub fees: MessageFees,
}

#[async_trait]
pub trait Provider: Send + Sync {
    fn kind(&self) -> ProviderKind;

    /// Always `self.kind().capabilities()`: they depend on the kind alone.
    fn capabilities(&self) -> Capabilities {
        self.kind().capabilities()
    }

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

    /// The template's status and parameters (issue 14 pre-flight). `Ok(None)`:
    /// this provider offers no template info (eTelecom); see
    /// [`Capabilities::template_info`]. An unknown template is `AbortConfig`.
    /// `oa_id`: eSMS asks per OA; Zalo reads the OA from its access token.
    async fn template_info(
        &self,
        oa_id: &str,
        template_id: &str,
    ) -> Result<Option<TemplateInfo>, ProviderError>;

    /// The OA's daily and remaining ZNS quota. `Ok(None)`: this provider
    /// offers no quota query (eTelecom); see [`Capabilities::quota_query`].
    async fn quota(&self, oa_id: &str) -> Result<Option<QuotaInfo>, ProviderError>;
}

/// Everything needed to build an adapter. Build it with
/// [`ProviderSettings::new`] and the `with_*` setters.
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
    /// eSMS `CallbackUrl`: where eSMS reports delivery (issue 12 fills it).
    pub callback_url: Option<Secret>,
    /// Idle keep-alive connections kept: the run's concurrency, so that
    /// every request in flight reuses one instead of connecting.
    pub pool_size: usize,
    /// Zalo without an API key: the OA's stored, self-renewing token pair.
    pub access_tokens: Option<std::sync::Arc<dyn zalo_oauth::AccessTokens>>,
}

impl ProviderSettings {
    /// The default per-request timeout, as the CLI's.
    pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);

    /// No secret key, the built-in error table, no callback URL, a 30 s
    /// timeout, a pool of [`http::DEFAULT_POOL`] connections.
    pub fn new(kind: ProviderKind, base_url: impl Into<String>, api_key: Secret) -> Self {
        Self {
            kind,
            base_url: base_url.into(),
            api_key,
            secret_key: None,
            request_timeout: Self::DEFAULT_TIMEOUT,
            codes: ErrorTable::default(),
            callback_url: None,
            pool_size: http::DEFAULT_POOL,
            access_tokens: None,
        }
    }

    pub fn with_secret_key(mut self, secret_key: Option<Secret>) -> Self {
        self.secret_key = secret_key;
        self
    }

    pub fn with_timeout(mut self, request_timeout: Duration) -> Self {
        self.request_timeout = request_timeout;
        self
    }

    pub fn with_codes(mut self, codes: ErrorTable) -> Self {
        self.codes = codes;
        self
    }

    pub fn with_callback_url(mut self, callback_url: Option<Secret>) -> Self {
        self.callback_url = callback_url;
        self
    }

    pub fn with_access_tokens(
        mut self,
        tokens: Option<std::sync::Arc<dyn zalo_oauth::AccessTokens>>,
    ) -> Self {
        self.access_tokens = tokens;
        self
    }

    /// Size the connection pool to the run's concurrency.
    pub fn with_pool_size(mut self, pool_size: usize) -> Self {
        self.pool_size = pool_size;
        self
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
    let client = http::pooled_client(settings.request_timeout, settings.pool_size)?;
    Ok(match settings.kind.protocol() {
        ProviderKind::Etelecom | ProviderKind::Sandbox => {
            std::sync::Arc::new(etelecom::Etelecom::new(client, settings))
        }
        ProviderKind::Zalo => std::sync::Arc::new(zalo::Zalo::new(client, settings)),
        ProviderKind::Esms => std::sync::Arc::new(esms::Esms::new(client, settings)),
    })
}
