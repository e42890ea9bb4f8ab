//! Turning a CSV into a campaign: file identity and a streamed, batched
//! import (resumable after a kill).

use std::borrow::Cow;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};

use sha2::{Digest, Sha256};

use crate::csv_input::{self, CsvError, CsvItem, CsvOptions, CsvReader};
use crate::model::reason::Reason;
use crate::model::template_spec::{self, PreflightError, RowChecker, TemplateSpec};
use crate::store::{Campaign, ImportCounts, ImportRow, NewCampaign, PhoneKeys, Store, StoreError};

/// Records per import transaction.
const IMPORT_BATCH: usize = 8192;
/// WAL pages between checkpoints while importing (64 MiB), and after.
const IMPORT_WAL_PAGES: u32 = 16384;
const DEFAULT_WAL_PAGES: u32 = 1000;

#[derive(Debug, thiserror::Error)]
pub enum CampaignError {
    /// The input file is unusable (exit 2).
    #[error(transparent)]
    Csv(#[from] CsvError),
    /// The template refuses the campaign as a whole (exit 2).
    #[error(transparent)]
    Preflight(#[from] PreflightError),
    /// The campaign exists with another file (exit 2).
    #[error("campaign `{name}` was imported from a different file ({stored_path}, {stored}); {given_path} has {given}. Use a new --campaign name for a new file, or pass the original file (and the same --sheet)")]
    DifferentFile {
        name: String,
        stored_path: String,
        stored: String,
        given_path: String,
        given: String,
    },
    #[error("campaign `{name}` is being run by another zns-batch process ({holder}); its lease lapses at {until} (in {secs}s) unless that process renews it; wait for it or stop it first")]
    Locked {
        name: String,
        /// `host:pid:random` of the process holding the lease.
        holder: String,
        until: String,
        secs: u64,
    },
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// What identifies a campaign and how its rows are read.
pub struct CampaignSpec<'a> {
    pub name: &'a str,
    pub csv: &'a Path,
    pub template_id: &'a str,
    pub token_type: &'a str,
    pub provider: &'a str,
    pub base_url: Option<&'a str>,
    pub oa_id: &'a str,
    pub in_doubt_policy: &'a str,
    /// Run-safety settings stored with a new campaign.
    pub not_after_ms: Option<i64>,
    pub min_interval_ms: Option<i64>,
    pub csv_options: &'a CsvOptions,
    pub dedup_phones: bool,
    /// Set by Ctrl-C / SIGTERM: the import stops after its current batch
    /// (it is resumable at batch boundaries) instead of finishing the file.
    pub interrupted: Option<&'a AtomicBool>,
    /// Told the running totals after each batch (a face shows them).
    pub progress: Option<&'a ImportProgress<'a>>,
    /// The template's parameters (fetched, cached or declared): a campaign
    /// it refuses is not created, and rows that break it are imported as
    /// `rejected` so no token is bought for them. `None`: no pre-flight.
    /// Only an import checks it: for a campaign already imported, call
    /// `template_spec::check_campaign(spec, &campaign.template_keys)`.
    pub template: Option<&'a TemplateSpec>,
}

/// Told the rows imported so far and how many of them were rejected.
pub type ImportProgress<'a> = dyn Fn(u64, u64) + Sync + 'a;

/// Deterministic per campaign, so a rerun under the same name reuses the
/// same tracking ids (and a de-duplicating provider drops repeats).
pub fn tracking_prefix(campaign: &str) -> String {
    let digest = Sha256::digest(campaign.as_bytes());
    format!("zb{}", &hex::encode(digest)[..10])
}

/// Create the campaign from the file, or check the file against the stored
/// one and finish an interrupted import. Returns the campaign and what this
/// call imported.
pub fn open_or_import(
    store: &mut Store,
    spec: &CampaignSpec<'_>,
) -> Result<(Campaign, ImportCounts, bool), CampaignError> {
    let hash = csv_input::input_identity(spec.csv, spec.csv_options.sheet.as_deref())?;
    let existing = store.find_campaign(spec.name)?;
    if let Some(c) = &existing {
        if c.csv_sha256 != hash {
            return Err(different_file(c, spec.csv, &hash));
        }
        if c.import_done {
            return Ok((c.clone(), ImportCounts::default(), false));
        }
    }
    let csv_options = with_template_optionals(spec.csv_options, spec.template);
    let mut reader = CsvReader::open(spec.csv, &csv_options)?;
    let checker = row_checker(spec.template, &reader)?;
    let campaign = match existing {
        Some(c) => c,
        None => {
            let csv_path = std::fs::canonicalize(spec.csv)
                .unwrap_or_else(|_| spec.csv.to_path_buf())
                .display()
                .to_string();
            store.create_campaign(&NewCampaign {
                name: spec.name,
                csv_path: &csv_path,
                csv_sha256: &hash,
                template_keys: &reader.header().template_keys,
                provider: spec.provider,
                base_url: spec.base_url,
                oa_id: spec.oa_id,
                template_id: spec.template_id,
                token_type: spec.token_type,
                tracking_prefix: &tracking_prefix(spec.name),
                in_doubt_policy: spec.in_doubt_policy,
                not_after_ms: spec.not_after_ms,
                min_interval_ms: spec.min_interval_ms,
            })?
        }
    };
    let counts = import_rows(store, &campaign, &mut reader, checker.as_ref(), spec)?;
    let campaign = store.find_campaign(spec.name)?.unwrap_or(campaign);
    Ok((campaign, counts, true))
}

/// Finish importing a campaign whose import was interrupted, from its file
/// (`spec.csv`, which may have moved), with the same options and template
/// check as [`open_or_import`]; the campaign's own identity wins over the
/// spec's.
pub fn resume_import(
    store: &mut Store,
    campaign: &Campaign,
    spec: &CampaignSpec<'_>,
) -> Result<(Campaign, ImportCounts), CampaignError> {
    let (csv, template) = (spec.csv, spec.template);
    let hash = csv_input::input_identity(csv, spec.csv_options.sheet.as_deref())?;
    if hash != campaign.csv_sha256 {
        return Err(different_file(campaign, csv, &hash));
    }
    let csv_options = with_template_optionals(spec.csv_options, template);
    let mut reader = CsvReader::open(csv, &csv_options)?;
    let checker = row_checker(template, &reader)?;
    let counts = import_rows(store, campaign, &mut reader, checker.as_ref(), spec)?;
    let campaign = store
        .find_campaign(&campaign.name)?
        .unwrap_or_else(|| campaign.clone());
    Ok((campaign, counts))
}

/// With a template, it decides which of its parameters may be empty
/// (`accept_null`), not `--optional-columns`: the reader lets their empty
/// values through and the row check refuses those the template refuses,
/// with its own reason (listing the column in `--optional-columns` would
/// not help there).
fn with_template_optionals<'a>(
    opts: &'a CsvOptions,
    template: Option<&TemplateSpec>,
) -> Cow<'a, CsvOptions> {
    let Some(spec) = template else {
        return Cow::Borrowed(opts);
    };
    let mut opts = opts.clone();
    opts.template_optional_columns
        .extend(spec.params.iter().map(|p| p.name.clone()));
    Cow::Owned(opts)
}

