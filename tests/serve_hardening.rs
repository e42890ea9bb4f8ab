//! `serve` at the network edge (issue 21): the Host allow-list, security
//! headers, the header-read timeout and the connection cap, bounded
//! uploads, and the one campaign-name rule. The real binary on
//! 127.0.0.1:0, spoken to over raw TCP where the test needs to say exactly
//! what goes on the wire.

mod common;

use std::time::{Duration, Instant};

use common::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use zns_batch::provider::ProviderKind;
use zns_batch::sandbox::Sandbox;

const CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
                   frame-ancestors 'none'; base-uri 'none'; form-action 'self'";

struct Serve {
    serve: ServeHarness,
    /// 127.0.0.1:PORT
    addr: String,
    _sandbox: Sandbox,
}

/// `serve` with ./zns-batch.toml pointing at a sandbox, plus `extra` keys.
async fn serve(env: &Env, extra: &str, extra_env: &[(&str, &str)]) -> Serve {
    let sb = sandbox(ProviderKind::Etelecom, |_| {}).await;
    write_web_config(env, &sb);
    let mut config = std::fs::read_to_string(env.path("zns-batch.toml")).unwrap();
    config.push_str(extra);
    std::fs::write(env.path("zns-batch.toml"), config).unwrap();
    serve_again(env, extra_env, sb).await
}

async fn serve_again(env: &Env, extra_env: &[(&str, &str)], sb: Sandbox) -> Serve {
    let serve = start_web(env, extra_env).await;
    Serve {
        addr: serve.addr.clone(),
        serve,
        _sandbox: sb,
    }
}

/// One answer, read to the end: status, head (lower case), body.
struct Answer {
    status: u16,
    head: String,
    body: String,
}

impl Answer {
    fn parse(raw: &[u8]) -> Answer {
        let text = String::from_utf8_lossy(raw).to_string();
        let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
        let status = head
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| panic!("no status line in {head:?}"));
        Answer {
            status,
            head: head.to_ascii_lowercase(),
            body: body.to_string(),
        }
    }

    fn header(&self, name: &str) -> Option<&str> {
        self.head.lines().find_map(|l| {
            l.strip_prefix(name)
                .and_then(|r| r.strip_prefix(':'))
                .map(str::trim)
        })
    }
}

/// Send `request` as is (it says `Connection: close`) and read the answer.
async fn raw(addr: &str, request: &[u8]) -> Answer {
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(request).await.unwrap();
    let mut buf = Vec::new();
    tokio::time::timeout(Duration::from_secs(30), s.read_to_end(&mut buf))
        .await
        .expect("answer in time")
        .unwrap();
    Answer::parse(&buf)
}

