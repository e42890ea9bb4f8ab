//! Figures for the console's pictures: a campaign's messages sent,
//! delivered and seen per time bucket, and an OA's messages per month.
//! Each answer is a handful of buckets, never rows.
//!
//! The chart's counts are kept per campaign and minute in `campaign_series`
//! by the transactions that change the rows (as `campaign_counts` is, see
//! counters.rs), so a campaign page never walks a million sent rows and
//! their callbacks:
//! - `rows.ledger_delivered_ms` / `rows.ledger_seen_ms`: the earliest
//!   callback reporting the row received-or-seen / seen (matched by msg_id
//!   or tracking id, as `raise_rank` matches them). Lowered when an event is
//!   stored, when the row gets its msg_id, when an import loads the line an
//!   earlier event named — the three places the delivery rank is raised;
//! - a trigger on every UPDATE (and DELETE) of `sent_ms`, the fees,
//!   reconcile's answer or those two times takes the row's marks out of
//!   their old minutes and adds them to the new ones.
//!
//! A row counts as sent in the minute of `sent_ms`, delivered in the minute
//! of the earlier of its ledger time and reconcile's (`received`/`seen`),
//! seen likewise. A chart bucket is a whole number of minutes starting on a
//! whole minute, so minutes add up to any bucket exactly.
//! [`Store::recount_series`] counts the same from the rows and events (the
//! scan the table replaced); tests compare the two.
//!
//! The SQL is one text for both databases but for two words, passed to the
//! macros: the two-argument minimum (SQLite's `MIN`, PostgreSQL's `LEAST`)
//! and what makes a comparison a number (nothing on SQLite, `zb_n` on
//! PostgreSQL, see schema_pg).

use super::db::{params, Db, DbError, Dialect};
use super::rows::from_row;
use super::rows::rows_of_tracking_id_sql;

use super::{Result, Store};

/// The earliest time (event time, else arrival) of the events with one of
/// `$statuses` naming row `$r`, by msg_id or by tracking id (explicit, or
/// the campaign's prefix and the line): what the ledger times hold.
macro_rules! first_event_sql {
    ($r:literal, $statuses:literal) => {
        concat!(
            "(SELECT MIN(t) FROM (SELECT COALESCE(event_ms, received_ms) AS t FROM delivery_events \
               WHERE status IN (", $statuses, ") AND msg_id = ", $r, ".msg_id \
             UNION ALL SELECT COALESCE(event_ms, received_ms) FROM delivery_events \
               WHERE status IN (", $statuses, ") AND tracking_id = COALESCE(", $r, ".tracking_id, \
                 (SELECT c.tracking_prefix FROM campaigns c WHERE c.id = ", $r, ".campaign_id) \
                 || '-' || ", $r, ".line)) AS f)"
        )
    };
}

/// Reconcile's answer's time for row `$r` when it is one of `$statuses`.
macro_rules! reconciled_sql {
    ($r:literal, $statuses:literal) => {
        concat!(
            "CASE WHEN ",
            $r,
            ".delivery_status IN (",
            $statuses,
            ") THEN ",
            $r,
            ".delivery_ms END"
        )
    };
}

/// The earlier (`$min`: the two-argument minimum) of a ledger time and
/// reconcile's answer when it is one of `$statuses` (NULL when neither).
macro_rules! earliest_sql {
    ($min:literal, $ledger:expr, $r:literal, $statuses:literal) => {
        concat!(
            "COALESCE(",
            $min,
            "(",
            $ledger,
            ", ",
            reconciled_sql!($r, $statuses),
            "), ",
            $ledger,
            ", ",
            reconciled_sql!($r, $statuses),
            ")"
        )
    };
}

/// A row's marks with sign `$k`: (campaign_id, minute, sent, delivered,
/// seen, fees, with_fee), one line each for its send, its delivery, its
/// seen (a NULL minute: not there). `$from` names the table (empty for a
/// trigger's NEW / OLD); `$delivered` / `$seen` are its ledger times;
/// `$min` / `$n` the dialect's words (see the module's note).
macro_rules! marks_sql {
    ($min:literal, $n:literal, $k:literal, $r:literal, $from:literal, $delivered:expr, $seen:expr) => {
        concat!(
            "SELECT ",
            $r,
            ".campaign_id AS campaign_id, ",
            $r,
            ".sent_ms / 60000 AS minute, ",
            $k,
            " AS sent, 0 AS delivered, 0 AS seen, ",
            $k,
            " * (COALESCE(",
            $r,
            ".fee_main, 0) + COALESCE(",
            $r,
            ".fee_token, 0)) AS fees, ",
            $k,
            " * ",
            $n,
            "(",
            $r,
            ".fee_main IS NOT NULL OR ",
            $r,
            ".fee_token IS NOT NULL) AS with_fee",
            $from,
            " UNION ALL SELECT ",
            $r,
            ".campaign_id, ",
            earliest_sql!($min, $delivered, $r, "'received', 'seen'"),
            " / 60000, 0, ",
            $k,
            ", 0, 0, 0",
            $from,
            " UNION ALL SELECT ",
            $r,
            ".campaign_id, ",
            earliest_sql!($min, $seen, $r, "'seen'"),
            " / 60000, 0, 0, ",
            $k,
            ", 0, 0",
            $from
        )
    };
}

