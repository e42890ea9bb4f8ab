//! What a face asks for: every field is "not given" unless set, so it can
//! fall through to the config file, the campaign's stored value, then the
//! default (see [`super::settings`]). Plain values: the command line's
//! flags (`cli::options`, whose help says what each field means) convert
//! into them, the web form fills them in.

use std::path::{Path, PathBuf};
use std::time::Duration;

// Part of a request's vocabulary: faces name it through the core.
pub use crate::engine::runner::InDoubtPolicy;
use crate::model::reason::Reason;
use crate::model::template_spec::TemplateSpec;
use crate::model::window::WindowSetting;
use crate::provider::ProviderKind;

/// Longest campaign name (it appears in file names and URLs).
const MAX_CAMPAIGN_NAME: usize = 100;

/// A request that cannot be carried out as given: the message names the
/// flag (or config key) and the fix. A face shows it (exit 2, or a 400);
/// with a code, the console words it in its reader's language.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct SettingsError(pub Reason);

impl SettingsError {
    /// The English text.
    pub fn text(&self) -> String {
        self.0.text()
    }
}

impl From<String> for SettingsError {
    fn from(text: String) -> Self {
        SettingsError(Reason::plain(text))
    }
}

impl From<Reason> for SettingsError {
    fn from(r: Reason) -> Self {
        SettingsError(r)
    }
}

pub(super) fn bad(msg: impl Into<String>) -> SettingsError {
    SettingsError(Reason::plain(msg))
}

