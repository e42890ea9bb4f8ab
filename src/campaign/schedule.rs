//! Scheduled starts and test sends, as every face asks for them: parse a
//! start time or a list of test phones the one way, keep the schedule in
//! the ledger, and send the tests through the campaign's provider.

use serde::Serialize;

use super::{connect, refused, CoreError, Prepared, Reason, Workspace};
use crate::engine::test_send::{self, TestInput};
use crate::model::{clock, phone};

pub use crate::store::TestSend;

/// `--start-at` / the console's "Send at": an OA-local time (or with an
/// offset) in the future, as ms; `now` (or blank) is no schedule.
pub fn parse_start_at(text: &str) -> Result<Option<i64>, CoreError> {
    let t = text.trim();
    if t.is_empty() || t.eq_ignore_ascii_case("now") {
        return Ok(None);
    }
    let at = clock::parse_local_instant(t).map_err(|e| {
        refused(
            "start_at.unreadable",
            [("value", t)],
            format!(
                "start time {e}, e.g. --start-at 2026-12-07T08:00 or \"2026-12-07 08:00\" (OA local time), or `now`"
            ),
        )
    })?;
    let now = clock::now();
    if at <= now {
        let (when, now) = (fmt_when(clock::to_ms(at)), fmt_when(clock::now_ms()));
        return Err(refused(
            "start_at.past",
            [("value", t), ("at", when.as_str()), ("now", now.as_str())],
            format!(
                "start time `{t}` ({when}) is in the past: it is now {now}; give a later time, or `now` to start at once"
            ),
        ));
    }
    Ok(Some(clock::to_ms(at)))
}

/// `--test-phones 0912345678,0987654321`: each normalised; the first bad
/// one is named.
pub fn parse_test_phones(text: &str) -> Result<Vec<String>, CoreError> {
    let mut out: Vec<String> = Vec::new();
    for raw in text.split([',', ';', '\n']).map(str::trim) {
        if raw.is_empty() {
            continue;
        }
        // The phone's own reason (coded) says what is wrong with it.
        let p = phone::normalize(raw).map_err(|e| {
            let text = format!("test phone `{raw}` is not a Vietnamese mobile number: {e}; give e.g. --test-phones 0912345678,0987654321");
            let mut why = e.reason();
            for part in &mut why.parts {
                part.text.clear();
            }
            CoreError::Refused(Reason::join([
                Reason::new("test_phones.bad", [("value", raw)], text),
                why,
            ]))
        })?;
        if !out.contains(&p) {
            out.push(p);
        }
    }
    if out.is_empty() {
        return Err(refused(
            "test_phones.none",
            NO_PARAMS,
            "no test phone given: e.g. --test-phones 0912345678,0987654321",
        ));
    }
    if out.len() > MAX_TEST_PHONES {
        return Err(refused(
            "test_phones.too_many",
            [("count", out.len()), ("max", MAX_TEST_PHONES)],
            format!(
                "{} test phones: a test goes to at most {MAX_TEST_PHONES}",
                out.len()
            ),
        ));
    }
    Ok(out)
}

/// No blanks to fill.
const NO_PARAMS: [(&str, &str); 0] = [];

/// A test is a few messages to the team's own phones, not a campaign.
pub const MAX_TEST_PHONES: usize = 10;

/// A scheduled start as people read it: `07/12/2026 08:00` (OA time).
pub fn fmt_when(ms: i64) -> String {
    let l = clock::from_ms(ms).to_offset(clock::OA_OFFSET);
    format!(
        "{:02}/{:02}/{} {:02}:{:02}",
        l.day(),
        u8::from(l.month()),
        l.year(),
        l.hour(),
        l.minute()
    )
}

/// How long until `ms`, in words: `9 h 12 min`, `45 s`.
pub fn fmt_until(ms: i64) -> String {
    let secs = ((ms - clock::now_ms()).max(0) + 999) / 1000;
    match secs {
        s if s < 60 => format!("{s} s"),
        s if s < 3600 => format!("{} min {} s", s / 60, s % 60),
        s if s < 86_400 => format!("{} h {} min", s / 3600, (s % 3600) / 60),
        s => format!("{} d {} h", s / 86_400, (s % 86_400) / 3600),
    }
}

/// A campaign waiting for its time.
#[derive(Debug, Clone, Serialize)]
pub struct Scheduled {
    pub campaign: String,
    pub start_at_ms: i64,
}

impl Workspace {
    /// Set or cancel (None) a campaign's scheduled start. No error when
    /// the campaign is gone.
    pub fn set_schedule(&self, name: &str, start_at_ms: Option<i64>) -> Result<(), CoreError> {
        let (mut store, c) = self.find(name)?;
        store.set_schedule(c.id, start_at_ms)?;
        Ok(())
    }

    /// Every scheduled campaign, soonest first (no state database: none).
    pub fn schedules(&self) -> Result<Vec<Scheduled>, CoreError> {
        self.list_existing(|store| {
            Ok(store
                .schedules()?
                .into_iter()
                .map(|(campaign, start_at_ms)| Scheduled {
                    campaign,
                    start_at_ms,
                })
                .collect())
        })
    }

