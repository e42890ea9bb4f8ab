//! The audit log: who did (or was refused) what, when, on which campaign.
//! Appended only; the table is made by the users migration (users.rs).

use super::db::params;
use super::rows::from_row;

use super::{Result, Store};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditRecord {
    pub id: i64,
    pub at_ms: i64,
    /// `user:anh`, `token:nightly`, `admin-token`, `os:root`, `local`.
    pub actor: String,
    pub action: String,
    pub campaign: Option<String>,
    pub detail: String,
    /// `allowed` or `refused`.
    pub outcome: String,
}

/// One entry to append.
#[derive(Debug, Clone)]
pub struct NewAudit<'a> {
    pub actor: &'a str,
    pub action: &'a str,
    pub campaign: Option<&'a str>,
    pub detail: &'a str,
    pub outcome: &'a str,
}

impl Store {
    pub fn append_audit(&mut self, a: &NewAudit<'_>) -> Result<i64> {
        // RETURNING, not last_insert_rowid(): the same text on both.
        self.db
            .query_row(
                "INSERT INTO audit (at_ms, actor, action, campaign, detail, outcome) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6) RETURNING id",
                params![
                    crate::model::clock::now_ms(),
                    a.actor,
                    a.action,
                    a.campaign,
                    a.detail,
                    a.outcome
                ],
                |r| r.get(0),
            )
            .map_err(|e| self.e(e))
    }

    /// Newest first: every entry, or one campaign's; `before` (an id)
    /// pages back.
    pub fn audit_page(
        &self,
        campaign: Option<&str>,
        before: Option<i64>,
        limit: u64,
    ) -> Result<Vec<AuditRecord>> {
        // The CASTs type `?1 IS NULL` for PostgreSQL (it cannot tell).
        self.db
            .prepare_cached(
                "SELECT id, at_ms, actor, action, campaign, detail, outcome FROM audit \
                 WHERE (CAST(?1 AS TEXT) IS NULL OR campaign = ?1) \
                   AND (CAST(?2 AS BIGINT) IS NULL OR id < ?2) \
                 ORDER BY id DESC LIMIT ?3",
            )
            .and_then(|mut stmt| {
                stmt.query_map(params![campaign, before, limit as i64], |r| {
                    Ok(from_row!(r => AuditRecord { id, at_ms, actor, action, campaign, detail, outcome }))
                })
            })
            .map_err(|e| self.e(e))
    }
}

#[cfg(test)]
mod tests {
    use super::super::test_pg::on_both;
    use super::NewAudit;

    #[test]
    fn newest_first_by_campaign_and_paged() {
        on_both("newest_first_by_campaign_and_paged", |s, _| {
            let mut ids = Vec::new();
            for (i, c) in [Some("a"), None, Some("a"), Some("b")].iter().enumerate() {
                ids.push(
                    s.append_audit(&NewAudit {
                        actor: "user:anh",
                        action: "start",
                        campaign: *c,
                        detail: &i.to_string(),
                        outcome: "allowed",
                    })
                    .unwrap(),
                );
            }
            let all = s.audit_page(None, None, 10).unwrap();
            assert_eq!(all.len(), 4);
            assert_eq!(all[0].detail, "3");
            // The ids returned are the entries' own.
            assert_eq!(
                all.iter().map(|r| r.id).collect::<Vec<_>>(),
                ids.iter().rev().copied().collect::<Vec<_>>()
            );
            assert_eq!(all[2].campaign, None);
            let a = s.audit_page(Some("a"), None, 10).unwrap();
            assert_eq!(
                a.iter().map(|r| r.detail.as_str()).collect::<Vec<_>>(),
                ["2", "0"]
            );
            let older = s.audit_page(None, Some(all[1].id), 10).unwrap();
            assert_eq!(older.len(), 2);
            assert_eq!(older[0].detail, "1");
            assert_eq!(s.audit_page(None, None, 1).unwrap().len(), 1);
        });
    }
}
