//! Transport shared by the adapters: one pooled client, and the mapping of
//! transport failures and HTTP statuses onto [`ErrorClass`].

use std::time::Duration;

use reqwest::{RequestBuilder, StatusCode};
use serde::de::DeserializeOwned;

use super::{ErrorClass, ProviderError, Secret};

/// Largest reply body we read; a provider reply is a few hundred bytes.
const MAX_REPLY_BYTES: usize = 1 << 20;

pub fn client(timeout: Duration) -> anyhow::Result<reqwest::Client> {
    Ok(reqwest::Client::builder()
        .timeout(timeout)
        .connect_timeout(timeout.min(Duration::from_secs(10)))
        .pool_max_idle_per_host(1024)
        .tcp_nodelay(true)
        .user_agent(concat!("zns-batch/", env!("CARGO_PKG_VERSION")))
        .build()?)
}

/// A reply as read off the wire: status, `Retry-After`, body.
pub struct RawReply {
    pub status: StatusCode,
    pub retry_after: Option<Duration>,
    pub body: Vec<u8>,
}

/// Send and read the whole reply, classifying transport failures.
///
/// A failure to connect proves the request never left (`in_doubt = false`);
/// a timeout or a broken reply after the request was written may hide an
/// accepted request (`in_doubt = true`).
pub async fn execute(req: RequestBuilder) -> Result<RawReply, ProviderError> {
    let resp = req.send().await.map_err(transport_error)?;
    let status = resp.status();
    let retry_after = resp
        .headers()
        .get(reqwest::header::RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok())
        .map(Duration::from_secs);
    let mut body = Vec::new();
    let mut resp = resp;
    loop {
        match resp.chunk().await {
            Ok(Some(chunk)) => {
                if body.len() + chunk.len() > MAX_REPLY_BYTES {
                    return Err(ProviderError::new(
                        ErrorClass::Retry,
                        "decode",
                        format!("reply larger than {MAX_REPLY_BYTES} bytes"),
                    )
                    .in_doubt(status.is_success()));
                }
                body.extend_from_slice(&chunk);
            }
            Ok(None) => break,
            Err(e) => {
                return Err(ProviderError::new(
                    ErrorClass::Retry,
                    if e.is_timeout() {
                        "timeout"
                    } else {
                        "reply_lost"
                    },
                    format!("reply broken off: {}", error_chain(&e)),
                )
                .in_doubt(true))
            }
        }
    }
    Ok(RawReply {
        status,
        retry_after,
        body,
    })
}

fn transport_error(e: reqwest::Error) -> ProviderError {
    if e.is_connect() {
        ProviderError::new(
            ErrorClass::Retry,
            "connect",
            format!("cannot connect: {}", error_chain(&e)),
        )
    } else if e.is_timeout() {
        ProviderError::new(
            ErrorClass::Retry,
            "timeout",
            "no reply before the request timeout",
        )
        .in_doubt(true)
    } else {
        ProviderError::new(
            ErrorClass::Retry,
            "reply_lost",
            format!("connection failed: {}", error_chain(&e)),
        )
        .in_doubt(true)
    }
}

/// reqwest's top-level message hides the cause; the chain shows it. URLs
/// never carry secrets here (keys travel in headers or bodies).
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        out.push_str(": ");
        out.push_str(&s.to_string());
        source = s.source();
    }
    out
}

/// Classify a non-2xx status. `body_hint` is a short excerpt for the message.
pub fn status_error(reply: &RawReply) -> ProviderError {
    let status = reply.status;
    let code = format!("http_{}", status.as_u16());
    let hint = body_excerpt(&reply.body);
    let msg = if hint.is_empty() {
        format!("HTTP {status}")
    } else {
        format!("HTTP {status}: {hint}")
    };
    match status.as_u16() {
        401 | 403 => ProviderError::new(ErrorClass::AbortAuth, code, msg),
        // Refused before any work: safe to retry, nothing in doubt.
        429 | 503 => {
            ProviderError::new(ErrorClass::Retry, code, msg).with_retry_after(reply.retry_after)
        }
        408 => ProviderError::new(ErrorClass::Retry, code, msg).in_doubt(true),
        // A 5xx may come after the provider acted on the request.
        500..=599 => ProviderError::new(ErrorClass::Retry, code, msg).in_doubt(true),
        _ => ProviderError::new(ErrorClass::FailRow, code, msg),
    }
}

