//! The SQLite checkpoint store. All SQL lives here.
//!
//! One process-wide writer thread owns a connection and applies row
//! transitions in batched transactions (group commit): callers that must
//! know a change is durable (a row going `in_flight` before its request
//! leaves, a bought token) await the acknowledgement, which comes only after
//! COMMIT. Readers use their own connections (WAL lets them run beside the
//! writer).

use std::path::{Path, PathBuf};
use std::time::Duration;

use rusqlite::{params, Connection, OpenFlags, OptionalExtension};
use serde::Serialize;
use tokio::sync::{mpsc, oneshot};

use crate::provider::{JourneyToken, QuotaInfo};
use crate::quota;

mod events;
pub use events::*;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("state database {path}: {source}")]
    Sqlite {
        path: PathBuf,
        #[source]
        source: rusqlite::Error,
    },
    #[error("state database {path}: cannot create its folder: {source}")]
    Dir {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("state database {path} was written by a newer zns-batch (schema {found}, this build knows {known}); upgrade zns-batch")]
    TooNew {
        path: PathBuf,
        found: i64,
        known: i64,
    },
    #[error("state database {path} is locked by another zns-batch process (busy for {secs}s)")]
    Busy { path: PathBuf, secs: u64 },
    #[error("state database {path} is read-only: make the file and its folder writable (every step is recorded before it is taken, so nothing can be sent without it)")]
    ReadOnly { path: PathBuf },
    #[error("cannot write the state database {path}: is the disk full or failing?")]
    Disk {
        path: PathBuf,
        #[source]
        source: rusqlite::Error,
    },
    #[error("the state writer stopped: {0}")]
    WriterGone(String),
}

type Result<T, E = StoreError> = std::result::Result<T, E>;

/// Row states. Text in the database so it reads well in `sqlite3`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RowState {
    Pending,
    TokenReady,
    InFlight,
    InDoubt,
    Sent,
    Failed,
    Rejected,
    /// Not sent: the campaign's deadline (`--not-after`) passed first.
    Expired,
    /// Not sent: the phone had a message from this OA within `--min-interval-per-phone`.
    Skipped,
}

impl RowState {
    pub const ALL: [RowState; 9] = [
        RowState::Pending,
        RowState::TokenReady,
        RowState::InFlight,
        RowState::InDoubt,
        RowState::Sent,
        RowState::Failed,
        RowState::Rejected,
        RowState::Expired,
        RowState::Skipped,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            RowState::Pending => "pending",
            RowState::TokenReady => "token_ready",
            RowState::InFlight => "in_flight",
            RowState::InDoubt => "in_doubt",
            RowState::Sent => "sent",
            RowState::Failed => "failed",
            RowState::Rejected => "rejected",
            RowState::Expired => "expired",
            RowState::Skipped => "skipped",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|st| st.as_str() == s)
    }

    /// Rows a run still has to do something about.
    pub fn is_open(self) -> bool {
        matches!(
            self,
            RowState::Pending | RowState::TokenReady | RowState::InFlight
        )
    }
}

/// Must read exactly like the partial index's WHERE so SQLite uses it.
/// Written as ORs, not `state IN (…)`: SQLite evaluates an IN list of more
/// than two constants through a temporary b-tree built on every execution
/// of every INSERT and UPDATE that maintains the index (a third of the
/// import's time); equality tests cost nothing.
macro_rules! open_states {
    ($table:literal) => {
        concat!(
            "(",
            $table,
            "state = 'pending' OR ",
            $table,
            "state = 'token_ready' OR ",
            $table,
            "state = 'in_flight' OR ",
            $table,
            "state = 'in_doubt')"
        )
    };
}
const OPEN_STATES_SQL: &str = open_states!("");
/// The same, for queries that name the table `r`.
const OPEN_STATES_SQL_R: &str = open_states!("r.");

/// Campaign lifecycle.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum CampaignStatus {
    Importing,
    Ready,
    Running,
    Paused,
    Finished,
    /// Over: the deadline passed with rows unsent (they are `expired`).
    Expired,
    Aborted,
}

impl CampaignStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            CampaignStatus::Importing => "importing",
            CampaignStatus::Ready => "ready",
            CampaignStatus::Running => "running",
            CampaignStatus::Paused => "paused",
            CampaignStatus::Finished => "finished",
            CampaignStatus::Expired => "expired",
            CampaignStatus::Aborted => "aborted",
        }
    }
    fn parse(s: &str) -> Self {
        match s {
            "importing" => Self::Importing,
            "running" => Self::Running,
            "paused" => Self::Paused,
            "finished" => Self::Finished,
            "expired" => Self::Expired,
            "aborted" => Self::Aborted,
            _ => Self::Ready,
        }
    }
}

/// A campaign as stored: what it sends, to whom, through which provider.
/// Secrets are never stored: the key comes from flags, env or config.
#[derive(Debug, Clone, Serialize)]
pub struct Campaign {
    pub id: i64,
    pub name: String,
    pub csv_path: String,
    pub csv_sha256: String,
    pub template_keys: Vec<String>,
    pub provider: String,
    pub base_url: Option<String>,
    pub oa_id: String,
    pub template_id: String,
    pub token_type: String,
    pub tracking_prefix: String,
    pub import_done: bool,
    pub imported_through_line: u64,
    pub status: CampaignStatus,
    pub last_error: Option<String>,
    pub in_doubt_policy: String,
    pub created_ms: i64,
    pub updated_ms: i64,
    /// Deadline: after it nothing more is sent and open rows expire.
    pub not_after_ms: Option<i64>,
    /// Frequency cap: skip a phone that had a message from this OA this recently.
    pub min_interval_ms: Option<i64>,
    /// `HH:MM-HH:MM` the last run or resume was given; resume keeps it.
    pub send_window: Option<String>,
}

impl Campaign {
    /// The checks a claim must pass, for one phone of this campaign.
    pub fn claim_gate(&self, phone: &str) -> ClaimGate {
        ClaimGate {
            oa_id: self.oa_id.clone(),
            phone: phone.to_string(),
            not_after_ms: self.not_after_ms,
            min_interval_ms: self.min_interval_ms,
        }
    }

    pub fn past_deadline(&self, now_ms: i64) -> bool {
        self.not_after_ms.is_some_and(|d| now_ms > d)
    }
}

/// Run-safety checks applied in the same transaction that claims a row, so
/// neither a crash nor a concurrent campaign can slip past them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClaimGate {
    pub oa_id: String,
    pub phone: String,
    pub not_after_ms: Option<i64>,
    pub min_interval_ms: Option<i64>,
}

pub struct NewCampaign<'a> {
    pub name: &'a str,
    pub csv_path: &'a str,
    pub csv_sha256: &'a str,
    pub template_keys: &'a [String],
    pub provider: &'a str,
    pub base_url: Option<&'a str>,
    pub oa_id: &'a str,
    pub template_id: &'a str,
    pub token_type: &'a str,
    pub tracking_prefix: &'a str,
    pub in_doubt_policy: &'a str,
    pub not_after_ms: Option<i64>,
    pub min_interval_ms: Option<i64>,
}

/// One CSV record on its way into the campaign.
pub enum ImportRow<'a> {
    Accepted {
        line: u64,
        phone: &'a str,
        /// Given in the CSV; `None` means derived from prefix and line.
        tracking_id: Option<&'a str>,
        /// JSON array of template values in `template_keys` order.
        data_json: &'a str,
    },
    Rejected {
        line: u64,
        raw_phone: &'a str,
        reason: &'a str,
    },
}

#[derive(Debug, Default, Clone, Copy)]
pub struct ImportCounts {
    pub accepted: u64,
    pub rejected: u64,
}

/// Key of a reusable journey token.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct TokenKey {
    /// Provider plus base URL: a token is only valid where it was bought.
    pub account: String,
    pub oa_id: String,
    pub phone: String,
    pub token_type: String,
}

/// Which quota counter a send draws on.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct QuotaKey {
    pub account: String,
    pub oa_id: String,
    pub day: String,
}

