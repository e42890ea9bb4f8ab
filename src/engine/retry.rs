//! Pace for every provider caller (the runner, reconcile, the pre-flight):
//! the rate limiter and the retry backoff, decided here once. Which errors
//! are retried at all is `policy`'s.

use std::num::NonZeroU32;
use std::time::Duration;

use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use rand::Rng;

/// Requests per second across every call of a run.
pub type Limiter = DefaultDirectRateLimiter;

/// A limiter for `rate` requests a second. A burst of a tenth of a second
/// keeps the pipe full without a spike.
pub fn limiter(rate: NonZeroU32) -> Limiter {
    let burst = NonZeroU32::new((rate.get() / 10).max(1)).unwrap_or(NonZeroU32::MIN);
    RateLimiter::direct(Quota::per_second(rate).allow_burst(burst))
}

/// The longest a provider's `Retry-After` is obeyed.
const RETRY_AFTER_CAP: Duration = Duration::from_secs(300);

/// The longest a backoff grows, unless its first delay is longer.
const BACKOFF_CAP: Duration = Duration::from_secs(15);

/// Exponential backoff with jitter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    /// The first delay; it doubles per attempt.
    pub base: Duration,
    /// No delay grows past this (a provider's Retry-After may ask for more).
    pub cap: Duration,
}

impl Backoff {
    /// The backoff of every provider caller: `base` first, doubling up to
    /// [`BACKOFF_CAP`] (or `base` itself, when that is longer).
    pub fn starting_at(base: Duration) -> Self {
        Backoff {
            base,
            cap: BACKOFF_CAP.max(base),
        }
    }

    /// How long to wait after the `attempt`-th failure (1 = the first).
    /// Jitter over the upper half spreads retries without starving them; a
    /// provider's `Retry-After` is a floor.
    pub fn delay(&self, attempt: u32, retry_after: Option<Duration>) -> Duration {
        let exp = self
            .base
            .saturating_mul(1u32 << attempt.saturating_sub(1).min(16))
            .min(self.cap);
        let jittered = exp.mul_f64(rand::rng().random_range(0.5..=1.0));
        match retry_after {
            Some(ra) => jittered.max(ra.min(RETRY_AFTER_CAP)),
            None => jittered,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_double_up_to_the_cap_and_honour_retry_after() {
        let b = Backoff {
            base: Duration::from_millis(100),
            cap: Duration::from_secs(1),
        };
        for _ in 0..50 {
            let d1 = b.delay(1, None);
            assert!(d1 >= Duration::from_millis(50) && d1 <= Duration::from_millis(100));
            let d3 = b.delay(3, None);
            assert!(d3 >= Duration::from_millis(200) && d3 <= Duration::from_millis(400));
            assert!(b.delay(30, None) <= Duration::from_secs(1));
            assert_eq!(
                b.delay(1, Some(Duration::from_secs(7))),
                Duration::from_secs(7)
            );
            assert_eq!(b.delay(1, Some(Duration::from_secs(3600))), RETRY_AFTER_CAP);
        }
    }

    #[test]
    fn every_caller_backs_off_to_the_same_cap_unless_it_starts_above_it() {
        let b = Backoff::starting_at(Duration::from_millis(250));
        assert_eq!(b.cap, BACKOFF_CAP);
        assert!(b.delay(40, None) <= BACKOFF_CAP);
        let slow = Backoff::starting_at(Duration::from_secs(60));
        assert_eq!(slow.cap, Duration::from_secs(60));
    }
}
