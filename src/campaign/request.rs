//! What a face asks for: every field is "not given" unless set, so it can
//! fall through to the config file, the campaign's stored value, then the
//! default (see [`super::settings`]). The command line flattens these into
//! its commands; the web form fills them in.

use std::path::PathBuf;
use std::time::Duration;

use clap::Args;

use crate::engine::runner::InDoubtPolicy;
use crate::model::clock::{self, parse_duration};
use crate::model::template_spec::TemplateSpec;
use crate::model::window::{self, WindowSetting};
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

// Each field is "not given" unless set, so it can fall through to the
// config file, the campaign's stored value, then the default. The command
// line flattens these into its commands; the web form fills them in.

#[derive(Debug, Args, Clone, Default)]
pub struct ProviderOpts {
    /// Provider; default `sandbox` when no API key is configured, else `etelecom`.
    #[arg(long, value_enum, env = "ZNS_PROVIDER")]
    pub provider: Option<ProviderKind>,

    /// Provider base URL (eTelecom: the Shop or Partner base, e.g. https://HOST/v1/shop).
    #[arg(long, env = "ZNS_BASE_URL", value_name = "URL")]
    pub base_url: Option<String>,

    /// API key (eTelecom key, Zalo OA access token, eSMS ApiKey). Never printed or stored.
    #[arg(long, env = "ZNS_API_KEY", hide_env_values = true, value_name = "KEY")]
    pub api_key: Option<String>,

    /// eSMS SecretKey. Never printed or stored.
    #[arg(
        long,
        env = "ZNS_SECRET_KEY",
        hide_env_values = true,
        value_name = "KEY"
    )]
    pub secret_key: Option<String>,

    /// Zalo Official Account id.
    #[arg(long, env = "ZNS_OA_ID", value_name = "ID")]
    pub oa_id: Option<String>,

    /// Send through an embedded sandbox speaking this provider's protocol
    /// (127.0.0.1, no network, no key): try `--provider zalo|esms` safely.
    #[arg(long)]
    pub embedded_sandbox: bool,

    /// Per-request timeout, e.g. 10s, 1500ms.
    #[arg(long, value_parser = parse_duration, value_name = "DURATION")]
    pub request_timeout: Option<Duration>,

    /// Where the provider reports delivery: eSMS `CallbackUrl` (and the
    /// embedded sandbox's callbacks). Default: `{public_url}/webhooks/...`
    /// when `public_url` is configured. Never printed or stored.
    #[arg(long, value_name = "URL")]
    pub callback_url: Option<String>,
}

#[derive(Debug, Args, Clone, Default)]
pub struct SendOpts {
    /// Requests in flight at once [default: 16].
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=4096))]
    pub concurrency: Option<u32>,

    /// Requests per second across all provider calls [default: unlimited].
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    pub rate: Option<u32>,

    /// Messages per OA per day (Asia/Ho_Chi_Minh) this tool will not pass.
    #[arg(long, value_name = "N")]
    pub daily_quota: Option<u64>,

    /// Rows whose reply was lost: resend under the same tracking id, or hold them [default: resend].
    #[arg(long, value_enum, value_name = "POLICY")]
    pub in_doubt: Option<InDoubtPolicy>,

    /// Attempts per request before a row waits for the next resume [default: 8].
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=100))]
    pub max_attempts: Option<u32>,

    /// Pause (exit 3) when no request has succeeded for this long [default: 2m].
    #[arg(long, value_parser = parse_duration, value_name = "DURATION")]
    pub outage_after: Option<Duration>,

    /// First retry delay; doubles per attempt with jitter [default: 250ms].
    #[arg(long, value_parser = parse_duration, value_name = "DURATION")]
    pub backoff: Option<Duration>,

    /// Send only between these hours of the OA's day (Asia/Ho_Chi_Minh), e.g. 07:00-22:00; `off` for none.
    /// Outside it the run pauses (exit 3) unless --wait.
    #[arg(long, env = "ZNS_SEND_WINDOW", value_parser = window::parse_setting, value_name = "HH:MM-HH:MM")]
    pub send_window: Option<WindowSetting>,

    /// Outside the send window, sleep until it opens instead of pausing.
    #[arg(long)]
    pub wait: bool,
}

/// Run safety: stored with the campaign; given on `resume`, they replace the stored value.
#[derive(Debug, Args, Clone, Default)]
pub struct SafetyOpts {
    /// Deadline: after it nothing more is sent and remaining rows become `expired`
    /// (exit 4). E.g. 2026-11-24T08:00+07:00; without an offset, Asia/Ho_Chi_Minh time.
    #[arg(long, value_parser = clock::parse_local_instant, value_name = "TIME", conflicts_with = "valid_for")]
    pub not_after: Option<time::OffsetDateTime>,

    /// Deadline relative to now, e.g. 6h, 2d.
    #[arg(long, value_parser = parse_duration, value_name = "DURATION")]
    pub valid_for: Option<Duration>,

    /// Skip a row whose phone got a message from this OA (any campaign in this
    /// state file) within this interval, e.g. 24h; 0 turns the cap off.
    #[arg(long, value_parser = parse_duration, value_name = "DURATION")]
    pub min_interval_per_phone: Option<Duration>,
}

#[derive(Debug, Args, Clone, Default)]
pub struct CsvOpts {
    /// Column holding the phone number [default: phone].
    #[arg(long, value_name = "NAME")]
    pub phone_column: Option<String>,

    /// Field delimiter, one ASCII character; `\t` or `tab` for tabs [default: ,].
    #[arg(long, value_name = "CHAR", value_parser = parse_delimiter)]
    pub delimiter: Option<u8>,

    /// Template columns that may be empty (comma-separated).
    #[arg(long, value_delimiter = ',', value_name = "COLS")]
    pub optional_columns: Vec<String>,

    /// Keep rows whose phone repeats (default: later repeats are rejected).
    #[arg(long)]
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
#[derive(Debug, Args, Clone, Default)]
pub struct TemplateCheckOpts {
    /// Send without checking the file against the template (no template
    /// info is fetched; rows the template refuses fail at the provider,
    /// after their token is bought).
    #[arg(long)]
    pub skip_template_check: bool,

    /// Fetch the template info again instead of using the cached copy.
    #[arg(long, conflicts_with = "skip_template_check")]
    pub refresh_template: bool,
}