/// Marks summed per (campaign, minute).
macro_rules! sums_sql {
    ($marks:expr) => {
        concat!(
            "SELECT campaign_id, minute, SUM(sent), SUM(delivered), SUM(seen), SUM(fees), SUM(with_fee) \
             FROM (", $marks, ") AS m WHERE minute IS NOT NULL GROUP BY campaign_id, minute"
        )
    };
}

/// Added into the table (a trigger's, the back-fill's).
macro_rules! add_sql {
    ($marks:expr) => {
        concat!(
            "INSERT INTO campaign_series (campaign_id, minute, sent, delivered, seen, fees, with_fee) ",
            sums_sql!($marks),
            " ON CONFLICT (campaign_id, minute) DO UPDATE SET \
             sent = campaign_series.sent + excluded.sent, \
             delivered = campaign_series.delivered + excluded.delivered, \
             seen = campaign_series.seen + excluded.seen, \
             fees = campaign_series.fees + excluded.fees, \
             with_fee = campaign_series.with_fee + excluded.with_fee;"
        )
    };
}

/// A trigger's or the back-fill's marks of `$r` (NEW, OLD, or the table
/// `rows`) from its own ledger times, `$min` / `$n` the dialect's words:
/// the SQL both databases' migration 17 share.
macro_rules! ledger_marks_sql {
    ($min:literal, $n:literal, $k:literal, $r:literal, $from:literal) => {
        marks_sql!(
            $min,
            $n,
            $k,
            $r,
            $from,
            concat!($r, ".ledger_delivered_ms"),
            concat!($r, ".ledger_seen_ms")
        )
    };
}

/// Every row's marks added (the back-fill).
macro_rules! backfill_marks_sql {
    ($min:literal, $n:literal) => {
        add_sql!(ledger_marks_sql!($min, $n, "1", "rows", " FROM rows"))
    };
}

/// An UPDATE trigger's body: the new marks in, the old ones out.
macro_rules! update_marks_sql {
    ($min:literal, $n:literal) => {
        add_sql!(concat!(
            ledger_marks_sql!($min, $n, "1", "NEW", ""),
            " UNION ALL ",
            ledger_marks_sql!($min, $n, "-1", "OLD", "")
        ))
    };
}

/// A DELETE trigger's body: the old marks out.
macro_rules! delete_marks_sql {
    ($min:literal, $n:literal) => {
        add_sql!(ledger_marks_sql!($min, $n, "-1", "OLD", ""))
    };
}

/// The index that lets `sent_span` find a campaign's first and last send
/// without touching the table (appended to MIGRATIONS, number 13).
pub(super) const SERIES_MIGRATION: &str = r#"
    CREATE INDEX IF NOT EXISTS rows_sent_ms ON rows(campaign_id, sent_ms)
        WHERE sent_ms IS NOT NULL;
"#;

/// The ledger times back-filled from the events already stored (one look
/// per row, by index, only when there are any); both databases.
macro_rules! backfill_sql {
    () => {
        concat!(
            "UPDATE rows SET ledger_delivered_ms = ",
            first_event_sql!("rows", "'received', 'seen'"),
            ", ledger_seen_ms = ",
            first_event_sql!("rows", "'seen'"),
            " WHERE EXISTS (SELECT 1 FROM delivery_events WHERE status IN ('received', 'seen'));\n"
        )
    };
}

/// The kept series (appended to MIGRATIONS, number 17): the ledger times
/// back-filled, the minutes back-filled in one pass over the rows, then
/// the triggers.
pub(super) const SERIES_COUNTERS_MIGRATION: &str = concat!(
    "ALTER TABLE rows ADD COLUMN ledger_delivered_ms INTEGER;
    ALTER TABLE rows ADD COLUMN ledger_seen_ms INTEGER;
    CREATE TABLE campaign_series (
        campaign_id INTEGER NOT NULL REFERENCES campaigns(id),
        minute INTEGER NOT NULL,
        sent INTEGER NOT NULL DEFAULT 0,
        delivered INTEGER NOT NULL DEFAULT 0,
        seen INTEGER NOT NULL DEFAULT 0,
        fees INTEGER NOT NULL DEFAULT 0,
        with_fee INTEGER NOT NULL DEFAULT 0,
        PRIMARY KEY (campaign_id, minute)
    ) WITHOUT ROWID;
    ",
    backfill_sql!(),
    backfill_marks_sql!("MIN", ""),
    "
    CREATE TRIGGER rows_series_update AFTER UPDATE OF sent_ms, fee_main, fee_token,
        delivery_status, delivery_ms, ledger_delivered_ms, ledger_seen_ms ON rows
    WHEN OLD.sent_ms IS NOT NEW.sent_ms OR OLD.fee_main IS NOT NEW.fee_main
        OR OLD.fee_token IS NOT NEW.fee_token OR OLD.delivery_status IS NOT NEW.delivery_status
        OR OLD.delivery_ms IS NOT NEW.delivery_ms
        OR OLD.ledger_delivered_ms IS NOT NEW.ledger_delivered_ms
        OR OLD.ledger_seen_ms IS NOT NEW.ledger_seen_ms
    BEGIN ",
    update_marks_sql!("MIN", ""),
    " END;
    CREATE TRIGGER rows_series_delete AFTER DELETE ON rows BEGIN ",
    delete_marks_sql!("MIN", ""),
    " END;
    "
);

