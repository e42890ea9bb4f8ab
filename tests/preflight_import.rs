//! Template pre-flight at import, at the library level with a real SQLite
//! file: rows whose values break the template are imported `rejected` with
//! their line and reason (so the runner never buys a token for them), and a
//! campaign the template refuses is never created.

use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;

use zns_batch::campaign::{open_or_import, resume_import, CampaignError, CampaignSpec};
use zns_batch::csv_input::CsvOptions;
use zns_batch::model::template_spec::{PreflightError, TemplateSpec};
use zns_batch::store::{Campaign, Store};

fn declared_template() -> TemplateSpec {
    zns_batch::campaign::config::ConfigFile::parse(
        r#"
[templates.217489]
params = [
  { name = "customer_name", required = true, max_length = 30 },
  { name = "amount",        required = true, max_length = 20 },
]
"#,
        None,
    )
    .unwrap()
    .templates
    .remove("217489")
    .unwrap()
}

fn spec<'a>(
    csv: &'a Path,
    opts: &'a CsvOptions,
    template: Option<&'a TemplateSpec>,
    interrupted: Option<&'a AtomicBool>,
) -> CampaignSpec<'a> {
    CampaignSpec {
        name: "bills",
        csv,
        template_id: "217489",
        token_type: "journey",
        provider: "sandbox",
        base_url: None,
        oa_id: "1",
        in_doubt_policy: "resend",
        not_after_ms: None,
        min_interval_ms: None,
        csv_options: opts,
        dedup_phones: true,
        interrupted,
        progress: None,
        template,
    }
}

/// 1,000 rows, every 20th name one character too long (50 rows); the
/// names that fit are typed decomposed (NFD), longer in code points
/// than the limit but not in characters. Written in a new temporary folder
/// with a new state file.
fn thousand_rows() -> (tempfile::TempDir, PathBuf, Vec<u64>, Store) {
    let dir = tempfile::tempdir().unwrap();
    use unicode_normalization::UnicodeNormalization;
    let fits: String = "Nguyễn Thị Ánh Tuyết Phương Ly".nfd().collect();
    assert!(fits.chars().count() > 30 && zns_batch::model::template_spec::char_len(&fits) == 30);
    let too_long = "Nguyễn Thị Ánh Tuyết Phương Lyy";
    let mut text = String::from("phone,customer_name,amount\n");
    let mut long_lines = Vec::new();
    for i in 0..1000u64 {
        let name = if i % 20 == 7 {
            long_lines.push(i + 2);
            too_long
        } else {
            fits.as_str()
        };
        text.push_str(&format!("0912{i:06},{name},{}\n", 1000 + i));
    }
    let path = dir.path().join("bills.csv");
    std::fs::write(&path, text).unwrap();
    let store = Store::open(dir.path().join("s.sqlite")).unwrap();
    (dir, path, long_lines, store)
}

fn assert_exactly_the_long_rows_rejected(store: &Store, c: &Campaign, long_lines: &[u64]) {
    let counts = store.state_counts(c.id).unwrap();
    assert_eq!((counts.pending, counts.rejected), (950, 50));
    let rejects = store.rejects(c.id, 1000).unwrap();
    let lines: Vec<u64> = rejects.iter().map(|r| r.0).collect();
    assert_eq!(lines, long_lines);
    for (line, _, reason, _) in &rejects {
        assert_eq!(
            reason, "customer_name is 31 characters, longer than the template's 30: shorten it",
            "line {line}"
        );
    }
}

#[test]
fn rows_that_break_the_template_are_rejected_at_import_with_line_and_reason() {
    let (dir, csv, long_lines, mut store) = thousand_rows();
    let template = declared_template();
    let opts = CsvOptions::default();
    let (c, counts, fresh) =
        open_or_import(&mut store, &spec(&csv, &opts, Some(&template), None)).unwrap();
    assert!(fresh && c.import_done);
    assert_eq!((counts.accepted, counts.rejected), (950, 50));
    assert_exactly_the_long_rows_rejected(&store, &c, &long_lines);

    // Without the template the same file is accepted whole.
    let mut plain = Store::open(dir.path().join("plain.sqlite")).unwrap();
    let (_, counts, _) = open_or_import(&mut plain, &spec(&csv, &opts, None, None)).unwrap();
    assert_eq!((counts.accepted, counts.rejected), (1000, 0));
}

#[test]
fn an_interrupted_import_resumed_checks_the_template_too() {
    let (_dir, csv, long_lines, mut store) = thousand_rows();
    let template = declared_template();
    let opts = CsvOptions::default();
    let stop = AtomicBool::new(true);
    let (c, counts, _) =
        open_or_import(&mut store, &spec(&csv, &opts, Some(&template), Some(&stop))).unwrap();
    assert!(!c.import_done);
    assert_eq!(counts.accepted + counts.rejected, 0);
    let (c, counts) =
        resume_import(&mut store, &c, &spec(&csv, &opts, Some(&template), None)).unwrap();
    assert!(c.import_done);
    assert_eq!((counts.accepted, counts.rejected), (950, 50));
    assert_exactly_the_long_rows_rejected(&store, &c, &long_lines);
}

#[test]
fn a_missing_required_column_refuses_the_campaign_before_it_exists() {
    let dir = tempfile::tempdir().unwrap();
    let csv = dir.path().join("bills.csv");
    std::fs::write(&csv, "phone,customer_name,note\n0912000001,An,x\n").unwrap();
    let template = declared_template();
    let opts = CsvOptions::default();
    let mut store = Store::open(dir.path().join("s.sqlite")).unwrap();
    let e = open_or_import(&mut store, &spec(&csv, &opts, Some(&template), None)).unwrap_err();
    let msg = e.to_string();
    assert!(
        matches!(
            e,
            CampaignError::Preflight(PreflightError::MissingColumns(_))
        ) && msg.contains("`amount`")
            && msg.contains("columns found: `customer_name`, `note`"),
        "{msg}"
    );
    assert!(store.find_campaign("bills").unwrap().is_none());
}

#[test]
fn the_template_decides_which_of_its_columns_may_be_empty() {
    let dir = tempfile::tempdir().unwrap();
    let csv = dir.path().join("bills.csv");
    std::fs::write(
        &csv,
        "phone,customer_name,due_date,note\n\
         0912000001,An,,x\n\
         0912000002,Bình,2026-12-01,\n\
         0912000003,Chi,01/12,x\n",
    )
    .unwrap();
    let template = zns_batch::campaign::config::ConfigFile::parse(
        r#"
[templates.217489]
params = [
  { name = "customer_name", max_length = 30 },
  { name = "due_date", required = false, min_length = 8, max_length = 10 },
  { name = "note", required = false, accept_null = false },
]
"#,
        None,
    )
    .unwrap()
    .templates
    .remove("217489")
    .unwrap();
    let opts = CsvOptions::default();
    let mut store = Store::open(dir.path().join("s.sqlite")).unwrap();
    let (c, _, _) = open_or_import(&mut store, &spec(&csv, &opts, Some(&template), None)).unwrap();
    let rejects: Vec<(u64, String)> = store
        .rejects(c.id, 10)
        .unwrap()
        .into_iter()
        .map(|(line, _, reason, _)| (line, reason))
        .collect();
    // Line 2: an empty due_date is fine without --optional-columns.
    assert_eq!(
        rejects,
        [
            (
                3,
                "note is empty, and the template does not accept an empty value: fill it in"
                    .to_string()
            ),
            (
                4,
                "due_date is 5 characters, shorter than the template's 8".to_string()
            ),
        ]
    );
}
