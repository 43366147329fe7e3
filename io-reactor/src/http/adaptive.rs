//! Adaptive concurrency per host (AIMD, as TCP's congestion window and
//! Vector's adaptive request concurrency do): the limit starts at the
//! host's static cap, drops by a tenth on a sign of overload and grows back
//! by one per limit's worth of successful calls made while it was fully
//! used. A host that starts throttling or timing out gets fewer requests at
//! once, without anyone tuning a number.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use tokio::sync::{AcquireError, OwnedSemaphorePermit, Semaphore};

use crate::config::AdaptiveConfig;

/// How a call ended, for the limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Signal {
    /// Answered without a sign of overload.
    Success,
    /// 429, 502, 503, 504, a timeout or a refused connection.
    Overload,
    /// Neither (a 4xx, a body over the cap): the limit is left alone.
    Neutral,
}

struct Aimd {
    /// The limit, with the fraction additive increase accumulates.
    limit: f64,
    last_decrease: Option<Instant>,
}

/// A concurrency limit that moves between `min_limit` and the static cap.
pub(crate) struct AdaptiveLimit {
    semaphore: Arc<Semaphore>,
    cap: usize,
    min: usize,
    enabled: bool,
    decrease_interval: Duration,
    aimd: Mutex<Aimd>,
    /// Permits to drop instead of returning, when the limit fell below
    /// what was in use.
    debt: AtomicUsize,
    in_flight: AtomicUsize,
}

/// A place under the limit; returned (or retired, when the limit fell)
/// when dropped.
pub(crate) struct LimitPermit {
    permit: Option<OwnedSemaphorePermit>,
    limit: Arc<AdaptiveLimit>,
    /// Whether every place was taken when this one was granted: only then
    /// does a success say the limit could be higher.
    pub(crate) saturated: bool,
}

impl AdaptiveLimit {
    pub(crate) fn new(cap: usize, config: &AdaptiveConfig) -> Self {
        AdaptiveLimit {
            semaphore: Arc::new(Semaphore::new(cap)),
            cap,
            min: config.min_limit.min(cap),
            enabled: config.enabled,
            decrease_interval: Duration::from_millis(config.decrease_interval_ms),
            aimd: Mutex::new(Aimd { limit: cap as f64, last_decrease: None }),
            debt: AtomicUsize::new(0),
            in_flight: AtomicUsize::new(0),
        }
    }

    /// The current limit.
    pub(crate) fn limit(&self) -> usize {
        self.aimd.lock().unwrap_or_else(PoisonError::into_inner).limit as usize
    }

    /// Requests holding a place now.
    pub(crate) fn in_flight(&self) -> usize {
        self.in_flight.load(Ordering::Relaxed)
    }

    /// Waits for a place under the limit, in FIFO order.
    pub(crate) async fn acquire(self: &Arc<Self>) -> Result<LimitPermit, AcquireError> {
        let permit = Arc::clone(&self.semaphore).acquire_owned().await?;
        let in_flight = self.in_flight.fetch_add(1, Ordering::Relaxed) + 1;
        Ok(LimitPermit {
            permit: Some(permit),
            limit: Arc::clone(self),
            saturated: in_flight >= self.limit(),
        })
    }

    /// Moves the limit after a call; returns the new limit when it changed.
    pub(crate) fn record(&self, signal: Signal, saturated: bool) -> Option<usize> {
        if !self.enabled {
            return None;
        }
        let mut aimd = self.aimd.lock().unwrap_or_else(PoisonError::into_inner);
        let before = aimd.limit as usize;
        match signal {
            Signal::Overload => {
                let now = Instant::now();
                if aimd.last_decrease.is_some_and(|at| now.duration_since(at) < self.decrease_interval) {
                    return None;
                }
                aimd.last_decrease = Some(now);
                aimd.limit = (aimd.limit * 0.9).floor().max(self.min as f64);
            }
            Signal::Success if saturated => {
                aimd.limit = (aimd.limit + 1.0 / aimd.limit.max(1.0)).min(self.cap as f64);
            }
            _ => return None,
        }
        let after = aimd.limit as usize;
        drop(aimd);
        if after < before {
            let shrink = before - after;
            // Free places go at once; places in use are retired as they return.
            let forgotten = self.semaphore.forget_permits(shrink);
            self.debt.fetch_add(shrink - forgotten, Ordering::Relaxed);
        } else if after > before {
            let grow = after - before;
            let repaid = self.repay(grow);
            self.semaphore.add_permits(grow - repaid);
        }
        (after != before).then_some(after)
    }

    /// Cancels up to `n` of the debt; returns how much was cancelled.
    fn repay(&self, n: usize) -> usize {
        let mut repaid = 0;
        let _ = self.debt.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |debt| {
            repaid = debt.min(n);
            Some(debt - repaid)
        });
        repaid
    }
}

impl Drop for LimitPermit {
    fn drop(&mut self) {
        self.limit.in_flight.fetch_sub(1, Ordering::Relaxed);
        if let Some(permit) = self.permit.take() {
            if self.limit.repay(1) == 1 {
                permit.forget();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limit(cap: usize) -> Arc<AdaptiveLimit> {
        Arc::new(AdaptiveLimit::new(
            cap,
            &AdaptiveConfig { enabled: true, min_limit: 2, decrease_interval_ms: 1 },
        ))
    }

    #[tokio::test]
    async fn overload_shrinks_it_and_saturated_successes_grow_it_back_to_the_cap() {
        let l = limit(20);
        assert_eq!(l.record(Signal::Overload, false), Some(18));
        tokio::time::sleep(Duration::from_millis(2)).await;
        assert_eq!(l.record(Signal::Overload, false), Some(16));
        assert_eq!(l.semaphore.available_permits(), 16);
        assert_eq!(l.record(Signal::Success, false), None, "an unsaturated success says nothing");
        let mut changes = 0;
        for _ in 0..200 {
            changes += usize::from(l.record(Signal::Success, true).is_some());
        }
        assert_eq!((l.limit(), changes), (20, 4), "back to the cap, never over it");
        assert_eq!(l.semaphore.available_permits(), 20);
    }

    #[tokio::test]
    async fn places_in_use_are_retired_as_they_return() {
        let l = limit(10);
        let held: Vec<_> = acquire_n(&l, 10).await;
        assert!(held.last().unwrap().saturated);
        assert_eq!(l.record(Signal::Overload, true), Some(9));
        drop(held);
        assert_eq!(l.semaphore.available_permits(), 9, "one place retired on return");
        assert_eq!(l.in_flight(), 0);
    }

    #[tokio::test]
    async fn it_never_goes_below_the_minimum_and_decreases_once_per_interval() {
        let l = Arc::new(AdaptiveLimit::new(
            10,
            &AdaptiveConfig { enabled: true, min_limit: 3, decrease_interval_ms: 60_000 },
        ));
        assert_eq!(l.record(Signal::Overload, false), Some(9));
        assert_eq!(l.record(Signal::Overload, false), None, "one burst of failures counts once");
        let fast = limit(3);
        for _ in 0..10 {
            fast.record(Signal::Overload, false);
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        assert_eq!(fast.limit(), 2);
    }

    async fn acquire_n(l: &Arc<AdaptiveLimit>, n: usize) -> Vec<LimitPermit> {
        let mut held = Vec::new();
        for _ in 0..n {
            held.push(l.acquire().await.unwrap());
        }
        held
    }
}
