//! `zns-batch serve`: one long-running process for the callbacks providers
//! send (delivery webhooks into the ledger), `/healthz` and `/metrics`. The
//! web console and `/api/v1` (issue 13) mount on the same router: see
//! [`router`].
//!
//! Every callback is committed to SQLite before it is answered 2xx; a
//! graceful stop (SIGTERM, Ctrl-C) lets the requests in flight finish and
//! commit.

mod api;
pub mod auth;
pub mod campaigns;
pub mod edge;
mod health;
pub mod live;
mod metrics;
mod web;
mod webhooks;
pub mod words;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context;
use axum::extract::DefaultBodyLimit;
use axum::Router;

use crate::campaign::{
    CoreError as AppError, EventOutcome, ExitCode, LedgerWriter, Location, NewEvent, Reader,
    Workspace,
};
pub use crate::provider::Secret;

pub use metrics::Metrics;
pub use web::WebState;

pub const DEFAULT_LISTEN: &str = "127.0.0.1:8080";
/// What the command line (or a test) asks of `serve`; the rest comes from
/// the config file.
#[derive(Debug, Clone, Default)]
pub struct ServeOptions {
    /// Address to bind (default: config `listen`, else 127.0.0.1:8080).
    pub listen: Option<String>,
    /// The URL providers reach this server at (config `public_url`).
    pub public_url: Option<String>,
    /// Resume campaigns paused by the quota day or the send window when
    /// they may go on (see `Campaigns::auto_resume_loop`).
    pub auto_resume: bool,
}

pub use crate::campaign::config::{DEFAULT_WEBHOOK_TOKEN_ENV, DEFAULT_ZALO_SECRET_ENV};
pub const DEFAULT_AUTH_TOKEN_ENV: &str = "ZNS_SERVE_TOKEN";
/// Open SSE streams past which `/events` answers 503 (config `max_event_streams`).
pub const DEFAULT_MAX_EVENT_STREAMS: u32 = 256;
/// Bigger callback bodies are refused with 413 (real ones are < 2 KiB).
pub const BODY_LIMIT: usize = 64 * 1024;

/// Everything `serve` needs, resolved once from flags, config and env.
#[derive(Debug, Clone)]
pub struct ServeConfig {
    pub listen: SocketAddr,
    pub public_url: Option<String>,
    pub state: Location,
    pub zalo_app_id: Option<String>,
    pub zalo_secret: Option<Secret>,
    pub webhook_token: Option<Secret>,
    /// When set, `/api/*` and `/metrics` need `Authorization: Bearer`.
    pub auth_token: Option<Secret>,
    /// Absolute and idle lifetime of a console session.
    pub session_ttl: Duration,
    pub session_idle: Duration,
    pub trust_forwarded_for: bool,
    /// The `Host` names answered; others get 421 (but `/healthz`).
    pub allowed_hosts: Arc<edge::AllowedHosts>,
    /// Timeouts and the connection cap.
    pub limits: edge::Limits,
    /// Open live-progress streams (SSE) at most; past it, 503.
    pub max_event_streams: usize,
}

fn env_secret(name: &str) -> Option<Secret> {
    std::env::var(name)
        .ok()
        .filter(|v| !v.is_empty())
        .map(Secret::new)
}