/// The trigger's condition on PostgreSQL (SQLite's is in its CREATE TRIGGER).
macro_rules! changed_pg {
    () => {
        "OLD.sent_ms IS DISTINCT FROM NEW.sent_ms OR OLD.fee_main IS DISTINCT FROM NEW.fee_main \
         OR OLD.fee_token IS DISTINCT FROM NEW.fee_token \
         OR OLD.delivery_status IS DISTINCT FROM NEW.delivery_status \
         OR OLD.delivery_ms IS DISTINCT FROM NEW.delivery_ms \
         OR OLD.ledger_delivered_ms IS DISTINCT FROM NEW.ledger_delivered_ms \
         OR OLD.ledger_seen_ms IS DISTINCT FROM NEW.ledger_seen_ms"
    };
}

/// Migration 17 on PostgreSQL (see `schema_pg`): the same columns, table,
/// back-fills; the triggers as plpgsql functions.
pub(super) const SERIES_COUNTERS_PG: &[&str] = &[
    "ALTER TABLE rows ADD COLUMN ledger_delivered_ms BIGINT;
    ALTER TABLE rows ADD COLUMN ledger_seen_ms BIGINT;
    CREATE TABLE campaign_series (
        campaign_id BIGINT NOT NULL REFERENCES campaigns(id),
        minute BIGINT NOT NULL,
        sent BIGINT NOT NULL DEFAULT 0,
        delivered BIGINT NOT NULL DEFAULT 0,
        seen BIGINT NOT NULL DEFAULT 0,
        fees BIGINT NOT NULL DEFAULT 0,
        with_fee BIGINT NOT NULL DEFAULT 0,
        PRIMARY KEY (campaign_id, minute)
    );",
    backfill_sql!(),
    backfill_marks_sql!("LEAST", "zb_n"),
    concat!(
        "CREATE FUNCTION rows_series_update() RETURNS trigger LANGUAGE plpgsql AS $f$ BEGIN ",
        update_marks_sql!("LEAST", "zb_n"),
        " RETURN NULL; END $f$;
        CREATE TRIGGER rows_series_update AFTER UPDATE OF sent_ms, fee_main, fee_token,
            delivery_status, delivery_ms, ledger_delivered_ms, ledger_seen_ms ON rows
            FOR EACH ROW WHEN (",
        changed_pg!(),
        ") EXECUTE FUNCTION rows_series_update();
        CREATE FUNCTION rows_series_delete() RETURNS trigger LANGUAGE plpgsql AS $f$ BEGIN ",
        delete_marks_sql!("LEAST", "zb_n"),
        " RETURN NULL; END $f$;
        CREATE TRIGGER rows_series_delete AFTER DELETE ON rows
            FOR EACH ROW EXECUTE FUNCTION rows_series_delete();"
    ),
];

/// Back to version 16 (a test of an older database sets the version back
/// and migrates again; this migration cannot run twice). SQLite only.
#[cfg(test)]
pub(super) const UNDO_SERIES_COUNTERS_MIGRATION: &str = "\
    DROP TRIGGER rows_series_update; DROP TRIGGER rows_series_delete; \
    DROP TABLE campaign_series; \
    ALTER TABLE rows DROP COLUMN ledger_delivered_ms; \
    ALTER TABLE rows DROP COLUMN ledger_seen_ms;";

/// The dialect's two-argument minimum (see the module's note).
fn least(d: Dialect) -> &'static str {
    match d {
        Dialect::Sqlite => "MIN",
        Dialect::Postgres => "LEAST",
    }
}

