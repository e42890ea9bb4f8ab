//! Campaign leases: one runner per campaign across processes and machines
//! sharing a ledger. A row per campaign names its holder
//! (`host:pid:random`, one per take) and when its lease lapses; the
//! holder renews it (a heartbeat) and deletes it when done. A holder
//! killed leaves its row, which lapses by itself, and anyone may then
//! take the campaign over.
//!
//! Every write here is one statement, so two takers racing on SQLite or on
//! PostgreSQL cannot both win. Times are the real clock (`real_now_ms`),
//! never the shiftable OA clock: a lease is about elapsed time between
//! processes, and a test's `ZNS_BATCH_NOW` must not make one last a day.
//!
//! The writer's claim of a row checks, in the same transaction, that the
//! claimer's lease is still live (see `writer::claim`), so a process that
//! was paused past its lease and woke up cannot send after a takeover.

use super::db::{params, Db, DbError, Dialect, OptionalExtension, Row};
use super::rows::from_row;

use super::{Result, Store};

/// Appended to the schema's migrations (see schema.rs).
pub(super) const LEASES_MIGRATION: &str = r#"
    CREATE TABLE IF NOT EXISTS leases (
        campaign TEXT PRIMARY KEY,
        holder TEXT NOT NULL,
        taken_at_ms INTEGER NOT NULL,
        renewed_at_ms INTEGER NOT NULL,
        expires_at_ms INTEGER NOT NULL
    );
"#;

/// A campaign's lease as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lease {
    pub campaign: String,
    pub holder: String,
    pub taken_at_ms: i64,
    /// The holder's last heartbeat.
    pub renewed_at_ms: i64,
    pub expires_at_ms: i64,
}

impl Lease {
    pub fn lapsed(&self, now_ms: i64) -> bool {
        self.expires_at_ms <= now_ms
    }
}

/// What a take found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Take {
    /// Ours now. `previous`: the lease of another holder we took over
    /// (lapsed, or its process is gone); None for a free campaign or our own.
    Taken { previous: Option<Lease> },
    /// Someone else holds a live lease.
    Held(Lease),
}

/// Checked by a claim: the row may only be claimed while `holder` holds a
/// live lease on `campaign`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaseFence {
    pub campaign: String,
    pub holder: String,
}

/// The wall clock in ms since the epoch (not `clock::now_ms`, which tests
/// shift).
pub fn real_now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

const LEASE_COLS: &str = "campaign, holder, taken_at_ms, renewed_at_ms, expires_at_ms";

fn lease_from_row(r: &Row<'_>) -> Result<Lease, DbError> {
    Ok(from_row!(r => Lease { campaign, holder, taken_at_ms, renewed_at_ms, expires_at_ms }))
}

/// Insert, or take over a row that is still exactly the one read before
/// (`?5`) and lapsed or of a dead process (`?6`), or renew our own. A row
/// changed by someone else in between matches nothing: the take is
/// refused and read again.
const TAKE: &str = "INSERT INTO leases (campaign, holder, taken_at_ms, renewed_at_ms, expires_at_ms) \
     VALUES (?1, ?2, ?3, ?3, ?4) \
     ON CONFLICT (campaign) DO UPDATE SET holder = excluded.holder, \
       taken_at_ms = CASE WHEN leases.holder = excluded.holder THEN leases.taken_at_ms ELSE excluded.taken_at_ms END, \
       renewed_at_ms = excluded.renewed_at_ms, expires_at_ms = excluded.expires_at_ms \
     WHERE leases.holder = excluded.holder \
        OR (leases.holder = ?5 AND (leases.expires_at_ms <= ?3 OR ?6))";

impl Store {
    /// The campaign's lease row, live or not.
    pub fn lease(&self, campaign: &str) -> Result<Option<Lease>> {
        self.db
            .query_row(
                &format!("SELECT {LEASE_COLS} FROM leases WHERE campaign = ?1"),
                params![campaign],
                lease_from_row,
            )
            .optional()
            .map_err(|e| self.e(e))
    }

