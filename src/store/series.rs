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

use rusqlite::{params, Connection};

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
                 || '-' || ", $r, ".line)))"
        )
    };
}

/// The earlier of a ledger time and reconcile's answer when it is one of
/// `$statuses` (NULL when neither).
macro_rules! earliest_sql {
    ($ledger:expr, $r:literal, $statuses:literal) => {
        concat!(
            "COALESCE(MIN(",
            $ledger,
            ", CASE WHEN ",
            $r,
            ".delivery_status IN (",
            $statuses,
            ") THEN ",
            $r,
            ".delivery_ms END), ",
            $ledger,
            ", CASE WHEN ",
            $r,
            ".delivery_status IN (",
            $statuses,
            ") THEN ",
            $r,
            ".delivery_ms END)"
        )
    };
}

/// A row's marks with sign `$k`: (campaign_id, minute, sent, delivered,
/// seen, fees, with_fee), one line each for its send, its delivery, its
/// seen (a NULL minute: not there). `$from` names the table (empty for a
/// trigger's NEW / OLD); `$delivered` / `$seen` are its ledger times.
macro_rules! marks_sql {
    ($k:literal, $r:literal, $from:literal, $delivered:expr, $seen:expr) => {
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
            " * (",
            $r,
            ".fee_main IS NOT NULL OR ",
            $r,
            ".fee_token IS NOT NULL) AS with_fee",
            $from,
            " UNION ALL SELECT ",
            $r,
            ".campaign_id, ",
            earliest_sql!($delivered, $r, "'received', 'seen'"),
            " / 60000, 0, ",
            $k,
            ", 0, 0, 0",
            $from,
            " UNION ALL SELECT ",
            $r,
            ".campaign_id, ",
            earliest_sql!($seen, $r, "'seen'"),
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
             FROM (", $marks, ") WHERE minute IS NOT NULL GROUP BY campaign_id, minute"
        )
    };
}

/// Added into the table (a trigger's, the back-fill's).
macro_rules! add_sql {
    ($marks:expr) => {
        concat!(
            "INSERT INTO campaign_series (campaign_id, minute, sent, delivered, seen, fees, with_fee) ",
            sums_sql!($marks),
            " ON CONFLICT (campaign_id, minute) DO UPDATE SET sent = sent + excluded.sent, \
             delivered = delivered + excluded.delivered, seen = seen + excluded.seen, \
             fees = fees + excluded.fees, with_fee = with_fee + excluded.with_fee;"
        )
    };
}

/// The index that lets `sent_span` find a campaign's first and last send
/// without touching the table (appended to MIGRATIONS, number 13).
pub(super) const SERIES_MIGRATION: &str = r#"
    CREATE INDEX IF NOT EXISTS rows_sent_ms ON rows(campaign_id, sent_ms)
        WHERE sent_ms IS NOT NULL;
"#;

/// The kept series (appended to MIGRATIONS): the ledger times back-filled
/// from the events already stored (one look per row, by index, only when
/// there are any), the minutes back-filled in one pass over the rows, then
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
    UPDATE rows SET ledger_delivered_ms = ",
    first_event_sql!("rows", "'received', 'seen'"),
    ", ledger_seen_ms = ",
    first_event_sql!("rows", "'seen'"),
    " WHERE EXISTS (SELECT 1 FROM delivery_events WHERE status IN ('received', 'seen'));
    ",
    add_sql!(marks_sql!(
        "1",
        "rows",
        " FROM rows",
        "rows.ledger_delivered_ms",
        "rows.ledger_seen_ms"
    )),
    "
    CREATE TRIGGER rows_series_update AFTER UPDATE OF sent_ms, fee_main, fee_token,
        delivery_status, delivery_ms, ledger_delivered_ms, ledger_seen_ms ON rows
    WHEN OLD.sent_ms IS NOT NEW.sent_ms OR OLD.fee_main IS NOT NEW.fee_main
        OR OLD.fee_token IS NOT NEW.fee_token OR OLD.delivery_status IS NOT NEW.delivery_status
        OR OLD.delivery_ms IS NOT NEW.delivery_ms
        OR OLD.ledger_delivered_ms IS NOT NEW.ledger_delivered_ms
        OR OLD.ledger_seen_ms IS NOT NEW.ledger_seen_ms
    BEGIN ",
    add_sql!(concat!(
        marks_sql!(
            "1",
            "NEW",
            "",
            "NEW.ledger_delivered_ms",
            "NEW.ledger_seen_ms"
        ),
        " UNION ALL ",
        marks_sql!(
            "-1",
            "OLD",
            "",
            "OLD.ledger_delivered_ms",
            "OLD.ledger_seen_ms"
        )
    )),
    " END;
    CREATE TRIGGER rows_series_delete AFTER DELETE ON rows BEGIN ",
    add_sql!(marks_sql!(
        "-1",
        "OLD",
        "",
        "OLD.ledger_delivered_ms",
        "OLD.ledger_seen_ms"
    )),
    " END;
    "
);

