//! Why a row was rejected, as a stable code with its parameters beside
//! today's English text. The command line, `--json` and the API show the
//! English (and the code, for scripts); the console words each code in the
//! reader's language from the locale files (`reject.<code>`). A row can
//! have several problems at once: one part each.
//!
//! The same codes word a request the core refuses as a whole (a campaign
//! name, test phones, a start time, a template the file's header does not
//! fit): `CoreError::Refused` carries them, and the console words them as
//! it words a refused file.

use std::fmt;

/// One problem: `phone.too_short {digits: 8}` and its English text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Part {
    /// Empty for a text without a code (a row stored before codes existed).
    pub code: String,
    pub params: Vec<(String, String)>,
    pub text: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Reason {
    pub parts: Vec<Part>,
}

/// Every reject code and the parameters its words may use: the locale
/// files must have `reject.<code>` in both languages (tests/i18n_keys.rs).
pub const REJECT_CODES: &[(&str, &[&str])] = &[
    ("row.blank", &[]),
    ("row.unreadable", &["detail"]),
    ("row.too_few_fields", &["fields", "expected", "delimiter"]),
    ("row.too_many_fields", &["fields", "expected", "delimiter"]),
    ("row.open_quote", &["from", "to"]),
    ("cell.spreadsheet_error", &["column", "error"]),
    ("column.unnamed_value", &["position"]),
    ("column.empty", &["name"]),
    ("column.empty_many", &["names", "count"]),
    ("value.too_long", &["column", "bytes", "max"]),
    ("value.nul", &["column"]),
    ("value.not_utf8", &["column"]),
    ("phone.empty", &[]),
    ("phone.no_digits", &["value"]),
    ("phone.letters", &["value"]),
    ("phone.scientific", &["value"]),
    ("phone.several", &["value", "sep"]),
    ("phone.run_together", &["value"]),
    ("phone.misplaced_plus", &["value"]),
    ("phone.bad_char", &["value", "char"]),
    ("phone.not_vietnamese", &["country_code"]),
    ("phone.too_short_84", &["digits"]),
    ("phone.too_short_0", &["digits"]),
    ("phone.too_short_bare", &["digits"]),
    ("phone.too_long_84", &["digits"]),
    ("phone.too_long_0", &["digits"]),
    ("phone.too_long_bare", &["digits"]),
    ("phone.landline", &["prefix"]),
    ("phone.service", &["prefix"]),
    ("phone.old_prefix", &["prefix"]),
    ("phone.not_mobile", &["digit"]),
    ("template.empty", &["name"]),
    ("template.too_long", &["name", "length", "max"]),
    ("template.too_short", &["name", "length", "min"]),
    ("duplicate.phone", &["line"]),
    ("duplicate.tracking_id", &["line"]),
    // The file as a whole (the upload is refused).
    ("file.workbook", &["detail"]),
    ("file.unknown_sheet", &["sheet", "sheets"]),
    ("file.sheet_on_csv", &["sheet"]),
    ("file.binary", &["what"]),
    ("file.empty", &[]),
    ("file.no_phone_column", &["wanted", "found"]),
    ("file.delimiter_hint", &["delimiter"]),
    ("file.phone_column_hint", &["column"]),
    ("file.duplicate_column", &["name"]),
    ("file.empty_column_name", &["position"]),
    ("file.bad_header", &["detail"]),
    ("file.no_template_columns", &[]),
    ("file.record_too_large", &["line", "mib"]),
    ("file.unknown_optional", &["names", "found"]),
    // The template against the file's header (the campaign is refused).
    ("preflight.not_enabled", &["template_id", "status"]),
    (
        "preflight.missing_columns",
        &["template_id", "names", "found"],
    ),
    ("preflight.rename", &["renames"]),
    ("preflight.add_column", &[]),
    // What was asked (a form's field, a flag): refused before anything is read.
    ("campaign.name_empty", &[]),
    ("campaign.name_too_long", &["length", "max"]),
    ("campaign.name_separator", &["char", "position"]),
    ("campaign.name_invisible", &["name", "char", "position"]),
    ("campaign.name_dots", &["name"]),
    ("campaign.name_spaces", &["name"]),
    ("campaign.unknown", &["name"]),
    ("campaign.no_accepted_row", &["name"]),
    ("campaign.template_changed", &["name", "template_id"]),
    ("settings.template_required", &[]),
    ("settings.template_id_empty", &[]),
    ("settings.template_id_spaces", &["value"]),
    ("settings.template_id_digits", &["value", "provider"]),
    ("settings.deadline_past", &["at", "now"]),
    ("settings.unknown_template", &["template_id", "provider"]),
    ("settings.oa_id_missing", &["provider"]),
    ("settings.base_url_missing", &["provider"]),
    ("settings.base_url_bad", &["url"]),
    ("settings.api_key_missing", &["provider"]),
    ("campaign.provider_changed", &["name", "provider", "new"]),
    ("campaign.oa_changed", &["name", "oa_id"]),
    ("campaign.file_gone", &["name"]),
    ("zalo.not_connected", &[]),
    ("config.no_file", &["name"]),
    ("config.invalid", &["detail"]),
    ("test_phones.bad", &["value"]),
    ("test_phones.none", &[]),
    ("test_phones.too_many", &["count", "max"]),
    ("start_at.unreadable", &["value"]),
    ("start_at.past", &["value", "at", "now"]),
    ("zalo.secret_key_missing", &["env"]),
    ("zalo.app_id_missing", &[]),
    ("zalo.app_secret_missing", &["env"]),
    ("zalo.code_bad", &[]),
    ("zalo.state_unknown", &[]),
    // The caller's role may not (the API's code stays `forbidden`).
    ("forbidden", &["action", "needs", "who", "role"]),
];

