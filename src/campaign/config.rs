//! The TOML config file, its named profiles, and how they merge with flags.
//!
//! Precedence, highest first: command-line flag > environment variable >
//! the selected profile (`[profiles.<name>]`, chosen by `--profile`) > the
//! file's top level > built-in default. Secrets never sit in the file: it
//! names the environment variable that holds them (`api_key_env`).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use crate::engine::runner::InDoubtPolicy;
use crate::model::clock::parse_duration;
use crate::model::template_spec::{self, TemplateSpec};
use crate::model::window::WindowSetting;
use crate::provider::ProviderKind;

/// Where `serve` and an embedded sandbox find the Zalo OA secret key and
/// the webhook path token, unless the config names other variables.
pub const DEFAULT_ZALO_SECRET_ENV: &str = "ZNS_ZALO_OA_SECRET";
pub const DEFAULT_WEBHOOK_TOKEN_ENV: &str = "ZNS_WEBHOOK_TOKEN";

pub const DEFAULT_CONFIG_FILE: &str = "zns-batch.toml";
pub const DEFAULT_STATE: &str = "state/zns-batch.sqlite";

/// Declares [`Settings`] (every key the top level and a profile may hold)
/// and its merge, from one list: a new setting is one line here.
macro_rules! settings {
    ($( $(#[$doc:meta])* $name:ident : $ty:ty ),* $(,)?) => {
        /// One layer of settings: the file's top level or one profile.
        #[derive(Debug, Default, Clone, Deserialize)]
        #[serde(deny_unknown_fields)]
        pub struct Settings {
            $( $(#[$doc])* pub $name: Option<$ty>, )*
        }

        impl Settings {
            /// Keys set in `self` win; the others come from `base`.
            pub fn over(self, base: &Settings) -> Settings {
                Settings { $( $name: self.$name.or_else(|| base.$name.clone()), )* }
            }
        }
    };
}

settings! {
    /// The ledger: a SQLite file or a `postgres://` URL.
    state: PathBuf,
    /// sandbox | etelecom | zalo | esms
    provider: ProviderKind,
    base_url: String,
    /// Refused: keys belong in the environment, named by `api_key_env`.
    api_key: toml::Value,
    /// Refused, like `api_key`.
    secret_key: toml::Value,
    /// Name of the environment variable holding the API key.
    api_key_env: String,
    secret_key_env: String,
    oa_id: String,
    template_id: String,
    token_type: String,
    concurrency: u32,
    rate: u32,
    daily_quota: u64,
    /// resend | hold
    in_doubt: InDoubtPolicy,
    max_attempts: u32,
    request_timeout: Human<Duration>,
    outage_after: Human<Duration>,
    backoff: Human<Duration>,
    /// Default `--min-interval-per-phone` for new campaigns, e.g. "24h".
    min_interval_per_phone: Human<Duration>,
    /// `HH:MM-HH:MM` in the OA's time zone, or `off`.
    send_window: Human<WindowSetting>,
    /// Price of one journey token, for the dry-run plan (VND).
    token_fee: u64,
    /// Price of one message, for the dry-run plan (VND).
    message_fee: u64,
    phone_column: String,
    optional_columns: Vec<String>,
    allow_duplicate_phones: bool,
    /// `serve`: the address it binds, e.g. "127.0.0.1:8080".
    listen: String,
    /// `serve`: the public base URL providers reach it at (behind a proxy).
    public_url: String,
    /// Zalo app id, part of the webhook signature and of the OA's authorization.
    zalo_app_id: String,
    /// Zalo's OAuth v4 OA endpoint base (`/permission`, `/access_token`
    /// below it); default https://oauth.zaloapp.com/v4/oa.
    zalo_oauth_url: String,
    /// Name of the environment variable holding the Zalo OA secret key.
    zalo_oa_secret_key_env: String,
    /// Name of the environment variable holding the webhook path token.
    webhook_token_env: String,
    /// `serve`: live-progress streams (SSE) open at once, at most.
    max_event_streams: u32,
    /// Name of the environment variable holding `serve`'s access token.
    auth_token_env: String,
    /// `serve`: a console sign-in lasts at most this long, e.g. "12h".
    session_ttl: Human<Duration>,
    /// `serve`: a console session unused this long ends, e.g. "1h".
    session_idle: Human<Duration>,
    /// `serve`: the client address is the last `X-Forwarded-For` entry
    /// (only behind a proxy that sets it and with serve reachable only
    /// through it).
    trust_forwarded_for: bool,
    /// `serve`: the `Host` names it answers to; any other gets 421 (DNS
    /// rebinding). Default: the listen host, localhost, 127.0.0.1, [::1]
    /// and the host of `public_url`.
    allowed_hosts: Vec<String>,
    /// `serve`: a client must send a whole request head within this.
    header_read_timeout: Human<Duration>,
    /// `serve`: a request body that sends nothing for this long is cut.
    idle_timeout: Human<Duration>,
    /// `serve`: the longest a request may take to be answered (uploads and
    /// streamed bodies aside).
    serve_request_timeout: Human<Duration>,
    /// `serve`: open connections at most; more wait to be accepted.
    max_connections: usize,
    /// How long a campaign's lease lasts without a heartbeat (renewed every
    /// third of it): after a holder dies elsewhere, the pause before another
    /// process takes the campaign over. Default 15s, at least 1s.
    lease_ttl: Human<Duration>,
}

/// A value written as text in the file (`"15s"`, `"07:00-22:00"`), parsed
/// once at load: a bad one is refused there, naming its key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Human<T>(pub T);

impl<'de> Deserialize<'de> for Human<Duration> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        parse_duration(&text)
            .map(Human)
            .map_err(serde::de::Error::custom)
    }
}

impl<'de> Deserialize<'de> for Human<WindowSetting> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        text.parse().map(Human).map_err(serde::de::Error::custom)
    }
}

