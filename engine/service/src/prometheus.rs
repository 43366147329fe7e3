//! Prometheus exposition for the service: a recorder with Switchyard's
//! buckets and help texts, and the text `/metrics` serves.
//!
//! The decision: the service serves `/metrics` from its own listener
//! (beside `/healthz` and `/status`) instead of the exporter's, so process
//! metrics can be read at scrape time and appended with full precision (the
//! `metrics` facade's counters are integers; CPU seconds are not).

use std::fmt::Write;

use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use switchyard::protocol::catalogue::{self as cat, MetricDef};
use switchyard::telemetry::prometheus::{describe_switchyard_metrics, with_switchyard_buckets};
use switchyard::telemetry::ProcessSample;

use crate::error::ServiceError;

/// The installed recorder.
#[derive(Clone)]
pub struct PrometheusSetup {
    handle: PrometheusHandle,
}

impl std::fmt::Debug for PrometheusSetup {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PrometheusSetup").finish_non_exhaustive()
    }
}

impl PrometheusSetup {
    /// The exposition text: every recorded metric plus process metrics.
    pub fn render(&self) -> String {
        render_prometheus(&self.handle)
    }

    /// Drains histogram buffers; call every few seconds.
    pub fn run_upkeep(&self) {
        self.handle.run_upkeep();
    }
}

/// Installs the process-wide Prometheus recorder with explicit buckets for
/// every catalogue histogram and describes every catalogue metric. For the
/// binary: a library must never install a recorder. Install it before
/// building the engine: components resolve their metric handles when built.
pub fn install_prometheus() -> Result<PrometheusSetup, ServiceError> {
    let builder = with_switchyard_buckets(PrometheusBuilder::new()).map_err(ServiceError::io)?;
    let recorder = builder.build_recorder();
    let handle = recorder.handle();
    metrics::set_global_recorder(recorder).map_err(|e| ServiceError::io(e.to_string()))?;
    describe_switchyard_metrics();
    Ok(PrometheusSetup { handle })
}

/// The exposition text of `handle` with the process metrics appended.
pub fn render_prometheus(handle: &PrometheusHandle) -> String {
    let mut text = handle.render();
    if let Some(sample) = ProcessSample::read() {
        append(&mut text, &cat::PROCESS_RESIDENT_MEMORY, "gauge", sample.rss_bytes as f64);
        append(&mut text, &cat::PROCESS_CPU, "counter", sample.cpu.as_secs_f64());
    }
    text
}

fn append(text: &mut String, def: &MetricDef, kind: &str, value: f64) {
    if !text.is_empty() && !text.ends_with('\n') {
        text.push('\n');
    }
    let _ = writeln!(text, "# HELP {} {}", def.name, def.help);
    let _ = writeln!(text, "# TYPE {} {}", def.name, kind);
    let _ = writeln!(text, "{} {}", def.name, value);
}