fn request(method: &str, path: &str, host: &str, headers: &str, body: &[u8]) -> Vec<u8> {
    let mut r = format!(
        "{method} {path} HTTP/1.1\r\nHost: {host}\r\n{headers}Content-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    )
    .into_bytes();
    r.extend_from_slice(body);
    r
}

fn upload_request(host: &str, headers: &str, fields: &[(&str, &str)], csv: &[u8]) -> Vec<u8> {
    let (ctype, body) = multipart(fields, csv);
    request(
        "POST",
        "/api/v1/campaigns",
        host,
        &format!("{headers}Content-Type: {ctype}\r\n"),
        &body,
    )
}

fn csv_rows(env: &Env, n: usize) -> Vec<u8> {
    let p = env.path("rows.csv");
    write_csv(&p, 0, n);
    std::fs::read(p).unwrap()
}

fn port(addr: &str) -> &str {
    addr.rsplit(':').next().unwrap()
}

fn uploads(env: &Env) -> Vec<String> {
    match std::fs::read_dir(env.path("uploads")) {
        Ok(d) => d
            .map(|e| e.unwrap().file_name().to_string_lossy().to_string())
            .collect(),
        Err(_) => Vec::new(),
    }
}

fn vm_rss_kb(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// A page on a rebound DNS name (`attacker.example` resolving to
/// 127.0.0.1) sends the browser's own same-origin headers: only the Host
/// gives it away. 421 for the API, the report and pages; `/healthz` still
/// answers; the allowed names work; a configured list replaces the default.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_foreign_host_is_misdirected_except_healthz() {
    let env = Env::new();
    let s = serve(&env, "", &[]).await;
    let evil = format!("attacker.example:{}", port(&s.addr));
    let same_site = format!("Origin: http://{evil}\r\nSec-Fetch-Site: same-origin\r\n");
    let csv = csv_rows(&env, 3);
    let fields = [("campaign", "nov"), ("template_id", "246810")];

    let a = raw(&s.addr, &upload_request(&evil, &same_site, &fields, &csv)).await;
    assert_eq!(a.status, 421, "{}", a.body);
    assert!(a.body.contains("allowed_hosts"), "{}", a.body);
    assert!(
        uploads(&env).is_empty(),
        "nothing stored: {:?}",
        uploads(&env)
    );
    for path in [
        "/api/v1/campaigns/nov/report.csv",
        "/",
        "/api/v1/campaigns",
        "/nowhere",
    ] {
        let a = raw(&s.addr, &request("GET", path, &evil, &same_site, b"")).await;
        assert_eq!(a.status, 421, "{path}: {}", a.body);
        assert_eq!(
            a.header("content-security-policy"),
            Some(&*CSP.to_ascii_lowercase())
        );
    }
    let a = raw(&s.addr, &request("GET", "/healthz", &evil, "", b"")).await;
    assert_eq!((a.status, a.body.as_str()), (200, "ok"));

    // The names it is reached by, with or without the port.
    let local = format!("127.0.0.1:{}", port(&s.addr));
    let a = raw(
        &s.addr,
        &upload_request(
            &local,
            &format!("Origin: http://{local}\r\nSec-Fetch-Site: same-origin\r\n"),
            &fields,
            &csv,
        ),
    )
    .await;
    assert_eq!(a.status, 201, "{}", a.body);
    for host in [
        local.as_str(),
        "localhost",
        "LOCALHOST:1",
        "[::1]:8080",
        "127.0.0.1",
    ] {
        let a = raw(
            &s.addr,
            &request("GET", "/api/v1/campaigns/nov/report.csv", host, "", b""),
        )
        .await;
        assert_eq!(a.status, 200, "{host}: {}", a.body);
    }

    // Configured: exactly that list (and public_url's host).
    let env2 = Env::new();
    let s2 = serve(
        &env2,
        "allowed_hosts = [\"zns.internal\"]\npublic_url = \"https://hooks.example.vn/zns\"\n",
        &[],
    )
    .await;
    for (host, want) in [
        ("zns.internal:8080", 200),
        ("hooks.example.vn", 200),
        ("localhost", 421),
        ("127.0.0.1", 421),
    ] {
        let a = raw(
            &s2.addr,
            &request("GET", "/api/v1/campaigns", host, "", b""),
        )
        .await;
        assert_eq!(a.status, want, "{host}: {}", a.body);
    }
    drop((s, s2));
}

/// The four headers on a page, an API answer, a 404 and an error; the
/// console's pages hold no inline script or style for the policy to break.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn security_headers_on_every_answer_and_no_inline_code() {
    let env = Env::new();
    let s = serve(&env, "", &[]).await;
    let host = s.addr.clone();
    let csv = csv_rows(&env, 3);
    let a = raw(
        &s.addr,
        &upload_request(
            &host,
            "",
            &[("campaign", "nov"), ("template_id", "246810")],
            &csv,
        ),
    )
    .await;
    assert_eq!(a.status, 201, "{}", a.body);

    let mut seen = Vec::new();
    for (path, want) in [
        ("/", 200),
        ("/campaigns/nov", 200),
        ("/campaigns/nov/check", 200),
        ("/new", 200),
        ("/api/v1/campaigns", 200),
        ("/no/such/page", 404),
        ("/api/v1/campaigns/nope", 404),
        ("/assets/app.js", 200),
    ] {
        let a = raw(&s.addr, &request("GET", path, &host, "", b"")).await;
        assert_eq!(a.status, want, "{path}");
        seen.push((path, a));
    }
    // An error answer: an upload without its file.
    let a = raw(
        &s.addr,
        &upload_request(&host, "", &[("campaign", "x")], b""),
    )
    .await;
    assert_eq!(a.status, 400, "{}", a.body);
    seen.push(("upload without a file", a));
    for (what, a) in &seen {
        assert_eq!(
            a.header("content-security-policy"),
            Some(&*CSP.to_ascii_lowercase()),
            "{what}"
        );
        assert_eq!(a.header("x-frame-options"), Some("deny"), "{what}");
        assert_eq!(
            a.header("x-content-type-options"),
            Some("nosniff"),
            "{what}"
        );
        assert_eq!(a.header("referrer-policy"), Some("same-origin"), "{what}");
        if a.header("content-type")
            .is_some_and(|t| t.starts_with("text/html"))
        {
            assert!(!a.body.contains("style="), "{what}: inline style");
            assert!(!a.body.contains("<style"), "{what}: inline style");
            for script in a.body.split("<script").skip(1) {
                let tag = script.split('>').next().unwrap_or("");
                assert!(tag.contains("src="), "{what}: inline script");
            }
            // No `onclick=`-style handler attributes.
            let handler = a.body.match_indices(" on").any(|(i, _)| {
                let rest = &a.body[i + 3..];
                let word = rest.len()
                    - rest
                        .trim_start_matches(|c: char| c.is_ascii_alphabetic())
                        .len();
                word > 0 && rest[word..].starts_with('=')
            });
            assert!(!handler, "{what}: inline handler");
        }
    }
}