/// An open row, with the stored token for its phone if there is one.
#[derive(Debug, Clone)]
pub struct WorkRow {
    pub id: i64,
    pub line: u64,
    pub phone: String,
    pub tracking_id: String,
    pub data_json: String,
    pub state: RowState,
    pub attempts: u32,
    pub token: Option<JourneyToken>,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct StateCounts {
    pub total: u64,
    pub pending: u64,
    pub token_ready: u64,
    pub in_flight: u64,
    pub in_doubt: u64,
    pub sent: u64,
    pub failed: u64,
    pub rejected: u64,
    pub expired: u64,
    pub skipped: u64,
    pub resent_after_doubt: u64,
}

impl StateCounts {
    pub fn open(&self) -> u64 {
        self.pending + self.token_ready + self.in_flight
    }
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct QuotaDay {
    pub day: String,
    pub used: u64,
    pub provider_limit: Option<u64>,
    pub exhausted: bool,
}

/// One line of the report.
#[derive(Debug, Clone, Serialize)]
pub struct ReportRow {
    pub line: u64,
    pub phone: String,
    pub tracking_id: String,
    pub state: String,
    pub msg_id: Option<String>,
    pub error_code: Option<String>,
    pub error: Option<String>,
    pub attempts: u32,
    pub resent_after_doubt: bool,
    pub updated_ms: Option<i64>,
    pub sent_ms: Option<i64>,
    /// From `reconcile`: unknown | received | seen; None if never looked up.
    pub delivery_status: Option<String>,
    pub delivery_ms: Option<i64>,
    pub fee_main: Option<i64>,
    pub fee_token: Option<i64>,
}

/// A sent row to look up with the provider.
#[derive(Debug, Clone)]
pub struct LookupRow {
    pub id: i64,
    pub line: u64,
    pub phone: String,
    pub msg_id: String,
}

/// What one lookup found; `None` fields keep what is stored.
#[derive(Debug, Clone, Default)]
pub struct DeliveryUpdate {
    pub row_id: i64,
    pub status: Option<String>,
    pub delivery_ms: Option<i64>,
    pub fee_main: Option<i64>,
    pub fee_token: Option<i64>,
    pub checked_ms: i64,
}

/// A campaign's delivery picture, from what `reconcile` stored.
#[derive(Debug, Clone, Default, Serialize)]
pub struct DeliveryCounts {
    /// Rows in state `sent`.
    pub sent: u64,
    /// Sent rows looked up at least once.
    pub checked: u64,
    pub unknown: u64,
    pub received: u64,
    pub seen: u64,
    /// Sent rows the provider gave no message id for (cannot be looked up).
    pub no_msg_id: u64,
    /// Sums of the fees the provider reported for the checked rows.
    pub fee_main: i64,
    pub fee_token: i64,
}

pub fn derived_tracking_id(prefix: &str, line: u64) -> String {
    format!("{prefix}-{line}")
}

const SCHEMA_VERSION: i64 = 5;

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
    // 4: the open-rows index without an IN list (see OPEN_STATES_SQL)
    r#"
    DROP INDEX rows_open;
    CREATE INDEX rows_open ON rows(campaign_id, id)
        WHERE (state = 'pending' OR state = 'token_ready' OR state = 'in_flight' OR state = 'in_doubt');
    "#,
    // 5: the delivery ledger (serve's webhooks), see store/events.rs
    events::EVENTS_MIGRATION,
];

/// How long a connection waits for another process's transaction.
const BUSY_TIMEOUT: Duration = Duration::from_secs(10);

pub struct Store {
    conn: Connection,
    path: PathBuf,
    /// Writer only: quota_days rows known to exist (they are never deleted),
    /// so a claim skips the INSERT that creates one.
    quota_rows: std::collections::HashSet<QuotaKey>,
}

impl Store {
    /// Open (creating if needed) and migrate.
    pub fn open(path: &Path) -> Result<Store> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|source| StoreError::Dir {
                path: path.to_path_buf(),
                source,
            })?;
        }
        let conn = Connection::open(path).map_err(|e| sql_err(path, e))?;
        // SQLite quietly falls back to read-only; say so now, not at the
        // first checkpoint of a run.
        if conn
            .is_readonly(rusqlite::MAIN_DB)
            .map_err(|e| sql_err(path, e))?
        {
            return Err(StoreError::ReadOnly {
                path: path.to_path_buf(),
            });
        }
        let mut store = Store {
            conn,
            path: path.to_path_buf(),
            quota_rows: Default::default(),
        };
        store.configure()?;
        store.migrate()?;
        Ok(store)
    }

    /// Open an existing database without creating or migrating it.
    pub fn open_existing(path: &Path) -> Result<Option<Store>> {
        if !path.exists() {
            return Ok(None);
        }
        let conn = Connection::open_with_flags(
            path,
            OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_URI,
        )
        .map_err(|e| sql_err(path, e))?;
        let mut store = Store {
            conn,
            path: path.to_path_buf(),
            quota_rows: Default::default(),
        };
        store.configure()?;
        store.migrate()?;
        Ok(Some(store))
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Cap this connection's page cache (KiB); memory stays flat whatever
    /// the campaign's size. A run holds four connections.
    pub fn set_cache_kib(&self, kib: u32) -> Result<()> {
        self.conn
            .execute_batch(&format!("PRAGMA cache_size = -{kib}"))
            .map_err(|e| self.e(e))
    }

    /// Give back the page cache (before a long phase that does not use
    /// this connection).
    pub fn release_memory(&self) -> Result<()> {
        self.conn
            .query_row("PRAGMA shrink_memory", [], |_| Ok(()))
            .optional()
            .map(|_| ())
            .map_err(|e| self.e(e))
    }

    fn e(&self, e: rusqlite::Error) -> StoreError {
        sql_err(&self.path, e)
    }

    fn configure(&mut self) -> Result<()> {
        self.conn
            .busy_timeout(BUSY_TIMEOUT)
            .map_err(|e| self.e(e))?;
        // WAL: readers beside the one writer. Turning a new file to WAL
        // needs it alone for a moment, and a twin process opening the same
        // new file then gets BUSY at once (SQLite skips the busy handler for
        // that lock upgrade): retry within the busy timeout.
        let started = std::time::Instant::now();
        loop {
            match self
                .conn
                .query_row("PRAGMA journal_mode=WAL", [], |r| r.get::<_, String>(0))
            {
                Ok(_) => break,
                Err(e) if is_busy(&e) && started.elapsed() < BUSY_TIMEOUT => {
                    std::thread::sleep(Duration::from_millis(5));
                }
                Err(e) => return Err(self.e(e)),
            }
        }
        // NORMAL: a commit survives a killed process (the case we
        // guarantee); fsync happens at checkpoint.
        self.conn
            .execute_batch(
                "PRAGMA synchronous=NORMAL; PRAGMA foreign_keys=ON; \
                 PRAGMA temp_store=MEMORY; PRAGMA cache_size=-8000;",
            )
            .map_err(|e| self.e(e))
    }

    fn migrate(&mut self) -> Result<()> {
        // Each step reads the version and applies the next migration inside
        // one IMMEDIATE transaction, so two processes opening a new database
        // at the same moment cannot both create the schema: the second
        // waits (busy timeout), then finds it done. An up-to-date database
        // is only read (status and report work on a read-only file).
        let current: i64 = self
            .conn
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .map_err(|e| self.e(e))?;
        if current == SCHEMA_VERSION {
            return Ok(());
        }
        loop {
            let tx = self
                .conn
                .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
                .map_err(|e| sql_err(&self.path, e))?;
            let version: i64 = tx
                .query_row("PRAGMA user_version", [], |r| r.get(0))
                .map_err(|e| sql_err(&self.path, e))?;
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
            tx.execute_batch(sql).map_err(|e| sql_err(&self.path, e))?;
            tx.execute_batch(&format!("PRAGMA user_version = {}", version + 1))
                .map_err(|e| sql_err(&self.path, e))?;
            tx.commit().map_err(|e| sql_err(&self.path, e))?;
        }
    }

    pub fn integrity_check(&self) -> Result<String> {
        self.conn
            .query_row("PRAGMA integrity_check", [], |r| r.get(0))
            .map_err(|e| self.e(e))
    }

    // ----- campaigns -------------------------------------------------------

    pub fn find_campaign(&self, name: &str) -> Result<Option<Campaign>> {
        self.conn
            .query_row(
                &format!("SELECT {CAMPAIGN_COLS} FROM campaigns WHERE name = ?1"),
                [name],
                campaign_from_row,
            )
            .optional()
            .map_err(|e| self.e(e))
    }

    pub fn campaign_names(&self) -> Result<Vec<String>> {
        let mut stmt = self
            .conn
            .prepare("SELECT name FROM campaigns ORDER BY id")
            .map_err(|e| self.e(e))?;
        let names = stmt
            .query_map([], |r| r.get(0))
            .map_err(|e| self.e(e))?
            .collect::<Result<Vec<String>, _>>()
            .map_err(|e| self.e(e))?;
        Ok(names)
    }

    pub fn list_campaigns(&self) -> Result<Vec<Campaign>> {
        let mut stmt = self
            .conn
            .prepare(&format!(
                "SELECT {CAMPAIGN_COLS} FROM campaigns ORDER BY id"
            ))
            .map_err(|e| self.e(e))?;
        let list = stmt
            .query_map([], campaign_from_row)
            .map_err(|e| self.e(e))?
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| self.e(e))?;
        Ok(list)
    }

    pub fn create_campaign(&mut self, c: &NewCampaign<'_>) -> Result<Campaign> {
        let now = quota::now_ms();
        let keys = serde_json::to_string(c.template_keys).unwrap_or_else(|_| "[]".into());
        self.conn
            .execute(
                "INSERT INTO campaigns (name, csv_path, csv_sha256, template_keys, provider, base_url, \
                 oa_id, template_id, token_type, tracking_prefix, status, in_doubt_policy, created_ms, updated_ms, \
                 not_after_ms, min_interval_ms) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, 'importing', ?11, ?12, ?12, ?13, ?14)",
                params![
                    c.name,
                    c.csv_path,
                    c.csv_sha256,
                    keys,
                    c.provider,
                    c.base_url,
                    c.oa_id,
                    c.template_id,
                    c.token_type,
                    c.tracking_prefix,
                    c.in_doubt_policy,
                    now,
                    c.not_after_ms,
                    c.min_interval_ms
                ],
            )
            .map_err(|e| self.e(e))?;
        self.find_campaign(c.name)?
            .ok_or_else(|| self.e(rusqlite::Error::QueryReturnedNoRows))
    }

    /// Settings a resume may change (never what identifies the campaign).
    pub fn update_campaign_settings(&mut self, id: i64, in_doubt_policy: &str) -> Result<()> {
        self.conn
            .execute(
                "UPDATE campaigns SET in_doubt_policy = ?2, updated_ms = ?3 WHERE id = ?1",
                params![id, in_doubt_policy, quota::now_ms()],
            )
            .map_err(|e| self.e(e))?;
        Ok(())
    }

    /// Set or replace the deadline and frequency cap (given explicitly by the
    /// operator on `run`/`resume`; `None` keeps the stored value).
    pub fn update_run_safety(
        &mut self,
        id: i64,
        not_after_ms: Option<i64>,
        min_interval_ms: Option<i64>,
    ) -> Result<()> {
        self.conn
            .execute(
                "UPDATE campaigns SET not_after_ms = COALESCE(?2, not_after_ms), \
                 min_interval_ms = COALESCE(?3, min_interval_ms), updated_ms = ?4 WHERE id = ?1",
                params![id, not_after_ms, min_interval_ms, quota::now_ms()],
            )
            .map_err(|e| self.e(e))?;
        Ok(())
    }

    /// The window a resume keeps using unless told otherwise (None: no window).
    pub fn set_campaign_send_window(&mut self, id: i64, window: Option<&str>) -> Result<()> {
        self.conn
            .execute(
                "UPDATE campaigns SET send_window = ?2 WHERE id = ?1",
                params![id, window],
            )
            .map_err(|e| self.e(e))?;
        Ok(())
    }

    /// Open rows whose phone had a message from the campaign's OA within its
    /// frequency cap as of `now_ms` (for the dry-run plan).
    pub fn would_skip_count(&self, campaign: &Campaign, now_ms: i64) -> Result<u64> {
        let Some(interval) = campaign.min_interval_ms else {
            return Ok(0);
        };
        self.conn
            .query_row(
                &format!(
                    "SELECT COUNT(*) FROM rows r JOIN phone_sends p ON p.oa_id = ?2 AND p.phone = r.phone \
                     WHERE r.campaign_id = ?1 AND {OPEN_STATES_SQL_R} AND p.row_id <> r.id AND p.last_ms > ?3"
                ),
                params![campaign.id, campaign.oa_id, now_ms - interval],
                |r| r.get::<_, i64>(0),
            )
            .map(|n| n as u64)
            .map_err(|e| self.e(e))
    }

    pub fn set_campaign_status(
        &mut self,
        id: i64,
        status: CampaignStatus,
        last_error: Option<&str>,
    ) -> Result<()> {
        self.conn
            .execute(
                "UPDATE campaigns SET status = ?2, last_error = COALESCE(?3, last_error), updated_ms = ?4 WHERE id = ?1",
                params![id, status.as_str(), last_error, quota::now_ms()],
            )
            .map_err(|e| self.e(e))?;
        Ok(())
    }

    // ----- import ------------------------------------------------------------

    /// Pages of WAL after which a commit checkpoints (each checkpoint
    /// fsyncs). A bulk import raises it for its own connection: a million
    /// rows then fsync a handful of times instead of some forty.
    pub fn set_wal_autocheckpoint(&self, pages: u32) -> Result<()> {
        self.conn
            .query_row(&format!("PRAGMA wal_autocheckpoint = {pages}"), [], |_| {
                Ok(())
            })
            .map_err(|e| self.e(e))
    }

    /// Insert one batch of CSV records in one transaction, recording how far
    /// the import got so a killed import resumes after the last whole batch.
    /// A phone already in the campaign (when `dedup`) becomes a rejected row
    /// naming the line that has it.
    pub fn import_batch(
        &mut self,
        campaign_id: i64,
        rows: &[ImportRow<'_>],
        through_line: u64,
        done: bool,
        dedup: bool,
    ) -> Result<ImportCounts> {
        let path = self.path.clone();
        let err = |e| sql_err(&path, e);
        let now = quota::now_ms();
        let tx = self.conn.transaction().map_err(err)?;
        let mut counts = ImportCounts::default();
        {
            let mut insert = tx
                .prepare_cached(
                    "INSERT OR IGNORE INTO rows (campaign_id, line, phone, dedup_key, tracking_id, data, state, updated_ms) \
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, 'pending', ?7)",
                )
                .map_err(err)?;
            let mut reject = tx
                .prepare_cached(
                    "INSERT INTO rows (campaign_id, line, phone, state, error_code, error, updated_ms) \
                     VALUES (?1, ?2, ?3, 'rejected', ?4, ?5, ?6)",
                )
                .map_err(err)?;
            for row in rows {
                match *row {
                    ImportRow::Accepted {
                        line,
                        phone,
                        tracking_id,
                        data_json,
                    } => {
                        let key: Option<i64> = if dedup { phone.parse().ok() } else { None };
                        let inserted = insert
                            .execute(params![
                                campaign_id,
                                line as i64,
                                phone,
                                key,
                                tracking_id,
                                data_json,
                                now
                            ])
                            .map_err(err)?;
                        if inserted == 1 {
                            counts.accepted += 1;
                            continue;
                        }
                        // Ignored: a duplicate phone or tracking id. Say which line has it.
                        let (code, reason) =
                            duplicate_reason(&tx, campaign_id, key, tracking_id).map_err(err)?;
                        reject
                            .execute(params![campaign_id, line as i64, phone, code, reason, now])
                            .map_err(err)?;
                        counts.rejected += 1;
                    }
                    ImportRow::Rejected {
                        line,
                        raw_phone,
                        reason,
                    } => {
                        reject
                            .execute(params![
                                campaign_id,
                                line as i64,
                                raw_phone,
                                "invalid_row",
                                reason,
                                now
                            ])
                            .map_err(err)?;
                        counts.rejected += 1;
                    }
                }
            }
        }
        tx.execute(
            "UPDATE campaigns SET imported_through_line = ?2, import_done = ?3, \
             status = CASE WHEN ?3 THEN 'ready' ELSE status END, updated_ms = ?4 WHERE id = ?1",
            params![campaign_id, through_line as i64, done, now],
        )
        .map_err(err)?;
        tx.commit().map_err(err)?;
        Ok(counts)
    }

    // ----- reading work ------------------------------------------------------

    /// Up to `limit` open rows after `after_id`, in file order, each with the
    /// stored token for its phone (one query per page, not per row).
    pub fn open_rows_page(
        &self,
        campaign: &Campaign,
        account: &str,
        after_id: i64,
        limit: usize,
        include_in_doubt: bool,
    ) -> Result<Vec<WorkRow>> {
        let mut stmt = self
            .conn
            .prepare_cached(&format!(
                "SELECT r.id, r.line, r.phone, r.tracking_id, r.data, r.state, r.attempts, \
                        t.journey_id, t.provider_ref, t.token, t.expires_ms, t.status \
                 FROM rows r LEFT JOIN tokens t \
                   ON t.account = ?1 AND t.oa_id = ?2 AND t.phone = r.phone AND t.token_type = ?3 \
                 WHERE r.campaign_id = ?4 AND {OPEN_STATES_SQL_R} AND r.id > ?5 \
                 ORDER BY r.id LIMIT ?6"
            ))
            .map_err(|e| self.e(e))?;
        let mut rows = stmt
            .query(params![
                account,
                campaign.oa_id,
                campaign.token_type,
                campaign.id,
                after_id,
                limit as i64
            ])
            .map_err(|e| self.e(e))?;
        let mut out = Vec::with_capacity(limit);
        while let Some(r) = rows.next().map_err(|e| self.e(e))? {
            let state: String = r.get(5).map_err(|e| self.e(e))?;
            let state = RowState::parse(&state).unwrap_or(RowState::Pending);
            if state == RowState::InDoubt && !include_in_doubt {
                continue;
            }
            let line: i64 = r.get(1).map_err(|e| self.e(e))?;
            let tracking: Option<String> = r.get(3).map_err(|e| self.e(e))?;
            let journey_id: Option<String> = r.get(7).map_err(|e| self.e(e))?;
            let token = match journey_id {
                Some(journey_id) => Some(JourneyToken {
                    journey_id,
                    provider_ref: r.get(8).map_err(|e| self.e(e))?,
                    token: r.get(9).map_err(|e| self.e(e))?,
                    expires_at: quota::from_ms(r.get(10).map_err(|e| self.e(e))?),
                    status: r.get(11).map_err(|e| self.e(e))?,
                }),
                None => None,
            };
            out.push(WorkRow {
                id: r.get(0).map_err(|e| self.e(e))?,
                line: line as u64,
                phone: r.get(2).map_err(|e| self.e(e))?,
                tracking_id: tracking
                    .unwrap_or_else(|| derived_tracking_id(&campaign.tracking_prefix, line as u64)),
                data_json: r
                    .get::<_, Option<String>>(4)
                    .map_err(|e| self.e(e))?
                    .unwrap_or_default(),
                state,
                attempts: r.get::<_, i64>(6).map_err(|e| self.e(e))? as u32,
                token,
            });
        }
        Ok(out)
    }

    /// Whether some phone is on more than one row of the campaign (imported
    /// with `--allow-duplicate-phones`): without, every accepted row has a
    /// `dedup_key` and the unique index guarantees one row per phone.
    pub fn has_repeated_phones(&self, campaign_id: i64) -> Result<bool> {
        self.conn
            .query_row(
                "SELECT EXISTS (SELECT 1 FROM rows WHERE campaign_id = ?1 AND dedup_key IS NULL \
                 AND state <> 'rejected')",
                [campaign_id],
                |r| r.get(0),
            )
            .map_err(|e| self.e(e))
    }

    /// How many rows a run has left (cheap: counts the partial index).
    pub fn open_count(&self, campaign_id: i64, include_in_doubt: bool) -> Result<u64> {
        let (open, doubt): (i64, i64) = self
            .conn
            .query_row(
                &format!(
                    "SELECT COUNT(*), COALESCE(SUM(state = 'in_doubt'), 0) FROM rows \
                     WHERE campaign_id = ?1 AND {OPEN_STATES_SQL}"
                ),
                [campaign_id],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .map_err(|e| self.e(e))?;
        Ok((if include_in_doubt { open } else { open - doubt }) as u64)
    }

    /// Open rows whose phone has a stored token valid past `valid_after_ms`.
    pub fn reusable_tokens(
        &self,
        campaign: &Campaign,
        account: &str,
        valid_after_ms: i64,
    ) -> Result<u64> {
        self.conn
            .query_row(
                &format!(
                    "SELECT COUNT(*) FROM rows r JOIN tokens t \
                       ON t.account = ?1 AND t.oa_id = ?2 AND t.phone = r.phone AND t.token_type = ?3 \
                     WHERE r.campaign_id = ?4 AND {OPEN_STATES_SQL_R} \
                       AND t.expires_ms > ?5 AND COALESCE(t.status, '') <> 'N'"
                ),
                params![account, campaign.oa_id, campaign.token_type, campaign.id, valid_after_ms],
                |r| r.get::<_, i64>(0),
            )
            .map(|n| n as u64)
            .map_err(|e| self.e(e))
    }

    /// For the dry-run plan: distinct phones among the rows still to send
    /// that need a token bought, and those whose stored token is reusable
    /// (valid past `valid_after_ms`). A phone repeated in the file needs one.
    pub fn token_plan(
        &self,
        campaign: &Campaign,
        account: &str,
        valid_after_ms: i64,
        include_in_doubt: bool,
    ) -> Result<(u64, u64)> {
        let states = if include_in_doubt {
            OPEN_STATES_SQL_R
        } else {
            "(r.state = 'pending' OR r.state = 'token_ready' OR r.state = 'in_flight')"
        };
        // One row per phone unless the campaign allows repeats: then no
        // GROUP BY (a sort of every open row, in memory).
        let sql = if self.has_repeated_phones(campaign.id)? {
            format!(
                "SELECT COALESCE(SUM(NOT reusable), 0), COALESCE(SUM(reusable), 0) FROM ( \
                   SELECT r.phone, MAX(t.phone IS NOT NULL) AS reusable FROM rows r LEFT JOIN tokens t \
                     ON t.account = ?1 AND t.oa_id = ?2 AND t.phone = r.phone AND t.token_type = ?3 \
                    AND t.expires_ms > ?5 AND COALESCE(t.status, '') <> 'N' \
                   WHERE r.campaign_id = ?4 AND {states} GROUP BY r.phone)"
            )
        } else {
            format!(
                "SELECT COUNT(*) - COUNT(t.phone), COUNT(t.phone) FROM rows r LEFT JOIN tokens t \
                   ON t.account = ?1 AND t.oa_id = ?2 AND t.phone = r.phone AND t.token_type = ?3 \
                  AND t.expires_ms > ?5 AND COALESCE(t.status, '') <> 'N' \
                 WHERE r.campaign_id = ?4 AND {states}"
            )
        };
        self.conn
            .query_row(
                &sql,
                params![
                    account,
                    campaign.oa_id,
                    campaign.token_type,
                    campaign.id,
                    valid_after_ms
                ],
                |r| Ok((r.get::<_, i64>(0)? as u64, r.get::<_, i64>(1)? as u64)),
            )
            .map_err(|e| self.e(e))
    }

    /// The stored token for a key (checked again under the per-phone lock so
    /// a token bought moments ago by another row is reused, not re-bought).
    pub fn token(&self, key: &TokenKey) -> Result<Option<JourneyToken>> {
        self.conn
            .prepare_cached(
                "SELECT journey_id, provider_ref, token, expires_ms, status FROM tokens \
                 WHERE account = ?1 AND oa_id = ?2 AND phone = ?3 AND token_type = ?4",
            )
            .map_err(|e| self.e(e))?
            .query_row(
                params![key.account, key.oa_id, key.phone, key.token_type],
                |r| {
                    Ok(JourneyToken {
                        journey_id: r.get(0)?,
                        provider_ref: r.get(1)?,
                        token: r.get(2)?,
                        expires_at: quota::from_ms(r.get(3)?),
                        status: r.get(4)?,
                    })
                },
            )
            .optional()
            .map_err(|e| self.e(e))
    }

    /// Rows per state, in one pass that needs no sort (a GROUP BY over a
    /// million rows would sort them all, in memory).
    pub fn state_counts(&self, campaign_id: i64) -> Result<StateCounts> {
        let mut stmt = self
            .conn
            .prepare_cached(
                "SELECT COUNT(*), TOTAL(state = 'pending'), TOTAL(state = 'token_ready'), \
                        TOTAL(state = 'in_flight'), TOTAL(state = 'in_doubt'), TOTAL(state = 'sent'), \
                        TOTAL(state = 'failed'), TOTAL(state = 'expired'), TOTAL(state = 'skipped'), \
                        TOTAL(resent_after_doubt) \
                 FROM rows WHERE campaign_id = ?1",
            )
            .map_err(|e| self.e(e))?;
        stmt.query_row([campaign_id], |r| {
            let n = |i: usize| -> rusqlite::Result<u64> { Ok(r.get::<_, f64>(i)? as u64) };
            let total = r.get::<_, i64>(0)? as u64;
            let mut c = StateCounts {
                total,
                pending: n(1)?,
                token_ready: n(2)?,
                in_flight: n(3)?,
                in_doubt: n(4)?,
                sent: n(5)?,
                failed: n(6)?,
                expired: n(7)?,
                skipped: n(8)?,
                rejected: 0,
                resent_after_doubt: n(9)?,
            };
            // `rejected`, and anything unknown, is the rest.
            c.rejected = total.saturating_sub(
                c.pending
                    + c.token_ready
                    + c.in_flight
                    + c.in_doubt
                    + c.sent
                    + c.failed
                    + c.expired
                    + c.skipped,
            );
            Ok(c)
        })
        .map_err(|e| self.e(e))
    }

    /// The first few rejects, for summaries and plans.
    pub fn rejects(&self, campaign_id: i64, limit: usize) -> Result<Vec<(u64, String, String)>> {
        let mut stmt = self
            .conn
            .prepare_cached(
                "SELECT line, phone, COALESCE(error, '') FROM rows \
                 WHERE campaign_id = ?1 AND state = 'rejected' ORDER BY line LIMIT ?2",
            )
            .map_err(|e| self.e(e))?;
        let out = stmt
            .query_map(params![campaign_id, limit as i64], |r| {
                Ok((r.get::<_, i64>(0)? as u64, r.get(1)?, r.get(2)?))
            })
            .map_err(|e| self.e(e))?
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| self.e(e))?;
        Ok(out)
    }

    /// Most frequent failure reasons, for the summary.
    pub fn top_errors(&self, campaign_id: i64, limit: usize) -> Result<Vec<(String, String, u64)>> {
        let mut stmt = self
            .conn
            .prepare_cached(
                "SELECT COALESCE(error_code, ''), COALESCE(error, ''), COUNT(*) AS n FROM rows \
                 WHERE campaign_id = ?1 AND state = 'failed' GROUP BY 1, 2 ORDER BY n DESC LIMIT ?2",
            )
            .map_err(|e| self.e(e))?;
        let out = stmt
            .query_map(params![campaign_id, limit as i64], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get::<_, i64>(2)? as u64))
            })
            .map_err(|e| self.e(e))?
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| self.e(e))?;
        Ok(out)
    }

    /// Every row of a campaign in file order, streamed to `f`.
    pub fn for_each_report_row(
        &self,
        campaign: &Campaign,
        mut f: impl FnMut(&ReportRow) -> std::io::Result<()>,
    ) -> Result<std::io::Result<()>> {
        let mut stmt = self
            .conn
            .prepare(
                "SELECT line, phone, tracking_id, state, msg_id, error_code, error, attempts, \
                        resent_after_doubt, updated_ms, sent_ms, delivery_status, delivery_ms, \
                        fee_main, fee_token \
                 FROM rows WHERE campaign_id = ?1 ORDER BY line, id",
            )
            .map_err(|e| self.e(e))?;
        let mut rows = stmt.query([campaign.id]).map_err(|e| self.e(e))?;
        while let Some(r) = rows.next().map_err(|e| self.e(e))? {
            let line = r.get::<_, i64>(0).map_err(|e| self.e(e))? as u64;
            let state: String = r.get(3).map_err(|e| self.e(e))?;
            let tracking: Option<String> = r.get(2).map_err(|e| self.e(e))?;
            let tracking_id = match tracking {
                Some(t) => t,
                None if state == "rejected" => String::new(),
                None => derived_tracking_id(&campaign.tracking_prefix, line),
            };
            let row = ReportRow {
                line,
                phone: r.get(1).map_err(|e| self.e(e))?,
                tracking_id,
                state,
                msg_id: r.get(4).map_err(|e| self.e(e))?,
                error_code: r.get(5).map_err(|e| self.e(e))?,
                error: r.get(6).map_err(|e| self.e(e))?,
                attempts: r.get::<_, i64>(7).map_err(|e| self.e(e))? as u32,
                resent_after_doubt: r.get::<_, i64>(8).map_err(|e| self.e(e))? != 0,
                updated_ms: r.get(9).map_err(|e| self.e(e))?,
                sent_ms: r.get(10).map_err(|e| self.e(e))?,
                delivery_status: r.get(11).map_err(|e| self.e(e))?,
                delivery_ms: r.get(12).map_err(|e| self.e(e))?,
                fee_main: r.get(13).map_err(|e| self.e(e))?,
                fee_token: r.get(14).map_err(|e| self.e(e))?,
            };
            if let Err(e) = f(&row) {
                return Ok(Err(e));
            }
        }
        Ok(Ok(()))
    }

    // ----- delivery reconcile ------------------------------------------------

    /// Sent rows with a message id that were never looked up, or whose last
    /// answer was not final (`seen` is) and is older than `recheck_before_ms`;
    /// after `after_id`, in file order.
    pub fn delivery_candidates(
        &self,
        campaign_id: i64,
        after_id: i64,
        recheck_before_ms: i64,
        limit: usize,
    ) -> Result<Vec<LookupRow>> {
        let mut stmt = self
            .conn
            .prepare_cached(&format!(
                "SELECT id, line, phone, msg_id FROM rows WHERE {DELIVERY_CANDIDATE_SQL} AND id > ?3 \
                 ORDER BY id LIMIT ?4"
            ))
            .map_err(|e| self.e(e))?;
        let out = stmt
            .query_map(
                params![campaign_id, recheck_before_ms, after_id, limit as i64],
                |r| {
                    Ok(LookupRow {
                        id: r.get(0)?,
                        line: r.get::<_, i64>(1)? as u64,
                        phone: r.get(2)?,
                        msg_id: r.get(3)?,
                    })
                },
            )
            .map_err(|e| self.e(e))?
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| self.e(e))?;
        Ok(out)
    }

    pub fn delivery_candidates_count(
        &self,
        campaign_id: i64,
        recheck_before_ms: i64,
    ) -> Result<u64> {
        self.conn
            .query_row(
                &format!("SELECT COUNT(*) FROM rows WHERE {DELIVERY_CANDIDATE_SQL}"),
                params![campaign_id, recheck_before_ms],
                |r| r.get::<_, i64>(0),
            )
            .map(|n| n as u64)
            .map_err(|e| self.e(e))
    }

    /// Store lookup results in one transaction.
    pub fn save_deliveries(&mut self, updates: &[DeliveryUpdate]) -> Result<()> {
        let path = self.path.clone();
        let err = |e| sql_err(&path, e);
        let tx = self.conn.transaction().map_err(err)?;
        {
            let mut stmt = tx
                .prepare_cached(
                    "UPDATE rows SET delivery_status = COALESCE(?2, delivery_status), \
                     delivery_ms = COALESCE(?3, delivery_ms), fee_main = COALESCE(?4, fee_main), \
                     fee_token = COALESCE(?5, fee_token), delivery_checked_ms = ?6 \
                     WHERE id = ?1 AND state = 'sent'",
                )
                .map_err(err)?;
            for u in updates {
                stmt.execute(params![
                    u.row_id,
                    u.status,
                    u.delivery_ms,
                    u.fee_main,
                    u.fee_token,
                    u.checked_ms
                ])
                .map_err(err)?;
            }
        }
        tx.commit().map_err(err)
    }

    pub fn delivery_counts(&self, campaign_id: i64) -> Result<DeliveryCounts> {
        self.conn
            .query_row(
                "SELECT COUNT(*), COALESCE(SUM(delivery_checked_ms IS NOT NULL), 0), \
                        COALESCE(SUM(delivery_status = 'unknown'), 0), \
                        COALESCE(SUM(delivery_status = 'received'), 0), \
                        COALESCE(SUM(delivery_status = 'seen'), 0), \
                        COALESCE(SUM(msg_id IS NULL), 0), \
                        COALESCE(SUM(fee_main), 0), COALESCE(SUM(fee_token), 0) \
                 FROM rows WHERE campaign_id = ?1 AND state = 'sent'",
                [campaign_id],
                |r| {
                    let n = |i: usize| r.get::<_, i64>(i).map(|v| v as u64);
                    Ok(DeliveryCounts {
                        sent: n(0)?,
                        checked: n(1)?,
                        unknown: n(2)?,
                        received: n(3)?,
                        seen: n(4)?,
                        no_msg_id: n(5)?,
                        fee_main: r.get(6)?,
                        fee_token: r.get(7)?,
                    })
                },
            )
            .map_err(|e| self.e(e))
    }

    pub fn quota_day(&self, key: &QuotaKey) -> Result<QuotaDay> {
        let found = self
            .conn
            .query_row(
                "SELECT used, provider_limit, exhausted FROM quota_days WHERE account = ?1 AND oa_id = ?2 AND day = ?3",
                params![key.account, key.oa_id, key.day],
                |r| {
                    Ok(QuotaDay {
                        day: key.day.clone(),
                        used: r.get::<_, i64>(0)? as u64,
                        provider_limit: r.get::<_, Option<i64>>(1)?.map(|v| v as u64),
                        exhausted: r.get::<_, i64>(2)? != 0,
                    })
                },
            )
            .optional()
            .map_err(|e| self.e(e))?;
        Ok(found.unwrap_or(QuotaDay {
            day: key.day.clone(),
            ..Default::default()
        }))
    }

    /// Messages sent today by this OA through any campaign (for `status`).
    pub fn quota_used_on(&self, oa_id: &str, day: &str) -> Result<u64> {
        self.conn
            .query_row(
                "SELECT COALESCE(SUM(used), 0) FROM quota_days WHERE oa_id = ?1 AND day = ?2",
                params![oa_id, day],
                |r| r.get::<_, i64>(0),
            )
            .map(|v| v as u64)
            .map_err(|e| self.e(e))
    }

    // ----- writes (applied by the writer thread) ----------------------------

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

