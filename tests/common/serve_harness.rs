//! The one harness for `zns-batch serve`: the real binary on a loopback
//! port, its stdout and stderr kept line by line, an HTTP client that keeps
//! cookies like a browser, and the helpers the web console and the
//! webhooks are driven with. Also the tests' own Zalo signing oracle.

use std::path::Path;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};
use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};
use tokio::task::JoinHandle;
use zns_batch::sandbox::Sandbox;

use super::{args, command, signal, Env, Run, KEY, OA};

/// The variable the web tests' config names for the provider key.
pub const API_KEY_ENV: &str = "ZNS_WEB_TEST_KEY";

/// How long `serve` may take to print its address.
const START_LIMIT: Duration = Duration::from_secs(30);
/// How long a graceful stop may take.
const STOP_LIMIT: Duration = Duration::from_secs(90);

/// Lines a child wrote so far, shared with the task that reads them.
type Lines = Arc<Mutex<Vec<String>>>;

/// How to start `serve`: listen address, extra arguments and environment,
/// the client's timeout.
pub struct ServeOptions {
    listen: String,
    args: Vec<String>,
    env: Vec<(String, String)>,
    http_timeout: Duration,
}

impl Default for ServeOptions {
    fn default() -> Self {
        ServeOptions {
            listen: "127.0.0.1:0".into(),
            args: Vec::new(),
            env: Vec::new(),
            http_timeout: Duration::from_secs(60),
        }
    }
}

impl ServeOptions {
    /// `--listen ADDR` (default `127.0.0.1:0`: a free port).
    pub fn listen(mut self, addr: &str) -> Self {
        self.listen = addr.into();
        self
    }

    /// More arguments after `serve --listen ADDR`.
    pub fn args(mut self, more: &[&str]) -> Self {
        self.args.extend(args(more));
        self
    }

    /// Environment variables for the process (on top of [`command`]'s).
    pub fn envs(mut self, vars: &[(&str, &str)]) -> Self {
        self.env
            .extend(vars.iter().map(|(k, v)| (k.to_string(), v.to_string())));
        self
    }

    /// The HTTP client's per-request timeout.
    pub fn http_timeout(mut self, limit: Duration) -> Self {
        self.http_timeout = limit;
        self
    }

    /// Start `serve` in `env`'s folder and wait for its address.
    pub async fn start(self, env: &Env) -> ServeHarness {
        let mut argv = args(&["serve", "--listen", &self.listen]);
        argv.extend(self.args);
        let mut cmd = command(env, &argv);
        cmd.envs(self.env)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().expect("spawn serve");
        let stderr = Lines::default();
        let stderr_task = keep_lines(child.stderr.take().expect("piped stderr"), stderr.clone());
        let mut out = BufReader::new(child.stdout.take().expect("piped stdout")).lines();
        let first = tokio::time::timeout(START_LIMIT, out.next_line())
            .await
            .expect("serve did not print its address in time")
            .expect("read serve's stdout");
        let Some(first) = first else {
            // Give the reader a moment to collect why it ended.
            let _ = tokio::time::timeout(Duration::from_secs(5), stderr_task).await;
            panic!(
                "serve ended before printing its address; stderr:\n{}",
                lock(&stderr).join("\n")
            );
        };
        let base = first
            .strip_prefix("listening on ")
            .unwrap_or_else(|| panic!("unexpected first line: {first}"))
            .to_string();
        let stdout = Lines::new(Mutex::new(vec![first]));
        let stdout_task = keep_lines_of(out, stdout.clone());
        ServeHarness {
            addr: base.trim_start_matches("http://").to_string(),
            base,
            http: reqwest::Client::builder()
                .timeout(self.http_timeout)
                .redirect(reqwest::redirect::Policy::none())
                .cookie_store(true)
                .build()
                .expect("HTTP client"),
            child,
            stdout,
            stderr,
            readers: vec![stdout_task, stderr_task],
        }
    }
}

