//! What a provider is, independent of any adapter: its name, wire protocol,
//! default endpoint, capabilities and template-id rule. The dry-run plan
//! (which builds no adapter) and the runner both read these, so they agree.

use serde::{Deserialize, Serialize};

use crate::model::reason::Reason;

/// Which provider protocol a campaign speaks.
/// Named as in [`ProviderKind::as_str`]; [`ProviderKind::about`] says what each is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ProviderKind {
    Sandbox,
    Etelecom,
    Zalo,
    Esms,
}

/// How far a provider can be trusted with a repeated idempotency key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Dedup {
    /// The provider documents de-duplication (eSMS `RequestId`, code 124).
    Documented,
    /// The key is echoed for reconciliation; de-duplication is our inference.
    Inferred,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Capabilities {
    /// The provider needs a journey token before a send.
    pub tokens: bool,
    pub dedup: Dedup,
    /// A lost reply can be looked up by our idempotency key.
    pub lookup_by_tracking_id: bool,
    /// `Some(why)` when the provider offers no message lookup by its id
    /// ([`super::Provider::get_message`]), so delivery cannot be reconciled.
    pub no_message_lookup: Option<&'static str>,
    /// [`super::Provider::template_info`] can answer (not `Ok(None)`).
    pub template_info: bool,
    /// [`super::Provider::quota`] can answer (not `Ok(None)`).
    pub quota_query: bool,
}

const ZALO_NO_MESSAGE_LOOKUP: &str =
    "Zalo documents no message lookup for journey sends; delivery status comes by webhook";

impl ProviderKind {
    /// Every kind, in the order a face lists them.
    pub const ALL: [ProviderKind; 4] = [Self::Sandbox, Self::Etelecom, Self::Zalo, Self::Esms];

    /// What the kind is, in one line (a face's list of choices shows it).
    pub fn about(self) -> &'static str {
        match self {
            ProviderKind::Sandbox => {
                "Embedded sandbox speaking the eTelecom protocol (no network, no key)"
            }
            ProviderKind::Etelecom => "eTelecom Zalo Cloud API (`{base}.Zalo/<Method>`)",
            ProviderKind::Zalo => "Zalo's own ZNS API (business.openapi.zalo.me)",
            ProviderKind::Esms => "eSMS SendZaloMessage_V4 with IsJourney",
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            ProviderKind::Sandbox => "sandbox",
            ProviderKind::Etelecom => "etelecom",
            ProviderKind::Zalo => "zalo",
            ProviderKind::Esms => "esms",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "sandbox" => Some(Self::Sandbox),
            "etelecom" => Some(Self::Etelecom),
            "zalo" => Some(Self::Zalo),
            "esms" => Some(Self::Esms),
            _ => None,
        }
    }

    /// The wire protocol: the sandbox speaks eTelecom's.
    pub fn protocol(self) -> ProviderKind {
        match self {
            ProviderKind::Sandbox => ProviderKind::Etelecom,
            other => other,
        }
    }

    /// The provider's real endpoint, used when no `--base-url` is given.
    pub fn default_base_url(self) -> Option<&'static str> {
        match self {
            ProviderKind::Sandbox => None,
            // eTelecom has distinct Shop and Partner bases; the shop one is the common case.
            ProviderKind::Etelecom => Some("https://api.etelecom.vn/v1/shop"),
            ProviderKind::Zalo => Some("https://business.openapi.zalo.me"),
            ProviderKind::Esms => Some("https://rest.esms.vn/MainService.svc/json"),
        }
    }

    /// The one answer to "what can this provider do"; every adapter's
    /// [`super::Provider::capabilities`] returns it.
    pub fn capabilities(self) -> Capabilities {
        match self {
            ProviderKind::Sandbox | ProviderKind::Etelecom => Capabilities {
                tokens: true,
                dedup: Dedup::Inferred,
                // eTelecom's GetMessage takes a msg_id only (seed 002): a lost
                // reply leaves us without one. The sandbox also answers by
                // tracking_id, which exercises the runner's lookup path.
                lookup_by_tracking_id: self == ProviderKind::Sandbox,
                // GetMessage by msg_id (seed 002).
                no_message_lookup: None,
                // eTelecom documents neither; `[templates.<id>]` in the config stands in.
                template_info: false,
                quota_query: false,
            },
            ProviderKind::Zalo => Capabilities {
                tokens: true,
                // `tracking_id` is echoed for reconciliation; de-dup is not documented.
                dedup: Dedup::Inferred,
                lookup_by_tracking_id: false,
                no_message_lookup: Some(ZALO_NO_MESSAGE_LOOKUP),
                template_info: true,
                quota_query: true,
            },
            ProviderKind::Esms => Capabilities {
                // OrderId carries the journey: no token step.
                tokens: false,
                // RequestId de-duplication is documented (code 124).
                dedup: Dedup::Documented,
                lookup_by_tracking_id: false,
                // GetZaloMessageStatus, for rows whose callback never came.
                no_message_lookup: None,
                template_info: true,
                quota_query: true,
            },
        }
    }

    /// Refuse a template id the provider's API would reject for every row,
    /// before anything is bought. eTelecom (`template_id: int`, seed 001) and
    /// Zalo (seed 003's `"template_id":217489`) take int64 ids.
    pub fn check_template_id(self, id: &str) -> Result<(), Reason> {
        let name = match self.protocol() {
            ProviderKind::Etelecom => "eTelecom",
            ProviderKind::Zalo => "Zalo",
            _ => {
                return if id.trim().is_empty() {
                    Err(Reason::new(
                        "settings.template_id_empty",
                        std::iter::empty::<(&str, &str)>(),
                        "--template-id is empty: give the template id from the eSMS account",
                    ))
                } else if id.trim() != id {
                    Err(Reason::new(
                        "settings.template_id_spaces",
                        [("value", id)],
                        format!("--template-id {id:?}: remove the spaces around the template id"),
                    ))
                } else {
                    Ok(())
                };
            }
        };
        let whole = !id.is_empty()
            && id.bytes().all(|b| b.is_ascii_digit())
            && id.parse::<i64>().is_ok_and(|n| n > 0);
        if whole {
            Ok(())
        } else {
            Err(Reason::new(
                "settings.template_id_digits",
                [("value", id), ("provider", name)],
                format!(
                    "--template-id {id:?}: {name} template ids are whole numbers \
                     (1 to 9223372036854775807, digits only, e.g. 217489)"
                ),
            ))
        }
    }
}

