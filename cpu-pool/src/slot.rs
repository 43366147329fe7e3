//! Bounded admission: the slots a job must hold while it is queued or running.
//!
//! A slot is a permit of a tokio [`Semaphore`] with `queue_capacity` permits,
//! so a producer waiting for one is a parked future and costs the reactor
//! nothing, and the semaphore's fairness serves waiting producers in order. The
//! permit is forgotten on admission and given back by [`Slot`]'s `Drop`,
//! which lets one type own the slot whichever way it was acquired and frees it
//! on every path: finished, panicked, cancelled, or dropped by the pool.
//!
//! Shutdown closes the semaphore: waiting producers wake with an error, and
//! the last slot returned wakes whoever waits for the pool to drain.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::{Notify, Semaphore, TryAcquireError};

use crate::stats::Counters;
use crate::telemetry::{Outcome, SpinOutcome, Telemetry};
use crate::PoolStats;

/// The turnaround estimate before any job has finished.
const NO_SAMPLE: u64 = u64::MAX;

/// What the pool's handles and its running jobs share.
pub(crate) struct Shared {
    pub(crate) semaphore: Arc<Semaphore>,
    pub(crate) threads: usize,
    pub(crate) capacity: usize,
    pub(crate) counters: Counters,
    pub(crate) telemetry: Telemetry,
    /// Signalled when the pool is closed and the last slot comes back.
    pub(crate) drained: Notify,
    /// Longest a producer spins for a short job's result; zero never spins.
    spin_wait: Duration,
    /// Longest a producer waits for a slot; zero never waits.
    pub(crate) slot_wait: Duration,
    /// A moving estimate of how long recent jobs took from hand-off to
    /// result, in nanoseconds ([`NO_SAMPLE`] before the first): what a
    /// producer deciding whether to spin can expect.
    recent_turnaround_nanos: AtomicU64,
    /// The same estimate for the run alone, without the wait for a thread:
    /// what a lingering thread decides on (see `idle_linger`).
    recent_run_nanos: AtomicU64,
}

impl Shared {
    pub(crate) fn new(threads: usize, capacity: usize, spin_wait: Duration, slot_wait: Duration) -> Self {
        Shared {
            spin_wait,
            slot_wait,
            recent_turnaround_nanos: AtomicU64::new(NO_SAMPLE),
            recent_run_nanos: AtomicU64::new(NO_SAMPLE),
            semaphore: Arc::new(Semaphore::new(capacity)),
            threads,
            capacity,
            counters: Counters::default(),
            telemetry: Telemetry::new(threads, capacity),
            drained: Notify::new(),
        }
    }

    /// Slots taken right now: jobs queued or running.
    pub(crate) fn held(&self) -> usize {
        self.capacity.saturating_sub(self.semaphore.available_permits())
    }

    /// Folds one job's time from hand-off to result (waiting for a thread
    /// plus running) into the estimate. The first sample is taken as it is;
    /// later ones pull the estimate up by half the difference and down by an
    /// eighth, so one job longer than twice the spin stops producers spinning
    /// for the next several, and only a run of short ones turns it back on.
    /// Waiting counts because a producer's spin must cover a sleeping thread's
    /// wake-up too: a pool whose threads keep falling asleep stops spinning.
    pub(crate) fn record_turnaround(&self, queue_wait: Duration, run: Duration) {
        track(&self.recent_turnaround_nanos, queue_wait + run);
        track(&self.recent_run_nanos, run);
    }

    /// How long the producer of a job in the pool should spin for its result
    /// before parking: only when the job starts at once (no more jobs hold
    /// slots than there are threads) and recent jobs came back within the
    /// spin. Otherwise parking is cheaper than spinning.
    pub(crate) fn spin_budget(&self) -> Option<Duration> {
        let starts_at_once = self.held() <= self.threads;
        (!self.spin_wait.is_zero() && self.recent_jobs_short() && starts_at_once).then_some(self.spin_wait)
    }

    /// Whether recent jobs came back within the spin (or none has yet).
    fn recent_jobs_short(&self) -> bool {
        self.within_spin(&self.recent_turnaround_nanos)
    }

    /// Whether an estimate is within the spin, or has no sample yet.
    fn within_spin(&self, estimate: &AtomicU64) -> bool {
        let nanos = estimate.load(Relaxed);
        nanos == NO_SAMPLE || Duration::from_nanos(nanos) <= self.spin_wait
    }

    /// How long a pool thread that ran out of jobs may watch the queue
    /// before it sleeps: the producer's spin, while recent jobs ran within
    /// it, since a job that short costs less than the wake-up a sleeping
    /// thread would need for the next one. Decided on the run alone: the
    /// turnaround includes the wake-up of a thread that did not linger, and
    /// would keep lingering off once one job had waited for one.
    pub(crate) fn idle_linger(&self) -> Duration {
        if self.within_spin(&self.recent_run_nanos) {
            self.spin_wait
        } else {
            Duration::ZERO
        }
    }

    pub(crate) fn settle(&self, outcome: Outcome) {
        self.counters.settled(outcome);
        self.telemetry.settled(outcome);
    }

    pub(crate) fn spun(&self, outcome: SpinOutcome) {
        self.counters.spun(outcome);
        self.telemetry.spun(outcome);
    }

    pub(crate) fn stats(&self) -> PoolStats {
        self.counters.snapshot(self.threads, self.capacity, self.held())
    }

    /// Takes a free slot without waiting; a closed pool reports `Closed` even
    /// when slots are free.
    pub(crate) fn try_slot(self: &Arc<Self>) -> Result<Slot, TryAcquireError> {
        self.semaphore.try_acquire()?.forget();
        Ok(Slot::new(self.clone(), Instant::now(), Duration::ZERO))
    }
}