/// A running `serve`. Dropped, it is killed (see [`command`]).
pub struct ServeHarness {
    child: tokio::process::Child,
    /// `http://127.0.0.1:PORT`.
    pub base: String,
    /// `127.0.0.1:PORT`: to start again on the same port.
    pub addr: String,
    /// No redirects followed; cookies kept, as a browser would.
    pub http: reqwest::Client,
    stdout: Lines,
    stderr: Lines,
    readers: Vec<JoinHandle<()>>,
}

impl ServeHarness {
    /// Start with the defaults and `extra_env`.
    pub async fn start(env: &Env, extra_env: &[(&str, &str)]) -> ServeHarness {
        ServeOptions::default().envs(extra_env).start(env).await
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    pub fn pid(&self) -> u32 {
        self.child.id().expect("serve is running")
    }

    /// What serve wrote to stdout so far, line by line.
    pub fn stdout_lines(&self) -> Vec<String> {
        lock(&self.stdout).clone()
    }

    /// What serve wrote to stderr so far, line by line.
    pub fn stderr_lines(&self) -> Vec<String> {
        lock(&self.stderr).clone()
    }

    /// GET: (status, body text).
    pub async fn get_text(&self, path: &str) -> (u16, String) {
        let r = self.http.get(self.url(path)).send().await.expect("GET");
        let status = r.status().as_u16();
        (status, r.text().await.expect("response body"))
    }

    /// GET with `Authorization: Bearer <token>` (what an API client sends).
    pub async fn get_bearer(&self, path: &str, token: &str) -> reqwest::Response {
        self.http
            .get(self.url(path))
            .bearer_auth(token)
            .send()
            .await
            .expect("GET")
    }

    /// GET: (status, JSON body or null).
    pub async fn get_json(&self, path: &str) -> (u16, serde_json::Value) {
        let r = self.http.get(self.url(path)).send().await.expect("GET");
        json_of(r).await
    }

    /// POST without a body: (status, JSON body or null).
    pub async fn post(&self, path: &str) -> (u16, serde_json::Value) {
        let r = self.http.post(self.url(path)).send().await.expect("POST");
        json_of(r).await
    }

    /// POST a URL-encoded form (the console's forms; add `csrf` yourself,
    /// see [`csrf_of`]).
    pub async fn post_form(&self, path: &str, fields: &[(&str, &str)]) -> reqwest::Response {
        self.http
            .post(self.url(path))
            .form(fields)
            .send()
            .await
            .expect("POST form")
    }

    /// POST /api/v1/campaigns: (status, JSON body).
    pub async fn upload(
        &self,
        csv: &Path,
        campaign: &str,
        extra: &[(&str, &str)],
    ) -> (u16, serde_json::Value) {
        self.upload_bearer(csv, campaign, extra, None).await
    }

    /// POST /api/v1/campaigns as the API client holding `token` (None:
    /// this client's own session): (status, JSON body).
    pub async fn upload_bearer(
        &self,
        csv: &Path,
        campaign: &str,
        extra: &[(&str, &str)],
        token: Option<&str>,
    ) -> (u16, serde_json::Value) {
        let mut fields = vec![("campaign", campaign), ("template_id", "246810")];
        fields.extend_from_slice(extra);
        let (ctype, body) = multipart(&fields, &std::fs::read(csv).expect("read CSV"));
        let mut req = self
            .http
            .post(self.url("/api/v1/campaigns"))
            .header("content-type", ctype)
            .body(body);
        if let Some(token) = token {
            req = req.bearer_auth(token);
        }
        json_of(req.send().await.expect("upload")).await
    }

    /// `rows` test phones (see `write_csv`) written to `csv` and uploaded
    /// as `campaign`: accepted (201), the plan.
    pub async fn upload_rows(
        &self,
        csv: &Path,
        rows: usize,
        campaign: &str,
        extra: &[(&str, &str)],
    ) -> serde_json::Value {
        super::write_csv(csv, 0, rows);
        let (code, plan) = self.upload(csv, campaign, extra).await;
        assert_eq!(code, 201, "{plan}");
        plan
    }

    /// `rows` test phones uploaded as `campaign` (see [`Self::upload_rows`])
    /// and started: accepted (202).
    pub async fn upload_and_start(
        &self,
        env: &Env,
        campaign: &str,
        rows: usize,
        extra: &[(&str, &str)],
    ) {
        let csv = env.path(&format!("{campaign}.csv"));
        self.upload_rows(&csv, rows, campaign, extra).await;
        let start = format!("/api/v1/campaigns/{campaign}/start");
        assert_eq!(self.post(&start).await.0, 202);
    }

    /// Wait until the campaign's status is `want` (panics after `limit`).
    pub async fn wait_status(
        &self,
        campaign: &str,
        want: &str,
        limit: Duration,
    ) -> serde_json::Value {
        let t0 = Instant::now();
        loop {
            let (code, body) = self
                .get_json(&format!("/api/v1/campaigns/{}", enc(campaign)))
                .await;
            if code == 200 && body["status"] == want {
                return body;
            }
            assert!(
                t0.elapsed() < limit,
                "campaign {campaign} not {want} after {limit:?}: {body}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// POST /webhooks/zalo as Zalo does, with `signature` (see
    /// [`zalo_signature`]) as `X-ZEvent-Signature`: the status.
    pub async fn zalo(&self, body: &str, signature: Option<String>) -> u16 {
        let mut req = self
            .http
            .post(self.url("/webhooks/zalo"))
            .header("content-type", "application/json")
            .header("X-ZEvent-Server", "ZNS")
            .body(body.to_string());
        if let Some(s) = signature {
            req = req.header("X-ZEvent-Signature", s);
        }
        req.send().await.expect("POST webhook").status().as_u16()
    }

    /// GET /webhooks/esms/TOKEN?QUERY as eSMS does: the status.
    pub async fn esms(&self, token: &str, query: &str) -> u16 {
        self.http
            .get(self.url(&format!("/webhooks/esms/{token}?{query}")))
            .send()
            .await
            .expect("GET webhook")
            .status()
            .as_u16()
    }

    /// Send `sig` (`TERM`, `INT`, `KILL`), wait up to `limit` for the end
    /// and collect everything it wrote.
    pub async fn signal_and_wait(mut self, sig: &str, limit: Duration) -> Run {
        signal(self.pid(), sig);
        let status = tokio::time::timeout(limit, self.child.wait())
            .await
            .unwrap_or_else(|_| panic!("serve did not end within {limit:?} of SIG{sig}"))
            .expect("wait for serve");
        // The pipes close with the process: the readers end by themselves.
        for reader in self.readers.drain(..) {
            let _ = tokio::time::timeout(Duration::from_secs(10), reader).await;
        }
        Run {
            code: status.code().unwrap_or(-1),
            stdout: lock(&self.stdout).join("\n"),
            stderr: lock(&self.stderr).join("\n"),
        }
    }

    /// SIGTERM and wait for the graceful stop.
    pub async fn stop(self) -> Run {
        self.signal_and_wait("TERM", STOP_LIMIT).await
    }

    /// [`stop`](Self::stop), which must end with exit 0.
    pub async fn stop_clean(self) -> Run {
        let out = self.stop().await;
        assert_eq!(out.code, 0, "{out}");
        out
    }

    /// SIGKILL and reap.
    pub async fn kill_9(self) -> Run {
        self.signal_and_wait("KILL", STOP_LIMIT).await
    }
}

fn lock(lines: &Lines) -> std::sync::MutexGuard<'_, Vec<String>> {
    // A reader that panicked leaves the lines it had: still worth showing.
    lines.lock().unwrap_or_else(|e| e.into_inner())
}

/// Read `from` line by line into `into` until it closes, so the child
/// never blocks on a full pipe.
fn keep_lines(from: impl AsyncRead + Unpin + Send + 'static, into: Lines) -> JoinHandle<()> {
    keep_lines_of(BufReader::new(from).lines(), into)
}

fn keep_lines_of<R: AsyncRead + Unpin + Send + 'static>(
    mut lines: tokio::io::Lines<BufReader<R>>,
    into: Lines,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        while let Ok(Some(line)) = lines.next_line().await {
            lock(&into).push(line);
        }
    })
}

