//! Shared by the web tests: `serve` (the real binary) on 127.0.0.1:0 with a
//! config pointing at an in-process sandbox, and small API helpers.
#![allow(dead_code)]

use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use zns_batch::sandbox::Sandbox;

use crate::common::*;

pub const API_KEY_ENV: &str = "ZNS_WEB_TEST_KEY";

pub struct WebServe {
    pub child: tokio::process::Child,
    pub base: String,
    pub http: reqwest::Client,
}

/// ./zns-batch.toml: the eTelecom-protocol sandbox, quick retries.
pub fn write_config(env: &Env, sb: &Sandbox) {
    std::fs::write(
        env.path("zns-batch.toml"),
        format!(
            "provider = \"etelecom\"\nbase_url = \"{}\"\noa_id = \"{OA}\"\napi_key_env = \"{API_KEY_ENV}\"\n\
             request_timeout = \"2s\"\nbackoff = \"20ms\"\nconcurrency = 4\n",
            sb.base_url()
        ),
    )
    .unwrap();
}

pub async fn start(env: &Env, extra_env: &[(&str, &str)]) -> WebServe {
    let mut cmd = command(env, &args(&["serve", "--listen", "127.0.0.1:0"]));
    cmd.env(API_KEY_ENV, KEY)
        .env_remove("ZNS_SERVE_TOKEN")
        .env_remove("ZNS_UPLOAD_LIMIT_MB")
        .stderr(Stdio::null())
        .kill_on_drop(true);
    for (k, v) in extra_env {
        cmd.env(k, v);
    }
    let (child, base) = spawn_serve(cmd).await;
    WebServe {
        child,
        base,
        http: reqwest::Client::builder()
            .timeout(Duration::from_secs(60))
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap(),
    }
}

impl WebServe {
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// POST /api/v1/campaigns: (status, JSON body).
    pub async fn upload(
        &self,
        csv: &Path,
        campaign: &str,
        extra: &[(&str, &str)],
    ) -> (u16, serde_json::Value) {
        let mut fields = vec![("campaign", campaign), ("template_id", "246810")];
        fields.extend_from_slice(extra);
        let (ctype, body) = multipart(&fields, &std::fs::read(csv).unwrap());
        let r = self
            .http
            .post(self.url("/api/v1/campaigns"))
            .header("content-type", ctype)
            .body(body)
            .send()
            .await
            .unwrap();
        let status = r.status().as_u16();
        (status, r.json().await.unwrap_or(serde_json::Value::Null))
    }

    pub async fn post(&self, path: &str) -> (u16, serde_json::Value) {
        let r = self.http.post(self.url(path)).send().await.unwrap();
        let status = r.status().as_u16();
        (status, r.json().await.unwrap_or(serde_json::Value::Null))
    }

    pub async fn get_json(&self, path: &str) -> (u16, serde_json::Value) {
        let r = self.http.get(self.url(path)).send().await.unwrap();
        let status = r.status().as_u16();
        (status, r.json().await.unwrap_or(serde_json::Value::Null))
    }

    pub async fn get_text(&self, path: &str) -> (u16, String) {
        let r = self.http.get(self.url(path)).send().await.unwrap();
        let status = r.status().as_u16();
        (status, r.text().await.unwrap_or_default())
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

    /// SIGTERM and wait for the graceful stop.
    pub async fn stop(mut self) -> i32 {
        if let Some(pid) = self.child.id() {
            signal(pid, "TERM");
        }
        let status = tokio::time::timeout(Duration::from_secs(90), self.child.wait())
            .await
            .expect("serve did not stop in time")
            .unwrap();
        status.code().unwrap_or(-1)
    }
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
