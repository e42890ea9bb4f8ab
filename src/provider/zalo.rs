//! Zalo adapter (stub, being written).

use async_trait::async_trait;

use super::{
    Capabilities, Dedup, ErrorClass, JourneyToken, MessageInfo, Provider, ProviderError,
    ProviderKind, ProviderSettings, SendOutcome, SendRequest, TokenCheck, TokenRequest,
};

pub struct Zalo {
    #[allow(dead_code)]
    client: reqwest::Client,
    #[allow(dead_code)]
    settings: ProviderSettings,
}

impl Zalo {
    pub fn new(client: reqwest::Client, settings: ProviderSettings) -> Self {
        Self { client, settings }
    }
}

fn unsupported() -> ProviderError {
    ProviderError::new(
        ErrorClass::AbortConfig,
        "unsupported",
        "provider not implemented yet",
    )
}

#[async_trait]
impl Provider for Zalo {
    fn kind(&self) -> ProviderKind {
        ProviderKind::Zalo
    }
    fn capabilities(&self) -> Capabilities {
        Capabilities {
            tokens: true,
            dedup: Dedup::Inferred,
            lookup_by_tracking_id: false,
        }
    }
    async fn create_token(&self, _req: &TokenRequest<'_>) -> Result<JourneyToken, ProviderError> {
        Err(unsupported())
    }
    async fn check_token(&self, _oa: &str, _t: &JourneyToken) -> Result<TokenCheck, ProviderError> {
        Err(unsupported())
    }
    async fn send(&self, _req: &SendRequest<'_>) -> Result<SendOutcome, ProviderError> {
        Err(unsupported())
    }
    async fn get_message(&self, _oa: &str, _m: &str) -> Result<MessageInfo, ProviderError> {
        Err(unsupported())
    }
}
