//! The one place the web face (console and `/api/v1`) calls the campaign
//! core: create (import + plan), start/resume in the background, pause,
//! status, report. Runs started here keep going when the browser closes;
//! a person's "start" is remembered in the state database so a restarted
//! `serve` carries on with it, and a person's "pause" forgets it.
//!
//! Beside it: `errors` (WebError → HTTP status), `later` (scheduled
//! starts, test sends, auto-resume after quota/window pauses), `streams`
//! (report and rejected rows in chunks).

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use crate::campaign::config::ConfigFile;
use crate::campaign::plan::Plan;
use crate::campaign::settings::{check_campaign_name, CsvOpts, SafetyOpts, SendOpts};
use crate::campaign::summary::CampaignStatusLine;
use crate::campaign::{self, CampaignError, CoreError, Hooks, Location, Mode, Request, Workspace};
use crate::campaign::{Action, Actor, AuditEntry};
use crate::campaign::{
    InDoubtPolicy, Observer, Reader, ReportFormat, RowView, RunCounters, Stop, StopReason,
    INTERRUPTED,
};
use crate::model::row_state::RowState;

pub use crate::campaign::WebOptions;

mod errors;
mod later;
mod streams;
mod takeover;

use crate::serve::words::{Msg, NONE};
pub use errors::WebError;
pub use later::auto_resume_poll;
use later::Waiting;
pub use takeover::takeover_poll;

/// The upload form, already streamed to `csv`.
#[derive(Debug, Clone, Default)]
pub struct NewCampaign {
    pub name: String,
    pub csv: PathBuf,
    pub template_id: Option<String>,
    pub profile: Option<String>,
    pub send_window: Option<String>,
    pub not_after: Option<String>,
    pub daily_quota: Option<u64>,
    /// The sheet of an uploaded workbook (default: the first).
    pub sheet: Option<String>,
    /// The CSV's delimiter as chosen on the form; None: detected from the
    /// header line (see [`NewCampaign::delimiter_or_detected`]).
    pub delimiter: Option<u8>,
}

impl NewCampaign {
    /// The delimiter chosen, or the one the file's header line uses.
    pub fn delimiter_or_detected(&self) -> Option<u8> {
        self.delimiter
            .or_else(|| campaign::detect_delimiter(&self.csv))
    }
}

impl NewCampaign {
    /// The campaign, its file and template as the form names them; the
    /// pre-flight and the creation both start from this.
    fn request(&self) -> Request {
        Request {
            campaign: self.name.clone(),
            csv: Some(self.csv.clone()),
            template_id: self.template_id.clone(),
            csv_opts: CsvOpts {
                sheet: self.sheet.clone(),
                delimiter: self.delimiter_or_detected(),
                ..CsvOpts::default()
            },
            ..Request::default()
        }
    }
}

/// A run in this process, as the live page sees it.
pub struct Live {
    pub stop: Arc<Stop>,
    total: AtomicU64,
    counters: Mutex<Option<Arc<RunCounters>>>,
    started: Instant,
    done: AtomicBool,
}

/// Live progress: counts this run, rate and ETA.
#[derive(Debug, Clone, Serialize, Default)]
pub struct LiveSnapshot {
    pub running: bool,
    pub total: u64,
    pub settled: u64,
    pub sent: u64,
    pub failed: u64,
    pub per_sec: f64,
    pub eta_secs: Option<u64>,
}

impl Live {
    fn snapshot(&self) -> LiveSnapshot {
        let total = self.total.load(Ordering::Relaxed);
        let guard = self.counters.lock().unwrap_or_else(|p| p.into_inner());
        let Some(c) = guard.as_ref() else {
            return LiveSnapshot {
                running: true,
                total,
                ..LiveSnapshot::default()
            };
        };
        let settled = c.settled();
        let secs = self.started.elapsed().as_secs_f64().max(0.001);
        let per_sec = settled as f64 / secs;
        let left = total.saturating_sub(settled);
        LiveSnapshot {
            running: !self.done.load(Ordering::Relaxed),
            total,
            settled,
            sent: c.sent.load(Ordering::Relaxed),
            failed: c.failed.load(Ordering::Relaxed),
            per_sec: (per_sec * 10.0).round() / 10.0,
            eta_secs: (per_sec > 0.0).then(|| (left as f64 / per_sec).ceil() as u64),
        }
    }
}