/// A refusal with a code and its English `text`.
pub(super) fn coded<V: ToString>(
    code: &str,
    params: impl IntoIterator<Item = (&'static str, V)>,
    text: impl Into<String>,
) -> SettingsError {
    SettingsError(Reason::new(code, params, text))
}

/// The provider and how to reach it.
#[derive(Debug, Clone, Default)]
pub struct ProviderOpts {
    /// Default `sandbox` when no API key is configured, else `etelecom`.
    pub provider: Option<ProviderKind>,
    pub base_url: Option<String>,
    /// Never printed or stored.
    pub api_key: Option<String>,
    /// eSMS SecretKey. Never printed or stored.
    pub secret_key: Option<String>,
    pub oa_id: Option<String>,
    /// Send through a sandbox started in this process for this run.
    pub embedded_sandbox: bool,
    pub request_timeout: Option<Duration>,
    /// Where the provider reports delivery (see [`super::callbacks`]).
    /// Never printed or stored.
    pub callback_url: Option<String>,
}

/// How fast and how hard a run sends.
#[derive(Debug, Clone, Default)]
pub struct SendOpts {
    pub concurrency: Option<u32>,
    pub rate: Option<u32>,
    pub daily_quota: Option<u64>,
    pub in_doubt: Option<InDoubtPolicy>,
    pub max_attempts: Option<u32>,
    pub outage_after: Option<Duration>,
    pub backoff: Option<Duration>,
    pub send_window: Option<WindowSetting>,
    /// Outside the send window, sleep until it opens instead of pausing.
    pub wait: bool,
}

/// Run safety: stored with the campaign; given on `resume`, they replace the stored value.
#[derive(Debug, Clone, Default)]
pub struct SafetyOpts {
    /// Deadline: after it nothing more is sent and remaining rows expire.
    pub not_after: Option<time::OffsetDateTime>,
    /// Deadline relative to now.
    pub valid_for: Option<Duration>,
    /// Per-phone frequency cap across this OA's campaigns; 0 turns it off.
    pub min_interval_per_phone: Option<Duration>,
}

/// How the CSV file is read.
#[derive(Debug, Clone, Default)]
pub struct CsvOpts {
    pub phone_column: Option<String>,
    pub delimiter: Option<u8>,
    /// Template columns that may be empty.
    pub optional_columns: Vec<String>,
    /// Keep rows whose phone repeats (else later repeats are rejected).
    pub allow_duplicate_phones: bool,
    /// The sheet of an Excel/OpenDocument workbook (default: the first).
    pub sheet: Option<String>,
}

/// `;`, `|`, `\t` (as typed in a shell: backslash and t) or `tab`.
pub fn parse_delimiter(s: &str) -> Result<u8, String> {
    match s {
        "\\t" | "tab" | "TAB" | "\t" => Ok(b'\t'),
        _ => {
            let mut chars = s.chars();
            match (chars.next(), chars.next()) {
                (Some(c), None) if c.is_ascii() && c != '"' && c != '\n' && c != '\r' => {
                    Ok(c as u8)
                }
                _ => Err(format!(
                    "`{s}` is not one ASCII character; use e.g. ';', '|' or '\\t' (tab)"
                )),
            }
        }
    }
}

/// A campaign name: it keys `resume`, `status` and `report`, names files
/// and appears in URLs and on pages, so it is short, printable, path-free,
/// and shows what it is (no invisible or direction-changing characters
/// that make two names look alike). The one rule for the command line,
/// the API and the console.
pub fn check_campaign_name(name: &str) -> Result<(), SettingsError> {
    if name.trim().is_empty() {
        return Err(coded(
            "campaign.name_empty",
            NO_PARAMS,
            "--campaign must not be empty: give the campaign a name, e.g. --campaign bills-2026-11",
        ));
    }
    let length = name.chars().count();
    if length > MAX_CAMPAIGN_NAME {
        return Err(coded(
            "campaign.name_too_long",
            [("length", length), ("max", MAX_CAMPAIGN_NAME)],
            format!("--campaign is {length} characters long; keep it to {MAX_CAMPAIGN_NAME}"),
        ));
    }
    if let Some((i, c, what)) = name
        .chars()
        .enumerate()
        .find_map(|(i, c)| refused_in_name(c).map(|what| (i + 1, c, what)))
    {
        let text = format!(
            "--campaign `{}` has U+{:04X} ({what}) at position {i}, which a campaign name may not; \
             use letters, digits, spaces, - and _",
            shown_name(name),
            c as u32
        );
        let (char, position) = (format!("U+{:04X}", c as u32), i.to_string());
        return Err(if c == '/' || c == '\\' {
            coded(
                "campaign.name_separator",
                [("char", c.to_string()), ("position", position)],
                text,
            )
        } else {
            coded(
                "campaign.name_invisible",
                [
                    ("name", shown_name(name)),
                    ("char", char),
                    ("position", position),
                ],
                text,
            )
        });
    }
    if name == "." || name == ".." {
        return Err(coded(
            "campaign.name_dots",
            [("name", name)],
            format!(
                "--campaign `{name}` is a directory name; use letters, digits, spaces, - and _"
            ),
        ));
    }
    if name != name.trim() {
        return Err(coded(
            "campaign.name_spaces",
            [("name", name)],
            format!("--campaign `{name}` starts or ends with a space; remove it"),
        ));
    }
    Ok(())
}

/// No blanks to fill.
pub(super) const NO_PARAMS: [(&str, &str); 0] = [];

/// Why `c` may not be in a campaign name, if it may not.
fn refused_in_name(c: char) -> Option<&'static str> {
    Some(match c {
        '/' | '\\' => "a path separator",
        '\u{200E}'
        | '\u{200F}'
        | '\u{061C}'
        | '\u{202A}'..='\u{202E}'
        | '\u{2066}'..='\u{2069}' => "a bidirectional control",
        '\u{200B}'..='\u{200D}' | '\u{2060}' | '\u{FEFF}' => "a zero-width character",
        c if c.is_control() => "a control character",
        // Other invisible formatting: soft hyphen, invisible operators,
        // deprecated format controls, annotations, tags, line separators.
        '\u{00AD}'
        | '\u{180E}'
        | '\u{2028}'
        | '\u{2029}'
        | '\u{2061}'..='\u{2064}'
        | '\u{206A}'..='\u{206F}'
        | '\u{FFF9}'..='\u{FFFB}'
        | '\u{E0000}'..='\u{E007F}' => "an invisible formatting character",
        '\u{FFFE}' | '\u{FFFF}' => "not a character",
        _ => return None,
    })
}