/// A stored event's status counts for the chart's ledger times of the rows
/// it names: by msg_id (`by_msg_id`: when it is stored; an import's
/// re-match passes only its tracking id, as `raise_rank` is called), and by
/// tracking id. A time only ever moves earlier.
pub(super) fn note_event(tx: &Db, event_id: i64, by_msg_id: bool) -> Result<(), DbError> {
    let min = least(tx.dialect());
    // `?3` is 0/1 (a number on both databases, where a bound boolean is not).
    let set = format!(
        "ledger_delivered_ms = {min}(COALESCE(ledger_delivered_ms, ?2), ?2), \
         ledger_seen_ms = CASE WHEN ?3 = 1 THEN {min}(COALESCE(ledger_seen_ms, ?2), ?2) \
         ELSE ledger_seen_ms END"
    );
    let earlier =
        "(COALESCE(ledger_delivered_ms > ?2, TRUE) OR (?3 = 1 AND COALESCE(ledger_seen_ms > ?2, TRUE)))";
    let Some((msg_id, tracking_id, t, seen)) = tx
        .prepare_cached(
            "SELECT msg_id, tracking_id, COALESCE(event_ms, received_ms), \
             CASE WHEN status = 'seen' THEN 1 ELSE 0 END \
             FROM delivery_events WHERE id = ?1 AND status IN ('received', 'seen')",
        )?
        .query_map([event_id], |r| {
            Ok((
                r.get::<Option<String>>(0)?,
                r.get::<Option<String>>(1)?,
                r.get::<i64>(2)?,
                r.get::<i64>(3)?,
            ))
        })?
        .into_iter()
        .next()
    else {
        return Ok(());
    };
    if let (true, Some(m)) = (by_msg_id, msg_id) {
        tx.prepare_cached(&format!(
            "UPDATE rows SET {set} WHERE msg_id = ?1 AND {earlier}"
        ))?
        .execute(params![m, t, seen])?;
    }
    if let Some(tr) = tracking_id {
        // The rows `raise_rank` finds for a tracking id.
        tx.prepare_cached(&format!(
            concat!(
                "UPDATE rows SET {set} WHERE {earlier} AND id IN (",
                rows_of_tracking_id_sql!(),
                ")"
            ),
            set = set,
            earlier = earlier
        ))?
        .execute(params![tr, t, seen])?;
    }
    Ok(())
}

/// What [`note_msg_id`] runs on each database: a row just got its msg_id,
/// the events that came for it first set its ledger times now.
fn note_msg_id_sql(d: Dialect) -> &'static str {
    macro_rules! note_msg_id_sql {
        ($min:literal) => {
            concat!(
                "UPDATE rows SET \
                   ledger_delivered_ms = COALESCE(", $min, "(ledger_delivered_ms, d), ledger_delivered_ms, d), \
                   ledger_seen_ms = COALESCE(", $min, "(ledger_seen_ms, s), ledger_seen_ms, s) \
                 FROM (SELECT MIN(COALESCE(event_ms, received_ms)) AS d, \
                         MIN(CASE WHEN status = 'seen' THEN COALESCE(event_ms, received_ms) END) AS s \
                       FROM delivery_events WHERE msg_id = ?2 AND status IN ('received', 'seen')) AS e \
                 WHERE id = ?1 AND d IS NOT NULL \
                   AND (COALESCE(ledger_delivered_ms > d, TRUE) OR COALESCE(ledger_seen_ms > s, s IS NOT NULL))"
            )
        };
    }
    match d {
        Dialect::Sqlite => note_msg_id_sql!("MIN"),
        Dialect::Postgres => note_msg_id_sql!("LEAST"),
    }
}

/// A row just got its msg_id: see [`note_msg_id_sql`].
pub(super) fn note_msg_id(tx: &Db, row_id: i64, msg_id: &str) -> Result<(), DbError> {
    tx.prepare_cached(note_msg_id_sql(tx.dialect()))?
        .execute(params![row_id, msg_id])?;
    Ok(())
}

/// How many rows were sent, first delivered and first seen in one bucket
/// (`bucket` counts buckets from the first send).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct BucketCounts {
    pub bucket: i64,
    pub sent: u64,
    pub delivered: u64,
    pub seen: u64,
}

/// One minute of a campaign's series (`minute`: ms since the epoch / 60,000),
/// with the fees reported for the rows sent in it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct MinuteCounts {
    pub minute: i64,
    pub sent: i64,
    pub delivered: i64,
    pub seen: i64,
    pub fees: i64,
    pub with_fee: i64,
}

/// A campaign's minutes recounted from its rows and events, `$min` / `$n`
/// the dialect's words.
macro_rules! recount_sql {
    ($min:literal, $n:literal) => {
        concat!(
            "SELECT minute, CAST(SUM(sent) AS BIGINT), CAST(SUM(delivered) AS BIGINT), \
             CAST(SUM(seen) AS BIGINT), CAST(SUM(fees) AS BIGINT), CAST(SUM(with_fee) AS BIGINT) FROM (",
            marks_sql!(
                $min,
                $n,
                "1",
                "rows",
                " FROM rows WHERE rows.campaign_id = ?1",
                first_event_sql!("rows", "'received', 'seen'"),
                first_event_sql!("rows", "'seen'")
            ),
            ") AS m WHERE minute IS NOT NULL GROUP BY minute \
             HAVING SUM(sent) <> 0 OR SUM(delivered) <> 0 OR SUM(seen) <> 0 OR SUM(with_fee) <> 0 \
             ORDER BY minute"
        )
    };
}