fn duplicate_reason(
    tx: &Connection,
    campaign_id: i64,
    key: Option<i64>,
    tracking_id: Option<&str>,
) -> rusqlite::Result<(&'static str, String)> {
    if let Some(key) = key {
        let first: Option<i64> = tx
            .query_row(
                "SELECT line FROM rows WHERE campaign_id = ?1 AND dedup_key = ?2",
                params![campaign_id, key],
                |r| r.get(0),
            )
            .optional()?;
        if let Some(first) = first {
            return Ok((
                "duplicate_phone",
                format!("duplicate phone: already at line {first} (use --allow-duplicate-phones to send to both)"),
            ));
        }
    }
    let first: Option<i64> = tx
        .query_row(
            "SELECT line FROM rows WHERE campaign_id = ?1 AND tracking_id = ?2",
            params![campaign_id, tracking_id],
            |r| r.get(0),
        )
        .optional()?;
    Ok((
        "duplicate_tracking_id",
        match first {
            Some(first) => format!("duplicate tracking_id: already used at line {first}"),
            None => "duplicate row".to_string(),
        },
    ))
}

/// `?1` campaign id, `?2` recheck rows last checked before this (ms).
const DELIVERY_CANDIDATE_SQL: &str = "campaign_id = ?1 AND state = 'sent' AND msg_id IS NOT NULL \
    AND (delivery_checked_ms IS NULL \
         OR (COALESCE(delivery_status, 'unknown') <> 'seen' AND delivery_checked_ms < ?2))";

