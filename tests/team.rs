//! Team access with the real binary: users and API tokens made by the CLI,
//! roles checked by `serve` (403 and an audit entry for a refusal), the
//! audit log read back through the API and `zns-batch audit`, and no
//! password or token in the logs, the pages or the state database.

mod common;

use std::time::{Duration, Instant};

use common::*;
use zns_batch::provider::ProviderKind;

const OPERATOR_PW: &str = "operator-pass-Q9x!2";
const VIEWER_PW: &str = "viewer-pass-W7k#5";
const NEW_PW: &str = "brand-new-pass-R4t%8";

/// The CLI with `stdin` piped in (for --password-stdin) and $USER set.
async fn cli(env: &Env, argv: &[&str], stdin: Option<&str>) -> Run {
    use tokio::io::AsyncWriteExt;
    let mut cmd = command(env, &args(argv));
    cmd.env("USER", "ops-tester")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    let mut child = cmd.spawn().expect("spawn zns-batch");
    let mut input = child.stdin.take().expect("piped stdin");
    if let Some(text) = stdin {
        input.write_all(text.as_bytes()).await.expect("write stdin");
    }
    drop(input);
    let out = tokio::time::timeout(PROCESS_TIMEOUT, child.wait_with_output())
        .await
        .expect("zns-batch did not finish in time")
        .expect("zns-batch output");
    Run::from(out)
}

async fn add_token(env: &Env, name: &str, role: &str) -> String {
    let r = cli(env, &["tokens", "add", name, "--role", role], None).await;
    assert_eq!(r.code, 0, "{r}");
    let token = r.stdout.trim().to_string();
    assert!(token.starts_with("zns_") && token.len() > 40, "{r}");
    token
}

async fn add_user(env: &Env, name: &str, role: &str, password: &str) {
    let line = format!("{password}\n");
    let r = cli(
        env,
        &["users", "add", name, "--role", role, "--password-stdin"],
        Some(&line),
    )
    .await;
    assert_eq!(r.code, 0, "{r}");
}

async fn bearer_json(
    web: &ServeHarness,
    method: reqwest::Method,
    path: &str,
    token: &str,
) -> (u16, serde_json::Value) {
    let r = web
        .http
        .request(method, web.url(path))
        .bearer_auth(token)
        .send()
        .await
        .expect("request");
    json_of(r).await
}

/// GET as the API client holding `token`.
async fn get_as(web: &ServeHarness, path: &str, token: &str) -> (u16, serde_json::Value) {
    bearer_json(web, reqwest::Method::GET, path, token).await
}

/// POST (no body) as the API client holding `token`.
async fn post_as(web: &ServeHarness, path: &str, token: &str) -> (u16, serde_json::Value) {
    bearer_json(web, reqwest::Method::POST, path, token).await
}

async fn upload_as(
    web: &ServeHarness,
    token: &str,
    csv: &std::path::Path,
    name: &str,
) -> (u16, serde_json::Value) {
    web.upload_bearer(csv, name, &[], Some(token)).await
}

