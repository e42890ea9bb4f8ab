//! Typed reads for the faces: what `status`, the console's pages, the API
//! and `/metrics` show. A face gets answers, never a connection: the SQL
//! stays in the store, and a `None` answer means "no such campaign" (the
//! face says it its own way: a usage error, a 404).

use super::summary::{status_lines, CampaignStatusLine, ErrorLine};
use super::{CoreError, Workspace};
use crate::model::row_state::RowState;
use crate::store::{Campaign, Store};

/// One row as a page lists it (rejects, the preview, rows in doubt): its
/// line, its phone (masked) and its reason or its template data (JSON).
pub use crate::store::WebRow as RowView;

/// A reading connection to the state database. `serve` keeps one beside
/// its writing connection, so slow reads never hold up a callback (WAL).
pub struct Reader {
    pub(super) store: Store,
}

/// A campaign's messages over time for its chart: cumulative counts per
/// bucket from the first send, and the cost so far.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DeliveryChart {
    /// The first bucket's start and each bucket's length (ms).
    pub start_ms: i64,
    pub bucket_ms: i64,
    /// Cumulative, one value per bucket (all three the same length).
    pub sent: Vec<u64>,
    pub delivered: Vec<u64>,
    pub seen: Vec<u64>,
    /// Fees the provider reported for its rows (VND), if it reported any.
    pub fees_reported: Option<u64>,
    /// The plan at upload (console campaigns): messages and ≈ fee (VND).
    pub planned_messages: Option<u64>,
    pub planned_fee: Option<u64>,
}

impl DeliveryChart {
    /// The cost so far: what the provider reported, else the plan's price
    /// per message times the messages sent. None: neither is known.
    pub fn cost_so_far(&self) -> Option<u64> {
        if let Some(f) = self.fees_reported {
            return Some(f);
        }
        let sent = self.sent.last().copied().unwrap_or(0);
        match (self.planned_fee, self.planned_messages) {
            (Some(fee), Some(n)) if n > 0 => Some((fee as u128 * sent as u128 / n as u128) as u64),
            _ => None,
        }
    }
}

/// An OA's messages this month and their ≈ cost.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OaMonth {
    pub oa_id: String,
    /// `YYYY-MM`, the OA's days (Asia/Ho_Chi_Minh).
    pub month: String,
    pub messages: u64,
    /// At the plan's price per message of the OA's latest console campaign
    /// that had one; None: no price known.
    pub cost: Option<u64>,
    /// Messages counted today (the OA's day), and the daily limit known:
    /// the provider's announced one, else the console campaigns' largest.
    pub used_today: u64,
    pub limit: Option<u64>,
}

/// Bucket lengths a chart uses: the smallest that keeps a span in ≤ 24.
const BUCKETS_MS: [i64; 10] = [
    60_000,
    5 * 60_000,
    15 * 60_000,
    30 * 60_000,
    3_600_000,
    3 * 3_600_000,
    6 * 3_600_000,
    12 * 3_600_000,
    86_400_000,
    7 * 86_400_000,
];
/// At most this many buckets are drawn (later events count in the last).
const MAX_BUCKETS: usize = 48;

fn bucket_for(span_ms: i64) -> i64 {
    BUCKETS_MS
        .iter()
        .copied()
        .find(|b| span_ms / b < 24)
        .unwrap_or(BUCKETS_MS[BUCKETS_MS.len() - 1])
}

/// What `/metrics` reads from the database at each scrape.
#[derive(Debug, Default)]
pub struct MetricsFigures {
    /// (campaign, state, rows); states named as in `status --json`.
    pub rows: Vec<(String, String, i64)>,
    /// (oa_id, messages counted today, Asia/Ho_Chi_Minh).
    pub quota_used: Vec<(String, i64)>,
    /// Stored delivery events that match no row yet.
    pub unmatched: i64,
}

impl Workspace {
    /// A reading connection (the database is created if it is not there:
    /// `serve` starts on an empty state).
    pub fn reader(&self) -> Result<Reader, CoreError> {
        Ok(Reader {
            store: self.open_store()?,
        })
    }

