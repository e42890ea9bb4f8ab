//! The delivery ledger: every provider callback (`zns-batch serve`), kept
//! append-only in `delivery_events`.
//!
//! A row's delivery status is never written onto the row: it is computed at
//! read time by joining the row's msg_id / tracking id with the events. So
//! an event that arrives before the row's send reply is committed (a
//! callback can outrun it) applies by itself as soon as the msg_id is
//! stored, the order of arrival cannot matter, and nothing is replayed.
//!
//! Status order, highest wins: `seen` > `received` > `failed_delivery`. A
//! proof of delivery outranks a failure report (which can belong to an
//! earlier attempt), and a late `received` never hides `seen`. The time
//! shown is the earliest event of the winning status.

use super::db::{params, Begin, Db, DbError, Dialect, OptionalExtension};
use super::rows::rows_of_tracking_id_sql;
use serde::Serialize;

use crate::model::error_note::ErrorNote;

use super::{Store, StoreError};

/// The table and its indexes: appended to the store's MIGRATIONS.
/// `rows_msg_id` and `rows_line` let an event find its row without a scan.
/// IF NOT EXISTS: re-running it (a database whose version was set back) is harmless.
pub(super) const EVENTS_MIGRATION: &str = r#"
    CREATE TABLE IF NOT EXISTS delivery_events (
        id INTEGER PRIMARY KEY,
        provider TEXT NOT NULL,
        kind TEXT NOT NULL,
        msg_id TEXT,
        tracking_id TEXT,
        phone TEXT,
        status TEXT,
        error_code TEXT,
        error TEXT,
        event_ms INTEGER,
        oa_id TEXT,
        template_id TEXT,
        detail TEXT,
        raw TEXT NOT NULL,
        received_ms INTEGER NOT NULL,
        dedup_key TEXT NOT NULL UNIQUE
    );
    CREATE INDEX IF NOT EXISTS delivery_events_msg ON delivery_events(msg_id);
    CREATE INDEX IF NOT EXISTS delivery_events_tracking ON delivery_events(tracking_id);
    CREATE INDEX IF NOT EXISTS delivery_events_template ON delivery_events(template_id, event_ms)
        WHERE template_id IS NOT NULL;
    CREATE INDEX IF NOT EXISTS rows_msg_id ON rows(msg_id) WHERE msg_id IS NOT NULL;
    CREATE INDEX IF NOT EXISTS rows_line ON rows(campaign_id, line);
"#;

/// Delivery outcomes a callback can report, lowest rank first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum DeliveryStatus {
    FailedDelivery,
    Received,
    Seen,
}

impl DeliveryStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            DeliveryStatus::FailedDelivery => "failed_delivery",
            DeliveryStatus::Received => "received",
            DeliveryStatus::Seen => "seen",
        }
    }

    /// Also reads `reconcile`'s stored answer (`unknown` is no status).
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "failed_delivery" => Some(DeliveryStatus::FailedDelivery),
            "received" => Some(DeliveryStatus::Received),
            "seen" => Some(DeliveryStatus::Seen),
            _ => None,
        }
    }
}

/// One callback as the webhook handler understood it. `raw` is the body
/// (or query string) as received: handlers never put a secret there.
#[derive(Debug, Clone, Default)]
pub struct NewEvent {
    pub provider: String,
    /// `delivery`, `quota`, `template_status`, or what the provider named it.
    pub kind: String,
    pub msg_id: Option<String>,
    pub tracking_id: Option<String>,
    /// As the provider sent it (the state database holds full phones anyway).
    pub phone: Option<String>,
    pub status: Option<DeliveryStatus>,
    pub note: ErrorNote,
    /// When it happened by the provider's clock (ms), if it said.
    pub event_ms: Option<i64>,
    pub oa_id: Option<String>,
    pub template_id: Option<String>,
    /// Kind-specific value: the new quota, the new template status.
    pub detail: Option<String>,
    pub raw: String,
    pub received_ms: i64,
    /// Equal for two deliveries of the same event (provider retries).
    pub dedup_key: String,
}

