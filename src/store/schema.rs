//! The schema and its migrations. A database is migrated forward one step
//! at a time; a newer one than this build knows is refused.

use super::db::{Begin, Dialect};
use super::schema_pg;
use super::{Result, Store, StoreError};

pub(super) const SCHEMA_VERSION: i64 = 19;

const MIGRATIONS: &[&str] = &[
    // 1: initial schema
    r#"
    CREATE TABLE campaigns (
        id INTEGER PRIMARY KEY,
        name TEXT NOT NULL UNIQUE,
        csv_path TEXT NOT NULL,
        csv_sha256 TEXT NOT NULL,
        template_keys TEXT NOT NULL,
        provider TEXT NOT NULL,
        base_url TEXT,
        oa_id TEXT NOT NULL,
        template_id TEXT NOT NULL,
        token_type TEXT NOT NULL,
        tracking_prefix TEXT NOT NULL,
        import_done INTEGER NOT NULL DEFAULT 0,
        imported_through_line INTEGER NOT NULL DEFAULT 0,
        status TEXT NOT NULL,
        last_error TEXT,
        in_doubt_policy TEXT NOT NULL DEFAULT 'resend',
        created_ms INTEGER NOT NULL,
        updated_ms INTEGER NOT NULL
    );
    CREATE TABLE rows (
        id INTEGER PRIMARY KEY,
        campaign_id INTEGER NOT NULL REFERENCES campaigns(id),
        line INTEGER NOT NULL,
        phone TEXT NOT NULL,
        dedup_key INTEGER,
        tracking_id TEXT,
        data TEXT,
        state TEXT NOT NULL,
        attempts INTEGER NOT NULL DEFAULT 0,
        journey_id TEXT,
        msg_id TEXT,
        error_code TEXT,
        error TEXT,
        resent_after_doubt INTEGER NOT NULL DEFAULT 0,
        updated_ms INTEGER,
        sent_ms INTEGER
    );
    CREATE INDEX rows_open ON rows(campaign_id, id)
        WHERE state IN ('pending','token_ready','in_flight','in_doubt');
    CREATE UNIQUE INDEX rows_dedup ON rows(campaign_id, dedup_key)
        WHERE dedup_key IS NOT NULL;
    CREATE UNIQUE INDEX rows_tracking ON rows(campaign_id, tracking_id)
        WHERE tracking_id IS NOT NULL;
    CREATE TABLE tokens (
        account TEXT NOT NULL,
        oa_id TEXT NOT NULL,
        phone TEXT NOT NULL,
        token_type TEXT NOT NULL,
        journey_id TEXT NOT NULL,
        provider_ref TEXT,
        token TEXT,
        expires_ms INTEGER NOT NULL,
        status TEXT,
        created_ms INTEGER NOT NULL,
        PRIMARY KEY (account, oa_id, phone, token_type)
    ) WITHOUT ROWID;
    CREATE TABLE quota_days (
        account TEXT NOT NULL,
        oa_id TEXT NOT NULL,
        day TEXT NOT NULL,
        used INTEGER NOT NULL DEFAULT 0,
        provider_limit INTEGER,
        exhausted INTEGER NOT NULL DEFAULT 0,
        PRIMARY KEY (account, oa_id, day)
    ) WITHOUT ROWID;
    "#,
    // 2: run safety — campaign deadline, per-phone frequency cap. `phone_sends`
    // holds each phone's latest claimed send per OA (and the one before, so a
    // claim the provider refused can be taken back).
    r#"
    ALTER TABLE campaigns ADD COLUMN not_after_ms INTEGER;
    ALTER TABLE campaigns ADD COLUMN min_interval_ms INTEGER;
    CREATE TABLE phone_sends (
        oa_id TEXT NOT NULL,
        phone TEXT NOT NULL,
        last_ms INTEGER NOT NULL,
        row_id INTEGER NOT NULL,
        prev_ms INTEGER,
        prev_row_id INTEGER,
        PRIMARY KEY (oa_id, phone)
    ) WITHOUT ROWID;
    INSERT INTO phone_sends (oa_id, phone, last_ms, row_id)
        SELECT c.oa_id, r.phone, MAX(COALESCE(r.sent_ms, r.updated_ms, 0)), r.id
        FROM rows r JOIN campaigns c ON c.id = r.campaign_id
        WHERE r.state IN ('sent', 'in_flight', 'in_doubt')
        GROUP BY c.oa_id, r.phone;
    "#,
    // 3: delivery reconcile (GetMessage) and the stored send window.
    r#"
    ALTER TABLE rows ADD COLUMN delivery_status TEXT;
    ALTER TABLE rows ADD COLUMN delivery_ms INTEGER;
    ALTER TABLE rows ADD COLUMN fee_main INTEGER;
    ALTER TABLE rows ADD COLUMN fee_token INTEGER;
    ALTER TABLE rows ADD COLUMN delivery_checked_ms INTEGER;
    ALTER TABLE campaigns ADD COLUMN send_window TEXT;
    "#,
    // 4: the open-rows index without an IN list (see row_state::states_sql)
    r#"
    DROP INDEX rows_open;
    CREATE INDEX rows_open ON rows(campaign_id, id)
        WHERE (state = 'pending' OR state = 'token_ready' OR state = 'in_flight' OR state = 'in_doubt');
    "#,
    // 5: the quota counts messages, not attempts: `quota_day` is the quota
    // day whose unit the row holds (a retry that day claims no other). A row
    // whose request may have left before the upgrade holds the unit of the
    // day it was last written (Asia/Ho_Chi_Minh is UTC+7, no DST).
    r#"
    ALTER TABLE rows ADD COLUMN quota_day TEXT;
    UPDATE rows SET quota_day = strftime('%Y-%m-%d', COALESCE(updated_ms, 0) / 1000 + 25200, 'unixepoch')
        WHERE state = 'in_flight' OR state = 'in_doubt';
    "#,
    // 6: fetched template info, for the pre-flight (see store/templates.rs)
    r#"
    CREATE TABLE IF NOT EXISTS template_cache (
        account TEXT NOT NULL,
        template_id TEXT NOT NULL,
        spec TEXT NOT NULL,
        fetched_ms INTEGER NOT NULL,
        PRIMARY KEY (account, template_id)
    ) WITHOUT ROWID;
    "#,
    // 7: the delivery ledger (serve's webhooks), see store/events.rs
    super::events::EVENTS_MIGRATION,
    // 8: the web console's wanted-running flag and form options, see store/web.rs
    super::web::WEB_MIGRATION,
    // 9: no unique index on the rows: an import loads a campaign's rows
    // first and then rejects repeated phones and tracking ids in one sorted
    // pass (see store/import.rs), which is what keeps one accepted row per
    // phone now. The tracking index stays for lookups, not unique.
    r#"
    DROP INDEX IF EXISTS rows_dedup;
    DROP INDEX IF EXISTS rows_tracking;
    CREATE INDEX rows_tracking ON rows(campaign_id, tracking_id)
        WHERE tracking_id IS NOT NULL;
    "#,
    // 10: scheduled starts and test sends, see store/schedule.rs
    super::schedule::SCHEDULE_MIGRATION,
    // 11: the Zalo OA's token pair (sealed) and pending authorizations, see store/zalo_oauth.rs
    super::zalo_oauth::ZALO_OAUTH_MIGRATION,
    // 12: each campaign's counts kept as counters, back-filled (see store/counters.rs)
    super::counters::COUNTERS_MIGRATION,
    // 13: the console's charts: sends in time order, see store/series.rs
    super::series::SERIES_MIGRATION,
    // 14: team access — users, API tokens, the audit log (see store/users.rs)
    super::users::USERS_MIGRATION,
    // 15: one runner per campaign across processes: leases (see store/leases.rs)
    super::leases::LEASES_MIGRATION,
    // 16: a rejected row's reason as a code and its parameters beside the
    // English text, so the console words it in the reader's language
    // (model/reason.rs); rows from before keep only their text.
    "ALTER TABLE rows ADD COLUMN reason_code TEXT; \
     ALTER TABLE rows ADD COLUMN reason_params TEXT;",
    // 17: the charts' counts kept per campaign and minute, back-filled (see store/series.rs)
    super::series::SERIES_COUNTERS_MIGRATION,
    // 18: the counters' triggers without a temporary b-tree per row (see store/counters.rs)
    super::counters::COUNTED_TRIGGERS_MIGRATION,
    // 19: the quota events by OA, for the campaigns page (see store/events.rs)
    super::events::QUOTA_EVENTS_INDEX_MIGRATION,
];