impl ServeConfig {
    pub fn resolve(g: &Workspace, args: &ServeOptions) -> Result<ServeConfig, AppError> {
        let c = &g.config;
        let listen_text = args
            .listen
            .clone()
            .or_else(|| c.listen.clone())
            .unwrap_or_else(|| DEFAULT_LISTEN.to_string());
        let listen: SocketAddr = listen_text.parse().map_err(|_| {
            AppError::Usage(format!(
                "--listen `{listen_text}` is not an address: give IP:PORT, e.g. 127.0.0.1:8080"
            ))
        })?;
        let auth_env = c
            .auth_token_env
            .clone()
            .unwrap_or_else(|| DEFAULT_AUTH_TOKEN_ENV.to_string());
        let auth_token = access_token(&auth_env)?;
        if !listen.ip().is_loopback() && auth_token.is_none() {
            return Err(AppError::Usage(format!(
                "--listen {listen} is reachable from other machines, and no access token is set: \
                 set one in the environment variable {auth_env} (config `auth_token_env`), \
                 or listen on loopback (127.0.0.1) behind a reverse proxy"
            )));
        }
        let public_url = args
            .public_url
            .clone()
            .or_else(|| c.public_url.clone())
            .map(|u| u.trim_end_matches('/').to_string());
        if let Some(u) = &public_url {
            if !(u.starts_with("http://") || u.starts_with("https://")) {
                return Err(AppError::Usage(format!(
                    "--public-url `{u}` must start with https:// (or http://), e.g. https://zns.example.vn"
                )));
            }
        }
        let zalo_env = c
            .zalo_oa_secret_key_env
            .clone()
            .unwrap_or_else(|| DEFAULT_ZALO_SECRET_ENV.to_string());
        let token_env = c
            .webhook_token_env
            .clone()
            .unwrap_or_else(|| DEFAULT_WEBHOOK_TOKEN_ENV.to_string());
        let session_ttl = c.session_ttl.map_or(auth::DEFAULT_SESSION_TTL, |h| h.0);
        let session_idle = c.session_idle.map_or(auth::DEFAULT_SESSION_IDLE, |h| h.0);
        if session_ttl.is_zero() || session_idle.is_zero() {
            return Err(AppError::Usage(
                "config `session_ttl` and `session_idle` must be longer than 0s, e.g. \"12h\" and \"1h\""
                    .into(),
            ));
        }
        let allowed_hosts =
            edge::AllowedHosts::resolve(c.allowed_hosts.as_deref(), listen, public_url.as_deref())
                .map_err(AppError::Usage)?;
        let defaults = edge::Limits::default();
        let limits = edge::Limits {
            header_read_timeout: c
                .header_read_timeout
                .map_or(defaults.header_read_timeout, |h| h.0),
            idle_timeout: c.idle_timeout.map_or(defaults.idle_timeout, |h| h.0),
            request_timeout: c
                .serve_request_timeout
                .map_or(defaults.request_timeout, |h| h.0),
            max_connections: c.max_connections.unwrap_or(defaults.max_connections),
        };
        if limits.max_connections == 0 {
            return Err(AppError::Usage(
                "max_connections = 0 would accept no one: give at least 1 (default 1024)".into(),
            ));
        }
        for (key, d) in [
            ("header_read_timeout", limits.header_read_timeout),
            ("idle_timeout", limits.idle_timeout),
            ("serve_request_timeout", limits.request_timeout),
        ] {
            if d.is_zero() {
                return Err(AppError::Usage(format!(
                    "{key} must be longer than 0, e.g. \"10s\""
                )));
            }
        }
        Ok(ServeConfig {
            listen,
            public_url,
            allowed_hosts: Arc::new(allowed_hosts),
            limits,
            state: g.state.clone(),
            zalo_app_id: c.zalo_app_id.clone().filter(|s| !s.is_empty()),
            zalo_secret: env_secret(&zalo_env),
            webhook_token: env_secret(&token_env),
            auth_token,
            session_ttl,
            session_idle,
            trust_forwarded_for: c.trust_forwarded_for.unwrap_or(false),
            max_event_streams: c.max_event_streams.unwrap_or(DEFAULT_MAX_EVENT_STREAMS) as usize,
        })
    }
}

/// The access token from `env`: unset means none; set, it must have
/// [`auth::MIN_TOKEN_CHARS`] characters besides surrounding blanks (which
/// are dropped: a token pasted from a file often ends in a newline).
fn access_token(env: &str) -> Result<Option<Secret>, AppError> {
    let Some(raw) = std::env::var_os(env) else {
        return Ok(None);
    };
    let token = raw.to_str().map(str::trim).unwrap_or("");
    if token.chars().count() < auth::MIN_TOKEN_CHARS {
        return Err(AppError::Usage(format!(
            "the access token in the environment variable {env} is too short or not text: \
             it needs at least {} characters (e.g. `openssl rand -hex 24`); \
             unset {env} to run without one (loopback only)",
            auth::MIN_TOKEN_CHARS
        )));
    }
    Ok(Some(Secret::new(token)))
}

/// Shared by every handler. Callbacks go to the ledger writer (its own
/// thread and connection, commits grouped and fsynced before the answer);
/// slow reads (metrics, the console's pages) use `reader`, from blocking
/// threads behind a mutex, so they never hold up a callback (WAL).
#[derive(Clone)]
pub struct ServeState {
    pub config: Arc<ServeConfig>,
    pub ledger: LedgerWriter,
    pub reader: Arc<Mutex<Reader>>,
    /// Who calls (users, API tokens), asked at every request: its own
    /// connection, so the check never waits behind a page's slow read.
    pub who_reader: Arc<Mutex<Reader>>,
    pub metrics: Arc<Metrics>,
    /// The web console and `/api/v1`: campaigns run from here, CSRF token.
    pub web: Arc<WebState>,
    /// Console sessions and the sign-in limit.
    pub auth: Arc<auth::Auth>,
    /// Live progress of campaigns, one poller per watched campaign.
    pub live: Arc<live::Broadcasters>,
}

