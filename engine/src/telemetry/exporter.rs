//! Prometheus exposition: a recorder with Switchyard's buckets and help
//! texts, and the text a `/metrics` endpoint serves.
//!
//! The decision: Switchyard serves `/metrics` from its own listener (beside
//! `/healthz` and `/status`) instead of the exporter's, so process metrics
//! can be read at scrape time and appended with full precision (the
//! `metrics` facade's counters are integers; CPU seconds are not).

use std::fmt::Write;
use std::net::SocketAddr;

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use switchyard_protocol::catalogue::{self as cat, MetricDef, MetricKind, Unit};

use super::process::ProcessSample;
use crate::error::Error;

/// Where `/metrics` listens unless told otherwise: loopback only, never all
/// interfaces.
pub const DEFAULT_METRICS_ADDR: SocketAddr =
    SocketAddr::new(std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST), 9464);

/// The installed recorder.
#[derive(Clone)]
pub struct PrometheusSetup {
    handle: PrometheusHandle,
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

/// Installs the global Prometheus recorder with explicit buckets for every
/// catalogue histogram and describes every catalogue metric. For binaries
/// and hosts only: a library must never install a recorder.
pub fn install_prometheus() -> Result<PrometheusSetup, Error> {
    let mut builder = PrometheusBuilder::new();
    for def in cat::CATALOGUE.iter().filter(|m| m.kind == MetricKind::Histogram) {
        builder = builder
            .set_buckets_for_metric(Matcher::Full(def.name.to_string()), def.buckets)
            .map_err(|e| Error::config_from("metrics.buckets", e))?;
    }
    let recorder = builder.build_recorder();
    let handle = recorder.handle();
    metrics::set_global_recorder(recorder)
        .map_err(|e| Error::config_from("metrics.recorder", e.to_string()))?;
    for def in cat::CATALOGUE {
        describe(def);
    }
    Ok(PrometheusSetup { handle })
}

fn describe(def: &MetricDef) {
    let unit = match def.unit {
        Unit::Seconds => Some(metrics::Unit::Seconds),
        Unit::Bytes => Some(metrics::Unit::Bytes),
        Unit::Count => None,
    };
    let (name, help) = (def.name, def.help);
    match (def.kind, unit) {
        (MetricKind::Counter, Some(u)) => metrics::describe_counter!(name, u, help),
        (MetricKind::Counter, None) => metrics::describe_counter!(name, help),
        (MetricKind::Gauge, Some(u)) => metrics::describe_gauge!(name, u, help),
        (MetricKind::Gauge, None) => metrics::describe_gauge!(name, help),
        (MetricKind::Histogram, Some(u)) => metrics::describe_histogram!(name, u, help),
        (MetricKind::Histogram, None) => metrics::describe_histogram!(name, help),
    }
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
