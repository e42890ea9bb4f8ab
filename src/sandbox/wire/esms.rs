//! eSMS `SendZaloMessage_V4_post_json` with `IsJourney` (seed 004): keys in
//! the body, answers as `{"CodeResult": "...", "SMSID", "ErrorMessage"}`.
//! No token step: eSMS manages the journey from `OrderId`.

use axum::http::{Method, StatusCode};
use serde_json::{json, Map, Value};

use super::{
    check_declared, normalize_phone, parse_object, Call, Endpoint, Reply, TemplateRefusal,
};
use crate::sandbox::fate::{delivery_of, DELIVERY_DELAY};
use crate::sandbox::ids::{msg_id_of, rfc3339};
use crate::sandbox::state::{Admission, Message, Shared};

/// eSMS's documented maximum for RequestId.
const MAX_REQUEST_ID: usize = 50;

pub(crate) fn route(method: &Method, path: &str) -> Option<Endpoint> {
    // WCF paths are case-insensitive; the trailing slash is optional.
    let p = path.trim_end_matches('/').to_ascii_lowercase();
    let rest = p.strip_prefix("/mainservice.svc/json").unwrap_or(&p);
    match rest {
        "/sendzalomessage_v4_post_json" if method == Method::POST => Some(Endpoint::Send),
        "/zns/getquota" if method == Method::POST || method == Method::GET => Some(Endpoint::Quota),
        "/getznstemplateinfo" if method == Method::POST => Some(Endpoint::TemplateInfo),
        "/getzalomessagestatus" if method == Method::POST => Some(Endpoint::GetMessage),
        _ => None,
    }
}

fn code(code: &str, message: &str) -> Reply {
    Reply::ok(json!({ "CodeResult": code, "SMSID": "", "ErrorMessage": message }))
}

/// eSMS values are strings, but numbers and booleans are taken as their text.
fn text(obj: &Map<String, Value>, key: &str) -> Result<String, String> {
    match obj.get(key) {
        None | Some(Value::Null) => Ok(String::new()),
        Some(Value::String(s)) => Ok(s.trim().to_string()),
        Some(Value::Number(n)) => Ok(n.to_string()),
        Some(Value::Bool(b)) => Ok(b.to_string()),
        Some(_) => Err(format!("{key}: expected a string")),
    }
}

fn is_true(s: &str) -> bool {
    s == "1" || s.eq_ignore_ascii_case("true")
}

pub(crate) fn handle(shared: &Shared, ep: Endpoint, call: &Call<'_>) -> Reply {
    match ep {
        Endpoint::Send => send(shared, call),
        // A read's refusal is its reply too.
        Endpoint::Quota => quota(shared, call).unwrap_or_else(|refused| refused),
        Endpoint::TemplateInfo => template_info(shared, call).unwrap_or_else(|refused| refused),
        Endpoint::GetMessage => message_status(shared, call).unwrap_or_else(|refused| refused),
        _ => code("118", "unsupported message type"),
    }
}

const WRONG_KEYS: &str = "ApiKey or SecretKey is incorrect";

/// A read's JSON body, or its refusal (110).
fn decoded(body: &[u8]) -> Result<Map<String, Value>, Reply> {
    parse_object(body).map_err(|e| code("110", &e))
}

/// A read's keys, refused (101) with the read's own `refusal` text.
fn authorize(shared: &Shared, obj: &Map<String, Value>, refusal: &str) -> Result<(), Reply> {
    if authorized(shared, obj) {
        Ok(())
    } else {
        Err(code("101", refusal))
    }
}

/// A field a read cannot go without (110 when missing or empty).
fn required(obj: &Map<String, Value>, key: &str) -> Result<String, Reply> {
    match text(obj, key) {
        Ok(v) if !v.is_empty() => Ok(v),
        _ => Err(code("110", &format!("{key} is required"))),
    }
}

fn authorized(shared: &Shared, obj: &Map<String, Value>) -> bool {
    let ok = text(obj, "ApiKey").is_ok_and(|k| k == shared.api_key)
        && text(obj, "SecretKey").is_ok_and(|k| k == shared.secret_key);
    if !ok {
        shared.lock().stats.auth_failures += 1;
    }
    ok
}

