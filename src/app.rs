//! The commands: settle the effective settings, open the state, call the
//! pipeline, print, and map every outcome to its exit code.

use std::num::NonZeroU32;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;

use crate::campaign::{self, CampaignError, CampaignSpec};
use crate::cli::{
    Cli, Command, CsvOpts, ProviderOpts, ReconcileArgs, ReportArgs, ResumeArgs, RunArgs,
    SafetyOpts, SendOpts, StatusArgs, ValidateArgs,
};
use crate::config::{ConfigFile, DEFAULT_STATE};
use crate::csv_input::CsvOptions;
use crate::plan::{self, PlanInput, PlanSettings};
use crate::provider::{self, ErrorTable, ProviderKind, ProviderSettings, Secret};
use crate::quota;
use crate::reconcile::{self, ReconcileOptions};
use crate::report::{self, Summary};
use crate::runner::{self, InDoubtPolicy, RunCounters, RunOptions, Stop, StopReason};
use crate::sandbox::{Sandbox, SandboxConfig};
use crate::store::{Campaign, CampaignStatus, QuotaKey, Store};
use crate::window::{SendWindow, WindowSetting};

pub const EXIT_OK: i32 = 0;
pub const EXIT_FATAL: i32 = 1;
pub const EXIT_USAGE: i32 = 2;
pub const EXIT_PAUSED: i32 = 3;
/// Over, but the deadline passed first: some rows were never sent (`expired`).
pub const EXIT_EXPIRED: i32 = 4;

pub const DEFAULT_TOKEN_TYPE: &str = "token_logistics_7";
/// OA id used with the sandbox when none is given.
pub const SANDBOX_OA_ID: &str = "1000000000000000001";

