//! The asynchronous half of the template pre-flight and the live quota:
//! the provider calls made before `prepare` (template info) and at the
//! start of a send or a dry-run plan (the OA's quota). Read-only calls
//! only: no token is bought and nothing is sent here.

use super::plan::{Plan, ProviderQuota};
use super::settings::{self, Endpoint, RunSettings};
use super::{connect, usage, CoreError, Mode, Request, Workspace};
use crate::engine::policy;
use crate::model::clock;
use crate::model::template_spec::{ParamSpec, TemplateSource, TemplateSpec};
use crate::provider::{ErrorClass, ProviderError, TemplateInfo};
use crate::store::QuotaKey;

/// A provider's template info as the pre-flight checks it.
pub fn spec_from_info(info: TemplateInfo, fetched_ms: i64) -> TemplateSpec {
    TemplateSpec {
        template_id: info.template_id,
        enabled: Some(info.enabled),
        status: (!info.status_raw.is_empty()).then_some(info.status_raw),
        params: info
            .params
            .into_iter()
            .map(|p| ParamSpec {
                name: p.name,
                required: p.required,
                min_length: p.min_length,
                max_length: p.max_length,
                accept_null: p.accept_null,
            })
            .collect(),
        source: TemplateSource::Fetched { at_ms: fetched_ms },
    }
}

/// Whether this provider endpoint can be asked read-only questions that
/// mean something later: an embedded sandbox is new every run.
fn lasting_endpoint(s: &RunSettings) -> bool {
    !matches!(s.provider.endpoint, Endpoint::Embedded)
}

/// The message for template info that could not be fetched, with the
/// user's choices; unknown template → exit 2, rejected key → exit 1,
/// anything else (network) → exit 1.
fn fetch_failed(s: &RunSettings, e: &ProviderError) -> CoreError {
    let kind = s.provider.kind;
    let id = &s.template_id;
    let skip = "or pass --skip-template-check to send without the pre-flight (rows the template refuses then fail at the provider, after their token is bought)";
    match e.class {
        ErrorClass::AbortConfig | ErrorClass::FailRow => super::refused(
            "settings.unknown_template",
            [("template_id", id.to_string()), ("provider", kind.to_string())],
            format!(
                "{kind} does not know template {id} for OA {}: {e}. Check --template-id, {skip}",
                s.provider.oa_id
            ),
        ),
        // The message says how to authorize the OA again.
        ErrorClass::Reauthorize => CoreError::Fatal(anyhow::anyhow!("{e}")),
        ErrorClass::AbortAuth => CoreError::Fatal(anyhow::anyhow!(
            "{kind} rejected the credentials when asked for template {id}'s info: {e}. Check the API key, {skip}"
        )),
        _ => CoreError::Fatal(anyhow::anyhow!(
            "cannot fetch template {id}'s info from {kind}: {e}. Try again later, {skip}"
        )),
    }
}

/// `resume --template-id NEW`: the campaign as it would be with the new
/// template, when it may change — aborted, and not one message sent or
/// possibly sent. Otherwise the error says what to do instead.
pub(super) fn mended(
    store: &crate::store::Store,
    c: &crate::store::Campaign,
    req: &Request,
) -> Result<Option<crate::store::Campaign>, CoreError> {
    let Some(new) = req.template_id.as_deref().filter(|t| *t != c.template_id) else {
        return Ok(None);
    };
    let name = super::shell_word(&c.name);
    let counts = store.state_counts(c.id)?;
    let touched = counts.sent + counts.in_doubt + counts.in_flight;
    if touched > 0 {
        return Err(usage(format!(
            "campaign `{}` has sent (or may have sent) {touched} messages with template {}, so its template cannot change; \
             send the rest under a new campaign name: zns-batch run FILE --campaign NEW-NAME --template-id {new}",
            c.name, c.template_id
        )));
    }
    if c.status != crate::store::CampaignStatus::Aborted {
        return Err(usage(format!(
            "campaign `{}` sends with template {}; only a campaign stopped by a refusal (aborted) that sent nothing may change it. \
             Resume it as it is (zns-batch resume {name}), or start a new campaign name with --template-id {new}",
            c.name, c.template_id
        )));
    }
    let kind = crate::provider::ProviderKind::parse(&c.provider).ok_or_else(|| {
        usage(format!(
            "campaign `{}` names an unknown provider `{}`",
            c.name, c.provider
        ))
    })?;
    kind.check_template_id(new).map_err(CoreError::Refused)?;
    let mut mended = c.clone();
    mended.template_id = new.to_string();
    Ok(Some(mended))
}

