//! Declared templates: the parameter limits a provider keeps for a template,
//! served by the template-info calls and enforced on send, so what a
//! client's pre-flight saves is measurable against the sandbox.
//!
//! A template id nobody declared is accepted without limits (as before), so
//! only tests and operators that declare one see the checks.

use crate::model::template_spec::char_len;
use serde_json::{json, Map, Value};

/// A template's review state, as Zalo names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TemplateStatus {
    Enable,
    PendingReview,
    Disable,
    Reject,
}

impl TemplateStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Enable => "ENABLE",
            Self::PendingReview => "PENDING_REVIEW",
            Self::Disable => "DISABLE",
            Self::Reject => "REJECT",
        }
    }

    fn parse(s: &str) -> Option<Self> {
        match s.trim().to_ascii_uppercase().replace('-', "_").as_str() {
            "ENABLE" | "ENABLED" => Some(Self::Enable),
            "PENDING_REVIEW" | "PENDING" => Some(Self::PendingReview),
            "DISABLE" | "DISABLED" => Some(Self::Disable),
            "REJECT" | "REJECTED" => Some(Self::Reject),
            _ => None,
        }
    }
}

/// A parameter's value type; NUMBER and DATE are checked on send.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ParamKind {
    String,
    Number,
    /// `dd/mm/yyyy`, as ZNS templates show dates.
    Date,
}

