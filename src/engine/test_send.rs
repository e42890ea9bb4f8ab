//! Test sends: the first accepted row's data sent to a few test phones
//! before the campaign itself. Each message is real (a quota unit is
//! taken, a journey token is bought unless a usable one is stored) but
//! belongs to no row: it is recorded in `test_sends` only, never in the
//! campaign's rows, counts or report.

use std::sync::Arc;

use crate::engine::runner::Accounts;
use crate::model::clock;
use crate::model::phone::mask;
use crate::provider::{JourneyToken, Provider, SendRequest, TokenRequest};
use crate::store::{Campaign, QuotaKey, Store, StoreError, TestSend, TokenKey};

/// What the test sends need besides the phones.
pub struct TestInput<'a> {
    pub campaign: &'a Campaign,
    pub accounts: &'a Accounts,
    pub provider: Arc<dyn Provider>,
    /// The first accepted row's values, in the campaign's key order.
    pub values: &'a [String],
    pub daily_quota: Option<u64>,
    /// A stored token is reused only if valid this much longer.
    pub token_margin: std::time::Duration,
}

/// Send one test message to each phone (normalised), in order, and
/// record each outcome. One attempt each: a failure is recorded with the
/// provider's reason, and the person can try again.
pub async fn send_tests(
    store: &mut Store,
    input: &TestInput<'_>,
    phones: &[String],
) -> Result<Vec<TestSend>, StoreError> {
    let c = input.campaign;
    let data: Vec<(&str, &str)> = c
        .template_keys
        .iter()
        .map(String::as_str)
        .zip(input.values.iter().map(String::as_str))
        .collect();
    let uses_tokens = input.provider.capabilities().tokens;
    let mut out = Vec::with_capacity(phones.len());
    for phone in phones {
        let quota = QuotaKey::today(&input.accounts.quota, &c.oa_id);
        let mut rec = TestSend {
            phone: phone.clone(),
            at_ms: clock::now_ms(),
            outcome: "not_sent".into(),
            msg_id: None,
            error: None,
        };
        if !store.take_quota_unit(&quota, input.daily_quota)? {
            rec.error = Some(format!(
                "the daily quota of {} is used up for today: nothing was sent",
                quota.day
            ));
            store.add_test_send(c.id, &rec)?;
            out.push(rec);
            continue;
        }
        let token = if uses_tokens {
            match token_for(store, input, phone).await? {
                Ok(t) => Some(t),
                Err(e) => {
                    store.give_back_quota_unit(&quota)?;
                    rec.outcome = "failed".into();
                    rec.error = Some(format!("journey token not bought: {e}"));
                    store.add_test_send(c.id, &rec)?;
                    out.push(rec);
                    continue;
                }
            }
        } else {
            None
        };
        let tracking_id = format!(
            "{}t{}",
            c.tracking_prefix,
            hex::encode(rand::random::<[u8; 6]>())
        );
        let req = SendRequest {
            oa_id: &c.oa_id,
            phone,
            template_id: &c.template_id,
            template_data: &data,
            tracking_id: &tracking_id,
            token: token.as_ref(),
            campaign: &c.name,
        };
        rec.at_ms = clock::now_ms();
        match input.provider.send(&req).await {
            Ok(o) => {
                rec.outcome = "sent".into();
                rec.msg_id = o.msg_id;
                tracing::info!(phone = %mask(phone), campaign = %c.name, "test message sent");
            }
            Err(e) => {
                // The unit stays taken when the request may have reached
                // the provider (it may have been sent and charged).
                if !e.in_doubt {
                    store.give_back_quota_unit(&quota)?;
                }
                rec.outcome = "failed".into();
                rec.error = Some(e.to_string());
                tracing::warn!(phone = %mask(phone), campaign = %c.name, "test message failed: {e}");
            }
        }
        store.add_test_send(c.id, &rec)?;
        out.push(rec);
    }
    Ok(out)
}

/// The stored token for the phone if still usable, else one bought now
/// and stored before it is used (it was paid for).
async fn token_for(
    store: &mut Store,
    input: &TestInput<'_>,
    phone: &str,
) -> Result<Result<JourneyToken, crate::provider::ProviderError>, StoreError> {
    let c = input.campaign;
    let key = TokenKey {
        account: input.accounts.tokens.clone(),
        oa_id: c.oa_id.clone(),
        phone: phone.to_string(),
        token_type: c.token_type.clone(),
    };
    let margin = time::Duration::try_from(input.token_margin).unwrap_or(time::Duration::ZERO);
    if let Some(t) = store.token(&key)? {
        if t.status.as_deref() != Some("N") && t.expires_at > clock::now() + margin {
            return Ok(Ok(t));
        }
    }
    let req = TokenRequest {
        oa_id: &c.oa_id,
        phone,
        token_type: &c.token_type,
    };
    match input.provider.create_token(&req).await {
        Ok(t) => {
            store.save_token(&key, &t)?;
            Ok(Ok(t))
        }
        Err(e) => Ok(Err(e)),
    }
}
