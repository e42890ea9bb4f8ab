//! Operator experience, through the real binary: config profiles and
//! precedence, the dry-run plan (zero provider calls), the send window with a
//! fixed clock, delivery reconcile, spreadsheet-safe reports, logs,
//! completions and help.

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use common::*;
use time::macros::datetime;
use zns_batch::provider::ProviderKind;
use zns_batch::sandbox::Sandbox;

/// Stats that count every call a client can make to the provider.
fn calls(sb: &Sandbox) -> (u64, u64, u64, u64) {
    let st = sb.stats();
    (
        st.tokens_created,
        st.token_checks,
        st.send_requests,
        st.get_message_calls,
    )
}

// ---------------------------------------------------------------------------
// Config: profiles and precedence

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn config_precedence_is_flag_then_env_then_profile_then_file_then_default() {
    let env = Env::new();
    let csv = env.path("c.csv");
    write_csv(&csv, 0, 5);
    // ./zns-batch.toml in the working directory is read without --config.
    std::fs::write(
        env.path("zns-batch.toml"),
        r#"
provider = "sandbox"
template_id = "900"
oa_id = "111"
concurrency = 4
rate = 7
token_fee = 10
message_fee = 20
send_window = "07:00-22:00"
[profiles.p]
oa_id = "222"
concurrency = 8
message_fee = 30
[profiles.q]
oa_id = "999"
"#,
    )
    .unwrap();
    std::fs::write(
        env.path("other.toml"),
        "concurrency = 3\ntemplate_id = \"900\"\n",
    )
    .unwrap();
    std::fs::write(env.path("min.toml"), "template_id = \"900\"\n").unwrap();

    let mut n = 0;
    let mut plan = |extra: &'static [&'static str],
                    vars: &'static [(&'static str, &'static str)]| {
        n += 1;
        let name = format!("c{n}");
        let mut a = args(&[
            "--json",
            "run",
            csv.to_str().unwrap(),
            "--campaign",
            &name,
            "--dry-run",
        ]);
        // Global flags (--profile, --config) are accepted after the subcommand too.
        a.extend(args(extra));
        let env = &env;
        async move {
            let mut c = command(env, &a);
            c.env_remove("ZNS_API_KEY");
            for (k, v) in vars {
                c.env(k, v);
            }
            let r = run_with(c).await;
            assert_eq!(r.code, 0, "{extra:?} {vars:?}: {r}");
            r.json()["settings"].clone()
        }
    };

    // File top level.
    let st = plan(&[], &[]).await;
    assert_eq!(st["oa_id"], "111");
    assert_eq!(st["concurrency"], 4);
    assert_eq!(st["rate"], 7);
    assert_eq!(st["message_fee"], 20);
    assert_eq!(st["send_window"], "07:00-22:00");
    assert_eq!(st["profile"], serde_json::Value::Null);
    assert_eq!(st["config_file"], "zns-batch.toml");

    // A profile overrides the top level key by key; the rest is inherited.
    let st = plan(&["--profile", "p"], &[]).await;
    assert_eq!(st["oa_id"], "222");
    assert_eq!(st["concurrency"], 8);
    assert_eq!(st["message_fee"], 30);
    assert_eq!(st["rate"], 7, "inherited from the top level");
    assert_eq!(st["token_fee"], 10, "inherited from the top level");
    assert_eq!(st["profile"], "p");

    // ZNS_PROFILE selects a profile; --profile beats it.
    let st = plan(&[], &[("ZNS_PROFILE", "p")]).await;
    assert_eq!(st["oa_id"], "222");
    let st = plan(&["--profile", "q"], &[("ZNS_PROFILE", "p")]).await;
    assert_eq!(st["oa_id"], "999");

    // Environment beats the profile; a flag beats the environment.
    let st = plan(
        &["--profile", "p"],
        &[("ZNS_OA_ID", "333"), ("ZNS_SEND_WINDOW", "08:00-20:00")],
    )
    .await;
    assert_eq!(st["oa_id"], "333");
    assert_eq!(st["send_window"], "08:00-20:00");
    let st = plan(
        &[
            "--profile",
            "p",
            "--oa-id",
            "444",
            "--concurrency",
            "2",
            "--send-window",
            "off",
        ],
        &[("ZNS_OA_ID", "333"), ("ZNS_SEND_WINDOW", "08:00-20:00")],
    )
    .await;
    assert_eq!(st["oa_id"], "444");
    assert_eq!(st["concurrency"], 2);
    assert_eq!(
        st["send_window"],
        serde_json::Value::Null,
        "`off` clears a window set below"
    );

    // ZNS_CONFIG replaces ./zns-batch.toml; --config beats ZNS_CONFIG.
    let st = plan(&[], &[("ZNS_CONFIG", "other.toml")]).await;
    assert_eq!(st["concurrency"], 3);
    let st = plan(&["--config", "min.toml"], &[("ZNS_CONFIG", "other.toml")]).await;
    // Built-in defaults.
    assert_eq!(st["concurrency"], 16);
    assert_eq!(st["rate"], serde_json::Value::Null);
    assert_eq!(st["oa_id"], "1000000000000000001", "the sandbox's OA");
    assert_eq!(st["provider"], "sandbox");
    assert_eq!(st["token_fee"], serde_json::Value::Null);

    // Mistakes are usage errors (exit 2) that say what to fix.
    let r = run(&env, &args(&["--profile", "nope", "status"])).await;
    assert_eq!(r.code, 2, "{r}");
    assert!(
        r.stderr.contains("no profile `nope`") && r.stderr.contains("p, q"),
        "{r}"
    );
    std::fs::write(env.path("typo.toml"), "[profiles.x]\nconcurency = 3\n").unwrap();
    let r = run(&env, &args(&["--config", "typo.toml", "status"])).await;
    assert_eq!(r.code, 2, "{r}");
    assert!(
        r.stderr.contains("profiles.x") && r.stderr.contains("concurency"),
        "{r}"
    );
    std::fs::write(
        env.path("key.toml"),
        "[profiles.x]\napi_key = \"SECRET-abc\"\n",
    )
    .unwrap();
    let r = run(&env, &args(&["--config", "key.toml", "status"])).await;
    assert_eq!(r.code, 2, "{r}");
    assert!(
        r.stderr.contains("api_key_env") && !r.stderr.contains("SECRET-abc"),
        "{r}"
    );
}

