//! Workload PZ-1, the polling-trigger workload: its parameters and every pure
//! function that decides its results.
//!
//! PZ-1 is the common yardstick of this project (see `workload/README.md`):
//! a fleet of "zaps" is polled on an open-loop schedule; each poll waits on an
//! upstream API, transforms and fingerprints what came back (the CPU part),
//! then fires one action per new item. Every engine model, the HTTP upstream,
//! the benchmark and the Python peers use this module, so that they all send
//! the same requests, wait the same delays and compute the same fingerprints.
//!
//! # The one decision
//!
//! Everything here is a pure function of its arguments: no clock, no
//! randomness, no I/O. Delays come from SHA-256 of `"{zap}/{seq}/{step}"`,
//! events from their number, so a run can be replayed in any language and
//! checked against `vectors.json` (the conformance tests in
//! `tests/pz1_vectors.rs` reproduce every value of that file).
//!
//! # Map
//!
//! | what | items |
//! | --- | --- |
//! | parameters | [`Params`], [`ParamsError`], `DEFAULT_*` |
//! | release schedule | [`schedule()`], [`Task`], [`Params::in_measured_window`] |
//! | upstream delays | [`delay_ms`], [`task_delays`] |
//! | upstream data | [`poll_event_ids`], [`Event`], [`PollBody`], [`write_poll_body`] |
//! | transform steps | [`trim`], [`lower_case`], [`collapse_whitespace`], [`decimal_to_cents`], [`sort_dedupe`] |
//! | canonical form | [`canonical()`], [`canonical_json`], [`fingerprint()`], [`transform_poll`], [`action_body`] |
//! | ideal latency | [`IdealClock`], [`slowdown`] |
//! | reporting | [`Report`], [`REPORT_KEYS`], [`percentile`], [`sustains`] |
//!
//! # Example
//!
//! ```
//! use switchyard_protocol::pz1::{self, Params};
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

mod canonical;
mod delay;
mod error;
mod event;
mod fingerprint;
mod ideal;
mod json;
mod params;
mod report;
mod rfc3339;
mod schedule;
mod steps;
mod transform;

pub use canonical::{canonical, canonical_json, CanonicalItem};
pub use delay::{delay_ms, task_delays};
pub use error::{ParamsError, TransformError};
pub use event::{poll_event_ids, write_poll_body, Event, PollBody, EPOCH_RFC3339, NOTE};
pub use fingerprint::{fingerprint, fingerprint_raw};
pub use ideal::{slowdown, IdealClock};
pub use params::{
    Params, DEFAULT_ALPHA, DEFAULT_BASE_MS, DEFAULT_DRAIN_S, DEFAULT_DURATION_S, DEFAULT_FRESH,
    DEFAULT_ITEMS, DEFAULT_MAX_MS, DEFAULT_RATE, DEFAULT_ROUNDS, DEFAULT_WARMUP_S,
};
pub use report::{
    percentile, sustains, Report, REPORT_KEYS, SUSTAIN_MAX_SLOWDOWN_P99, SUSTAIN_THROUGHPUT_FRACTION,
};
pub use schedule::{schedule, Task};
pub use steps::{collapse_whitespace, decimal_to_cents, lower_case, sort_dedupe, trim};
pub use transform::{action_body, transform_poll, Transformed};
