//! Messages whose words depend on the reader: a stable code and its
//! parameters, worded from the locale files (`error.<code>`,
//! `reject.<code>`) in the page's language. The JSON API keeps the English
//! `error` and adds the `code`, so scripts match on the code.

use crate::campaign::{Reason, ReasonPart};

/// The words of a locale key with its `%{blanks}` filled; None when the
/// key is missing (tests/i18n_keys.rs checks every code has one).
pub fn fill(locale: &str, key: &str, params: &[(String, String)]) -> Option<String> {
    let mut text = crate::_rust_i18n_try_translate(locale, key)?.into_owned();
    for (k, v) in params {
        text = text.replace(&format!("%{{{k}}}"), v);
    }
    Some(text)
}

/// A reject reason in `locale`: each part by its code; a reason stored
/// before codes (or a code without words) as its stored English, with the
/// fixes the command line names said the form's way.
pub fn reason_words(locale: &str, r: &Reason) -> String {
    let word = |p: &ReasonPart| fill(locale, &format!("reject.{}", p.code), &p.params);
    let words = r.render(word);
    if r.code().is_some() {
        words
    } else {
        form_words(&words)
    }
}

/// A reject reason as the core words it names command-line flags; on the
/// console's form the fix is said the form's way (rows stored before
/// reasons had codes).
pub fn form_words(reason: &str) -> String {
    let mut r = reason.to_string();
    for (from, to) in [
        (
            " (use --allow-duplicate-phones to send to both)",
            " (one message per phone: the later line is left out)",
        ),
        (
            " (fill it in or list the column in --optional-columns)",
            " (fill it in the file and upload it again)",
        ),
        (
            " (fill them in or list the columns in --optional-columns)",
            " (fill them in the file and upload it again)",
        ),
        (
            "use --phone-column to name the column holding the phone numbers",
            "name the column holding the phone numbers `phone`",
        ),
        ("set the delimiter to", "choose on the form the delimiter"),
    ] {
        r = r.replace(from, to);
    }
    r
}

/// Every `error.<code>` a [`Msg::new`] may use, with its blanks: the
/// locale files must have each in both languages (tests/i18n_keys.rs).
pub const ERROR_CODES: &[(&str, &[&str])] = &[
    ("upload_too_large", &[]),
    ("upload_not_multipart", &["detail"]),
    ("upload_second_file", &[]),
    ("file_too_large", &["mib"]),
    ("delimiter", &["detail"]),
    ("daily_quota", &["value"]),
    ("no_file", &[]),
    ("no_name", &[]),
    ("field_too_long", &["field", "max"]),
    ("field_not_utf8", &["field"]),
    ("no_import", &["name"]),
    ("in_doubt", &["value"]),
    ("phones_strings", &[]),
    ("phones_shape", &[]),
    ("body", &["detail"]),
    ("no_campaign", &["name"]),
    ("audit_limit", &["limit", "max"]),
    ("already_running", &["name"]),
    ("stopping", &[]),
    ("test_while_running", &["name"]),
    ("not_imported", &["name"]),
    ("profile_without_config", &["name"]),
    ("name_taken", &["name"]),
    ("send_window", &["value"]),
    ("deadline", &["value"]),
    ("running", &["name"]),
    ("not_running", &["name"]),
    ("locked", &["name", "holder", "secs"]),
    ("confirm_needed", &[]),
    ("plan_changed", &["n"]),
];

/// The console's languages (locale codes).
pub const LOCALES: [&str; 2] = ["vi", "en"];

/// No blanks to fill.
pub const NONE: [(&str, &str); 0] = [];

/// A message to a person or a script: a stable code, and how to word it.
#[derive(Debug, Clone)]
pub struct Msg {
    code: String,
    words: Words,
    english: String,
    /// What a refused file is called on the page (the name it was
    /// uploaded with, never where it is stored).
    subject: Option<String>,
}

#[derive(Debug, Clone)]
enum Words {
    /// `error.<code>` with these blanks.
    Key(Vec<(String, String)>),
    /// A refused file: its reason's `reject.<code>` words.
    Reason(Reason),
    /// Shown as it is (a core message without a code).
    AsIs,
}