impl Store {
    /// The first and the last send of a campaign (ms), if any was sent.
    /// Two subqueries: each is one step down the index, where one
    /// MIN/MAX query would walk every sent row's entry.
    pub fn sent_span(&self, campaign_id: i64) -> Result<Option<(i64, i64)>> {
        let (lo, hi): (Option<i64>, Option<i64>) = self
            .db
            .prepare_cached(
                "SELECT (SELECT MIN(sent_ms) FROM rows WHERE campaign_id = ?1 AND sent_ms IS NOT NULL), \
                        (SELECT MAX(sent_ms) FROM rows WHERE campaign_id = ?1 AND sent_ms IS NOT NULL)",
            )
            .and_then(|mut s| s.query_row([campaign_id], |r| Ok((r.get(0)?, r.get(1)?))))
            .map_err(|e| self.e(e))?;
        Ok(lo.zip(hi))
    }

    /// Per bucket of `bucket_ms` from `start_ms` (both whole minutes): rows
    /// sent, rows first delivered (received or seen), rows first seen, read
    /// from the kept minutes. Times before `start_ms` count in bucket 0.
    pub fn delivery_buckets(
        &self,
        campaign_id: i64,
        start_ms: i64,
        bucket_ms: i64,
    ) -> Result<Vec<BucketCounts>> {
        // CASE, not SQLite's two-argument MAX (PostgreSQL's is GREATEST).
        self.db
            .prepare_cached(
                "SELECT CASE WHEN minute * 60000 > ?2 THEN minute * 60000 - ?2 ELSE 0 END / ?3 AS b, \
                 CAST(SUM(sent) AS BIGINT), CAST(SUM(delivered) AS BIGINT), CAST(SUM(seen) AS BIGINT) \
                 FROM campaign_series WHERE campaign_id = ?1 \
                   AND (sent <> 0 OR delivered <> 0 OR seen <> 0) \
                 GROUP BY 1 ORDER BY 1",
            )
            .and_then(|mut s| {
                s.query_map(params![campaign_id, start_ms, bucket_ms.max(1)], |r| {
                    Ok(BucketCounts {
                        bucket: r.get(0)?,
                        sent: r.get::<i64>(1)?.max(0) as u64,
                        delivered: r.get::<i64>(2)?.max(0) as u64,
                        seen: r.get::<i64>(3)?.max(0) as u64,
                    })
                })
            })
            .map_err(|e| self.e(e))
    }

    /// Provider-reported fees (fee_main + fee_token, VND) of a campaign's
    /// sent rows, and how many rows had one; (0, 0) when none was reported.
    pub fn reported_fees(&self, campaign_id: i64) -> Result<(u64, u64)> {
        self.db
            .prepare_cached(
                "SELECT CAST(COALESCE(SUM(fees), 0) AS BIGINT), CAST(COALESCE(SUM(with_fee), 0) AS BIGINT) \
                 FROM campaign_series WHERE campaign_id = ?1",
            )
            .and_then(|mut s| {
                s.query_row([campaign_id], |r| {
                    Ok((
                        r.get::<i64>(0)?.max(0) as u64,
                        r.get::<i64>(1)?.max(0) as u64,
                    ))
                })
            })
            .map_err(|e| self.e(e))
    }

    /// The kept minutes of a campaign that count something, in order.
    pub fn series_minutes(&self, campaign_id: i64) -> Result<Vec<MinuteCounts>> {
        self.minutes(
            "SELECT minute, sent, delivered, seen, fees, with_fee FROM campaign_series \
             WHERE campaign_id = ?1 AND (sent <> 0 OR delivered <> 0 OR seen <> 0 OR with_fee <> 0) \
             ORDER BY minute",
            campaign_id,
        )
    }

    /// The same minutes counted from the rows and events themselves (a
    /// pass over every row of the campaign): what the kept ones must equal.
    pub fn recount_series(&self, campaign_id: i64) -> Result<Vec<MinuteCounts>> {
        self.minutes(
            match self.db.dialect() {
                Dialect::Sqlite => recount_sql!("MIN", ""),
                Dialect::Postgres => recount_sql!("LEAST", "zb_n"),
            },
            campaign_id,
        )
    }

    fn minutes(&self, sql: &str, campaign_id: i64) -> Result<Vec<MinuteCounts>> {
        self.db
            .query_map(sql, [campaign_id], |r| {
                Ok(from_row!(r => MinuteCounts { minute, sent, delivered, seen, fees, with_fee }))
            })
            .map_err(|e| self.e(e))
    }