/// Slow clients that send half a request head are cut after the header
/// timeout; a fresh client gets `/healthz` meanwhile. At the connection
/// cap, a new client waits until the slow ones are cut, then is served.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn half_headers_are_cut_and_the_cap_frees() {
    let env = Env::new();
    let s = serve(
        &env,
        "header_read_timeout = \"1s\"\nmax_connections = 6\n",
        &[],
    )
    .await;
    let healthz = || {
        raw(
            &s.addr,
            b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n",
        )
    };

    async fn slow(addr: &str, n: usize) -> Vec<TcpStream> {
        let mut v = Vec::new();
        for _ in 0..n {
            let mut c = TcpStream::connect(addr).await.unwrap();
            c.write_all(b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ")
                .await
                .unwrap();
            v.push(c);
        }
        v
    }
    /// Every connection is closed by the server: (earliest, latest) time.
    async fn all_cut(conns: Vec<TcpStream>, since: Instant) -> (Duration, Duration) {
        let mut times = Vec::new();
        for mut c in conns {
            let mut buf = [0u8; 512];
            let r = tokio::time::timeout(Duration::from_secs(10), async {
                loop {
                    match c.read(&mut buf).await {
                        Ok(0) | Err(_) => break,
                        Ok(_) => continue,
                    }
                }
            })
            .await;
            assert!(r.is_ok(), "a slow connection was still open after 10 s");
            times.push(since.elapsed());
        }
        (times[0], *times.iter().max().unwrap())
    }

    // Under the cap: /healthz answers at once while the slow ones hang.
    let t0 = Instant::now();
    let conns = slow(&s.addr, 4).await;
    let a = healthz().await;
    assert_eq!(a.status, 200);
    let answered = t0.elapsed();
    assert!(answered < Duration::from_millis(900), "{answered:?}");
    let (first, last) = all_cut(conns, t0).await;
    assert!(
        first >= Duration::from_millis(900),
        "cut too early: {first:?}"
    );
    assert!(last < Duration::from_secs(6), "cut too late: {last:?}");

    // At the cap: the next client waits for a slot, then is served.
    let t1 = Instant::now();
    let conns = slow(&s.addr, 6).await;
    let a = healthz().await;
    assert_eq!(a.status, 200);
    let waited = t1.elapsed();
    assert!(
        waited >= Duration::from_millis(800) && waited < Duration::from_secs(8),
        "{waited:?}"
    );
    all_cut(conns, t1).await;
}

/// Send `head` and then `len` bytes of `fill` as the body, reading the
/// answer as it comes; stop sending once it has come. Returns the answer
/// and serve's largest VmRSS (kB) seen meanwhile.
async fn stream_upload(s: &Serve, head: Vec<u8>, prefix: Vec<u8>, len: u64) -> (Answer, u64) {
    let pid = s.serve.pid();
    let stream = TcpStream::connect(&s.addr).await.unwrap();
    let (mut rd, mut wr) = stream.into_split();
    let writer = tokio::spawn(async move {
        wr.write_all(&head).await?;
        wr.write_all(&prefix).await?;
        let chunk = vec![b'a'; 1 << 20];
        let mut sent = 0u64;
        while sent < len {
            let n = chunk.len().min((len - sent) as usize);
            wr.write_all(&chunk[..n]).await?;
            sent += n as u64;
        }
        Ok::<_, std::io::Error>(sent)
    });
    let sampling = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(true));
    let flag = sampling.clone();
    let sampler = tokio::spawn(async move {
        let mut max = 0;
        while flag.load(std::sync::atomic::Ordering::Relaxed) {
            max = max.max(vm_rss_kb(pid));
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        max
    });
    let mut buf = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(90), async {
        let mut chunk = [0u8; 4096];
        loop {
            match rd.read(&mut chunk).await {
                Ok(0) | Err(_) => break,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        }
    })
    .await;
    assert!(read.is_ok(), "no answer in 90 s");
    writer.abort();
    sampling.store(false, std::sync::atomic::Ordering::Relaxed);
    let rss = sampler.await.unwrap();
    (Answer::parse(&buf), rss)
}

