//! Group writes on the async side before they cross to the writer thread.
//!
//! At zero provider latency a run queued one claim per row, and every one
//! crossed threads twice (the runtime woke the writer, the writer's ack
//! woke the runtime): the commits were small and the wake-ups, not the
//! work, set the pace. Here the writes of a run made in one turn of the
//! runtime wait in a queue; one task sends the whole queue as one message
//! and hands the results back when its single acknowledgement arrives.
//! Order is kept: groups go in the order they were queued, and the writer
//! applies a group in order.

use std::sync::{Arc, Mutex, MutexGuard};

use tokio::sync::{oneshot, Notify};

use super::ops::WriteOp;
use super::result::WriteResult;
use super::thread::{OpResult, Writer};
use crate::store::{Result, StoreError};

type Ack = oneshot::Sender<OpResult>;

#[derive(Default)]
struct Queue {
    ops: Vec<WriteOp>,
    /// One per op: `None` for a write nobody waits for.
    acks: Vec<Option<Ack>>,
    closed: bool,
    /// Set once a group failed: the writer has stopped, later writes fail.
    broken: Option<StoreError>,
}

struct Shared {
    queue: Mutex<Queue>,
    /// Wakes the sending task: writes queued, or closed.
    queued: Notify,
    /// The sending task has sent everything and ended.
    ended: Notify,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Queue> {
        // A panic while holding the lock cannot leave the queue half-made.
        self.queue.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// The writes of one run, grouped: the same calls as [`Writer`], each
/// [`GroupWriter::write`] still waiting until its write is committed.
/// Needs a tokio runtime (it spawns its sending task); end it with
/// [`GroupWriter::close`], which sends what is still queued.
pub struct GroupWriter {
    shared: Arc<Shared>,
}

impl GroupWriter {
    pub fn start(writer: Writer) -> GroupWriter {
        let shared = Arc::new(Shared {
            queue: Mutex::new(Queue::default()),
            queued: Notify::new(),
            ended: Notify::new(),
        });
        tokio::spawn(send_groups(shared.clone(), writer));
        GroupWriter { shared }
    }

    /// Queue a write and wait until it is committed.
    pub async fn write(&self, op: WriteOp) -> Result<WriteResult> {
        let (ack, done) = oneshot::channel();
        self.queue(op, Some(ack))?;
        done.await
            .unwrap_or_else(|_| Err(StoreError::WriterGone("writer has stopped".into())))
    }

    /// Queue a write without waiting (committed with a later group, in order).
    pub fn post(&self, op: WriteOp) -> Result<()> {
        self.queue(op, None)
    }

    fn queue(&self, op: WriteOp, ack: Option<Ack>) -> Result<()> {
        {
            let mut q = self.shared.lock();
            if let Some(e) = &q.broken {
                return Err(shared_error(e));
            }
            if q.closed {
                return Err(StoreError::WriterGone("writer has stopped".into()));
            }
            q.ops.push(op);
            q.acks.push(ack);
        }
        self.shared.queued.notify_one();
        Ok(())
    }

    /// Send what is queued and end the sending task (dropping its handle on
    /// the writer thread, which commits everything sent before it ends).
    /// Later writes fail.
    pub async fn close(&self) {
        let ended = self.shared.ended.notified();
        tokio::pin!(ended);
        // Registered before the task can end, so its signal is not missed.
        ended.as_mut().enable();
        let already = {
            let mut q = self.shared.lock();
            let already = q.closed;
            q.closed = true;
            already
        };
        if already {
            return;
        }
        self.shared.queued.notify_one();
        ended.await;
    }
}

impl Drop for GroupWriter {
    /// Not closed (a test, an early return): the task still sends what is
    /// queued and ends.
    fn drop(&mut self) {
        self.shared.lock().closed = true;
        self.shared.queued.notify_one();
    }
}

/// The sending task: whatever is queued goes as one message, at once (a
/// write never waits for an earlier group's commit, so a sent row's mark
/// is as quick to commit as before); the writes queued while the task
/// waits for its turn make the next group.
async fn send_groups(shared: Arc<Shared>, writer: Writer) {
    loop {
        let (ops, acks, closed) = {
            let mut q = shared.lock();
            (
                std::mem::take(&mut q.ops),
                std::mem::take(&mut q.acks),
                q.closed,
            )
        };
        if ops.is_empty() {
            if closed {
                break;
            }
            shared.queued.notified().await;
            continue;
        }
        match writer.send_all(ops) {
            Ok(committed) => {
                let shared = shared.clone();
                tokio::spawn(async move { hand_back(&shared, committed.await, acks) });
            }
            Err(e) => hand_back(&shared, Err(e), acks),
        }
    }
    drop(writer);
    shared.ended.notify_waiters();
}

/// Hand each write of a group its result.
fn hand_back(shared: &Shared, results: Result<Vec<OpResult>>, acks: Vec<Option<Ack>>) {
    match results {
        Ok(results) => {
            for (result, ack) in results.into_iter().zip(acks) {
                match ack {
                    Some(ack) => {
                        let _ = ack.send(result);
                    }
                    None => {
                        if let Err(e) = result {
                            tracing::warn!("a write was refused: {e}");
                        }
                    }
                }
            }
        }
        Err(e) => {
            // Nothing of the group is durable and the writer has stopped:
            // every waiting write learns why, later ones too.
            for ack in acks.into_iter().flatten() {
                let _ = ack.send(Err(shared_error(&e)));
            }
            let mut q = shared.lock();
            for ack in std::mem::take(&mut q.acks).into_iter().flatten() {
                let _ = ack.send(Err(shared_error(&e)));
            }
            q.ops.clear();
            q.broken = Some(e);
        }
    }
}

/// The same failure for each write that shares it (the kind kept).
fn shared_error(e: &StoreError) -> StoreError {
    match e {
        StoreError::Writer(inner) => StoreError::Writer(inner.clone()),
        StoreError::WriterGone(why) => StoreError::WriterGone(why.clone()),
        other => StoreError::WriterGone(other.to_string()),
    }
}
