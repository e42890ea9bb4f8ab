//! Campaigns: what a campaign sends, to whom, through which provider, and
//! its lifecycle status.

use super::db::{params, unknown_value, DbError, OptionalExtension, Params, Row};
use serde::Serialize;

use super::{Result, Store};
use crate::model::clock;
use crate::model::row_state;

/// Campaign lifecycle.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum CampaignStatus {
    Importing,
    Ready,
    Running,
    Paused,
    Finished,
    /// Over: the deadline passed with rows unsent (they are `expired`).
    Expired,
    Aborted,
}

impl CampaignStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            CampaignStatus::Importing => "importing",
            CampaignStatus::Ready => "ready",
            CampaignStatus::Running => "running",
            CampaignStatus::Paused => "paused",
            CampaignStatus::Finished => "finished",
            CampaignStatus::Expired => "expired",
            CampaignStatus::Aborted => "aborted",
        }
    }
    const ALL: [CampaignStatus; 7] = [
        Self::Importing,
        Self::Ready,
        Self::Running,
        Self::Paused,
        Self::Finished,
        Self::Expired,
        Self::Aborted,
    ];

    fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|st| st.as_str() == s)
    }
}

/// A campaign as stored: what it sends, to whom, through which provider.
/// Secrets are never stored: the key comes from flags, env or config.
#[derive(Debug, Clone, Serialize)]
pub struct Campaign {
    pub id: i64,
    pub name: String,
    pub csv_path: String,
    pub csv_sha256: String,
    pub template_keys: Vec<String>,
    pub provider: String,
    pub base_url: Option<String>,
    pub oa_id: String,
    pub template_id: String,
    pub token_type: String,
    pub tracking_prefix: String,
    pub import_done: bool,
    pub imported_through_line: u64,
    pub status: CampaignStatus,
    pub last_error: Option<String>,
    pub in_doubt_policy: String,
    pub created_ms: i64,
    pub updated_ms: i64,
    /// Deadline: after it nothing more is sent and open rows expire.
    pub not_after_ms: Option<i64>,
    /// Frequency cap: skip a phone that had a message from this OA this recently.
    pub min_interval_ms: Option<i64>,
    /// `HH:MM-HH:MM` the last run or resume was given; resume keeps it.
    pub send_window: Option<String>,
}

impl Campaign {
    /// The checks a claim must pass, for one phone of this campaign.
    pub fn claim_gate(&self, phone: &str) -> ClaimGate {
        ClaimGate {
            oa_id: self.oa_id.clone(),
            phone: phone.to_string(),
            not_after_ms: self.not_after_ms,
            min_interval_ms: self.min_interval_ms,
            lease: None,
        }
    }

    pub fn past_deadline(&self, now_ms: i64) -> bool {
        row_state::deadline_passed(self.not_after_ms, now_ms)
    }
}

/// Run-safety checks applied in the same transaction that claims a row, so
/// neither a crash nor a concurrent campaign can slip past them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClaimGate {
    pub oa_id: String,
    pub phone: String,
    pub not_after_ms: Option<i64>,
    pub min_interval_ms: Option<i64>,
    /// The claimer's lease on the campaign, when it runs under one: a
    /// claim is refused once the lease is not live (see store/leases.rs).
    /// (Shared: every claim of the run carries it.)
    pub lease: Option<std::sync::Arc<super::LeaseFence>>,
}

pub struct NewCampaign<'a> {
    pub name: &'a str,
    pub csv_path: &'a str,
    pub csv_sha256: &'a str,
    pub template_keys: &'a [String],
    pub provider: &'a str,
    pub base_url: Option<&'a str>,
    pub oa_id: &'a str,
    pub template_id: &'a str,
    pub token_type: &'a str,
    pub tracking_prefix: &'a str,
    pub in_doubt_policy: &'a str,
    pub not_after_ms: Option<i64>,
    pub min_interval_ms: Option<i64>,
}

impl Store {
    pub fn find_campaign(&self, name: &str) -> Result<Option<Campaign>> {
        self.db
            .query_row(
                &format!("SELECT {CAMPAIGN_COLS} FROM campaigns WHERE name = ?1"),
                [name],
                campaign_from_row,
            )
            .optional()
            .map_err(|e| self.e(e))
    }

    pub fn campaign_names(&self) -> Result<Vec<String>> {
        self.texts("SELECT name FROM campaigns ORDER BY id")
    }

