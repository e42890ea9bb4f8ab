//! Journey tokens within a run: reuse a usable one, else buy one under the
//! phone's lock, and store it before it is used (tokens are charged: one key
//! is never bought twice).

use std::sync::atomic::Ordering;
use std::sync::Arc;

use super::failure::{call_with_retry, CallFailure};
use super::Ctx;
use crate::model::phone::mask;
use crate::provider::{JourneyToken, TokenCheck, TokenRequest};
use crate::store::{StoreError, TokenKey, WorkRow, WriteOp};

pub(super) struct PhoneLock<'a> {
    ctx: &'a Ctx,
    pub(super) phone: String,
    lock: Arc<tokio::sync::Mutex<()>>,
    guard: Option<tokio::sync::OwnedMutexGuard<()>>,
    /// Another row held the lock first (and may have bought a token).
    waited: bool,
}

impl Drop for PhoneLock<'_> {
    fn drop(&mut self) {
        self.guard.take();
        let mut map = self
            .ctx
            .token_locks
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        // Only the map and we hold it: nobody waits, so the entry can go.
        if Arc::strong_count(&self.lock) == 2 {
            map.remove(&self.phone);
        }
    }
}

/// A token just bought for a row and not stored yet. Its phone stays
/// locked until it is stored, so no other row of this run buys another.
/// Usually stored with the row's `in_flight` mark (see [`save_bought`] for
/// the other cases).
pub(super) struct Bought<'a> {
    pub(super) key: TokenKey,
    pub(super) token: JourneyToken,
    pub(super) lock: PhoneLock<'a>,
    /// Released once the token is stored (or the row gives it up).
    pub(super) slot: Option<tokio::sync::SemaphorePermit<'a>>,
}

/// A bought token is stored: count it (the caller then lets the phone go).
pub(super) fn token_stored(ctx: &Ctx, phone: &str) {
    ctx.counters.tokens_created.fetch_add(1, Ordering::Relaxed);
    tracing::debug!(phone = %mask(phone), "journey token bought");
}

/// Store a token bought for the row and not stored yet (the row is not
/// claimed in this attempt after all): it was paid for.
pub(super) async fn save_bought(
    ctx: &Ctx,
    row: &WorkRow,
    bought: &mut Option<Bought<'_>>,
) -> Result<(), StoreError> {
    let Some(Bought {
        key, token, lock, ..
    }) = bought.take()
    else {
        return Ok(());
    };
    ctx.writer
        .write(WriteOp::SaveToken {
            key,
            token,
            row_id: row.id,
        })
        .await?;
    token_stored(ctx, &lock.phone);
    Ok(())
}

/// A usable token for the row's phone: the stored one, or a newly bought
/// one, returned with its [`Bought`] (the caller stores it before use).
/// `stale`: a token the provider refused, which must not be handed back.
pub(super) async fn ensure_token<'a>(
    ctx: &'a Ctx,
    row: &WorkRow,
    stale: Option<&JourneyToken>,
) -> Result<(JourneyToken, Option<Bought<'a>>), CallFailure> {
    let is_stale = |t: &JourneyToken| stale.is_some_and(|s| s.journey_id == t.journey_id);
    if let Some(t) = &row.token {
        if stale.is_none() && ctx.usable(t) {
            ctx.counters.tokens_reused.fetch_add(1, Ordering::Relaxed);
            return Ok((t.clone(), None));
        }
    }
    let lock = ctx.lock_phone(&row.phone).await;
    let key = ctx.token_key(&row.phone);
    // Another row may have bought one since this row was read (only
    // possible when a phone repeats, or after a refresh), or while we
    // waited for the lock.
    if ctx.repeated_phones || stale.is_some() || lock.waited {
        if let Some(t) = ctx.stored_token(&key)? {
            if ctx.usable(&t) && !is_stale(&t) {
                ctx.counters.tokens_reused.fetch_add(1, Ordering::Relaxed);
                return Ok((t, None));
            }
        }
    }
    let req = TokenRequest {
        oa_id: &ctx.campaign.oa_id,
        phone: &row.phone,
        token_type: &ctx.campaign.token_type,
    };
    // Closed only with the run's semaphores dropped: never while it runs.
    let slot = ctx.token_slots.acquire().await.ok();
    let token = call_with_retry(ctx, || ctx.provider.create_token(&req)).await?;
    Ok((
        token.clone(),
        Some(Bought {
            key,
            token,
            lock,
            slot,
        }),
    ))
}

pub(super) async fn check_token(
    ctx: &Ctx,
    token: &JourneyToken,
) -> Result<TokenCheck, CallFailure> {
    call_with_retry(ctx, || ctx.provider.check_token(&ctx.campaign.oa_id, token)).await
}

impl Ctx {
    fn stored_token(&self, key: &TokenKey) -> Result<Option<JourneyToken>, StoreError> {
        // A poisoned lock only means another row panicked mid-read; the
        // connection itself is fine.
        let store = self.reader.lock().unwrap_or_else(|p| p.into_inner());
        store.token(key)
    }

    /// One lock per phone while a token is bought for it.
    async fn lock_phone(&self, phone: &str) -> PhoneLock<'_> {
        let lock = {
            let mut map = self.token_locks.lock().unwrap_or_else(|p| p.into_inner());
            map.entry(phone.to_string()).or_default().clone()
        };
        let (guard, waited) = match lock.clone().try_lock_owned() {
            Ok(g) => (g, false),
            Err(_) => (lock.clone().lock_owned().await, true),
        };
        PhoneLock {
            ctx: self,
            phone: phone.to_string(),
            lock,
            guard: Some(guard),
            waited,
        }
    }
}
