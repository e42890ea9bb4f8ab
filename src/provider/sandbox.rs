//! Sandbox provider server: a real HTTP server on loopback that speaks the
//! eTelecom, Zalo or eSMS protocol, with a daily quota, latency and
//! injectable faults, and a stats endpoint.
//!
//! The runner's tests and the benchmark drive the real adapters against it,
//! and `zns-batch run` without an API key starts one in-process. It keeps
//! every message in memory, so what a client did (double token buys,
//! duplicate sends, quota overruns) shows in [`Stats`] afterwards.
//!
//! Clocks: the sandbox day and token expiry follow a sandbox clock that
//! [`Sandbox::advance_day`] moves forward; timestamps in replies are given on
//! the real clock (sandbox clock minus the advance), so a client comparing a
//! token's `expired_at` with its own clock agrees with the sandbox.

mod esms;
mod etelecom;
mod zalo;

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::{Query, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use time::{OffsetDateTime, UtcOffset};
use tokio::sync::watch;
use tokio::task::JoinHandle;

pub use crate::provider::ProviderKind;

/// Largest request body read; a real request is a few hundred bytes.
const MAX_BODY_BYTES: usize = 1 << 20;
/// How long `stop()` lets in-flight requests finish before aborting.
const STOP_GRACE: Duration = Duration::from_millis(200);
/// Daily quota reported when the sandbox has none (Zalo's top tier).
const UNLIMITED_QUOTA_REPORT: u64 = 500_000;
/// Vietnam has no DST: the OA's day is UTC+7 all year.
const VN_OFFSET_SECS: i32 = 7 * 3600;

/// Injectable faults. Probabilities in 0.0..=1.0, drawn per request from
/// the sandbox's seeded RNG.
#[derive(Debug, Clone, PartialEq)]
pub struct Faults {
    /// Answer 500/502/503 (in rotation) without processing the request.
    pub http_5xx: f64,
    /// Answer 429 without processing the request.
    pub http_429: f64,
    /// If set, 429s carry `Retry-After: N`.
    pub retry_after_secs: Option<u64>,
    /// Sends only: accept the message, then break the reply off.
    pub drop_reply: f64,
    /// Hang for `hang`, then answer 504, without processing the request.
    pub timeout: f64,
    pub hang: Duration,
    /// Sends only: accept the message, then answer 200 with a truncated body.
    pub malformed: f64,
    /// Sends only: accept the message, then wait `hang` before answering —
    /// a reply later than the client's timeout for a message that went out.
    pub slow_reply: f64,
    /// 5xx/429/timeout also hit non-send calls (token, check, lookup, quota).
    pub apply_to_tokens: bool,
}

impl Default for Faults {
    fn default() -> Self {
        Self {
            http_5xx: 0.0,
            http_429: 0.0,
            retry_after_secs: None,
            drop_reply: 0.0,
            timeout: 0.0,
            hang: Duration::from_secs(30),
            malformed: 0.0,
            slow_reply: 0.0,
            apply_to_tokens: true,
        }
    }
}

impl Faults {
    /// The first probability outside 0..=1, named, if any.
    fn invalid_probability(&self) -> Option<(&'static str, f64)> {
        [
            ("http_5xx", self.http_5xx),
            ("http_429", self.http_429),
            ("drop_reply", self.drop_reply),
            ("timeout", self.timeout),
            ("malformed", self.malformed),
            ("slow_reply", self.slow_reply),
        ]
        .into_iter()
        .find(|(_, p)| !(0.0..=1.0).contains(p))
    }
}

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
}

impl Default for SandboxConfig {
    fn default() -> Self {
        Self {
            protocol: ProviderKind::Etelecom,
            api_key: "sandbox-key".to_string(),
            secret_key: "sandbox-secret".to_string(),
            daily_quota: 0,
            latency: Duration::ZERO,
            faults: Faults::default(),
            token_ttl: None,
            unknown_phone_suffixes: Vec::new(),
            dedup: true,
            seed: 1,
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
            .finish()
    }
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
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
    pub quota_used_today: u64,
    pub get_message_calls: u64,
    pub auth_failures: u64,
    /// "5xx", "429", "drop", "timeout", "malformed", "slow".
    pub faults_injected: BTreeMap<String, u64>,
    /// Sandbox day, YYYY-MM-DD in Asia/Ho_Chi_Minh.
    pub day: String,
}

// ---------------------------------------------------------------------------
// Shared state

/// One journey token as issued.
struct Journey {
    oa: String,
    phone: String,
    token: String,
    /// Sandbox clock.
    created: OffsetDateTime,
    expires: OffsetDateTime,
    /// The token fee has been charged (on the first message that used it).
    charged: bool,
}

/// One accepted message. Kept small: a benchmark may leave a million.
struct Message {
    oa: String,
    journey: Option<usize>,
    phone: String,
    template_id: i64,
    tracking_id: String,
    /// Sandbox clock.
    sent: OffsetDateTime,
    /// This message carried its journey token's fee (set by `deliver`).
    token_charged: bool,
}

/// What a send came to once it passed every check.
enum Delivery {
    New(usize),
    Replay(usize),
    OverQuota,
}

struct Inner {
    faults: Faults,
    daily_quota: u64,
    latency: Duration,
    offset_days: i64,
    rng: StdRng,
    rotate_5xx: u64,
    journeys: Vec<Journey>,
    token_index: HashMap<String, usize>,
    messages: Vec<Message>,
    /// "oa\0tracking_id" → message index.
    dedup_index: HashMap<String, usize>,
    /// "oa\0tracking_id" → first message, de-duplicating or not (lookups).
    tracking_index: HashMap<String, usize>,
    /// (oa, Julian day) → new messages accepted.
    quota_used: HashMap<(String, i32), u64>,
    stats: Stats,
}

pub(crate) struct Shared {
    protocol: ProviderKind,
    api_key: String,
    secret_key: String,
    token_ttl: Option<Duration>,
    unknown_phone_suffixes: Vec<String>,
    dedup: bool,
    shutdown: watch::Receiver<bool>,
    inner: Mutex<Inner>,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panic elsewhere must not take the sandbox down with it.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn is_unknown_phone(&self, phone: &str) -> bool {
        self.unknown_phone_suffixes
            .iter()
            .any(|s| !s.is_empty() && phone.ends_with(s.as_str()))
    }

