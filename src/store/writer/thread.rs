//! The writer thread (group commit) and the checkpointer beside it.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};

use super::ops::{apply_op, WriteOp};
use super::result::WriteResult;
use super::tally::QuotaTally;
use crate::store::db::{Begin, DbError};
use crate::store::errors::sql_err;
use crate::store::{CampaignStatus, Result, Store, StoreError};

/// One message to the writer thread: a single write, or the writes a
/// client grouped together (see `super::group`) — one wake-up and one
/// acknowledgement for all of them.
struct Pending {
    ops: Vec<WriteOp>,
    ack: Option<oneshot::Sender<GroupResult>>,
    /// Filled in by the batch, one per op.
    results: Vec<OpResult>,
}

/// One write's outcome: done (with what it did), or refused alone.
pub(super) type OpResult = std::result::Result<WriteResult, StoreError>;
/// A message's outcome: one result per write, or the error that failed
/// its whole batch (shared by everyone waiting, its kind kept).
type GroupResult = std::result::Result<Vec<OpResult>, Arc<StoreError>>;

impl Store {
    /// One transaction for the whole batch (group commit). BEGIN and COMMIT
    /// are cached statements on SQLite: the writer runs thousands a second.
    /// BEGIN IMMEDIATE there (the file's write lock at once); a plain BEGIN
    /// on PostgreSQL, where the claim locks its row and quota counter.
    fn apply_batch(&mut self, batch: &mut [Pending]) -> Result<()> {
        let conn = &self.db;
        let mut quota = QuotaTally::new(&mut self.quota_rows);
        let result = (|| -> std::result::Result<(), DbError> {
            conn.begin(Begin::Immediate)?;
            for p in batch.iter_mut() {
                p.results.clear();
                for op in &p.ops {
                    p.results.push(apply_op(conn, op, &mut quota)?);
                }
            }
            // The units claimed in memory, written back inside the transaction.
            quota.write_back(conn)?;
            conn.commit()?;
            Ok(())
        })();
        result.map_err(|e| {
            if !conn.is_autocommit() {
                let _ = conn.rollback();
            }
            // A quota row created in the rolled-back batch is gone again;
            // forgetting them all only costs a harmless INSERT each.
            quota.forget();
            sql_err(&self.path, e)
        })
    }
}

/// Handle to the writer thread. Cloning is cheap; the thread ends when every
/// handle is dropped (after committing what it has).
#[derive(Clone)]
pub struct Writer {
    tx: mpsc::UnboundedSender<Pending>,
}

/// Most writes folded into one transaction (a message is never split).
const MAX_BATCH: usize = 4096;

/// How often the checkpointer copies the WAL into the database.
const CHECKPOINT_EVERY: Duration = Duration::from_millis(250);
/// WAL size past which the checkpointer makes the log start over.
const WAL_RESTART_BYTES: u64 = 64 << 20;

