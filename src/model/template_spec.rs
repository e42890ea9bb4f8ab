//! Template pre-flight: the CSV checked against the template's parameters
//! before a single journey token is bought.
//!
//! Two levels. A campaign-level refusal (a required parameter with no
//! column, a template that is not enabled) stops everything (exit 2). A
//! row-level problem (a value out of the template's length bounds, empty
//! where the template accepts no empty value) rejects that row at import,
//! like a bad phone, so no token is bought for a message the provider would
//! refuse. Lengths are counted in characters after Unicode NFC: Vietnamese
//! typed on different keyboards (composed `ễ` or `e` + two combining marks)
//! differs in bytes and code points but not in what the provider counts.
//!
//! Independent of the provider module: a fetched template is turned into a
//! [`TemplateSpec`] by whoever fetches it; the config file declares one
//! (`[templates.<id>]`, see `config.rs`); the state database caches one.

use super::reason::Reason;
use serde::{Deserialize, Serialize};
use unicode_normalization::UnicodeNormalization;

mod declared;
pub use declared::parse_templates;

/// How many names a message lists before "and N more".
const LISTED_NAMES: usize = 8;

/// One template parameter and its bounds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ParamSpec {
    pub name: String,
    /// The CSV must have a column for it.
    pub required: bool,
    /// In characters after NFC.
    pub min_length: Option<u32>,
    /// In characters after NFC.
    pub max_length: Option<u32>,
    /// An empty value is allowed.
    pub accept_null: bool,
}

/// Where a spec came from: the plan says which.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum TemplateSource {
    /// A `[templates.<id>]` section of the config file.
    Declared,
    /// The provider's template info, fetched at this time (ms since epoch).
    Fetched { at_ms: i64 },
}

/// What the pre-flight knows about one template.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TemplateSpec {
    pub template_id: String,
    /// `None`: unknown (a declared template); only `Some(false)` refuses.
    pub enabled: Option<bool>,
    /// The provider's status text, as it gave it (`ENABLE`, `PENDING_REVIEW`…).
    pub status: Option<String>,
    pub params: Vec<ParamSpec>,
    pub source: TemplateSource,
}

impl TemplateSpec {
    /// One line for the plan: what is checked and where it came from, e.g.
    /// `template 217489: 3 parameters (2 required, 3 with a length limit), fetched 2026-11-29 08:00 +07:00`.
    pub fn summary(&self) -> String {
        let n = self.params.len();
        let required = self.params.iter().filter(|p| p.required).count();
        let bounded = self
            .params
            .iter()
            .filter(|p| p.min_length.is_some() || p.max_length.is_some())
            .count();
        let source = match self.source {
            TemplateSource::Declared => "declared in the config file".to_string(),
            TemplateSource::Fetched { at_ms } => {
                format!(
                    "fetched {}",
                    crate::model::clock::fmt_local(crate::model::clock::from_ms(at_ms))
                )
            }
        };
        let status = match (&self.status, self.enabled) {
            (Some(s), _) => format!(", status {s}"),
            (None, Some(false)) => ", not enabled".to_string(),
            (None, _) => String::new(),
        };
        format!(
            "template {}: {n} parameter{} ({required} required, {bounded} with a length limit){status}, {source}",
            self.template_id,
            if n == 1 { "" } else { "s" },
        )
    }
}

/// The CSV's template columns against the template's parameters.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ColumnCheck {
    /// Required parameters with no column: the campaign is refused.
    pub missing_required: Vec<String>,
    /// Columns the template does not know: a warning in the plan (the
    /// provider ignores or refuses them; they are sent as they are).
    pub unknown_columns: Vec<String>,
}

/// A campaign the template refuses as a whole (exit 2).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PreflightError {
    #[error("template {template_id} is not enabled (status {status}): the provider refuses every message for it. Wait for its approval or use an enabled template (--template-id)")]
    NotEnabled { template_id: String, status: String },
    #[error("{}", .0.text)]
    MissingColumns(MissingColumns),
}

