//! Excel and OpenDocument files through the real binary: `validate`, `run`
//! against the sandbox, `--sheet`, and an upload to `serve`. The workbooks
//! are tests/fixtures/recipients.{xlsx,ods}, written once by
//! scripts/make-sheet-fixtures.py (openpyxl, odfpy): no crate in the tree
//! writes them.

mod common;

use std::path::PathBuf;

use common::*;
use zns_batch::provider::ProviderKind;

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

/// The stored rows of a campaign: (line, phone, template values).
fn stored_rows(env: &Env, campaign: &str) -> Vec<(u64, String, Vec<String>)> {
    let db = rusqlite::Connection::open(env.state()).unwrap();
    let mut q = db
        .prepare(
            "SELECT r.line, r.phone, COALESCE(r.data, '[]') FROM rows r \
             JOIN campaigns c ON c.id = r.campaign_id \
             WHERE c.name = ?1 AND r.state != 'rejected' ORDER BY r.line",
        )
        .unwrap();
    q.query_map([campaign], |r| {
        let data: String = r.get(2)?;
        Ok((
            r.get::<_, u64>(0)?,
            r.get::<_, String>(1)?,
            serde_json::from_str(&data).unwrap(),
        ))
    })
    .unwrap()
    .map(Result::unwrap)
    .collect()
}

/// `validate` on an .xlsx: rejects carry the sheet row number and the CSV's
/// reasons; an error cell is named by its column; the accepted rows hold
/// the cells as a person sees them (a number-typed phone normalised, dates
/// as dd/mm/yyyy, whole numbers without `.0`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn validate_xlsx_rejects_by_sheet_row_and_reads_cells_as_seen() {
    let env = Env::new();
    let xlsx = fixture("recipients.xlsx");
    let r = run(&env, &args(&["--json", "validate", xlsx.to_str().unwrap()])).await;
    assert_eq!(r.code, 2, "rejected rows make validate exit 2: {r}");
    let v = r.json();
    assert_eq!(v["rows"], 5, "the blank row 5 is skipped: {v}");
    assert_eq!(v["valid"], 2, "{v}");
    let rejects = v["rejects"].as_array().unwrap();
    let lines: Vec<u64> = rejects
        .iter()
        .map(|x| x["line"].as_u64().unwrap())
        .collect();
    assert_eq!(lines, [4, 6, 7], "{v}");
    assert!(
        rejects[0]["reason"]
            .as_str()
            .unwrap()
            .starts_with("too short: 5 digits"),
        "{v}"
    );
    let na = rejects[1]["reason"].as_str().unwrap();
    assert!(na.contains("column `name`") && na.contains("#N/A"), "{v}");
    assert!(
        rejects[2]["reason"]
            .as_str()
            .unwrap()
            .contains("empty value in required column `due_date`"),
        "{v}"
    );

    // The same CSV rows give the same reasons (one code path after the reader).
    let csv = env.path("same.csv");
    std::fs::write(
        &csv,
        "phone,name,due_date,amount\n912345678,An,01/12/2026,150000\n12345,Cường,02/12/2026,1\n",
    )
    .unwrap();
    let c = run(&env, &args(&["--json", "validate", csv.to_str().unwrap()])).await;
    assert_eq!(
        c.json()["rejects"][0]["reason"],
        rejects[0]["reason"],
        "{c}"
    );

    // The values as imported (a dry run stores them; nothing is sent).
    let mut dry = run_head(&xlsx, "seen");
    dry.extend(args(&["--dry-run", "--provider", "sandbox"]));
    let d = run(&env, &dry).await;
    assert_eq!(d.code, 0, "{d}");
    let rows = stored_rows(&env, "seen");
    assert_eq!(
        rows,
        [
            (
                2,
                "84912345678".to_string(),
                vec!["An".into(), "01/12/2026".into(), "150000".into()]
            ),
            (
                3,
                "84987654321".to_string(),
                vec!["Bình".into(), "01/12/2026 08:30".into(), "99.5".into()]
            ),
        ]
    );
}

