//! The standalone Switchyard service, as `switchyard run` runs it: its
//! configuration file, the configured polling pipelines (or the built-in
//! PZ-1 zaps), the `/metrics`, `/healthz` and `/status` endpoints, and the
//! Prometheus recorder.
//!
//! The binary composes these with signal handling and logging; a host that
//! wants configured pipelines inside its own process can use the same
//! pieces ([`run_service`] on its own [`Engine`](switchyard::Engine)).

mod config;
mod durable;
mod endpoints;
mod error;
mod prometheus;
mod runner;
mod schedule;
mod status;

pub use config::{
    DurableConfig, PipelineState, Pz1Default, ServiceConfig, BUILT_IN_UPSTREAM_RANGE,
    DEFAULT_DELIVERIES_MAX_LEN, DEFAULT_DURABLE_KEY_PREFIX, DEFAULT_PZ1_POLL_PERIOD_MS, DEFAULT_PZ1_ZAPS,
    DEFAULT_SCHEDULER_TICK_MS, MAX_PZ1_ZAPS,
};
pub use durable::{redis_config, stream_configs, PollEntry};
pub use endpoints::{Endpoints, DEFAULT_LISTEN_ADDR};
pub use error::ServiceError;
pub use prometheus::{install_prometheus, render_prometheus, PrometheusSetup};
pub use runner::{
    run_service, RunLimits, PZ1_PIPELINE_NAME, SERVICE_RUNS_TABLE, SERVICE_SEEN_PREFIX, SHUTDOWN_RESERVE,
};
pub use status::{
    CpuStatus, FailureStatus, LatencyWindow, MysqlStatus, PipelineStatus, ReactorStatus, StatusSnapshot,
    StatusSource, StreamStatus, TaskStatus, TimeoutStatus,
};
pub use switchyard_pipeline::{ConfigError, PipelineConfig};
