//! The engine's metrics, and the opt-in setup a binary or host calls.
//!
//! Emission goes through the `metrics` facade with names from the catalogue
//! in `switchyard-protocol`; the library never installs a recorder.
//! [`install_prometheus`] is for the binary (or a host that wants
//! Switchyard's exporter): it describes every catalogue metric, sets explicit
//! histogram buckets (never summaries) and listens on 127.0.0.1 by default.
//! The process's RSS and CPU time are read from `/proc` at scrape time, as
//! Prometheus client libraries do, and appended by [`render_prometheus`].

mod exporter;
mod process;

use std::time::Duration;

use metrics::{counter, gauge, histogram};
use switchyard_protocol::catalogue as cat;
use switchyard_protocol::{TaskOutcome, TaskTimes};

pub use exporter::{install_prometheus, render_prometheus, PrometheusSetup, DEFAULT_METRICS_ADDR};
pub use process::ProcessSample;

pub(crate) fn engine_started(max_in_flight: usize) {
    gauge!(cat::TASKS_MAX_IN_FLIGHT.name).set(max_in_flight as f64);
    gauge!(cat::TASKS_IN_FLIGHT.name).set(0.0);
}

pub(crate) fn task_in_flight(in_flight: usize) {
    gauge!(cat::TASKS_IN_FLIGHT.name).set(in_flight as f64);
}

pub(crate) fn task_settled(outcome: TaskOutcome, run: Duration, times: TaskTimes) {
    counter!(cat::TASKS.name, "outcome" => outcome.as_label()).increment(1);
    histogram!(cat::TASK_DURATION.name).record(run.as_secs_f64());
    histogram!(cat::TASK_ADMISSION_WAIT.name).record(times.admission_wait.as_secs_f64());
    histogram!(cat::TASK_IO_WAIT.name).record(times.io_wait.as_secs_f64());
    histogram!(cat::TASK_CPU_QUEUE_WAIT.name).record(times.cpu_queue_wait.as_secs_f64());
    histogram!(cat::TASK_CPU_TIME.name).record(times.cpu_time.as_secs_f64());
}

/// One poll of a pipeline finished; `delivered` items reached its action.
pub(crate) fn pipeline_poll(pipeline: &str, ok: bool, delivered: u32) {
    let outcome = if ok { "ok" } else { "failed" };
    counter!(cat::PIPELINE_POLLS.name, "pipeline" => pipeline.to_string(), "outcome" => outcome).increment(1);
    counter!(cat::PIPELINE_ITEMS_DELIVERED.name, "pipeline" => pipeline.to_string())
        .increment(u64::from(delivered));
}
