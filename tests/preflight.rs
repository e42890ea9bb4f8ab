//! Template pre-flight and live quota, end to end: the real binary against
//! in-process sandboxes that declare templates (and enforce them on send),
//! a real SQLite state file in a temp dir.

mod common;

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use common::*;
use unicode_normalization::UnicodeNormalization;
use zns_batch::provider::ProviderKind;
use zns_batch::sandbox::{Sandbox, TemplateSpec};

const TEMPLATE: &str = "217489";
const DECLARED: &str = "217489=customer_name:1-30,amount:1-20,due_date:1-10";

fn templates(flags: &[&str]) -> HashMap<String, TemplateSpec> {
    flags
        .iter()
        .map(|f| TemplateSpec::parse_flag(f).unwrap())
        .collect()
}

async fn zalo_with_templates(flags: &[&str]) -> Sandbox {
    sandbox(ProviderKind::Zalo, |c| c.templates = templates(flags)).await
}

/// The 30-character name, typed composed (NFC) or decomposed (NFD): the
/// same name to a reader and to Zalo, more code points when decomposed.
const NAME_30: &str = "Nguyễn Thị Ánh Tuyết Phương Ly";

/// 1,000 rows: every 20th name is 31 characters (50 rows, their lines
/// returned); the others alternate composed and decomposed forms of a
/// 30-character name. `with_due_date`: the required `due_date` column.
fn thousand_rows(path: &Path, with_due_date: bool) -> Vec<u64> {
    let decomposed: String = NAME_30.nfd().collect();
    assert_eq!(NAME_30.nfc().count(), 30);
    assert!(decomposed.chars().count() > 30, "NFD has more code points");
    let too_long = format!("{NAME_30}y");
    let mut text = String::from("phone,customer_name,amount");
    text.push_str(if with_due_date { ",due_date\n" } else { "\n" });
    let mut long_lines = Vec::new();
    for i in 0..1000usize {
        let name = if i % 20 == 7 {
            long_lines.push(i as u64 + 2);
            too_long.as_str()
        } else if i % 2 == 0 {
            NAME_30
        } else {
            decomposed.as_str()
        };
        text.push_str(&format!("{},{name},{}", phone(i), 1000 + i));
        text.push_str(if with_due_date { ",30/11/2026\n" } else { "\n" });
    }
    std::fs::write(path, text).unwrap();
    long_lines
}

/// [`thousand_rows`] as the test folder's `bills.csv`.
fn bills(env: &Env, with_due_date: bool) -> (PathBuf, Vec<u64>) {
    let csv = env.path("bills.csv");
    let long_lines = thousand_rows(&csv, with_due_date);
    (csv, long_lines)
}

fn zalo_run(csv: &Path, campaign: &str, sb: &Sandbox, extra: &[&str]) -> Vec<String> {
    let mut v = run_head_with_template(csv, campaign, TEMPLATE);
    v.extend(args(&["--api-key", KEY, "--concurrency", "8"]));
    v.extend(provider_args(sb, ProviderKind::Zalo));
    v.extend(extra.iter().map(|s| s.to_string()));
    v
}

#[tokio::test]
async fn a_missing_required_column_is_refused_before_any_token() {
    let env = Env::new();
    let sb = zalo_with_templates(&[DECLARED]).await;
    let (csv, _) = bills(&env, false);
    let r = run(&env, &human(zalo_run(&csv, "bills", &sb, &[]))).await;
    assert_eq!(r.code, 2, "{r}");
    assert!(r.stderr.contains("due_date"), "names the parameter: {r}");
    assert!(
        r.stderr.contains("customer_name") && r.stderr.contains("amount"),
        "names the columns found: {r}"
    );
    let st = sb.stats();
    assert_eq!((st.tokens_created, st.send_requests), (0, 0), "{st:?}");
    // Refused campaigns are not created: nothing to resume by mistake.
    let status = run(&env, &args(&["status", "bills"])).await;
    assert_eq!(status.code, 2, "{status}");
}

