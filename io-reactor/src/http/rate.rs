//! A rate limit in requests per second with a burst (GCRA, the `governor`
//! crate), waited on with a tokio sleep so it shares the reactor's timer and
//! a dropped waiter holds nothing.

use std::fmt;
use std::num::NonZeroU32;
use std::time::Duration;

use governor::clock::{Clock, DefaultClock};
use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};

/// At most `per_second` requests a second (fractions allowed), `burst` at
/// once after a quiet spell.
pub struct RateLimit {
    limiter: DefaultDirectRateLimiter,
    clock: DefaultClock,
    per_second: f64,
    burst: u32,
}

impl RateLimit {
    /// The limit; `None` unless `per_second` is positive and finite.
    pub fn new(per_second: f64, burst: u32) -> Option<RateLimit> {
        if !(per_second.is_finite() && per_second > 0.0) {
            return None;
        }
        let period = Duration::from_secs_f64(1.0 / per_second);
        let quota =
            Quota::with_period(period)?.allow_burst(NonZeroU32::new(burst).unwrap_or(NonZeroU32::MIN));
        Some(RateLimit {
            limiter: RateLimiter::direct(quota),
            clock: DefaultClock::default(),
            per_second,
            burst,
        })
    }

    /// Waits until one more request may go, and takes its place.
    pub async fn until_ready(&self) {
        while let Err(not_until) = self.limiter.check() {
            tokio::time::sleep(not_until.wait_time_from(self.clock.now())).await;
        }
    }

    /// Requests per second.
    pub fn per_second(&self) -> f64 {
        self.per_second
    }
}

impl fmt::Debug for RateLimit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RateLimit").field("per_second", &self.per_second).field("burst", &self.burst).finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_positive_finite_rates_make_a_limit() {
        assert!(RateLimit::new(0.0, 1).is_none());
        assert!(RateLimit::new(f64::NAN, 1).is_none());
        assert!(RateLimit::new(-1.0, 1).is_none());
        assert_eq!(RateLimit::new(0.5, 1).unwrap().per_second(), 0.5);
    }

    #[tokio::test(start_paused = true)]
    async fn the_burst_goes_at_once_and_the_rest_at_the_rate() {
        let limit = RateLimit::new(10.0, 3).unwrap();
        let started = tokio::time::Instant::now();
        for _ in 0..3 {
            limit.until_ready().await;
        }
        assert!(started.elapsed() < Duration::from_millis(5), "the burst waited {:?}", started.elapsed());
    }
}
