//! Run safety: a campaign's deadline (`--not-after` / `--valid-for`) and the
//! per-phone frequency cap across campaigns (`--min-interval-per-phone`),
//! with a controlled clock, and both across kill -9.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use common::*;
use time::OffsetDateTime;
use zns_batch::provider::ProviderKind;

const P: ProviderKind = ProviderKind::Etelecom;

/// 08:00 in Vietnam today: hours added stay within the OA's quota day until 16:00.
fn morning() -> OffsetDateTime {
    OffsetDateTime::now_utc().replace_time(time::macros::time!(01:00))
}

fn hours(h: i64) -> time::Duration {
    time::Duration::hours(h)
}

/// Deliveries per phone across campaigns, from their reports and the sandbox.
fn deliveries_per_phone(
    stats: &zns_batch::sandbox::Stats,
    reports: &[&[csv::StringRecord]],
) -> BTreeMap<String, u64> {
    let mut phone_of = BTreeMap::new();
    for rows in reports {
        for r in rows.iter() {
            phone_of.insert(r[R_TRACKING].to_string(), r[R_PHONE].to_string());
        }
    }
    let mut out = BTreeMap::new();
    for (tracking, n) in &stats.deliveries {
        let phone = phone_of
            .get(tracking)
            .unwrap_or_else(|| panic!("delivery for unknown tracking id {tracking}"));
        *out.entry(phone.clone()).or_insert(0) += *n;
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_resume_past_the_deadline_sends_nothing_and_expires_the_rest() {
    let (env, sb, path, _) = setup(P, "bills.csv", 300, |_| {}).await;
    let t0 = morning();
    let deadline = (t0 + hours(6)).to_offset(time::macros::offset!(+7));
    let deadline_arg = deadline
        .format(time::macros::format_description!(
            "[year]-[month]-[day]T[hour]:[minute]+07:00"
        ))
        .unwrap();

    // First night: the local quota stops it after 100 messages.
    let r = run_at(
        &env,
        &run_args(
            &path,
            "bills",
            &sb,
            P,
            &["--not-after", &deadline_arg, "--daily-quota", "100"],
        ),
        t0,
    )
    .await;
    assert_eq!(r.code, 3, "{r}");
    assert_eq!(sb.stats().accepted, 100);

    // `status` shows the deadline.
    let r = run(&env, &args(&["status", "bills"])).await;
    assert!(r.stdout.contains("deadline"), "{r}");
    let r = run(&env, &args(&["--json", "status", "bills"])).await;
    assert!(r.json()[0]["not_after"].is_string(), "{r}");

    // Restored from backup a day late: the resume sends nothing.
    let before = sb.stats();
    let r = run_at(&env, &resume_args("bills", &sb, P, &[]), t0 + hours(30)).await;
    assert_eq!(r.code, 4, "expired campaigns exit 4: {r}");
    let s = r.json();
    assert_eq!(s["result"], "expired", "{r}");
    assert_eq!(s["counts"]["expired"], 200, "{r}");
    assert_eq!(s["counts"]["sent"], 100, "{r}");
    assert!(
        s["reason"].as_str().unwrap().contains("deadline"),
        "the summary says why: {r}"
    );
    let after = sb.stats();
    assert_eq!(after.send_requests, before.send_requests, "nothing sent");
    assert_eq!(
        after.tokens_created, before.tokens_created,
        "nothing bought"
    );

    let rows = report_rows(&env, "bills").await;
    assert_eq!(rows.len(), 300);
    let expired: Vec<_> = rows.iter().filter(|r| &r[R_STATE] == "expired").collect();
    assert_eq!(expired.len(), 200);
    assert!(expired.iter().all(|r| r[R_ERROR].contains("deadline")));
    assert_exactly_once(&after, &tracking_ids_in_state(&rows, "sent"), 100);

    // Human summary says so too, and a further resume is a no-op.
    let argv = human(resume_args("bills", &sb, P, &[]));
    let r = run_at(&env, &argv, t0 + hours(31)).await;
    assert_eq!(r.code, 4, "{r}");
    assert!(r.stdout.contains("expired"), "{r}");
    assert_eq!(sb.stats().send_requests, before.send_requests);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn valid_for_sets_a_deadline_and_a_past_deadline_is_refused() {
    let (env, sb, path, _) = setup(P, "d.csv", 50, |_| {}).await;
    let t0 = morning();

    let r = run_at(
        &env,
        &run_args(&path, "late", &sb, P, &["--not-after", "2020-01-01T08:00"]),
        t0,
    )
    .await;
    assert_eq!(r.code, 2, "a deadline in the past is a mistake: {r}");
    assert!(r.stderr.contains("already past"), "{r}");
    let r = run(
        &env,
        &run_args(&path, "late", &sb, P, &["--not-after", "tomorrow"]),
    )
    .await;
    assert_eq!(r.code, 2, "{r}");
    assert!(r.stderr.contains("2026-11-24T08:00+07:00"), "hint: {r}");
    assert_eq!(sb.stats().send_requests, 0);

    let r = run_at(
        &env,
        &run_args(
            &path,
            "d",
            &sb,
            P,
            &["--valid-for", "6h", "--daily-quota", "20"],
        ),
        t0,
    )
    .await;
    assert_eq!(r.code, 3, "{r}");
    // Within the 6 hours: resume continues (next quota day not needed, raise the cap).
    let quota_at = |quota: &str, when| {
        let argv = resume_args("d", &sb, P, &["--daily-quota", quota]);
        let env = &env;
        async move { run_at(env, &argv, when).await }
    };
    let r = quota_at("30", t0 + hours(5)).await;
    assert_eq!(r.code, 3, "{r}");
    assert_eq!(r.json()["counts"]["sent"], 30, "{r}");
    // Past the 6 hours.
    let r = quota_at("1000", t0 + hours(7)).await;
    assert_eq!(r.code, 4, "{r}");
    assert_eq!(r.json()["counts"]["expired"], 20, "{r}");
    assert_eq!(sb.stats().accepted, 30);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deadline_holds_across_kill_9() {
    let (env, sb, path, _) =
        setup(P, "k.csv", 400, |c| c.latency = Duration::from_millis(15)).await;
    let t0 = morning();
    let mut child = command_at(
        &env,
        &run_args(
            &path,
            "k",
            &sb,
            P,
            &["--valid-for", "2h", "--concurrency", "8"],
        ),
        t0,
    )
    .spawn()
    .unwrap();
    wait_accepted(&sb, &mut child, 60, Duration::from_secs(60)).await;
    kill_9(child).await;
    let before = sb.stats();

    let r = run_at(&env, &resume_args("k", &sb, P, &[]), t0 + hours(3)).await;
    assert_eq!(r.code, 4, "{r}");
    let after = sb.stats();
    assert_eq!(
        after.send_requests, before.send_requests,
        "nothing sent after the deadline, not even rows in doubt"
    );
    let rows = report_rows(&env, "k").await;
    let sent = tracking_ids_in_state(&rows, "sent");
    let expired = tracking_ids_in_state(&rows, "expired");
    assert_eq!(sent.len() + expired.len(), 400, "every row accounted for");
    // Rows killed mid-request may have been delivered: never marked sent
    // without proof, and they say so.
    for r in rows.iter().filter(|r| &r[R_STATE] == "expired") {
        if after.deliveries.contains_key(&r[R_TRACKING]) {
            assert!(r[R_ERROR].contains("may have been delivered"), "{r:?}");
        }
    }
    let dups: Vec<_> = after.deliveries.values().filter(|n| **n > 1).collect();
    assert!(dups.is_empty(), "{dups:?}");
    for t in &sent {
        assert_eq!(after.deliveries.get(t), Some(&1), "{t}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn overlapping_campaigns_send_once_per_phone_within_the_interval() {
    let env = Env::new();
    let sb = sandbox(P, |_| {}).await;
    let a = env.path("a.csv");
    let b = env.path("b.csv");
    write_csv(&a, 0, 200); // phones 0..200
    write_csv(&b, 100, 200); // phones 100..300: 100 overlap
    let t0 = morning();

    let r = run_at(&env, &run_args(&a, "a", &sb, P, &[]), t0).await;
    assert_eq!(r.code, 0, "{r}");

    // The plan already says how many would be skipped.
    let cap = [
        "--min-interval-per-phone",
        "24h",
        "--token-type",
        "token_logistics_30",
    ];
    let dry_run = [&cap[..], &["--dry-run"]].concat();
    let r = run_at(&env, &run_args(&b, "b", &sb, P, &dry_run), t0 + hours(1)).await;
    assert_eq!(r.code, 0, "{r}");
    assert_eq!(r.json()["would_skip_min_interval"], 100, "{r}");

    let tokens_before = sb.stats().tokens_created;
    let r = run_at(&env, &run_args(&b, "b", &sb, P, &cap), t0 + hours(1)).await;
    assert_eq!(r.code, 0, "skips are a normal outcome: {r}");
    let s = r.json();
    assert_eq!(s["counts"]["sent"], 100, "{r}");
    assert_eq!(s["counts"]["skipped"], 100, "{r}");
    assert_eq!(s["this_run"]["skipped"], 100, "{r}");
    assert_eq!(
        sb.stats().tokens_created - tokens_before,
        100,
        "no token bought for a skipped row (another token type: none to reuse)"
    );

    let rows_a = report_rows(&env, "a").await;
    let rows_b = report_rows(&env, "b").await;
    let skipped: Vec<_> = rows_b.iter().filter(|r| &r[R_STATE] == "skipped").collect();
    assert_eq!(skipped.len(), 100);
    for r in &skipped {
        let n: usize = r[R_PHONE][4..].parse().unwrap();
        assert!(
            (100..200).contains(&n),
            "only overlapping phones skip: {r:?}"
        );
        assert!(
            r[R_ERROR].contains("campaign a") && r[R_ERROR].contains("+07:00"),
            "the reason names the earlier message and its time: {r:?}"
        );
    }
    let per_phone = deliveries_per_phone(&sb.stats(), &[&rows_a, &rows_b]);
    assert_eq!(per_phone.len(), 300);
    assert!(per_phone.values().all(|n| *n == 1), "one message per phone");

    // After the interval, the same phones may hear from the OA again.
    let c = env.path("c.csv");
    write_csv(&c, 150, 100);
    let r = run_at(
        &env,
        &run_args(&c, "c", &sb, P, &["--min-interval-per-phone", "24h"]),
        t0 + hours(26),
    )
    .await;
    assert_eq!(r.code, 0, "{r}");
    assert_eq!(r.json()["counts"]["sent"], 100, "{r}");
    assert_eq!(r.json()["counts"]["skipped"], 0, "{r}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn frequency_cap_holds_across_kill_9_and_resume() {
    let env = Env::new();
    let sb = sandbox(P, |c| c.latency = Duration::from_millis(10)).await;
    let a = env.path("a.csv");
    let b = env.path("b.csv");
    write_csv(&a, 0, 300);
    write_csv(&b, 0, 300); // the same phones
    let cap = ["--min-interval-per-phone", "24h", "--concurrency", "8"];

    let mut child = command(&env, &run_args(&a, "a", &sb, P, &cap))
        .spawn()
        .unwrap();
    wait_accepted(&sb, &mut child, 50, Duration::from_secs(60)).await;
    kill_9(child).await;

    // B runs while A lies killed: it takes the phones A never reached and
    // skips those A claimed (sent or in flight at the kill).
    let r = run(&env, &run_args(&b, "b", &sb, P, &cap)).await;
    assert_eq!(r.code, 0, "{r}");
    let b_sent = r.json()["counts"]["sent"].as_u64().unwrap();
    let b_skipped = r.json()["counts"]["skipped"].as_u64().unwrap();
    assert!(b_skipped >= 50, "{r}");
    assert_eq!(b_sent + b_skipped, 300, "{r}");

    // A resumes: everything B took is now skipped for A.
    let r = run(&env, &resume_args("a", &sb, P, &[])).await;
    assert_eq!(r.code, 0, "{r}");
    let a_counts = &r.json()["counts"];
    assert_eq!(a_counts["skipped"].as_u64().unwrap(), b_sent, "{r}");

    let rows_a = report_rows(&env, "a").await;
    let rows_b = report_rows(&env, "b").await;
    let per_phone = deliveries_per_phone(&sb.stats(), &[&rows_a, &rows_b]);
    assert_eq!(per_phone.len(), 300, "every phone reached");
    let twice: Vec<_> = per_phone.iter().filter(|(_, n)| **n != 1).collect();
    assert!(twice.is_empty(), "phones messaged twice: {twice:?}");
    let sent: BTreeSet<String> = tracking_ids_in_state(&rows_a, "sent")
        .union(&tracking_ids_in_state(&rows_b, "sent"))
        .cloned()
        .collect();
    assert_exactly_once(&sb.stats(), &sent, 300);
}
