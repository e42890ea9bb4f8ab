//! Issue 16, operator trust: one test per item, each driving the real
//! binary against a sandbox on 127.0.0.1 with a state file in a temp dir.
//! Item 1 (the quota counts messages, not attempts) is tested in
//! tests/quota_accounting.rs.

mod common;

use std::time::{Duration, Instant};

use common::*;
use time::macros::datetime;
use zns_batch::provider::ProviderKind;
use zns_batch::sandbox::{Faults, Sandbox};

const P: ProviderKind = ProviderKind::Etelecom;

/// Wait until campaign `name`'s import has started but not finished, then
/// SIGTERM the child and collect it.
async fn sigterm_mid_import(env: &Env, child: tokio::process::Child, name: &str) -> Run {
    let pid = child.id().expect("a running child");
    let t0 = Instant::now();
    loop {
        assert!(t0.elapsed() < Duration::from_secs(60), "no import seen");
        match import_progress(&env.state(), name) {
            Some((_, false)) => break,
            Some(_) => panic!("the import finished before the signal: make the file bigger"),
            None => tokio::time::sleep(Duration::from_millis(1)).await,
        }
    }
    signal(pid, "TERM");
    finish(child).await
}

// Item 2 -------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn report_out_never_overwrites_the_input_or_an_existing_file() {
    let (env, sb, csv, _) = setup(P, "esc.csv", 5, |_| {}).await;
    let input = std::fs::read(&csv).unwrap();

    let r = run(&env, &human(run_args(&csv, "esc", &sb, P, &[]))).await;
    assert_eq!(r.code, 0, "{r}");
    assert!(
        r.stdout
            .contains("zns-batch report esc --out esc-report.csv"),
        "the next step suggests a name that does not clash: {r}"
    );

    // The input file, named as the user would (relative), is refused.
    let r = run(&env, &args(&["report", "esc", "--out", "esc.csv"])).await;
    assert_eq!(r.code, 2, "{r}");
    assert!(
        r.stderr.contains("input file") && r.stderr.contains("esc-report.csv"),
        "{r}"
    );
    assert_eq!(std::fs::read(&csv).unwrap(), input, "the input is intact");
    // Even with --force.
    let r = run(
        &env,
        &args(&["report", "esc", "--out", "esc.csv", "--force"]),
    )
    .await;
    assert_eq!(r.code, 2, "{r}");
    assert_eq!(std::fs::read(&csv).unwrap(), input, "the input is intact");

    // Another existing file: refused without --force, replaced with it.
    let other = env.path("other.csv");
    std::fs::write(&other, "keep me\n").unwrap();
    let r = run(&env, &args(&["report", "esc", "--out", "other.csv"])).await;
    r.assert_usage("--force");
    assert_eq!(std::fs::read_to_string(&other).unwrap(), "keep me\n");
    let r = run(
        &env,
        &args(&["report", "esc", "--out", "other.csv", "--force"]),
    )
    .await;
    assert_eq!(r.code, 0, "{r}");
    let written = std::fs::read_to_string(&other).unwrap();
    assert_eq!(written.lines().count(), 6, "header + 5 rows: {written}");

    // With esc-report.csv taken, the next step names another free file.
    std::fs::write(env.path("esc-report.csv"), "taken\n").unwrap();
    let r = run(&env, &resume_args("esc", &sb, P, &[])).await;
    assert_eq!(r.code, 0, "{r}");
    assert_eq!(
        r.json()["next_step"],
        "zns-batch report esc --out esc-report-2.csv",
        "{r}"
    );
}

// Item 3 -------------------------------------------------------------------

/// `status --json`: every campaign's status is `finished`.
async fn assert_all_finished(env: &Env, expected: usize) {
    let r = run(env, &args(&["--json", "status"])).await;
    assert_eq!(r.code, 0, "{r}");
    let lines = r.json();
    let lines = lines.as_array().expect("a list of campaigns");
    assert_eq!(lines.len(), expected, "{r}");
    for l in lines {
        assert_eq!(l["status"], "finished", "{}: {r}", l["campaign"]);
    }
}

