//! The core's API as a face sees it: typed reads, the report writer,
//! validate, wanted-running and the web options, on a real state database
//! in a temporary folder (campaigns imported for the embedded sandbox, so
//! nothing is sent).

use std::path::{Path, PathBuf};

use super::config::ConfigFile;
use super::*;
use crate::model::row_state::RowState;

/// Two good rows and one with a bad phone (line 4).
const CSV: &str = "phone,name\n0912345678,An\n0987654321,Binh\nabc,Chi\n";

fn workspace(dir: &Path) -> Workspace {
    Workspace::new(Some(dir.join("state.sqlite")), ConfigFile::default(), None)
}

fn write_csv(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path
}

fn request(name: &str, csv: &Path) -> Request {
    Request::embedded_sandbox(name, csv)
}

/// Import `CSV` as campaign `c`; the prepared campaign (and its lock).
fn imported(ws: &Workspace, dir: &Path) -> (Prepared, PathBuf) {
    let csv = write_csv(dir, "c.csv", CSV);
    let p = ws
        .prepare(&request("c", &csv), Mode::Run, Hooks::default())
        .unwrap();
    (p, csv)
}

#[test]
fn reads_are_typed_and_a_missing_campaign_is_none() {
    let dir = tempfile::tempdir().unwrap();
    let ws = workspace(dir.path());
    // Reading never creates a state database.
    assert!(ws.status(None).unwrap().is_none());
    assert!(!dir.path().join("state.sqlite").exists());

    let (prepared, _) = imported(&ws, dir.path());
    assert_eq!(prepared.campaign_name(), "c");
    assert!(prepared.import_done());
    drop(prepared);

    let lines = ws.status(None).unwrap().unwrap();
    assert_eq!(lines.len(), 1);
    assert_eq!((lines[0].counts.total, lines[0].counts.rejected), (3, 1));

    let r = ws.reader().unwrap();
    assert!(r.exists("c").unwrap());
    assert!(!r.exists("nope").unwrap());
    assert!(r.status_of("nope").unwrap().is_none());
    assert_eq!(r.status_of("c").unwrap().unwrap().campaign, "c");
    assert_eq!(r.status_all().unwrap().len(), 1);
    assert!(r
        .rows_page("nope", RowState::Pending, 0, 10)
        .unwrap()
        .is_none());
    assert!(r.top_errors("nope", 5).unwrap().is_none());
    assert!(r.template_keys("nope").unwrap().is_none());
    assert_eq!(r.template_keys("c").unwrap().unwrap(), vec!["name"]);

    // Pages get phones masked, in file order, one page at a time.
    let pending = r.rows_page("c", RowState::Pending, 0, 10).unwrap().unwrap();
    let lines: Vec<u64> = pending.iter().map(|row| row.line).collect();
    assert_eq!(lines, vec![2, 3]);
    assert_eq!(pending[0].phone, "0912****678");
    assert!(pending.iter().all(|row| !row.phone.contains("12345")));
    let second = r.rows_page("c", RowState::Pending, 1, 1).unwrap().unwrap();
    assert_eq!(second.len(), 1);
    assert_eq!(second[0].line, 3);
    let rejected = r
        .rows_page("c", RowState::Rejected, 0, 10)
        .unwrap()
        .unwrap();
    assert_eq!(rejected.len(), 1);
    assert_eq!(rejected[0].line, 4);
    assert!(!rejected[0].text.is_empty(), "a reject says why");

    let m = r.metrics().unwrap();
    assert!(m.rows.contains(&("c".into(), "pending".into(), 2)));
    assert!(m.rows.contains(&("c".into(), "rejected".into(), 1)));
    assert!(!m.rows.iter().any(|(_, state, _)| state == "total"));
    assert_eq!(m.unmatched, 0);
}

