//! `zns-batch migrate`: a ledger copied into another one by the real
//! binary, SQLite to SQLite and, when `ZNS_TEST_PG` names a server, SQLite
//! to PostgreSQL, and the campaign carried on from the copy (`--state` the
//! copy) — every row sent exactly once.

mod common;

use std::path::Path;
use std::time::Duration;

use common::*;
use zns_batch::provider::ProviderKind;

const P: ProviderKind = ProviderKind::Etelecom;

async fn run_on(env: &Env, state: &Path, argv: &[String]) -> Run {
    run_with(command_with_state(env, state, argv)).await
}

async fn migrate(env: &Env, from: &Path, to: &str) -> Run {
    let mut cmd = tokio::process::Command::new(bin());
    cmd.arg("migrate")
        .arg("--from")
        .arg(from)
        .arg("--to")
        .arg(to);
    cmd.current_dir(env.dir.path()).kill_on_drop(true);
    run_with(cmd).await
}

/// The report of `campaign` in the ledger at `state`.
async fn report_at(env: &Env, state: &Path, campaign: &str) -> Vec<csv::StringRecord> {
    let out = env.path(&format!("{campaign}-{}.csv", rand_tag()));
    let r = run_on(
        env,
        state,
        &args(&["report", campaign, "--out", out.to_str().unwrap()]),
    )
    .await;
    assert_eq!(r.code, 0, "{r}");
    let mut rdr = csv::Reader::from_path(&out).expect("read report");
    rdr.records().map(|r| r.expect("report record")).collect()
}