/// Decode a 2xx JSON body. Garbage in a success reply is in doubt: the
/// provider may well have accepted the request.
pub fn decode<T: DeserializeOwned>(reply: &RawReply) -> Result<T, ProviderError> {
    serde_json::from_slice(&reply.body).map_err(|e| {
        ProviderError::new(
            ErrorClass::Retry,
            "decode",
            format!("unreadable reply ({e}): {}", body_excerpt(&reply.body)),
        )
        .in_doubt(true)
    })
}

/// A short, printable excerpt of a reply body for error messages.
pub fn body_excerpt(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(&body[..body.len().min(200)]);
    text.chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect::<String>()
        .trim()
        .to_string()
}

/// Blank out secrets an error might echo back (a provider quoting the key in
/// its message, a body excerpt). Values under 4 characters are skipped: no
/// real key is that short, and blanking them would garble every message.
pub fn redact(mut err: ProviderError, secrets: &[&Secret]) -> ProviderError {
    for secret in secrets {
        let value = secret.expose();
        if value.len() < 4 {
            continue;
        }
        if err.message.contains(value) {
            err.message = err.message.replace(value, "***");
        }
        if err.code.contains(value) {
            err.code = err.code.replace(value, "***");
        }
    }
    err
}

/// Providers send int64s as JSON strings or numbers; accept both.
pub mod lenient {
    use serde::{Deserialize, Deserializer};

    /// A JSON string, number or boolean, read without serde's untagged
    /// buffering (this runs for every field of every reply).
    enum StrOrNum {
        S(String),
        I(i64),
        U(u64),
        F(f64),
        B(bool),
    }

    impl<'de> Deserialize<'de> for StrOrNum {
        fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
            struct V;
            impl serde::de::Visitor<'_> for V {
                type Value = StrOrNum;
                fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                    f.write_str("a string, a number or a boolean")
                }
                fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<StrOrNum, E> {
                    Ok(StrOrNum::S(v.to_string()))
                }
                fn visit_string<E: serde::de::Error>(self, v: String) -> Result<StrOrNum, E> {
                    Ok(StrOrNum::S(v))
                }
                fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<StrOrNum, E> {
                    Ok(StrOrNum::I(v))
                }
                fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<StrOrNum, E> {
                    // As serde's untagged did: a number that fits i64 is an I.
                    Ok(i64::try_from(v).map_or(StrOrNum::U(v), StrOrNum::I))
                }
                fn visit_f64<E: serde::de::Error>(self, v: f64) -> Result<StrOrNum, E> {
                    Ok(StrOrNum::F(v))
                }
                fn visit_bool<E: serde::de::Error>(self, v: bool) -> Result<StrOrNum, E> {
                    Ok(StrOrNum::B(v))
                }
            }
            d.deserialize_any(V)
        }
    }

    fn to_string(v: StrOrNum) -> String {
        match v {
            StrOrNum::S(s) => s,
            StrOrNum::I(i) => i.to_string(),
            StrOrNum::U(u) => u.to_string(),
            StrOrNum::F(f) => f.to_string(),
            StrOrNum::B(b) => b.to_string(),
        }
    }

    pub fn opt_string<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
        Ok(Option::<StrOrNum>::deserialize(d)?
            .map(to_string)
            .filter(|s| !s.is_empty()))
    }

    /// An integer code that may come as `0`, `"0"` or be missing (→ 0).
    pub fn code<'de, D: Deserializer<'de>>(d: D) -> Result<i64, D::Error> {
        match Option::<StrOrNum>::deserialize(d)? {
            None => Ok(0),
            Some(StrOrNum::I(i)) => Ok(i),
            Some(StrOrNum::U(u)) => Ok(u as i64),
            Some(StrOrNum::F(f)) => Ok(f as i64),
            Some(StrOrNum::B(_)) => Err(serde::de::Error::custom("boolean error code")),
            Some(StrOrNum::S(s)) => s
                .trim()
                .parse()
                .map_err(|_| serde::de::Error::custom(format!("non-numeric error code `{s}`"))),
        }
    }

    /// `true`/`false`, `"true"`/`"false"`, `1`/`0` or `"1"`/`"0"`; anything
    /// else reads as absent.
    pub fn opt_bool<'de, D: Deserializer<'de>>(d: D) -> Result<Option<bool>, D::Error> {
        Ok(Option::<StrOrNum>::deserialize(d)?.and_then(|v| match v {
            StrOrNum::B(b) => Some(b),
            StrOrNum::I(i) => Some(i != 0),
            StrOrNum::U(u) => Some(u != 0),
            StrOrNum::S(s) => match s.trim().to_ascii_lowercase().as_str() {
                "true" | "1" => Some(true),
                "false" | "0" => Some(false),
                _ => None,
            },
            StrOrNum::F(_) => None,
        }))
    }

    pub fn opt_u64<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
        Ok(Option::<StrOrNum>::deserialize(d)?.and_then(|v| match v {
            StrOrNum::U(u) => Some(u),
            StrOrNum::I(i) => u64::try_from(i).ok(),
            StrOrNum::S(s) => s.trim().parse().ok(),
            _ => None,
        }))
    }
}

