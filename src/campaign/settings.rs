//! Settings, resolved once: what a face asks for (flags and environment on
//! the command line, a form on the web), the selected config profile, the
//! config file, what the campaign stored when it was created, and the
//! defaults — merged here, in this order of precedence, into one typed
//! [`RunSettings`] that `run`, `resume`, the dry-run plan and `reconcile`
//! all consume. Nothing else merges settings.

use std::num::NonZeroU32;

use std::time::Duration;

use super::callbacks::DeliveryCallbacks;
pub use super::request::{
    check_campaign_name, parse_delimiter, CsvOpts, ProviderOpts, Request, SafetyOpts, SendOpts,
    SettingsError, TemplateCheckOpts,
};
use crate::campaign::config::ConfigFile;
use crate::csv_input::CsvOptions;
use crate::engine::retry::Backoff;
use crate::engine::runner::{Accounts, InDoubtPolicy, RunOptions};
use crate::model::clock;
use crate::model::template_spec::TemplateSpec;
use crate::model::window::WindowSetting;
use crate::provider::{ErrorTable, ProviderKind, Secret};
use crate::store::Campaign;

pub const DEFAULT_TOKEN_TYPE: &str = "token_logistics_7";
/// OA id used with the sandbox when none is given.
pub const SANDBOX_OA_ID: &str = "1000000000000000001";
/// The key a sandbox accepts when none is configured.
pub const SANDBOX_KEY: &str = "sandbox-key";
const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

use super::request::{bad, coded};

// ----- the resolved value ------------------------------------------------------

/// Where requests go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Endpoint {
    /// A sandbox started in this process for this run (no network, no key).
    Embedded,
    Url(String),
}

/// The provider side of the settings.
#[derive(Debug, Clone)]
pub struct ProviderChoice {
    pub kind: ProviderKind,
    pub endpoint: Endpoint,
    pub api_key: Option<Secret>,
    pub secret_key: Option<Secret>,
    pub oa_id: String,
    pub request_timeout: Duration,
    pub codes: ErrorTable,
    /// Where delivery is reported for this run (never stored).
    pub callbacks: DeliveryCallbacks,
}

impl ProviderChoice {
    /// The base URL stored with a campaign: a real endpoint, or a sandbox
    /// the user named; never the embedded sandbox's port, which lives for
    /// one run.
    pub fn stored_base_url(&self) -> Option<&str> {
        match &self.endpoint {
            Endpoint::Embedded => None,
            Endpoint::Url(u) => Some(u),
        }
    }

    /// Where tokens and quota units of this provider are booked. Tokens are
    /// reusable only where they were bought (an embedded sandbox forgets
    /// them with its run: `run_id` keeps them apart); the OA's quota day is
    /// the same for every run, whatever port a sandbox got.
    pub fn accounts(&self, run_id: &str) -> Accounts {
        let protocol = self.kind.protocol();
        match &self.endpoint {
            Endpoint::Embedded => Accounts {
                tokens: format!("{protocol}|embedded|{run_id}"),
                quota: format!("{protocol}|embedded"),
            },
            Endpoint::Url(u) => {
                let account = format!("{protocol}|{}", u.trim_end_matches('/'));
                Accounts {
                    tokens: account.clone(),
                    quota: account,
                }
            }
        }
    }

    /// The account whose stored tokens a dry run may count as reusable:
    /// none for an embedded sandbox (a new one every run).
    pub fn lasting_token_account(&self) -> Option<String> {
        match self.endpoint {
            Endpoint::Embedded => None,
            Endpoint::Url(_) => Some(self.accounts("").tokens),
        }
    }

    pub fn uses_tokens(&self) -> bool {
        self.kind.capabilities().tokens
    }

    /// Whether a run takes up rows left in doubt (see
    /// [`InDoubtPolicy::takes_up_doubtful_rows`]).
    pub fn takes_up_doubtful_rows(&self, policy: InDoubtPolicy) -> bool {
        policy.takes_up_doubtful_rows(self.kind.capabilities().lookup_by_tracking_id)
    }
}

