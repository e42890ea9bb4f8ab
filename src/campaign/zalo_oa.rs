//! Unattended Zalo: the OA is authorized once (`zalo connect`, PKCE), and
//! the token pair is kept sealed in the ledger and renewed by whichever run
//! needs it.
//!
//! Rules, and how they are kept:
//! - The pair is encrypted at rest (ChaCha20-Poly1305, key = SHA-256 of env
//!   `ZNS_SECRET_KEY`); without the key nothing is stored.
//! - One refresher at a time across processes: a lease row taken in a short
//!   transaction (see `store::zalo_oauth`); the others wait and re-read the
//!   stored pair. In one process a mutex does the same.
//! - The new pair is committed (synchronous=FULL) before its access token
//!   is handed to anyone: a crash after Zalo rotated the pair and before we
//!   stored it is the one thing we cannot survive, so it is made as short as
//!   a local commit.
//! - A refresh Zalo refused, or whose reply was lost, stops the campaign
//!   (paused, exit 3) with the re-authorization command. A lost reply does
//!   not mark the pair broken: the next resume tries the stored refresh
//!   token again, which works if Zalo had not rotated it (a killed process
//!   whose request never completed), and is refused (then broken) if it had.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{ChaCha20Poly1305, Key, Nonce};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::{refused, usage, CoreError, Workspace};
use crate::model::clock;
use crate::provider::zalo_oauth::{self, AccessTokens, OAuthApp, OAuthError, TokenPair};
use crate::provider::{ErrorClass, ProviderError, Secret};
use crate::store::{NewPair, OaTokens, Store};

pub const APP_SECRET_ENV: &str = "ZNS_ZALO_APP_SECRET";
pub const SECRET_KEY_ENV: &str = "ZNS_SECRET_KEY";

/// What every "authorize again" message says.
pub const REAUTHORIZE_HINT: &str = "authorize the OA again with `zns-batch zalo connect` (or the console's Connect OA page), then resume the campaign";

/// A refresh lease outlives one refresh request (its timeout) with margin;
/// a killed holder's lease lapses after this.
const LEASE: Duration = Duration::from_secs(zalo_oauth::OAUTH_TIMEOUT.as_secs() + 5);

/// Refresh ahead of expiry: when less than a tenth of the token's life,
/// or five minutes, whichever is less, is left.
fn refresh_due(expires_ms: i64, ttl_ms: i64, now_ms: i64) -> bool {
    let margin = (ttl_ms / 10).min(5 * 60 * 1000);
    now_ms >= expires_ms - margin
}

/// Seals and opens secrets with the key from `ZNS_SECRET_KEY`.
struct Sealer {
    cipher: ChaCha20Poly1305,
}

/// No blanks to fill.
const NO_PARAMS: [(&str, &str); 0] = [];

impl Sealer {
    fn from_env() -> Result<Self, CoreError> {
        let raw = std::env::var(SECRET_KEY_ENV).unwrap_or_default();
        if raw.trim().len() < 16 {
            return Err(refused(
                "zalo.secret_key_missing",
                [("env", SECRET_KEY_ENV)],
                format!(
                    "{SECRET_KEY_ENV} is not set (or shorter than 16 characters): the Zalo OA's tokens are stored encrypted with a key derived from it, \
                     so nothing is stored without it. Set it, e.g. {SECRET_KEY_ENV}=$(openssl rand -base64 32), and keep it with the state database's backups"
                ),
            ));
        }
        let mut h = Sha256::new();
        h.update(b"zns-batch zalo oa tokens v1\0");
        h.update(raw.trim().as_bytes());
        let key = Key::from(<[u8; 32]>::from(h.finalize()));
        Ok(Self {
            cipher: ChaCha20Poly1305::new(&key),
        })
    }

    /// `nonce || ciphertext`; `aad` binds it to its use.
    fn seal(&self, aad: &[u8], plain: &[u8]) -> Result<Vec<u8>, CoreError> {
        let nonce_bytes = rand::random::<[u8; 12]>();
        let nonce = Nonce::from(nonce_bytes);
        let ct = self
            .cipher
            .encrypt(&nonce, Payload { msg: plain, aad })
            .map_err(|_| CoreError::Fatal(anyhow::anyhow!("cannot encrypt the OA tokens")))?;
        let mut out = nonce_bytes.to_vec();
        out.extend_from_slice(&ct);
        Ok(out)
    }