    /// Send the first accepted row's data to each test phone through the
    /// campaign's provider; recorded apart from the campaign's rows.
    pub async fn send_tests(
        &self,
        p: &mut Prepared,
        phones: &[String],
    ) -> Result<Vec<TestSend>, CoreError> {
        let c = &p.campaign;
        let Some(data) = p.store.first_accepted_data(c.id)? else {
            return Err(refused(
                "campaign.no_accepted_row",
                [("name", &c.name)],
                format!(
                    "campaign `{}` has no accepted row: there is nothing to send as a test",
                    c.name
                ),
            ));
        };
        let values: Vec<String> = serde_json::from_str(&data).map_err(|e| {
            CoreError::Fatal(anyhow::anyhow!(
                "the first accepted row's stored data is unreadable: {e}"
            ))
        })?;
        if values.len() != c.template_keys.len() {
            return Err(CoreError::Fatal(anyhow::anyhow!(
                "the first accepted row's stored data has {} values for {} parameters",
                values.len(),
                c.template_keys.len()
            )));
        }
        let run_id = hex::encode(rand::random::<[u8; 6]>());
        let accounts = p.settings.provider.accounts(&run_id);
        let conn = connect::connect(&p.settings, self).await?;
        let input = TestInput {
            campaign: c,
            accounts: &accounts,
            provider: conn.provider.clone(),
            values: &values,
            daily_quota: p.settings.run.daily_quota,
            token_margin: p.settings.run.token_margin,
        };
        let result = test_send::send_tests(&mut p.store, &input, phones).await;
        conn.settle_callbacks().await;
        Ok(result?)
    }
}

impl Prepared {
    /// The campaign's scheduled start (ms), stored or shown by this request.
    pub fn start_at_ms(&self) -> Option<i64> {
        self.start_at_ms
    }

    /// Keep (Some) or cancel (None) the scheduled start in the ledger.
    pub fn set_schedule(&mut self, start_at_ms: Option<i64>) -> Result<(), CoreError> {
        if start_at_ms != self.start_at_ms || start_at_ms.is_none() {
            self.store.set_schedule(self.campaign.id, start_at_ms)?;
        }
        self.start_at_ms = start_at_ms;
        Ok(())
    }

    /// Show a start time in the plan without storing it (a dry run).
    pub fn show_start_at(&mut self, start_at_ms: Option<i64>) {
        if start_at_ms.is_some() {
            self.start_at_ms = start_at_ms;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_start_time_is_oa_local_in_the_future_or_now() {
        assert_eq!(parse_start_at("now").unwrap(), None);
        assert_eq!(parse_start_at(" ").unwrap(), None);
        let later = clock::now() + time::Duration::days(2);
        let l = later.to_offset(clock::OA_OFFSET);
        let text = l
            .format(time::macros::format_description!(
                "[year]-[month]-[day] [hour]:[minute]"
            ))
            .unwrap();
        let ms = parse_start_at(&text).unwrap().unwrap();
        // Minutes only: the seconds are dropped, the offset is the OA's.
        assert_eq!(ms / 60_000, clock::to_ms(later) / 60_000);
        let with_t = parse_start_at(&text.replace(' ', "T")).unwrap();
        assert_eq!(with_t, Some(ms));
        for bad in ["2020-01-01T08:00", "08:00", "tomorrow", "2026-13-40 08:00"] {
            let e = parse_start_at(bad).unwrap_err();
            let coded = matches!(&e, CoreError::Refused(r)
                if r.code().is_some_and(|c| c.starts_with("start_at.")));
            assert!(coded, "{bad}: {e}");
        }
        let e = parse_start_at("2020-01-01T08:00").unwrap_err().to_string();
        assert!(e.contains("in the past"), "{e}");
    }

    #[test]
    fn test_phones_are_normalised_and_the_bad_one_named() {
        assert_eq!(
            parse_test_phones("0912345678, +84 987 654 321,0912345678").unwrap(),
            vec!["84912345678".to_string(), "84987654321".to_string()]
        );
        let e = parse_test_phones("0912345678,09x1").unwrap_err();
        let CoreError::Refused(r) = &e else {
            panic!("not coded: {e}")
        };
        // The phone's own reason follows, for the console's words.
        let code = r.code().unwrap_or_default();
        assert!(code.starts_with("test_phones.bad,phone."), "{code}");
        let e = e.to_string();
        assert!(e.contains("`09x1`") && e.starts_with("test phone"), "{e}");
        assert!(parse_test_phones(" , ").is_err());
        let many: Vec<String> = (0..11).map(|i| format!("09123456{i:02}")).collect();
        assert!(parse_test_phones(&many.join(",")).is_err());
    }

    #[test]
    fn a_schedule_reads_as_people_write_it() {
        // 2026-12-07 01:00 UTC is 08:00 in Vietnam.
        let ms = clock::to_ms(time::macros::datetime!(2026-12-07 01:00 UTC));
        assert_eq!(fmt_when(ms), "07/12/2026 08:00");
    }
}
