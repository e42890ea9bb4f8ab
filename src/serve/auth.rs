//! Who is this request? The one place that decides: the access token
//! (`Authorization: Bearer`, any case of the scheme) or a named API token
//! (looked up by its hash), or a server-side session made by the sign-in
//! form (an HttpOnly cookie holding a random id; a user's session is
//! checked against the users table at each request), or nobody. Also the
//! sessions themselves and the per-address limit on sign-in attempts.
//!
//! Sessions live in memory: a restart signs everyone out, which is cheap
//! (one form) and keeps session ids out of the state database. The table is keyed by the SHA-256 of the id, so it never
//! holds a usable cookie value and a lookup's timing says nothing about it.

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::num::NonZeroU32;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use axum::extract::{ConnectInfo, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{header, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Redirect, Response};
use axum_extra::extract::cookie::{Cookie, CookieJar, SameSite};
use axum_extra::headers::authorization::Bearer;
use axum_extra::headers::Authorization;
use axum_extra::TypedHeader;
use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use super::ServeState;
use crate::campaign::{Actor, TokenCheck};

pub const SESSION_COOKIE: &str = "zns_session";
/// Shorter access tokens are refused at start: a guessable token is no lock.
pub const MIN_TOKEN_CHARS: usize = 16;
pub const DEFAULT_SESSION_TTL: Duration = Duration::from_secs(12 * 3600);
pub const DEFAULT_SESSION_IDLE: Duration = Duration::from_secs(3600);
/// Sign-in attempts an address may make in a burst; one more every
/// `60 / SIGN_INS_PER_MINUTE` seconds after that.
pub const SIGN_INS_PER_MINUTE: u32 = 5;

/// Equal in time independent of the strings: both are hashed first, so
/// neither where they differ nor the expected length shows in the timing.
pub fn same_secret(given: &str, expected: &str) -> bool {
    let g = Sha256::digest(given.as_bytes());
    let e = Sha256::digest(expected.as_bytes());
    g.ct_eq(&e).into()
}

/// What `serve` keeps about who signed in.
pub struct Auth {
    pub sessions: Sessions,
    pub sign_ins: SignInLimiter,
    /// Take the client address from `X-Forwarded-For` (set by the proxy).
    pub trust_forwarded_for: bool,
}

impl Auth {
    pub fn new(ttl: Duration, idle: Duration, trust_forwarded_for: bool) -> Self {
        Auth {
            sessions: Sessions::new(ttl, idle),
            sign_ins: SignInLimiter::new(SIGN_INS_PER_MINUTE),
            trust_forwarded_for,
        }
    }
}

struct Times {
    created: Instant,
    seen: Instant,
    who: SessionWho,
}

/// Whom a session was opened for. A user's is checked against the state
/// database at every request (the CLI may remove the user or set a new
/// password from another process: either ends the session).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SessionWho {
    /// Signed in with the access token (`ZNS_SERVE_TOKEN`): an admin.
    AdminToken,
    /// A named user, and the generation of their password at sign-in.
    User { name: String, generation: i64 },
}

/// Server-side sessions with an absolute and an idle expiry.
pub struct Sessions {
    ttl: Duration,
    idle: Duration,
    live: Mutex<HashMap<[u8; 32], Times>>,
}

fn session_key(id: &str) -> [u8; 32] {
    Sha256::digest(id.as_bytes()).into()
}

impl Sessions {
    pub fn new(ttl: Duration, idle: Duration) -> Self {
        Sessions {
            ttl,
            idle,
            live: Mutex::new(HashMap::new()),
        }
    }

    fn fresh(&self, t: &Times, now: Instant) -> bool {
        now.duration_since(t.created) < self.ttl && now.duration_since(t.seen) < self.idle
    }

    /// A new session: 32 bytes from the thread's CSPRNG (ChaCha, seeded
    /// by the OS), hex. Nothing in it comes from the token.
    pub fn open(&self, who: SessionWho) -> String {
        let id = hex::encode(rand::random::<[u8; 32]>());
        let now = Instant::now();
        let mut live = self.live.lock().unwrap_or_else(|p| p.into_inner());
        // Expired sessions go here, so the table stays as small as the
        // number of people signed in.
        live.retain(|_, t| self.fresh(t, now));
        live.insert(
            session_key(&id),
            Times {
                created: now,
                seen: now,
                who,
            },
        );
        id
    }