/// Required parameters with no column, what the file has, and the likely
/// renames; `text` is the English.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MissingColumns {
    pub template_id: String,
    pub missing: Vec<String>,
    pub found: Vec<String>,
    /// (column in the file, parameter) differing only in case or spaces.
    pub renames: Vec<(String, String)>,
    pub text: String,
}

impl PreflightError {
    /// The refusal with a code a face words in its reader's language.
    pub fn reason(&self) -> Reason {
        let text = self.to_string();
        match self {
            PreflightError::NotEnabled {
                template_id,
                status,
            } => Reason::new(
                "preflight.not_enabled",
                [("template_id", template_id), ("status", status)],
                text,
            ),
            PreflightError::MissingColumns(m) => {
                let mut parts = vec![Reason::new(
                    "preflight.missing_columns",
                    [
                        ("template_id", m.template_id.clone()),
                        ("names", plain(&m.missing)),
                        ("found", plain(&m.found)),
                    ],
                    text,
                )];
                parts.push(if m.renames.is_empty() {
                    Reason::new("preflight.add_column", NO_PARAMS, "")
                } else {
                    let renames: Vec<String> = m
                        .renames
                        .iter()
                        .map(|(from, to)| format!("`{from}` → `{to}`"))
                        .collect();
                    Reason::new("preflight.rename", [("renames", renames.join(", "))], "")
                });
                Reason::join(parts)
            }
        }
    }
}

/// No blanks to fill.
const NO_PARAMS: [(&str, &str); 0] = [];

/// Names as a list to read: `a, b and 3 more` (no quotes).
fn plain(names: &[String]) -> String {
    let mut out: Vec<String> = names.iter().take(LISTED_NAMES).cloned().collect();
    if names.len() > LISTED_NAMES {
        out.push(format!("+{}", names.len() - LISTED_NAMES));
    }
    out.join(", ")
}

/// Compare the CSV's template columns (the header without the phone and
/// tracking columns) with the template's parameters. Names match exactly:
/// they are sent to the provider as the keys of the template data.
pub fn check_columns(spec: &TemplateSpec, csv_columns: &[String]) -> ColumnCheck {
    let has = |name: &str| csv_columns.iter().any(|c| c == name);
    ColumnCheck {
        missing_required: spec
            .params
            .iter()
            .filter(|p| p.required && !has(&p.name))
            .map(|p| p.name.clone())
            .collect(),
        unknown_columns: csv_columns
            .iter()
            .filter(|c| !spec.params.iter().any(|p| &p.name == *c))
            .cloned()
            .collect(),
    }
}

impl ColumnCheck {
    /// The refusal for missing required parameters, naming them and the
    /// columns found (with a hint where a column differs only in case or
    /// spaces); `None` when nothing required is missing.
    pub fn refusal(&self, spec: &TemplateSpec, csv_columns: &[String]) -> Option<MissingColumns> {
        if self.missing_required.is_empty() {
            return None;
        }
        let (noun, verb) = if self.missing_required.len() == 1 {
            ("parameter", "has")
        } else {
            ("parameters", "have")
        };
        let mut msg = format!(
            "template {} needs the {noun} {}, which {verb} no column in the CSV; columns found: {}",
            spec.template_id,
            list(&self.missing_required),
            if csv_columns.is_empty() {
                "none besides the phone".to_string()
            } else {
                list(csv_columns)
            }
        );
        let renames: Vec<(String, String)> = self
            .missing_required
            .iter()
            .filter_map(|want| {
                csv_columns
                    .iter()
                    .find(|c| loose(c) == loose(want))
                    .map(|c| (c.clone(), want.clone()))
            })
            .collect();
        if renames.is_empty() {
            msg.push_str(". Add the column (named exactly like the parameter) to the file");
        } else {
            let near: Vec<String> = renames
                .iter()
                .map(|(c, want)| format!("rename `{c}` to `{want}`"))
                .collect();
            msg.push_str(&format!(". Names must match exactly: {}", near.join(", ")));
        }
        Some(MissingColumns {
            template_id: spec.template_id.clone(),
            missing: self.missing_required.clone(),
            found: csv_columns.to_vec(),
            renames,
            text: msg,
        })
    }