/// A thread with its own connection that checkpoints the WAL in the
/// background (PASSIVE: it never blocks the writer or a reader). Stops, after
/// a last checkpoint, when dropped.
struct Checkpointer {
    stop: Option<std::sync::mpsc::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Checkpointer {
    fn start(path: &Path) -> Result<Checkpointer> {
        let store = Store::open(path)?;
        let mut wal = path.as_os_str().to_owned();
        wal.push("-wal");
        let (stop, stopped) = std::sync::mpsc::channel::<()>();
        let thread = std::thread::Builder::new()
            .name("zns-checkpoint".into())
            .spawn(move || loop {
                let last = !matches!(
                    stopped.recv_timeout(CHECKPOINT_EVERY),
                    Err(std::sync::mpsc::RecvTimeoutError::Timeout)
                );
                // PASSIVE copies what it can without blocking anyone. The WAL
                // only starts over after a checkpoint that caught up with the
                // writer, which a PASSIVE one never does while it writes: so
                // past a size, RESTART (the writer waits for that one, an
                // fsync every WAL_RESTART_BYTES instead of every 4 MB).
                let wal_len = std::fs::metadata(&wal).map(|m| m.len()).unwrap_or(0);
                let mode = if wal_len > WAL_RESTART_BYTES {
                    "RESTART"
                } else {
                    "PASSIVE"
                };
                // A failed checkpoint is retried next time (the WAL just grows).
                let _ = store
                    .db
                    .query_row(&format!("PRAGMA wal_checkpoint({mode})"), (), |_| Ok(()));
                if last {
                    return;
                }
            })
            .map_err(|e| StoreError::WriterGone(format!("cannot start checkpoint thread: {e}")))?;
        Ok(Checkpointer {
            stop: Some(stop),
            thread: Some(thread),
        })
    }
}

impl Drop for Checkpointer {
    fn drop(&mut self) {
        drop(self.stop.take());
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Writer {
    /// Start the writer on its own connection to the ledger at `at`.
    pub fn start(
        at: impl Into<crate::store::Location>,
    ) -> Result<(Writer, std::thread::JoinHandle<Result<()>>)> {
        Self::start_on(Store::open(at)?)
    }

    /// [`Writer::start`], running `pragmas` on the writer's connection
    /// first (tests: a database that fills up).
    #[cfg(test)]
    pub(crate) fn start_with(
        path: &Path,
        pragmas: &str,
    ) -> Result<(Writer, std::thread::JoinHandle<Result<()>>)> {
        let store = Store::open(path)?;
        if !pragmas.is_empty() {
            store
                .db
                .execute_batch(pragmas)
                .map_err(|e| sql_err(path, e))?;
        }
        Self::start_on(store)
    }

    /// Start the writer on `store`'s connection (either database). On
    /// SQLite checkpoints (and their fsyncs) run on a thread of their own,
    /// so a commit never waits for the disk: the writer only appends to the
    /// WAL. PostgreSQL has no WAL of ours to checkpoint: nothing beside it.
    pub fn start_on(store: Store) -> Result<(Writer, std::thread::JoinHandle<Result<()>>)> {
        let mut store = store;
        let checkpointer = if store.is_postgres() {
            None
        } else {
            store.set_wal_autocheckpoint(0)?;
            Some(Checkpointer::start(&store.path)?)
        };
        let (tx, mut rx) = mpsc::unbounded_channel::<Pending>();
        let handle = std::thread::Builder::new()
            .name("zns-state-writer".into())
            .spawn(move || -> Result<()> {
                let _checkpointer = checkpointer;
                let mut batch: Vec<Pending> = Vec::with_capacity(256);
                while let Some(first) = rx.blocking_recv() {
                    let mut ops = first.ops.len();
                    batch.push(first);
                    while ops < MAX_BATCH {
                        match rx.try_recv() {
                            Ok(p) => {
                                ops += p.ops.len();
                                batch.push(p);
                            }
                            Err(_) => break,
                        }
                    }
                    match store.apply_batch(&mut batch) {
                        Ok(()) => {
                            for p in batch.drain(..) {
                                match p.ack {
                                    Some(ack) => {
                                        let _ = ack.send(Ok(p.results));
                                    }
                                    None => {
                                        for e in p.results.into_iter().filter_map(|r| r.err()) {
                                            tracing::warn!("a write was refused: {e}");
                                        }
                                    }
                                }
                            }
                        }
                        Err(e) => {
                            // Nothing of this batch is durable; everyone waiting
                            // learns so, with the error's kind (disk full, …).
                            let e = Arc::new(e);
                            for p in batch.drain(..) {
                                if let Some(ack) = p.ack {
                                    let _ = ack.send(Err(e.clone()));
                                }
                            }
                            // Later writes would build on a state we failed to record: stop.
                            rx.close();
                            while let Ok(p) = rx.try_recv() {
                                if let Some(ack) = p.ack {
                                    let _ = ack.send(Err(e.clone()));
                                }
                            }
                            return Err(StoreError::Writer(e));
                        }
                    }
                }
                Ok(())
            })
            .map_err(|e| StoreError::WriterGone(format!("cannot start writer thread: {e}")))?;
        Ok((Writer { tx }, handle))
    }

    /// Queue a write and wait until it is committed.
    pub async fn write(&self, op: WriteOp) -> Result<WriteResult> {
        let mut results = self.write_all(vec![op]).await?;
        results
            .pop()
            .unwrap_or_else(|| Err(StoreError::WriterGone("writer lost a write".into())))
    }

    /// Queue writes as one message (applied in order, in one transaction)
    /// and wait until they are committed: one result per write, or the
    /// error that failed them all.
    pub async fn write_all(&self, ops: Vec<WriteOp>) -> Result<Vec<OpResult>> {
        self.send_all(ops)?.await
    }

    /// Queue writes as one message now; the future returned waits until
    /// they are committed (see [`Writer::write_all`]).
    pub fn send_all(
        &self,
        ops: Vec<WriteOp>,
    ) -> Result<impl std::future::Future<Output = Result<Vec<OpResult>>> + Send + 'static> {
        let (ack, done) = oneshot::channel();
        self.tx
            .send(Pending {
                ops,
                ack: Some(ack),
                results: Vec::new(),
            })
            .map_err(|_| StoreError::WriterGone("writer has stopped".into()))?;
        Ok(async move {
            match done.await {
                Ok(Ok(results)) => Ok(results),
                Ok(Err(e)) => Err(StoreError::Writer(e)),
                Err(_) => Err(StoreError::WriterGone("writer has stopped".into())),
            }
        })
    }

    /// Queue a write without waiting (it commits with the next batch, in order).
    pub fn post(&self, op: WriteOp) -> Result<()> {
        self.tx
            .send(Pending {
                ops: vec![op],
                ack: None,
                results: Vec::new(),
            })
            .map_err(|_| StoreError::WriterGone("writer has stopped".into()))
    }

    /// Wait until everything queued so far is committed.
    pub async fn flush(
        &self,
        campaign_id: i64,
        status: CampaignStatus,
        last_error: Option<String>,
    ) -> Result<()> {
        self.write(WriteOp::CampaignStatus {
            campaign_id,
            status,
            last_error,
        })
        .await
        .map(|_| ())
    }
}
