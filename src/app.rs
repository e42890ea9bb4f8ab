//! The commands: settle the effective settings, open the state, call the
//! pipeline, print, and map every outcome to its exit code.

use std::num::NonZeroU32;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;

use crate::campaign::{self, CampaignError, CampaignSpec};
use crate::cli::{
    Cli, Command, CsvOpts, ProviderOpts, ReportArgs, ResumeArgs, RunArgs, SendOpts, StatusArgs,
    ValidateArgs,
};
use crate::config::{ConfigFile, DEFAULT_STATE};
use crate::csv_input::CsvOptions;
use crate::provider::sandbox::{Sandbox, SandboxConfig};
use crate::provider::{self, ErrorTable, ProviderKind, ProviderSettings, Secret};
use crate::quota;
use crate::report::{self, Summary};
use crate::runner::{self, InDoubtPolicy, RunCounters, RunOptions, Stop, StopReason};
use crate::store::{Campaign, CampaignStatus, QuotaKey, Store};

pub const EXIT_OK: i32 = 0;
pub const EXIT_FATAL: i32 = 1;
pub const EXIT_USAGE: i32 = 2;
pub const EXIT_PAUSED: i32 = 3;

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
    pub json: bool,
    pub quiet: bool,
}

pub async fn dispatch(cli: Cli) -> Result<i32, AppError> {
    quota::check_clock_override().map_err(usage)?;
    if let Command::Sandbox(args) = cli.command {
        crate::provider::sandbox::serve_until_ctrl_c(args).await?;
        return Ok(EXIT_OK);
    }
    let (config, _) = ConfigFile::load(cli.config.as_deref()).map_err(|e| usage(e.to_string()))?;
    let globals = Globals {
        state: cli
            .state
            .clone()
            .or_else(|| config.state.clone())
            .unwrap_or_else(|| PathBuf::from(DEFAULT_STATE)),
        config,
        json: cli.json,
        quiet: cli.quiet,
    };
    match cli.command {
        Command::Run(args) => run_cmd(&globals, args).await,
        Command::Resume(args) => resume_cmd(&globals, args).await,
        Command::Status(args) => status_cmd(&globals, args),
        Command::Report(args) => report_cmd(&globals, args),
        Command::Validate(args) => validate_cmd(&globals, args),
        Command::Sandbox(_) => Ok(EXIT_OK),
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
    r
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
    let (base_url, api_key, sandbox, label) = match (kind, base_url) {
        (ProviderKind::Sandbox, None) => {
            // The embedded sandbox: a real server on loopback, a key made up per run.
            let key = format!("embedded-{}", hex::encode(rand::random::<[u8; 12]>()));
            let sb = Sandbox::start(
                "127.0.0.1:0"
                    .parse()
                    .map_err(|e| AppError::Fatal(anyhow::anyhow!("{e}")))?,
                SandboxConfig {
                    api_key: key.clone(),
                    ..SandboxConfig::default()
                },
            )
            .await
            .context("cannot start the embedded sandbox on 127.0.0.1")?;
            let url = sb.base_url();
            (
                url,
                key,
                Some(sb),
                "sandbox (embedded, no network)".to_string(),
            )
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
            (url, key, None, label)
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

fn url_check(url: &str) -> Result<(), AppError> {
    match reqwest::Url::parse(url) {
        Ok(u) if u.scheme() == "http" || u.scheme() == "https" => Ok(()),
        _ => Err(usage(format!("--base-url `{url}` is not an http(s) URL"))),
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

async fn run_cmd(g: &Globals, args: RunArgs) -> Result<i32, AppError> {
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
    let mut store = open_store(&g.state)?;
    let existing = store.find_campaign(&args.campaign)?;
    let (kind, base_url, api_key) = provider_choice(g, &args.provider, existing.as_ref())?;
    let oa_id = args
        .provider
        .oa_id
        .clone()
        .or_else(|| g.config.oa_id.clone())
        .or_else(|| (kind == ProviderKind::Sandbox).then(|| SANDBOX_OA_ID.to_string()))
        .ok_or_else(|| usage(format!("--provider {kind} needs --oa-id (or ZNS_OA_ID)")))?;
    let opts = run_options(
        g,
        &args.send,
        existing.as_ref().map(|c| c.in_doubt_policy.as_str()),
    );
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
    let stored_url = if kind == ProviderKind::Sandbox {
        args.provider.base_url.as_deref()
    } else {
        base_url.as_deref()
    };
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
            csv_options: &csv_opts,
            dedup_phones: dedup,
        },
    )?;
    if !g.quiet && !g.json {
        if fresh {
            eprintln!(
                "imported {} rows from {} ({} accepted, {} rejected)",
                imported.accepted + imported.rejected,
                args.csv.display(),
                imported.accepted,
                imported.rejected
            );
        } else {
            eprintln!(
                "campaign `{}` already imported from this file: resuming it",
                campaign.name
            );
        }
    }
    if args.dry_run {
        return dry_run(g, &store, &campaign, kind, base_url.as_deref(), &opts);
    }
    let conn = connect(g, &args.provider, kind, base_url, api_key).await?;
    execute(g, store, campaign, conn, opts).await
}

async fn resume_cmd(g: &Globals, args: ResumeArgs) -> Result<i32, AppError> {
    let mut store = open_store(&g.state)?;
    let Some(mut campaign) = store.find_campaign(&args.campaign)? else {
        let names = store.campaign_names()?;
        return Err(usage(if names.is_empty() {
            format!(
                "no campaign `{}` in {} (it has none yet)",
                args.campaign,
                g.state.display()
            )
        } else {
            format!(
                "no campaign `{}` in {}; known: {}",
                args.campaign,
                g.state.display(),
                names.join(", ")
            )
        }));
    };
    let _lock = campaign::lock(&g.state, &campaign.name)?;
    if !campaign.import_done {
        let csv = args
            .csv
            .clone()
            .unwrap_or_else(|| PathBuf::from(&campaign.csv_path));
        let (opts, dedup) = csv_options(g, &CsvOpts::default())?;
        let (c, counts) = campaign::resume_import(&mut store, &campaign, &csv, &opts, dedup)?;
        if !g.quiet && !g.json {
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
    let opts = run_options(g, &args.send, Some(&campaign.in_doubt_policy));
    if opts.in_doubt.as_str() != campaign.in_doubt_policy {
        store.update_campaign_settings(campaign.id, opts.in_doubt.as_str())?;
    }
    let conn = connect(g, &args.provider, kind, base_url, api_key).await?;
    execute(g, store, campaign, conn, opts).await
}

fn dry_run(
    g: &Globals,
    store: &Store,
    campaign: &Campaign,
    kind: ProviderKind,
    base_url: Option<&str>,
    opts: &RunOptions,
) -> Result<i32, AppError> {
    let counts = store.state_counts(campaign.id)?;
    let to_send = store.open_count(campaign.id, opts.in_doubt == InDoubtPolicy::Resend)?;
    let account = base_url.map(|u| format!("{}|{}", kind.protocol(), u.trim_end_matches('/')));
    let margin = time::Duration::try_from(opts.token_margin).unwrap_or(time::Duration::ZERO);
    let reusable = match &account {
        Some(a) if kind != ProviderKind::Sandbox || base_url.is_some() => {
            store.reusable_tokens(campaign, a, quota::to_ms(quota::now() + margin))?
        }
        _ => 0,
    };
    let uses_tokens = kind != ProviderKind::Esms;
    let (rejects, _) = Summary::rejects_and_errors(store, campaign.id)?;
    let days = opts
        .daily_quota
        .filter(|q| *q > 0)
        .map(|q| to_send.div_ceil(q));
    let plan = serde_json::json!({
        "campaign": campaign.name,
        "dry_run": true,
        "rows": counts.total,
        "accepted": counts.total - counts.rejected,
        "rejected": counts.rejected,
        "first_rejects": rejects,
        "already_sent": counts.sent,
        "messages_to_send": to_send,
        "tokens_to_reuse": if uses_tokens { reusable.min(to_send) } else { 0 },
        "tokens_to_buy": if uses_tokens { to_send.saturating_sub(reusable) } else { 0 },
        "daily_quota": opts.daily_quota,
        "quota_days_needed": days,
    });
    if g.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&plan).unwrap_or_default()
        );
    } else {
        println!(
            "\nDry run for campaign {} — nothing sent, nothing bought",
            campaign.name
        );
        println!(
            "  rows           {} ({} accepted, {} rejected)",
            counts.total,
            counts.total - counts.rejected,
            counts.rejected
        );
        for r in &rejects {
            println!("                   line {}: {}", r.line, r.reason);
        }
        println!(
            "  to send        {to_send} messages ({} already sent)",
            counts.sent
        );
        if uses_tokens {
            println!(
                "  tokens         {} to buy, {} to reuse",
                to_send.saturating_sub(reusable),
                reusable.min(to_send)
            );
        }
        if let Some(d) = days {
            println!(
                "  quota days     {d} at {} per day",
                opts.daily_quota.unwrap_or(0)
            );
        }
        println!("  next           zns-batch resume {}", campaign.name);
    }
    Ok(EXIT_OK)
}

async fn execute(
    g: &Globals,
    store: Store,
    campaign: Campaign,
    conn: Connection,
    opts: RunOptions,
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
    let stop = Arc::new(Stop::default());
    let already_out = today.exhausted
        || opts.daily_quota.is_some_and(|q| today.used >= q)
        || today.provider_limit.is_some_and(|l| today.used >= l);
    let outcome = if already_out {
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
        let signals = tokio::spawn(watch_signals(stop.clone(), !g.quiet));
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
        signals.abort();
        Some(result.map_err(|e| {
            AppError::Fatal(
                anyhow::anyhow!(e).context("the state database became unusable during the run"),
            )
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
        None => ("finished", EXIT_OK, CampaignStatus::Finished),
    };
    let mut reason = stop.message();
    if reason.is_none() && counts.open() > 0 {
        reason = Some(format!(
            "{} rows still open after running out of attempts for this run",
            counts.open()
        ));
    }
    if reason.is_none() && counts.in_doubt > 0 {
        reason = Some(format!(
            "{} rows held in doubt (--in-doubt hold): their reply was lost; check them with the provider, then `zns-batch resume {} --in-doubt resend` to resend under the same tracking id",
            counts.in_doubt, campaign.name
        ));
    }
    store.set_campaign_status(campaign.id, status, reason.as_deref())?;
    let next_step = match (result, stop_reason) {
        ("finished", _) => Some(format!(
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

/// First Ctrl-C / SIGTERM: stop claiming, let in-flight requests finish.
/// Second: quit at once (rows already marked `in_flight` are resolved on resume).
async fn watch_signals(stop: Arc<Stop>, talk: bool) {
    #[cfg(unix)]
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
    for round in 0..2 {
        #[cfg(unix)]
        let signalled = async {
            match term.as_mut() {
                Some(t) => {
                    tokio::select! {
                        _ = tokio::signal::ctrl_c() => {}
                        _ = t.recv() => {}
                    }
                }
                None => {
                    let _ = tokio::signal::ctrl_c().await;
                }
            }
        };
        #[cfg(not(unix))]
        let signalled = async {
            let _ = tokio::signal::ctrl_c().await;
        };
        signalled.await;
        if round == 0 {
            if talk {
                eprintln!("\nstopping: no new rows; waiting for requests in flight (press Ctrl-C again to quit now)");
            }
            stop.request(
                StopReason::Interrupted,
                "interrupted (Ctrl-C / SIGTERM); nothing is lost, resume to continue",
            );
        } else {
            eprintln!("quitting now; rows in flight are checked on resume");
            std::process::exit(EXIT_PAUSED);
        }
    }
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
        println!(
            "{}",
            serde_json::to_string_pretty(&lines).unwrap_or_default()
        );
    } else {
        report::print_status(&lines);
    }
    Ok(EXIT_OK)
}

fn report_cmd(g: &Globals, args: ReportArgs) -> Result<i32, AppError> {
    let store = Store::open_existing(&g.state)?
        .ok_or_else(|| usage(format!("no state database at {}", g.state.display())))?;
    let campaign = store.find_campaign(&args.campaign)?.ok_or_else(|| {
        usage(format!(
            "no campaign `{}` in {}",
            args.campaign,
            g.state.display()
        ))
    })?;
    let n = match &args.out {
        Some(path) => {
            let file = std::fs::File::create(path)
                .map_err(|e| usage(format!("cannot write {}: {e}", path.display())))?;
            report::write_report(&store, &campaign, file, args.excel)?
        }
        None => report::write_report(&store, &campaign, std::io::stdout().lock(), args.excel)?,
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
            csv_options: &opts,
            dedup_phones: dedup,
        },
    )?;
    let counts = store.state_counts(campaign.id)?;
    let rejects = store.rejects(campaign.id, usize::MAX >> 1)?;
    if g.json {
        let list: Vec<_> = rejects
            .iter()
            .map(|(line, phone, reason)| serde_json::json!({"line": line, "phone": phone, "reason": reason}))
            .collect();
        println!(
            "{}",
            serde_json::to_string_pretty(&serde_json::json!({
                "file": args.csv.display().to_string(),
                "rows": counts.total,
                "valid": counts.total - counts.rejected,
                "rejected": counts.rejected,
                "template_keys": campaign.template_keys,
                "rejects": list,
            }))
            .unwrap_or_default()
        );
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
