//! The sandbox's memory: journeys (tokens), messages, the dedup tables and
//! the daily quota count, behind one mutex.

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::Rng;
use time::OffsetDateTime;
use tokio::sync::watch;

use super::callbacks::{Accepted, CallbackQueue};
use super::ids::{JOURNEY_ID_BASE, MSG_ID_MASK, MSG_ID_PREFIX};
use super::{Faults, ProviderKind, Stats, TemplateSpec};
use crate::model::clock::{day_key, oa_day};

/// Daily quota reported when the sandbox has none (Zalo's top tier).
const UNLIMITED_QUOTA_REPORT: u64 = 500_000;

// Zalo OAuth (served by `oauth`)

/// Zalo OAuth faults (see `oauth`'s note).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct OAuthFaults {
    pub refresh_delay: Duration,
    pub lose_refresh_reply: bool,
}

pub(crate) struct Code {
    pub(crate) challenge: String,
    pub(crate) issued: Instant,
}

#[derive(Default)]
pub(crate) struct OAuthState {
    pub(crate) codes: HashMap<String, Code>,
    /// Access token → when it expires.
    pub(crate) access: HashMap<String, Instant>,
    /// Refresh token → used already.
    pub(crate) refresh: HashMap<String, bool>,
    pub(crate) serial: u64,
}

impl OAuthState {
    pub(crate) fn access_valid(&self, token: &str) -> bool {
        self.access
            .get(token)
            .is_some_and(|exp| Instant::now() < *exp)
    }
}

// Shared state

/// One journey token as issued.
pub(crate) struct Journey {
    pub(crate) oa: String,
    pub(crate) phone: String,
    pub(crate) token: String,
    /// Sandbox clock.
    pub(crate) created: OffsetDateTime,
    pub(crate) expires: OffsetDateTime,
    /// The token fee has been charged (on the first message that used it).
    pub(crate) charged: bool,
}

/// One accepted message. Kept small: a benchmark may leave a million.
pub(crate) struct Message {
    pub(crate) oa: String,
    pub(crate) journey: Option<usize>,
    pub(crate) phone: String,
    pub(crate) template_id: i64,
    pub(crate) tracking_id: String,
    /// Sandbox clock.
    pub(crate) sent: OffsetDateTime,
    /// This message carried its journey token's fee (set by `admit`).
    pub(crate) token_charged: bool,
}

/// What a send came to once it passed every check.
pub(crate) enum Admission {
    New(usize),
    Replay(usize),
    OverQuota,
}

pub(crate) struct Inner {
    pub(crate) faults: Faults,
    pub(crate) daily_quota: u64,
    pub(crate) latency: Duration,
    pub(crate) offset_days: i64,
    pub(crate) rng: StdRng,
    pub(crate) rotate_5xx: u64,
    pub(crate) journeys: Vec<Journey>,
    pub(crate) token_index: HashMap<String, usize>,
    pub(crate) messages: Vec<Message>,
    /// "oa\0tracking_id" → message index.
    pub(crate) dedup_index: HashMap<String, usize>,
    /// "oa\0tracking_id" → first message, de-duplicating or not (lookups).
    pub(crate) tracking_index: HashMap<String, usize>,
    /// (oa, Julian day) → new messages accepted.
    pub(crate) quota_used: HashMap<(String, i32), u64>,
    pub(crate) stats: Stats,
    pub(crate) oauth: OAuthState,
    pub(crate) oauth_faults: OAuthFaults,
}

pub(crate) struct Shared {
    pub(crate) protocol: ProviderKind,
    pub(crate) api_key: String,
    pub(crate) zalo_app_id: String,
    pub(crate) zalo_app_secret: String,
    pub(crate) access_token_ttl: Duration,
    pub(crate) secret_key: String,
    pub(crate) token_ttl: Option<Duration>,
    pub(crate) unknown_phone_suffixes: Vec<String>,
    pub(crate) dedup: bool,
    pub(crate) templates: HashMap<String, TemplateSpec>,
    /// Delivery callbacks; None when off.
    pub(crate) callbacks: Option<CallbackQueue>,
    pub(crate) shutdown: watch::Receiver<bool>,
    pub(crate) inner: Mutex<Inner>,
}

impl Shared {
    pub(crate) fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panic elsewhere must not take the sandbox down with it.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Queue the delivery callback for newly accepted message `n`.
    pub(crate) fn on_accepted(&self, g: &mut Inner, n: usize, send_url: Option<&str>) {
        let (Some(q), Some(m)) = (&self.callbacks, g.messages.get(n)) else {
            return;
        };
        let accepted = Accepted {
            n,
            oa: &m.oa,
            phone: &m.phone,
            template_id: m.template_id,
            tracking_id: &m.tracking_id,
            sent: g.wire(m.sent),
        };
        q.on_accepted(self.protocol, accepted, &mut g.rng, send_url);
    }

    pub(crate) fn is_unknown_phone(&self, phone: &str) -> bool {
        self.unknown_phone_suffixes
            .iter()
            .any(|s| !s.is_empty() && phone.ends_with(s.as_str()))
    }