    fn open(&self, aad: &[u8], sealed: &[u8]) -> Result<Vec<u8>, String> {
        if sealed.len() < 12 {
            return Err("the stored OA tokens are damaged".into());
        }
        let (n, ct) = sealed.split_at(12);
        let nonce = Nonce::from(<[u8; 12]>::try_from(n).map_err(|_| "damaged")?);
        self.cipher.decrypt(&nonce, Payload { msg: ct, aad }).map_err(|_| {
            format!("the stored OA tokens cannot be decrypted: {SECRET_KEY_ENV} is not the key they were stored with")
        })
    }
}

const PAIR_AAD: &[u8] = b"zalo_oa_tokens.sealed_pair";
const VERIFIER_AAD: &[u8] = b"zalo_oa_pending.sealed_verifier";

#[derive(Serialize, Deserialize)]
struct PairPlain {
    access_token: String,
    refresh_token: String,
}

fn state_hash(state: &str) -> String {
    hex::encode(Sha256::digest(state.as_bytes()))
}

/// What `zalo status` and the console show: never a token.
#[derive(Debug, Clone, Default, Serialize)]
pub struct OaStatus {
    pub connected: bool,
    pub oa_id: Option<String>,
    pub app_id: Option<String>,
    pub connected_at: Option<String>,
    pub access_expires_at: Option<String>,
    pub access_expires_in_secs: Option<i64>,
    pub refresh_token_age_secs: Option<i64>,
    pub refreshes: i64,
    /// Why the pair cannot be renewed (then: authorize again).
    pub needs_reauthorization: Option<String>,
}

/// `zalo connect`'s first half: the URL to open.
#[derive(Debug, Clone, Serialize)]
pub struct ConnectStart {
    pub authorization_url: String,
    pub redirect_uri: String,
}

fn fmt_ms(ms: i64) -> String {
    clock::fmt_local(clock::from_ms(ms))
}

impl Workspace {
    fn oauth_url(&self) -> String {
        self.config
            .zalo_oauth_url
            .clone()
            .unwrap_or_else(|| zalo_oauth::DEFAULT_OAUTH_URL.to_string())
    }

    fn zalo_app_id(&self) -> Result<String, CoreError> {
        self.config.zalo_app_id.clone().ok_or_else(|| {
            refused(
                "zalo.app_id_missing",
                NO_PARAMS,
                "connecting a Zalo OA needs the app's id: set `zalo_app_id` in the config file",
            )
        })
    }

    fn oauth_app(&self) -> Result<OAuthApp, CoreError> {
        let secret = std::env::var(APP_SECRET_ENV)
            .ok()
            .filter(|s| !s.trim().is_empty())
            .ok_or_else(|| {
                refused(
                    "zalo.app_secret_missing",
                    [("env", APP_SECRET_ENV)],
                    format!(
                        "the Zalo app secret is needed to exchange and renew OA tokens: set {APP_SECRET_ENV}"
                    ),
                )
            })?;
        OAuthApp::new(&self.oauth_url(), &self.zalo_app_id()?, Secret::new(secret))
            .map_err(CoreError::Fatal)
    }

    /// The redirect URI when none is given: serve's callback at the public
    /// URL, else on the default listen address.
    pub fn default_redirect_uri(&self) -> String {
        let base = self
            .config
            .public_url
            .clone()
            .unwrap_or_else(|| "http://127.0.0.1:8080".to_string());
        format!("{}/oauth/zalo/callback", base.trim_end_matches('/'))
    }

    /// Begin an authorization: a PKCE verifier and a state kept (sealed) in
    /// the ledger, and the URL an OA admin opens.
    pub fn zalo_connect_start(
        &self,
        redirect_uri: Option<&str>,
    ) -> Result<ConnectStart, CoreError> {
        let sealer = Sealer::from_env()?;
        let app_id = self.zalo_app_id()?;
        let redirect_uri = redirect_uri
            .map(str::to_string)
            .unwrap_or_else(|| self.default_redirect_uri());
        if !(redirect_uri.starts_with("https://") || redirect_uri.starts_with("http://")) {
            return Err(usage(format!(
                "--redirect-uri must be an http(s) URL registered with the Zalo app, not `{redirect_uri}`"
            )));
        }
        let (verifier, challenge) = zalo_oauth::pkce_pair();
        let state = zalo_oauth::random_state();
        let sealed = sealer.seal(VERIFIER_AAD, verifier.as_bytes())?;
        let mut store = Store::open_durable(&self.state)?;
        store.oa_pending_put(&state_hash(&state), &sealed, &redirect_uri, clock::now_ms())?;
        Ok(ConnectStart {
            authorization_url: zalo_oauth::authorization_url(
                &self.oauth_url(),
                &app_id,
                &redirect_uri,
                &challenge,
                &state,
            ),
            redirect_uri,
        })
    }