/// `--sheet` picks another sheet; an unknown one exits 2 naming the sheets;
/// `--sheet` on a CSV is refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sheet_option_selects_and_unknown_lists_names() {
    let env = Env::new();
    let xlsx = fixture("recipients.xlsx");
    let path = xlsx.to_str().unwrap();
    let r = run(
        &env,
        &args(&["--json", "validate", path, "--sheet", "other"]),
    )
    .await;
    assert_eq!(r.code, 0, "{r}");
    assert_eq!(r.json()["valid"], 1, "{r}");

    let r = run(&env, &args(&["validate", path, "--sheet", "Nope"])).await;
    assert_eq!(r.code, 2, "{r}");
    assert!(
        r.stderr
            .contains("no sheet named `Nope` (sheets: `Recipients`, `Other`)"),
        "{r}"
    );

    let mut run_bad = run_head(&xlsx, "nope");
    run_bad.extend(args(&[
        "--dry-run",
        "--provider",
        "sandbox",
        "--sheet",
        "Nope",
    ]));
    let r = run(&env, &run_bad).await;
    r.assert_usage("`Recipients`, `Other`");

    let csv = env.path("a.csv");
    write_csv(&csv, 0, 3);
    let r = run(
        &env,
        &args(&["validate", csv.to_str().unwrap(), "--sheet", "x"]),
    )
    .await;
    r.assert_usage("is a CSV");
}

/// The sheet is part of a campaign's input: the same workbook read through
/// another sheet (or the first, by default) is refused as another input,
/// never imported silently; the same file and sheet again is accepted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_sheet_of_the_same_workbook_is_another_input() {
    let env = Env::new();
    let xlsx = fixture("recipients.xlsx");
    let dry = |sheet: Option<&str>| {
        let mut argv = run_head(&xlsx, "sheeted");
        argv.extend(args(&["--dry-run", "--provider", "sandbox"]));
        if let Some(name) = sheet {
            argv.extend(args(&["--sheet", name]));
        }
        argv
    };
    let r = run(&env, &dry(Some("Other"))).await;
    assert_eq!(r.code, 0, "{r}");
    let r = run(&env, &dry(None)).await;
    assert_eq!(r.code, 2, "{r}");
    assert!(
        r.stderr.contains("different file") && r.stderr.contains("sheet `Other`"),
        "{r}"
    );
    let r = run(&env, &dry(Some("Other"))).await;
    assert_eq!(r.code, 0, "{r}");
}

/// `run` on an .ods against the sandbox sends every row exactly once, with
/// a number-typed phone normalised and dates as dd/mm/yyyy.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_ods_sends_every_row() {
    let env = Env::new();
    let sb = sandbox(ProviderKind::Etelecom, |_| {}).await;
    let ods = fixture("recipients.ods");
    let r = run(
        &env,
        &run_args(&ods, "ods", &sb, ProviderKind::Etelecom, &[]),
    )
    .await;
    assert_eq!(r.code, 0, "{r}");
    assert_report_exactly_once(&env, &sb, "ods", 3).await;
    let rows = stored_rows(&env, "ods");
    let phones: Vec<&str> = rows.iter().map(|r| r.1.as_str()).collect();
    assert_eq!(phones, ["84912345601", "84912345602", "84912345603"]);
    assert_eq!(rows[0].2, ["An", "01/12/2026", "150000"]);
    assert_eq!(rows[1].2, ["Bình", "02/12/2026", "99.5"]);
}

/// An .xlsx uploaded to `serve` (stored under a .csv name: found by its
/// bytes) gives the plan with the right counts; `sheet` picks another sheet
/// and an unknown one is a 400 listing the sheets.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_upload_of_xlsx_plans_its_rows() {
    let env = Env::new();
    let sb = sandbox(ProviderKind::Etelecom, |_| {}).await;
    write_web_config(&env, &sb);
    let web = start_web(&env, &[]).await;
    let xlsx = fixture("recipients.xlsx");

    let (code, plan) = web.upload(&xlsx, "book", &[]).await;
    assert_eq!(code, 201, "{plan}");
    assert_eq!(plan["accepted"], 2, "{plan}");
    assert_eq!(plan["messages_to_send"], 2, "{plan}");

    let (code, plan) = web.upload(&xlsx, "book-other", &[("sheet", "Other")]).await;
    assert_eq!(code, 201, "{plan}");
    assert_eq!(plan["accepted"], 1, "{plan}");

    let (code, body) = web.upload(&xlsx, "book-nope", &[("sheet", "Nope")]).await;
    assert_eq!(code, 400, "{body}");
    let msg = body["error"].as_str().unwrap();
    assert!(msg.contains("`Recipients`, `Other`"), "{body}");
    web.stop().await;
}