    /// Token lifetime for a token type (`token_logistics_30` → 30 days).
    fn ttl_for(&self, token_type: &str) -> time::Duration {
        if let Some(ttl) = self.token_ttl {
            return time::Duration::try_from(ttl).unwrap_or(time::Duration::days(7));
        }
        let days = token_type
            .rsplit('_')
            .next()
            .and_then(|d| d.parse::<i64>().ok())
            .filter(|d| (1..=3650).contains(d))
            .unwrap_or(7);
        time::Duration::days(days)
    }

    /// Sleep, cut short by `stop()` so a hung request never holds it up.
    async fn nap(&self, d: Duration) -> bool {
        if d.is_zero() {
            return true;
        }
        let mut rx = self.shutdown.clone();
        tokio::select! {
            _ = tokio::time::sleep(d) => true,
            _ = rx.wait_for(|stopping| *stopping) => false,
        }
    }

    /// The configured latency, to within a tenth of a millisecond. tokio's
    /// timer fires on the first whole millisecond past its deadline (a
    /// 50 ms latency came out at 51.8 ms on average, which alone caps a
    /// client at 0.965 × C/L); a sleeping blocking thread is precise.
    /// Only short naps: the runtime waits for blocking threads at shutdown.
    async fn latency(&self, d: Duration) -> bool {
        if d.is_zero() || d > Duration::from_secs(1) {
            return self.nap(d).await;
        }
        let mut rx = self.shutdown.clone();
        let sleep = tokio::task::spawn_blocking(move || std::thread::sleep(d));
        tokio::select! {
            _ = sleep => true,
            _ = rx.wait_for(|stopping| *stopping) => false,
        }
    }
}

impl Inner {
    fn now(&self) -> OffsetDateTime {
        OffsetDateTime::now_utc() + time::Duration::days(self.offset_days)
    }

    /// A sandbox-clock instant as replies show it (real clock).
    fn wire(&self, t: OffsetDateTime) -> OffsetDateTime {
        t - time::Duration::days(self.offset_days)
    }

    fn julian_day(&self) -> i32 {
        vn_date(self.now()).to_julian_day()
    }

    fn quota_used_today(&self, oa: &str) -> u64 {
        let day = self.julian_day();
        self.quota_used
            .get(&(oa.to_string(), day))
            .copied()
            .unwrap_or(0)
    }

    /// (remaining, daily) as reported; an unlimited quota reports Zalo's top tier.
    fn quota_report(&self, oa: &str) -> (u64, u64) {
        let daily = if self.daily_quota == 0 {
            UNLIMITED_QUOTA_REPORT
        } else {
            self.daily_quota
        };
        (daily.saturating_sub(self.quota_used_today(oa)), daily)
    }

    fn random_token(&mut self, len: usize) -> String {
        (0..len)
            .map(|_| char::from(self.rng.sample(rand::distr::Alphanumeric)))
            .collect()
    }

    /// Issue a new token: always a new (charged) one, never a cached one, so
    /// a client that buys twice shows up in the stats.
    fn create_journey(&mut self, oa: &str, phone: &str, ttl: time::Duration) -> usize {
        let now = self.now();
        let mut token = self.random_token(64);
        while self.token_index.contains_key(&token) {
            token = self.random_token(64);
        }
        let n = self.journeys.len();
        self.token_index.insert(token.clone(), n);
        self.journeys.push(Journey {
            oa: oa.to_string(),
            phone: phone.to_string(),
            token,
            created: now,
            expires: now + ttl,
            charged: false,
        });
        self.stats.tokens_created += 1;
        *self
            .stats
            .tokens_created_per_phone
            .entry(phone.to_string())
            .or_insert(0) += 1;
        n
    }

