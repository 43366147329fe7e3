//! PZ-1 as a configuration of Switchyard's polling pipeline.
//!
//! A PZ-1 task is one poll of one zap (the pipeline's trigger): fetch
//! `/poll/{zap}` (I/O), transform and fingerprint (CPU), skip seen ids
//! (dedup store), post one action per new item, oldest first (I/O), record
//! the poll. What PZ-1 brings of its own:
//!
//! - [`Pz1Requests`]: every call carries the delay the workload assigns it,
//!   from the zap, the poll's number and the call's step;
//! - [`Pz1Transform`]: the transform of [`pz1_steps`], compiled: a typed,
//!   borrowing parse of the poll body that gives the items the configured
//!   steps give (a test holds the two together; they differ only in which
//!   repeats within a poll they drop: the workload drops repeated
//!   fingerprints, configured pipelines repeated ids), in a fraction of the
//!   time, so the CPU a task costs is the workload's hashing and not a
//!   generic JSON tree;
//! - the first poll of a zap (poll 1) seeds its dedup state and delivers
//!   nothing, whatever state it finds, and later polls never seed
//!   ([`Seeding::FirstPoll`]);
//! - one delivery attempt per action (the workload's actions do not retry:
//!   a failed one fails the task, and the next poll delivers the item).

use std::sync::Arc;

use bytes::Bytes;
use http::header::CONTENT_TYPE;
use http::{Method, Request};
use switchyard_pipeline::{
    DeliveryPolicy, Pipeline, PipelineParts, PollJob, Prepared, Requests, Seeding, StepConfig, Stores,
    Transform, TransformError,
};

use crate::delay::delay_ms;
use crate::params::Params;
use crate::transform::prepare_poll;

/// The table PZ-1 records its runs in.
pub const PZ_RUNS_TABLE: &str = "pz_runs";
/// Prefix of PZ-1's Redis seen-sets (`pz:seen:{zap}`).
pub const PZ1_SEEN_PREFIX: &str = "pz:seen:";

/// PZ-1's upstream calls: `GET /poll/{zap}` and `POST /action/{zap}`, each
/// with the delay the workload assigns it.
#[derive(Debug, Clone)]
pub struct Pz1Requests {
    base_url: String,
    params: Params,
}

impl Pz1Requests {
    /// Calls to the upstream at `base_url` (`http://host:port`).
    pub fn new(base_url: impl Into<String>, params: Params) -> Self {
        Pz1Requests { base_url: base_url.into().trim_end_matches('/').to_string(), params }
    }

    fn delay(&self, zap: &str, seq: u64, step: u32) -> u64 {
        let p = &self.params;
        delay_ms(zap, seq, step, p.base_ms, p.alpha, p.max_ms)
    }
}

impl Requests for Pz1Requests {
    fn poll(&self, job: &PollJob) -> Result<Request<Bytes>, http::Error> {
        let (zap, seq, p) = (job.trigger.as_str(), job.seq, &self.params);
        let url = format!(
            "{}/poll/{zap}?seq={seq}&n={}&fresh={}&delay_ms={}",
            self.base_url,
            p.items,
            p.fresh,
            self.delay(zap, seq, 0)
        );
        Request::get(url).body(Bytes::new())
    }

    fn delivery(&self, job: &PollJob, step: u32, body: Bytes) -> Result<Request<Bytes>, http::Error> {
        let zap = job.trigger.as_str();
        let url = format!("{}/action/{zap}?delay_ms={}", self.base_url, self.delay(zap, job.seq, step));
        Request::builder().method(Method::POST).uri(url).header(CONTENT_TYPE, "application/json").body(body)
    }
}

/// The PZ-1 transform ([`transform_poll`]) as a pipeline transform.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pz1Transform {
    rounds: u32,
}

impl Pz1Transform {
    /// Fingerprints with `rounds` SHA-256 rounds (at least 1).
    pub fn new(rounds: u32) -> Self {
        Pz1Transform { rounds: rounds.max(1) }
    }
}

impl Transform for Pz1Transform {
    fn prepare(&self, body: &[u8]) -> Result<Prepared, TransformError> {
        // The workload's typed parse reads the body whole: a bad item fails
        // the poll, as the workload specifies.
        let items = prepare_poll(body, self.rounds).map_err(|e| TransformError::new(e.to_string()))?;
        Ok(Prepared { items, rejected: Vec::new() })
    }
}

/// The PZ-1 transform written as configured steps (what `examples/pz1.toml`
/// configures): the same items as [`Pz1Transform`].
pub fn pz1_steps(rounds: u32) -> Vec<StepConfig> {
    let f = |s: &str| s.to_string();
    vec![
        StepConfig::Trim { field: f("email") },
        StepConfig::LowerCase { field: f("email") },
        StepConfig::Trim { field: f("name") },
        StepConfig::CollapseWhitespace { field: f("name") },
        StepConfig::LowerCase { field: f("name") },
        StepConfig::DecimalToCents { field: f("amount"), into: Some(f("amount_cents")) },
        StepConfig::LowerCase { field: f("tags") },
        StepConfig::SortDedupe { field: f("tags") },
        StepConfig::Fingerprint { rounds },
    ]
}

/// Workload PZ-1 against the upstream at `base_url`, as one pipeline named
/// `name` whose triggers are the zaps.
pub fn pz1_pipeline(
    name: &str,
    base_url: impl Into<String>,
    params: &Params,
    stores: Stores,
    run_id: impl Into<String>,
) -> Arc<Pipeline> {
    Pipeline::new(PipelineParts {
        name: name.to_string(),
        requests: Arc::new(Pz1Requests::new(base_url, params.clone())),
        transform: Arc::new(Pz1Transform::new(params.rounds)),
        newest_first: true,
        seeding: Seeding::FirstPoll,
        delivery: DeliveryPolicy::ONCE,
        stores,
        run_id: run_id.into(),
        // PZ-1 paces its polls by its schedule.
        rate_limit: None,
    })
}

#[cfg(test)]
mod tests;