/// What storing one event did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventOutcome {
    /// A delivery event whose row is known.
    Matched,
    /// A delivery event for no known row (yet): kept, applies later.
    Unmatched,
    /// Stored before: nothing changed.
    Repeat,
    /// Kept raw, changes no row (chat receipts, progress reports, others).
    Ignored,
    /// A quota or template event: stored and in force.
    Applied,
}

impl EventOutcome {
    pub fn as_str(self) -> &'static str {
        match self {
            EventOutcome::Matched => "matched",
            EventOutcome::Unmatched => "unmatched",
            EventOutcome::Repeat => "repeat",
            EventOutcome::Ignored => "ignored",
            EventOutcome::Applied => "applied",
        }
    }
}

/// One row's delivery as the ledger (and `reconcile`) tell it.
#[derive(Debug, Clone, Serialize)]
pub struct RowDelivery {
    pub row_id: i64,
    pub line: u64,
    pub tracking_id: String,
    pub state: String,
    pub status: Option<DeliveryStatus>,
    pub at_ms: Option<i64>,
    #[serde(flatten)]
    pub note: ErrorNote,
}

/// A campaign's delivery counts from the ledger (and `reconcile`).
#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub struct LedgerCounts {
    pub received: u64,
    pub seen: u64,
    pub failed_delivery: u64,
    /// Sent rows with no delivery status yet.
    pub unknown: u64,
    /// Delivery events, of any campaign, that match no row (yet).
    pub unmatched: u64,
}

/// Does a row with this msg_id or tracking id (explicit, or derived as
/// `{prefix}-{line}`) exist? `?1` msg_id, `?2` tracking id (either NULL).
/// CROSS JOIN keeps `campaigns` (a few) outside, so `rows` is only ever
/// searched by index.
const ROW_EXISTS_SQL: &str = row_exists_sql!("?1", "?2");

/// Migration 19: the quota events by OA. The campaigns page asks for the
/// day's announced quota of every OA; without it that read walked every
/// delivery callback stored (100k callbacks: the page's p50 went from 30 to
/// 100 ms, BENCHMARKS.md issue 23).
pub(super) const QUOTA_EVENTS_INDEX_MIGRATION: &str =
    "CREATE INDEX IF NOT EXISTS delivery_events_quota ON delivery_events(oa_id, received_ms) WHERE kind = 'quota';";

/// The latest quota an OA's callbacks announced for a Vietnam day (`?1` the
/// OA, `?2` the day).
fn announced_quota_sql(d: Dialect) -> String {
    let day_sql = match d {
        Dialect::Sqlite => "date(received_ms / 1000, 'unixepoch', '+7 hours')",
        Dialect::Postgres => {
            "to_char(to_timestamp(received_ms / 1000 + 25200) AT TIME ZONE 'UTC', 'YYYY-MM-DD')"
        }
    };
    format!(
        "SELECT detail FROM delivery_events WHERE kind = 'quota' AND oa_id = ?1 \
         AND {day_sql} = ?2 \
         ORDER BY COALESCE(event_ms, received_ms) DESC, id DESC LIMIT 1"
    )
}

fn err(store: &Store) -> impl Fn(DbError) -> StoreError + '_ {
    move |source| StoreError::Sqlite {
        path: store.path.to_path_buf(),
        source,
    }
}

impl Store {
    /// Store one callback in its own transaction; the caller answers 2xx
    /// only after this returns Ok (committed). A repeat changes nothing.
    pub fn record_event(&mut self, e: &NewEvent) -> Result<EventOutcome, StoreError> {
        let mut out = self.record_events(std::slice::from_ref(e))?;
        out.pop()
            .ok_or_else(|| StoreError::WriterGone("no outcome for the event".into()))
    }

    /// Store callbacks in one transaction (group commit: one fsync for all
    /// of them), in order; one outcome each. All or nothing: on error none
    /// is stored, so none may be answered 2xx. A repeat (in an earlier
    /// transaction or earlier in `events`) changes nothing.
    pub fn record_events(&mut self, events: &[NewEvent]) -> Result<Vec<EventOutcome>, StoreError> {
        let path = self.path.to_path_buf();
        let err = |source: DbError| StoreError::Sqlite {
            path: path.clone(),
            source,
        };
        let tx = self.db.transaction_with(Begin::Immediate).map_err(err)?;
        let mut out = Vec::with_capacity(events.len());
        for e in events {
            out.push(record_in(&tx, e).map_err(err)?);
        }
        tx.commit().map_err(err)?;
        Ok(out)
    }

