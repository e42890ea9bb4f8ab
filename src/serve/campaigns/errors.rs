//! What a web request can fail with, and the HTTP status each maps to.

use super::*;

/// What a web request can fail with; each maps to one HTTP status.
#[derive(Debug, thiserror::Error)]
pub enum WebError {
    #[error("{0}")]
    BadRequest(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    TooLarge(String),
    /// The caller's role may not (already in the audit log).
    #[error("{0}")]
    Forbidden(String),
    #[error("{0:#}")]
    Internal(#[from] anyhow::Error),
}

impl WebError {
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

    /// What the client is told: an internal failure's detail (paths,
    /// SQL) stays in the log.
    pub fn public_message(&self) -> String {
        match self {
            WebError::Internal(_) => {
                "something went wrong on the server; the details are in serve's log".into()
            }
            other => other.to_string(),
        }
    }
}

impl From<CoreError> for WebError {
    fn from(e: CoreError) -> Self {
        match e {
            CoreError::Usage(m) => WebError::BadRequest(m),
            CoreError::Fatal(e) => WebError::Internal(e),
            CoreError::Forbidden(m) => WebError::Forbidden(m),
        }
    }
}

/// The API's error body: `{"error": "..."}`.
impl IntoResponse for WebError {
    fn into_response(self) -> Response {
        if let WebError::Internal(e) = &self {
            tracing::error!("web request failed: {e:#}");
        }
        let body = serde_json::json!({ "error": self.public_message() });
        (self.status(), axum::Json(body)).into_response()
    }
}