impl ServeState {
    /// Like [`Self::with_reader`] for a closure that fails with a web error.
    pub async fn with_reader_web<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Reader) -> Result<T, campaigns::WebError> + Send + 'static,
    ) -> Result<T, campaigns::WebError> {
        Self::blocking(self.reader.clone(), |r| f(r))
            .await
            .map_err(campaigns::WebError::Internal)?
    }

    /// Run `f` on the connection for who calls, in a blocking thread.
    pub async fn with_who_reader<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Reader) -> Result<T, AppError> + Send + 'static,
    ) -> anyhow::Result<T> {
        Ok(Self::blocking(self.who_reader.clone(), |r| f(r)).await??)
    }

    /// Run `f` on the reading connection in a blocking thread.
    pub async fn with_reader<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Reader) -> Result<T, AppError> + Send + 'static,
    ) -> anyhow::Result<T> {
        Ok(Self::blocking(self.reader.clone(), |r| f(r)).await??)
    }

    async fn blocking<C: Send + 'static, T: Send + 'static>(
        conn: Arc<Mutex<C>>,
        f: impl FnOnce(&mut C) -> T + Send + 'static,
    ) -> anyhow::Result<T> {
        tokio::task::spawn_blocking(move || {
            // A panic while holding the lock cannot leave a transaction
            // half-applied (it rolls back on drop): the connection stays usable.
            let mut guard = conn.lock().unwrap_or_else(|p| p.into_inner());
            f(&mut guard)
        })
        .await
        .context("store task")
    }

    /// Store one event and count its outcome.
    pub async fn record(
        &self,
        provider: &'static str,
        event: NewEvent,
    ) -> anyhow::Result<EventOutcome> {
        let outcome = self.ledger.record(event).await?;
        self.metrics.webhook(provider, outcome.as_str());
        Ok(outcome)
    }
}

/// Room in an upload's body for the form's other fields and the framing.
const UPLOAD_FORM_SLACK: u64 = 1024 * 1024;

/// The whole router: webhooks and `/healthz` open; `/metrics` behind the
/// Bearer token; the console and `/api/v1` behind the token or a signed-in
/// session (see [`auth::Caller`]), and refusing state changes from other
/// sites. Every route but `/healthz` answers only the allowed `Host` names;
/// every answer carries the security headers.
pub fn router(state: ServeState) -> Router {
    let timeout = edge::request_timeout(state.config.limits.request_timeout);
    // Uploads stream to disk under their own cap, checked as they come.
    let upload_body = DefaultBodyLimit::max(
        usize::try_from(state.web.upload_limit.saturating_add(UPLOAD_FORM_SLACK))
            .unwrap_or(usize::MAX),
    );
    let protected = Router::new()
        .route("/metrics", axum::routing::get(metrics::handler))
        .route_layer(axum::middleware::from_fn_with_state(
            state.clone(),
            auth::require_token,
        ));
    // Providers' callbacks are not browsers: the same-origin rule is the
    // console's and the API's only.
    let console = Router::new()
        .merge(api::routes())
        .merge(web::routes())
        .route_layer(timeout)
        .merge(api::upload_routes().route_layer(upload_body))
        .merge(web::upload_routes().route_layer(upload_body))
        .route_layer(axum::middleware::from_fn_with_state(
            state.clone(),
            web::security::require_sign_in,
        ))
        .merge(web::open_routes().route_layer(timeout))
        .route_layer(axum::middleware::from_fn(web::security::same_origin_only));
    let hosts = state.config.allowed_hosts.clone();
    let app = Router::new()
        .merge(webhooks::routes())
        .merge(protected)
        .route_layer(timeout)
        .merge(console)
        .layer(DefaultBodyLimit::max(BODY_LIMIT))
        // Also covers the fallback: an unknown path on a foreign host is 421.
        .layer(axum::middleware::from_fn_with_state(
            hosts,
            edge::allowed_hosts_only,
        ))
        // Monitors probe by whatever name they know the machine by.
        .route("/healthz", axum::routing::get(health::handler));
    edge::security_headers(app).with_state(state)
}

