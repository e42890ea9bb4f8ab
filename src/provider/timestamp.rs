//! Provider timestamps, and what an expiry time says about a stored token.

use time::OffsetDateTime;

use super::TokenCheck;

/// Parse a provider timestamp: RFC 3339, or Unix seconds / milliseconds.
pub fn parse_time(s: &str) -> Option<OffsetDateTime> {
    if let Ok(t) = OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339) {
        return Some(t);
    }
    let n: i64 = s.trim().parse().ok()?;
    // Seconds this large would be past the year 5000: they are milliseconds.
    if n > 100_000_000_000 {
        OffsetDateTime::from_unix_timestamp_nanos(n as i128 * 1_000_000).ok()
    } else {
        OffsetDateTime::from_unix_timestamp(n).ok()
    }
}

/// The verdict on a token the provider reports as existing, from the expiry
/// it gave (`None`: unreadable or absent, so the one we stored stands).
pub fn token_check(reported_expiry: Option<&str>, stored_expiry: OffsetDateTime) -> TokenCheck {
    match reported_expiry.and_then(parse_time) {
        Some(t) if t <= OffsetDateTime::now_utc() => TokenCheck::Expired,
        Some(t) => TokenCheck::Valid { expires_at: t },
        None => TokenCheck::Valid {
            expires_at: stored_expiry,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_seconds_and_milliseconds() {
        let t = OffsetDateTime::from_unix_timestamp(1_641_269_384).unwrap();
        assert_eq!(parse_time("2022-01-04T04:09:44Z"), Some(t));
        assert_eq!(parse_time("1641269384"), Some(t));
        assert_eq!(
            parse_time("1641269384370"),
            Some(t + time::Duration::milliseconds(370))
        );
        assert_eq!(parse_time("soon"), None);
    }

    #[test]
    fn verdict_from_the_reported_expiry() {
        let stored = OffsetDateTime::now_utc() + time::Duration::days(2);
        assert_eq!(token_check(Some("1641269384"), stored), TokenCheck::Expired);
        let later = OffsetDateTime::now_utc() + time::Duration::days(5);
        let later_s = later.unix_timestamp().to_string();
        assert_eq!(
            token_check(Some(&later_s), stored),
            TokenCheck::Valid {
                expires_at: OffsetDateTime::from_unix_timestamp(later.unix_timestamp()).unwrap()
            }
        );
        for unreadable in [None, Some("garbage")] {
            assert_eq!(
                token_check(unreadable, stored),
                TokenCheck::Valid { expires_at: stored }
            );
        }
    }
}