    /// The plan's warning for columns the template does not know.
    pub fn warning(&self, spec: &TemplateSpec) -> Option<String> {
        if self.unknown_columns.is_empty() {
            return None;
        }
        Some(format!(
            "template {} has no parameter for column{} {} (sent as they are; check the names)",
            spec.template_id,
            if self.unknown_columns.len() == 1 {
                ""
            } else {
                "s"
            },
            list(&self.unknown_columns)
        ))
    }
}

/// The campaign-level checks: the template is enabled and every required
/// parameter has a column. Returns the column check for the plan's warning.
pub fn check_campaign(
    spec: &TemplateSpec,
    csv_columns: &[String],
) -> Result<ColumnCheck, PreflightError> {
    if spec.enabled == Some(false) {
        return Err(PreflightError::NotEnabled {
            template_id: spec.template_id.clone(),
            status: spec
                .status
                .clone()
                .unwrap_or_else(|| "not given".to_string()),
        });
    }
    let check = check_columns(spec, csv_columns);
    match check.refusal(spec, csv_columns) {
        Some(m) => Err(PreflightError::MissingColumns(m)),
        None => Ok(check),
    }
}

/// The reject reason for one row, naming the parameter and both lengths;
/// `None` when the row fits the template. `keys` and `values` are the CSV's
/// template columns and this row's values, in the same order.
pub fn check_row(spec: &TemplateSpec, keys: &[String], values: &[String]) -> Option<String> {
    RowChecker::new(spec, keys).check(values).map(|r| r.text())
}

/// [`check_row`] with the columns matched to parameters once, for an
/// import of a million rows.
#[derive(Debug, Clone)]
pub struct RowChecker {
    /// (index into the row's values, its parameter)
    checks: Vec<(usize, ParamSpec)>,
}

impl RowChecker {
    pub fn new(spec: &TemplateSpec, keys: &[String]) -> RowChecker {
        let checks = spec
            .params
            .iter()
            .filter_map(|p| {
                let at = keys.iter().position(|k| *k == p.name)?;
                let bounded = p.min_length.is_some() || p.max_length.is_some();
                (bounded || !p.accept_null).then(|| (at, p.clone()))
            })
            .collect();
        RowChecker { checks }
    }

    /// Nothing to check (no bounded parameter has a column).
    pub fn is_empty(&self) -> bool {
        self.checks.is_empty()
    }

    pub fn check(&self, values: &[String]) -> Option<Reason> {
        let problems: Vec<Reason> = self
            .checks
            .iter()
            .filter_map(|(at, p)| param_problem(p, values.get(*at).map_or("", String::as_str)))
            .collect();
        (!problems.is_empty()).then(|| Reason::join(problems))
    }
}

fn param_problem(p: &ParamSpec, value: &str) -> Option<Reason> {
    let name = p.name.as_str();
    if value.is_empty() {
        return (!p.accept_null).then(|| {
            Reason::new(
                "template.empty",
                [("name", name)],
                format!(
                    "{name} is empty, and the template does not accept an empty value: fill it in"
                ),
            )
        });
    }
    let len = char_len(value);
    if let Some(max) = p.max_length.filter(|&m| len > u64::from(m)) {
        let text =
            format!("{name} is {len} characters, longer than the template's {max}: shorten it");
        return Some(length_reason(
            "template.too_long",
            name,
            len,
            ("max", max),
            text,
        ));
    }
    if let Some(min) = p.min_length.filter(|&m| len < u64::from(m)) {
        let text = format!("{name} is {len} characters, shorter than the template's {min}");
        return Some(length_reason(
            "template.too_short",
            name,
            len,
            ("min", min),
            text,
        ));
    }
    None
}

