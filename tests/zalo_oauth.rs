//! Issue 22: the Zalo OA connected once (PKCE, by `zalo connect --code` or
//! serve's callback), its token pair sealed in the ledger and renewed by the
//! runs themselves — the real binary against the zalo sandbox's OAuth
//! endpoint with 3-second access tokens.

mod common;

use std::time::{Duration, Instant};

use common::*;
use zns_batch::provider::ProviderKind;
use zns_batch::sandbox::{
    OAuthFaults, Sandbox, Stats, DEFAULT_ZALO_APP_ID, DEFAULT_ZALO_APP_SECRET,
};

const P: ProviderKind = ProviderKind::Zalo;
const SECRET_KEY: &str = "test-at-rest-key-0123456789abcdef";
/// Every access and refresh token the sandbox issues starts with these.
const TOKEN_PREFIXES: [&str; 2] = ["sbat-", "sbrt-"];

async fn oauth_sandbox() -> Sandbox {
    sandbox(P, |c| c.access_token_ttl = Duration::from_secs(3)).await
}

/// The OAuth sandbox and a fresh env whose config points at it.
async fn oauth_env() -> (Sandbox, Env) {
    let sb = oauth_sandbox().await;
    let env = Env::new();
    write_config(&env, &sb);
    (sb, env)
}

/// [`oauth_env`] with the OA connected (see [`connect_by_code`]), the
/// sandbox's refreshes answered as `faults` says.
async fn connected(faults: OAuthFaults) -> (Sandbox, Env) {
    let (sb, env) = oauth_env().await;
    connect_by_code(&env).await;
    sb.set_oauth_faults(faults);
    (sb, env)
}

/// `resume` of `campaign` (20/s) run to success: its output and the
/// sandbox's stats then.
async fn resumed_to_the_end(env: &Env, sb: &Sandbox, campaign: &str) -> (Run, Stats) {
    let r = run_with(zcmd(
        env,
        &resume_args(campaign, sb, P, &["--rate", "20"]),
        true,
    ))
    .await;
    assert_eq!(r.code, 0, "{r}");
    let stats = sb.stats();
    (r, stats)
}

/// The config file the binary finds in its working directory.
fn write_config(env: &Env, sb: &Sandbox) {
    std::fs::write(
        env.path("zns-batch.toml"),
        format!(
            "zalo_app_id = \"{DEFAULT_ZALO_APP_ID}\"\nzalo_oauth_url = \"http://{}/v4/oa\"\n",
            sb.addr()
        ),
    )
    .unwrap();
}

/// The binary without an API key, with the app secret and (if `key`) the
/// at-rest key.
fn zcmd(env: &Env, argv: &[String], key: bool) -> tokio::process::Command {
    let mut cmd = command(env, argv);
    cmd.env_remove("ZNS_API_KEY")
        .env("ZNS_ZALO_APP_SECRET", DEFAULT_ZALO_APP_SECRET);
    if key {
        cmd.env("ZNS_SECRET_KEY", SECRET_KEY);
    }
    cmd
}

fn http() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap()
}

/// `zalo connect` → the URL; "the admin opens it" → Zalo's redirect.
async fn authorize(env: &Env, redirect_uri: &str) -> reqwest::Url {
    let r = run_with(zcmd(
        env,
        &args(&["--json", "zalo", "connect", "--redirect-uri", redirect_uri]),
        true,
    ))
    .await;
    assert_eq!(r.code, 0, "{r}");
    let url = r.json()["authorization_url"].as_str().unwrap().to_string();
    assert!(url.contains("code_challenge="), "{url}");
    let resp = http().get(&url).send().await.unwrap();
    assert_eq!(resp.status().as_u16(), 302);
    let loc = resp.headers()["location"].to_str().unwrap().to_string();
    assert!(loc.starts_with(redirect_uri), "{loc}");
    reqwest::Url::parse(&loc).unwrap()
}

fn query(url: &reqwest::Url, key: &str) -> String {
    url.query_pairs()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.into_owned())
        .unwrap_or_else(|| panic!("{key} missing in {url}"))
}

