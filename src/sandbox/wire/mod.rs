//! Request helpers shared by the protocol modules, and the per-protocol
//! dispatch.

pub(crate) mod esms;
pub(crate) mod etelecom;
pub(crate) mod zalo;

use axum::http::{HeaderMap, Method, StatusCode};
use serde_json::{Map, Value};

use super::state::{Inner, Shared};
use super::templates::{ParamViolation, TemplateSpec, TemplateStatus};
use super::ProviderKind;

/// A declared template refused a send.
pub(crate) enum TemplateRefusal {
    /// Not a template of this OA (see `SandboxConfig::known_templates`).
    Unknown,
    NotEnabled(TemplateStatus),
    Params(ParamViolation),
}

/// Apply a declared template's status and limits to a send; an undeclared
/// template passes. Counts refusals in the stats.
pub(crate) fn check_declared(
    shared: &Shared,
    g: &mut Inner,
    template_id: &str,
    check: impl FnOnce(&TemplateSpec) -> Result<(), ParamViolation>,
) -> Result<(), TemplateRefusal> {
    let Some(spec) = shared.templates.get(template_id.trim()) else {
        if shared.template_exists(template_id) {
            return Ok(());
        }
        g.stats.unknown_template_rejections += 1;
        return Err(TemplateRefusal::Unknown);
    };
    let verdict = if spec.is_enabled() {
        check(spec).map_err(TemplateRefusal::Params)
    } else {
        Err(TemplateRefusal::NotEnabled(spec.status))
    };
    if verdict.is_err() {
        g.stats.param_rejections += 1;
    }
    verdict
}

/// Zalo's code for a template that may not be sent (not ENABLE). The
/// public table has no dedicated code; -117 ("OA or app has no permission
/// for this template") is what Zalo answers for a template one cannot use,
/// and clients already treat it as abort-campaign.
pub(crate) const ZALO_TEMPLATE_NOT_USABLE: i64 = -117;

impl TemplateRefusal {
    /// Zalo's code and message (eTelecom relays the same).
    pub(crate) fn zalo(&self) -> (i64, String) {
        match self {
            // Zalo's "template id invalid": clients stop the campaign.
            Self::Unknown => (-109, "template id is invalid".to_string()),
            Self::NotEnabled(st) => (
                ZALO_TEMPLATE_NOT_USABLE,
                format!("template is {} and cannot be sent", st.as_str()),
            ),
            Self::Params(v) => (v.zalo_code(), v.message()),
        }
    }
}

/// The part of an API call a protocol handler needs.
pub(crate) struct Call<'a> {
    pub headers: &'a HeaderMap,
    pub query: Option<&'a str>,
    pub body: &'a [u8],
}

/// Which operation a request is; decides which faults may hit it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Endpoint {
    CreateToken,
    CheckToken,
    Send,
    GetMessage,
    Quota,
    TemplateInfo,
}

/// A protocol handler's answer.
pub(crate) struct Reply {
    pub status: StatusCode,
    pub body: Value,
    /// A send accepted (new or replayed): drop/malformed faults may hit it.
    pub accepted_send: bool,
}

impl Reply {
    pub fn ok(body: Value) -> Self {
        Self {
            status: StatusCode::OK,
            body,
            accepted_send: false,
        }
    }

    pub fn with_status(status: StatusCode, body: Value) -> Self {
        Self {
            status,
            body,
            accepted_send: false,
        }
    }

    pub fn accepted(body: Value) -> Self {
        Self {
            status: StatusCode::OK,
            body,
            accepted_send: true,
        }
    }
}

pub(crate) fn parse_object(body: &[u8]) -> Result<Map<String, Value>, String> {
    match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(m)) => Ok(m),
        Ok(_) => Err("request body must be a JSON object".to_string()),
        Err(e) => Err(format!("request body is not JSON: {e}")),
    }
}

