//! Zalo's replies, decoded borrowed from the reply's bytes. Every reply
//! type carries `error`/`message` beside its own fields, so a reply is
//! decoded once.

use std::borrow::Cow;

use serde::Deserialize;

use super::QuotaInfo;
use crate::provider::http::lenient;
use crate::provider::template::WireParam;

/// `error`/`message`, common to every reply. Each reply type below carries
/// them too, so a reply is decoded once; this alone is read when a reply
/// does not fit its type, so that an error reply never fails on the shape
/// of a `data` it doesn't have.
#[derive(Debug, Deserialize)]
pub(super) struct Status<'a> {
    #[serde(default, deserialize_with = "lenient::code")]
    pub(super) error: i64,
    #[serde(borrow, default, deserialize_with = "lenient::opt_str")]
    pub(super) message: Option<Cow<'a, str>>,
}

/// A reply type with `error`/`message` beside its own fields.
pub(super) trait WithStatus {
    fn status(&self) -> (i64, Option<&str>);
}

macro_rules! with_status {
    ($($reply:ident),*) => {$(
        impl WithStatus for $reply<'_> {
            fn status(&self) -> (i64, Option<&str>) {
                (self.error, self.message.as_deref())
            }
        }
    )*};
}
with_status!(
    Status,
    TokenReply,
    SendReply,
    CheckReply,
    TemplateReply,
    QuotaReply
);

#[derive(Debug, Deserialize)]
pub(super) struct TokenReply<'a> {
    #[serde(default, deserialize_with = "lenient::code")]
    pub(super) error: i64,
    #[serde(borrow, default, deserialize_with = "lenient::opt_str")]
    pub(super) message: Option<Cow<'a, str>>,
    #[serde(borrow, default, deserialize_with = "lenient::opt_text")]
    pub(super) token: Option<Cow<'a, str>>,
    #[serde(borrow, default, deserialize_with = "lenient::opt_str")]
    pub(super) journey_id: Option<Cow<'a, str>>,
}

#[derive(Debug, Deserialize)]
pub(super) struct SendReply<'a> {
    #[serde(default, deserialize_with = "lenient::code")]
    pub(super) error: i64,
    #[serde(borrow, default, deserialize_with = "lenient::opt_str")]
    pub(super) message: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    pub(super) data: Option<SendData<'a>>,
}

#[derive(Debug, Deserialize)]
pub(super) struct SendData<'a> {
    #[serde(borrow, default, deserialize_with = "lenient::opt_str")]
    pub(super) msg_id: Option<Cow<'a, str>>,
    #[serde(default)]
    pub(super) quota: Option<Quota>,
}

/// Documented as strings ("480"); numbers are accepted too.
#[derive(Debug, Deserialize)]
pub(super) struct Quota {
    #[serde(
        rename = "remainingQuota",
        default,
        deserialize_with = "lenient::opt_u64"
    )]
    pub(super) remaining: Option<u64>,
    #[serde(rename = "dailyQuota", default, deserialize_with = "lenient::opt_u64")]
    pub(super) daily: Option<u64>,
}

/// `GET message/quota`: the figures sit in `data`.
#[derive(Debug, Deserialize)]
pub(super) struct QuotaReply<'a> {
    #[serde(default, deserialize_with = "lenient::code")]
    pub(super) error: i64,
    #[serde(borrow, default, deserialize_with = "lenient::opt_str")]
    pub(super) message: Option<Cow<'a, str>>,
    #[serde(default)]
    pub(super) data: Option<Quota>,
}

impl Quota {
    pub(super) fn both(&self) -> Option<QuotaInfo> {
        Some(QuotaInfo {
            remaining: self.remaining?,
            daily: self.daily?,
        })
    }
}

/// `GET template/info/v2`: status and parameters in `data`.
#[derive(Debug, Deserialize)]
pub(super) struct TemplateReply<'a> {
    #[serde(default, deserialize_with = "lenient::code")]
    pub(super) error: i64,
    #[serde(borrow, default, deserialize_with = "lenient::opt_str")]
    pub(super) message: Option<Cow<'a, str>>,
    #[serde(default)]
    pub(super) data: Option<TemplateFields>,
}

#[derive(Debug, Deserialize)]
pub(super) struct TemplateFields {
    #[serde(default, deserialize_with = "lenient::opt_string")]
    pub(super) status: Option<String>,
    #[serde(rename = "listParams", default)]
    pub(super) list_params: Vec<WireParam>,
}

#[derive(Debug, Deserialize)]
pub(super) struct CheckReply<'a> {
    #[serde(default, deserialize_with = "lenient::code")]
    pub(super) error: i64,
    #[serde(borrow, default, deserialize_with = "lenient::opt_str")]
    pub(super) message: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    pub(super) data: Option<CheckData<'a>>,
}

#[derive(Debug, Deserialize)]
pub(super) struct CheckData<'a> {
    // The seed's table says `expired_at`, its example `expiredAt` (ms).
    #[serde(
        borrow,
        rename = "expiredAt",
        alias = "expired_at",
        default,
        deserialize_with = "lenient::opt_str"
    )]
    pub(super) expired_at: Option<Cow<'a, str>>,
}