    /// Whom `id` is a live session of; a live one counts as used now.
    pub fn check(&self, id: &str) -> Option<SessionWho> {
        let key = session_key(id);
        let now = Instant::now();
        let mut live = self.live.lock().unwrap_or_else(|p| p.into_inner());
        match live.get_mut(&key) {
            Some(t) if self.fresh(t, now) => {
                t.seen = now;
                Some(t.who.clone())
            }
            Some(_) => {
                live.remove(&key);
                None
            }
            None => None,
        }
    }

    pub fn close(&self, id: &str) {
        let mut live = self.live.lock().unwrap_or_else(|p| p.into_inner());
        live.remove(&session_key(id));
    }
}

/// Sign-in attempts per client address (every attempt counts, so once an
/// address is over the limit even the right token waits: guessing cannot
/// go on at the same pace). Failures are tallied for the log line.
pub struct SignInLimiter {
    limiter: DefaultKeyedRateLimiter<IpAddr>,
    failures: Mutex<HashMap<IpAddr, (u32, Instant)>>,
}

/// How long a failure tally is kept without a new failure.
const FAILURE_MEMORY: Duration = Duration::from_secs(600);

/// Addresses limited as one: an IPv6 client usually owns a whole /64.
fn limit_key(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let s = v6.segments();
                IpAddr::V6(Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0))
            }
        },
    }
}

impl SignInLimiter {
    pub fn new(per_minute: u32) -> Self {
        let per_minute = NonZeroU32::new(per_minute).unwrap_or(NonZeroU32::MIN);
        SignInLimiter {
            limiter: RateLimiter::keyed(Quota::per_minute(per_minute)),
            failures: Mutex::new(HashMap::new()),
        }
    }

    /// Before the token is looked at: `Err(wait)` when the address has
    /// used up its attempts.
    pub fn attempt(&self, ip: IpAddr) -> Result<(), Duration> {
        let key = limit_key(ip);
        let verdict = self
            .limiter
            .check_key(&key)
            .map_err(|not_until| not_until.wait_time_from(DefaultClock::default().now()));
        // Forget addresses whose attempts have all been earned back.
        if self.limiter.len() > 4096 {
            self.limiter.retain_recent();
        }
        verdict
    }

    /// One more failure (or refusal) from `ip`: the tally so far.
    pub fn failed(&self, ip: IpAddr) -> u32 {
        let now = Instant::now();
        let mut f = self.failures.lock().unwrap_or_else(|p| p.into_inner());
        if f.len() > 4096 {
            f.retain(|_, (_, last)| now.duration_since(*last) < FAILURE_MEMORY);
        }
        let e = f.entry(limit_key(ip)).or_insert((0, now));
        if now.duration_since(e.1) >= FAILURE_MEMORY {
            e.0 = 0;
        }
        e.0 += 1;
        e.1 = now;
        e.0
    }

    pub fn succeeded(&self, ip: IpAddr) {
        let mut f = self.failures.lock().unwrap_or_else(|p| p.into_inner());
        f.remove(&limit_key(ip));
    }
}

/// An address for the log: enough to tell clients apart, not to name one.
pub fn masked(ip: IpAddr) -> String {
    match limit_key(ip) {
        IpAddr::V4(v4) => {
            let [a, b, c, _] = v4.octets();
            format!("{a}.{b}.{c}.x")
        }
        IpAddr::V6(v6) => {
            let s = v6.segments();
            format!("{:x}:{:x}:{:x}::/48", s[0], s[1], s[2])
        }
    }
}

/// The client's address: the TCP peer, or, when config
/// `trust_forwarded_for` says serve sits behind a proxy, the last
/// `X-Forwarded-For` entry (the one the proxy itself appended; earlier
/// ones are whatever the client sent).
pub struct ClientAddr(pub IpAddr);

impl FromRequestParts<ServeState> for ClientAddr {
    type Rejection = Infallible;