fn multipart_head(host: &str, total: u64) -> Vec<u8> {
    format!(
        "POST /api/v1/campaigns HTTP/1.1\r\nHost: {host}\r\n\
         Content-Type: multipart/form-data; boundary=B0undary\r\nContent-Length: {total}\r\n\
         Connection: close\r\n\r\n"
    )
    .into_bytes()
}

/// An 800 MiB text field is refused early (413 naming it) and a file
/// past the upload cap too, while serve's memory stays flat; nothing is
/// left in uploads/.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_fields_are_refused_with_flat_memory() {
    let env = Env::new();
    let s = serve(&env, "", &[("ZNS_UPLOAD_LIMIT_MB", "8")]).await;
    let base_rss = vm_rss_kb(s.serve.pid());

    let field = 800u64 << 20;
    let prefix =
        b"--B0undary\r\nContent-Disposition: form-data; name=\"campaign\"\r\n\r\n".to_vec();
    let total = prefix.len() as u64 + field + 14;
    let t = Instant::now();
    let (a, rss) = stream_upload(&s, multipart_head(&s.addr, total), prefix, field).await;
    assert_eq!(a.status, 413, "{}", a.body);
    assert!(a.body.contains("`campaign`"), "{}", a.body);
    assert!(
        rss < 100 * 1024,
        "VmRSS went to {rss} kB (from {base_rss} kB)"
    );
    eprintln!(
        "800 MiB text field: {} in {:?}, VmRSS max {rss} kB (start {base_rss} kB)",
        a.status,
        t.elapsed()
    );

    // A 300 MiB file against an 8 MiB cap.
    let file = 300u64 << 20;
    let prefix = b"--B0undary\r\nContent-Disposition: form-data; name=\"campaign\"\r\n\r\nbig\r\n\
--B0undary\r\nContent-Disposition: form-data; name=\"file\"; filename=\"big.csv\"\r\n\r\nphone\n"
        .to_vec();
    let total = prefix.len() as u64 + file + 14;
    let (a, rss) = stream_upload(&s, multipart_head(&s.addr, total), prefix, file).await;
    assert_eq!(a.status, 413, "{}", a.body);
    assert!(a.body.contains("8 MiB"), "{}", a.body);
    assert!(rss < 100 * 1024, "VmRSS went to {rss} kB");
    assert!(uploads(&env).is_empty(), "{:?}", uploads(&env));
}

/// Two file parts: 400 naming the part. Errors about a bad file name it
/// by its upload name: no server path in any answer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_file_part_and_no_server_path_in_errors() {
    let env = Env::new();
    let s = serve(&env, "", &[]).await;
    let host = s.addr.clone();
    let csv = csv_rows(&env, 3);

    let (ctype, mut body) = multipart(&[("campaign", "two"), ("template_id", "246810")], &csv);
    // A second `file` part before the closing boundary.
    let end = body.len() - "--zns-web-test-boundary-7d1e--\r\n".len();
    let second = b"--zns-web-test-boundary-7d1e\r\nContent-Disposition: form-data; name=\"file\"; filename=\"other.csv\"\r\n\r\nphone\n0912345678\r\n";
    body.splice(end..end, second.iter().copied());
    let a = raw(
        &s.addr,
        &request(
            "POST",
            "/api/v1/campaigns",
            &host,
            &format!("Content-Type: {ctype}\r\n"),
            &body,
        ),
    )
    .await;
    assert_eq!(a.status, 400, "{}", a.body);
    assert!(a.body.contains("second `file` part"), "{}", a.body);
    assert!(uploads(&env).is_empty(), "{:?}", uploads(&env));

    let dir = env.dir.path().to_string_lossy().to_string();
    for (file, why) in [
        (&b"\x00\x01\xff\xfe binary"[..], "binary"),
        (&b"tel,name\n0912345678,A\n"[..], "phone column"),
    ] {
        let a = raw(
            &s.addr,
            &upload_request(
                &host,
                "",
                &[("campaign", "bad"), ("template_id", "246810")],
                file,
            ),
        )
        .await;
        assert_eq!(a.status, 400, "{why}: {}", a.body);
        assert!(
            a.body.contains("rows.csv"),
            "{why}: names the upload: {}",
            a.body
        );
        for leak in [dir.as_str(), "/tmp", "uploads/upload-", "state.sqlite"] {
            assert!(!a.body.contains(leak), "{why}: `{leak}` in {}", a.body);
        }
        // The console's form says the same, as a page.
        let (ctype, body) = multipart(&[("campaign", "bad"), ("csrf", "x")], file);
        let a = raw(
            &s.addr,
            &request(
                "POST",
                "/ui/upload",
                &host,
                &format!("Content-Type: {ctype}\r\n"),
                &body,
            ),
        )
        .await;
        assert!(
            !a.body.contains(&dir) && !a.body.contains("/tmp"),
            "{}",
            a.body
        );
    }
}

