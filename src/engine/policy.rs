//! The provider-error policy, decided here once for every caller — the
//! runner's sends and token calls, reconcile's lookups, the pre-flight's
//! read-only calls: which errors earn another attempt and after how long,
//! when the attempts are used up, and which errors stop the whole run and
//! with what words. The pace itself (rate limiter, backoff curve) is
//! `retry`'s; what a row becomes is the runner's.

use std::time::Duration;

use super::retry::Backoff;
use super::stop::StopReason;
use crate::model::clock;
use crate::provider::{ErrorClass, ProviderError};
use crate::store::QuotaKey;

/// How often, and how patiently, a call that failed transiently is made
/// again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retries {
    /// Tries per call, the first included.
    pub max_attempts: u32,
    pub backoff: Backoff,
}

impl Retries {
    /// After the `attempt`-th try (1 = the first) failed with `e`: how long
    /// to wait before the next, or `None` when there is no next — the error
    /// is not transient, or the attempts are used up.
    pub fn wait_after(&self, attempt: u32, e: &ProviderError) -> Option<Duration> {
        (is_transient(e) && attempt < self.max_attempts)
            .then(|| self.backoff.delay(attempt, e.retry_after))
    }
}

/// Worth trying again: nothing was accepted, and the next try may be (5xx,
/// 429, a timeout, a refused connection).
pub fn is_transient(e: &ProviderError) -> bool {
    e.class == ErrorClass::Retry
}

/// A call with no limiter and no stop to heed (the pre-flight's read-only
/// questions), made again on transient errors by [`Retries`].
pub async fn retried<T, F, Fut>(retries: Retries, mut call: F) -> Result<T, ProviderError>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, ProviderError>>,
{
    let mut attempt = 0;
    loop {
        attempt += 1;
        match call().await {
            Err(e) => match retries.wait_after(attempt, &e) {
                Some(wait) => tokio::time::sleep(wait).await,
                None => return Err(e),
            },
            ok => return ok,
        }
    }
}

/// Whose call met the error, for the words of the stop.
#[derive(Debug, Clone, Copy)]
pub enum Caller<'a> {
    /// A run's send or token call; a quota stop names the day's counter.
    Run(&'a QuotaKey),
    /// A reconcile lookup.
    Reconcile,
}

/// The stop a provider error calls for, whoever met it: a quota refusal
/// pauses, rejected credentials and a refused setup abort. Any other class
/// is the caller's to settle (a row fails, a lookup is noted): `None`.
pub fn stop_for(e: &ProviderError, caller: Caller<'_>) -> Option<(StopReason, String)> {
    let (msg, code) = (&e.message, &e.code);
    let stop = match (e.class, caller) {
        (ErrorClass::PauseQuota, Caller::Run(key)) => (
            StopReason::Quota,
            format!(
                "provider: {msg} (code {code}). {}",
                quota_used_up(key)
            ),
        ),
        (ErrorClass::PauseQuota, Caller::Reconcile) => (
            StopReason::Quota,
            format!("the provider refused for quota: {msg} (code {code})"),
        ),
        (ErrorClass::AbortAuth, Caller::Run(_)) => (
            StopReason::Auth,
            format!(
                "the provider rejected the credentials: {msg} (code {code}). Check --api-key / ZNS_API_KEY and --oa-id"
            ),
        ),
        (ErrorClass::AbortAuth, Caller::Reconcile) => (
            StopReason::Auth,
            format!(
                "the provider rejected the credentials: {msg} (code {code}). Check --api-key / ZNS_API_KEY"
            ),
        ),
        (ErrorClass::Reauthorize, _) => (
            StopReason::Reauthorize,
            format!("{msg} (code {code})"),
        ),
        (ErrorClass::AbortConfig, Caller::Run(_)) => (
            StopReason::Config,
            format!(
                "the provider refused the campaign setup: {msg} (code {code}). Check --template-id, --oa-id and the provider account"
            ),
        ),
        (ErrorClass::AbortConfig, Caller::Reconcile) => (
            StopReason::Config,
            format!("the provider refused the lookup: {msg} (code {code})"),
        ),
        _ => return None,
    };
    Some(stop)
}

/// Why a run stopped when its claim found the campaign's lease gone: the
/// words of the runner's and the heartbeat's stop alike.
pub fn lease_lost(campaign: &str) -> String {
    format!(
        "this process lost its lease on campaign `{campaign}` (it lapsed, or another \
         zns-batch process took the campaign over), so it stopped sending; nothing is lost: \
         the holder carries on, and `zns-batch status` shows the campaign"
    )
}

/// Why nothing more is sent today under `key`, and when that changes: the
/// words of every quota stop (the provider's refusal, our claim refused, a
/// run that starts on a used-up day).
pub fn quota_used_up(key: &QuotaKey) -> String {
    format!(
        "daily quota for OA {} is used up for {} (Asia/Ho_Chi_Minh); the next quota day starts {}",
        key.oa_id,
        key.day,
        clock::fmt_local(clock::next_day_start(clock::now()))
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn error(class: ErrorClass) -> ProviderError {
        ProviderError::new(class, "c", "m")
    }

    #[test]
    fn only_transient_errors_are_tried_again_within_the_attempts() {
        let r = Retries {
            max_attempts: 3,
            backoff: Backoff::starting_at(Duration::from_millis(10)),
        };
        let transient = error(ErrorClass::Retry);
        assert!(r.wait_after(1, &transient).is_some());
        assert!(r.wait_after(2, &transient).is_some());
        assert_eq!(
            r.wait_after(3, &transient),
            None,
            "the third try was the last"
        );
        for class in [
            ErrorClass::FailRow,
            ErrorClass::PauseQuota,
            ErrorClass::AbortAuth,
            ErrorClass::AbortConfig,
        ] {
            assert_eq!(r.wait_after(1, &error(class)), None, "{class:?}");
        }
    }

    #[test]
    fn the_same_classes_stop_every_caller_for_the_same_reasons() {
        let key = QuotaKey::today("acct", "oa-1");
        for caller in [Caller::Run(&key), Caller::Reconcile] {
            let reason = |class| stop_for(&error(class), caller).map(|s| s.0);
            assert_eq!(reason(ErrorClass::PauseQuota), Some(StopReason::Quota));
            assert_eq!(reason(ErrorClass::AbortAuth), Some(StopReason::Auth));
            assert_eq!(reason(ErrorClass::AbortConfig), Some(StopReason::Config));
            assert_eq!(reason(ErrorClass::FailRow), None);
            assert_eq!(reason(ErrorClass::Retry), None);
        }
        let quota = stop_for(&error(ErrorClass::PauseQuota), Caller::Run(&key))
            .map(|s| s.1)
            .unwrap_or_default();
        assert!(quota.contains("OA oa-1 is used up for"), "{quota}");
    }
}
