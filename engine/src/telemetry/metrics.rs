//! The engine's metric handles: the only place the engine touches the
//! `metrics` facade.

// The one place this crate may use the raw metrics macros (see clippy.toml).
#![allow(clippy::disallowed_macros)]

use std::time::Duration;

use metrics::{counter, gauge, histogram, Counter, Gauge, Histogram};
use switchyard_protocol::catalogue as cat;
use switchyard_protocol::{TaskOutcome, TaskTimes};

/// Handles for the task metrics, resolved once per engine.
pub(crate) struct EngineMetrics {
    tasks: [Counter; TaskOutcome::ALL.len()],
    duration: Histogram,
    admission_wait: Histogram,
    io_wait: Histogram,
    cpu_queue_wait: Histogram,
    cpu_time: Histogram,
    in_flight: Gauge,
    max_in_flight: Gauge,
}

impl EngineMetrics {
    pub(crate) fn new() -> Self {
        let outcome = cat::TASKS.labels[0].name;
        EngineMetrics {
            tasks: TaskOutcome::ALL.map(|o| counter!(cat::TASKS.name, outcome => o.as_label())),
            duration: histogram!(cat::TASK_DURATION.name),
            admission_wait: histogram!(cat::TASK_ADMISSION_WAIT.name),
            io_wait: histogram!(cat::TASK_IO_WAIT.name),
            cpu_queue_wait: histogram!(cat::TASK_CPU_QUEUE_WAIT.name),
            cpu_time: histogram!(cat::TASK_CPU_TIME.name),
            in_flight: gauge!(cat::TASKS_IN_FLIGHT.name),
            max_in_flight: gauge!(cat::TASKS_MAX_IN_FLIGHT.name),
        }
    }

    pub(crate) fn engine_started(&self, max_in_flight: usize) {
        self.max_in_flight.set(max_in_flight as f64);
        self.in_flight.set(0.0);
    }

    pub(crate) fn in_flight(&self, in_flight: usize) {
        self.in_flight.set(in_flight as f64);
    }

    pub(crate) fn task_settled(&self, outcome: TaskOutcome, run: Duration, times: TaskTimes) {
        self.tasks[outcome.index()].increment(1);
        self.duration.record(run);
        self.admission_wait.record(times.admission_wait);
        self.io_wait.record(times.io_wait);
        self.cpu_queue_wait.record(times.cpu_queue_wait);
        self.cpu_time.record(times.cpu_time);
    }
}

impl std::fmt::Debug for EngineMetrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EngineMetrics").finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use switchyard_protocol::catalogue::LabelValues;

    #[test]
    fn task_outcomes_are_the_catalogue_set() {
        let LabelValues::Closed(values) = cat::TASKS.labels[0].values else { panic!("a closed set") };
        let labels: Vec<_> = TaskOutcome::ALL.iter().map(|o| o.as_label()).collect();
        assert_eq!(labels, values);
    }
}
