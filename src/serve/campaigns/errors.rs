//! What a web request can fail with, and the HTTP status each maps to.

use super::*;
use crate::serve::words::{Msg, LOCALES};
use rust_i18n::t;

/// What a web request can fail with; each maps to one HTTP status. The
/// message has a stable code and is worded in the reader's language by a
/// page ([`WebError::message`]); the API answers its English and code.
#[derive(Debug, thiserror::Error)]
pub enum WebError {
    #[error("{0}")]
    BadRequest(Msg),
    #[error("{0}")]
    NotFound(Msg),
    #[error("{0}")]
    Conflict(Msg),
    #[error("{0}")]
    TooLarge(Msg),
    /// The caller's role may not (already in the audit log).
    #[error("{0}")]
    Forbidden(Msg),
    #[error("{0:#}")]
    Internal(#[from] anyhow::Error),
}

impl WebError {
    /// 400 with `error.<code>`'s words.
    pub fn bad<V: ToString>(
        code: &str,
        params: impl IntoIterator<Item = (&'static str, V)>,
    ) -> Self {
        WebError::BadRequest(Msg::new(code, params))
    }

    /// 409 with `error.<code>`'s words.
    pub fn conflict<V: ToString>(
        code: &str,
        params: impl IntoIterator<Item = (&'static str, V)>,
    ) -> Self {
        WebError::Conflict(Msg::new(code, params))
    }

    /// 413 with `error.<code>`'s words.
    pub fn too_large<V: ToString>(
        code: &str,
        params: impl IntoIterator<Item = (&'static str, V)>,
    ) -> Self {
        WebError::TooLarge(Msg::new(code, params))
    }

    /// 404: no campaign of that name.
    pub fn no_campaign(name: &str) -> Self {
        WebError::NotFound(Msg::new("no_campaign", [("name", name)]))
    }

    pub fn status(&self) -> StatusCode {
        match self {
            WebError::BadRequest(_) => StatusCode::BAD_REQUEST,
            WebError::NotFound(_) => StatusCode::NOT_FOUND,
            WebError::Conflict(_) => StatusCode::CONFLICT,
            WebError::TooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            WebError::Forbidden(_) => StatusCode::FORBIDDEN,
            WebError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// The stable code a script matches on.
    pub fn code(&self) -> &str {
        match self {
            WebError::BadRequest(m)
            | WebError::NotFound(m)
            | WebError::Conflict(m)
            | WebError::TooLarge(m)
            | WebError::Forbidden(m) => m.code(),
            WebError::Internal(_) => "internal",
        }
    }

    /// What the client is told in English: an internal failure's detail
    /// (paths, SQL) stays in the log.
    pub fn public_message(&self) -> String {
        match self {
            WebError::Internal(_) => {
                "something went wrong on the server; the details are in serve's log".into()
            }
            other => other.to_string(),
        }
    }

    /// What a person reads, in `locale`: an internal failure's detail
    /// stays in the log.
    pub fn message(&self, locale: &str) -> String {
        match self {
            WebError::BadRequest(m)
            | WebError::NotFound(m)
            | WebError::Conflict(m)
            | WebError::TooLarge(m)
            | WebError::Forbidden(m) => m.text(locale),
            WebError::Internal(_) => t!("problem.internal_message", locale = locale).into_owned(),
        }
    }

    /// The same error about an upload: its English changed by `f` (the
    /// stored path replaced), its words naming the file as uploaded.
    pub fn about_upload(self, f: impl Fn(&str) -> String, file: &str) -> Self {
        let fix = |m: Msg| m.map_english(&f).about(file);
        match self {
            WebError::BadRequest(m) => WebError::BadRequest(fix(m)),
            WebError::NotFound(m) => WebError::NotFound(fix(m)),
            WebError::Conflict(m) => WebError::Conflict(fix(m)),
            WebError::TooLarge(m) => WebError::TooLarge(fix(m)),
            other @ (WebError::Internal(_) | WebError::Forbidden(_)) => other,
        }
    }
}

impl From<CoreError> for WebError {
    fn from(e: CoreError) -> Self {
        match e {
            CoreError::Usage(m) => WebError::BadRequest(Msg::as_is("bad_request", m)),
            CoreError::Refused(r) => WebError::BadRequest(Msg::refused(r)),
            CoreError::Fatal(e) => WebError::Internal(e),
            CoreError::Forbidden(r) => WebError::Forbidden(Msg::refused(r)),
        }
    }
}

/// The API's error body: `{"error": "...", "code": "..."}` in English, and
/// `messages` in each of the console's languages (its upload script shows
/// the one of its page).
impl IntoResponse for WebError {
    fn into_response(self) -> Response {
        if let WebError::Internal(e) = &self {
            tracing::error!("web request failed: {e:#}");
        }
        let messages: serde_json::Map<String, serde_json::Value> = LOCALES
            .iter()
            .map(|l| (l.to_string(), self.message(l).into()))
            .collect();
        let body = serde_json::json!({
            "error": self.public_message(),
            "code": self.code(),
            "messages": messages,
        });
        (self.status(), axum::Json(body)).into_response()
    }
}