/// The fixture clears every `ZNS_*` variable of the test's own environment
/// (the developer's shell) for each process it starts: stray settings set
/// here change nothing the binary sees.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stray_zns_variables_in_the_test_environment_never_reach_the_binary() {
    // Only variables nothing in a test process reads; other tests sharing
    // this process (plain `cargo test`) start their binaries cleared too.
    std::env::set_var("ZNS_CONFIG", "no-such-file.toml");
    std::env::set_var("ZNS_OA_ID", "777");
    std::env::set_var("ZNS_SEND_WINDOW", "08:00-20:00");
    let env = Env::new();
    let csv = env.path("c.csv");
    write_csv(&csv, 0, 5);
    let mut a = run_head(&csv, "c");
    a.push("--dry-run".into());
    let mut c = command(&env, &a);
    c.env_remove("ZNS_API_KEY");
    let r = run_with(c).await;
    assert_eq!(r.code, 0, "ZNS_CONFIG leaked into the binary? {r}");
    let st = &r.json()["settings"];
    assert_eq!(st["oa_id"], "1000000000000000001", "the sandbox's OA: {r}");
    assert_eq!(st["send_window"], serde_json::Value::Null, "{r}");
    assert_eq!(st["config_file"], serde_json::Value::Null, "{r}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_profile_names_its_key_variable_and_the_key_is_never_shown() {
    let (env, sb, csv, _) = setup(ProviderKind::Etelecom, "c.csv", 20, |_| {}).await;
    std::fs::write(
        env.path("zns-batch.toml"),
        format!(
            "[profiles.billing]\nprovider = \"etelecom\"\nbase_url = \"{}\"\napi_key_env = \"BILLING_KEY\"\noa_id = \"{OA}\"\ntemplate_id = \"246810\"\n",
            sb.base_url()
        ),
    )
    .unwrap();
    let a = args(&[
        "--json",
        "--profile",
        "billing",
        "run",
        csv.to_str().unwrap(),
        "--campaign",
        "b",
    ]);
    let mut c = command(&env, &a);
    c.env_remove("ZNS_API_KEY");
    c.env("BILLING_KEY", KEY);
    let r = run_with(c).await;
    assert_eq!(r.code, 0, "{r}");
    assert_eq!(r.json()["counts"]["sent"], 20);
    assert!(!r.stdout.contains(KEY) && !r.stderr.contains(KEY), "{r}");

    // Without the variable a run that has rows to send says which one to
    // set (a finished campaign needs no key: nothing is sent).
    let open = env.path("open.csv");
    write_csv(&open, 100, 5);
    let plan = args(&[
        "--profile",
        "billing",
        "run",
        open.to_str().unwrap(),
        "--campaign",
        "open",
        "--dry-run",
    ]);
    let r = run(&env, &plan).await;
    assert_eq!(r.code, 0, "{r}");
    let mut c = command(&env, &args(&["--profile", "billing", "resume", "open"]));
    c.env_remove("ZNS_API_KEY");
    let r = run_with(c).await;
    r.assert_usage("api_key_env");
}

