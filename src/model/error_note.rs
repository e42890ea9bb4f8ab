//! A code and its words, as the ledger keeps them with a row or an event.

use serde::Serialize;

/// What went wrong, as stored: a reject's reason code and text, a
/// provider's refusal (its code and message), a failed delivery's. Rows,
/// delivery events and the report all carry this pair.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ErrorNote {
    pub error_code: Option<String>,
    pub error: Option<String>,
}

impl ErrorNote {
    /// `code: message`, or whichever of the two there is.
    pub fn joined(self) -> Option<String> {
        match (self.error_code, self.error) {
            (Some(c), Some(e)) => Some(format!("{c}: {e}")),
            (Some(c), None) => Some(c),
            (None, e) => e,
        }
    }
}