/// An error with the exit code it deserves.
#[derive(Debug, thiserror::Error)]
pub enum AppError {
    /// Bad flags or a bad input file: exit 2.
    #[error("{0}")]
    Usage(String),
    /// Unusable state, rejected credentials, anything unexpected: exit 1.
    #[error("{0:#}")]
    Fatal(#[from] anyhow::Error),
}

impl AppError {
    pub fn exit_code(&self) -> i32 {
        match self {
            AppError::Usage(_) => EXIT_USAGE,
            AppError::Fatal(_) => EXIT_FATAL,
        }
    }
}

impl From<CampaignError> for AppError {
    fn from(e: CampaignError) -> Self {
        match e {
            CampaignError::Store(e) => AppError::Fatal(e.into()),
            CampaignError::LockFile { .. } => AppError::Fatal(e.into()),
            // The file, another file under the same name, a running twin: the user's to fix.
            other => AppError::Usage(other.to_string()),
        }
    }
}

impl From<crate::store::StoreError> for AppError {
    fn from(e: crate::store::StoreError) -> Self {
        AppError::Fatal(e.into())
    }
}

fn usage(msg: impl Into<String>) -> AppError {
    AppError::Usage(msg.into())
}

pub struct Globals {
    pub state: PathBuf,
    pub config: ConfigFile,
    /// The config file read, if any (shown in the dry-run plan).
    pub config_path: Option<PathBuf>,
    pub json: bool,
    pub quiet: bool,
}

pub async fn dispatch(cli: Cli) -> Result<i32, AppError> {
    quota::check_clock_override().map_err(usage)?;
    match cli.command {
        Command::Sandbox(args) => {
            crate::sandbox::serve_until_ctrl_c(args).await?;
            return Ok(EXIT_OK);
        }
        Command::Completions(args) => {
            let mut cmd = <Cli as clap::CommandFactory>::command();
            clap_complete::generate(args.shell, &mut cmd, "zns-batch", &mut std::io::stdout());
            return Ok(EXIT_OK);
        }
        _ => {}
    }
    let (config, config_path) = ConfigFile::load(cli.config.as_deref(), cli.profile.as_deref())
        .map_err(|e| usage(e.to_string()))?;
    let globals = Globals {
        state: cli
            .state
            .clone()
            .or_else(|| config.state.clone())
            .unwrap_or_else(|| PathBuf::from(DEFAULT_STATE)),
        config,
        config_path,
        json: cli.json,
        quiet: cli.quiet,
    };
    match cli.command {
        Command::Run(args) => {
            // Watch signals from the start, so one during the import or the
            // connection is a graceful stop too.
            let stop = Arc::new(Stop::default());
            let signals = watch_signals(
                stop.clone(),
                !globals.quiet,
                format!("zns-batch resume {}", args.campaign),
            );
            let code = run_cmd(&globals, args, stop).await;
            signals.abort();
            code
        }
        Command::Resume(args) => {
            let stop = Arc::new(Stop::default());
            let signals = watch_signals(
                stop.clone(),
                !globals.quiet,
                format!("zns-batch resume {}", args.campaign),
            );
            let code = resume_cmd(&globals, args, stop).await;
            signals.abort();
            code
        }
        Command::Status(args) => status_cmd(&globals, args),
        Command::Report(args) => report_cmd(&globals, args),
        Command::Validate(args) => validate_cmd(&globals, args),
        Command::Reconcile(args) => reconcile_cmd(&globals, args).await,
        Command::Sandbox(_) | Command::Completions(_) => Ok(EXIT_OK),
    }
}

// ----- settings -----------------------------------------------------------

fn csv_options(g: &Globals, o: &CsvOpts) -> Result<(CsvOptions, bool), AppError> {
    let mut opts = CsvOptions::default();
    if let Some(col) = o
        .phone_column
        .clone()
        .or_else(|| g.config.phone_column.clone())
    {
        opts.phone_column = col;
    }
    if let Some(d) = o.delimiter {
        if !d.is_ascii() {
            return Err(usage(format!(
                "--delimiter `{d}` must be a single ASCII character, e.g. ';' or '\\t'"
            )));
        }
        opts.delimiter = d as u8;
    }
    opts.optional_columns = if o.optional_columns.is_empty() {
        g.config.optional_columns.clone().unwrap_or_default()
    } else {
        o.optional_columns.clone()
    };
    let allow_dups = o.allow_duplicate_phones || g.config.allow_duplicate_phones.unwrap_or(false);
    Ok((opts, !allow_dups))
}

/// The window a run uses: flag or env > config > the one stored with the
/// campaign. `Some` in the second place when it came from flag, env or
/// config (and so should be stored for later resumes).
fn window_choice(
    g: &Globals,
    o: &SendOpts,
    stored: Option<&str>,
) -> (Option<SendWindow>, Option<WindowSetting>) {
    match o.send_window.or_else(|| g.config.send_window()) {
        Some(given) => (given.window(), Some(given)),
        None => (stored.and_then(|w| w.parse::<SendWindow>().ok()), None),
    }
}

fn remember_window(
    store: &mut Store,
    campaign: &Campaign,
    given: Option<WindowSetting>,
) -> Result<(), AppError> {
    if let Some(setting) = given {
        let text = setting.window().map(|w| w.to_string());
        if text != campaign.send_window {
            store.set_campaign_send_window(campaign.id, text.as_deref())?;
        }
    }
    Ok(())
}

fn run_options(g: &Globals, o: &SendOpts, stored_policy: Option<&str>) -> RunOptions {
    let c = &g.config;
    let mut r = RunOptions::default();
    if let Some(n) = o.concurrency.or(c.concurrency) {
        r.concurrency = n.max(1) as usize;
    }
    r.rate = o.rate.or(c.rate).and_then(NonZeroU32::new);
    r.daily_quota = o.daily_quota.or(c.daily_quota);
    r.in_doubt = o
        .in_doubt
        .or_else(|| c.in_doubt.as_deref().and_then(InDoubtPolicy::parse))
        .or_else(|| stored_policy.and_then(InDoubtPolicy::parse))
        .unwrap_or(InDoubtPolicy::Resend);
    if let Some(n) = o.max_attempts.or(c.max_attempts) {
        r.max_attempts = n.max(1);
    }
    if let Some(d) = o
        .outage_after
        .or_else(|| ConfigFile::duration(&c.outage_after))
    {
        r.outage_after = d;
    }
    if let Some(d) = o.backoff.or_else(|| ConfigFile::duration(&c.backoff)) {
        r.backoff_base = d;
    }
    r.progress = !g.quiet && !g.json;
    r.wait_for_window = o.wait;
    r
}

/// Deadline and frequency cap given on this command line, as stored values
/// (milliseconds). A deadline already past is a mistake, not a plan.
fn run_safety(o: &SafetyOpts) -> Result<(Option<i64>, Option<i64>), AppError> {
    let now = quota::now();
    let not_after = match (o.not_after, o.valid_for) {
        (Some(t), _) => Some(t),
        (None, Some(d)) => Some(now + d),
        (None, None) => None,
    };
    if let Some(t) = not_after.filter(|t| *t <= now) {
        return Err(usage(format!(
            "--not-after {} is already past (now {}); give a later time or leave it out",
            quota::fmt_local(t),
            quota::fmt_local(now)
        )));
    }
    let interval = o
        .min_interval_per_phone
        .map(|d| d.as_millis().min(i64::MAX as u128) as i64);
    Ok((not_after.map(quota::to_ms), interval))
}

/// Store what this command line says about the deadline and frequency cap.
fn apply_run_safety(
    store: &mut Store,
    campaign: Campaign,
    safety: (Option<i64>, Option<i64>),
) -> Result<Campaign, AppError> {
    if safety == (None, None) {
        return Ok(campaign);
    }
    store.update_run_safety(campaign.id, safety.0, safety.1)?;
    Ok(store.find_campaign(&campaign.name)?.unwrap_or(campaign))
}

/// The provider a run talks to; keeps an embedded sandbox alive.
struct Connection {
    provider: Arc<dyn provider::Provider>,
    /// Tokens are only reusable where they were bought.
    account: String,
    label: String,
    _sandbox: Option<Sandbox>,
}

/// Settle provider kind, URL and key from flags > env > file > defaults.
fn provider_choice(
    g: &Globals,
    o: &ProviderOpts,
    stored: Option<&Campaign>,
) -> Result<(ProviderKind, Option<String>, Option<String>), AppError> {
    let api_key = o
        .api_key
        .clone()
        .or_else(|| g.config.api_key_from_env())
        .filter(|k| !k.is_empty());
    let kind = match (o.provider, stored, g.config.provider.as_deref()) {
        (Some(k), _, _) => k,
        (None, Some(c), _) => ProviderKind::parse(&c.provider).ok_or_else(|| {
            usage(format!(
                "campaign `{}` names an unknown provider `{}`",
                c.name, c.provider
            ))
        })?,
        (None, None, Some(p)) => ProviderKind::parse(p).ok_or_else(|| {
            usage(format!(
                "config: provider = \"{p}\" is not one of sandbox, etelecom, zalo, esms"
            ))
        })?,
        (None, None, None) if api_key.is_some() => ProviderKind::Etelecom,
        _ => ProviderKind::Sandbox,
    };
    if let Some(c) = stored {
        if c.provider != kind.as_str() {
            return Err(usage(format!(
                "campaign `{}` was started with provider {}; it cannot switch to {} (tokens and tracking ids belong to the first)",
                c.name, c.provider, kind
            )));
        }
    }
    let base_url = o
        .base_url
        .clone()
        .or_else(|| stored.and_then(|c| c.base_url.clone()))
        .or_else(|| g.config.base_url.clone())
        .or_else(|| kind.default_base_url().map(str::to_string));
    Ok((kind, base_url, api_key))
}

async fn connect(
    g: &Globals,
    o: &ProviderOpts,
    kind: ProviderKind,
    base_url: Option<String>,
    api_key: Option<String>,
) -> Result<Connection, AppError> {
    let codes = ErrorTable::with_overrides(&g.config.error_codes).map_err(usage)?;
    let timeout = o
        .request_timeout
        .or_else(|| ConfigFile::duration(&g.config.request_timeout))
        .unwrap_or(Duration::from_secs(30));
    let secret = o
        .secret_key
        .clone()
        .or_else(|| g.config.secret_key_from_env());
    let embedded = uses_embedded_sandbox(kind, o, base_url.as_deref());
    let (base_url, api_key, secret, sandbox, label) = match (kind, base_url) {
        _ if embedded => {
            // The embedded sandbox: a real server on loopback, keys made up per run.
            let key = format!("embedded-{}", hex::encode(rand::random::<[u8; 12]>()));
            let secret = format!("embedded-{}", hex::encode(rand::random::<[u8; 12]>()));
            let sb = Sandbox::start(
                "127.0.0.1:0"
                    .parse()
                    .map_err(|e| AppError::Fatal(anyhow::anyhow!("{e}")))?,
                SandboxConfig {
                    protocol: kind,
                    api_key: key.clone(),
                    secret_key: secret.clone(),
                    ..SandboxConfig::default()
                },
            )
            .await
            .context("cannot start the embedded sandbox on 127.0.0.1")?;
            let url = sb.base_url();
            let label = match kind {
                ProviderKind::Sandbox => "sandbox (embedded, no network)".to_string(),
                _ => format!("{kind} protocol on the embedded sandbox (no network)"),
            };
            (url, key, Some(secret), Some(sb), label)
        }
        (_, Some(url)) => {
            let key = match (kind, api_key) {
                (_, Some(k)) => k,
                (ProviderKind::Sandbox, None) => "sandbox-key".to_string(),
                (_, None) => {
                    return Err(usage(format!(
                        "--provider {kind} needs an API key: pass --api-key, set ZNS_API_KEY, or name a variable with api_key_env in the config file"
                    )))
                }
            };
            let label = format!("{kind} ({url})");
            (url, key, secret, None, label)
        }
        (_, None) => return Err(usage(format!("--provider {kind} needs --base-url"))),
    };
    url_check(&base_url)?;
    let account = format!("{}|{}", kind.protocol(), base_url.trim_end_matches('/'));
    let provider = provider::build(ProviderSettings {
        kind,
        base_url,
        api_key: Secret::new(api_key),
        secret_key: secret.map(Secret::new),
        request_timeout: timeout,
        codes,
        esms_sandbox: false,
        callback_url: None,
    })
    .map_err(AppError::Fatal)?;
    Ok(Connection {
        provider,
        account,
        label,
        _sandbox: sandbox,
    })
}

/// No real endpoint: the sandbox provider without a URL, or `--embedded-sandbox`.
fn uses_embedded_sandbox(kind: ProviderKind, o: &ProviderOpts, base_url: Option<&str>) -> bool {
    o.embedded_sandbox || (kind == ProviderKind::Sandbox && base_url.is_none())
}

fn url_check(url: &str) -> Result<(), AppError> {
    match reqwest::Url::parse(url) {
        Ok(u) if u.scheme() == "http" || u.scheme() == "https" => Ok(()),
        _ => Err(usage(format!("--base-url `{url}` is not an http(s) URL"))),
    }
}

/// "No such campaign", naming the ones there are.
fn unknown_campaign(g: &Globals, store: &Store, name: &str) -> AppError {
    match store.campaign_names() {
        Ok(names) if !names.is_empty() => usage(format!(
            "no campaign `{name}` in {}; known: {}",
            g.state.display(),
            names.join(", ")
        )),
        _ => usage(format!(
            "no campaign `{name}` in {} (it has none yet)",
            g.state.display()
        )),
    }
}

fn open_store(path: &Path) -> Result<Store, AppError> {
    Store::open(path).map_err(|e| {
        AppError::Fatal(
            anyhow::anyhow!(e).context(
                "the state database is unusable (check the path, permissions and free disk)",
            ),
        )
    })
}

// ----- run / resume ---------------------------------------------------------

async fn run_cmd(g: &Globals, args: RunArgs, stop: Arc<Stop>) -> Result<i32, AppError> {
    let template_id = args
        .template_id
        .clone()
        .or_else(|| g.config.template_id.clone())
        .ok_or_else(|| usage("--template-id is required (or template_id in the config file)"))?;
    let token_type = args
        .token_type
        .clone()
        .or_else(|| g.config.token_type.clone())
        .unwrap_or_else(|| DEFAULT_TOKEN_TYPE.to_string());
    let (csv_opts, dedup) = csv_options(g, &args.csv_opts)?;
    let safety = run_safety(&args.safety)?;
    let mut store = open_store(&g.state)?;
    let existing = store.find_campaign(&args.campaign)?;
    let (kind, base_url, api_key) = provider_choice(g, &args.provider, existing.as_ref())?;
    let oa_id = args
        .provider
        .oa_id
        .clone()
        .or_else(|| g.config.oa_id.clone())
        .or_else(|| {
            (kind == ProviderKind::Sandbox || args.provider.embedded_sandbox)
                .then(|| SANDBOX_OA_ID.to_string())
        })
        .ok_or_else(|| usage(format!("--provider {kind} needs --oa-id (or ZNS_OA_ID)")))?;
    let mut opts = run_options(
        g,
        &args.send,
        existing.as_ref().map(|c| c.in_doubt_policy.as_str()),
    );
    let (window, window_given) = window_choice(
        g,
        &args.send,
        existing.as_ref().and_then(|c| c.send_window.as_deref()),
    );
    opts.send_window = window;
    if let Some(c) = &existing {
        if c.template_id != template_id || c.oa_id != oa_id {
            return Err(usage(format!(
                "campaign `{}` exists with template {} and OA {}; a campaign's template and OA cannot change. Use a new --campaign name",
                c.name, c.template_id, c.oa_id
            )));
        }
    }
    let _lock = campaign::lock(&g.state, &args.campaign)?;
    // The embedded sandbox is per run: no base URL is stored for it.
    let stored_url = if args.provider.embedded_sandbox {
        None
    } else if kind == ProviderKind::Sandbox {
        args.provider.base_url.as_deref()
    } else {
        base_url.as_deref()
    };
    let signalled = stop.signal_flag();
    let import_started = std::time::Instant::now();
    let (campaign, imported, fresh) = campaign::open_or_import(
        &mut store,
        &CampaignSpec {
            name: &args.campaign,
            csv: &args.csv,
            template_id: &template_id,
            token_type: &token_type,
            provider: kind.as_str(),
            base_url: stored_url,
            oa_id: &oa_id,
            in_doubt_policy: opts.in_doubt.as_str(),
            not_after_ms: safety.0,
            min_interval_ms: safety.1.or_else(|| {
                ConfigFile::duration(&g.config.min_interval_per_phone)
                    .map(|d| d.as_millis().min(i64::MAX as u128) as i64)
            }),
            csv_options: &csv_opts,
            dedup_phones: dedup,
            interrupted: Some(&signalled),
        },
    )?;
    let import_secs = fresh.then(|| import_started.elapsed().as_secs_f64());
    let campaign = apply_run_safety(&mut store, campaign, safety)?;
    if !g.quiet && !g.json {
        if fresh && !campaign.import_done {
            eprintln!(
                "import stopped after {} rows of {} (interrupted); `zns-batch resume {}` finishes it",
                imported.accepted + imported.rejected,
                args.csv.display(),
                campaign.name
            );
        } else if fresh {
            eprintln!(
                "imported {} rows from {} ({} accepted, {} rejected) in {:.1} s",
                imported.accepted + imported.rejected,
                args.csv.display(),
                imported.accepted,
                imported.rejected,
                import_secs.unwrap_or_default()
            );
        } else {
            eprintln!(
                "campaign `{}` already imported from this file: resuming it",
                campaign.name
            );
        }
    }
    remember_window(&mut store, &campaign, window_given)?;
    if args.dry_run {
        let settings = plan_settings(g, &campaign, kind, base_url.as_deref(), &opts);
        let mut plan = dry_run(
            &store,
            &campaign,
            kind,
            base_url.as_deref(),
            &opts,
            settings,
        )?;
        plan.import_secs = import_secs;
        plan.print(g.json);
        return Ok(EXIT_OK);
    }
    let conn = connect(g, &args.provider, kind, base_url, api_key).await?;
    execute(g, store, campaign, conn, opts, stop).await
}

async fn resume_cmd(g: &Globals, args: ResumeArgs, stop: Arc<Stop>) -> Result<i32, AppError> {
    let mut store = open_store(&g.state)?;
    let Some(mut campaign) = store.find_campaign(&args.campaign)? else {
        return Err(unknown_campaign(g, &store, &args.campaign));
    };
    let _lock = campaign::lock(&g.state, &campaign.name)?;
    let safety = run_safety(&args.safety)?;
    campaign = apply_run_safety(&mut store, campaign, safety)?;
    if !campaign.import_done {
        let csv = args
            .csv
            .clone()
            .unwrap_or_else(|| PathBuf::from(&campaign.csv_path));
        let (opts, dedup) = csv_options(g, &CsvOpts::default())?;
        let (c, counts) = campaign::resume_import(
            &mut store,
            &campaign,
            &csv,
            &opts,
            dedup,
            Some(&stop.signal_flag()),
        )?;
        if !g.quiet && !g.json && !c.import_done {
            eprintln!(
                "import stopped again after {} more rows (interrupted); resume finishes it",
                counts.accepted + counts.rejected
            );
        } else if !g.quiet && !g.json {
            eprintln!(
                "finished the interrupted import: {} more rows ({} rejected)",
                counts.accepted + counts.rejected,
                counts.rejected
            );
        }
        campaign = c;
    }
    let (kind, base_url, api_key) = provider_choice(g, &args.provider, Some(&campaign))?;
    if let Some(oa) = &args.provider.oa_id {
        if *oa != campaign.oa_id {
            return Err(usage(format!(
                "campaign `{}` sends for OA {}; --oa-id {} cannot change that",
                campaign.name, campaign.oa_id, oa
            )));
        }
    }
    let mut opts = run_options(g, &args.send, Some(&campaign.in_doubt_policy));
    if opts.in_doubt.as_str() != campaign.in_doubt_policy {
        store.update_campaign_settings(campaign.id, opts.in_doubt.as_str())?;
    }
    let (window, window_given) = window_choice(g, &args.send, campaign.send_window.as_deref());
    opts.send_window = window;
    remember_window(&mut store, &campaign, window_given)?;
    let conn = connect(g, &args.provider, kind, base_url, api_key).await?;
    execute(g, store, campaign, conn, opts, stop).await
}

fn plan_settings(
    g: &Globals,
    campaign: &Campaign,
    kind: ProviderKind,
    base_url: Option<&str>,
    opts: &RunOptions,
) -> PlanSettings {
    PlanSettings {
        config_file: g.config_path.as_ref().map(|p| p.display().to_string()),
        profile: g.config.profile.clone(),
        provider: kind.as_str().to_string(),
        base_url: base_url.map(str::to_string),
        oa_id: campaign.oa_id.clone(),
        template_id: campaign.template_id.clone(),
        token_type: campaign.token_type.clone(),
        concurrency: opts.concurrency,
        rate: opts.rate.map(NonZeroU32::get),
        daily_quota: opts.daily_quota,
        in_doubt: opts.in_doubt.as_str().to_string(),
        send_window: opts.send_window.map(|w| w.to_string()),
        token_fee: g.config.token_fee,
        message_fee: g.config.message_fee,
    }
}

/// Import and plan: reads only the store, never the provider.
fn dry_run(
    store: &Store,
    campaign: &Campaign,
    kind: ProviderKind,
    base_url: Option<&str>,
    opts: &RunOptions,
    settings: PlanSettings,
) -> Result<plan::Plan, AppError> {
    // Tokens are reusable only where they were bought: the embedded sandbox
    // (no base URL) is new every run.
    let account = base_url.map(|u| format!("{}|{}", kind.protocol(), u.trim_end_matches('/')));
    let plan = plan::build(PlanInput {
        store,
        campaign,
        account: account.as_deref(),
        uses_tokens: kind.protocol() != ProviderKind::Esms,
        opts,
        settings,
    })?;
    Ok(plan)
}

async fn execute(
    g: &Globals,
    store: Store,
    campaign: Campaign,
    conn: Connection,
    opts: RunOptions,
    stop: Arc<Stop>,
) -> Result<i32, AppError> {
    let quota_key = QuotaKey {
        account: conn.account.clone(),
        oa_id: campaign.oa_id.clone(),
        day: quota::today_key(),
    };
    let today = store.quota_day(&quota_key)?;
    // The import filled this connection's cache; the run uses its own.
    store.release_memory()?;
    let counters = Arc::new(RunCounters::default());
    let already_out = today.exhausted
        || opts.daily_quota.is_some_and(|q| today.used >= q)
        || today.provider_limit.is_some_and(|l| today.used >= l);
    let window_closed = opts
        .send_window
        .filter(|w| !w.contains(quota::now()))
        .map(|w| w.closed_message(quota::now()));
    if let Some(msg) = &window_closed {
        if opts.wait_for_window && !already_out && !g.quiet {
            eprintln!("{msg}; waiting (--wait; Ctrl-C to stop, nothing is lost)");
        }
    }
    let outcome = if let (Some(msg), false) = (&window_closed, opts.wait_for_window) {
        // Closed and not waiting: nothing to ask the provider.
        stop.request(StopReason::Window, msg.clone());
        None
    } else if already_out {
        stop.request(
            StopReason::Quota,
            format!(
                "daily quota for OA {} is used up for {} (Asia/Ho_Chi_Minh); the next quota day starts {}",
                campaign.oa_id,
                today.day,
                quota::fmt_local(quota::next_day_start(quota::now()))
            ),
        );
        None
    } else {
        let result = runner::run(
            g.state.clone(),
            campaign.clone(),
            conn.account.clone(),
            conn.provider.clone(),
            opts.clone(),
            stop.clone(),
            counters.clone(),
        )
        .await;
        Some(result.map_err(|e| {
            AppError::Fatal(anyhow::anyhow!(e).context(format!(
                "the state database became unusable during the run, so nothing more was sent; \
                 fix the cause, then `zns-batch resume {}` (a row whose reply was not recorded \
                 is handled as in doubt)",
                campaign.name
            )))
        }))
    };
    let outcome = match outcome {
        Some(r) => Some(r?),
        None => None,
    };

    let mut store = store;
    let counts = store.state_counts(campaign.id)?;
    let stop_reason = stop.reason();
    let (result, code, status) = match stop_reason {
        Some(r) if r.is_fatal() => ("aborted", EXIT_FATAL, CampaignStatus::Aborted),
        Some(_) => ("paused", EXIT_PAUSED, CampaignStatus::Paused),
        None if counts.open() > 0 || counts.in_doubt > 0 => {
            ("paused", EXIT_PAUSED, CampaignStatus::Paused)
        }
        None if counts.expired > 0 => ("expired", EXIT_EXPIRED, CampaignStatus::Expired),
        None => ("finished", EXIT_OK, CampaignStatus::Finished),
    };
    let mut reason = stop.message();
    if reason.is_none() && counts.open() > 0 {
        reason = Some(format!(
            "{} rows still open after running out of attempts for this run",
            counts.open()
        ));
    }
    if let (None, Some(deadline)) = (&reason, campaign.not_after_ms) {
        if counts.expired > 0 && code == EXIT_EXPIRED {
            reason = Some(format!(
                "{} rows expired unsent: the campaign's deadline {} passed; nothing more will be sent",
                counts.expired,
                quota::fmt_local(quota::from_ms(deadline))
            ));
        }
    }
    if reason.is_none() && counts.in_doubt > 0 {
        reason = Some(format!(
            "{} rows held in doubt (--in-doubt hold): their reply was lost; check them with the provider, then `zns-batch resume {} --in-doubt resend` to resend under the same tracking id",
            counts.in_doubt, campaign.name
        ));
    }
    store.set_campaign_status(campaign.id, status, reason.as_deref())?;
    let next_step = match (result, stop_reason) {
        ("finished" | "expired", _) => Some(format!(
            "zns-batch report {} --out {}.csv",
            campaign.name, campaign.name
        )),
        ("aborted", _) => Some(format!(
            "fix the cause above, then: zns-batch resume {}",
            campaign.name
        )),
        (_, Some(StopReason::Quota)) => Some(format!(
            "zns-batch resume {}   (after {})",
            campaign.name,
            quota::fmt_local(quota::next_day_start(quota::now()))
        )),
        (_, Some(StopReason::Window)) => Some(match opts.send_window {
            Some(w) => format!(
                "zns-batch resume {}   (after {}), or add --wait",
                campaign.name,
                quota::fmt_local(w.next_open(quota::now()))
            ),
            None => format!("zns-batch resume {}", campaign.name),
        }),
        _ => Some(format!("zns-batch resume {}", campaign.name)),
    };
    let (first_rejects, top_errors) = Summary::rejects_and_errors(&store, campaign.id)?;
    let summary = Summary {
        campaign: campaign.name.clone(),
        result,
        exit_code: code,
        reason,
        stop: stop_reason,
        provider: conn.label.clone(),
        oa_id: campaign.oa_id.clone(),
        template_id: campaign.template_id.clone(),
        counts,
        this_run: outcome.map(|o| o.totals).unwrap_or_default(),
        quota_today: store.quota_day(&quota_key)?,
        daily_quota: opts.daily_quota,
        first_rejects,
        top_errors,
        next_step,
    };
    summary.print(g.json);
    Ok(code)
}

/// First Ctrl-C / SIGTERM: stop claiming, let in-flight requests finish
/// (up to the runner's drain deadline), checkpoint, exit 3. Second: quit at
/// once — still safe: rows already marked `in_flight` are in doubt on resume.
///
/// The handlers are registered here, before the task starts, so no signal
/// slips through to the default action (killing the process) meanwhile.
fn watch_signals(
    stop: Arc<Stop>,
    talk: bool,
    continue_with: String,
) -> tokio::task::JoinHandle<()> {
    #[cfg(unix)]
    let (mut int, mut term) = {
        use tokio::signal::unix::{signal, SignalKind};
        for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
            // Best effort: the tokio watcher below still stops the run.
            let _ = signal_hook::flag::register(sig, stop.signal_flag());
        }
        (
            signal(SignalKind::interrupt()).ok(),
            signal(SignalKind::terminate()).ok(),
        )
    };
    tokio::spawn(async move {
        for round in 0..2 {
            #[cfg(unix)]
            {
                async fn recv(s: &mut Option<tokio::signal::unix::Signal>) {
                    match s {
                        Some(s) => {
                            s.recv().await;
                        }
                        None => std::future::pending::<()>().await,
                    }
                }
                tokio::select! {
                    _ = recv(&mut int) => {}
                    _ = recv(&mut term) => {}
                }
            }
            #[cfg(not(unix))]
            {
                if tokio::signal::ctrl_c().await.is_err() {
                    return;
                }
            }
            if round == 0 {
                if talk {
                    eprintln!("\nstopping: no new rows; waiting for requests in flight (press Ctrl-C again to quit now)");
                }
                stop.request(StopReason::Interrupted, crate::runner::INTERRUPTED);
            } else {
                eprintln!(
                    "quitting now; `{continue_with}` continues (rows that were in flight are handled as in doubt)"
                );
                std::process::exit(EXIT_PAUSED);
            }
        }
    })
}