impl Workspace {
    /// Before `prepare`: find the template's parameters where the config
    /// file declares none — the state database's cache (unless
    /// `--refresh-template`), else the provider's template info (then
    /// cached with its fetch time) — and put them in `req.template`.
    /// Nothing is fetched with `--skip-template-check`, for a provider
    /// without template info, or for the embedded sandbox.
    pub async fn preflight(&self, req: &mut Request, mode: Mode) -> Result<(), CoreError> {
        if req.template_check.skip_template_check {
            return Ok(());
        }
        settings::check_campaign_name(&req.campaign)?;
        let stored = match mode {
            Mode::Run => match self.existing_store()? {
                Some(store) => store.find_campaign(&req.campaign)?,
                None => None,
            },
            Mode::Resume => {
                let (store, c) = self.find(&req.campaign)?;
                Some(mended(&store, &c, req)?.unwrap_or(c))
            }
        };
        let s = settings::resolve(req, self.config_source(), stored.as_ref())?;
        if s.template.is_some()
            || !s.provider.kind.capabilities().template_info
            || !lasting_endpoint(&s)
        {
            return Ok(());
        }
        let account = s.provider.accounts("").tokens;
        if !req.template_check.refresh_template {
            if let Some(store) = self.existing_store()? {
                if let Some(spec) = store.cached_template(&account, &s.template_id)? {
                    req.template = Some(spec);
                    return Ok(());
                }
            }
        }
        let conn = connect::connect(&s, self).await?;
        let info = policy::retried(s.run.retries(), || {
            conn.provider
                .template_info(&s.provider.oa_id, &s.template_id)
        })
        .await
        .map_err(|e| fetch_failed(&s, &e))?;
        let Some(info) = info else {
            return Ok(());
        };
        let now = clock::now_ms();
        let spec = spec_from_info(info, now);
        self.open_store()?.save_template(&account, &spec, now)?;
        req.template = Some(spec);
        Ok(())
    }

    /// The OA's quota where the provider offers a query (not for the
    /// embedded sandbox, new every run). A failed query is logged and
    /// read as "unknown": the sends themselves meet the same trouble and
    /// handle it.
    pub async fn provider_quota(
        &self,
        s: &RunSettings,
        provider: Option<&dyn crate::provider::Provider>,
    ) -> Result<Option<ProviderQuota>, CoreError> {
        if !s.provider.kind.capabilities().quota_query || !lasting_endpoint(s) {
            return Ok(None);
        }
        let conn;
        let provider = match provider {
            Some(p) => p,
            None => {
                conn = connect::connect(s, self).await?;
                conn.provider.as_ref()
            }
        };
        match policy::retried(s.run.retries(), || provider.quota(&s.provider.oa_id)).await {
            Ok(q) => Ok(q.map(ProviderQuota::from)),
            Err(e) => {
                tracing::warn!("cannot read the OA's quota from {}: {e}", s.provider.kind);
                Ok(None)
            }
        }
    }

    /// The dry-run plan with the provider's live quota (read-only).
    pub async fn live_plan(&self, p: &super::Prepared) -> Result<Plan, CoreError> {
        let mut plan = self.plan(p)?;
        if let Some(q) = self.provider_quota(&p.settings, None).await? {
            plan.with_provider_quota(q);
        }
        Ok(plan)
    }
}

/// Record the provider's figures for today in the quota table.
pub(super) fn record(
    store: &mut crate::store::Store,
    key: &QuotaKey,
    q: ProviderQuota,
) -> Result<(), CoreError> {
    store.record_provider_quota(key, q.daily, q.remaining)?;
    Ok(())
}
