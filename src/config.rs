//! The TOML config file and how it merges with flags.
//!
//! Precedence: command-line flag > environment variable > config file >
//! built-in default. Secrets never sit in the file: it names the environment
//! variable that holds them (`api_key_env`).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use crate::cli::parse_duration;

pub const DEFAULT_CONFIG_FILE: &str = "zns-batch.toml";
pub const DEFAULT_STATE: &str = "state/zns-batch.sqlite";

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConfigFile {
    pub state: Option<PathBuf>,
    pub provider: Option<String>,
    pub base_url: Option<String>,
    /// Refused: keys belong in the environment, named by `api_key_env`.
    pub api_key: Option<toml::Value>,
    pub secret_key: Option<toml::Value>,
    pub api_key_env: Option<String>,
    pub secret_key_env: Option<String>,
    pub oa_id: Option<String>,
    pub template_id: Option<String>,
    pub token_type: Option<String>,
    pub concurrency: Option<u32>,
    pub rate: Option<u32>,
    pub daily_quota: Option<u64>,
    pub in_doubt: Option<String>,
    pub max_attempts: Option<u32>,
    pub request_timeout: Option<String>,
    pub outage_after: Option<String>,
    pub backoff: Option<String>,
    /// Default for `--min-interval-per-phone` on new campaigns.
    pub min_interval_per_phone: Option<String>,
    pub phone_column: Option<String>,
    pub optional_columns: Option<Vec<String>>,
    pub allow_duplicate_phones: Option<bool>,
    /// `[error_codes.<provider>]`: code → class, overriding the built-in table.
    #[serde(default)]
    pub error_codes: HashMap<String, HashMap<String, String>>,
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("config file {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("config file {path}: {message}")]
    Invalid { path: PathBuf, message: String },
}

impl ConfigFile {
    /// Load `explicit`, else `./zns-batch.toml` if it exists, else nothing.
    pub fn load(explicit: Option<&Path>) -> Result<(ConfigFile, Option<PathBuf>), ConfigError> {
        let path = match explicit {
            Some(p) => p.to_path_buf(),
            None => {
                let p = PathBuf::from(DEFAULT_CONFIG_FILE);
                if !p.exists() {
                    return Ok((ConfigFile::default(), None));
                }
                p
            }
        };
        let text = std::fs::read_to_string(&path).map_err(|source| ConfigError::Read {
            path: path.clone(),
            source,
        })?;
        let cfg: ConfigFile = toml::from_str(&text).map_err(|e| ConfigError::Invalid {
            path: path.clone(),
            message: e.to_string(),
        })?;
        if cfg.api_key.is_some() || cfg.secret_key.is_some() {
            return Err(ConfigError::Invalid {
                path,
                message: "holds a key inline; config files get committed and shared. \
                          Put the key in an environment variable and name it: api_key_env = \"ZNS_API_KEY\""
                    .into(),
            });
        }
        for (name, value) in [
            ("request_timeout", &cfg.request_timeout),
            ("outage_after", &cfg.outage_after),
            ("backoff", &cfg.backoff),
            ("min_interval_per_phone", &cfg.min_interval_per_phone),
        ] {
            if let Some(v) = value {
                parse_duration(v).map_err(|m| ConfigError::Invalid {
                    path: path.clone(),
                    message: format!("{name}: {m}"),
                })?;
            }
        }
        Ok((cfg, Some(path)))
    }

    pub fn duration(value: &Option<String>) -> Option<Duration> {
        value.as_deref().and_then(|v| parse_duration(v).ok())
    }

    /// The key named by `api_key_env`, if that variable is set.
    pub fn api_key_from_env(&self) -> Option<String> {
        self.api_key_env
            .as_deref()
            .and_then(|name| std::env::var(name).ok())
            .filter(|v| !v.is_empty())
    }

    pub fn secret_key_from_env(&self) -> Option<String> {
        self.secret_key_env
            .as_deref()
            .and_then(|name| std::env::var(name).ok())
            .filter(|v| !v.is_empty())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inline_keys_and_unknown_fields_are_refused_with_the_fix() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("c.toml");
        std::fs::write(&p, "api_key = \"SECRET-VALUE\"\n").unwrap();
        let e = ConfigFile::load(Some(&p)).unwrap_err().to_string();
        assert!(e.contains("api_key_env"), "{e}");
        assert!(!e.contains("SECRET-VALUE"), "{e}");

        std::fs::write(&p, "concurency = 3\n").unwrap();
        let e = ConfigFile::load(Some(&p)).unwrap_err().to_string();
        assert!(e.contains("concurency"), "{e}");

        std::fs::write(&p, "outage_after = \"soon\"\n").unwrap();
        let e = ConfigFile::load(Some(&p)).unwrap_err().to_string();
        assert!(e.contains("outage_after"), "{e}");
    }

    #[test]
    fn a_full_file_parses() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("c.toml");
        std::fs::write(
            &p,
            r#"
provider = "etelecom"
base_url = "https://example.invalid/v1/shop"
api_key_env = "MY_KEY"
oa_id = "123"
template_id = "456"
concurrency = 32
rate = 50
daily_quota = 5000
request_timeout = "15s"
[error_codes.etelecom]
"-201" = "refresh_token"
"#,
        )
        .unwrap();
        let (cfg, path) = ConfigFile::load(Some(&p)).unwrap();
        assert_eq!(path.as_deref(), Some(p.as_path()));
        assert_eq!(cfg.concurrency, Some(32));
        assert_eq!(
            ConfigFile::duration(&cfg.request_timeout),
            Some(Duration::from_secs(15))
        );
        assert_eq!(cfg.error_codes["etelecom"]["-201"], "refresh_token");
    }
}