    /// Why a template must not be sent: the latest `change_template_status`
    /// for it, unless that says it is enabled again.
    pub fn template_block(&self, template_id: &str) -> Result<Option<String>, StoreError> {
        let latest: Option<(Option<String>, Option<String>)> = self
            .db
            .query_row(
                "SELECT detail, error FROM delivery_events \
                 WHERE template_id = ?1 AND kind = 'template_status' \
                 ORDER BY COALESCE(event_ms, received_ms) DESC, id DESC LIMIT 1",
                [template_id],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()
            .map_err(err(self))?;
        Ok(latest.and_then(|(status, reason)| {
            let status = status.unwrap_or_default();
            if is_enabled_status(&status) {
                return None;
            }
            Some(match reason.filter(|r| !r.is_empty()) {
                Some(reason) => format!("template {template_id} is {status}: {reason}"),
                None => format!("template {template_id} is {status}"),
            })
        }))
    }

    /// The daily limit a provider last announced for an OA on `day`.
    pub fn announced_quota(&self, oa_id: &str, day: &str) -> Result<Option<u64>, StoreError> {
        let detail: Option<String> = self
            .db
            .query_row(
                &announced_quota_sql(self.db.dialect()),
                params![oa_id, day],
                |r| r.get(0),
            )
            .optional()
            .map_err(err(self))?
            .flatten();
        Ok(detail.and_then(|d| d.parse().ok()))
    }

    /// Messages counted per OA on `day`, every account summed (for metrics).
    pub fn quota_used_by_oa(&self, day: &str) -> Result<Vec<(String, u64)>, StoreError> {
        self.db
            .prepare_cached(
                "SELECT oa_id, CAST(SUM(used) AS BIGINT) FROM quota_days WHERE day = ?1 \
                 GROUP BY oa_id ORDER BY oa_id",
            )
            .and_then(|mut s| s.query_map([day], |r| Ok((r.get(0)?, r.get::<i64>(1)? as u64))))
            .map_err(err(self))
    }

    /// Every row of a campaign that was handed to the provider (it has a
    /// msg_id, or is sent / in doubt), in file order, with its delivery.
    pub fn for_each_row_delivery(
        &self,
        campaign_id: i64,
        mut f: impl FnMut(RowDelivery),
    ) -> Result<(), StoreError> {
        let mut rows = self
            .db
            .prepare_cached(
                "SELECT r.id, r.line, COALESCE(r.tracking_id, c.tracking_prefix || '-' || r.line), \
                        r.state, r.msg_id, r.delivery_status, r.delivery_ms \
                 FROM rows r JOIN campaigns c ON c.id = r.campaign_id \
                 WHERE r.campaign_id = ?1 \
                   AND (r.msg_id IS NOT NULL OR r.state IN ('sent', 'in_doubt', 'in_flight')) \
                 ORDER BY r.line, r.id",
            )
            .map_err(err(self))?;
        let mut events = self
            .db
            .prepare_cached(
                "SELECT status, COALESCE(event_ms, received_ms), error_code, error \
                 FROM delivery_events WHERE status IS NOT NULL AND msg_id = ?1 \
                 UNION ALL \
                 SELECT status, COALESCE(event_ms, received_ms), error_code, error \
                 FROM delivery_events WHERE status IS NOT NULL AND tracking_id = ?2",
            )
            .map_err(err(self))?;
        rows.query_each([campaign_id], |r| {
            let msg_id: Option<String> = r.get(4)?;
            let tracking_id: String = r.get(2)?;
            let reconciled: Option<String> = r.get(5)?;
            let mut best = reconciled
                .as_deref()
                .and_then(DeliveryStatus::parse)
                .map(|s| (s, r.get::<Option<i64>>(6).ok().flatten(), None, None));
            events.query_each(params![msg_id, tracking_id], |ev| {
                let status: String = ev.get(0)?;
                let Some(status) = DeliveryStatus::parse(&status) else {
                    return Ok(());
                };
                let at: Option<i64> = ev.get(1)?;
                let better = match &best {
                    None => true,
                    Some((s, t, _, _)) => {
                        status > *s
                            || (status == *s && at.unwrap_or(i64::MAX) < t.unwrap_or(i64::MAX))
                    }
                };
                if better {
                    best = Some((status, at, ev.get(2)?, ev.get(3)?));
                }
                Ok(())
            })?;
            let (status, at_ms, error_code, error) = match best {
                Some((s, t, c, e)) => (Some(s), t, c, e),
                None => (None, None, None, None),
            };
            f(RowDelivery {
                row_id: r.get(0)?,
                line: r.get::<i64>(1)? as u64,
                tracking_id,
                state: r.get(3)?,
                status,
                at_ms,
                note: ErrorNote { error_code, error },
            });
            Ok(())
        })
        .map_err(err(self))
    }

    /// Whether a callback already reported this message's delivery.
    pub fn delivery_reported(&self, msg_id: &str) -> Result<bool, StoreError> {
        self.db
            .prepare_cached(
                "SELECT EXISTS(SELECT 1 FROM delivery_events \
                 WHERE msg_id = ?1 AND status IS NOT NULL)",
            )
            .and_then(|mut s| s.query_row([msg_id], |r| r.get(0)))
            .map_err(err(self))
    }

    /// Delivery counts for one campaign, from its counters; `unmatched`
    /// is ledger-wide.
    pub fn ledger_counts(&self, campaign_id: i64) -> Result<LedgerCounts, StoreError> {
        Ok(self.counters(campaign_id)?.ledger)
    }

    /// The same counts the slow way: every row handed to the provider
    /// joined with its events (see `counters`).
    pub(super) fn recount_ledger(&self, campaign_id: i64) -> Result<LedgerCounts, StoreError> {
        let mut c = LedgerCounts::default();
        self.for_each_row_delivery(campaign_id, |d| match d.status {
            Some(DeliveryStatus::Received) => c.received += 1,
            Some(DeliveryStatus::Seen) => c.seen += 1,
            Some(DeliveryStatus::FailedDelivery) => c.failed_delivery += 1,
            None if d.state == "sent" => c.unknown += 1,
            None => {}
        })?;
        c.unmatched = self.recount_unmatched()?;
        Ok(c)
    }

    /// Delivery events that match no row of any campaign (yet), as their
    /// `matched` flags say (a partial index: no scan).
    pub fn unmatched_events(&self) -> Result<u64, StoreError> {
        self.db
            .query_row(
                "SELECT COUNT(*) FROM delivery_events WHERE kind = 'delivery' AND matched = 0",
                (),
                |r| r.get::<i64>(0),
            )
            .map(|n| n as u64)
            .map_err(err(self))
    }

    /// The same, each event matched again (a pass over every event).
    fn recount_unmatched(&self) -> Result<u64, StoreError> {
        self.db
            .query_row(
                &format!(
                    "SELECT COUNT(*) FROM delivery_events WHERE kind = 'delivery' AND NOT ({})",
                    ROW_EXISTS_SQL
                        .replace("?1", "delivery_events.msg_id")
                        .replace("?2", "delivery_events.tracking_id")
                ),
                (),
                |r| r.get::<i64>(0),
            )
            .map(|n| n as u64)
            .map_err(err(self))
    }

    /// Every event stored, of any kind (tests, diagnostics).
    pub fn event_count(&self) -> Result<u64, StoreError> {
        self.db
            .query_row("SELECT COUNT(*) FROM delivery_events", (), |r| {
                r.get::<i64>(0)
            })
            .map(|n| n as u64)
            .map_err(err(self))
    }
}

/// One event inside the caller's transaction.
fn record_in(tx: &Db, e: &NewEvent) -> Result<EventOutcome, DbError> {
    // RETURNING: the new id on both databases, no row for a repeat.
    let inserted: Option<i64> = tx
        .prepare_cached(
            "INSERT INTO delivery_events (provider, kind, msg_id, tracking_id, phone, status, \
             error_code, error, event_ms, oa_id, template_id, detail, raw, received_ms, dedup_key) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15) \
             ON CONFLICT(dedup_key) DO NOTHING RETURNING id",
        )?
        .query_row(
            params![
                e.provider,
                e.kind,
                e.msg_id,
                e.tracking_id,
                e.phone,
                e.status.map(DeliveryStatus::as_str),
                e.note.error_code,
                e.note.error,
                e.event_ms,
                e.oa_id,
                e.template_id,
                e.detail,
                e.raw,
                e.received_ms,
                e.dedup_key,
            ],
            |r| r.get(0),
        )
        .optional()?;
    let Some(event_id) = inserted else {
        return Ok(EventOutcome::Repeat);
    };
    // Whatever its kind, a status counts for the rows the event names.
    if let Some(status) = e.status {
        raise_rank(
            tx,
            e.msg_id.as_deref(),
            e.tracking_id.as_deref(),
            rank(status),
        )?;
    }
    super::series::note_event(tx, event_id, true)?;
    Ok(match e.kind.as_str() {
        "quota" => {
            if let (Some(oa), Some(limit)) = (&e.oa_id, &e.detail) {
                if let Ok(limit) = limit.parse::<i64>() {
                    // Every account's counter for this OA today learns the limit.
                    tx.execute(
                        "UPDATE quota_days SET provider_limit = ?3, \
                         exhausted = CASE WHEN used < ?3 THEN 0 ELSE exhausted END \
                         WHERE oa_id = ?1 AND day = ?2",
                        params![oa, crate::model::clock::today_key(), limit],
                    )?;
                }
            }
            EventOutcome::Applied
        }
        "template_status" => EventOutcome::Applied,
        "delivery" => {
            let known: bool = tx
                .prepare_cached(&format!("SELECT {ROW_EXISTS_SQL}"))?
                .query_row(params![e.msg_id, e.tracking_id], |r| r.get(0))?;
            if known {
                tx.prepare_cached("UPDATE delivery_events SET matched = 1 WHERE id = ?1")?
                    .execute([event_id])?;
                EventOutcome::Matched
            } else {
                EventOutcome::Unmatched
            }
        }
        _ => EventOutcome::Ignored,
    })
}

/// An event's status as a rank (`DeliveryStatus`'s order).
const EVENT_RANK_SQL: &str =
    "CASE status WHEN 'failed_delivery' THEN 1 WHEN 'received' THEN 2 WHEN 'seen' THEN 3 END";

/// A delivery status as the rank `rows.delivery_rank` keeps.
pub(super) fn rank(s: DeliveryStatus) -> i64 {
    match s {
        DeliveryStatus::FailedDelivery => 1,
        DeliveryStatus::Received => 2,
        DeliveryStatus::Seen => 3,
    }
}

/// Raise the delivery rank of the rows an event with this msg_id or
/// tracking id reports on (the rows `for_each_row_delivery` joins it to:
/// same msg_id, or a tracking id equal to the row's, explicit or derived).
pub(super) fn raise_rank(
    tx: &Db,
    msg_id: Option<&str>,
    tracking_id: Option<&str>,
    rank: i64,
) -> Result<(), DbError> {
    if let Some(m) = msg_id {
        tx.prepare_cached(
            "UPDATE rows SET delivery_rank = ?2 WHERE msg_id = ?1 AND COALESCE(delivery_rank, 0) < ?2",
        )?
        .execute(params![m, rank])?;
    }
    if let Some(t) = tracking_id {
        tx.prepare_cached(concat!(
            "UPDATE rows SET delivery_rank = ?2 WHERE COALESCE(delivery_rank, 0) < ?2 AND id IN (",
            rows_of_tracking_id_sql!(),
            ")"
        ))?
        .execute(params![t, rank])?;
    }
    Ok(())
}

/// What [`on_msg_id`] runs, before and after the chart's note.
static ON_MSG_ID_SQL: std::sync::LazyLock<[String; 2]> = std::sync::LazyLock::new(|| {
    [
        format!(
            "UPDATE rows SET delivery_rank = best FROM ( \
               SELECT MAX({EVENT_RANK_SQL}) AS best FROM delivery_events \
               WHERE msg_id = ?2 AND status IS NOT NULL) AS e \
             WHERE id = ?1 AND best > COALESCE(delivery_rank, 0)"
        ),
        "UPDATE delivery_events SET matched = 1 WHERE msg_id = ?1 AND kind = 'delivery' \
         AND matched = 0"
            .to_string(),
    ]
});

/// A row just got its msg_id (the writer's MarkSent): the events that came
/// for it first count now.
pub(super) fn on_msg_id(tx: &Db, row_id: i64, msg_id: &str) -> Result<(), DbError> {
    let [rank, matched] = &*ON_MSG_ID_SQL;
    tx.prepare_cached(rank)?.execute(params![row_id, msg_id])?;
    super::series::note_msg_id(tx, row_id, msg_id)?;
    tx.prepare_cached(matched)?.execute([msg_id])?;
    Ok(())
}

/// An unmatched event: its id, msg_id, tracking id and status.
type Waiting = (i64, Option<String>, Option<String>, Option<String>);

/// Rows were loaded: delivery events no row matched before may match one
/// of them now (their tracking id names its line). Costs nothing when
/// every event is matched (the usual case: one look at a partial index).
pub(super) fn rematch_events(tx: &Db) -> Result<(), DbError> {
    let waiting: Vec<Waiting> = tx
        .prepare_cached(
            "SELECT id, msg_id, tracking_id, status FROM delivery_events \
             WHERE kind = 'delivery' AND matched = 0",
        )?
        .query_map((), |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))?;
    for (id, msg_id, tracking_id, status) in waiting {
        let known: bool = tx
            .prepare_cached(&format!("SELECT {ROW_EXISTS_SQL}"))?
            .query_row(params![msg_id, tracking_id], |r| r.get(0))?;
        if !known {
            continue;
        }
        tx.prepare_cached("UPDATE delivery_events SET matched = 1 WHERE id = ?1")?
            .execute([id])?;
        if let Some(s) = status.as_deref().and_then(DeliveryStatus::parse) {
            raise_rank(tx, None, tracking_id.as_deref(), rank(s))?;
        }
        super::series::note_event(tx, id, false)?;
    }
    Ok(())
}