#[tokio::test]
async fn pre_flight_rejects_exactly_the_long_rows_and_saves_their_tokens() {
    let env = Env::new();
    let (csv, long_lines) = bills(&env, true);

    let sb = zalo_with_templates(&[DECLARED]).await;
    let r = run(&env, &zalo_run(&csv, "checked", &sb, &[])).await;
    assert_eq!(r.code, 0, "{r}");
    let rows = report_rows(&env, "checked").await;
    let rejected: Vec<&csv::StringRecord> = rows.iter().filter(|r| &r[3] == "rejected").collect();
    let lines: Vec<u64> = rejected.iter().map(|r| r[0].parse().unwrap()).collect();
    assert_eq!(lines, long_lines, "exactly the 50 long rows, by line");
    for r in &rejected {
        assert!(
            r[6].contains("customer_name") && r[6].contains("31") && r[6].contains("30"),
            "the reason names the parameter and both lengths: {:?}",
            &r[6]
        );
    }
    assert_eq!(rows.iter().filter(|r| &r[3] == "sent").count(), 950);
    let checked = sb.stats();
    assert_eq!(checked.tokens_created, 950, "no token for a rejected row");
    assert_eq!(checked.accepted, 950);
    assert_eq!(
        checked.param_rejections, 0,
        "no send refused for parameters"
    );

    // The same file without the pre-flight, for the closing note's figure.
    let sb2 = zalo_with_templates(&[DECLARED]).await;
    let r = run(
        &env,
        &zalo_run(&csv, "unchecked", &sb2, &["--skip-template-check"]),
    )
    .await;
    let unchecked = sb2.stats();
    assert_eq!(unchecked.accepted, 950, "{r}");
    assert_eq!(unchecked.param_rejections, 50, "{r}");
    let rows = report_rows(&env, "unchecked").await;
    assert_eq!(rows.iter().filter(|r| &r[3] == "failed").count(), 50, "{r}");
    let saved = unchecked.tokens_created - checked.tokens_created;
    assert_eq!(saved, 50, "one token per refused row");
    println!(
        "measured: tokens saved by the pre-flight on the 1,000-row file with 50 over-long values: {saved} \
         ({} bought without it, {} with it; {} sends refused without it, 0 with it)",
        unchecked.tokens_created, checked.tokens_created, unchecked.param_rejections
    );
}

#[tokio::test]
async fn the_plan_shows_the_providers_quota_and_the_run_stops_at_it() {
    let (env, sb, csv, _) =
        setup(ProviderKind::Zalo, "many.csv", 100, |c| c.daily_quota = 40).await;
    let dry = run(&env, &zalo_run(&csv, "q", &sb, &["--dry-run"])).await;
    assert_eq!(dry.code, 0, "{dry}");
    let plan = dry.json();
    assert_eq!(plan["provider_quota"]["remaining"], 40, "{plan}");
    assert_eq!(plan["provider_quota"]["daily"], 40, "{plan}");
    assert_eq!(plan["quota_days_needed"], 3, "{plan}");
    let st = sb.stats();
    assert_eq!(
        (st.tokens_created, st.send_requests),
        (0, 0),
        "dry run: {st:?}"
    );
    let human_plan = run(&env, &human(zalo_run(&csv, "q", &sb, &["--dry-run"]))).await;
    assert!(
        human_plan.stdout.contains("40 of 40/day left"),
        "{human_plan}"
    );

    let r = run(&env, &zalo_run(&csv, "q", &sb, &["--daily-quota", "500"])).await;
    let st = assert_paused_within_quota(&r, &sb, 40);
    // Past the quota, at most the rows in flight (concurrency 8) and the
    // rows prepared ahead of them (runner::prepared_rows: 2 at 8) bought a
    // token; 40 + 8 alone was tighter than the runner promises.
    assert!(
        st.tokens_created <= 40 + 8 + 2,
        "tokens within the concurrency and the prepared rows: {st:?}"
    );

    // The next run finds nothing left and buys nothing.
    let before = sb.stats().tokens_created;
    let again = run(&env, &args(&["--json", "resume", "q", "--api-key", KEY])).await;
    assert_eq!(again.code, 3, "{again}");
    assert_eq!(sb.stats().tokens_created, before);
}

#[tokio::test]
async fn a_template_that_cannot_be_fetched_or_sent_names_the_choice() {
    let env = Env::new();
    let (csv, _) = bills(&env, true);
    let sb = zalo_with_templates(&[DECLARED, "300@disable=customer_name"]).await;

    let mut unknown = human(zalo_run(&csv, "u", &sb, &[]));
    let at = unknown.iter().position(|a| a == TEMPLATE).unwrap();
    // An unknown template, then a disabled one.
    for (template, says) in [
        ("999", ["999", "--skip-template-check"]),
        ("300", ["not enabled", "DISABLE"]),
    ] {
        unknown[at] = template.into();
        let r = run(&env, &unknown).await;
        assert_eq!(r.code, 2, "{r}");
        assert!(says.iter().all(|s| r.stderr.contains(s)), "{r}");
    }

    // Nobody listening: a network failure, exit 1, with the same choice.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", closed.local_addr().unwrap());
    drop(closed);
    let mut down = human(zalo_run(&csv, "d", &sb, &[]));
    let at = down.iter().position(|a| a == &sb.base_url()).unwrap();
    down[at] = url;
    let r = run(&env, &down).await;
    assert_eq!(r.code, 1, "{r}");
    assert!(r.stderr.contains("--skip-template-check"), "{r}");
    let st = sb.stats();
    assert_eq!((st.tokens_created, st.send_requests), (0, 0));
}

