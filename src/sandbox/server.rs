//! The HTTP server: routing, latency and faults around the protocol
//! handlers, the control and stats endpoints, bind and serve.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::{Query, Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use serde::Deserialize;
use serde_json::{Map, Value};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::faults::merge_faults;
use super::state::Shared;
use super::wire::{self, etelecom, parse_object, Call, Endpoint};
use super::{ProviderKind, SandboxHandle};

/// Largest request body read; a real request is a few hundred bytes.
const MAX_BODY_BYTES: usize = 1 << 20;

/// The body a protocol's server (or the gateway in front of it) gives for a
/// transport-level status.
fn status_reply(protocol: ProviderKind, status: StatusCode, what: &str) -> Response {
    if matches!(protocol.protocol(), ProviderKind::Zalo | ProviderKind::Esms)
        || status == StatusCode::BAD_GATEWAY
    {
        // A gateway's page: not the protocol's JSON, as real 5xx/429s often are.
        let text = format!(
            "<html><body><h1>{} {}</h1>{what}</body></html>",
            status.as_u16(),
            status.canonical_reason().unwrap_or("")
        );
        return (status, [(header::CONTENT_TYPE, "text/html")], text).into_response();
    }
    let code = match status.as_u16() {
        404 => "bad_route",
        429 => "resource_exhausted",
        503 => "unavailable",
        504 => "deadline_exceeded",
        _ => "internal",
    };
    etelecom::twirp_error(status, code, what)
}

fn json_response(status: StatusCode, body: &Value) -> Response {
    let bytes = serde_json::to_vec(body).unwrap_or_default();
    (status, [(header::CONTENT_TYPE, "application/json")], bytes).into_response()
}

/// A 200 whose body breaks off half-way: the "accepted, reply lost" case.
fn dropped_reply(body: &Value) -> Response {
    let bytes = serde_json::to_vec(body).unwrap_or_default();
    let half = Bytes::copy_from_slice(&bytes[..bytes.len() / 2]);
    let head = futures::stream::once(async move { Ok::<Bytes, std::io::Error>(half) });
    // The pause lets hyper flush the head and the first chunk before the
    // error aborts the connection, so the client sees headers, then a break.
    let tail = futures::stream::once(async {
        tokio::time::sleep(Duration::from_millis(5)).await;
        Err::<Bytes, std::io::Error>(std::io::Error::new(
            std::io::ErrorKind::ConnectionReset,
            "sandbox: reply dropped",
        ))
    });
    let mut resp = Response::new(Body::from_stream(futures::StreamExt::chain(head, tail)));
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    resp
}

/// A 200 with a truncated, unparseable JSON body.
fn malformed_reply(body: &Value) -> Response {
    let bytes = serde_json::to_vec(body).unwrap_or_default();
    let cut = bytes[..bytes.len() / 2].to_vec();
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "application/json")],
        cut,
    )
        .into_response()
}

enum PreFault {
    Timeout(Duration),
    Status(StatusCode),
    TooMany(Option<u64>),
}

/// Every API request: latency, faults, then the protocol handler.
async fn api(State(shared): State<Arc<Shared>>, req: Request) -> Response {
    let (parts, body) = req.into_parts();
    let Some(ep) = wire::route(shared.protocol, &parts.method, parts.uri.path()) else {
        return status_reply(shared.protocol, StatusCode::NOT_FOUND, "no such method");
    };
    let is_send = ep == Endpoint::Send;
    let (latency, fault) = {
        let mut g = shared.lock();
        if is_send {
            g.stats.send_requests += 1;
        }
        let f = g.faults.clone();
        let mut fault = None;
        if is_send || f.apply_to_tokens {
            if g.hit(f.timeout) {
                g.count_fault("timeout");
                fault = Some(PreFault::Timeout(f.hang));
            } else if g.hit(f.http_5xx) {
                g.count_fault("5xx");
                let code = [500, 502, 503][(g.rotate_5xx % 3) as usize];
                g.rotate_5xx += 1;
                fault = Some(PreFault::Status(
                    StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
                ));
            } else if g.hit(f.http_429) {
                g.count_fault("429");
                fault = Some(PreFault::TooMany(f.retry_after_secs));
            }
        }
        (g.latency, fault)
    };
    // Read the whole body first so the connection stays reusable.
    let bytes = match axum::body::to_bytes(body, MAX_BODY_BYTES).await {
        Ok(b) => b,
        Err(_) => Bytes::new(),
    };
    if !shared.latency(latency).await {
        return status_reply(
            shared.protocol,
            StatusCode::SERVICE_UNAVAILABLE,
            "shutting down",
        );
    }
    match fault {
        Some(PreFault::Timeout(hang)) => {
            shared.nap(hang).await;
            return status_reply(
                shared.protocol,
                StatusCode::GATEWAY_TIMEOUT,
                "upstream timed out",
            );
        }
        Some(PreFault::Status(status)) => {
            return status_reply(shared.protocol, status, "sandbox fault");
        }
        Some(PreFault::TooMany(retry_after)) => {
            let mut resp = status_reply(
                shared.protocol,
                StatusCode::TOO_MANY_REQUESTS,
                "rate limited",
            );
            if let Some(secs) = retry_after {
                resp.headers_mut()
                    .insert(header::RETRY_AFTER, HeaderValue::from(secs));
            }
            return resp;
        }
        None => {}
    }
    let call = Call {
        headers: &parts.headers,
        query: parts.uri.query(),
        body: &bytes,
    };
    let reply = wire::handle(&shared, ep, &call);
    if reply.accepted_send {
        let slow = {
            let mut g = shared.lock();
            let f = g.faults.clone();
            if g.hit(f.drop_reply) {
                g.count_fault("drop");
                return dropped_reply(&reply.body);
            }
            if g.hit(f.malformed) {
                g.count_fault("malformed");
                return malformed_reply(&reply.body);
            }
            let slow = g.hit(f.slow_reply);
            if slow {
                g.count_fault("slow");
            }
            slow.then_some(f.hang)
        };
        // The message is recorded before the nap: a client that gives up
        // cannot undo it.
        if let Some(hang) = slow {
            shared.nap(hang).await;
        }
    }
    json_response(reply.status, &reply.body)
}

