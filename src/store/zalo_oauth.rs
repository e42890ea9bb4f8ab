//! The Zalo OA's token pair and its pending authorizations. Everything
//! secret arrives sealed (encrypted by the core) and is stored as opaque
//! bytes; the state of a pending authorization is stored as its hash.
//!
//! One refresher at a time across processes: a lease row (`lease_holder`,
//! `lease_until_ms`) taken in a short IMMEDIATE transaction. A holder
//! killed mid-refresh leaves a lease that lapses by itself.

use super::db::{params, Begin, DbError, OptionalExtension, Row};
use super::rows::from_row;

use super::{Result, Store};

/// Appended to the schema's migrations (see schema.rs).
pub(super) const ZALO_OAUTH_MIGRATION: &str = r#"
    CREATE TABLE IF NOT EXISTS zalo_oa_tokens (
        id INTEGER PRIMARY KEY CHECK (id = 1),
        oa_id TEXT,
        app_id TEXT NOT NULL,
        sealed_pair BLOB NOT NULL,
        access_expires_ms INTEGER NOT NULL,
        access_ttl_ms INTEGER NOT NULL,
        refresh_issued_ms INTEGER NOT NULL,
        connected_ms INTEGER NOT NULL,
        generation INTEGER NOT NULL,
        refreshes INTEGER NOT NULL DEFAULT 0,
        broken TEXT,
        lease_holder TEXT,
        lease_until_ms INTEGER
    );
    CREATE TABLE IF NOT EXISTS zalo_oa_pending (
        state_hash TEXT PRIMARY KEY,
        sealed_verifier BLOB NOT NULL,
        redirect_uri TEXT NOT NULL,
        created_ms INTEGER NOT NULL
    );
"#;

/// The stored pair and what is known about it.
#[derive(Debug, Clone)]
pub struct OaTokens {
    pub oa_id: Option<String>,
    pub app_id: String,
    pub sealed_pair: Vec<u8>,
    pub access_expires_ms: i64,
    pub access_ttl_ms: i64,
    pub refresh_issued_ms: i64,
    pub connected_ms: i64,
    /// +1 per stored pair: a reader tells a renewed pair from the one it had.
    pub generation: i64,
    pub refreshes: i64,
    /// Why the pair is unusable (a refresh refused or lost), until the next connect.
    pub broken: Option<String>,
}

/// A newly issued pair to store.
pub struct NewPair<'a> {
    pub oa_id: Option<&'a str>,
    pub app_id: &'a str,
    pub sealed_pair: &'a [u8],
    pub access_expires_ms: i64,
    pub access_ttl_ms: i64,
    pub now_ms: i64,
}

/// A pending authorization: the sealed PKCE verifier and where Zalo redirects.
pub struct Pending {
    pub sealed_verifier: Vec<u8>,
    pub redirect_uri: String,
}

/// Pending authorizations older than this are dropped (Zalo's codes are
/// short-lived anyway).
const PENDING_TTL_MS: i64 = 60 * 60 * 1000;

impl Store {
    pub fn oa_pending_put(
        &mut self,
        state_hash: &str,
        sealed_verifier: &[u8],
        redirect_uri: &str,
        now_ms: i64,
    ) -> Result<()> {
        let tx = self.db.transaction().map_err(|e| sql(&self.path, e))?;
        tx.execute(
            "DELETE FROM zalo_oa_pending WHERE created_ms < ?1",
            [now_ms - PENDING_TTL_MS],
        )
        .map_err(|e| sql(&self.path, e))?;
        tx.execute(
            "INSERT INTO zalo_oa_pending (state_hash, sealed_verifier, redirect_uri, created_ms) \
             VALUES (?1, ?2, ?3, ?4) ON CONFLICT (state_hash) DO UPDATE SET \
             sealed_verifier = excluded.sealed_verifier, redirect_uri = excluded.redirect_uri, \
             created_ms = excluded.created_ms",
            params![state_hash, sealed_verifier, redirect_uri, now_ms],
        )
        .map_err(|e| sql(&self.path, e))?;
        tx.commit().map_err(|e| sql(&self.path, e))
    }

    /// The pending authorization with this state, or (no state: a code
    /// pasted in a terminal) the latest one; taken, so a state works once.
    pub fn oa_pending_take(
        &mut self,
        state_hash: Option<&str>,
        now_ms: i64,
    ) -> Result<Option<Pending>> {
        let tx = self.db.transaction().map_err(|e| sql(&self.path, e))?;
        let found: Option<(String, Vec<u8>, String)> = {
            let row = |r: &Row<'_>| Ok((r.get(0)?, r.get(1)?, r.get(2)?));
            match state_hash {
                Some(h) => tx.query_row(
                    "SELECT state_hash, sealed_verifier, redirect_uri FROM zalo_oa_pending \
                     WHERE state_hash = ?1 AND created_ms >= ?2",
                    params![h, now_ms - PENDING_TTL_MS],
                    row,
                ),
                None => tx.query_row(
                    "SELECT state_hash, sealed_verifier, redirect_uri FROM zalo_oa_pending \
                     WHERE created_ms >= ?1 ORDER BY created_ms DESC LIMIT 1",
                    params![now_ms - PENDING_TTL_MS],
                    row,
                ),
            }
            .optional()
            .map_err(|e| sql(&self.path, e))?
        };
        let Some((hash, sealed_verifier, redirect_uri)) = found else {
            return Ok(None);
        };
        let taken = tx
            .execute("DELETE FROM zalo_oa_pending WHERE state_hash = ?1", [&hash])
            .map_err(|e| sql(&self.path, e))?;
        tx.commit().map_err(|e| sql(&self.path, e))?;
        // Another process took it between our read and our delete (on
        // PostgreSQL a plain read does not lock): a state works once.
        if taken != 1 {
            return Ok(None);
        }
        Ok(Some(Pending {
            sealed_verifier,
            redirect_uri,
        }))
    }