/// A run's settings, resolved once.
#[derive(Debug, Clone)]
pub struct RunSettings {
    pub campaign: String,
    pub template_id: String,
    pub token_type: String,
    pub provider: ProviderChoice,
    pub run: RunOptions,
    /// A send window given on this request (flag, env or config) — stored
    /// with the campaign so later resumes keep it. `None`: the stored one
    /// (already in `run.send_window`) applies.
    pub window_given: Option<WindowSetting>,
    /// Deadline given on this request, ms (stored with the campaign).
    pub not_after_ms: Option<i64>,
    /// Frequency cap given on this request (flag; for a new campaign the
    /// config's default too), ms; 0 turns it off.
    pub min_interval_ms: Option<i64>,
    pub csv: CsvOptions,
    /// Reject later rows whose phone repeats.
    pub dedup_phones: bool,
    pub token_fee: Option<u64>,
    pub message_fee: Option<u64>,
    pub config_file: Option<String>,
    pub profile: Option<String>,
    /// The template's parameters the pre-flight checks rows against, where
    /// they are known (declared in the config file, fetched or cached).
    pub template: Option<TemplateSpec>,
    /// Why there is no template to check against (`--skip-template-check`,
    /// no template info at this provider): the plan and summary say it.
    pub template_note: Option<String>,
}

/// The config file in force and where it came from.
pub struct ConfigSource<'a> {
    pub file: &'a ConfigFile,
    pub path: Option<&'a std::path::Path>,
}

/// Resolve a request against the config and, for an existing campaign,
/// what it stored. A stored campaign's template, OA and provider cannot
/// change: asking for another is an error naming the fix.
pub fn resolve(
    req: &Request,
    cfg: ConfigSource<'_>,
    stored: Option<&Campaign>,
) -> Result<RunSettings, SettingsError> {
    check_campaign_name(&req.campaign)?;
    let c = cfg.file;
    let kept_template = kept(
        stored,
        &req.template_id,
        |s| &s.template_id,
        template_changed,
    )?;
    let template_id = match kept_template {
        Some(t) => t,
        None => c.template_id.clone().ok_or_else(|| {
            coded(
                "settings.template_required",
                super::request::NO_PARAMS,
                "--template-id is required (or template_id in the config file)",
            )
        })?,
    };
    let token_type = stored
        .map(|s| s.token_type.clone())
        .or_else(|| req.token_type.clone())
        .or_else(|| c.token_type.clone())
        .unwrap_or_else(|| DEFAULT_TOKEN_TYPE.to_string());
    let provider = resolve_provider(&req.provider, c, stored)?;
    if stored.is_none() {
        provider
            .kind
            .check_template_id(&template_id)
            .map_err(SettingsError)?;
    }
    let run = resolve_run_options(&req.send, c, stored)?;
    let window_given = req.send.send_window.or(c.send_window.map(|w| w.0));
    let (not_after_ms, min_interval_ms) = resolve_safety(&req.safety)?;
    let min_interval_ms = min_interval_ms.or_else(|| {
        // The config's cap is a default for new campaigns only.
        stored.is_none().then_some(()).and(
            c.min_interval_per_phone
                .map(|d| d.0.as_millis().min(i64::MAX as u128) as i64),
        )
    });
    let (csv, dedup_phones) = resolve_csv(&req.csv_opts, c);
    let (template, template_note) = resolve_template(req, c, &template_id, &provider);
    Ok(RunSettings {
        campaign: req.campaign.clone(),
        token_type,
        provider,
        run,
        window_given,
        not_after_ms,
        min_interval_ms,
        csv,
        dedup_phones,
        token_fee: c.token_fee,
        message_fee: c.message_fee,
        config_file: cfg.path.map(|p| p.display().to_string()),
        profile: c.profile.clone(),
        template,
        template_note,
        template_id,
    })
}