struct LiveObserver(Arc<Live>);

impl Observer for LiveObserver {
    fn started(&self, total: u64, counters: Arc<RunCounters>) {
        self.0.total.store(total, Ordering::Relaxed);
        *self.0.counters.lock().unwrap_or_else(|p| p.into_inner()) = Some(counters);
    }

    fn finished(&self) {
        self.0.done.store(true, Ordering::Relaxed);
    }
}

/// Every campaign the web face touches goes through here.
pub struct Campaigns {
    base: Arc<Workspace>,
    running: Mutex<HashMap<String, Arc<Live>>>,
    tasks: Mutex<Vec<tokio::task::JoinHandle<()>>>,
    shutting_down: AtomicBool,
    /// Imports under way: campaign → (rows read, rejected so far).
    imports: Mutex<HashMap<String, (u64, u64)>>,
    /// Resume by itself a run paused by the quota day or the send window.
    auto_resume: AtomicBool,
    /// Runs paused that way, waiting to go on (see `auto_resume_loop`).
    waiting: Mutex<HashMap<String, Waiting>>,
}

/// An import under way, as the upload page polls it.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct ImportStatus {
    pub rows: u64,
    pub rejected: u64,
}

fn blocking_err(e: tokio::task::JoinError) -> WebError {
    WebError::Internal(anyhow::anyhow!("background task failed: {e}"))
}

impl Campaigns {
    /// The workspace (the Zalo OA's connect and status).
    pub fn base_workspace(&self) -> &Workspace {
        &self.base
    }

    pub fn new(base: Workspace) -> Arc<Self> {
        Arc::new(Campaigns {
            base: Arc::new(base),
            running: Mutex::new(HashMap::new()),
            tasks: Mutex::new(Vec::new()),
            shutting_down: AtomicBool::new(false),
            imports: Mutex::new(HashMap::new()),
            auto_resume: AtomicBool::new(true),
            waiting: Mutex::new(HashMap::new()),
        })
    }

    /// How long a campaign's lease lasts without a heartbeat.
    pub fn lease_ttl(&self) -> Duration {
        self.base.lease_ttl()
    }

    pub fn state(&self) -> &Location {
        &self.base.state
    }

    /// Profiles the config file defines (for the form).
    pub fn profiles(&self) -> Vec<String> {
        self.base.config.profiles.clone()
    }

    pub fn is_shutting_down(&self) -> bool {
        self.shutting_down.load(Ordering::Relaxed)
    }

    /// The workspace for a profile of the config file (None: serve's own).
    fn workspace(&self, profile: Option<&str>) -> Result<Arc<Workspace>, WebError> {
        let Some(name) = profile.filter(|p| Some(*p) != self.base.config.profile.as_deref()) else {
            return Ok(self.base.clone());
        };
        let Some(path) = self.base.config_path.as_deref() else {
            return Err(WebError::bad("profile_without_config", [("name", name)]));
        };
        let (config, path) =
            ConfigFile::load(Some(path), Some(name)).map_err(|e| CoreError::Refused(e.reason()))?;
        Ok(Arc::new(Workspace::new(
            Some(self.base.state.clone()),
            config,
            path,
        )))
    }

    /// May `actor` do `action`? A refusal is in the audit log and is 403.
    pub async fn permit(
        self: &Arc<Self>,
        actor: &Actor,
        action: Action,
        campaign: Option<&str>,
    ) -> Result<(), WebError> {
        let base = self.base.clone();
        let (actor, campaign) = (actor.clone(), campaign.map(str::to_string));
        tokio::task::spawn_blocking(move || base.permit(&actor, action, campaign.as_deref()))
            .await
            .map_err(blocking_err)??;
        Ok(())
    }