/// A local HTTP server for adapter tests: records every request and answers
/// each with the same canned reply.
#[cfg(test)]
pub mod test_server {
    use std::sync::{Arc, Mutex};

    use axum::body::{to_bytes, Body};
    use axum::extract::{Request, State};
    use axum::http::HeaderMap;
    use axum::response::Response;
    use axum::Router;

    /// One request exactly as it arrived.
    #[derive(Debug, Clone)]
    pub struct Recorded {
        pub method: String,
        pub path: String,
        pub query: Option<String>,
        pub headers: HeaderMap,
        pub body: Vec<u8>,
    }

    impl Recorded {
        pub fn header(&self, name: &str) -> Option<&str> {
            self.headers.get(name).and_then(|v| v.to_str().ok())
        }

        pub fn json(&self) -> serde_json::Value {
            serde_json::from_slice(&self.body).expect("request body is JSON")
        }
    }

    #[derive(Debug, Clone)]
    pub struct Canned {
        pub status: u16,
        pub headers: Vec<(&'static str, String)>,
        pub body: String,
    }

    impl Canned {
        pub fn json(body: serde_json::Value) -> Self {
            Self::raw(200, &body.to_string()).header("content-type", "application/json")
        }

        pub fn raw(status: u16, body: &str) -> Self {
            Self {
                status,
                headers: Vec::new(),
                body: body.to_string(),
            }
        }

        pub fn header(mut self, name: &'static str, value: &str) -> Self {
            self.headers.push((name, value.to_string()));
            self
        }
    }

    #[derive(Clone)]
    struct Shared {
        reply: Canned,
        seen: Arc<Mutex<Vec<Recorded>>>,
    }

    pub struct TestServer {
        /// `http://127.0.0.1:<port>`, no trailing slash.
        pub base: String,
        seen: Arc<Mutex<Vec<Recorded>>>,
        task: tokio::task::JoinHandle<()>,
    }

    impl TestServer {
        pub async fn start(reply: Canned) -> Self {
            let seen = Arc::new(Mutex::new(Vec::new()));
            let shared = Shared {
                reply,
                seen: seen.clone(),
            };
            let app = Router::new().fallback(handle).with_state(shared);
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
                .await
                .expect("bind test server");
            let addr = listener.local_addr().expect("test server address");
            let task = tokio::spawn(async move {
                let _ = axum::serve(listener, app).await;
            });
            Self {
                base: format!("http://{addr}"),
                seen,
                task,
            }
        }

        pub fn requests(&self) -> Vec<Recorded> {
            self.seen.lock().expect("test server lock").clone()
        }

        /// The one request the test expected, asserting there was exactly one.
        pub fn only_request(&self) -> Recorded {
            let mut all = self.requests();
            assert_eq!(all.len(), 1, "expected exactly one request, got {all:?}");
            all.remove(0)
        }
    }

    impl Drop for TestServer {
        fn drop(&mut self) {
            self.task.abort();
        }
    }

    async fn handle(State(shared): State<Shared>, req: Request) -> Response {
        let (parts, body) = req.into_parts();
        let body = to_bytes(body, 1 << 20).await.expect("test request body");
        let seen = Recorded {
            method: parts.method.to_string(),
            path: parts.uri.path().to_string(),
            query: parts.uri.query().map(str::to_string),
            headers: parts.headers,
            body: body.to_vec(),
        };
        shared.seen.lock().expect("test server lock").push(seen);
        let mut resp = Response::builder().status(shared.reply.status);
        for (name, value) in &shared.reply.headers {
            resp = resp.header(*name, value.as_str());
        }
        resp.body(Body::from(shared.reply.body.clone()))
            .expect("canned reply")
    }
}