/// A stored campaign's value wins; a different one given again is refused
/// (`changed` says why). `None`: no campaign stored and nothing given.
fn kept(
    stored: Option<&Campaign>,
    given: &Option<String>,
    field: fn(&Campaign) -> &String,
    changed: impl FnOnce(&Campaign) -> SettingsError,
) -> Result<Option<String>, SettingsError> {
    match (stored, given) {
        (Some(s), Some(g)) if g != field(s) => Err(changed(s)),
        (Some(s), _) => Ok(Some(field(s).clone())),
        (None, g) => Ok(g.clone()),
    }
}

fn template_changed(s: &Campaign) -> SettingsError {
    coded(
        "campaign.template_changed",
        [("name", &s.name), ("template_id", &s.template_id)],
        format!(
            "campaign `{}` exists with template {}; a campaign's template cannot change. Use a new --campaign name",
            s.name, s.template_id
        ),
    )
}

fn oa_changed(s: &Campaign, given: &Option<String>) -> SettingsError {
    coded(
        "campaign.oa_changed",
        [("name", &s.name), ("oa_id", &s.oa_id)],
        format!(
            "campaign `{}` sends for OA {}; --oa-id {} cannot change that. Use a new --campaign name",
            s.name,
            s.oa_id,
            given.as_deref().unwrap_or_default()
        ),
    )
}

/// The template to check rows against: none with `--skip-template-check`,
/// else declared in the config file > fetched or cached (in the request).
/// Without one, the note says why.
fn resolve_template(
    req: &Request,
    c: &ConfigFile,
    template_id: &str,
    provider: &ProviderChoice,
) -> (Option<TemplateSpec>, Option<String>) {
    if req.template_check.skip_template_check {
        return (
            None,
            Some(
                "skipped (--skip-template-check): rows are not checked against the template".into(),
            ),
        );
    }
    let found = c
        .declared_template(template_id)
        .cloned()
        .or_else(|| req.template.clone());
    if found.is_some() {
        return (found, None);
    }
    let kind = provider.kind;
    let why = if !kind.capabilities().template_info {
        format!("{kind} offers no template info")
    } else if provider.endpoint == Endpoint::Embedded {
        "the embedded sandbox keeps no template info".to_string()
    } else {
        "the template info was not fetched".to_string()
    };
    (
        None,
        Some(format!(
            "not checked: {why} and the config file declares no [templates.{template_id}] section"
        )),
    )
}

fn resolve_csv(o: &CsvOpts, c: &ConfigFile) -> (CsvOptions, bool) {
    let mut opts = CsvOptions::default();
    if let Some(col) = o.phone_column.clone().or_else(|| c.phone_column.clone()) {
        opts.phone_column = col;
    }
    if let Some(d) = o.delimiter {
        opts.delimiter = d;
    }
    opts.optional_columns = if o.optional_columns.is_empty() {
        c.optional_columns.clone().unwrap_or_default()
    } else {
        o.optional_columns.clone()
    };
    opts.sheet = o.sheet.clone().filter(|s| !s.trim().is_empty());
    let allow_dups = o.allow_duplicate_phones || c.allow_duplicate_phones.unwrap_or(false);
    (opts, !allow_dups)
}

