//! The command-line face: turn each command's arguments into a request to
//! the campaign core, show what comes back, and say which exit code it
//! deserves. No setting is merged and no outcome decided here.

use std::sync::Arc;

use crate::campaign::config::ConfigFile;
use crate::campaign::{
    fmt_until, fmt_when, parse_start_at, parse_test_phones, shell_word, usage, Action, Actor,
    CoreError, ExitCode, Hooks, InDoubtPolicy, Mode, ReconcileOptions, ReportFormat, Request, Stop,
    Workspace, INTERRUPTED,
};
use crate::cli::printer::{self, ProgressObserver};
use crate::cli::{
    Cli, Command, ReconcileArgs, ReportArgs, ResumeArgs, RunArgs, StatusArgs, ValidateArgs,
};

/// The one error type of the command line; its variants map to exit codes.
pub type AppError = CoreError;

/// How the command line talks: what the global flags ask.
pub struct Face {
    pub json: bool,
    pub quiet: bool,
    /// Log lines go to a file: failures are written there too.
    pub log_file: bool,
}

impl Face {
    /// Progress and notes on stderr: not with --quiet or --json.
    fn chatty(&self) -> bool {
        !self.quiet && !self.json
    }

    /// A run or reconcile that did not finish: with --quiet the reason is
    /// the only thing said (on stderr); with a log file it is logged too.
    fn note_unfinished(&self, code: ExitCode, reason: Option<&str>) {
        if code == ExitCode::Finished {
            return;
        }
        let reason = reason.unwrap_or("see `zns-batch status`");
        if self.log_file {
            tracing::error!("exit {}: {reason}", code.code());
        }
        if self.quiet {
            eprintln!("exit {}: {reason}", code.code());
        }
    }
}

pub async fn dispatch(cli: Cli) -> Result<ExitCode, AppError> {
    crate::model::clock::check_clock_override().map_err(usage)?;
    let face = Face {
        json: cli.json,
        quiet: cli.quiet,
        log_file: cli.log_file.is_some(),
    };
    match cli.command {
        Command::Sandbox(args) => {
            crate::cli::sandbox::serve_until_ctrl_c(args).await?;
            return Ok(ExitCode::Finished);
        }
        Command::Completions(args) => {
            let mut cmd = <Cli as clap::CommandFactory>::command();
            clap_complete::generate(args.shell, &mut cmd, "zns-batch", &mut std::io::stdout());
            return Ok(ExitCode::Finished);
        }
        // A copy between two ledgers: no config file, no --state.
        Command::Migrate(args) => return migrate_cmd(&face, args).await,
        _ => {}
    }
    let (config, config_path) = ConfigFile::load(cli.config.as_deref(), cli.profile.as_deref())
        .map_err(|e| usage(e.to_string()))?;
    let ws = Workspace::new(cli.state.as_ref(), config, config_path);
    match cli.command {
        Command::Run(args) => run_cmd(&ws, &face, args).await,
        Command::Resume(args) => resume_cmd(&ws, &face, args).await,
        Command::Status(args) => status_cmd(&ws, &face, args),
        Command::Report(args) => report_cmd(&ws, &face, args),
        Command::Validate(args) => validate_cmd(&ws, &face, args),
        Command::Reconcile(args) => reconcile_cmd(&ws, &face, args).await,
        Command::Serve(args) => crate::serve::run(&ws, args.into()).await,
        Command::Users(args) => crate::cli::team::users_cmd(&ws, cli.json, args),
        Command::Tokens(args) => crate::cli::team::tokens_cmd(&ws, cli.json, args),
        Command::Audit(args) => crate::cli::team::audit_cmd(&ws, cli.json, args),
        Command::Zalo(args) => zalo_cmd(&ws, &face, args).await,
        Command::Sandbox(_) | Command::Completions(_) | Command::Migrate(_) => {
            Ok(ExitCode::Finished)
        }
    }
}

// ----- migrate ----------------------------------------------------------------

