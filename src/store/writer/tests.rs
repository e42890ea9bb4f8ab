//! The writer against a real SQLite file: claims, the quota per message,
//! guarded moves, and errors that keep their kind.

use super::*;
use crate::model::clock;
use crate::provider::JourneyToken;
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
/// [`fixture`] with `n` distinct phones.
fn fixture_of(n: usize) -> Fixture {
    let phones: Vec<String> = (0..n).map(|i| format!("849100{i:05}")).collect();
    fixture(&phones.iter().map(String::as_str).collect::<Vec<_>>())
}

type WriterThread = std::thread::JoinHandle<Result<(), StoreError>>;

/// [`fixture`] with its writer thread running.
fn started(phones: &[&str]) -> (Fixture, Writer, WriterThread) {
    let f = fixture(phones);
    let (writer, thread) = Writer::start(&f.path).unwrap();
    (f, writer, thread)
}

fn stop(writer: Writer, thread: WriterThread) {
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
            lease: None,
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
    WriteOp::MarkPending(Setback::new(
        row_id,
        "429",
        "slow down",
        Some(quota_key(day)),
    ))
}

/// Failed for good (unknown phone), giving back the unit held on `day`.
fn failed(row_id: i64, day: &str) -> WriteOp {
    WriteOp::MarkFailed(Setback::new(row_id, "-118", "no", Some(quota_key(day))))
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
        .db
        .conn()
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
    let (f, writer, thread) = started(&phones);
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
        expires_at: clock::now() + time::Duration::days(7),
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
    let (f, writer, thread) = started(&["84912345670", "84912345671", "84912345672"]);
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
    let (f, writer, thread) = started(&["84912345670", "84912345671"]);
    let (store, ids) = (&f.store, &f.ids);
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
    let (f, writer, thread) = started(&["84912345670", "84912345671"]);
    let (store, ids) = (&f.store, &f.ids);
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
        .db
        .conn()
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
            expires_at: clock::now() + time::Duration::days(7),
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

/// Issue 15: the claims of one message take their quota units as a block
/// (one read, one write-back), still one by one against the limit, and a
/// release inside the same batch is counted before the next claim.
#[tokio::test]
async fn one_group_claims_its_quota_units_as_a_block_within_the_limit() {
    let f = fixture_of(6);
    let (writer, thread) = Writer::start(&f.path).unwrap();
    let day = "2026-11-23";
    let results = writer
        .write_all(f.ids.iter().map(|&id| claim_limited(id, day, 4)).collect())
        .await
        .unwrap();
    let results: Vec<WriteResult> = results.into_iter().map(|r| r.unwrap()).collect();
    use WriteResult::{Done, QuotaFull};
    assert_eq!(results, [Done, Done, Done, Done, QuotaFull, QuotaFull]);
    assert_eq!(f.store.quota_day(&quota_key(day)).unwrap().used, 4);

    // Given back and claimed again in one message: the block sees the
    // release.
    let group = vec![
        failed(f.ids[0], day),
        claim_limited(f.ids[4], day, 4),
        claim_limited(f.ids[5], day, 4),
        sent(f.ids[1], false),
    ];
    let results: Vec<WriteResult> = writer
        .write_all(group)
        .await
        .unwrap()
        .into_iter()
        .map(|r| r.unwrap())
        .collect();
    assert_eq!(results, [Done, Done, QuotaFull, Done]);
    stop(writer, thread);
    assert_eq!(f.store.quota_day(&quota_key(day)).unwrap().used, 4);
    let counts = f.store.state_counts(f.c.id).unwrap();
    assert_eq!(
        (counts.in_flight, counts.sent, counts.failed, counts.pending),
        (3, 1, 1, 1)
    );
}

/// Two writers on one file (two processes sharing an OA's quota) claiming
/// in blocks at the same time: the limit holds across them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quota_blocks_of_two_writers_never_pass_the_limit() {
    let f = fixture_of(40);
    let day = "2026-11-23";
    let (w1, t1) = Writer::start(&f.path).unwrap();
    let (w2, t2) = Writer::start(&f.path).unwrap();
    let claims = |writer: Writer, ids: Vec<i64>| async move {
        let mut done = 0;
        for chunk in ids.chunks(4) {
            let ops = chunk.iter().map(|&id| claim_limited(id, day, 25)).collect();
            for r in writer.write_all(ops).await.unwrap() {
                done += (r.unwrap() == WriteResult::Done) as u64;
            }
        }
        (writer, done)
    };
    let (a, b) = tokio::join!(
        tokio::spawn(claims(w1, f.ids[..20].to_vec())),
        tokio::spawn(claims(w2, f.ids[20..].to_vec()))
    );
    let ((w1, d1), (w2, d2)) = (a.unwrap(), b.unwrap());
    stop(w1, t1);
    stop(w2, t2);
    assert_eq!(d1 + d2, 25, "claims granted: {d1} + {d2}");
    assert_eq!(f.store.quota_day(&quota_key(day)).unwrap().used, 25);
    assert_eq!(f.store.state_counts(f.c.id).unwrap().in_flight, 25);
}

/// Writes grouped on the async side: each waiting write gets its own
/// result (a refused one its own error), posted writes follow in order,
/// and `close` commits what is still queued before the writer ends.
#[tokio::test]
async fn grouped_writes_keep_their_order_and_close_commits_the_rest() {
    let f = fixture_of(50);
    let day = "2026-11-23";
    let (writer, thread) = Writer::start(&f.path).unwrap();
    let group = GroupWriter::start(writer);
    let claimed = futures::future::join_all(
        f.ids
            .iter()
            .map(|&id| group.write(claim_limited(id, day, 40))),
    )
    .await;
    let done = claimed
        .iter()
        .filter(|r| matches!(r, Ok(WriteResult::Done)))
        .count();
    assert_eq!(done, 40);
    assert!(claimed.iter().all(|r| r.is_ok()), "{claimed:?}");
    // A sent row cannot be claimed: its own typed error, nobody else's.
    group.post(sent(f.ids[0], false)).unwrap();
    let e = group.write(claim_on(f.ids[0], day)).await.unwrap_err();
    assert_eq!(e.kind(), StoreErrorKind::IllegalMove, "{e}");
    // Posted, never awaited: committed by `close`.
    for &id in &f.ids[1..40] {
        group.post(sent(id, false)).unwrap();
    }
    group.close().await;
    assert!(group.post(sent(f.ids[0], false)).is_err(), "closed");
    drop(group);
    thread.join().unwrap().unwrap();
    let counts = f.store.state_counts(f.c.id).unwrap();
    assert_eq!((counts.sent, counts.pending), (40, 10));
    assert_eq!(f.store.quota_day(&quota_key(day)).unwrap().used, 40);
}