    /// Take the campaign's lease for `ttl_ms` from `now_ms`. `gone`: is the
    /// process of this (other) holder known to be dead? (the core decides:
    /// same host, no such pid). Such a lease is taken at once, as is a
    /// lapsed one; a live one is refused.
    pub fn lease_take(
        &mut self,
        campaign: &str,
        holder: &str,
        ttl_ms: i64,
        now_ms: i64,
        gone: &dyn Fn(&str) -> bool,
    ) -> Result<Take> {
        // Twice at most: a row that changed between the read and the write
        // is read again once (a third change means a live holder anyway).
        for _ in 0..2 {
            let current = self.lease(campaign)?;
            let (seen, dead) = match &current {
                Some(l) if l.holder != holder => (Some(l.holder.as_str()), gone(&l.holder)),
                _ => (None, false),
            };
            let n = self
                .db
                .prepare_cached(TAKE)
                .and_then(|mut s| {
                    s.execute(params![
                        campaign,
                        holder,
                        now_ms,
                        now_ms + ttl_ms,
                        seen,
                        dead
                    ])
                })
                .map_err(|e| self.e(e))?;
            if n == 1 {
                return Ok(Take::Taken {
                    previous: current.filter(|l| l.holder != holder),
                });
            }
            match self.lease(campaign)? {
                Some(l) if l.holder != holder && !l.lapsed(now_ms) && !gone(&l.holder) => {
                    return Ok(Take::Held(l))
                }
                _ => continue,
            }
        }
        match self.lease(campaign)? {
            Some(l) if l.holder != holder => Ok(Take::Held(l)),
            _ => Ok(Take::Taken { previous: None }),
        }
    }

    /// The heartbeat: push our lease's end to `now_ms + ttl_ms`. False when
    /// the lease is no longer ours (taken over): the holder must stop.
    pub fn lease_renew(
        &mut self,
        campaign: &str,
        holder: &str,
        ttl_ms: i64,
        now_ms: i64,
    ) -> Result<bool> {
        let n = self
            .db
            .prepare_cached(
                "UPDATE leases SET renewed_at_ms = ?3, expires_at_ms = ?4 \
                 WHERE campaign = ?1 AND holder = ?2",
            )
            .and_then(|mut s| s.execute(params![campaign, holder, now_ms, now_ms + ttl_ms]))
            .map_err(|e| self.e(e))?;
        Ok(n == 1)
    }

    /// Give the lease up (only ours: a lease taken over stays its new holder's).
    pub fn lease_release(&mut self, campaign: &str, holder: &str) -> Result<()> {
        self.db
            .execute(
                "DELETE FROM leases WHERE campaign = ?1 AND holder = ?2",
                params![campaign, holder],
            )
            .map_err(|e| self.e(e))?;
        Ok(())
    }

    /// Campaigns a person started from the web (wanted running) that the
    /// ledger says are running, with their lease if any: those whose
    /// holder is gone are for another `serve` to take over.
    pub fn running_wanted_leases(&self) -> Result<Vec<(String, Option<Lease>)>> {
        let mut stmt = self
            .db
            .prepare_cached(
                "SELECT c.name, l.campaign, l.holder, l.taken_at_ms, l.renewed_at_ms, l.expires_at_ms \
                 FROM web_campaigns w JOIN campaigns c ON c.id = w.campaign_id \
                 LEFT JOIN leases l ON l.campaign = c.name \
                 WHERE w.wanted_running = 1 AND c.status = 'running' ORDER BY c.id",
            )
            .map_err(|e| self.e(e))?;
        let rows = stmt
            .query_map(params![], |r| {
                let name: String = r.get(0)?;
                let lease = match r.get::<Option<String>>(1)? {
                    Some(campaign) => Some(Lease {
                        campaign,
                        holder: r.get(2)?,
                        taken_at_ms: r.get(3)?,
                        renewed_at_ms: r.get(4)?,
                        expires_at_ms: r.get(5)?,
                    }),
                    None => None,
                };
                Ok((name, lease))
            })
            .map_err(|e| self.e(e))?;
        Ok(rows)
    }
}