/// A human `resume` of the one 5-row campaign, already sent: it says
/// FINISHED (not PAUSED), stays finished and sends nothing more.
async fn assert_stayed_finished(env: &Env, sb: &Sandbox, r: &Run) {
    assert_eq!(r.code, 0, "{r}");
    assert!(
        r.stdout.contains("FINISHED") && !r.stdout.contains("PAUSED"),
        "{r}"
    );
    assert_all_finished(env, 1).await;
    assert_eq!(sb.stats().accepted, 5, "the resumes sent nothing more");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_finished_campaign_stays_finished_outside_the_send_window() {
    let env = Env::new();
    let sb = sandbox(P, |_| {}).await;
    let window = ["--send-window", "07:00-22:00"];
    let morning = datetime!(2026-11-24 10:00 +07:00);
    let night = datetime!(2026-11-24 23:10 +07:00);
    let w = env.path("w.csv");
    write_csv(&w, 0, 5);
    let r = run_with(command_at(
        &env,
        &run_args(&w, "w", &sb, P, &window),
        morning,
    ))
    .await;
    assert_eq!(r.code, 0, "{r}");
    assert_eq!(r.json()["result"], "finished", "{r}");

    // Outside the window: nothing open, so finished (exit 0), not paused.
    let r = run_with(command_at(&env, &resume_args("w", &sb, P, &window), night)).await;
    assert_eq!(r.code, 0, "{r}");
    assert_eq!(r.json()["result"], "finished", "{r}");
    let r = run_with(command_at(
        &env,
        &human(resume_args("w", &sb, P, &[])),
        night,
    ))
    .await;
    assert_stayed_finished(&env, &sb, &r).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_finished_campaign_stays_finished_with_the_quota_used_up() {
    let env = Env::new();
    let sb = sandbox(P, |_| {}).await;
    let quota = ["--daily-quota", "5"];
    let q = env.path("q.csv");
    write_csv(&q, 0, 5);
    let r = run(&env, &run_args(&q, "q", &sb, P, &quota)).await;
    assert_eq!(r.code, 0, "{r}");
    assert_eq!(r.json()["quota_today"]["used"], 5, "{r}");

    // The day's quota is used up, but nothing is open: finished, exit 0.
    let r = run(&env, &resume_args("q", &sb, P, &quota)).await;
    assert_eq!(r.code, 0, "{r}");
    assert_eq!(r.json()["result"], "finished", "{r}");
    let r = run(&env, &human(resume_args("q", &sb, P, &quota))).await;
    assert_stayed_finished(&env, &sb, &r).await;
}

// Item 4 -------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quiet_says_nothing_on_success_and_the_reason_on_failure_and_in_the_log() {
    let (env, sb, csv, _) = setup(P, "c.csv", 5, |_| {}).await;

    let r = run(
        &env,
        &with_globals(&["-q"], human(run_args(&csv, "ok", &sb, P, &[]))),
    )
    .await;
    assert_eq!(r.code, 0, "{r}");
    assert_eq!((r.stdout.as_str(), r.stderr.as_str()), ("", ""), "{r}");
    let r = run(
        &env,
        &with_globals(&["-q"], human(resume_args("ok", &sb, P, &[]))),
    )
    .await;
    assert_eq!(r.code, 0, "{r}");
    assert_eq!((r.stdout.as_str(), r.stderr.as_str()), ("", ""), "{r}");

    // A wrong key: exit 1, the reason on stderr and in the log file.
    let log = env.path("cron.log");
    let argv = with_globals(
        &["-q", "--log-file", log.to_str().unwrap()],
        human(run_args(&csv, "bad", &sb, P, &[])),
    );
    let mut cmd = command(&env, &argv);
    cmd.env("ZNS_API_KEY", "wrong-key-xyz");
    let r = run_with(cmd).await;
    assert_eq!(r.code, 1, "{r}");
    assert_eq!(r.stdout, "", "{r}");
    assert!(r.stderr.contains("exit 1:"), "the reason on stderr: {r}");
    let reason = r.stderr.lines().find(|l| l.contains("exit 1:")).unwrap();
    let reason = reason.split("exit 1:").nth(1).unwrap().trim();
    assert!(!reason.is_empty(), "{r}");
    let logged = std::fs::read_to_string(&log).unwrap_or_default();
    assert!(
        logged.contains("exit 1") && logged.contains(&reason[..reason.len().min(30)]),
        "the reason is in the log file:\n{logged}\n{r}"
    );
    for text in [&logged, &r.stderr] {
        assert!(!text.contains("wrong-key-xyz") && !text.contains(KEY));
    }
}

// Item 5 -------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_embedded_sandbox_keeps_one_quota_whatever_its_port() {
    let env = Env::new();
    let mut sent = 0;
    for (i, name) in ["first", "second"].into_iter().enumerate() {
        let csv = env.path(&format!("{name}.csv"));
        write_csv(&csv, i * 100, 15);
        let argv = args(&[
            "--json",
            "run",
            csv.to_str().unwrap(),
            "--campaign",
            name,
            "--template-id",
            "246810",
            "--daily-quota",
            "10",
        ]);
        let mut cmd = command(&env, &argv);
        cmd.env_remove("ZNS_API_KEY");
        let r = run_with(cmd).await;
        assert_eq!(r.code, 3, "{name}: paused on the quota: {r}");
        let s = r.json();
        assert_eq!(s["stop"], "quota", "{r}");
        assert_eq!(s["quota_today"]["used"], 10, "{r}");
        sent += s["counts"]["sent"].as_u64().unwrap();
    }
    assert_eq!(sent, 10, "10 in total per day, whatever port each run got");
}