async fn migrate_cmd(
    face: &Face,
    args: crate::cli::options::MigrateArgs,
) -> Result<ExitCode, AppError> {
    use crate::campaign::{migrate, Location};
    let to = Location::from(args.to.as_str());
    let chatty = face.chatty();
    if chatty {
        // A URL given here by mistake is shown without its password.
        eprintln!("migrate {} -> {to}", Location::from(&args.from));
    }
    // The PostgreSQL client is synchronous (it blocks on its own runtime):
    // off the async thread. A line per table when it is done, and one every
    // few seconds while a long one is copied.
    let s = tokio::task::spawn_blocking(move || {
        let mut last = std::time::Instant::now();
        let mut progress = |p: &crate::campaign::MigrateProgress| {
            if !chatty || (!p.done && last.elapsed() < std::time::Duration::from_secs(2)) {
                return;
            }
            last = std::time::Instant::now();
            if p.done {
                eprintln!("  {:<16} {:>10} rows", p.table, p.copied);
            } else {
                eprintln!("  {:<16} {:>10} / {} rows …", p.table, p.copied, p.total);
            }
        };
        migrate(&args.from, &to, &mut progress)
    })
    .await
    .map_err(|e| AppError::Fatal(anyhow::anyhow!("migrate stopped: {e}")))??;
    if face.json {
        println!(
            "{}",
            serde_json::to_string(&s).map_err(|e| AppError::Fatal(e.into()))?
        );
    } else {
        println!(
            "migrated {} -> {}: {} tables, {} rows in {:.1} s",
            s.from,
            s.to,
            s.tables.len(),
            s.rows,
            s.secs
        );
    }
    Ok(ExitCode::Finished)
}

// ----- zalo -------------------------------------------------------------------

async fn zalo_cmd(
    ws: &Workspace,
    face: &Face,
    args: crate::cli::ZaloArgs,
) -> Result<ExitCode, AppError> {
    use crate::cli::ZaloCommand;
    match args.command {
        ZaloCommand::Connect {
            redirect_uri,
            code: None,
            ..
        } => {
            let start = ws.zalo_connect_start(redirect_uri.as_deref())?;
            let detail = format!("authorization link made, back to {}", start.redirect_uri);
            ws.audit(&Actor::os_user(), Action::ZaloConnect, None, &detail)?;
            if face.json {
                println!(
                    "{}",
                    serde_json::to_string(&start).map_err(|e| AppError::Fatal(e.into()))?
                );
            } else {
                println!("{}", start.authorization_url);
                if !face.quiet {
                    eprintln!(
                        "Open this URL as the OA's admin and allow access. Zalo then sends you to {}: \
                         `zns-batch serve` there finishes by itself; otherwise copy the `code` from that address and run \
                         `zns-batch zalo connect --code CODE` within 10 minutes.",
                        start.redirect_uri
                    );
                }
            }
        }
        ZaloCommand::Connect {
            code: Some(code),
            auth_state,
            oa_id,
            ..
        } => {
            let status = ws
                .zalo_connect_finish(&code, auth_state.as_deref(), oa_id.as_deref())
                .await?;
            let detail = format!(
                "connected OA {} with a pasted code",
                status.oa_id.as_deref().unwrap_or("-")
            );
            ws.audit(&Actor::os_user(), Action::ZaloConnect, None, &detail)?;
            print_oa_status(
                face,
                &status,
                "OA connected; tokens stored encrypted and renewed automatically",
            )?;
        }
        ZaloCommand::Status => {
            let status = ws.zalo_status()?;
            print_oa_status(face, &status, "")?;
        }
    }
    Ok(ExitCode::Finished)
}

fn print_oa_status(
    face: &Face,
    s: &crate::campaign::OaStatus,
    headline: &str,
) -> Result<(), AppError> {
    if face.json {
        println!(
            "{}",
            serde_json::to_string(s).map_err(|e| AppError::Fatal(e.into()))?
        );
        return Ok(());
    }
    if !headline.is_empty() {
        println!("{headline}");
    }
    if !s.connected {
        println!("no Zalo OA connected: run `zns-batch zalo connect`");
        return Ok(());
    }
    let or_dash = |v: &Option<String>| v.clone().unwrap_or_else(|| "-".into());
    println!("OA:                  {}", or_dash(&s.oa_id));
    println!("app:                 {}", or_dash(&s.app_id));
    println!("connected:           {}", or_dash(&s.connected_at));
    println!(
        "access token expires: {} (in {} s)",
        or_dash(&s.access_expires_at),
        s.access_expires_in_secs.unwrap_or(0)
    );
    println!(
        "refresh token age:   {} s ({} renewals since connect)",
        s.refresh_token_age_secs.unwrap_or(0),
        s.refreshes
    );
    if let Some(why) = &s.needs_reauthorization {
        println!(
            "NEEDS RE-AUTHORIZATION: {why}. {}",
            crate::campaign::REAUTHORIZE_HINT
        );
    }
    Ok(())
}

