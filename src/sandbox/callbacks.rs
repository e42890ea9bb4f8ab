//! Delivery callbacks: after the simulated delivery delay the sandbox tells
//! the client's receiver what happened, in each provider's own shape —
//! Zalo's signed `user_received_message` POST, eSMS's CallbackUrl GET, an
//! eTelecom `zl_oa_message` webhook POST. Retried with backoff on a non-2xx
//! or a connection error, a bounded number of times, a bounded number at
//! once. Faults (duplicates, reordering, bad signatures, unknown msg ids,
//! bursts) test the receiver's robustness.
//!
//! Only the configured URL, or the URL a send carried (eSMS `CallbackUrl`),
//! is ever called.

use std::sync::Arc;
use std::time::Duration;

use rand::seq::SliceRandom;
use rand::Rng;
use serde_json::json;
use tokio::sync::{mpsc, Semaphore};
use tokio::task::JoinSet;
use tokio::time::Instant;

use super::state::{msg_id_of, rfc3339, unix_ms, Inner, Shared};
use super::wire::etelecom::{delivery_of, DELIVERY_DELAY};
use super::ProviderKind;

/// How callbacks are timed, retried and disturbed.
#[derive(Debug, Clone, PartialEq)]
pub struct CallbackSettings {
    /// From acceptance to the callback (the simulated delivery).
    pub delay: Duration,
    /// Tries per callback before it is given up.
    pub attempts: u32,
    /// Wait before the first retry; doubled for each further one.
    pub backoff: Duration,
    /// Callbacks in flight at once.
    pub concurrency: usize,
    /// Per request.
    pub timeout: Duration,
    /// Fault: every callback is sent twice.
    pub duplicate: bool,
    /// Fault: callbacks are sent in random order within groups of this many
    /// (0 or 1: in order).
    pub out_of_order: usize,
    /// Fault: Zalo callbacks carry a signature made with the wrong secret.
    pub bad_signature: bool,
    /// Fault: callbacks name a msg_id the sandbox never issued.
    pub unknown_msg_id: bool,
    /// Fault: callbacks are held until none has been queued for `delay`,
    /// then all are released at once (still `concurrency` in flight).
    pub burst: bool,
}

impl Default for CallbackSettings {
    fn default() -> Self {
        Self {
            delay: Duration::try_from(DELIVERY_DELAY).unwrap_or(Duration::from_secs(1)),
            attempts: 5,
            backoff: Duration::from_secs(1),
            concurrency: 8,
            timeout: Duration::from_secs(5),
            duplicate: false,
            out_of_order: 0,
            bad_signature: false,
            unknown_msg_id: false,
            burst: false,
        }
    }
}

/// One HTTP call to make.
#[derive(Debug, Clone)]
enum Request {
    /// Zalo: JSON body and its `X-ZEvent-Signature`.
    SignedPost { body: String, mac: String },
    /// eTelecom: JSON body, unsigned.
    Post { body: String },
    /// eSMS: everything in the query string.
    Get { query: Vec<(String, String)> },
}

#[derive(Debug, Clone)]
pub(crate) struct Job {
    due: Instant,
    url: String,
    request: Request,
}

/// What the send handlers need to queue callbacks.
pub(crate) struct CallbackQueue {
    tx: mpsc::UnboundedSender<Job>,
    url: Option<String>,
    settings: CallbackSettings,
    app_id: String,
    oa_secret: String,
}

/// Where the configured callback URL may point: http(s) only.
pub fn check_url(url: &str) -> Result<(), String> {
    match reqwest::Url::parse(url) {
        Ok(u) if matches!(u.scheme(), "http" | "https") && u.host().is_some() => Ok(()),
        // The URL is not echoed: its path may hold a webhook token.
        _ => Err(
            "the callback URL is not an http(s) URL such as http://127.0.0.1:9000/zns".to_string(),
        ),
    }
}

/// Zalo's webhook signature: `mac=` hex SHA-256 of app id, raw body,
/// timestamp and secret.
pub fn zalo_signature(app_id: &str, body: &str, timestamp: &str, secret: &str) -> String {
    let mac = crate::provider::zalo::webhook_mac(app_id, body.as_bytes(), timestamp, secret);
    format!("mac={mac}")
}

