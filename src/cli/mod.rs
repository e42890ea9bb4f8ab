//! The command line. Options that a config file may also set are `Option`s
//! here so "not given" can fall through to the file, then to defaults.

pub mod app;
pub mod logging;
pub mod options;
pub mod printer;
pub mod sandbox;
pub mod signals;
pub mod team;

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};

use crate::cli::logging::LogFormat;
pub use crate::cli::options::{CsvArgs, ProviderArgs, SafetyArgs, SendArgs, TemplateCheckArgs};
pub use crate::cli::sandbox::SandboxArgs;
use crate::model::clock::parse_duration;

const ABOUT: &str =
    "Send Zalo ZNS Journey messages in bulk from a CSV or an Excel file — resumable, \
exactly-once per row, under a rate limit and the OA's daily quota. `zns-batch serve` opens a web \
console (upload, check, send, watch delivery) at http://127.0.0.1:8080.";

const EXAMPLES: &str = "\
Examples:
  # Try it: a sample campaign on the embedded sandbox (no network, no key)
  zns-batch run samples/billing-notice.csv --campaign demo --template-id 246810

  # Check a file before sending: every bad row with its line and reason
  zns-batch validate customers.csv

  # Real sends through eTelecom (key from the environment, never printed)
  ZNS_API_KEY=... zns-batch run bills.csv --campaign bills-2026-11 \\
      --provider etelecom --oa-id 4318226164000000000 --template-id 300100 \\
      --rate 50 --daily-quota 5000

  # A named profile from ./zns-batch.toml: see the plan first, then send
  zns-batch --profile billing run bills.csv --campaign bills-2026-11 --dry-run
  zns-batch --profile billing resume bills-2026-11

  # After a crash, an outage or a quota pause: carry on where it stopped
  zns-batch resume bills-2026-11

  # The web console: upload a file, check it, send, watch delivery
  zns-batch serve                # then open http://127.0.0.1:8080 in a browser

  # What happened to every row, and was it delivered
  zns-batch status
  zns-batch reconcile bills-2026-11
  zns-batch report bills-2026-11 --out bills-2026-11.csv

Precedence: flag > environment variable > --profile section > config file top level > default.
Exit codes: 0 finished · 1 fatal (auth rejected, state unusable) · 2 bad usage or input file · 3 paused, resumable (quota, send window, Ctrl-C, outage) · 4 over, but the deadline passed first (unsent rows expired)";

#[derive(Debug, Parser)]
#[command(name = "zns-batch", version, about = ABOUT, after_help = EXAMPLES, propagate_version = true)]
pub struct Cli {
    /// The ledger: a SQLite file (default state/zns-batch.sqlite), or a
    /// PostgreSQL URL (postgres://user@host/db) that several processes share.
    // Hidden in --help: a URL may hold a password.
    #[arg(
        long,
        global = true,
        env = "ZNS_STATE",
        hide_env_values = true,
        value_name = "PATH|URL"
    )]
    pub state: Option<PathBuf>,

    /// TOML config file (default: ./zns-batch.toml if present). Flags override it.
    #[arg(long, global = true, env = "ZNS_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,

    /// Use the config file's [profiles.NAME] section over its top level.
    #[arg(long, global = true, env = "ZNS_PROFILE", value_name = "NAME")]
    pub profile: Option<String>,

    /// Machine-readable JSON on stdout instead of tables.
    #[arg(long, global = true)]
    pub json: bool,

    /// More log detail on stderr (-v info, -vv debug). Phones are masked, keys never shown.
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,

    /// Only errors on stderr; no progress bar.
    #[arg(short, long, global = true, conflicts_with = "verbose")]
    pub quiet: bool,

    /// Log lines as text or as JSON objects (one per line).
    #[arg(
        long,
        global = true,
        value_enum,
        default_value = "text",
        value_name = "FORMAT"
    )]
    pub log_format: LogFormat,

    /// Append log lines to this file instead of stderr (summaries still go to stdout).
    #[arg(long, global = true, value_name = "FILE")]
    pub log_file: Option<PathBuf>,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Import a CSV as a campaign and send it (resumes if the campaign exists with the same file).
    #[command(after_help = "\
