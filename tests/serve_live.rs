//! `serve` under load (issue 21): one live-progress poller per campaign
//! whatever the number of streams, the stream cap, delivery counts that
//! agree everywhere, webhook commits grouped. The real binary on
//! 127.0.0.1:0, a real SQLite state, campaigns sent through an in-process
//! sandbox by the CLI first.

mod common;

use std::time::{Duration, Instant};

use common::*;
use futures::StreamExt;
use zns_batch::provider::ProviderKind;

const HOOK_TOKEN: &str = "hook-token-DO-NOT-LEAK-3c1d";

struct Serve {
    serve: ServeHarness,
    base: String,
    http: reqwest::Client,
}

/// `serve` on a free loopback port over the env's state; `config` is
/// written to ./zns-batch.toml.
async fn serve(env: &Env, config: &str) -> Serve {
    std::fs::write(env.path("zns-batch.toml"), config).unwrap();
    let serve = ServeHarness::start(env, &[("ZNS_WEBHOOK_TOKEN", HOOK_TOKEN)]).await;
    Serve {
        base: serve.base.clone(),
        http: serve.http.clone(),
        serve,
    }
}

impl Serve {
    async fn get(&self, path: &str) -> (u16, String) {
        let r = self
            .http
            .get(format!("{}{path}", self.base))
            .send()
            .await
            .unwrap();
        (r.status().as_u16(), r.text().await.unwrap())
    }

    /// One metric's value from `/metrics` (0 if absent).
    async fn metric(&self, name: &str) -> f64 {
        let (code, text) = self.get("/metrics").await;
        assert_eq!(code, 200, "{text}");
        text.lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
            .unwrap_or(0.0)
    }