/// Codes about what was asked rather than the file: a face that points at
/// its help (the command line) does so after them.
const REQUEST_CODES: [&str; 6] = [
    "campaign.",
    "settings.",
    "config.",
    "test_phones.",
    "start_at.",
    "zalo.",
];

impl Reason {
    /// One coded problem. `params` are the blanks of its words.
    pub fn new<K: Into<String>, V: ToString>(
        code: &str,
        params: impl IntoIterator<Item = (K, V)>,
        text: impl Into<String>,
    ) -> Reason {
        debug_assert!(
            REJECT_CODES.iter().any(|(c, _)| *c == code),
            "reject code `{code}` is not in REJECT_CODES"
        );
        Reason {
            parts: vec![Part {
                code: code.to_string(),
                params: params
                    .into_iter()
                    .map(|(k, v)| (k.into(), v.to_string()))
                    .collect(),
                text: text.into(),
            }],
        }
    }

    /// A text without a code (shown as it is in every language).
    pub fn plain(text: impl Into<String>) -> Reason {
        Reason {
            parts: vec![Part {
                code: String::new(),
                params: Vec::new(),
                text: text.into(),
            }],
        }
    }

    /// Several problems of one row, in order.
    pub fn join(reasons: impl IntoIterator<Item = Reason>) -> Reason {
        Reason {
            parts: reasons.into_iter().flat_map(|r| r.parts).collect(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.parts.is_empty()
    }

    /// About what was asked (a field, a flag), not the file's contents.
    pub fn is_about_request(&self) -> bool {
        self.parts
            .first()
            .is_some_and(|p| REQUEST_CODES.iter().any(|c| p.code.starts_with(c)))
    }

    /// The English text: the parts joined by `; ` (as before codes).
    pub fn text(&self) -> String {
        self.parts
            .iter()
            .map(|p| p.text.as_str())
            .filter(|t| !t.is_empty())
            .collect::<Vec<_>>()
            .join("; ")
    }

    /// The codes joined by `,` (`phone.letters,column.empty`); None when
    /// a part has no code.
    pub fn code(&self) -> Option<String> {
        if self.parts.is_empty() || self.parts.iter().any(|p| p.code.is_empty()) {
            return None;
        }
        Some(
            self.parts
                .iter()
                .map(|p| p.code.as_str())
                .collect::<Vec<_>>()
                .join(","),
        )
    }

    /// The parameters as stored: a JSON array, one object per part.
    pub fn params_json(&self) -> String {
        let parts: Vec<serde_json::Map<String, serde_json::Value>> = self
            .parts
            .iter()
            .map(|p| {
                p.params
                    .iter()
                    .map(|(k, v)| (k.clone(), serde_json::Value::String(v.clone())))
                    .collect()
            })
            .collect();
        serde_json::to_string(&parts).unwrap_or_else(|_| "[]".into())
    }

    /// A reason read back: its code and parameters when they were stored
    /// and agree, else the stored text alone (rows from before codes).
    pub fn from_stored(text: &str, code: Option<&str>, params: Option<&str>) -> Reason {
        let coded = code.zip(params).and_then(|(code, params)| {
            let params: Vec<serde_json::Map<String, serde_json::Value>> =
                serde_json::from_str(params).ok()?;
            let codes: Vec<&str> = code.split(',').collect();
            if codes.len() != params.len() || codes.iter().any(|c| c.is_empty()) {
                return None;
            }
            // The English of each part is not stored apart: the whole text
            // goes with the first part (only a code-less reader shows it).
            Some(Reason {
                parts: codes
                    .into_iter()
                    .zip(params)
                    .enumerate()
                    .map(|(i, (code, params))| Part {
                        code: code.to_string(),
                        params: params
                            .into_iter()
                            .map(|(k, v)| {
                                let v = match v {
                                    serde_json::Value::String(s) => s,
                                    other => other.to_string(),
                                };
                                (k, v)
                            })
                            .collect(),
                        text: if i == 0 {
                            text.to_string()
                        } else {
                            String::new()
                        },
                    })
                    .collect(),
            })
        });
        coded.unwrap_or_else(|| Reason::plain(text))
    }

    /// The words of every part by `word` (None: the part's English), joined.
    pub fn render(&self, word: impl Fn(&Part) -> Option<String>) -> String {
        if let Some(words) = self
            .parts
            .iter()
            .map(|p| (!p.code.is_empty()).then(|| word(p)).flatten())
            .collect::<Option<Vec<String>>>()
        {
            // Words are sentences: `; ` only after one without its stop.
            let mut out = String::new();
            for w in words {
                if !out.is_empty() {
                    out.push_str(if out.ends_with(['.', '!', '?']) {
                        " "
                    } else {
                        "; "
                    });
                }
                out.push_str(&w);
            }
            return out;
        }
        self.text()
    }
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stored_and_read_back() {
        let r = Reason::join([
            Reason::new(
                "phone.letters",
                [("value", "abc")],
                "phone `abc` contains letters",
            ),
            Reason::new("column.empty", [("name", "ten")], "empty value in `ten`"),
        ]);
        assert_eq!(r.code().as_deref(), Some("phone.letters,column.empty"));
        assert_eq!(
            r.text(),
            "phone `abc` contains letters; empty value in `ten`"
        );
        let back = Reason::from_stored(&r.text(), r.code().as_deref(), Some(&r.params_json()));
        assert_eq!(back.parts.len(), 2);
        assert_eq!(
            back.parts[1].params,
            [("name".to_string(), "ten".to_string())]
        );
        assert_eq!(
            back.render(|p| Some(format!("<{}>", p.code))),
            "<phone.letters>; <column.empty>"
        );
        // A part without words: the English text of the whole.
        assert_eq!(back.render(|_| None), r.text());
    }

    #[test]
    fn old_rows_show_their_text() {
        for (code, params) in [(None, None), (Some("phone.letters"), Some("not json"))] {
            let r = Reason::from_stored("old words", code, params);
            assert_eq!(r.code(), None);
            assert_eq!(r.render(|_| Some("x".into())), "old words");
        }
    }
}
