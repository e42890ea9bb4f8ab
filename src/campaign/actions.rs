//! What a face may do to a campaign besides plan and send (see the
//! module's root): write its report, validate a file, remember what the
//! console needs to resume a campaign, and record a provider's callback.
//! Each is one call; the connection it uses stays here.

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::Context;
use serde::{Deserialize, Serialize};

use super::config::ConfigFile;
use super::ledger::LedgerWriter;
use super::outcome::ValidateVerdict;
use super::settings::{self, CsvOpts};
use super::summary::{report_file_name, RejectLine};
use super::{report, usage, CoreError, Hooks, Location, Mode, Prepared, Request, Workspace};
use crate::model::template_spec::{self, TemplateSpec};
use crate::store::{Campaign, Store};

use crate::model::reason::Reason;
pub use crate::store::{DeliveryStatus, EventOutcome, NewEvent};

/// How a report is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReportFormat {
    /// One CSV line per input row.
    Csv,
    /// The same CSV with a byte-order mark, so Excel reads Vietnamese right.
    Excel,
    /// `report --json`: one JSON object per line.
    JsonLines,
}

/// A campaign's report, ready to write.
pub struct Report {
    store: Store,
    campaign: Campaign,
}

impl Report {
    pub fn campaign_name(&self) -> &str {
        &self.campaign.name
    }

    /// Whether `path` is the campaign's input file (a report must never be
    /// written over it: the campaign could not be resumed).
    pub fn is_input_file(&self, path: &Path) -> bool {
        super::is_input_file(&self.campaign, path)
    }

    /// A file name for the report that is neither the input file nor a
    /// file already here.
    pub fn file_name(&self) -> String {
        report_file_name(&self.campaign)
    }

    /// Write every input row's line; the number of rows written.
    pub fn write(&self, out: impl Write, format: ReportFormat) -> Result<u64, CoreError> {
        Ok(match format {
            ReportFormat::Csv => report::write_report(&self.store, &self.campaign, out, false)?,
            ReportFormat::Excel => report::write_report(&self.store, &self.campaign, out, true)?,
            ReportFormat::JsonLines => report::write_report_json(&self.store, &self.campaign, out)?,
        })
    }
}

/// What the console keeps about a campaign it created that the campaign
/// row does not: a restarted `serve` resumes it with the same ones.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct WebOptions {
    pub profile: Option<String>,
    pub daily_quota: Option<u64>,
    /// How the file was read (the rejected rows are read back the same way).
    #[serde(default)]
    pub delimiter: Option<u8>,
    #[serde(default)]
    pub sheet: Option<String>,
    /// The Check page's plan at upload: messages and ≈ fee (VND), for
    /// drawing the cost so far against it.
    #[serde(default)]
    pub planned_messages: Option<u64>,
    #[serde(default)]
    pub planned_fee: Option<u64>,
}

/// `validate`: what the file holds, checked by the same import as `run`.
#[derive(Debug)]
pub struct Validation {
    pub file: PathBuf,
    pub rows: u64,
    pub valid: u64,
    pub rejected: u64,
    pub template_keys: Vec<String>,
    /// The template the rows were checked against, if one was named.
    pub template: Option<TemplateSpec>,
    /// CSV columns the template has no parameter for.
    pub template_warning: Option<String>,
    /// Every rejected row (phones as written: the file is the user's own).
    pub rejects: Vec<RejectLine>,
}

impl Validation {
    pub fn verdict(&self) -> ValidateVerdict {
        if self.rejected > 0 {
            ValidateVerdict::Rejected
        } else {
            ValidateVerdict::Accepted
        }
    }
}

impl Workspace {
    /// The writer providers' callbacks are committed through: its own
    /// durable (`synchronous=FULL`) connection on its own thread, commits
    /// grouped, each callback answered once its group committed.
    pub fn ledger(&self) -> Result<LedgerWriter, CoreError> {
        Ok(LedgerWriter::start(&self.state)?)
    }

    /// The named campaign's report.
    pub fn report(&self, name: &str) -> Result<Report, CoreError> {
        let (store, campaign) = self.find(name)?;
        Ok(Report { store, campaign })
    }

    /// Write the named campaign's report to `out` (the web face streams
    /// it); the number of rows written.
    pub fn write_report(
        &self,
        name: &str,
        out: impl Write,
        format: ReportFormat,
    ) -> Result<u64, CoreError> {
        self.report(name)?.write(out, format)
    }

    /// Write the named campaign's rejected rows to `out` as CSV: the
    /// file's own header and cells (read back from the campaign's file with
    /// the delimiter and sheet it was imported with), then `line` and
    /// `reason`. Written with the file's delimiter (a workbook: `,`), with a
    /// byte-order mark so Excel reads Vietnamese right. `words` says each
    /// reason in the reader's language. The rows written.
    pub fn write_rejects(
        &self,
        name: &str,
        out: impl Write,
        words: &dyn Fn(&Reason) -> String,
    ) -> Result<u64, CoreError> {
        let (store, campaign) = self.find(name)?;
        let opts: WebOptions = store
            .web_options(campaign.id)?
            .and_then(|s| serde_json::from_str(&s).ok())
            .unwrap_or_default();
        report::write_rejects(&store, &campaign, opts.delimiter, opts.sheet, out, words)
    }