    /// `status`: every campaign's line, or the named one's. `None` when
    /// there is no state database yet (reading never creates one).
    pub fn status(&self, only: Option<&str>) -> Result<Option<Vec<CampaignStatusLine>>, CoreError> {
        match self.existing_store()? {
            Some(store) => Ok(Some(status_lines(&store, only)?)),
            None => Ok(None),
        }
    }
}

impl Reader {
    fn campaign(&self, name: &str) -> Result<Option<Campaign>, CoreError> {
        Ok(self.store.find_campaign(name)?)
    }

    /// Every campaign's status line (the objects of `status --json`).
    pub fn status_all(&self) -> Result<Vec<CampaignStatusLine>, CoreError> {
        Ok(status_lines(&self.store, None)?)
    }

    /// One campaign's status line.
    pub fn status_of(&self, name: &str) -> Result<Option<CampaignStatusLine>, CoreError> {
        Ok(status_lines(&self.store, Some(name))?.into_iter().next())
    }

    pub fn exists(&self, name: &str) -> Result<bool, CoreError> {
        Ok(self.campaign(name)?.is_some())
    }

    /// One page of a campaign's rows in `state`, in file order, phones masked
    /// as people write them (`0912****678`).
    pub fn rows_page(
        &self,
        name: &str,
        state: RowState,
        offset: u64,
        limit: u64,
    ) -> Result<Option<Vec<RowView>>, CoreError> {
        let Some(c) = self.campaign(name)? else {
            return Ok(None);
        };
        let mut rows = self
            .store
            .rows_in_state(c.id, state.as_str(), offset, limit)?;
        for r in &mut rows {
            r.phone = crate::model::phone::mask_local(&r.phone);
        }
        Ok(Some(rows))
    }

    /// The campaign's template parameters (its CSV columns), in order.
    pub fn template_keys(&self, name: &str) -> Result<Option<Vec<String>>, CoreError> {
        Ok(self.campaign(name)?.map(|c| c.template_keys))
    }

    /// The campaign's test sends, newest first, phones masked.
    pub fn test_sends(
        &self,
        name: &str,
        limit: usize,
    ) -> Result<Option<Vec<super::TestSend>>, CoreError> {
        let Some(c) = self.campaign(name)? else {
            return Ok(None);
        };
        let mut list = self.store.test_sends(c.id, limit)?;
        for t in &mut list {
            t.phone = crate::model::phone::mask_local(&t.phone);
        }
        Ok(Some(list))
    }

    /// The most frequent errors of the campaign's rows.
    pub fn top_errors(
        &self,
        name: &str,
        limit: usize,
    ) -> Result<Option<Vec<ErrorLine>>, CoreError> {
        let Some(c) = self.campaign(name)? else {
            return Ok(None);
        };
        Ok(Some(ErrorLine::top(&self.store, c.id, limit)?))
    }

    /// The campaign's chart figures; `None` when there is no such campaign.
    pub fn delivery_chart(&self, name: &str) -> Result<Option<DeliveryChart>, CoreError> {
        let Some(c) = self.campaign(name)? else {
            return Ok(None);
        };
        let options = self.web_options(c.id);
        let mut chart = DeliveryChart {
            planned_messages: options.planned_messages,
            planned_fee: options.planned_fee,
            ..DeliveryChart::default()
        };
        let Some((first, last)) = self.store.sent_span(c.id)? else {
            return Ok(Some(chart));
        };
        let bucket = bucket_for(last - first);
        // Buckets start on a whole bucket (a round time on the axis).
        let start = first - first.rem_euclid(bucket.min(3_600_000));
        let counts = self.store.delivery_buckets(c.id, start, bucket)?;
        let n = counts
            .iter()
            .map(|b| b.bucket as usize + 1)
            .max()
            .unwrap_or(1)
            .min(MAX_BUCKETS);
        let (mut sent, mut delivered, mut seen) = (vec![0; n], vec![0; n], vec![0; n]);
        for b in counts {
            let i = (b.bucket as usize).min(n - 1);
            sent[i] += b.sent;
            delivered[i] += b.delivered;
            seen[i] += b.seen;
        }
        for v in [&mut sent, &mut delivered, &mut seen] {
            for i in 1..v.len() {
                v[i] += v[i - 1];
            }
        }
        let (fees, with_fee) = self.store.reported_fees(c.id)?;
        chart.start_ms = start;
        chart.bucket_ms = bucket;
        chart.sent = sent;
        chart.delivered = delivered;
        chart.seen = seen;
        chart.fees_reported = (with_fee > 0).then_some(fees);
        Ok(Some(chart))
    }