// ----- reconcile ------------------------------------------------------------

#[derive(Debug, serde::Serialize)]
struct ReconcileSummary {
    campaign: String,
    /// done | paused | aborted
    result: &'static str,
    exit_code: i32,
    reason: Option<String>,
    this_run: reconcile::ReconcileTotals,
    delivery: crate::store::DeliveryCounts,
    next_step: Option<String>,
}

async fn reconcile_cmd(g: &Globals, args: ReconcileArgs) -> Result<i32, AppError> {
    let mut store = Store::open_existing(&g.state)?
        .ok_or_else(|| usage(format!("no state database at {}", g.state.display())))?;
    let campaign = store
        .find_campaign(&args.campaign)?
        .ok_or_else(|| unknown_campaign(g, &store, &args.campaign))?;
    let (kind, base_url, api_key) = provider_choice(g, &args.provider, Some(&campaign))?;
    if let Some(oa) = &args.provider.oa_id {
        if *oa != campaign.oa_id {
            return Err(usage(format!(
                "campaign `{}` sent for OA {}; --oa-id {} cannot change that",
                campaign.name, campaign.oa_id, oa
            )));
        }
    }
    if kind == ProviderKind::Sandbox && base_url.is_none() {
        return Err(usage(format!(
            "campaign `{}` was sent through the embedded sandbox, which kept its messages only while that run lasted: there is nothing to look up. \
             To try reconcile, start `zns-batch sandbox` and run a campaign with --provider sandbox --base-url http://127.0.0.1:8765/v1/shop",
            campaign.name
        )));
    }
    let _lock = campaign::lock(&g.state, &campaign.name)?;
    let conn = connect(g, &args.provider, kind, base_url, api_key).await?;
    if let Some(why) = conn.provider.capabilities().no_message_lookup {
        return Err(usage(format!(
            "reconcile is not available for campaign `{}`: {why}. Delivery status for {kind} campaigns has to come from the provider's webhook/callback or portal",
            campaign.name
        )));
    }
    let c = &g.config;
    let mut opts = ReconcileOptions::default();
    if let Some(n) = args.max_lookups {
        opts.max_lookups = n;
    }
    if let Some(r) = args.rate.or(c.rate).and_then(NonZeroU32::new) {
        opts.rate = r;
    }
    if let Some(n) = args.concurrency {
        opts.concurrency = n as usize;
    }
    if let Some(d) = args.recheck_after {
        opts.recheck_after = d;
    }
    if let Some(d) = args.backoff.or_else(|| ConfigFile::duration(&c.backoff)) {
        opts.backoff = d;
    }
    let stop = Arc::new(Stop::default());
    let signals = watch_signals(
        stop.clone(),
        !g.quiet,
        format!("zns-batch reconcile {}", campaign.name),
    );
    let totals = reconcile::run(
        &mut store,
        &campaign,
        conn.provider.clone(),
        &opts,
        stop.clone(),
    )
    .await;
    signals.abort();
    let totals = totals.map_err(|e| {
        AppError::Fatal(
            anyhow::anyhow!(e).context("the state database became unusable during reconcile"),
        )
    })?;
    let delivery = store.delivery_counts(campaign.id)?;
    let (result, code) = match stop.reason() {
        Some(r) if r.is_fatal() => ("aborted", EXIT_FATAL),
        Some(_) => ("paused", EXIT_PAUSED),
        None if totals.remaining > 0 => ("paused", EXIT_PAUSED),
        None => ("done", EXIT_OK),
    };
    let reason = stop.message().or_else(|| {
        (totals.remaining > 0).then(|| {
            format!(
                "{} rows still to look up (--max-lookups {} per run, or lookups that failed)",
                totals.remaining, opts.max_lookups
            )
        })
    });
    let next_step = match result {
        "done" => Some(format!(
            "zns-batch report {} --out {}.csv   (rows still unknown/received are asked again after {})",
            campaign.name,
            campaign.name,
            humantime::format_duration(opts.recheck_after)
        )),
        "aborted" => Some(format!(
            "fix the cause above, then: zns-batch reconcile {}",
            campaign.name
        )),
        _ => Some(format!("zns-batch reconcile {}", campaign.name)),
    };
    let summary = ReconcileSummary {
        campaign: campaign.name.clone(),
        result,
        exit_code: code,
        reason,
        this_run: totals,
        delivery,
        next_step,
    };
    if g.json {
        report::print_json(&summary);
    } else {
        print_reconcile(&summary, &conn.label);
    }
    Ok(code)
}

