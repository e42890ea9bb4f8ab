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
mod health;
mod metrics;
mod web;
mod webhooks;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use anyhow::Context;
use axum::extract::DefaultBodyLimit;
use axum::Router;

use crate::campaign::{
    CoreError as AppError, EventOutcome, ExitCode, Ledger, NewEvent, Reader, Workspace,
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
}

pub use crate::campaign::config::{DEFAULT_WEBHOOK_TOKEN_ENV, DEFAULT_ZALO_SECRET_ENV};
pub const DEFAULT_AUTH_TOKEN_ENV: &str = "ZNS_SERVE_TOKEN";
/// Bigger callback bodies are refused with 413 (real ones are < 2 KiB).
pub const BODY_LIMIT: usize = 64 * 1024;

/// Everything `serve` needs, resolved once from flags, config and env.
#[derive(Debug, Clone)]
pub struct ServeConfig {
    pub listen: SocketAddr,
    pub public_url: Option<String>,
    pub state: PathBuf,
    pub zalo_app_id: Option<String>,
    pub zalo_secret: Option<Secret>,
    pub webhook_token: Option<Secret>,
    /// When set, `/api/*` and `/metrics` need `Authorization: Bearer`.
    pub auth_token: Option<Secret>,
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
        let auth_token = env_secret(&auth_env);
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
        Ok(ServeConfig {
            listen,
            public_url,
            state: g.state.clone(),
            zalo_app_id: c.zalo_app_id.clone().filter(|s| !s.is_empty()),
            zalo_secret: env_secret(&zalo_env),
            webhook_token: env_secret(&token_env),
            auth_token,
        })
    }
}

/// Shared by every handler. Each connection sits behind a mutex and is
/// used from blocking threads: one transaction per callback on `ledger`,
/// committed before the answer; slow reads (metrics, the console's pages)
/// on `reader`, so they never hold up a callback (WAL).
#[derive(Clone)]
pub struct ServeState {
    pub config: Arc<ServeConfig>,
    pub ledger: Arc<Mutex<Ledger>>,
    pub reader: Arc<Mutex<Reader>>,
    pub metrics: Arc<Metrics>,
    /// The web console and `/api/v1`: campaigns run from here, CSRF token.
    pub web: Arc<WebState>,
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
        let outcome =
            Self::blocking(self.ledger.clone(), move |l| l.record_event(&event)).await??;
        self.metrics.webhook(provider, outcome.as_str());
        Ok(outcome)
    }
}

/// The whole router: webhooks and `/healthz` open; `/metrics` behind the
/// Bearer token; the console and `/api/v1` behind the token or the login
/// cookie, and refusing state changes from other sites.
pub fn router(state: ServeState) -> Router {
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
        .route_layer(axum::middleware::from_fn_with_state(
            state.clone(),
            web::security::require_sign_in,
        ))
        .merge(web::open_routes())
        .route_layer(axum::middleware::from_fn(web::security::same_origin_only));
    Router::new()
        .route("/healthz", axum::routing::get(health::handler))
        .merge(webhooks::routes())
        .merge(protected)
        .merge(console)
        .layer(DefaultBodyLimit::max(BODY_LIMIT))
        .with_state(state)
}

pub async fn run(g: &Workspace, args: ServeOptions) -> Result<ExitCode, AppError> {
    let config = ServeConfig::resolve(g, &args)?;
    let ledger = g.ledger()?;
    let reader = g.reader()?;
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .with_context(|| format!("cannot listen on {}", config.listen))?;
    let addr = listener.local_addr().context("listening address")?;
    warn_missing(&config);
    let campaigns = campaigns::Campaigns::new(reload_workspace(g)?);
    let state = ServeState {
        config: Arc::new(config),
        ledger: Arc::new(Mutex::new(ledger)),
        reader: Arc::new(Mutex::new(reader)),
        metrics: Arc::new(Metrics::new()),
        web: Arc::new(WebState::new(campaigns.clone())),
    };
    // The one line tests and scripts read; the rest goes to the log.
    println!("listening on http://{addr}");
    if let Some(u) = &state.config.public_url {
        tracing::info!(
            "providers call {u}/webhooks/zalo, {u}/webhooks/esms/<token>, {u}/webhooks/etelecom/<token>"
        );
    }
    campaigns.resume_wanted().await;
    let stopping = campaigns.clone();
    axum::serve(listener, router(state))
        .with_graceful_shutdown(async move {
            shutdown_signal().await;
            // Runs stop (still wanted: a restart resumes them) and live pages end.
            stopping.shutdown().await;
        })
        .await
        .context("serve")?;
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
