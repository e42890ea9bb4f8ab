//! Cache of fetched template info (migration 5): per provider account and
//! template id, the spec as JSON and when it was fetched, so a resume or a
//! `validate --template-id` checks the file without calling the provider.
//! `--refresh-template` fetches again and saves over it.

use super::db::{params, OptionalExtension};

use super::{Result, Store};
use crate::model::template_spec::{TemplateSource, TemplateSpec};

impl Store {
    /// The cached spec for `template_id` at `account` (provider plus base
    /// URL, as for tokens), its source `Fetched { at_ms }`. A row this build
    /// cannot read (written by another version) counts as not cached: the
    /// caller fetches again.
    pub fn cached_template(
        &self,
        account: &str,
        template_id: &str,
    ) -> Result<Option<TemplateSpec>> {
        let row: Option<(String, i64)> = self
            .db
            .query_row(
                "SELECT spec, fetched_ms FROM template_cache
                 WHERE account = ?1 AND template_id = ?2",
                params![account, template_id],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()
            .map_err(|e| self.e(e))?;
        Ok(row.and_then(|(json, at_ms)| {
            let mut spec: TemplateSpec = serde_json::from_str(&json).ok()?;
            spec.source = TemplateSource::Fetched { at_ms };
            Some(spec)
        }))
    }

    /// Save (or replace) the spec fetched for `account` at `fetched_ms`.
    pub fn save_template(
        &mut self,
        account: &str,
        spec: &TemplateSpec,
        fetched_ms: i64,
    ) -> Result<()> {
        let mut stored = spec.clone();
        stored.source = TemplateSource::Fetched { at_ms: fetched_ms };
        // Serialising plain strings, numbers and bools cannot fail.
        let json = serde_json::to_string(&stored).unwrap_or_default();
        self.db
            .execute(
                "INSERT INTO template_cache (account, template_id, spec, fetched_ms)
                 VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT (account, template_id)
                 DO UPDATE SET spec = excluded.spec, fetched_ms = excluded.fetched_ms",
                params![account, spec.template_id, json, fetched_ms],
            )
            .map_err(|e| self.e(e))?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::super::test_pg::on_both;
    use super::*;
    use crate::model::template_spec::ParamSpec;

    fn spec(max: u32) -> TemplateSpec {
        TemplateSpec {
            template_id: "217489".into(),
            enabled: Some(true),
            status: Some("ENABLE".into()),
            params: vec![ParamSpec {
                name: "customer_name".into(),
                required: true,
                min_length: None,
                max_length: Some(max),
                accept_null: false,
            }],
            source: TemplateSource::Declared,
        }
    }

    #[test]
    fn a_fetched_template_is_cached_per_account_and_replaced_on_refresh() {
        on_both(
            "a_fetched_template_is_cached_per_account_and_replaced_on_refresh",
            |store, place| {
                assert_eq!(store.cached_template("zalo", "217489").unwrap(), None);

                store.save_template("zalo", &spec(30), 1_000).unwrap();
                let got = store.cached_template("zalo", "217489").unwrap().unwrap();
                assert_eq!(got.source, TemplateSource::Fetched { at_ms: 1_000 });
                assert_eq!(got.params, spec(30).params);
                assert_eq!(got.status.as_deref(), Some("ENABLE"));
                assert_eq!(store.cached_template("esms", "217489").unwrap(), None);
                assert_eq!(store.cached_template("zalo", "217490").unwrap(), None);

                store.save_template("zalo", &spec(40), 2_000).unwrap();
                // Persisted, and the refresh replaced the first fetch.
                let store = place.open();
                let got = store.cached_template("zalo", "217489").unwrap().unwrap();
                assert_eq!(got.source, TemplateSource::Fetched { at_ms: 2_000 });
                assert_eq!(got.params[0].max_length, Some(40));

                // A row this build cannot read is a cache miss, not an error.
                store
                    .db
                    .execute(
                        "UPDATE template_cache SET spec = '{\"old\":1}' WHERE account = 'zalo'",
                        (),
                    )
                    .unwrap();
                assert_eq!(store.cached_template("zalo", "217489").unwrap(), None);
            },
        );
    }
}