fn resolve_run_options(
    o: &SendOpts,
    c: &ConfigFile,
    stored: Option<&Campaign>,
) -> Result<RunOptions, SettingsError> {
    let mut r = RunOptions::default();
    if let Some(n) = o.concurrency.or(c.concurrency) {
        r.concurrency = n.max(1) as usize;
    }
    r.rate = o.rate.or(c.rate).and_then(NonZeroU32::new);
    r.daily_quota = o.daily_quota.or(c.daily_quota);
    let stored_policy = stored.map(|s| {
        InDoubtPolicy::parse(&s.in_doubt_policy).ok_or_else(|| {
            bad(format!(
                "campaign `{}` stored an unknown in-doubt policy `{}`; pass --in-doubt resend or hold",
                s.name, s.in_doubt_policy
            ))
        })
    });
    r.in_doubt = match (o.in_doubt.or(c.in_doubt), stored_policy) {
        (Some(p), _) => p,
        (None, Some(Ok(p))) => p,
        (None, Some(Err(e))) => return Err(e),
        (None, None) => InDoubtPolicy::Resend,
    };
    if let Some(n) = o.max_attempts.or(c.max_attempts) {
        r.max_attempts = n.max(1);
    }
    if let Some(d) = o.outage_after.or(c.outage_after.map(|d| d.0)) {
        r.outage_after = d;
    }
    if let Some(d) = o.backoff.or(c.backoff.map(|d| d.0)) {
        r.backoff = Backoff::starting_at(d);
    }
    r.send_window = match o.send_window.or(c.send_window.map(|w| w.0)) {
        Some(given) => given.window(),
        None => match stored.and_then(|s| s.send_window.as_deref()) {
            Some(text) => Some(text.parse().map_err(|e| {
                bad(format!(
                    "the campaign's stored send window `{text}` is unreadable ({e}); pass --send-window"
                ))
            })?),
            None => None,
        },
    };
    r.wait_for_window = o.wait;
    Ok(r)
}

/// Deadline and frequency cap given on this request, as stored values
/// (milliseconds). A deadline already past is a mistake, not a plan.
fn resolve_safety(o: &SafetyOpts) -> Result<(Option<i64>, Option<i64>), SettingsError> {
    let now = clock::now();
    let not_after = match (o.not_after, o.valid_for) {
        (Some(t), _) => Some(t),
        (None, Some(d)) => Some(now + d),
        (None, None) => None,
    };
    if let Some(t) = not_after.filter(|t| *t <= now) {
        let (at, now) = (clock::fmt_local(t), clock::fmt_local(now));
        return Err(coded(
            "settings.deadline_past",
            [("at", &at), ("now", &now)],
            format!(
                "--not-after {at} is already past (now {now}); give a later time or leave it out"
            ),
        ));
    }
    let interval = o
        .min_interval_per_phone
        .map(|d| d.as_millis().min(i64::MAX as u128) as i64);
    Ok((not_after.map(clock::to_ms), interval))
}