struct SendFields {
    phone: String,
    temp_id: String,
    oa: String,
    request_id: String,
    sandbox: bool,
    /// Where this message's status callback goes ("" = the configured URL).
    callback_url: String,
    /// `Params` as text, in template order.
    params: Vec<String>,
}

fn fields(obj: &Map<String, Value>) -> Result<SendFields, String> {
    let phone = text(obj, "Phone")?;
    let temp_id = text(obj, "TempID")?;
    let oa = text(obj, "OAID")?;
    let request_id = text(obj, "RequestId")?;
    let order_id = text(obj, "OrderId")?;
    let is_journey = is_true(&text(obj, "IsJourney")?);
    let sandbox = is_true(&text(obj, "Sandbox")?);
    text(obj, "campaignid")?;
    let callback_url = text(obj, "CallbackUrl")?;
    let params = match obj.get("Params") {
        Some(Value::Array(items)) if items.iter().all(|v| v.is_string() || v.is_number()) => items
            .iter()
            .map(|v| match v {
                Value::String(s) => s.clone(),
                other => other.to_string(),
            })
            .collect(),
        None | Some(Value::Null) => return Err("Params is required".to_string()),
        Some(_) => return Err("Params: expected an array of strings".to_string()),
    };
    if phone.is_empty() {
        return Err("Phone is required".to_string());
    }
    if temp_id.is_empty() {
        return Err("TempID is required".to_string());
    }
    if oa.is_empty() {
        return Err("OAID is required".to_string());
    }
    if is_journey && order_id.is_empty() {
        return Err("OrderId is required for a journey message".to_string());
    }
    if request_id.chars().count() > MAX_REQUEST_ID {
        return Err(format!(
            "RequestId is longer than {MAX_REQUEST_ID} characters"
        ));
    }
    Ok(SendFields {
        phone,
        temp_id,
        oa,
        request_id,
        sandbox,
        callback_url,
        params,
    })
}

fn send(shared: &Shared, call: &Call<'_>) -> Reply {
    let obj = match parse_object(call.body) {
        Ok(o) => o,
        // Undecodable: what a WCF endpoint does with a body it cannot bind.
        Err(e) => {
            return Reply::with_status(
                StatusCode::BAD_REQUEST,
                json!({ "CodeResult": "210", "SMSID": "", "ErrorMessage": e }),
            )
        }
    };
    if !authorized(shared, &obj) {
        return code("101", WRONG_KEYS);
    }
    let f = match fields(&obj) {
        Ok(f) => f,
        Err(e) => return code("110", &e),
    };
    let mut g = shared.lock();
    g.count_send_attempt(&f.request_id);
    let Some(phone) = normalize_phone(&f.phone) else {
        return code("108", "phone number format is wrong");
    };
    if shared.is_unknown_phone(&phone) {
        return code("99", "phone number is blocked or not on Zalo");
    }
    // eSMS documents one code for bad request data (110), which covers a
    // template's parameters and a template that cannot be sent.
    if let Err(refusal) = check_declared(shared, &mut g, &f.temp_id, |spec| {
        spec.check_ordered(&f.params)
    }) {
        let msg = match refusal {
            TemplateRefusal::NotEnabled(st) => {
                format!(
                    "template {} is {} and cannot be sent",
                    f.temp_id,
                    st.as_str()
                )
            }
            TemplateRefusal::Params(v) => v.message(),
        };
        return code("110", &msg);
    }
    if f.sandbox {
        // Validate only: nothing sent, charged or counted.
        return code("100", "");
    }
    let msg = Message {
        oa: f.oa,
        journey: None,
        phone,
        template_id: f.temp_id.parse().unwrap_or(0),
        tracking_id: f.request_id,
        sent: g.now(),
        token_charged: false,
    };
    let quota = g.daily_quota;
    let admission = g.admit(shared.dedup, msg);
    if let Admission::New(n) = admission {
        let own = Some(f.callback_url.as_str()).filter(|u| !u.is_empty());
        shared.on_accepted(&mut g, n, own);
    }
    match admission {
        Admission::New(n) => Reply::accepted(
            json!({ "CodeResult": "100", "SMSID": msg_id_of(n), "ErrorMessage": "" }),
        ),
        Admission::Replay(n) => Reply::accepted(json!({
            "CodeResult": "124",
            "SMSID": msg_id_of(n),
            "ErrorMessage": "Duplicate RequestId",
        })),
        Admission::OverQuota => code(
            "103",
            &format!("OA has used its daily ZNS quota ({quota} messages per day)"),
        ),
    }
}

