//! A multipart upload streamed to disk beside the state database, with a
//! size cap, and the form's other fields read as they come — every part
//! bounded before it is held in memory.
//!
//! The file is written as `*.part` and renamed once complete: an upload
//! cut short (client gone, `serve` killed) never looks like a CSV, and
//! [`remove_incomplete`] clears what a killed `serve` left.

use std::io::Write;
use std::path::{Path, PathBuf};

use axum::extract::multipart::{Field, MultipartError};
use axum::extract::Multipart;
use axum::http::StatusCode;

use crate::campaign::Location;
use crate::serve::campaigns::{NewCampaign, WebError};
use crate::serve::words::NONE;

/// Default cap on an upload (a 1M-row CSV is well under it).
pub const DEFAULT_UPLOAD_LIMIT: u64 = 512 * 1024 * 1024;
/// Bytes read and thrown away past the cap before the 413 is sent.
const DRAIN_AFTER_LIMIT: u64 = 64 * 1024 * 1024;
/// The form's text fields are short: a name, an id, a window, a token.
pub const TEXT_FIELD_LIMIT: usize = 4096;
/// How an upload being written is named until it is complete.
const PART_SUFFIX: &str = ".part";

/// The form as received: the campaign to create and the CSRF token given.
pub struct Upload {
    pub form: NewCampaign,
    pub csrf: Option<String>,
    /// Whether a file came with the form.
    pub has_file: bool,
    /// The file's name on the client's side, for messages.
    pub file_name: String,
}

/// Where uploads live: `uploads/` beside the state database (`state/`
/// for a PostgreSQL ledger). An upload is imported into the ledger before
/// its Check page answers, so any `serve` on a shared ledger can start it.
pub fn upload_dir(state: &Location) -> PathBuf {
    state.files_dir().join("uploads")
}

/// At `serve` start: remove the uploads a killed `serve` left half
/// written. Returns how many went.
pub fn remove_incomplete(state: &Location) -> usize {
    let Ok(entries) = std::fs::read_dir(upload_dir(state)) else {
        return 0;
    };
    entries
        .filter_map(Result::ok)
        .filter(|e| e.file_name().to_string_lossy().ends_with(PART_SUFFIX))
        .filter(|e| std::fs::remove_file(e.path()).is_ok())
        .count()
}

fn text(v: String) -> Option<String> {
    let v = v.trim().to_string();
    (!v.is_empty()).then_some(v)
}

fn internal(what: &str, e: impl std::fmt::Display) -> WebError {
    // The detail (with its path) goes to the log only.
    WebError::Internal(anyhow::anyhow!("{what}: {e}"))
}

fn bad_form(e: MultipartError) -> WebError {
    if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
        WebError::too_large("upload_too_large", NONE)
    } else {
        WebError::bad("upload_not_multipart", [("detail", e)])
    }
}

/// A field name from the client, fit to quote in a message.
fn shown(name: &str) -> String {
    name.chars()
        .take(40)
        .collect::<String>()
        .escape_default()
        .to_string()
}

/// Read the form; the file goes to disk chunk by chunk. On any error, or
/// if the request is dropped, the partial file is removed.
pub async fn read(
    mut multipart: Multipart,
    state: &Location,
    limit: u64,
) -> Result<Upload, WebError> {
    let dir = upload_dir(state);
    std::fs::create_dir_all(&dir)
        .map_err(|e| internal(&format!("cannot create {}", dir.display()), e))?;
    // Removed when dropped: a refused or abandoned upload leaves nothing.
    let part = tempfile::Builder::new()
        .prefix("upload-")
        .suffix(&format!(".csv{PART_SUFFIX}"))
        .tempfile_in(&dir)
        .map_err(|e| internal("cannot store the upload", e))?;
    let mut up = read_into(&mut multipart, part.as_file(), limit).await?;
    let done = dir.join(format!(
        "upload-{}.csv",
        hex::encode(rand::random::<[u8; 8]>())
    ));
    part.persist_noclobber(&done)
        .map_err(|e| internal("cannot store the upload", e.error))?;
    up.form.csv = done;
    Ok(up)
}