/// The campaign-level template checks on the file's header, then the
/// per-row checker (`None` when there is no template or nothing to check).
/// The stored campaign's file is not `given` (its hash differs): the
/// campaign name is taken by another list.
fn different_file(stored: &Campaign, given: &Path, hash: &str) -> CampaignError {
    CampaignError::DifferentFile {
        name: stored.name.clone(),
        stored_path: stored.csv_path.clone(),
        stored: csv_input::short_identity(&stored.csv_sha256),
        given_path: given.display().to_string(),
        given: csv_input::short_identity(hash),
    }
}

fn row_checker(
    template: Option<&TemplateSpec>,
    reader: &CsvReader,
) -> Result<Option<RowChecker>, PreflightError> {
    let Some(spec) = template else {
        return Ok(None);
    };
    let keys = &reader.header().template_keys;
    template_spec::check_campaign(spec, keys)?;
    let checker = RowChecker::new(spec, keys);
    Ok((!checker.is_empty()).then_some(checker))
}

fn import_rows(
    store: &mut Store,
    campaign: &Campaign,
    reader: &mut CsvReader,
    checker: Option<&RowChecker>,
    spec: &CampaignSpec<'_>,
) -> Result<ImportCounts, CampaignError> {
    let (dedup, interrupted, progress) = (spec.dedup_phones, spec.interrupted, spec.progress);
    // The phone keys of the loaded rows, for the de-duplication pass at the
    // end (16 bytes a row); a resumed import starts from those loaded before.
    let mut keys: PhoneKeys = Vec::new();
    if campaign.imported_through_line > 0 {
        reader.skip_through_line(campaign.imported_through_line)?;
        keys = store.loaded_phone_keys(campaign.id)?;
    }
    // Two stages on two cores: a thread parses, normalises and encodes
    // batches; this one inserts them. The channel holds at most two
    // batches, so memory stays flat whatever the file's size.
    let (tx, rx) = std::sync::mpsc::sync_channel::<Result<Batch, CsvError>>(2);
    let mut total = ImportCounts::default();
    let start_line = campaign.imported_through_line;
    store.set_wal_autocheckpoint(IMPORT_WAL_PAGES)?;
    std::thread::scope(|scope| -> Result<(), CampaignError> {
        std::thread::Builder::new()
            .name("zns-csv-reader".into())
            .spawn_scoped(scope, move || {
                read_batches(reader, checker, start_line, &tx)
            })
            .map_err(|e| CsvError::Io {
                path: campaign.csv_path.clone().into(),
                source: e,
            })?;
        for batch in rx {
            if interrupted.is_some_and(|f| f.load(Ordering::Relaxed)) {
                break;
            }
            let batch = batch?;
            let rows: Vec<ImportRow<'_>> = batch.rows.iter().map(Owned::as_import_row).collect();
            // The last batch also rejects the repeats over the whole file
            // and marks the import done, in one transaction: a kill at any
            // moment before its commit resumes into the same pass.
            let (c, repeats) = store.load_batch(
                campaign.id,
                &rows,
                batch.last_line,
                dedup,
                &mut keys,
                batch.done,
            )?;
            total.accepted = (total.accepted + c.accepted).saturating_sub(repeats);
            total.rejected += c.rejected + repeats;
            if let Some(report) = progress {
                report(total.accepted + total.rejected, total.rejected);
            }
            if batch.done {
                break;
            }
        }
        // Dropping the receiver (on an error above too) ends the reader thread.
        Ok(())
    })?;
    store.set_wal_autocheckpoint(DEFAULT_WAL_PAGES)?;
    Ok(total)
}