    /// Finish an authorization: the code exchanged (with the pending
    /// verifier) and the pair stored sealed. `state`: from the callback
    /// (must match a pending one); `None` for a code pasted in a terminal
    /// (the latest pending authorization).
    pub async fn zalo_connect_finish(
        &self,
        code: &str,
        state: Option<&str>,
        oa_id: Option<&str>,
    ) -> Result<OaStatus, CoreError> {
        let sealer = Sealer::from_env()?;
        let app = self.oauth_app()?;
        if code.trim().is_empty() || code.len() > 2048 {
            return Err(refused(
                "zalo.code_bad",
                NO_PARAMS,
                "the authorization code is empty or too long",
            ));
        }
        let mut store = Store::open_durable(&self.state)?;
        let now = clock::now_ms();
        let pending = store
            .oa_pending_take(state.map(state_hash).as_deref(), now)?
            .ok_or_else(|| {
                match state {
                    Some(_) => refused("zalo.state_unknown", NO_PARAMS, "this authorization is unknown or expired (a state works once, within an hour): start again with `zns-batch zalo connect`"),
                    None => usage("no authorization is pending: run `zns-batch zalo connect` first, open its URL, then pass the code it gives with --code"),
                }
            })?;
        let verifier = sealer
            .open(VERIFIER_AAD, &pending.sealed_verifier)
            .map_err(|e| CoreError::Fatal(anyhow::anyhow!(e)))?;
        let verifier = String::from_utf8(verifier)
            .map_err(|_| CoreError::Fatal(anyhow::anyhow!("damaged pending authorization")))?;
        let pair = app.exchange_code(code.trim(), &verifier).await.map_err(|e| {
            CoreError::Fatal(anyhow::anyhow!(
                "the authorization code could not be exchanged: {e}; start again with `zns-batch zalo connect`"
            ))
        })?;
        let sealed = seal_pair(&sealer, &pair)?;
        let now = clock::now_ms();
        let ttl_ms = (pair.expires_in as i64).saturating_mul(1000);
        store.oa_connected(&NewPair {
            oa_id,
            app_id: &app.app_id,
            sealed_pair: &sealed,
            access_expires_ms: now + ttl_ms,
            access_ttl_ms: ttl_ms,
            now_ms: now,
        })?;
        tracing::info!("Zalo OA connected; tokens stored encrypted");
        Ok(status_of(store.oa_tokens()?.as_ref(), now))
    }

    /// The connected OA, the access token's expiry, the refresh token's
    /// age: never a token.
    pub fn zalo_status(&self) -> Result<OaStatus, CoreError> {
        let tokens = match self.existing_store()? {
            Some(store) => store.oa_tokens()?,
            None => None,
        };
        Ok(status_of(tokens.as_ref(), clock::now_ms()))
    }

    /// The adapter's token source for a Zalo run without an API key, if an
    /// OA is connected; `None` when none is.
    pub(super) fn stored_access(&self) -> Result<Option<StoredAccess>, CoreError> {
        let Some(store) = self.existing_store()? else {
            return Ok(None);
        };
        if store.oa_tokens()?.is_none() {
            return Ok(None);
        }
        drop(store);
        Ok(Some(StoredAccess {
            store: Mutex::new(Store::open_durable(&self.state)?),
            sealer: Sealer::from_env()?,
            app: self.oauth_app()?,
            holder: format!(
                "{}-{}",
                std::process::id(),
                hex::encode(rand::random::<[u8; 6]>())
            ),
            cached: tokio::sync::Mutex::new(None),
            failed: Mutex::new(None),
        }))
    }
}

fn seal_pair(sealer: &Sealer, pair: &TokenPair) -> Result<Vec<u8>, CoreError> {
    let plain = serde_json::to_vec(&PairPlain {
        access_token: pair.access_token.expose().to_string(),
        refresh_token: pair.refresh_token.expose().to_string(),
    })
    .map_err(|e| CoreError::Fatal(e.into()))?;
    sealer.seal(PAIR_AAD, &plain)
}

