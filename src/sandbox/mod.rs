//! Sandbox provider server: a real HTTP server on loopback that speaks the
//! eTelecom, Zalo or eSMS protocol, with a daily quota, latency and
//! injectable faults, and a stats endpoint.
//!
//! The runner's tests and the benchmark drive the real adapters against it,
//! and `zns-batch run` without an API key starts one in-process. It keeps
//! every message in memory, so what a client did (double token buys,
//! duplicate sends, quota overruns) shows in [`Stats`] afterwards.
//!
//! It also serves template info and the quota query where the provider has
//! them, enforces declared templates' parameter limits on send
//! ([`SandboxConfig::templates`]), and posts delivery callbacks in each
//! provider's shape ([`SandboxConfig::callback_url`]).
//!
//! Layout: `state` (memory), `ids` (how ids and times look), `fate` (what
//! becomes of a message), `server` (HTTP, faults, control), `wire/*` (one
//! protocol each), `templates`, `callbacks` (built and queued) and
//! `callback_sender` (sent). The standalone `zns-batch sandbox` command
//! (flags, banner) is in `cli::sandbox`.
//!
//! Clocks: the sandbox day and token expiry follow a sandbox clock that
//! [`Sandbox::advance_day`] moves forward; timestamps in replies are given on
//! the real clock (sandbox clock minus the advance), so a client comparing a
//! token's `expired_at` with its own clock agrees with the sandbox.

mod callback_sender;
mod callbacks;
mod fate;
mod faults;
mod ids;
mod oauth;
mod server;
mod state;
mod templates;
mod wire;

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rand::rngs::StdRng;
use rand::SeedableRng;
use serde::{Deserialize, Serialize};
use tokio::sync::watch;
use tokio::task::JoinHandle;

pub use crate::provider::ProviderKind;
pub use callbacks::{check_url as check_callback_url, zalo_signature, CallbackSettings};
pub use faults::Faults;
pub use oauth::OAuthFaults;
pub use templates::{ParamKind, ParamViolation, TemplateParam, TemplateSpec, TemplateStatus};

use callbacks::CallbackQueue;
use server::{bind, serve};
use state::{Inner, Shared};

/// The sandbox's keys unless told otherwise: public test values.
pub const DEFAULT_API_KEY: &str = "sandbox-key";
pub const DEFAULT_SECRET_KEY: &str = "sandbox-secret";

/// The app id Zalo callbacks carry unless configured.
pub const DEFAULT_ZALO_APP_ID: &str = "4349311699477619340";
/// The OA secret Zalo callbacks are signed with unless configured: a public
/// test value, like the default API key.
pub const DEFAULT_ZALO_OA_SECRET: &str = "sandbox-oa-secret";
/// The Zalo app secret the OAuth endpoint expects unless configured.
pub const DEFAULT_ZALO_APP_SECRET: &str = "sandbox-app-secret";
/// Zalo's OA access tokens live about 25 hours.
pub const DEFAULT_ACCESS_TOKEN_TTL: Duration = Duration::from_secs(25 * 3600);

/// How long `stop()` lets in-flight requests finish before aborting.
const STOP_GRACE: Duration = Duration::from_millis(200);

#[derive(Clone)]
pub struct SandboxConfig {
    /// Wire protocol; `Sandbox` speaks eTelecom's.
    pub protocol: ProviderKind,
    /// eTelecom bearer key, Zalo access_token, eSMS ApiKey.
    pub api_key: String,
    /// eSMS SecretKey (ignored by the others).
    pub secret_key: String,
    /// New messages accepted per OA per sandbox day; 0 = unlimited.
    pub daily_quota: u64,
    /// Added to every API request.
    pub latency: Duration,
    pub faults: Faults,
    /// None: from the token_type suffix (`token_logistics_30` → 30 days; Zalo 7 days).
    pub token_ttl: Option<Duration>,
    /// Phones ending with one of these are "not on Zalo".
    pub unknown_phone_suffixes: Vec<String>,
    /// A repeated tracking_id (eSMS RequestId) answers with the original message.
    pub dedup: bool,
    pub seed: u64,
    /// Declared templates by id: served by template info, enforced on send.
    /// An undeclared id is accepted without limits.
    pub templates: HashMap<String, TemplateSpec>,
    /// Where delivery callbacks go (eSMS: unless the send gave a
    /// `CallbackUrl`); None: no callbacks.
    pub callback_url: Option<String>,
    pub callbacks: CallbackSettings,
    /// Zalo callbacks: `app_id` and the OA secret key they are signed with.
    pub zalo_app_id: String,
    pub zalo_oa_secret: String,
    /// Zalo OAuth: the app secret (`secret_key` header), the access
    /// tokens' life, and the refresh faults.
    pub zalo_app_secret: String,
    pub access_token_ttl: Duration,
    pub oauth_faults: OAuthFaults,
}