const CAMPAIGN_COLS: &str = "id, name, csv_path, csv_sha256, template_keys, provider, base_url, oa_id, \
    template_id, token_type, tracking_prefix, import_done, imported_through_line, status, last_error, \
    in_doubt_policy, created_ms, updated_ms, not_after_ms, min_interval_ms, send_window";

fn campaign_from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<Campaign> {
    let keys: String = r.get(4)?;
    Ok(Campaign {
        id: r.get(0)?,
        name: r.get(1)?,
        csv_path: r.get(2)?,
        csv_sha256: r.get(3)?,
        template_keys: serde_json::from_str(&keys).unwrap_or_default(),
        provider: r.get(5)?,
        base_url: r.get(6)?,
        oa_id: r.get(7)?,
        template_id: r.get(8)?,
        token_type: r.get(9)?,
        tracking_prefix: r.get(10)?,
        import_done: r.get::<_, i64>(11)? != 0,
        imported_through_line: r.get::<_, i64>(12)? as u64,
        status: CampaignStatus::parse(&r.get::<_, String>(13)?),
        last_error: r.get(14)?,
        in_doubt_policy: r.get(15)?,
        created_ms: r.get(16)?,
        updated_ms: r.get(17)?,
        not_after_ms: r.get(18)?,
        min_interval_ms: r.get(19)?,
        send_window: r.get(20)?,
    })
}