fn print_reconcile(s: &ReconcileSummary, provider: &str) {
    let t = &s.this_run;
    let d = &s.delivery;
    let mut o = format!("\nReconcile {} — {}\n", s.campaign, s.result.to_uppercase());
    if let Some(r) = &s.reason {
        o.push_str(&format!("  {r}\n"));
    }
    o.push_str(&format!("  provider    {provider}\n"));
    o.push_str(&format!(
        "  this run    {} looked up, {} not found, {} failed, {} left\n",
        t.looked_up, t.not_found, t.failed, t.remaining
    ));
    for e in &t.errors {
        o.push_str(&format!("                {e}\n"));
    }
    o.push_str(&format!(
        "  delivery    {} of {} sent rows checked: received {}, seen {}, unknown {}\n",
        d.checked, d.sent, d.received, d.seen, d.unknown
    ));
    if d.no_msg_id > 0 {
        o.push_str(&format!(
            "              {} sent rows have no message id (cannot be looked up)\n",
            d.no_msg_id
        ));
    }
    o.push_str(&format!(
        "  fees        {} VND message + {} VND token (as reported by the provider)\n",
        plan::thousands(d.fee_main.max(0) as u64),
        plan::thousands(d.fee_token.max(0) as u64)
    ));
    if let Some(n) = &s.next_step {
        o.push_str(&format!("  next        {n}\n"));
    }
    print!("{o}");
}

