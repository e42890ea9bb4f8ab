//! How the sandbox numbers and dates what it hands out — journey and
//! message ids, RFC 3339 and Unix-millisecond times — the same in its
//! memory, its replies and its callbacks.

use time::{OffsetDateTime, UtcOffset};

/// Journey ids: eTelecom's `id` and `journey_id` are deliberately different
/// numbers, so a client that mixes them up is caught.
pub(crate) const JOURNEY_REF_BASE: u64 = 900_000;
pub(crate) const JOURNEY_ID_BASE: u64 = 7_000_000_000;
pub(crate) const MESSAGE_REF_BASE: u64 = 3_000_000_000;
/// msg_id looks like Zalo's (20 hex digits) and maps back to its index.
pub(crate) const MSG_ID_PREFIX: &str = "6e84";
pub(crate) const MSG_ID_MASK: u64 = 0x5a17_c0de_0000_0000;

pub(crate) fn msg_id_of(n: usize) -> String {
    format!("{MSG_ID_PREFIX}{:016x}", n as u64 ^ MSG_ID_MASK)
}

/// RFC 3339 in UTC with milliseconds.
pub(crate) fn rfc3339(t: OffsetDateTime) -> String {
    let t = t.to_offset(UtcOffset::UTC);
    let t = t
        .replace_nanosecond(t.nanosecond() / 1_000_000 * 1_000_000)
        .unwrap_or(t);
    t.format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_else(|_| t.unix_timestamp().to_string())
}

pub(crate) fn unix_ms(t: OffsetDateTime) -> i128 {
    t.unix_timestamp_nanos() / 1_000_000
}
