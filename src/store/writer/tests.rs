//! The writer against a real SQLite file: claims, the quota per message,
//! guarded moves, and errors that keep their kind.

use super::*;
use crate::provider::JourneyToken;
use crate::quota;
use crate::store::test_support::*;
use crate::store::{ClaimGate, ImportRow, QuotaKey, Store, StoreErrorKind, TokenKey};

fn quota_key(day: &str) -> QuotaKey {
    QuotaKey {
        account: "a".into(),
        oa_id: "1".into(),
        day: day.into(),
    }
}

fn claim_on(row_id: i64, day: &str) -> WriteOp {
    WriteOp::MarkInFlight {
        row_id,
        journey_id: None,
        quota: quota_key(day),
        limit: Some(100),
        gate: ClaimGate {
            oa_id: "1".into(),
            phone: format!("8491000000{row_id}"),
            not_after_ms: None,
            min_interval_ms: None,
        },
        save_token: None,
    }
}

fn held_day(store: &Store, row_id: i64) -> Option<String> {
    store
        .conn
        .query_row("SELECT quota_day FROM rows WHERE id = ?1", [row_id], |r| {
            r.get(0)
        })
        .unwrap()
}

fn state_of(store: &Store, row_id: i64) -> String {
    store
        .conn
        .query_row("SELECT state FROM rows WHERE id = ?1", [row_id], |r| {
            r.get(0)
        })
        .unwrap()
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
    let claim = |i: usize, limit: Option<u64>, not_after_ms: Option<i64>| WriteOp::MarkInFlight {
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

/// Issue 16: a row holds one quota unit per quota day, whatever its
/// attempts; a refused attempt gives it back, a sent row keeps it.
#[tokio::test]
async fn the_quota_counts_messages_not_attempts() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s.sqlite");
    let mut store = Store::open(&path).unwrap();
    let c = new_campaign(&mut store, "c1");
    let ids = import_phones(&mut store, &c, &["84912345670", "84912345671"]);
    let (writer, thread) = Writer::start(&path).unwrap();
    let day1 = "2026-11-23";
    let used = |store: &Store, day: &str| store.quota_day(&quota_key(day)).unwrap().used;

    // Three attempts of a row in doubt, then sent: one unit.
    for _ in 0..3 {
        assert_eq!(
            writer.write(claim_on(ids[0], day1)).await.unwrap(),
            WriteResult::Done
        );
    }
    writer
        .write(WriteOp::MarkSent {
            row_id: ids[0],
            msg_id: Some("m".into()),
            resent_after_doubt: true,
            provider_quota: None,
        })
        .await
        .unwrap();
    assert_eq!(used(&store, day1), 1);
    assert_eq!(
        held_day(&store, ids[0]).as_deref(),
        Some(day1),
        "a sent row keeps its unit"
    );

    // Refused outright: given back, and the next claim takes one again.
    writer.write(claim_on(ids[1], day1)).await.unwrap();
    writer.write(claim_on(ids[1], day1)).await.unwrap();
    assert_eq!(used(&store, day1), 2);
    writer
        .write(WriteOp::MarkPending {
            row_id: ids[1],
            code: "429".into(),
            message: "slow down".into(),
            release: Some(quota_key(day1)),
        })
        .await
        .unwrap();
    assert_eq!(used(&store, day1), 1);
    assert_eq!(held_day(&store, ids[1]), None);
    // A second release of the same row gives nothing more back.
    writer
        .write(WriteOp::MarkPending {
            row_id: ids[1],
            code: "429".into(),
            message: "slow down".into(),
            release: Some(quota_key(day1)),
        })
        .await
        .unwrap();
    assert_eq!(used(&store, day1), 1);

    // In doubt across the day's end: the new day's attempt takes the new
    // day's unit; the old day keeps its own (the message may have left).
    writer.write(claim_on(ids[1], day1)).await.unwrap();
    let day2 = "2026-11-24";
    writer.write(claim_on(ids[1], day2)).await.unwrap();
    assert_eq!((used(&store, day1), used(&store, day2)), (2, 1));
    // Refused on day 2: the unit it holds (day 2's) goes back.
    writer
        .write(WriteOp::MarkFailed {
            row_id: ids[1],
            code: "-118".into(),
            message: "no".into(),
            release: Some(quota_key(day2)),
        })
        .await
        .unwrap();
    assert_eq!((used(&store, day1), used(&store, day2)), (2, 0));
    drop(writer);
    thread.join().unwrap().unwrap();
}

/// A move the table does not allow changes nothing: a sent row stays sent
/// and keeps its unit; a claim of it is refused with a typed error.
#[tokio::test]
async fn an_illegal_move_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s.sqlite");
    let mut store = Store::open(&path).unwrap();
    let c = new_campaign(&mut store, "c1");
    let ids = import_phones(&mut store, &c, &["84912345670", "84912345671"]);
    let (writer, thread) = Writer::start(&path).unwrap();
    let day = "2026-11-23";
    writer.write(claim_on(ids[0], day)).await.unwrap();
    let sent = WriteOp::MarkSent {
        row_id: ids[0],
        msg_id: Some("m".into()),
        resent_after_doubt: false,
        provider_quota: None,
    };
    writer.write(sent).await.unwrap();
    for op in [
        WriteOp::MarkPending {
            row_id: ids[0],
            code: "x".into(),
            message: "x".into(),
            release: Some(quota_key(day)),
        },
        WriteOp::MarkFailed {
            row_id: ids[0],
            code: "x".into(),
            message: "x".into(),
            release: Some(quota_key(day)),
        },
        WriteOp::MarkInDoubt {
            row_id: ids[0],
            code: "x".into(),
            message: "x".into(),
        },
    ] {
        assert_eq!(writer.write(op).await.unwrap(), WriteResult::Done);
        assert_eq!(state_of(&store, ids[0]), "sent");
    }
    let e = writer.write(claim_on(ids[0], day)).await.unwrap_err();
    assert_eq!(e.kind(), StoreErrorKind::IllegalMove, "{e}");
    assert!(e.to_string().contains("`sent`"), "{e}");
    assert_eq!(store.quota_day(&quota_key(day)).unwrap().used, 1);
    // A row never claimed cannot be held in doubt or sent.
    writer
        .write(WriteOp::MarkInDoubt {
            row_id: ids[1],
            code: "x".into(),
            message: "x".into(),
        })
        .await
        .unwrap();
    assert_eq!(state_of(&store, ids[1]), "pending");
    // The writer is still working after a refused write.
    assert_eq!(
        writer.write(claim_on(ids[1], day)).await.unwrap(),
        WriteResult::Done
    );
    drop(writer);
    thread.join().unwrap().unwrap();
}