impl Default for SandboxConfig {
    fn default() -> Self {
        Self {
            protocol: ProviderKind::Etelecom,
            api_key: DEFAULT_API_KEY.to_string(),
            secret_key: DEFAULT_SECRET_KEY.to_string(),
            daily_quota: 0,
            latency: Duration::ZERO,
            faults: Faults::default(),
            token_ttl: None,
            unknown_phone_suffixes: Vec::new(),
            dedup: true,
            seed: 1,
            templates: HashMap::new(),
            callback_url: None,
            callbacks: CallbackSettings::default(),
            zalo_app_id: DEFAULT_ZALO_APP_ID.to_string(),
            zalo_oa_secret: DEFAULT_ZALO_OA_SECRET.to_string(),
            zalo_app_secret: DEFAULT_ZALO_APP_SECRET.to_string(),
            access_token_ttl: DEFAULT_ACCESS_TOKEN_TTL,
            oauth_faults: OAuthFaults::default(),
        }
    }
}

// Hand-written so the keys never reach a log line.
impl std::fmt::Debug for SandboxConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SandboxConfig")
            .field("protocol", &self.protocol)
            .field("api_key", &"***")
            .field("secret_key", &"***")
            .field("daily_quota", &self.daily_quota)
            .field("latency", &self.latency)
            .field("faults", &self.faults)
            .field("token_ttl", &self.token_ttl)
            .field("unknown_phone_suffixes", &self.unknown_phone_suffixes)
            .field("dedup", &self.dedup)
            .field("seed", &self.seed)
            .field("templates", &self.templates)
            // The URL may carry a webhook token in its path.
            .field("callback_url", &self.callback_url.as_ref().map(|_| "***"))
            .field("callbacks", &self.callbacks)
            .field("zalo_app_id", &self.zalo_app_id)
            .field("zalo_oa_secret", &"***")
            .field("zalo_app_secret", &"***")
            .field("access_token_ttl", &self.access_token_ttl)
            .field("oauth_faults", &self.oauth_faults)
            .finish()
    }
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
// Fields added later read as zero from an older sandbox's stats.
#[serde(default)]
pub struct Stats {
    pub tokens_created: u64,
    pub tokens_created_per_phone: BTreeMap<String, u64>,
    pub token_checks: u64,
    /// Every send request that reached the handler, faulted ones included.
    pub send_requests: u64,
    /// Send requests that passed auth and request validation.
    pub send_requests_per_tracking_id: BTreeMap<String, u64>,
    /// New messages created per tracking_id (≤ 1 with dedup on).
    pub deliveries: BTreeMap<String, u64>,
    /// New messages created (= sum of `deliveries`).
    pub accepted: u64,
    /// Repeated tracking_ids answered from the dedup table.
    pub duplicates_absorbed: u64,
    pub quota_rejections: u64,
    /// Sends refused by a declared template (parameters or its status).
    pub param_rejections: u64,
    pub quota_used_today: u64,
    pub get_message_calls: u64,
    pub auth_failures: u64,
    /// "5xx", "429", "drop", "timeout", "malformed", "slow".
    pub faults_injected: BTreeMap<String, u64>,
    /// Callback requests made (retries included).
    pub callbacks_sent: u64,
    /// Callbacks answered 2xx.
    pub callbacks_acknowledged: u64,
    /// Callbacks still unanswered after every attempt.
    pub callbacks_given_up: u64,
    /// Sandbox day, YYYY-MM-DD in Asia/Ho_Chi_Minh.
    pub day: String,
    /// Zalo OAuth: codes handed out and exchanged, refreshes done, refresh
    /// tokens presented again after their use (refused), all refusals,
    /// refresh replies broken off by the fault.
    pub oauth_codes_issued: u64,
    pub oauth_codes_exchanged: u64,
    pub oauth_refreshes: u64,
    /// Refresh requests received (counted on arrival, before any delay).
    pub oauth_refresh_requests: u64,
    pub oauth_refresh_reuses: u64,
    pub oauth_refused: u64,
    pub oauth_replies_lost: u64,
}