async fn connect_by_code(env: &Env) {
    let back = authorize(env, "http://127.0.0.1:9/cb").await;
    let r = run_with(zcmd(
        env,
        &args(&[
            "zalo",
            "connect",
            "--code",
            &query(&back, "code"),
            "--auth-state",
            &query(&back, "state"),
            "--oa-id",
            &query(&back, "oa_id"),
        ]),
        true,
    ))
    .await;
    assert_eq!(r.code, 0, "{r}");
    assert!(r.stdout.contains("OA connected"), "{r}");
}

async fn oa_status(env: &Env) -> serde_json::Value {
    let r = run_with(zcmd(env, &args(&["--json", "zalo", "status"]), false)).await;
    assert_eq!(r.code, 0, "{r}");
    r.json()
}

/// No token the sandbox issued appears in the state files' bytes.
fn assert_no_token_in_clear(env: &Env) {
    for entry in std::fs::read_dir(env.dir.path()).unwrap() {
        let path = entry.unwrap().path();
        if !path.to_string_lossy().contains("state.sqlite") {
            continue;
        }
        let bytes = std::fs::read(&path).unwrap();
        for prefix in TOKEN_PREFIXES {
            assert!(
                !bytes.windows(prefix.len()).any(|w| w == prefix.as_bytes()),
                "{prefix}… in clear in {}",
                path.display()
            );
        }
    }
}