    pub fn oa_tokens(&self) -> Result<Option<OaTokens>> {
        self.db
            .query_row(
                "SELECT oa_id, app_id, sealed_pair, access_expires_ms, access_ttl_ms, refresh_issued_ms, \
                 connected_ms, generation, refreshes, broken FROM zalo_oa_tokens WHERE id = 1",
                (),
                |r| {
                    Ok(from_row!(r => OaTokens { oa_id, app_id, sealed_pair, access_expires_ms, access_ttl_ms, refresh_issued_ms, connected_ms, generation, refreshes, broken }))
                },
            )
            .optional()
            .map_err(|e| self.e(e))
    }

    /// A pair from an authorization (connect): replaces whatever was there.
    pub fn oa_connected(&mut self, p: &NewPair<'_>) -> Result<()> {
        self.db
            .execute(
                "INSERT INTO zalo_oa_tokens (id, oa_id, app_id, sealed_pair, access_expires_ms, access_ttl_ms, \
                 refresh_issued_ms, connected_ms, generation, refreshes, broken, lease_holder, lease_until_ms) \
                 VALUES (1, ?1, ?2, ?3, ?4, ?5, ?6, ?6, 1, 0, NULL, NULL, NULL) \
                 ON CONFLICT(id) DO UPDATE SET oa_id = ?1, app_id = ?2, sealed_pair = ?3, access_expires_ms = ?4, \
                 access_ttl_ms = ?5, refresh_issued_ms = ?6, connected_ms = ?6, \
                 generation = zalo_oa_tokens.generation + 1, \
                 refreshes = 0, broken = NULL, lease_holder = NULL, lease_until_ms = NULL",
                params![p.oa_id, p.app_id, p.sealed_pair, p.access_expires_ms, p.access_ttl_ms, p.now_ms],
            )
            .map_err(|e| self.e(e))?;
        Ok(())
    }

    /// Take the refresh lease if nobody holds a live one. Returns the
    /// stored generation when taken.
    pub fn oa_lease_take(
        &mut self,
        holder: &str,
        until_ms: i64,
        now_ms: i64,
    ) -> Result<Option<i64>> {
        // The UPDATE's WHERE decides: SQLite's IMMEDIATE holds the file,
        // PostgreSQL re-checks the row once a concurrent taker commits.
        let tx = self
            .db
            .transaction_with(Begin::Immediate)
            .map_err(|e| sql(&self.path, e))?;
        let taken = tx
            .execute(
                "UPDATE zalo_oa_tokens SET lease_holder = ?1, lease_until_ms = ?2 \
                 WHERE id = 1 AND (lease_until_ms IS NULL OR lease_until_ms < ?3 OR lease_holder = ?1)",
                params![holder, until_ms, now_ms],
            )
            .map_err(|e| sql(&self.path, e))?;
        let generation = if taken == 1 {
            tx.query_row(
                "SELECT generation FROM zalo_oa_tokens WHERE id = 1",
                (),
                |r| r.get(0),
            )
            .optional()
            .map_err(|e| sql(&self.path, e))?
        } else {
            None
        };
        tx.commit().map_err(|e| sql(&self.path, e))?;
        Ok(generation)
    }

    pub fn oa_lease_release(&mut self, holder: &str) -> Result<()> {
        self.db
            .execute(
                "UPDATE zalo_oa_tokens SET lease_holder = NULL, lease_until_ms = NULL \
                 WHERE id = 1 AND lease_holder = ?1",
                [holder],
            )
            .map_err(|e| self.e(e))?;
        Ok(())
    }

    /// The refreshed pair, stored (and the lease released if still ours)
    /// in one commit. Stored even if our lease lapsed meanwhile: Zalo has
    /// rotated the pair, so this one is the only pair that works.
    pub fn oa_refreshed(&mut self, holder: &str, p: &NewPair<'_>) -> Result<()> {
        self.db
            .execute(
                "UPDATE zalo_oa_tokens SET sealed_pair = ?2, access_expires_ms = ?3, access_ttl_ms = ?4, \
                 refresh_issued_ms = ?5, generation = generation + 1, refreshes = refreshes + 1, broken = NULL, \
                 lease_until_ms = CASE WHEN lease_holder = ?1 THEN NULL ELSE lease_until_ms END, \
                 lease_holder = CASE WHEN lease_holder = ?1 THEN NULL ELSE lease_holder END \
                 WHERE id = 1",
                params![holder, p.sealed_pair, p.access_expires_ms, p.access_ttl_ms, p.now_ms],
            )
            .map_err(|e| self.e(e))?;
        Ok(())
    }

