//! The polling pipeline: fetch the source (reactor) → transform (CPU pool)
//! → skip what was seen (dedup store) → deliver each new item (reactor) →
//! mark delivered items seen → record the poll (run log).
//!
//! Delivery is at-least-once: an item is marked seen only after its
//! delivery succeeded, so a crash between the two repeats a delivery but
//! never loses one. A delivery still failing after its retries stops the
//! poll's remaining deliveries; those items stay unseen and the trigger's
//! next poll delivers them. Items are delivered one at a time, oldest first.
//!
//! A trigger's first poll may seed its dedup state instead ([`Seeding`]):
//! everything it finds is marked seen and nothing is delivered, so switching
//! a pipeline on does not replay an API's history.
//!
//! The pipeline's metrics are resolved when it is built
//! ([`Pipeline::new`]): install the recorder first.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use backon::{ExponentialBuilder, Retryable};
use bytes::Bytes;
use switchyard::io_reactor;
use switchyard::io_reactor::RateLimit;
use switchyard::TaskContext;

use crate::config::PipelineConfig;
use crate::error::ConfigError;
use crate::job::{PollError, PollJob, PollOutcome, Stage};
use crate::requests::{ConfiguredRequests, Requests};
use crate::steps::PreparedItem;
use crate::store::{RunRecord, Stores};
use crate::telemetry::PipelineMetrics;
use crate::transform::{Prepared, StepsTransform, Transform};

/// A member every seeded trigger's state holds, so an empty first poll
/// still counts as seeded. No API id starts with a control character.
const SEED_MARKER: &str = "\u{1}seeded";

/// Counters of one pipeline, for status reports.
#[derive(Debug, Default)]
pub struct PipelineCounters {
    /// Polls that finished without error.
    pub polls_ok: AtomicU64,
    /// Polls that failed at some stage.
    pub polls_failed: AtomicU64,
    /// Items delivered.
    pub delivered: AtomicU64,
    /// Delivery attempts that failed (each retry counts).
    pub delivery_failures: AtomicU64,
    /// Items its transform rejected as malformed.
    pub rejected: AtomicU64,
    /// Times its dedup state was found lost (durable pipelines).
    pub state_lost: AtomicU64,
}

/// When a poll seeds its trigger's dedup state instead of delivering.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Seeding {
    /// Never: every item not seen is delivered.
    Never,
    /// Poll number 1 seeds, whatever the state; later polls never do
    /// (workload PZ-1's rule: a schedule's first poll is poll 1).
    FirstPoll,
    /// A poll that finds the trigger without any dedup state seeds it
    /// (configured pipelines: the state survives restarts in Redis).
    WhenNoState,
}

/// How one item's delivery is retried.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DeliveryPolicy {
    /// Attempts per item and poll (1: no retry).
    pub max_attempts: u32,
    /// First retry delay; doubles per attempt, with full jitter.
    pub initial_backoff: Duration,
    /// Longest retry delay.
    pub max_backoff: Duration,
}

impl DeliveryPolicy {
    /// One attempt, no retry.
    pub const ONCE: DeliveryPolicy =
        DeliveryPolicy { max_attempts: 1, initial_backoff: Duration::ZERO, max_backoff: Duration::ZERO };

    fn backoff(&self) -> ExponentialBuilder {
        ExponentialBuilder::default()
            .with_min_delay(self.initial_backoff)
            .with_max_delay(self.max_backoff)
            .with_max_times(self.max_attempts.saturating_sub(1) as usize)
            .with_jitter()
    }
}

/// Everything a pipeline is made of.
#[derive(Debug)]
pub struct PipelineParts {
    /// Its name: a metric label and the key of its status.
    pub name: String,
    /// Builds the poll and delivery requests.
    pub requests: Arc<dyn Requests>,
    /// Turns a poll's body into items (on the CPU pool).
    pub transform: Arc<dyn Transform>,
    /// The source lists items newest first, so deliveries go in reverse.
    pub newest_first: bool,
    /// When a poll seeds the dedup state instead of delivering.
    pub seeding: Seeding,
    /// How deliveries are retried.
    pub delivery: DeliveryPolicy,
    /// Dedup state and run records.
    pub stores: Stores,
    /// The run its records belong to.
    pub run_id: String,
    /// Its own rate limit over all its requests, if it has one.
    pub rate_limit: Option<RateLimit>,
}