// ----- run / resume ---------------------------------------------------------

async fn run_cmd(ws: &Workspace, face: &Face, args: RunArgs) -> Result<ExitCode, AppError> {
    let req = Request {
        campaign: args.campaign,
        csv: Some(args.csv),
        template_id: args.template_id,
        token_type: args.token_type,
        provider: args.sending.provider.into(),
        send: args.sending.send.into(),
        safety: args.sending.safety.into(),
        csv_opts: args.csv_opts.into(),
        template_check: args.template_check.into(),
        template: None,
    };
    let launch = Launch::parse(
        args.launch.start_at.as_deref(),
        args.launch.test_phones.as_deref(),
    )?;
    send_cmd(ws, face, req, Mode::Run, args.dry_run, launch).await
}

async fn resume_cmd(ws: &Workspace, face: &Face, args: ResumeArgs) -> Result<ExitCode, AppError> {
    let req = Request {
        campaign: args.campaign,
        csv: args.csv,
        provider: args.sending.provider.into(),
        send: args.sending.send.into(),
        safety: args.sending.safety.into(),
        template_check: args.template_check.into(),
        template_id: args.template_id,
        ..Request::default()
    };
    let launch = Launch::parse(
        args.launch.start_at.as_deref(),
        args.launch.test_phones.as_deref(),
    )?;
    send_cmd(ws, face, req, Mode::Resume, false, launch).await
}

/// When and to whom a `run`/`resume` sends: at a scheduled time, or only
/// a test to a few phones. Checked before anything is imported.
#[derive(Debug, Default)]
struct Launch {
    /// `--start-at`: None with `now` or without the flag.
    start_at: Option<i64>,
    /// `--start-at now` was given (cancel a schedule, say so).
    now_given: bool,
    test_phones: Option<Vec<String>>,
}

impl Launch {
    fn parse(start_at: Option<&str>, test_phones: Option<&str>) -> Result<Launch, AppError> {
        Ok(Launch {
            start_at: start_at.map(parse_start_at).transpose()?.flatten(),
            now_given: start_at.is_some(),
            test_phones: test_phones.map(parse_test_phones).transpose()?,
        })
    }
}

/// `run` and `resume`: prepare (import, settle settings), then plan or send.
async fn send_cmd(
    ws: &Workspace,
    face: &Face,
    req: Request,
    mode: Mode,
    dry_run: bool,
    launch: Launch,
) -> Result<ExitCode, AppError> {
    // Watch signals from the start, so one during the import or the
    // connection is a graceful stop too.
    let stop = Arc::new(Stop::default());
    let signals = crate::cli::signals::watch(
        stop.clone(),
        face.chatty(),
        format!("zns-batch resume {}", shell_word(&req.campaign)),
    );
    let result = prepare_and_go(ws, face, &req, mode, dry_run, launch, stop).await;
    signals.abort();
    result
}

