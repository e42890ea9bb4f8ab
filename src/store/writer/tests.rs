//! The writer against a real SQLite file and, with `ZNS_TEST_PG`, a real
//! PostgreSQL database: claims, the quota per message, guarded moves,
//! errors that keep their kind, and two writers sharing one ledger.

use super::*;
use crate::model::clock;
use crate::provider::JourneyToken;
use crate::store::test_pg::{test_places, Place};
use crate::store::test_support::*;
use crate::store::{Campaign, ClaimGate, QuotaKey, Store, StoreError, StoreErrorKind, TokenKey};
use std::path::PathBuf;

/// A fresh store with campaign `c1` and `phones` imported as rows.
struct Fixture {
    store: Store,
    c: Campaign,
    ids: Vec<i64>,
    /// Last: the database outlives the store's connection.
    place: Place,
}

impl Fixture {
    /// A writer on a connection of its own (as another process would).
    fn writer(&self) -> (Writer, WriterThread) {
        sync(|| Writer::start_on(self.place.open()).unwrap())
    }

    /// The SQLite file (tests of what only SQLite has).
    fn path(&self) -> PathBuf {
        match &self.place {
            Place::Sqlite(dir) => dir.path().join("s.sqlite"),
            Place::Postgres(_) => unreachable!("a SQLite-only test"),
        }
    }
}

fn fixture_in(place: Place, phones: &[&str]) -> Fixture {
    let mut store = place.open();
    let c = new_campaign(&mut store, "c1");
    let ids = import_phones(&mut store, &c, phones);
    Fixture {
        store,
        c,
        ids,
        place,
    }
}

/// One fixture per database (PostgreSQL when `ZNS_TEST_PG` is set).
fn fixtures(test: &str, phones: &[&str]) -> Vec<Fixture> {
    sync(|| {
        test_places(test)
            .into_iter()
            .map(|place| {
                eprintln!("{test}: on {}", place.name());
                fixture_in(place, phones)
            })
            .collect()
    })
}

fn phones_of(n: usize) -> Vec<String> {
    (0..n).map(|i| format!("849100{i:05}")).collect()
}

/// [`fixtures`] with `n` distinct phones.
fn fixtures_of(test: &str, n: usize) -> Vec<Fixture> {
    let phones = phones_of(n);
    let phones: Vec<&str> = phones.iter().map(String::as_str).collect();
    fixtures(test, &phones)
}

/// Run blocking store work from a test's async body: PostgreSQL's sync
/// client drives a runtime of its own, which cannot start inside tokio's
/// (block_in_place leaves it; hence the multi-threaded test runtimes).
fn sync<T>(f: impl FnOnce() -> T) -> T {
    tokio::task::block_in_place(f)
}

type WriterThread = std::thread::JoinHandle<Result<(), StoreError>>;

/// [`fixtures`], each with its writer thread running.
fn started(test: &str, phones: &[&str]) -> Vec<(Fixture, Writer, WriterThread)> {
    fixtures(test, phones)
        .into_iter()
        .map(|f| {
            let (writer, thread) = f.writer();
            (f, writer, thread)
        })
        .collect()
}

fn stop(writer: Writer, thread: WriterThread) {
    drop(writer);
    sync(|| thread.join().unwrap().unwrap());
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
    sync(|| {
        store
            .db
            .query_row(
                &format!("SELECT {column} FROM rows WHERE id = ?1"),
                [row_id],
                |r| r.get(0),
            )
            .unwrap()
    })
}

fn held_day(store: &Store, row_id: i64) -> Option<String> {
    row_column(store, "quota_day", row_id)
}

fn state_of(store: &Store, row_id: i64) -> String {
    row_column(store, "state", row_id).unwrap()
}

