//! The standalone `zns-batch sandbox` command: flags (checked into a
//! [`SandboxConfig`]), banner, summary.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::Duration;

use crate::provider::ProviderKind;
use crate::sandbox::{
    check_callback_url, CallbackSettings, Faults, Sandbox, SandboxConfig, Stats, TemplateSpec,
    DEFAULT_API_KEY, DEFAULT_SECRET_KEY, DEFAULT_ZALO_APP_ID, DEFAULT_ZALO_OA_SECRET,
};

use super::options::choice;

/// Where the standalone sandbox reads the Zalo OA secret its callbacks are
/// signed with (an environment variable, so it never shows in `ps`).
pub const OA_SECRET_ENV: &str = "ZNS_ZALO_OA_SECRET";

#[derive(Clone, clap::Args)]
pub struct SandboxArgs {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:8765")]
    pub listen: SocketAddr,
    /// Protocol to speak (sandbox = etelecom).
    #[arg(long, default_value = "etelecom", value_parser = choice::<ProviderKind>())]
    pub protocol: ProviderKind,
    /// Key the sandbox expects (eTelecom bearer key, Zalo access_token, eSMS ApiKey).
    #[arg(
        long,
        env = "ZNS_SANDBOX_API_KEY",
        default_value = DEFAULT_API_KEY,
        hide_env_values = true
    )]
    pub api_key: String,
    /// eSMS SecretKey the sandbox expects.
    #[arg(long, default_value = DEFAULT_SECRET_KEY, hide_env_values = true)]
    pub secret_key: String,
    /// New messages per OA per day; 0 = unlimited.
    #[arg(long, default_value_t = 0)]
    pub daily_quota: u64,
    /// Latency added to every request, in ms.
    #[arg(long, default_value_t = 0)]
    pub latency_ms: u64,
    /// Probability of a 500/502/503 (request not processed).
    #[arg(long, default_value_t = 0.0)]
    pub fail_5xx: f64,
    /// Probability of a 429 (request not processed).
    #[arg(long, default_value_t = 0.0)]
    pub fail_429: f64,
    /// Retry-After seconds on 429s.
    #[arg(long)]
    pub retry_after: Option<u64>,
    /// Probability that an accepted send's reply is broken off.
    #[arg(long, default_value_t = 0.0)]
    pub drop_reply: f64,
    /// Probability that a request hangs for --hang-ms, then gets a 504.
    #[arg(long, default_value_t = 0.0)]
    pub timeout_rate: f64,
    #[arg(long, default_value_t = 30000)]
    pub hang_ms: u64,
    /// Probability that an accepted send gets a truncated 200 body.
    #[arg(long, default_value_t = 0.0)]
    pub malformed: f64,
    /// Probability that an accepted send is answered only after --hang-ms.
    #[arg(long, default_value_t = 0.0)]
    pub slow_reply: f64,
    /// Phones ending with this are "not on Zalo" (repeatable).
    #[arg(long = "unknown-phone-suffix")]
    pub unknown_phone_suffixes: Vec<String>,
    /// Zalo OAuth (/v4/oa/…): how long access tokens live, e.g. 25h or 3s.
    #[arg(long, value_parser = crate::model::clock::parse_duration, default_value = "25h", value_name = "DURATION")]
    pub access_token_ttl: Duration,
    /// Zalo OAuth: hold each refresh's reply back this long (the rotation is
    /// committed only if the client is still there afterwards).
    #[arg(long, value_parser = crate::model::clock::parse_duration, value_name = "DURATION")]
    pub refresh_delay: Option<Duration>,
    /// Zalo OAuth: rotate the pair on refresh, then break the reply off.
    #[arg(long)]
    pub lose_refresh_reply: bool,
    /// Turn off dedup by tracking_id / RequestId.
    #[arg(long)]
    pub no_dedup: bool,
    /// Declare a template: its parameter limits are served by template info
    /// and enforced on send (repeatable). Syntax:
    /// ID[@STATUS]=name[?][:MIN-MAX][:TYPE],… — `?` marks an optional
    /// parameter, lengths count characters after Unicode NFC (default 0-400),
    /// TYPE is string (default), number or date, STATUS is ENABLE (default),
    /// PENDING_REVIEW, DISABLE or REJECT.
    /// Example: --template 217489=customer_name:1-30,amount:1-20:number,note?:0-50
    #[arg(long = "template", value_name = "ID=PARAMS")]
    pub templates: Vec<String>,
    /// Send delivery callbacks here (Zalo: signed user_received_message POST;
    /// eSMS: GET with the status in the query, unless the send gave its own
    /// CallbackUrl; eTelecom: zl_oa_message POST). Zalo callbacks are signed
    /// with the OA secret from the environment variable ZNS_ZALO_OA_SECRET
    /// (default `sandbox-oa-secret`).
    #[arg(long, value_name = "URL")]
    pub callback_url: Option<String>,
    /// The app_id Zalo callbacks carry (and sign with).
    #[arg(long, default_value = DEFAULT_ZALO_APP_ID)]
    pub zalo_app_id: String,
    /// Delay from acceptance to the delivery callback, in ms.
    #[arg(long, default_value_t = 1000)]
    pub callback_delay_ms: u64,
    /// Tries per callback (non-2xx or connection error) before giving up.
    #[arg(long, default_value_t = 5)]
    pub callback_attempts: u32,
    /// Wait before the first callback retry, in ms; doubled for each next one.
    #[arg(long, default_value_t = 1000)]
    pub callback_backoff_ms: u64,
    /// Callbacks in flight at once.
    #[arg(long, default_value_t = 8)]
    pub callback_concurrency: usize,
    /// Fault: send every callback twice.
    #[arg(long)]
    pub callback_duplicate: bool,
    /// Fault: send callbacks in random order within groups of N.
    #[arg(long, value_name = "N", default_value_t = 0)]
    pub callback_out_of_order: usize,
    /// Fault: sign Zalo callbacks with the wrong secret.
    #[arg(long)]
    pub callback_bad_signature: bool,
    /// Fault: callbacks name a msg_id the sandbox never issued.
    #[arg(long)]
    pub callback_unknown_msg_id: bool,
    /// Fault: hold callbacks until none has been queued for the delay, then
    /// release them all at once (still --callback-concurrency in flight).
    #[arg(long)]
    pub callback_burst: bool,
    /// RNG seed for faults and tokens.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
}