    /// Wait (at most 10 s) until `name` reads `want`.
    async fn wait_metric(&self, name: &str, want: f64) {
        let t0 = Instant::now();
        loop {
            let got = self.metric(name).await;
            if got == want {
                return;
            }
            assert!(
                t0.elapsed() < Duration::from_secs(10),
                "{name} is {got}, not {want}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    async fn stop(self) {
        self.serve.stop_clean().await;
    }
}

/// An open SSE stream and what has arrived so far.
struct Stream {
    body: reqwest::Response,
    text: String,
}

impl Stream {
    async fn open(s: &Serve, campaign: &str) -> Result<Stream, reqwest::Response> {
        let r = s
            .http
            .get(format!("{}/api/v1/campaigns/{campaign}/events", s.base))
            // The client's overall timeout would cut a stream: none here.
            .timeout(Duration::from_secs(3600))
            .send()
            .await
            .unwrap();
        if r.status() != 200 {
            return Err(r);
        }
        Ok(Stream {
            body: r,
            text: String::new(),
        })
    }

    /// The next `progress` event's JSON (at most 10 s).
    async fn progress(&mut self) -> serde_json::Value {
        let t0 = Instant::now();
        loop {
            if let Some(end) = self.text.find("\n\n") {
                let event: String = self.text.drain(..end + 2).collect();
                if event.lines().any(|l| l == "event: progress") {
                    let data = event
                        .lines()
                        .find_map(|l| l.strip_prefix("data: "))
                        .expect("a data line");
                    return serde_json::from_str(data).unwrap();
                }
                continue;
            }
            let left = Duration::from_secs(10).saturating_sub(t0.elapsed());
            let chunk = tokio::time::timeout(left, self.body.chunk())
                .await
                .expect("no progress event within 10 s")
                .unwrap()
                .expect("stream ended");
            self.text.push_str(&String::from_utf8_lossy(&chunk));
        }
    }
}

/// A campaign of `n` rows sent through an eSMS sandbox by the CLI; its
/// report rows as JSON.
async fn sent_campaign(env: &Env, name: &str, n: usize) -> Vec<serde_json::Value> {
    let sb = sandbox(ProviderKind::Esms, |_| {}).await;
    let csv = env.path(&format!("{name}.csv"));
    write_csv(&csv, 0, n);
    let r = run(
        env,
        &run_args(&csv, name, &sb, ProviderKind::Esms, &["--rate", "5000"]),
    )
    .await;
    assert_eq!(r.code, 0, "{r}");
    let r = run(env, &args(&["--json", "report", name])).await;
    assert_eq!(r.code, 0, "{r}");
    r.stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// Two streams on one campaign both get its progress while one poller
/// reads the database for both; the poller ends with the last stream.
#[tokio::test]
async fn two_streams_share_one_poller() {
    let env = Env::new();
    sent_campaign(&env, "live-a", 5).await;
    let s = serve(&env, "").await;
    assert_eq!(s.metric("zns_event_stream_pollers").await, 0.0);

    let mut a = Stream::open(&s, "live-a").await.ok().unwrap();
    let mut b = Stream::open(&s, "live-a").await.ok().unwrap();
    for stream in [&mut a, &mut b] {
        let p = stream.progress().await;
        assert_eq!(p["status"]["campaign"], "live-a", "{p}");
        assert_eq!(p["status"]["counts"]["sent"], 5, "{p}");
    }
    assert_eq!(s.metric("zns_event_streams").await, 2.0);
    assert_eq!(s.metric("zns_event_stream_pollers").await, 1.0);

    // Both keep receiving, one read per tick between them: over ~3 s one
    // poller reads at most 4 times (two pollers would read about 6).
    let reads0 = s.metric("zns_event_stream_reads_total").await;
    let t0 = Instant::now();
    for _ in 0..3 {
        a.progress().await;
        b.progress().await;
    }
    let reads = s.metric("zns_event_stream_reads_total").await - reads0;
    let ticks = t0.elapsed().as_secs_f64().ceil() + 1.0;
    assert!(reads <= ticks, "{reads} reads in {ticks} ticks");

    // A stream on another campaign has its own poller; 404 for none.
    sent_campaign(&env, "live-b", 2).await;
    let mut c = Stream::open(&s, "live-b").await.ok().unwrap();
    assert_eq!(c.progress().await["status"]["counts"]["sent"], 2);
    assert_eq!(s.metric("zns_event_stream_pollers").await, 2.0);
    let r = Stream::open(&s, "nope").await.err().unwrap();
    assert_eq!(r.status().as_u16(), 404);

    // Clients gone: their places and the pollers are given back.
    drop((a, b, c));
    s.wait_metric("zns_event_streams", 0.0).await;
    s.wait_metric("zns_event_stream_pollers", 0.0).await;
    // And a poller starts again for a new stream.
    let mut d = Stream::open(&s, "live-a").await.ok().unwrap();
    assert_eq!(d.progress().await["status"]["campaign"], "live-a");
    assert_eq!(s.metric("zns_event_stream_pollers").await, 1.0);
    // serve stops with a stream open (the stream ends).
    s.stop().await;
    let t0 = Instant::now();
    while let Ok(Ok(Some(_))) = tokio::time::timeout(Duration::from_secs(5), d.body.chunk()).await {
        assert!(t0.elapsed() < Duration::from_secs(5));
    }
}

/// Past `max_event_streams`, 503 with Retry-After; a closed stream frees
/// its place.
#[tokio::test]
async fn streams_past_the_cap_get_503() {
    let env = Env::new();
    sent_campaign(&env, "cap", 3).await;
    let s = serve(&env, "max_event_streams = 2\n").await;
    let a = Stream::open(&s, "cap").await.ok().unwrap();
    let _b = Stream::open(&s, "cap").await.ok().unwrap();
    let refused = Stream::open(&s, "cap").await.err().unwrap();
    assert_eq!(refused.status().as_u16(), 503);
    assert_eq!(
        refused
            .headers()
            .get("retry-after")
            .and_then(|v| v.to_str().ok()),
        Some("5")
    );
    let body: serde_json::Value = refused.json().await.unwrap();
    assert!(
        body["error"].as_str().unwrap().contains("too many"),
        "{body}"
    );
    // Other routes are not affected.
    assert_eq!(s.get("/api/v1/campaigns").await.0, 200);
    drop(a);
    s.wait_metric("zns_event_streams", 1.0).await;
    let mut c = Stream::open(&s, "cap").await.ok().unwrap();
    assert_eq!(c.progress().await["status"]["campaign"], "cap");
    s.stop().await;
}

/// After N delivery callbacks the API, `status --json` and the console
/// all say N delivered (the same ledger count); the callbacks, sent 32
/// at a time, share transactions.
#[tokio::test]
async fn delivery_counts_agree_after_callbacks() {
    const N: usize = 400;
    let env = Env::new();
    let rows = sent_campaign(&env, "dlv", N).await;
    let s = serve(&env, "").await;
    let (_, page) = s.get("/campaigns/dlv").await;
    assert!(page.contains("<dt>đã nhận</dt><dd>0</dd>"), "{page}");

    let urls: Vec<String> = rows
        .iter()
        .map(|r| {
            format!(
                "{}/webhooks/esms/{HOOK_TOKEN}?SMSID={}&SendStatus=5&SendSuccess=1&SendFailed=0&phonenumber={}",
                s.base,
                r["msg_id"].as_str().unwrap(),
                r["phone"].as_str().unwrap()
            )
        })
        .collect();
    let http = s.http.clone();
    let codes: Vec<u16> = futures::stream::iter(urls.clone())
        .map(|u| {
            let http = http.clone();
            async move { http.get(u).send().await.unwrap().status().as_u16() }
        })
        .buffer_unordered(32)
        .collect()
        .await;
    assert!(codes.iter().all(|c| *c == 200), "{codes:?}");
    // A repeat changes nothing.
    assert_eq!(s.http.get(&urls[0]).send().await.unwrap().status(), 200);

    let (code, one) = s.get("/api/v1/campaigns/dlv").await;
    assert_eq!(code, 200);
    let one: serde_json::Value = serde_json::from_str(&one).unwrap();
    assert_eq!(one["delivery"]["received"], N as u64, "{one}");
    assert_eq!(one["delivery"]["unknown"], 0, "{one}");
    let r = run(&env, &args(&["--json", "status", "dlv"])).await;
    assert_eq!(r.code, 0, "{r}");
    let st = &r.json()[0];
    assert_eq!(st["ledger"]["received"], N as u64, "{r}");
    assert_eq!(st["delivery"]["received"], N as u64, "{r}");
    let (_, page) = s.get("/campaigns/dlv").await;
    assert!(
        page.contains(&format!("<dt>delivered</dt><dd>{N}</dd>")),
        "{page}"
    );
    let (_, list) = s.get("/").await;
    assert!(
        list.contains(&format!("<dt>delivered</dt><dd>{N}</dd>")),
        "{list}"
    );

    // Grouped: fewer transactions than callbacks (each is one fsync).
    let commits = s.metric("zns_webhook_commits_total").await;
    assert!(commits >= 1.0 && commits < (N + 1) as f64, "{commits}");
    s.stop().await;
}