    /// Messages counted per OA in a month (`YYYY-MM`, the OA's days), every
    /// account summed: from the quota days, a row per OA and day.
    pub fn month_messages_by_oa(&self, month: &str) -> Result<Vec<(String, u64)>> {
        self.db
            .prepare_cached(
                "SELECT oa_id, CAST(SUM(used) AS BIGINT) FROM quota_days \
                 WHERE day >= ?1 || '-01' AND day <= ?1 || '-31' GROUP BY oa_id ORDER BY oa_id",
            )
            .and_then(|mut stmt| {
                stmt.query_map([month], |r| Ok((r.get(0)?, r.get::<i64>(1)? as u64)))
            })
            .map_err(|e| self.e(e))
    }
}

#[cfg(test)]
mod tests {
    use super::super::counters::UNDO_COUNTERS_MIGRATION;
    use super::super::db::params;
    use super::super::events::on_msg_id;
    use super::super::lookups::tests::{import, mark_sent as mark_sent_plain};
    use super::super::test_pg::{on_both, Place};
    use super::super::test_support::*;
    use super::super::*;
    use super::*;

    const MIN: i64 = 60_000;

    fn bucket(bucket: i64, sent: u64, delivered: u64, seen: u64) -> BucketCounts {
        BucketCounts {
            bucket,
            sent,
            delivered,
            seen,
        }
    }

    fn event(msg: Option<&str>, tracking: Option<&str>, s: &str, at: i64, key: &str) -> NewEvent {
        NewEvent {
            provider: "sandbox".into(),
            kind: "delivery".into(),
            msg_id: msg.map(Into::into),
            tracking_id: tracking.map(Into::into),
            status: DeliveryStatus::parse(s),
            raw: "{}".into(),
            event_ms: Some(at),
            received_ms: at + 5 * MIN,
            dedup_key: key.into(),
            ..NewEvent::default()
        }
    }

    fn same(store: &Store, c: &Campaign) -> Vec<MinuteCounts> {
        let (kept, counted) = (
            store.series_minutes(c.id).unwrap(),
            store.recount_series(c.id).unwrap(),
        );
        assert_eq!(kept, counted);
        kept
    }

    /// Marked sent as the writer does: the msg_id's earlier events count.
    fn mark_sent(store: &mut Store, id: i64, msg: &str, at: i64) {
        let tx = store.db.transaction().unwrap();
        tx.execute(
            "UPDATE rows SET state = 'sent', msg_id = ?2, sent_ms = ?3 WHERE id = ?1",
            params![id, msg, at],
        )
        .unwrap();
        on_msg_id(&tx, id, msg).unwrap();
        tx.commit().unwrap();
    }

    #[test]
    fn store_buckets_count_first_delivery_and_seen_by_msg_id_tracking_id_or_line() {
        on_both(
            "store_buckets_count_first_delivery_and_seen_by_msg_id_tracking_id_or_line",
            |store, _| {
                let c = new_campaign(store, "series");
                let ids = import(store, &c, &[None, None, None, Some("T-9"), None]);
                assert_eq!(store.sent_span(c.id).unwrap(), None);
                mark_sent_plain(store, ids[0], Some("m1"), MIN);
                mark_sent_plain(store, ids[1], Some("m2"), 2 * MIN);
                mark_sent_plain(store, ids[2], None, 3 * MIN);
                mark_sent_plain(store, ids[3], None, 3 * MIN + 54_000);
                assert_eq!(
                    store.sent_span(c.id).unwrap(),
                    Some((MIN, 3 * MIN + 54_000))
                );
                // What reconcile stored for row 1; fees for rows 0 and 1.
                store
                    .db
                    .execute(
                        "UPDATE rows SET delivery_status = 'received', delivery_ms = ?2, \
                         fee_main = 5 WHERE id = ?1",
                        params![ids[1], 2 * MIN + 12_000],
                    )
                    .unwrap();
                store
                    .db
                    .execute(
                        "UPDATE rows SET fee_main = 100, fee_token = 20 WHERE id = ?1",
                        [ids[0]],
                    )
                    .unwrap();
                let events = [
                    event(Some("m1"), None, "received", MIN + 12_000, "k0"),
                    event(Some("m1"), None, "seen", 2 * MIN + 36_000, "k1"),
                    // Line 4 by the derived tracking id (row 2 has no msg_id).
                    event(None, Some("zb-test-4"), "received", 3 * MIN + 30_000, "k2"),
                    event(None, Some("T-9"), "seen", 4 * MIN + 6_000, "k3"),
                    // Not a line: matches nothing, breaks nothing.
                    event(None, Some("zb-test-x4"), "seen", MIN + 6_000, "k4"),
                    // Another campaign's prefix.
                    event(None, Some("zb-other-2"), "seen", MIN + 6_000, "k5"),
                ];
                store.record_events(&events).unwrap();
                assert_eq!(
                    store.delivery_buckets(c.id, MIN, MIN).unwrap(),
                    [
                        bucket(0, 1, 1, 0),
                        bucket(1, 1, 1, 1),
                        bucket(2, 2, 1, 0),
                        bucket(3, 0, 1, 1),
                    ]
                );
                // Times before the start count in bucket 0.
                assert_eq!(
                    store.delivery_buckets(c.id, 5 * MIN, MIN).unwrap(),
                    [bucket(0, 4, 4, 2)]
                );
                assert_eq!(store.reported_fees(c.id).unwrap(), (125, 2));
                same(store, &c);
            },
        );
    }