    /// The audit log, newest first: all, or one campaign's.
    pub async fn audit_list(
        self: &Arc<Self>,
        campaign: Option<String>,
        before: Option<i64>,
        limit: u64,
    ) -> Result<Vec<AuditEntry>, WebError> {
        let base = self.base.clone();
        Ok(
            tokio::task::spawn_blocking(move || {
                base.audit_list(campaign.as_deref(), before, limit)
            })
            .await
            .map_err(blocking_err)??,
        )
    }

    /// A sign-in with a name and a password (argon2: off the async
    /// threads): who it is and the password's generation, if right.
    pub async fn verify_password(
        self: &Arc<Self>,
        name: String,
        password: String,
    ) -> Result<Option<(Actor, i64)>, WebError> {
        let base = self.base.clone();
        Ok(
            tokio::task::spawn_blocking(move || base.verify_password(&name, &password))
                .await
                .map_err(blocking_err)??,
        )
    }

    /// Store the upload as a campaign, import and check it; the dry-run
    /// plan. The caller was permitted to upload (before the body was read);
    /// the import is audited in its name.
    pub async fn create(
        self: &Arc<Self>,
        form: NewCampaign,
        actor: &Actor,
        file_name: &str,
    ) -> Result<Plan, WebError> {
        // The template's parameters, where the provider offers them, before
        // the import: rows that break it are rejected, no token is bought.
        let template = match self.fetch_template(&form).await {
            Ok(t) => t,
            Err(e) => {
                let _ = std::fs::remove_file(&form.csv);
                return Err(e);
            }
        };
        let this = self.clone();
        let actor = actor.clone();
        let detail = format!("file {file_name}");
        tokio::task::spawn_blocking(move || {
            let upload = form.csv.clone();
            let result = this.create_blocking(&form, template).and_then(|done| {
                this.base
                    .audit(&actor, Action::Upload, Some(&form.name), &detail)?;
                Ok(done)
            });
            // The upload is kept only as the file of a campaign it created.
            let keep = matches!(&result, Ok((_, path)) if *path == upload);
            if !keep {
                let _ = std::fs::remove_file(&upload);
            }
            result.map(|(plan, _)| plan)
        })
        .await
        .map_err(blocking_err)?
    }

    /// The pre-flight's template for a new campaign: declared, cached or
    /// fetched from the provider (see `Workspace::preflight`).
    async fn fetch_template(
        &self,
        form: &NewCampaign,
    ) -> Result<Option<crate::model::template_spec::TemplateSpec>, WebError> {
        check_campaign_name(&form.name).map_err(CoreError::from)?;
        let ws = self.workspace(form.profile.as_deref())?;
        let mut req = form.request();
        ws.preflight(&mut req, Mode::Run).await?;
        Ok(req.template)
    }