/// Provider kind, endpoint, key and OA: flag/env > stored > profile/file >
/// default. A campaign keeps its provider and OA for life.
fn resolve_provider(
    o: &ProviderOpts,
    c: &ConfigFile,
    stored: Option<&Campaign>,
) -> Result<ProviderChoice, SettingsError> {
    let api_key = o
        .api_key
        .clone()
        .or_else(|| c.api_key_from_env())
        .filter(|k| !k.is_empty());
    let kind = match (o.provider, stored, c.provider) {
        (Some(k), _, _) => k,
        (None, Some(s), _) => ProviderKind::parse(&s.provider).ok_or_else(|| {
            bad(format!(
                "campaign `{}` names an unknown provider `{}`",
                s.name, s.provider
            ))
        })?,
        (None, None, Some(p)) => p,
        (None, None, None) if api_key.is_some() => ProviderKind::Etelecom,
        _ => ProviderKind::Sandbox,
    };
    if let Some(s) = stored {
        if s.provider != kind.as_str() {
            return Err(coded(
                "campaign.provider_changed",
                [("name", s.name.clone()), ("provider", s.provider.clone()), ("new", kind.to_string())],
                format!(
                    "campaign `{}` was started with provider {}; it cannot switch to {} (tokens and tracking ids belong to the first)",
                    s.name, s.provider, kind
                ),
            ));
        }
    }
    let kept_oa = kept(stored, &o.oa_id, |s| &s.oa_id, |s| oa_changed(s, &o.oa_id))?;
    let oa_id = match kept_oa {
        Some(oa) => oa,
        None => c
            .oa_id
            .clone()
            .or_else(|| {
                (kind == ProviderKind::Sandbox || o.embedded_sandbox)
                    .then(|| SANDBOX_OA_ID.to_string())
            })
            .ok_or_else(|| {
                coded(
                    "settings.oa_id_missing",
                    [("provider", kind.to_string())],
                    format!("--provider {kind} needs --oa-id (or ZNS_OA_ID, or oa_id in the config file)"),
                )
            })?,
    };
    let base_url = o
        .base_url
        .clone()
        .or_else(|| stored.and_then(|s| s.base_url.clone()))
        .or_else(|| c.base_url.clone())
        .or_else(|| kind.default_base_url().map(str::to_string));
    let embedded = o.embedded_sandbox || (kind == ProviderKind::Sandbox && base_url.is_none());
    let endpoint = if embedded {
        Endpoint::Embedded
    } else {
        let url = base_url.ok_or_else(|| {
            coded(
                "settings.base_url_missing",
                [("provider", kind.to_string())],
                format!("--provider {kind} needs --base-url"),
            )
        })?;
        match reqwest::Url::parse(&url) {
            Ok(u) if u.scheme() == "http" || u.scheme() == "https" => {}
            _ => {
                return Err(coded(
                    "settings.base_url_bad",
                    [("url", &url)],
                    format!("--base-url `{url}` is not an http(s) URL"),
                ))
            }
        }
        Endpoint::Url(url)
    };
    let codes = ErrorTable::with_overrides(&c.error_codes).map_err(|e| {
        coded(
            "config.invalid",
            [("detail", e.to_string())],
            format!("config: {e}"),
        )
    })?;
    Ok(ProviderChoice {
        kind,
        endpoint,
        api_key: api_key.map(Secret::new),
        secret_key: o
            .secret_key
            .clone()
            .or_else(|| c.secret_key_from_env())
            .filter(|k| !k.is_empty())
            .map(Secret::new),
        oa_id,
        request_timeout: o
            .request_timeout
            .or(c.request_timeout.map(|d| d.0))
            .unwrap_or(DEFAULT_REQUEST_TIMEOUT),
        codes,
        callbacks: super::callbacks::resolve(o.callback_url.as_deref(), kind, c)?,
    })
}

