//! Switchyard's metrics on a Prometheus exporter the host builds itself.
//!
//! A host that exports its own metrics with `metrics-exporter-prometheus`
//! passes its builder through [`with_switchyard_buckets`] before building
//! the recorder: every Switchyard histogram then gets its explicit buckets
//! and is exported as a histogram (without them the exporter would publish
//! a summary, which cannot be aggregated across processes).
//! [`describe_switchyard_metrics`] adds the catalogue's help texts and units.
//!
//! ```
//! use metrics_exporter_prometheus::PrometheusBuilder;
//! use switchyard::telemetry::prometheus::with_switchyard_buckets;
//!
//! let recorder = with_switchyard_buckets(PrometheusBuilder::new())?.build_recorder();
//! let exposition = recorder.handle().render();
//! # let _ = exposition;
//! # Ok::<_, metrics_exporter_prometheus::BuildError>(())
//! ```

// The one place this crate may use the raw metrics macros (see clippy.toml).
#![allow(clippy::disallowed_macros)]

use metrics_exporter_prometheus::{BuildError, Matcher, PrometheusBuilder};
use switchyard_protocol::catalogue::{MetricDef, MetricKind, Unit, CATALOGUE};

/// `builder` with explicit buckets for every Switchyard histogram.
pub fn with_switchyard_buckets(mut builder: PrometheusBuilder) -> Result<PrometheusBuilder, BuildError> {
    for def in CATALOGUE.iter().filter(|m| m.kind == MetricKind::Histogram) {
        builder = builder.set_buckets_for_metric(Matcher::Full(def.name.to_string()), def.buckets)?;
    }
    Ok(builder)
}

/// Describes every catalogue metric (help text and unit) to the recorder
/// installed now.
pub fn describe_switchyard_metrics() {
    for def in CATALOGUE {
        describe(def);
    }
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