/// The name as the message quotes it: refused characters written as
/// escapes, so the message shows what the eye would not (Vietnamese
/// letters stay as they are).
fn shown_name(name: &str) -> String {
    name.chars()
        .map(|c| match refused_in_name(c) {
            Some(_) if c != '/' && c != '\\' => c.escape_unicode().to_string(),
            _ => c.to_string(),
        })
        .collect()
}

/// Everything a command asks about one campaign.
#[derive(Debug, Clone, Default)]
pub struct Request {
    pub campaign: String,
    /// `run`: the file to import. `resume`: where the file is now, if moved.
    pub csv: Option<PathBuf>,
    pub template_id: Option<String>,
    pub token_type: Option<String>,
    pub provider: ProviderOpts,
    pub send: SendOpts,
    pub safety: SafetyOpts,
    pub csv_opts: CsvOpts,
    pub template_check: TemplateCheckOpts,
    /// The template's parameters fetched from the provider or read from
    /// the cache, filled in by `Workspace::preflight` (a template declared
    /// in the config file wins over it).
    pub template: Option<TemplateSpec>,
}

impl Request {
    /// A run of `csv` as campaign `name` through the embedded sandbox with
    /// template `1`: nothing leaves the machine (validate's scratch import).
    pub(crate) fn embedded_sandbox(name: &str, csv: &Path) -> Request {
        Request {
            campaign: name.into(),
            csv: Some(csv.to_path_buf()),
            template_id: Some("1".into()),
            provider: ProviderOpts {
                provider: Some(ProviderKind::Sandbox),
                embedded_sandbox: true,
                oa_id: Some("0".into()),
                ..Default::default()
            },
            ..Request::default()
        }
    }
}

/// How the template pre-flight is sourced (`run`, `resume`).
#[derive(Debug, Clone, Default)]
pub struct TemplateCheckOpts {
    /// Send without checking the file against the template (no template
    /// info is fetched).
    pub skip_template_check: bool,
    /// Fetch the template info again instead of using the cached copy.
    pub refresh_template: bool,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn campaign_names_one_rule() {
        for ok in ["bills-2026-11", "Hóa đơn tháng 11", "a.b", "...x", "日本 1"] {
            assert!(check_campaign_name(ok).is_ok(), "{ok}");
        }
        for (name, code, pos) in [
            ("a/b", "U+002F", 2),
            ("a\\b", "U+005C", 2),
            ("ab\u{202E}cd", "U+202E", 3),
            ("\u{2066}x", "U+2066", 1),
            ("x\u{200F}", "U+200F", 2),
            ("x\u{061C}y", "U+061C", 2),
            ("x\u{200B}y", "U+200B", 2),
            ("x\u{FEFF}", "U+FEFF", 2),
            ("x\u{2060}y", "U+2060", 2),
            ("tab\there", "U+0009", 4),
            ("x\u{7F}", "U+007F", 2),
            ("soft\u{AD}hy", "U+00AD", 5),
        ] {
            let r = check_campaign_name(name).unwrap_err().0;
            // Coded for the console: a separator apart from invisibles,
            // whose name is shown escaped there too.
            let want = if pos == 2 && (name == "a/b" || name == "a\\b") {
                "campaign.name_separator"
            } else {
                "campaign.name_invisible"
            };
            assert_eq!(r.code().as_deref(), Some(want), "{name:?}");
            assert!(r.parts[0]
                .params
                .iter()
                .all(|(_, v)| v.chars().all(|c| !c.is_control())));
            let e = r.text();
            assert!(
                e.contains(code) && e.contains(&format!("position {pos}")),
                "{name:?}: {e}"
            );
            // The message shows the refused character as an escape, never raw.
            let c = name.chars().nth(pos - 1).unwrap();
            if c != '/' && c != '\\' {
                assert!(!e.contains(c), "{name:?}: {e}");
            }
        }
        for dots in [".", ".."] {
            let e = check_campaign_name(dots).unwrap_err().text();
            assert!(e.contains("directory name"), "{e}");
        }
        assert!(check_campaign_name(" x").is_err());
        assert!(check_campaign_name("").is_err());
    }
}