/// One CSV record, owned, on its way to the store.
struct Owned {
    line: u64,
    phone: String,
    tracking: Option<String>,
    data: String,
    reject: Option<Stored>,
}

/// A reject reason as the store keeps it: text, code, parameters (JSON).
struct Stored {
    text: String,
    code: Option<String>,
    params: Option<String>,
}

impl From<Reason> for Stored {
    fn from(r: Reason) -> Self {
        let code = r.code();
        Stored {
            text: r.text(),
            params: code.is_some().then(|| r.params_json()),
            code,
        }
    }
}

impl Owned {
    fn as_import_row(&self) -> ImportRow<'_> {
        match &self.reject {
            Some(reason) => ImportRow::Rejected {
                line: self.line,
                raw_phone: &self.phone,
                reason: &reason.text,
                code: reason.code.as_deref(),
                params: reason.params.as_deref(),
            },
            None => ImportRow::Accepted {
                line: self.line,
                phone: &self.phone,
                tracking_id: self.tracking.as_deref(),
                data_json: &self.data,
            },
        }
    }
}

/// Records for one import transaction. `last_line`: the last physical line
/// they cover; `done`: the file ends here.
struct Batch {
    rows: Vec<Owned>,
    last_line: u64,
    done: bool,
}

/// The parsing stage: batches of records until the end of the file, an
/// error, or the receiver hanging up.
fn read_batches(
    reader: &mut CsvReader,
    checker: Option<&RowChecker>,
    mut last_line: u64,
    tx: &std::sync::mpsc::SyncSender<Result<Batch, CsvError>>,
) {
    loop {
        let mut rows = Vec::with_capacity(IMPORT_BATCH);
        let mut done = false;
        while rows.len() < IMPORT_BATCH {
            let item = match reader.next_item() {
                Ok(item) => item,
                Err(e) => {
                    let _ = tx.send(Err(e));
                    return;
                }
            };
            match item {
                Some(CsvItem::Row(r)) => {
                    last_line = r.line;
                    // A value the template refuses: rejected here, like a
                    // bad phone, so no token is ever bought for it.
                    if let Some(reason) = checker.and_then(|c| c.check(&r.values)) {
                        rows.push(Owned {
                            line: r.line,
                            phone: r.phone,
                            tracking: None,
                            data: String::new(),
                            reject: Some(reason.into()),
                        });
                        continue;
                    }
                    rows.push(Owned {
                        line: r.line,
                        data: serde_json::to_string(&r.values).unwrap_or_else(|_| "[]".into()),
                        phone: r.phone,
                        tracking: r.tracking_id,
                        reject: None,
                    });
                }
                Some(CsvItem::Rejected(r)) => {
                    last_line = r.line;
                    rows.push(Owned {
                        line: r.line,
                        phone: r.raw_phone,
                        tracking: None,
                        data: String::new(),
                        reject: Some(r.reason.into()),
                    });
                }
                None => {
                    done = true;
                    break;
                }
            }
        }
        if tx
            .send(Ok(Batch {
                rows,
                last_line,
                done,
            }))
            .is_err()
            || done
        {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tracking_prefix_is_stable_and_short() {
        assert_eq!(
            tracking_prefix("bills-2026-11"),
            tracking_prefix("bills-2026-11")
        );
        assert_ne!(tracking_prefix("a"), tracking_prefix("b"));
        assert_eq!(tracking_prefix("x").len(), 12);
    }
}