/// A polling pipeline, ready to run polls from any number of tasks.
#[derive(Debug)]
pub struct Pipeline {
    pub(crate) parts: PipelineParts,
    backoff: ExponentialBuilder,
    pub(crate) counters: Arc<PipelineCounters>,
    pub(crate) metrics: PipelineMetrics,
    /// A durable pipeline's dedup state was in Redis while this process ran
    /// (a poll found it, seeded it or wrote to it): finding neither it nor
    /// its marker later means Redis lost them, not that the pipeline is new.
    pub(crate) durable_state_seen: AtomicBool,
}

impl Pipeline {
    /// A pipeline of `parts`. Its metric handles are resolved here, from
    /// the recorder installed now.
    pub fn new(parts: PipelineParts) -> Arc<Pipeline> {
        let backoff = parts.delivery.backoff();
        let metrics = PipelineMetrics::new(&parts.name);
        Arc::new(Pipeline {
            parts,
            backoff,
            counters: Arc::default(),
            metrics,
            durable_state_seen: AtomicBool::new(false),
        })
    }

    /// A configured pipeline (`key` names it in errors, e.g. `pipelines[0]`).
    pub fn from_config(
        config: &PipelineConfig,
        key: &str,
        stores: Stores,
        run_id: &str,
    ) -> Result<Arc<Pipeline>, ConfigError> {
        let source = &config.source;
        let action = &config.action;
        Ok(Pipeline::new(PipelineParts {
            name: config.name.clone(),
            requests: Arc::new(ConfiguredRequests::new(config, key)?),
            transform: Arc::new(StepsTransform::new(
                source.items_pointer.clone(),
                source.id_field.clone(),
                config.steps.clone(),
                source.max_items,
            )),
            newest_first: source.newest_first,
            seeding: if source.seed_on_first_poll { Seeding::WhenNoState } else { Seeding::Never },
            delivery: DeliveryPolicy {
                max_attempts: action.max_attempts,
                initial_backoff: Duration::from_millis(action.initial_backoff_ms),
                max_backoff: Duration::from_millis(action.max_backoff_ms),
            },
            stores,
            run_id: run_id.to_string(),
            rate_limit: config.rate_limit.and_then(|r| RateLimit::new(r.per_second, r.burst)),
        }))
    }

    /// Sends one of the pipeline's requests, after its own rate limit.
    pub(crate) async fn send(
        &self,
        cx: &TaskContext,
        request: http::Request<Bytes>,
    ) -> io_reactor::Result<io_reactor::HttpResponse> {
        if let Some(rate) = &self.parts.rate_limit {
            rate.until_ready().await;
        }
        cx.http().send(request).await
    }

    /// The pipeline's name.
    pub fn name(&self) -> &str {
        &self.parts.name
    }

    /// Its counters.
    pub fn counters(&self) -> &Arc<PipelineCounters> {
        &self.counters
    }

    /// Runs one poll and records it, whether it succeeded or not. The poll's
    /// own error wins over a failure to record it.
    pub async fn poll(&self, cx: &TaskContext, job: &PollJob) -> Result<PollOutcome, PollError> {
        let result = self.execute(cx, job).await;
        self.finish(cx, job, result).await
    }

    /// Records a poll's result in the run log and counts it.
    pub(crate) async fn finish(
        &self,
        cx: &TaskContext,
        job: &PollJob,
        result: Result<PollOutcome, PollError>,
    ) -> Result<PollOutcome, PollError> {
        let done = result.as_ref().map_or_else(|e| e.partial, |done| *done);
        let record = RunRecord {
            run_id: self.parts.run_id.clone(),
            trigger: job.trigger.clone(),
            seq: job.seq,
            items: done.items,
            new_items: done.new_items,
            latency_ms: job.released_at.elapsed().as_secs_f64() * 1e3,
            status: result.as_ref().map_or_else(|e| e.stage().status(), |_| "ok"),
            error: result.as_ref().err().map(ToString::to_string),
        };
        let recorded = self.parts.stores.runs.record(cx, record).await;
        let result = match (result, recorded) {
            (Ok(done), Err(e)) => Err(PollError::store(e).with_partial(done)),
            (result, _) => result,
        };
        let ok = result.is_ok();
        let counter = if ok { &self.counters.polls_ok } else { &self.counters.polls_failed };
        counter.fetch_add(1, Ordering::Relaxed);
        self.counters.delivered.fetch_add(u64::from(done.new_items), Ordering::Relaxed);
        self.metrics.polled(ok, done.new_items);
        result
    }