fn status_of(t: Option<&OaTokens>, now: i64) -> OaStatus {
    match t {
        None => OaStatus::default(),
        Some(t) => OaStatus {
            connected: true,
            oa_id: t.oa_id.clone(),
            app_id: Some(t.app_id.clone()),
            connected_at: Some(fmt_ms(t.connected_ms)),
            access_expires_at: Some(fmt_ms(t.access_expires_ms)),
            access_expires_in_secs: Some((t.access_expires_ms - now) / 1000),
            refresh_token_age_secs: Some((now - t.refresh_issued_ms) / 1000),
            refreshes: t.refreshes,
            needs_reauthorization: t.broken.clone(),
        },
    }
}

/// The access token in use, and which stored pair it came from.
struct Current {
    access: Secret,
    expires_ms: i64,
    ttl_ms: i64,
    generation: i64,
}

/// The stored pair as an adapter's token source.
pub(super) struct StoredAccess {
    store: Mutex<Store>,
    sealer: Sealer,
    app: OAuthApp,
    /// This process's name on the lease.
    holder: String,
    /// One task at a time reads or renews; the others wait for its result.
    cached: tokio::sync::Mutex<Option<Current>>,
    /// A renewal that called for re-authorization: every later call in
    /// this process gets the same answer (the run is stopping), rather than
    /// presenting a refresh token Zalo may have rotated again.
    failed: Mutex<Option<ProviderError>>,
}

fn reauthorize(code: &str, why: impl std::fmt::Display) -> ProviderError {
    ProviderError::new(
        ErrorClass::Reauthorize,
        code,
        format!("the Zalo OA's access token could not be renewed: {why}. To continue, {REAUTHORIZE_HINT}"),
    )
}

fn store_failed(e: impl std::fmt::Display) -> ProviderError {
    // Not knowing the stored pair is not knowing the credentials: stop.
    ProviderError::new(
        ErrorClass::AbortAuth,
        "oauth_store",
        format!("the state database's OA tokens are unusable: {e}"),
    )
}

impl StoredAccess {
    fn with_store<T>(
        &self,
        f: impl FnOnce(&mut Store) -> Result<T, crate::store::StoreError>,
    ) -> Result<T, ProviderError> {
        let mut s = self
            .store
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        f(&mut s).map_err(store_failed)
    }

    fn open_pair(&self, t: &OaTokens) -> Result<PairPlain, ProviderError> {
        let plain = self
            .sealer
            .open(PAIR_AAD, &t.sealed_pair)
            .map_err(store_failed)?;
        serde_json::from_slice(&plain).map_err(store_failed)
    }