    fn create_blocking(
        &self,
        form: &NewCampaign,
        template: Option<crate::model::template_spec::TemplateSpec>,
    ) -> Result<(Plan, PathBuf), WebError> {
        check_campaign_name(&form.name).map_err(CoreError::from)?;
        let ws = self.workspace(form.profile.as_deref())?;
        if ws.same_file(&form.name, &form.csv, form.sheet.as_deref())? == Some(false) {
            return Err(WebError::conflict("name_taken", [("name", &form.name)]));
        }
        probe_lock(&ws.state, &form.name)?;
        let send_window = form
            .send_window
            .as_deref()
            .map(str::parse::<crate::model::window::WindowSetting>)
            .transpose()
            // Worded by the form (the core's words name flags and formats).
            .map_err(|_| {
                WebError::bad(
                    "send_window",
                    [("value", form.send_window.as_deref().unwrap_or(""))],
                )
            })?;
        let not_after = form
            .not_after
            .as_deref()
            .map(crate::model::clock::parse_local_instant)
            .transpose()
            .map_err(|_| {
                WebError::bad(
                    "deadline",
                    [("value", form.not_after.as_deref().unwrap_or(""))],
                )
            })?;
        let req = Request {
            send: SendOpts {
                daily_quota: form.daily_quota,
                send_window,
                ..SendOpts::default()
            },
            safety: SafetyOpts {
                not_after,
                ..SafetyOpts::default()
            },
            template,
            ..form.request()
        };
        let name = form.name.clone();
        let report = |rows: u64, rejected: u64| {
            self.imports
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .insert(name.clone(), (rows, rejected));
        };
        let hooks = Hooks {
            interrupted: None,
            import_progress: Some(&report),
        };
        let prepared = ws.prepare(&req, Mode::Run, hooks);
        self.imports
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&form.name);
        let mut prepared = prepared?;
        let options = WebOptions {
            profile: form.profile.clone(),
            daily_quota: form.daily_quota,
            delimiter: form.delimiter_or_detected(),
            sheet: form.sheet.clone(),
            planned_messages: None,
            planned_fee: None,
        };
        let plan = ws.plan(&prepared)?;
        let options = WebOptions {
            planned_messages: Some(plan.messages_to_send),
            planned_fee: plan.estimated_fees.as_ref().map(|f| f.total),
            ..options
        };
        prepared.remember_web_options(&options)?;
        Ok((plan, prepared.csv_path().to_path_buf()))
    }

    /// The request a stored campaign is resumed with.
    fn resume_request(
        &self,
        name: &str,
        in_doubt: Option<InDoubtPolicy>,
    ) -> Result<(Arc<Workspace>, Request), WebError> {
        let options = self.base.web_options(name).map_err(not_found)?;
        let ws = self.workspace(options.profile.as_deref())?;
        let req = Request {
            campaign: name.to_string(),
            send: SendOpts {
                daily_quota: options.daily_quota,
                in_doubt,
                ..SendOpts::default()
            },
            ..Request::default()
        };
        Ok((ws, req))
    }

    /// The dry-run plan of an imported campaign (not while it runs).
    pub async fn plan(self: &Arc<Self>, name: &str) -> Result<Plan, WebError> {
        if self.live(name).is_some_and(|l| l.running) {
            return Err(WebError::conflict("running", [("name", name)]));
        }
        self.with_prepared(name, None, |ws, prepared| Ok(ws.plan(&prepared)?))
            .await
    }

    /// Start or resume sending in the background. `actor`: who asked
    /// (checked and audited); `None` when serve itself carries on with a
    /// campaign a person started before a restart.
    pub async fn start(
        self: &Arc<Self>,
        name: &str,
        in_doubt: Option<InDoubtPolicy>,
        actor: Option<&Actor>,
    ) -> Result<(), WebError> {
        if let Some(a) = actor {
            self.permit(a, Action::Start, Some(name)).await?;
            if in_doubt.is_some() {
                self.permit(a, Action::InDoubt, Some(name)).await?;
            }
        }
        let actor = actor.cloned();
        let owned = name.to_string();
        self.free_here(name, "already_running")?;
        let (ws, prepared) = self
            .with_prepared(name, in_doubt, move |ws, mut prepared| {
                prepared.set_wanted_running(true)?;
                if let Some(a) = &actor {
                    ws.audit(a, Action::Start, Some(&owned), "")?;
                    if let Some(p) = in_doubt {
                        let what = match p {
                            InDoubtPolicy::Resend => "resend",
                            InDoubtPolicy::Hold => "hold",
                        };
                        ws.audit(a, Action::InDoubt, Some(&owned), what)?;
                    }
                }
                // Started (now, or by the scheduler at its time): the schedule is done.
                if prepared.start_at_ms().is_some() {
                    prepared.set_schedule(None)?;
                }
                Ok((ws, prepared))
            })
            .await?;
        let live = Arc::new(Live {
            stop: Arc::new(Stop::default()),
            total: AtomicU64::new(0),
            counters: Mutex::new(None),
            started: Instant::now(),
            done: AtomicBool::new(false),
        });
        {
            let mut running = self.running.lock().unwrap_or_else(|p| p.into_inner());
            if running.contains_key(name) {
                return Err(WebError::conflict("already_running", [("name", name)]));
            }
            running.insert(name.to_string(), live.clone());
        }
        let this = self.clone();
        let name = name.to_string();
        let handle = tokio::spawn(async move {
            let observer = LiveObserver(live.clone());
            let result = ws.send(prepared, live.stop.clone(), &observer).await;
            live.done.store(true, Ordering::Relaxed);
            let keep_wanted = match &result {
                Ok((outcome, _)) => {
                    tracing::info!(campaign = %name, result = outcome.label(), "web run ended");
                    // A person's pause or the end of the campaign: do not
                    // resume on restart. Other stops (serve stopping, quota,
                    // window, outage) still want it running.
                    !matches!(outcome.stop_reason(), Some(StopReason::Paused))
                        && outcome.label() == "paused"
                }
                Err(e) => {
                    tracing::error!(campaign = %name, "web run failed: {e}");
                    false
                }
            };
            let waits = match &result {
                Ok((outcome, _)) if keep_wanted => outcome
                    .stop_reason()
                    .filter(|r| matches!(r, StopReason::Quota | StopReason::Window)),
                _ => None,
            };
            if let Some(reason) = waits {
                this.waiting
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .insert(
                        name.clone(),
                        Waiting {
                            reason,
                            day: crate::model::clock::today_key(),
                        },
                    );
            }
            if !keep_wanted {
                let base = this.base.clone();
                let n = name.clone();
                let _ =
                    tokio::task::spawn_blocking(move || base.set_wanted_running(&n, false)).await;
            }
            this.running
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .remove(&name);
        });
        self.tasks
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(handle);
        Ok(())
    }

    /// Sending from here may begin: serve is not stopping and the campaign
    /// is not running in it (`busy` says why it may not then).
    fn free_here(&self, name: &str, busy_code: &str) -> Result<(), WebError> {
        if self.is_shutting_down() {
            return Err(WebError::conflict("stopping", NONE));
        }
        if self.running_here(name) {
            return Err(WebError::conflict(busy_code, [("name", name)]));
        }
        Ok(())
    }

    /// The campaign prepared to resume (its lock free), on a blocking
    /// thread, and handed to `then` there.
    async fn with_prepared<T: Send + 'static>(
        self: &Arc<Self>,
        name: &str,
        in_doubt: Option<InDoubtPolicy>,
        then: impl FnOnce(Arc<Workspace>, campaign::Prepared) -> Result<T, WebError> + Send + 'static,
    ) -> Result<T, WebError> {
        let this = self.clone();
        let name = name.to_string();
        tokio::task::spawn_blocking(move || {
            let (ws, req) = this.resume_request(&name, in_doubt)?;
            probe_lock(&ws.state, &name)?;
            let prepared = ws.prepare(&req, Mode::Resume, Hooks::default())?;
            then(ws, prepared)
        })
        .await
        .map_err(blocking_err)?
    }

    /// A list serve's own workspace reads on a blocking thread; a failure
    /// is logged and reads as an empty list.
    async fn base_list<T: Send + 'static>(
        &self,
        what: &str,
        read: impl FnOnce(&Workspace) -> Result<Vec<T>, CoreError> + Send + 'static,
    ) -> Vec<T> {
        let base = self.base.clone();
        match tokio::task::spawn_blocking(move || read(&base)).await {
            Ok(Ok(list)) => list,
            Ok(Err(e)) => {
                tracing::error!("cannot read {what}: {e}");
                Vec::new()
            }
            Err(e) => {
                tracing::error!("cannot read {what}: {e}");
                Vec::new()
            }
        }
    }

    fn running_here(&self, name: &str) -> bool {
        self.running
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .contains_key(name)
    }

    /// A person's pause: graceful stop, and no resume on restart.
    pub async fn pause(self: &Arc<Self>, name: &str, actor: &Actor) -> Result<(), WebError> {
        self.permit(actor, Action::Pause, Some(name)).await?;
        let by = actor.label();
        self.waiting
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(name);
        let live = self
            .running
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(name)
            .cloned();
        let Some(live) = live else {
            // Pause of a campaign waiting for its time cancels the schedule.
            if self.unschedule(name).await? {
                return Ok(());
            }
            return Err(WebError::conflict("not_running", [("name", name)]));
        };
        live.stop.request(
            StopReason::Paused,
            format!("paused from the web console by {by}; press Resume to continue"),
        );
        let base = self.base.clone();
        let name = name.to_string();
        let actor = actor.clone();
        tokio::task::spawn_blocking(move || {
            base.set_wanted_running(&name, false)?;
            base.audit(&actor, Action::Pause, Some(&name), "")
        })
        .await
        .map_err(blocking_err)??;
        Ok(())
    }

    /// The import of an upload under way, if any.
    pub fn import_status(&self, name: &str) -> Option<ImportStatus> {
        self.imports
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(name)
            .map(|(rows, rejected)| ImportStatus {
                rows: *rows,
                rejected: *rejected,
            })
    }

    /// Live progress of a run in this process, if any.
    pub fn live(&self, name: &str) -> Option<LiveSnapshot> {
        self.running
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(name)
            .map(|l| l.snapshot())
    }

    /// Campaigns a person started here and did not pause: start them again.
    pub async fn resume_wanted(self: &Arc<Self>) {
        let names = self
            .base_list("campaigns to resume", Workspace::wanted_running)
            .await;
        for name in names {
            match self.start(&name, None, None).await {
                Ok(()) => {
                    tracing::info!(campaign = %name, "resumed: it was running when serve stopped")
                }
                Err(e) => tracing::warn!(campaign = %name, "not resumed: {e}"),
            }
        }
    }

    /// Stop every run (they stay wanted) and wait for them to commit.
    pub async fn shutdown(&self) {
        self.shutting_down.store(true, Ordering::Relaxed);
        for live in self
            .running
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .values()
        {
            live.stop.request(StopReason::Interrupted, INTERRUPTED);
        }
        let tasks = std::mem::take(&mut *self.tasks.lock().unwrap_or_else(|p| p.into_inner()));
        let all = futures::future::join_all(tasks);
        if tokio::time::timeout(Duration::from_secs(60), all)
            .await
            .is_err()
        {
            tracing::warn!("some runs did not stop within 60s");
        }
    }
}

