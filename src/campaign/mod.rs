//! The campaign core: the one API every face (the command line, `serve`'s
//! web console and API) calls to import, plan, send, pause and reconcile a
//! campaign. It resolves settings once ([`settings`]), runs the runner, and
//! decides the outcome once ([`outcome`]); faces only translate requests
//! and show results.
//!
//! A face reads through typed answers ([`reads`]: status, pages of rows,
//! metrics) and acts through [`Workspace`]'s calls ([`actions`]: report,
//! validate, wanted-running, callbacks). The state database's connection
//! (`Store`) never leaves this module and the layers under it; the types a
//! face hands back in (a stop handle, an observer, reconcile options) are
//! re-exported here as part of the contract.

mod actions;
#[cfg(test)]
mod api_tests;
pub mod callbacks;
pub mod config;
mod connect;
mod import;
mod ledger;
mod lock;
pub mod migrate;
pub mod outcome;
pub mod plan;
mod preflight;
mod reads;
mod report;
mod request;
pub mod schedule;
pub mod settings;
pub mod summary;
pub mod team;
mod zalo_oa;

use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Instant;

pub use crate::engine::reconcile::ReconcileOptions;
pub use crate::engine::runner::{Observer, RunCounters};
pub use crate::engine::stop::{Stop, StopReason, INTERRUPTED};
pub use crate::model::shell::shell_word;
/// Where the ledger lives: a SQLite file or a PostgreSQL URL.
pub use crate::store::Location;
pub use actions::{
    DeliveryStatus, EventOutcome, NewEvent, Report, ReportFormat, Validation, WebOptions,
};
pub use connect::Connection;
pub use import::{
    open_or_import, resume_import, tracking_prefix, CampaignError, CampaignSpec, ImportProgress,
};
pub use ledger::{LedgerError, LedgerWriter};
pub use lock::{check_free, lock, lock_for, CampaignLock, DEFAULT_LEASE_TTL};
pub use migrate::{migrate, MigrateProgress, MigrateSummary};
pub use outcome::{ExitCode, Outcome, ReconcileResult, ValidateVerdict};
pub use plan::ProviderQuota;
pub use preflight::spec_from_info;
pub use reads::{DeliveryChart, MetricsFigures, OaMonth, Reader, RowView};
pub use request::{InDoubtPolicy, Request, SettingsError};
pub use schedule::{fmt_until, fmt_when, parse_start_at, parse_test_phones, Scheduled, TestSend};
pub use settings::RunSettings;
pub use team::{Action, Actor, AuditEntry, Role, TokenCheck};
pub use zalo_oa::{ConnectStart, OaStatus, REAUTHORIZE_HINT};

use crate::campaign::config::{ConfigFile, DEFAULT_STATE};
use crate::engine::policy;
use crate::engine::reconcile;
use crate::engine::runner::{self, RunInput};
use crate::model::clock;
use crate::store::{Campaign, CampaignStatus, ImportCounts, QuotaKey, Store, StoreError};
use summary::{ReconcileSummary, Summary};

