//! The clock and the OA's quota day.
//!
//! Zalo counts an OA's daily ZNS quota per day in Vietnam. Vietnam has kept
//! UTC+7 without daylight saving since 1975, so a fixed offset is exact.
//!
//! Tests and operators can shift the clock with `ZNS_BATCH_NOW` (RFC 3339):
//! the process then starts at that instant and time runs on from there, so
//! "resume tomorrow" is testable without waiting a day.

use std::sync::OnceLock;
use std::time::Instant;

use time::{macros::offset, Date, OffsetDateTime, UtcOffset};

/// Asia/Ho_Chi_Minh.
pub const OA_OFFSET: UtcOffset = offset!(+7);

pub const NOW_ENV: &str = "ZNS_BATCH_NOW";

struct ClockBase {
    start: OffsetDateTime,
    at: Instant,
}

static CLOCK: OnceLock<ClockBase> = OnceLock::new();

/// Error for a malformed `ZNS_BATCH_NOW`, reported once at start-up.
pub fn check_clock_override() -> Result<(), String> {
    match std::env::var(NOW_ENV) {
        Ok(v) if !v.trim().is_empty() => parse_instant(&v).map(|_| ()).ok_or_else(|| {
            format!("{NOW_ENV}=`{v}` is not an RFC 3339 time such as 2026-11-24T08:00:00+07:00")
        }),
        _ => Ok(()),
    }
}

fn parse_instant(s: &str) -> Option<OffsetDateTime> {
    OffsetDateTime::parse(s.trim(), &time::format_description::well_known::Rfc3339).ok()
}

/// Current time (UTC), honouring `ZNS_BATCH_NOW`.
pub fn now() -> OffsetDateTime {
    let base = CLOCK.get_or_init(|| ClockBase {
        start: std::env::var(NOW_ENV)
            .ok()
            .and_then(|v| parse_instant(&v))
            .unwrap_or_else(OffsetDateTime::now_utc),
        at: Instant::now(),
    });
    (base.start + base.at.elapsed()).to_offset(UtcOffset::UTC)
}

pub fn now_ms() -> i64 {
    to_ms(now())
}

pub fn to_ms(t: OffsetDateTime) -> i64 {
    (t.unix_timestamp_nanos() / 1_000_000) as i64
}

pub fn from_ms(ms: i64) -> OffsetDateTime {
    OffsetDateTime::from_unix_timestamp_nanos(ms as i128 * 1_000_000)
        .unwrap_or(OffsetDateTime::UNIX_EPOCH)
}

/// The OA's calendar day for an instant.
pub fn oa_day(t: OffsetDateTime) -> Date {
    t.to_offset(OA_OFFSET).date()
}

/// `YYYY-MM-DD` of the OA's current day: the key of the quota counter.
pub fn today_key() -> String {
    day_key(oa_day(now()))
}

pub fn day_key(d: Date) -> String {
    format!("{:04}-{:02}-{:02}", d.year(), u8::from(d.month()), d.day())
}

/// When the next quota day starts (midnight in Vietnam), as RFC 3339.
pub fn next_day_start(t: OffsetDateTime) -> OffsetDateTime {
    let day = oa_day(t);
    let next = day.next_day().unwrap_or(day);
    next.midnight().assume_offset(OA_OFFSET)
}

/// Human form used in messages: `2026-11-24 00:00 +07:00`.
pub fn fmt_local(t: OffsetDateTime) -> String {
    let l = t.to_offset(OA_OFFSET);
    format!(
        "{} {:02}:{:02} +07:00",
        day_key(l.date()),
        l.hour(),
        l.minute()
    )
}

