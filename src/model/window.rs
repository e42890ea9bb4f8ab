//! The send window: the hours of the OA's day in which messages may go out.
//!
//! Written `HH:MM-HH:MM` in the OA's time zone (Asia/Ho_Chi_Minh, UTC+7, no
//! daylight saving). The end is exclusive; a window whose end is before its
//! start runs over midnight (`20:00-06:00`). `off` means no window.

use std::fmt;
use std::str::FromStr;

use time::{OffsetDateTime, Time};

use crate::model::clock::{self, OA_OFFSET};

const DAY_MINUTES: u16 = 24 * 60;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SendWindow {
    /// Minutes after the OA's midnight; `end` may be 1440 (24:00).
    start: u16,
    end: u16,
}

/// What a flag, the environment or a config file says about the window:
/// `off` has to be able to override a window set at a lower level.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WindowSetting {
    Off,
    On(SendWindow),
}

impl WindowSetting {
    pub fn window(self) -> Option<SendWindow> {
        match self {
            WindowSetting::Off => None,
            WindowSetting::On(w) => Some(w),
        }
    }
}

impl FromStr for WindowSetting {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.trim() {
            "off" | "none" | "always" => Ok(WindowSetting::Off),
            other => other.parse().map(WindowSetting::On),
        }
    }
}

fn parse_hhmm(s: &str) -> Option<u16> {
    let (h, m) = s.trim().split_once(':')?;
    if h.is_empty() || h.len() > 2 || m.len() != 2 {
        return None;
    }
    let h: u16 = h.parse().ok()?;
    let m: u16 = m.parse().ok()?;
    match (h, m) {
        (24, 0) => Some(DAY_MINUTES),
        (0..=23, 0..=59) => Some(h * 60 + m),
        _ => None,
    }
}

impl FromStr for SendWindow {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let bad = || {
            format!(
                "send window `{s}` is not HH:MM-HH:MM in the OA's time zone (Asia/Ho_Chi_Minh), e.g. 07:00-22:00; `off` for none"
            )
        };
        let (a, b) = s.split_once('-').ok_or_else(bad)?;
        let start = parse_hhmm(a).ok_or_else(bad)?;
        let end = parse_hhmm(b).ok_or_else(bad)?;
        if start == DAY_MINUTES {
            return Err(bad());
        }
        if start == end {
            return Err(format!(
                "send window `{s}` is empty (start = end); use 00:00-24:00 or `off` for all day"
            ));
        }
        Ok(SendWindow { start, end })
    }
}

impl fmt::Display for SendWindow {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{:02}:{:02}-{:02}:{:02}",
            self.start / 60,
            self.start % 60,
            self.end / 60,
            self.end % 60
        )
    }
}

fn minute_of_day(t: OffsetDateTime) -> u16 {
    let l = t.to_offset(OA_OFFSET);
    u16::from(l.hour()) * 60 + u16::from(l.minute())
}

impl SendWindow {
    pub fn contains(&self, t: OffsetDateTime) -> bool {
        let m = minute_of_day(t);
        if self.start < self.end {
            (self.start..self.end).contains(&m)
        } else {
            m >= self.start || m < self.end
        }
    }

    /// When the window is next open: `t` itself if it is open now.
    pub fn next_open(&self, t: OffsetDateTime) -> OffsetDateTime {
        if self.contains(t) {
            return t;
        }
        let local = t.to_offset(OA_OFFSET);
        let start = Time::from_hms((self.start / 60) as u8, (self.start % 60) as u8, 0)
            .unwrap_or(Time::MIDNIGHT);
        let today = local.date().with_time(start).assume_offset(OA_OFFSET);
        if today > t {
            today
        } else {
            let tomorrow = local.date().next_day().unwrap_or(local.date());
            tomorrow.with_time(start).assume_offset(OA_OFFSET)
        }
    }

    /// Why nothing is sent now, and when sending can start.
    pub fn closed_message(&self, t: OffsetDateTime) -> String {
        format!(
            "outside the send window {self} (Asia/Ho_Chi_Minh; it is now {}); it opens {}",
            clock::fmt_local(t),
            clock::fmt_local(self.next_open(t))
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    fn w(s: &str) -> SendWindow {
        s.parse().unwrap()
    }

    #[test]
    fn parses_and_refuses_with_the_expected_form() {
        assert_eq!(w("07:00-22:00").to_string(), "07:00-22:00");
        assert_eq!(w("7:30-24:00").to_string(), "07:30-24:00");
        for bad in [
            "7-22",
            "07:00",
            "25:00-26:00",
            "07:60-08:00",
            "24:00-06:00",
            "a-b",
        ] {
            let e = bad.parse::<SendWindow>().unwrap_err();
            assert!(e.contains("HH:MM-HH:MM"), "{bad}: {e}");
        }
        assert!("08:00-08:00"
            .parse::<SendWindow>()
            .unwrap_err()
            .contains("empty"));
        assert_eq!("off".parse::<WindowSetting>(), Ok(WindowSetting::Off));
    }

    #[test]
    fn open_hours_are_vietnam_hours() {
        let day = w("07:00-22:00");
        // 00:30 UTC = 07:30 in Hanoi: open. 15:00 UTC = 22:00: closed (end exclusive).
        assert!(day.contains(datetime!(2026-11-24 00:30 UTC)));
        assert!(!day.contains(datetime!(2026-11-24 15:00 UTC)));
        assert!(!day.contains(datetime!(2026-11-24 06:59 +7)));
        assert!(day.contains(datetime!(2026-11-24 07:00 +7)));
        assert_eq!(
            day.next_open(datetime!(2026-11-24 06:59:30 +7)),
            datetime!(2026-11-24 07:00 +7)
        );
        assert_eq!(
            day.next_open(datetime!(2026-11-24 23:10 +7)),
            datetime!(2026-11-25 07:00 +7)
        );
        let t = datetime!(2026-11-24 12:00 +7);
        assert_eq!(day.next_open(t), t);

        let night = w("20:00-06:00");
        assert!(night.contains(datetime!(2026-11-24 23:00 +7)));
        assert!(night.contains(datetime!(2026-11-24 05:59 +7)));
        assert!(!night.contains(datetime!(2026-11-24 06:00 +7)));
        assert_eq!(
            night.next_open(datetime!(2026-11-24 12:00 +7)),
            datetime!(2026-11-24 20:00 +7)
        );
        assert!(w("00:00-24:00").contains(datetime!(2026-11-24 23:59 +7)));
        assert!(day
            .closed_message(datetime!(2026-11-24 23:10 +7))
            .contains("opens 2026-11-25 07:00 +07:00"));
    }
}