// ----- status / report / validate ---------------------------------------------

fn status_cmd(g: &Globals, args: StatusArgs) -> Result<i32, AppError> {
    let Some(store) = Store::open_existing(&g.state)? else {
        if g.json {
            println!("[]");
        } else {
            println!(
                "No state database at {} yet: nothing has run.",
                g.state.display()
            );
        }
        return Ok(EXIT_OK);
    };
    let lines = report::status_lines(&store, args.campaign.as_deref())?;
    if let Some(name) = &args.campaign {
        if lines.is_empty() {
            return Err(usage(format!(
                "no campaign `{name}` in {}",
                g.state.display()
            )));
        }
    }
    if g.json {
        report::print_json(&lines);
    } else {
        report::print_status(&lines);
    }
    Ok(EXIT_OK)
}

fn report_cmd(g: &Globals, args: ReportArgs) -> Result<i32, AppError> {
    let store = Store::open_existing(&g.state)?
        .ok_or_else(|| usage(format!("no state database at {}", g.state.display())))?;
    let campaign = store
        .find_campaign(&args.campaign)?
        .ok_or_else(|| unknown_campaign(g, &store, &args.campaign))?;
    let write = |out: Box<dyn std::io::Write>| {
        if g.json {
            report::write_report_json(&store, &campaign, out)
        } else {
            report::write_report(&store, &campaign, out, args.excel)
        }
    };
    let n = match &args.out {
        Some(path) => {
            let file = std::fs::File::create(path)
                .map_err(|e| usage(format!("cannot write {}: {e}", path.display())))?;
            write(Box::new(file))?
        }
        None => write(Box::new(std::io::stdout().lock()))?,
    };
    if let Some(path) = &args.out {
        if !g.quiet {
            eprintln!("wrote {n} rows to {}", path.display());
        }
    }
    Ok(EXIT_OK)
}

