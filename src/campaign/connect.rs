//! The provider a run talks to, built from the resolved settings; an
//! embedded sandbox is started here and lives as long as the connection.

use std::sync::Arc;

use anyhow::Context;

use super::settings::{Endpoint, RunSettings};
use super::{CoreError, Workspace};
use crate::provider::{self, ProviderKind, ProviderSettings, Secret};
use crate::sandbox::{Sandbox, SandboxConfig};

pub struct Connection {
    pub provider: Arc<dyn provider::Provider>,
    /// What the summary calls the provider (never a key).
    pub label: String,
    _sandbox: Option<Sandbox>,
    /// The embedded sandbox posts delivery callbacks.
    reports_delivery: bool,
}

impl Connection {
    /// An embedded sandbox that reports delivery posts its callbacks about a
    /// second after each send: let the last ones go out (until none has
    /// been answered or given up for a while, bounded) before it stops with
    /// the run.
    pub async fn settle_callbacks(&self) {
        let Some(sb) = self._sandbox.as_ref().filter(|_| self.reports_delivery) else {
            return;
        };
        let done = || {
            let s = sb.stats_summary();
            s.callbacks_acknowledged + s.callbacks_given_up
        };
        let started = std::time::Instant::now();
        let (mut last, mut quiet_since) = (done(), std::time::Instant::now());
        while started.elapsed() < SETTLE_AT_MOST && quiet_since.elapsed() < SETTLE_QUIET {
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            let now = done();
            if now != last {
                (last, quiet_since) = (now, std::time::Instant::now());
            }
        }
    }
}

/// Longer than the sandbox's simulated delivery delay (1 s).
const SETTLE_QUIET: std::time::Duration = std::time::Duration::from_millis(2500);
const SETTLE_AT_MOST: std::time::Duration = std::time::Duration::from_secs(20);

pub async fn connect(settings: &RunSettings, ws: &Workspace) -> Result<Connection, CoreError> {
    let p = &settings.provider;
    let kind = p.kind;
    let mut access_tokens: Option<std::sync::Arc<dyn provider::zalo_oauth::AccessTokens>> = None;
    let (base_url, api_key, secret, sandbox, label) = match &p.endpoint {
        Endpoint::Embedded => {
            // A real server on loopback, keys made up per run.
            let key = format!("embedded-{}", hex::encode(rand::random::<[u8; 12]>()));
            let secret = format!("embedded-{}", hex::encode(rand::random::<[u8; 12]>()));
            let addr = std::net::SocketAddr::from(([127, 0, 0, 1], 0));
            let mut config = SandboxConfig {
                protocol: kind,
                api_key: key.clone(),
                secret_key: secret.clone(),
                // Unknown template ids are refused as a provider would, so
                // a newcomer can see that refusal (the env var widens it).
                known_templates: crate::sandbox::known_templates_from(
                    std::env::var(crate::sandbox::KNOWN_TEMPLATES_ENV)
                        .ok()
                        .as_deref(),
                ),
                ..SandboxConfig::default()
            };
            // With somewhere to report to, the embedded sandbox reports
            // delivery as the real provider would (Zalo: signed as configured).
            let d = &p.callbacks;
            config.callback_url = d.url.as_ref().map(|u| u.expose().to_string());
            if let Some(app_id) = &d.zalo_app_id {
                config.zalo_app_id = app_id.clone();
            }
            if let Some(s) = &d.zalo_oa_secret {
                config.zalo_oa_secret = s.expose().to_string();
            }
            let sb = Sandbox::start(addr, config)
                .await
                .context("cannot start the embedded sandbox on 127.0.0.1")?;
            let label = match kind {
                ProviderKind::Sandbox => "sandbox (embedded, no network)".to_string(),
                _ => format!("{kind} protocol on the embedded sandbox (no network)"),
            };
            (
                sb.base_url(),
                Secret::new(key),
                Some(Secret::new(secret)),
                Some(sb),
                label,
            )
        }
        Endpoint::Url(url) if kind.protocol() == ProviderKind::Zalo && p.api_key.is_none() => {
            // No key given: the OA's stored pair, renewed as needed.
            let Some(source) = ws.stored_access()? else {
                return Err(super::refused(
                    "zalo.not_connected",
                    std::iter::empty::<(&str, &str)>(),
                    "--provider zalo needs the OA's access token: connect the OA once with `zns-batch zalo connect` \
                     (then tokens renew themselves), or pass --api-key / ZNS_API_KEY",
                ));
            };
            access_tokens = Some(std::sync::Arc::new(source));
            (
                url.clone(),
                Secret::default(),
                p.secret_key.clone(),
                None,
                format!("{kind} ({url}, OA connected)"),
            )
        }
        Endpoint::Url(url) => {
            let key = settings.require_key()?;
            (
                url.clone(),
                key,
                p.secret_key.clone(),
                None,
                format!("{kind} ({url})"),
            )
        }
    };
    let provider_settings = ProviderSettings::new(kind, base_url, api_key)
        .with_secret_key(secret)
        .with_timeout(p.request_timeout)
        .with_codes(p.codes.clone())
        .with_pool_size(settings.run.concurrency)
        .with_access_tokens(access_tokens)
        // Only eSMS takes a callback URL per send; the others register a webhook once.
        .with_callback_url(
            (kind == ProviderKind::Esms)
                .then(|| p.callbacks.url.clone())
                .flatten(),
        );
    let provider = provider::build(provider_settings).map_err(CoreError::Fatal)?;
    Ok(Connection {
        provider,
        label,
        _sandbox: sandbox,
        reports_delivery: p.callbacks.url.is_some(),
    })
}