    fn journey_by_id(&self, journey_id: u64) -> Option<usize> {
        let n = usize::try_from(journey_id.checked_sub(JOURNEY_ID_BASE)?).ok()?;
        (n < self.journeys.len()).then_some(n)
    }

    fn journey_by_token(&self, token: &str) -> Option<usize> {
        self.token_index.get(token).copied()
    }

    fn journey_expired(&self, n: usize) -> bool {
        self.journeys.get(n).is_none_or(|j| j.expires <= self.now())
    }

    fn message_by_msg_id(&self, msg_id: &str) -> Option<usize> {
        let hex = msg_id.strip_prefix(MSG_ID_PREFIX)?;
        if hex.len() != 16 {
            return None;
        }
        let n = u64::from_str_radix(hex, 16).ok()? ^ MSG_ID_MASK;
        let n = usize::try_from(n).ok()?;
        (n < self.messages.len()).then_some(n)
    }

    /// The first message sent for a tracking id (sandbox-only lookup).
    fn message_by_tracking_id(&self, oa: &str, tracking_id: &str) -> Option<usize> {
        self.tracking_index
            .get(&format!("{oa}\0{tracking_id}"))
            .copied()
    }

    fn count_send_attempt(&mut self, tracking_id: &str) {
        if !tracking_id.is_empty() {
            *self
                .stats
                .send_requests_per_tracking_id
                .entry(tracking_id.to_string())
                .or_insert(0) += 1;
        }
    }

    /// Dedup, quota, then record a new message.
    fn deliver(&mut self, dedup: bool, msg: Message) -> Delivery {
        let key = format!("{}\0{}", msg.oa, msg.tracking_id);
        if dedup && !msg.tracking_id.is_empty() {
            if let Some(&n) = self.dedup_index.get(&key) {
                self.stats.duplicates_absorbed += 1;
                return Delivery::Replay(n);
            }
        }
        let day = self.julian_day();
        let used = self.quota_used.entry((msg.oa.clone(), day)).or_insert(0);
        if self.daily_quota > 0 && *used >= self.daily_quota {
            self.stats.quota_rejections += 1;
            return Delivery::OverQuota;
        }
        *used += 1;
        let mut msg = msg;
        if let Some(j) = msg.journey.and_then(|j| self.journeys.get_mut(j)) {
            msg.token_charged = !j.charged;
            j.charged = true;
        }
        let n = self.messages.len();
        if !msg.tracking_id.is_empty() {
            self.tracking_index.entry(key.clone()).or_insert(n);
        }
        if dedup && !msg.tracking_id.is_empty() {
            self.dedup_index.insert(key, n);
        }
        // Untracked sends are counted under "" so accepted = sum(deliveries).
        *self
            .stats
            .deliveries
            .entry(msg.tracking_id.clone())
            .or_insert(0) += 1;
        self.stats.accepted += 1;
        self.messages.push(msg);
        Delivery::New(n)
    }

    fn snapshot(&self, detail: bool) -> Stats {
        let today = self.julian_day();
        let mut s = if detail {
            self.stats.clone()
        } else {
            Stats {
                tokens_created: self.stats.tokens_created,
                token_checks: self.stats.token_checks,
                send_requests: self.stats.send_requests,
                accepted: self.stats.accepted,
                duplicates_absorbed: self.stats.duplicates_absorbed,
                quota_rejections: self.stats.quota_rejections,
                get_message_calls: self.stats.get_message_calls,
                auth_failures: self.stats.auth_failures,
                faults_injected: self.stats.faults_injected.clone(),
                ..Stats::default()
            }
        };
        s.quota_used_today = self
            .quota_used
            .iter()
            .filter(|((_, day), _)| *day == today)
            .map(|(_, n)| n)
            .sum();
        s.day = format_date(vn_date(self.now()));
        s
    }

    fn count_fault(&mut self, name: &str) {
        *self
            .stats
            .faults_injected
            .entry(name.to_string())
            .or_insert(0) += 1;
    }