#[test]
fn the_report_is_written_in_each_format_and_never_over_its_input() {
    let dir = tempfile::tempdir().unwrap();
    let ws = workspace(dir.path());
    let (prepared, csv) = imported(&ws, dir.path());
    drop(prepared);

    let mut csv_out = Vec::new();
    assert_eq!(
        ws.write_report("c", &mut csv_out, ReportFormat::Csv)
            .unwrap(),
        3
    );
    let text = String::from_utf8(csv_out).unwrap();
    assert!(text.starts_with("line,"), "{text}");
    assert_eq!(
        text.lines().count(),
        4,
        "a header and one line per input row"
    );

    let mut excel = Vec::new();
    ws.write_report("c", &mut excel, ReportFormat::Excel)
        .unwrap();
    assert!(excel.starts_with("\u{feff}line,".as_bytes()));

    let mut json = Vec::new();
    ws.write_report("c", &mut json, ReportFormat::JsonLines)
        .unwrap();
    let rows: Vec<serde_json::Value> = String::from_utf8(json)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(rows.len(), 3);
    assert_eq!(rows[2]["state"], "rejected");

    let report = ws.report("c").unwrap();
    assert_eq!(report.campaign_name(), "c");
    assert!(report.is_input_file(&csv));
    assert!(!report.is_input_file(&dir.path().join("other.csv")));
    assert!(report.file_name().ends_with("-report.csv"));

    let missing = ws.write_report("nope", Vec::new(), ReportFormat::Csv);
    let e = missing.unwrap_err();
    assert!(e.to_string().contains("no campaign `nope`"), "{e}");
    // Coded: the console names the campaign, not the state file.
    assert!(matches!(&e, CoreError::Refused(r) if r.code().as_deref() == Some("campaign.unknown")));
}

#[test]
fn wanted_running_and_web_options_are_kept_with_the_campaign() {
    let dir = tempfile::tempdir().unwrap();
    let ws = workspace(dir.path());
    let (mut prepared, csv) = imported(&ws, dir.path());
    let options = WebOptions {
        profile: Some("demo".into()),
        daily_quota: Some(500),
        ..WebOptions::default()
    };
    prepared.remember_web_options(&options).unwrap();
    prepared.set_wanted_running(true).unwrap();
    drop(prepared);

    let kept = ws.web_options("c").unwrap();
    assert_eq!(kept.profile.as_deref(), Some("demo"));
    assert_eq!(kept.daily_quota, Some(500));
    assert!(matches!(ws.web_options("nope"), Err(CoreError::Refused(_))));

    assert_eq!(ws.wanted_running().unwrap(), vec!["c".to_string()]);
    ws.set_wanted_running("c", false).unwrap();
    assert!(ws.wanted_running().unwrap().is_empty());
    ws.set_wanted_running("c", true).unwrap();
    assert_eq!(ws.wanted_running().unwrap(), vec!["c".to_string()]);
    // A campaign that is not there is not an error (it may have been removed).
    ws.set_wanted_running("nope", false).unwrap();

    assert_eq!(ws.same_file("c", &csv, None).unwrap(), Some(true));
    let other = write_csv(dir.path(), "other.csv", "phone,name\n0912345678,Other\n");
    assert_eq!(ws.same_file("c", &other, None).unwrap(), Some(false));
    assert_eq!(ws.same_file("new", &other, None).unwrap(), None);
    // The same file read through a named sheet is another input.
    assert_eq!(ws.same_file("c", &csv, Some("Other")).unwrap(), Some(false));
}

#[test]
fn validate_is_a_typed_verdict_with_its_exit_code() {
    let dir = tempfile::tempdir().unwrap();
    let ws = workspace(dir.path());
    let bad = write_csv(dir.path(), "bad.csv", CSV);
    let v = ws.validate(&bad, Default::default(), None).unwrap();
    assert_eq!((v.rows, v.valid, v.rejected), (3, 2, 1));
    assert_eq!(v.template_keys, vec!["name"]);
    assert_eq!(v.rejects.len(), 1);
    assert_eq!(v.rejects[0].line, 4);
    assert_eq!(
        v.rejects[0].phone, "abc",
        "validate shows the file's own phone"
    );
    assert_eq!(v.verdict(), ValidateVerdict::Rejected);
    assert_eq!(v.verdict().exit_code(), ExitCode::Usage);

    let good = write_csv(dir.path(), "good.csv", "phone,name\n0912345678,An\n");
    let v = ws.validate(&good, Default::default(), None).unwrap();
    assert_eq!(v.verdict(), ValidateVerdict::Accepted);
    assert_eq!(v.verdict().exit_code(), ExitCode::Finished);
    assert!(v.rejects.is_empty());
    // Validating uses a throwaway database: the workspace's state is untouched.
    assert!(!dir.path().join("state.sqlite").exists());

    // A template nobody declared nor cached: a usage error naming it.
    let e = ws
        .validate(&good, Default::default(), Some("777"))
        .unwrap_err();
    assert!(matches!(&e, CoreError::Usage(m) if m.contains("--template-id 777")));
}