pub async fn run(g: &Workspace, args: ServeOptions) -> Result<ExitCode, AppError> {
    let config = ServeConfig::resolve(g, &args)?;
    let ledger = g.ledger()?;
    let stale = api::upload::remove_incomplete(&config.state);
    if stale > 0 {
        tracing::info!("removed {stale} incomplete upload(s) left by an earlier serve");
    }
    let reader = g.reader()?;
    let live_reader = g.reader()?;
    let who_reader = g.reader()?;
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .with_context(|| format!("cannot listen on {}", config.listen))?;
    let addr = listener.local_addr().context("listening address")?;
    warn_missing(&config);
    let campaigns = campaigns::Campaigns::new(reload_workspace(g)?);
    let auth = auth::Auth::new(
        config.session_ttl,
        config.session_idle,
        config.trust_forwarded_for,
    );
    let sign_out = config.auth_token.is_some();
    let max_streams = config.max_event_streams;
    let state = ServeState {
        config: Arc::new(config),
        ledger,
        reader: Arc::new(Mutex::new(reader)),
        who_reader: Arc::new(Mutex::new(who_reader)),
        metrics: Arc::new(Metrics::new()),
        web: Arc::new(WebState::new(campaigns.clone(), sign_out)),
        auth: Arc::new(auth),
        live: live::Broadcasters::new(live_reader, campaigns.clone(), max_streams),
    };
    // The one line tests and scripts read; the rest goes to the log.
    println!("listening on http://{addr}");
    if let Some(u) = &state.config.public_url {
        tracing::info!(
            "providers call {u}/webhooks/zalo, {u}/webhooks/esms/<token>, {u}/webhooks/etelecom/<token>"
        );
    }
    campaigns.set_auto_resume(args.auto_resume);
    campaigns.resume_wanted().await;
    tokio::spawn(
        campaigns
            .clone()
            .auto_resume_loop(campaigns::auto_resume_poll()),
    );
    // Another serve's campaigns whose runner died are carried on here.
    tokio::spawn(
        campaigns
            .clone()
            .takeover_loop(campaigns::takeover_poll(campaigns.lease_ttl())),
    );
    // Scheduled campaigns start at their time (the schedule is in the
    // ledger: a restart keeps it).
    tokio::spawn(campaigns.clone().run_scheduler());
    let stopping = campaigns.clone();
    // The peer address keys the sign-in limit: `edge::serve` hands every
    // request its `ConnectInfo<SocketAddr>`.
    let limits = state.config.limits;
    let live = state.live.clone();
    edge::serve(listener, router(state), limits, async move {
        shutdown_signal().await;
        // Live pages end (else their streams would hold the stop up), runs
        // stop (still wanted: a restart resumes them).
        live.shutdown();
        stopping.shutdown().await;
    })
    .await;
    tracing::info!("stopped: every accepted callback is committed");
    Ok(ExitCode::Finished)
}

/// serve's own copy of the workspace (its runs outlive the request).
fn reload_workspace(g: &Workspace) -> Result<Workspace, AppError> {
    let (config, path) = crate::campaign::config::ConfigFile::load(
        g.config_path.as_deref(),
        g.config.profile.as_deref(),
    )
    .map_err(|e| AppError::Usage(e.to_string()))?;
    Ok(Workspace::new(Some(g.state.clone()), config, path))
}

fn warn_missing(c: &ServeConfig) {
    if c.zalo_app_id.is_none() || c.zalo_secret.is_none() {
        tracing::warn!(
            "Zalo webhooks will be refused (401): set config `zalo_app_id` and the OA secret key \
             in the environment variable named by `zalo_oa_secret_key_env` (default {DEFAULT_ZALO_SECRET_ENV})"
        );
    }
    if c.webhook_token.is_none() {
        tracing::warn!(
            "eSMS and eTelecom webhooks are off (404): set a token in the environment variable \
             named by `webhook_token_env` (default {DEFAULT_WEBHOOK_TOKEN_ENV})"
        );
    }
}

async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        let term = async {
            match signal(SignalKind::terminate()) {
                Ok(mut s) => {
                    s.recv().await;
                }
                Err(_) => std::future::pending::<()>().await,
            }
        };
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
    tracing::info!("stopping: finishing the requests in flight");
}
