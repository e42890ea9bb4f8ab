//! Hostile provider replies: every adapter's decoder gets garbage, truncated
//! JSON, wrong types, huge bodies and raw non-HTTP bytes from a loopback
//! server. Each call must end — never a panic, never a hang — in a success
//! or a classified error; a garbled 2xx to a send is "in doubt"; a key the
//! reply echoes back never shows in the error.

use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use proptest::prelude::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use zns_batch::provider::{
    self, ErrorClass, JourneyToken, Provider, ProviderKind, ProviderSettings, Secret, SendRequest,
    TokenRequest,
};

const KEY: &str = "fuzz-key-DO-NOT-LEAK-55aa";
const SECRET: &str = "fuzz-secret-DO-NOT-LEAK-77bb";

/// What the server answers next: raw bytes written to the socket as is.
type Slot = Arc<Mutex<Vec<u8>>>;

struct Harness {
    rt: tokio::runtime::Runtime,
    slot: Slot,
    providers: Vec<(ProviderKind, Arc<dyn Provider>)>,
}

fn harness() -> &'static Harness {
    static H: OnceLock<Harness> = OnceLock::new();
    H.get_or_init(|| {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("runtime");
        let slot: Slot = Arc::new(Mutex::new(Vec::new()));
        let listener = rt
            .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let s = slot.clone();
        rt.spawn(async move {
            loop {
                let Ok((mut sock, _)) = listener.accept().await else {
                    return;
                };
                let reply = s.lock().map(|r| r.clone()).unwrap_or_default();
                tokio::spawn(async move {
                    // Read the request head and body (Content-Length), then answer.
                    let mut buf = Vec::new();
                    let mut chunk = [0u8; 4096];
                    loop {
                        let Ok(n) = sock.read(&mut chunk).await else {
                            return;
                        };
                        if n == 0 {
                            return;
                        }
                        buf.extend_from_slice(&chunk[..n]);
                        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                            let head = String::from_utf8_lossy(&buf[..end]).to_lowercase();
                            let len = head
                                .lines()
                                .find_map(|l| l.strip_prefix("content-length:"))
                                .and_then(|v| v.trim().parse::<usize>().ok())
                                .unwrap_or(0);
                            if buf.len() >= end + 4 + len {
                                break;
                            }
                        }
                    }
                    let _ = sock.write_all(&reply).await;
                    let _ = sock.shutdown().await;
                });
            }
        });
        let providers = [
            ProviderKind::Etelecom,
            ProviderKind::Zalo,
            ProviderKind::Esms,
        ]
        .into_iter()
        .map(|kind| {
            let base = match kind {
                ProviderKind::Esms => format!("http://{addr}/MainService.svc/json"),
                ProviderKind::Zalo => format!("http://{addr}"),
                _ => format!("http://{addr}/v1/shop"),
            };
            let p = provider::build(
                ProviderSettings::new(kind, base, Secret::new(KEY))
                    .with_secret_key(Some(Secret::new(SECRET)))
                    .with_timeout(Duration::from_secs(2)),
            )
            .expect("adapter");
            (kind, p)
        })
        .collect();
        Harness {
            rt,
            slot,
            providers,
        }
    })
}

/// A full HTTP/1.1 response around `body`.
fn http(status: u16, headers: &str, body: &[u8]) -> Vec<u8> {
    let mut out = format!(
        "HTTP/1.1 {status} X\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n{headers}\r\n",
        body.len()
    )
    .into_bytes();
    out.extend_from_slice(body);
    out
}

