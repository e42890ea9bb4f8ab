//! A ZNS template as the provider describes it (issue 14, template
//! pre-flight): its status and the parameters a send must fill.
//!
//! Zalo (`template/info/v2`, `data.listParams[]`) and eSMS
//! (`GetZnsTemplateInfo`, `ListParams[]`) describe parameters with the same
//! six fields, camelCase at Zalo, PascalCase at eSMS; one wire type reads both.

use serde::Deserialize;

use super::http::lenient;

/// The template's status and parameters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TemplateInfo {
    pub template_id: String,
    /// The provider's status text (`ENABLE`, `PENDING_REVIEW`, `REJECT`,
    /// `DISABLE`, …), shown as is when the template cannot be sent.
    pub status_raw: String,
    /// Only an enabled template may be sent.
    pub enabled: bool,
    pub params: Vec<TemplateParam>,
}

/// One parameter a send fills (`template_data` key / eSMS `Params` slot).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TemplateParam {
    pub name: String,
    pub required: bool,
    /// The provider's type name (`STRING`, `NUMBER`, `DATE`, …), as given.
    pub kind: String,
    pub min_length: Option<u32>,
    pub max_length: Option<u32>,
    /// An empty value is allowed.
    pub accept_null: bool,
}

#[cfg(test)]
impl TemplateParam {
    /// A parameter with both length limits: the tests' expected values.
    pub(crate) fn bounded(
        name: &str,
        required: bool,
        kind: &str,
        min_length: u32,
        max_length: u32,
        accept_null: bool,
    ) -> Self {
        Self {
            name: name.into(),
            required,
            kind: kind.into(),
            min_length: Some(min_length),
            max_length: Some(max_length),
            accept_null,
        }
    }
}

/// The one sendable status (Zalo: "only ENABLE templates can be sent"; eSMS
/// relays Zalo's templates, so the same word).
const ENABLED: &str = "ENABLE";

impl TemplateInfo {
    /// `status: None` (the reply has no status field) says nothing against
    /// sending, so it counts as enabled; any status but `ENABLE` does not.
    pub(super) fn from_wire(
        template_id: &str,
        status: Option<String>,
        params: Vec<WireParam>,
    ) -> Self {
        let status_raw = status.unwrap_or_default();
        let enabled = status_raw.is_empty() || status_raw.trim().eq_ignore_ascii_case(ENABLED);
        Self {
            template_id: template_id.to_string(),
            status_raw,
            enabled,
            params: params.into_iter().map(WireParam::into_param).collect(),
        }
    }
}

/// A parameter as either provider sends it: camelCase names at Zalo,
/// PascalCase at eSMS (the aliases); any field may be missing, and numbers
/// and booleans may come as strings.
#[derive(Debug, Default, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub(super) struct WireParam {
    #[serde(alias = "Name", deserialize_with = "lenient::opt_string")]
    name: Option<String>,
    #[serde(alias = "Require", deserialize_with = "lenient::opt_bool")]
    require: Option<bool>,
    #[serde(
        rename = "type",
        alias = "Type",
        deserialize_with = "lenient::opt_string"
    )]
    kind: Option<String>,
    #[serde(alias = "MinLength", deserialize_with = "lenient::opt_u64")]
    min_length: Option<u64>,
    #[serde(alias = "MaxLength", deserialize_with = "lenient::opt_u64")]
    max_length: Option<u64>,
    #[serde(alias = "AcceptNull", deserialize_with = "lenient::opt_bool")]
    accept_null: Option<bool>,
}

impl WireParam {
    fn into_param(self) -> TemplateParam {
        // A limit past u32 limits nothing a ZNS parameter can hold.
        let limit = |n: Option<u64>| n.and_then(|n| u32::try_from(n).ok());
        TemplateParam {
            name: self.name.unwrap_or_default(),
            // Unstated: the safe reading for a pre-flight is "required" and
            // "no empty value", which only ever rejects before money is spent.
            required: self.require.unwrap_or(true),
            kind: self.kind.unwrap_or_default(),
            min_length: limit(self.min_length),
            max_length: limit(self.max_length),
            accept_null: self.accept_null.unwrap_or(false),
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn params(v: serde_json::Value) -> Vec<WireParam> {
        serde_json::from_value(v).unwrap()
    }

    /// Template 217489 as a provider describes it with `status`.
    fn described(status: &str, list_params: serde_json::Value) -> TemplateInfo {
        TemplateInfo::from_wire("217489", Some(status.into()), params(list_params))
    }

    #[test]
    fn zalo_camel_case_params() {
        // Shape of Zalo's template/info/v2 `data.listParams`.
        let info = described(
            "ENABLE",
            json!([
                {"name": "customer_name", "require": true, "type": "STRING",
                 "maxLength": 30, "minLength": 1, "acceptNull": false},
                {"name": "order_date", "require": false, "type": "DATE",
                 "maxLength": "20", "minLength": "0", "acceptNull": true}
            ]),
        );
        assert!(info.enabled);
        assert_eq!(info.status_raw, "ENABLE");
        assert_eq!(
            info.params,
            vec![
                TemplateParam::bounded("customer_name", true, "STRING", 1, 30, false),
                TemplateParam::bounded("order_date", false, "DATE", 0, 20, true),
            ]
        );
    }

    #[test]
    fn esms_pascal_case_params_with_strings() {
        let info = described(
            "PENDING_REVIEW",
            json!([
                {"Name": "ma_don", "Require": "true", "Type": "STRING",
                 "MaxLength": "10", "MinLength": 0, "AcceptNull": "false"},
                {"Name": "ghi_chu", "Require": 0, "AcceptNull": 1}
            ]),
        );
        assert!(!info.enabled);
        assert_eq!(info.status_raw, "PENDING_REVIEW");
        assert_eq!(info.params[0].name, "ma_don");
        assert!(info.params[0].required);
        assert_eq!(info.params[0].max_length, Some(10));
        assert!(!info.params[0].accept_null);
        assert!(!info.params[1].required);
        assert!(info.params[1].accept_null);
        assert_eq!(info.params[1].max_length, None);
        assert_eq!(info.params[1].kind, "");
    }

    #[test]
    fn missing_fields_read_strictly_and_statuses() {
        let info = TemplateInfo::from_wire("1", None, params(json!([{"name": "x"}])));
        assert!(info.enabled, "no status field says nothing against sending");
        assert!(info.params[0].required);
        assert!(!info.params[0].accept_null);
        for status in ["REJECT", "DISABLE", "DELETE", "0"] {
            assert!(!TemplateInfo::from_wire("1", Some(status.into()), vec![]).enabled);
        }
        assert!(TemplateInfo::from_wire("1", Some("enable".into()), vec![]).enabled);
        let huge = params(json!([{"name": "x", "maxLength": 99_999_999_999_u64}]));
        assert_eq!(
            TemplateInfo::from_wire("1", None, huge).params[0].max_length,
            None
        );
    }
}