/// Back to version 14 (a test of an older database sets the version back
/// and migrates again; this migration cannot run twice).
#[cfg(test)]
pub(super) const UNDO_SERIES_COUNTERS_MIGRATION: &str = "\
    DROP TRIGGER rows_series_update; DROP TRIGGER rows_series_delete; \
    DROP TABLE campaign_series; \
    ALTER TABLE rows DROP COLUMN ledger_delivered_ms; \
    ALTER TABLE rows DROP COLUMN ledger_seen_ms;";

/// A stored event's status counts for the chart's ledger times of the rows
/// it names: by msg_id (`by_msg_id`: when it is stored; an import's
/// re-match passes only its tracking id, as `raise_rank` is called), and by
/// tracking id. A time only ever moves earlier.
pub(super) fn note_event(tx: &Connection, event_id: i64, by_msg_id: bool) -> rusqlite::Result<()> {
    let set = "ledger_delivered_ms = MIN(COALESCE(ledger_delivered_ms, ?2), ?2), \
        ledger_seen_ms = CASE WHEN ?3 THEN MIN(COALESCE(ledger_seen_ms, ?2), ?2) ELSE ledger_seen_ms END";
    let earlier =
        "(COALESCE(ledger_delivered_ms > ?2, 1) OR (?3 AND COALESCE(ledger_seen_ms > ?2, 1)))";
    let Some((msg_id, tracking_id, t, seen)) = tx
        .prepare_cached(
            "SELECT msg_id, tracking_id, COALESCE(event_ms, received_ms), status = 'seen' \
             FROM delivery_events WHERE id = ?1 AND status IN ('received', 'seen')",
        )?
        .query_map([event_id], |r| {
            Ok((
                r.get::<_, Option<String>>(0)?,
                r.get::<_, Option<String>>(1)?,
                r.get::<_, i64>(2)?,
                r.get::<_, bool>(3)?,
            ))
        })?
        .next()
        .transpose()?
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
        // The rows `raise_rank` finds for a tracking id (campaigns outside,
        // rows by index).
        tx.prepare_cached(&format!(
            "UPDATE rows SET {set} WHERE {earlier} AND id IN ( \
               SELECT r.id FROM campaigns c CROSS JOIN rows r \
               WHERE r.campaign_id = c.id AND r.tracking_id = ?1 \
               UNION ALL \
               SELECT r.id FROM campaigns c CROSS JOIN rows r \
               WHERE substr(?1, 1, length(c.tracking_prefix) + 1) = c.tracking_prefix || '-' \
                 AND r.campaign_id = c.id \
                 AND r.line = CAST(substr(?1, length(c.tracking_prefix) + 2) AS INTEGER) \
                 AND r.tracking_id IS NULL AND c.tracking_prefix || '-' || r.line = ?1)"
        ))?
        .execute(params![tr, t, seen])?;
    }
    Ok(())
}