impl RunSettings {
    /// The API key a real provider needs, or the error that says where it
    /// comes from.
    pub fn require_key(&self) -> Result<Secret, SettingsError> {
        let p = &self.provider;
        match (&p.api_key, p.kind, &p.endpoint) {
            (Some(k), _, _) => Ok(k.clone()),
            (None, _, Endpoint::Embedded) | (None, ProviderKind::Sandbox, _) => {
                Ok(Secret::new(SANDBOX_KEY))
            }
            (None, kind, _) => Err(coded(
                "settings.api_key_missing",
                [("provider", kind.to_string())],
                format!(
                    "--provider {kind} needs an API key: pass --api-key, set ZNS_API_KEY, or name a variable with api_key_env in the config file"
                ),
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(text: &str) -> ConfigFile {
        ConfigFile::parse(text, None).unwrap()
    }

    fn request(name: &str) -> Request {
        Request {
            campaign: name.into(),
            template_id: Some("246810".into()),
            ..Request::default()
        }
    }

    #[test]
    fn flags_win_over_the_file_and_the_file_over_defaults() {
        let file = cfg("concurrency = 32\nrate = 50\nbackoff = \"1s\"\nin_doubt = \"hold\"\n");
        let mut req = request("c");
        req.send.rate = Some(5);
        let s = resolve(
            &req,
            ConfigSource {
                file: &file,
                path: None,
            },
            None,
        )
        .unwrap();
        assert_eq!(s.run.concurrency, 32);
        assert_eq!(s.run.rate.map(NonZeroU32::get), Some(5));
        assert_eq!(s.run.backoff.base, Duration::from_secs(1));
        assert_eq!(s.run.in_doubt, InDoubtPolicy::Hold);
        assert_eq!(s.token_type, DEFAULT_TOKEN_TYPE);
        assert_eq!(s.provider.kind, ProviderKind::Sandbox);
        assert_eq!(s.provider.endpoint, Endpoint::Embedded);
        assert_eq!(s.provider.oa_id, SANDBOX_OA_ID);
    }

    #[test]
    fn the_quota_account_of_an_embedded_sandbox_does_not_change_between_runs() {
        let file = ConfigFile::default();
        let s = resolve(
            &request("c"),
            ConfigSource {
                file: &file,
                path: None,
            },
            None,
        )
        .unwrap();
        let (a, b) = (s.provider.accounts("run-1"), s.provider.accounts("run-2"));
        assert_eq!(a.quota, b.quota);
        assert_ne!(a.tokens, b.tokens, "its tokens die with its run");
        assert_eq!(s.provider.lasting_token_account(), None);
    }

    #[test]
    fn bad_requests_name_the_flag_and_the_fix() {
        let file = ConfigFile::default();
        let src = || ConfigSource {
            file: &file,
            path: None,
        };
        let e = resolve(&request(""), src(), None).unwrap_err().text();
        assert!(e.contains("--campaign"), "{e}");
        let e = resolve(&request("a/b"), src(), None).unwrap_err().text();
        assert!(e.contains("--campaign"), "{e}");
        let mut req = request("c");
        req.template_id = None;
        let e = resolve(&req, src(), None).unwrap_err().text();
        assert!(e.contains("--template-id"), "{e}");
        let mut req = request("c");
        req.provider.provider = Some(ProviderKind::Zalo);
        let e = resolve(&req, src(), None).unwrap_err().text();
        assert!(e.contains("--oa-id"), "{e}");
        let bad_codes = cfg("[error_codes.etelecom]\n\"-1\" = \"retyr\"\n");
        let e = resolve(
            &request("c"),
            ConfigSource {
                file: &bad_codes,
                path: None,
            },
            None,
        )
        .unwrap_err()
        .text();
        assert!(e.contains("retyr"), "{e}");
    }

    #[test]
    fn the_template_comes_from_the_config_before_a_fetched_one_and_never_when_skipped() {
        let file = cfg(
            "[templates.246810]\nparams = [ { name = \"a\", required = true, max_length = 5 } ]\n",
        );
        let src = || ConfigSource {
            file: &file,
            path: None,
        };
        let mut fetched = file.declared_template("246810").cloned().unwrap();
        fetched.params[0].max_length = Some(99);
        fetched.source = crate::model::template_spec::TemplateSource::Fetched { at_ms: 1 };
        let mut req = request("c");
        req.template = Some(fetched.clone());
        let s = resolve(&req, src(), None).unwrap();
        assert_eq!(
            s.template.unwrap().params[0].max_length,
            Some(5),
            "declared wins"
        );
        req.template_check.skip_template_check = true;
        let s = resolve(&req, src(), None).unwrap();
        assert!(s.template.is_none());
        assert!(s.template_note.unwrap().contains("--skip-template-check"));
        let bare = ConfigFile::default();
        let mut req = request("c");
        req.template = Some(fetched);
        let s = resolve(
            &req,
            ConfigSource {
                file: &bare,
                path: None,
            },
            None,
        )
        .unwrap();
        assert_eq!(
            s.template.unwrap().params[0].max_length,
            Some(99),
            "fetched"
        );
        let s = resolve(
            &request("c"),
            ConfigSource {
                file: &bare,
                path: None,
            },
            None,
        )
        .unwrap();
        assert!(s.template_note.unwrap().contains("not checked"));
    }

    #[test]
    fn delimiters_as_people_type_them() {
        assert_eq!(parse_delimiter("\\t"), Ok(b'\t'));
        assert_eq!(parse_delimiter("tab"), Ok(b'\t'));
        assert_eq!(parse_delimiter(";"), Ok(b';'));
        assert!(parse_delimiter("ab").is_err());
        assert!(parse_delimiter("é").is_err());
    }
}