/// Cheap, cloneable control over a running sandbox.
#[derive(Clone)]
pub struct SandboxHandle(Arc<Shared>);

impl SandboxHandle {
    pub fn stats(&self) -> Stats {
        self.0.lock().snapshot(true)
    }

    /// Stats without the per-key maps (cheap after a million sends).
    pub fn stats_summary(&self) -> Stats {
        self.0.lock().snapshot(false)
    }

    pub fn set_faults(&self, faults: Faults) {
        self.0.lock().faults = faults;
    }

    pub fn set_daily_quota(&self, quota: u64) {
        self.0.lock().daily_quota = quota;
    }

    pub fn set_latency(&self, latency: Duration) {
        self.0.lock().latency = latency;
    }

    pub fn set_oauth_faults(&self, faults: OAuthFaults) {
        self.0.lock().oauth_faults = faults;
    }

    /// Move the sandbox clock (quota day and token expiry) forward.
    pub fn advance_day(&self, days: i64) {
        let mut g = self.0.lock();
        g.offset_days = g.offset_days.saturating_add(days);
    }

    /// Every token issued so far is now expired.
    pub fn expire_tokens(&self) {
        let mut g = self.0.lock();
        let past = g.now() - time::Duration::seconds(1);
        for j in &mut g.journeys {
            if j.expires > past {
                j.expires = past;
            }
        }
    }
}

pub struct Sandbox {
    addr: SocketAddr,
    handle: SandboxHandle,
    shutdown: watch::Sender<bool>,
    task: Option<JoinHandle<()>>,
    /// The callback dispatcher, if callbacks are on.
    callback_task: Option<JoinHandle<()>>,
}

