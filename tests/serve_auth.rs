//! `serve`'s sign-in: server-side sessions (random, rotated, ended by
//! sign-out or expiry), the per-address limit on attempts, the Bearer
//! scheme in any case, and the token length rule at start. The real
//! binary on 127.0.0.1:0, a real state file in a temp dir.

mod common;

use std::net::IpAddr;
use std::time::Duration;

use common::*;
use reqwest::header::{HeaderMap, LOCATION, RETRY_AFTER, SET_COOKIE};

const TOKEN: &str = "auth-token-DO-NOT-LEAK-6e1d2c";
const WRONG: &str = "wrong-guess-DO-NOT-LOG-90ab";

type Serve = ServeHarness;

/// `serve -v` with `toml` as ./zns-batch.toml and `token` (if any) as
/// ZNS_SERVE_TOKEN; stderr kept for the log checks.
async fn serve(env: &Env, toml: &str, token: Option<&str>) -> Serve {
    std::fs::write(env.path("zns-batch.toml"), toml).unwrap();
    let mut options = ServeOptions::default().args(&["-v"]);
    if let Some(t) = token {
        options = options.envs(&[("ZNS_SERVE_TOKEN", t)]);
    }
    options.start(env).await
}

/// A client that does not follow redirects, connecting from `from`.
fn client(from: &str) -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .redirect(reqwest::redirect::Policy::none())
        .local_address(from.parse::<IpAddr>().unwrap())
        .build()
        .unwrap()
}

/// The CSRF token of the sign-in form.
async fn csrf(http: &reqwest::Client, s: &Serve) -> String {
    field(&page(http, s, "/login").await, "csrf")
}

/// A fresh serve (config `toml`, the access token) and a client from
/// 127.0.0.1 at its sign-in form: the form's CSRF token.
async fn at_the_sign_in_form(toml: &str) -> (Env, Serve, reqwest::Client, String) {
    let env = Env::new();
    let s = serve(&env, toml, Some(TOKEN)).await;
    let http = client("127.0.0.1");
    let csrf = csrf(&http, &s).await;
    (env, s, http, csrf)
}