impl CallbackQueue {
    pub(crate) fn new(
        url: Option<String>,
        settings: CallbackSettings,
        app_id: String,
        oa_secret: String,
    ) -> (Self, mpsc::UnboundedReceiver<Job>) {
        let (tx, rx) = mpsc::unbounded_channel();
        let q = Self {
            tx,
            url,
            settings,
            app_id,
            oa_secret,
        };
        (q, rx)
    }

    /// Queue the callback for newly accepted message `n`, to the send's own
    /// URL if it gave one, else the configured one; nothing without either.
    pub(crate) fn on_accepted(
        &self,
        protocol: ProviderKind,
        g: &mut Inner,
        n: usize,
        send_url: Option<&str>,
    ) {
        let Some(url) = send_url
            .filter(|u| check_url(u).is_ok())
            .or(self.url.as_deref())
        else {
            return;
        };
        let Some(m) = g.messages.get(n) else { return };
        let delivered = delivery_of(n, DELIVERY_DELAY).1;
        let msg_id = if self.settings.unknown_msg_id {
            format!("{:020x}", g.rng.random::<u64>())
        } else {
            msg_id_of(n)
        };
        let delivered_at = g.wire(m.sent + DELIVERY_DELAY);
        let request = match protocol.protocol() {
            // Zalo reports deliveries only: no event for a failed message.
            ProviderKind::Zalo if !delivered => return,
            ProviderKind::Zalo => {
                let timestamp = (unix_ms(delivered_at) + 40).to_string();
                let body = json!({
                    "sender": { "id": m.oa },
                    "recipient": { "id": m.phone },
                    "event_name": "user_received_message",
                    "message": {
                        "delivery_time": unix_ms(delivered_at).to_string(),
                        "msg_id": msg_id,
                        "tracking_id": m.tracking_id,
                    },
                    "app_id": self.app_id,
                    "timestamp": timestamp,
                })
                .to_string();
                let secret = if self.settings.bad_signature {
                    "not-the-oa-secret"
                } else {
                    self.oa_secret.as_str()
                };
                let mac = zalo_signature(&self.app_id, &body, &timestamp, secret);
                Request::SignedPost { body, mac }
            }
            ProviderKind::Esms => {
                let (status, ok, failed, info) = if delivered {
                    ("5", "1", "0", json!({"error": 0, "message": "Success"}))
                } else {
                    let why = "user inactive, refused ZNS, old app or internal reason";
                    ("4", "0", "1", json!({"error": -114, "message": why}))
                };
                let pairs = [
                    ("SMSID", msg_id.clone()),
                    ("SendStatus", status.to_string()),
                    ("SendSuccess", ok.to_string()),
                    ("SendFailed", failed.to_string()),
                    ("RequestId", m.tracking_id.clone()),
                    ("partnerids", msg_id),
                    ("error_info", info.to_string()),
                    ("oaid", m.oa.clone()),
                    ("tempid", m.template_id.to_string()),
                    ("phonenumber", m.phone.clone()),
                    ("TypeId", "27".to_string()),
                ];
                Request::Get {
                    query: pairs.map(|(k, v)| (k.to_string(), v)).to_vec(),
                }
            }
            // eTelecom documents the `zl_oa_message` entity but not its
            // payload: this shape mirrors GetMessage's fields (our choice).
            _ => {
                let status = if delivered { "received" } else { "failed" };
                let body = json!({
                    "entity": "zl_oa_message",
                    "data": {
                        "msg_id": msg_id,
                        "tracking_id": m.tracking_id,
                        "delivery_status": status,
                        "delivery_time": if delivered { json!(rfc3339(delivered_at)) } else { json!(null) },
                        "oa_id": m.oa,
                        "phone": m.phone,
                        "template_id": m.template_id.to_string(),
                    }
                })
                .to_string();
                Request::Post { body }
            }
        };
        let job = Job {
            due: Instant::now() + self.settings.delay,
            url: url.to_string(),
            request,
        };
        if self.settings.duplicate {
            let _ = self.tx.send(job.clone());
        }
        let _ = self.tx.send(job);
    }
}