impl ParamKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::String => "STRING",
            Self::Number => "NUMBER",
            Self::Date => "DATE",
        }
    }

    fn parse(s: &str) -> Option<Self> {
        match s.trim().to_ascii_uppercase().as_str() {
            "STRING" | "TEXT" => Some(Self::String),
            "NUMBER" => Some(Self::Number),
            "DATE" => Some(Self::Date),
            _ => None,
        }
    }

    fn accepts(self, value: &str) -> bool {
        match self {
            Self::String => true,
            Self::Number => {
                let v = value.replace([',', '.'], "");
                !v.is_empty() && v.bytes().all(|b| b.is_ascii_digit())
            }
            Self::Date => {
                let parts: Vec<&str> = value.split('/').collect();
                parts.len() == 3
                    && [2, 2, 4]
                        .iter()
                        .zip(&parts)
                        .all(|(n, p)| p.len() == *n && p.bytes().all(|b| b.is_ascii_digit()))
            }
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TemplateParam {
    pub name: String,
    pub required: bool,
    pub kind: ParamKind,
    /// In characters after Unicode NFC.
    pub min_length: usize,
    pub max_length: usize,
    pub accept_null: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TemplateSpec {
    pub name: String,
    pub status: TemplateStatus,
    /// In template order (eSMS `Params` follow it).
    pub params: Vec<TemplateParam>,
}

/// Why a send's parameters were refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ParamViolation {
    TooLong(String),
    Missing(String),
    BadFormat(String),
}

impl ParamViolation {
    /// Zalo's code (eTelecom relays it).
    pub fn zalo_code(&self) -> i64 {
        match self {
            Self::TooLong(_) => -1121,
            Self::Missing(_) => -1122,
            Self::BadFormat(_) => -1124,
        }
    }

    pub fn message(&self) -> String {
        match self {
            Self::TooLong(p) => format!("parameter `{p}` is longer than the template allows"),
            Self::Missing(p) => format!("parameter `{p}` is missing"),
            Self::BadFormat(p) => format!("parameter `{p}` has an invalid format"),
        }
    }
}

impl TemplateParam {
    fn check(&self, value: Option<&str>) -> Result<(), ParamViolation> {
        let value = value.map(str::trim).unwrap_or("");
        if value.is_empty() {
            return if self.required && !self.accept_null {
                Err(ParamViolation::Missing(self.name.clone()))
            } else {
                Ok(())
            };
        }
        let len = char_len(value) as usize;
        if len > self.max_length {
            return Err(ParamViolation::TooLong(self.name.clone()));
        }
        if len < self.min_length || !self.kind.accepts(value) {
            return Err(ParamViolation::BadFormat(self.name.clone()));
        }
        Ok(())
    }
}

impl TemplateSpec {
    pub fn is_enabled(&self) -> bool {
        self.status == TemplateStatus::Enable
    }

    /// Zalo / eTelecom `template_data`: values by parameter name.
    pub fn check_named(&self, data: &Map<String, Value>) -> Result<(), ParamViolation> {
        for p in &self.params {
            p.check(data.get(&p.name).and_then(Value::as_str))?;
        }
        Ok(())
    }

    /// eSMS `Params`: values in template order.
    pub fn check_ordered(&self, values: &[String]) -> Result<(), ParamViolation> {
        for (i, p) in self.params.iter().enumerate() {
            p.check(values.get(i).map(String::as_str))?;
        }
        Ok(())
    }

    /// Zalo `GET /template/info/v2` `data`.
    pub fn zalo_info(&self, template_id: &str) -> Value {
        let params = self.params_json([
            "name",
            "require",
            "type",
            "maxLength",
            "minLength",
            "acceptNull",
        ]);
        json!({
            "templateId": template_id.parse::<i64>().map(Value::from).unwrap_or_else(|_| json!(template_id)),
            "templateName": self.name,
            "status": self.status.as_str(),
            "listParams": params,
            "listButtons": [],
            "timeout": 7_200_000,
            "previewUrl": format!("https://account.zalo.cloud/znspreview/{template_id}"),
            "templateQuality": "HIGH",
            "templateTag": "TRANSACTION",
            "price": "300",
        })
    }

    /// eSMS `GetZnsTemplateInfo` `ListParams`.
    pub fn esms_params(&self) -> Value {
        self.params_json([
            "Name",
            "Require",
            "Type",
            "MaxLength",
            "MinLength",
            "AcceptNull",
        ])
    }

    /// The parameters as a provider lists them: the same six fields under
    /// its spelling of name, require, type, maxLength, minLength, acceptNull.
    fn params_json(&self, keys: [&str; 6]) -> Value {
        self.params
            .iter()
            .map(|p| {
                let values = [
                    json!(p.name),
                    json!(p.required),
                    json!(p.kind.as_str()),
                    json!(p.max_length),
                    json!(p.min_length),
                    json!(p.accept_null),
                ];
                Value::Object(keys.iter().map(|k| k.to_string()).zip(values).collect())
            })
            .collect()
    }

    /// `--template ID[@STATUS]=PARAM,…` where PARAM is `name[?][:MIN-MAX][:TYPE]`
    /// (`?` = optional; default length 0-400, type STRING).
    /// Example: `217489=customer_name:1-30,amount:1-20:number,note?:0-50`.
    pub fn parse_flag(s: &str) -> Result<(String, TemplateSpec), String> {
        let example = "expected ID[@STATUS]=name:MIN-MAX,…, e.g. \
                       217489=customer_name:1-30,amount:1-20:number,note?:0-50";
        let (head, params) = s
            .split_once('=')
            .ok_or_else(|| format!("--template `{s}`: {example}"))?;
        let (id, status) = match head.split_once('@') {
            Some((id, st)) => (
                id.trim(),
                TemplateStatus::parse(st).ok_or_else(|| {
                    format!(
                        "--template `{s}`: status `{st}` is not one of \
                         ENABLE, PENDING_REVIEW, DISABLE, REJECT"
                    )
                })?,
            ),
            None => (head.trim(), TemplateStatus::Enable),
        };
        if id.is_empty() || !id.bytes().all(|b| b.is_ascii_digit()) {
            return Err(format!(
                "--template `{s}`: template id `{id}` is not a number; {example}"
            ));
        }
        let mut out = Vec::new();
        for item in params.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            out.push(parse_param(item).map_err(|e| format!("--template `{s}`: {e}; {example}"))?);
        }
        let spec = TemplateSpec {
            name: format!("Template {id}"),
            status,
            params: out,
        };
        Ok((id.to_string(), spec))
    }
}

fn parse_param(item: &str) -> Result<TemplateParam, String> {
    let mut parts = item.split(':');
    let raw_name = parts.next().unwrap_or("").trim();
    let (name, optional) = match raw_name.strip_suffix('?') {
        Some(n) => (n, true),
        None => (raw_name, false),
    };
    if name.is_empty() {
        return Err(format!("parameter `{item}` has no name"));
    }
    let (mut min, mut max, mut kind) = (0, 400, ParamKind::String);
    for part in parts {
        let part = part.trim();
        if let Some((lo, hi)) = part.split_once('-') {
            min = lo
                .trim()
                .parse()
                .map_err(|_| format!("`{item}`: `{part}` is not MIN-MAX"))?;
            max = hi
                .trim()
                .parse()
                .map_err(|_| format!("`{item}`: `{part}` is not MIN-MAX"))?;
            if min > max {
                return Err(format!("`{item}`: minimum {min} exceeds maximum {max}"));
            }
        } else {
            kind = ParamKind::parse(part).ok_or_else(|| {
                format!("`{item}`: `{part}` is neither MIN-MAX nor a type (string, number, date)")
            })?;
        }
    }
    Ok(TemplateParam {
        name: name.to_string(),
        required: !optional,
        kind,
        min_length: min,
        max_length: max,
        accept_null: optional,
    })
}
