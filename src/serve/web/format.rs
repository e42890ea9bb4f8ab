//! Numbers, money, days and times as the console's readers write them.
//!
//! Vietnamese: `1.234.567`, `14.000 ₫`; English: `1,234,567`, `14,000 VND`.
//! Days are `dd/mm/yyyy` in both languages (the OA, its quota day and its
//! customers are Vietnamese, so one order avoids misreading 03/04), times
//! 24-hour in the OA's zone (Asia/Ho_Chi_Minh).

use time::{Date, OffsetDateTime};

use super::lang::Lang;
use crate::model::clock;

/// `1234567` → `1.234.567` (vi) or `1,234,567` (en).
pub fn num(lang: Lang, n: u64) -> String {
    let sep = match lang {
        Lang::Vi => '.',
        Lang::En => ',',
    };
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(sep);
        }
        out.push(c);
    }
    out
}

/// Whole đồng: `14.000 ₫` (vi) or `14,000 VND` (en).
pub fn money(lang: Lang, vnd: u64) -> String {
    match lang {
        Lang::Vi => format!("{} ₫", num(lang, vnd)),
        Lang::En => format!("{} VND", num(lang, vnd)),
    }
}

/// A calendar day: `06/12/2026`.
pub fn date(d: Date) -> String {
    format!("{:02}/{:02}/{:04}", d.day(), u8::from(d.month()), d.year())
}

/// An instant in the OA's zone: `06/12/2026 08:00`.
pub fn instant(t: OffsetDateTime) -> String {
    let l = t.to_offset(clock::OA_OFFSET);
    format!("{} {:02}:{:02}", date(l.date()), l.hour(), l.minute())
}

/// An instant the core wrote as text (RFC 3339 or the operators' form),
/// in the OA's zone; as given if it is not one.
pub fn instant_text(s: &str) -> String {
    clock::parse_local_instant(s)
        .map(instant)
        .unwrap_or_else(|_| s.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_and_money_per_language() {
        assert_eq!(num(Lang::Vi, 0), "0");
        assert_eq!(num(Lang::Vi, 999), "999");
        assert_eq!(num(Lang::Vi, 1000), "1.000");
        assert_eq!(num(Lang::Vi, 1_234_567), "1.234.567");
        assert_eq!(num(Lang::En, 1_234_567), "1,234,567");
        assert_eq!(num(Lang::En, 100_000), "100,000");
        assert_eq!(money(Lang::Vi, 14_000), "14.000 ₫");
        assert_eq!(money(Lang::En, 14_000), "14,000 VND");
    }

    #[test]
    fn days_and_times_in_the_oa_zone() {
        assert_eq!(date(time::macros::date!(2026 - 12 - 06)), "06/12/2026");
        // 17:30 UTC is 00:30 the next day in Vietnam.
        assert_eq!(instant_text("2026-12-06T17:30:00Z"), "07/12/2026 00:30");
        assert_eq!(instant_text("2026-12-01T08:00"), "01/12/2026 08:00");
        assert_eq!(instant_text("soon"), "soon");
    }
}