// Hand-written so the keys never reach a log line.
impl std::fmt::Debug for SandboxArgs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SandboxArgs")
            .field("listen", &self.listen)
            .field("protocol", &self.protocol)
            .field("api_key", &"***")
            .field("secret_key", &"***")
            .field("daily_quota", &self.daily_quota)
            .field("latency_ms", &self.latency_ms)
            .field("fail_5xx", &self.fail_5xx)
            .field("fail_429", &self.fail_429)
            .field("retry_after", &self.retry_after)
            .field("drop_reply", &self.drop_reply)
            .field("timeout_rate", &self.timeout_rate)
            .field("hang_ms", &self.hang_ms)
            .field("malformed", &self.malformed)
            .field("slow_reply", &self.slow_reply)
            .field("unknown_phone_suffixes", &self.unknown_phone_suffixes)
            .field("no_dedup", &self.no_dedup)
            .field("seed", &self.seed)
            .field("templates", &self.templates)
            // The URL may carry a webhook token in its path.
            .field("callback_url", &self.callback_url.as_ref().map(|_| "***"))
            .field("zalo_app_id", &self.zalo_app_id)
            .field("callback_delay_ms", &self.callback_delay_ms)
            .field("callback_attempts", &self.callback_attempts)
            .field("callback_backoff_ms", &self.callback_backoff_ms)
            .field("callback_concurrency", &self.callback_concurrency)
            .field("callback_duplicate", &self.callback_duplicate)
            .field("callback_out_of_order", &self.callback_out_of_order)
            .field("callback_bad_signature", &self.callback_bad_signature)
            .field("callback_unknown_msg_id", &self.callback_unknown_msg_id)
            .field("callback_burst", &self.callback_burst)
            .finish()
    }
}