/// The database fills up under the writer: the caller, the writes queued
/// behind, and the thread's own result all say "disk full", as a kind.
#[tokio::test]
async fn a_full_database_reaches_the_caller_as_a_disk_error() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s.sqlite");
    let mut store = Store::open(&path).unwrap();
    let c = new_campaign(&mut store, "c1");
    let ids = import_phones(&mut store, &c, &["84912345670"]);
    let pages: i64 = store
        .conn
        .query_row("PRAGMA page_count", [], |r| r.get(0))
        .unwrap();
    let (writer, thread) =
        Writer::start_with(&path, &format!("PRAGMA max_page_count = {pages};")).unwrap();
    let big = |i: usize| WriteOp::SaveToken {
        key: TokenKey {
            account: "a".into(),
            oa_id: "1".into(),
            phone: format!("8491000{i:04}"),
            token_type: "t".into(),
        },
        token: JourneyToken {
            journey_id: format!("j{i}"),
            provider_ref: None,
            token: Some("x".repeat(20_000)),
            expires_at: quota::now() + time::Duration::days(7),
            status: None,
        },
        row_id: ids[0],
    };
    let e = writer.write(big(0)).await.unwrap_err();
    assert_eq!(e.kind(), StoreErrorKind::Disk, "{e}");
    assert!(e.to_string().contains("disk full"), "{e}");
    let later = writer.write(big(1)).await.unwrap_err();
    assert!(
        matches!(
            later.kind(),
            StoreErrorKind::Disk | StoreErrorKind::WriterGone
        ),
        "{later}"
    );
    drop(writer);
    let ended = thread.join().unwrap().unwrap_err();
    assert_eq!(ended.kind(), StoreErrorKind::Disk, "{ended}");
    assert!(ended.to_string().contains("disk full"), "{ended}");
}