    /// The pair cannot be renewed: say why (status, the console) until the
    /// next connect; the lease is released.
    pub fn oa_broken(&mut self, holder: &str, why: &str) -> Result<()> {
        self.db
            .execute(
                "UPDATE zalo_oa_tokens SET broken = ?2, lease_holder = NULL, lease_until_ms = NULL \
                 WHERE id = 1 AND (lease_holder = ?1 OR lease_holder IS NULL)",
                params![holder, why],
            )
            .map_err(|e| self.e(e))?;
        Ok(())
    }
}

fn sql(path: &std::path::Path, e: DbError) -> super::StoreError {
    super::errors::sql_err(path, e)
}

#[cfg(test)]
mod tests {
    use super::super::test_pg::on_both;
    use super::*;

    fn pair<'a>(sealed: &'a [u8], now: i64) -> NewPair<'a> {
        NewPair {
            oa_id: Some("1"),
            app_id: "app",
            sealed_pair: sealed,
            access_expires_ms: now + 1000,
            access_ttl_ms: 1000,
            now_ms: now,
        }
    }

    #[test]
    fn one_lease_holder_at_a_time_and_a_lapsed_lease_is_taken_over() {
        on_both(
            "one_lease_holder_at_a_time_and_a_lapsed_lease_is_taken_over",
            |a, place| {
                let mut b = place.open();
                assert!(a.oa_tokens().unwrap().is_none());
                assert_eq!(a.oa_lease_take("a", 1100, 100).unwrap(), None, "no pair");
                a.oa_connected(&pair(b"x", 100)).unwrap();
                assert_eq!(a.oa_lease_take("a", 1100, 100).unwrap(), Some(1));
                assert_eq!(b.oa_lease_take("b", 1200, 200).unwrap(), None);
                // a dies; its lease lapses at 1100.
                assert_eq!(b.oa_lease_take("b", 2200, 1200).unwrap(), Some(1));
                b.oa_refreshed("b", &pair(b"z", 1300)).unwrap();
                let t = a.oa_tokens().unwrap().unwrap();
                assert_eq!(
                    (t.sealed_pair.as_slice(), t.generation, t.refreshes),
                    (&b"z"[..], 2, 1)
                );
                assert_eq!(
                    (t.oa_id.as_deref(), t.access_expires_ms, t.broken),
                    (Some("1"), 2300, None)
                );
                assert_eq!(a.oa_lease_take("a", 3000, 1400).unwrap(), Some(2));
                a.oa_broken("a", "refresh refused").unwrap();
                let t = b.oa_tokens().unwrap().unwrap();
                assert_eq!(t.broken.as_deref(), Some("refresh refused"));
                // A new connect clears it and counts a new generation.
                b.oa_connected(&pair(b"n", 5000)).unwrap();
                let t = a.oa_tokens().unwrap().unwrap();
                assert_eq!(
                    (t.broken, t.generation, t.refreshes, t.connected_ms),
                    (None, 3, 0, 5000)
                );
                assert_eq!(b.oa_lease_take("b", 6000, 5000).unwrap(), Some(3));
                b.oa_lease_release("b").unwrap();
                assert_eq!(a.oa_lease_take("a", 6000, 5000).unwrap(), Some(3));
            },
        );
    }

    #[test]
    fn a_pending_state_is_taken_once() {
        on_both("a_pending_state_is_taken_once", |s, _| {
            s.oa_pending_put("h1", b"v1", "http://cb", 10).unwrap();
            // Put again: replaced, not refused.
            s.oa_pending_put("h1", b"v2", "http://cb2", 11).unwrap();
            assert!(s.oa_pending_take(Some("nope"), 20).unwrap().is_none());
            let p = s.oa_pending_take(Some("h1"), 20).unwrap().unwrap();
            assert_eq!(
                (p.sealed_verifier.as_slice(), p.redirect_uri.as_str()),
                (&b"v2"[..], "http://cb2")
            );
            assert!(s.oa_pending_take(Some("h1"), 30).unwrap().is_none());
            // No state: the latest still fresh one.
            s.oa_pending_put("h2", b"old", "http://cb", 100).unwrap();
            s.oa_pending_put("h3", b"new", "http://cb", 200).unwrap();
            let p = s.oa_pending_take(None, 300).unwrap().unwrap();
            assert_eq!(p.sealed_verifier, b"new");
            // Stale ones are neither taken nor kept.
            let later = 100 + super::PENDING_TTL_MS + 1;
            assert!(s.oa_pending_take(Some("h2"), later).unwrap().is_none());
        });
    }
}