/// (status, JSON body or null) of a response.
pub async fn json_of(r: reqwest::Response) -> (u16, serde_json::Value) {
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(serde_json::Value::Null))
}

/// The CSRF token of the first form in `page` (its hidden `csrf` field).
pub fn csrf_of(page: &str) -> Option<String> {
    page.split("name=\"csrf\" value=\"")
        .nth(1)
        .and_then(|s| s.split('"').next())
        .map(str::to_string)
}

/// The web tests' ./zns-batch.toml: the eTelecom-protocol sandbox, quick
/// retries, the key in [`API_KEY_ENV`].
pub fn write_web_config(env: &Env, sb: &Sandbox) {
    std::fs::write(
        env.path("zns-batch.toml"),
        format!(
            "provider = \"etelecom\"\nbase_url = \"{}\"\noa_id = \"{OA}\"\napi_key_env = \"{API_KEY_ENV}\"\n\
             request_timeout = \"2s\"\nbackoff = \"20ms\"\nconcurrency = 4\n",
            sb.base_url()
        ),
    )
    .expect("write zns-batch.toml");
}

/// The eTelecom-protocol sandbox answering after `latency`, written as the
/// web tests' config (see [`write_web_config`]).
pub async fn web_sandbox(env: &Env, latency: Duration) -> Sandbox {
    let sb = super::sandbox(zns_batch::provider::ProviderKind::Etelecom, |c| {
        c.latency = latency
    })
    .await;
    write_web_config(env, &sb);
    sb
}

