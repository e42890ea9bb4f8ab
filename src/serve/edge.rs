//! The network edge of `serve`: which `Host` names it answers (DNS
//! rebinding), the security headers every answer carries, and its own
//! accept loop, so that hyper's header-read timeout and a cap on open
//! connections apply (`axum::serve` offers neither).

use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{ConnectInfo, Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::Router;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::sync::Semaphore;
use tower::ServiceBuilder;
use tower_http::set_header::SetResponseHeaderLayer;
use tower_http::timeout::{RequestBodyTimeoutLayer, TimeoutLayer};

pub const DEFAULT_HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(60);
/// Generous: a million-row campaign's Check page takes seconds to count.
pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(60);
pub const DEFAULT_MAX_CONNECTIONS: usize = 1024;

/// No inline script or style anywhere in the console (its JS and CSS are
/// the embedded assets), and no framing.
pub const CSP: &str =
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
                       frame-ancestors 'none'; base-uri 'none'; form-action 'self'";

/// The `Host` names `serve` answers to, normalised (lower case, no port,
/// IPv6 in brackets).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AllowedHosts(Vec<String>);

impl AllowedHosts {
    /// `configured` (config `allowed_hosts`) if given, else the listen
    /// host and the loopback names; the host of `public_url` always (the
    /// providers' callbacks come to it).
    pub fn resolve(
        configured: Option<&[String]>,
        listen: SocketAddr,
        public_url: Option<&str>,
    ) -> Result<AllowedHosts, String> {
        let mut list = Vec::new();
        match configured {
            Some(given) => {
                for entry in given {
                    let host = normalise_entry(entry).ok_or_else(|| {
                        format!(
                            "allowed_hosts: `{entry}` is not a host name; give names like \
                             zns.example.vn or 10.0.0.5 (no scheme, no path)"
                        )
                    })?;
                    list.push(host);
                }
            }
            None => {
                list.push(ip_host(listen.ip()));
                list.extend(["localhost", "127.0.0.1", "[::1]"].map(String::from));
            }
        }
        if let Some(url) = public_url {
            let authority = url
                .split_once("://")
                .map_or(url, |(_, rest)| rest)
                .split(['/', '?', '#'])
                .next()
                .unwrap_or("");
            let authority = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
            let host = host_part(authority)
                .ok_or_else(|| format!("public_url `{url}` has no host name"))?;
            list.push(host);
        }
        list.sort();
        list.dedup();
        Ok(AllowedHosts(list))
    }

    pub fn names(&self) -> &[String] {
        &self.0
    }

    /// Whether a `Host` header value (with or without its port) is allowed.
    pub fn allows(&self, host_header: &str) -> bool {
        host_part(host_header).is_some_and(|h| self.0.contains(&h))
    }
}

fn ip_host(ip: IpAddr) -> String {
    match ip {
        IpAddr::V4(v4) => v4.to_string(),
        IpAddr::V6(v6) => format!("[{v6}]"),
    }
}

/// A configured entry: a `Host` value, or a bare IPv6 address.
fn normalise_entry(entry: &str) -> Option<String> {
    let entry = entry.trim();
    if let Ok(ip) = entry.parse::<IpAddr>() {
        return Some(ip_host(ip));
    }
    host_part(entry)
}

/// The host of a `Host` header value, without its port: lower case, no
/// trailing dot, IPv6 in brackets. `None` when it is not one.
pub fn host_part(value: &str) -> Option<String> {
    let value = value.trim();
    let (host, port) = if let Some(rest) = value.strip_prefix('[') {
        let (inside, after) = rest.split_once(']')?;
        inside.parse::<std::net::Ipv6Addr>().ok()?;
        let port = match after {
            "" => None,
            p => Some(p.strip_prefix(':')?),
        };
        (format!("[{}]", inside.to_ascii_lowercase()), port)
    } else {
        let (host, port) = match value.split_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (value, None),
        };
        (host.trim_end_matches('.').to_ascii_lowercase(), port)
    };
    if port.is_some_and(|p| p.is_empty() || !p.bytes().all(|b| b.is_ascii_digit())) {
        return None;
    }
    let valid = host.starts_with('[')
        || (!host.is_empty()
            && host
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.'));
    valid.then_some(host)
}

/// Every route but `/healthz`: a `Host` not in the list gets 421, so a
/// page on a rebound DNS name cannot reach the console through a browser.
pub async fn allowed_hosts_only(
    State(hosts): State<Arc<AllowedHosts>>,
    req: Request,
    next: Next,
) -> Response {
    // An absolute-form target carries the host; otherwise the header does.
    let given = req
        .uri()
        .authority()
        .map(|a| a.as_str().to_string())
        .or_else(|| {
            req.headers()
                .get(header::HOST)
                .and_then(|v| v.to_str().ok())
                .map(str::to_string)
        })
        .unwrap_or_default();
    if hosts.allows(&given) {
        return next.run(req).await;
    }
    tracing::info!(
        "refused a request for host `{}` (not in allowed_hosts): 421",
        given.escape_default()
    );
    (
        StatusCode::MISDIRECTED_REQUEST,
        axum::Json(serde_json::json!({
            "error": "this server does not answer to that host name (allowed_hosts)"
        })),
    )
        .into_response()
}

/// The security headers, on every answer (pages, API, errors, 404s).
pub fn security_headers<S: Clone + Send + Sync + 'static>(router: Router<S>) -> Router<S> {
    let set = |name, value: &'static str| {
        SetResponseHeaderLayer::overriding(name, HeaderValue::from_static(value))
    };
    router
        .layer(set(header::CONTENT_SECURITY_POLICY, CSP))
        .layer(set(header::X_FRAME_OPTIONS, "DENY"))
        .layer(set(header::X_CONTENT_TYPE_OPTIONS, "nosniff"))
        .layer(set(header::REFERRER_POLICY, "same-origin"))
}