/// A row just got its msg_id: the events that came for it first set its
/// ledger times now.
pub(super) fn note_msg_id(tx: &Connection, row_id: i64, msg_id: &str) -> rusqlite::Result<()> {
    tx.prepare_cached(
        "UPDATE rows SET \
           ledger_delivered_ms = COALESCE(MIN(ledger_delivered_ms, d), ledger_delivered_ms, d), \
           ledger_seen_ms = COALESCE(MIN(ledger_seen_ms, s), ledger_seen_ms, s) \
         FROM (SELECT MIN(COALESCE(event_ms, received_ms)) AS d, \
                 MIN(CASE WHEN status = 'seen' THEN COALESCE(event_ms, received_ms) END) AS s \
               FROM delivery_events WHERE msg_id = ?2 AND status IN ('received', 'seen')) \
         WHERE id = ?1 AND d IS NOT NULL \
           AND (COALESCE(ledger_delivered_ms > d, 1) OR COALESCE(ledger_seen_ms > s, s IS NOT NULL))",
    )?
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

impl Store {
    /// The first and the last send of a campaign (ms), if any was sent.
    /// Two subqueries: each is one step down the index, where one
    /// MIN/MAX query would walk every sent row's entry.
    pub fn sent_span(&self, campaign_id: i64) -> Result<Option<(i64, i64)>> {
        let (lo, hi): (Option<i64>, Option<i64>) = self
            .conn
            .prepare_cached(
                "SELECT (SELECT MIN(sent_ms) FROM rows WHERE campaign_id = ?1 AND sent_ms IS NOT NULL), \
                        (SELECT MAX(sent_ms) FROM rows WHERE campaign_id = ?1 AND sent_ms IS NOT NULL)",
            )
            .map_err(|e| self.e(e))?
            .query_row([campaign_id], |r| Ok((r.get(0)?, r.get(1)?)))
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
        let mut stmt = self
            .conn
            .prepare_cached(
                "SELECT MAX(minute * 60000 - ?2, 0) / ?3 AS b, SUM(sent), SUM(delivered), SUM(seen) \
                 FROM campaign_series WHERE campaign_id = ?1 \
                   AND (sent <> 0 OR delivered <> 0 OR seen <> 0) \
                 GROUP BY b ORDER BY b",
            )
            .map_err(|e| self.e(e))?;
        let out = stmt
            .query_map(params![campaign_id, start_ms, bucket_ms.max(1)], |r| {
                Ok(BucketCounts {
                    bucket: r.get(0)?,
                    sent: r.get::<_, i64>(1)?.max(0) as u64,
                    delivered: r.get::<_, i64>(2)?.max(0) as u64,
                    seen: r.get::<_, i64>(3)?.max(0) as u64,
                })
            })
            .map_err(|e| self.e(e))?
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| self.e(e))?;
        Ok(out)
    }

    /// Provider-reported fees (fee_main + fee_token, VND) of a campaign's
    /// sent rows, and how many rows had one; (0, 0) when none was reported.
    pub fn reported_fees(&self, campaign_id: i64) -> Result<(u64, u64)> {
        self.conn
            .prepare_cached(
                "SELECT COALESCE(SUM(fees), 0), COALESCE(SUM(with_fee), 0) FROM campaign_series \
                 WHERE campaign_id = ?1",
            )
            .map_err(|e| self.e(e))?
            .query_row([campaign_id], |r| {
                Ok((
                    r.get::<_, i64>(0)?.max(0) as u64,
                    r.get::<_, i64>(1)?.max(0) as u64,
                ))
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
            concat!(
                "SELECT minute, SUM(sent), SUM(delivered), SUM(seen), SUM(fees), SUM(with_fee) FROM (",
                marks_sql!(
                    "1",
                    "rows",
                    " FROM rows WHERE rows.campaign_id = ?1",
                    first_event_sql!("rows", "'received', 'seen'"),
                    first_event_sql!("rows", "'seen'")
                ),
                ") WHERE minute IS NOT NULL GROUP BY minute \
                 HAVING SUM(sent) <> 0 OR SUM(delivered) <> 0 OR SUM(seen) <> 0 OR SUM(with_fee) <> 0 \
                 ORDER BY minute"
            ),
            campaign_id,
        )
    }

    fn minutes(&self, sql: &str, campaign_id: i64) -> Result<Vec<MinuteCounts>> {
        let mut stmt = self.conn.prepare(sql).map_err(|e| self.e(e))?;
        let out = stmt
            .query_map([campaign_id], |r| {
                Ok(MinuteCounts {
                    minute: r.get(0)?,
                    sent: r.get(1)?,
                    delivered: r.get(2)?,
                    seen: r.get(3)?,
                    fees: r.get(4)?,
                    with_fee: r.get(5)?,
                })
            })
            .map_err(|e| self.e(e))?
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| self.e(e))?;
        Ok(out)
    }

    /// Messages counted per OA in a month (`YYYY-MM`, the OA's days), every
    /// account summed: from the quota days, a row per OA and day.
    pub fn month_messages_by_oa(&self, month: &str) -> Result<Vec<(String, u64)>> {
        let mut stmt = self
            .conn
            .prepare_cached(
                "SELECT oa_id, SUM(used) FROM quota_days \
                 WHERE day >= ?1 || '-01' AND day <= ?1 || '-31' GROUP BY oa_id ORDER BY oa_id",
            )
            .map_err(|e| self.e(e))?;
        let out = stmt
            .query_map([month], |r| Ok((r.get(0)?, r.get::<_, i64>(1)? as u64)))
            .map_err(|e| self.e(e))?
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| self.e(e))?;
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::super::counters::UNDO_COUNTERS_MIGRATION;
    use super::super::events::on_msg_id;
    use super::super::test_support::*;
    use super::super::*;
    use super::*;

    const MIN: i64 = 60_000;

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

    fn mark_sent(store: &mut Store, id: i64, msg: &str, at: i64) {
        let tx = store.conn.transaction().unwrap();
        tx.execute(
            "UPDATE rows SET state = 'sent', msg_id = ?2, sent_ms = ?3 WHERE id = ?1",
            params![id, msg, at],
        )
        .unwrap();
        on_msg_id(&tx, id, msg).unwrap();
        tx.commit().unwrap();
    }

    /// Sent at minutes 100 and 101; the first row seen (a `received` that
    /// came late but happened earlier moves its delivery back), the
    /// second's callback came before its send reply, the third's names its
    /// tracking id; reconcile answers for the third earlier than its event.
    #[test]
    fn kept_minutes_follow_early_late_and_earlier_events_and_reconcile() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = Store::open(&dir.path().join("s.sqlite")).unwrap();
        let c = new_campaign(&mut store, "c1");
        let ids = import_phones(
            &mut store,
            &c,
            &["84912345670", "84912345671", "84912345672"],
        );
        mark_sent(&mut store, ids[0], "m0", 100 * MIN + 10);
        store
            .record_event(&event(Some("m0"), None, "seen", 107 * MIN, "a"))
            .unwrap();
        store
            .record_event(&event(Some("m0"), None, "received", 103 * MIN, "b"))
            .unwrap();
        store
            .record_event(&event(Some("m1"), None, "received", 104 * MIN, "c"))
            .unwrap();
        mark_sent(&mut store, ids[1], "m1", 101 * MIN);
        mark_sent(&mut store, ids[2], "m2", 101 * MIN + 59_999);
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
            .conn
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
            same(&store, &c),
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
            .conn
            .execute(
                "UPDATE rows SET sent_ms = ?2 WHERE id = ?1",
                params![ids[0], 110 * MIN],
            )
            .unwrap();
        store
            .conn
            .execute("DELETE FROM rows WHERE id = ?1", [ids[1]])
            .unwrap();
        let kept = same(&store, &c);
        assert_eq!(kept.iter().map(|m| m.sent).sum::<i64>(), 2);
        assert_eq!(kept.iter().map(|m| m.delivered).sum::<i64>(), 2);
    }

    #[test]
    fn the_migration_back_fills_what_a_recount_finds() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.sqlite");
        let c = {
            let mut store = Store::open(&path).unwrap();
            let c = new_campaign(&mut store, "c1");
            let ids = import_phones(
                &mut store,
                &c,
                &["84912345670", "84912345671", "84912345672"],
            );
            mark_sent(&mut store, ids[0], "m0", 100 * MIN);
            mark_sent(&mut store, ids[1], "m1", 130 * MIN);
            store
                .record_events(&[
                    event(Some("m0"), None, "seen", 140 * MIN, "a"),
                    event(Some("m0"), None, "received", 135 * MIN, "b"),
                    event(None, Some("zb-test-3"), "received", 131 * MIN, "c"),
                ])
                .unwrap();
            store
                .conn
                .execute(
                    "UPDATE rows SET fee_token = 50, delivery_status = 'seen', delivery_ms = ?2 WHERE id = ?1",
                    params![ids[1], 132 * MIN],
                )
                .unwrap();
            // Back to version 14: no kept minutes, no ledger times.
            store
                .conn
                .execute_batch(&format!(
                    "{UNDO_SERIES_COUNTERS_MIGRATION} PRAGMA user_version = 14;"
                ))
                .unwrap();
            c
        };
        let store = Store::open(&path).unwrap();
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
        // Older databases migrate through the counters and the minutes.
        drop(store);
        let store = Store::open(&path).unwrap();
        store
            .conn
            .execute_batch(&format!(
                "{UNDO_SERIES_COUNTERS_MIGRATION} {UNDO_COUNTERS_MIGRATION} PRAGMA user_version = 9;"
            ))
            .unwrap();
        drop(store);
        let store = Store::open(&path).unwrap();
        assert_eq!(same(&store, &c), kept);
    }

    /// The page's reads walk buckets, not rows.
    #[test]
    fn the_charts_reads_do_not_scan_rows() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("s.sqlite")).unwrap();
        for sql in [
            "SELECT (SELECT MIN(sent_ms) FROM rows WHERE campaign_id = 1 AND sent_ms IS NOT NULL), \
                    (SELECT MAX(sent_ms) FROM rows WHERE campaign_id = 1 AND sent_ms IS NOT NULL)",
            "SELECT minute FROM campaign_series WHERE campaign_id = 1",
        ] {
            let plan: Vec<String> = store
                .conn
                .prepare(&format!("EXPLAIN QUERY PLAN {sql}"))
                .unwrap()
                .query_map([], |r| r.get::<_, String>(3))
                .unwrap()
                .collect::<Result<_, _>>()
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