fn rand_tag() -> String {
    format!("{:08x}", rand::random::<u32>())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_campaign_paused_by_the_quota_finishes_from_the_copy_each_row_once() {
    paused_campaign_finishes_from_the_copy(None).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_postgres_a_campaign_paused_by_the_quota_finishes_from_the_copy_each_row_once() {
    let test = "on_postgres_a_campaign_paused_by_the_quota_finishes_from_the_copy_each_row_once";
    let Some(url) = zns_batch::store::test_pg::pg_url() else {
        println!("SKIPPED on postgres: {test} (set ZNS_TEST_PG, see scripts/pg-throwaway.sh)");
        return;
    };
    let target = PgDatabase::create(&url);
    paused_campaign_finishes_from_the_copy(Some(&target.url)).await;
}

/// Run, pause on the quota, copy into `to` (a fresh SQLite file when
/// None), and finish from the copy.
async fn paused_campaign_finishes_from_the_copy(to: Option<&str>) {
    let (env, sb, csv, _) = setup(P, "c.csv", 300, |_| {}).await;
    let r = run(
        &env,
        &run_args(&csv, "q", &sb, P, &["--daily-quota", "120"]),
    )
    .await;
    assert_eq!(r.code, 3, "{r}");
    assert_eq!(sb.stats().accepted, 120);

    let copy = to.map_or_else(|| env.path("copy.sqlite"), std::path::PathBuf::from);
    let m = migrate(&env, &env.state(), copy.to_str().unwrap()).await;
    assert_eq!(m.code, 0, "{m}");
    assert!(
        m.stdout.contains("18 tables") && m.stdout.contains("rows in"),
        "{m}"
    );
    assert!(
        m.stderr.contains("campaigns") && m.stderr.contains("300 rows"),
        "{m}"
    );

    // The copy says what the source says.
    let status = |state: std::path::PathBuf| {
        let env = &env;
        async move {
            let r = run_on(env, &state, &args(&["--json", "status", "q"])).await;
            assert_eq!(r.code, 0, "{r}");
            r.json()[0].clone()
        }
    };
    let (was, copied) = (status(env.state()).await, status(copy.clone()).await);
    assert_eq!(copied, was);
    assert_eq!(copied["counts"]["sent"], 120, "{copied}");
    assert_eq!(
        report_at(&env, &copy, "q").await,
        report_at(&env, &env.state(), "q").await
    );

    // The next day the copy carries the campaign to its end.
    let mut cmd = command_with_state(
        &env,
        &copy,
        &resume_args("q", &sb, P, &["--daily-quota", "1000"]),
    );
    set_clock(&mut cmd, days_from_now(1));
    let r = run_with(cmd).await;
    assert_eq!(r.code, 0, "{r}");
    assert_eq!(r.json()["counts"]["sent"], 300, "{r}");
    let rows = report_at(&env, &copy, "q").await;
    assert_exactly_once(&sb.stats(), &tracking_ids_in_state(&rows, "sent"), 300);
    assert_eq!(sb.stats().accepted, 300);
    // The source was left as it was.
    assert_eq!(status(env.state()).await, was);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn migrate_refuses_what_it_cannot_copy_and_says_why() {
    let (env, sb, csv, _) = setup(P, "c.csv", 20, |_| {}).await;
    let r = run(&env, &run_args(&csv, "a", &sb, P, &[])).await;
    assert_eq!(r.code, 0, "{r}");

    // No such source: exit 2 naming it, nothing created.
    let missing = env.path("nope.sqlite");
    let target = env.path("t.sqlite");
    migrate(&env, &missing, target.to_str().unwrap())
        .await
        .assert_usage("nope.sqlite");
    assert!(!target.exists());

    // A flag missing or unknown: exit 2 with clap's hint.
    let mut cmd = tokio::process::Command::new(bin());
    cmd.args(["migrate", "--from", "x.sqlite"])
        .kill_on_drop(true);
    run_with(cmd).await.assert_usage("--to");

    // The source itself as the target.
    let state = env.state();
    migrate(&env, &state, state.to_str().unwrap())
        .await
        .assert_usage("is the --from ledger itself");

    // A target holding campaigns already: refused, left as it was.
    let m = migrate(&env, &state, target.to_str().unwrap()).await;
    assert_eq!(m.code, 0, "{m}");
    let before = std::fs::read(&target).unwrap();
    migrate(&env, &state, target.to_str().unwrap())
        .await
        .assert_usage("the target already has 1 campaign(s); migrate copies into an empty ledger");
    assert_eq!(std::fs::read(&target).unwrap(), before);

    // A password in the URL is never printed, even when the server is
    // not there (a closed port on loopback).
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let url = format!("postgres://zns:hunter2-DO-NOT-LEAK@127.0.0.1:{port}/zns");
    let m = migrate(&env, &state, &url).await;
    assert_eq!(m.code, 1, "{m}");
    assert!(
        !m.stderr.contains("hunter2") && !m.stdout.contains("hunter2"),
        "{m}"
    );
    assert!(m.stderr.contains("127.0.0.1"), "{m}");

    // Only from a SQLite file; the URL's password is not repeated.
    let m = migrate(
        &env,
        Path::new("postgres://zns:hunter2-DO-NOT-LEAK@db/zns"),
        "x.sqlite",
    )
    .await;
    m.assert_usage("migrate copies from a SQLite state file");
    assert!(!m.stderr.contains("hunter2"), "{m}");
    assert!(!env.path("x.sqlite").exists());

    // --help shows examples.
    let mut cmd = tokio::process::Command::new(bin());
    cmd.args(["migrate", "--help"]).kill_on_drop(true);
    let h = run_with(cmd).await;
    assert_eq!(h.code, 0, "{h}");
    assert!(h.stdout.contains("--to postgres://"), "{h}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_campaign_running_now_is_not_copied_until_it_stops() {
    let (env, sb, csv, _) = setup(P, "c.csv", 400, |c| c.latency = Duration::from_millis(40)).await;
    let mut child = spawn_captured(command(
        &env,
        &run_args(&csv, "live", &sb, P, &["--concurrency", "1"]),
    ));
    wait_accepted(&sb, &mut child, 5, Duration::from_secs(60)).await;
    let target = env.path("t.sqlite");
    let m = migrate(&env, &env.state(), target.to_str().unwrap()).await;
    m.assert_usage("campaign `live` is being run now by");
    assert!(m.stderr.contains("stop it first"), "{m}");
    assert!(!target.exists(), "a refused copy leaves no file behind");
    // Stopped (Ctrl-C): the same copy goes through.
    signal(child.id().expect("pid"), "INT");
    let r = finish(child).await;
    assert_eq!(r.code, 3, "{r}");
    let m = migrate(&env, &env.state(), target.to_str().unwrap()).await;
    assert_eq!(m.code, 0, "{m}");
}

/// A PostgreSQL URL's password (in `--state` or `ZNS_STATE`) is never
/// printed: not by `--help` (which shows environment values), not in the
/// error of a server that cannot be reached.
#[tokio::test]
async fn a_password_in_the_state_url_is_never_printed() {
    const PASSWORD: &str = "pg-pass-DO-NOT-LEAK-4d1e";
    let env = Env::new();
    // Port 1 on loopback: nothing listens there.
    let url = format!("postgres://zns:{PASSWORD}@127.0.0.1:1/zns");
    for argv in [vec!["--help"], vec!["status"], vec!["serve", "--help"]] {
        let mut cmd = tokio::process::Command::new(bin());
        cmd.args(&argv)
            .env("ZNS_STATE", &url)
            .current_dir(env.dir.path())
            .kill_on_drop(true);
        let r = run_with(cmd).await;
        assert!(
            !r.stdout.contains(PASSWORD) && !r.stderr.contains(PASSWORD),
            "{argv:?} printed the password: {r}"
        );
        if argv == ["status"] {
            assert_eq!(r.code, 1, "{r}");
            assert!(
                r.stderr.contains("postgres://zns@127.0.0.1:1/zns")
                    && r.stderr.contains("the state database is unusable"),
                "{r}"
            );
        }
    }
}