/// 408 when a request is not answered in time. Put on routes whose answer
/// comes at the end of the work; a streamed body (report, live events)
/// is not timed past its first byte, and uploads are left out (their
/// size cap and [`Limits::idle_timeout`] bound them).
pub fn request_timeout(limit: Duration) -> TimeoutLayer {
    TimeoutLayer::with_status_code(StatusCode::REQUEST_TIMEOUT, limit)
}

/// How long clients may take, and how many may be connected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// A request head (first line and headers) must arrive within this.
    /// hyper starts this clock whenever it waits for a request, so it also
    /// closes a kept-alive connection that sends no next request in time.
    pub header_read_timeout: Duration,
    /// A request body that sends nothing for this long is cut.
    pub idle_timeout: Duration,
    /// See [`request_timeout`].
    pub request_timeout: Duration,
    pub max_connections: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            header_read_timeout: DEFAULT_HEADER_READ_TIMEOUT,
            idle_timeout: DEFAULT_IDLE_TIMEOUT,
            request_timeout: DEFAULT_REQUEST_TIMEOUT,
            max_connections: DEFAULT_MAX_CONNECTIONS,
        }
    }
}

/// Accept and serve HTTP/1 connections until `shutdown` completes, then
/// let the requests in flight finish. At `max_connections` open, no more
/// are accepted: new clients wait in the listen backlog until one closes.
pub async fn serve(
    listener: tokio::net::TcpListener,
    app: Router,
    limits: Limits,
    shutdown: impl Future<Output = ()>,
) {
    let slots = Arc::new(Semaphore::new(limits.max_connections.max(1)));
    let graceful = GracefulShutdown::new();
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout)
        .keep_alive(true);
    tokio::pin!(shutdown);
    loop {
        let permit = tokio::select! {
            p = slots.clone().acquire_owned() => match p {
                Ok(p) => p,
                Err(_) => break,
            },
            () = &mut shutdown => break,
        };
        let (stream, peer) = tokio::select! {
            r = listener.accept() => match r {
                Ok(c) => c,
                Err(e) => {
                    // Out of file descriptors and the like: pause, as
                    // axum::serve does, rather than spin.
                    tracing::warn!("accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let service = ServiceBuilder::new()
            .layer(RequestBodyTimeoutLayer::new(limits.idle_timeout))
            .map_request(move |mut req: Request<_>| {
                // What `into_make_service_with_connect_info` gives handlers.
                req.extensions_mut().insert(ConnectInfo(peer));
                req
            })
            .service(app.clone());
        let conn = http.serve_connection(TokioIo::new(stream), TowerToHyperService::new(service));
        let conn = graceful.watch(conn);
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                tracing::debug!("connection from {peer} ended: {e}");
            }
            drop(permit);
        });
    }
    drop(listener);
    graceful.shutdown().await;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hosts(configured: Option<&[&str]>, listen: &str, public: Option<&str>) -> AllowedHosts {
        let c: Option<Vec<String>> = configured.map(|l| l.iter().map(|s| s.to_string()).collect());
        AllowedHosts::resolve(c.as_deref(), listen.parse().unwrap(), public).unwrap()
    }

    #[test]
    fn the_default_list_and_ports() {
        let h = hosts(
            None,
            "127.0.0.1:8080",
            Some("https://ZNS.example.vn/prefix"),
        );
        for ok in [
            "127.0.0.1",
            "127.0.0.1:8080",
            "localhost:9",
            "LOCALHOST",
            "[::1]:8080",
            "[::1]",
            "zns.example.vn",
            "zns.example.vn.:443",
        ] {
            assert!(h.allows(ok), "{ok}");
        }
        for bad in [
            "attacker.example",
            "attacker.example:8080",
            "",
            "127.0.0.1:80:80",
            "127.0.0.1:",
            "localhost.attacker.example",
            "[::2]",
            "::1",
        ] {
            assert!(!h.allows(bad), "{bad}");
        }
        let v6 = hosts(None, "[::1]:0", None);
        assert!(v6.allows("[::1]:5"));
    }

    #[test]
    fn a_configured_list_replaces_the_default_but_keeps_public_url() {
        let h = hosts(
            Some(&["zns.internal", "10.0.0.5:8080", "::1"]),
            "0.0.0.0:8080",
            Some("https://user@hooks.example.vn:8443"),
        );
        assert_eq!(
            h.names(),
            ["10.0.0.5", "[::1]", "hooks.example.vn", "zns.internal"]
        );
        assert!(!h.allows("localhost"));
        let bad = AllowedHosts::resolve(
            Some(&["https://zns.example.vn/".to_string()]),
            "127.0.0.1:1".parse().unwrap(),
            None,
        );
        assert!(bad.unwrap_err().contains("https://zns.example.vn/"));
    }
}