    /// A draw below `p` (NaN and out-of-range values clamp to never/always).
    fn hit(&mut self, p: f64) -> bool {
        p > 0.0 && self.rng.random::<f64>() < p
    }
}

/// Journey ids: eTelecom's `id` and `journey_id` are deliberately different
/// numbers, so a client that mixes them up is caught.
const JOURNEY_REF_BASE: u64 = 900_000;
const JOURNEY_ID_BASE: u64 = 7_000_000_000;
const MESSAGE_REF_BASE: u64 = 3_000_000_000;
/// msg_id looks like Zalo's (20 hex digits) and maps back to its index.
const MSG_ID_PREFIX: &str = "6e84";
const MSG_ID_MASK: u64 = 0x5a17_c0de_0000_0000;

fn msg_id_of(n: usize) -> String {
    format!("{MSG_ID_PREFIX}{:016x}", n as u64 ^ MSG_ID_MASK)
}

fn vn_date(t: OffsetDateTime) -> time::Date {
    let offset = UtcOffset::from_whole_seconds(VN_OFFSET_SECS).unwrap_or(UtcOffset::UTC);
    t.to_offset(offset).date()
}

fn format_date(d: time::Date) -> String {
    format!("{:04}-{:02}-{:02}", d.year(), u8::from(d.month()), d.day())
}

/// RFC 3339 in UTC with milliseconds.
pub(crate) fn rfc3339(t: OffsetDateTime) -> String {
    let t = t.to_offset(UtcOffset::UTC);
    let t = t
        .replace_nanosecond(t.nanosecond() / 1_000_000 * 1_000_000)
        .unwrap_or(t);
    t.format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_else(|_| t.unix_timestamp().to_string())
}

pub(crate) fn unix_ms(t: OffsetDateTime) -> i128 {
    t.unix_timestamp_nanos() / 1_000_000
}

// ---------------------------------------------------------------------------
// Request helpers shared by the protocol modules

/// The part of an API call a protocol handler needs.
pub(crate) struct Call<'a> {
    pub headers: &'a HeaderMap,
    pub query: Option<&'a str>,
    pub body: &'a [u8],
}

/// Which operation a request is; decides which faults may hit it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Endpoint {
    CreateToken,
    CheckToken,
    Send,
    GetMessage,
    Quota,
}

/// A protocol handler's answer.
pub(crate) struct Reply {
    pub status: StatusCode,
    pub body: Value,
    /// A send accepted (new or replayed): drop/malformed faults may hit it.
    pub accepted_send: bool,
}

impl Reply {
    pub fn ok(body: Value) -> Self {
        Self {
            status: StatusCode::OK,
            body,
            accepted_send: false,
        }
    }

    pub fn with_status(status: StatusCode, body: Value) -> Self {
        Self {
            status,
            body,
            accepted_send: false,
        }
    }

    pub fn accepted(body: Value) -> Self {
        Self {
            status: StatusCode::OK,
            body,
            accepted_send: true,
        }
    }
}

pub(crate) fn parse_object(body: &[u8]) -> Result<Map<String, Value>, String> {
    match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(m)) => Ok(m),
        Ok(_) => Err("request body must be a JSON object".to_string()),
        Err(e) => Err(format!("request body is not JSON: {e}")),
    }
}

/// An int64 given as a JSON number or a numeric string (protobuf JSON).
pub(crate) fn int64_field(obj: &Map<String, Value>, key: &str) -> Result<Option<u64>, String> {
    match obj.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Number(n)) => n
            .as_u64()
            .map(Some)
            .ok_or_else(|| format!("{key}: not a non-negative integer")),
        Some(Value::String(s)) if s.trim().is_empty() => Ok(None),
        Some(Value::String(s)) => s
            .trim()
            .parse::<u64>()
            .map(Some)
            .map_err(|_| format!("{key}: `{s}` is not an integer")),
        Some(_) => Err(format!("{key}: expected an integer or a numeric string")),
    }
}

pub(crate) fn string_field(obj: &Map<String, Value>, key: &str) -> Result<Option<String>, String> {
    match obj.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(_) => Err(format!("{key}: expected a string")),
    }
}

/// A template id as a number or numeric string.
pub(crate) fn template_id_field(obj: &Map<String, Value>, key: &str) -> Result<i64, String> {
    match obj.get(key) {
        Some(Value::Number(n)) => n
            .as_i64()
            .filter(|n| *n > 0)
            .ok_or_else(|| format!("{key}: not a positive integer")),
        Some(Value::String(s)) => s
            .trim()
            .parse::<i64>()
            .ok()
            .filter(|n| *n > 0)
            .ok_or_else(|| format!("{key}: `{s}` is not a positive integer")),
        None | Some(Value::Null) => Err(format!("{key} is required")),
        Some(_) => Err(format!("{key}: expected an integer")),
    }
}

/// Zalo's rules for template_data: a non-empty object of strings.
/// Err carries Zalo's code: -111 empty, -112 invalid.
pub(crate) fn check_template_data(v: Option<&Value>) -> Result<(), (i64, &'static str)> {
    match v {
        None | Some(Value::Null) => Err((-111, "template data is empty")),
        Some(Value::Object(m)) if m.is_empty() => Err((-111, "template data is empty")),
        Some(Value::Object(m)) if m.values().all(Value::is_string) => Ok(()),
        Some(_) => Err((
            -112,
            "template data is invalid: expected an object of strings",
        )),
    }
}

/// `84xxxxxxxxx` (also `0xxxxxxxxx` and `+84…`) → `84…`; None if not a phone.
pub(crate) fn normalize_phone(raw: &str) -> Option<String> {
    let p = raw.trim();
    let p = p.strip_prefix('+').unwrap_or(p);
    if p.is_empty() || !p.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    if p.starts_with("84") && (11..=12).contains(&p.len()) {
        Some(p.to_string())
    } else if p.starts_with('0') && (10..=11).contains(&p.len()) {
        Some(format!("84{}", &p[1..]))
    } else {
        None
    }
}