/// A value too long or too short: its name, its length and the bound.
fn length_reason(
    code: &'static str,
    name: &str,
    len: u64,
    (bound, limit): (&'static str, u32),
    text: String,
) -> Reason {
    let params = [
        ("name", name.to_string()),
        ("length", len.to_string()),
        (bound, limit.to_string()),
    ];
    Reason::new(code, params, text)
}

/// Length as the provider counts it: characters after NFC.
pub fn char_len(value: &str) -> u64 {
    // ASCII is already NFC: skip the normaliser for the common case.
    if value.is_ascii() {
        return value.len() as u64;
    }
    value.nfc().count() as u64
}

/// Case and surrounding spaces ignored: for the "rename" hint only.
fn loose(name: &str) -> String {
    name.trim().to_lowercase()
}

fn list(names: &[String]) -> String {
    let mut out: Vec<String> = names
        .iter()
        .take(LISTED_NAMES)
        .map(|n| format!("`{n}`"))
        .collect();
    if names.len() > LISTED_NAMES {
        out.push(format!("and {} more", names.len() - LISTED_NAMES));
    }
    out.join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn param(name: &str, required: bool, min: Option<u32>, max: Option<u32>) -> ParamSpec {
        ParamSpec {
            name: name.into(),
            required,
            min_length: min,
            max_length: max,
            accept_null: !required,
        }
    }

    fn spec() -> TemplateSpec {
        TemplateSpec {
            template_id: "217489".into(),
            enabled: Some(true),
            status: Some("ENABLE".into()),
            params: vec![
                param("customer_name", true, None, Some(30)),
                param("amount", true, None, Some(20)),
                param("due_date", false, Some(8), Some(10)),
            ],
            source: TemplateSource::Declared,
        }
    }

    fn cols(names: &[&str]) -> Vec<String> {
        names.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn the_same_name_composed_and_decomposed_counts_the_same() {
        let composed = "Nguyễn Thị Ánh Tuyết";
        let decomposed: String = composed.nfd().collect();
        assert_ne!(composed.len(), decomposed.len(), "the bytes differ");
        assert_ne!(composed.chars().count(), decomposed.chars().count());
        assert_eq!(char_len(composed), 20);
        assert_eq!(char_len(&decomposed), 20);

        let mut s = spec();
        s.params[0].max_length = Some(20);
        let keys = cols(&["customer_name", "amount"]);
        for name in [composed.to_string(), decomposed.clone()] {
            assert_eq!(check_row(&s, &keys, &[name, "1".into()]), None);
        }
        s.params[0].max_length = Some(19);
        for name in [composed.to_string(), decomposed] {
            assert_eq!(
                check_row(&s, &keys, &[name, "1".into()]).as_deref(),
                Some("customer_name is 20 characters, longer than the template's 19: shorten it")
            );
        }
    }

    #[test]
    fn a_row_out_of_bounds_names_the_parameter_and_both_lengths() {
        let s = spec();
        let keys = cols(&["customer_name", "amount", "due_date"]);
        let row = |a: &str, b: &str, c: &str| check_row(&s, &keys, &cols(&[a, b, c]));
        assert_eq!(row("An", "100000", "2026-12-01"), None);
        assert_eq!(row("An", "100000", ""), None, "optional and empty");
        let long = "x".repeat(37);
        assert_eq!(
            row(&long, "1", "").as_deref(),
            Some("customer_name is 37 characters, longer than the template's 30: shorten it")
        );
        assert_eq!(
            row("An", "1", "1/12").as_deref(),
            Some("due_date is 4 characters, shorter than the template's 8")
        );
        let both = row(&long, &"9".repeat(21), "").unwrap();
        assert!(
            both.contains("customer_name is 37") && both.contains("amount is 21"),
            "{both}"
        );
        assert_eq!(
            row("", "1", "").as_deref(),
            Some("customer_name is empty, and the template does not accept an empty value: fill it in")
        );
        // Exactly at the bounds passes.
        assert_eq!(row(&"x".repeat(30), "1", "12345678"), None);
    }

    #[test]
    fn columns_the_template_lacks_and_parameters_the_csv_lacks() {
        let s = spec();
        let found = cols(&["Customer_Name", "note"]);
        let check = check_columns(&s, &found);
        assert_eq!(check.missing_required, ["customer_name", "amount"]);
        assert_eq!(check.unknown_columns, ["Customer_Name", "note"]);
        let msg = check.refusal(&s, &found).unwrap().text;
        assert!(
            msg.contains("template 217489")
                && msg.contains("`customer_name`, `amount`")
                && msg.contains("columns found: `Customer_Name`, `note`")
                && msg.contains("rename `Customer_Name` to `customer_name`"),
            "{msg}"
        );
        assert!(check.warning(&s).unwrap().contains("`note`"));

        let err = check_campaign(&s, &found).unwrap_err();
        assert!(matches!(err, PreflightError::MissingColumns(_)), "{err}");
        // Coded for the console: the missing names, the file's, the rename.
        let r = err.reason();
        assert_eq!(
            r.code().as_deref(),
            Some("preflight.missing_columns,preflight.rename")
        );
        assert_eq!(r.text(), err.to_string());
        assert_eq!(
            r.parts[0].params[1..],
            [
                ("names".to_string(), "customer_name, amount".to_string()),
                ("found".to_string(), "Customer_Name, note".to_string())
            ]
        );
        assert_eq!(r.parts[1].params[0].1, "`Customer_Name` → `customer_name`");

        // The optional due_date may be absent; nothing to refuse or warn.
        let fine = cols(&["customer_name", "amount"]);
        let check = check_campaign(&s, &fine).unwrap();
        assert_eq!(check, ColumnCheck::default());
        assert_eq!(check.refusal(&s, &fine), None);
        assert_eq!(check.warning(&s), None);
        // An optional parameter without a column is not checked in rows.
        assert_eq!(check_row(&s, &fine, &cols(&["An", "1"])), None);
    }

    #[test]
    fn a_template_that_is_not_enabled_is_refused_with_its_status() {
        let mut s = spec();
        s.enabled = Some(false);
        s.status = Some("PENDING_REVIEW".into());
        let e = check_campaign(&s, &cols(&["customer_name", "amount"]))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("217489") && e.contains("PENDING_REVIEW") && e.contains("--template-id"),
            "{e}"
        );
        s.enabled = None; // declared: unknown, not refused
        assert!(check_campaign(&s, &cols(&["customer_name", "amount"])).is_ok());
    }

    #[test]
    fn the_summary_says_what_is_checked_and_where_it_came_from() {
        let mut s = spec();
        assert_eq!(
            s.summary(),
            "template 217489: 3 parameters (2 required, 3 with a length limit), status ENABLE, \
             declared in the config file"
        );
        s.status = None;
        s.source = TemplateSource::Fetched {
            at_ms: 1_764_378_000_000, // 2025-11-29 01:00 UTC
        };
        assert_eq!(
            s.summary(),
            "template 217489: 3 parameters (2 required, 3 with a length limit), \
             fetched 2025-11-29 08:00 +07:00"
        );
    }

    #[test]
    fn a_spec_round_trips_through_json() {
        let mut s = spec();
        s.source = TemplateSource::Fetched { at_ms: 42 };
        let json = serde_json::to_string(&s).unwrap();
        assert_eq!(serde_json::from_str::<TemplateSpec>(&json).unwrap(), s);
    }
}