fn config_declaring(dir: &Path) -> PathBuf {
    let path = dir.join("zns-batch.toml");
    std::fs::write(
        &path,
        r#"
[templates.217489]
params = [
  { name = "customer_name", required = true, max_length = 30 },
  { name = "amount",        required = true, max_length = 20 },
  { name = "due_date",      required = true, min_length = 8, max_length = 10 },
]
"#,
    )
    .unwrap();
    path
}

#[tokio::test]
async fn validate_checks_a_declared_template_without_a_provider() {
    let env = Env::new();
    let (csv, long_lines) = bills(&env, true);
    let cfg = config_declaring(env.dir.path());
    let cfg = cfg.to_str().unwrap();
    let csv_arg = csv.to_str().unwrap();
    let r = run(
        &env,
        &args(&[
            "--config",
            cfg,
            "--json",
            "validate",
            csv_arg,
            "--template-id",
            TEMPLATE,
        ]),
    )
    .await;
    assert_eq!(r.code, 2, "rejected rows: {r}");
    let v = r.json();
    assert_eq!(v["rejected"], 50, "{v}");
    let lines: Vec<u64> = v["rejects"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x["line"].as_u64().unwrap())
        .collect();
    assert_eq!(lines, long_lines);

    let short = env.path("short.csv");
    thousand_rows(&short, false);
    let r = run(
        &env,
        &args(&[
            "--config",
            cfg,
            "validate",
            short.to_str().unwrap(),
            "--template-id",
            TEMPLATE,
        ]),
    )
    .await;
    r.assert_usage("due_date");

    let r = run(
        &env,
        &args(&["validate", csv_arg, "--template-id", "424242"]),
    )
    .await;
    r.assert_usage("[templates.424242]");
}

#[tokio::test]
async fn the_same_refusal_on_every_first_send_stops_the_campaign_not_the_rows() {
    let env = Env::new();
    let (csv, _) = bills(&env, false);
    let sb = zalo_with_templates(&[DECLARED, "217490=customer_name:1-31,amount:1-20"]).await;
    // Without the pre-flight, every send is refused for the missing column.
    let r = run(
        &env,
        &human(zalo_run(&csv, "c", &sb, &["--skip-template-check"])),
    )
    .await;
    assert_eq!(r.code, 1, "a campaign-level stop: {r}");
    assert!(
        r.stdout.contains("same error") || r.stderr.contains("same error"),
        "{r}"
    );
    let st = sb.stats();
    assert_eq!(st.accepted, 0);
    // Bounded by the rows in flight and prepared (concurrency 8), not the file.
    assert!(
        st.tokens_created <= 3 * 8,
        "tokens within the concurrency: {st:?}"
    );
    let rows = report_rows(&env, "c").await;
    assert_eq!(
        rows.iter().filter(|r| &r[3] == "failed").count(),
        0,
        "rows stay open"
    );
    let mut states = std::collections::BTreeMap::new();
    for row in &rows {
        *states.entry(row[3].to_string()).or_insert(0) += 1;
    }
    assert!(
        r.stdout.contains("resume c --template-id"),
        "the next step mends it: {r} {states:?}"
    );

    // Mended: the right template for this file, with its pre-flight.
    let resume = |template: &str| {
        let mut v = args(&["resume", "c", "--template-id", template, "--api-key", KEY]);
        v.extend(provider_args(&sb, ProviderKind::Zalo));
        v.retain(|a| a != "--oa-id" && a != OA);
        v
    };
    let r = run(&env, &resume("217490")).await;
    assert_eq!(r.code, 0, "{r}");
    assert_eq!(sb.stats().accepted, 1000);
    // A campaign that sent cannot change its template; the message says what to do.
    let r = run(&env, &resume("217489")).await;
    assert_eq!(r.code, 2, "{r}");
    assert!(
        r.stderr.contains("cannot change") && r.stderr.contains("--campaign NEW-NAME"),
        "{r}"
    );
}
