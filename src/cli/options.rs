//! The flags `run`, `resume`, `reconcile` and `validate` share. Each group
//! converts into the core's plain request part of the same name (the web
//! form fills those in directly); every flag is `Option`/`false` unless
//! given, so "not given" falls through to the config file, then defaults.

use std::time::Duration;

use clap::builder::{PossibleValue, PossibleValuesParser, TypedValueParser};
use clap::Args;

use crate::campaign::settings::{
    parse_delimiter, CsvOpts, ProviderOpts, SafetyOpts, SendOpts, TemplateCheckOpts,
};
use crate::campaign::InDoubtPolicy;
use crate::model::clock::{self, parse_duration};
use crate::model::window::WindowSetting;
use crate::provider::ProviderKind;

/// A core enum offered as a flag's choices: its names, and what each means
/// for `--help`.
pub(crate) trait Choice:
    Copy + std::str::FromStr<Err = String> + Send + Sync + 'static
{
    const ALL: &'static [Self];
    fn name(self) -> &'static str;
    fn about(self) -> &'static str;
}

/// The core enums offered as choices all name themselves with `as_str`
/// and explain themselves with `about`.
macro_rules! impl_choice {
    ($($t:ident),*) => {$(
        impl Choice for $t {
            const ALL: &'static [Self] = &$t::ALL;
            fn name(self) -> &'static str {
                self.as_str()
            }
            fn about(self) -> &'static str {
                $t::about(self)
            }
        }
    )*};
}

impl_choice!(ProviderKind, InDoubtPolicy);

/// The parser of a [`Choice`] flag: clap checks the name against the list
/// (its error lists the names and suggests a near one), then the core's
/// `FromStr` makes the value.
pub(crate) fn choice<T: Choice>() -> impl TypedValueParser<Value = T> {
    PossibleValuesParser::new(
        T::ALL
            .iter()
            .map(|v| PossibleValue::new(v.name()).help(v.about())),
    )
    .try_map(|s| s.parse::<T>())
}

/// Each flag group carries its core part's fields under the same names;
/// the struct literal still makes the compiler check that none is missed.
macro_rules! into_opts {
    ($args:ident => $opts:ident { $($field:ident),* $(,)? }) => {
        impl From<$args> for $opts {
            fn from(a: $args) -> Self {
                $opts { $($field: a.$field),* }
            }
        }
    };
}

#[derive(Debug, Args, Clone, Default)]
pub struct ProviderArgs {
    /// Provider; default `sandbox` when no API key is configured, else `etelecom`.
    #[arg(long, env = "ZNS_PROVIDER", value_parser = choice::<ProviderKind>())]
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

into_opts!(ProviderArgs => ProviderOpts {
    provider, base_url, api_key, secret_key, oa_id, embedded_sandbox, request_timeout,
    callback_url
});

#[derive(Debug, Args, Clone, Default)]
pub struct SendArgs {
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
    #[arg(long, value_name = "POLICY", value_parser = choice::<InDoubtPolicy>())]
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
    #[arg(long, env = "ZNS_SEND_WINDOW", value_parser = str::parse::<WindowSetting>, value_name = "HH:MM-HH:MM")]
    pub send_window: Option<WindowSetting>,

    /// Outside the send window, sleep until it opens instead of pausing.
    #[arg(long)]
    pub wait: bool,
}

into_opts!(SendArgs => SendOpts {
    concurrency, rate, daily_quota, in_doubt, max_attempts, outage_after, backoff, send_window,
    wait
});

/// Run safety: stored with the campaign; given on `resume`, they replace the stored value.
#[derive(Debug, Args, Clone, Default)]
pub struct SafetyArgs {
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

into_opts!(SafetyArgs => SafetyOpts { not_after, valid_for, min_interval_per_phone });

#[derive(Debug, Args, Clone, Default)]
pub struct CsvArgs {
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

    /// Sheet to read from an .xlsx/.xls/.ods workbook [default: the first].
    #[arg(long, value_name = "NAME")]
    pub sheet: Option<String>,
}

into_opts!(CsvArgs => CsvOpts {
    phone_column, delimiter, optional_columns, allow_duplicate_phones, sheet
});

/// How the template pre-flight is sourced (`run`, `resume`).
#[derive(Debug, Args, Clone, Default)]
pub struct TemplateCheckArgs {
    /// Send without checking the file against the template (no template
    /// info is fetched; rows the template refuses fail at the provider,
    /// after their token is bought).
    #[arg(long)]
    pub skip_template_check: bool,