impl std::fmt::Display for ProviderKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for ProviderKind {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Self::parse(s).ok_or_else(|| {
            let names: Vec<&str> = Self::ALL.iter().map(|k| k.as_str()).collect();
            format!("unknown provider `{s}`: use one of {}", names.join(", "))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn int64_template_ids_for_etelecom_and_zalo() {
        for kind in [
            ProviderKind::Sandbox,
            ProviderKind::Etelecom,
            ProviderKind::Zalo,
        ] {
            assert_eq!(kind.check_template_id("217489"), Ok(()));
            assert_eq!(kind.check_template_id("9223372036854775807"), Ok(()));
            for bad in [
                "12a",
                "",
                " 217489",
                "-5",
                "0",
                "+7",
                "1.5",
                "9223372036854775808",
            ] {
                let err = kind.check_template_id(bad).unwrap_err().text();
                assert!(err.starts_with("--template-id"), "{err}");
                assert!(err.contains("whole numbers"), "{err}");
            }
        }
        let err = ProviderKind::Etelecom
            .check_template_id("12a")
            .unwrap_err()
            .text();
        assert!(err.contains("\"12a\"") && err.contains("eTelecom"), "{err}");
        let err = ProviderKind::Zalo
            .check_template_id("7895417a")
            .unwrap_err()
            .text();
        assert!(err.contains("Zalo"), "{err}");
    }

    #[test]
    fn esms_template_ids_are_free_text_but_not_blank() {
        assert_eq!(ProviderKind::Esms.check_template_id("217489"), Ok(()));
        assert_eq!(ProviderKind::Esms.check_template_id("tpl-A"), Ok(()));
        assert!(ProviderKind::Esms.check_template_id(" ").is_err());
        assert!(ProviderKind::Esms
            .check_template_id(" 217489")
            .unwrap_err()
            .text()
            .contains("spaces"));
    }

    #[test]
    fn every_kind_reads_back_from_its_name() {
        for kind in ProviderKind::ALL {
            assert_eq!(kind.to_string().parse::<ProviderKind>(), Ok(kind));
            assert!(!kind.about().is_empty());
        }
        let err = "zal".parse::<ProviderKind>().unwrap_err();
        assert!(err.contains("sandbox, etelecom, zalo, esms"), "{err}");
    }

    #[test]
    fn capabilities_follow_the_kind() {
        assert!(ProviderKind::Sandbox.capabilities().lookup_by_tracking_id);
        assert!(!ProviderKind::Etelecom.capabilities().lookup_by_tracking_id);
        assert!(!ProviderKind::Esms.capabilities().tokens);
        assert_eq!(ProviderKind::Esms.capabilities().dedup, Dedup::Documented);
        assert!(ProviderKind::Zalo
            .capabilities()
            .no_message_lookup
            .is_some());
        assert!(!ProviderKind::Etelecom.capabilities().template_info);
        assert!(ProviderKind::Zalo.capabilities().quota_query);
        assert!(ProviderKind::Esms
            .capabilities()
            .no_message_lookup
            .is_none());
    }
}