// Item 6 -------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dry_run_plan_buys_no_token_for_a_row_the_frequency_cap_skips() {
    let env = Env::new();
    let sb = sandbox(P, |_| {}).await;
    let a = env.path("a.csv");
    let b = env.path("b.csv");
    write_csv(&a, 0, 10);
    write_csv(&b, 5, 10); // phones 5..15: 5 already messaged by `a`
    let r = run(&env, &run_args(&a, "a", &sb, P, &[])).await;
    assert_eq!(r.code, 0, "{r}");

    let cap = ["--min-interval-per-phone", "24h"];
    let dry = [&cap[..], &["--dry-run"]].concat();
    let r = run(&env, &run_args(&b, "b", &sb, P, &dry)).await;
    assert_eq!(r.code, 0, "{r}");
    let plan = r.json();
    assert_eq!(plan["would_skip_min_interval"], 5, "{r}");
    assert_eq!(plan["messages_to_send"], 5, "{r}");
    assert_eq!(plan["tokens_to_buy"], 5, "{r}");
    assert_eq!(
        plan["tokens_to_reuse"], 0,
        "skipped rows reuse nothing: {r}"
    );

    // The run does what the plan said.
    let before = sb.stats().tokens_created;
    let r = run(&env, &run_args(&b, "b", &sb, P, &cap)).await;
    assert_eq!(r.code, 0, "{r}");
    assert_eq!(r.json()["counts"]["skipped"], 5, "{r}");
    assert_eq!(sb.stats().tokens_created - before, 5);
}

// Item 7 -------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_during_a_dry_run_import_exits_3_without_a_plan() {
    let (env, sb, csv, _) = setup(P, "big.csv", 200_000, |_| {}).await;
    let child = spawn_captured(command(
        &env,
        &run_args(&csv, "big", &sb, P, &["--dry-run"]),
    ));
    let r = sigterm_mid_import(&env, child, "big").await;
    assert_eq!(r.code, 3, "{r}");
    assert!(
        !r.stdout.contains("messages_to_send") && !r.stdout.contains("tokens_to_buy"),
        "no plan over part of the file: {r}"
    );
    assert!(r.stderr.contains("no plan"), "{r}");
    assert_eq!(sb.stats().accepted + sb.stats().tokens_created, 0);
}

