//! Shared test harness: the real binary, a real sandbox server on an
//! ephemeral loopback port, real SQLite files in a temp dir.
#![allow(dead_code)]

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::Duration;

use zns_batch::provider::ProviderKind;
use zns_batch::sandbox::{Sandbox, SandboxConfig, Stats};

mod serve_harness;
// Only the tests that start `serve` use it.
#[allow(unused_imports)]
pub use serve_harness::*;

pub const KEY: &str = "test-key-DO-NOT-LEAK-7f3a";
pub const SECRET: &str = "test-secret-DO-NOT-LEAK-91bc";
pub const OA: &str = "4318226164000000001";

/// Every process a test starts is killed after this long.
pub const PROCESS_TIMEOUT: Duration = Duration::from_secs(120);

pub fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_zns-batch")
}

/// `after` from now as a date-time input holds it: OA local time (UTC+7),
/// no offset, to the minute or (`seconds`) to the second.
pub fn oa_local_input(after: time::Duration, seconds: bool) -> String {
    let t = time::OffsetDateTime::now_utc().to_offset(time::macros::offset!(+7)) + after;
    let minute = format!(
        "{}-{:02}-{:02}T{:02}:{:02}",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute()
    );
    if seconds {
        format!("{minute}:{:02}", t.second())
    } else {
        minute
    }
}

pub struct Env {
    pub dir: tempfile::TempDir,
    /// Set: the ledger is this PostgreSQL database (see [`Env::postgres`]).
    ledger_url: Option<String>,
}

impl Env {
    pub fn new() -> Self {
        Env {
            dir: tempfile::tempdir().expect("tempdir"),
            ledger_url: None,
        }
    }
    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }
    /// What `--state` is given: the SQLite file in the temp dir, or the
    /// PostgreSQL URL.
    pub fn state(&self) -> PathBuf {
        match &self.ledger_url {
            Some(url) => PathBuf::from(url),
            None => self.path("state.sqlite"),
        }
    }
}

pub async fn sandbox(protocol: ProviderKind, tweak: impl FnOnce(&mut SandboxConfig)) -> Sandbox {
    let mut cfg = SandboxConfig {
        protocol,
        api_key: KEY.to_string(),
        secret_key: SECRET.to_string(),
        ..SandboxConfig::default()
    };
    tweak(&mut cfg);
    Sandbox::start("127.0.0.1:0".parse().unwrap(), cfg)
        .await
        .expect("start sandbox")
}

/// A phone for row `i`: distinct for distinct `i`, valid Vietnamese mobile.
pub fn phone(i: usize) -> String {
    format!("8491{:07}", i)
}

/// Write a CSV of `n` good rows (phones from `first`), written in mixed
/// local formats. Returns the normalised phones in order.
pub fn write_csv(path: &Path, first: usize, n: usize) -> Vec<String> {
    let mut out = String::from("phone,customer_name,amount\n");
    let mut phones = Vec::with_capacity(n);
    for i in first..first + n {
        let p = phone(i);
        let shown = match i % 3 {
            0 => p.clone(),
            1 => format!("0{}", &p[2..]),
            _ => format!("+84 {} {} {}", &p[2..5], &p[5..8], &p[8..]),
        };
        out.push_str(&format!(
            "{shown},Nguyễn Văn Ánh {i},{}.000 đ\n",
            100 + i % 900
        ));
        phones.push(p);
    }
    std::fs::write(path, out).expect("write csv");
    phones
}

/// Flags that point the binary at a sandbox: provider, URL, OA (and the
/// eSMS secret), without timeouts.
pub fn provider_base_args(sb: &Sandbox, protocol: ProviderKind) -> Vec<String> {
    let mut v = vec![
        "--provider".to_string(),
        protocol.as_str().to_string(),
        "--base-url".to_string(),
        sb.base_url(),
        "--oa-id".to_string(),
        OA.to_string(),
    ];
    if protocol == ProviderKind::Esms {
        v.push("--secret-key".into());
        v.push(SECRET.into());
    }
    v
}

/// Common flags to point the binary at a sandbox.
pub fn provider_args(sb: &Sandbox, protocol: ProviderKind) -> Vec<String> {
    let mut v = provider_base_args(sb, protocol);
    v.extend(args(&["--request-timeout", "2s", "--backoff", "20ms"]));
    v
}

pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    /// Refused as bad usage (exit 2) with `hint` in stderr.
    #[track_caller]
    pub fn assert_usage(&self, hint: &str) {
        assert_eq!(self.code, 2, "{self}");
        assert!(self.stderr.contains(hint), "no {hint:?} in stderr: {self}");
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.stdout).unwrap_or_else(|e| {
            panic!(
                "stdout is not JSON ({e}):\n{}\nstderr:\n{}",
                self.stdout, self.stderr
            )
        })
    }
}