async fn read_into(
    multipart: &mut Multipart,
    mut file: &std::fs::File,
    limit: u64,
) -> Result<Upload, WebError> {
    let mut up = Upload {
        form: NewCampaign::default(),
        csrf: None,
        has_file: false,
        file_name: String::new(),
    };
    let mut seen_file = false;
    while let Some(mut field) = multipart.next_field().await.map_err(bad_form)? {
        let name = field.name().unwrap_or("").to_string();
        if name == "file" {
            if seen_file {
                return Err(WebError::bad("upload_second_file", NONE));
            }
            seen_file = true;
            up.file_name = field
                .file_name()
                .and_then(|n| n.rsplit(['/', '\\']).next())
                .unwrap_or("the file")
                .to_string();
            let mut size = 0u64;
            while let Some(chunk) = field.chunk().await.map_err(bad_form)? {
                size += chunk.len() as u64;
                if size > limit {
                    drain(&mut field).await;
                    return Err(WebError::too_large(
                        "file_too_large",
                        [("mib", limit / (1024 * 1024))],
                    ));
                }
                // Plain writes: chunks are small and land in the page cache.
                file.write_all(&chunk)
                    .map_err(|e| internal("cannot store the upload", e))?;
            }
            file.sync_all()
                .map_err(|e| internal("cannot store the upload", e))?;
            up.has_file = size > 0;
            continue;
        }
        let value = read_text(&mut field, &name).await?;
        let f = &mut up.form;
        match name.as_str() {
            "campaign" => f.name = value.trim().to_string(),
            "template_id" => f.template_id = text(value),
            "profile" => f.profile = text(value),
            "send_window" => f.send_window = text(value),
            "not_after" => f.not_after = text(value),
            "sheet" => f.sheet = text(value),
            // `auto` (or nothing): detected from the file's header line.
            "delimiter" => {
                f.delimiter = match text(value).as_deref() {
                    None | Some("auto") => None,
                    Some(v) => Some(
                        crate::campaign::settings::parse_delimiter(v)
                            .map_err(|e| WebError::bad("delimiter", [("detail", e)]))?,
                    ),
                }
            }
            "daily_quota" => {
                f.daily_quota = match text(value) {
                    None => None,
                    Some(v) => Some(
                        v.parse()
                            .map_err(|_| WebError::bad("daily_quota", [("value", v)]))?,
                    ),
                }
            }
            "csrf" => up.csrf = Some(value),
            // Unknown fields are ignored, as an HTML form may carry more.
            _ => {}
        }
    }
    if !up.has_file {
        return Err(WebError::bad("no_file", NONE));
    }
    if up.form.name.is_empty() {
        return Err(WebError::bad("no_name", NONE));
    }
    Ok(up)
}

/// A text field, refused as soon as it passes [`TEXT_FIELD_LIMIT`].
async fn read_text(field: &mut Field<'_>, name: &str) -> Result<String, WebError> {
    let mut value = Vec::new();
    while let Some(chunk) = field.chunk().await.map_err(bad_form)? {
        if value.len() + chunk.len() > TEXT_FIELD_LIMIT {
            drain(field).await;
            return Err(WebError::too_large(
                "field_too_long",
                [
                    ("field", shown(name)),
                    ("max", TEXT_FIELD_LIMIT.to_string()),
                ],
            ));
        }
        value.extend_from_slice(&chunk);
    }
    String::from_utf8(value).map_err(|_| WebError::bad("field_not_utf8", [("field", shown(name))]))
}

/// Read on (discarding) a while past a limit, so that the client is still
/// listening when the refusal comes and can show it.
async fn drain(field: &mut Field<'_>) {
    let mut drained = 0u64;
    while drained < DRAIN_AFTER_LIMIT {
        match field.chunk().await {
            Ok(Some(c)) => drained += c.len() as u64,
            _ => break,
        }
    }
}

/// An error about the stored upload, told with the client's name for the
/// file: no server path goes back in an answer.
pub fn by_upload_name(e: WebError, stored: &Path, file_name: &str) -> WebError {
    let stored = stored.display().to_string();
    let dir = stored
        .rsplit_once(std::path::MAIN_SEPARATOR)
        .map_or("", |(d, _)| d)
        .to_string();
    let fix = |m: &str| {
        let m = m.replace(&stored, file_name);
        if dir.is_empty() {
            m
        } else {
            m.replace(&dir, "uploads")
        }
    };
    e.about_upload(fix, file_name)
}
