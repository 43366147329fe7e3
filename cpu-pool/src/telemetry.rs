//! Every metric the CPU pool emits, and nothing else.
//!
//! Names come from the catalogue in `switchyard-protocol`; this module is the
//! only place the pool touches the `metrics` facade. Handles are resolved once
//! when the pool is built, so a job pays for atomic updates and no registry
//! look-ups: install the recorder before building the pool (the binary does).
//!
//! Gauges move by increments rather than being set, so two pools in one
//! process (a benchmark comparing models) add up instead of overwriting each
//! other.

// The one place this crate may use the raw metrics macros (see clippy.toml).
#![allow(clippy::disallowed_macros)]

use std::time::Duration;

use metrics::{counter, gauge, histogram, Counter, Gauge, Histogram};
use switchyard_protocol::catalogue::{
    CPU_ADMISSION_WAIT, CPU_BUSY_THREADS, CPU_JOBS, CPU_JOB_DURATION, CPU_QUEUE_CAPACITY, CPU_QUEUE_DEPTH,
    CPU_QUEUE_WAIT, CPU_SPIN_WAITS, CPU_THREADS,
};

/// How a job was settled: the closed set of `outcome` label values of
/// `CPU_JOBS`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Outcome {
    Completed,
    Panicked,
    Cancelled,
    Rejected,
    /// The producer gave up waiting for a slot (`cpu.slot_wait_ms`).
    Overloaded,
}

impl Outcome {
    pub(crate) const ALL: [Outcome; 5] =
        [Outcome::Completed, Outcome::Panicked, Outcome::Cancelled, Outcome::Rejected, Outcome::Overloaded];

    const fn as_label(self) -> &'static str {
        match self {
            Outcome::Completed => "completed",
            Outcome::Panicked => "panicked",
            Outcome::Cancelled => "cancelled",
            Outcome::Rejected => "rejected",
            Outcome::Overloaded => "overloaded",
        }
    }
}

/// How a producer's spin for a job's result ended: the closed set of
/// `outcome` label values of `CPU_SPIN_WAITS`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SpinOutcome {
    Result,
    Parked,
}

impl SpinOutcome {
    const ALL: [SpinOutcome; 2] = [SpinOutcome::Result, SpinOutcome::Parked];

    const fn as_label(self) -> &'static str {
        match self {
            SpinOutcome::Result => "result",
            SpinOutcome::Parked => "parked",
        }
    }
}

/// The pool's metric handles.
pub(crate) struct Telemetry {
    threads: Gauge,
    capacity: Gauge,
    busy: Gauge,
    depth: Gauge,
    admission_wait: Histogram,
    queue_wait: Histogram,
    duration: Histogram,
    jobs: [Counter; Outcome::ALL.len()],
    spin_waits: [Counter; 2],
    // What this pool added to the shared gauges, taken back when it goes.
    sizes: (usize, usize),
}

impl Telemetry {
    pub(crate) fn new(threads: usize, capacity: usize) -> Self {
        let (jobs, spins) = (CPU_JOBS.labels[0].name, CPU_SPIN_WAITS.labels[0].name);
        let telemetry = Telemetry {
            threads: gauge!(CPU_THREADS.name),
            capacity: gauge!(CPU_QUEUE_CAPACITY.name),
            busy: gauge!(CPU_BUSY_THREADS.name),
            depth: gauge!(CPU_QUEUE_DEPTH.name),
            admission_wait: histogram!(CPU_ADMISSION_WAIT.name),
            queue_wait: histogram!(CPU_QUEUE_WAIT.name),
            duration: histogram!(CPU_JOB_DURATION.name),
            jobs: Outcome::ALL.map(|o| counter!(CPU_JOBS.name, jobs => o.as_label())),
            spin_waits: SpinOutcome::ALL.map(|o| counter!(CPU_SPIN_WAITS.name, spins => o.as_label())),
            sizes: (threads, capacity),
        };
        telemetry.threads.increment(threads as f64);
        telemetry.capacity.increment(capacity as f64);
        telemetry
    }

    /// A job took a slot after waiting `waited` for it (zero when one was free).
    pub(crate) fn admitted(&self, waited: Duration) {
        self.admission_wait.record(waited);
        self.depth.increment(1.0);
    }

    /// A thread picked the job up after it sat `waited` in the queue.
    pub(crate) fn dequeued(&self, waited: Duration) {
        self.depth.decrement(1.0);
        self.queue_wait.record(waited);
    }

    pub(crate) fn started(&self) {
        self.busy.increment(1.0);
    }

    pub(crate) fn ran(&self, run: Duration) {
        self.busy.decrement(1.0);
        self.duration.record(run);
    }

    pub(crate) fn settled(&self, outcome: Outcome) {
        self.jobs[outcome as usize].increment(1);
    }

    pub(crate) fn spun(&self, outcome: SpinOutcome) {
        self.spin_waits[outcome as usize].increment(1);
    }
}

impl Drop for Telemetry {
    fn drop(&mut self) {
        self.threads.decrement(self.sizes.0 as f64);
        self.capacity.decrement(self.sizes.1 as f64);
    }
}

#[cfg(test)]
mod tests;