fn is_busy(e: &rusqlite::Error) -> bool {
    matches!(e, rusqlite::Error::SqliteFailure(f, _)
        if f.code == rusqlite::ErrorCode::DatabaseBusy || f.code == rusqlite::ErrorCode::DatabaseLocked)
}

fn sql_err(path: &Path, e: rusqlite::Error) -> StoreError {
    if let rusqlite::Error::SqliteFailure(f, _) = &e {
        if f.code == rusqlite::ErrorCode::DatabaseBusy
            || f.code == rusqlite::ErrorCode::DatabaseLocked
        {
            return StoreError::Busy {
                path: path.to_path_buf(),
                secs: BUSY_TIMEOUT.as_secs(),
            };
        }
        if f.code == rusqlite::ErrorCode::ReadOnly {
            return StoreError::ReadOnly {
                path: path.to_path_buf(),
            };
        }
        if f.code == rusqlite::ErrorCode::DiskFull || f.code == rusqlite::ErrorCode::SystemIoFailure
        {
            return StoreError::Disk {
                path: path.to_path_buf(),
                source: e,
            };
        }
    }
    StoreError::Sqlite {
        path: path.to_path_buf(),
        source: e,
    }
}

// ===== the writer ============================================================

/// A row transition or bookkeeping write.
#[derive(Debug)]
pub enum WriteOp {
    /// A bought token; the row moves to `token_ready`.
    SaveToken {
        key: TokenKey,
        token: JourneyToken,
        row_id: i64,
    },
    /// Claim a quota unit (if `quota`) and mark the row `in_flight`. Refused
    /// (nothing written) when the day's quota is used up.
    MarkInFlight {
        row_id: i64,
        journey_id: Option<String>,
        quota: QuotaKey,
        limit: Option<u64>,
        gate: ClaimGate,
        /// A token bought for this row, stored first (even when the claim
        /// is refused: it was paid for).
        save_token: Option<(TokenKey, JourneyToken)>,
    },
    /// Apply the claim checks alone (before buying a token for the row):
    /// the row becomes `expired`/`skipped`, or nothing changes.
    CheckGate {
        row_id: i64,
        gate: ClaimGate,
    },
    /// The deadline passed: every open row of the campaign becomes `expired`.
    ExpireOpen {
        campaign_id: i64,
        not_after_ms: i64,
    },
    MarkSent {
        row_id: i64,
        msg_id: Option<String>,
        resent_after_doubt: bool,
        provider_quota: Option<(QuotaKey, QuotaInfo)>,
    },
    /// Permanent failure; `release` gives the quota unit back (the provider
    /// did not accept the message).
    MarkFailed {
        row_id: i64,
        code: String,
        message: String,
        release: Option<QuotaKey>,
    },
    /// Back to `pending`: nothing was accepted (429, refused connection,
    /// quota, abort). Keeps the error for the report.
    MarkPending {
        row_id: i64,
        code: String,
        message: String,
        release: Option<QuotaKey>,
    },
    /// Held for an operator (`--in-doubt hold`).
    MarkInDoubt {
        row_id: i64,
        code: String,
        message: String,
    },
    QuotaExhausted {
        quota: QuotaKey,
    },
    CampaignStatus {
        campaign_id: i64,
        status: CampaignStatus,
        last_error: Option<String>,
    },
}