Examples:
  zns-batch run samples/billing-notice.csv --campaign demo --template-id 246810
  zns-batch run bills.csv --campaign bills-nov --provider etelecom --oa-id 43182261 \\
      --template-id 300100 --concurrency 32 --rate 50 --daily-quota 5000
  zns-batch run bills.csv --campaign bills-nov --dry-run      # import and plan, send nothing
  zns-batch --profile billing run bills.csv --campaign bills-nov --send-window 07:00-22:00 --wait
  zns-batch run bills.csv --campaign bills-nov --test-phones 0912345678   # a test first, then `resume`
  zns-batch run bills.csv --campaign bills-nov --start-at \"2026-12-07 08:00\"   # OA local time

The dry run prints the plan (rows accepted and rejected with the first reasons,
tokens to buy or reuse, messages, estimated fees, quota days) and sends nothing;
`zns-batch resume <campaign>` then sends it.")]
    Run(RunArgs),
    /// Continue a paused or interrupted campaign where it stopped.
    #[command(after_help = "\
Examples:
  zns-batch resume bills-nov
  zns-batch resume bills-nov --concurrency 8 --rate 20
  zns-batch resume bills-nov --in-doubt resend   # also resend rows held in doubt
  zns-batch resume bills-nov --start-at 2026-12-07T08:00   # schedule it (or move its schedule)
  zns-batch resume bills-nov                     # a scheduled campaign: starts it now, schedule cancelled")]
    Resume(ResumeArgs),
    /// Show campaigns: counts per state, today's quota use, next reset, delivery, last error.
    #[command(after_help = "\
Examples:
  zns-batch status
  zns-batch status bills-nov --json")]
    Status(StatusArgs),
    /// Write one CSV line per input row: phone, state, msg_id, error, attempts, times, delivery.
    #[command(after_help = "\
Examples:
  zns-batch report bills-nov --out bills-nov.csv
  zns-batch report bills-nov --excel --out bills-nov.csv   # UTF-8 BOM so Excel shows Vietnamese
  zns-batch report bills-nov --json > bills-nov.jsonl      # one JSON object per row

Cells starting with = + - @ are prefixed with ' so a spreadsheet never runs them.")]
    Report(ReportArgs),
    /// Look up sent messages with the provider (eTelecom GetMessage) and store their delivery status and fees.
    #[command(after_help = "\
Examples:
  zns-batch reconcile bills-nov
  zns-batch reconcile bills-nov --max-lookups 2000 --rate 5    # a slice now, the rest later
  zns-batch reconcile bills-nov --recheck-after 0s             # ask again about unknown/received rows

Each row's delivery_status (unknown, received, seen), delivery time and fees are
stored as they come; a stopped or bounded reconcile carries on where it left off.
Only eTelecom (and the sandbox) offer a message lookup; Zalo and eSMS report
delivery by webhook/callback, so reconcile says so and exits 2.")]
    Reconcile(ReconcileArgs),
    /// Print a shell completion script.
    #[command(after_help = "\
Examples:
  zns-batch completions bash > ~/.local/share/bash-completion/completions/zns-batch
  zns-batch completions zsh  > ~/.zfunc/_zns-batch      # with fpath+=~/.zfunc in .zshrc
  zns-batch completions fish > ~/.config/fish/completions/zns-batch.fish")]
    Completions(CompletionsArgs),
    /// Check a CSV without sending: every rejected row with its line and reason.
    #[command(
        after_help = "Examples:\n  zns-batch validate samples/bad-rows.csv\n  zns-batch validate bills.csv --json"
    )]
    Validate(ValidateArgs),
    /// Run the sandbox provider server on loopback (eTelecom, Zalo or eSMS protocol).
    #[command(after_help = "\
