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
}

impl Outcome {
    const ALL: [Outcome; 4] = [Outcome::Completed, Outcome::Panicked, Outcome::Cancelled, Outcome::Rejected];

    const fn as_label(self) -> &'static str {
        match self {
            Outcome::Completed => "completed",
            Outcome::Panicked => "panicked",
            Outcome::Cancelled => "cancelled",
            Outcome::Rejected => "rejected",
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
    jobs: [Counter; 4],
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
mod tests {
    use super::*;
    use metrics::{Key, KeyName, Metadata, Recorder, SharedString, Unit};
    use std::sync::Mutex;
    use switchyard_protocol::catalogue::{self, MetricKind};

    /// Notes what was registered; hands out no-op handles.
    #[derive(Default)]
    struct Registrations(Mutex<Vec<(MetricKind, Key)>>);

    impl Registrations {
        fn push(&self, kind: MetricKind, key: &Key) {
            self.0.lock().unwrap().push((kind, key.clone()));
        }
    }

    impl Recorder for Registrations {
        fn describe_counter(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
        fn describe_gauge(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
        fn describe_histogram(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
        fn register_counter(&self, key: &Key, _: &Metadata<'_>) -> Counter {
            self.push(MetricKind::Counter, key);
            Counter::noop()
        }
        fn register_gauge(&self, key: &Key, _: &Metadata<'_>) -> Gauge {
            self.push(MetricKind::Gauge, key);
            Gauge::noop()
        }
        fn register_histogram(&self, key: &Key, _: &Metadata<'_>) -> Histogram {
            self.push(MetricKind::Histogram, key);
            Histogram::noop()
        }
    }

    #[test]
    fn every_metric_is_in_the_catalogue_with_its_kind_and_labels() {
        let recorder = Registrations::default();
        metrics::with_local_recorder(&recorder, || drop(Telemetry::new(2, 8)));
        let registered = recorder.0.into_inner().unwrap();
        assert_eq!(registered.len(), 13);
        for (kind, key) in &registered {
            let def = catalogue::find(key.name()).unwrap_or_else(|| panic!("{} not catalogued", key.name()));
            assert_eq!(def.kind, *kind, "{}", def.name);
            let labels: Vec<_> = key.labels().map(|l| l.key()).collect();
            let names: Vec<_> = def.labels.iter().map(|l| l.name).collect();
            assert_eq!(labels, names, "{}", def.name);
        }
        let label_values = |name: &str| -> Vec<String> {
            registered
                .iter()
                .filter(|(_, key)| key.name() == name)
                .flat_map(|(_, key)| key.labels().map(|l| l.value().to_owned()).collect::<Vec<_>>())
                .collect()
        };
        for def in [CPU_JOBS, CPU_SPIN_WAITS] {
            assert_eq!(label_values(def.name), closed_outcomes(&def).unwrap(), "{}", def.name);
        }
    }

    /// The catalogue's closed set of `outcome` values of `def`.
    fn closed_outcomes(def: &catalogue::MetricDef) -> Option<&'static [&'static str]> {
        def.label("outcome")?.values.closed()
    }

    #[test]
    fn outcome_enums_are_the_catalogue_closed_sets() {
        assert_eq!(Some(&Outcome::ALL.map(Outcome::as_label)[..]), closed_outcomes(&CPU_JOBS));
        assert_eq!(Some(&SpinOutcome::ALL.map(SpinOutcome::as_label)[..]), closed_outcomes(&CPU_SPIN_WAITS));
    }

    #[test]
    fn every_cpu_metric_of_the_catalogue_is_emitted() {
        let recorder = Registrations::default();
        metrics::with_local_recorder(&recorder, || drop(Telemetry::new(1, 4)));
        let registered = recorder.0.into_inner().unwrap();
        let cpu = [
            CPU_THREADS,
            CPU_BUSY_THREADS,
            CPU_QUEUE_CAPACITY,
            CPU_QUEUE_DEPTH,
            CPU_ADMISSION_WAIT,
            CPU_QUEUE_WAIT,
            CPU_JOB_DURATION,
            CPU_JOBS,
            CPU_SPIN_WAITS,
        ];
        for def in cpu {
            assert!(registered.iter().any(|(_, key)| key.name() == def.name), "{} never emitted", def.name);
        }
    }
}
