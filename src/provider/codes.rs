//! The one table that maps provider error codes to what the runner does.
//!
//! Defaults come from `shared/spec/providers.md`; the inferred ones (and any
//! code a real account turns out to use) can be overridden from the config
//! file's `[error_codes.<provider>]` table.

use std::collections::HashMap;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use super::ProviderKind;

/// What the runner does about a failed call.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorClass {
    /// Temporary (timeouts, 5xx, 429, "retry later"): back off and retry.
    Retry,
    /// The journey token is expired or invalid: get a new one, retry once.
    RefreshToken,
    /// Not in the table: ask the provider about the token (GetJourney); a
    /// bad token is refreshed, otherwise the row fails with the code.
    CheckToken,
    /// Daily quota or balance used up: stop claiming, pause (exit 3).
    PauseQuota,
    /// Credentials rejected: abort the run (exit 1).
    AbortAuth,
    /// The OA's stored tokens could not be renewed (the refresh was refused
    /// or its reply lost): pause (exit 3) until the OA is authorized again.
    Reauthorize,
    /// Campaign-wide misconfiguration (template, OA, permission): abort (exit 1).
    AbortConfig,
    /// Permanent for this recipient: the row fails with code and message.
    FailRow,
    /// Already accepted under this idempotency key (eSMS 124): counts as sent.
    AlreadySent,
}

impl ErrorClass {
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "retry" => Self::Retry,
            "refresh_token" => Self::RefreshToken,
            "check_token" => Self::CheckToken,
            "pause_quota" | "pause" => Self::PauseQuota,
            "abort_auth" => Self::AbortAuth,
            "reauthorize" => Self::Reauthorize,
            "abort_config" | "abort" => Self::AbortConfig,
            "fail_row" | "fail" => Self::FailRow,
            "already_sent" | "sent" => Self::AlreadySent,
            _ => return None,
        })
    }
}

/// Zalo's documented codes, relayed by eTelecom (inferred) and used by Zalo.
const ZALO_CODES: &[(&str, ErrorClass)] = &[
    ("-100", ErrorClass::Retry),
    ("-101", ErrorClass::AbortConfig),
    ("-102", ErrorClass::AbortConfig),
    ("-103", ErrorClass::AbortConfig),
    ("-104", ErrorClass::AbortConfig),
    ("-105", ErrorClass::AbortConfig),
    ("-106", ErrorClass::AbortConfig),
    ("-107", ErrorClass::FailRow),
    ("-108", ErrorClass::FailRow),
    ("-109", ErrorClass::AbortConfig),
    ("-110", ErrorClass::FailRow),
    ("-111", ErrorClass::FailRow),
    ("-112", ErrorClass::FailRow),
    ("-114", ErrorClass::FailRow),
    ("-115", ErrorClass::PauseQuota),
    ("-117", ErrorClass::AbortConfig),
    ("-118", ErrorClass::FailRow),
    ("-119", ErrorClass::FailRow),
    ("-124", ErrorClass::AbortAuth),
    ("-144", ErrorClass::PauseQuota),
];

/// eSMS `CodeResult` values (developers.esms.vn table of error codes).
const ESMS_CODES: &[(&str, ErrorClass)] = &[
    ("99", ErrorClass::FailRow),
    ("101", ErrorClass::AbortAuth),
    ("102", ErrorClass::AbortConfig),
    ("103", ErrorClass::PauseQuota),
    ("108", ErrorClass::FailRow),
    ("110", ErrorClass::FailRow),
    ("118", ErrorClass::AbortConfig),
    ("124", ErrorClass::AlreadySent),
    ("140", ErrorClass::AbortConfig),
    ("204", ErrorClass::AbortConfig),
    ("210", ErrorClass::FailRow),
];

/// Code → class, per provider protocol, with config overrides applied.
#[derive(Debug, Clone)]
pub struct ErrorTable {
    map: Arc<HashMap<(ProviderKind, String), ErrorClass>>,
}

impl Default for ErrorTable {
    fn default() -> Self {
        Self::with_overrides(&HashMap::new())
            .expect("the built-in table has no overrides to reject")
    }
}

impl ErrorTable {
    /// `overrides`: provider name → (code → class name), as read from config.
    pub fn with_overrides(
        overrides: &HashMap<String, HashMap<String, String>>,
    ) -> Result<Self, String> {
        let mut map = HashMap::new();
        for (code, class) in ZALO_CODES {
            map.insert((ProviderKind::Etelecom, code.to_string()), *class);
            map.insert((ProviderKind::Zalo, code.to_string()), *class);
        }
        for (code, class) in ESMS_CODES {
            map.insert((ProviderKind::Esms, code.to_string()), *class);
        }
        for (provider, codes) in overrides {
            let kind = ProviderKind::parse(provider)
                .ok_or_else(|| {
                    format!("error_codes: unknown provider `{provider}` (etelecom, zalo, esms)")
                })?
                .protocol();
            for (code, class_name) in codes {
                let class = ErrorClass::parse(class_name).ok_or_else(|| {
                    format!(
                        "error_codes.{provider}.\"{code}\": unknown class `{class_name}` \
                         (retry, refresh_token, check_token, pause_quota, abort_auth, abort_config, fail_row, already_sent)"
                    )
                })?;
                map.insert((kind, code.trim().to_string()), class);
            }
        }
        Ok(Self { map: Arc::new(map) })
    }

    /// The class the table (or the config) gives this code, if any.
    pub fn known(&self, kind: ProviderKind, code: &str) -> Option<ErrorClass> {
        self.map.get(&(kind.protocol(), code.to_string())).copied()
    }

    /// The class for a nonzero provider code; unknown codes mean "check the
    /// token, then fail the row" (spec §1), never "retry forever".
    pub fn classify(&self, kind: ProviderKind, code: &str) -> ErrorClass {
        self.known(kind, code).unwrap_or(match kind.protocol() {
            // eSMS has no token step to check.
            ProviderKind::Esms => ErrorClass::FailRow,
            _ => ErrorClass::CheckToken,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn documented_codes_map_to_their_class() {
        let t = ErrorTable::default();
        for (kind, code, class) in [
            (ProviderKind::Etelecom, "-118", ErrorClass::FailRow),
            (ProviderKind::Sandbox, "-144", ErrorClass::PauseQuota),
            (ProviderKind::Zalo, "-124", ErrorClass::AbortAuth),
            (ProviderKind::Esms, "124", ErrorClass::AlreadySent),
            (ProviderKind::Esms, "103", ErrorClass::PauseQuota),
            (ProviderKind::Etelecom, "-999", ErrorClass::CheckToken),
            (ProviderKind::Esms, "777", ErrorClass::FailRow),
        ] {
            assert_eq!(t.classify(kind, code), class, "{kind:?} {code}");
        }
    }

    #[test]
    fn config_overrides_win_and_bad_names_are_refused() {
        let mut o = HashMap::new();
        o.insert(
            "etelecom".to_string(),
            HashMap::from([("-201".to_string(), "refresh_token".to_string())]),
        );
        let t = ErrorTable::with_overrides(&o).unwrap();
        assert_eq!(
            t.classify(ProviderKind::Etelecom, "-201"),
            ErrorClass::RefreshToken
        );
        assert_eq!(
            t.classify(ProviderKind::Sandbox, "-201"),
            ErrorClass::RefreshToken
        );

        let bad = HashMap::from([(
            "etelecom".to_string(),
            HashMap::from([("-1".to_string(), "explode".to_string())]),
        )]);
        assert!(ErrorTable::with_overrides(&bad)
            .unwrap_err()
            .contains("explode"));
    }
}