/// The loaded file: the effective settings (profile over top level) plus
/// the error-code overrides. Reads like its settings (`config.concurrency`).
#[derive(Debug, Default)]
pub struct ConfigFile {
    pub settings: Settings,
    /// The profile in force, if one was selected.
    pub profile: Option<String>,
    /// Every profile the file defines, sorted.
    pub profiles: Vec<String>,
    /// `[error_codes.<provider>]`: code → class, overriding the built-in
    /// table; a profile's own table is merged over the top level's.
    pub error_codes: HashMap<String, HashMap<String, String>>,
    /// `[templates.<id>]`: template parameters declared by hand (for a
    /// provider without template info); a profile's template replaces the
    /// top level's of the same id.
    pub templates: HashMap<String, TemplateSpec>,
}

impl std::ops::Deref for ConfigFile {
    type Target = Settings;
    fn deref(&self) -> &Settings {
        &self.settings
    }
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
    #[error(
        "--profile {name}: no config file (looked for ./{DEFAULT_CONFIG_FILE}; pass --config FILE)"
    )]
    NoFileForProfile { name: String },
}

impl ConfigError {
    /// The refusal with a code, worded by the console without the file's
    /// path (the server's); the English keeps it.
    pub fn reason(&self) -> crate::model::reason::Reason {
        use crate::model::reason::Reason;
        let text = self.to_string();
        match self {
            ConfigError::Read { source, .. } => {
                Reason::new("config.invalid", [("detail", source.to_string())], text)
            }
            ConfigError::Invalid { message, .. } => {
                Reason::new("config.invalid", [("detail", message)], text)
            }
            ConfigError::NoFileForProfile { name } => {
                Reason::new("config.no_file", [("name", name)], text)
            }
        }
    }
}

type CodeTable = HashMap<String, HashMap<String, String>>;
type Templates = HashMap<String, TemplateSpec>;

/// One layer (top level or a profile): its settings, `error_codes` and
/// `templates`.
struct Layer {
    settings: Settings,
    codes: CodeTable,
    templates: Templates,
}

/// Split one layer's table into its settings, `error_codes` and `templates`.
fn layer(mut table: toml::Table, what: &str) -> Result<Layer, String> {
    let codes = match table.remove("error_codes") {
        Some(v) => CodeTable::deserialize(v).map_err(|e| format!("{what}error_codes: {e}"))?,
        None => CodeTable::new(),
    };
    let templates = match table.remove("templates") {
        Some(v) => template_spec::parse_templates(&v).map_err(|e| format!("{what}{e}"))?,
        None => Templates::new(),
    };
    let settings = Settings::deserialize(toml::Value::Table(table))
        .map_err(|e| format!("{what}{}", e.to_string().trim_end()))?;
    check_layer(&settings).map_err(|m| format!("{what}{m}"))?;
    Ok(Layer {
        settings,
        codes,
        templates,
    })
}

fn check_layer(s: &Settings) -> Result<(), String> {
    if s.api_key.is_some() || s.secret_key.is_some() {
        return Err("holds a key inline; config files get committed and shared. \
                    Put the key in an environment variable and name it: api_key_env = \"ZNS_API_KEY\""
            .into());
    }
    Ok(())
}

