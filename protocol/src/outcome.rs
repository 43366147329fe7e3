//! How a task ended and where its time went.

use std::time::Duration;

/// How a task was settled. The label values of `switchyard_tasks_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TaskOutcome {
    /// The task succeeded and its item was acknowledged.
    Ok,
    /// The task failed for good; the item was acknowledged as failed.
    Failed,
    /// The task failed and its item was handed back for a later attempt.
    Retried,
    /// The task panicked; treated as a failure of that task only.
    Panicked,
    /// Shutdown's deadline passed before the task finished; the item was not
    /// settled, so a durable source delivers it again.
    Abandoned,
    /// The task passed its deadline and was cancelled at its next await; the
    /// item was handed back for a later attempt (the source's delivery
    /// budget bounds how often).
    TimedOut,
}

impl TaskOutcome {
    /// Every outcome, in a stable order.
    pub const ALL: [TaskOutcome; 6] = [
        TaskOutcome::Ok,
        TaskOutcome::Failed,
        TaskOutcome::Retried,
        TaskOutcome::Panicked,
        TaskOutcome::Abandoned,
        TaskOutcome::TimedOut,
    ];

    /// The outcome's position in [`TaskOutcome::ALL`], for per-outcome arrays.
    pub const fn index(self) -> usize {
        self as usize
    }

    /// The Prometheus label value.
    pub const fn as_label(self) -> &'static str {
        match self {
            TaskOutcome::Ok => "ok",
            TaskOutcome::Failed => "failed",
            TaskOutcome::Retried => "retried",
            TaskOutcome::Panicked => "panicked",
            TaskOutcome::Abandoned => "abandoned",
            TaskOutcome::TimedOut => "timed_out",
        }
    }
}

/// Where one task's time went. `io_wait` is what is left of the task's time
/// once CPU-queue wait and CPU time are taken out: awaiting sockets, timers
/// and pooled connections.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TaskTimes {
    /// From the item reaching the engine to its task starting.
    pub admission_wait: Duration,
    /// Awaiting I/O and timers.
    pub io_wait: Duration,
    /// CPU steps waiting for a queue slot and a thread.
    pub cpu_queue_wait: Duration,
    /// CPU steps running.
    pub cpu_time: Duration,
}

impl TaskTimes {
    /// Builds the split from the task's whole run time and its CPU parts.
    pub fn from_parts(
        admission_wait: Duration,
        run: Duration,
        cpu_queue_wait: Duration,
        cpu_time: Duration,
    ) -> Self {
        TaskTimes {
            admission_wait,
            io_wait: run.saturating_sub(cpu_queue_wait + cpu_time),
            cpu_queue_wait,
            cpu_time,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn io_wait_is_the_rest_of_the_run() {
        let t = TaskTimes::from_parts(
            Duration::from_millis(5),
            Duration::from_millis(100),
            Duration::from_millis(10),
            Duration::from_millis(30),
        );
        assert_eq!(t.io_wait, Duration::from_millis(60));
        let clipped = TaskTimes::from_parts(
            Duration::ZERO,
            Duration::from_millis(1),
            Duration::from_millis(2),
            Duration::ZERO,
        );
        assert_eq!(clipped.io_wait, Duration::ZERO);
    }

    #[test]
    fn labels_are_distinct() {
        let labels: std::collections::HashSet<_> = TaskOutcome::ALL.iter().map(|o| o.as_label()).collect();
        assert_eq!(labels.len(), TaskOutcome::ALL.len());
        for (i, outcome) in TaskOutcome::ALL.into_iter().enumerate() {
            assert_eq!(outcome.index(), i);
        }
    }
}