impl Store {
    pub(super) fn migrate(&mut self) -> Result<()> {
        match self.db.dialect() {
            Dialect::Sqlite => self.migrate_sqlite(),
            Dialect::Postgres => self.migrate_postgres(),
        }
    }

    fn migrate_sqlite(&mut self) -> Result<()> {
        // Each step reads the version and applies the next migration inside
        // one IMMEDIATE transaction, so two processes opening a new database
        // at the same moment cannot both create the schema: the second
        // waits (busy timeout), then finds it done. An up-to-date database
        // is only read (status and report work on a read-only file).
        let current: i64 = self
            .db
            .query_row("PRAGMA user_version", (), |r| r.get(0))
            .map_err(|e| self.e(e))?;
        if current == SCHEMA_VERSION {
            return Ok(());
        }
        loop {
            let tx = self
                .db
                .transaction_with(Begin::Immediate)
                .map_err(|e| self.e(e))?;
            let version: i64 = tx
                .query_row("PRAGMA user_version", (), |r| r.get(0))
                .map_err(|e| self.e(e))?;
            if version > SCHEMA_VERSION {
                return Err(StoreError::TooNew {
                    path: self.path.clone(),
                    found: version,
                    known: SCHEMA_VERSION,
                });
            }
            let Some(sql) = MIGRATIONS.get(version as usize) else {
                return Ok(());
            };
            tx.execute_batch(sql).map_err(|e| self.e(e))?;
            tx.execute_batch(&format!("PRAGMA user_version = {}", version + 1))
                .map_err(|e| self.e(e))?;
            tx.commit().map_err(|e| self.e(e))?;
        }
    }