    /// Fetch the template info again instead of using the cached copy.
    #[arg(long, conflicts_with = "skip_template_check")]
    pub refresh_template: bool,
}

into_opts!(TemplateCheckArgs => TemplateCheckOpts { skip_template_check, refresh_template });

#[cfg(test)]
mod tests {
    use clap::{CommandFactory, Parser};

    use super::*;
    use crate::cli::{Cli, Command};

    fn run_args(flags: &[&str]) -> Result<crate::cli::RunArgs, clap::Error> {
        let argv = ["zns-batch", "run", "x.csv", "--campaign", "c"];
        match Cli::try_parse_from(argv.iter().chain(flags))?.command {
            Command::Run(a) => Ok(a),
            other => panic!("not run: {other:?}"),
        }
    }

    #[test]
    fn an_oauth_code_or_state_may_start_with_a_dash() {
        // Zalo's codes and our states are random base64url: '-' is a legal first byte.
        let argv = [
            "zns-batch",
            "zalo",
            "connect",
            "--code",
            "-Zc0de",
            "--auth-state",
            "-st",
        ];
        match Cli::try_parse_from(argv).expect("parses").command {
            Command::Zalo(z) => match z.command {
                crate::cli::ZaloCommand::Connect {
                    code, auth_state, ..
                } => {
                    assert_eq!(code.as_deref(), Some("-Zc0de"));
                    assert_eq!(auth_state.as_deref(), Some("-st"));
                }
                other => panic!("not connect: {other:?}"),
            },
            other => panic!("not zalo: {other:?}"),
        }
    }

    #[test]
    fn the_command_line_is_consistent() {
        // Ids named by conflicts_with, defaults against their parsers, ...
        Cli::command().debug_assert();
    }

    #[test]
    fn flags_become_the_core_request_parts() {
        let a = run_args(&[
            "--provider",
            "zalo",
            "--oa-id",
            "7",
            "--in-doubt",
            "hold",
            "--send-window",
            "off",
            "--rate",
            "5",
            "--valid-for",
            "6h",
            "--delimiter",
            "tab",
            "--optional-columns",
            "a,b",
            "--skip-template-check",
        ])
        .expect("parses");
        let p = ProviderOpts::from(a.sending.provider);
        assert_eq!(p.provider, Some(ProviderKind::Zalo));
        assert_eq!(p.oa_id.as_deref(), Some("7"));
        let s = SendOpts::from(a.sending.send);
        assert_eq!(s.in_doubt, Some(InDoubtPolicy::Hold));
        assert_eq!(s.send_window, Some(WindowSetting::Off));
        assert_eq!((s.rate, s.concurrency), (Some(5), None));
        let safety = SafetyOpts::from(a.sending.safety);
        assert_eq!(safety.valid_for, Some(Duration::from_secs(6 * 3600)));
        let csv = CsvOpts::from(a.csv_opts);
        assert_eq!(csv.delimiter, Some(b'\t'));
        assert_eq!(csv.optional_columns, ["a", "b"]);
        assert!(TemplateCheckOpts::from(a.template_check).skip_template_check);
    }

    #[test]
    fn a_name_off_the_list_is_refused_with_the_list_and_exit_2() {
        let e = run_args(&["--provider", "zal"]).expect_err("refused");
        assert_eq!(e.kind(), clap::error::ErrorKind::InvalidValue);
        assert_eq!(e.exit_code(), 2);
        let text = e.to_string();
        assert!(
            text.contains("[possible values: sandbox, etelecom, zalo, esms]"),
            "{text}"
        );
        let e = run_args(&["--in-doubt", "maybe"]).expect_err("refused");
        assert!(
            e.to_string().contains("[possible values: resend, hold]"),
            "{e}"
        );
    }
}

/// `migrate`: the ledger to copy and where it goes.
#[derive(Debug, Args)]
pub struct MigrateArgs {
    /// The SQLite state file to copy (its data is left as it is).
    #[arg(long, value_name = "PATH")]
    pub from: std::path::PathBuf,

    /// Where to: postgres://USER[:PASSWORD]@HOST[:PORT]/DB (postgresql:// too), or a
    /// SQLite file path (a compacted copy). It must hold no campaign yet.
    #[arg(long, value_name = "URL_OR_PATH")]
    pub to: String,
}