impl ConfigFile {
    /// Load `explicit`, else `./zns-batch.toml` if it exists, else nothing;
    /// then apply `profile` (which must exist in the file).
    pub fn load(
        explicit: Option<&Path>,
        profile: Option<&str>,
    ) -> Result<(ConfigFile, Option<PathBuf>), ConfigError> {
        let path = match explicit {
            Some(p) => p.to_path_buf(),
            None => {
                let p = PathBuf::from(DEFAULT_CONFIG_FILE);
                if !p.exists() {
                    return match profile {
                        Some(name) => Err(ConfigError::NoFileForProfile {
                            name: name.to_string(),
                        }),
                        None => Ok((ConfigFile::default(), None)),
                    };
                }
                p
            }
        };
        let text = std::fs::read_to_string(&path).map_err(|source| ConfigError::Read {
            path: path.clone(),
            source,
        })?;
        let cfg = Self::parse(&text, profile).map_err(|message| ConfigError::Invalid {
            path: path.clone(),
            message,
        })?;
        Ok((cfg, Some(path)))
    }

    /// Parse a file's text and select `profile`.
    pub fn parse(text: &str, profile: Option<&str>) -> Result<ConfigFile, String> {
        let mut table: toml::Table = toml::from_str(text).map_err(|e| e.to_string())?;
        let profiles = match table.remove("profiles") {
            None => toml::Table::new(),
            Some(toml::Value::Table(t)) => t,
            Some(_) => return Err("`profiles` must be tables: [profiles.<name>]".into()),
        };
        let Layer {
            settings: base,
            codes: mut error_codes,
            mut templates,
        } = layer(table, "")?;
        let mut names = Vec::new();
        let mut chosen = None;
        for (name, value) in profiles {
            let toml::Value::Table(t) = value else {
                return Err(format!(
                    "profiles.{name} must be a table: [profiles.{name}]"
                ));
            };
            // Every profile is checked, not just the chosen one: a typo in
            // another profile should not wait for the night it is used.
            let l = layer(t, &format!("[profiles.{name}] "))?;
            if profile == Some(name.as_str()) {
                chosen = Some(l);
            }
            names.push(name);
        }
        names.sort();
        let settings = match (profile, chosen) {
            (None, _) => base,
            (Some(_), Some(p)) => {
                for (provider, table) in p.codes {
                    error_codes.entry(provider).or_default().extend(table);
                }
                templates.extend(p.templates);
                p.settings.over(&base)
            }
            (Some(name), None) => {
                return Err(if names.is_empty() {
                    format!("has no profile `{name}` (it defines no [profiles.<name>] at all)")
                } else {
                    format!("has no profile `{name}`; profiles: {}", names.join(", "))
                })
            }
        };
        Ok(ConfigFile {
            settings,
            profile: profile.map(str::to_string),
            profiles: names,
            error_codes,
            templates,
        })
    }

    /// The `[templates.<id>]` section for `template_id`, if the file (or
    /// the profile in force) declares one.
    pub fn declared_template(&self, template_id: &str) -> Option<&TemplateSpec> {
        self.templates.get(template_id.trim())
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

    /// The error loading a config file that holds `text`.
    fn load_err(text: &str) -> String {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("c.toml");
        std::fs::write(&p, text).unwrap();
        ConfigFile::load(Some(&p), None).unwrap_err().to_string()
    }

    #[test]
    fn inline_keys_and_unknown_fields_are_refused_with_the_fix() {
        let e = load_err("api_key = \"SECRET-VALUE\"\n");
        assert!(e.contains("api_key_env"), "{e}");
        assert!(!e.contains("SECRET-VALUE"), "{e}");

        let e = load_err("[profiles.x]\nsecret_key = \"SECRET-VALUE\"\n");
        assert!(e.contains("profiles.x") && e.contains("api_key_env"), "{e}");
        assert!(!e.contains("SECRET-VALUE"), "{e}");

        let e = load_err("concurency = 3\n");
        assert!(e.contains("concurency"), "{e}");

        let e = load_err("[profiles.billing]\nconcurency = 3\n");
        assert!(
            e.contains("profiles.billing") && e.contains("concurency"),
            "{e}"
        );

        let e = load_err("outage_after = \"soon\"\n");
        assert!(e.contains("outage_after"), "{e}");

        let e = load_err("send_window = \"7-22\"\n");
        assert!(e.contains("send_window") && e.contains("HH:MM"), "{e}");
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
send_window = "07:00-22:00"
token_fee = 150
message_fee = 300
[error_codes.etelecom]
"-201" = "refresh_token"
"#,
        )
        .unwrap();
        let (cfg, path) = ConfigFile::load(Some(&p), None).unwrap();
        assert_eq!(path.as_deref(), Some(p.as_path()));
        assert_eq!(cfg.concurrency, Some(32));
        assert_eq!(cfg.message_fee, Some(300));
        assert_eq!(cfg.request_timeout, Some(Human(Duration::from_secs(15))));
        assert_eq!(cfg.error_codes["etelecom"]["-201"], "refresh_token");
        assert_eq!(
            cfg.send_window
                .and_then(|w| w.0.window())
                .map(|w| w.to_string()),
            Some("07:00-22:00".to_string())
        );
    }