    #[test]
    fn store_month_messages_sum_every_account_per_oa() {
        on_both(
            "store_month_messages_sum_every_account_per_oa",
            |store, _| {
                for (account, oa, day, used) in [
                    ("a", "oa1", "2026-03-01", 3),
                    ("b", "oa1", "2026-03-31", 4),
                    ("a", "oa2", "2026-03-15", 1),
                    ("a", "oa1", "2026-04-01", 9),
                    ("a", "oa1", "2026-02-28", 9),
                ] {
                    store
                        .db
                        .execute(
                            "INSERT INTO quota_days (account, oa_id, day, used) VALUES (?1, ?2, ?3, ?4)",
                            params![account, oa, day, used],
                        )
                        .unwrap();
                }
                assert_eq!(
                    store.month_messages_by_oa("2026-03").unwrap(),
                    [("oa1".to_string(), 7), ("oa2".to_string(), 1)]
                );
                assert!(store.month_messages_by_oa("2025-03").unwrap().is_empty());
            },
        );
    }

    /// Sent at minutes 100 and 101; the first row seen (a `received` that
    /// came late but happened earlier moves its delivery back), the
    /// second's callback came before its send reply, the third's names its
    /// tracking id; reconcile answers for the third earlier than its event.
    #[test]
    fn series_kept_minutes_follow_early_late_and_earlier_events_and_reconcile() {
        on_both(
            "series_kept_minutes_follow_early_late_and_earlier_events_and_reconcile",
            |store, _| {
                let c = new_campaign(store, "c1");
                let ids = import(store, &c, &[None, None, None]);
                mark_sent(store, ids[0], "m0", 100 * MIN + 10);
                store
                    .record_event(&event(Some("m0"), None, "seen", 107 * MIN, "a"))
                    .unwrap();
                store
                    .record_event(&event(Some("m0"), None, "received", 103 * MIN, "b"))
                    .unwrap();
                store
                    .record_event(&event(Some("m1"), None, "received", 104 * MIN, "c"))
                    .unwrap();
                mark_sent(store, ids[1], "m1", 101 * MIN);
                mark_sent(store, ids[2], "m2", 101 * MIN + 59_999);
                store
                    .record_event(&event(None, Some("zb-test-4"), "seen", 109 * MIN, "d"))
                    .unwrap();
                // A repeat and a failure change nothing.
                store
                    .record_event(&event(Some("m0"), None, "seen", 100 * MIN, "a"))
                    .unwrap();
                store
                    .record_event(&event(Some("m1"), None, "failed_delivery", 100 * MIN, "e"))
                    .unwrap();
                store
                    .db
                    .execute(
                        "UPDATE rows SET delivery_status = 'received', delivery_ms = ?2, fee_main = 300 WHERE id = ?1",
                        params![ids[2], 102 * MIN],
                    )
                    .unwrap();
                let m = |minute, sent, delivered, seen, fees, with_fee| MinuteCounts {
                    minute,
                    sent,
                    delivered,
                    seen,
                    fees,
                    with_fee,
                };
                assert_eq!(
                    same(store, &c),
                    vec![
                        m(100, 1, 0, 0, 0, 0),
                        m(101, 2, 0, 0, 300, 1),
                        m(102, 0, 1, 0, 0, 0),
                        m(103, 0, 1, 0, 0, 0),
                        m(104, 0, 1, 0, 0, 0),
                        m(107, 0, 0, 1, 0, 0),
                        m(109, 0, 0, 1, 0, 0),
                    ]
                );
                // The chart's read: 5-minute buckets from minute 100.
                let b = store.delivery_buckets(c.id, 100 * MIN, 5 * MIN).unwrap();
                let got: Vec<_> = b
                    .iter()
                    .map(|b| (b.bucket, b.sent, b.delivered, b.seen))
                    .collect();
                assert_eq!(got, vec![(0, 3, 3, 0), (1, 0, 0, 2)]);
                assert_eq!(store.reported_fees(c.id).unwrap(), (300, 1));
                assert_eq!(
                    store.sent_span(c.id).unwrap(),
                    Some((100 * MIN + 10, 101 * MIN + 59_999))
                );
                // A resend moves the send; a deleted row leaves.
                store
                    .db
                    .execute(
                        "UPDATE rows SET sent_ms = ?2 WHERE id = ?1",
                        params![ids[0], 110 * MIN],
                    )
                    .unwrap();
                store
                    .db
                    .execute("DELETE FROM rows WHERE id = ?1", [ids[1]])
                    .unwrap();
                let kept = same(store, &c);
                assert_eq!(kept.iter().map(|m| m.sent).sum::<i64>(), 2);
                assert_eq!(kept.iter().map(|m| m.delivered).sum::<i64>(), 2);
            },
        );
    }

