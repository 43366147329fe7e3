//! Counts the pool keeps for [`CpuPool::stats`](crate::CpuPool::stats).
//!
//! Plain relaxed atomics: each number is exact on its own, but a snapshot is
//! not taken under a lock, so numbers read together may be a few jobs apart.
//! The one guarantee callers lean on, `queued + running <= queue_capacity`,
//! holds anyway because both come from the slots actually held.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering::Relaxed};

use crate::telemetry::{Outcome, SpinOutcome};

/// A snapshot of the pool's occupancy and its settled jobs so far.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PoolStats {
    /// Worker threads.
    pub threads: usize,
    /// Most jobs queued or running at once.
    pub queue_capacity: usize,
    /// Jobs holding a slot and waiting for a thread.
    pub queued: usize,
    /// Jobs running on a thread.
    pub running: usize,
    /// Jobs that returned a value.
    pub completed: u64,
    /// Jobs that panicked.
    pub panicked: u64,
    /// Jobs whose future was dropped before they started; they never ran.
    pub cancelled: u64,
    /// Jobs refused: `try_submit` on a full or closed pool, or `submit` on a
    /// closed one.
    pub rejected: u64,
    /// Jobs whose producer gave up waiting for a slot after
    /// `cpu.slot_wait_ms`; they never ran.
    pub overloaded: u64,
    /// Producers waiting for a slot (the backpressure being applied now).
    pub waiting_producers: usize,
    /// Producers that spun for a short job's result and got it without
    /// parking (see `CpuPoolConfig::spin_wait_us`).
    pub spins_to_result: u64,
    /// Producers that spun for a job's result, did not get it within the
    /// spin and parked.
    pub spins_then_parked: u64,
}

#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub(crate) running: AtomicUsize,
    pub(crate) waiting: AtomicUsize,
    settled: [AtomicU64; Outcome::ALL.len()],
    spins: [AtomicU64; 2],
}

impl Counters {
    pub(crate) fn settled(&self, outcome: Outcome) {
        self.settled[outcome as usize].fetch_add(1, Relaxed);
    }

    pub(crate) fn spun(&self, outcome: SpinOutcome) {
        self.spins[outcome as usize].fetch_add(1, Relaxed);
    }

    /// Fills in a snapshot given how many slots are held right now.
    pub(crate) fn snapshot(&self, threads: usize, queue_capacity: usize, held: usize) -> PoolStats {
        // `running` may count a job admitted after `held` was read; clamping
        // keeps the sum within the slots (see the module doc).
        let running = self.running.load(Relaxed).min(held);
        let settled = |outcome: Outcome| self.settled[outcome as usize].load(Relaxed);
        PoolStats {
            threads,
            queue_capacity,
            queued: held - running,
            running,
            completed: settled(Outcome::Completed),
            panicked: settled(Outcome::Panicked),
            cancelled: settled(Outcome::Cancelled),
            rejected: settled(Outcome::Rejected),
            overloaded: settled(Outcome::Overloaded),
            waiting_producers: self.waiting.load(Relaxed),
            spins_to_result: self.spins[SpinOutcome::Result as usize].load(Relaxed),
            spins_then_parked: self.spins[SpinOutcome::Parked as usize].load(Relaxed),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn snapshot_splits_held_slots_into_queued_and_running() {
        let counters = Counters::default();
        counters.running.store(2, Relaxed);
        counters.settled(Outcome::Completed);
        counters.settled(Outcome::Completed);
        counters.settled(Outcome::Rejected);
        let stats = counters.snapshot(2, 8, 5);
        assert_eq!((stats.queued, stats.running), (3, 2));
        assert_eq!((stats.completed, stats.panicked, stats.cancelled, stats.rejected), (2, 0, 0, 1));
        assert_eq!((stats.threads, stats.queue_capacity), (2, 8));

        // A job that started after the slots were counted cannot push the sum over.
        let stats = counters.snapshot(2, 8, 1);
        assert_eq!((stats.queued, stats.running), (0, 1));
    }
}