/// `application/x-www-form-urlencoded` pairs into a JSON object.
fn query_object(query: &str) -> Map<String, Value> {
    query
        .split('&')
        .filter_map(|pair| {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            (!k.is_empty()).then(|| (percent_decode(k), Value::String(percent_decode(v))))
        })
        .collect()
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let escaped = (bytes[i] == b'%')
            .then(|| bytes.get(i + 1..i + 3))
            .flatten()
            .and_then(|h| std::str::from_utf8(h).ok())
            .and_then(|h| u8::from_str_radix(h, 16).ok());
        match (bytes[i], escaped) {
            (_, Some(b)) => {
                out.push(b);
                i += 3;
            }
            (b'+', None) => {
                out.push(b' ');
                i += 1;
            }
            (b, None) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// `POST {base}/ZNS/GetQuota` with `{ApiKey, SecretKey, OAID}` (the query
/// string works too). Like template info, the request shape is our choice —
/// eSMS documents the name and `DailyQuota` / `RemainingQuota` only — and the
/// adapter sends exactly this. The numbers come from the sandbox's counter.
fn quota(shared: &Shared, call: &Call<'_>) -> Result<Reply, Reply> {
    let mut obj = call.query.map(query_object).unwrap_or_default();
    if !call.body.iter().all(u8::is_ascii_whitespace) {
        obj.extend(decoded(call.body)?);
    }
    authorize(shared, &obj, WRONG_KEYS)?;
    let oa = required(&obj, "OAID")?;
    let (remaining, daily) = shared.lock().quota_report(&oa);
    Ok(Reply::ok(json!({
        "CodeResult": "100",
        "DailyQuota": daily,
        "RemainingQuota": remaining,
        "ErrorMessage": "",
    })))
}

/// `POST {base}/GetZnsTemplateInfo` with `{ApiKey, SecretKey, OAID,
/// TemplateId}`. eSMS documents the name and the answer's fields, not the
/// request: this shape and path are our choice, and the eSMS adapter's
/// template pre-flight sends exactly this — change both together.
fn template_info(shared: &Shared, call: &Call<'_>) -> Result<Reply, Reply> {
    let obj = decoded(call.body)?;
    authorize(shared, &obj, WRONG_KEYS)?;
    required(&obj, "OAID")?;
    let id = text(&obj, "TemplateId").unwrap_or_default();
    Ok(match shared.templates.get(id.as_str()) {
        Some(spec) => Reply::ok(json!({
            "CodeResult": "100",
            "ListParams": spec.esms_params(),
            "Status": spec.status.as_str(),
            "ErrorMessage": "",
        })),
        // Nothing declared: any id is accepted on send, so described as
        // enabled with no parameter limits.
        None if shared.templates.is_empty() => Reply::ok(json!({
            "CodeResult": "100",
            "ListParams": [],
            "Status": "ENABLE",
            "ErrorMessage": "",
        })),
        None => code(
            "110",
            &format!("TemplateId `{id}` is not a template of this OA"),
        ),
    })
}

/// `GetZaloMessageStatus {ApiKey, SecretKey, OAID, MessageId}` →
/// `Data{delivery_time, message, status}`: 1 received, −1 failed, 0 not
/// yet known; the same verdict the callbacks carry. MessageId is the SMSID
/// (here equal to the Zalo msg id, `partnerids`).
fn message_status(shared: &Shared, call: &Call<'_>) -> Result<Reply, Reply> {
    let obj = decoded(call.body)?;
    authorize(shared, &obj, "Authorize Failed")?;
    let msg_id = required(&obj, "MessageId")?;
    let oa = text(&obj, "OAID").unwrap_or_default();
    let mut g = shared.lock();
    g.stats.get_message_calls += 1;
    let found = g
        .message_by_msg_id(&msg_id)
        .filter(|&n| oa.is_empty() || g.messages[n].oa == oa);
    let Some(n) = found else {
        return Err(code("99", "MessageId not found"));
    };
    let sent = g.messages[n].sent;
    let age = g.now() - sent;
    let (status, delivered) = delivery_of(n, age);
    let (code_value, message, time) = if delivered {
        let at = g.wire(sent + DELIVERY_DELAY);
        (1, "Success", rfc3339(at))
    } else if age >= DELIVERY_DELAY && status == "unknown" {
        (
            -1,
            "user inactive, refused ZNS, old app or internal reason",
            String::new(),
        )
    } else {
        (0, "Pending", String::new())
    };
    Ok(Reply::ok(json!({
        "CodeResult": "100",
        "ErrorMessage": "",
        "Data": { "delivery_time": time, "message": message, "status": code_value },
    })))
}

#[cfg(test)]
mod tests {
    use serde_json::{json, Value};

    use crate::sandbox::tests::{client, start};
    use crate::sandbox::{Faults, ProviderKind, Sandbox, SandboxConfig};

    fn cfg() -> SandboxConfig {
        SandboxConfig {
            protocol: ProviderKind::Esms,
            ..SandboxConfig::default()
        }
    }

    fn body(phone: &str, request_id: &str) -> Value {
        json!({
            "ApiKey": "sandbox-key", "SecretKey": "sandbox-secret",
            "Phone": phone, "Params": ["An", "12"], "TempID": "217489",
            "OAID": "4097311281936189049", "IsJourney": "true", "OrderId": "J-1",
            "campaignid": "c1", "RequestId": request_id, "CallbackUrl": "", "Sandbox": "0",
        })
    }

    async fn send(sb: &Sandbox, body: &Value) -> (u16, Value) {
        send_raw(sb, body.to_string()).await
    }

    /// A send with `body` as given, JSON or not.
    async fn send_raw(sb: &Sandbox, body: impl Into<reqwest::Body>) -> (u16, Value) {
        let resp = client()
            .post(format!("{}/SendZaloMessage_V4_post_json/", sb.base_url()))
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .expect("request");
        let s = resp.status().as_u16();
        (s, resp.json().await.unwrap_or(Value::Null))
    }

    #[tokio::test]
    async fn happy_path_and_quota_lookup() {
        let sb = start(cfg()).await;
        let (s, v) = send(&sb, &body("84987654321", "r-1")).await;
        assert_eq!((s, &v["CodeResult"]), (200, &json!("100")), "{v}");
        assert!(v["SMSID"].as_str().is_some_and(|id| !id.is_empty()));
        // Without the trailing slash too.
        let resp = client()
            .post(format!("{}/SendZaloMessage_V4_post_json", sb.base_url()))
            .json(&body("0987654321", "r-2"))
            .send()
            .await
            .expect("request");
        assert_eq!(
            resp.json::<Value>().await.unwrap_or(Value::Null)["CodeResult"],
            "100"
        );

        let q: Value = client()
            .get(format!(
                "{}/ZNS/GetQuota?ApiKey=sandbox-key&SecretKey=sandbox-secret&OAID=4097311281936189049",
                sb.base_url()
            ))
            .send()
            .await
            .expect("request")
            .json()
            .await
            .unwrap_or(Value::Null);
        assert_eq!(q["CodeResult"], "100");
        assert_eq!(q["RemainingQuota"], 500_000 - 2);
        let st = sb.stats();
        assert_eq!((st.accepted, st.tokens_created), (2, 0));
        assert_eq!(st.deliveries.get("r-1"), Some(&1));
        sb.stop().await;
    }

    #[tokio::test]
    async fn codes_for_bad_requests() {
        let sb = start(SandboxConfig {
            unknown_phone_suffixes: vec!["77".into()],
            ..cfg()
        })
        .await;
        let mut b = body("84987654321", "x");
        b["SecretKey"] = json!("wrong");
        assert_eq!(send(&sb, &b).await.1["CodeResult"], "101");
        let mut b = body("84987654321", "x");
        b["OrderId"] = json!("");
        assert_eq!(send(&sb, &b).await.1["CodeResult"], "110");
        b["IsJourney"] = json!("false");
        assert_eq!(send(&sb, &b).await.1["CodeResult"], "100");
        let b = body("84987654321", &"y".repeat(51));
        assert_eq!(send(&sb, &b).await.1["CodeResult"], "110");
        assert_eq!(send(&sb, &body("12345", "p")).await.1["CodeResult"], "108");
        assert_eq!(
            send(&sb, &body("84987654377", "u")).await.1["CodeResult"],
            "99"
        );
        let mut b = body("84987654321", "s");
        b["Sandbox"] = json!("1");
        assert_eq!(send(&sb, &b).await.1["CodeResult"], "100");
        let mut b = body("84987654321", "s2");
        b["Params"] = json!({"a": 1});
        assert_eq!(send(&sb, &b).await.1["CodeResult"], "110");

        // Garbage: HTTP 400 with 210, never a panic.
        for garbage in ["nope", "[1]", "\"str\"", ""] {
            let (s, v) = send_raw(&sb, garbage).await;
            assert_eq!((s, &v["CodeResult"]), (400, &json!("210")), "{garbage}");
        }
        let st = sb.stats();
        assert_eq!(st.accepted, 1, "only the non-journey send");
        assert_eq!(st.auth_failures, 1);
        assert!(!st.deliveries.contains_key("s"));
        sb.stop().await;
    }

    #[tokio::test]
    async fn dedup_124_and_no_dedup() {
        let sb = start(cfg()).await;
        let (_, a) = send(&sb, &body("84987654321", "r")).await;
        let (_, b) = send(&sb, &body("84987654321", "r")).await;
        assert_eq!(b["CodeResult"], "124");
        assert_eq!(a["SMSID"], b["SMSID"]);
        let st = sb.stats();
        assert_eq!((st.accepted, st.duplicates_absorbed), (1, 1));
        assert_eq!(st.deliveries.get("r"), Some(&1));
        assert_eq!(st.send_requests_per_tracking_id.get("r"), Some(&2));
        sb.stop().await;

        let sb = start(SandboxConfig {
            dedup: false,
            ..cfg()
        })
        .await;
        send(&sb, &body("84987654321", "r")).await;
        let (_, b) = send(&sb, &body("84987654321", "r")).await;
        assert_eq!(b["CodeResult"], "100");
        assert_eq!(sb.stats().deliveries.get("r"), Some(&2));
        sb.stop().await;
    }

    #[tokio::test]
    async fn quota_103_then_next_day() {
        let sb = start(SandboxConfig {
            daily_quota: 2,
            ..cfg()
        })
        .await;
        for r in ["a", "b"] {
            assert_eq!(
                send(&sb, &body("84987654321", r)).await.1["CodeResult"],
                "100"
            );
        }
        let (_, v) = send(&sb, &body("84987654321", "c")).await;
        assert_eq!(v["CodeResult"], "103");
        assert!(v["ErrorMessage"]
            .as_str()
            .is_some_and(|m| m.contains("daily")));
        // A replay of an accepted RequestId still answers 124 at the quota.
        assert_eq!(
            send(&sb, &body("84987654321", "a")).await.1["CodeResult"],
            "124"
        );
        sb.advance_day(1);
        assert_eq!(
            send(&sb, &body("84987654321", "c")).await.1["CodeResult"],
            "100"
        );
        assert_eq!(sb.stats().quota_rejections, 1);
        sb.stop().await;
    }

    #[tokio::test]
    async fn dropped_reply_is_accepted_but_broken() {
        let sb = start(SandboxConfig {
            faults: Faults {
                drop_reply: 1.0,
                ..Faults::default()
            },
            ..cfg()
        })
        .await;
        let res = client()
            .post(format!("{}/SendZaloMessage_V4_post_json/", sb.base_url()))
            .json(&body("84987654321", "lost"))
            .send()
            .await;
        let broken = match res {
            Err(_) => true,
            Ok(resp) => resp.bytes().await.is_err(),
        };
        assert!(broken, "the client must see a broken reply");
        assert_eq!(sb.stats().deliveries.get("lost"), Some(&1));
        sb.stop().await;
    }
}