async fn prepare_and_go(
    ws: &Workspace,
    face: &Face,
    req: &Request,
    mode: Mode,
    dry_run: bool,
    launch: Launch,
    stop: Arc<Stop>,
) -> Result<ExitCode, AppError> {
    let interrupted = stop.signal_flag();
    let spinner = (face.chatty() && std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .then(indicatif::ProgressBar::new_spinner);
    let show = |rows: u64, rejected: u64| {
        if let Some(s) = &spinner {
            s.set_message(format!("importing: {rows} rows ({rejected} rejected)"));
            s.tick();
        }
    };
    // Template info first (cached or fetched): read-only, before any import.
    let mut req = req.clone();
    ws.preflight(&mut req, mode).await?;
    let req = &req;
    let prepared = ws.prepare(
        req,
        mode,
        Hooks {
            interrupted: Some(&interrupted),
            import_progress: Some(&show),
        },
    );
    if let Some(s) = &spinner {
        s.finish_and_clear();
    }
    let mut prepared = prepared?;
    let name = shell_word(prepared.campaign_name());
    let imp = prepared.import;
    if face.chatty() {
        let rows = imp.counts.accepted + imp.counts.rejected;
        if !prepared.import_done() {
            eprintln!("import stopped after {rows} rows (interrupted); `zns-batch resume {name}` finishes it");
        } else if imp.imported_now && mode == Mode::Run {
            eprintln!(
                "imported {rows} rows from {} ({} accepted, {} rejected) in {:.1} s",
                prepared.csv_path().display(),
                imp.counts.accepted,
                imp.counts.rejected,
                imp.secs
            );
        } else if imp.imported_now {
            eprintln!(
                "finished the interrupted import: {rows} more rows ({} rejected)",
                imp.counts.rejected
            );
        } else if mode == Mode::Run {
            eprintln!(
                "campaign `{}` already imported from this file: resuming it",
                prepared.campaign_name()
            );
        }
    }
    audit_import(ws, &prepared)?;
    if dry_run {
        if !prepared.import_done() {
            // Never present a plan over part of the file as the plan.
            let reason = format!(
                "{INTERRUPTED}: the import stopped before the end of the file, so there is no plan yet; `zns-batch resume {name}` finishes the import (add --dry-run to a new `run` of the same file to see the plan)"
            );
            if !face.quiet {
                eprintln!("{reason}");
            }
            face.note_unfinished(ExitCode::Paused, Some(&reason));
            return Ok(ExitCode::Paused);
        }
        prepared.show_start_at(launch.start_at);
        let plan = ws.live_plan(&prepared).await?;
        if !face.quiet || face.json {
            printer::print_plan(&plan, face.json);
        }
        return Ok(ExitCode::Finished);
    }
    if let Some(phones) = &launch.test_phones {
        return test_sends(ws, face, &mut prepared, phones, &name).await;
    }
    if let Some(at) = launch.start_at {
        if !wait_for_start(face, &mut prepared, at, &stop, &name).await? {
            return Ok(ExitCode::Paused);
        }
    } else if let Some(was) = prepared.start_at_ms() {
        // A run or resume without --start-at starts now: the schedule goes.
        prepared.set_schedule(None)?;
        if face.chatty() {
            eprintln!("schedule for {} cancelled: starting now", fmt_when(was));
        }
    } else if launch.now_given {
        prepared.set_schedule(None)?;
    }
    audit_start(ws, req, mode, &prepared)?;
    let observer = ProgressObserver::new(face.chatty());
    let skipped = req.template_check.skip_template_check;
    let (outcome, summary) = ws.send(prepared, stop, &observer).await?;
    let code = outcome.exit_code();
    if face.json {
        printer::print_summary(&summary, true);
    } else if !face.quiet {
        printer::print_summary(&summary, false);
        if skipped {
            println!("  pre-flight  skipped (--skip-template-check): rows were not checked against the template");
        }
    }
    face.note_unfinished(code, outcome.message());
    Ok(code)
}

/// An import this run or resume did (a dry run's too), in the audit log
/// as the OS user.
fn audit_import(ws: &Workspace, prepared: &crate::campaign::Prepared) -> Result<(), AppError> {
    if !prepared.import.imported_now {
        return Ok(());
    }
    let file = prepared.csv_path().display().to_string();
    let name = Some(prepared.campaign_name());
    ws.audit(
        &Actor::os_user(),
        Action::Upload,
        name,
        &format!("file {file}"),
    )
}

/// A run or resume about to send, in the audit log as the OS user: the
/// start, and a decision about rows in doubt when one was given.
fn audit_start(
    ws: &Workspace,
    req: &Request,
    mode: Mode,
    prepared: &crate::campaign::Prepared,
) -> Result<(), AppError> {
    let actor = Actor::os_user();
    let name = Some(prepared.campaign_name());
    let how = match mode {
        Mode::Run => "zns-batch run",
        Mode::Resume => "zns-batch resume",
    };
    ws.audit(&actor, Action::Start, name, how)?;
    if let Some(p) = req.send.in_doubt {
        let what = match p {
            InDoubtPolicy::Resend => "resend",
            InDoubtPolicy::Hold => "hold",
        };
        ws.audit(&actor, Action::InDoubt, name, what)?;
    }
    Ok(())
}

/// Keep the schedule in the ledger and wait for it here. False: stopped
/// (Ctrl-C) before the time, the schedule kept for `serve`.
async fn wait_for_start(
    face: &Face,
    prepared: &mut crate::campaign::Prepared,
    at: i64,
    stop: &Stop,
    name: &str,
) -> Result<bool, AppError> {
    prepared.set_schedule(Some(at))?;
    if !face.quiet {
        eprintln!(
            "scheduled for {} (in {}); Ctrl-C leaves it scheduled — `zns-batch serve` starts it at that time",
            fmt_when(at),
            fmt_until(at)
        );
    }
    loop {
        let left = at - crate::model::clock::now_ms();
        if left <= 0 {
            break;
        }
        if stop.is_set() {
            let reason = format!(
                "still scheduled for {}: `zns-batch serve` starts it then, `zns-batch resume {name}` starts it now",
                fmt_when(at)
            );
            if !face.quiet {
                eprintln!("{reason}");
            }
            face.note_unfinished(ExitCode::Paused, Some(&reason));
            return Ok(false);
        }
        tokio::time::sleep(std::time::Duration::from_millis(left.clamp(1, 250) as u64)).await;
    }
    // Its time: the schedule is done (the lock held all along, so `serve`
    // could not have started it meanwhile).
    prepared.set_schedule(None)?;
    Ok(true)
}

/// `--test-phones`: the tests alone, each one's outcome, and how to send
/// the campaign itself.
async fn test_sends(
    ws: &Workspace,
    face: &Face,
    prepared: &mut crate::campaign::Prepared,
    phones: &[String],
    name: &str,
) -> Result<ExitCode, AppError> {
    if !prepared.import_done() {
        return Err(usage(format!(
            "the import stopped before the end of the file: `zns-batch resume {name}` finishes it, then send the test"
        )));
    }
    let results = ws.send_tests(prepared, phones).await?;
    // The phones masked: every viewer reads the audit log.
    let to: Vec<_> = results
        .iter()
        .map(|t| format!("{} {}", crate::model::phone::mask(&t.phone), t.outcome))
        .collect();
    ws.audit(
        &Actor::os_user(),
        Action::TestSend,
        Some(name),
        &to.join(", "),
    )?;
    let all_sent = results.iter().all(|t| t.outcome == "sent");
    if face.json {
        let list: Vec<_> = results
            .iter()
            .map(|t| {
                serde_json::json!({
                    "phone": crate::model::phone::mask(&t.phone),
                    "outcome": t.outcome,
                    "msg_id": t.msg_id,
                    "error": t.error,
                })
            })
            .collect();
        printer::print_json(&serde_json::json!({
            "campaign": prepared.campaign_name(),
            "test_sends": list,
            "next_step": format!("zns-batch resume {name}"),
        }));
    } else if !face.quiet {
        println!(
            "Test sends for campaign {} (the first accepted row's data):",
            prepared.campaign_name()
        );
        for t in &results {
            let detail = t
                .msg_id
                .as_deref()
                .map(|m| format!("msg_id {m}"))
                .or_else(|| t.error.clone())
                .unwrap_or_default();
            println!(
                "  {}  {}  {detail}",
                crate::model::phone::mask(&t.phone),
                t.outcome
            );
        }
        println!("The campaign itself was not sent; to send it: zns-batch resume {name}");
    }
    if all_sent {
        Ok(ExitCode::Finished)
    } else {
        face.note_unfinished(ExitCode::Fatal, Some("a test message was not sent"));
        Ok(ExitCode::Fatal)
    }
}

// ----- reconcile ------------------------------------------------------------

async fn reconcile_cmd(
    ws: &Workspace,
    face: &Face,
    args: ReconcileArgs,
) -> Result<ExitCode, AppError> {
    let c = &ws.config;
    let mut opts = ReconcileOptions::default();
    if let Some(n) = args.max_lookups {
        opts.max_lookups = n;
    }
    if let Some(r) = args.rate.or(c.rate).and_then(std::num::NonZeroU32::new) {
        opts.rate = r;
    }
    if let Some(n) = args.concurrency {
        opts.concurrency = n as usize;
    }
    if let Some(d) = args.recheck_after {
        opts.recheck_after = d;
    }
    if let Some(d) = args.backoff.or(c.backoff.map(|d| d.0)) {
        opts.backoff = d;
    }
    let stop = Arc::new(Stop::default());
    let signals = crate::cli::signals::watch(
        stop.clone(),
        face.chatty(),
        format!("zns-batch reconcile {}", shell_word(&args.campaign)),
    );
    let summary = ws
        .reconcile(&args.campaign, &args.provider.into(), &opts, stop)
        .await;
    signals.abort();
    let summary = summary?;
    let code = summary.result.exit_code();
    if face.json {
        printer::print_json(&summary);
    } else if !face.quiet {
        printer::print_reconcile(&summary);
    }
    face.note_unfinished(code, summary.reason.as_deref());
    Ok(code)
}

// ----- status / report / validate ---------------------------------------------

fn status_cmd(ws: &Workspace, face: &Face, args: StatusArgs) -> Result<ExitCode, AppError> {
    let Some(lines) = ws.status(args.campaign.as_deref())? else {
        if let Some(name) = &args.campaign {
            return Err(usage(format!(
                "no campaign `{name}`: there is no state database at {} yet",
                ws.state.display()
            )));
        }
        if face.json {
            println!("[]");
        } else {
            println!(
                "No state database at {} yet: nothing has run.",
                ws.state.display()
            );
        }
        return Ok(ExitCode::Finished);
    };
    if let Some(name) = &args.campaign {
        if lines.is_empty() {
            return Err(usage(format!(
                "no campaign `{name}` in {}",
                ws.state.display()
            )));
        }
    }
    if face.json {
        printer::print_json(&lines);
    } else {
        printer::print_status(&lines);
    }
    Ok(ExitCode::Finished)
}

fn report_cmd(ws: &Workspace, face: &Face, args: ReportArgs) -> Result<ExitCode, AppError> {
    let report = ws.report(&args.campaign)?;
    let format = match (face.json, args.excel) {
        (true, _) => ReportFormat::JsonLines,
        (false, true) => ReportFormat::Excel,
        (false, false) => ReportFormat::Csv,
    };
    let write = |out: Box<dyn std::io::Write>| report.write(out, format);
    let n = match &args.out {
        Some(path) => {
            if report.is_input_file(path) {
                return Err(usage(format!(
                    "--out {} is campaign `{}`'s input file: a report never replaces it (the campaign could not be resumed). Choose another name, e.g. --out {}",
                    path.display(),
                    report.campaign_name(),
                    shell_word(&report.file_name())
                )));
            }
            let mut options = std::fs::OpenOptions::new();
            options.write(true);
            if args.force {
                options.create(true).truncate(true);
            } else {
                options.create_new(true);
            }
            let file = options.open(path).map_err(|e| {
                if e.kind() == std::io::ErrorKind::AlreadyExists {
                    usage(format!(
                        "--out {} exists; add --force to replace it, or choose another name, e.g. --out {}",
                        path.display(),
                        shell_word(&report.file_name())
                    ))
                } else {
                    usage(format!("cannot write {}: {e}", path.display()))
                }
            })?;
            write(Box::new(file))?
        }
        None => write(Box::new(std::io::stdout().lock()))?,
    };
    if let Some(path) = &args.out {
        if !face.quiet {
            eprintln!("wrote {n} rows to {}", path.display());
        }
    }
    Ok(ExitCode::Finished)
}

fn validate_cmd(ws: &Workspace, face: &Face, args: ValidateArgs) -> Result<ExitCode, AppError> {
    let v = ws.validate(&args.csv, args.csv_opts.into(), args.template_id.as_deref())?;
    if face.json {
        let list: Vec<_> = v
            .rejects
            .iter()
            .map(|r| serde_json::json!({"line": r.line, "phone": r.phone, "reason": r.reason, "reason_code": r.reason_code}))
            .collect();
        printer::print_json(&serde_json::json!({
            "file": v.file.display().to_string(),
            "rows": v.rows,
            "valid": v.valid,
            "rejected": v.rejected,
            "template_keys": v.template_keys,
            "template": v.template.as_ref().map(|t| t.summary()),
            "template_warning": v.template_warning,
            "rejects": list,
        }));
    } else {
        println!(
            "{}: {} rows, {} valid, {} rejected",
            v.file.display(),
            v.rows,
            v.valid,
            v.rejected
        );
        println!("template parameters: {}", v.template_keys.join(", "));
        if let Some(t) = &v.template {
            println!("checked against {}", t.summary());
        }
        if let Some(w) = &v.template_warning {
            println!("warning: {w}");
        }
        for r in &v.rejects {
            let shown = if r.phone.is_empty() {
                String::new()
            } else {
                format!(" [{}]", r.phone)
            };
            println!("  line {}{shown}: {}", r.line, r.reason);
        }
    }
    Ok(v.verdict().exit_code())
}