impl SandboxArgs {
    pub fn to_config(&self) -> Result<SandboxConfig, String> {
        let faults = Faults {
            http_5xx: self.fail_5xx,
            http_429: self.fail_429,
            retry_after_secs: self.retry_after,
            drop_reply: self.drop_reply,
            timeout: self.timeout_rate,
            hang: Duration::from_millis(self.hang_ms),
            malformed: self.malformed,
            slow_reply: self.slow_reply,
            apply_to_tokens: true,
        };
        if let Some((name, p)) = faults.invalid_probability() {
            let flag = match name {
                "http_5xx" => "--fail-5xx",
                "http_429" => "--fail-429",
                "drop_reply" => "--drop-reply",
                "timeout" => "--timeout-rate",
                "slow_reply" => "--slow-reply",
                _ => "--malformed",
            };
            return Err(format!("{flag} {p}: a probability must be between 0 and 1"));
        }
        if self.api_key.is_empty() {
            return Err("--api-key must not be empty".to_string());
        }
        if let Some(url) = &self.callback_url {
            check_callback_url(url).map_err(|e| format!("--callback-url: {e}"))?;
        }
        if self.callback_attempts == 0 || self.callback_concurrency == 0 {
            return Err(
                "--callback-attempts and --callback-concurrency must be at least 1".to_string(),
            );
        }
        let mut templates = HashMap::new();
        for t in &self.templates {
            let (id, spec) = TemplateSpec::parse_flag(t)?;
            if templates.insert(id.clone(), spec).is_some() {
                return Err(format!("--template: template {id} is declared twice"));
            }
        }
        Ok(SandboxConfig {
            protocol: self.protocol.protocol(),
            api_key: self.api_key.clone(),
            secret_key: self.secret_key.clone(),
            daily_quota: self.daily_quota,
            latency: Duration::from_millis(self.latency_ms),
            faults,
            token_ttl: None,
            unknown_phone_suffixes: self.unknown_phone_suffixes.clone(),
            dedup: !self.no_dedup,
            seed: self.seed,
            templates,
            callback_url: self.callback_url.clone(),
            callbacks: CallbackSettings {
                delay: Duration::from_millis(self.callback_delay_ms),
                attempts: self.callback_attempts,
                backoff: Duration::from_millis(self.callback_backoff_ms),
                concurrency: self.callback_concurrency,
                duplicate: self.callback_duplicate,
                out_of_order: self.callback_out_of_order,
                bad_signature: self.callback_bad_signature,
                unknown_msg_id: self.callback_unknown_msg_id,
                burst: self.callback_burst,
                ..CallbackSettings::default()
            },
            zalo_app_id: self.zalo_app_id.clone(),
            zalo_oa_secret: std::env::var(OA_SECRET_ENV)
                .ok()
                .filter(|v| !v.is_empty())
                .unwrap_or_else(|| DEFAULT_ZALO_OA_SECRET.to_string()),
            // The OAuth endpoint checks the same variable `zalo connect` sends.
            zalo_app_secret: std::env::var("ZNS_ZALO_APP_SECRET")
                .ok()
                .filter(|v| !v.is_empty())
                .unwrap_or_else(|| crate::sandbox::DEFAULT_ZALO_APP_SECRET.to_string()),
            access_token_ttl: self.access_token_ttl,
            oauth_faults: crate::sandbox::OAuthFaults {
                refresh_delay: self.refresh_delay.unwrap_or_default(),
                lose_refresh_reply: self.lose_refresh_reply,
            },
        })
    }
}

/// Run a sandbox until Ctrl-C or SIGTERM, then print a stats summary.
pub async fn serve_until_ctrl_c(args: SandboxArgs) -> anyhow::Result<()> {
    use std::io::Write;

    let config = args.to_config().map_err(anyhow::Error::msg)?;
    let protocol = config.protocol;
    let sandbox = Sandbox::start(args.listen, config)
        .await
        .map_err(|e| anyhow::anyhow!("cannot listen on {}: {e}", args.listen))?;
    {
        let mut out = std::io::stdout().lock();
        writeln!(out, "listening on http://{}", sandbox.addr())?;
        writeln!(out, "base URL: {}", sandbox.base_url())?;
        out.flush()?;
    }
    eprintln!("{}", banner(&args, protocol, sandbox.addr()));
    wait_for_stop_signal().await;
    let stats = sandbox.stats_summary();
    sandbox.stop().await;
    println!("{}", summary_line(&stats));
    Ok(())
}

/// What the sandbox expects, for the operator. A default key is named (it is
/// public: the flag's default); a key the operator chose is never printed.
pub(crate) fn banner(args: &SandboxArgs, protocol: ProviderKind, addr: SocketAddr) -> String {
    let key = if args.api_key == DEFAULT_API_KEY {
        format!("API key `{DEFAULT_API_KEY}` (the default; change with --api-key)")
    } else {
        "the key given by --api-key".to_string()
    };
    let secret = match protocol {
        ProviderKind::Esms if args.secret_key == DEFAULT_SECRET_KEY => {
            format!(" and SecretKey `{DEFAULT_SECRET_KEY}` (the default; change with --secret-key)")
        }
        ProviderKind::Esms => " and the SecretKey given by --secret-key".to_string(),
        _ => String::new(),
    };
    // Only where callbacks go, not the path: it may hold a webhook token.
    let shown = args
        .callback_url
        .as_deref()
        .map(|u| match reqwest::Url::parse(u) {
            Ok(p) => format!("{}://{}/…", p.scheme(), p.host_str().unwrap_or("?")),
            Err(_) => "(the given URL)".to_string(),
        });
    let callbacks = match (&shown, protocol) {
        (Some(url), ProviderKind::Zalo) => format!(
            "; delivery callbacks to {url}, signed with the OA secret from {OA_SECRET_ENV}{}",
            if std::env::var_os(OA_SECRET_ENV).is_some() {
                String::new()
            } else {
                format!(" (unset: the default `{}`)", DEFAULT_ZALO_OA_SECRET)
            }
        ),
        (Some(url), _) => format!("; delivery callbacks to {url}"),
        (None, _) => String::new(),
    };
    format!(
        "sandbox speaking {protocol}; expects {key}{secret}{callbacks}; \
         stats at http://{addr}/__sandbox/stats?detail=false; Ctrl-C to stop"
    )
}