async fn wait_finished(web: &ServeHarness, token: &str, name: &str) -> serde_json::Value {
    let t0 = Instant::now();
    loop {
        let (code, body) = get_as(web, &format!("/api/v1/campaigns/{name}"), token).await;
        if code == 200 && body["status"] == "finished" {
            return body;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(60),
            "not finished: {code} {body}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// (actor, action, outcome) of each entry, newest first.
fn entries(list: &serde_json::Value) -> Vec<(String, String, String)> {
    list.as_array()
        .expect("a JSON array")
        .iter()
        .map(|e| {
            (
                e["actor"].as_str().unwrap_or("").to_string(),
                e["action"].as_str().unwrap_or("").to_string(),
                e["outcome"].as_str().unwrap_or("").to_string(),
            )
        })
        .collect()
}

fn has(list: &[(String, String, String)], actor: &str, action: &str, outcome: &str) -> bool {
    list.iter()
        .any(|(a, b, c)| a == actor && b == action && c == outcome)
}

/// Every byte of the state database and its WAL, for a search.
fn state_bytes(env: &Env) -> Vec<u8> {
    let mut all = Vec::new();
    for suffix in ["", "-wal"] {
        let p = format!("{}{suffix}", env.state().display());
        if let Ok(b) = std::fs::read(&p) {
            all.extend(b);
        }
    }
    all
}

fn contains(hay: &[u8], needle: &str) -> bool {
    hay.windows(needle.len()).any(|w| w == needle.as_bytes())
}

/// Named API tokens: a viewer's upload and start are refused (403, nothing
/// stored, audited as refused), an operator's accepted and audited; the
/// log reads the same through the API and `zns-batch audit`; a revoked
/// token gets 401; no token is in the list, the log or the database.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_tokens_roles_and_the_audit_log() {
    let env = Env::new();
    let sb = web_sandbox(&env, Duration::from_millis(5)).await;
    let viewer = add_token(&env, "peek", "viewer").await;
    let operator = add_token(&env, "nightly", "operator").await;
    // -v: the info lines too (sign-ins), so the secrets check reads them.
    let web = ServeOptions::default()
        .envs(&[(API_KEY_ENV, KEY)])
        .args(&["-v"])
        .start(&env)
        .await;
    let csv = env.path("a.csv");
    write_csv(&csv, 0, 30);

    // Users or tokens exist: loopback asks who calls too.
    let (code, _) = web.get_json("/api/v1/campaigns").await;
    assert_eq!(code, 401);
    let (code, _) = get_as(&web, "/api/v1/campaigns", "zns_nope").await;
    assert_eq!(code, 401, "an unknown token");

    let (code, body) = upload_as(&web, &viewer, &csv, "nov").await;
    assert_eq!(code, 403, "{body}");
    assert!(
        body["error"].as_str().unwrap().contains("operator"),
        "{body}"
    );
    let uploads = std::fs::read_dir(env.path("uploads")).map_or(0, |d| d.count());
    assert_eq!(uploads, 0, "a refused upload stores nothing");

    let (code, plan) = upload_as(&web, &operator, &csv, "nov").await;
    assert_eq!(code, 201, "{plan}");
    let (code, body) = post_as(&web, "/api/v1/campaigns/nov/start", &viewer).await;
    assert_eq!(code, 403, "{body}");
    let (code, list) = get_as(&web, "/api/v1/campaigns/nov", &viewer).await;
    assert_eq!(
        (code, list["status"].as_str()),
        (200, Some("ready")),
        "a viewer reads, nothing started"
    );

    let (code, body) = post_as(&web, "/api/v1/campaigns/nov/start", &operator).await;
    assert_eq!(code, 202, "{body}");
    let done = wait_finished(&web, &viewer, "nov").await;
    assert_eq!(done["counts"]["sent"], 30);
    assert_eq!(sb.stats_summary().accepted, 30);

    let (code, log) = get_as(&web, "/api/v1/audit?campaign=nov&limit=50", &viewer).await;
    assert_eq!(code, 200, "{log}");
    let api = entries(&log);
    assert!(has(&api, "token:peek", "start", "refused"), "{log}");
    assert!(has(&api, "token:nightly", "upload", "allowed"), "{log}");
    assert!(has(&api, "token:nightly", "start", "allowed"), "{log}");
    assert!(!has(&api, "token:peek", "start", "allowed"), "{log}");
    // Newest first: the operator's start came after the viewer's refusal.
    let start = api
        .iter()
        .position(|e| e.0 == "token:nightly" && e.1 == "start");
    let refused = api
        .iter()
        .position(|e| e.0 == "token:peek" && e.1 == "start");
    assert!(start < refused, "{log}");
    // The refused upload named no campaign: it is in the whole log.
    let (_, all) = get_as(&web, "/api/v1/audit", &viewer).await;
    assert!(
        has(&entries(&all), "token:peek", "upload", "refused"),
        "{all}"
    );
    let (code, _) = get_as(&web, "/api/v1/audit?limit=100000", &viewer).await;
    assert_eq!(code, 400, "the page size is bounded");
    let (code, _) = get_as(&web, "/metrics", &viewer).await;
    assert_eq!(code, 200, "a named token of any role may scrape");

    let cli_log = cli(&env, &["--json", "audit", "nov"], None).await;
    assert_eq!(cli_log.code, 0, "{cli_log}");
    assert_eq!(entries(&cli_log.json()), api, "the CLI reads the same log");
    let text = cli(&env, &["audit", "nov"], None).await;
    assert!(
        text.stdout.contains("token:nightly") && text.stdout.contains("refused"),
        "{text}"
    );

    // The list never shows a token; revoked, it is refused.
    let listed = cli(&env, &["tokens", "list"], None).await;
    assert_eq!(listed.code, 0, "{listed}");
    assert!(listed.stdout.contains("nightly") && listed.stdout.contains("peek"));
    let revoke = cli(&env, &["tokens", "revoke", "peek"], None).await;
    assert_eq!(revoke.code, 0, "{revoke}");
    let (code, _) = get_as(&web, "/api/v1/campaigns", &viewer).await;
    assert_eq!(code, 401, "a revoked token");
    let json_list = cli(&env, &["--json", "tokens", "list"], None).await;
    let revoked: Vec<_> = json_list
        .json()
        .as_array()
        .unwrap()
        .iter()
        .filter(|t| t["revoked"] == true)
        .map(|t| t["name"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(revoked, ["peek"]);
    let again = cli(&env, &["tokens", "add", "nightly", "--role", "admin"], None).await;
    assert_eq!(again.code, 2, "a name is used once: {again}");
    let bad = cli(&env, &["tokens", "add", "x", "--role", "root"], None).await;
    bad.assert_usage("viewer, operator or admin");

    let log_all = cli(&env, &["--json", "audit"], None).await;
    let all = entries(&log_all.json());
    assert!(
        has(&all, "os:ops-tester", "token-revoke", "allowed"),
        "{log_all}"
    );
    assert!(
        has(&all, "os:ops-tester", "token-add", "allowed"),
        "{log_all}"
    );

    let run = web.stop().await;
    let db = state_bytes(&env);
    for (what, secret) in [("viewer token", &viewer), ("operator token", &operator)] {
        assert!(!contains(&db, secret), "{what} in the state database");
        assert!(
            !run.stderr.contains(secret.as_str()),
            "{what} in serve's log"
        );
        assert!(
            !listed.stdout.contains(secret.as_str()),
            "{what} in the list"
        );
        assert!(
            !log_all.stdout.contains(secret.as_str()),
            "{what} in the audit"
        );
    }
}

/// A client that signs in through the form and keeps its cookie.
async fn sign_in(web: &ServeHarness, name: &str, password: &str) -> (reqwest::Client, u16) {
    // English pages: the assertions below read their words.
    let mut lang = reqwest::header::HeaderMap::new();
    lang.insert(
        reqwest::header::ACCEPT_LANGUAGE,
        reqwest::header::HeaderValue::from_static("en"),
    );
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .default_headers(lang)
        .redirect(reqwest::redirect::Policy::none())
        .cookie_store(true)
        .build()
        .expect("HTTP client");
    let page = http
        .get(web.url("/login"))
        .send()
        .await
        .expect("GET /login")
        .text()
        .await
        .expect("login page");
    let csrf = csrf_of(&page).expect("the sign-in form's CSRF token");
    let r = http
        .post(web.url("/login"))
        .form(&[
            ("csrf", csrf.as_str()),
            ("name", name),
            ("password", password),
        ])
        .send()
        .await
        .expect("POST /login");
    let code = r.status().as_u16();
    (http, code)
}

async fn page(http: &reqwest::Client, web: &ServeHarness, path: &str) -> (u16, String) {
    let r = http.get(web.url(path)).send().await.expect("GET");
    let code = r.status().as_u16();
    (code, r.text().await.expect("page"))
}

async fn post_form(
    http: &reqwest::Client,
    web: &ServeHarness,
    path: &str,
    csrf: &str,
) -> (u16, String) {
    let r = http
        .post(web.url(path))
        .form(&[("csrf", csrf)])
        .send()
        .await
        .expect("POST form");
    let code = r.status().as_u16();
    (code, r.text().await.expect("answer"))
}

/// Users signed in through the form: the viewer's Send is refused with a
/// 403 page, the operator's starts the campaign; the campaign's page
/// names who is signed in and lists both; a new password ends the
/// operator's session, a removed user cannot sign in; passwords are in
/// neither the log, the pages nor the database.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sign_in_form_roles_sessions_and_secrets() {
    let env = Env::new();
    let sb = web_sandbox(&env, Duration::from_millis(5)).await;
    add_user(&env, "an", "operator", OPERATOR_PW).await;
    add_user(&env, "vy", "viewer", VIEWER_PW).await;
    let short = cli(
        &env,
        &[
            "users",
            "add",
            "bao",
            "--role",
            "viewer",
            "--password-stdin",
        ],
        Some("short\n"),
    )
    .await;
    assert_eq!(short.code, 2, "{short}");
    // -v: the info lines too (sign-ins), so the secrets check reads them.
    let web = ServeOptions::default()
        .envs(&[(API_KEY_ENV, KEY)])
        .args(&["-v"])
        .start(&env)
        .await;

    // Users exist: the console asks for a sign-in, on loopback too.
    let (code, _) = web.get_text("/").await;
    assert_eq!(code, 303);
    // Five sign-ins below: the per-address limit allows five a minute.
    let (op, code) = sign_in(&web, "an", OPERATOR_PW).await;
    assert_eq!(code, 303);
    let (vw, code) = sign_in(&web, "vy", VIEWER_PW).await;
    assert_eq!(code, 303);

    // The operator uploads through the API with the session.
    let csv = env.path("a.csv");
    write_csv(&csv, 0, 20);
    let fields = [("campaign", "dec"), ("template_id", "246810")];
    let (ctype, body) = multipart(&fields, &std::fs::read(&csv).unwrap());
    let r = op
        .post(web.url("/api/v1/campaigns"))
        .header("content-type", ctype)
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 201);

    let (code, vpage) = page(&vw, &web, "/campaigns/dec").await;
    assert_eq!(code, 200);
    assert!(vpage.contains("Signed in as vy (viewer)"), "{vpage}");
    let csrf = csrf_of(&vpage).expect("csrf");
    let (code, refused) = post_form(&vw, &web, "/ui/campaigns/dec/start", &csrf).await;
    assert_eq!(code, 403, "{refused}");
    assert!(refused.contains("operator"), "the page says why: {refused}");

    let (code, _) = post_form(&op, &web, "/ui/campaigns/dec/start", &csrf).await;
    assert_eq!(code, 303, "the operator's Send goes back to the page");
    let t0 = Instant::now();
    loop {
        let (_, st) = page(&op, &web, "/api/v1/campaigns/dec").await;
        if st.contains("\"status\":\"finished\"") {
            break;
        }
        assert!(t0.elapsed() < Duration::from_secs(60), "{st}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(sb.stats_summary().accepted, 20);

    let (_, opage) = page(&op, &web, "/campaigns/dec").await;
    assert!(opage.contains("Signed in as an (operator)"), "{opage}");
    let audit_part = opage
        .split("id=\"audit\"")
        .nth(1)
        .expect("the audit section");
    assert!(
        audit_part.contains("user:an") && audit_part.contains("user:vy"),
        "{audit_part}"
    );
    assert!(audit_part.contains("refused"), "{audit_part}");
    let log = cli(&env, &["--json", "audit", "dec"], None).await;
    let list = entries(&log.json());
    assert!(has(&list, "user:vy", "start", "refused"), "{log}");
    assert!(has(&list, "user:an", "start", "allowed"), "{log}");
    assert!(has(&list, "user:an", "upload", "allowed"), "{log}");

    // A new password ends the operator's session; the new one signs in.
    let pw = cli(
        &env,
        &["users", "passwd", "an", "--password-stdin"],
        Some(&format!("{NEW_PW}\n")),
    )
    .await;
    assert_eq!(pw.code, 0, "{pw}");
    let (code, _) = page(&op, &web, "/").await;
    assert_eq!(code, 303, "back to the sign-in form");
    let (_, code) = sign_in(&web, "an", OPERATOR_PW).await;
    assert_eq!(code, 401, "the old password");
    let (op2, code) = sign_in(&web, "an", NEW_PW).await;
    assert_eq!(code, 303);
    assert_eq!(page(&op2, &web, "/").await.0, 200);
    // A new role ends the session too.
    let demote = cli(&env, &["users", "role", "an", "--role", "viewer"], None).await;
    assert_eq!(demote.code, 0, "{demote}");
    assert_eq!(
        page(&op2, &web, "/").await.0,
        303,
        "signed out by the new role"
    );

    // A removed user: the session ends and sign-in is refused.
    let rm = cli(&env, &["users", "remove", "vy"], None).await;
    assert_eq!(rm.code, 0, "{rm}");
    let (code, _) = page(&vw, &web, "/api/v1/campaigns").await;
    assert_eq!(code, 401);
    let (_, code) = sign_in(&web, "vy", VIEWER_PW).await;
    assert_eq!(code, 401);
    let users = cli(&env, &["users", "list"], None).await;
    assert!(
        users.stdout.contains("an") && !users.stdout.contains("vy"),
        "{users}"
    );

    let run = web.stop().await;
    let db = state_bytes(&env);
    for pw in [OPERATOR_PW, VIEWER_PW, NEW_PW] {
        assert!(!contains(&db, pw), "a password in the state database");
        assert!(!run.stderr.contains(pw), "a password in serve's log");
        assert!(
            !opage.contains(pw) && !vpage.contains(pw),
            "a password on a page"
        );
        assert!(!users.stdout.contains(pw));
    }
    assert!(
        run.stderr.contains("signed in as user:an"),
        "{}",
        run.stderr
    );
}

/// A CLI resume (and the run before it) is audited with the OS user.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cli_resume_is_audited_with_the_os_user() {
    let env = Env::new();
    let sb = sandbox(ProviderKind::Etelecom, |_| {}).await;
    let csv = env.path("c.csv");
    write_csv(&csv, 0, 10);
    let mut plan = run_args(&csv, "jan", &sb, ProviderKind::Etelecom, &["--dry-run"]);
    plan.retain(|a| a != "--json");
    let argv: Vec<&str> = plan.iter().map(String::as_str).collect();
    let r = cli(&env, &argv, None).await;
    assert_eq!(r.code, 0, "{r}");
    let planned = cli(&env, &["--json", "audit", "jan"], None).await;
    let planned = entries(&planned.json());
    assert_eq!(
        planned,
        [("os:ops-tester".into(), "upload".into(), "allowed".into())],
        "a dry run imports, starts nothing"
    );

    let resume = resume_args("jan", &sb, ProviderKind::Etelecom, &["--in-doubt", "hold"]);
    let argv: Vec<&str> = resume.iter().map(String::as_str).collect();
    let r = cli(&env, &argv, None).await;
    assert_eq!(r.code, 0, "{r}");
    assert_eq!(sb.stats_summary().accepted, 10);

    let log = cli(&env, &["--json", "audit", "jan"], None).await;
    let list = log.json();
    let first = &list[0];
    assert_eq!(first["actor"], "os:ops-tester", "{list}");
    let all = entries(&list);
    assert!(has(&all, "os:ops-tester", "start", "allowed"), "{list}");
    assert!(has(&all, "os:ops-tester", "in-doubt", "allowed"), "{list}");
    assert!(
        list.as_array()
            .unwrap()
            .iter()
            .any(|e| e["action"] == "start" && e["detail"] == "zns-batch resume"),
        "{list}"
    );
    assert_eq!(all.len(), 3, "upload, start, in-doubt: {list}");
}

/// The Connect OA page: a viewer may not open it (403); an operator sees
/// the OA's status but no Connect button, and a Connect posted anyway is
/// refused (403, audited as refused, nothing pending); an admin's Connect
/// gives Zalo's link and is audited as allowed. The OAuth callback stays
/// open (its `state` authorizes it): reached signed out, it answers the
/// missing code, not the sign-in.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connect_oa_needs_an_admin_and_is_audited() {
    let env = Env::new();
    std::fs::write(
        env.path("zns-batch.toml"),
        format!(
            "zalo_app_id = \"{}\"\n",
            zns_batch::sandbox::DEFAULT_ZALO_APP_ID
        ),
    )
    .unwrap();
    add_user(&env, "an", "operator", OPERATOR_PW).await;
    add_user(&env, "vy", "viewer", VIEWER_PW).await;
    add_user(&env, "ad", "admin", NEW_PW).await;
    let web = ServeOptions::default()
        .envs(&[
            ("ZNS_SECRET_KEY", "team-test-at-rest-key-0123456"),
            (
                "ZNS_ZALO_APP_SECRET",
                zns_batch::sandbox::DEFAULT_ZALO_APP_SECRET,
            ),
        ])
        .start(&env)
        .await;

    let (vw, code) = sign_in(&web, "vy", VIEWER_PW).await;
    assert_eq!(code, 303);
    let (code, vpage) = page(&vw, &web, "/zalo").await;
    assert_eq!(code, 403, "{vpage}");
    assert!(vpage.contains("Not allowed"), "{vpage}");

    let (op, code) = sign_in(&web, "an", OPERATOR_PW).await;
    assert_eq!(code, 303);
    let (code, opage) = page(&op, &web, "/zalo").await;
    assert_eq!(code, 200, "{opage}");
    assert!(opage.contains("id=\"oa-status\""), "{opage}");
    assert!(opage.contains("id=\"oa-admin-only\""), "{opage}");
    assert!(!opage.contains("id=\"oa-connect\""), "{opage}");
    let csrf = csrf_of(&opage).expect("csrf");
    let (code, refused) = post_form(&op, &web, "/ui/zalo/connect", &csrf).await;
    assert_eq!(code, 403, "{refused}");
    assert!(!refused.contains("oa-authorize"), "{refused}");

    let (ad, code) = sign_in(&web, "ad", NEW_PW).await;
    assert_eq!(code, 303);
    let (code, apage) = page(&ad, &web, "/zalo").await;
    assert_eq!(code, 200, "{apage}");
    assert!(apage.contains("id=\"oa-connect\""), "{apage}");
    let (code, linked) = post_form(&ad, &web, "/ui/zalo/connect", &csrf).await;
    assert_eq!(code, 200, "{linked}");
    assert!(linked.contains("id=\"oa-authorize\""), "{linked}");
    assert!(linked.contains("code_challenge="), "{linked}");

    // The callback is outside the sign-in: no cookie, no redirect to /login.
    let (code, cb) = web.get_text("/oauth/zalo/callback").await;
    assert_eq!(code, 400, "{cb}");

    let log = cli(&env, &["--json", "audit"], None).await;
    let list = entries(&log.json());
    assert!(has(&list, "user:an", "zalo-connect", "refused"), "{log}");
    assert!(has(&list, "user:ad", "zalo-connect", "allowed"), "{log}");
    assert!(
        !list
            .iter()
            .any(|(a, act, _)| a == "user:vy" && act == "zalo-connect"),
        "viewing is no action: {log}"
    );
    web.stop().await;
}