/// What most web tests start from: a fresh env, its web sandbox (see
/// [`web_sandbox`]) and `serve` on it (see [`start_web`]).
pub async fn web_setup(latency: Duration) -> (Env, Sandbox, ServeHarness) {
    let env = Env::new();
    let sb = web_sandbox(&env, latency).await;
    let web = start_web(&env, &[]).await;
    (env, sb, web)
}

/// `serve` for the web tests (see [`write_web_config`]): the key in its
/// environment, and `extra_env`.
pub async fn start_web(env: &Env, extra_env: &[(&str, &str)]) -> ServeHarness {
    ServeOptions::default()
        .envs(&[(API_KEY_ENV, KEY)])
        .envs(extra_env)
        .start(env)
        .await
}

/// GET `url` with a cookie (a browser's session): the body text.
pub async fn page_with(http: &reqwest::Client, url: &str, cookie: &str) -> String {
    http.get(url)
        .header("cookie", cookie)
        .send()
        .await
        .expect("GET")
        .text()
        .await
        .expect("response body")
}

/// A campaign name as one URL path segment.
pub fn enc(name: &str) -> String {
    name.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

/// A multipart/form-data body: text fields, then the file as `file`.
pub fn multipart(fields: &[(&str, &str)], file: &[u8]) -> (String, Vec<u8>) {
    let boundary = "zns-web-test-boundary-7d1e";
    let mut body = Vec::new();
    for (k, v) in fields {
        body.extend_from_slice(
            format!("--{boundary}\r\nContent-Disposition: form-data; name=\"{k}\"\r\n\r\n{v}\r\n")
                .as_bytes(),
        );
    }
    body.extend_from_slice(
        format!(
            "--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"rows.csv\"\r\n\
             Content-Type: text/csv\r\n\r\n"
        )
        .as_bytes(),
    );
    body.extend_from_slice(file);
    body.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
    (format!("multipart/form-data; boundary={boundary}"), body)
}

/// The tests' Zalo webhook signature, `mac=<hex sha256(app_id + raw body +
/// timestamp + oa_secret_key)>`, written from Zalo's documentation and kept
/// apart from the crate's own on purpose: it is the oracle that checks it.
pub fn zalo_signature(app_id: &str, body: &str, timestamp: &str, oa_secret: &str) -> String {
    let mut h = Sha256::new();
    h.update(format!("{app_id}{body}{timestamp}{oa_secret}"));
    format!("mac={}", hex::encode(h.finalize()))
}