    /// Fetches the source and prepares its items on the CPU pool (parsing
    /// is CPU work too).
    pub(crate) async fn fetch_and_prepare(
        &self,
        cx: &TaskContext,
        job: &PollJob,
        done: &mut PollOutcome,
    ) -> Result<Prepared, PollError> {
        done.requests += 1;
        let request = self.parts.requests.poll(job).map_err(|e| PollError::at(Stage::Poll, e, *done))?;
        let response = self.send(cx, request).await.and_then(|r| r.error_for_status());
        let body = response.map_err(|e| PollError::at(Stage::Poll, e, *done))?.body;
        let transform = self.parts.transform.clone();
        let prepared = cx
            .cpu_stage("transform", move || transform.prepare(&body))
            .await
            .map_err(|e| PollError::at(Stage::Transform, e, *done))?
            .map_err(|e| PollError::at(Stage::Transform, e, *done))?;
        self.report_rejected(job, &prepared.rejected);
        done.items = u32::try_from(prepared.items.len()).unwrap_or(u32::MAX);
        Ok(prepared)
    }

    async fn execute(&self, cx: &TaskContext, job: &PollJob) -> Result<PollOutcome, PollError> {
        let mut done = PollOutcome::default();
        let items = self.fetch_and_prepare(cx, job, &mut done).await?.items;

        let seen_store = &self.parts.stores.seen;
        let seeding = self.parts.seeding;
        let mut ids: Vec<&str> = items.iter().map(|i| i.id.as_str()).collect();
        if seeding == Seeding::FirstPoll && job.seq == 1 {
            seen_store.mark_seen(cx, &job.trigger, &ids).await.map_err(|e| store_error(e, done))?;
            return Ok(done);
        }
        let want_state = seeding == Seeding::WhenNoState;
        let check =
            seen_store.seen(cx, &job.trigger, &ids, want_state).await.map_err(|e| store_error(e, done))?;
        if want_state && !check.has_state {
            // The marker creates the state even when the first poll is empty.
            ids.push(SEED_MARKER);
            seen_store.mark_seen(cx, &job.trigger, &ids).await.map_err(|e| store_error(e, done))?;
            return Ok(done);
        }
        drop(ids);
        // Only the new items are kept across the deliveries' waits: a task
        // parked on a webhook holds a few hundred bytes, not the whole poll
        // (a fresh vector: collecting in place would keep the poll's).
        let mut new = Vec::with_capacity(check.seen.iter().filter(|seen| !**seen).count());
        new.extend(items.into_iter().zip(check.seen).filter(|(_, seen)| !seen).map(|(item, _)| item));
        if self.parts.newest_first {
            new.reverse();
        }

        let mut delivered = Vec::with_capacity(new.len());
        let mut failure = None;
        for (step, item) in (1u32..).zip(new) {
            match self.deliver(cx, job, step, delivery_body(&item), &mut done).await {
                Ok(()) => delivered.push(item.id),
                Err(e) => {
                    failure = Some(e);
                    break;
                }
            }
        }
        done.new_items = u32::try_from(delivered.len()).unwrap_or(u32::MAX);
        let delivered: Vec<&str> = delivered.iter().map(String::as_str).collect();
        seen_store.mark_seen(cx, &job.trigger, &delivered).await.map_err(|e| store_error(e, done))?;
        match failure {
            Some(e) => Err(PollError::at(Stage::Action, e, done)),
            None => Ok(done),
        }
    }

