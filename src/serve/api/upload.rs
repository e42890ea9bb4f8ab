//! A multipart upload streamed to disk beside the state database, with a
//! size cap, and the form's other fields read as they come.

use std::io::Write;
use std::path::{Path, PathBuf};

use axum::extract::Multipart;

use crate::serve::campaigns::{NewCampaign, WebError};

/// Default cap on an upload (a 1M-row CSV is well under it).
pub const DEFAULT_UPLOAD_LIMIT: u64 = 512 * 1024 * 1024;
/// Bytes read and thrown away past the cap before the 413 is sent.
const DRAIN_AFTER_LIMIT: u64 = 64 * 1024 * 1024;

/// The form as received: the campaign to create and the CSRF token given.
pub struct Upload {
    pub form: NewCampaign,
    pub csrf: Option<String>,
    /// Whether a file came with the form.
    pub has_file: bool,
}

/// Where uploads live: `uploads/` beside the state database.
pub fn upload_dir(state: &Path) -> PathBuf {
    state
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."))
        .join("uploads")
}

fn text(field: &str, v: String) -> Option<String> {
    let v = v.trim().to_string();
    let _ = field;
    (!v.is_empty()).then_some(v)
}

/// Read the form; the file goes to disk chunk by chunk. On any error the
/// partial file is removed.
pub async fn read(mut multipart: Multipart, state: &Path, limit: u64) -> Result<Upload, WebError> {
    let dir = upload_dir(state);
    std::fs::create_dir_all(&dir)
        .map_err(|e| WebError::Internal(anyhow::anyhow!("cannot create {}: {e}", dir.display())))?;
    let path = dir.join(format!(
        "upload-{}.csv",
        hex::encode(rand::random::<[u8; 8]>())
    ));
    let result = read_into(&mut multipart, &path, limit).await;
    if result.as_ref().map_or(true, |u| !u.has_file) {
        let _ = std::fs::remove_file(&path);
    }
    result
}

async fn read_into(multipart: &mut Multipart, path: &Path, limit: u64) -> Result<Upload, WebError> {
    let mut up = Upload {
        form: NewCampaign {
            csv: path.to_path_buf(),
            ..NewCampaign::default()
        },
        csrf: None,
        has_file: false,
    };
    let bad_form = |e: axum::extract::multipart::MultipartError| {
        WebError::BadRequest(format!("the upload is not a valid multipart form: {e}"))
    };
    while let Some(mut field) = multipart.next_field().await.map_err(bad_form)? {
        let name = field.name().unwrap_or("").to_string();
        if name == "file" {
            // Written with plain writes: chunks are small and land in the page cache.
            let mut file = std::fs::File::create(path)
                .map_err(|e| WebError::Internal(anyhow::anyhow!("cannot store the upload: {e}")))?;
            let mut size = 0u64;
            while let Some(chunk) = field.chunk().await.map_err(bad_form)? {
                size += chunk.len() as u64;
                if size > limit {
                    // Read on (discarding) a while, so that the client is
                    // still listening when the 413 comes and can show it.
                    drop(file);
                    let _ = std::fs::remove_file(path);
                    let mut drained = 0u64;
                    while drained < DRAIN_AFTER_LIMIT {
                        match field.chunk().await {
                            Ok(Some(c)) => drained += c.len() as u64,
                            _ => break,
                        }
                    }
                    return Err(WebError::TooLarge(format!(
                        "the file is larger than the upload limit of {} MiB; split it into smaller campaigns \
                         or send it with the command line (zns-batch run)",
                        limit / (1024 * 1024)
                    )));
                }
                file.write_all(&chunk).map_err(|e| {
                    WebError::Internal(anyhow::anyhow!("cannot store the upload: {e}"))
                })?;
            }
            file.sync_all()
                .map_err(|e| WebError::Internal(anyhow::anyhow!("cannot store the upload: {e}")))?;
            up.has_file = size > 0;
            continue;
        }
        let value = field.text().await.map_err(bad_form)?;
        if value.len() > 4096 {
            return Err(WebError::BadRequest(format!("field `{name}` is too long")));
        }
        let f = &mut up.form;
        match name.as_str() {
            "campaign" => f.name = value.trim().to_string(),
            "template_id" => f.template_id = text(&name, value),
            "profile" => f.profile = text(&name, value),
            "send_window" => f.send_window = text(&name, value),
            "not_after" => f.not_after = text(&name, value),
            "daily_quota" => {
                f.daily_quota = match text(&name, value) {
                    None => None,
                    Some(v) => Some(v.parse().map_err(|_| {
                        WebError::BadRequest(format!(
                            "daily_quota `{v}` is not a whole number of messages, e.g. 5000"
                        ))
                    })?),
                }
            }
            "csrf" => up.csrf = Some(value),
            // Unknown fields are ignored, as an HTML form may carry more.
            _ => {}
        }
    }
    if !up.has_file {
        return Err(WebError::BadRequest(
            "no CSV file in the upload: attach it as the form field `file`".into(),
        ));
    }
    if up.form.name.is_empty() {
        return Err(WebError::BadRequest(
            "no campaign name: fill in the field `campaign`, e.g. bills-2026-11".into(),
        ));
    }
    Ok(up)
}
