//! A local HTTP server for adapter tests: records every request and answers
//! each with the same canned reply.

use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::{to_bytes, Body};
use axum::extract::{Request, State};
use axum::http::HeaderMap;
use axum::response::Response;
use axum::Router;

use crate::provider::{ErrorClass, Provider, ProviderError, TemplateInfo};

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

/// What every JSON adapter's send does with a reply that is not its JSON:
/// 500 and a 200 that does not decode are retried in doubt (the message may
/// have gone); 429 is retried after its Retry-After, not in doubt.
/// `send_with_reply` sends one message against a server answering `Canned`.
/// The template info the adapter `make` builds for the server reads from
/// `reply`, and the server that saw the request.
pub async fn template_info_from<P: Provider>(
    make: impl FnOnce(&TestServer) -> P,
    reply: serde_json::Value,
    oa_id: &str,
    template_id: &str,
) -> (TestServer, TemplateInfo) {
    let server = TestServer::start(Canned::json(reply)).await;
    let info = make(&server)
        .template_info(oa_id, template_id)
        .await
        .unwrap()
        .unwrap();
    (server, info)
}

pub async fn assert_transport_failures<T, Fut>(send_with_reply: impl Fn(Canned) -> Fut)
where
    T: std::fmt::Debug,
    Fut: Future<Output = Result<T, ProviderError>>,
{
    let e = send_with_reply(Canned::raw(500, "boom")).await.unwrap_err();
    assert_eq!(
        (e.class, e.code.as_str(), e.in_doubt),
        (ErrorClass::Retry, "http_500", true)
    );

    let e = send_with_reply(Canned::raw(429, "slow down").header("retry-after", "7"))
        .await
        .unwrap_err();
    assert_eq!(e.class, ErrorClass::Retry);
    assert_eq!(e.retry_after, Some(Duration::from_secs(7)));
    assert!(!e.in_doubt);

    for body in ["Service Unavailable", "<html>gateway</html>"] {
        let e = send_with_reply(Canned::raw(200, body)).await.unwrap_err();
        assert_eq!(
            (e.class, e.code.as_str(), e.in_doubt),
            (ErrorClass::Retry, "decode", true),
            "{body}"
        );
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
