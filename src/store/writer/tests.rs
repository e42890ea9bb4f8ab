//! The writer against a real SQLite file: claims, the quota per message,
//! guarded moves, and errors that keep their kind.

use super::*;
use crate::provider::JourneyToken;
use crate::quota;
use crate::store::test_support::*;
use crate::store::{Campaign, ClaimGate, QuotaKey, Store, StoreError, StoreErrorKind, TokenKey};
use std::path::PathBuf;

/// A fresh state file with campaign `c1` and `phones` imported as rows.
struct Fixture {
    _dir: tempfile::TempDir,
    path: PathBuf,
    store: Store,
    c: Campaign,
    ids: Vec<i64>,
}

fn fixture(phones: &[&str]) -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s.sqlite");
    let mut store = Store::open(&path).unwrap();
    let c = new_campaign(&mut store, "c1");
    let ids = import_phones(&mut store, &c, phones);
    Fixture {
        _dir: dir,
        path,
        store,
        c,
        ids,
    }
}

/// Close the writer and check its thread ended cleanly.
fn stop(writer: Writer, thread: std::thread::JoinHandle<Result<(), StoreError>>) {
    drop(writer);
    thread.join().unwrap().unwrap();
}

fn quota_key(day: &str) -> QuotaKey {
    QuotaKey {
        account: "a".into(),
        oa_id: "1".into(),
        day: day.into(),
    }
}

/// A claim of `row_id` on quota `day` under `limit`, through a gate with
/// the deadline `not_after_ms`, storing `save_token` if given.
fn claim(
    row_id: i64,
    phone: &str,
    day: &str,
    limit: Option<u64>,
    not_after_ms: Option<i64>,
    save_token: Option<(TokenKey, JourneyToken)>,
) -> WriteOp {
    WriteOp::MarkInFlight {
        row_id,
        journey_id: save_token.as_ref().map(|(_, t)| t.journey_id.clone()),
        quota: quota_key(day),
        limit,
        gate: ClaimGate {
            oa_id: "1".into(),
            phone: phone.into(),
            not_after_ms,
            min_interval_ms: None,
        },
        save_token,
    }
}

/// A plain claim under a limit of `limit`.
fn claim_limited(row_id: i64, day: &str, limit: u64) -> WriteOp {
    let phone = format!("8491000000{row_id}");
    claim(row_id, &phone, day, Some(limit), None, None)
}

fn claim_on(row_id: i64, day: &str) -> WriteOp {
    claim_limited(row_id, day, 100)
}

fn sent(row_id: i64, resent_after_doubt: bool) -> WriteOp {
    WriteOp::MarkSent {
        row_id,
        msg_id: Some("m".into()),
        resent_after_doubt,
        provider_quota: None,
    }
}

/// Back to pending (a 429), giving back the unit held on `day`.
fn pending(row_id: i64, day: &str) -> WriteOp {
    WriteOp::MarkPending {
        row_id,
        code: "429".into(),
        message: "slow down".into(),
        release: Some(quota_key(day)),
    }
}

/// Failed for good (unknown phone), giving back the unit held on `day`.
fn failed(row_id: i64, day: &str) -> WriteOp {
    WriteOp::MarkFailed {
        row_id,
        code: "-118".into(),
        message: "no".into(),
        release: Some(quota_key(day)),
    }
}

fn in_doubt(row_id: i64) -> WriteOp {
    WriteOp::MarkInDoubt {
        row_id,
        code: "x".into(),
        message: "x".into(),
    }
}

fn row_column(store: &Store, column: &str, row_id: i64) -> Option<String> {
    store
        .conn
        .query_row(
            &format!("SELECT {column} FROM rows WHERE id = ?1"),
            [row_id],
            |r| r.get(0),
        )
        .unwrap()
}

fn held_day(store: &Store, row_id: i64) -> Option<String> {
    row_column(store, "quota_day", row_id)
}

fn state_of(store: &Store, row_id: i64) -> String {
    row_column(store, "state", row_id).unwrap()
}

/// A claim that stores a bought token, refused by the quota (row 1) or
/// by the deadline (row 2): the token is kept either way.
#[tokio::test]
async fn a_token_bought_with_the_in_flight_mark_is_stored_even_when_the_claim_is_refused() {
    let phones = ["84912345678", "84912345679"];
    let f = fixture(&phones);
    let (writer, thread) = Writer::start(&f.path).unwrap();
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
    let claim_row = |i: usize, limit: Option<u64>, not_after_ms: Option<i64>| {
        let save = Some((key(phones[i]), token(i as u32)));
        claim(f.ids[i], phones[i], "2026-11-23", limit, not_after_ms, save)
    };
    assert_eq!(
        writer.write(claim_row(0, Some(0), None)).await.unwrap(),
        WriteResult::QuotaFull
    );
    assert_eq!(
        writer.write(claim_row(1, None, Some(1))).await.unwrap(),
        WriteResult::Expired
    );
    stop(writer, thread);
    for (i, phone) in phones.iter().enumerate() {
        let stored = f.store.token(&key(phone)).unwrap().unwrap();
        assert_eq!(stored.journey_id, token(i as u32).journey_id);
    }
    let counts = f.store.state_counts(f.c.id).unwrap();
    assert_eq!(
        (counts.token_ready, counts.in_flight, counts.expired),
        (1, 0, 1)
    );
}