/// JSON-ish bodies: real reply shapes cut short, wrong types, the key echoed.
fn body() -> impl Strategy<Value = Vec<u8>> {
    let shapes = prop_oneof![
        Just(r#"{"error_code":0,"msg_id":"m1","id":"5","tracking_id":"t"}"#.to_string()),
        Just(r#"{"error":0,"message":"Success","data":{"msg_id":"m","quota":{"remainingQuota":"4","dailyQuota":"5"}}}"#.to_string()),
        Just(r#"{"CodeResult":"100","SMSID":"abc","ErrorMessage":""}"#.to_string()),
        Just(r#"{"error_code":-118,"error_message":"no"}"#.to_string()),
        Just(r#"{"error":-124,"message":"token invalid"}"#.to_string()),
        Just(r#"{"CodeResult":"124"}"#.to_string()),
        Just(r#"{"code":"unauthenticated","msg":"bad"}"#.to_string()),
        Just(r#"{"error_code":"-144x","msg_id":{"a":[1,2]},"id":true}"#.to_string()),
        Just(r#"{"error":1e400,"data":null}"#.to_string()),
        Just(r#"{"CodeResult":100.5,"SMSID":[]}"#.to_string()),
        Just(format!(r#"{{"error_code":-999,"error_message":"key {KEY} secret {SECRET}"}}"#)),
        Just(format!(r#"{{"code":"internal","msg":"Bearer {KEY}"}}"#)),
        Just(format!(r#"{{"error":-1,"message":"{KEY}"}}"#)),
        Just(format!(r#"{{"CodeResult":"999","ErrorMessage":"{KEY}/{SECRET}"}}"#)),
        Just("[]".to_string()),
        Just("null".to_string()),
        Just("<html>502</html>".to_string()),
        ".{0,60}",
    ];
    (shapes, 0..100usize, any::<bool>()).prop_map(|(s, cut, truncate)| {
        let b = s.into_bytes();
        if truncate && !b.is_empty() {
            b[..cut % b.len()].to_vec()
        } else {
            b
        }
    })
}

fn response() -> impl Strategy<Value = Vec<u8>> {
    let status = prop_oneof![
        Just(200u16),
        Just(200),
        Just(201),
        Just(400),
        Just(401),
        Just(404),
        Just(429),
        Just(500),
        Just(502),
        Just(503),
        Just(504),
        100u16..600
    ];
    let headers = prop_oneof![
        Just(String::new()),
        Just("retry-after: 1\r\n".to_string()),
        Just("retry-after: soon\r\n".to_string()),
        Just("retry-after: 99999999999999\r\n".to_string()),
    ];
    prop_oneof![
        8 => (status, headers, body()).prop_map(|(s, h, b)| http(s, &h, &b)),
        // A body shorter than its Content-Length: the connection closes early.
        1 => body().prop_map(|b| {
            let mut r = http(200, "", &b);
            let cut = r.len().saturating_sub(b.len() / 2 + 1);
            r.truncate(cut.max(1));
            r
        }),
        // Not HTTP at all.
        1 => prop::collection::vec(any::<u8>(), 0..300),
    ]
}

fn token() -> JourneyToken {
    JourneyToken {
        journey_id: "7000000001".into(),
        provider_ref: None,
        token: Some("tok".into()),
        expires_at: time::OffsetDateTime::now_utc() + time::Duration::days(1),
        status: None,
    }
}

/// One send of one row, the same for every adapter.
fn send_request(token: &JourneyToken) -> SendRequest<'_> {
    SendRequest {
        oa_id: "1",
        phone: "84912345678",
        template_id: "1",
        template_data: &[("name", "An")],
        tracking_id: "t-1",
        token: Some(token),
        campaign: "c",
    }
}

/// Drive every call of every adapter against `raw` and check the verdicts.
fn check(raw: &[u8]) -> Result<(), TestCaseError> {
    let h = harness();
    *h.slot.lock().expect("slot") = raw.to_vec();
    let ok_2xx_garbage = raw.starts_with(b"HTTP/1.1 2")
        && raw
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .map(|i| serde_json::from_slice::<serde_json::Value>(&raw[i + 4..]).is_err())
            .unwrap_or(false);
    for (kind, p) in &h.providers {
        let tok = token();
        let req = send_request(&tok);
        let limit = Duration::from_secs(10);
        let send =
            h.rt.block_on(async { tokio::time::timeout(limit, p.send(&req)).await })
                .map_err(|_| TestCaseError::fail(format!("{kind}: send hung")))?;
        let mut errors = Vec::new();
        match send {
            Ok(_) => {}
            Err(e) => {
                if ok_2xx_garbage {
                    prop_assert!(e.in_doubt, "{kind}: a garbled 2xx must be in doubt: {e:?}");
                }
                errors.push(e);
            }
        }
        if *kind != ProviderKind::Esms {
            let t = TokenRequest {
                oa_id: "1",
                phone: "84912345678",
                token_type: "token_logistics_7",
            };
            let r =
                h.rt.block_on(async { tokio::time::timeout(limit, p.create_token(&t)).await })
                    .map_err(|_| TestCaseError::fail(format!("{kind}: create_token hung")))?;
            if let Err(e) = r {
                errors.push(e);
            }
            let r = h
                .rt
                .block_on(async { tokio::time::timeout(limit, p.check_token("1", &tok)).await })
                .map_err(|_| TestCaseError::fail(format!("{kind}: check_token hung")))?;
            if let Err(e) = r {
                errors.push(e);
            }
        }
        for e in errors {
            prop_assert!(!e.code.is_empty(), "{kind}: error without a code: {e:?}");
            for s in [KEY, SECRET] {
                prop_assert!(
                    !e.message.contains(s) && !e.code.contains(s),
                    "{kind}: the key leaked into an error: {e:?}"
                );
            }
            prop_assert!(e.message.len() < 4096, "{kind}: unbounded message");
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    #[test]
    fn garbage_replies_are_classified_never_a_panic(raw in response()) {
        check(&raw)?;
    }
}

/// A reply bigger than any real one is refused, not buffered without end.
#[test]
fn a_huge_reply_is_a_classified_error() {
    let mut body = br#"{"error_code":0,"msg_id":""#.to_vec();
    body.extend(std::iter::repeat_n(b'a', 3 << 20));
    body.extend_from_slice(br#""}"#);
    let raw = http(200, "", &body);
    let h = harness();
    *h.slot.lock().expect("slot") = raw;
    for (kind, p) in &h.providers {
        let tok = token();
        let req = send_request(&tok);
        let e =
            h.rt.block_on(p.send(&req))
                .expect_err("a 3 MB reply is refused");
        assert_eq!(e.class, ErrorClass::Retry, "{kind}: {e:?}");
        assert!(
            e.in_doubt,
            "{kind}: a 2xx we could not read is in doubt: {e:?}"
        );
    }
}
