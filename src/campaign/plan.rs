//! The dry-run plan: what a run of a campaign would do and cost, worked out
//! from the store alone — no provider call is made.

use serde::Serialize;

use super::settings::RunSettings;
use super::summary::{RejectLine, Summary};
use crate::model::clock;
use crate::model::shell::shell_word;
use crate::provider::QuotaInfo;
use crate::store::{Campaign, QuotaKey, Store, StoreError};

/// The OA's quota as the provider reported it when asked (the pre-flight
/// asks; the plan and the run's quota row take it in).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct ProviderQuota {
    pub daily: u64,
    pub remaining: u64,
}

impl From<QuotaInfo> for ProviderQuota {
    fn from(q: QuotaInfo) -> Self {
        Self {
            daily: q.daily,
            remaining: q.remaining,
        }
    }
}

/// Rejects shown in the plan (all of them are in `report`).
const FIRST_REJECTS: usize = 5;

/// The settings a run would use, after flags > env > profile > file > defaults.
#[derive(Debug, Clone, Serialize)]
pub struct PlanSettings {
    pub config_file: Option<String>,
    pub profile: Option<String>,
    pub provider: String,
    pub base_url: Option<String>,
    pub oa_id: String,
    pub template_id: String,
    pub token_type: String,
    pub concurrency: usize,
    pub rate: Option<u32>,
    pub daily_quota: Option<u64>,
    pub in_doubt: String,
    pub send_window: Option<String>,
    pub token_fee: Option<u64>,
    pub message_fee: Option<u64>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Fees {
    pub token_fee: u64,
    pub message_fee: u64,
    pub tokens: u64,
    pub messages: u64,
    /// tokens × token_fee + messages × message_fee, in VND.
    pub total: u64,
}

#[derive(Debug, Serialize)]
pub struct Plan {
    pub campaign: String,
    pub dry_run: bool,
    pub rows: u64,
    pub accepted: u64,
    pub rejected: u64,
    pub first_rejects: Vec<RejectLine>,
    pub already_sent: u64,
    pub already_failed: u64,
    pub messages_to_send: u64,
    /// Open rows the frequency cap (`--min-interval-per-phone`) would skip now.
    pub would_skip_min_interval: u64,
    /// The campaign's deadline (`--not-after`), RFC 3339.
    pub not_after: Option<String>,
    /// Whether this provider buys a journey token per recipient.
    pub uses_tokens: bool,
    pub tokens_to_buy: u64,
    pub tokens_to_reuse: u64,
    /// None when no fee is configured (`token_fee`, `message_fee`).
    pub estimated_fees: Option<Fees>,
    pub quota_used_today: u64,
    /// None when no daily quota is known (`--daily-quota`).
    pub quota_days_needed: Option<u64>,
    pub send_window_open_now: Option<bool>,
    pub send_window_opens_at: Option<String>,
    pub settings: PlanSettings,
    pub next_step: String,
    /// Seconds this command spent importing the file (None: imported before).
    pub import_secs: Option<f64>,
    /// What the rows were checked against (the template, its source), or
    /// why they were not.
    pub template_check: String,
    /// CSV columns the template has no parameter for.
    pub template_warning: Option<String>,
    /// The OA's quota as the provider reported it (where it offers a query).
    pub provider_quota: Option<ProviderQuota>,
    /// The scheduled start (`--start-at`), RFC 3339.
    pub starts_at: Option<String>,
}

impl Plan {
    /// Take in the provider's live quota: the plan never counts on more
    /// than the smaller of it and `--daily-quota`.
    pub fn with_provider_quota(&mut self, q: ProviderQuota) {
        let ours = self
            .settings
            .daily_quota
            .filter(|l| *l > 0)
            .map(|l| (l, l.saturating_sub(self.quota_used_today)));
        let (limit, left) = match ours {
            Some((l, left)) => (l.min(q.daily), left.min(q.remaining)),
            None => (q.daily, q.remaining),
        };
        self.quota_days_needed = Some(quota_days(self.messages_to_send, limit, left));
        self.provider_quota = Some(q);
    }
}

/// Days needed to send `n` at `limit` a day when `left_today` remain today.
pub fn quota_days(n: u64, limit: u64, left_today: u64) -> u64 {
    if n == 0 || limit == 0 {
        return 0;
    }
    if n <= left_today {
        return 1;
    }
    let later = (n - left_today).div_ceil(limit);
    later + u64::from(left_today > 0)
}

/// The settings as the plan shows them.
fn shown_settings(s: &RunSettings) -> PlanSettings {
    PlanSettings {
        config_file: s.config_file.clone(),
        profile: s.profile.clone(),
        provider: s.provider.kind.as_str().to_string(),
        base_url: s.provider.stored_base_url().map(str::to_string),
        oa_id: s.provider.oa_id.clone(),
        template_id: s.template_id.clone(),
        token_type: s.token_type.clone(),
        concurrency: s.run.concurrency,
        rate: s.run.rate.map(std::num::NonZeroU32::get),
        daily_quota: s.run.daily_quota,
        in_doubt: s.run.in_doubt.as_str().to_string(),
        send_window: s.run.send_window.map(|w| w.to_string()),
        token_fee: s.token_fee,
        message_fee: s.message_fee,
    }
}

/// What a run with these settings would do: the same rows the runner takes
/// up (in-doubt ones included by the same rule), the same quota account.
pub fn build(store: &Store, campaign: &Campaign, s: &RunSettings) -> Result<Plan, StoreError> {
    let settings = shown_settings(s);
    let counts = store.state_counts(campaign.id)?;
    let include_doubt = s.provider.takes_up_doubtful_rows(s.run.in_doubt);
    let uses_tokens = s.provider.uses_tokens();
    let now_ms = clock::now_ms();
    let would_skip = store.would_skip_count(campaign, now_ms)?;
    let to_send = store
        .open_count(campaign.id, include_doubt)?
        .saturating_sub(would_skip);
    let (tokens_to_buy, tokens_to_reuse) = if !uses_tokens {
        (0, 0)
    } else {
        let margin = time::Duration::try_from(s.run.token_margin).unwrap_or(time::Duration::ZERO);
        let valid_after = clock::to_ms(clock::now() + margin);
        // Without a lasting account every phone needs a token: "no account"
        // never matches a stored one.
        let account = s.provider.lasting_token_account();
        store.token_plan(
            campaign,
            account.as_deref().unwrap_or(""),
            valid_after,
            include_doubt,
            now_ms,
        )?
    };
    let (first_rejects, _) = Summary::rejects_and_errors(store, campaign.id)?;
    let first_rejects = first_rejects.into_iter().take(FIRST_REJECTS).collect();
    let estimated_fees = match (settings.token_fee, settings.message_fee) {
        (None, None) => None,
        (t, m) => {
            let (token_fee, message_fee) = (t.unwrap_or(0), m.unwrap_or(0));
            Some(Fees {
                token_fee,
                message_fee,
                tokens: tokens_to_buy,
                messages: to_send,
                total: tokens_to_buy
                    .saturating_mul(token_fee)
                    .saturating_add(to_send.saturating_mul(message_fee)),
            })
        }
    };
    let used_today = store
        .quota_day(&QuotaKey::today(
            &s.provider.accounts("").quota,
            &campaign.oa_id,
        ))?
        .used;
    let quota_days_needed = s
        .run
        .daily_quota
        .filter(|q| *q > 0)
        .map(|q| quota_days(to_send, q, q.saturating_sub(used_today)));
    let now = clock::now();
    let (open_now, opens_at) = match s.run.send_window {
        Some(w) => (
            Some(w.contains(now)),
            Some(clock::fmt_local(w.next_open(now))),
        ),
        None => (None, None),
    };
    Ok(Plan {
        campaign: campaign.name.clone(),
        dry_run: true,
        rows: counts.total,
        accepted: counts.total - counts.rejected,
        rejected: counts.rejected,
        first_rejects,
        already_sent: counts.sent,
        already_failed: counts.failed,
        messages_to_send: to_send,
        would_skip_min_interval: would_skip,
        not_after: campaign
            .not_after_ms
            .map(|ms| clock::fmt_rfc3339(clock::from_ms(ms))),
        uses_tokens,
        tokens_to_buy,
        tokens_to_reuse,
        estimated_fees,
        quota_used_today: used_today,
        quota_days_needed,
        send_window_open_now: open_now,
        send_window_opens_at: opens_at,
        settings,
        next_step: format!("zns-batch resume {}", shell_word(&campaign.name)),
        starts_at: None,
        import_secs: None,
        template_check: match (&s.template, &s.template_note) {
            (Some(t), _) => t.summary(),
            (None, Some(note)) => format!("template {}: {note}", s.template_id),
            (None, None) => format!("template {}: not checked", s.template_id),
        },
        template_warning: s.template.as_ref().and_then(|t| {
            // A template that lists no parameters says nothing about columns.
            if t.params.is_empty() {
                return None;
            }
            crate::model::template_spec::check_columns(t, &campaign.template_keys).warning(t)
        }),
        provider_quota: None,
    })
}

/// `1234567` → `1,234,567`.
pub fn thousands(n: u64) -> String {
    let s = n.to_string();
    let mut out = String::with_capacity(s.len() + s.len() / 3);
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quota_days_count_what_is_left_today() {
        assert_eq!(quota_days(100, 30, 30), 4);
        assert_eq!(
            quota_days(100, 30, 0),
            4,
            "nothing left today: 4 later days"
        );
        assert_eq!(quota_days(100, 30, 10), 4, "10 today, then 30+30+30");
        assert_eq!(quota_days(101, 30, 10), 5);
        assert_eq!(quota_days(10, 30, 10), 1);
        assert_eq!(quota_days(0, 30, 30), 0);
        assert_eq!(thousands(1234567), "1,234,567");
        assert_eq!(thousands(999), "999");
    }
}
