//! Transport shared by the adapters: one pooled client, and the mapping of
//! transport failures and HTTP statuses onto [`ErrorClass`].

use std::cell::RefCell;
use std::time::Duration;

use bytes::Bytes;
use reqwest::header::HeaderValue;
use reqwest::{RequestBuilder, StatusCode};
use serde::{Deserialize, Serialize};

use super::{ErrorClass, ProviderError, Secret};

/// Largest reply body we read; a provider reply is a few hundred bytes.
const MAX_REPLY_BYTES: usize = 1 << 20;

/// `application/json` for `Accept` and `Content-Type`: a static value, so
/// no header value is built (copied) per request.
pub const JSON: HeaderValue = HeaderValue::from_static("application/json");

/// Idle connections kept per host when the caller does not size the pool.
pub const DEFAULT_POOL: usize = 64;

/// How long an idle connection is kept: the longest pause a run makes on its
/// own (a capped `Retry-After`, 5 minutes), so a run that waits does not
/// reconnect on every row after it. A server that closes sooner is noticed
/// by the pool, which drops the connection.
const POOL_IDLE: Duration = Duration::from_secs(300);

/// The client for one run, with a small default pool (tests, tools).
pub fn client(timeout: Duration) -> anyhow::Result<reqwest::Client> {
    pooled_client(timeout, DEFAULT_POOL)
}

/// The client for one run: HTTP/1 keep-alive with up to `idle_per_host`
/// idle connections (the run's concurrency: every request in flight finds a
/// connection to reuse), Nagle off (a request is one small write).
pub fn pooled_client(timeout: Duration, idle_per_host: usize) -> anyhow::Result<reqwest::Client> {
    Ok(reqwest::Client::builder()
        .timeout(timeout)
        .connect_timeout(timeout.min(Duration::from_secs(10)))
        .pool_max_idle_per_host(idle_per_host.max(1))
        .pool_idle_timeout(POOL_IDLE)
        .tcp_nodelay(true)
        .user_agent(concat!("zns-batch/", env!("CARGO_PKG_VERSION")))
        .build()?)
}

/// A request body as JSON, exactly sized. It is written into a per-thread
/// scratch buffer that stays allocated between requests, then copied once
/// into a buffer of its exact length, which becomes the request's body
/// without another allocation (a `Vec` with spare capacity would cost one).
pub fn encode<T: Serialize + ?Sized>(body: &T) -> Result<Vec<u8>, ProviderError> {
    /// A scratch buffer grown past this by an odd body is let go.
    const KEEP: usize = 16 << 10;
    thread_local! {
        static SCRATCH: RefCell<Vec<u8>> = RefCell::new(Vec::with_capacity(1024));
    }
    SCRATCH
        .with(|scratch| {
            let mut scratch = scratch.borrow_mut();
            scratch.clear();
            let written = serde_json::to_writer(&mut *scratch, body);
            let out = written.map(|()| scratch.as_slice().to_vec());
            if scratch.capacity() > KEEP {
                *scratch = Vec::with_capacity(1024);
            }
            out
        })
        .map_err(|e| {
            ProviderError::new(
                ErrorClass::FailRow,
                "encode",
                format!("cannot encode the request: {e}"),
            )
        })
}

/// A URL for one endpoint, parsed when the adapter is built (not per
/// request); a bad base URL is reported on first use, as a config error.
#[derive(Debug, Clone)]
pub struct Endpoint(Result<reqwest::Url, String>);

impl Endpoint {
    pub fn new(url: String) -> Self {
        Self(reqwest::Url::parse(&url).map_err(|e| format!("{url}: {e}")))
    }

    pub fn url(&self) -> Result<reqwest::Url, ProviderError> {
        self.0.clone().map_err(|e| {
            ProviderError::new(
                ErrorClass::AbortConfig,
                "bad_url",
                format!("bad base URL: {e}"),
            )
        })
    }
}

/// A reply as read off the wire: status, `Retry-After`, body.
pub struct RawReply {
    pub status: StatusCode,
    pub retry_after: Option<Duration>,
    /// The body as hyper handed it over: one chunk, not copied, for any
    /// reply that arrives in one piece.
    pub body: Bytes,
}