    /// PostgreSQL: the version in `schema_version`; every process opening
    /// the database takes one advisory lock for the check, so two never
    /// create the schema at once.
    fn migrate_postgres(&mut self) -> Result<()> {
        let tx = self.db.transaction().map_err(|e| self.e(e))?;
        tx.query_row("SELECT pg_advisory_xact_lock(7242001)", (), |_| Ok(()))
            .map_err(|e| self.e(e))?;
        tx.execute_batch("CREATE TABLE IF NOT EXISTS schema_version (version BIGINT NOT NULL)")
            .map_err(|e| self.e(e))?;
        let found: Option<i64> = tx
            .query_row("SELECT MAX(version) FROM schema_version", (), |r| r.get(0))
            .map_err(|e| self.e(e))?;
        let mut version = found.unwrap_or(0);
        if version > SCHEMA_VERSION {
            return Err(StoreError::TooNew {
                path: self.path.clone(),
                found: version,
                known: SCHEMA_VERSION,
            });
        }
        if version == SCHEMA_VERSION {
            return tx.commit().map_err(|e| self.e(e));
        }
        for (i, texts) in schema_pg::MIGRATIONS.iter().enumerate() {
            let to = schema_pg::FIRST_VERSION + i as i64;
            if to <= version {
                continue;
            }
            for sql in *texts {
                tx.execute_batch(sql).map_err(|e| self.e(e))?;
            }
            version = to;
        }
        tx.execute("DELETE FROM schema_version", ())
            .map_err(|e| self.e(e))?;
        tx.execute(
            "INSERT INTO schema_version (version) VALUES (?1)",
            [version],
        )
        .map_err(|e| self.e(e))?;
        tx.commit().map_err(|e| self.e(e))
    }
}

/// Both lists end at the same version.
const _: () = assert!(
    schema_pg::FIRST_VERSION + schema_pg::MIGRATIONS.len() as i64 - 1 == SCHEMA_VERSION
        && MIGRATIONS.len() as i64 == SCHEMA_VERSION
);

#[cfg(test)]
mod tests {
    use super::super::counters::UNDO_COUNTERS_MIGRATION;
    use super::super::series::UNDO_SERIES_COUNTERS_MIGRATION;
    use super::super::test_support::*;
    use super::super::*;
    use super::SCHEMA_VERSION;
    use crate::model::row_state::open_states_sql;