pub(crate) fn header_str<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
}

// ---------------------------------------------------------------------------
// Server

/// Per-protocol routing: which API operation a method and path name.
fn route(protocol: ProviderKind, method: &Method, path: &str) -> Option<Endpoint> {
    match protocol.protocol() {
        ProviderKind::Zalo => zalo::route(method, path),
        ProviderKind::Esms => esms::route(method, path),
        _ => etelecom::route(method, path),
    }
}

fn handle(shared: &Shared, ep: Endpoint, call: &Call<'_>) -> Reply {
    match shared.protocol.protocol() {
        ProviderKind::Zalo => zalo::handle(shared, ep, call),
        ProviderKind::Esms => esms::handle(shared, ep, call),
        _ => etelecom::handle(shared, ep, call),
    }
}

/// The body a protocol's server (or the gateway in front of it) gives for a
/// transport-level status.
fn status_reply(protocol: ProviderKind, status: StatusCode, what: &str) -> Response {
    if matches!(protocol.protocol(), ProviderKind::Zalo | ProviderKind::Esms)
        || status == StatusCode::BAD_GATEWAY
    {
        // A gateway's page: not the protocol's JSON, as real 5xx/429s often are.
        let text = format!(
            "<html><body><h1>{} {}</h1>{what}</body></html>",
            status.as_u16(),
            status.canonical_reason().unwrap_or("")
        );
        return (status, [(header::CONTENT_TYPE, "text/html")], text).into_response();
    }
    let code = match status.as_u16() {
        404 => "bad_route",
        429 => "resource_exhausted",
        503 => "unavailable",
        504 => "deadline_exceeded",
        _ => "internal",
    };
    etelecom::twirp_error(status, code, what)
}

fn json_response(status: StatusCode, body: &Value) -> Response {
    let bytes = serde_json::to_vec(body).unwrap_or_default();
    (status, [(header::CONTENT_TYPE, "application/json")], bytes).into_response()
}

/// A 200 whose body breaks off half-way: the "accepted, reply lost" case.
fn dropped_reply(body: &Value) -> Response {
    let bytes = serde_json::to_vec(body).unwrap_or_default();
    let half = Bytes::copy_from_slice(&bytes[..bytes.len() / 2]);
    let head = futures::stream::once(async move { Ok::<Bytes, std::io::Error>(half) });
    // The pause lets hyper flush the head and the first chunk before the
    // error aborts the connection, so the client sees headers, then a break.
    let tail = futures::stream::once(async {
        tokio::time::sleep(Duration::from_millis(5)).await;
        Err::<Bytes, std::io::Error>(std::io::Error::new(
            std::io::ErrorKind::ConnectionReset,
            "sandbox: reply dropped",
        ))
    });
    let mut resp = Response::new(Body::from_stream(futures::StreamExt::chain(head, tail)));
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    resp
}

/// A 200 with a truncated, unparseable JSON body.
fn malformed_reply(body: &Value) -> Response {
    let bytes = serde_json::to_vec(body).unwrap_or_default();
    let cut = bytes[..bytes.len() / 2].to_vec();
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "application/json")],
        cut,
    )
        .into_response()
}

enum PreFault {
    Timeout(Duration),
    Status(StatusCode),
    TooMany(Option<u64>),
}

/// Every API request: latency, faults, then the protocol handler.
async fn api(State(shared): State<Arc<Shared>>, req: Request) -> Response {
    let (parts, body) = req.into_parts();
    let Some(ep) = route(shared.protocol, &parts.method, parts.uri.path()) else {
        return status_reply(shared.protocol, StatusCode::NOT_FOUND, "no such method");
    };
    let is_send = ep == Endpoint::Send;
    let (latency, fault) = {
        let mut g = shared.lock();
        if is_send {
            g.stats.send_requests += 1;
        }
        let f = g.faults.clone();
        let mut fault = None;
        if is_send || f.apply_to_tokens {
            if g.hit(f.timeout) {
                g.count_fault("timeout");
                fault = Some(PreFault::Timeout(f.hang));
            } else if g.hit(f.http_5xx) {
                g.count_fault("5xx");
                let code = [500, 502, 503][(g.rotate_5xx % 3) as usize];
                g.rotate_5xx += 1;
                fault = Some(PreFault::Status(
                    StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
                ));
            } else if g.hit(f.http_429) {
                g.count_fault("429");
                fault = Some(PreFault::TooMany(f.retry_after_secs));
            }
        }
        (g.latency, fault)
    };
    // Read the whole body first so the connection stays reusable.
    let bytes = match axum::body::to_bytes(body, MAX_BODY_BYTES).await {
        Ok(b) => b,
        Err(_) => Bytes::new(),
    };
    if !shared.latency(latency).await {
        return status_reply(
            shared.protocol,
            StatusCode::SERVICE_UNAVAILABLE,
            "shutting down",
        );
    }
    match fault {
        Some(PreFault::Timeout(hang)) => {
            shared.nap(hang).await;
            return status_reply(
                shared.protocol,
                StatusCode::GATEWAY_TIMEOUT,
                "upstream timed out",
            );
        }
        Some(PreFault::Status(status)) => {
            return status_reply(shared.protocol, status, "sandbox fault");
        }
        Some(PreFault::TooMany(retry_after)) => {
            let mut resp = status_reply(
                shared.protocol,
                StatusCode::TOO_MANY_REQUESTS,
                "rate limited",
            );
            if let Some(secs) = retry_after {
                resp.headers_mut()
                    .insert(header::RETRY_AFTER, HeaderValue::from(secs));
            }
            return resp;
        }
        None => {}
    }
    let call = Call {
        headers: &parts.headers,
        query: parts.uri.query(),
        body: &bytes,
    };
    let reply = handle(&shared, ep, &call);
    if reply.accepted_send {
        let slow = {
            let mut g = shared.lock();
            let f = g.faults.clone();
            if g.hit(f.drop_reply) {
                g.count_fault("drop");
                return dropped_reply(&reply.body);
            }
            if g.hit(f.malformed) {
                g.count_fault("malformed");
                return malformed_reply(&reply.body);
            }
            let slow = g.hit(f.slow_reply);
            if slow {
                g.count_fault("slow");
            }
            slow.then_some(f.hang)
        };
        // The message is recorded before the nap: a client that gives up
        // cannot undo it.
        if let Some(hang) = slow {
            shared.nap(hang).await;
        }
    }
    json_response(reply.status, &reply.body)
}

