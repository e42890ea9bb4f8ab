//! The campaign core's promises, through the real binary: the dry-run plan
//! and the run take up the same rows (settings are resolved once), and a
//! row whose stored data is corrupt fails loudly instead of being sent
//! with empty parameters.

mod common;

use common::*;
use zns_batch::provider::ProviderKind;
use zns_batch::sandbox::Faults;

/// The sandbox provider (eTelecom protocol with a lookup by tracking id).
const P: ProviderKind = ProviderKind::Sandbox;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_plan_counts_the_in_doubt_rows_the_run_takes_up() {
    let (env, sb, csv, _) = setup(P, "c.csv", 40, |_| {}).await;
    let hold = ["--in-doubt", "hold", "--max-attempts", "1"];

    // 1. Replies lost and no second attempt: rows stay `in_flight`.
    sb.set_faults(Faults {
        drop_reply: 0.5,
        ..Faults::default()
    });
    let r = run(&env, &run_args(&csv, "c", &sb, P, &hold)).await;
    assert_eq!(r.code, 3, "{r}");

    // 2. Lookups fail too: a held policy turns them into `in_doubt` rows.
    sb.set_faults(Faults {
        http_5xx: 1.0,
        apply_to_tokens: true,
        ..Faults::default()
    });
    let r = run(&env, &resume_args("c", &sb, P, &hold)).await;
    assert_eq!(r.code, 3, "{r}");
    let in_doubt = r.json()["counts"]["in_doubt"].as_u64().unwrap_or(0);
    assert!(in_doubt > 0, "the scenario needs rows held in doubt: {r}");

    // 3. The plan under the same policy, then the run: the provider can
    //    look the held rows up, so the run takes them up and so must the plan.
    sb.set_faults(Faults::default());
    let mut plan_args = run_args(&csv, "c", &sb, P, &hold);
    plan_args.push("--dry-run".into());
    let plan = run(&env, &plan_args).await;
    assert_eq!(plan.code, 0, "{plan}");
    let planned = plan.json()["messages_to_send"].as_u64().unwrap_or(0);

    let r = run(&env, &resume_args("c", &sb, P, &["--in-doubt", "hold"])).await;
    assert_eq!(r.code, 0, "{r}");
    let taken_up = r.json()["this_run"]["sent"].as_u64().unwrap_or(0);
    assert_eq!(
        planned, taken_up,
        "the plan said {planned} rows, the run settled {taken_up} ({in_doubt} were in doubt)\n{plan}\n{r}"
    );
    assert_eq!(r.json()["counts"]["sent"], 40, "{r}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_row_whose_stored_data_is_corrupt_fails_and_nothing_is_sent_for_it() {
    let (env, sb, csv, phones) = setup(ProviderKind::Etelecom, "c.csv", 10, |_| {}).await;
    let mut plan_args = run_args(&csv, "c", &sb, ProviderKind::Etelecom, &[]);
    plan_args.push("--dry-run".into());
    let r = run(&env, &plan_args).await;
    assert_eq!(r.code, 0, "{r}");

    // Line 4 is the third data row: its stored template values are garbled.
    let db = rusqlite::Connection::open(env.state()).unwrap();
    let changed = db
        .execute("UPDATE rows SET data = '{not json' WHERE line = 4", [])
        .unwrap();
    assert_eq!(changed, 1);
    drop(db);

    let r = run(&env, &resume_args("c", &sb, ProviderKind::Etelecom, &[])).await;
    assert_eq!(r.code, 0, "{r}");
    assert_eq!(r.json()["counts"]["sent"], 9, "{r}");
    assert_eq!(r.json()["counts"]["failed"], 1, "{r}");
    let stats = sb.stats();
    assert_eq!(stats.accepted, 9);
    assert_eq!(
        stats.send_requests, 9,
        "no request left for the corrupt row"
    );
    let rows = report_rows(&env, "c").await;
    let bad = rows.iter().find(|r| &r[R_LINE] == "4").expect("line 4");
    assert_eq!(&bad[R_PHONE], phones[2].as_str());
    assert_eq!(&bad[R_STATE], "failed");
    assert!(bad[R_ERROR].contains("unreadable"), "{bad:?}");
}