/// The fence a claim passes inside the writer's transaction: is `fence`'s
/// holder's lease still live? (No row, another holder, or lapsed: no.)
/// SQLite runs one write transaction at a time, so a takeover commits
/// wholly before or after the claim. On PostgreSQL the read must lock the
/// lease row (`FOR SHARE`) so a concurrent takeover's UPDATE waits for the
/// claim's commit, and the claim sees the takeover once it committed.
pub(super) fn lease_live(tx: &Db, fence: &LeaseFence) -> Result<bool, DbError> {
    let sql = match tx.dialect() {
        Dialect::Sqlite => {
            "SELECT 1 FROM leases WHERE campaign = ?1 AND holder = ?2 AND expires_at_ms > ?3"
        }
        Dialect::Postgres => {
            "SELECT 1 FROM leases WHERE campaign = ?1 AND holder = ?2 AND expires_at_ms > ?3 \
             FOR SHARE"
        }
    };
    tx.prepare_cached(sql)?
        .exists(params![fence.campaign, fence.holder, real_now_ms()])
}

#[cfg(test)]
mod tests {
    use super::super::test_support::*;
    use super::*;
    use crate::model::row_state::RowState;
    use crate::store::{QuotaKey, WriteOp, WriteResult, Writer};

    fn nobody_gone(_: &str) -> bool {
        false
    }