    pub fn list_campaigns(&self) -> Result<Vec<Campaign>> {
        self.db
            .query_map(
                &format!("SELECT {CAMPAIGN_COLS} FROM campaigns ORDER BY id"),
                (),
                campaign_from_row,
            )
            .map_err(|e| self.e(e))
    }

    pub fn create_campaign(&mut self, c: &NewCampaign<'_>) -> Result<Campaign> {
        let now = clock::now_ms();
        let keys = serde_json::to_string(c.template_keys).unwrap_or_else(|_| "[]".into());
        self.db
            .execute(
                "INSERT INTO campaigns (name, csv_path, csv_sha256, template_keys, provider, base_url, \
                 oa_id, template_id, token_type, tracking_prefix, status, in_doubt_policy, created_ms, updated_ms, \
                 not_after_ms, min_interval_ms) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, 'importing', ?11, ?12, ?12, ?13, ?14)",
                params![
                    c.name,
                    c.csv_path,
                    c.csv_sha256,
                    keys,
                    c.provider,
                    c.base_url,
                    c.oa_id,
                    c.template_id,
                    c.token_type,
                    c.tracking_prefix,
                    c.in_doubt_policy,
                    now,
                    c.not_after_ms,
                    c.min_interval_ms
                ],
            )
            .map_err(|e| self.e(e))?;
        self.find_campaign(c.name)?
            .ok_or_else(|| self.e(DbError::NoRows))
    }

    /// Settings a resume may change (never what identifies the campaign).
    pub fn update_campaign_settings(&mut self, id: i64, in_doubt_policy: &str) -> Result<()> {
        self.update_campaign(
            "UPDATE campaigns SET in_doubt_policy = ?2, updated_ms = ?3 WHERE id = ?1",
            params![id, in_doubt_policy, clock::now_ms()],
        )
    }

    /// Set or replace the deadline and frequency cap (given explicitly by the
    /// operator on `run`/`resume`; `None` keeps the stored value).
    pub fn update_run_safety(
        &mut self,
        id: i64,
        not_after_ms: Option<i64>,
        min_interval_ms: Option<i64>,
    ) -> Result<()> {
        self.update_campaign(
            "UPDATE campaigns SET not_after_ms = COALESCE(?2, not_after_ms), \
             min_interval_ms = COALESCE(?3, min_interval_ms), updated_ms = ?4 WHERE id = ?1",
            params![id, not_after_ms, min_interval_ms, clock::now_ms()],
        )
    }

    /// The window a resume keeps using unless told otherwise (None: no window).
    pub fn set_campaign_send_window(&mut self, id: i64, window: Option<&str>) -> Result<()> {
        self.update_campaign(
            "UPDATE campaigns SET send_window = ?2 WHERE id = ?1",
            params![id, window],
        )
    }

    /// Mend a campaign that sent nothing: its template id changes (the
    /// caller checked that no row was sent or may have been).
    pub fn set_campaign_template(&mut self, id: i64, template_id: &str) -> Result<()> {
        self.update_campaign(
            "UPDATE campaigns SET template_id = ?2, updated_ms = ?3 WHERE id = ?1",
            params![id, template_id, clock::now_ms()],
        )
    }

    pub fn set_campaign_status(
        &mut self,
        id: i64,
        status: CampaignStatus,
        last_error: Option<&str>,
    ) -> Result<()> {
        self.update_campaign(
            "UPDATE campaigns SET status = ?2, last_error = COALESCE(?3, last_error), updated_ms = ?4 WHERE id = ?1",
            params![id, status.as_str(), last_error, clock::now_ms()],
        )
    }
}

impl Store {
    /// One UPDATE of a campaign's own row.
    fn update_campaign(&self, sql: &str, params: impl Params) -> Result<()> {
        self.db.execute(sql, params).map_err(|e| self.e(e))?;
        Ok(())
    }
}

const CAMPAIGN_COLS: &str = "id, name, csv_path, csv_sha256, template_keys, provider, base_url, oa_id, \
    template_id, token_type, tracking_prefix, import_done, imported_through_line, status, last_error, \
    in_doubt_policy, created_ms, updated_ms, not_after_ms, min_interval_ms, send_window";

