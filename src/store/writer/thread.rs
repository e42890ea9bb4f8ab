//! The writer thread (group commit) and the checkpointer beside it.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};

use super::ops::{apply_op, WriteOp, WriteResult};
use crate::store::errors::sql_err;
use crate::store::{CampaignStatus, Result, Store, StoreError};

struct Pending {
    op: WriteOp,
    ack: Option<oneshot::Sender<std::result::Result<WriteResult, AckError>>>,
    result: Option<std::result::Result<WriteResult, StoreError>>,
}

/// Why a write was not done: refused alone, or its whole batch failed (the
/// error shared by everyone waiting, its kind kept).
#[derive(Debug)]
enum AckError {
    Op(StoreError),
    Batch(Arc<StoreError>),
}

impl Store {
    /// One transaction for the whole batch (group commit). BEGIN and COMMIT
    /// are cached statements: the writer runs thousands a second.
    fn apply_batch(&mut self, ops: &mut [Pending]) -> Result<()> {
        let conn = &self.conn;
        let quota_rows = &mut self.quota_rows;
        let result = (|| -> rusqlite::Result<()> {
            conn.prepare_cached("BEGIN IMMEDIATE")?.execute([])?;
            for p in ops.iter_mut() {
                p.result = Some(apply_op(conn, &p.op, quota_rows)?);
            }
            conn.prepare_cached("COMMIT")?.execute([])?;
            Ok(())
        })();
        result.map_err(|e| {
            if !conn.is_autocommit() {
                let _ = conn.execute_batch("ROLLBACK");
            }
            // A quota row created in the rolled-back batch is gone again;
            // forgetting them all only costs a harmless INSERT each.
            quota_rows.clear();
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

/// Most writes folded into one transaction.
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
                    .conn
                    .query_row(&format!("PRAGMA wal_checkpoint({mode})"), [], |_| Ok(()));
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
    /// Start the writer on its own connection to `path`.
    pub fn start(path: &Path) -> Result<(Writer, std::thread::JoinHandle<Result<()>>)> {
        Self::start_with(path, "")
    }

    /// [`Writer::start`], running `pragmas` on the writer's connection
    /// first (tests: a database that fills up).
    pub(crate) fn start_with(
        path: &Path,
        pragmas: &str,
    ) -> Result<(Writer, std::thread::JoinHandle<Result<()>>)> {
        let mut store = Store::open(path)?;
        store
            .conn
            .execute_batch(pragmas)
            .map_err(|e| sql_err(path, e))?;
        // Checkpoints (and their fsyncs) run on a thread of their own, so a
        // commit never waits for the disk: the writer only appends to the WAL.
        store.set_wal_autocheckpoint(0)?;
        let checkpointer = Checkpointer::start(path)?;
        let (tx, mut rx) = mpsc::unbounded_channel::<Pending>();
        let handle = std::thread::Builder::new()
            .name("zns-state-writer".into())
            .spawn(move || -> Result<()> {
                let _checkpointer = checkpointer;
                let mut batch: Vec<Pending> = Vec::with_capacity(256);
                while let Some(first) = rx.blocking_recv() {
                    batch.push(first);
                    while batch.len() < MAX_BATCH {
                        match rx.try_recv() {
                            Ok(p) => batch.push(p),
                            Err(_) => break,
                        }
                    }
                    match store.apply_batch(&mut batch) {
                        Ok(()) => {
                            for p in batch.drain(..) {
                                let result = match p.result {
                                    Some(Err(e)) => Err(AckError::Op(e)),
                                    Some(Ok(r)) => Ok(r),
                                    None => Ok(WriteResult::Done),
                                };
                                match (p.ack, result) {
                                    (Some(ack), result) => {
                                        let _ = ack.send(result);
                                    }
                                    (None, Err(e)) => {
                                        tracing::warn!("a write was refused: {e:?}");
                                    }
                                    (None, Ok(_)) => {}
                                }
                            }
                        }
                        Err(e) => {
                            // Nothing of this batch is durable; everyone waiting
                            // learns so, with the error's kind (disk full, …).
                            let e = Arc::new(e);
                            for p in batch.drain(..) {
                                if let Some(ack) = p.ack {
                                    let _ = ack.send(Err(AckError::Batch(e.clone())));
                                }
                            }
                            // Later writes would build on a state we failed to record: stop.
                            rx.close();
                            while let Ok(p) = rx.try_recv() {
                                if let Some(ack) = p.ack {
                                    let _ = ack.send(Err(AckError::Batch(e.clone())));
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
        let (ack, done) = oneshot::channel();
        self.tx
            .send(Pending {
                op,
                ack: Some(ack),
                result: None,
            })
            .map_err(|_| StoreError::WriterGone("writer has stopped".into()))?;
        match done.await {
            Ok(Ok(r)) => Ok(r),
            Ok(Err(AckError::Op(e))) => Err(e),
            Ok(Err(AckError::Batch(e))) => Err(StoreError::Writer(e)),
            Err(_) => Err(StoreError::WriterGone("writer has stopped".into())),
        }
    }

    /// Queue a write without waiting (it commits with the next batch, in order).
    pub fn post(&self, op: WriteOp) -> Result<()> {
        self.tx
            .send(Pending {
                op,
                ack: None,
                result: None,
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