fn campaign_args(env: &Env, sb: &Sandbox, name: &str, rows: usize) -> Vec<String> {
    let csv = env.path(&format!("{name}.csv"));
    write_csv(&csv, 0, rows);
    run_args(&csv, name, sb, P, &["--rate", "20", "--concurrency", "8"])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connect_by_code_stores_the_pair_sealed_and_refuses_without_a_key() {
    let (sb, env) = oauth_env().await;

    let r = run_with(zcmd(&env, &args(&["zalo", "connect"]), false)).await;
    r.assert_usage("ZNS_SECRET_KEY");
    assert_eq!(oa_status(&env).await["connected"], false);

    connect_by_code(&env).await;
    let st = oa_status(&env).await;
    assert_eq!(st["connected"], true, "{st}");
    assert_eq!(st["oa_id"], "3886651700907664415");
    assert_eq!(st["refreshes"], 0);
    assert_eq!(sb.stats_summary().oauth_codes_exchanged, 1);
    let shown = st.to_string();
    assert!(!TOKEN_PREFIXES.iter().any(|p| shown.contains(p)), "{shown}");
    assert_no_token_in_clear(&env);

    // Another key cannot open the pair: the run says so instead of sending.
    let mut cmd = zcmd(&env, &campaign_args(&env, &sb, "wrongkey", 3), false);
    cmd.env("ZNS_SECRET_KEY", "some-other-key-0123456789");
    let r = run_with(cmd).await;
    assert_ne!(r.code, 0, "{r}");
    assert_eq!(sb.stats_summary().accepted, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connect_through_serve_callback_and_a_state_works_once() {
    let (sb, env) = oauth_env().await;
    let serve = ServeOptions::default()
        .envs(&[
            ("ZNS_SECRET_KEY", SECRET_KEY),
            ("ZNS_ZALO_APP_SECRET", DEFAULT_ZALO_APP_SECRET),
        ])
        .start(&env)
        .await;
    let back = authorize(&env, &serve.url("/oauth/zalo/callback")).await;
    let resp = serve.http.get(back.as_str()).send().await.unwrap();
    let status = resp.status().as_u16();
    let body = resp.text().await.unwrap();
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("id=\"oa-connected\""), "{body}");
    // The same redirect again: its state is spent.
    let again = serve.http.get(back.as_str()).send().await.unwrap();
    assert_eq!(again.status().as_u16(), 400);
    // A made-up state stores nothing either.
    let forged = serve
        .http
        .get(serve.url("/oauth/zalo/callback?code=x&state=forged&oa_id=1"))
        .send()
        .await
        .unwrap();
    assert_eq!(forged.status().as_u16(), 400);
    assert_eq!(sb.stats_summary().oauth_codes_exchanged, 1);
    // The console's Connect OA page shows the OA, never a token.
    let (code, page) = serve.get_text("/zalo").await;
    assert_eq!(code, 200);
    assert!(page.contains("3886651700907664415"), "{page}");
    assert!(!TOKEN_PREFIXES.iter().any(|p| page.contains(p)));
    assert_eq!(oa_status(&env).await["connected"], true);
    assert_no_token_in_clear(&env);
    serve.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_300_row_campaign_outlives_3s_tokens_using_each_refresh_token_once() {
    let (sb, env) = connected(OAuthFaults::default()).await;

    let t0 = Instant::now();
    let r = run_with(zcmd(&env, &campaign_args(&env, &sb, "nightly", 300), true)).await;
    assert_eq!(r.code, 0, "{r}");
    let stats = sb.stats();
    assert_eq!(stats.accepted, 300, "{r}");
    // 300 rows at 20/s outlive four 3-second tokens at least.
    assert!(
        stats.oauth_refreshes >= 3,
        "{stats:?} in {:?}",
        t0.elapsed()
    );
    assert_eq!(stats.oauth_refresh_reuses, 0, "{stats:?}");
    assert_eq!(stats.oauth_refused, 0, "{stats:?}");
    let rows = report_rows(&env, "nightly").await;
    assert_exactly_once(&stats, &tracking_ids_in_state(&rows, "sent"), 300);
    assert_eq!(oa_status(&env).await["refreshes"], stats.oauth_refreshes);
    assert_no_token_in_clear(&env);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_during_a_refresh_then_resumed_finishes_without_locking_the_oa_out() {
    // Every refresh's reply is held back 4 s: the kill lands inside one.
    let (sb, env) = connected(OAuthFaults {
        refresh_delay: Duration::from_secs(4),
        lose_refresh_reply: false,
    })
    .await;
    let mut child = spawn_captured(zcmd(&env, &campaign_args(&env, &sb, "killed", 300), true));
    let t0 = Instant::now();
    while sb.stats_summary().oauth_refresh_requests == 0 {
        assert!(t0.elapsed() < Duration::from_secs(30), "no refresh began");
        if let Ok(Some(s)) = child.try_wait() {
            panic!("zns-batch ended ({s}) before refreshing");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    signal(child.id().unwrap(), "KILL");
    let _ = child.wait().await;
    let sent_before = sb.stats_summary().accepted;
    assert!(sent_before < 300, "{sent_before}");
    // The reply never went out: nothing was rotated.
    tokio::time::sleep(Duration::from_secs(4)).await;
    assert_eq!(sb.stats_summary().oauth_refreshes, 0);

    sb.set_oauth_faults(OAuthFaults::default());
    let (r, stats) = resumed_to_the_end(&env, &sb, "killed").await;
    assert_eq!(stats.oauth_refresh_reuses, 0, "{stats:?}");
    assert!(stats.oauth_refreshes >= 1, "{stats:?}");
    let rows = report_rows(&env, "killed").await;
    let sent = tracking_ids_in_state(&rows, "sent");
    assert_eq!(sent.len(), 300, "{r}");
    let dups: Vec<_> = stats.deliveries.iter().filter(|(_, n)| **n != 1).collect();
    assert!(dups.is_empty(), "{dups:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_refresh_reply_pauses_with_the_reauthorization_hint() {
    let (sb, env) = connected(OAuthFaults {
        refresh_delay: Duration::ZERO,
        lose_refresh_reply: true,
    })
    .await;
    let r = run_with(zcmd(
        &env,
        &human(campaign_args(&env, &sb, "lost", 300)),
        true,
    ))
    .await;
    assert_eq!(r.code, 3, "{r}");
    let said = format!("{}{}", r.stdout, r.stderr);
    assert!(said.contains("zns-batch zalo connect"), "{r}");
    assert!(!TOKEN_PREFIXES.iter().any(|p| said.contains(p)), "{r}");
    let stats = sb.stats_summary();
    assert_eq!(stats.oauth_replies_lost, 1);
    assert!(stats.accepted < 300);

    // Zalo rotated the pair: the stored refresh token is refused now, and
    // the run pauses again, saying the OA needs authorizing.
    sb.set_oauth_faults(OAuthFaults::default());
    let r = run_with(zcmd(&env, &human(resume_args("lost", &sb, P, &[])), true)).await;
    assert_eq!(r.code, 3, "{r}");
    assert!(oa_status(&env).await["needs_reauthorization"].is_string());

    // Authorized again: the resume finishes every row once.
    connect_by_code(&env).await;
    let (_, stats) = resumed_to_the_end(&env, &sb, "lost").await;
    let rows = report_rows(&env, "lost").await;
    assert_exactly_once(&stats, &tracking_ids_in_state(&rows, "sent"), 300);
}