/// The dispatcher: waits for callbacks to come due, then sends them.
/// Aborting its task aborts the callbacks in flight.
pub(crate) async fn dispatch(
    shared: Arc<Shared>,
    settings: CallbackSettings,
    mut rx: mpsc::UnboundedReceiver<Job>,
) {
    let client = match reqwest::Client::builder()
        .timeout(settings.timeout)
        .redirect(reqwest::redirect::Policy::none())
        .build()
    {
        Ok(c) => c,
        Err(e) => {
            tracing::warn!("sandbox callbacks disabled: {e}");
            return;
        }
    };
    let permits = Arc::new(Semaphore::new(settings.concurrency.max(1)));
    let mut in_flight = JoinSet::new();
    // Arrival order is due order: the delay is the same for every job.
    let mut pending: std::collections::VecDeque<Job> = Default::default();
    let mut last_arrival = Instant::now();
    loop {
        let window = settings.out_of_order;
        let next = match pending.front() {
            None => None,
            Some(_) if settings.burst => Some(last_arrival + settings.delay),
            // Reordering needs company: wait for a full group, or one more
            // delay for a group that never fills.
            Some(j) if window > 1 && pending.len() < window => Some(j.due + settings.delay),
            Some(j) => Some(j.due),
        };
        tokio::select! {
            job = rx.recv() => match job {
                Some(job) => {
                    last_arrival = Instant::now();
                    pending.push_back(job);
                }
                None => break,
            },
            _ = sleep_until_some(next) => {
                let now = Instant::now();
                let mut due: Vec<Job> = if window > 1 && !settings.burst {
                    // A group goes out together, a little early for its last.
                    let n = window.min(pending.len());
                    pending.drain(..n).collect()
                } else {
                    let mut due = Vec::new();
                    while pending.front().is_some_and(|j| settings.burst || j.due <= now) {
                        due.extend(pending.pop_front());
                    }
                    due
                };
                if window > 1 {
                    let mut g = shared.lock();
                    for group in due.chunks_mut(window) {
                        group.shuffle(&mut g.rng);
                    }
                }
                for job in due {
                    let permit = permits.clone().acquire_owned().await.ok();
                    let (client, shared, settings) = (client.clone(), shared.clone(), settings.clone());
                    in_flight.spawn(async move {
                        deliver(&client, &shared, &settings, job).await;
                        drop(permit);
                    });
                }
            }
            Some(_) = in_flight.join_next(), if !in_flight.is_empty() => {}
        }
    }
    while in_flight.join_next().await.is_some() {}
}

async fn sleep_until_some(t: Option<Instant>) {
    match t {
        Some(t) => tokio::time::sleep_until(t).await,
        None => std::future::pending().await,
    }
}

/// Send one callback, retrying with doubling backoff.
async fn deliver(client: &reqwest::Client, shared: &Shared, s: &CallbackSettings, job: Job) {
    let mut wait = s.backoff;
    for attempt in 1..=s.attempts.max(1) {
        shared.lock().stats.callbacks_sent += 1;
        let req = match &job.request {
            Request::SignedPost { body, mac } => client
                .post(&job.url)
                .header("content-type", "application/json")
                .header("X-ZEvent-Signature", mac)
                .header("X-ZEvent-Server", "ZNS")
                .body(body.clone()),
            Request::Post { body } => client
                .post(&job.url)
                .header("content-type", "application/json")
                .body(body.clone()),
            Request::Get { query } => client.get(&job.url).query(query),
        };
        if req.send().await.is_ok_and(|r| r.status().is_success()) {
            shared.lock().stats.callbacks_acknowledged += 1;
            return;
        }
        if attempt < s.attempts {
            tokio::time::sleep(wait).await;
            wait = wait.saturating_mul(2);
        }
    }
    shared.lock().stats.callbacks_given_up += 1;
}