impl From<Output> for Run {
    fn from(out: Output) -> Run {
        Run {
            code: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }
}

impl std::fmt::Display for Run {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "exit {}\n--- stdout\n{}\n--- stderr\n{}",
            self.code, self.stdout, self.stderr
        )
    }
}

pub fn command(env: &Env, args: &[String]) -> tokio::process::Command {
    command_with_state(env, &env.state(), args)
}

/// [`command`] with another `--state` path (a symlink, say).
pub fn command_with_state(env: &Env, state: &Path, args: &[String]) -> tokio::process::Command {
    let mut cmd = tokio::process::Command::new(bin());
    cmd.arg("--state").arg(state);
    cmd.args(args);
    isolate(env, &mut cmd);
    cmd
}

/// [`command`] started through `launcher` (`sh -c …`, `setpriv …`), which
/// is given the binary and its arguments last; an empty launcher is
/// [`command`] itself.
pub fn launched_command(
    env: &Env,
    launcher: &[String],
    args: &[String],
) -> tokio::process::Command {
    let Some((program, launcher_args)) = launcher.split_first() else {
        return command(env, args);
    };
    let mut cmd = tokio::process::Command::new(program);
    cmd.args(launcher_args);
    cmd.arg(bin()).arg("--state").arg(env.state()).args(args);
    isolate(env, &mut cmd);
    cmd
}

/// Every process a test starts: no `ZNS_*` variable from the developer's
/// shell (a stray `ZNS_OA_ID` or `ZNS_BATCH_NOW` would change what the test
/// checks), the sandbox key, the temp dir as working directory, and killed
/// with the test.
fn isolate(env: &Env, cmd: &mut tokio::process::Command) {
    for (name, _) in std::env::vars_os() {
        if name.to_string_lossy().starts_with("ZNS_") {
            cmd.env_remove(name);
        }
    }
    cmd.env("ZNS_API_KEY", KEY);
    cmd.current_dir(env.dir.path());
    cmd.kill_on_drop(true);
}

/// The real now plus `days`: a later OA day for a resume.
pub fn days_from_now(days: i64) -> time::OffsetDateTime {
    time::OffsetDateTime::now_utc() + time::Duration::days(days)
}

/// Set the binary's clock (`ZNS_BATCH_NOW`) to `when`.
pub fn set_clock(cmd: &mut tokio::process::Command, when: time::OffsetDateTime) {
    let rfc3339 = when
        .format(&time::format_description::well_known::Rfc3339)
        .expect("an RFC 3339 time");
    cmd.env(zns_batch::model::clock::NOW_ENV, rfc3339);
}

/// [`command`] whose clock reads `when`.
pub fn command_at(
    env: &Env,
    args: &[String],
    when: time::OffsetDateTime,
) -> tokio::process::Command {
    let mut cmd = command(env, args);
    set_clock(&mut cmd, when);
    cmd
}

/// Whether the protocol buys a token per phone before sending (eSMS does not).
pub fn uses_tokens(p: ProviderKind) -> bool {
    p != ProviderKind::Esms
}

pub async fn run_with(mut cmd: tokio::process::Command) -> Run {
    let out: Output = tokio::time::timeout(PROCESS_TIMEOUT, cmd.output())
        .await
        .expect("zns-batch did not finish in time")
        .expect("spawn zns-batch");
    Run::from(out)
}

pub async fn run(env: &Env, args: &[String]) -> Run {
    run_with(command(env, args)).await
}

pub fn args(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| s.to_string()).collect()
}

/// `--json report NAME`: one JSON object per row.
pub async fn report_json(env: &Env, name: &str) -> Vec<serde_json::Value> {
    let r = run(env, &args(&["--json", "report", name])).await;
    assert_eq!(r.code, 0, "{r}");
    r.stdout
        .lines()
        .map(|l| serde_json::from_str(l).expect("a JSON report line"))
        .collect()
}

/// `report CAMPAIGN [extra…] --out FILE` (in the env) run to success: the
/// file's bytes.
pub async fn report_file(env: &Env, campaign: &str, extra: &[&str], file: &str) -> Vec<u8> {
    let out = env.path(file);
    let mut argv = vec!["report", campaign];
    argv.extend_from_slice(extra);
    argv.extend(["--out", out.to_str().unwrap()]);
    let r = run(env, &args(&argv)).await;
    assert_eq!(r.code, 0, "{r}");
    std::fs::read(&out).expect("read report")
}