    /// The console's options for a campaign (defaults when none or unreadable).
    fn web_options(&self, campaign_id: i64) -> super::WebOptions {
        self.store
            .web_options(campaign_id)
            .ok()
            .flatten()
            .and_then(|s| serde_json::from_str(&s).ok())
            .unwrap_or_default()
    }

    /// Every OA's messages this month (the OA's days) and their ≈ cost.
    pub fn month_by_oa(&self) -> Result<Vec<OaMonth>, CoreError> {
        let today = crate::model::clock::today_key();
        let month = today.get(..7).unwrap_or(&today).to_string();
        let mut price: std::collections::HashMap<String, (u64, u64)> = Default::default();
        let mut limit: std::collections::HashMap<String, u64> = Default::default();
        let mut oas: Vec<String> = Vec::new();
        // Later campaigns overwrite earlier ones: the latest price counts.
        for c in self.store.list_campaigns()? {
            let o = self.web_options(c.id);
            if let (Some(fee), Some(n)) = (o.planned_fee, o.planned_messages) {
                if n > 0 {
                    price.insert(c.oa_id.clone(), (fee, n));
                }
            }
            if let Some(q) = o.daily_quota {
                let l = limit.entry(c.oa_id.clone()).or_insert(q);
                *l = (*l).max(q);
            }
            if !oas.contains(&c.oa_id) {
                oas.push(c.oa_id.clone());
            }
        }
        let month_counts: std::collections::HashMap<String, u64> = self
            .store
            .month_messages_by_oa(&month)?
            .into_iter()
            .collect();
        let today_counts: std::collections::HashMap<String, u64> =
            self.store.quota_used_by_oa(&today)?.into_iter().collect();
        let mut out = Vec::new();
        for oa_id in oas {
            let messages = month_counts.get(&oa_id).copied().unwrap_or(0);
            let announced = self.store.announced_quota(&oa_id, &today)?;
            out.push(OaMonth {
                cost: price
                    .get(&oa_id)
                    .map(|(fee, n)| (*fee as u128 * messages as u128 / *n as u128) as u64),
                month: month.clone(),
                messages,
                used_today: today_counts.get(&oa_id).copied().unwrap_or(0),
                limit: announced.or_else(|| limit.get(&oa_id).copied()),
                oa_id,
            });
        }
        Ok(out)
    }

    /// Rows per campaign and state, quota used today per OA, unmatched events.
    pub fn metrics(&self) -> Result<MetricsFigures, CoreError> {
        let store = &self.store;
        let mut rows = Vec::new();
        for c in store.list_campaigns()? {
            let counts = store.state_counts(c.id)?;
            // Field names are the state names (the same as `status --json`).
            if let Ok(serde_json::Value::Object(map)) = serde_json::to_value(&counts) {
                for (state, n) in map {
                    if state == "total" {
                        continue;
                    }
                    if let Some(n) = n.as_i64() {
                        rows.push((c.name.clone(), state, n));
                    }
                }
            }
        }
        let quota_used = store
            .quota_used_by_oa(&crate::model::clock::today_key())?
            .into_iter()
            .map(|(oa, n)| (oa, n as i64))
            .collect();
        let unmatched = store.unmatched_events()? as i64;
        Ok(MetricsFigures {
            rows,
            quota_used,
            unmatched,
        })
    }
}
