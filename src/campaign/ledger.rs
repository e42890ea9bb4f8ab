//! The providers' callbacks' writer (the webhooks reach it through
//! [`super::Workspace::ledger`]): one thread with its own `synchronous=FULL`
//! connection (see [`Store::open_durable`]), so a callback answered 2xx
//! survives a power loss. An fsync per callback would cap the rate at the
//! disk's fsyncs per second, so commits are grouped: the callbacks that
//! arrive while one transaction commits make the next one, and each is
//! answered only after the transaction holding it committed.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use tokio::sync::{mpsc, oneshot};

use crate::store::{EventOutcome, Location, NewEvent, Store, StoreError};

/// Most callbacks in one transaction: bounds how long the first of them
/// waits for its answer.
const MAX_BATCH: usize = 512;
/// Callbacks waiting for the writer; past this, handlers wait to queue
/// (backpressure instead of unbounded memory).
const QUEUE: usize = 4096;

type Ack = oneshot::Sender<Result<EventOutcome, Arc<StoreError>>>;

struct Job {
    event: NewEvent,
    ack: Ack,
}

/// Handle to the writer thread; the thread ends (after its last commit)
/// when every handle is dropped.
#[derive(Clone)]
pub struct LedgerWriter {
    tx: mpsc::Sender<Job>,
    commits: Arc<AtomicU64>,
}

#[derive(Debug, thiserror::Error)]
pub enum LedgerError {
    #[error("{0}")]
    Store(Arc<StoreError>),
    #[error("the ledger writer has stopped")]
    Gone,
}

impl LedgerWriter {
    pub fn start(at: impl Into<Location>) -> Result<LedgerWriter, StoreError> {
        let store = Store::open_durable(at)?;
        let (tx, rx) = mpsc::channel(QUEUE);
        let commits = Arc::new(AtomicU64::new(0));
        let counted = commits.clone();
        std::thread::Builder::new()
            .name("zns-ledger".into())
            .spawn(move || run(store, rx, &counted))
            .map_err(|e| StoreError::WriterGone(format!("cannot start the ledger writer: {e}")))?;
        Ok(LedgerWriter { tx, commits })
    }

    /// Store one callback; returns once the transaction holding it committed.
    pub async fn record(&self, event: NewEvent) -> Result<EventOutcome, LedgerError> {
        let (ack, done) = oneshot::channel();
        self.tx
            .send(Job { event, ack })
            .await
            .map_err(|_| LedgerError::Gone)?;
        match done.await {
            Ok(Ok(outcome)) => Ok(outcome),
            Ok(Err(e)) => Err(LedgerError::Store(e)),
            Err(_) => Err(LedgerError::Gone),
        }
    }

    /// Transactions committed so far (callbacks ÷ this = the group size).
    pub fn commits(&self) -> u64 {
        self.commits.load(Ordering::Relaxed)
    }
}

/// The thread: wait for one callback, take every other one already
/// queued (up to [`MAX_BATCH`]), commit them together, answer each.
fn run(mut store: Store, mut rx: mpsc::Receiver<Job>, commits: &AtomicU64) {
    let mut batch: Vec<Job> = Vec::with_capacity(MAX_BATCH);
    let mut events: Vec<NewEvent> = Vec::with_capacity(MAX_BATCH);
    while let Some(first) = rx.blocking_recv() {
        batch.push(first);
        while batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(job) => batch.push(job),
                Err(_) => break,
            }
        }
        let (jobs, acks): (Vec<NewEvent>, Vec<Ack>) =
            batch.drain(..).map(|j| (j.event, j.ack)).unzip();
        events.extend(jobs);
        let result = store.record_events(&events);
        events.clear();
        match result {
            Ok(outcomes) => {
                commits.fetch_add(1, Ordering::Relaxed);
                for (ack, outcome) in acks.into_iter().zip(outcomes) {
                    // The caller may have gone (client closed): it is stored anyway.
                    let _ = ack.send(Ok(outcome));
                }
            }
            Err(e) => {
                // Rolled back: nothing of the group is stored, each gets a
                // 503 and the provider retries.
                let e = Arc::new(e);
                for ack in acks {
                    let _ = ack.send(Err(e.clone()));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    type Answer = Result<EventOutcome, Arc<StoreError>>;

    fn event(i: usize) -> NewEvent {
        NewEvent {
            provider: "esms".into(),
            kind: "delivery".into(),
            msg_id: Some(format!("m-{i}")),
            raw: format!("SMSID=m-{i}"),
            received_ms: 1,
            // Every third one repeats the one before it.
            dedup_key: format!("k-{}", i - usize::from(i % 3 == 2)),
            ..NewEvent::default()
        }
    }

    /// The events queued for the writer before it starts (the sender
    /// dropped, so it stops once they are done), and their answers.
    fn queued(
        events: impl Iterator<Item = NewEvent>,
    ) -> (mpsc::Receiver<Job>, Vec<oneshot::Receiver<Answer>>) {
        let (tx, rx) = mpsc::channel(QUEUE);
        let answers = events
            .map(|event| {
                let (ack, done) = oneshot::channel();
                tx.try_send(Job { event, ack }).unwrap();
                done
            })
            .collect();
        (rx, answers)
    }

    /// Callbacks already waiting share one transaction, each gets its own
    /// outcome (a repeat inside the group included), all are stored.
    #[test]
    fn waiting_callbacks_share_one_commit() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.sqlite");
        let store = Store::open_durable(&path).unwrap();
        assert_eq!(store.synchronous().unwrap(), 2, "FULL");
        let (rx, answers) = queued((0..300).map(event));
        let commits = AtomicU64::new(0);
        run(store, rx, &commits);
        assert_eq!(commits.load(Ordering::Relaxed), 1);
        let outcomes: Vec<EventOutcome> = answers
            .into_iter()
            .map(|d| d.blocking_recv().unwrap().unwrap())
            .collect();
        let repeats = outcomes
            .iter()
            .filter(|o| **o == EventOutcome::Repeat)
            .count();
        assert_eq!(repeats, 100);
        assert_eq!(outcomes[2], EventOutcome::Repeat);
        assert_eq!(outcomes[1], EventOutcome::Unmatched);
        let store = Store::open(&path).unwrap();
        assert_eq!(store.event_count().unwrap(), 200);
        assert_eq!(store.synchronous().unwrap(), 1, "others stay NORMAL");
    }

    /// A failed transaction answers every callback of its group with the
    /// error and stores none of them.
    #[test]
    fn a_failed_group_stores_nothing_and_says_so() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.sqlite");
        let store = Store::open_durable(&path).unwrap();
        // A failing write, without waiting out a busy timeout: a trigger
        // refuses one row of the group.
        let other = rusqlite::Connection::open(&path).unwrap();
        other
            .execute_batch(
                "CREATE TRIGGER refuse BEFORE INSERT ON delivery_events \
                 WHEN NEW.msg_id = 'm-15' BEGIN SELECT RAISE(ABORT, 'disk says no'); END;",
            )
            .unwrap();
        // m-15 is refused; m-9, m-12 share its transaction.
        let (rx, answers) = queued((3..8).map(|i| event(i * 3)));
        let commits = AtomicU64::new(0);
        run(store, rx, &commits);
        assert_eq!(commits.load(Ordering::Relaxed), 0);
        for d in answers {
            let err = d.blocking_recv().unwrap().unwrap_err();
            assert!(err.to_string().contains("disk says no"), "{err}");
        }
        let n: i64 = other
            .query_row("SELECT COUNT(*) FROM delivery_events", [], |r| r.get(0))
            .unwrap();
        assert_eq!(n, 0);
    }
}