    async fn from_request_parts(parts: &mut Parts, s: &ServeState) -> Result<Self, Infallible> {
        if s.auth.trust_forwarded_for {
            // Only the very last entry: when it is not an address, an
            // earlier one (client-written) must not stand in for it.
            let last = parts
                .headers
                .get_all("x-forwarded-for")
                .iter()
                .next_back()
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.rsplit(',').next())
                .and_then(|a| a.trim().parse::<IpAddr>().ok());
            if let Some(ip) = last {
                return Ok(ClientAddr(ip));
            }
        }
        let peer = parts
            .extensions
            .get::<ConnectInfo<SocketAddr>>()
            .map(|ConnectInfo(a)| a.ip())
            // Only a router served without connect info lands here: all
            // such clients then share one limit, which errs on the safe side.
            .unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED));
        Ok(ClientAddr(peer))
    }
}

/// Who sent the request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Caller {
    /// No access token is configured and no user or API token exists:
    /// everyone may, as an admin (serve then listens on loopback only).
    Open,
    /// `Authorization: Bearer` with the access token (an admin).
    Token,
    /// `Authorization: Bearer` with a named API token.
    ApiToken(Actor),
    /// A signed-in browser: the session id and who it is now.
    Session(String, Actor),
}

impl Caller {
    /// Who acts, for the core's role check and the audit log.
    pub fn actor(&self) -> Actor {
        match self {
            Caller::Open => Actor::local(),
            Caller::Token => Actor::admin_token(),
            Caller::ApiToken(a) | Caller::Session(_, a) => a.clone(),
        }
    }
}

/// Not signed in: pages and console forms send the browser to the sign-in
/// form, everything else (the API, `/metrics`) gets 401.
#[derive(Debug)]
pub struct Unauthorized {
    page: bool,
}

impl IntoResponse for Unauthorized {
    fn into_response(self) -> Response {
        if self.page {
            return Redirect::to("/login").into_response();
        }
        (
            StatusCode::UNAUTHORIZED,
            [(header::WWW_AUTHENTICATE, "Bearer")],
            axum::Json(serde_json::json!({
                "error": "an access token is required: send `Authorization: Bearer TOKEN`, or sign in at /login"
            })),
        )
            .into_response()
    }
}

impl FromRequestParts<ServeState> for Caller {
    type Rejection = Unauthorized;

    async fn from_request_parts(parts: &mut Parts, s: &ServeState) -> Result<Self, Unauthorized> {
        let expected = s.config.auth_token.clone();
        // Users and API tokens can be added by the CLI while serve runs:
        // whether sign-in is needed is asked at each request (one read).
        let team = match s.with_who_reader(|r| r.has_team()).await {
            Ok(t) => t,
            Err(e) => {
                tracing::error!("cannot read users: {e:#}");
                true
            }
        };
        if expected.is_none() && !team {
            return Ok(Caller::Open);
        }
        // A console form sent after the session ended lands on the
        // sign-in form too, rather than on a JSON error.
        let path = parts.uri.path();
        let refused = Unauthorized {
            page: (parts.method == Method::GET || path.starts_with("/ui/"))
                && !path.starts_with("/api/")
                && path != "/metrics",
        };
        // A Bearer header that is there but wrong is a refusal, not a
        // reason to look for a cookie.
        let bearer =
            <TypedHeader<Authorization<Bearer>> as FromRequestParts<_>>::from_request_parts(
                parts, s,
            )
            .await;
        if let Ok(TypedHeader(Authorization(b))) = bearer {
            let given = b.token().trim().to_string();
            if expected
                .as_ref()
                .is_some_and(|e| same_secret(&given, e.expose()))
            {
                return Ok(Caller::Token);
            }
            return match s.with_who_reader(move |r| r.check_token(&given)).await {
                Ok(TokenCheck::Valid(actor)) => Ok(Caller::ApiToken(actor)),
                Ok(TokenCheck::Revoked(name)) => {
                    tracing::info!("refused the revoked API token `{name}`");
                    Err(refused)
                }
                Ok(TokenCheck::Unknown) => Err(refused),
                Err(e) => {
                    tracing::error!("cannot check an API token: {e:#}");
                    Err(refused)
                }
            };
        }
        let jar = CookieJar::from_headers(&parts.headers);
        let Some(id) = jar.get(SESSION_COOKIE).map(|c| c.value().to_string()) else {
            return Err(refused);
        };
        match s.auth.sessions.check(&id) {
            Some(SessionWho::AdminToken) => Ok(Caller::Session(id, Actor::admin_token())),
            Some(SessionWho::User { name, generation }) => {
                let now = s
                    .with_who_reader(move |r| r.session_user(&name, generation))
                    .await;
                match now {
                    Ok(Some(actor)) => Ok(Caller::Session(id, actor)),
                    Ok(None) => {
                        // Removed, or a new password: this session is over.
                        s.auth.sessions.close(&id);
                        Err(refused)
                    }
                    Err(e) => {
                        tracing::error!("cannot check a session's user: {e:#}");
                        Err(refused)
                    }
                }
            }
            None => Err(refused),
        }
    }
}