/// GET `path` without a cookie: the body text.
async fn page(http: &reqwest::Client, s: &Serve, path: &str) -> String {
    http.get(s.url(path))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

fn field(page: &str, name: &str) -> String {
    page.split(&format!("name=\"{name}\" value=\""))
        .nth(1)
        .and_then(|s| s.split('"').next())
        .unwrap_or_else(|| panic!("no {name} field in {page}"))
        .to_string()
}

/// POST /login: the response's status and headers.
async fn sign_in(
    http: &reqwest::Client,
    s: &Serve,
    csrf: &str,
    token: &str,
    extra: &[(&str, &str)],
) -> (u16, HeaderMap) {
    let mut req = http
        .post(s.url("/login"))
        .form(&[("token", token), ("csrf", csrf)]);
    for (k, v) in extra {
        req = req.header(*k, *v);
    }
    let r = req.send().await.unwrap();
    (r.status().as_u16(), r.headers().clone())
}

/// The full `Set-Cookie` line for the session cookie.
fn set_cookie(h: &HeaderMap) -> String {
    h.get_all(SET_COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find(|v| v.starts_with("zns_session="))
        .unwrap_or_else(|| panic!("no session cookie in {h:?}"))
        .to_string()
}

/// `zns_session=VALUE`, as a browser sends it back.
fn pair(set_cookie: &str) -> String {
    set_cookie.split(';').next().unwrap().to_string()
}

/// GET `path` with a cookie: (status, Location).
async fn get_with(http: &reqwest::Client, s: &Serve, path: &str, cookie: &str) -> (u16, String) {
    let r = http
        .get(s.url(path))
        .header("cookie", cookie)
        .send()
        .await
        .unwrap();
    let location = r
        .headers()
        .get(LOCATION)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    (r.status().as_u16(), location)
}

/// POST a form to `path` with a cookie.
async fn post_with(
    http: &reqwest::Client,
    s: &Serve,
    path: &str,
    cookie: &str,
    form: &[(&str, &str)],
) -> reqwest::Response {
    http.post(s.url(path))
        .header("cookie", cookie)
        .form(form)
        .send()
        .await
        .unwrap()
}

/// Five attempts a minute per address: the sixth is 429 with Retry-After
/// (even with the right token), logged with the masked address and the
/// count and never the tried token; `X-Forwarded-For` is ignored unless
/// trusted; another address signs in meanwhile.
#[tokio::test]
async fn sign_in_attempts_are_limited_per_address() {
    let (_env, s, one, csrf) = at_the_sign_in_form("").await;
    for i in 0..5 {
        // A forged X-Forwarded-For does not make a new client.
        let xff = format!("198.51.100.{i}");
        let (code, _) = sign_in(&one, &s, &csrf, WRONG, &[("x-forwarded-for", &xff)]).await;
        assert_eq!(code, 401, "attempt {i}");
    }
    let (code, h) = sign_in(&one, &s, &csrf, WRONG, &[]).await;
    assert_eq!(code, 429);
    let wait: u64 = h[RETRY_AFTER].to_str().unwrap().parse().unwrap();
    assert!((1..=60).contains(&wait), "Retry-After {wait}");
    let (code, h) = sign_in(&one, &s, &csrf, TOKEN, &[]).await;
    assert_eq!(code, 429, "the right token waits too once over the limit");
    assert!(h.get(SET_COOKIE).is_none());

    // Another client address is not held up.
    let two = client("127.0.0.2");
    let (code, h) = sign_in(&two, &s, &csrf, TOKEN, &[]).await;
    assert_eq!(code, 303);
    let cookie = pair(&set_cookie(&h));
    assert_eq!(get_with(&two, &s, "/", &cookie).await.0, 200);

    let log = s.stop_clean().await.stderr;
    let line = log
        .lines()
        .find(|l| l.contains("sign-in refused"))
        .unwrap_or_else(|| panic!("no warning for the refused sign-in:\n{log}"));
    assert!(line.contains("WARN"), "{line}");
    assert!(line.contains("127.0.0.x"), "the masked address: {line}");
    assert!(line.contains("6 failed or refused"), "the count: {line}");
    assert!(!line.contains("127.0.0.1"), "the address is masked: {line}");
    assert!(!log.contains(WRONG) && !log.contains(TOKEN), "{log}");
}

/// Behind a proxy (`trust_forwarded_for = true`) the client is the last
/// X-Forwarded-For entry: one limit per forwarded client, and an entry a
/// client prepends itself changes nothing.
#[tokio::test]
async fn behind_a_trusted_proxy_the_forwarded_address_is_limited() {
    let (_env, s, proxy, csrf) = at_the_sign_in_form("trust_forwarded_for = true\n").await;
    let client_a = [("x-forwarded-for", "203.0.113.9")];
    for _ in 0..5 {
        assert_eq!(sign_in(&proxy, &s, &csrf, WRONG, &client_a).await.0, 401);
    }
    assert_eq!(sign_in(&proxy, &s, &csrf, WRONG, &client_a).await.0, 429);
    let forged = [("x-forwarded-for", "192.0.2.1, 203.0.113.9")];
    assert_eq!(sign_in(&proxy, &s, &csrf, TOKEN, &forged).await.0, 429);
    let client_b = [("x-forwarded-for", "203.0.114.10")];
    assert_eq!(sign_in(&proxy, &s, &csrf, TOKEN, &client_b).await.0, 303);
    let log = s.stop_clean().await.stderr;
    assert!(log.contains("203.0.113.x"), "{log}");
    assert!(!log.contains("203.0.113.9"), "{log}");
}

/// Every sign-in gets a new random id (not derived from the token); a
/// sign-in from a browser that had a session ends the old one; sign-out
/// (CSRF-protected) ends the session on the server, so the copied cookie
/// no longer opens anything.
#[tokio::test]
async fn sessions_rotate_and_sign_out_ends_them() {
    let (_env, s, http, csrf) = at_the_sign_in_form("").await;
    let (code, h) = sign_in(&http, &s, &csrf, TOKEN, &[]).await;
    assert_eq!(code, 303);
    assert_eq!(h[LOCATION], "/");
    let first = set_cookie(&h);
    for attr in ["HttpOnly", "SameSite=Strict", "Path=/"] {
        assert!(first.contains(attr), "{attr} in {first}");
    }
    assert!(!first.contains("Secure"), "plain http: {first}");
    let a = pair(&first);
    let (_, h) = sign_in(&http, &s, &csrf, TOKEN, &[]).await;
    let b = pair(&set_cookie(&h));
    assert_ne!(a, b, "a new id at every sign-in");
    for c in [&a, &b] {
        let value = c.trim_start_matches("zns_session=");
        assert_eq!(value.len(), 64, "{c}");
        assert!(value.bytes().all(|b| b.is_ascii_hexdigit()), "{c}");
        assert!(!value.contains(TOKEN) && !value.contains(&hex(TOKEN)));
    }
    // Both browsers are signed in; the page offers Sign out.
    let page = page_with(&http, &s.url("/"), &a).await;
    assert!(page.contains("action=\"/logout\""), "{page}");
    assert_eq!(get_with(&http, &s, "/", &b).await.0, 200);

    // Signing in again from browser B replaces B's session.
    let (_, h) = http
        .post(s.url("/login"))
        .header("cookie", &b)
        .form(&[("token", TOKEN), ("csrf", csrf.as_str())])
        .send()
        .await
        .map(|r| (r.status(), r.headers().clone()))
        .unwrap();
    let c = pair(&set_cookie(&h));
    assert_eq!(get_with(&http, &s, "/", &b).await, (303, "/login".into()));
    assert_eq!(get_with(&http, &s, "/", &c).await.0, 200);

    // Sign-out needs the form's CSRF token.
    let r = post_with(&http, &s, "/logout", &a, &[("x", "1")]).await;
    assert_eq!(r.status(), 403);
    assert_eq!(get_with(&http, &s, "/", &a).await.0, 200, "still signed in");
    let page_csrf = field(&page, "csrf");
    let r = post_with(&http, &s, "/logout", &a, &[("csrf", page_csrf.as_str())]).await;
    assert_eq!(r.status(), 303);
    assert_eq!(r.headers()[LOCATION], "/login");
    let cleared = set_cookie(r.headers());
    assert!(cleared.contains("Max-Age=0"), "{cleared}");
    // The old cookie, replayed, is nobody.
    assert_eq!(get_with(&http, &s, "/", &a).await, (303, "/login".into()));
    assert_eq!(get_with(&http, &s, "/api/v1/campaigns", &a).await.0, 401);
    assert_eq!(get_with(&http, &s, "/", &c).await.0, 200, "others stay");
    s.stop_clean().await;
}

fn hex(s: &str) -> String {
    s.bytes().map(|b| format!("{b:02x}")).collect()
}

/// `session_ttl = "1s"`: a session is refused once it is older; behind
/// https the cookie is `Secure`.
#[tokio::test]
async fn an_expired_session_is_signed_out() {
    let env = Env::new();
    let s = serve(
        &env,
        "session_ttl = \"1s\"\npublic_url = \"https://zns.example.vn\"\n",
        Some(TOKEN),
    )
    .await;
    let http = client("127.0.0.1");
    let csrf = csrf(&http, &s).await;
    let (code, h) = sign_in(&http, &s, &csrf, TOKEN, &[]).await;
    assert_eq!(code, 303);
    let line = set_cookie(&h);
    assert!(line.contains("Secure"), "{line}");
    let cookie = pair(&line);
    assert_eq!(get_with(&http, &s, "/", &cookie).await.0, 200);
    tokio::time::sleep(Duration::from_millis(1300)).await;
    assert_eq!(
        get_with(&http, &s, "/", &cookie).await,
        (303, "/login".into())
    );
    assert_eq!(
        get_with(&http, &s, "/api/v1/campaigns", &cookie).await.0,
        401
    );
    // A console form sent after that goes to the sign-in form.
    let r = post_with(
        &http,
        &s,
        "/ui/campaigns/x/pause",
        &cookie,
        &[("csrf", csrf.as_str())],
    )
    .await;
    assert_eq!(r.status(), 303);
    assert_eq!(r.headers()[LOCATION], "/login");
    s.stop_clean().await;
}

/// `Authorization: bearer X` and `BEARER X` are the token too; a wrong
/// Bearer is refused even next to a valid session cookie.
#[tokio::test]
async fn the_bearer_scheme_is_case_insensitive() {
    let env = Env::new();
    let s = serve(&env, "", Some(TOKEN)).await;
    let http = client("127.0.0.1");
    for scheme in ["Bearer", "bearer", "BEARER", "bEaReR"] {
        for path in ["/api/v1/campaigns", "/metrics"] {
            let r = http
                .get(s.url(path))
                .header("authorization", format!("{scheme} {TOKEN}"))
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 200, "{scheme} on {path}");
        }
    }
    for value in [
        format!("Bearer {WRONG}"),
        format!("Bearer{TOKEN}"),
        format!("Basic {TOKEN}"),
        "Bearer ".to_string(),
    ] {
        let r = http
            .get(s.url("/api/v1/campaigns"))
            .header("authorization", &value)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 401, "{value}");
    }
    let csrf = csrf(&http, &s).await;
    let (_, h) = sign_in(&http, &s, &csrf, TOKEN, &[]).await;
    let cookie = pair(&set_cookie(&h));
    let r = http
        .get(s.url("/api/v1/campaigns"))
        .header("cookie", &cookie)
        .header("authorization", format!("Bearer {WRONG}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    // A session is for the console, not for /metrics.
    assert_eq!(get_with(&http, &s, "/metrics", &cookie).await.0, 401);
    s.stop_clean().await;
}

/// A token shorter than 16 characters (or blank) stops serve at start with
/// exit 2 naming the variable and the rule; 16 characters start; without
/// a token (loopback) there is no Sign out.
#[tokio::test]
async fn short_or_blank_tokens_are_refused_at_start() {
    let env = Env::new();
    for (var, value, toml) in [
        ("ZNS_SERVE_TOKEN", "0123456789", ""),
        ("ZNS_SERVE_TOKEN", "", ""),
        ("ZNS_SERVE_TOKEN", "   \t  ", ""),
        ("ZNS_SERVE_TOKEN", "  0123456789abcde  ", ""),
        (
            "TEAM_TOKEN",
            "tiny-tkn",
            "auth_token_env = \"TEAM_TOKEN\"\n",
        ),
    ] {
        std::fs::write(env.path("zns-batch.toml"), toml).unwrap();
        let mut cmd = command(&env, &args(&["serve", "--listen", "127.0.0.1:0"]));
        cmd.env_remove("ZNS_SERVE_TOKEN").env(var, value);
        let r = run_with(cmd).await;
        assert_eq!(r.code, 2, "{var}={value:?}: {r}");
        assert!(r.stderr.contains(var), "{r}");
        assert!(r.stderr.contains("at least 16 characters"), "{r}");
        assert!(r.stdout.is_empty(), "did not listen: {r}");
        if !value.trim().is_empty() {
            assert!(!r.stderr.contains(value.trim()), "the token is not echoed");
        }
    }
    let s = serve(&env, "", Some("0123456789abcdef")).await;
    let r = client("127.0.0.1")
        .get(s.url("/api/v1/campaigns"))
        .bearer_auth("0123456789abcdef")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    s.stop_clean().await;

    let s = serve(&env, "", None).await;
    let page = page(&client("127.0.0.1"), &s, "/").await;
    // Vietnamese unless the browser asks otherwise.
    assert!(page.contains("<h1>Chiến dịch</h1>"), "{page}");
    assert!(!page.contains("/logout"), "no Sign out without a token");
    s.stop_clean().await;
}