/// What a write did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WriteResult {
    Done,
    /// `MarkInFlight` refused: the day's quota is used up.
    QuotaFull,
    /// The row is now `expired`: the campaign's deadline passed.
    Expired,
    /// The row is now `skipped`: its phone had a message too recently.
    Skipped,
    /// `ExpireOpen`: how many rows expired.
    Count(u64),
}

struct Pending {
    op: WriteOp,
    ack: Option<oneshot::Sender<Result<WriteResult, String>>>,
    result: Option<WriteResult>,
}

fn apply_op(
    tx: &Connection,
    op: &WriteOp,
    quota_rows: &mut std::collections::HashSet<QuotaKey>,
) -> rusqlite::Result<WriteResult> {
    let now = quota::now_ms();
    match op {
        WriteOp::SaveToken { key, token, row_id } => {
            save_token(tx, key, token, *row_id, now)?;
            Ok(WriteResult::Done)
        }
        WriteOp::MarkInFlight {
            row_id,
            journey_id,
            quota,
            limit,
            gate,
            save_token: bought,
        } => {
            // The token was paid for: stored whatever the claim decides.
            if let Some((key, token)) = bought {
                store_token(tx, key, token, now)?;
            }
            if let Some(refused) = apply_gate(tx, *row_id, gate, now)? {
                return Ok(refused);
            }
            let claimed = mark_in_flight(
                tx,
                *row_id,
                journey_id.as_deref(),
                quota,
                *limit,
                now,
                quota_rows,
            )?;
            if claimed == WriteResult::Done {
                record_phone_send(tx, gate, *row_id, now)?;
            }
            if let (WriteResult::QuotaFull, Some((_, token))) = (claimed, bought) {
                // Not sent now: the row keeps its token for the next run.
                row_token_ready(tx, *row_id, token, now)?;
            }
            Ok(claimed)
        }
        _ => apply_row_op(tx, op, now),
    }
}

fn save_token(
    tx: &Connection,
    key: &TokenKey,
    token: &JourneyToken,
    row_id: i64,
    now: i64,
) -> rusqlite::Result<()> {
    store_token(tx, key, token, now)?;
    row_token_ready(tx, row_id, token, now)
}

fn store_token(
    tx: &Connection,
    key: &TokenKey,
    token: &JourneyToken,
    now: i64,
) -> rusqlite::Result<()> {
    tx.prepare_cached(
                "INSERT INTO tokens (account, oa_id, phone, token_type, journey_id, provider_ref, token, expires_ms, status, created_ms) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10) \
                 ON CONFLICT (account, oa_id, phone, token_type) DO UPDATE SET \
                 journey_id = excluded.journey_id, provider_ref = excluded.provider_ref, token = excluded.token, \
                 expires_ms = excluded.expires_ms, status = excluded.status, created_ms = excluded.created_ms",
            )?
            .execute(params![
                key.account,
                key.oa_id,
                key.phone,
                key.token_type,
                token.journey_id,
                token.provider_ref,
                token.token,
                quota::to_ms(token.expires_at),
                token.status,
                now
            ])?;
    Ok(())
}

fn row_token_ready(
    tx: &Connection,
    row_id: i64,
    token: &JourneyToken,
    now: i64,
) -> rusqlite::Result<()> {
    tx.prepare_cached(
        "UPDATE rows SET state = 'token_ready', journey_id = ?2, updated_ms = ?3 \
                 WHERE id = ?1 AND state = 'pending'",
    )?
    .execute(params![row_id, token.journey_id, now])?;
    Ok(())
}

fn mark_in_flight(
    tx: &Connection,
    row_id: i64,
    journey_id: Option<&str>,
    quota: &QuotaKey,
    limit: Option<u64>,
    now: i64,
    quota_rows: &mut std::collections::HashSet<QuotaKey>,
) -> rusqlite::Result<WriteResult> {
    if !quota_rows.contains(quota) {
        tx.prepare_cached(
            "INSERT INTO quota_days (account, oa_id, day) VALUES (?1, ?2, ?3) ON CONFLICT DO NOTHING",
        )?
        .execute(params![quota.account, quota.oa_id, quota.day])?;
        quota_rows.insert(quota.clone());
    }
    let limit = limit.map(|l| l as i64);
    let claimed = tx
                .prepare_cached(
                    "UPDATE quota_days SET used = used + 1 \
                     WHERE account = ?1 AND oa_id = ?2 AND day = ?3 AND exhausted = 0 \
                       AND (?4 IS NULL OR used < ?4) AND (provider_limit IS NULL OR used < provider_limit)",
                )?
                .execute(params![quota.account, quota.oa_id, quota.day, limit])?;
    if claimed == 0 {
        return Ok(WriteResult::QuotaFull);
    }
    tx.prepare_cached(
        "UPDATE rows SET state = 'in_flight', attempts = attempts + 1, \
                 journey_id = COALESCE(?2, journey_id), updated_ms = ?3 WHERE id = ?1",
    )?
    .execute(params![row_id, journey_id, now])?;
    Ok(WriteResult::Done)
}

/// The phone's latest claimed send (for the frequency cap), keeping the one
/// before so a refused claim can be taken back.
fn record_phone_send(
    tx: &Connection,
    gate: &ClaimGate,
    row_id: i64,
    now: i64,
) -> rusqlite::Result<()> {
    tx.prepare_cached(
        "INSERT INTO phone_sends (oa_id, phone, last_ms, row_id) VALUES (?1, ?2, ?3, ?4) \
         ON CONFLICT (oa_id, phone) DO UPDATE SET \
         prev_ms = CASE WHEN row_id = excluded.row_id THEN prev_ms ELSE last_ms END, \
         prev_row_id = CASE WHEN row_id = excluded.row_id THEN prev_row_id ELSE row_id END, \
         last_ms = excluded.last_ms, row_id = excluded.row_id",
    )?
    .execute(params![gate.oa_id, gate.phone, now, row_id])?;
    Ok(())
}

