//! Journey tokens: one per (account, OA, phone, token type), reused by
//! every row and campaign that sends to the phone while it is valid.

use super::db::{params, Db, DbError, OptionalExtension};

use super::{Campaign, Result, Store};
use crate::model::clock;
use crate::model::row_state::{open_states_sql, states_sql, RowState};
use crate::provider::JourneyToken;

/// Key of a reusable journey token.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct TokenKey {
    /// Provider plus base URL: a token is only valid where it was bought.
    pub account: String,
    pub oa_id: String,
    pub phone: String,
    pub token_type: String,
}

impl Store {
    /// For the dry-run plan: distinct phones among the rows still to send
    /// that need a token bought, and those whose stored token is reusable
    /// (valid past `valid_after_ms`). A phone repeated in the file needs one.
    /// Rows the per-phone frequency cap would skip at `now_ms` buy and reuse
    /// nothing (the same rule as [`Store::would_skip_count`]).
    pub fn token_plan(
        &self,
        campaign: &Campaign,
        account: &str,
        valid_after_ms: i64,
        include_in_doubt: bool,
        now_ms: i64,
    ) -> Result<(u64, u64)> {
        let states = if include_in_doubt {
            open_states_sql("r.")
        } else {
            states_sql(
                &[RowState::Pending, RowState::TokenReady, RowState::InFlight],
                "r.",
            )
        };
        // No reusable token for this OA at all (a first campaign, or no
        // lasting account): every phone to send buys one, counted from the
        // counters instead of a pass over the rows.
        let reusable_any: bool = self
            .db
            .prepare_cached(
                "SELECT 1 FROM tokens WHERE account = ?1 AND oa_id = ?2 \
                 AND token_type = ?3 AND expires_ms > ?4 AND COALESCE(status, '') <> 'N' LIMIT 1",
            )
            .and_then(|mut s| {
                s.exists(params![
                    account,
                    campaign.oa_id,
                    campaign.token_type,
                    valid_after_ms
                ])
            })
            .map_err(|e| self.e(e))?;
        if !reusable_any && !self.has_repeated_phones(campaign.id)? {
            let open = self.state_counts(campaign.id)?.to_send(include_in_doubt);
            let skipped = self.would_skip_count(campaign, now_ms)?;
            return Ok((open.saturating_sub(skipped), 0));
        }
        let not_skipped = match campaign.min_interval_ms {
            Some(interval) => format!(
                " AND NOT EXISTS (SELECT 1 FROM phone_sends p WHERE p.oa_id = ?2 \
                   AND p.phone = r.phone AND p.row_id <> r.id AND p.last_ms > {})",
                now_ms.saturating_sub(interval)
            ),
            None => String::new(),
        };
        // One row per phone unless the campaign allows repeats: then no
        // GROUP BY (a sort of every open row, in memory). Numbers, not
        // booleans, and SUM cast from PostgreSQL's NUMERIC, so one text
        // runs on both.
        let sql = if self.has_repeated_phones(campaign.id)? {
            format!(
                "SELECT CAST(COALESCE(SUM(1 - reusable), 0) AS BIGINT), \
                        CAST(COALESCE(SUM(reusable), 0) AS BIGINT) FROM ( \
                   SELECT r.phone, MAX(CASE WHEN t.phone IS NULL THEN 0 ELSE 1 END) AS reusable \
                   FROM rows r LEFT JOIN tokens t \
                     ON t.account = ?1 AND t.oa_id = ?2 AND t.phone = r.phone AND t.token_type = ?3 \
                    AND t.expires_ms > ?5 AND COALESCE(t.status, '') <> 'N' \
                   WHERE r.campaign_id = ?4 AND {states}{not_skipped} GROUP BY r.phone) AS per_phone"
            )
        } else {
            format!(
                "SELECT COUNT(*) - COUNT(t.phone), COUNT(t.phone) FROM rows r LEFT JOIN tokens t \
                   ON t.account = ?1 AND t.oa_id = ?2 AND t.phone = r.phone AND t.token_type = ?3 \
                  AND t.expires_ms > ?5 AND COALESCE(t.status, '') <> 'N' \
                 WHERE r.campaign_id = ?4 AND {states}{not_skipped}"
            )
        };
        self.db
            .query_row(
                &sql,
                params![
                    account,
                    campaign.oa_id,
                    campaign.token_type,
                    campaign.id,
                    valid_after_ms
                ],
                |r| Ok((r.get::<i64>(0)? as u64, r.get::<i64>(1)? as u64)),
            )
            .map_err(|e| self.e(e))
    }

    /// The stored token for a key (checked again under the per-phone lock so
    pub fn token(&self, key: &TokenKey) -> Result<Option<JourneyToken>> {
        self.db
            .prepare_cached(
                "SELECT journey_id, provider_ref, token, expires_ms, status FROM tokens \
                 WHERE account = ?1 AND oa_id = ?2 AND phone = ?3 AND token_type = ?4",
            )
            .and_then(|mut stmt| {
                stmt.query_row(
                    params![key.account, key.oa_id, key.phone, key.token_type],
                    |r| {
                        Ok(JourneyToken {
                            journey_id: r.get(0)?,
                            provider_ref: r.get(1)?,
                            token: r.get(2)?,
                            expires_at: clock::from_ms(r.get(3)?),
                            status: r.get(4)?,
                        })
                    },
                )
            })
            .optional()
            .map_err(|e| self.e(e))
    }
}

/// Store (or replace) the token for its key: what a run's writer and a
/// test send both do with a token they bought.
pub(super) fn store_token(
    tx: &Db,
    key: &TokenKey,
    token: &JourneyToken,
    now: i64,
) -> Result<(), DbError> {
    tx.prepare_cached(
        "INSERT INTO tokens (account, oa_id, phone, token_type, journey_id, provider_ref, token, expires_ms, status, created_ms) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10) \
         ON CONFLICT (account, oa_id, phone, token_type) DO UPDATE SET \
         journey_id = excluded.journey_id, provider_ref = excluded.provider_ref, token = excluded.token, \
         expires_ms = excluded.expires_ms, status = excluded.status, created_ms = excluded.created_ms",
    )?
    .execute(params![
        key.account,
        key.oa_id,
        key.phone,
        key.token_type,
        token.journey_id,
        token.provider_ref,
        token.token,
        clock::to_ms(token.expires_at),
        token.status,
        now
    ])?;
    Ok(())
}