/// One held slot; dropping it gives the slot back.
pub(crate) struct Slot {
    shared: Arc<Shared>,
    admitted: Instant,
    picked_up: bool,
}

impl Slot {
    /// Wraps a permit already taken (and forgotten) from the semaphore at
    /// `admitted`, after the producer waited `waited` for it.
    pub(crate) fn new(shared: Arc<Shared>, admitted: Instant, waited: Duration) -> Self {
        shared.telemetry.admitted(waited);
        Slot { shared, admitted, picked_up: false }
    }

    /// A thread took the job at `now`; returns how long it was queued.
    pub(crate) fn pick_up(&mut self, now: Instant) -> Duration {
        let queued = now.saturating_duration_since(self.admitted);
        self.picked_up = true;
        self.shared.telemetry.dequeued(queued);
        queued
    }

    pub(crate) fn shared(&self) -> &Shared {
        &self.shared
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        if !self.picked_up {
            // The pool dropped the job without running it; account for it so
            // the queue-depth gauge and the counts still add up.
            self.shared.telemetry.dequeued(Duration::ZERO);
            self.shared.settle(Outcome::Cancelled);
        }
        let shared = &self.shared;
        shared.semaphore.add_permits(1);
        // Order matters: the permit is back before the check, and shutdown
        // closes before it checks, so one of the two sees the drained pool.
        if shared.semaphore.is_closed() && shared.held() == 0 {
            shared.drained.notify_waiters();
        }
    }
}

/// Folds `sample` into a recent-value estimate that rises fast (half the
/// gap) and falls slowly (an eighth), so one slow job stops the spinning at
/// once and a run of fast ones is needed to resume it.
fn track(estimate: &AtomicU64, sample: Duration) {
    let sample = u64::try_from(sample.as_nanos()).unwrap_or(NO_SAMPLE - 1);
    let _ = estimate.fetch_update(Relaxed, Relaxed, |old| {
        Some(match old {
            NO_SAMPLE => sample,
            old if sample >= old => old + (sample - old) / 2,
            old => old - (old - sample) / 8,
        })
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_are_bounded_and_given_back_on_drop() {
        let shared = Arc::new(Shared::new(1, 2, Duration::ZERO, Duration::ZERO));
        let mut a = shared.try_slot().unwrap();
        let b = shared.try_slot().unwrap();
        assert_eq!(shared.held(), 2);
        assert!(matches!(shared.try_slot(), Err(TryAcquireError::NoPermits)));

        a.pick_up(Instant::now());
        drop(a);
        assert_eq!(shared.held(), 1);
        assert_eq!(shared.stats().cancelled, 0);

        // Dropped without being picked up: the pool lost it, so it counts as cancelled.
        drop(b);
        assert_eq!(shared.held(), 0);
        assert_eq!(shared.stats().cancelled, 1);
    }

    #[test]
    fn producers_spin_only_for_short_jobs_that_start_at_once() {
        let shared = Arc::new(Shared::new(1, 4, Duration::from_micros(20), Duration::ZERO));
        assert_eq!(shared.spin_budget(), Some(Duration::from_micros(20)));

        // One job holds the only thread: a second would queue behind it.
        let first = shared.try_slot().unwrap();
        assert!(shared.spin_budget().is_some());
        let second = shared.try_slot().unwrap();
        assert_eq!(shared.spin_budget(), None);
        drop((first, second));

        // One job over twice the spin stops the spinning; only a run of
        // short ones brings it back.
        shared.record_turnaround(Duration::ZERO, Duration::from_micros(1));
        assert!(shared.spin_budget().is_some());
        shared.record_turnaround(Duration::ZERO, Duration::from_micros(100));
        assert_eq!(shared.spin_budget(), None);
        for _ in 0..3 {
            shared.record_turnaround(Duration::ZERO, Duration::from_micros(1));
        }
        assert_eq!(shared.spin_budget(), None);
        for _ in 0..20 {
            shared.record_turnaround(Duration::ZERO, Duration::from_micros(1));
        }
        assert!(shared.spin_budget().is_some());

        // The first sample is the estimate: a pool of long jobs never spins.
        let long = Shared::new(1, 4, Duration::from_micros(20), Duration::ZERO);
        long.record_turnaround(Duration::ZERO, Duration::from_millis(2));
        assert_eq!(long.spin_budget(), None);

        let never = Shared::new(1, 4, Duration::ZERO, Duration::ZERO);
        assert_eq!(never.spin_budget(), None);
    }

    #[test]
    fn an_idle_thread_lingers_after_short_runs_whatever_they_waited_for_a_thread() {
        let shared = Shared::new(2, 4, Duration::from_micros(20), Duration::ZERO);
        assert_eq!(shared.idle_linger(), Duration::from_micros(20));
        // Woken threads made the turnaround long: the producer stops spinning,
        // but runs of a microsecond still keep the threads lingering.
        for _ in 0..5 {
            shared.record_turnaround(Duration::from_micros(80), Duration::from_micros(1));
        }
        assert_eq!(shared.spin_budget(), None);
        assert_eq!(shared.idle_linger(), Duration::from_micros(20));
        // Long runs: sleep at once.
        shared.record_turnaround(Duration::ZERO, Duration::from_millis(1));
        assert_eq!(shared.idle_linger(), Duration::ZERO);
    }

    #[test]
    fn a_closed_pool_hands_out_no_slot() {
        let shared = Arc::new(Shared::new(1, 2, Duration::ZERO, Duration::ZERO));
        let slot = shared.try_slot().unwrap();
        shared.semaphore.close();
        assert!(matches!(shared.try_slot(), Err(TryAcquireError::Closed)));
        // Slots given back after closing still count as free.
        drop(slot);
        assert_eq!(shared.held(), 0);
    }
}