Examples:
  zns-batch sandbox --listen 127.0.0.1:8765        # expects API key `sandbox-key` (the default)
  zns-batch sandbox --protocol etelecom --daily-quota 300 --fail-5xx 0.1 --fail-429 0.05 --drop-reply 0.02
  zns-batch sandbox --protocol zalo --template 217489=customer_name:1-30,amount:1-20:number,note?:0-50
  ZNS_ZALO_OA_SECRET=... zns-batch sandbox --protocol zalo --callback-url http://127.0.0.1:9000/zalo
Then: zns-batch run FILE.csv --campaign c --template-id 1 --provider etelecom \\
        --base-url http://127.0.0.1:8765/v1/shop --api-key sandbox-key --oa-id 1")]
    Sandbox(SandboxArgs),
    /// The web console (upload, check, send, live progress, delivery charts) and the
    /// long-running service: delivery webhooks (Zalo, eSMS, eTelecom) into the ledger,
    /// /api/v1, /healthz, /metrics.
    #[command(after_help = "\
Open the console in a browser at the printed address (default http://127.0.0.1:8080).

Examples:
  zns-batch serve                                   # console at http://127.0.0.1:8080, loopback only
  zns-batch serve --listen 127.0.0.1:0              # any free port; prints `listening on http://ADDR`
  ZNS_WEBHOOK_TOKEN=... ZNS_ZALO_OA_SECRET=... zns-batch serve --public-url https://zns.example.vn

Providers call (behind your reverse proxy at --public-url):
  POST {public_url}/webhooks/zalo                   (signed with zalo_app_id + the OA secret key)
  GET  {public_url}/webhooks/esms/$ZNS_WEBHOOK_TOKEN
  POST {public_url}/webhooks/etelecom/$ZNS_WEBHOOK_TOKEN
A --listen address other than loopback needs an access token (env ZNS_SERVE_TOKEN, or the
variable named by `auth_token_env`; at least 16 characters); /api and /metrics then need
`Authorization: Bearer TOKEN`, the console a sign-in (sessions: config `session_ttl`,
`session_idle`; 5 sign-in attempts a minute per address).")]
    Serve(ServeArgs),
    /// Console users: add, list, remove, set a password (roles viewer, operator, admin).
    #[command(after_help = "\
Examples:
  zns-batch users add anh --role operator
  zns-batch users list
  zns-batch users passwd anh
  zns-batch users role anh --role viewer
  zns-batch users remove anh

Roles: viewer reads; operator also uploads, starts, pauses and decides rows in doubt;
admin also manages users and tokens. Once a user or an API token exists, serve asks
everyone to sign in, on loopback too.")]
    Users(team::UsersArgs),
    /// Named API tokens for scripts: add (printed once), list, revoke.
    #[command(after_help = "\
Examples:
  zns-batch tokens add nightly --role operator > nightly.token
  zns-batch tokens list
  zns-batch tokens revoke nightly")]
    Tokens(team::TokensArgs),
    /// The audit log: who uploaded, started, paused, decided rows in doubt, changed users or tokens.
    #[command(after_help = "\
Examples:
  zns-batch audit                       # newest first, every campaign
  zns-batch audit bills-nov --limit 20
  zns-batch audit --json --before 1200  # older entries, as JSON")]
    Audit(team::AuditArgs),
    /// Connect the Zalo OA once (authorization with PKCE); its tokens then renew themselves.
    #[command(after_help = "\
Examples:
  ZNS_SECRET_KEY=... zns-batch zalo connect                 # prints the URL an OA admin opens
  ZNS_SECRET_KEY=... zns-batch zalo connect --redirect-uri https://zns.example.vn/oauth/zalo/callback
  ZNS_SECRET_KEY=... ZNS_ZALO_APP_SECRET=... zns-batch zalo connect --code CODE   # no serve: paste the code
  zns-batch zalo status

Needs `zalo_app_id` in the config file, ZNS_ZALO_APP_SECRET (the app secret) and ZNS_SECRET_KEY
(the key the tokens are encrypted with in the state database). With `serve` running at the
redirect URI, its /oauth/zalo/callback finishes the connection by itself.")]
    Zalo(ZaloArgs),
    /// Copy a whole ledger (the SQLite state file) into PostgreSQL, or into a new SQLite file.
    #[command(after_help = "\
Examples:
  zns-batch migrate --from state/zns-batch.sqlite --to postgres://zns@db.internal/zns
  zns-batch migrate --from state/zns-batch.sqlite --to postgresql://zns:PASSWORD@10.0.0.5:5432/zns
  zns-batch migrate --from state/zns-batch.sqlite --to state/compacted.sqlite   # a SQLite copy

Everything is copied: campaigns and their rows, counts, tokens, quota days, delivery
events, schedules, test sends, users, API tokens, the audit log and the Zalo OA's tokens
(still encrypted). Ids are kept. The copy is one transaction: if anything fails, the target
is left as it was; afterwards every table's rows are counted on both sides. The target
must hold no campaign yet, and no campaign may be running on the source (stop it first).
Progress goes to stderr, the summary to stdout; a password in the URL is never printed.")]
    Migrate(crate::cli::options::MigrateArgs),
}