    #[test]
    fn a_version_3_database_gets_the_open_rows_index_without_an_in_list() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.sqlite");
        {
            let store = Store::open(&path).unwrap();
            // Put it back the way versions 1–3 left it.
            store
                .db
                .execute_batch(&format!(
                    "{UNDO_SERIES_COUNTERS_MIGRATION} {UNDO_COUNTERS_MIGRATION} DROP INDEX rows_open; \
                     CREATE INDEX rows_open ON rows(campaign_id, id) \
                       WHERE state IN ('pending','token_ready','in_flight','in_doubt'); \
                     ALTER TABLE rows DROP COLUMN quota_day; \
                     PRAGMA user_version = 3;",
                ))
                .unwrap();
        }
        let store = Store::open(&path).unwrap();
        let sql: String = store
            .db
            .query_row(
                "SELECT sql FROM sqlite_master WHERE name = 'rows_open'",
                (),
                |r| r.get(0),
            )
            .unwrap();
        assert!(
            sql.contains(&open_states_sql("")) && !sql.contains(" IN "),
            "{sql}"
        );
        assert_uses_open_rows_index(
            &store,
            &format!(
                "SELECT COUNT(*) FROM rows WHERE campaign_id = 1 AND {}",
                open_states_sql("")
            ),
        );
    }

    #[test]
    fn a_version_4_database_gets_quota_day_held_by_rows_whose_request_may_have_left() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.sqlite");
        {
            let mut store = Store::open(&path).unwrap();
            let c = new_campaign(&mut store, "c1");
            let ids = import_phones(&mut store, &c, &["84912345670", "84912345671"]);
            // 2026-11-23 20:00 UTC is 2026-11-24 03:00 in Vietnam.
            store
                .db
                .execute(
                    "UPDATE rows SET state = 'in_flight', updated_ms = 1795464000000 WHERE id = ?1",
                    [ids[0]],
                )
                .unwrap();
            // Put it back the way version 4 left it.
            store
                .db
                .execute_batch(&format!(
                    "{UNDO_SERIES_COUNTERS_MIGRATION} {UNDO_COUNTERS_MIGRATION} ALTER TABLE rows DROP COLUMN quota_day; PRAGMA user_version = 4;"
                ))
                .unwrap();
        }
        let store = Store::open(&path).unwrap();
        let version: i64 = store
            .db
            .query_row("PRAGMA user_version", (), |r| r.get(0))
            .unwrap();
        assert_eq!(version, SCHEMA_VERSION);
        let days: Vec<(String, Option<String>)> = store
            .db
            .query_map("SELECT state, quota_day FROM rows ORDER BY id", (), |r| {
                Ok((r.get(0)?, r.get(1)?))
            })
            .unwrap();
        assert_eq!(
            days,
            vec![
                ("in_flight".to_string(), Some("2026-11-24".to_string())),
                ("pending".to_string(), None)
            ]
        );
    }

    #[test]
    fn a_version_8_database_loses_its_unique_row_indexes() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.sqlite");
        {
            let mut store = Store::open(&path).unwrap();
            let c = new_campaign(&mut store, "c1");
            import_phones(&mut store, &c, &["84912345670", "84912345671"]);
            // Put it back the way version 8 left it.
            store
                .db
                .execute_batch(&format!(
                    "{UNDO_SERIES_COUNTERS_MIGRATION} {UNDO_COUNTERS_MIGRATION} DROP INDEX rows_tracking; \
                     CREATE UNIQUE INDEX rows_dedup ON rows(campaign_id, dedup_key) WHERE dedup_key IS NOT NULL; \
                     CREATE UNIQUE INDEX rows_tracking ON rows(campaign_id, tracking_id) WHERE tracking_id IS NOT NULL; \
                     PRAGMA user_version = 8;",
                ))
                .unwrap();
        }
        let store = Store::open(&path).unwrap();
        let indexes: Vec<(String, i64)> = store
            .db
            .query_map(
                "SELECT name, \"unique\" FROM pragma_index_list('rows') ORDER BY name",
                (),
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .unwrap();
        assert!(
            indexes.iter().all(|(name, _)| name != "rows_dedup"),
            "{indexes:?}"
        );
        assert!(
            indexes.contains(&("rows_tracking".to_string(), 0)),
            "{indexes:?}"
        );
        let c = store.find_campaign("c1").unwrap().unwrap();
        assert_eq!(store.open_count(c.id, true).unwrap(), 2);
    }
}