#[derive(Deserialize)]
struct StatsQuery {
    detail: Option<String>,
}

async fn stats_endpoint(
    State(shared): State<Arc<Shared>>,
    Query(q): Query<StatsQuery>,
) -> Response {
    let detail = !matches!(q.detail.as_deref(), Some("false" | "0" | "no"));
    let stats = shared.lock().snapshot(detail);
    json_response(
        StatusCode::OK,
        &serde_json::to_value(stats).unwrap_or_default(),
    )
}

/// A control request, parsed by hand so unknown keys are refused.
#[derive(Default)]
struct Control {
    faults: Option<Map<String, Value>>,
    daily_quota: Option<u64>,
    latency_ms: Option<u64>,
    advance_days: Option<i64>,
    expire_tokens: bool,
}

fn parse_control(body: &[u8]) -> Result<Control, String> {
    let obj = if body.iter().all(u8::is_ascii_whitespace) {
        Map::new()
    } else {
        parse_object(body)?
    };
    let mut c = Control::default();
    for (k, v) in &obj {
        match k.as_str() {
            "faults" => match v {
                Value::Object(m) => c.faults = Some(m.clone()),
                _ => return Err("faults: expected an object".to_string()),
            },
            "daily_quota" => {
                c.daily_quota = Some(v.as_u64().ok_or("daily_quota: expected an integer ≥ 0")?)
            }
            "latency_ms" => {
                c.latency_ms = Some(v.as_u64().ok_or("latency_ms: expected an integer ≥ 0")?)
            }
            "advance_days" => {
                c.advance_days = Some(v.as_i64().ok_or("advance_days: expected an integer")?)
            }
            "expire_tokens" => {
                c.expire_tokens = v.as_bool().ok_or("expire_tokens: expected a boolean")?
            }
            other => return Err(format!("unknown control field `{other}`")),
        }
    }
    Ok(c)
}

/// Apply the given fault fields over `base`; absent fields keep their value.
fn merge_faults(mut f: Faults, m: &Map<String, Value>) -> Result<Faults, String> {
    for (k, v) in m {
        let prob = || {
            v.as_f64()
                .filter(|p| (0.0..=1.0).contains(p))
                .ok_or_else(|| format!("faults.{k}: expected a probability in 0..=1"))
        };
        match k.as_str() {
            "http_5xx" => f.http_5xx = prob()?,
            "http_429" => f.http_429 = prob()?,
            "drop_reply" => f.drop_reply = prob()?,
            "timeout" => f.timeout = prob()?,
            "malformed" => f.malformed = prob()?,
            "slow_reply" => f.slow_reply = prob()?,
            "retry_after_secs" => {
                f.retry_after_secs = match v {
                    Value::Null => None,
                    _ => Some(
                        v.as_u64()
                            .ok_or("faults.retry_after_secs: expected an integer or null")?,
                    ),
                }
            }
            "hang_ms" => {
                f.hang =
                    Duration::from_millis(v.as_u64().ok_or("faults.hang_ms: expected an integer")?)
            }
            "apply_to_tokens" => {
                f.apply_to_tokens = v
                    .as_bool()
                    .ok_or("faults.apply_to_tokens: expected a boolean")?
            }
            other => return Err(format!("unknown fault field `{other}`")),
        }
    }
    Ok(f)
}