fn apply_row_op(tx: &Connection, op: &WriteOp, now: i64) -> rusqlite::Result<WriteResult> {
    match op {
        WriteOp::SaveToken { .. } | WriteOp::MarkInFlight { .. } => {
            unreachable!("applied by apply_op")
        }
        WriteOp::CheckGate { row_id, gate } => {
            Ok(apply_gate(tx, *row_id, gate, now)?.unwrap_or(WriteResult::Done))
        }
        WriteOp::ExpireOpen {
            campaign_id,
            not_after_ms,
        } => {
            let deadline = quota::fmt_local(quota::from_ms(*not_after_ms));
            let n = tx
                .prepare_cached(&format!(
                    "UPDATE rows SET state = 'expired', error_code = 'expired', \
                     error = CASE WHEN state IN ('in_flight', 'in_doubt') \
                       THEN ?2 || ' (an earlier attempt''s reply was never recorded: it may have been delivered)' \
                       ELSE ?2 END, updated_ms = ?3 \
                     WHERE campaign_id = ?1 AND {OPEN_STATES_SQL}"
                ))?
                .execute(params![
                    campaign_id,
                    format!("not sent: the campaign's deadline {deadline} passed"),
                    now
                ])?;
            Ok(WriteResult::Count(n as u64))
        }
        WriteOp::MarkSent {
            row_id,
            msg_id,
            resent_after_doubt,
            provider_quota,
        } => {
            tx.prepare_cached(
                "UPDATE rows SET state = 'sent', msg_id = ?2, error_code = NULL, error = NULL, \
                 resent_after_doubt = resent_after_doubt OR ?3, updated_ms = ?4, sent_ms = ?4 WHERE id = ?1",
            )?
            .execute(params![row_id, msg_id, resent_after_doubt, now])?;
            if let Some((q, info)) = provider_quota {
                let used_by_provider = info.daily.saturating_sub(info.remaining) as i64;
                tx.prepare_cached(
                    "UPDATE quota_days SET provider_limit = ?4, used = MAX(used, ?5) \
                     WHERE account = ?1 AND oa_id = ?2 AND day = ?3",
                )?
                .execute(params![
                    q.account,
                    q.oa_id,
                    q.day,
                    info.daily as i64,
                    used_by_provider
                ])?;
            }
            Ok(WriteResult::Done)
        }
        WriteOp::MarkFailed {
            row_id,
            code,
            message,
            release,
        } => {
            release_claim(tx, *row_id, release.as_ref())?;
            tx.prepare_cached(
                "UPDATE rows SET state = 'failed', error_code = ?2, error = ?3, updated_ms = ?4 WHERE id = ?1",
            )?
            .execute(params![row_id, code, message, now])?;
            Ok(WriteResult::Done)
        }
        WriteOp::MarkPending {
            row_id,
            code,
            message,
            release,
        } => {
            release_claim(tx, *row_id, release.as_ref())?;
            tx.prepare_cached(
                "UPDATE rows SET state = CASE WHEN journey_id IS NULL THEN 'pending' ELSE 'token_ready' END, \
                 error_code = ?2, error = ?3, updated_ms = ?4 WHERE id = ?1",
            )?
            .execute(params![row_id, code, message, now])?;
            Ok(WriteResult::Done)
        }
        WriteOp::MarkInDoubt {
            row_id,
            code,
            message,
        } => {
            tx.prepare_cached(
                "UPDATE rows SET state = 'in_doubt', error_code = ?2, error = ?3, updated_ms = ?4 WHERE id = ?1",
            )?
            .execute(params![row_id, code, message, now])?;
            Ok(WriteResult::Done)
        }
        WriteOp::QuotaExhausted { quota } => {
            tx.prepare_cached(
                "INSERT INTO quota_days (account, oa_id, day, exhausted) VALUES (?1, ?2, ?3, 1) \
                 ON CONFLICT (account, oa_id, day) DO UPDATE SET exhausted = 1",
            )?
            .execute(params![quota.account, quota.oa_id, quota.day])?;
            Ok(WriteResult::Done)
        }
        WriteOp::CampaignStatus {
            campaign_id,
            status,
            last_error,
        } => {
            tx.prepare_cached(
                "UPDATE campaigns SET status = ?2, last_error = COALESCE(?3, last_error), updated_ms = ?4 WHERE id = ?1",
            )?
            .execute(params![campaign_id, status.as_str(), last_error, now])?;
            Ok(WriteResult::Done)
        }
    }
}

/// Give back what a claim took when the provider did not accept the
/// message: the quota unit, and the phone's "last message" mark.
fn release_claim(tx: &Connection, row_id: i64, key: Option<&QuotaKey>) -> rusqlite::Result<()> {
    if let Some(q) = key {
        tx.prepare_cached(
            "UPDATE quota_days SET used = MAX(used - 1, 0) WHERE account = ?1 AND oa_id = ?2 AND day = ?3",
        )?
        .execute(params![q.account, q.oa_id, q.day])?;
        let phone: Option<String> = tx
            .prepare_cached("SELECT phone FROM rows WHERE id = ?1")?
            .query_row([row_id], |r| r.get(0))
            .optional()?;
        if let Some(phone) = phone {
            tx.prepare_cached(
                "DELETE FROM phone_sends WHERE oa_id = ?1 AND phone = ?2 AND row_id = ?3 AND prev_ms IS NULL",
            )?
            .execute(params![q.oa_id, phone, row_id])?;
            tx.prepare_cached(
                "UPDATE phone_sends SET last_ms = prev_ms, row_id = prev_row_id, prev_ms = NULL, prev_row_id = NULL \
                 WHERE oa_id = ?1 AND phone = ?2 AND row_id = ?3",
            )?
            .execute(params![q.oa_id, phone, row_id])?;
        }
    }
    Ok(())
}