/// A wall-clock instant as operators write it: RFC 3339, or with the seconds
/// and/or the offset left out (`2026-11-24T08:00+07:00`, `2026-11-24 08:00`).
/// Without an offset the time is the OA's (Asia/Ho_Chi_Minh).
pub fn parse_local_instant(s: &str) -> Result<OffsetDateTime, String> {
    let hint = "expected a time such as 2026-11-24T08:00+07:00 (offset optional: Asia/Ho_Chi_Minh is assumed)";
    let t = s.trim();
    if let Some(v) = parse_instant(t) {
        return Ok(v);
    }
    let (date, rest) = t
        .split_once(['T', 't', ' '])
        .ok_or_else(|| format!("`{s}`: no time of day; {hint}"))?;
    let rest = rest.trim();
    let split = rest.find(['+', '-', 'Z', 'z']).unwrap_or(rest.len());
    let (clock, zone) = rest.split_at(split);
    let clock = match clock.matches(':').count() {
        1 => format!("{clock}:00"),
        _ => clock.to_string(),
    };
    let zone = if zone.is_empty() { "+07:00" } else { zone };
    parse_instant(&format!("{date}T{clock}{zone}")).ok_or_else(|| format!("`{s}`: {hint}"))
}

/// RFC 3339 in UTC for reports and JSON.
pub fn fmt_rfc3339(t: OffsetDateTime) -> String {
    t.format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_else(|_| t.unix_timestamp().to_string())
}

/// A duration as people write it: `500ms`, `10s`, `2m`, `1h`, `24h`, `2d`.
pub fn parse_duration(s: &str) -> Result<std::time::Duration, String> {
    humantime::parse_duration(s.trim())
        .map_err(|e| format!("`{s}` is not a duration ({e}); use e.g. 500ms, 10s, 2m, 1h"))
}

/// A duration as a person wrote it: whole hours stay hours (`24h`, not
/// `1day`), the rest in the largest units that are exact (`90s` → `1m 30s`).
pub fn fmt_duration(d: std::time::Duration) -> String {
    let ms = d.as_millis();
    if ms == 0 {
        return "0s".into();
    }
    if !ms.is_multiple_of(1000) {
        return format!("{ms}ms");
    }
    let secs = d.as_secs();
    let (h, m, s) = (secs / 3600, secs / 60 % 60, secs % 60);
    let mut parts = Vec::new();
    if h > 0 {
        parts.push(format!("{h}h"));
    }
    if m > 0 {
        parts.push(format!("{m}m"));
    }
    if s > 0 {
        parts.push(format!("{s}s"));
    }
    parts.join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    #[test]
    fn durations_print_as_people_write_them() {
        use std::time::Duration;
        assert_eq!(fmt_duration(Duration::from_secs(24 * 3600)), "24h");
        assert_eq!(fmt_duration(Duration::from_secs(90)), "1m 30s");
        assert_eq!(fmt_duration(Duration::from_millis(250)), "250ms");
        assert_eq!(fmt_duration(Duration::ZERO), "0s");
        assert_eq!(
            parse_duration(" 2d ").unwrap(),
            Duration::from_secs(172_800)
        );
        assert!(parse_duration("soon").unwrap_err().contains("500ms"));
    }

    #[test]
    fn the_quota_day_is_vietnams_day() {
        // 17:30 UTC is already 00:30 the next day in Hanoi.
        let t = datetime!(2026-11-23 17:30 UTC);
        assert_eq!(day_key(oa_day(t)), "2026-11-24");
        let t = datetime!(2026-11-23 16:59 UTC);
        assert_eq!(day_key(oa_day(t)), "2026-11-23");
        assert_eq!(next_day_start(t), datetime!(2026-11-24 00:00 +7));
        assert_eq!(
            fmt_local(datetime!(2026-11-23 16:59 UTC)),
            "2026-11-23 23:59 +07:00"
        );
    }

    #[test]
    fn operator_times_parse_with_or_without_seconds_and_offset() {
        let want = datetime!(2026-11-24 08:00 +7);
        for s in [
            "2026-11-24T08:00+07:00",
            "2026-11-24T08:00:00+07:00",
            "2026-11-24 08:00",
            "2026-11-24T01:00Z",
            "2026-11-24T01:00:00Z",
        ] {
            assert_eq!(parse_local_instant(s), Ok(want), "{s}");
        }
        for bad in ["2026-11-24", "tomorrow", "2026-13-01T08:00", "2026-11-24T8"] {
            assert!(parse_local_instant(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn ms_round_trip() {
        let t = datetime!(2026-11-23 10:00:00.123 UTC);
        assert_eq!(from_ms(to_ms(t)), t);
    }
}
