//! Live progress for `GET /api/v1/campaigns/{name}/events` (SSE): one
//! poller task per campaign with at least one open stream reads the
//! progress once a tick and publishes it, serialised once, on a
//! `watch` channel that every stream of that campaign reads. A slow
//! client only ever misses intermediate ticks (a watch keeps the latest
//! value, nothing queues per connection); the poller ends when the last
//! stream of its campaign closes. Streams are capped (config
//! `max_event_streams`): past the cap, 503 with `Retry-After`.

use std::collections::HashMap;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::sync::{watch, OwnedSemaphorePermit, Semaphore};

use super::campaigns::{self, Campaigns};
use crate::campaign::Reader;

/// How often a poller publishes.
const TICK: Duration = Duration::from_secs(1);
/// While a run is live here its in-memory counters go out every tick, the
/// stored counts (seconds to count at a million rows) every this many.
const STORED_EVERY: u64 = 5;

/// The latest progress event's JSON, shared by every stream.
type Payload = Option<Arc<str>>;
type Channel = Arc<watch::Sender<Payload>>;

/// Why a stream was not opened.
#[derive(Debug, thiserror::Error)]
pub enum Refused {
    #[error("too many live-progress streams are open ({0}); retry shortly")]
    Full(usize),
    #[error("serve is stopping")]
    Stopping,
}

/// Every campaign's poller, and the cap on open streams.
pub struct Broadcasters {
    /// The pollers' own connection: their reads never wait behind a page's.
    reader: Arc<Mutex<Reader>>,
    campaigns: Arc<Campaigns>,
    channels: Mutex<HashMap<String, Channel>>,
    streams: Arc<Semaphore>,
    max_streams: usize,
    pollers: AtomicI64,
    reads: AtomicU64,
    stop: watch::Sender<bool>,
}

/// One open stream: the campaign's channel and a place under the cap
/// (given back when the stream is dropped, i.e. the client went away).
pub struct Subscription {
    rx: watch::Receiver<Payload>,
    _permit: OwnedSemaphorePermit,
}

impl Subscription {
    /// The next progress event's JSON; None once the poller has ended
    /// (serve stopping). The first call answers at once if a value exists.
    pub async fn next(&mut self) -> Option<Arc<str>> {
        loop {
            self.rx.changed().await.ok()?;
            if let Some(p) = self.rx.borrow_and_update().clone() {
                return Some(p);
            }
        }
    }
}

impl Broadcasters {
    pub fn new(reader: Reader, campaigns: Arc<Campaigns>, max_streams: usize) -> Arc<Self> {
        Arc::new(Broadcasters {
            reader: Arc::new(Mutex::new(reader)),
            campaigns,
            channels: Mutex::new(HashMap::new()),
            streams: Arc::new(Semaphore::new(max_streams)),
            max_streams,
            pollers: AtomicI64::new(0),
            reads: AtomicU64::new(0),
            stop: watch::Sender::new(false),
        })
    }

    fn channels(&self) -> MutexGuard<'_, HashMap<String, Channel>> {
        // A panic while holding the lock cannot leave the map half-changed.
        self.channels.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Open a stream of `name`'s progress (the caller checked it exists),
    /// starting its poller if it has none.
    pub fn subscribe(self: &Arc<Self>, name: &str) -> Result<Subscription, Refused> {
        if *self.stop.borrow() {
            return Err(Refused::Stopping);
        }
        let permit = self
            .streams
            .clone()
            .try_acquire_owned()
            .map_err(|_| Refused::Full(self.max_streams))?;
        let mut channels = self.channels();
        let mut rx = match channels.get(name) {
            Some(tx) => tx.subscribe(),
            None => {
                let (tx, rx) = watch::channel(None);
                let tx = Arc::new(tx);
                channels.insert(name.to_string(), tx.clone());
                self.pollers.fetch_add(1, Ordering::Relaxed);
                tokio::spawn(self.clone().poll(name.to_string(), tx));
                rx
            }
        };
        // A new stream gets the latest progress at once, not a tick later.
        if rx.borrow().is_some() {
            rx.mark_changed();
        }
        Ok(Subscription {
            rx,
            _permit: permit,
        })
    }

    /// End every poller (their streams then end): serve is stopping.
    pub fn shutdown(&self) {
        self.stop.send_replace(true);
    }

    /// Open streams now.
    pub fn open_streams(&self) -> usize {
        self.max_streams - self.streams.available_permits()
    }

    /// Poller tasks running now (one per watched campaign).
    pub fn pollers(&self) -> i64 {
        self.pollers.load(Ordering::Relaxed)
    }

    /// Database reads the pollers made since start.
    pub fn reads(&self) -> u64 {
        self.reads.load(Ordering::Relaxed)
    }

    /// One campaign's poller: publish a tick, until no stream is left.
    async fn poll(self: Arc<Self>, name: String, tx: Channel) {
        let mut stop = self.stop.subscribe();
        let mut ticks = tokio::time::interval(TICK);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut status: Option<serde_json::Value> = None;
        let mut tick = 0u64;
        loop {
            tokio::select! {
                _ = ticks.tick() => {}
                _ = tx.closed() => {
                    if self.retire(&name, &tx) {
                        break;
                    }
                    continue;
                }
                _ = stop.wait_for(|s| *s) => break,
            }
            if *stop.borrow() {
                break;
            }
            let live = self.campaigns.live(&name);
            if live.is_none() || tick.is_multiple_of(STORED_EVERY) {
                status = self.read_status(&name).await;
            }
            let payload = serde_json::json!({ "status": status, "live": live }).to_string();
            tx.send_replace(Some(payload.into()));
            tick += 1;
        }
        let mut channels = self.channels();
        if channels.get(&name).is_some_and(|c| Arc::ptr_eq(c, &tx)) {
            channels.remove(&name);
        }
        drop(channels);
        self.pollers.fetch_sub(1, Ordering::Relaxed);
    }

    /// The last stream left: forget the channel, unless a stream opened
    /// meanwhile (both happen under the map's lock, so none is missed).
    fn retire(&self, name: &str, tx: &Channel) -> bool {
        let mut channels = self.channels();
        if tx.receiver_count() > 0 {
            return false;
        }
        if channels.get(name).is_some_and(|c| Arc::ptr_eq(c, tx)) {
            channels.remove(name);
        }
        true
    }

    /// The campaign's `status --json` object (null if it cannot be read).
    async fn read_status(&self, name: &str) -> Option<serde_json::Value> {
        self.reads.fetch_add(1, Ordering::Relaxed);
        let reader = self.reader.clone();
        let owned = name.to_string();
        let read = tokio::task::spawn_blocking(move || {
            let store = reader.lock().unwrap_or_else(|p| p.into_inner());
            campaigns::status_one(&store, &owned)
        })
        .await;
        match read {
            Ok(Ok(line)) => serde_json::to_value(line).ok(),
            Ok(Err(e)) => {
                tracing::warn!(campaign = %name, "live progress: {e}");
                None
            }
            Err(e) => {
                tracing::warn!(campaign = %name, "live progress: {e}");
                None
            }
        }
    }
}