/// Read-side helpers (pages and API): they use serve's reading connection;
/// a campaign that is not there is a 404.
pub fn status_all(reader: &Reader) -> Result<Vec<CampaignStatusLine>, CoreError> {
    reader.status_all()
}

pub fn status_one(reader: &Reader, name: &str) -> Result<CampaignStatusLine, WebError> {
    reader
        .status_of(name)?
        .ok_or_else(|| WebError::no_campaign(name))
}

/// One page of a campaign's rows in `state` (phones masked).
pub fn rows_page(
    reader: &Reader,
    name: &str,
    state: RowState,
    offset: u64,
    limit: u64,
) -> Result<Vec<RowView>, WebError> {
    reader
        .rows_page(name, state, offset, limit)?
        .ok_or_else(|| WebError::no_campaign(name))
}

fn not_found(e: CoreError) -> WebError {
    // What the user named is not there; the rest as any other refusal.
    match e {
        CoreError::Usage(m) => WebError::NotFound(Msg::as_is("not_found", m)),
        CoreError::Refused(r) => WebError::NotFound(Msg::refused(r)),
        other => WebError::from(other),
    }
}

/// 409 when another process (the CLI, another serve) holds the
/// campaign's lease. Takes nothing: the start that follows takes it.
fn probe_lock(state: &Location, name: &str) -> Result<(), WebError> {
    match campaign::check_free(state, name) {
        Ok(()) => Ok(()),
        Err(CampaignError::Locked { holder, secs, .. }) => Err(WebError::conflict(
            "locked",
            [
                ("name", name.to_string()),
                ("holder", holder),
                ("secs", secs.to_string()),
            ],
        )),
        Err(e) => Err(CoreError::from(e).into()),
    }
}
