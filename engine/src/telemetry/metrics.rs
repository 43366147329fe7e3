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

/// Why an entry became a dead letter: the `reason` label values of
/// `STREAM_DEAD_LETTERS` the stream source writes (all but `malformed`,
/// which pipelines write with their outbox).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum DeadReason {
    /// Its task failed for good.
    Failed,
    /// Its task panicked.
    Panicked,
    /// Its task asked for retries until the delivery budget ran out.
    RetriesExhausted,
    /// Consumers kept dying or stalling on it until the budget ran out.
    ClaimsExhausted,
    /// Its fields could not be read as the source's item type.
    Undecodable,
}

impl DeadReason {
    pub(crate) const ALL: [DeadReason; 5] = [
        DeadReason::Failed,
        DeadReason::Panicked,
        DeadReason::RetriesExhausted,
        DeadReason::ClaimsExhausted,
        DeadReason::Undecodable,
    ];

    pub(crate) const fn as_label(self) -> &'static str {
        match self {
            DeadReason::Failed => "failed",
            DeadReason::Panicked => "panicked",
            DeadReason::RetriesExhausted => "retries_exhausted",
            DeadReason::ClaimsExhausted => "claims_exhausted",
            DeadReason::Undecodable => "undecodable",
        }
    }
}

/// A stream's metric handles (its key is the `stream` label).
pub(crate) struct StreamMetrics {
    pub(crate) length: Gauge,
    pub(crate) pending: Gauge,
    pub(crate) delayed: Gauge,
    pub(crate) dead_letters_kept: Gauge,
    pub(crate) oldest_pending_age: Gauge,
    pub(crate) oldest_unread_age: Gauge,
    claims: Counter,
    redeliveries: Counter,
    dead_letters: [Counter; DeadReason::ALL.len()],
}

impl StreamMetrics {
    pub(crate) fn new(stream: &str) -> Self {
        let label = cat::STREAM_LENGTH.labels[0].name;
        let name = stream.to_string();
        let gauge_of = |def: &cat::MetricDef| gauge!(def.name, label => name.clone());
        let reason = cat::STREAM_DEAD_LETTERS.labels[1].name;
        // Counters start as series at 0, so `rate()` and alerts see "none"
        // rather than no data until the first event.
        let zero = |c: Counter| {
            c.increment(0);
            c
        };
        StreamMetrics {
            length: gauge_of(&cat::STREAM_LENGTH),
            pending: gauge_of(&cat::STREAM_PENDING),
            delayed: gauge_of(&cat::STREAM_DELAYED),
            dead_letters_kept: gauge_of(&cat::STREAM_DEAD_LETTERS_KEPT),
            oldest_pending_age: gauge_of(&cat::STREAM_OLDEST_PENDING_AGE),
            oldest_unread_age: gauge_of(&cat::STREAM_OLDEST_UNREAD_AGE),
            claims: zero(counter!(cat::STREAM_CLAIMS.name, label => name.clone())),
            redeliveries: zero(counter!(cat::STREAM_REDELIVERIES.name, label => name.clone())),
            dead_letters: DeadReason::ALL.map(|r| {
                zero(counter!(cat::STREAM_DEAD_LETTERS.name, label => name.clone(), reason => r.as_label()))
            }),
        }
    }

    pub(crate) fn claimed(&self, n: usize) {
        self.claims.increment(n as u64);
    }

    pub(crate) fn redelivered(&self, n: usize) {
        self.redeliveries.increment(n as u64);
    }

    pub(crate) fn dead_lettered(&self, reason: DeadReason) {
        self.dead_letters[reason as usize].increment(1);
    }
}

impl std::fmt::Debug for StreamMetrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StreamMetrics").finish_non_exhaustive()
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
    fn dead_letter_reasons_are_the_catalogue_set() {
        let LabelValues::Closed(values) = cat::STREAM_DEAD_LETTERS.labels[1].values else { panic!("closed") };
        let mut labels: Vec<_> = DeadReason::ALL.iter().map(|r| r.as_label()).collect();
        // The one reason pipelines write themselves.
        labels.push(cat::DEAD_LETTER_REASON_MALFORMED);
        assert_eq!(labels, values);
        for (i, r) in DeadReason::ALL.into_iter().enumerate() {
            assert_eq!(r as usize, i);
        }
        assert!(cat::STREAM_CLAIMS.labels[0] == cat::STREAM_LENGTH.labels[0]);
    }

    #[test]
    fn task_outcomes_are_the_catalogue_set() {
        let LabelValues::Closed(values) = cat::TASKS.labels[0].values else { panic!("a closed set") };
        let labels: Vec<_> = TaskOutcome::ALL.iter().map(|o| o.as_label()).collect();
        assert_eq!(labels, values);
    }
}
