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
//!
//! This module builds and queues the calls; `callback_sender` sends them.

use std::time::Duration;

use rand::rngs::StdRng;
use rand::Rng;
use serde_json::json;
use time::OffsetDateTime;
use tokio::sync::mpsc;
use tokio::time::Instant;

use super::fate::{delivery_of, DELIVERY_DELAY};
use super::ids::{msg_id_of, rfc3339, unix_ms};
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
pub(crate) enum Request {
    /// Zalo: JSON body and its `X-ZEvent-Signature`.
    SignedPost { body: String, mac: String },
    /// eTelecom: JSON body, unsigned.
    Post { body: String },
    /// eSMS: everything in the query string.
    Get { query: Vec<(String, String)> },
}

#[derive(Debug, Clone)]
pub(crate) struct Job {
    pub(crate) due: Instant,
    pub(crate) url: String,
    pub(crate) request: Request,
}

/// An accepted message, as its callback tells of it.
pub(crate) struct Accepted<'a> {
    /// Its index: its msg_id and its fate ([`delivery_of`]).
    pub(crate) n: usize,
    pub(crate) oa: &'a str,
    pub(crate) phone: &'a str,
    pub(crate) template_id: i64,
    pub(crate) tracking_id: &'a str,
    /// When it was sent, on the real clock (the one replies show).
    pub(crate) sent: OffsetDateTime,
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

    /// Queue the callback for a newly accepted message, to the send's own
    /// URL if it gave one, else the configured one; nothing without either.
    /// `rng` is the sandbox's (a seeded run repeats itself).
    pub(crate) fn on_accepted(
        &self,
        protocol: ProviderKind,
        m: Accepted<'_>,
        rng: &mut StdRng,
        send_url: Option<&str>,
    ) {
        let Some(url) = send_url
            .filter(|u| check_url(u).is_ok())
            .or(self.url.as_deref())
        else {
            return;
        };
        let delivered = delivery_of(m.n, DELIVERY_DELAY).1;
        let msg_id = if self.settings.unknown_msg_id {
            format!("{:020x}", rng.random::<u64>())
        } else {
            msg_id_of(m.n)
        };
        let delivered_at = m.sent + DELIVERY_DELAY;
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
                    ("RequestId", m.tracking_id.to_string()),
                    ("partnerids", msg_id),
                    ("error_info", info.to_string()),
                    ("oaid", m.oa.to_string()),
                    ("tempid", m.template_id.to_string()),
                    ("phonenumber", m.phone.to_string()),
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
