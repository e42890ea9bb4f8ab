//! Where a provider reports delivery for this run: eSMS's per-send
//! `CallbackUrl`, and the URL an embedded sandbox posts its callbacks to.
//! Derived from `serve`'s `public_url` and webhook token (the same config
//! keys and environment `serve` reads), or given by `--callback-url`.
//! The URL carries the webhook token, so it is held as a [`Secret`] and
//! never printed or stored (the campaign stores only its base URL).

use super::config::{DEFAULT_WEBHOOK_TOKEN_ENV, DEFAULT_ZALO_SECRET_ENV};
use super::request::SettingsError;
use crate::campaign::config::ConfigFile;
use crate::provider::{ProviderKind, Secret};

/// Delivery callbacks of one run.
#[derive(Debug, Clone, Default)]
pub struct DeliveryCallbacks {
    /// Where callbacks go; None: nobody listens, none are asked for.
    pub url: Option<Secret>,
    /// Zalo: the app id an embedded sandbox signs its callbacks with
    /// (config `zalo_app_id`).
    pub zalo_app_id: Option<String>,
    /// Zalo: the OA secret key an embedded sandbox signs with (the env var
    /// named by `zalo_oa_secret_key_env`).
    pub zalo_oa_secret: Option<Secret>,
}

fn env_value(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
}

/// `--callback-url` wins; else `{public_url}/webhooks/...` for this
/// provider when `public_url` is configured.
pub fn resolve(
    flag: Option<&str>,
    kind: ProviderKind,
    c: &ConfigFile,
) -> Result<DeliveryCallbacks, SettingsError> {
    let zalo_app_id = c.zalo_app_id.clone().filter(|s| !s.is_empty());
    let secret_env = c
        .zalo_oa_secret_key_env
        .clone()
        .unwrap_or_else(|| DEFAULT_ZALO_SECRET_ENV.to_string());
    let zalo_oa_secret = env_value(&secret_env).map(Secret::new);
    let url = match flag.filter(|u| !u.is_empty()) {
        Some(u) => {
            match reqwest::Url::parse(u) {
                Ok(p) if p.scheme() == "http" || p.scheme() == "https" => {}
                // The value may carry a token: the message does not repeat it.
                _ => {
                    return Err(SettingsError::from(
                        "--callback-url is not an http(s) URL: give e.g. https://zns.example.vn/webhooks/esms/TOKEN"
                            .to_string(),
                    ))
                }
            }
            Some(Secret::new(u))
        }
        None => from_public_url(kind, c)?,
    };
    Ok(DeliveryCallbacks {
        url,
        zalo_app_id,
        zalo_oa_secret,
    })
}

fn from_public_url(kind: ProviderKind, c: &ConfigFile) -> Result<Option<Secret>, SettingsError> {
    let Some(public) = c.public_url.as_deref().filter(|u| !u.is_empty()) else {
        return Ok(None);
    };
    let public = public.trim_end_matches('/');
    if kind.protocol() == ProviderKind::Zalo {
        return Ok(Some(Secret::new(format!("{public}/webhooks/zalo"))));
    }
    let token_env = c
        .webhook_token_env
        .clone()
        .unwrap_or_else(|| DEFAULT_WEBHOOK_TOKEN_ENV.to_string());
    let Some(token) = env_value(&token_env) else {
        if kind == ProviderKind::Esms {
            return Err(SettingsError::from(format!(
                "public_url is configured, so eSMS would report delivery to `serve`, but the webhook \
                 token is not set: set the environment variable {token_env} (config \
                 `webhook_token_env`) to the token `serve` uses, or pass --callback-url"
            )));
        }
        return Ok(None);
    };
    let path = match kind.protocol() {
        ProviderKind::Esms => "esms",
        _ => "etelecom",
    };
    Ok(Some(Secret::new(format!(
        "{public}/webhooks/{path}/{token}"
    ))))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(text: &str) -> ConfigFile {
        ConfigFile::parse(text, None).unwrap()
    }

    fn url(d: &DeliveryCallbacks) -> Option<&str> {
        d.url.as_ref().map(Secret::expose)
    }

    #[test]
    fn the_flag_wins_and_public_url_gives_each_provider_its_path() {
        // A variable only this test sets.
        let c = cfg(
            "public_url = \"https://zns.example.vn/p/\"\nwebhook_token_env = \"ZNS_TEST_DELIVERY_TOKEN_1\"\n",
        );
        std::env::set_var("ZNS_TEST_DELIVERY_TOKEN_1", "tok");
        let esms = resolve(None, ProviderKind::Esms, &c).unwrap();
        assert_eq!(
            url(&esms),
            Some("https://zns.example.vn/p/webhooks/esms/tok")
        );
        let zalo = resolve(None, ProviderKind::Zalo, &c).unwrap();
        assert_eq!(url(&zalo), Some("https://zns.example.vn/p/webhooks/zalo"));
        let et = resolve(None, ProviderKind::Etelecom, &c).unwrap();
        assert_eq!(
            url(&et),
            Some("https://zns.example.vn/p/webhooks/etelecom/tok")
        );
        let flag = resolve(Some("http://127.0.0.1:9/cb"), ProviderKind::Esms, &c).unwrap();
        assert_eq!(url(&flag), Some("http://127.0.0.1:9/cb"));
        assert!(!format!("{flag:?}").contains("127.0.0.1:9"), "never shown");
        assert_eq!(
            url(&resolve(None, ProviderKind::Esms, &cfg("")).unwrap()),
            None
        );
    }

    #[test]
    fn esms_without_the_token_or_with_a_bad_flag_is_refused_with_the_fix() {
        let c = cfg(
            "public_url = \"https://zns.example.vn\"\nwebhook_token_env = \"ZNS_TEST_DELIVERY_TOKEN_UNSET\"\n",
        );
        let e = resolve(None, ProviderKind::Esms, &c).unwrap_err();
        assert!(e.text().contains("ZNS_TEST_DELIVERY_TOKEN_UNSET"), "{e}");
        // eTelecom registers its webhook once: no token, no per-run URL.
        assert!(resolve(None, ProviderKind::Etelecom, &c)
            .unwrap()
            .url
            .is_none());
        let e = resolve(Some("ftp://x/secret-tok"), ProviderKind::Esms, &c).unwrap_err();
        assert!(
            e.text().contains("--callback-url") && !e.text().contains("secret-tok"),
            "{e}"
        );
    }
}
