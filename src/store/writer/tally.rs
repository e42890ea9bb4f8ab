//! The day's quota within one batch: each counter the batch touches is read
//! once, claims are counted against it in memory, and what they took is
//! written back with one UPDATE before the commit — instead of one UPDATE
//! per claim. On SQLite the batch's transaction (BEGIN IMMEDIATE) holds the
//! database's write lock from the read to the write-back; on PostgreSQL the
//! read locks the counter's row (FOR UPDATE) until the commit. Either way no
//! other process can claim from the counter in between: the limit holds
//! across processes.

use std::collections::{HashMap, HashSet};

use crate::store::db::{params, Db, DbError};

type DbResult<T> = std::result::Result<T, DbError>;

use crate::store::quota::has_room;
use crate::store::QuotaKey;

/// One counter as the batch sees it.
struct Counter {
    used: u64,
    exhausted: bool,
    provider_limit: Option<u64>,
    /// Units claimed in this batch and not yet written back.
    taken: i64,
}

pub(crate) struct QuotaTally<'a> {
    /// `quota_days` rows known to exist (they are never deleted), so a
    /// claim skips the INSERT that creates one. Kept across batches.
    known: &'a mut HashSet<QuotaKey>,
    open: HashMap<QuotaKey, Counter>,
}

impl<'a> QuotaTally<'a> {
    pub(crate) fn new(known: &'a mut HashSet<QuotaKey>) -> Self {
        QuotaTally {
            known,
            open: HashMap::new(),
        }
    }

    /// Take one unit of the day's quota; false when it is used up (by our
    /// `limit`, the provider's, or the provider saying so).
    pub(super) fn claim(&mut self, tx: &Db, q: &QuotaKey, limit: Option<u64>) -> DbResult<bool> {
        if !self.open.contains_key(q) {
            let counter = self.read(tx, q)?;
            self.open.insert(q.clone(), counter);
        }
        let Some(c) = self.open.get_mut(q) else {
            return Ok(false);
        };
        let room = has_room(c.used, c.exhausted, limit, c.provider_limit);
        if room {
            c.used += 1;
            c.taken += 1;
        }
        Ok(room)
    }

    fn read(&mut self, tx: &Db, q: &QuotaKey) -> DbResult<Counter> {
        if !self.known.contains(q) {
            tx.prepare_cached(crate::store::quota::ENSURE_ROW_SQL)?
                .execute(params![q.account, q.oa_id, q.day])?;
            self.known.insert(q.clone());
        }
        let read = crate::store::quota::read_for_claim_sql(tx.dialect());
        tx.prepare_cached(read)?
            .query_row(params![q.account, q.oa_id, q.day], |r| {
                // Never negative: a release stops at zero.
                Ok(Counter {
                    used: r.get::<i64>(0)? as u64,
                    exhausted: r.get(1)?,
                    provider_limit: r.get::<Option<i64>>(2)?.map(|l| l as u64),
                    taken: 0,
                })
            })
    }

    /// Write the units taken back to `quota_days` and forget the counters
    /// (read again at the next claim). Called before any other statement
    /// reads or changes `quota_days` in the batch, and before the commit.
    pub(crate) fn write_back(&mut self, tx: &Db) -> DbResult<()> {
        for (q, c) in self.open.drain() {
            if c.taken > 0 {
                tx.prepare_cached(
                    "UPDATE quota_days SET used = used + ?4 \
                     WHERE account = ?1 AND oa_id = ?2 AND day = ?3",
                )?
                .execute(params![q.account, q.oa_id, q.day, c.taken])?;
            }
        }
        Ok(())
    }

    /// The batch rolled back: nothing it read or created is known any more.
    pub(crate) fn forget(&mut self) {
        self.open.clear();
        self.known.clear();
    }
}