#[derive(Debug, Args)]
pub struct ZaloArgs {
    #[command(subcommand)]
    pub command: ZaloCommand,
}

#[derive(Debug, Subcommand)]
pub enum ZaloCommand {
    /// Print the OA authorization URL; with --code, finish the connection.
    Connect {
        /// Where Zalo sends the admin back (registered with the Zalo app)
        /// [default: {public_url}/oauth/zalo/callback].
        #[arg(long, value_name = "URL")]
        redirect_uri: Option<String>,
        /// The code Zalo's redirect carried: exchange it and store the tokens.
        // Codes and states are random base64url, so they may start with '-'.
        #[arg(long, value_name = "CODE", allow_hyphen_values = true)]
        code: Option<String>,
        /// The redirect's `state`, if you have it (checked against the pending authorization).
        #[arg(
            long,
            value_name = "STATE",
            requires = "code",
            allow_hyphen_values = true
        )]
        auth_state: Option<String>,
        /// The redirect's `oa_id`, kept for `zalo status`.
        #[arg(long, value_name = "ID", requires = "code")]
        oa_id: Option<String>,
    },
    /// The connected OA, the access token's expiry and the refresh token's age (never a token).
    Status,
}

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Address to bind (default: config `listen`, else 127.0.0.1:8080).
    #[arg(long, value_name = "ADDR")]
    pub listen: Option<String>,

    /// The URL providers reach this server at, e.g. https://host/prefix (config `public_url`).
    #[arg(long, value_name = "URL")]
    pub public_url: Option<String>,

    /// Do not resume by itself a console campaign paused by the daily quota
    /// or the send window (by default it resumes when the next quota day
    /// starts or the window opens; the console can switch this too).
    #[arg(long)]
    pub no_auto_resume: bool,
}

impl From<ServeArgs> for crate::serve::ServeOptions {
    fn from(a: ServeArgs) -> Self {
        crate::serve::ServeOptions {
            listen: a.listen,
            public_url: a.public_url,
            auto_resume: !a.no_auto_resume,
        }
    }
}

#[derive(Debug, Args)]
pub struct RunArgs {
    /// Recipients: header row, a phone column, one column per template parameter.
    pub csv: PathBuf,

    /// Campaign name: the key for resume, status and report.
    #[arg(long)]
    pub campaign: String,

    /// ZNS Journey template id.
    #[arg(long, env = "ZNS_TEMPLATE_ID")]
    pub template_id: Option<String>,

    /// Journey token type (validity in days is the suffix).
    #[arg(long, value_name = "TYPE")]
    pub token_type: Option<String>,

    /// Import and plan only: nothing is sent, nothing is bought.
    #[arg(long, conflicts_with = "test_phones")]
    pub dry_run: bool,

    #[command(flatten)]
    pub launch: LaunchArgs,

    #[command(flatten)]
    pub sending: SendingArgs,
    #[command(flatten)]
    pub csv_opts: CsvArgs,
    #[command(flatten)]
    pub template_check: TemplateCheckArgs,
}

