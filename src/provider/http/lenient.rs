//! Providers send int64s as JSON strings or numbers; accept both.
//!
//! Strings are borrowed from the reply's bytes when they hold no escapes
//! (`opt_str`, `opt_text`): a reply is decoded without copying the fields it
//! does not keep.

use std::borrow::Cow;

use serde::{Deserialize, Deserializer};

/// A JSON string, number or boolean, read without serde's untagged
/// buffering (this runs for every field of every reply).
enum StrOrNum<'a> {
    S(Cow<'a, str>),
    I(i64),
    U(u64),
    F(f64),
    B(bool),
}

impl<'de> Deserialize<'de> for StrOrNum<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = StrOrNum<'de>;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a string, a number or a boolean")
            }
            fn visit_borrowed_str<E: serde::de::Error>(
                self,
                v: &'de str,
            ) -> Result<Self::Value, E> {
                Ok(StrOrNum::S(Cow::Borrowed(v)))
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Self::Value, E> {
                Ok(StrOrNum::S(Cow::Owned(v.to_string())))
            }
            fn visit_string<E: serde::de::Error>(self, v: String) -> Result<Self::Value, E> {
                Ok(StrOrNum::S(Cow::Owned(v)))
            }
            fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<Self::Value, E> {
                Ok(StrOrNum::I(v))
            }
            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<Self::Value, E> {
                // As serde's untagged did: a number that fits i64 is an I.
                Ok(i64::try_from(v).map_or(StrOrNum::U(v), StrOrNum::I))
            }
            fn visit_f64<E: serde::de::Error>(self, v: f64) -> Result<Self::Value, E> {
                Ok(StrOrNum::F(v))
            }
            fn visit_bool<E: serde::de::Error>(self, v: bool) -> Result<Self::Value, E> {
                Ok(StrOrNum::B(v))
            }
        }
        d.deserialize_any(V)
    }
}

fn to_text(v: StrOrNum<'_>) -> Cow<'_, str> {
    match v {
        StrOrNum::S(s) => s,
        StrOrNum::I(i) => Cow::Owned(i.to_string()),
        StrOrNum::U(u) => Cow::Owned(u.to_string()),
        StrOrNum::F(f) => Cow::Owned(f.to_string()),
        StrOrNum::B(b) => Cow::Owned(b.to_string()),
    }
}

/// A string, number or boolean as text; empty reads as absent.
pub fn opt_string<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    Ok(opt_str(d)?.map(Cow::into_owned))
}

/// [`opt_string`], borrowed from the reply where it can be.
pub fn opt_str<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Cow<'de, str>>, D::Error> {
    Ok(Option::<StrOrNum<'de>>::deserialize(d)?
        .map(to_text)
        .filter(|s| !s.is_empty()))
}

/// A JSON string (or null) and nothing else, borrowed where it can be: what
/// `Option<String>` accepts, without the copy.
pub fn opt_text<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Cow<'de, str>>, D::Error> {
    struct Text;
    impl<'de> serde::de::Visitor<'de> for Text {
        type Value = Cow<'de, str>;
        fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("a string")
        }
        fn visit_borrowed_str<E: serde::de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
            Ok(Cow::Borrowed(v))
        }
        fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Self::Value, E> {
            Ok(Cow::Owned(v.to_string()))
        }
        fn visit_string<E: serde::de::Error>(self, v: String) -> Result<Self::Value, E> {
            Ok(Cow::Owned(v))
        }
    }
    struct OptText;
    impl<'de> serde::de::Visitor<'de> for OptText {
        type Value = Option<Cow<'de, str>>;
        fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("a string or null")
        }
        fn visit_none<E: serde::de::Error>(self) -> Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_unit<E: serde::de::Error>(self) -> Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
            d.deserialize_str(Text).map(Some)
        }
    }
    d.deserialize_option(OptText)
}

/// An integer code that may come as `0`, `"0"` or be missing (→ 0).
pub fn code<'de, D: Deserializer<'de>>(d: D) -> Result<i64, D::Error> {
    match Option::<StrOrNum<'de>>::deserialize(d)? {
        None => Ok(0),
        Some(StrOrNum::I(i)) => Ok(i),
        Some(StrOrNum::U(u)) => Ok(u as i64),
        Some(StrOrNum::F(f)) => Ok(f as i64),
        Some(StrOrNum::B(_)) => Err(serde::de::Error::custom("boolean error code")),
        Some(StrOrNum::S(s)) => s
            .trim()
            .parse()
            .map_err(|_| serde::de::Error::custom(format!("non-numeric error code `{s}`"))),
    }
}

/// `true`/`false`, `"true"`/`"false"`, `1`/`0` or `"1"`/`"0"`; anything
/// else reads as absent.
pub fn opt_bool<'de, D: Deserializer<'de>>(d: D) -> Result<Option<bool>, D::Error> {
    Ok(
        Option::<StrOrNum<'de>>::deserialize(d)?.and_then(|v| match v {
            StrOrNum::B(b) => Some(b),
            StrOrNum::I(i) => Some(i != 0),
            StrOrNum::U(u) => Some(u != 0),
            StrOrNum::S(s) => match s.trim().to_ascii_lowercase().as_str() {
                "true" | "1" => Some(true),
                "false" | "0" => Some(false),
                _ => None,
            },
            StrOrNum::F(_) => None,
        }),
    )
}

pub fn opt_u64<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
    Ok(
        Option::<StrOrNum<'de>>::deserialize(d)?.and_then(|v| match v {
            StrOrNum::U(u) => Some(u),
            StrOrNum::I(i) => u64::try_from(i).ok(),
            StrOrNum::S(s) => s.trim().parse().ok(),
            _ => None,
        }),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Deserialize)]
    struct Probe<'a> {
        #[serde(borrow, default, deserialize_with = "opt_str")]
        lenient: Option<Cow<'a, str>>,
        #[serde(borrow, default, deserialize_with = "opt_text")]
        text: Option<Cow<'a, str>>,
    }

    #[test]
    fn plain_strings_are_borrowed_escaped_ones_copied() {
        let p: Probe = serde_json::from_slice(br#"{"lenient":"abc","text":"x\"y"}"#).unwrap();
        assert!(matches!(p.lenient, Some(Cow::Borrowed("abc"))));
        assert!(matches!(p.text.as_deref(), Some("x\"y")));
        assert!(matches!(p.text, Some(Cow::Owned(_))));
    }

    #[test]
    fn lenient_takes_numbers_text_takes_only_strings() {
        let p: Probe = serde_json::from_slice(br#"{"lenient":42,"text":null}"#).unwrap();
        assert_eq!((p.lenient.as_deref(), p.text), (Some("42"), None));
        let p: Probe = serde_json::from_slice(br#"{"lenient":""}"#).unwrap();
        assert_eq!((p.lenient, p.text), (None, None));
        assert!(serde_json::from_slice::<Probe>(br#"{"text":42}"#).is_err());
        assert!(serde_json::from_slice::<Probe>(br#"{"lenient":{}}"#).is_err());
    }
}