/// The session cookie: HttpOnly, SameSite=Strict, `Secure` behind https.
pub fn session_cookie(id: String, secure: bool) -> Cookie<'static> {
    Cookie::build((SESSION_COOKIE, id))
        .path("/")
        .http_only(true)
        .same_site(SameSite::Strict)
        .secure(secure)
        .build()
}

/// The cookie that replaces the session cookie on sign-out.
pub fn removal_cookie() -> Cookie<'static> {
    Cookie::build(SESSION_COOKIE).path("/").build()
}

/// `/metrics`: a bearer token only — the access token or a named API
/// token of any role (scrapers, not browsers).
pub async fn require_token(caller: Caller, req: Request, next: Next) -> Response {
    match caller {
        Caller::Open | Caller::Token | Caller::ApiToken(_) => next.run(req).await,
        Caller::Session(..) => Unauthorized { page: false }.into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_compare_by_content_only() {
        assert!(same_secret("0123456789abcdef", "0123456789abcdef"));
        assert!(!same_secret("0123456789abcdeX", "0123456789abcdef"));
        assert!(!same_secret("", "0123456789abcdef"));
    }

    #[test]
    fn sessions_are_random_and_expire() {
        let s = Sessions::new(Duration::from_millis(300), Duration::from_secs(60));
        let (a, b) = (
            s.open(SessionWho::AdminToken),
            s.open(SessionWho::AdminToken),
        );
        assert_ne!(a, b);
        assert_eq!(a.len(), 64);
        assert!(s.check(&a).is_some() && s.check(&b).is_some());
        assert!(s.check("not-a-session").is_none());
        s.close(&a);
        assert!(s.check(&a).is_none(), "closed");
        std::thread::sleep(Duration::from_millis(350));
        assert!(s.check(&b).is_none(), "past the absolute expiry");

        let s = Sessions::new(Duration::from_secs(60), Duration::from_millis(300));
        let a = s.open(SessionWho::AdminToken);
        for _ in 0..3 {
            std::thread::sleep(Duration::from_millis(150));
            assert!(s.check(&a).is_some(), "use keeps it alive");
        }
        std::thread::sleep(Duration::from_millis(350));
        assert!(s.check(&a).is_none(), "idle too long");
    }

    #[test]
    fn the_limit_is_per_address() {
        let l = SignInLimiter::new(3);
        let one: IpAddr = "203.0.113.7".parse().unwrap();
        let two: IpAddr = "198.51.100.1".parse().unwrap();
        for _ in 0..3 {
            assert!(l.attempt(one).is_ok());
        }
        let wait = l.attempt(one).unwrap_err();
        assert!(wait > Duration::from_secs(1) && wait <= Duration::from_secs(20));
        assert!(l.attempt(two).is_ok());
        // One IPv6 /64 is one client.
        let a: IpAddr = "2001:db8:1:2::1".parse().unwrap();
        let b: IpAddr = "2001:db8:1:2:ffff::9".parse().unwrap();
        for _ in 0..3 {
            assert!(l.attempt(a).is_ok());
        }
        assert!(l.attempt(b).is_err());
        assert_eq!(l.failed(one), 1);
        assert_eq!(l.failed(one), 2);
        l.succeeded(one);
        assert_eq!(l.failed(one), 1);
    }

    #[test]
    fn addresses_are_masked() {
        assert_eq!(masked("203.0.113.77".parse().unwrap()), "203.0.113.x");
        assert_eq!(
            masked("2001:db8:85a3:1:2:3:4:5".parse().unwrap()),
            "2001:db8:85a3::/48"
        );
        assert_eq!(masked("::ffff:10.1.2.3".parse().unwrap()), "10.1.2.x");
    }
}