    #[test]
    fn a_profile_overrides_the_top_level_key_by_key() {
        let text = r#"
concurrency = 16
rate = 50
token_fee = 100
[error_codes.etelecom]
"-201" = "retry"
[profiles.billing]
provider = "etelecom"
oa_id = "111"
rate = 20
send_window = "off"
[profiles.billing.error_codes.etelecom]
"-202" = "fail_row"
[profiles.journey]
oa_id = "222"
"#;
        let top = ConfigFile::parse(text, None).unwrap();
        assert_eq!((top.oa_id.clone(), top.rate), (None, Some(50)));
        assert_eq!(top.profiles, ["billing", "journey"]);

        let b = ConfigFile::parse(text, Some("billing")).unwrap();
        assert_eq!(b.oa_id.as_deref(), Some("111"));
        assert_eq!(b.rate, Some(20), "the profile's value wins");
        assert_eq!(
            b.concurrency,
            Some(16),
            "unset in the profile: the top level's"
        );
        assert_eq!(b.token_fee, Some(100));
        assert_eq!(b.send_window, Some(Human(WindowSetting::Off)));
        assert_eq!(b.error_codes["etelecom"]["-201"], "retry");
        assert_eq!(b.error_codes["etelecom"]["-202"], "fail_row");

        let j = ConfigFile::parse(text, Some("journey")).unwrap();
        assert_eq!(j.oa_id.as_deref(), Some("222"));
        assert!(!j.error_codes["etelecom"].contains_key("-202"));

        let e = ConfigFile::parse(text, Some("bling")).unwrap_err();
        assert!(
            e.contains("no profile `bling`") && e.contains("billing, journey"),
            "{e}"
        );
    }

    #[test]
    fn templates_are_declared_per_layer_and_a_profile_wins_by_id() {
        let text = r#"
[templates.217489]
params = [
  { name = "customer_name", required = true, max_length = 30 },
  { name = "amount",        required = true, max_length = 20 },
  { name = "due_date",      required = false, min_length = 8, max_length = 10 },
]
[templates.5]
params = [{ name = "code", max_length = 6 }]
[profiles.billing.templates.5]
params = [{ name = "code", max_length = 8 }]
[profiles.plain]
rate = 1
"#;
        let top = ConfigFile::parse(text, None).unwrap();
        let t = top.declared_template("217489").unwrap();
        assert_eq!(t.params.len(), 3);
        assert_eq!(t.params[2].min_length, Some(8));
        assert_eq!(
            top.declared_template("5").unwrap().params[0].max_length,
            Some(6)
        );
        assert!(top.declared_template("6").is_none());

        let b = ConfigFile::parse(text, Some("billing")).unwrap();
        assert_eq!(
            b.declared_template("5").unwrap().params[0].max_length,
            Some(8)
        );
        assert!(
            b.declared_template("217489").is_some(),
            "the top level's stays"
        );
        let p = ConfigFile::parse(text, Some("plain")).unwrap();
        assert_eq!(
            p.declared_template("5").unwrap().params[0].max_length,
            Some(6)
        );
    }

    #[test]
    fn a_malformed_templates_section_names_the_key_at_fault() {
        let e = load_err("[templates.217489]\nparams = [{ name = \"a\" }, { name = \"b\", max_length = \"30\" }]\n");
        assert!(
            e.contains("templates.217489.params[1].max_length: expected a number"),
            "{e}"
        );
        // A bad section in a profile that is not selected is still refused.
        let e = load_err("[profiles.x.templates.9]\nparams = [{ name = \"a\", required = 1 }]\n");
        assert!(
            e.contains("[profiles.x] templates.9.params[0].required: expected true or false"),
            "{e}"
        );
    }

    #[test]
    fn the_sample_config_is_valid_in_every_profile() {
        let sample = concat!(env!("CARGO_MANIFEST_DIR"), "/samples/zns-batch.toml");
        let text = std::fs::read_to_string(sample).unwrap();
        let top = ConfigFile::parse(&text, None).unwrap();
        assert!(top.profiles.len() >= 2, "{:?}", top.profiles);
        for name in &top.profiles {
            let cfg = ConfigFile::parse(&text, Some(name)).unwrap();
            assert!(cfg.api_key.is_none());
            assert!(cfg.message_fee.is_some(), "{name}: no message fee");
        }
    }
}