/// Zalo's template statuses: ENABLE, PENDING_REVIEW, REJECT, DISABLE.
pub fn is_enabled_status(status: &str) -> bool {
    status.eq_ignore_ascii_case("enable") || status.eq_ignore_ascii_case("enabled")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan(store: &Store, sql: &str) -> Vec<String> {
        store
            .db
            .query_map(
                &format!("EXPLAIN QUERY PLAN {sql}"),
                params!["m-1", "t-1"],
                |r| r.get::<String>(3),
            )
            .unwrap()
    }

    /// A callback's match must not scan `rows` (a campaign can hold 1M).
    #[test]
    fn matching_an_event_uses_indexes_not_a_scan_of_rows() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path().join("s.sqlite")).unwrap();
        let p = plan(&store, &format!("SELECT {ROW_EXISTS_SQL}"));
        assert!(
            p.iter().all(|s| !s.starts_with("SCAN r")),
            "a scan of rows: {p:?}"
        );
        for idx in ["rows_msg_id", "rows_tracking", "rows_line"] {
            assert!(p.iter().any(|s| s.contains(idx)), "{idx} unused: {p:?}");
        }
        let p = plan(
            &store,
            "SELECT status FROM delivery_events WHERE status IS NOT NULL AND msg_id = ?1 \
             UNION ALL SELECT status FROM delivery_events WHERE status IS NOT NULL AND tracking_id = ?2",
        );
        assert!(p.iter().all(|s| !s.starts_with("SCAN")), "{p:?}");
    }

    /// The campaigns page reads each OA's announced quota: through the quota
    /// events' index, not a walk over every callback stored.
    #[test]
    fn the_announced_quota_reads_the_quota_events_only() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path().join("s.sqlite")).unwrap();
        let p = plan(&store, &announced_quota_sql(Dialect::Sqlite));
        assert!(
            p.iter().any(|s| s.contains("delivery_events_quota"))
                && p.iter().all(|s| !s.starts_with("SCAN delivery_events")),
            "{p:?}"
        );
    }

    #[test]
    fn status_rank_never_goes_backwards() {
        assert!(DeliveryStatus::Seen > DeliveryStatus::Received);
        assert!(DeliveryStatus::Received > DeliveryStatus::FailedDelivery);
        assert_eq!(DeliveryStatus::parse("unknown"), None);
    }
}
