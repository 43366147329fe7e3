//! Workload PZ-1, the polling-trigger workload: the yardstick every
//! execution model and every peer is measured with (specified in
//! `docs/pz1.md`).
//!
//! A fleet of "zaps" is polled on an open-loop schedule; each poll waits on
//! an upstream API, transforms and fingerprints what came back (the CPU
//! part), then fires one action per new item and records the run. This
//! crate holds the workload's pure functions, the upstream that serves its
//! HTTP contract, PZ-1 as a configuration of Switchyard's polling pipeline,
//! and the open-loop benchmark driver that runs it on an engine.
//!
//! # The one decision
//!
//! The workload is a pure function of its parameters: no clock, no
//! randomness. Delays come from SHA-256 of `"{zap}/{seq}/{step}"`, events
//! from their number, so a run can be replayed in any language and checked
//! against the vectors file (`tests/data/pz1_vectors.json`, reproduced by
//! `tests/vectors.rs` here and by the Python peers' tests).
//!
//! # Map
//!
//! | what | items |
//! | --- | --- |
//! | parameters | [`Params`], [`ParamsError`], `DEFAULT_*` |
//! | release schedule | [`schedule()`], [`Task`], [`Params::in_measured_window`] |
//! | upstream delays | [`delay_ms`], [`task_delays`] |
//! | upstream data | [`poll_event_ids`], [`Event`], [`PollBody`], [`write_poll_body`] |
//! | canonical form | [`canonical()`], [`canonical_json`], [`transform_poll`] |
//! | the upstream | [`Pz1Upstream`], [`Fault`] |
//! | PZ-1 as a pipeline | [`pz1_pipeline`], [`Pz1Requests`], [`Pz1Transform`], [`pz1_steps`] |
//! | the benchmark | [`run_bench`], [`TaskQueue`], [`summarise`], [`task_figures`] |
//! | what a task costs | [`calibrate_cpu_alone`], [`CpuAlone`], [`RoleCpu`] |
//! | ideal latency | [`IdealClock`], [`slowdown`] |
//! | reporting | [`Report`], [`REPORT_KEYS`], [`percentile`], [`sustains`] |
//!
//! # Example
//!
//! ```
//! use switchyard_pz1::{self as pz1, Params};
//!
//! let params = Params::default();
//! params.validate().unwrap();
//!
//! // The upstream serves a poll body ...
//! let mut body = Vec::new();
//! pz1::write_poll_body(&mut body, "z7", 1, params.items, params.fresh);
//!
//! // ... which a task transforms on the CPU pool.
//! let items = pz1::transform_poll(&body, 1).unwrap();
//! assert_eq!(items.len(), 50);
//! assert_eq!(items[0].id, "z7-52"); // newest first
//!
//! // The delays the task asks the upstream for: the poll, then one per action.
//! let (poll_ms, action_ms) = pz1::task_delays("z7", 2, 2, &params);
//! assert_eq!(action_ms.len(), 2);
//! assert!(poll_ms <= params.max_ms);
//! ```

mod bench;
mod canonical;
mod cost;
mod delay;
mod error;
mod event;
mod ideal;
mod json;
mod params;
mod pipeline;
mod report;
mod rfc3339;
mod schedule;
mod task_queue;
mod transform;
mod upstream;

pub use bench::{run_bench, summarise, task_figures, BenchOutcome, Progress, TaskFigures, TaskRecord};
pub use canonical::{canonical, canonical_json, CanonicalItem};
pub use cost::{calibrate_cpu_alone, CpuAlone, RoleCpu};
pub use delay::{delay_ms, task_delays};
pub use error::{ParamsError, TransformError};
pub use event::{poll_event_ids, write_poll_body, Event, PollBody, EPOCH_RFC3339, NOTE};
pub use ideal::{slowdown, IdealClock};
pub use params::{
    Params, DEFAULT_ALPHA, DEFAULT_BASE_MS, DEFAULT_DRAIN_S, DEFAULT_DURATION_S, DEFAULT_FRESH,
    DEFAULT_ITEMS, DEFAULT_MAX_MS, DEFAULT_RATE, DEFAULT_ROUNDS, DEFAULT_WARMUP_S, MAX_ITEMS, MAX_ROUNDS,
};
pub use pipeline::{pz1_pipeline, pz1_steps, Pz1Requests, Pz1Transform, PZ1_SEEN_PREFIX, PZ_RUNS_TABLE};
pub use report::{
    percentile, sustains, Report, REPORT_KEYS, SUSTAIN_COMPLETED_FRACTION, SUSTAIN_MAX_SLOWDOWN_P99,
};
pub use schedule::{schedule, Task};
pub use task_queue::TaskQueue;
pub use transform::{prepare_poll, transform_poll, Transformed};
pub use upstream::{
    Fault, FaultTarget, Pz1Upstream, UpstreamCounters, MAX_ACTION_BODY_BYTES, UPSTREAM_MAX_CONNECTIONS,
};