impl Msg {
    /// `error.<code>` with its blanks; the English (for the API and the
    /// log) is the same key's in en.yml.
    pub fn new<V: ToString>(
        code: &str,
        params: impl IntoIterator<Item = (&'static str, V)>,
    ) -> Msg {
        debug_assert!(
            ERROR_CODES.iter().any(|(c, _)| *c == code),
            "error code `{code}` is not in ERROR_CODES"
        );
        let params: Vec<(String, String)> = params
            .into_iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let key = format!("error.{code}");
        let english = fill("en", &key, &params).unwrap_or_else(|| code.to_string());
        Msg {
            code: code.to_string(),
            words: Words::Key(params),
            english,
            subject: None,
        }
    }

    /// A text without a code of its own (from the core): `code` says its
    /// kind (`bad_request`, `not_found`, ...).
    pub fn as_is(code: &str, text: impl Into<String>) -> Msg {
        Msg {
            code: code.to_string(),
            words: Words::AsIs,
            english: text.into(),
            subject: None,
        }
    }

    /// A refused input file: the first part's code (`file.no_phone_column`).
    pub fn refused(r: Reason) -> Msg {
        Msg {
            code: r
                .parts
                .first()
                .map_or_else(|| "file".to_string(), |p| p.code.clone()),
            english: r.text(),
            words: Words::Reason(r),
            subject: None,
        }
    }

    pub fn code(&self) -> &str {
        &self.code
    }

    /// The English text (the API's `error`, the log).
    pub fn english(&self) -> &str {
        &self.english
    }

    /// The words in `locale`.
    pub fn text(&self, locale: &str) -> String {
        match &self.words {
            Words::Key(params) => fill(locale, &format!("error.{}", self.code), params)
                .unwrap_or_else(|| self.english.clone()),
            // A part without words would show the raw English: the
            // message's own English instead (its server path replaced).
            Words::Reason(r) => {
                let words = reason_words(locale, r);
                match &self.subject {
                    _ if words == r.text() => self.english.clone(),
                    Some(file) => format!("{file}: {words}"),
                    None => words,
                }
            }
            Words::AsIs => self.english.clone(),
        }
    }

    /// The same message with its English changed by `f` (an upload's
    /// stored path replaced by the file's name).
    pub fn map_english(mut self, f: impl Fn(&str) -> String) -> Msg {
        self.english = f(&self.english);
        self
    }

    /// A refused file's words name it `file` (as the person knows it);
    /// a refused field (the campaign's name, a profile) is not the file's.
    pub fn about(mut self, file: &str) -> Msg {
        if matches!(&self.words, Words::Reason(r) if !r.is_about_request()) {
            self.subject = Some(file.to_string());
        }
        self
    }
}

impl std::fmt::Display for Msg {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.english)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reasons_name_the_form_not_flags() {
        let r = form_words(
            "duplicate phone: already at line 2 (use --allow-duplicate-phones to send to both)",
        );
        assert!(!r.contains("--"), "{r}");
        let r = form_words("empty value in required column `name` (fill it in or list the column in --optional-columns)");
        assert!(!r.contains("--") && r.contains("upload it again"), "{r}");
        let r = form_words("no `phone` column in the header (found: `phone;name`); use --phone-column to name the column holding the phone numbers; the file seems to be separated by `;`, not `,`: set the delimiter to `;`");
        assert!(!r.contains("--") && r.contains("on the form"), "{r}");
    }

    #[test]
    fn a_message_in_each_language() {
        let m = Msg::new("no_campaign", [("name", "bills")]);
        assert_eq!(m.code(), "no_campaign");
        assert!(m.english().contains("bills"), "{}", m.english());
        let vi = m.text("vi");
        assert!(vi.contains("bills") && vi != m.english(), "{vi}");
    }

    #[test]
    fn a_refused_field_is_not_said_of_the_file() {
        let name = Reason::new("campaign.name_empty", NONE, "--campaign must not be empty");
        let m = Msg::refused(name).about("bills.csv");
        assert_eq!(m.code(), "campaign.name_empty");
        assert_eq!(m.english(), "--campaign must not be empty");
        let vi = m.text("vi");
        assert!(
            vi.starts_with("Tên chiến dịch") && !vi.contains("bills.csv"),
            "{vi}"
        );
        let header = Reason::new(
            "preflight.not_enabled",
            [("template_id", "1"), ("status", "PENDING")],
            "template 1 is not enabled",
        );
        let en = Msg::refused(header).about("bills.csv").text("en");
        assert!(
            en.starts_with("bills.csv: Template 1 is not enabled"),
            "{en}"
        );
    }

    #[test]
    fn coded_reasons_are_worded_and_old_ones_lose_their_flags() {
        let r = Reason::new(
            "duplicate.phone",
            [("line", 2)],
            "duplicate phone: already at line 2 (use --allow-duplicate-phones to send to both)",
        );
        let vi = reason_words("vi", &r);
        assert!(
            vi.contains('2') && !vi.contains("--") && !vi.contains("duplicate"),
            "{vi}"
        );
        let old = Reason::plain(r.text());
        assert!(!reason_words("en", &old).contains("--"));
    }
}
