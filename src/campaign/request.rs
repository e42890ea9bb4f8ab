//! What a face asks for: every field is "not given" unless set, so it can
//! fall through to the config file, the campaign's stored value, then the
//! default (see [`super::settings`]). Plain values: the command line's
//! flags (`cli::options`, whose help says what each field means) convert
//! into them, the web form fills them in.

use std::path::PathBuf;
use std::time::Duration;

// Part of a request's vocabulary: faces name it through the core.
pub use crate::engine::runner::InDoubtPolicy;
use crate::model::template_spec::TemplateSpec;
use crate::model::window::WindowSetting;
use crate::provider::ProviderKind;

/// Longest campaign name (it appears in file names and URLs).
const MAX_CAMPAIGN_NAME: usize = 100;

/// A request that cannot be carried out as given: the message names the
/// flag (or config key) and the fix. A face shows it (exit 2, or a 400).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct SettingsError(pub String);

fn bad(msg: impl Into<String>) -> SettingsError {
    SettingsError(msg.into())
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
/// and appears in URLs, so it is short, printable and path-free.
pub fn check_campaign_name(name: &str) -> Result<(), SettingsError> {
    if name.trim().is_empty() {
        return Err(bad(
            "--campaign must not be empty: give the campaign a name, e.g. --campaign bills-2026-11",
        ));
    }
    if name.chars().count() > MAX_CAMPAIGN_NAME {
        return Err(bad(format!(
            "--campaign is {} characters long; keep it to {MAX_CAMPAIGN_NAME}",
            name.chars().count()
        )));
    }
    if name != name.trim() {
        return Err(bad(format!(
            "--campaign `{name}` starts or ends with a space; remove it"
        )));
    }
    if let Some(c) = name
        .chars()
        .find(|c| c.is_control() || matches!(c, '/' | '\\'))
    {
        return Err(bad(format!(
            "--campaign `{}` contains {:?}, which a campaign name may not; use letters, digits, spaces, - and _",
            name.escape_default(),
            c
        )));
    }
    Ok(())
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

/// How the template pre-flight is sourced (`run`, `resume`).
#[derive(Debug, Clone, Default)]
pub struct TemplateCheckOpts {
    /// Send without checking the file against the template (no template
    /// info is fetched).
    pub skip_template_check: bool,
    /// Fetch the template info again instead of using the cached copy.
    pub refresh_template: bool,
}