/// A claim that stores a bought token, refused by the quota (row 1) or
/// by the deadline (row 2): the token is kept either way.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_bought_with_the_in_flight_mark_is_stored_even_when_the_claim_is_refused() {
    let phones = ["84912345678", "84912345679"];
    let name = "a_token_bought_with_the_in_flight_mark_is_stored_even_when_the_claim_is_refused";
    for (f, writer, thread) in started(name, &phones) {
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
            let stored = sync(|| f.store.token(&key(phone)).unwrap()).unwrap();
            assert_eq!(stored.journey_id, token(i as u32).journey_id);
        }
        let counts = sync(|| f.store.state_counts(f.c.id).unwrap());
        assert_eq!(
            (counts.token_ready, counts.in_flight, counts.expired),
            (1, 0, 1)
        );
        // Closed off tokio's runtime (see `sync`).
        sync(move || drop(f));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quota_claims_stop_at_the_limit_and_releases_give_back() {
    let phones = ["84912345670", "84912345671", "84912345672"];
    let name = "quota_claims_stop_at_the_limit_and_releases_give_back";
    for (f, writer, thread) in started(name, &phones) {
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
        let counts = sync(|| f.store.state_counts(f.c.id).unwrap());
        assert_eq!((counts.in_flight, counts.failed), (2, 1));
        assert_eq!(sync(|| f.store.quota_day(&quota_key(day)).unwrap()).used, 2);
        // Closed off tokio's runtime (see `sync`).
        sync(move || drop(f));
    }
}

/// Issue 16: a row holds one quota unit per quota day, whatever its
/// attempts; a refused attempt gives it back, a sent row keeps it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_quota_counts_messages_not_attempts() {
    let phones = ["84912345670", "84912345671"];
    for (f, writer, thread) in started("the_quota_counts_messages_not_attempts", &phones) {
        let (store, ids) = (&f.store, &f.ids);
        let day1 = "2026-11-23";
        let used =
            |store: &Store, day: &str| sync(|| store.quota_day(&quota_key(day)).unwrap().used);

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
        // Closed off tokio's runtime (see `sync`).
        sync(move || drop(f));
    }
}

/// A move the table does not allow changes nothing: a sent row stays sent
/// and keeps its unit; a claim of it is refused with a typed error.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_illegal_move_changes_nothing() {
    let phones = ["84912345670", "84912345671"];
    for (f, writer, thread) in started("an_illegal_move_changes_nothing", &phones) {
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
        assert_eq!(sync(|| store.quota_day(&quota_key(day)).unwrap().used), 1);
        // A row never claimed cannot be held in doubt or sent.
        writer.write(in_doubt(ids[1])).await.unwrap();
        assert_eq!(state_of(store, ids[1]), "pending");
        // The writer is still working after a refused write.
        assert_eq!(
            writer.write(claim_on(ids[1], day)).await.unwrap(),
            WriteResult::Done
        );
        stop(writer, thread);
        // Closed off tokio's runtime (see `sync`).
        sync(move || drop(f));
    }
}

/// The database fills up under the writer: the caller, the writes queued
/// behind, and the thread's own result all say "disk full", as a kind.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_database_reaches_the_caller_as_a_disk_error() {
    // SQLite's page limit: a PostgreSQL server's disk is not ours to fill.
    let place = Place::Sqlite(tempfile::tempdir().unwrap());
    let f = fixture_in(place, &["84912345670"]);
    let pages: i64 = f
        .store
        .db
        .query_row("PRAGMA page_count", (), |r| r.get(0))
        .unwrap();
    let (writer, thread) =
        Writer::start_with(&f.path(), &format!("PRAGMA max_page_count = {pages};")).unwrap();
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
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_group_claims_its_quota_units_as_a_block_within_the_limit() {
    let name = "one_group_claims_its_quota_units_as_a_block_within_the_limit";
    for f in fixtures_of(name, 6) {
        let (writer, thread) = f.writer();
        let day = "2026-11-23";
        let results = writer
            .write_all(f.ids.iter().map(|&id| claim_limited(id, day, 4)).collect())
            .await
            .unwrap();
        let results: Vec<WriteResult> = results.into_iter().map(|r| r.unwrap()).collect();
        use WriteResult::{Done, QuotaFull};
        assert_eq!(results, [Done, Done, Done, Done, QuotaFull, QuotaFull]);
        assert_eq!(sync(|| f.store.quota_day(&quota_key(day)).unwrap()).used, 4);

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
        assert_eq!(sync(|| f.store.quota_day(&quota_key(day)).unwrap()).used, 4);
        let counts = sync(|| f.store.state_counts(f.c.id).unwrap());
        assert_eq!(
            (counts.in_flight, counts.sent, counts.failed, counts.pending),
            (3, 1, 1, 1)
        );
        // Closed off tokio's runtime (see `sync`).
        sync(move || drop(f));
    }
}