/// An error with the exit code it deserves. Faces show the message (and a
/// web face maps `Usage` to 400).
#[derive(Debug, thiserror::Error)]
pub enum CoreError {
    /// Bad flags, a bad request or a bad input file: exit 2.
    #[error("{0}")]
    Usage(String),
    /// Unusable state, rejected credentials, anything unexpected: exit 1.
    #[error("{}", causes(.0))]
    Fatal(#[from] anyhow::Error),
    /// The caller's role may not do this (recorded in the audit log): a
    /// web face answers 403, worded by its code.
    #[error("{0}")]
    Forbidden(crate::model::reason::Reason),
    /// The input file or the request refused, with a code a face can word
    /// in its reader's language (the text is the English of `Usage`): exit 2.
    #[error("{0}")]
    Refused(crate::model::reason::Reason),
}

/// The error and its causes on one line, each said once: a message that
/// already quotes its cause (`state database X: <cause>`) is not followed
/// by the cause again.
fn causes(e: &anyhow::Error) -> String {
    let mut line = String::new();
    for cause in e.chain() {
        let text = cause.to_string();
        if line.contains(&text) {
            continue;
        }
        if !line.is_empty() {
            line.push_str(": ");
        }
        line.push_str(&text);
    }
    line
}

impl CoreError {
    pub fn exit_code(&self) -> ExitCode {
        match self {
            CoreError::Usage(_) | CoreError::Refused(_) => ExitCode::Usage,
            CoreError::Fatal(_) => ExitCode::Fatal,
            // Only a role refuses; the command line acts as an admin.
            CoreError::Forbidden(_) => ExitCode::Fatal,
        }
    }
}

impl From<SettingsError> for CoreError {
    fn from(e: SettingsError) -> Self {
        match e.0.code() {
            Some(_) => CoreError::Refused(e.0),
            None => CoreError::Usage(e.0.text()),
        }
    }
}

impl From<CampaignError> for CoreError {
    fn from(e: CampaignError) -> Self {
        match e {
            CampaignError::Store(e) => e.into(),
            CampaignError::Csv(ref c) => match c.reason() {
                Some(r) => CoreError::Refused(r),
                None => CoreError::Usage(e.to_string()),
            },
            CampaignError::Preflight(p) => CoreError::Refused(p.reason()),
            // The file, another file under the same name, a running twin: the user's to fix.
            other => CoreError::Usage(other.to_string()),
        }
    }
}

impl From<StoreError> for CoreError {
    fn from(e: StoreError) -> Self {
        CoreError::Fatal(
            anyhow::Error::new(e).context(
                "the state database is unusable (check the path or URL, the server, permissions and free disk)",
            ),
        )
    }
}

/// The delimiter a CSV file's header line uses (`,` `;` tab), for a face
/// that offers to detect it; None for a workbook or a file it cannot read.
pub fn detect_delimiter(path: &std::path::Path) -> Option<u8> {
    crate::csv_input::detect_delimiter(path)
}

/// A reject reason: code, parameters and English (see model/reason.rs).
pub use crate::model::reason::{Part as ReasonPart, Reason, REJECT_CODES};

pub fn usage(msg: impl Into<String>) -> CoreError {
    CoreError::Usage(msg.into())
}

/// A usage error with a code (a face words it in its reader's language);
/// `text` is its English, as the command line and the API show it.
pub fn refused<K: Into<String>, V: ToString>(
    code: &str,
    params: impl IntoIterator<Item = (K, V)>,
    text: impl Into<String>,
) -> CoreError {
    CoreError::Refused(Reason::new(code, params, text))
}

/// Where campaigns live (the state database) and how they are configured.
pub struct Workspace {
    pub state: Location,
    pub config: ConfigFile,
    /// The config file read, if any (shown in the dry-run plan).
    pub config_path: Option<PathBuf>,
}

/// Whether a request starts a campaign or continues one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// `run`: import the file (or check it is the campaign's file).
    Run,
    /// `resume`: the campaign must exist; its interrupted import is finished.
    Resume,
}

/// What the import did in this request.
#[derive(Debug, Clone, Copy, Default)]
pub struct ImportReport {
    pub counts: ImportCounts,
    /// This request imported rows (false: the campaign was already imported).
    pub imported_now: bool,
    pub secs: f64,
}

/// A campaign ready to plan or send: imported, settings resolved and
/// stored, and locked against every other process. Its connection and
/// campaign row stay inside the core (see [`actions`] for what a face reads).
pub struct Prepared {
    store: Store,
    campaign: Campaign,
    settings: RunSettings,
    pub import: ImportReport,
    /// Its scheduled start (ms), stored or shown by this request.
    start_at_ms: Option<i64>,
    _lock: CampaignLock,
}

/// Hooks a face lends a long request.
#[derive(Default, Clone, Copy)]
pub struct Hooks<'a> {
    /// Set by a signal (or a Pause): the import stops at its next batch.
    pub interrupted: Option<&'a AtomicBool>,
    /// Told the import's running totals.
    pub import_progress: Option<&'a ImportProgress<'a>>,
}