async fn control_endpoint(State(shared): State<Arc<Shared>>, body: Bytes) -> Response {
    let bad = |msg: String| {
        json_response(
            StatusCode::BAD_REQUEST,
            &serde_json::json!({ "error": msg }),
        )
    };
    let c = match parse_control(&body) {
        Ok(c) => c,
        Err(e) => return bad(e),
    };
    let handle = SandboxHandle(shared.clone());
    if let Some(m) = &c.faults {
        let current = shared.lock().faults.clone();
        match merge_faults(current, m) {
            Ok(f) => handle.set_faults(f),
            Err(e) => return bad(e),
        }
    }
    if let Some(q) = c.daily_quota {
        handle.set_daily_quota(q);
    }
    if let Some(ms) = c.latency_ms {
        handle.set_latency(Duration::from_millis(ms));
    }
    if let Some(d) = c.advance_days {
        handle.advance_day(d);
    }
    if c.expire_tokens {
        handle.expire_tokens();
    }
    let stats = shared.lock().snapshot(false);
    json_response(
        StatusCode::OK,
        &serde_json::to_value(stats).unwrap_or_default(),
    )
}

fn router(shared: Arc<Shared>) -> Router {
    Router::new()
        .route("/__sandbox/stats", get(stats_endpoint))
        .route("/__sandbox/control", post(control_endpoint))
        .route("/__sandbox/health", get(|| async { "ok" }))
        .fallback(api)
        .with_state(shared)
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

fn bind(listen: SocketAddr) -> std::io::Result<tokio::net::TcpListener> {
    let socket = if listen.is_ipv4() {
        tokio::net::TcpSocket::new_v4()?
    } else {
        tokio::net::TcpSocket::new_v6()?
    };
    // So a test can stop one sandbox and start another on the same port.
    socket.set_reuseaddr(true)?;
    socket.set_nodelay(true)?;
    socket.bind(listen)?;
    socket.listen(1024)
}

fn serve(
    listener: tokio::net::TcpListener,
    shared: Arc<Shared>,
    mut stop_rx: watch::Receiver<bool>,
) -> JoinHandle<()> {
    let app = router(shared);
    tokio::spawn(async move {
        let serve = axum::serve(listener, app).with_graceful_shutdown(async move {
            let _ = stop_rx.wait_for(|stopping| *stopping).await;
        });
        if let Err(e) = serve.await {
            tracing::warn!("sandbox server stopped: {e}");
        }
    })
}

pub struct Sandbox {
    addr: SocketAddr,
    handle: SandboxHandle,
    shutdown: watch::Sender<bool>,
    task: Option<JoinHandle<()>>,
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
        let shared = Arc::new(Shared {
            protocol: config.protocol.protocol(),
            api_key: config.api_key,
            secret_key: config.secret_key,
            token_ttl: config.token_ttl,
            unknown_phone_suffixes: config.unknown_phone_suffixes,
            dedup: config.dedup,
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
            }),
        });
        let task = serve(listener, shared.clone(), rx);
        Ok(Sandbox {
            addr,
            handle: SandboxHandle(shared),
            shutdown: tx,
            task: Some(task),
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
        let _ = self.shutdown.send(true);
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

// ---------------------------------------------------------------------------
// Standalone CLI

#[derive(Clone, clap::Args)]
pub struct SandboxArgs {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:8765")]
    pub listen: SocketAddr,
    /// Protocol to speak (sandbox = etelecom).
    #[arg(long, value_enum, default_value = "etelecom")]
    pub protocol: ProviderKind,
    /// Key the sandbox expects (eTelecom bearer key, Zalo access_token, eSMS ApiKey).
    #[arg(
        long,
        env = "ZNS_SANDBOX_API_KEY",
        default_value = "sandbox-key",
        hide_env_values = true
    )]
    pub api_key: String,
    /// eSMS SecretKey the sandbox expects.
    #[arg(long, default_value = "sandbox-secret", hide_env_values = true)]
    pub secret_key: String,
    /// New messages per OA per day; 0 = unlimited.
    #[arg(long, default_value_t = 0)]
    pub daily_quota: u64,
    /// Latency added to every request, in ms.
    #[arg(long, default_value_t = 0)]
    pub latency_ms: u64,
    /// Probability of a 500/502/503 (request not processed).
    #[arg(long, default_value_t = 0.0)]
    pub fail_5xx: f64,
    /// Probability of a 429 (request not processed).
    #[arg(long, default_value_t = 0.0)]
    pub fail_429: f64,
    /// Retry-After seconds on 429s.
    #[arg(long)]
    pub retry_after: Option<u64>,
    /// Probability that an accepted send's reply is broken off.
    #[arg(long, default_value_t = 0.0)]
    pub drop_reply: f64,
    /// Probability that a request hangs for --hang-ms, then gets a 504.
    #[arg(long, default_value_t = 0.0)]
    pub timeout_rate: f64,
    #[arg(long, default_value_t = 30000)]
    pub hang_ms: u64,
    /// Probability that an accepted send gets a truncated 200 body.
    #[arg(long, default_value_t = 0.0)]
    pub malformed: f64,
    /// Probability that an accepted send is answered only after --hang-ms.
    #[arg(long, default_value_t = 0.0)]
    pub slow_reply: f64,
    /// Phones ending with this are "not on Zalo" (repeatable).
    #[arg(long = "unknown-phone-suffix")]
    pub unknown_phone_suffixes: Vec<String>,
    /// Turn off dedup by tracking_id / RequestId.
    #[arg(long)]
    pub no_dedup: bool,
    /// RNG seed for faults and tokens.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
}