// ---------------------------------------------------------------------------
// Dry run

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dry_run_prints_the_plan_and_makes_zero_provider_calls() {
    let p = ProviderKind::Etelecom;
    // An earlier campaign bought tokens for phones 0..30.
    let (env, sb, first, _) = setup(p, "first.csv", 30, |_| {}).await;
    let r = run(&env, &run_args(&first, "earlier", &sb, p, &[])).await;
    assert_eq!(r.code, 0, "{r}");

    // The new file: phones 20..70 (10 with a stored token), a new phone
    // repeated (one token for both rows), and 7 bad rows.
    let mut text = String::from("phone,customer_name,amount\n");
    for i in 20..70 {
        text.push_str(&format!("{},Khách {i},{i}.000 đ\n", phone(i)));
    }
    text.push_str(&format!("{},Lặp lại,1\n", phone(60)));
    for bad in [
        "0912abc678",
        "123",
        "",
        "0243 826 1234",
        "+1 202 555 0100",
        "84",
        "x",
    ] {
        text.push_str(&format!("{bad},Sai,1\n"));
    }
    let csv = env.path("c.csv");
    std::fs::write(&csv, text).unwrap();
    std::fs::write(
        env.path("fees.toml"),
        "token_fee = 150\nmessage_fee = 200\n",
    )
    .unwrap();

    let before = calls(&sb);
    let dry_run = ["--dry-run"];
    let a = run_args(
        &csv,
        "plan",
        &sb,
        p,
        &[
            "--dry-run",
            "--daily-quota",
            "20",
            "--allow-duplicate-phones",
        ],
    );
    let r = run(&env, &with_globals(&["--config", "fees.toml"], a)).await;
    assert_eq!(r.code, 0, "{r}");
    let plan = r.json();
    assert_eq!(plan["dry_run"], true);
    assert_eq!(plan["rows"], 58);
    assert_eq!(plan["accepted"], 51);
    assert_eq!(plan["rejected"], 7);
    let rejects = plan["first_rejects"].as_array().unwrap();
    assert_eq!(rejects.len(), 5, "the first few reasons, not all");
    assert_eq!(rejects[0]["line"], 53);
    assert!(rejects
        .iter()
        .all(|r| !r["reason"].as_str().unwrap().is_empty()));
    assert_eq!(plan["messages_to_send"], 51);
    assert_eq!(
        plan["tokens_to_reuse"], 10,
        "phones 20..30 have a valid token"
    );
    assert_eq!(
        plan["tokens_to_buy"], 40,
        "one per new phone, the repeat included once"
    );
    let fees = &plan["estimated_fees"];
    assert_eq!(fees["total"], 40 * 150 + 51 * 200);
    // The earlier campaign used 30 of this OA's day; at 20 a day nothing is
    // left today, so 51 messages take 20 + 20 + 11: three more days.
    assert_eq!(plan["quota_used_today"], 30);
    assert_eq!(plan["quota_days_needed"], 3);
    assert_eq!(calls(&sb), before, "a dry run asks the provider nothing");

    // The same plan, as text.
    let a = human(run_args(&csv, "plan", &sb, p, &dry_run));
    let r = run(&env, &with_globals(&["--config", "fees.toml"], a)).await;
    assert_eq!(r.code, 0, "{r}");
    for want in [
        "Dry run for campaign plan",
        "nothing sent",
        "line 53:",
        "40 to buy, 10 to reuse",
        "51 to send",
        "VND",
        "zns-batch resume plan",
    ] {
        assert!(r.stdout.contains(want), "missing {want:?}:\n{r}");
    }
    assert_eq!(calls(&sb), before);

    // The plan holds: the real run buys exactly the tokens it announced.
    let r = run(&env, &resume_args("plan", &sb, p, &[])).await;
    assert_eq!(r.code, 0, "{r}");
    let sum = r.json();
    assert_eq!(sum["counts"]["sent"], 51, "{r}");
    assert_eq!(sum["this_run"]["tokens_created"], 40, "{r}");
    assert_eq!(sb.stats().tokens_created - before.0, 40);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_readme_newcomer_flow_with_the_sample_config() {
    let env = Env::new();
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let sample = root.join("samples/billing-notice.csv");
    let config = root.join("samples/zns-batch.toml");
    let base = ["--config", config.to_str().unwrap(), "--profile", "demo"];
    let a = args(&[
        "run",
        sample.to_str().unwrap(),
        "--campaign",
        "demo",
        "--dry-run",
    ]);
    let r = run(&env, &with_globals(&base, a)).await;
    assert_eq!(r.code, 0, "{r}");
    assert!(
        r.stdout.contains("40 to send") && r.stdout.contains("VND"),
        "{r}"
    );
    let r = run(&env, &with_globals(&base, args(&["resume", "demo"]))).await;
    assert_eq!(r.code, 0, "{r}");
    assert!(r.stdout.contains("FINISHED"), "{r}");
    let r = run(&env, &args(&["status"])).await;
    assert!(
        r.stdout.contains("demo") && r.stdout.contains("finished"),
        "{r}"
    );
    assert!(r.stdout.contains("next reset"), "{r}");
    let excel = report_file(&env, "demo", &["--excel"], "demo.csv").await;
    assert!(excel.starts_with(b"\xEF\xBB\xBF"));
}

// ---------------------------------------------------------------------------
// Send window

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn send_window_pauses_outside_it_and_waits_with_wait() {
    let (env, sb, csv, _) = setup(ProviderKind::Etelecom, "c.csv", 30, |_| {}).await;
    let p = ProviderKind::Etelecom;

    // 23:10 in Hanoi: closed. Pause (exit 3) without a single provider call.
    let a = run_args(&csv, "w", &sb, p, &["--send-window", "07:00-22:00"]);
    let r = run_with(command_at(&env, &a, datetime!(2026-11-24 23:10 +07:00))).await;
    assert_eq!(r.code, 3, "{r}");
    let sum = r.json();
    assert_eq!(sum["stop"], "window", "{r}");
    assert!(
        sum["reason"]
            .as_str()
            .unwrap()
            .contains("opens 2026-11-25 07:00 +07:00"),
        "{r}"
    );
    assert!(sum["next_step"].as_str().unwrap().contains("--wait"), "{r}");
    assert_eq!(calls(&sb), (0, 0, 0, 0));

    let c = command_at(&env, &args(&["status"]), datetime!(2026-11-24 23:11 +07:00));
    let r = run_with(c).await;
    assert!(
        r.stdout.contains("paused") && r.stdout.contains("outside the send window"),
        "{r}"
    );

    // 06:59:58 the next morning, `resume --wait` with no window flag: the
    // stored window holds; it sleeps two seconds, then sends everything.
    let a = resume_args("w", &sb, p, &["--wait"]);
    let c = command_at(&env, &a, datetime!(2026-11-25 06:59:58 +07:00));
    let t0 = Instant::now();
    let r = run_with(c).await;
    assert_eq!(r.code, 0, "{r}");
    assert!(
        t0.elapsed() >= Duration::from_millis(1500),
        "did not wait: {:?}",
        t0.elapsed()
    );
    assert!(t0.elapsed() < Duration::from_secs(60));
    assert_eq!(r.json()["counts"]["sent"], 30);
    let rows = report_rows(&env, "w").await;
    assert_exactly_once(&sb.stats(), &tracking_ids_in_state(&rows, "sent"), 30);

    let r = run(&env, &run_plain(&csv, "x", "1", &["--send-window", "7-22"])).await;
    r.assert_usage("HH:MM-HH:MM");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_window_closing_mid_run_stops_sending_and_resume_finishes_next_morning() {
    let p = ProviderKind::Etelecom;
    let n = 200;
    let (env, sb, csv, _) = setup(p, "c.csv", n, |_| {}).await;
    // 21:59:57: three seconds of window left; 400 calls at 50/s take eight.
    let window = ["--send-window", "07:00-22:00", "--rate", "50"];
    let a = run_args(&csv, "late", &sb, p, &window);
    let r = run_with(command_at(&env, &a, datetime!(2026-11-24 21:59:57 +07:00))).await;
    assert_eq!(r.code, 3, "{r}");
    let sum = r.json();
    assert_eq!(sum["stop"], "window", "{r}");
    let sent = sum["counts"]["sent"].as_u64().unwrap();
    assert!(sent > 0 && sent < n as u64, "sent {sent} of {n}: {r}");
    let accepted_at_close = sb.stats().accepted;
    assert_eq!(
        accepted_at_close, sent,
        "nothing left after the window closed"
    );

    let a = resume_args("late", &sb, p, &[]);
    let r = run_with(command_at(&env, &a, datetime!(2026-11-25 07:00 +07:00))).await;
    assert_eq!(r.code, 0, "{r}");
    let rows = report_rows(&env, "late").await;
    assert_exactly_once(&sb.stats(), &tracking_ids_in_state(&rows, "sent"), n);
}

// ---------------------------------------------------------------------------
// Delivery reconcile

/// What the sandbox reports for message `i` a day after it was sent.
fn sandbox_delivery(i: usize) -> &'static str {
    if i % 10 == 9 {
        "unknown"
    } else if i % 3 == 2 {
        "seen"
    } else {
        "received"
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reconcile_fills_delivery_status_bounded_and_resumable() {
    let p = ProviderKind::Etelecom;
    let n = 100;
    let (env, sb, csv, _) = setup(p, "c.csv", n, |_| {}).await;
    let r = run(&env, &run_args(&csv, "r", &sb, p, &[])).await;
    assert_eq!(r.code, 0, "{r}");
    // A day later on the sandbox's clock: every message has had its chance.
    sb.advance_day(1);
    let reconcile = |extra: &[&str]| {
        let mut a = args(&["--json", "reconcile", "r"]);
        a.extend(args(extra));
        if !extra.contains(&"--rate") {
            // The default (10/s) would make this test slow for no gain.
            a.extend(args(&["--rate", "1000"]));
        }
        a.extend(provider_args(&sb, p));
        a
    };

    // Bounded: 30 now, exit 3 with the rest left.
    let r = run(&env, &reconcile(&["--max-lookups", "30"])).await;
    assert_eq!(r.code, 3, "{r}");
    let j = r.json();
    assert_eq!(j["this_run"]["looked_up"], 30, "{r}");
    assert_eq!(j["this_run"]["remaining"], 70, "{r}");
    assert_eq!(sb.stats().get_message_calls, 30);

    // Resumable: the next run asks only about the other 70.
    let r = run(&env, &reconcile(&[])).await;
    assert_eq!(r.code, 0, "{r}");
    let j = r.json();
    assert_eq!(j["this_run"]["looked_up"], 70, "{r}");
    assert_eq!(j["this_run"]["remaining"], 0, "{r}");
    assert_eq!(sb.stats().get_message_calls, 100, "no row asked twice");

    let want = |st: &str| (0..n).filter(|i| sandbox_delivery(*i) == st).count() as u64;
    let d = &j["delivery"];
    assert_eq!(d["checked"], 100);
    assert_eq!(d["unknown"], want("unknown"));
    assert_eq!(d["received"], want("received"));
    assert_eq!(d["seen"], want("seen"));
    assert_eq!(d["fee_main"], 100 * 200);
    assert_eq!(d["fee_token"], 100 * 150, "one new token per message");

    // The report carries it row by row.
    let report = report_file(&env, "r", &[], "r.csv").await;
    let mut rdr = csv::Reader::from_reader(&report[..]);
    let h = rdr.headers().unwrap().clone();
    let col = |name: &str| h.iter().position(|c| c == name).unwrap();
    let (ds, dt, fm) = (
        col("delivery_status"),
        col("delivery_time"),
        col("fee_main"),
    );
    let rows: Vec<csv::StringRecord> = rdr.records().map(|r| r.unwrap()).collect();
    assert_eq!(rows.len(), n);
    for row in &rows {
        let status = &row[ds];
        assert!(["unknown", "received", "seen"].contains(&status), "{row:?}");
        assert_eq!(row[dt].is_empty(), status == "unknown", "{row:?}");
        assert_eq!(&row[fm], "200");
    }
    // And status shows it.
    let r = run(&env, &args(&["status"])).await;
    assert!(r.stdout.contains("delivery 100/100 sent checked"), "{r}");
    let r = run(&env, &args(&["--json", "status", "r"])).await;
    assert_eq!(r.json()[0]["delivery"]["seen"], want("seen"));

    // Nothing is due again within the recheck interval: no call at all.
    let r = run(&env, &reconcile(&[])).await;
    assert_eq!(r.code, 0, "{r}");
    assert_eq!(r.json()["this_run"]["looked_up"], 0);
    assert_eq!(sb.stats().get_message_calls, 100);

    // Asked to recheck now: only the rows not yet `seen`, rate-limited.
    let not_final = n as u64 - want("seen");
    let t0 = Instant::now();
    let r = run(&env, &reconcile(&["--recheck-after", "0s", "--rate", "40"])).await;
    assert_eq!(r.code, 0, "{r}");
    assert_eq!(r.json()["this_run"]["looked_up"], not_final);
    assert_eq!(sb.stats().get_message_calls, 100 + not_final);
    // ~70 lookups at 40/s (burst 4) cannot take under 1.5 s.
    assert!(
        t0.elapsed() >= Duration::from_millis(1500),
        "not rate-limited: {:?}",
        t0.elapsed()
    );

    // Text summary.
    let mut a = args(&[
        "reconcile",
        "r",
        "--recheck-after",
        "0s",
        "--max-lookups",
        "5",
    ]);
    a.extend(provider_args(&sb, p));
    let r = run(&env, &a).await;
    assert_eq!(r.code, 3, "{r}");
    assert!(
        r.stdout.contains("Reconcile r — PAUSED") && r.stdout.contains("5 looked up"),
        "{r}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reconcile_says_clearly_where_the_provider_has_no_lookup() {
    // eSMS has a status call (GetZaloMessageStatus): tests/delivery.rs.
    for (p, words) in [(ProviderKind::Zalo, "Zalo documents no message lookup")] {
        let (env, sb, csv, _) = setup(p, "c.csv", 10, |_| {}).await;
        let r = run(&env, &run_args(&csv, "u", &sb, p, &[])).await;
        assert_eq!(r.code, 0, "{r}");
        let mut a = args(&["reconcile", "u"]);
        a.extend(provider_args(&sb, p));
        let r = run(&env, &a).await;
        assert_eq!(r.code, 2, "{p}: {r}");
        assert!(
            r.stderr.contains(words) && r.stderr.contains("not available"),
            "{p}: {r}"
        );
        assert_eq!(sb.stats().get_message_calls, 0);
    }

    // A campaign sent through the embedded sandbox has nothing to look up.
    let env = Env::new();
    let csv = env.path("c.csv");
    write_csv(&csv, 0, 5);
    let mut c = command(&env, &run_plain(&csv, "e", "246810", &[]));
    c.env_remove("ZNS_API_KEY");
    assert_eq!(run_with(c).await.code, 0);
    let r = run(&env, &args(&["reconcile", "e"])).await;
    r.assert_usage("embedded sandbox");
    let r = run(&env, &args(&["reconcile", "nope"])).await;
    r.assert_usage("known: e");
}

// ---------------------------------------------------------------------------
// Report

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn report_is_spreadsheet_safe_with_one_line_per_row() {
    let env = Env::new();
    let sb = sandbox(ProviderKind::Etelecom, |_| {}).await;
    let p = ProviderKind::Etelecom;
    let csv = env.path("c.csv");
    // Formula-looking cells where a report shows them: rejected phones (kept
    // raw), a tracking id; and a phone with a line break inside quotes.
    std::fs::write(
        &csv,
        "phone,tracking_id,customer_name\n\
         0912345001,t-1,An\n\
         \"=HYPERLINK(\"\"http://evil\"\",\"\"x\"\")\",t-2,Bình\n\
         0912345003,=1+1,Châu\n\
         @SUM(A1),t-4,Dũng\n\
         -2+3,t-5,Em\n\
         \"0912\nabc\",t-6,Giang\n\
         +cmd,t-7,Hà\n\
         \t=2+2,t-8,Khánh\n",
    )
    .unwrap();
    let r = run(&env, &run_args(&csv, "x", &sb, p, &[])).await;
    assert_eq!(r.code, 0, "{r}");
    let rows_in_file = 8;

    let bytes = report_file(&env, "x", &[], "r.csv").await;
    let text = String::from_utf8(bytes.clone()).unwrap();
    assert_eq!(
        text.lines().count(),
        rows_in_file + 1,
        "header + one physical line per row:\n{text}"
    );
    let mut rdr = csv::Reader::from_reader(text.as_bytes());
    let records: Vec<csv::StringRecord> = rdr.records().map(|r| r.unwrap()).collect();
    assert_eq!(records.len(), rows_in_file);
    for rec in &records {
        for cell in rec.iter() {
            let first = cell.trim_start().chars().next();
            assert!(
                !matches!(first, Some('=' | '+' | '-' | '@')),
                "unescaped cell {cell:?} in {rec:?}"
            );
        }
    }
    assert!(text.contains("'=HYPERLINK("), "{text}");
    assert!(
        text.contains("'@SUM(A1)") && text.contains("'-2+3") && text.contains("'+cmd"),
        "{text}"
    );
    assert!(text.contains("'=1+1"), "tracking id escaped:\n{text}");
    assert!(text.contains("0912 abc"), "line break flattened:\n{text}");
    assert!(!bytes.starts_with(b"\xEF\xBB\xBF"));

    // --excel: the same bytes behind a UTF-8 BOM.
    let xl_bytes = report_file(&env, "x", &["--excel"], "x.csv").await;
    assert_eq!(&xl_bytes[..3], b"\xEF\xBB\xBF");
    assert_eq!(&xl_bytes[3..], &bytes[..]);

    // --json: one object per row, values as they are (JSON needs no escaping).
    let objs = report_json(&env, "x").await;
    assert_eq!(objs.len(), rows_in_file);
    assert_eq!(objs[1]["phone"], "=HYPERLINK(\"http://evil\",\"x\")");
    assert_eq!(objs[1]["state"], "rejected");
    assert_eq!(objs[2]["tracking_id"], "=1+1");
    assert_eq!(objs[0]["state"], "sent");
}

// ---------------------------------------------------------------------------
// Logs

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_logs_go_to_the_log_file_with_phones_masked_and_no_key() {
    let env = Env::new();
    let sb = sandbox(ProviderKind::Etelecom, |c| {
        c.unknown_phone_suffixes = vec!["3".into()]
    })
    .await;
    let p = ProviderKind::Etelecom;
    let csv = env.path("c.csv");
    let phones = write_csv(&csv, 0, 40);
    let log = env.path("zns.log");
    let logs = [
        "-vv",
        "--log-format",
        "json",
        "--log-file",
        log.to_str().unwrap(),
    ];
    let a = with_globals(&logs, run_args(&csv, "l", &sb, p, &[]));
    let r = run(&env, &a).await;
    assert_eq!(r.code, 0, "{r}");
    let text = std::fs::read_to_string(&log).unwrap();
    let lines: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect();
    assert!(lines.len() >= 40, "{} log lines", lines.len());
    assert!(lines
        .iter()
        .all(|l| l["level"].is_string() && l["fields"]["message"].is_string()));
    assert!(
        lines.iter().any(|l| l["fields"]["phone"]
            .as_str()
            .is_some_and(|p| p.contains("****"))),
        "no masked phone in the log"
    );
    for ph in &phones {
        assert!(!text.contains(ph.as_str()), "full phone {ph} in the log");
    }
    assert!(!text.contains(KEY), "key in the log");
    // The log went to the file, not to stderr.
    assert!(!r.stderr.contains("\"level\""), "{r}");

    // Text logs on a non-terminal stderr carry no colour codes.
    let a = with_globals(&["-v"], human(resume_args("l", &sb, p, &[])));
    let r = run(&env, &a).await;
    assert!(!r.stderr.contains('\u{1b}'), "{r}");

    let r = run(&env, &args(&["--log-format", "xml", "status"])).await;
    assert_eq!(r.code, 2, "{r}");
    let r = run(
        &env,
        &args(&["--log-file", "/nonexistent-dir/x.log", "status"]),
    )
    .await;
    r.assert_usage("--log-file");
}

// ---------------------------------------------------------------------------
// Help and completions

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn completions_generate_for_bash_zsh_and_fish() {
    let env = Env::new();
    for shell in ["bash", "zsh", "fish"] {
        let r = run(&env, &args(&["completions", shell])).await;
        assert_eq!(r.code, 0, "{shell}: {r}");
        for word in ["reconcile", "completions", "send-window", "profile"] {
            assert!(r.stdout.contains(word), "{shell}: no {word}");
        }
        let file = env.path(&format!("zns-batch.{shell}"));
        std::fs::write(&file, &r.stdout).unwrap();
        // Syntax-check with the shell itself where it is installed.
        let check = match shell {
            "bash" => Some(("bash", vec!["-n"])),
            "zsh" => Some(("zsh", vec!["-n"])),
            _ => Some(("fish", vec!["--no-execute"])),
        };
        if let Some((prog, mut flags)) = check {
            let f = file.to_str().unwrap().to_string();
            flags.push(&f);
            if let Ok(out) = std::process::Command::new(prog).args(&flags).output() {
                assert!(
                    out.status.success(),
                    "{shell} -n: {}",
                    String::from_utf8_lossy(&out.stderr)
                );
            }
        }
    }
    assert!(
        !env.state().exists(),
        "completions touched the state database"
    );
    let r = run(&env, &args(&["completions", "tcsh"])).await;
    assert_eq!(r.code, 2, "{r}");
}

#[test]
fn a_closed_pipe_ends_a_printing_command_quietly() {
    // `zns-batch completions bash | head -1`: the reader is gone before the
    // first write. It used to panic (exit 101, "failed printing to stdout").
    use std::os::unix::process::ExitStatusExt;
    let env = Env::new();
    let mut child = std::process::Command::new(bin())
        .args([
            "--state",
            env.state().to_str().unwrap(),
            "completions",
            "bash",
        ])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    drop(child.stdout.take());
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert!(
        out.status.success() || out.status.signal() == Some(libc::SIGPIPE),
        "{:?} {stderr}",
        out.status
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_subcommand_help_has_a_worked_example() {
    let env = Env::new();
    for sub in [
        "run",
        "resume",
        "status",
        "report",
        "validate",
        "sandbox",
        "reconcile",
        "completions",
    ] {
        let r = run(&env, &args(&[sub, "--help"])).await;
        assert_eq!(r.code, 0, "{sub}: {r}");
        assert!(
            r.stdout.contains("Examples:"),
            "{sub} --help has no examples:\n{r}"
        );
        assert!(
            r.stdout.contains(&format!("zns-batch {sub}")),
            "{sub} --help shows no `zns-batch {sub}` command:\n{r}"
        );
    }
    let r = run(&env, &args(&["--help"])).await;
    for want in [
        "Precedence",
        "Exit codes",
        "--profile",
        "--log-format",
        "--log-file",
    ] {
        assert!(r.stdout.contains(want), "top-level help lacks {want}:\n{r}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_clock_override_is_checked() {
    let env = Env::new();
    let mut c = command(&env, &args(&["status"]));
    c.env("ZNS_BATCH_NOW", "tomorrow");
    let r = run_with(c).await;
    r.assert_usage("ZNS_BATCH_NOW");
}