async fn wait_for_stop_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        if let Ok(mut term) = signal(SignalKind::terminate()) {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
            return;
        }
    }
    let _ = tokio::signal::ctrl_c().await;
}

fn summary_line(s: &Stats) -> String {
    let faults: Vec<String> = s
        .faults_injected
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    format!(
        "sandbox stats: day {} | tokens {} (checks {}) | send requests {} | accepted {} | \
         duplicates absorbed {} | quota rejections {} (used today {}) | template refusals {} | \
         auth failures {} | get_message {} | callbacks sent {} acknowledged {} given up {} | \
         faults [{}]",
        s.day,
        s.tokens_created,
        s.token_checks,
        s.send_requests,
        s.accepted,
        s.duplicates_absorbed,
        s.quota_rejections,
        s.quota_used_today,
        s.param_rejections,
        s.auth_failures,
        s.get_message_calls,
        s.callbacks_sent,
        s.callbacks_acknowledged,
        s.callbacks_given_up,
        faults.join(" ")
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The `zns-batch sandbox` flags parsed from `argv` (after a program name).
    fn sandbox_args(argv: &[&str]) -> SandboxArgs {
        use clap::Parser;

        #[derive(Parser)]
        struct Cli {
            #[command(flatten)]
            args: SandboxArgs,
        }
        let argv = std::iter::once("x").chain(argv.iter().copied());
        Cli::try_parse_from(argv).expect("parses").args
    }

    #[test]
    fn args_validate_probabilities_and_hide_keys() {
        let args = sandbox_args(&[
            "--fail-5xx",
            "0.2",
            "--unknown-phone-suffix",
            "99",
            "--api-key",
            "topsecret",
            "--callback-url",
            "http://127.0.0.1:9/webhooks/esms/topsecret-token",
        ]);
        let cfg = args.to_config().expect("valid");
        assert_eq!(cfg.faults.http_5xx, 0.2);
        assert_eq!(cfg.unknown_phone_suffixes, ["99"]);
        assert!(cfg.dedup);
        assert!(!format!("{:?} {:?}", args, cfg).contains("topsecret"));
        let addr: SocketAddr = ([127, 0, 0, 1], 8765).into();
        let custom = banner(&args, ProviderKind::Etelecom, addr);
        assert!(!custom.contains("topsecret"), "{custom}");
        assert!(custom.contains("--api-key"), "{custom}");

        let err = sandbox_args(&["--drop-reply", "1.5"])
            .to_config()
            .expect_err("out of range");
        assert!(err.contains("--drop-reply"), "{err}");
    }

    #[test]
    fn banner_names_the_default_keys() {
        let args = sandbox_args(&["--protocol", "esms"]);
        assert_eq!(args.protocol, ProviderKind::Esms);
        let addr: SocketAddr = ([127, 0, 0, 1], 8765).into();
        let b = banner(&args, ProviderKind::Esms, addr);
        assert!(b.contains("API key `sandbox-key`"), "{b}");
        assert!(b.contains("SecretKey `sandbox-secret`"), "{b}");
        let b = banner(&args, ProviderKind::Zalo, addr);
        assert!(!b.contains("SecretKey"), "{b}");
    }

    #[test]
    fn a_bad_callback_url_is_refused_with_the_flag_named() {
        let err = sandbox_args(&["--callback-url", "ftp://host/x"])
            .to_config()
            .expect_err("ftp is refused");
        assert!(
            err.contains("--callback-url") && err.contains("http"),
            "{err}"
        );
        let cfg = sandbox_args(&[
            "--callback-url",
            "http://127.0.0.1:9/cb",
            "--callback-duplicate",
        ])
        .to_config()
        .expect("valid");
        assert!(cfg.callbacks.duplicate);
        assert_eq!(cfg.callbacks.attempts, 5);
    }
}