impl Workspace {
    pub fn new(
        state: Option<impl Into<Location>>,
        config: ConfigFile,
        config_path: Option<PathBuf>,
    ) -> Self {
        let state = state
            .map(Into::into)
            .or_else(|| config.state.as_ref().map(Location::from))
            .unwrap_or_else(|| Location::from(DEFAULT_STATE));
        Workspace {
            state,
            config,
            config_path,
        }
    }

    pub fn config_source(&self) -> settings::ConfigSource<'_> {
        settings::ConfigSource {
            file: &self.config,
            path: self.config_path.as_deref(),
        }
    }

    /// How long a campaign's lease lasts without a heartbeat (config
    /// `lease_ttl`).
    pub fn lease_ttl(&self) -> std::time::Duration {
        self.config
            .lease_ttl
            .map(|h| h.0)
            .unwrap_or(DEFAULT_LEASE_TTL)
    }

    /// Take the campaign's lease; a takeover of another holder's is
    /// recorded (the audit log and the log) here, whoever takes it.
    fn take_lease(&self, store: &mut Store, campaign: &str) -> Result<CampaignLock, CoreError> {
        let lease = lock::lock_for(&self.state, campaign, self.lease_ttl())?;
        if let Some(previous) = lease.taken_over() {
            let detail = lock::takeover_detail(previous);
            tracing::warn!(campaign = %campaign, holder = %lease.holder(), "{detail}");
            store.append_audit(&crate::store::NewAudit {
                actor: &format!("process:{}", lease.holder()),
                action: "takeover",
                campaign: Some(campaign),
                detail: &detail,
                outcome: "allowed",
            })?;
        }
        Ok(lease)
    }

    /// Campaigns started from the web that the ledger says are running
    /// but whose runner is gone (no live lease): for a `serve` to carry on.
    pub fn orphaned_campaigns(&self) -> Result<Vec<String>, CoreError> {
        Ok(lock::orphaned(&self.state)?)
    }

    /// Open (creating if need be) the state database.
    fn open_store(&self) -> Result<Store, CoreError> {
        Ok(Store::open(&self.state)?)
    }

    /// The state database if it exists: reading commands never create one.
    fn existing_store(&self) -> Result<Option<Store>, CoreError> {
        Ok(Store::open_existing(&self.state)?)
    }

    /// A list read from the state database; no database yet: an empty list
    /// (listing never creates one).
    fn list_existing<T>(
        &self,
        read: impl FnOnce(&Store) -> Result<Vec<T>, CoreError>,
    ) -> Result<Vec<T>, CoreError> {
        match self.existing_store()? {
            Some(store) => read(&store),
            None => Ok(Vec::new()),
        }
    }

    /// The named campaign, or an error listing the ones there are. Never
    /// creates a state database.
    fn find(&self, name: &str) -> Result<(Store, Campaign), CoreError> {
        let Some(store) = self.existing_store()? else {
            return Err(refused(
                "campaign.unknown",
                [("name", name)],
                format!(
                    "no campaign `{name}`: there is no state database at {} yet (run a campaign first, or pass --state)",
                    self.state.display()
                ),
            ));
        };
        match store.find_campaign(name)? {
            Some(c) => Ok((store, c)),
            None => Err(self.unknown_campaign(&store, name)),
        }
    }

    fn unknown_campaign(&self, store: &Store, name: &str) -> CoreError {
        // The console names only the campaign: the path is the server's.
        let text = match store.campaign_names() {
            Ok(names) if !names.is_empty() => format!(
                "no campaign `{name}` in {}; known: {}",
                self.state.display(),
                names.join(", ")
            ),
            _ => format!(
                "no campaign `{name}` in {} (it has none yet)",
                self.state.display()
            ),
        };
        refused("campaign.unknown", [("name", name)], text)
    }

    /// Resolve the request, lock the campaign, import (or finish importing)
    /// its file and store what this request changes (deadline, frequency
    /// cap, send window, in-doubt policy).
    pub fn prepare(
        &self,
        req: &Request,
        mode: Mode,
        hooks: Hooks<'_>,
    ) -> Result<Prepared, CoreError> {
        settings::check_campaign_name(&req.campaign)?;
        let (mut store, existing) = match mode {
            Mode::Run => {
                let store = self.open_store()?;
                let existing = store.find_campaign(&req.campaign)?;
                (store, existing)
            }
            Mode::Resume => {
                let (mut store, c) = self.find(&req.campaign)?;
                // `resume --template-id NEW` mends a campaign that sent nothing.
                let c = match preflight::mended(&store, &c, req)? {
                    Some(m) => {
                        store.set_campaign_template(m.id, &m.template_id)?;
                        m
                    }
                    None => c,
                };
                (store, Some(c))
            }
        };
        let settings = settings::resolve(req, self.config_source(), existing.as_ref())?;
        let lock = self.take_lease(&mut store, &req.campaign)?;
        let started = Instant::now();
        let spec = |csv| import::CampaignSpec {
            name: &settings.campaign,
            csv,
            template_id: &settings.template_id,
            token_type: &settings.token_type,
            provider: settings.provider.kind.as_str(),
            base_url: settings.provider.stored_base_url(),
            oa_id: &settings.provider.oa_id,
            in_doubt_policy: settings.run.in_doubt.as_str(),
            not_after_ms: settings.not_after_ms,
            min_interval_ms: settings.min_interval_ms,
            csv_options: &settings.csv,
            dedup_phones: settings.dedup_phones,
            interrupted: hooks.interrupted,
            progress: hooks.import_progress,
            template: settings.template.as_ref(),
        };
        let (mut campaign, counts, imported_now) = match (mode, existing) {
            (Mode::Run, _) => {
                let csv = req
                    .csv
                    .as_deref()
                    .ok_or_else(|| usage("run needs the CSV file to send"))?;
                import::open_or_import(&mut store, &spec(csv))?
            }
            (Mode::Resume, Some(c)) if !c.import_done => {
                let csv = req
                    .csv
                    .clone()
                    .unwrap_or_else(|| PathBuf::from(&c.csv_path));
                if !csv.exists() {
                    return Err(refused(
                        "campaign.file_gone",
                        [("name", &c.name)],
                        format!(
                            "campaign `{}` was imported from {}, which is not there any more, and its import is unfinished; \
                             point at the file where it is now: zns-batch resume {} --csv NEW/PATH.csv",
                            c.name,
                            c.csv_path,
                            shell_word(&c.name)
                        ),
                    ));
                }
                let (c, counts) = import::resume_import(&mut store, &c, &spec(&csv))?;
                (c, counts, true)
            }
            (Mode::Resume, Some(c)) => (c, ImportCounts::default(), false),
            (Mode::Resume, None) => return Err(self.unknown_campaign(&store, &req.campaign)),
        };
        // An import checked the header; a campaign imported before (maybe
        // without a template) is checked against the template now.
        if let Some(spec) = &settings.template {
            crate::model::template_spec::check_campaign(spec, &campaign.template_keys)
                .map_err(|e| CoreError::Refused(e.reason()))?;
        }
        // What this request says about the campaign's lasting settings.
        if (settings.not_after_ms, settings.min_interval_ms) != (None, None) {
            store.update_run_safety(
                campaign.id,
                settings.not_after_ms,
                settings.min_interval_ms,
            )?;
        }
        if let Some(given) = settings.window_given {
            let text = given.window().map(|w| w.to_string());
            if text != campaign.send_window {
                store.set_campaign_send_window(campaign.id, text.as_deref())?;
            }
        }
        if settings.run.in_doubt.as_str() != campaign.in_doubt_policy {
            store.update_campaign_settings(campaign.id, settings.run.in_doubt.as_str())?;
        }
        if let Some(c) = store.find_campaign(&campaign.name)? {
            campaign = c;
        }
        let start_at_ms = store.schedule(campaign.id)?;
        Ok(Prepared {
            start_at_ms,
            store,
            campaign,
            settings,
            import: ImportReport {
                counts,
                imported_now,
                secs: started.elapsed().as_secs_f64(),
            },
            _lock: lock,
        })
    }

    /// The dry-run plan: what a run would do and cost. No provider call.
    pub fn plan(&self, p: &Prepared) -> Result<plan::Plan, CoreError> {
        let mut plan = plan::build(&p.store, &p.campaign, &p.settings)?;
        plan.import_secs = p.import.imported_now.then_some(p.import.secs);
        plan.starts_at = p
            .start_at_ms
            .map(|ms| clock::fmt_rfc3339(clock::from_ms(ms)));
        Ok(plan)
    }

    /// Send the campaign's open rows until done or stopped; decide and
    /// store the outcome once.
    pub async fn send(
        &self,
        p: Prepared,
        stop: Arc<Stop>,
        observer: &dyn Observer,
    ) -> Result<(Outcome, Summary), CoreError> {
        let Prepared {
            mut store,
            campaign,
            settings,
            _lock,
            ..
        } = p;
        // Lost lease (the heartbeat says, or a claim was refused): the run stops.
        _lock.watch(stop.clone());
        // Through the open-rows index: a resume of a million-row campaign
        // must not count every row before its first send.
        let nothing_open = campaign.import_done && store.open_count(campaign.id, true)? == 0;
        let counters = Arc::new(RunCounters::default());
        let run_id = hex::encode(rand::random::<[u8; 6]>());
        let accounts = settings.provider.accounts(&run_id);
        let quota_key = QuotaKey::today(&accounts.quota, &campaign.oa_id);
        let mut label = settings.provider.kind.to_string();
        let report = if nothing_open || !campaign.import_done || stop.is_set() {
            // Nothing to send, or the import was stopped: no provider call.
            None
        } else if let Some(why) = self.closed_for_now(&store, &campaign, &settings, &quota_key)? {
            stop.request(why.0, why.1);
            None
        } else if let Some(conn) = self
            .connect_within_quota(&mut store, &campaign, &settings, &quota_key, &stop)
            .await?
        {
            label = conn.label.clone();
            // The import filled this connection's cache; the run uses its own.
            store.release_memory()?;
            store.set_campaign_status(campaign.id, CampaignStatus::Running, None)?;
            let result = runner::run(
                RunInput {
                    state: self.state.clone(),
                    campaign: campaign.clone(),
                    accounts,
                    provider: conn.provider.clone(),
                    opts: settings.run.clone(),
                    stop: stop.clone(),
                    counters: counters.clone(),
                    lease: Some(_lock.fence()),
                },
                observer,
            )
            .await
            .map_err(|e| {
                CoreError::Fatal(anyhow::anyhow!(e).context(format!(
                    "the state database became unusable during the run, so nothing more was sent; \
                     fix the cause, then `zns-batch resume {}` (a row whose reply was not recorded \
                     is handled as in doubt)",
                    shell_word(&campaign.name)
                )))
            })?;
            conn.settle_callbacks().await;
            drop(conn);
            Some(result)
        } else {
            None
        };
        let counts = store.state_counts(campaign.id)?;
        let stopped = stop.reason().zip(stop.message());
        let outcome = Outcome::decide(stopped, &counts, &campaign);
        // A run that lost its lease to another process leaves the
        // campaign's status to it (one whose lease merely lapsed says why
        // it stopped).
        let taken_over = store
            .lease(&campaign.name)?
            .is_some_and(|l| l.holder != _lock.holder());
        if !taken_over {
            store.set_campaign_status(campaign.id, outcome.status(), outcome.message())?;
        }
        let summary = Summary::build(
            &store,
            &campaign,
            counts,
            &outcome,
            &label,
            report.map(|r| r.totals).unwrap_or_default(),
            store.quota_day(&quota_key)?,
            settings.run.daily_quota,
            settings.run.send_window,
        )?;
        Ok((outcome, summary))
    }

    /// Connect and read the OA's live quota where the provider offers a
    /// query; its figures go into today's quota row, so the run never
    /// claims past them. `None` (and a quota stop) when the provider says
    /// nothing is left today: no token is bought then.
    async fn connect_within_quota(
        &self,
        store: &mut Store,
        campaign: &Campaign,
        settings: &RunSettings,
        quota_key: &QuotaKey,
        stop: &Stop,
    ) -> Result<Option<Connection>, CoreError> {
        let conn = connect::connect(settings, self).await?;
        let live = self
            .provider_quota(settings, Some(conn.provider.as_ref()))
            .await?;
        if let Some(q) = live {
            preflight::record(store, quota_key, q)?;
            if let Some(why) = self.closed_for_now(store, campaign, settings, quota_key)? {
                stop.request(why.0, why.1);
                return Ok(None);
            }
        }
        Ok(Some(conn))
    }

    /// Why no request may leave now (the provider disabled the template,
    /// window closed without --wait, quota used up), before any provider is
    /// contacted.
    fn closed_for_now(
        &self,
        store: &Store,
        campaign: &Campaign,
        settings: &RunSettings,
        quota_key: &QuotaKey,
    ) -> Result<Option<(StopReason, String)>, CoreError> {
        if let Some(why) = store.template_block(&campaign.template_id)? {
            return Ok(Some((
                StopReason::Template,
                runner::template_stop_message(&why, &campaign.name),
            )));
        }
        let now = clock::now();
        if let Some(w) = settings.run.send_window {
            if !w.contains(now) && !settings.run.wait_for_window {
                return Ok(Some((StopReason::Window, w.closed_message(now))));
            }
        }
        if !store
            .quota_day(quota_key)?
            .has_room(settings.run.daily_quota)
        {
            return Ok(Some((StopReason::Quota, policy::quota_used_up(quota_key))));
        }
        Ok(None)
    }

    /// Look up delivery of the campaign's sent rows (where the provider
    /// offers a lookup).
    pub async fn reconcile(
        &self,
        name: &str,
        provider: &settings::ProviderOpts,
        opts: &reconcile::ReconcileOptions,
        stop: Arc<Stop>,
    ) -> Result<ReconcileSummary, CoreError> {
        let (mut store, campaign) = self.find(name)?;
        let req = Request {
            campaign: campaign.name.clone(),
            provider: provider.clone(),
            ..Request::default()
        };
        let settings = settings::resolve(&req, self.config_source(), Some(&campaign))?;
        if settings.provider.stored_base_url().is_none() {
            return Err(usage(format!(
                "campaign `{}` was sent through the embedded sandbox, which kept its messages only while that run lasted: there is nothing to look up. \
                 To try reconcile, start `zns-batch sandbox` and run a campaign with --provider sandbox --base-url http://127.0.0.1:8765/v1/shop",
                campaign.name
            )));
        }
        let kind = settings.provider.kind;
        if let Some(why) = kind.capabilities().no_message_lookup {
            return Err(usage(format!(
                "reconcile is not available for campaign `{}`: {why}. Delivery status for {kind} campaigns comes from the provider's callbacks: run `zns-batch serve` (see the README, \"Delivery status\")",
                campaign.name
            )));
        }
        let _lock = self.take_lease(&mut store, &campaign.name)?;
        let conn = connect::connect(&settings, self).await?;
        let totals = reconcile::run(
            &mut store,
            &campaign,
            conn.provider.clone(),
            opts,
            stop.clone(),
        )
        .await
        .map_err(|e| {
            CoreError::Fatal(
                anyhow::anyhow!(e).context("the state database became unusable during reconcile"),
            )
        })?;
        let (delivery, _) = summary::delivery_of(&store, campaign.id)?;
        Ok(ReconcileSummary::new(
            &campaign,
            &conn.label,
            totals,
            delivery,
            opts,
            stop.reason().zip(stop.message()),
        ))
    }
}

/// Whether a path is the campaign's own input file (a report must never
/// be written over it).
fn is_input_file(campaign: &Campaign, path: &Path) -> bool {
    let canonical = |p: &Path| std::fs::canonicalize(p).ok();
    match (canonical(path), canonical(Path::new(&campaign.csv_path))) {
        (Some(a), Some(b)) => a == b,
        _ => path == Path::new(&campaign.csv_path),
    }
}