impl Sandbox {
    /// Bind `listen` (port 0 for any) and serve until [`Sandbox::stop`].
    pub async fn start(listen: SocketAddr, config: SandboxConfig) -> std::io::Result<Sandbox> {
        let listener = bind(listen)?;
        let addr = listener.local_addr()?;

        let (tx, rx) = watch::channel(false);
        let mut faults = config.faults;
        for p in [
            &mut faults.http_5xx,
            &mut faults.http_429,
            &mut faults.drop_reply,
            &mut faults.timeout,
            &mut faults.malformed,
            &mut faults.slow_reply,
        ] {
            *p = if p.is_nan() { 0.0 } else { p.clamp(0.0, 1.0) };
        }
        let protocol = config.protocol.protocol();
        if let Some(url) = &config.callback_url {
            callbacks::check_url(url)
                .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e))?;
        }
        // eSMS sends may name their own CallbackUrl, so eSMS always listens.
        let zalo_app_id = config.zalo_app_id.clone();
        let (callback_queue, callback_rx) =
            if config.callback_url.is_some() || protocol == ProviderKind::Esms {
                let (q, rx) = CallbackQueue::new(
                    config.callback_url,
                    config.callbacks.clone(),
                    config.zalo_app_id,
                    config.zalo_oa_secret,
                );
                (Some(q), Some(rx))
            } else {
                (None, None)
            };
        let shared = Arc::new(Shared {
            protocol,
            api_key: config.api_key,
            zalo_app_id,
            zalo_app_secret: config.zalo_app_secret,
            access_token_ttl: config.access_token_ttl,
            secret_key: config.secret_key,
            token_ttl: config.token_ttl,
            unknown_phone_suffixes: config.unknown_phone_suffixes,
            dedup: config.dedup,
            templates: config.templates,
            callbacks: callback_queue,
            shutdown: rx.clone(),
            inner: Mutex::new(Inner {
                faults,
                daily_quota: config.daily_quota,
                latency: config.latency,
                offset_days: 0,
                rng: StdRng::seed_from_u64(config.seed),
                rotate_5xx: 0,
                journeys: Vec::new(),
                token_index: HashMap::new(),
                messages: Vec::new(),
                dedup_index: HashMap::new(),
                tracking_index: HashMap::new(),
                quota_used: HashMap::new(),
                stats: Stats::default(),
                oauth: Default::default(),
                oauth_faults: config.oauth_faults,
            }),
        });
        let callback_task = callback_rx.map(|crx| {
            tokio::spawn(callback_sender::dispatch(
                shared.clone(),
                config.callbacks.clone(),
                crx,
            ))
        });
        let task = serve(listener, shared.clone(), rx);
        Ok(Sandbox {
            addr,
            handle: SandboxHandle(shared),
            shutdown: tx,
            task: Some(task),
            callback_task,
        })
    }

    /// Take the server down — the port refuses connections — but keep its
    /// memory (messages, de-duplication table, tokens, quota), as a real
    /// provider's outage would. [`Sandbox::up`] brings it back on the same port.
    pub async fn down(&mut self) {
        let _ = self.shutdown.send(true);
        if let Some(mut task) = self.task.take() {
            if tokio::time::timeout(STOP_GRACE, &mut task).await.is_err() {
                task.abort();
                let _ = task.await;
            }
        }
    }

    /// Serve again on the same address after [`Sandbox::down`].
    pub async fn up(&mut self) -> std::io::Result<()> {
        if self.task.is_some() {
            return Ok(());
        }
        let listener = bind(self.addr)?;
        let _ = self.shutdown.send(false);
        self.task = Some(serve(
            listener,
            self.handle.0.clone(),
            self.shutdown.subscribe(),
        ));
        Ok(())
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The base URL a client adapter is configured with.
    pub fn base_url(&self) -> String {
        match self.handle.0.protocol.protocol() {
            ProviderKind::Zalo => format!("http://{}", self.addr),
            ProviderKind::Esms => format!("http://{}/MainService.svc/json", self.addr),
            _ => format!("http://{}/v1/shop", self.addr),
        }
    }

    pub fn protocol(&self) -> ProviderKind {
        self.handle.0.protocol
    }

    pub fn stats(&self) -> Stats {
        self.handle.stats()
    }

    pub fn stats_summary(&self) -> Stats {
        self.handle.stats_summary()
    }

    pub fn set_faults(&self, faults: Faults) {
        self.handle.set_faults(faults)
    }

    pub fn set_daily_quota(&self, quota: u64) {
        self.handle.set_daily_quota(quota)
    }

    pub fn set_latency(&self, latency: Duration) {
        self.handle.set_latency(latency)
    }

    pub fn set_oauth_faults(&self, faults: OAuthFaults) {
        self.handle.set_oauth_faults(faults)
    }

    pub fn advance_day(&self, days: i64) {
        self.handle.advance_day(days)
    }

    pub fn expire_tokens(&self) {
        self.handle.expire_tokens()
    }

    pub fn state_handle(&self) -> SandboxHandle {
        self.handle.clone()
    }

    /// Stop accepting and close the listener and connections. Hung requests
    /// are cut short; after a short grace the server task is aborted, so
    /// this returns promptly and the port is free afterwards.
    pub async fn stop(mut self) {
        if let Some(t) = self.callback_task.take() {
            t.abort();
        }
        let _ = self.shutdown.send(true);
        if let Some(mut task) = self.task.take() {
            if tokio::time::timeout(STOP_GRACE, &mut task).await.is_err() {
                task.abort();
                let _ = task.await;
            }
        }
    }
}

impl Drop for Sandbox {
    fn drop(&mut self) {
        if let Some(t) = self.callback_task.take() {
            t.abort();
        }
        let _ = self.shutdown.send(true);
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

#[cfg(test)]
mod callback_tests;
#[cfg(test)]
mod template_tests;
#[cfg(test)]
mod tests;