    /// Counts and logs the items a poll's transform rejected. They are not
    /// marked seen: the next poll rejects them again until the API fixes
    /// them (the durable service keeps them as dead letters too).
    fn report_rejected(&self, job: &PollJob, rejected: &[crate::transform::RejectedItem]) {
        if let Some(first) = rejected.first() {
            self.metrics.rejected(rejected.len());
            self.counters.rejected.fetch_add(rejected.len() as u64, Ordering::Relaxed);
            tracing::warn!(
                pipeline = %self.parts.name,
                trigger = %job.trigger,
                seq = job.seq,
                rejected = rejected.len(),
                first_index = first.index,
                first_reason = %first.reason,
                "items rejected by the transform"
            );
        }
    }

    /// One item to the action, retried with exponential backoff and jitter
    /// while the failure is worth retrying (transport errors, 408, 429, 5xx).
    async fn deliver(
        &self,
        cx: &TaskContext,
        job: &PollJob,
        step: u32,
        body: Bytes,
        done: &mut PollOutcome,
    ) -> Result<(), DeliveryError> {
        let attempts = AtomicU64::new(0);
        let attempt = || async {
            let request =
                self.parts.requests.delivery(job, step, body.clone()).map_err(DeliveryError::Build)?;
            attempts.fetch_add(1, Ordering::Relaxed);
            let result = self.send(cx, request).await.and_then(|r| r.error_for_status());
            if result.is_err() {
                self.counters.delivery_failures.fetch_add(1, Ordering::Relaxed);
            }
            result.map(drop).map_err(DeliveryError::Http)
        };
        let result =
            attempt.retry(self.backoff).sleep(tokio::time::sleep).when(DeliveryError::retryable).await;
        done.requests += u32::try_from(attempts.load(Ordering::Relaxed)).unwrap_or(u32::MAX);
        result
    }
}

/// Why one delivery failed.
#[derive(Debug)]
enum DeliveryError {
    /// The request could not be built (never sent).
    Build(http::Error),
    /// It was sent and failed.
    Http(io_reactor::Error),
}

impl DeliveryError {
    fn retryable(&self) -> bool {
        match self {
            DeliveryError::Build(_) => false,
            DeliveryError::Http(e) => match e.status() {
                Some(status) => status == 408 || status == 429 || status >= 500,
                None => !e.is_body_too_large(),
            },
        }
    }
}

impl std::fmt::Display for DeliveryError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DeliveryError::Build(e) => write!(f, "cannot build the request: {e}"),
            DeliveryError::Http(e) => std::fmt::Display::fmt(e, f),
        }
    }
}

fn store_error(e: crate::store::StoreError, done: PollOutcome) -> PollError {
    PollError::store(e).with_partial(done)
}

/// `{"id":..,"fingerprint":..,"item":<canonical object>}`, compact, in that order.
pub fn delivery_body(item: &PreparedItem) -> Bytes {
    let mut out = Vec::with_capacity(item.canonical.len() + item.id.len() + 100);
    out.extend_from_slice(b"{\"id\":");
    serde_json::to_writer(&mut out, &item.id).expect("writing a string to a Vec cannot fail");
    out.extend_from_slice(b",\"fingerprint\":\"");
    out.extend_from_slice(item.fingerprint.as_bytes());
    out.extend_from_slice(b"\",\"item\":");
    out.extend_from_slice(item.canonical.as_bytes());
    out.push(b'}');
    Bytes::from(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn item(id: &str) -> PreparedItem {
        PreparedItem { id: id.to_string(), fingerprint: "ab".repeat(32), canonical: r#"{"a":1}"#.to_string() }
    }

    #[test]
    fn the_delivery_body_is_compact_json_with_the_id_escaped() {
        let body = delivery_body(&item("q\"1"));
        let text = std::str::from_utf8(&body).unwrap();
        assert_eq!(text, format!(r#"{{"id":"q\"1","fingerprint":"{}","item":{{"a":1}}}}"#, "ab".repeat(32)));
        let parsed: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(parsed["id"], "q\"1");
    }

    #[test]
    fn only_transient_delivery_failures_are_retried() {
        let build = http::Request::get("http://x").header("bad\nname", "v").body(()).unwrap_err();
        assert!(!DeliveryError::Build(build).retryable());
    }
}
