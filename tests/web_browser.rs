//! The web console in a real browser: headless Chromium driven through
//! chromedriver (W3C WebDriver over HTTP on 127.0.0.1), against the real
//! `serve` binary and an in-process sandbox. Screenshots of every page at
//! desktop and phone width go to target/screenshots/.
//!
//! chromedriver and chromium come from Debian (`apt-get install -y chromium
//! chromium-driver`, see .ci/run). Without them these tests fail, unless
//! ZNS_SKIP_BROWSER=1.

mod common;

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use common::*;
use serde_json::{json, Value};

const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";
const DESKTOP: (u32, u32) = (1280, 900);
const PHONE: (u32, u32) = (390, 844);

/// A chromedriver process and one browser session.
struct Browser {
    driver: tokio::process::Child,
    http: reqwest::Client,
    session: String,
    _profile: tempfile::TempDir,
}

fn find_driver() -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join("chromedriver"))
        .find(|p| p.exists())
}

/// A browser whose `Accept-Language` is `accept` (the console picks its
/// language from it until the switch sets a cookie). None (skip) only when
/// ZNS_SKIP_BROWSER=1 and chromedriver is missing.
async fn browser(accept: &str) -> Option<Browser> {
    let Some(driver_path) = find_driver() else {
        if std::env::var("ZNS_SKIP_BROWSER").as_deref() == Ok("1") {
            eprintln!("chromedriver not found: browser test skipped (ZNS_SKIP_BROWSER=1)");
            return None;
        }
        panic!(
            "chromedriver is not installed: run `apt-get install -y chromium chromium-driver` \
             (Debian), or set ZNS_SKIP_BROWSER=1 to skip the browser tests"
        );
    };
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let driver = tokio::process::Command::new(driver_path)
        .arg(format!("--port={port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("start chromedriver");
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(60))
        .build()
        .unwrap();
    let base = format!("http://127.0.0.1:{port}");
    let t0 = Instant::now();
    while http.get(format!("{base}/status")).send().await.is_err() {
        assert!(
            t0.elapsed() < Duration::from_secs(20),
            "chromedriver did not start"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let profile = tempfile::tempdir().unwrap();
    let binary = [
        "/usr/bin/chromium",
        "/usr/bin/chromium-browser",
        "/usr/bin/google-chrome",
    ]
    .into_iter()
    .find(|p| Path::new(p).exists());
    let mut chrome = json!({
        "args": [
            "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
            "--disable-background-networking", "--disable-component-update", "--disable-sync",
            "--no-first-run", "--disable-extensions",
            format!("--user-data-dir={}", profile.path().display()),
            format!("--window-size={},{}", DESKTOP.0, DESKTOP.1),
            format!("--accept-lang={accept}"),
        ],
        "prefs": { "intl.accept_languages": accept },
    });
    if let Some(b) = binary {
        chrome["binary"] = json!(b);
    }
    let caps = json!({ "capabilities": { "alwaysMatch": {
        "browserName": "chrome", "goog:chromeOptions": chrome, "unhandledPromptBehavior": "ignore"
    } } });
    let r: Value = http
        .post(format!("{base}/session"))
        .json(&caps)
        .send()
        .await
        .expect("new session")
        .json()
        .await
        .unwrap();
    let session = r["value"]["sessionId"]
        .as_str()
        .unwrap_or_else(|| panic!("chromedriver refused the session: {r}"))
        .to_string();
    Some(Browser {
        driver,
        http,
        session: format!("{base}/session/{session}"),
        _profile: profile,
    })
}

impl Browser {
    async fn cmd(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> Value {
        let mut req = self.http.request(method, format!("{}{path}", self.session));
        if let Some(b) = body {
            req = req.json(&b);
        }
        let r: Value = req.send().await.unwrap().json().await.unwrap();
        r["value"].clone()
    }
    async fn post(&self, path: &str, body: Value) -> Value {
        self.cmd(reqwest::Method::POST, path, Some(body)).await
    }
    async fn get(&self, path: &str) -> Value {
        self.cmd(reqwest::Method::GET, path, None).await
    }
    async fn goto(&self, url: &str) {
        self.post("/url", json!({ "url": url })).await;
    }
    async fn url(&self) -> String {
        self.get("/url").await.as_str().unwrap_or("").to_string()
    }
    async fn find(&self, css: &str) -> Option<String> {
        let v = self
            .post("/element", json!({ "using": "css selector", "value": css }))
            .await;
        v.get(ELEMENT).and_then(Value::as_str).map(str::to_string)
    }
    async fn el(&self, css: &str) -> String {
        self.find(css)
            .await
            .unwrap_or_else(|| panic!("no element `{css}` on the page"))
    }
    async fn texts(&self, css: &str) -> Vec<String> {
        let v = self
            .exec(
                "return Array.from(document.querySelectorAll(arguments[0])).map(e => e.textContent.trim());",
                json!([css]),
            )
            .await;
        v.as_array()
            .unwrap()
            .iter()
            .map(|s| s.as_str().unwrap().to_string())
            .collect()
    }
    async fn text(&self, css: &str) -> String {
        self.texts(css).await.into_iter().next().unwrap_or_default()
    }
    async fn type_in(&self, css: &str, text: &str) {
        let e = self.el(css).await;
        self.post(&format!("/element/{e}/value"), json!({ "text": text }))
            .await;
    }
    async fn click(&self, css: &str) {
        let e = self.el(css).await;
        self.post(&format!("/element/{e}/click"), json!({})).await;
    }
    async fn exec(&self, script: &str, args: Value) -> Value {
        self.post("/execute/sync", json!({ "script": script, "args": args }))
            .await
    }
    async fn fetch_text(&self, url: &str) -> String {
        let v = self
            .post(
                "/execute/async",
                json!({ "script": "const cb = arguments[arguments.length - 1]; fetch(arguments[0]).then(r => r.text()).then(cb, e => cb('ERROR ' + e));", "args": [url] }),
            )
            .await;
        v.as_str().unwrap_or("").to_string()
    }
    /// Wait until `css`'s text satisfies `ok`.
    async fn wait_text(&self, css: &str, limit: Duration, ok: impl Fn(&str) -> bool) -> String {
        let t0 = Instant::now();
        loop {
            let t = self.text(css).await;
            if ok(&t) {
                return t;
            }
            assert!(
                t0.elapsed() < limit,
                "`{css}` is `{t}` after {limit:?} on {}",
                self.url().await
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    /// Wait (10 s at most) for the page whose heading is `want`.
    async fn wait_heading(&self, want: &str) {
        self.wait_text("h1", Duration::from_secs(10), |t| t == want)
            .await;
    }
    async fn wait_url(&self, suffix: &str, limit: Duration) {
        let t0 = Instant::now();
        while !self.url().await.ends_with(suffix) {
            assert!(
                t0.elapsed() < limit,
                "not at …{suffix} after {limit:?}: at {}",
                self.url().await
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    /// The page's `<html lang>`.
    async fn lang(&self) -> String {
        let v = self
            .exec("return document.documentElement.lang;", json!([]))
            .await;
        v.as_str().unwrap_or("").to_string()
    }
    async fn has_alert(&self) -> bool {
        let v = self.get("/alert/text").await;
        v.as_str().is_some()
    }
    /// The window resized to `(w, h)`; `settle`: then given a moment to lay
    /// out (for a screenshot).
    async fn resize(&self, (w, h): (u32, u32), settle: bool) {
        self.post("/window/rect", json!({ "width": w, "height": h }))
            .await;
        if settle {
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
    /// The page as it shows now: target/screenshots/FILE.png.
    async fn save_screenshot(&self, file: &str) {
        let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/screenshots");
        std::fs::create_dir_all(&dir).unwrap();
        let png = self.get("/screenshot").await;
        let bytes = base64_decode(png.as_str().expect("screenshot"));
        std::fs::write(dir.join(format!("{file}.png")), bytes).unwrap();
    }
    /// Screenshots at desktop and phone width: target/screenshots/NAME-{desktop,phone}.png.
    async fn shots(&self, name: &str) {
        for (label, size) in [("desktop", DESKTOP), ("phone", PHONE)] {
            self.resize(size, true).await;
            self.save_screenshot(&format!("{name}-{label}")).await;
        }
        self.resize(DESKTOP, false).await;
    }
    /// One screenshot at `size`, scrolled to `css` first (after the
    /// resize, which would lose the place): target/screenshots/NAME.png.
    async fn shot_at(&self, name: &str, size: (u32, u32), css: &str) {
        self.resize(size, true).await;
        self.exec(
            "document.querySelector(arguments[0]).scrollIntoView();",
            json!([css]),
        )
        .await;
        tokio::time::sleep(Duration::from_millis(100)).await;
        self.save_screenshot(name).await;
        self.resize(DESKTOP, false).await;
    }
    async fn close(mut self) {
        let _ = self.http.delete(&self.session).send().await;
        let _ = self.driver.start_kill();
        let _ = self.driver.wait().await;
    }
}

fn base64_decode(s: &str) -> Vec<u8> {
    let val = |c: u8| -> u32 {
        match c {
            b'A'..=b'Z' => (c - b'A') as u32,
            b'a'..=b'z' => (c - b'a' + 26) as u32,
            b'0'..=b'9' => (c - b'0' + 52) as u32,
            b'+' => 62,
            b'/' => 63,
            _ => 0,
        }
    };
    let clean: Vec<u8> = s.bytes().filter(|c| !c.is_ascii_whitespace()).collect();
    let mut out = Vec::with_capacity(clean.len() * 3 / 4);
    for chunk in clean.chunks(4) {
        let pad = chunk.iter().filter(|c| **c == b'=').count();
        let n = chunk.iter().fold(0u32, |acc, c| (acc << 6) | val(*c));
        let n = n << (6 * (4 - chunk.len() as u32));
        let bytes = [(n >> 16) as u8, (n >> 8) as u8, n as u8];
        out.extend_from_slice(&bytes[..3 - pad.min(2)]);
    }
    out
}

fn sample(name: &str) -> String {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("samples")
        .join(name)
        .display()
        .to_string()
}

/// Open the New campaign form and fill in the file, the campaign's name,
/// the template id and `more` inputs (by name).
async fn fill_new_form(
    b: &Browser,
    web: &ServeHarness,
    (file, name, template_id): (&str, &str, &str),
    more: &[(&str, &str)],
) {
    b.goto(&web.url("/new")).await;
    b.type_in("#file", file).await;
    b.type_in("input[name=campaign]", name).await;
    b.type_in("input[name=template_id]", template_id).await;
    for (input, value) in more {
        b.type_in(&format!("input[name={input}]"), value).await;
    }
}

/// Submit the New campaign form with its own button (signed in, the
/// header's Sign out comes first).
async fn submit_new_form(b: &Browser) {
    b.click("#upload-form button[type=submit]").await;
}

/// Fill the New campaign form and submit it.
async fn upload_in_page(b: &Browser, web: &ServeHarness, file: &str, name: &str) {
    fill_new_form(b, web, (file, name, "246810"), &[]).await;
    submit_new_form(b).await;
}

/// The refused upload's error above the form, once it is there.
async fn upload_error(b: &Browser) -> String {
    b.wait_text("#upload-error", Duration::from_secs(20), |t| !t.is_empty())
        .await
}

/// The problem page's words, once it shows.
async fn problem_error(b: &Browser) -> String {
    b.wait_text("p.error", Duration::from_secs(20), |t| !t.is_empty())
        .await
}

/// A temp dir with a console config for a fresh eTelecom sandbox.
async fn etelecom_console_env() -> (Env, zns_batch::sandbox::Sandbox) {
    let env = Env::new();
    let sb = sandbox(zns_batch::provider::ProviderKind::Etelecom, |_| {}).await;
    write_web_config(&env, &sb);
    (env, sb)
}

/// Adds lines to the console's config file.
fn add_to_config(env: &Env, more: &str) {
    let cfg = env.path("zns-batch.toml");
    let mut text = std::fs::read_to_string(&cfg).unwrap();
    text.push_str(more);
    std::fs::write(&cfg, text).unwrap();
}

/// Upload → check (40 accepted, the plan) → Send → finished, 40 sent →
/// the report has 40 lines; bad rows each with their line; markup in a
/// CSV shows as text.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upload_check_send_report_in_a_browser() {
    let Some(b) = browser("vi-VN,vi").await else {
        return;
    };
    let (env, sb, web) = web_setup(Duration::ZERO).await;
    let t0 = Instant::now();

    // Vietnamese, as the browser asks.
    b.goto(&web.url("/")).await;
    assert_eq!(b.lang().await, "vi");
    assert_eq!(b.text("h1").await, "Chiến dịch");
    b.shots("campaigns-empty").await;
    b.goto(&web.url("/new")).await;
    assert_eq!(b.text("h1").await, "Chiến dịch mới");
    b.shots("new-campaign").await;

    upload_in_page(&b, &web, &sample("billing-notice.csv"), "Hóa đơn tháng 11").await;
    b.wait_url("/check", Duration::from_secs(30)).await;
    assert_eq!(b.text("#accepted").await, "40");
    assert_eq!(b.text("#plan-messages").await, "40");
    assert!(
        b.text("#send").await.starts_with("Gửi 40 tin nhắn"),
        "Send names the count"
    );
    b.shots("check").await;
    b.click("#confirm").await;
    b.click("#send").await;
    b.wait_url(&enc("Hóa đơn tháng 11"), Duration::from_secs(10))
        .await;
    b.wait_text("#status-badge", Duration::from_secs(60), |t| {
        t == "hoàn tất"
    })
    .await;
    assert_eq!(b.text("#count-sent").await, "40");
    assert!(
        b.text("#live").await.contains("40/40"),
        "{}",
        b.text("#live").await
    );
    b.shots("campaign").await;

    // The switch in the header: English from here on, on the same page,
    // and kept (a cookie) over the browser's Vietnamese.
    b.click("#lang-en").await;
    b.wait_text("#status-badge", Duration::from_secs(10), |t| {
        t == "finished"
    })
    .await;
    assert_eq!(b.lang().await, "en");
    assert!(b.url().await.ends_with(&enc("Hóa đơn tháng 11")));
    assert_eq!(b.text("#lang-current").await, "EN");
    b.shots("campaign-en").await;
    let report = b
        .fetch_text(&format!(
            "/api/v1/campaigns/{}/report.csv",
            enc("Hóa đơn tháng 11")
        ))
        .await;
    assert_eq!(report.lines().count(), 41, "header + 40 rows: {report}");
    assert_eq!(sb.stats_summary().accepted, 40);

    // Bad rows: every reject with its line, as the report has them.
    upload_in_page(&b, &web, &sample("bad-rows.csv"), "bad").await;
    b.wait_url("/check", Duration::from_secs(30)).await;
    let shown: Vec<String> = b.texts("tr.reject td.line").await;
    let rows = report_rows(&env, "bad").await;
    let expected: Vec<String> = rows
        .iter()
        .filter(|r| &r[R_STATE] == "rejected")
        .map(|r| r[R_LINE].to_string())
        .collect();
    assert!(!expected.is_empty());
    assert_eq!(shown, expected, "every reject with its line");
    b.exec(
        "document.getElementById('rejects').scrollIntoView();",
        json!([]),
    )
    .await;
    b.shots("check-rejects").await;

    // Markup in a CSV value is text: no dialog, no injected element.
    let xss = env.path("xss.csv");
    std::fs::write(
        &xss,
        "phone,customer_name,amount\n0912000111,<script>alert(1)</script>,1.000 đ\n0912000112,<img src=x onerror=alert(2)>,2.000 đ\n",
    )
    .unwrap();
    upload_in_page(&b, &web, xss.to_str().unwrap(), "xss").await;
    b.wait_url("/check", Duration::from_secs(30)).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!b.has_alert().await, "a dialog opened");
    let values = b.texts(".preview dd").await;
    assert!(
        values.contains(&"<script>alert(1)</script>".to_string()),
        "{values:?}"
    );
    assert!(
        values.contains(&"<img src=x onerror=alert(2)>".to_string()),
        "{values:?}"
    );
    let injected = b
        .exec(
            "return document.querySelectorAll('main script, main img').length;",
            json!([]),
        )
        .await;
    assert_eq!(injected, json!(0), "no element from the CSV");

    b.goto(&web.url("/")).await;
    assert_eq!(b.lang().await, "en");
    assert_eq!(b.text("h1").await, "Campaigns");
    b.shots("campaigns").await;
    // And back to Vietnamese.
    b.click("#lang-vi").await;
    b.wait_heading("Chiến dịch").await;
    assert_eq!(b.lang().await, "vi");
    eprintln!("browser flow took {:?}", t0.elapsed());
    b.close().await;
    web.stop().await;
}

/// Pause during a slow campaign, then Resume: finished, each row once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pause_and_resume_in_a_browser() {
    let Some(b) = browser("en-US,en").await else {
        return;
    };
    let (env, sb, web) = web_setup(Duration::from_millis(80)).await;
    let csv = env.path("slow.csv");
    write_csv(&csv, 0, 300);
    assert_eq!(web.upload(&csv, "slow", &[]).await.0, 201);

    b.goto(&web.url("/campaigns/slow")).await;
    b.click("#resume").await;
    b.wait_url("/campaigns/slow", Duration::from_secs(10)).await;
    let t0 = Instant::now();
    while sb.stats_summary().accepted < 10 {
        assert!(t0.elapsed() < Duration::from_secs(30), "nothing sent");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    b.click("#pause").await;
    b.wait_text("#status-badge", Duration::from_secs(30), |t| t == "paused")
        .await;
    // The page reloads when the run has stopped: the reason in words.
    b.wait_text("#reason", Duration::from_secs(30), |t| {
        t.contains("Paused by a person")
    })
    .await;
    let paused_at: u64 = b.text("#count-sent").await.parse().unwrap();
    assert!(paused_at < 300, "paused mid-campaign");
    b.shots("campaign-paused").await;
    b.click("#resume").await;
    b.wait_text("#status-badge", Duration::from_secs(90), |t| {
        t == "finished"
    })
    .await;
    assert_eq!(b.text("#count-sent").await, "300");
    b.close().await;
    web.stop().await;

    let rows = report_rows(&env, "slow").await;
    let sent = tracking_ids_in_state(&rows, "sent");
    assert_exactly_once(&sb.stats(), &sent, 300);
}

/// With an access token the browser sees only the login form until it
/// signs in; a form stripped of its CSRF token is refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn token_and_csrf_in_a_browser() {
    const TOKEN: &str = "browser-token-DO-NOT-LEAK-31f0";
    let Some(b) = browser("en-US,en").await else {
        return;
    };
    let env = Env::new();
    let _sb = web_sandbox(&env, Duration::ZERO).await;
    let web = start_web(&env, &[("ZNS_SERVE_TOKEN", TOKEN)]).await;

    for path in ["/", "/new", "/campaigns/x/check"] {
        b.goto(&web.url(path)).await;
        assert!(
            b.url().await.ends_with("/login"),
            "{path} without the token"
        );
    }
    b.goto(&web.url("/api/v1/campaigns")).await;
    assert!(b.text("body").await.contains("access token is required"));
    b.goto(&web.url("/login")).await;
    b.shots("login").await;
    b.type_in("input[name=token]", "wrong").await;
    b.click("button[type=submit]").await;
    b.wait_text("p.error", Duration::from_secs(10), |t| {
        t.contains("not the access token")
    })
    .await;
    b.type_in("input[name=token]", TOKEN).await;
    b.click("button[type=submit]").await;
    b.wait_heading("Campaigns").await;
    let cookie_visible = b.exec("return document.cookie;", json!([])).await;
    assert_eq!(cookie_visible, json!(""), "the session cookie is HttpOnly");

    // A form without its CSRF token (and without the script's help).
    b.goto(&web.url("/new")).await;
    b.exec(
        "document.querySelector('input[name=csrf]').remove(); \
         const f = document.getElementById('upload-form'); f.replaceWith(f.cloneNode(true));",
        json!([]),
    )
    .await;
    let csv = env.path("one.csv");
    write_csv(&csv, 0, 1);
    b.type_in("#file", csv.to_str().unwrap()).await;
    b.type_in("input[name=campaign]", "no-csrf").await;
    b.click("button[type=submit]").await;
    b.wait_heading("Form expired").await;
    let (code, list) = {
        let r = web.get_bearer("/api/v1/campaigns", TOKEN).await;
        (r.status().as_u16(), r.json::<Value>().await.unwrap())
    };
    assert_eq!(code, 200);
    assert_eq!(list, json!([]), "the refused form stored nothing");

    // Sign out: back to the sign-in form, and the console is closed again.
    b.goto(&web.url("/")).await;
    b.shots("signed-in").await;
    b.click("#sign-out").await;
    b.wait_heading("Sign in").await;
    b.goto(&web.url("/new")).await;
    assert!(b.url().await.ends_with("/login"), "signed out");
    b.close().await;
    web.stop().await;
}

/// A free port on loopback for `serve`, known before the sandbox that
/// calls it back starts.
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Attributes of every element matching `css`.
async fn attrs(b: &Browser, css: &str, attr: &str) -> Vec<String> {
    let v = b
        .exec(
            "return Array.from(document.querySelectorAll(arguments[0])).map(e => e.getAttribute(arguments[1]) || '');",
            json!([css, attr]),
        )
        .await;
    v.as_array()
        .unwrap()
        .iter()
        .map(|s| s.as_str().unwrap_or("").to_string())
        .collect()
}

/// The parts of a campaign card's picture on the campaigns page: [series,
/// value] each.
async fn card_parts(b: &Browser, name: &str) -> Vec<[String; 2]> {
    let card = format!("a.card[data-campaign=\"{name}\"] svg.stack rect.part");
    attrs(b, &card, "data-series")
        .await
        .into_iter()
        .zip(attrs(b, &card, "data-value").await)
        .map(|(series, value)| [series, value])
        .collect()
}

/// A `;` file from Vietnamese Excel: the delimiter detected; the Check
/// page lists the rejects, offers them for download in their own
/// columns, and sends only after the count and the cost are confirmed;
/// the campaign page draws sent, delivered and seen (callbacks from the
/// sandbox) and the cost; the campaigns page a progress picture that
/// shows the rejects and the OA's month.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn charts_confirm_step_and_rejects_in_a_browser() {
    let Some(b) = browser("en").await else { return };
    let env = Env::new();
    let port = free_port();
    let sb = priced_sandbox_with_callbacks(&env, port).await;
    let web = ServeOptions::default()
        .listen(&format!("127.0.0.1:{port}"))
        .envs(&[
            (API_KEY_ENV, KEY),
            ("ZNS_WEBHOOK_TOKEN", "hook-token-for-tests"),
        ])
        .start(&env)
        .await;

    let csv = env.path("excel-vi.csv");
    std::fs::write(
        &csv,
        "\u{feff}phone;customer_name;amount\n\
         0912000201;Nguyễn An;1.500,00\n\
         0912000202;Trần Bình;2.000\n\
         12345;Lê Chi;3.000\n\
         0912000203;Phạm Dũng;4.000\n\
         0912000201;Nguyễn An lần 2;5.000\n",
    )
    .unwrap();
    let name = "hoá đơn ;";
    upload_in_page(&b, &web, csv.to_str().unwrap(), name).await;
    b.wait_url("/check", Duration::from_secs(30)).await;
    assert_eq!(b.text("#accepted").await, "3", "the `;` was detected");
    assert_eq!(b.text("#rejected").await, "2");
    let reasons = b.texts("tr.reject td.why").await.join(" | ");
    assert!(!reasons.contains("--"), "reasons name no flag: {reasons}");

    // Rejected rows, in the file's own columns and delimiter.
    let rejects = b
        .fetch_text(&format!("/campaigns/{}/rejects.csv", enc(name)))
        .await;
    let lines: Vec<&str> = rejects.trim_start_matches('\u{feff}').lines().collect();
    assert_eq!(
        lines[0], "phone;customer_name;amount;line;reason",
        "{rejects}"
    );
    assert!(lines[1].starts_with("12345;Lê Chi;3.000;4;"), "{rejects}");
    assert!(
        lines[2].starts_with("0912000201;Nguyễn An lần 2;5.000;6;"),
        "{rejects}"
    );
    assert_eq!(lines.len(), 3, "{rejects}");

    // Send is last, names the count and the cost, and needs the box ticked.
    let what = b.text("#confirm-what").await;
    assert_eq!(what, "Send 3 messages, ≈ 1,050 VND", "3 × (150 + 200)");
    assert_eq!(b.text("#send").await, what);
    let order = b
        .exec(
            "const s = document.getElementById('send'), r = document.getElementById('rejects'); \
             return !!(r.compareDocumentPosition(s) & Node.DOCUMENT_POSITION_FOLLOWING);",
            json!([]),
        )
        .await;
    assert_eq!(order, json!(true), "Send below the rejects");
    b.shots("check-confirm").await;
    b.click("#send").await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(b.url().await.ends_with("/check"), "not sent unconfirmed");
    assert_eq!(sb.stats_summary().accepted, 0);
    b.click("#confirm").await;
    b.click("#send").await;
    let t0 = Instant::now();
    while b.url().await.ends_with("/check") && t0.elapsed() < Duration::from_secs(10) {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        !b.url().await.ends_with("/send"),
        "refused: {}",
        b.text("body").await
    );
    b.wait_url(&enc(name), Duration::from_secs(10)).await;
    b.wait_text("#status-badge", Duration::from_secs(60), |t| {
        t == "finished, 2 rejected"
    })
    .await;
    assert!(b
        .text("#rejected-note")
        .await
        .contains("2 of 5 rows were rejected"));
    assert_eq!(sb.stats_summary().accepted, 3);

    // The chart: sent now; delivered once the callbacks are in.
    let t0 = Instant::now();
    loop {
        b.goto(&web.url(&format!("/campaigns/{}", enc(name)))).await;
        let delivered = attrs(
            &b,
            "#delivery-chart polyline[data-series=delivered]",
            "data-last",
        )
        .await;
        if delivered.first().is_some_and(|d| d != "0") {
            break;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(30),
            "no delivery drawn: {delivered:?}"
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    let sent = attrs(
        &b,
        "#delivery-chart polyline[data-series=sent]",
        "data-last",
    )
    .await;
    assert_eq!(sent, vec!["3".to_string()]);
    let series = attrs(&b, "#delivery-chart polyline", "data-series").await;
    assert_eq!(series, vec!["sent", "delivered", "seen"]);
    assert!(b.find("#no-delivery-data").await.is_none());
    assert_eq!(
        b.texts("dd#count-sent").await,
        vec!["3".to_string()],
        "one sent figure"
    );
    // Every planned message sent: the cost so far reaches the plan.
    let spent = attrs(&b, "#cost-chart rect[data-series=spent]", "data-value").await;
    let plan = attrs(&b, "#cost-chart rect[data-series=plan]", "data-value").await;
    assert_eq!(
        (spent, plan),
        (vec!["1050".to_string()], vec!["1050".to_string()])
    );
    b.shots("campaign-chart").await;

    // The campaigns page: a picture per campaign, rejects in it; the OA's month.
    b.goto(&web.url("/")).await;
    assert_eq!(
        card_parts(&b, name).await,
        [["sent", "3"], ["rejected", "2"]]
    );
    let month = b.texts("#oa-month tr.oa td").await;
    assert_eq!(month.first().map(String::as_str), Some(OA), "{month:?}");
    assert!(
        month.get(1).is_some_and(|m| m.starts_with('3')),
        "{month:?}"
    );
    b.shots("campaigns-pictures").await;
    b.close().await;
    web.stop().await;
}

/// A refused upload keeps what was typed and names no server path; a
/// template id the sandbox does not know is refused when sending, and the
/// campaign page says so.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_upload_keeps_values_and_unknown_template_is_refused_in_a_browser() {
    let Some(b) = browser("en").await else { return };
    let env = Env::new();
    let sb = sandbox(zns_batch::provider::ProviderKind::Etelecom, |c| {
        c.known_templates = zns_batch::sandbox::known_templates_from(None);
    })
    .await;
    write_web_config(&env, &sb);
    let web = start_web(&env, &[]).await;

    // No phone column: refused, the form comes back filled in.
    let bad = env.path("no-phone.csv");
    std::fs::write(&bad, "name;amount\nAn;1\n").unwrap();
    let file = bad.to_str().unwrap();
    let send_window = [("send_window", "07:00-22:00")];
    fill_new_form(&b, &web, (file, "giữ lại", "999999"), &send_window).await;
    b.exec(
        "document.getElementById('delimiter').value = ';';",
        json!([]),
    )
    .await;
    submit_new_form(&b).await;
    let error = upload_error(&b).await;
    let state_dir = env.path("").display().to_string();
    assert!(
        !error.contains(&state_dir) && !error.contains("upload-") && !error.contains("/tmp"),
        "no server path: {error}"
    );
    assert!(
        error.contains("no-phone.csv"),
        "names the user's file: {error}"
    );
    let kept = b
        .exec(
            "return ['campaign','template_id','send_window'].map(n => document.querySelector('[name=' + n + ']').value)\
                 .concat([document.getElementById('delimiter').value]);",
            json!([]),
        )
        .await;
    assert_eq!(kept, json!(["giữ lại", "999999", "07:00-22:00", ";"]));
    b.shots("upload-refused-kept").await;

    // An unknown template: the sandbox refuses it as the provider does.
    let file = sample("billing-notice.csv");
    fill_new_form(&b, &web, (&file, "unknown-template", "999999"), &[]).await;
    submit_new_form(&b).await;
    b.wait_url("/check", Duration::from_secs(30)).await;
    b.click("#confirm").await;
    b.click("#send").await;
    b.wait_url("unknown-template", Duration::from_secs(10))
        .await;
    b.wait_text("#status-badge", Duration::from_secs(30), |t| {
        t == "aborted" || t == "paused"
    })
    .await;
    let reason = b.text("#reason").await;
    assert!(reason.contains("template"), "{reason}");
    assert!(sb.stats_summary().unknown_template_rejections >= 1);
    assert_eq!(sb.stats_summary().accepted, 0);
    b.shots("unknown-template").await;
    b.close().await;
    web.stop().await;
}

/// The Connect OA page (issue 22): from the nav, "Connect OA" gives Zalo's
/// authorization link; following it (the zalo sandbox's OAuth endpoint
/// redirects back to serve's callback) connects the OA, and the page then
/// shows it — never a token.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connect_the_zalo_oa_in_a_browser() {
    let Some(b) = browser("en").await else { return };
    let env = Env::new();
    let sb = sandbox(zns_batch::provider::ProviderKind::Zalo, |_| {}).await;
    std::fs::write(
        env.path("zns-batch.toml"),
        format!(
            "zalo_app_id = \"{}\"\nzalo_oauth_url = \"http://{}/v4/oa\"\n",
            zns_batch::sandbox::DEFAULT_ZALO_APP_ID,
            sb.addr()
        ),
    )
    .unwrap();
    let web = start_web(
        &env,
        &[
            ("ZNS_SECRET_KEY", "browser-test-at-rest-key-0123"),
            (
                "ZNS_ZALO_APP_SECRET",
                zns_batch::sandbox::DEFAULT_ZALO_APP_SECRET,
            ),
        ],
    )
    .await;
    b.goto(&web.url("/")).await;
    b.click("a[href='/zalo']").await;
    b.wait_url("/zalo", Duration::from_secs(10)).await;
    assert!(b.text("#oa-status").await.contains("No Zalo OA"));
    b.click("#oa-connect").await;
    // The link's page comes after the audit entry's write: wait for it.
    b.wait_text("#oa-authorize", Duration::from_secs(10), |t| !t.is_empty())
        .await;
    let link = b
        .exec(
            "return document.querySelector('#oa-authorize').href",
            json!([]),
        )
        .await;
    let link = link.as_str().expect("an authorization link").to_string();
    assert!(link.contains("code_challenge="), "{link}");
    b.shots("zalo-connect").await;
    b.goto(&link).await;
    b.wait_text("#oa-connected", Duration::from_secs(10), |t| {
        t.contains("OA connected")
    })
    .await;
    b.goto(&web.url("/zalo")).await;
    let shown = b.text("#oa-status").await;
    assert!(shown.contains("3886651700907664415"), "{shown}");
    assert!(
        !shown.contains("sbat-") && !shown.contains("sbrt-"),
        "{shown}"
    );
    b.shots("zalo-connected").await;
    assert_eq!(sb.stats_summary().oauth_codes_exchanged, 1);
    b.close().await;
    web.stop().await;
}

/// Check page → "Send a test" (the campaign page lists it, phone masked,
/// nothing of the campaign sent) → the campaign page's "Send at" a few
/// seconds ahead, which first asks to confirm the count and the cost as
/// Send does (nothing scheduled until the box is ticked) → the page says
/// "scheduled for", then shows the run when its time came.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn test_send_and_send_at_in_a_browser() {
    let Some(b) = browser("en").await else { return };
    let env = Env::new();
    let sb = web_sandbox(&env, Duration::ZERO).await;
    add_to_config(&env, "token_fee = 150\nmessage_fee = 200\n");
    let web = start_web(&env, &[]).await;
    let csv = env.path("later.csv");
    write_csv(&csv, 0, 12);
    assert_eq!(web.upload(&csv, "later", &[]).await.0, 201);

    b.goto(&web.url("/campaigns/later/check")).await;
    b.type_in("#test-phones", "0912345678").await;
    b.click("#send-test").await;
    b.wait_url("/campaigns/later#test-sends", Duration::from_secs(20))
        .await;
    let row = b.text("tr.test-send").await;
    assert!(row.contains("0912****678") && row.contains("sent"), "{row}");
    assert_eq!(b.text("#count-sent").await, "0");
    assert_eq!(sb.stats().accepted, 1);

    // OA time (UTC+7), 25 s ahead (room for the confirm step on a busy
    // machine), as the date-time input gives it.
    let value = oa_local_input(time::Duration::seconds(25), true);
    b.exec(
        "document.getElementById('start-at').value = arguments[0];",
        json!([value]),
    )
    .await;
    b.click("#schedule").await;
    // Confirm first: the plan's count and cost, nothing scheduled yet.
    b.wait_text("#confirm-at-what", Duration::from_secs(10), |t| {
        !t.is_empty()
    })
    .await;
    let what = b.text("#confirm-at-what").await;
    assert_eq!(
        what, "Schedule 12 messages, ≈ 4,200 VND",
        "12 × (150 + 200)"
    );
    assert_eq!(b.text("#schedule-confirm").await, what);
    b.shots("schedule-confirm").await;
    // The language switch on a form's answer goes back to the campaign's
    // page (the form's own route answers only POSTs).
    let switch = attrs(&b, "#lang-vi", "href").await;
    assert_eq!(switch, ["/lang/vi?next=/campaigns/later"]);
    let (_, line) = web.get_json("/api/v1/campaigns/later").await;
    assert!(
        line["scheduled_for"].is_null() && line["status"] != "scheduled",
        "not scheduled before the confirm: {line}"
    );
    b.click("#schedule-confirm").await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(b.find("#confirm-at").await.is_some(), "not sent unticked");
    let (_, line) = web.get_json("/api/v1/campaigns/later").await;
    assert!(line["scheduled_for"].is_null(), "{line}");
    b.click("#confirm-at").await;
    b.click("#schedule-confirm").await;
    // The page the confirm answers with (the badge alone may be the old
    // page's, told by its live stream before the new one loads).
    b.wait_text("#cancel-schedule", Duration::from_secs(10), |t| {
        !t.is_empty()
    })
    .await;
    assert_eq!(b.text("#status-badge").await, "scheduled");
    b.shots("campaign-scheduled").await;
    b.wait_text("#status-badge", Duration::from_secs(60), |t| {
        t == "finished"
    })
    .await;
    assert_eq!(b.text("#count-sent").await, "12");
    assert!(b.find("#scheduled-for").await.is_none());
    assert_eq!(sb.stats().accepted, 13);
    b.close().await;
    web.stop().await;
}

/// Named users in a browser: a viewer signs in with name and password,
/// sees who is signed in, and their Send is refused (403 page); the
/// operator's Send runs the campaign, whose page lists both in its audit.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn users_and_roles_in_a_browser() {
    use tokio::io::AsyncWriteExt;
    const PASSWORD: &str = "browser-pass-DO-NOT-LEAK-9c2e";
    let Some(b) = browser("en").await else { return };
    let env = Env::new();
    let _sb = web_sandbox(&env, Duration::ZERO).await;
    for (name, role) in [("vy", "viewer"), ("an", "operator")] {
        let mut cmd = command(
            &env,
            &args(&["users", "add", name, "--role", role, "--password-stdin"]),
        );
        cmd.stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().expect("spawn users add");
        let mut input = child.stdin.take().expect("stdin");
        input
            .write_all(format!("{PASSWORD}\n").as_bytes())
            .await
            .unwrap();
        drop(input);
        let out = tokio::time::timeout(Duration::from_secs(60), child.wait_with_output())
            .await
            .expect("users add in time")
            .unwrap();
        assert!(out.status.success(), "{out:?}");
    }
    let csv = env.path("team.csv");
    write_csv(&csv, 0, 8);
    let mut plan = command(&env, &run_plain(&csv, "team-web", "246810", &["--dry-run"]));
    plan.env(API_KEY_ENV, KEY);
    let r = run_with(plan).await;
    assert_eq!(r.code, 0, "{r}");
    let web = start_web(&env, &[]).await;

    // Each user signs in through the form and presses Resume.
    let sign_in_and_resume = |name: &'static str, role: &'static str| {
        let b = &b;
        let web = &web;
        async move {
            b.goto(&web.url("/")).await;
            assert!(b.url().await.ends_with("/login"), "users exist: sign in");
            b.type_in("input[name=name]", name).await;
            b.type_in("input[name=password]", PASSWORD).await;
            b.click("#sign-in").await;
            b.wait_heading("Campaigns").await;
            let who = format!("Signed in as {name} ({role})");
            assert_eq!(b.text("#signed-in-as").await, who);
            b.goto(&web.url("/campaigns/team-web")).await;
            b.click("#resume").await;
        }
    };
    sign_in_and_resume("vy", "viewer").await;
    b.wait_heading("Not allowed").await;
    assert!(b.text("p.error").await.contains("operator role"));
    b.shots("team-refused").await;
    b.goto(&web.url("/")).await;
    b.click("#sign-out").await;
    b.wait_heading("Sign in").await;

    sign_in_and_resume("an", "operator").await;
    b.wait_text("#status-badge", Duration::from_secs(60), |t| {
        t == "finished"
    })
    .await;
    b.goto(&web.url("/campaigns/team-web")).await;
    let audit = b.text("#audit").await;
    assert!(
        audit.contains("user:an") && audit.contains("user:vy"),
        "{audit}"
    );
    assert!(
        audit.contains("refused") && audit.contains("allowed"),
        "{audit}"
    );
    b.shots("team-audit").await;
    let page = b
        .exec("return document.documentElement.outerHTML;", json!([]))
        .await;
    assert!(!page.to_string().contains(PASSWORD));
    b.close().await;
    let run = web.stop().await;
    assert!(!run.stderr.contains(PASSWORD));
}

/// A cell of a workbook the tests write.
#[derive(Clone, Copy)]
enum Cell {
    Text(&'static str),
    Number(f64),
    Date(i32, u8, u8),
}

/// The upload of the whole-flow tests, as a person keeps it in Excel: a
/// phone typed as text (its leading 0 kept), a date cell, whole numbers,
/// and one bad phone on sheet row 4.
const FLOW_ROWS: [[Cell; 4]; 5] = [
    [
        Cell::Text("phone"),
        Cell::Text("customer_name"),
        Cell::Text("due_date"),
        Cell::Text("amount"),
    ],
    bill("0912000301", "Nguyễn An", (2026, 12, 1), 150000.0),
    bill("0912000302", "Trần Bình", (2026, 12, 15), 2000000.0),
    bill("12345", "Lê Chi", (2026, 12, 20), 3.0),
    bill("0912000303", "Phạm Dũng", (2027, 1, 5), 42000.0),
];

/// One row of [`FLOW_ROWS`]: phone and name as text, the due date, the amount.
const fn bill(
    phone: &'static str,
    name: &'static str,
    (y, m, d): (i32, u8, u8),
    amount: f64,
) -> [Cell; 4] {
    [
        Cell::Text(phone),
        Cell::Text(name),
        Cell::Date(y, m, d),
        Cell::Number(amount),
    ]
}

fn xml_text(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// A zip of `files` in order, stored (an .ods wants its `mimetype` first
/// and uncompressed).
fn write_zip(path: &Path, files: &[(&str, String)]) {
    use std::io::Write;
    let mut z = zip::ZipWriter::new(std::fs::File::create(path).unwrap());
    let stored =
        zip::write::SimpleFileOptions::default().compression_method(zip::CompressionMethod::Stored);
    for (name, body) in files {
        z.start_file(*name, stored).unwrap();
        z.write_all(body.as_bytes()).unwrap();
    }
    z.finish().unwrap();
}

/// The smallest .xlsx Excel and calamine read: inline strings, numbers,
/// dates as serial numbers in a cell styled with the built-in date format 14.
fn write_xlsx(path: &Path, rows: &[[Cell; 4]]) {
    const MAIN: &str = "http://schemas.openxmlformats.org/spreadsheetml/2006/main";
    const REL: &str = "http://schemas.openxmlformats.org/officeDocument/2006/relationships";
    const PKG: &str = "http://schemas.openxmlformats.org/package/2006/relationships";
    let epoch = time::macros::date!(1899 - 12 - 30);
    let mut sheet =
        format!(r#"<?xml version="1.0" encoding="UTF-8"?><worksheet xmlns="{MAIN}"><sheetData>"#);
    for (i, row) in rows.iter().enumerate() {
        let r = i + 1;
        sheet.push_str(&format!(r#"<row r="{r}">"#));
        for (j, cell) in row.iter().enumerate() {
            let at = format!("{}{r}", (b'A' + j as u8) as char);
            sheet.push_str(&match *cell {
                Cell::Text(t) => {
                    format!(
                        r#"<c r="{at}" t="inlineStr"><is><t>{}</t></is></c>"#,
                        xml_text(t)
                    )
                }
                Cell::Number(n) => format!(r#"<c r="{at}"><v>{n}</v></c>"#),
                Cell::Date(y, m, d) => {
                    let day = time::Date::from_calendar_date(y, m.try_into().unwrap(), d).unwrap();
                    let serial = (day - epoch).whole_days();
                    format!(r#"<c r="{at}" s="1"><v>{serial}</v></c>"#)
                }
            });
        }
        sheet.push_str("</row>");
    }
    sheet.push_str("</sheetData></worksheet>");
    write_zip(
        path,
        &[
            (
                "[Content_Types].xml",
                r#"<?xml version="1.0" encoding="UTF-8"?><Types xmlns="http://schemas.openxmlformats.org/package/2006/content-types"><Default Extension="rels" ContentType="application/vnd.openxmlformats-package.relationships+xml"/><Default Extension="xml" ContentType="application/xml"/><Override PartName="/xl/workbook.xml" ContentType="application/vnd.openxmlformats-officedocument.spreadsheetml.sheet.main+xml"/><Override PartName="/xl/worksheets/sheet1.xml" ContentType="application/vnd.openxmlformats-officedocument.spreadsheetml.worksheet+xml"/><Override PartName="/xl/styles.xml" ContentType="application/vnd.openxmlformats-officedocument.spreadsheetml.styles+xml"/></Types>"#.to_string(),
            ),
            (
                "_rels/.rels",
                format!(r#"<?xml version="1.0" encoding="UTF-8"?><Relationships xmlns="{PKG}"><Relationship Id="rId1" Type="{REL}/officeDocument" Target="xl/workbook.xml"/></Relationships>"#),
            ),
            (
                "xl/workbook.xml",
                format!(r#"<?xml version="1.0" encoding="UTF-8"?><workbook xmlns="{MAIN}" xmlns:r="{REL}"><sheets><sheet name="Khách hàng" sheetId="1" r:id="rId1"/></sheets></workbook>"#),
            ),
            (
                "xl/_rels/workbook.xml.rels",
                format!(r#"<?xml version="1.0" encoding="UTF-8"?><Relationships xmlns="{PKG}"><Relationship Id="rId1" Type="{REL}/worksheet" Target="worksheets/sheet1.xml"/><Relationship Id="rId2" Type="{REL}/styles" Target="styles.xml"/></Relationships>"#),
            ),
            (
                "xl/styles.xml",
                format!(r#"<?xml version="1.0" encoding="UTF-8"?><styleSheet xmlns="{MAIN}"><fonts count="1"><font/></fonts><fills count="1"><fill/></fills><borders count="1"><border/></borders><cellStyleXfs count="1"><xf/></cellStyleXfs><cellXfs count="2"><xf numFmtId="0"/><xf numFmtId="14" applyNumberFormat="1"/></cellXfs></styleSheet>"#),
            ),
            ("xl/worksheets/sheet1.xml", sheet),
        ],
    );
}

/// The smallest OpenDocument spreadsheet: typed cells in content.xml.
fn write_ods(path: &Path, rows: &[[Cell; 4]]) {
    const MIME: &str = "application/vnd.oasis.opendocument.spreadsheet";
    let mut table = String::from(r#"<table:table table:name="Customers">"#);
    for row in rows {
        table.push_str("<table:table-row>");
        for cell in row {
            table.push_str(&match *cell {
                Cell::Text(t) => format!(
                    r#"<table:table-cell office:value-type="string"><text:p>{}</text:p></table:table-cell>"#,
                    xml_text(t)
                ),
                Cell::Number(n) => format!(
                    r#"<table:table-cell office:value-type="float" office:value="{n}"><text:p>{n}</text:p></table:table-cell>"#
                ),
                Cell::Date(y, m, d) => format!(
                    r#"<table:table-cell office:value-type="date" office:date-value="{y:04}-{m:02}-{d:02}"><text:p>{d:02}/{m:02}/{y:04}</text:p></table:table-cell>"#
                ),
            });
        }
        table.push_str("</table:table-row>");
    }
    table.push_str("</table:table>");
    write_zip(
        path,
        &[
            ("mimetype", MIME.to_string()),
            (
                "META-INF/manifest.xml",
                format!(
                    r#"<?xml version="1.0" encoding="UTF-8"?><manifest:manifest xmlns:manifest="urn:oasis:names:tc:opendocument:xmlns:manifest:1.0" manifest:version="1.2"><manifest:file-entry manifest:full-path="/" manifest:media-type="{MIME}"/><manifest:file-entry manifest:full-path="content.xml" manifest:media-type="text/xml"/></manifest:manifest>"#
                ),
            ),
            (
                "content.xml",
                format!(
                    r#"<?xml version="1.0" encoding="UTF-8"?><office:document-content xmlns:office="urn:oasis:names:tc:opendocument:xmlns:office:1.0" xmlns:table="urn:oasis:names:tc:opendocument:xmlns:table:1.0" xmlns:text="urn:oasis:names:tc:opendocument:xmlns:text:1.0" office:version="1.2"><office:body><office:spreadsheet>{table}</office:spreadsheet></office:body></office:document-content>"#
                ),
            ),
        ],
    );
}

/// What the whole-flow test reads on the pages, in one language.
struct Words {
    lang: &'static str,
    campaigns: &'static str,
    line: &'static str,
    confirm: &'static str,
    finished: &'static str,
    chart_title: &'static str,
    spent: &'static str,
    money: &'static str,
    month_title: &'static str,
}

const VI: Words = Words {
    lang: "vi",
    campaigns: "Chiến dịch",
    line: "dòng",
    confirm: "Gửi 3 tin nhắn, ≈ 1.050 ₫",
    finished: "đã xong, 1 dòng bị loại",
    chart_title: "Tin nhắn theo thời gian",
    spent: "Đã chi đến nay",
    money: "1.050 ₫",
    month_title: "Tháng này theo OA",
};

const EN: Words = Words {
    lang: "en",
    campaigns: "Campaigns",
    line: "line",
    confirm: "Send 3 messages, ≈ 1,050 VND",
    finished: "finished, 1 rejected",
    chart_title: "Messages over time",
    spent: "Spent so far",
    money: "1,050 VND",
    month_title: "This month per OA",
};

/// The whole console flow through the browser in one language: sign in
/// (when serve has a token), upload the workbook, read the Check page as
/// a person would, confirm and send, wait for the end, see the delivery
/// chart (sent, delivered from the sandbox's callbacks, seen from a
/// `reconcile`) and the cost, then the campaigns page's picture and the
/// OA's month. Screenshots: target/screenshots/flow-LANG-*.png.
///
/// In a browser asking for `accept`, bounded in time.
async fn whole_flow(accept: &str, w: &Words, workbook: &str, name: &str, token: Option<&str>) {
    let Some(b) = browser(accept).await else {
        return;
    };
    tokio::time::timeout(
        Duration::from_secs(150),
        whole_flow_in(b, w, workbook, name, token),
    )
    .await
    .expect("the flow took too long");
}

async fn whole_flow_in(b: Browser, w: &Words, workbook: &str, name: &str, token: Option<&str>) {
    let env = Env::new();
    let port = free_port();
    let sb = priced_sandbox_with_callbacks(&env, port).await;
    let mut envs = vec![
        (API_KEY_ENV, KEY),
        ("ZNS_WEBHOOK_TOKEN", "hook-token-for-tests"),
    ];
    if let Some(t) = token {
        envs.push(("ZNS_SERVE_TOKEN", t));
    }
    let web = ServeOptions::default()
        .listen(&format!("127.0.0.1:{port}"))
        .envs(&envs)
        .start(&env)
        .await;
    let file = env.path(workbook);
    if workbook.ends_with(".ods") {
        write_ods(&file, &FLOW_ROWS);
    } else {
        write_xlsx(&file, &FLOW_ROWS);
    }
    let shot = |what: &str| format!("flow-{}-{what}", w.lang);

    // Sign in when the console asks for it.
    b.goto(&web.url("/")).await;
    if let Some(t) = token {
        b.wait_url("/login", Duration::from_secs(10)).await;
        assert_eq!(b.lang().await, w.lang);
        b.type_in("input[name=token]", t).await;
        b.click("button[type=submit]").await;
    }
    b.wait_heading(w.campaigns).await;
    assert_eq!(b.lang().await, w.lang);

    // The Check page: the cells as the person sees them in Excel.
    upload_in_page(&b, &web, file.to_str().unwrap(), name).await;
    b.wait_url("/check", Duration::from_secs(30)).await;
    assert_eq!(b.lang().await, w.lang);
    assert_eq!(b.text("#accepted").await, "3");
    assert_eq!(b.text("#rejected").await, "1");
    let heads = b.texts(".preview div.muted").await;
    assert_eq!(
        heads,
        [
            format!("{} 2 · 0912****301", w.line),
            format!("{} 3 · 0912****302", w.line),
            format!("{} 5 · 0912****303", w.line),
        ],
        "each row's sheet line and phone, masked as it was typed"
    );
    let values = b.texts(".preview dd").await;
    assert_eq!(
        values,
        [
            "Nguyễn An",
            "01/12/2026",
            "150000",
            "Trần Bình",
            "15/12/2026",
            "2000000",
            "Phạm Dũng",
            "05/01/2027",
            "42000",
        ],
        "dates as dd/mm/yyyy, whole numbers without .0"
    );
    assert_eq!(b.texts("tr.reject td.line").await, ["4"], "the sheet row");
    assert_eq!(b.texts("tr.reject td:nth-child(2)").await, ["****"]);
    let why = b.text("tr.reject td.why").await;
    assert!(why.contains("12345"), "names the cell: {why}");
    assert_eq!(b.text("#confirm-what").await, w.confirm);
    assert_eq!(b.text("#send").await, w.confirm);
    assert_eq!(b.text("#plan-fee").await, format!("≈ {}", w.money));
    b.shots(&shot("check")).await;
    b.shot_at(&shot("check-send-phone"), PHONE, "#send-step")
        .await;

    // Send: ticked, then the campaign's page until it is done.
    b.click("#confirm").await;
    b.click("#send").await;
    b.wait_url(&enc(name), Duration::from_secs(10)).await;
    b.wait_text("#status-badge", Duration::from_secs(60), |t| {
        t == w.finished
    })
    .await;
    assert_eq!(b.text("#count-sent").await, "3");
    let sent_at = Instant::now();
    assert_eq!(sb.stats_summary().accepted, 3);

    // Delivered: the sandbox's callbacks, drawn once they are in.
    let page = web.url(&format!("/campaigns/{}", enc(name)));
    let last = |series: &'static str| {
        let b = &b;
        async move {
            attrs(
                b,
                &format!("#delivery-chart polyline[data-series={series}]"),
                "data-last",
            )
            .await
        }
    };
    let t0 = Instant::now();
    loop {
        b.goto(&page).await;
        if last("delivered").await.first().is_some_and(|d| d != "0") {
            break;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(30),
            "no delivery drawn: {:?}",
            last("delivered").await
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    // Seen: the sandbox marks one in three seen 5 s after sending; a
    // reconcile from the command line asks for it.
    let wait = Duration::from_secs(6).saturating_sub(sent_at.elapsed());
    tokio::time::sleep(wait).await;
    let mut reconcile = command(&env, &args(&["reconcile", name]));
    reconcile.env(API_KEY_ENV, KEY);
    let r = run_with(reconcile).await;
    assert_eq!(r.code, 0, "{r}");
    b.goto(&page).await;
    assert_eq!(b.lang().await, w.lang);
    assert_eq!(
        attrs(&b, "#delivery-chart polyline", "data-series").await,
        ["sent", "delivered", "seen"]
    );
    assert_eq!(last("sent").await, ["3"]);
    assert_eq!(last("delivered").await, ["3"]);
    assert_eq!(last("seen").await, ["1"], "the third message was opened");
    assert_eq!(b.text("#pictures h2").await, w.chart_title);
    // The sandbox reports each message's fee to the reconcile.
    let cost = b.text("#cost-text").await;
    assert!(
        cost.starts_with(w.spent) && cost.contains(w.money),
        "{cost}"
    );
    assert_eq!(
        attrs(&b, "#cost-chart rect[data-series=spent]", "data-value").await,
        ["1050"]
    );
    b.shots(&shot("campaign")).await;
    b.shot_at(&shot("chart-desktop"), DESKTOP, "#delivery")
        .await;
    b.shot_at(&shot("chart-phone"), PHONE, "#pictures").await;

    // The campaigns page: the card's picture, the OA's month and its day.
    b.goto(&web.url("/")).await;
    assert_eq!(b.text("h1").await, w.campaigns);
    assert_eq!(
        card_parts(&b, name).await,
        [["sent", "3"], ["rejected", "1"]]
    );
    assert_eq!(b.text("#oa-month h2").await, w.month_title);
    let month = b.texts("#oa-month tr.oa td").await;
    assert_eq!(month.first().map(String::as_str), Some(OA), "{month:?}");
    assert!(
        month.get(1).is_some_and(|m| m.starts_with('3')),
        "{month:?}"
    );
    assert_eq!(
        month.get(2).map(String::as_str),
        Some(format!("≈ {}", w.money).as_str()),
        "{month:?}"
    );
    let today = time::OffsetDateTime::now_utc().to_offset(time::macros::offset!(+7));
    assert_eq!(
        b.text("#quota-day").await,
        format!(
            "{:02}/{:02}/{}",
            today.day(),
            u8::from(today.month()),
            today.year()
        ),
        "the OA's quota day"
    );
    b.shots(&shot("campaigns")).await;
    b.close().await;
    web.stop().await;
}

/// The whole flow in Vietnamese (the browser asks for it) with an `.xlsx`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn whole_flow_in_vietnamese_with_an_xlsx() {
    whole_flow("vi-VN,vi", &VI, "khách hàng.xlsx", "Hóa đơn tháng 12", None).await;
}

/// The whole flow in English with an `.ods`, on a console with an access
/// token (signed in through the form first).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn whole_flow_in_english_with_an_ods() {
    let token = Some("flow-token-DO-NOT-LEAK-5b1d");
    whole_flow("en-US,en", &EN, "customers.ods", "December bills", token).await;
}

/// Issue 23: the reasons of rejected rows and the errors of a refused
/// upload in the page's language — on the Check page, in the rejected rows'
/// download and above the form — worded for the form, never for flags,
/// and naming no server path.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reasons_and_errors_in_each_language_in_a_browser() {
    struct Words {
        lang: &'static str,
        letters: &'static str,
        too_short: &'static str,
        duplicate: &'static str,
        few_fields: &'static str,
        window: &'static str,
        no_phone: &'static str,
    }
    let all = [
        Words {
            lang: "vi",
            letters: "Số điện thoại `abc` có chứa chữ cái.",
            too_short: "Quá ngắn: có 5 chữ số sau số 0 đầu, cần 9.",
            duplicate: "Trùng số điện thoại với dòng 2: mỗi số chỉ nhận một tin, dòng này được bỏ qua.",
            few_fields: "Dòng có 2 giá trị nhưng tiêu đề có 3 cột: hãy kiểm tra xem có thiếu dấu `,` hoặc có xuống dòng bên trong một giá trị không.",
            window: "Khung giờ gửi `25:00-26:00` không hợp lệ",
            no_phone: "no-phone.csv: Dòng tiêu đề không có cột `phone` (tìm thấy: name, amount): hãy đặt tên cột chứa số điện thoại là `phone`.",
        },
        Words {
            lang: "en",
            letters: "The phone `abc` contains letters.",
            too_short: "Too short: 5 digits after the leading 0, expected 9.",
            duplicate: "Same phone as line 2: one message per phone, this line is left out.",
            few_fields: "The row has 2 values but the header has 3 columns: check for a missing `,` or a line break inside a value.",
            window: "Send window `25:00-26:00` is not valid",
            no_phone: "no-phone.csv: The header has no `phone` column (found: name, amount): name the column holding the phone numbers `phone`.",
        },
    ];
    for w in all {
        let Some(b) = browser(w.lang).await else {
            return;
        };
        let (env, _sb) = etelecom_console_env().await;
        let web = start_web(&env, &[]).await;
        let csv = env.path("bad-rows.csv");
        std::fs::write(
            &csv,
            "phone,customer_name,amount\n\
             0912000301,An,1000\n\
             abc,Bình,2000\n\
             091234,Chi,3000\n\
             0912000301,An lần 2,4000\n\
             0912000303,Dũng\n",
        )
        .unwrap();

        // A form value the server refuses: the form again, the words in
        // the page's language.
        let file = csv.to_str().unwrap();
        let send_window = [("send_window", "25:00-26:00")];
        fill_new_form(&b, &web, (file, "words-window", "246810"), &send_window).await;
        submit_new_form(&b).await;
        let error = upload_error(&b).await;
        assert_eq!(b.lang().await, w.lang);
        assert!(error.starts_with(w.window), "{}: {error}", w.lang);

        // A file without the phone column: named as uploaded, no path.
        let bad = env.path("no-phone.csv");
        std::fs::write(&bad, "name,amount\nAn,1\n").unwrap();
        upload_in_page(&b, &web, bad.to_str().unwrap(), "words-no-phone").await;
        let error = upload_error(&b).await;
        assert_eq!(error, w.no_phone, "{}", w.lang);

        // Rows with problems: each reason in the page's language.
        upload_in_page(&b, &web, csv.to_str().unwrap(), "words-rows").await;
        b.wait_url("/check", Duration::from_secs(30)).await;
        assert_eq!(b.text("#rejected").await, "4", "{}", w.lang);
        let lines = b.texts("tr.reject td.line").await;
        let reasons = b.texts("tr.reject td.why").await;
        assert_eq!(lines, ["3", "4", "5", "6"], "{}", w.lang);
        assert_eq!(
            reasons,
            [w.letters, w.too_short, w.duplicate, w.few_fields],
            "{}",
            w.lang
        );
        b.shots(&format!("reject-reasons-{}", w.lang)).await;

        // The download says them the same way.
        let rejects = b.fetch_text("/campaigns/words-rows/rejects.csv").await;
        for want in [w.letters, w.too_short, w.duplicate] {
            assert!(rejects.contains(want), "{}: {want} in {rejects}", w.lang);
        }

        // The API keeps the English and adds a code scripts match on.
        let (code, body) = web.upload(&bad, "words-api", &[]).await;
        assert_eq!(code, 400, "{body}");
        assert_eq!(body["code"], "file.no_phone_column", "{body}");
        assert!(
            body["error"]
                .as_str()
                .unwrap()
                .contains("no `phone` column"),
            "{body}"
        );
        let (code, plan) = web.upload(&csv, "words-rows-api", &[]).await;
        assert_eq!(code, 201, "{plan}");
        let first = &plan["first_rejects"][0];
        assert_eq!(first["reason_code"], "phone.letters", "{plan}");
        assert_eq!(first["reason"], "phone `abc` contains letters", "{plan}");
        b.close().await;
        web.stop().await;
    }
}

/// An eTelecom sandbox that posts delivery callbacks to the console on
/// `port`, and a config with its prices (token 150 ₫, message 200 ₫).
async fn priced_sandbox_with_callbacks(env: &Env, port: u16) -> zns_batch::sandbox::Sandbox {
    let hook = format!("http://127.0.0.1:{port}/webhooks/etelecom/hook-token-for-tests");
    let sb = sandbox(zns_batch::provider::ProviderKind::Etelecom, |c| {
        c.callback_url = Some(hook);
        c.callbacks.delay = Duration::from_millis(50);
        c.callbacks.backoff = Duration::from_millis(200);
        c.callbacks.attempts = 10;
    })
    .await;
    write_web_config(env, &sb);
    add_to_config(env, "token_fee = 150\nmessage_fee = 200\n");
    sb
}

/// The core's own refusals of what a person typed (issue 23), in each
/// language: a campaign name with a `/`, a file whose header misses a
/// parameter of the template (named as uploaded, with the rename), a bad
/// test phone (with what is wrong with it), a start time already past.
/// The API keeps the English and a code.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cores_refusals_in_each_language_in_a_browser() {
    struct Said {
        lang: &'static str,
        name: &'static str,
        header: &'static str,
        phone: &'static str,
        past: &'static str,
    }
    let all = [
        Said {
            lang: "vi",
            name: "Tên chiến dịch có dấu `/` ở vị trí 6: tên không được chứa / hoặc \\. Hãy dùng chữ cái, chữ số, dấu cách, - và _.",
            header: "words-header.csv: Mẫu tin 246810 cần một cột cho customer_name, nhưng tệp không có (các cột tìm thấy: Customer_Name, amount). Tên cột phải trùng khớp với tên tham số: hãy đổi tên `Customer_Name` → `customer_name`.",
            phone: "Số điện thoại thử `0912345` không phải số di động Việt Nam. Quá ngắn: có 6 chữ số sau số 0 đầu, cần 9.",
            past: "Thời điểm gửi 01/01/2020 08:00 đã qua (bây giờ là ",
        },
        Said {
            lang: "en",
            name: "The campaign name has `/` at position 6: a name may not contain / or \\. Use letters, digits, spaces, - and _.",
            header: "words-header.csv: Template 246810 needs a column for customer_name, which the file does not have (columns found: Customer_Name, amount). Column names must match the parameters exactly: rename `Customer_Name` → `customer_name`.",
            phone: "The test phone `0912345` is not a Vietnamese mobile number. Too short: 6 digits after the leading 0, expected 9.",
            past: "The send time 01/01/2020 08:00 is in the past (it is now ",
        },
    ];
    for w in all {
        let Some(b) = browser(w.lang).await else {
            return;
        };
        let (env, sb) = etelecom_console_env().await;
        // The template's parameters, declared: the header is checked
        // against them before anything is imported.
        add_to_config(
            &env,
            "[templates.246810]\nparams = [ { name = \"customer_name\", required = true }, \
             { name = \"amount\", required = true } ]\n",
        );
        let web = start_web(&env, &[]).await;
        let good = env.path("words-good.csv");
        std::fs::write(&good, "phone,customer_name,amount\n0912000301,An,1000\n").unwrap();

        // The campaign-name rule, on the form: its own words, no file name.
        upload_in_page(&b, &web, good.to_str().unwrap(), "bills/11").await;
        let error = upload_error(&b).await;
        assert_eq!(b.lang().await, w.lang);
        assert_eq!(error, w.name, "{}", w.lang);
        b.shots(&format!("refused-name-{}", w.lang)).await;

        // The header against the template: the file named as uploaded.
        let header = env.path("words-header.csv");
        std::fs::write(&header, "phone,Customer_Name,amount\n0912000301,An,1000\n").unwrap();
        upload_in_page(&b, &web, header.to_str().unwrap(), "words-header").await;
        let error = upload_error(&b).await;
        assert_eq!(error, w.header, "{}", w.lang);
        b.shots(&format!("refused-header-{}", w.lang)).await;

        // A bad test phone on the Check page: the problem page says why.
        assert_eq!(web.upload(&good, "words-test", &[]).await.0, 201);
        b.goto(&web.url("/campaigns/words-test/check")).await;
        b.type_in("#test-phones", "0912345").await;
        b.click("#send-test").await;
        let error = problem_error(&b).await;
        assert_eq!(error, w.phone, "{}", w.lang);
        b.shots(&format!("refused-test-phone-{}", w.lang)).await;

        // "Send at" a time already past: refused, nothing scheduled.
        b.goto(&web.url("/campaigns/words-test/check")).await;
        b.exec(
            "document.getElementById('start-at').value = '2020-01-01T08:00';",
            json!([]),
        )
        .await;
        b.click("#schedule").await;
        let error = problem_error(&b).await;
        assert!(error.starts_with(w.past), "{}: {error}", w.lang);
        let (_, line) = web.get_json("/api/v1/campaigns/words-test").await;
        assert!(line["scheduled_for"].is_null(), "{line}");
        assert_eq!(sb.stats_summary().accepted, 0, "nothing sent");

        // The API: today's English and a code to match on.
        let (code, body) = web.upload(&good, "bills/11", &[]).await;
        assert_eq!(code, 400, "{body}");
        assert_eq!(body["code"], "campaign.name_separator", "{body}");
        let english = body["error"].as_str().unwrap_or_default();
        assert!(
            english.starts_with("--campaign `bills/11` has U+002F"),
            "{body}"
        );
        let (code, body) = web.upload(&header, "words-header-api", &[]).await;
        assert_eq!(code, 400, "{body}");
        assert_eq!(body["code"], "preflight.missing_columns", "{body}");
        let english = body["error"].as_str().unwrap_or_default();
        assert!(
            english.starts_with("template 246810 needs the parameter `customer_name`"),
            "{body}"
        );
        b.close().await;
        web.stop().await;
    }
}