    /// A usable access token: the stored one if it is not due (and not
    /// the `avoid` generation, which Zalo refused), else a renewed one —
    /// renewed here under the lease, or by another process while we wait.
    async fn obtain(&self, avoid: Option<i64>) -> Result<Current, ProviderError> {
        let give_up = Instant::now() + LEASE * 2;
        loop {
            let t = self
                .with_store(|s| s.oa_tokens())?
                .ok_or_else(|| reauthorize("oauth_not_connected", "no Zalo OA is connected"))?;
            if let Some(why) = &t.broken {
                return Err(reauthorize("oauth_broken", why));
            }
            let now = clock::now_ms();
            if !refresh_due(t.access_expires_ms, t.access_ttl_ms, now)
                && avoid != Some(t.generation)
            {
                let pair = self.open_pair(&t)?;
                return Ok(Current {
                    access: Secret::new(pair.access_token),
                    expires_ms: t.access_expires_ms,
                    ttl_ms: t.access_ttl_ms,
                    generation: t.generation,
                });
            }
            let until = now + LEASE.as_millis() as i64;
            match self.with_store(|s| s.oa_lease_take(&self.holder, until, now))? {
                Some(g) if g == t.generation => return self.refresh(&t).await,
                // Renewed between our read and the lease: read again.
                Some(_) => self.with_store(|s| s.oa_lease_release(&self.holder))?,
                None => {
                    if Instant::now() > give_up {
                        return Err(ProviderError::new(
                            ErrorClass::Retry,
                            "oauth_busy",
                            "another process has been renewing the OA token for too long",
                        ));
                    }
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
            }
        }
    }

    /// Renew under the lease; the new pair is committed before use.
    async fn refresh(&self, t: &OaTokens) -> Result<Current, ProviderError> {
        let old = match self.open_pair(t) {
            Ok(p) => p,
            Err(e) => {
                self.with_store(|s| s.oa_lease_release(&self.holder))?;
                return Err(e);
            }
        };
        match self.app.refresh(&Secret::new(old.refresh_token)).await {
            Ok(pair) => {
                let sealed = seal_pair(&self.sealer, &pair).map_err(store_failed)?;
                let now = clock::now_ms();
                let ttl_ms = (pair.expires_in as i64).saturating_mul(1000);
                let p = NewPair {
                    oa_id: None,
                    app_id: &self.app.app_id,
                    sealed_pair: &sealed,
                    access_expires_ms: now + ttl_ms,
                    access_ttl_ms: ttl_ms,
                    now_ms: now,
                };
                self.with_store(|s| s.oa_refreshed(&self.holder, &p))?;
                tracing::info!("Zalo OA access token renewed");
                let t = self
                    .with_store(|s| s.oa_tokens())?
                    .ok_or_else(|| store_failed("the OA tokens vanished"))?;
                Ok(Current {
                    access: pair.access_token,
                    expires_ms: t.access_expires_ms,
                    ttl_ms: t.access_ttl_ms,
                    generation: t.generation,
                })
            }
            Err(OAuthError::Unreachable(m)) => {
                self.with_store(|s| s.oa_lease_release(&self.holder))?;
                // Nothing reached Zalo: the stored pair still holds.
                Err(ProviderError::new(
                    ErrorClass::Retry,
                    "oauth_connect",
                    format!("cannot reach Zalo to renew the OA access token: {m}"),
                ))
            }
            Err(e @ OAuthError::Lost(_)) => {
                self.with_store(|s| s.oa_lease_release(&self.holder))?;
                tracing::warn!("Zalo OA token refresh: {e}");
                Err(reauthorize("oauth_reply_lost", e))
            }
            Err(e @ OAuthError::Refused(_)) => {
                let why = e.to_string();
                self.with_store(|s| s.oa_broken(&self.holder, &why))?;
                tracing::warn!("Zalo OA token refresh: {why}");
                Err(reauthorize("oauth_refused", why))
            }
        }
    }
}

impl StoredAccess {
    fn failed_before(&self) -> Result<(), ProviderError> {
        match &*self
            .failed
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
        {
            Some(e) => Err(e.clone()),
            None => Ok(()),
        }
    }

    async fn obtain_once(&self, avoid: Option<i64>) -> Result<Current, ProviderError> {
        let got = self.obtain(avoid).await;
        if let Err(e) = &got {
            if e.class == ErrorClass::Reauthorize {
                *self
                    .failed
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(e.clone());
            }
        }
        got
    }
}

#[async_trait]
impl AccessTokens for StoredAccess {
    async fn current(&self) -> Result<Secret, ProviderError> {
        let mut cached = self.cached.lock().await;
        self.failed_before()?;
        if let Some(c) = cached.as_ref() {
            if !refresh_due(c.expires_ms, c.ttl_ms, clock::now_ms()) {
                return Ok(c.access.clone());
            }
        }
        let c = self.obtain_once(None).await?;
        let access = c.access.clone();
        *cached = Some(c);
        Ok(access)
    }

    async fn after_refusal(&self, refused: &Secret) -> Result<Secret, ProviderError> {
        let mut cached = self.cached.lock().await;
        self.failed_before()?;
        let avoid = match cached.as_ref() {
            // Someone here renewed it already.
            Some(c) if c.access != *refused => return Ok(c.access.clone()),
            Some(c) => Some(c.generation),
            None => None,
        };
        let c = self.obtain_once(avoid).await?;
        let access = c.access.clone();
        *cached = Some(c);
        Ok(access)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refresh_is_due_within_a_tenth_of_the_life_or_five_minutes() {
        // 3 s tokens: due in the last 300 ms.
        assert!(!refresh_due(10_000, 3_000, 9_600));
        assert!(refresh_due(10_000, 3_000, 9_700));
        // 25 h tokens: due in the last 5 minutes.
        let ttl = 90_000_000;
        assert!(!refresh_due(ttl, ttl, ttl - 6 * 60_000));
        assert!(refresh_due(ttl, ttl, ttl - 4 * 60_000));
    }
}
