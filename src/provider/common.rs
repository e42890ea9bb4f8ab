//! Plumbing every adapter shares: redaction of what a reply echoes, code →
//! class, the template id on the wire, and the reclassification of errors
//! from calls that concern the whole campaign rather than a row.

use std::future::Future;

use serde::Serialize;

use super::{http, ErrorClass, ProviderError, ProviderSettings, Secret};

/// An error built from a provider reply, before the key and secret were
/// blanked out of it. It converts from [`ProviderError`] (so `?` works in an
/// adapter's inner calls) but never back: the only way out is
/// [`ProviderSettings::redacting`], so a trait method that forwards an inner
/// call's error cannot skip redaction.
#[derive(Debug)]
pub struct Unredacted(ProviderError);

impl From<ProviderError> for Unredacted {
    fn from(err: ProviderError) -> Self {
        Self(err)
    }
}

impl Unredacted {
    /// The provider's code (it holds no secret).
    pub fn code(&self) -> &str {
        &self.0.code
    }
}

/// A call this provider does not offer: the campaign's setup asks for
/// something impossible, whatever the row.
pub fn unsupported(message: &str) -> ProviderError {
    ProviderError::new(ErrorClass::AbortConfig, "unsupported", message)
}

/// What an adapter's inner call returns.
pub type Unchecked<T> = Result<T, Unredacted>;

impl ProviderSettings {
    /// Run an inner call and blank the key and secret out of its error: a
    /// provider may quote them back (an error message, a body excerpt), and
    /// errors reach logs and the state database.
    pub async fn redacting<T>(
        &self,
        call: impl Future<Output = Unchecked<T>>,
    ) -> Result<T, ProviderError> {
        call.await.map_err(|Unredacted(err)| self.redact(err))
    }

    /// The key, the secret, and the callback URL (its path may hold the
    /// webhook token).
    fn redact(&self, err: ProviderError) -> ProviderError {
        let secrets: Vec<&Secret> = std::iter::once(&self.api_key)
            .chain(self.secret_key.as_ref())
            .chain(self.callback_url.as_ref())
            .collect();
        http::redact(err, &secrets)
    }

    /// A nonzero provider code, classified by the table (with the config's
    /// overrides) for this provider's protocol. A code the table does not
    /// know whose message names the template or OA id stops the campaign:
    /// every row would meet it alike.
    pub fn code_error(&self, code: &str, message: Option<&str>) -> ProviderError {
        let class = match self.codes.known(self.kind, code) {
            Some(class) => class,
            None if message.is_some_and(names_campaign_field) => ErrorClass::AbortConfig,
            None => self.codes.classify(self.kind, code),
        };
        let message = match message {
            Some(m) if !m.trim().is_empty() => m.to_string(),
            _ => format!("{} error", self.kind.protocol()),
        };
        ProviderError::new(class, code, message)
    }
}

/// `template_id` on the wire: eTelecom's seed types it `int`, Zalo's example
/// sends `217489`, a JSON number; an id that is not a number can only go as a
/// string (ids are checked up front with `ProviderKind::check_template_id`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(untagged)]
pub enum TemplateId<'a> {
    Number(i64),
    Text(&'a str),
}

impl<'a> TemplateId<'a> {
    pub fn of(id: &'a str) -> Self {
        id.parse::<i64>()
            .map(TemplateId::Number)
            .unwrap_or(TemplateId::Text(id))
    }
}

/// `template_data` as a JSON object of strings, in the CSV's column order,
/// written straight from the row's borrowed values (eTelecom, Zalo).
pub struct TemplateData<'a>(pub &'a [(&'a str, &'a str)]);

impl Serialize for TemplateData<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut map = s.serialize_map(Some(self.0.len()))?;
        for (k, v) in self.0 {
            map.serialize_entry(k, v)?;
        }
        map.end()
    }
}

/// The template values alone, as a JSON array of strings in the CSV's
/// column order (eSMS `Params`: positional, not named).
pub struct TemplateValues<'a>(pub &'a [(&'a str, &'a str)]);

impl Serialize for TemplateValues<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(self.0.iter().map(|(_, v)| v))
    }
}