    /// Back to version 16 (no kept minutes, no ledger times), opened again:
    /// the migration back-fills what a recount finds, on both databases.
    #[test]
    fn series_the_migration_back_fills_what_a_recount_finds() {
        on_both(
            "series_the_migration_back_fills_what_a_recount_finds",
            |store, place| {
                let c = new_campaign(store, "c1");
                let ids = import(store, &c, &[None, None, None]);
                mark_sent(store, ids[0], "m0", 100 * MIN);
                mark_sent(store, ids[1], "m1", 130 * MIN);
                store
                    .record_events(&[
                        event(Some("m0"), None, "seen", 140 * MIN, "a"),
                        event(Some("m0"), None, "received", 135 * MIN, "b"),
                        event(None, Some("zb-test-3"), "received", 131 * MIN, "c"),
                    ])
                    .unwrap();
                store
                    .db
                    .execute(
                        "UPDATE rows SET fee_token = 50, delivery_status = 'seen', delivery_ms = ?2 WHERE id = ?1",
                        params![ids[1], 132 * MIN],
                    )
                    .unwrap();
                match place {
                    Place::Sqlite(_) => store
                        .db
                        .as_sqlite()
                        .expect("a SQLite store")
                        .execute_batch(&format!(
                            "{UNDO_SERIES_COUNTERS_MIGRATION} PRAGMA user_version = 16;"
                        ))
                        .unwrap(),
                    Place::Postgres(_) => store
                        .db
                        .execute_batch(
                            "DROP TRIGGER rows_series_update ON rows; \
                             DROP TRIGGER rows_series_delete ON rows; \
                             DROP FUNCTION rows_series_update(); DROP FUNCTION rows_series_delete(); \
                             DROP TABLE campaign_series; \
                             ALTER TABLE rows DROP COLUMN ledger_delivered_ms; \
                             ALTER TABLE rows DROP COLUMN ledger_seen_ms; \
                             DELETE FROM schema_version; INSERT INTO schema_version (version) VALUES (16);",
                        )
                        .unwrap(),
                }
                let store = place.open();
                let kept = same(&store, &c);
                let sums: Vec<_> = kept
                    .iter()
                    .map(|m| (m.minute, m.sent, m.delivered, m.seen, m.fees))
                    .collect();
                assert_eq!(
                    sums,
                    vec![
                        (100, 1, 0, 0, 0),
                        (130, 1, 0, 0, 50),
                        (131, 0, 1, 0, 0),
                        (132, 0, 0, 1, 0),
                        (135, 0, 1, 0, 0),
                        (140, 0, 0, 1, 0)
                    ]
                );
                // Older SQLite databases migrate through the counters and
                // the minutes (PostgreSQL's start at version 14).
                if let Place::Sqlite(_) = place {
                    store
                        .db
                        .as_sqlite()
                        .expect("a SQLite store")
                        .execute_batch(&format!(
                            "{UNDO_SERIES_COUNTERS_MIGRATION} {UNDO_COUNTERS_MIGRATION} PRAGMA user_version = 9;"
                        ))
                        .unwrap();
                    drop(store);
                    assert_eq!(same(&place.open(), &c), kept);
                }
            },
        );
    }

    /// The page's reads walk buckets, not rows (SQLite's plan).
    #[test]
    fn series_the_charts_reads_do_not_scan_rows() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path().join("s.sqlite")).unwrap();
        for sql in [
            "SELECT (SELECT MIN(sent_ms) FROM rows WHERE campaign_id = 1 AND sent_ms IS NOT NULL), \
                    (SELECT MAX(sent_ms) FROM rows WHERE campaign_id = 1 AND sent_ms IS NOT NULL)",
            "SELECT minute FROM campaign_series WHERE campaign_id = 1",
        ] {
            let plan: Vec<String> = store
                .db
                .as_sqlite()
                .expect("a SQLite store")
                .prepare(&format!("EXPLAIN QUERY PLAN {sql}"))
                .unwrap()
                .query_map([], |r| r.get::<_, String>(3))
                .unwrap()
                .collect::<std::result::Result<_, _>>()
                .unwrap();
            // "SCAN CONSTANT ROW" is the outer SELECT without a table.
            assert!(
                plan.iter()
                    .all(|p| !p.starts_with("SCAN rows") && !p.starts_with("SCAN campaign_series")),
                "{sql}: {plan:?}"
            );
        }
    }
}