/// An int64 given as a JSON number or a numeric string (protobuf JSON).
pub(crate) fn int64_field(obj: &Map<String, Value>, key: &str) -> Result<Option<u64>, String> {
    match obj.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Number(n)) => n
            .as_u64()
            .map(Some)
            .ok_or_else(|| format!("{key}: not a non-negative integer")),
        Some(Value::String(s)) if s.trim().is_empty() => Ok(None),
        Some(Value::String(s)) => s
            .trim()
            .parse::<u64>()
            .map(Some)
            .map_err(|_| format!("{key}: `{s}` is not an integer")),
        Some(_) => Err(format!("{key}: expected an integer or a numeric string")),
    }
}

pub(crate) fn string_field(obj: &Map<String, Value>, key: &str) -> Result<Option<String>, String> {
    match obj.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(_) => Err(format!("{key}: expected a string")),
    }
}

/// A template id as a number or numeric string.
pub(crate) fn template_id_field(obj: &Map<String, Value>, key: &str) -> Result<i64, String> {
    match obj.get(key) {
        Some(Value::Number(n)) => n
            .as_i64()
            .filter(|n| *n > 0)
            .ok_or_else(|| format!("{key}: not a positive integer")),
        Some(Value::String(s)) => s
            .trim()
            .parse::<i64>()
            .ok()
            .filter(|n| *n > 0)
            .ok_or_else(|| format!("{key}: `{s}` is not a positive integer")),
        None | Some(Value::Null) => Err(format!("{key} is required")),
        Some(_) => Err(format!("{key}: expected an integer")),
    }
}

/// Zalo's rules for template_data: a non-empty object of strings.
/// Err carries Zalo's code: -111 empty, -112 invalid.
pub(crate) fn check_template_data(v: Option<&Value>) -> Result<(), (i64, &'static str)> {
    match v {
        None | Some(Value::Null) => Err((-111, "template data is empty")),
        Some(Value::Object(m)) if m.is_empty() => Err((-111, "template data is empty")),
        Some(Value::Object(m)) if m.values().all(Value::is_string) => Ok(()),
        Some(_) => Err((
            -112,
            "template data is invalid: expected an object of strings",
        )),
    }
}

/// A Zalo-style send's `template_data` (eTelecom relays Zalo's checks):
/// its shape, then a declared template's status and parameters. Err:
/// Zalo's code and message.
pub(crate) fn check_zalo_send_data(
    shared: &Shared,
    g: &mut Inner,
    template_id: &str,
    obj: &Map<String, Value>,
) -> Result<(), (i64, String)> {
    check_template_data(obj.get("template_data")).map_err(|(code, msg)| (code, msg.to_string()))?;
    let data = obj
        .get("template_data")
        .and_then(Value::as_object)
        .cloned()
        .unwrap_or_default();
    check_declared(shared, g, template_id, |spec| spec.check_named(&data))
        .map_err(|refusal| refusal.zalo())
}

/// `84xxxxxxxxx` (also `0xxxxxxxxx` and `+84…`) → `84…`; None if not a phone.
pub(crate) fn normalize_phone(raw: &str) -> Option<String> {
    let p = raw.trim();
    let p = p.strip_prefix('+').unwrap_or(p);
    if p.is_empty() || !p.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    if p.starts_with("84") && (11..=12).contains(&p.len()) {
        Some(p.to_string())
    } else if p.starts_with('0') && (10..=11).contains(&p.len()) {
        Some(format!("84{}", &p[1..]))
    } else {
        None
    }
}

pub(crate) fn header_str<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
}

// ---------------------------------------------------------------------------
// Server

/// Per-protocol routing: which API operation a method and path name.
pub(crate) fn route(protocol: ProviderKind, method: &Method, path: &str) -> Option<Endpoint> {
    match protocol.protocol() {
        ProviderKind::Zalo => zalo::route(method, path),
        ProviderKind::Esms => esms::route(method, path),
        _ => etelecom::route(method, path),
    }
}

pub(crate) fn handle(shared: &Shared, ep: Endpoint, call: &Call<'_>) -> Reply {
    match shared.protocol.protocol() {
        ProviderKind::Zalo => zalo::handle(shared, ep, call),
        ProviderKind::Esms => esms::handle(shared, ep, call),
        _ => etelecom::handle(shared, ep, call),
    }
}