/// Two writers on one file (two processes sharing an OA's quota) claiming
/// in blocks at the same time: the limit holds across them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quota_blocks_of_two_writers_never_pass_the_limit() {
    for f in fixtures_of("quota_blocks_of_two_writers_never_pass_the_limit", 40) {
        let day = "2026-11-23";
        let (w1, t1) = f.writer();
        let (w2, t2) = f.writer();
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
        assert_eq!(
            sync(|| f.store.quota_day(&quota_key(day)).unwrap()).used,
            25
        );
        assert_eq!(sync(|| f.store.state_counts(f.c.id).unwrap()).in_flight, 25);
        // Closed off tokio's runtime (see `sync`).
        sync(move || drop(f));
    }
}

/// Writes grouped on the async side: each waiting write gets its own
/// result (a refused one its own error), posted writes follow in order,
/// and `close` commits what is still queued before the writer ends.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grouped_writes_keep_their_order_and_close_commits_the_rest() {
    let name = "grouped_writes_keep_their_order_and_close_commits_the_rest";
    for f in fixtures_of(name, 50) {
        let day = "2026-11-23";
        let (writer, thread) = f.writer();
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
        let counts = sync(|| f.store.state_counts(f.c.id).unwrap());
        assert_eq!((counts.sent, counts.pending), (40, 10));
        assert_eq!(
            sync(|| f.store.quota_day(&quota_key(day)).unwrap()).used,
            40
        );
        // Closed off tokio's runtime (see `sync`).
        sync(move || drop(f));
    }
}

/// Two writers (two connections, as two processes) claiming the same
/// campaign's rows at once, in the same order: a row is never charged two
/// units, the quota's limit holds, and on PostgreSQL a row one writer's
/// batch holds is refused to the other (FOR UPDATE SKIP LOCKED) rather
/// than waited for.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_writers_claiming_the_same_rows_never_charge_one_twice_nor_pass_the_limit() {
    let name = "two_writers_claiming_the_same_rows_never_charge_one_twice_nor_pass_the_limit";
    for f in fixtures_of(name, 60) {
        let day = "2026-11-23";
        let limit = 45;
        let (w1, t1) = f.writer();
        let (w2, t2) = f.writer();
        let claims = |writer: Writer, ids: Vec<i64>| async move {
            let (mut done, mut full, mut taken) = (0u64, 0u64, 0u64);
            for chunk in ids.chunks(3) {
                let ops = chunk
                    .iter()
                    .map(|&id| claim_limited(id, day, limit))
                    .collect();
                for r in writer.write_all(ops).await.unwrap() {
                    match r {
                        Ok(WriteResult::Done) => done += 1,
                        Ok(WriteResult::QuotaFull) => full += 1,
                        Ok(other) => panic!("unexpected {other:?}"),
                        // Held by the other writer's batch at that moment.
                        Err(e) => {
                            assert_eq!(e.kind(), StoreErrorKind::IllegalMove, "{e}");
                            assert!(e.to_string().contains("another writer"), "{e}");
                            taken += 1;
                        }
                    }
                }
            }
            (writer, done, full, taken)
        };
        let (a, b) = tokio::join!(
            tokio::spawn(claims(w1, f.ids.clone())),
            tokio::spawn(claims(w2, f.ids.clone()))
        );
        let ((w1, d1, f1, s1), (w2, d2, f2, s2)) = (a.unwrap(), b.unwrap());
        stop(w1, t1);
        stop(w2, t2);
        eprintln!("claims done {d1}+{d2}, quota full {f1}+{f2}, held by the other {s1}+{s2}");
        let used = sync(|| f.store.quota_day(&quota_key(day)).unwrap()).used;
        assert_eq!(used, limit, "the limit is reached, never passed");
        // Every unit is held by exactly one row: no row charged twice.
        let holding: i64 = sync(|| {
            f.store
                .db
                .query_row(
                    "SELECT COUNT(*) FROM rows WHERE quota_day = ?1",
                    [day],
                    |r| r.get(0),
                )
                .unwrap()
        });
        assert_eq!(holding as u64, used);
        assert_eq!(
            sync(|| f.store.state_counts(f.c.id).unwrap()).in_flight,
            used
        );
        // Each row was asked for twice: granted (a first claim or the
        // other's retry of it), refused for quota, or held by the other.
        assert_eq!(d1 + d2 + f1 + f2 + s1 + s2, 2 * f.ids.len() as u64);
        // Closed off tokio's runtime (see `sync`).
        sync(move || drop(f));
    }
}