    /// Token lifetime for a token type (`token_logistics_30` → 30 days).
    pub(crate) fn ttl_for(&self, token_type: &str) -> time::Duration {
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
    pub(crate) async fn nap(&self, d: Duration) -> bool {
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
    pub(crate) async fn latency(&self, d: Duration) -> bool {
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
    pub(crate) fn now(&self) -> OffsetDateTime {
        OffsetDateTime::now_utc() + time::Duration::days(self.offset_days)
    }

    /// A sandbox-clock instant as replies show it (real clock).
    pub(crate) fn wire(&self, t: OffsetDateTime) -> OffsetDateTime {
        t - time::Duration::days(self.offset_days)
    }

    pub(crate) fn julian_day(&self) -> i32 {
        oa_day(self.now()).to_julian_day()
    }

    pub(crate) fn quota_used_today(&self, oa: &str) -> u64 {
        let day = self.julian_day();
        self.quota_used
            .get(&(oa.to_string(), day))
            .copied()
            .unwrap_or(0)
    }

    /// (remaining, daily) as reported; an unlimited quota reports Zalo's top tier.
    pub(crate) fn quota_report(&self, oa: &str) -> (u64, u64) {
        let daily = if self.daily_quota == 0 {
            UNLIMITED_QUOTA_REPORT
        } else {
            self.daily_quota
        };
        (daily.saturating_sub(self.quota_used_today(oa)), daily)
    }

    pub(crate) fn random_token(&mut self, len: usize) -> String {
        (0..len)
            .map(|_| char::from(self.rng.sample(rand::distr::Alphanumeric)))
            .collect()
    }

    /// Issue a new token: always a new (charged) one, never a cached one, so
    /// a client that buys twice shows up in the stats.
    pub(crate) fn create_journey(&mut self, oa: &str, phone: &str, ttl: time::Duration) -> usize {
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

    pub(crate) fn journey_by_id(&self, journey_id: u64) -> Option<usize> {
        let n = usize::try_from(journey_id.checked_sub(JOURNEY_ID_BASE)?).ok()?;
        (n < self.journeys.len()).then_some(n)
    }

    pub(crate) fn journey_by_token(&self, token: &str) -> Option<usize> {
        self.token_index.get(token).copied()
    }

    pub(crate) fn journey_expired(&self, n: usize) -> bool {
        self.journeys.get(n).is_none_or(|j| j.expires <= self.now())
    }

    pub(crate) fn message_by_msg_id(&self, msg_id: &str) -> Option<usize> {
        let hex = msg_id.strip_prefix(MSG_ID_PREFIX)?;
        if hex.len() != 16 {
            return None;
        }
        let n = u64::from_str_radix(hex, 16).ok()? ^ MSG_ID_MASK;
        let n = usize::try_from(n).ok()?;
        (n < self.messages.len()).then_some(n)
    }

    /// The first message sent for a tracking id (sandbox-only lookup).
    pub(crate) fn message_by_tracking_id(&self, oa: &str, tracking_id: &str) -> Option<usize> {
        self.tracking_index
            .get(&format!("{oa}\0{tracking_id}"))
            .copied()
    }

    pub(crate) fn count_send_attempt(&mut self, tracking_id: &str) {
        if !tracking_id.is_empty() {
            *self
                .stats
                .send_requests_per_tracking_id
                .entry(tracking_id.to_string())
                .or_insert(0) += 1;
        }
    }

    /// Dedup, quota, then record a new message.
    pub(crate) fn admit(&mut self, dedup: bool, msg: Message) -> Admission {
        let key = format!("{}\0{}", msg.oa, msg.tracking_id);
        if dedup && !msg.tracking_id.is_empty() {
            if let Some(&n) = self.dedup_index.get(&key) {
                self.stats.duplicates_absorbed += 1;
                return Admission::Replay(n);
            }
        }
        let day = self.julian_day();
        let used = self.quota_used.entry((msg.oa.clone(), day)).or_insert(0);
        if self.daily_quota > 0 && *used >= self.daily_quota {
            self.stats.quota_rejections += 1;
            return Admission::OverQuota;
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
        Admission::New(n)
    }

    pub(crate) fn snapshot(&self, detail: bool) -> Stats {
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
                param_rejections: self.stats.param_rejections,
                get_message_calls: self.stats.get_message_calls,
                auth_failures: self.stats.auth_failures,
                faults_injected: self.stats.faults_injected.clone(),
                callbacks_sent: self.stats.callbacks_sent,
                callbacks_acknowledged: self.stats.callbacks_acknowledged,
                callbacks_given_up: self.stats.callbacks_given_up,
                oauth_codes_issued: self.stats.oauth_codes_issued,
                oauth_codes_exchanged: self.stats.oauth_codes_exchanged,
                oauth_refreshes: self.stats.oauth_refreshes,
                oauth_refresh_requests: self.stats.oauth_refresh_requests,
                oauth_refresh_reuses: self.stats.oauth_refresh_reuses,
                oauth_refused: self.stats.oauth_refused,
                oauth_replies_lost: self.stats.oauth_replies_lost,
                ..Stats::default()
            }
        };
        s.quota_used_today = self
            .quota_used
            .iter()
            .filter(|((_, day), _)| *day == today)
            .map(|(_, n)| n)
            .sum();
        s.day = day_key(oa_day(self.now()));
        s
    }

    pub(crate) fn count_fault(&mut self, name: &str) {
        *self
            .stats
            .faults_injected
            .entry(name.to_string())
            .or_insert(0) += 1;
    }

    /// A draw below `p` (NaN and out-of-range values clamp to never/always).
    pub(crate) fn hit(&mut self, p: f64) -> bool {
        p > 0.0 && self.rng.random::<f64>() < p
    }
}