#[derive(Deserialize)]
struct StatsQuery {
    detail: Option<String>,
}

async fn stats_endpoint(
    State(shared): State<Arc<Shared>>,
    Query(q): Query<StatsQuery>,
) -> Response {
    let detail = !matches!(q.detail.as_deref(), Some("false" | "0" | "no"));
    let stats = shared.lock().snapshot(detail);
    json_response(
        StatusCode::OK,
        &serde_json::to_value(stats).unwrap_or_default(),
    )
}

/// A control request, parsed by hand so unknown keys are refused.
#[derive(Default)]
struct Control {
    faults: Option<Map<String, Value>>,
    daily_quota: Option<u64>,
    latency_ms: Option<u64>,
    advance_days: Option<i64>,
    expire_tokens: bool,
}

fn parse_control(body: &[u8]) -> Result<Control, String> {
    let obj = if body.iter().all(u8::is_ascii_whitespace) {
        Map::new()
    } else {
        parse_object(body)?
    };
    let mut c = Control::default();
    for (k, v) in &obj {
        match k.as_str() {
            "faults" => match v {
                Value::Object(m) => c.faults = Some(m.clone()),
                _ => return Err("faults: expected an object".to_string()),
            },
            "daily_quota" => {
                c.daily_quota = Some(v.as_u64().ok_or("daily_quota: expected an integer ≥ 0")?)
            }
            "latency_ms" => {
                c.latency_ms = Some(v.as_u64().ok_or("latency_ms: expected an integer ≥ 0")?)
            }
            "advance_days" => {
                c.advance_days = Some(v.as_i64().ok_or("advance_days: expected an integer")?)
            }
            "expire_tokens" => {
                c.expire_tokens = v.as_bool().ok_or("expire_tokens: expected a boolean")?
            }
            other => return Err(format!("unknown control field `{other}`")),
        }
    }
    Ok(c)
}

async fn control_endpoint(State(shared): State<Arc<Shared>>, body: Bytes) -> Response {
    let bad = |msg: String| {
        json_response(
            StatusCode::BAD_REQUEST,
            &serde_json::json!({ "error": msg }),
        )
    };
    let c = match parse_control(&body) {
        Ok(c) => c,
        Err(e) => return bad(e),
    };
    let handle = SandboxHandle(shared.clone());
    if let Some(m) = &c.faults {
        let current = shared.lock().faults.clone();
        match merge_faults(current, m) {
            Ok(f) => handle.set_faults(f),
            Err(e) => return bad(e),
        }
    }
    if let Some(q) = c.daily_quota {
        handle.set_daily_quota(q);
    }
    if let Some(ms) = c.latency_ms {
        handle.set_latency(Duration::from_millis(ms));
    }
    if let Some(d) = c.advance_days {
        handle.advance_day(d);
    }
    if c.expire_tokens {
        handle.expire_tokens();
    }
    let stats = shared.lock().snapshot(false);
    json_response(
        StatusCode::OK,
        &serde_json::to_value(stats).unwrap_or_default(),
    )
}

fn router(shared: Arc<Shared>) -> Router {
    Router::new()
        .route("/__sandbox/stats", get(stats_endpoint))
        .route("/__sandbox/control", post(control_endpoint))
        .route("/__sandbox/health", get(|| async { "ok" }))
        .route("/v4/oa/permission", get(super::oauth::permission))
        .route("/v4/oa/access_token", post(super::oauth::access_token))
        .fallback(api)
        .with_state(shared)
}

pub(super) fn bind(listen: SocketAddr) -> std::io::Result<tokio::net::TcpListener> {
    let socket = if listen.is_ipv4() {
        tokio::net::TcpSocket::new_v4()?
    } else {
        tokio::net::TcpSocket::new_v6()?
    };
    // So a test can stop one sandbox and start another on the same port.
    socket.set_reuseaddr(true)?;
    socket.set_nodelay(true)?;
    socket.bind(listen)?;
    socket.listen(1024)
}

pub(super) fn serve(
    listener: tokio::net::TcpListener,
    shared: Arc<Shared>,
    mut stop_rx: watch::Receiver<bool>,
) -> JoinHandle<()> {
    let app = router(shared);
    tokio::spawn(async move {
        let serve = axum::serve(listener, app).with_graceful_shutdown(async move {
            let _ = stop_rx.wait_for(|stopping| *stopping).await;
        });
        if let Err(e) = serve.await {
            tracing::warn!("sandbox server stopped: {e}");
        }
    })
}