fn campaign_from_row(r: &Row<'_>) -> Result<Campaign, DbError> {
    let id: i64 = r.get(0)?;
    let keys: String = r.get(4)?;
    // A stored value this build cannot read, named by campaign and column.
    let bad = |name: &str, value: String| {
        unknown_value(format!("campaign {id} (table campaigns) {name}"), value)
    };
    let template_keys =
        serde_json::from_str(&keys).map_err(|_| bad("template_keys", keys.clone()))?;
    Ok(Campaign {
        id,
        name: r.get(1)?,
        csv_path: r.get(2)?,
        csv_sha256: r.get(3)?,
        template_keys,
        provider: r.get(5)?,
        base_url: r.get(6)?,
        oa_id: r.get(7)?,
        template_id: r.get(8)?,
        token_type: r.get(9)?,
        tracking_prefix: r.get(10)?,
        import_done: r.get::<i64>(11)? != 0,
        imported_through_line: r.get::<i64>(12)? as u64,
        status: {
            let status: String = r.get(13)?;
            CampaignStatus::parse(&status).ok_or_else(|| bad("status", status))?
        },
        last_error: r.get(14)?,
        in_doubt_policy: r.get(15)?,
        created_ms: r.get(16)?,
        updated_ms: r.get(17)?,
        not_after_ms: r.get(18)?,
        min_interval_ms: r.get(19)?,
        send_window: r.get(20)?,
    })
}

#[cfg(test)]
mod tests {
    use super::super::test_pg::on_both;
    use super::super::test_support::*;
    use super::super::*;

    #[test]
    fn store_campaigns_an_unknown_status_is_an_error_naming_the_campaign_and_the_value() {
        on_both(
            "store_campaigns_an_unknown_status_is_an_error_naming_the_campaign_and_the_value",
            |store, _| {
                let c = new_campaign(store, "c1");
                store
                    .db
                    .execute(
                        "UPDATE campaigns SET status = 'sleeping' WHERE id = ?1",
                        [c.id],
                    )
                    .unwrap();
                let e = store.find_campaign("c1").unwrap_err();
                assert_eq!(e.kind(), StoreErrorKind::Corrupt, "{e}");
                let msg = e.to_string();
                assert!(
                    msg.contains(&format!("campaign {} (table campaigns) status", c.id))
                        && msg.contains("`sleeping`"),
                    "{msg}"
                );
                assert_eq!(
                    store.list_campaigns().unwrap_err().kind(),
                    StoreErrorKind::Corrupt
                );
            },
        );
    }

    #[test]
    fn store_campaigns_are_created_found_listed_and_updated() {
        on_both(
            "store_campaigns_are_created_found_listed_and_updated",
            |store, _| {
                let a = new_campaign(store, "a");
                let b = new_campaign(store, "b");
                assert!(b.id > a.id);
                assert_eq!(a.template_keys, vec!["name", "amount"]);
                assert_eq!(a.status, CampaignStatus::Importing);
                assert!(!a.import_done);
                store.update_run_safety(a.id, Some(99), None).unwrap();
                store
                    .set_campaign_send_window(a.id, Some("08:00-20:00"))
                    .unwrap();
                store
                    .set_campaign_status(a.id, CampaignStatus::Paused, Some("why"))
                    .unwrap();
                store
                    .set_campaign_status(a.id, CampaignStatus::Running, None)
                    .unwrap();
                let a = store.find_campaign("a").unwrap().unwrap();
                assert_eq!(
                    (a.not_after_ms, a.min_interval_ms, a.send_window.as_deref()),
                    (Some(99), None, Some("08:00-20:00"))
                );
                assert_eq!(
                    (a.status, a.last_error.as_deref()),
                    (CampaignStatus::Running, Some("why"))
                );
                assert_eq!(store.campaign_names().unwrap(), vec!["a", "b"]);
                assert_eq!(store.list_campaigns().unwrap().len(), 2);
                assert!(store.find_campaign("nope").unwrap().is_none());
                // A repeated name is refused by the UNIQUE constraint on both.
                assert!(store
                    .create_campaign(&NewCampaign {
                        name: "a",
                        csv_path: "x.csv",
                        csv_sha256: "abc",
                        template_keys: &[],
                        provider: "sandbox",
                        base_url: None,
                        oa_id: "1",
                        template_id: "100",
                        token_type: "t",
                        tracking_prefix: "p",
                        in_doubt_policy: "resend",
                        not_after_ms: None,
                        min_interval_ms: None,
                    })
                    .is_err());
            },
        );
    }
}