    #[test]
    fn two_holders_race_and_one_wins() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.sqlite");
        Store::open(&path).unwrap();
        for round in 0..20 {
            let campaign = format!("c{round}");
            let barrier = std::sync::Arc::new(std::sync::Barrier::new(2));
            let takers: Vec<_> = ["h:1:a", "h:2:b"]
                .into_iter()
                .map(|holder| {
                    let (path, barrier, campaign) =
                        (path.clone(), barrier.clone(), campaign.clone());
                    std::thread::spawn(move || {
                        let mut store = Store::open(&path).unwrap();
                        barrier.wait();
                        let now = real_now_ms();
                        store
                            .lease_take(&campaign, holder, 10_000, now, &nobody_gone)
                            .unwrap()
                    })
                })
                .collect();
            let results: Vec<Take> = takers.into_iter().map(|t| t.join().unwrap()).collect();
            let won = results
                .iter()
                .filter(|t| matches!(t, Take::Taken { .. }))
                .count();
            assert_eq!(won, 1, "round {round}: {results:?}");
            let held = results.iter().find_map(|t| match t {
                Take::Held(l) => Some(l.clone()),
                _ => None,
            });
            let store = Store::open(&path).unwrap();
            let stored = store.lease(&campaign).unwrap().unwrap();
            assert_eq!(
                held.unwrap().holder,
                stored.holder,
                "the loser names the winner"
            );
        }
    }

    #[test]
    fn a_lapsed_lease_is_taken_over_a_live_one_is_not() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = Store::open(dir.path().join("s.sqlite")).unwrap();
        let t0 = 1_000_000;
        assert_eq!(
            store
                .lease_take("c", "a:1:x", 3000, t0, &nobody_gone)
                .unwrap(),
            Take::Taken { previous: None }
        );
        // Live: refused, naming the holder.
        match store
            .lease_take("c", "b:2:y", 3000, t0 + 1000, &nobody_gone)
            .unwrap()
        {
            Take::Held(l) => assert_eq!((l.holder.as_str(), l.expires_at_ms), ("a:1:x", t0 + 3000)),
            other => panic!("{other:?}"),
        }
        // Renewed: still refused past the first end.
        assert!(store.lease_renew("c", "a:1:x", 3000, t0 + 2000).unwrap());
        assert!(matches!(
            store
                .lease_take("c", "b:2:y", 3000, t0 + 4000, &nobody_gone)
                .unwrap(),
            Take::Held(_)
        ));
        // Lapsed: taken over; the old holder's renew and release fail to touch it.
        match store
            .lease_take("c", "b:2:y", 3000, t0 + 5000, &nobody_gone)
            .unwrap()
        {
            Take::Taken { previous: Some(p) } => {
                assert_eq!((p.holder.as_str(), p.renewed_at_ms), ("a:1:x", t0 + 2000))
            }
            other => panic!("{other:?}"),
        }
        assert!(!store.lease_renew("c", "a:1:x", 3000, t0 + 5100).unwrap());
        store.lease_release("c", "a:1:x").unwrap();
        assert_eq!(store.lease("c").unwrap().unwrap().holder, "b:2:y");
        // A live holder whose process is gone is taken at once.
        let gone = |h: &str| h == "b:2:y";
        assert!(matches!(
            store
                .lease_take("c", "c:3:z", 3000, t0 + 5200, &gone)
                .unwrap(),
            Take::Taken { previous: Some(_) }
        ));
        store.lease_release("c", "c:3:z").unwrap();
        assert_eq!(store.lease("c").unwrap(), None);
    }

    /// A claim by a holder that lost its lease is refused and writes
    /// nothing; on both databases (on PostgreSQL the fence reads the lease
    /// FOR SHARE).
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_claim_is_fenced_by_the_lease() {
        // PostgreSQL's sync client runs a runtime of its own: its calls
        // leave tokio's (block_in_place) in this async test.
        use tokio::task::block_in_place as sync;
        let name = "the_claim_is_fenced_by_the_lease";
        for place in sync(|| super::super::test_pg::test_places(name)) {
            eprintln!("{name}: on {}", place.name());
            let mut store = sync(|| place.open());
            let c = sync(|| new_campaign(&mut store, "c"));
            let ids = sync(|| {
                import_phones(
                    &mut store,
                    &c,
                    &["84912345670", "84912345671", "84912345672"],
                )
            });
            let now = real_now_ms();
            sync(|| {
                store
                    .lease_take("c", "a:1:x", 60_000, now, &nobody_gone)
                    .unwrap()
            });
            let (writer, thread) = sync(|| Writer::start_on(place.open()).unwrap());
            let key = QuotaKey::today("acct", "1");
            let claim = |row_id: i64, holder: &str| WriteOp::MarkInFlight {
                row_id,
                journey_id: None,
                quota: key.clone(),
                limit: None,
                gate: crate::store::ClaimGate {
                    lease: Some(std::sync::Arc::new(LeaseFence {
                        campaign: "c".into(),
                        holder: holder.into(),
                    })),
                    ..c.claim_gate("84912345670")
                },
                save_token: None,
            };
            let claimed = |row_id: i64, holder: &str| {
                let op = claim(row_id, holder);
                let writer = &writer;
                async move { writer.write(op).await.unwrap() }
            };
            assert_eq!(claimed(ids[0], "a:1:x").await, WriteResult::Done);
            // Another holder (no lease of its own) may not claim.
            assert_eq!(claimed(ids[1], "b:2:y").await, WriteResult::LeaseLost);
            // b takes the campaign over (a's process is gone): a is fenced off.
            let gone = |h: &str| h == "a:1:x";
            sync(|| {
                store
                    .lease_take("c", "b:2:y", 60_000, real_now_ms(), &gone)
                    .unwrap()
            });
            assert_eq!(claimed(ids[1], "a:1:x").await, WriteResult::LeaseLost);
            assert_eq!(claimed(ids[1], "b:2:y").await, WriteResult::Done);
            // A lapsed lease, even one nobody took, fences its holder too.
            sync(|| {
                store
                    .db
                    .execute("UPDATE leases SET expires_at_ms = 0", params![])
                    .unwrap()
            });
            assert_eq!(claimed(ids[2], "b:2:y").await, WriteResult::LeaseLost);
            drop(writer);
            sync(|| thread.join().unwrap().unwrap());
            sync(|| {
                let counts = store.state_counts(c.id).unwrap();
                assert_eq!(counts.in_flight, 2, "{counts:?}");
                let state: String = store
                    .db
                    .query_row(
                        "SELECT state FROM rows WHERE id = ?1",
                        params![ids[2]],
                        |r| r.get(0),
                    )
                    .unwrap();
                assert_eq!(state, RowState::Pending.as_str());
                let used: i64 = store
                    .db
                    .query_row("SELECT used FROM quota_days", params![], |r| r.get(0))
                    .unwrap();
                assert_eq!(used, 2, "a refused claim takes no quota unit");
                drop(store);
                drop(place);
            });
        }
    }
}
