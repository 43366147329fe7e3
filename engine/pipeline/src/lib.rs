//! Switchyard's polling pipeline: fetch an API, transform what it returns on
//! the CPU pool, skip what was already seen, deliver each new item, record
//! the poll.
//!
//! One [`Pipeline`] runs any number of triggers (things polled on their own
//! schedule with their own dedup state); each call of [`Pipeline::poll`] is
//! one poll, run inside an engine task with its [`TaskContext`]. The parts
//! that differ from one pipeline to the next are behind small traits:
//!
//! | part | trait | configured | in this crate also |
//! | --- | --- | --- | --- |
//! | the HTTP calls | [`Requests`] | [`ConfiguredRequests`] (URL templates, headers) | |
//! | the CPU step | [`Transform`] | [`StepsTransform`] (named steps) | |
//! | dedup state | [`SeenStore`] | [`RedisSeenStore`] | [`MemoryStores`] |
//! | run records | [`RunLog`] | [`MysqlRunLog`] | [`MemoryStores`] |
//!
//! [`PipelineConfig`] is a pipeline as the service's configuration file
//! writes it; [`Pipeline::from_config`] builds it. Workload PZ-1 is one
//! pipeline too, with its own requests and a compiled transform.
//!
//! Metric handles are resolved when a pipeline is built: install the
//! recorder before building pipelines (as before building the engine).
//!
//! [`TaskContext`]: switchyard::TaskContext

mod config;
mod durable;
mod error;
mod fingerprint;
mod job;
mod pipeline;
mod requests;
mod steps;
mod store;
mod telemetry;
mod template;
mod text;
mod transform;

pub use config::{
    redact_url_template, ActionConfig, DedupConfig, PipelineConfig, RateLimitConfig, SourceConfig,
    DEFAULT_ACTION_INITIAL_BACKOFF_MS, DEFAULT_ACTION_MAX_ATTEMPTS, DEFAULT_ACTION_MAX_BACKOFF_MS,
    DEFAULT_DEDUP_MAX_AGE_MS, DEFAULT_DEDUP_MAX_IDS, DEFAULT_MAX_ITEMS_PER_POLL, MAX_ACTION_ATTEMPTS,
    MAX_ACTION_BACKOFF_MS, MAX_FINGERPRINT_ROUNDS, MAX_FINGERPRINT_ROUNDS_PER_POLL, MAX_ITEMS_PER_POLL_LIMIT,
};
pub use durable::{
    idempotency_key, retry_after, verdict, Backoff, DedupBounds, DeliveryJob, Outbox, Rejections, SeenState,
    Verdict, Written, IDEMPOTENCY_KEY, MAX_RETRY_AFTER,
};
pub use error::ConfigError;
pub use fingerprint::{fingerprint, fingerprint_hex, fingerprint_raw};
pub use job::{PollError, PollJob, PollOutcome, Stage};
pub use pipeline::{delivery_body, DeliveryPolicy, Pipeline, PipelineCounters, PipelineParts, Seeding};
pub use requests::{ConfiguredRequests, Requests};
pub use steps::{apply_steps, canonical_json, prepare_item, PreparedItem, StepConfig, StepError};
pub use store::{
    create_runs_table, runs_table_ddl, MemoryStores, MysqlRunLog, NoRunLog, RedisSeenStore, RunLog,
    RunRecord, SeenCheck, SeenStore, StoreError, StoreFuture, Stores, MEMORY_MAX_RECORDS,
    MEMORY_MAX_SEEN_PER_TRIGGER, SEEN_TTL,
};
pub use template::Template;
pub use text::{collapse_whitespace, decimal_to_cents, lower_case, sort_dedupe, trim, AmountError};
pub use transform::{
    Prepared, RejectedItem, StepsTransform, Transform, TransformError, MAX_REJECTED_ITEM_CHARS,
};