// Hand-written so the keys never reach a log line.
impl std::fmt::Debug for SandboxArgs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SandboxArgs")
            .field("listen", &self.listen)
            .field("protocol", &self.protocol)
            .field("api_key", &"***")
            .field("secret_key", &"***")
            .field("daily_quota", &self.daily_quota)
            .field("latency_ms", &self.latency_ms)
            .field("fail_5xx", &self.fail_5xx)
            .field("fail_429", &self.fail_429)
            .field("retry_after", &self.retry_after)
            .field("drop_reply", &self.drop_reply)
            .field("timeout_rate", &self.timeout_rate)
            .field("hang_ms", &self.hang_ms)
            .field("malformed", &self.malformed)
            .field("slow_reply", &self.slow_reply)
            .field("unknown_phone_suffixes", &self.unknown_phone_suffixes)
            .field("no_dedup", &self.no_dedup)
            .field("seed", &self.seed)
            .finish()
    }
}

impl SandboxArgs {
    pub fn to_config(&self) -> Result<SandboxConfig, String> {
        let faults = Faults {
            http_5xx: self.fail_5xx,
            http_429: self.fail_429,
            retry_after_secs: self.retry_after,
            drop_reply: self.drop_reply,
            timeout: self.timeout_rate,
            hang: Duration::from_millis(self.hang_ms),
            malformed: self.malformed,
            slow_reply: self.slow_reply,
            apply_to_tokens: true,
        };
        if let Some((name, p)) = faults.invalid_probability() {
            let flag = match name {
                "http_5xx" => "--fail-5xx",
                "http_429" => "--fail-429",
                "drop_reply" => "--drop-reply",
                "timeout" => "--timeout-rate",
                "slow_reply" => "--slow-reply",
                _ => "--malformed",
            };
            return Err(format!("{flag} {p}: a probability must be between 0 and 1"));
        }
        if self.api_key.is_empty() {
            return Err("--api-key must not be empty".to_string());
        }
        Ok(SandboxConfig {
            protocol: self.protocol.protocol(),
            api_key: self.api_key.clone(),
            secret_key: self.secret_key.clone(),
            daily_quota: self.daily_quota,
            latency: Duration::from_millis(self.latency_ms),
            faults,
            token_ttl: None,
            unknown_phone_suffixes: self.unknown_phone_suffixes.clone(),
            dedup: !self.no_dedup,
            seed: self.seed,
        })
    }
}

/// Run a sandbox until Ctrl-C or SIGTERM, then print a stats summary.
pub async fn serve_until_ctrl_c(args: SandboxArgs) -> anyhow::Result<()> {
    use std::io::Write;

    let config = args.to_config().map_err(anyhow::Error::msg)?;
    let protocol = config.protocol;
    let sandbox = Sandbox::start(args.listen, config)
        .await
        .map_err(|e| anyhow::anyhow!("cannot listen on {}: {e}", args.listen))?;
    {
        let mut out = std::io::stdout().lock();
        writeln!(out, "listening on http://{}", sandbox.addr())?;
        writeln!(out, "base URL: {}", sandbox.base_url())?;
        out.flush()?;
    }
    eprintln!(
        "sandbox speaking {protocol}; expects the key given by --api-key{}; \
         stats at http://{}/__sandbox/stats?detail=false; Ctrl-C to stop",
        if protocol == ProviderKind::Esms {
            " and --secret-key"
        } else {
            ""
        },
        sandbox.addr()
    );
    wait_for_stop_signal().await;
    let stats = sandbox.stats_summary();
    sandbox.stop().await;
    println!("{}", summary_line(&stats));
    Ok(())
}

async fn wait_for_stop_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        if let Ok(mut term) = signal(SignalKind::terminate()) {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
            return;
        }
    }
    let _ = tokio::signal::ctrl_c().await;
}

fn summary_line(s: &Stats) -> String {
    let faults: Vec<String> = s
        .faults_injected
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    format!(
        "sandbox stats: day {} | tokens {} (checks {}) | send requests {} | accepted {} | \
         duplicates absorbed {} | quota rejections {} (used today {}) | auth failures {} | \
         get_message {} | faults [{}]",
        s.day,
        s.tokens_created,
        s.token_checks,
        s.send_requests,
        s.accepted,
        s.duplicates_absorbed,
        s.quota_rejections,
        s.quota_used_today,
        s.auth_failures,
        s.get_message_calls,
        faults.join(" ")
    )
}

#[cfg(test)]
mod tests;