/// Send and read the whole reply, classifying transport failures.
///
/// A failure to connect proves the request never left (`in_doubt = false`);
/// a timeout or a broken reply after the request was written may hide an
/// accepted request (`in_doubt = true`).
pub async fn execute(req: RequestBuilder) -> Result<RawReply, ProviderError> {
    let mut resp = req.send().await.map_err(transport_error)?;
    let status = resp.status();
    let retry_after = resp
        .headers()
        .get(reqwest::header::RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok())
        .map(Duration::from_secs);
    let too_large = || {
        ProviderError::new(
            ErrorClass::Retry,
            "decode",
            format!("reply larger than {MAX_REPLY_BYTES} bytes"),
        )
        .in_doubt(status.is_success())
    };
    // The first chunk is kept as is; only a reply in several is copied.
    let mut first = Bytes::new();
    let mut joined: Option<Vec<u8>> = None;
    loop {
        match resp.chunk().await {
            Ok(Some(chunk)) => {
                let so_far = joined.as_ref().map_or(first.len(), Vec::len);
                if so_far + chunk.len() > MAX_REPLY_BYTES {
                    return Err(too_large());
                }
                match joined.as_mut() {
                    Some(all) => all.extend_from_slice(&chunk),
                    None if first.is_empty() => first = chunk,
                    None => {
                        let mut all = Vec::with_capacity(first.len() + chunk.len());
                        all.extend_from_slice(&first);
                        all.extend_from_slice(&chunk);
                        joined = Some(all);
                    }
                }
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
        body: joined.map_or(first, Bytes::from),
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
pub fn decode<'a, T: Deserialize<'a>>(reply: &'a RawReply) -> Result<T, ProviderError> {
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

pub mod lenient;

#[cfg(test)]
pub mod test_server;

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// A loopback server that answers one request with a chunked body sent
    /// in pieces, so the reply reaches `execute` in several chunks.
    async fn chunked_server(pieces: &'static [&'static str]) -> String {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            let (mut sock, _) = listener.accept().await.unwrap();
            let mut buf = [0u8; 4096];
            let _ = sock.read(&mut buf).await;
            let head = "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ntransfer-encoding: chunked\r\n\r\n";
            sock.write_all(head.as_bytes()).await.unwrap();
            for piece in pieces {
                let chunk = format!("{:x}\r\n{piece}\r\n", piece.len());
                sock.write_all(chunk.as_bytes()).await.unwrap();
                sock.flush().await.unwrap();
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            sock.write_all(b"0\r\n\r\n").await.unwrap();
        });
        format!("http://{addr}/")
    }

    #[tokio::test]
    async fn a_reply_in_several_chunks_is_joined_in_order() {
        let url = chunked_server(&[r#"{"msg_id":"#, r#""m-1","#, r#""id":"7"}"#]).await;
        let reply = execute(client(Duration::from_secs(2)).unwrap().get(url))
            .await
            .unwrap();
        assert_eq!(&reply.body[..], br#"{"msg_id":"m-1","id":"7"}"#);
    }

    #[tokio::test]
    async fn a_reply_in_one_chunk_is_kept_whole() {
        let url = chunked_server(&[r#"{"error":0}"#]).await;
        let reply = execute(client(Duration::from_secs(2)).unwrap().get(url))
            .await
            .unwrap();
        assert_eq!(&reply.body[..], br#"{"error":0}"#);
    }

    #[test]
    fn bodies_are_exact_and_a_bad_url_is_a_config_error() {
        let body = encode(&serde_json::json!({"a": "b"})).unwrap();
        assert_eq!(
            (body.as_slice(), body.capacity()),
            (&br#"{"a":"b"}"#[..], 9)
        );
        let e = Endpoint::new("not a url/x".into()).url().unwrap_err();
        assert_eq!(
            (e.class, e.code.as_str()),
            (ErrorClass::AbortConfig, "bad_url")
        );
        assert!(Endpoint::new("http://127.0.0.1:1/v1".into()).url().is_ok());
    }
}