/// Tracking ids of the report's rows in a given state.
pub async fn report_rows(env: &Env, campaign: &str) -> Vec<csv::StringRecord> {
    let bytes = report_file(env, campaign, &[], &format!("{campaign}-report.csv")).await;
    let mut rdr = csv::Reader::from_reader(&bytes[..]);
    rdr.records().map(|r| r.expect("report record")).collect()
}

/// The run paused (exit 3) on a quota with exactly `accepted` messages
/// accepted and the provider never refusing one: the sandbox's stats.
pub fn assert_paused_within_quota(r: &Run, sb: &Sandbox, accepted: u64) -> Stats {
    assert_eq!(r.code, 3, "paused on the quota: {r}");
    let stats = sb.stats();
    assert_eq!(stats.accepted, accepted, "exactly the quota: {stats:?}");
    assert_eq!(
        stats.quota_rejections, 0,
        "stopped before the provider refused: {stats:?}"
    );
    stats
}

/// The exactly-once check: every tracking id of a sent row was delivered
/// exactly once, nothing else was delivered, and no good row is missing.
pub fn assert_exactly_once(
    stats: &Stats,
    sent_tracking_ids: &BTreeSet<String>,
    expected_rows: usize,
) {
    assert_eq!(
        sent_tracking_ids.len(),
        expected_rows,
        "rows marked sent in the report"
    );
    let dups: Vec<_> = stats.deliveries.iter().filter(|(_, n)| **n != 1).collect();
    assert!(
        dups.is_empty(),
        "tracking ids delivered more than once: {dups:?}"
    );
    let delivered: BTreeSet<String> = stats.deliveries.keys().cloned().collect();
    let missing: Vec<_> = sent_tracking_ids.difference(&delivered).take(5).collect();
    assert!(
        missing.is_empty(),
        "rows marked sent but never delivered: {missing:?}"
    );
    let extra: Vec<_> = delivered.difference(sent_tracking_ids).take(5).collect();
    assert!(
        extra.is_empty(),
        "deliveries for rows not marked sent: {extra:?}"
    );
}

/// Column indexes in the report CSV.
pub const R_LINE: usize = 0;
pub const R_PHONE: usize = 1;
pub const R_TRACKING: usize = 2;
pub const R_STATE: usize = 3;
pub const R_ERROR: usize = 6;

pub fn tracking_ids_in_state(rows: &[csv::StringRecord], state: &str) -> BTreeSet<String> {
    rows.iter()
        .filter(|r| &r[R_STATE] == state)
        .map(|r| r[R_TRACKING].to_string())
        .collect()
}

/// `--json run <CSV> --campaign <NAME> --template-id 246810`, no provider flags.
pub fn run_head(csv: &Path, campaign: &str) -> Vec<String> {
    run_head_with_template(csv, campaign, "246810")
}

/// [`run_head`] with another template.
pub fn run_head_with_template(csv: &Path, campaign: &str, template: &str) -> Vec<String> {
    with_globals(&["--json"], run_plain(csv, campaign, template, &[]))
}

/// `run <CSV> --campaign <NAME> --template-id <ID>` and `extra`: no
/// `--json`, no provider flags.
pub fn run_plain(csv: &Path, campaign: &str, template: &str, extra: &[&str]) -> Vec<String> {
    let mut v = args(&[
        "run",
        csv.to_str().unwrap(),
        "--campaign",
        campaign,
        "--template-id",
        template,
    ]);
    v.extend(args(extra));
    v
}

/// `--json resume <NAME>`, no provider flags.
pub fn resume_head(campaign: &str) -> Vec<String> {
    args(&["--json", "resume", campaign])
}

/// [`run_head`] plus the provider flags for `sb` and `extra`.
pub fn run_args(
    csv: &Path,
    campaign: &str,
    sb: &Sandbox,
    p: ProviderKind,
    extra: &[&str],
) -> Vec<String> {
    let mut v = run_head(csv, campaign);
    v.extend(provider_args(sb, p));
    v.extend(extra.iter().map(|s| s.to_string()));
    v
}

/// [`resume_head`] plus the provider flags for `sb` and `extra`: `resume`
/// takes the stored OA; the rest of the provider flags apply.
pub fn resume_args(campaign: &str, sb: &Sandbox, p: ProviderKind, extra: &[&str]) -> Vec<String> {
    let mut v = resume_head(campaign);
    v.extend(provider_args(sb, p));
    v.extend(extra.iter().map(|s| s.to_string()));
    v
}