fn validate_cmd(g: &Globals, args: ValidateArgs) -> Result<i32, AppError> {
    let (opts, dedup) = csv_options(g, &args.csv_opts)?;
    // The same import path as `run`, into a throwaway database, so validate
    // and run can never disagree about a row.
    let dir = tempfile::tempdir().context("cannot create a temporary folder")?;
    let mut store = open_store(&dir.path().join("validate.sqlite"))?;
    let (campaign, _, _) = campaign::open_or_import(
        &mut store,
        &CampaignSpec {
            name: "validate",
            csv: &args.csv,
            template_id: "0",
            token_type: DEFAULT_TOKEN_TYPE,
            provider: "sandbox",
            base_url: None,
            oa_id: "0",
            in_doubt_policy: "resend",
            not_after_ms: None,
            min_interval_ms: None,
            csv_options: &opts,
            dedup_phones: dedup,
            interrupted: None,
        },
    )?;
    let counts = store.state_counts(campaign.id)?;
    let rejects = store.rejects(campaign.id, usize::MAX >> 1)?;
    if g.json {
        let list: Vec<_> = rejects
            .iter()
            .map(|(line, phone, reason)| serde_json::json!({"line": line, "phone": phone, "reason": reason}))
            .collect();
        report::print_json(&serde_json::json!({
            "file": args.csv.display().to_string(),
            "rows": counts.total,
            "valid": counts.total - counts.rejected,
            "rejected": counts.rejected,
            "template_keys": campaign.template_keys,
            "rejects": list,
        }));
    } else {
        println!(
            "{}: {} rows, {} valid, {} rejected",
            args.csv.display(),
            counts.total,
            counts.total - counts.rejected,
            counts.rejected
        );
        println!("template parameters: {}", campaign.template_keys.join(", "));
        for (line, phone, reason) in &rejects {
            let shown = if phone.is_empty() {
                String::new()
            } else {
                format!(" [{phone}]")
            };
            println!("  line {line}{shown}: {reason}");
        }
    }
    Ok(if counts.rejected > 0 {
        EXIT_USAGE
    } else {
        EXIT_OK
    })
}