    /// Whether an upload (and its sheet, for a workbook) is the input the
    /// campaign `name` was imported from: `None` when there is no such
    /// campaign yet.
    pub fn same_file(
        &self,
        name: &str,
        csv: &Path,
        sheet: Option<&str>,
    ) -> Result<Option<bool>, CoreError> {
        let store = self.open_store()?;
        let Some(existing) = store.find_campaign(name)? else {
            return Ok(None);
        };
        let hash = crate::csv_input::input_identity(csv, sheet).map_err(|e| match e.reason() {
            Some(r) => CoreError::Refused(r),
            None => usage(e.to_string()),
        })?;
        Ok(Some(hash == existing.csv_sha256))
    }

    /// The console's options for the campaign (defaults when it has none).
    pub fn web_options(&self, name: &str) -> Result<WebOptions, CoreError> {
        let (store, campaign) = self.find(name)?;
        Ok(store
            .web_options(campaign.id)?
            // Written by this code only; an unreadable one is as good as none.
            .and_then(|s| serde_json::from_str(&s).ok())
            .unwrap_or_default())
    }

    /// Whether a restarted `serve` should start the campaign again (a
    /// person started it and did not pause it). No error when it is gone.
    pub fn set_wanted_running(&self, name: &str, wanted: bool) -> Result<(), CoreError> {
        let mut store = self.open_store()?;
        if let Some(c) = store.find_campaign(name)? {
            store.set_wanted_running(c.id, wanted)?;
        }
        Ok(())
    }

    /// The campaigns a restarted `serve` starts again.
    pub fn wanted_running(&self) -> Result<Vec<String>, CoreError> {
        Ok(self.open_store()?.wanted_running()?)
    }

    /// Check a file the way `run` imports it (into a throwaway database, so
    /// validate and run never disagree about a row); with `template_id`,
    /// against that template as the config declares it or an earlier run
    /// cached it (no provider is called).
    pub fn validate(
        &self,
        csv: &Path,
        csv_opts: CsvOpts,
        template_id: Option<&str>,
    ) -> Result<Validation, CoreError> {
        let dir = tempfile::tempdir().context("cannot create a temporary folder")?;
        let scratch = Workspace::new(
            Some(Location::Sqlite(dir.path().join("validate.sqlite"))),
            ConfigFile {
                settings: self.config.settings.clone(),
                ..ConfigFile::default()
            },
            None,
        );
        let template = match template_id {
            Some(id) => Some(self.known_template(id)?),
            None => None,
        };
        let req = Request {
            template: template.clone(),
            csv_opts,
            ..Request::embedded_sandbox("validate", csv)
        };
        let prepared = scratch.prepare(&req, Mode::Run, Hooks::default())?;
        let store = &prepared.store;
        let campaign = &prepared.campaign;
        let counts = store.state_counts(campaign.id)?;
        let rejects = store
            .rejects(campaign.id, usize::MAX >> 1)?
            .into_iter()
            .map(|(line, phone, reason, reason_code)| RejectLine {
                line,
                phone,
                reason,
                reason_code,
            })
            .collect();
        let template_warning = template.as_ref().and_then(|t| {
            (!t.params.is_empty())
                .then(|| template_spec::check_columns(t, &campaign.template_keys).warning(t))
                .flatten()
        });
        Ok(Validation {
            file: csv.to_path_buf(),
            rows: counts.total,
            valid: counts.total - counts.rejected,
            rejected: counts.rejected,
            template_keys: campaign.template_keys.clone(),
            template,
            template_warning,
            rejects,
        })
    }

    /// The template `validate --template-id` checks against, without calling a
    /// provider: declared in the config file, else cached in the state
    /// database by an earlier run against the configured provider.
    fn known_template(&self, id: &str) -> Result<TemplateSpec, CoreError> {
        if let Some(spec) = self.config.declared_template(id) {
            return Ok(spec.clone());
        }
        let req = Request {
            campaign: "validate".into(),
            template_id: Some(id.to_string()),
            ..Request::default()
        };
        let cached = match (
            self.existing_store()?,
            settings::resolve(&req, self.config_source(), None),
        ) {
            (Some(store), Ok(s)) => store.cached_template(&s.provider.accounts("").tokens, id)?,
            _ => None,
        };
        cached.ok_or_else(|| {
            usage(format!(
                "--template-id {id}: the config file declares no [templates.{id}] section and {} holds no cached template info for it; \
                 declare its parameters in the config file (see the README, \"Template pre-flight\"), or let a \
                 `zns-batch run FILE --campaign NAME --template-id {id} --dry-run` against the provider fetch it first",
                self.state.display()
            ))
        })
    }
}

impl Prepared {
    pub fn campaign_name(&self) -> &str {
        &self.campaign.name
    }

    /// Whether the whole file is imported (an interrupted import is not).
    pub fn import_done(&self) -> bool {
        self.campaign.import_done
    }

    /// The file the campaign was imported from.
    pub fn csv_path(&self) -> &Path {
        Path::new(&self.campaign.csv_path)
    }

    /// Keep the console's options with the campaign.
    pub fn remember_web_options(&mut self, options: &WebOptions) -> Result<(), CoreError> {
        let json = serde_json::to_string(options).map_err(anyhow::Error::from)?;
        self.store.set_web_options(self.campaign.id, &json)?;
        Ok(())
    }

    /// See [`Workspace::set_wanted_running`].
    pub fn set_wanted_running(&mut self, wanted: bool) -> Result<(), CoreError> {
        Ok(self.store.set_wanted_running(self.campaign.id, wanted)?)
    }
}