/// Template info and quota reads concern the whole campaign: an answer that
/// would fail one row (an unknown template, a 404, an unlisted code) refuses
/// the campaign's setup instead. A read changes nothing, so nothing is in doubt.
pub fn campaign_level(mut err: ProviderError) -> ProviderError {
    if matches!(
        err.class,
        ErrorClass::FailRow
            | ErrorClass::CheckToken
            | ErrorClass::RefreshToken
            | ErrorClass::AlreadySent
    ) {
        err.class = ErrorClass::AbortConfig;
    }
    err.in_doubt = false;
    err
}

/// Does an error text name a field every row of a campaign shares (the
/// template id, the OA id)? Such a refusal would fail every row alike, so it
/// stops the campaign instead. `template_data` and `phone` are per row.
pub fn names_campaign_field(text: &str) -> bool {
    text.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .any(|word| {
            matches!(
                word.to_ascii_lowercase().as_str(),
                "template_id" | "templateid" | "tempid" | "oa_id" | "oaid"
            )
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::provider::{ProviderKind, Secret};

    #[test]
    fn template_id_as_number_when_it_is_one() {
        assert_eq!(
            serde_json::to_value(TemplateId::of("217489")).unwrap(),
            serde_json::json!(217489)
        );
        assert_eq!(
            serde_json::to_value(TemplateId::of("78a")).unwrap(),
            serde_json::json!("78a")
        );
    }

    #[test]
    fn template_values_keep_the_column_order() {
        let data = [("b", "2"), ("a", "1\"x")];
        assert_eq!(
            serde_json::to_string(&TemplateData(&data)).unwrap(),
            r#"{"b":"2","a":"1\"x"}"#
        );
        assert_eq!(
            serde_json::to_string(&TemplateValues(&data)).unwrap(),
            r#"["2","1\"x"]"#
        );
    }

    #[test]
    fn campaign_fields_are_told_from_row_fields() {
        for yes in [
            "template_id: invalid",
            "invalid template_id 12a",
            "TemplateId must be an integer",
            "oa_id is required",
            "bad argument (oa_id)",
        ] {
            assert!(names_campaign_field(yes), "{yes}");
        }
        for no in [
            "template_data.name: too long",
            "phone: invalid",
            "my_template_id_x wrong",
            "",
        ] {
            assert!(!names_campaign_field(no), "{no}");
        }
    }

    #[test]
    fn row_classes_become_campaign_refusals() {
        for class in [
            ErrorClass::FailRow,
            ErrorClass::CheckToken,
            ErrorClass::RefreshToken,
        ] {
            let e = campaign_level(ProviderError::new(class, "x", "y").in_doubt(true));
            assert_eq!((e.class, e.in_doubt), (ErrorClass::AbortConfig, false));
        }
        for class in [
            ErrorClass::Retry,
            ErrorClass::AbortAuth,
            ErrorClass::PauseQuota,
        ] {
            assert_eq!(
                campaign_level(ProviderError::new(class, "x", "y")).class,
                class
            );
        }
    }

    #[tokio::test]
    async fn redacting_blanks_key_and_secret() {
        let settings = ProviderSettings::new(
            ProviderKind::Esms,
            "http://127.0.0.1:1",
            Secret::new("KEY-1234"),
        )
        .with_secret_key(Some(Secret::new("SECRET-5678")));
        let out: Result<(), ProviderError> = settings
            .redacting(async {
                Err(Unredacted::from(ProviderError::new(
                    ErrorClass::AbortAuth,
                    "101",
                    "KEY-1234 / SECRET-5678 rejected",
                )))
            })
            .await;
        assert_eq!(out.unwrap_err().message, "*** / *** rejected");
        let e = settings.code_error("101", Some(""));
        assert_eq!(
            (e.class, e.message.as_str()),
            (ErrorClass::AbortAuth, "esms error")
        );
        // Unlisted code: the message decides between the row and the campaign.
        let e = settings.code_error("777", Some("TempID 12a is invalid"));
        assert_eq!(e.class, ErrorClass::AbortConfig);
        let e = settings.code_error("777", Some("Phone is invalid"));
        assert_eq!(e.class, ErrorClass::FailRow);
        // A listed code keeps its class whatever the message says.
        let e = settings.code_error("99", Some("OAID unknown"));
        assert_eq!(e.class, ErrorClass::FailRow);
    }
}