#[tokio::test]
async fn quota_claims_stop_at_the_limit_and_releases_give_back() {
    let f = fixture(&["84912345670", "84912345671", "84912345672"]);
    let (writer, thread) = Writer::start(&f.path).unwrap();
    let day = "2026-11-23";
    let claim = |id| claim_limited(id, day, 2);
    assert_eq!(
        writer.write(claim(f.ids[0])).await.unwrap(),
        WriteResult::Done
    );
    assert_eq!(
        writer.write(claim(f.ids[1])).await.unwrap(),
        WriteResult::Done
    );
    assert_eq!(
        writer.write(claim(f.ids[2])).await.unwrap(),
        WriteResult::QuotaFull
    );
    writer.write(failed(f.ids[1], day)).await.unwrap();
    assert_eq!(
        writer.write(claim(f.ids[2])).await.unwrap(),
        WriteResult::Done
    );
    stop(writer, thread);
    let counts = f.store.state_counts(f.c.id).unwrap();
    assert_eq!((counts.in_flight, counts.failed), (2, 1));
    assert_eq!(f.store.quota_day(&quota_key(day)).unwrap().used, 2);
}

/// Issue 16: a row holds one quota unit per quota day, whatever its
/// attempts; a refused attempt gives it back, a sent row keeps it.
#[tokio::test]
async fn the_quota_counts_messages_not_attempts() {
    let f = fixture(&["84912345670", "84912345671"]);
    let (store, ids) = (&f.store, &f.ids);
    let (writer, thread) = Writer::start(&f.path).unwrap();
    let day1 = "2026-11-23";
    let used = |store: &Store, day: &str| store.quota_day(&quota_key(day)).unwrap().used;

    // Three attempts of a row in doubt, then sent: one unit.
    for _ in 0..3 {
        assert_eq!(
            writer.write(claim_on(ids[0], day1)).await.unwrap(),
            WriteResult::Done
        );
    }
    writer.write(sent(ids[0], true)).await.unwrap();
    assert_eq!(used(store, day1), 1);
    assert_eq!(
        held_day(store, ids[0]).as_deref(),
        Some(day1),
        "a sent row keeps its unit"
    );

    // Refused outright: given back, and the next claim takes one again.
    writer.write(claim_on(ids[1], day1)).await.unwrap();
    writer.write(claim_on(ids[1], day1)).await.unwrap();
    assert_eq!(used(store, day1), 2);
    writer.write(pending(ids[1], day1)).await.unwrap();
    assert_eq!(used(store, day1), 1);
    assert_eq!(held_day(store, ids[1]), None);
    // A second release of the same row gives nothing more back.
    writer.write(pending(ids[1], day1)).await.unwrap();
    assert_eq!(used(store, day1), 1);

    // In doubt across the day's end: the new day's attempt takes the new
    // day's unit; the old day keeps its own (the message may have left).
    writer.write(claim_on(ids[1], day1)).await.unwrap();
    let day2 = "2026-11-24";
    writer.write(claim_on(ids[1], day2)).await.unwrap();
    assert_eq!((used(store, day1), used(store, day2)), (2, 1));
    // Refused on day 2: the unit it holds (day 2's) goes back.
    writer.write(failed(ids[1], day2)).await.unwrap();
    assert_eq!((used(store, day1), used(store, day2)), (2, 0));
    stop(writer, thread);
}

/// A move the table does not allow changes nothing: a sent row stays sent
/// and keeps its unit; a claim of it is refused with a typed error.
#[tokio::test]
async fn an_illegal_move_changes_nothing() {
    let f = fixture(&["84912345670", "84912345671"]);
    let (store, ids) = (&f.store, &f.ids);
    let (writer, thread) = Writer::start(&f.path).unwrap();
    let day = "2026-11-23";
    writer.write(claim_on(ids[0], day)).await.unwrap();
    writer.write(sent(ids[0], false)).await.unwrap();
    for op in [pending(ids[0], day), failed(ids[0], day), in_doubt(ids[0])] {
        assert_eq!(writer.write(op).await.unwrap(), WriteResult::Done);
        assert_eq!(state_of(store, ids[0]), "sent");
    }
    let e = writer.write(claim_on(ids[0], day)).await.unwrap_err();
    assert_eq!(e.kind(), StoreErrorKind::IllegalMove, "{e}");
    assert!(e.to_string().contains("`sent`"), "{e}");
    assert_eq!(store.quota_day(&quota_key(day)).unwrap().used, 1);
    // A row never claimed cannot be held in doubt or sent.
    writer.write(in_doubt(ids[1])).await.unwrap();
    assert_eq!(state_of(store, ids[1]), "pending");
    // The writer is still working after a refused write.
    assert_eq!(
        writer.write(claim_on(ids[1], day)).await.unwrap(),
        WriteResult::Done
    );
    stop(writer, thread);
}

/// The database fills up under the writer: the caller, the writes queued
/// behind, and the thread's own result all say "disk full", as a kind.
#[tokio::test]
async fn a_full_database_reaches_the_caller_as_a_disk_error() {
    let f = fixture(&["84912345670"]);
    let pages: i64 = f
        .store
        .conn
        .query_row("PRAGMA page_count", [], |r| r.get(0))
        .unwrap();
    let (writer, thread) =
        Writer::start_with(&f.path, &format!("PRAGMA max_page_count = {pages};")).unwrap();
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
        row_id: f.ids[0],
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
