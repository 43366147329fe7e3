//! The standalone service: its configuration file, configured polling
//! pipelines and their transform steps.
//!
//! The binary (`switchyard run`) composes these with the engine, the
//! scrape endpoint and signal handling; embedding hosts can use the same
//! pieces to run configured pipelines inside their own process.

mod config;
mod endpoints;
mod poller;
mod runner;
mod secret;
mod status;
mod steps;

pub use config::{
    ActionConfig, ConfigError, PipelineConfig, Pz1Default, ServiceConfig, SourceConfig, StepConfig,
    DEFAULT_ACTION_INITIAL_BACKOFF_MS, DEFAULT_ACTION_MAX_ATTEMPTS, DEFAULT_ACTION_MAX_BACKOFF_MS,
    DEFAULT_MAX_ITEMS_PER_POLL, DEFAULT_PZ1_POLL_PERIOD_MS, DEFAULT_PZ1_ZAPS,
};
pub use endpoints::Endpoints;
pub use poller::{Pipeline, PipelineCounters};
pub use runner::{run_service, RunLimits, PZ1_PIPELINE_NAME, SERVICE_RUNS_TABLE, SERVICE_SEEN_PREFIX};
pub use secret::Template;
pub use status::{
    CpuStatus, FailureStatus, LatencyWindow, MysqlStatus, PipelineStatus, ReactorStatus, StatusSnapshot,
    StatusSource, TaskStatus,
};
pub use steps::{apply_steps, canonical_json, prepare_item, PreparedItem, StepError};