/// `serve` killed (-9) in the middle of an upload leaves a `*.part`, never
/// a CSV; the next `serve` removes it at start.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upload_cut_by_kill_9_is_removed_at_the_next_start() {
    let env = Env::new();
    let s = serve(&env, "", &[]).await;
    let prefix = b"--B0undary\r\nContent-Disposition: form-data; name=\"campaign\"\r\n\r\ncut\r\n\
--B0undary\r\nContent-Disposition: form-data; name=\"file\"; filename=\"cut.csv\"\r\n\r\nphone\n"
        .to_vec();
    let mut c = TcpStream::connect(&s.addr).await.unwrap();
    c.write_all(&multipart_head(&s.addr, 100 << 20))
        .await
        .unwrap();
    c.write_all(&prefix).await.unwrap();
    let rows = "0912345678\n".repeat(100_000);
    c.write_all(rows.as_bytes()).await.unwrap();
    // Wait (bounded) for the partial file to be on disk.
    let deadline = Instant::now() + Duration::from_secs(20);
    let part = loop {
        let found = uploads(&env).into_iter().find(|n| n.ends_with(".part"));
        if let Some(p) = found {
            if std::fs::metadata(env.path("uploads").join(&p)).map_or(0, |m| m.len()) > 0 {
                break p;
            }
        }
        assert!(
            Instant::now() < deadline,
            "no .part file: {:?}",
            uploads(&env)
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let Serve {
        serve,
        _sandbox: sb,
        ..
    } = s;
    serve.kill_9().await;
    drop(c);
    assert_eq!(uploads(&env), vec![part.clone()], "only the partial file");

    let s = serve_again(&env, &[], sb).await;
    assert!(uploads(&env).is_empty(), "left: {:?}", uploads(&env));
    drop(s);
}

/// One name rule: the command line exits 2 naming the character and its
/// position; the API answers 400 with the same.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn campaign_names_refused_alike_by_cli_and_api() {
    let env = Env::new();
    let csv = env.path("a.csv");
    write_csv(&csv, 0, 3);
    let r = run(
        &env,
        &run_plain(&csv, "nov\u{202E}vel", "246810", &["--provider", "sandbox"]),
    )
    .await;
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(
        r.stderr.contains("U+202E") && r.stderr.contains("position 4"),
        "{}",
        r.stderr
    );
    assert!(
        !r.stderr.contains('\u{202E}'),
        "the raw character is not echoed"
    );

    let s = serve(&env, "", &[]).await;
    let host = s.addr.clone();
    let rows = std::fs::read(&csv).unwrap();
    for (name, want) in [
        ("a\u{200B}b", "U+200B"),
        ("..", "directory name"),
        ("x\\y", "U+005C"),
        ("\u{2066}x", "U+2066"),
    ] {
        let a = raw(
            &s.addr,
            &upload_request(
                &host,
                "",
                &[("campaign", name), ("template_id", "246810")],
                &rows,
            ),
        )
        .await;
        assert_eq!(a.status, 400, "{name:?}: {}", a.body);
        assert!(a.body.contains(want), "{name:?}: {}", a.body);
    }
    assert!(uploads(&env).is_empty(), "{:?}", uploads(&env));
}