/// The same command with the human (text) output: `--json` dropped.
pub fn human(mut argv: Vec<String>) -> Vec<String> {
    argv.retain(|a| a != "--json");
    argv
}

/// `globals` (`--config F`, `-vv`, …) put before the subcommand.
pub fn with_globals(globals: &[&str], argv: Vec<String>) -> Vec<String> {
    let mut v = args(globals);
    v.extend(argv);
    v
}

/// `PRAGMA integrity_check` of a state database.
pub fn integrity(path: &Path) -> String {
    rusqlite::Connection::open(path)
        .expect("open state for integrity_check")
        .query_row("PRAGMA integrity_check", [], |r| r.get::<_, String>(0))
        .expect("integrity_check")
}

/// Send a signal by name (`TERM`, `INT`, `KILL`) with the system's `kill`.
pub fn signal(pid: u32, sig: &str) {
    let ok = std::process::Command::new("kill")
        .args(["-s", sig, &pid.to_string()])
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    assert!(ok, "kill -s {sig} {pid} failed");
}

/// Wait until the sandbox has accepted `target` new messages, panicking if
/// the child ends first or nothing moves for `limit`.
pub async fn wait_accepted(
    sb: &Sandbox,
    child: &mut tokio::process::Child,
    target: u64,
    limit: Duration,
) {
    let t0 = std::time::Instant::now();
    while sb.stats_summary().accepted < target {
        assert!(
            t0.elapsed() < limit,
            "sandbox accepted {} < {target} after {limit:?}",
            sb.stats_summary().accepted
        );
        if let Ok(Some(status)) = child.try_wait() {
            panic!("zns-batch ended ({status}) before {target} were accepted");
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

/// `cmd` started with its output captured (collect it with [`finish`]).
pub fn spawn_captured(mut cmd: tokio::process::Command) -> tokio::process::Child {
    cmd.stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    cmd.spawn().expect("spawn zns-batch")
}

/// `(imported_through_line, import_done)` of a campaign, read-only; `None`
/// while the state file or the campaign does not exist yet.
pub fn import_progress(state: &Path, campaign: &str) -> Option<(u64, bool)> {
    let c =
        rusqlite::Connection::open_with_flags(state, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
            .ok()?;
    c.query_row(
        "SELECT imported_through_line, import_done FROM campaigns WHERE name = ?1",
        [campaign],
        |r| Ok((r.get::<_, i64>(0)? as u64, r.get::<_, i64>(1)? != 0)),
    )
    .ok()
}

/// Wait for a spawned run to end and collect it like [`run_with`].
pub async fn finish(child: tokio::process::Child) -> Run {
    let out = tokio::time::timeout(PROCESS_TIMEOUT, child.wait_with_output())
        .await
        .expect("zns-batch did not finish in time")
        .expect("wait for zns-batch");
    Run::from(out)
}

/// SIGKILL a spawned run and reap it.
pub async fn kill_9(mut child: tokio::process::Child) {
    child.start_kill().expect("SIGKILL");
    let _ = child.wait().await;
}

/// What happened to every row, per the report and the sandbox.
#[derive(Debug, Default)]
pub struct Fates {
    pub sent: usize,
    pub failed: usize,
    pub rejected: usize,
    pub in_doubt: usize,
    pub open: usize,
    /// Tracking ids the sandbox created more than one message for.
    pub duplicates: usize,
    /// Good rows neither sent, failed with a reason, nor held in doubt.
    pub lost: usize,
}

/// `sent N duplicates N lost N`, as the `measured:` lines say it.
impl std::fmt::Display for Fates {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "sent {} duplicates {} lost {}",
            self.sent, self.duplicates, self.lost
        )
    }
}

/// Check the fate of every row: a `sent` row was delivered exactly once, a
/// `failed` row has a reason and was never delivered, nothing was delivered
/// for a row not marked sent (held in-doubt rows aside: at most once), and
/// the report has one line per input record.
pub fn check_fates(rows: &[csv::StringRecord], stats: &Stats, records: usize) -> Fates {
    assert_eq!(rows.len(), records, "one report line per input record");
    let mut f = Fates::default();
    let mut seen = BTreeSet::new();
    for r in rows {
        let tracking = &r[R_TRACKING];
        let delivered = stats.deliveries.get(tracking).copied().unwrap_or(0);
        if delivered > 1 {
            f.duplicates += 1;
        }
        match &r[R_STATE] {
            "sent" => {
                f.sent += 1;
                assert_eq!(
                    delivered, 1,
                    "sent row {tracking} delivered {delivered} times"
                );
            }
            "failed" => {
                f.failed += 1;
                assert!(!r[R_ERROR].is_empty(), "failed without a reason: {r:?}");
                assert_eq!(delivered, 0, "failed row {tracking} was delivered");
            }
            "rejected" => {
                f.rejected += 1;
                assert!(!r[R_ERROR].is_empty(), "rejected without a reason: {r:?}");
            }
            "in_doubt" => {
                f.in_doubt += 1;
                assert!(!r[R_ERROR].is_empty(), "in doubt without a reason: {r:?}");
            }
            _ => {
                f.open += 1;
                f.lost += 1;
            }
        }
        if !tracking.is_empty() {
            seen.insert(tracking.to_string());
        }
    }
    let strays: Vec<_> = stats
        .deliveries
        .keys()
        .filter(|t| !seen.contains(*t))
        .take(5)
        .collect();
    assert!(strays.is_empty(), "deliveries for unknown rows: {strays:?}");
    f
}

/// What most tests start from, in a fresh [`Env`]: a sandbox speaking
/// `protocol` (after `tweak`) and `csv_name`, a CSV of `rows` good rows (see
/// [`write_csv`]). Returns the env, the sandbox, the CSV's path and its
/// normalised phones in order.
pub async fn setup(
    protocol: ProviderKind,
    csv_name: &str,
    rows: usize,
    tweak: impl FnOnce(&mut SandboxConfig),
) -> (Env, Sandbox, PathBuf, Vec<String>) {
    let env = Env::new();
    let sb = sandbox(protocol, tweak).await;
    let csv = env.path(csv_name);
    let phones = write_csv(&csv, 0, rows);
    (env, sb, csv, phones)
}

/// Run the binary with its clock at `when` (see [`command_at`]).
pub async fn run_at(env: &Env, args: &[String], when: time::OffsetDateTime) -> Run {
    run_with(command_at(env, args, when)).await
}

/// The campaign's report checked against the sandbox (see [`check_fates`]),
/// with the stats it was checked against.
pub async fn fates_of(
    env: &Env,
    sb: &Sandbox,
    campaign: &str,
    records: usize,
) -> (Vec<csv::StringRecord>, Stats, Fates) {
    let rows = report_rows(env, campaign).await;
    let stats = sb.stats();
    let fates = check_fates(&rows, &stats, records);
    (rows, stats, fates)
}

/// The exactly-once check of [`assert_exactly_once`] on the campaign's
/// report: `expected_rows` sent, each delivered once. Returns the report.
pub async fn assert_report_exactly_once(
    env: &Env,
    sb: &Sandbox,
    campaign: &str,
    expected_rows: usize,
) -> Vec<csv::StringRecord> {
    let rows = report_rows(env, campaign).await;
    assert_exactly_once(
        &sb.stats(),
        &tracking_ids_in_state(&rows, "sent"),
        expected_rows,
    );
    rows
}

/// A ledger on PostgreSQL for the test: a fresh database on the server
/// `ZNS_TEST_PG` names (see scripts/pg-throwaway.sh), dropped after.
pub use zns_batch::store::test_pg::PgDatabase;

impl Env {
    /// An Env whose ledger (`--state`) is a fresh PostgreSQL database, or
    /// None without `ZNS_TEST_PG` (then a line says `test` was skipped).
    pub fn postgres(test: &str) -> Option<(Env, PgDatabase)> {
        let Some(url) = zns_batch::store::test_pg::pg_url() else {
            println!("SKIPPED on postgres: {test} (set ZNS_TEST_PG, see scripts/pg-throwaway.sh)");
            return None;
        };
        let db = PgDatabase::create(&url);
        let env = Env {
            dir: tempfile::tempdir().expect("tempdir"),
            ledger_url: Some(db.url.clone()),
        };
        Some((env, db))
    }

    /// One number from the ledger, whichever database it is on (a query
    /// both dialects read alike; a SUM is CAST to BIGINT for PostgreSQL).
    pub fn ledger_i64(&self, sql: &str) -> i64 {
        match &self.ledger_url {
            // A thread of its own: the sync client may not block an async test's thread.
            Some(url) => std::thread::scope(|s| {
                s.spawn(|| {
                    let mut db = postgres::Client::connect(url, postgres::NoTls).expect("connect");
                    db.query_one(sql, &[]).expect(sql).get(0)
                })
                .join()
                .expect("the ledger query")
            }),
            None => {
                let db = rusqlite::Connection::open(self.state()).expect("open the ledger");
                db.query_row(sql, [], |r| r.get(0)).expect(sql)
            }
        }
    }
}