/// The deadline and frequency-cap checks of a claim. `Some` means the row
/// was settled (`expired` / `skipped`) instead of claimed.
fn apply_gate(
    tx: &Connection,
    row_id: i64,
    gate: &ClaimGate,
    now: i64,
) -> rusqlite::Result<Option<WriteResult>> {
    if let Some(deadline) = gate.not_after_ms.filter(|d| now > *d) {
        tx.prepare_cached(
            "UPDATE rows SET state = 'expired', error_code = 'expired', \
             error = CASE WHEN state IN ('in_flight', 'in_doubt') \
               THEN ?2 || ' (an earlier attempt''s reply was never recorded: it may have been delivered)' \
               ELSE ?2 END, updated_ms = ?3 WHERE id = ?1",
        )?
        .execute(params![
            row_id,
            format!(
                "not sent: the campaign's deadline {} passed",
                quota::fmt_local(quota::from_ms(deadline))
            ),
            now
        ])?;
        return Ok(Some(WriteResult::Expired));
    }
    let Some(interval) = gate.min_interval_ms else {
        return Ok(None);
    };
    let last: Option<(i64, i64, Option<String>, Option<i64>)> = tx
        .prepare_cached(
            "SELECT p.last_ms, p.row_id, c.name, r.line FROM phone_sends p \
             LEFT JOIN rows r ON r.id = p.row_id LEFT JOIN campaigns c ON c.id = r.campaign_id \
             WHERE p.oa_id = ?1 AND p.phone = ?2",
        )?
        .query_row(params![gate.oa_id, gate.phone], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?))
        })
        .optional()?;
    let Some((last_ms, last_row, campaign, line)) = last else {
        return Ok(None);
    };
    // A row's own earlier attempt (a resend in doubt) never blocks it.
    if last_row == row_id || last_ms <= now - interval {
        return Ok(None);
    }
    let source = match (campaign, line) {
        (Some(c), Some(l)) => format!(" (campaign {c}, line {l})"),
        _ => String::new(),
    };
    tx.prepare_cached(
        "UPDATE rows SET state = 'skipped', error_code = 'min_interval', error = ?2, updated_ms = ?3 WHERE id = ?1",
    )?
    .execute(params![
        row_id,
        format!(
            "skipped: this phone got a message from OA {} at {}{source}, within --min-interval-per-phone {}",
            gate.oa_id,
            quota::fmt_local(quota::from_ms(last_ms)),
            humantime::format_duration(std::time::Duration::from_millis(interval as u64))
        ),
        now
    ])?;
    Ok(Some(WriteResult::Skipped))
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
        let mut store = Store::open(path)?;
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
                                if let Some(ack) = p.ack {
                                    let _ = ack.send(Ok(p.result.unwrap_or(WriteResult::Done)));
                                }
                            }
                        }
                        Err(e) => {
                            // Nothing of this batch is durable; everyone waiting learns so.
                            let msg = e.to_string();
                            for p in batch.drain(..) {
                                if let Some(ack) = p.ack {
                                    let _ = ack.send(Err(msg.clone()));
                                }
                            }
                            // Later writes would build on a state we failed to record: stop.
                            rx.close();
                            while let Ok(p) = rx.try_recv() {
                                if let Some(ack) = p.ack {
                                    let _ = ack.send(Err(msg.clone()));
                                }
                            }
                            return Err(e);
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
            Ok(Err(msg)) => Err(StoreError::WriterGone(msg)),
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

#[cfg(test)]
mod tests {
    use super::*;

    fn new_campaign(store: &mut Store, name: &str) -> Campaign {
        store
            .create_campaign(&NewCampaign {
                name,
                csv_path: "x.csv",
                csv_sha256: "abc",
                template_keys: &["name".to_string(), "amount".to_string()],
                provider: "sandbox",
                base_url: None,
                oa_id: "1",
                template_id: "100",
                token_type: "token_logistics_7",
                tracking_prefix: "zb-test",
                in_doubt_policy: "resend",
                not_after_ms: None,
                min_interval_ms: None,
            })
            .unwrap()
    }

    #[test]
    fn import_rejects_duplicates_with_the_first_line_and_keeps_every_row() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = Store::open(&dir.path().join("s.sqlite")).unwrap();
        let c = new_campaign(&mut store, "c1");
        let rows = [
            ImportRow::Accepted {
                line: 2,
                phone: "84912345678",
                tracking_id: None,
                data_json: r#"["A","1"]"#,
            },
            ImportRow::Rejected {
                line: 3,
                raw_phone: "abc",
                reason: "bad phone",
            },
            ImportRow::Accepted {
                line: 4,
                phone: "84912345678",
                tracking_id: None,
                data_json: r#"["B","2"]"#,
            },
            ImportRow::Accepted {
                line: 5,
                phone: "84987654321",
                tracking_id: Some("t-1"),
                data_json: r#"["C","3"]"#,
            },
            ImportRow::Accepted {
                line: 6,
                phone: "84911111111",
                tracking_id: Some("t-1"),
                data_json: r#"["D","4"]"#,
            },
        ];
        let counts = store.import_batch(c.id, &rows, 6, true, true).unwrap();
        assert_eq!((counts.accepted, counts.rejected), (2, 3));
        let rejects = store.rejects(c.id, 10).unwrap();
        assert_eq!(rejects.len(), 3);
        assert!(rejects[1].2.contains("already at line 2"), "{rejects:?}");
        assert!(rejects[2].2.contains("tracking_id"), "{rejects:?}");
        let c = store.find_campaign("c1").unwrap().unwrap();
        assert!(c.import_done);
        assert_eq!(c.status, CampaignStatus::Ready);

        let page = store.open_rows_page(&c, "acct", 0, 10, false).unwrap();
        assert_eq!(page.len(), 2);
        assert_eq!(page[0].tracking_id, "zb-test-2");
        assert_eq!(page[1].tracking_id, "t-1");
    }

    #[test]
    fn processes_opening_a_new_database_at_once_all_succeed() {
        for _ in 0..5 {
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("s.sqlite");
            let barrier = std::sync::Arc::new(std::sync::Barrier::new(8));
            let opened: Vec<_> = (0..8)
                .map(|_| {
                    let (path, barrier) = (path.clone(), barrier.clone());
                    std::thread::spawn(move || {
                        barrier.wait();
                        Store::open(&path).map(|_| ()).map_err(|e| e.to_string())
                    })
                })
                .collect();
            for t in opened {
                t.join().unwrap().unwrap();
            }
        }
    }

    #[test]
    fn open_rows_query_uses_the_partial_index() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("s.sqlite")).unwrap();
        assert_uses_open_rows_index(
            &store,
            &format!(
                "SELECT r.id FROM rows r WHERE r.campaign_id = 1 AND {OPEN_STATES_SQL_R} AND r.id > 0 ORDER BY r.id LIMIT 10"
            ),
        );
    }

    fn assert_uses_open_rows_index(store: &Store, query: &str) {
        let plan: Vec<String> = store
            .conn
            .prepare(&format!("EXPLAIN QUERY PLAN {query}"))
            .unwrap()
            .query_map([], |r| r.get::<_, String>(3))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        assert!(plan.iter().any(|p| p.contains("rows_open")), "{plan:?}");
    }

    #[test]
    fn a_version_3_database_gets_the_open_rows_index_without_an_in_list() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.sqlite");
        {
            let store = Store::open(&path).unwrap();
            // Put it back the way versions 1–3 left it.
            store
                .conn
                .execute_batch(
                    "DROP INDEX rows_open; \
                     CREATE INDEX rows_open ON rows(campaign_id, id) \
                       WHERE state IN ('pending','token_ready','in_flight','in_doubt'); \
                     PRAGMA user_version = 3;",
                )
                .unwrap();
        }
        let store = Store::open(&path).unwrap();
        let sql: String = store
            .conn
            .query_row(
                "SELECT sql FROM sqlite_master WHERE name = 'rows_open'",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert!(
            sql.contains(OPEN_STATES_SQL) && !sql.contains(" IN "),
            "{sql}"
        );
        assert_uses_open_rows_index(
            &store,
            &format!("SELECT COUNT(*) FROM rows WHERE campaign_id = 1 AND {OPEN_STATES_SQL}"),
        );
    }

    /// A claim that stores a bought token, refused by the quota (row 1) or
    /// by the deadline (row 2): the token is kept either way.
    #[tokio::test]
    async fn a_token_bought_with_the_in_flight_mark_is_stored_even_when_the_claim_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.sqlite");
        let mut store = Store::open(&path).unwrap();
        let c = new_campaign(&mut store, "c1");
        let phones = ["84912345678", "84912345679"];
        let import: Vec<ImportRow> = phones
            .iter()
            .enumerate()
            .map(|(i, phone)| ImportRow::Accepted {
                line: i as u64 + 2,
                phone,
                tracking_id: None,
                data_json: "[]",
            })
            .collect();
        store.import_batch(c.id, &import, 3, true, true).unwrap();
        let rows: Vec<i64> = store
            .open_rows_page(&c, "a", 0, 10, false)
            .unwrap()
            .iter()
            .map(|r| r.id)
            .collect();
        let (writer, thread) = Writer::start(&path).unwrap();
        let key = |phone: &str| TokenKey {
            account: "a".into(),
            oa_id: "1".into(),
            phone: phone.into(),
            token_type: "token_logistics_7".into(),
        };
        let token = |n: u32| JourneyToken {
            journey_id: format!("700000000{n}"),
            provider_ref: None,
            token: Some("t".into()),
            expires_at: quota::now() + time::Duration::days(7),
            status: None,
        };
        let claim =
            |i: usize, limit: Option<u64>, not_after_ms: Option<i64>| WriteOp::MarkInFlight {
                row_id: rows[i],
                journey_id: Some(token(i as u32).journey_id),
                quota: QuotaKey {
                    account: "a".into(),
                    oa_id: "1".into(),
                    day: "2026-11-23".into(),
                },
                limit,
                gate: ClaimGate {
                    oa_id: "1".into(),
                    phone: phones[i].into(),
                    not_after_ms,
                    min_interval_ms: None,
                },
                save_token: Some((key(phones[i]), token(i as u32))),
            };
        assert_eq!(
            writer.write(claim(0, Some(0), None)).await.unwrap(),
            WriteResult::QuotaFull
        );
        assert_eq!(
            writer.write(claim(1, None, Some(1))).await.unwrap(),
            WriteResult::Expired
        );
        drop(writer);
        thread.join().unwrap().unwrap();
        for (i, phone) in phones.iter().enumerate() {
            let stored = store.token(&key(phone)).unwrap().unwrap();
            assert_eq!(stored.journey_id, token(i as u32).journey_id);
        }
        let counts = store.state_counts(c.id).unwrap();
        assert_eq!(
            (counts.token_ready, counts.in_flight, counts.expired),
            (1, 0, 1)
        );
    }

    #[tokio::test]
    async fn quota_claims_stop_at_the_limit_and_releases_give_back() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.sqlite");
        let mut store = Store::open(&path).unwrap();
        let c = new_campaign(&mut store, "c1");
        let rows: Vec<String> = (0..3).map(|i| format!("8491234567{i}")).collect();
        let import: Vec<ImportRow<'_>> = rows
            .iter()
            .enumerate()
            .map(|(i, p)| ImportRow::Accepted {
                line: i as u64 + 2,
                phone: p,
                tracking_id: None,
                data_json: "[]",
            })
            .collect();
        store.import_batch(c.id, &import, 4, true, true).unwrap();
        let page = store.open_rows_page(&c, "a", 0, 10, false).unwrap();
        let (writer, thread) = Writer::start(&path).unwrap();
        let q = QuotaKey {
            account: "a".into(),
            oa_id: "1".into(),
            day: "2026-11-23".into(),
        };
        let claim = |id| WriteOp::MarkInFlight {
            row_id: id,
            journey_id: None,
            quota: q.clone(),
            limit: Some(2),
            gate: ClaimGate {
                oa_id: "1".into(),
                phone: format!("8491000000{id}"),
                not_after_ms: None,
                min_interval_ms: None,
            },
            save_token: None,
        };
        assert_eq!(
            writer.write(claim(page[0].id)).await.unwrap(),
            WriteResult::Done
        );
        assert_eq!(
            writer.write(claim(page[1].id)).await.unwrap(),
            WriteResult::Done
        );
        assert_eq!(
            writer.write(claim(page[2].id)).await.unwrap(),
            WriteResult::QuotaFull
        );
        writer
            .write(WriteOp::MarkFailed {
                row_id: page[1].id,
                code: "-118".into(),
                message: "no".into(),
                release: Some(q.clone()),
            })
            .await
            .unwrap();
        assert_eq!(
            writer.write(claim(page[2].id)).await.unwrap(),
            WriteResult::Done
        );
        drop(writer);
        thread.join().unwrap().unwrap();
        let counts = store.state_counts(c.id).unwrap();
        assert_eq!((counts.in_flight, counts.failed), (2, 1));
        assert_eq!(store.quota_day(&q).unwrap().used, 2);
    }
}