// Item 8 -------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unknown_class_or_provider_in_error_codes_fails_the_dry_run() {
    let (env, sb, csv, _) = setup(P, "c.csv", 3, |_| {}).await;
    for (toml, typo) in [
        ("[error_codes.etelecom]\n\"-1\" = \"retyr\"\n", "retyr"),
        ("[error_codes.etelecm]\n\"-1\" = \"retry\"\n", "etelecm"),
    ] {
        let config = env.path("zns.toml");
        std::fs::write(&config, toml).unwrap();
        let argv = with_globals(
            &["--config", config.to_str().unwrap()],
            run_args(&csv, "c", &sb, P, &["--dry-run"]),
        );
        let r = run(&env, &argv).await;
        assert_eq!(r.code, 2, "{typo}: {r}");
        assert!(r.stderr.contains(typo), "the error names `{typo}`: {r}");
    }
}

// Item 9 -------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn held_rows_hint_names_the_key_and_quotes_the_campaign_name() {
    let env = Env::new();
    let sb = sandbox(P, |c| {
        c.dedup = false;
        c.faults = Faults {
            drop_reply: 0.3,
            ..Faults::default()
        };
    })
    .await;
    let csv = env.path("c.csv");
    write_csv(&csv, 0, 30);
    let r = run(
        &env,
        &run_args(&csv, "held rows", &sb, P, &["--in-doubt", "hold"]),
    )
    .await;
    assert_eq!(r.code, 3, "{r}");
    let next = r.json()["next_step"].as_str().unwrap_or("").to_string();
    assert!(
        next.starts_with("zns-batch resume 'held rows' --in-doubt resend"),
        "pasteable, the name quoted: {r}"
    );
    assert!(
        next.contains("ZNS_API_KEY"),
        "where the key comes from: {r}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reconcile_without_a_lookup_says_so_without_asking_for_a_key() {
    // Zalo documents no message lookup (eSMS has its status call).
    for p in [ProviderKind::Zalo] {
        let (env, sb, csv, _) = setup(p, "c.csv", 3, |_| {}).await;
        assert_eq!(run(&env, &run_args(&csv, "u", &sb, p, &[])).await.code, 0);
        let mut argv = args(&["reconcile", "u"]);
        argv.extend(provider_base_args(&sb, p));
        let mut cmd = command(&env, &argv);
        cmd.env_remove("ZNS_API_KEY");
        let r = run_with(cmd).await;
        assert_eq!(r.code, 2, "{p}: {r}");
        assert!(r.stderr.contains("not available"), "{p}: {r}");
        assert!(!r.stderr.contains("API key"), "{p}: no key asked for: {r}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resume_of_a_moved_csv_with_an_unfinished_import_names_csv() {
    let (env, sb, csv, _) = setup(P, "moved.csv", 40_000, |_| {}).await;
    let child = spawn_captured(command(&env, &run_args(&csv, "m", &sb, P, &[])));
    let r = sigterm_mid_import(&env, child, "m").await;
    assert_eq!(r.code, 3, "{r}");
    let now_at = env.path("elsewhere.csv");
    std::fs::rename(&csv, &now_at).unwrap();

    let r = run(&env, &resume_args("m", &sb, P, &[])).await;
    r.assert_usage("zns-batch resume m --csv");
    // And the way it names works.
    let r = run(
        &env,
        &resume_args(
            "m",
            &sb,
            P,
            &["--csv", now_at.to_str().unwrap(), "--daily-quota", "1"],
        ),
    )
    .await;
    assert_eq!(r.code, 3, "{r}");
    assert_eq!(r.json()["counts"]["total"], 40_000, "{r}");
}

// Item 10 ------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tab_delimiter_is_accepted_as_backslash_t_and_as_tab() {
    let (env, sb, csv, _) = setup(P, "c.tsv", 4, |_| {}).await;
    let tsv = std::fs::read_to_string(&csv).unwrap().replace(',', "\t");
    std::fs::write(&csv, tsv).unwrap();
    for (i, spelling) in ["\\t", "tab"].into_iter().enumerate() {
        let name = format!("t{i}");
        let extra = ["--delimiter", spelling, "--dry-run"];
        let r = run(&env, &run_args(&csv, &name, &sb, P, &extra)).await;
        assert_eq!(r.code, 0, "{spelling}: {r}");
        assert_eq!(r.json()["accepted"], 4, "{spelling}: {r}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_empty_campaign_name_is_refused() {
    let (env, sb, csv, _) = setup(P, "c.csv", 2, |_| {}).await;
    let r = run(&env, &run_args(&csv, "", &sb, P, &["--dry-run"])).await;
    r.assert_usage("--campaign");
    assert_eq!(sb.stats().accepted, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_optional_column_the_file_does_not_have_is_refused() {
    let (env, sb, csv, _) = setup(P, "c.csv", 2, |_| {}).await;
    let extra = ["--optional-columns", "amout", "--dry-run"];
    let r = run(&env, &run_args(&csv, "o", &sb, P, &extra)).await;
    assert_eq!(r.code, 2, "{r}");
    assert!(
        r.stderr.contains("`amout`")
            && r.stderr.contains("`customer_name`")
            && r.stderr.contains("`amount`"),
        "names the column and the columns found: {r}"
    );
    // Spelled right, it is accepted.
    let extra = ["--optional-columns", "amount", "--dry-run"];
    let r = run(&env, &run_args(&csv, "o", &sb, P, &extra)).await;
    assert_eq!(r.code, 0, "{r}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unknown_campaign_in_a_fresh_folder_creates_no_state_database() {
    let env = Env::new();
    for cmd in ["resume", "reconcile", "report", "status"] {
        let r = run(&env, &args(&[cmd, "nope"])).await;
        assert_eq!(r.code, 2, "{cmd}: {r}");
        assert!(r.stderr.contains("nope"), "{cmd}: {r}");
        let left: Vec<_> = std::fs::read_dir(env.dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert!(left.is_empty(), "{cmd} left {left:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn help_lists_every_exit_code() {
    let env = Env::new();
    let r = run(&env, &args(&["--help"])).await;
    assert_eq!(r.code, 0, "{r}");
    // Help text wraps with the terminal: compare words, not lines.
    let words = r.stdout.split_whitespace().collect::<Vec<_>>().join(" ");
    for code in ["0 finished", "1 fatal", "2 bad usage", "3 paused", "4 over"] {
        assert!(words.contains(code), "`{code}` missing: {r}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sandbox_banner_names_its_default_key() {
    use tokio::io::AsyncBufReadExt;
    let env = Env::new();
    let mut cmd = command(&env, &args(&["sandbox", "--listen", "127.0.0.1:0"]));
    cmd.env_remove("ZNS_API_KEY");
    let mut child = spawn_captured(cmd);
    let stderr = child.stderr.take().unwrap();
    let mut lines = tokio::io::BufReader::new(stderr).lines();
    let mut banner = String::new();
    let read = async {
        while let Some(line) = lines.next_line().await.unwrap() {
            banner.push_str(&line);
            banner.push('\n');
            if banner.contains("127.0.0.1:") && banner.contains("API key") {
                break;
            }
        }
    };
    let _ = tokio::time::timeout(Duration::from_secs(20), read).await;
    kill_9(child).await;
    assert!(banner.contains("127.0.0.1:"), "{banner}");
    assert!(banner.contains("`sandbox-key`"), "{banner}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_day_long_interval_is_shown_as_24h() {
    let (env, sb, a, _) = setup(P, "a.csv", 3, |_| {}).await;
    assert_eq!(run(&env, &run_args(&a, "a", &sb, P, &[])).await.code, 0);
    let b = env.path("b.csv");
    write_csv(&b, 0, 3);
    let cap = ["--min-interval-per-phone", "24h"];
    let r = run(&env, &run_args(&b, "b", &sb, P, &cap)).await;
    assert_eq!(r.code, 0, "{r}");
    assert_eq!(r.json()["counts"]["skipped"], 3, "{r}");

    let rows = report_rows(&env, "b").await;
    for row in &rows {
        assert!(
            row[R_ERROR].contains("--min-interval-per-phone 24h"),
            "{row:?}"
        );
    }
    let r = run(&env, &args(&["status", "b"])).await;
    assert_eq!(r.code, 0, "{r}");
    assert!(
        r.stdout.contains("min interval per phone 24h") && !r.stdout.contains("1day"),
        "{r}"
    );
}