#[derive(Debug, Args)]
pub struct ResumeArgs {
    /// The campaign to continue.
    pub campaign: String,

    /// The original CSV, if the import itself was interrupted and the file moved.
    #[arg(long, value_name = "FILE")]
    pub csv: Option<PathBuf>,

    /// Mend a campaign stopped by a refused template that sent nothing: send it with this template instead.
    #[arg(long, value_name = "ID")]
    pub template_id: Option<String>,

    #[command(flatten)]
    pub launch: LaunchArgs,

    #[command(flatten)]
    pub sending: SendingArgs,
    #[command(flatten)]
    pub template_check: TemplateCheckArgs,
}

/// When `run` and `resume` send: later, or first to test phones only.
#[derive(Debug, Args)]
pub struct LaunchArgs {
    /// Start at this time, OA local time (2026-12-07T08:00 or "2026-12-07 08:00"); waits for it
    /// here, and `serve` starts it then if this process is gone. `now`: at once (cancels a schedule).
    #[arg(long, value_name = "TIME")]
    pub start_at: Option<String>,

    /// Send the first accepted row's data to these phones only (comma-separated), then stop
    /// without sending the campaign; `zns-batch resume CAMPAIGN` sends it.
    #[arg(long, value_name = "PHONES", conflicts_with = "start_at")]
    pub test_phones: Option<String>,
}

/// The flags `run` and `resume` share: the provider and how to reach it,
/// how fast, and the run's safety limits.
#[derive(Debug, Args)]
pub struct SendingArgs {
    #[command(flatten)]
    pub provider: ProviderArgs,
    #[command(flatten)]
    pub send: SendArgs,
    #[command(flatten)]
    pub safety: SafetyArgs,
}

#[derive(Debug, Args)]
pub struct StatusArgs {
    /// Only this campaign.
    pub campaign: Option<String>,
}

#[derive(Debug, Args)]
pub struct ReportArgs {
    pub campaign: String,
    /// Output file (default: stdout). Never the campaign's input file; an
    /// existing file only with --force.
    #[arg(long, short)]
    pub out: Option<PathBuf>,
    /// Replace the --out file if it exists.
    #[arg(long)]
    pub force: bool,
    /// Start with a UTF-8 BOM so Excel shows Vietnamese text correctly.
    #[arg(long)]
    pub excel: bool,
}

#[derive(Debug, Args)]
pub struct ReconcileArgs {
    /// The campaign whose sent rows to look up.
    pub campaign: String,

    /// Most lookups this run; the rest wait for the next reconcile (exit 3) [default: 5000].
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    pub max_lookups: Option<u64>,

    /// Lookups per second [default: the config's rate, else 10].
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    pub rate: Option<u32>,

    /// Lookups in flight at once [default: 4].
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=256))]
    pub concurrency: Option<u32>,

    /// Ask again about rows still `unknown` or `received` once their last check is this old [default: 1h].
    #[arg(long, value_parser = parse_duration, value_name = "DURATION")]
    pub recheck_after: Option<Duration>,

    /// First retry delay for a failed lookup; doubles per attempt [default: 250ms].
    #[arg(long, value_parser = parse_duration, value_name = "DURATION")]
    pub backoff: Option<Duration>,

    #[command(flatten)]
    pub provider: ProviderArgs,
}

#[derive(Debug, Args)]
pub struct CompletionsArgs {
    /// bash, zsh, fish, elvish or powershell.
    #[arg(value_enum)]
    pub shell: clap_complete::Shell,
}

#[derive(Debug, Args)]
pub struct ValidateArgs {
    pub csv: PathBuf,
    /// Also check the file against this template's parameters, as declared
    /// in the config file ([templates.ID]) or cached by an earlier run; no
    /// provider is called.
    #[arg(long, value_name = "ID")]
    pub template_id: Option<String>,
    #[command(flatten)]
    pub csv_opts: CsvArgs,
}
