//! One PZ-1 task, written once and run under every execution model:
//! poll (I/O) → transform and in-poll dedup (CPU) → seen check (Redis) →
//! actions, one at a time, oldest first (I/O) → mark delivered ids seen →
//! one row in `pz_runs`.
//!
//! An id is marked seen only after its action succeeded, so a crash
//! between the two repeats an action (at-least-once) but never loses one;
//! a failed action stops the task's remaining actions, and the items not
//! delivered are still unseen, so the next poll of the zap retries them.

use std::fmt;
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use switchyard_protocol::pz1::{action_body, delay_ms, transform_poll, Params, Transformed};

use super::stores::Stores;
use crate::TaskContext;

/// One task's work item: poll `seq` of `zap`, released at `release`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pz1Poll {
    /// Zap id (`z17`).
    pub zap: String,
    /// Poll sequence number, from 1.
    pub seq: u64,
    /// When the schedule released the task: latency counts from here.
    pub release: Instant,
}

/// What a finished task did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Pz1Outcome {
    /// Items the poll returned (after in-poll dedup).
    pub items: u32,
    /// Actions delivered.
    pub new_items: u32,
    /// Sum of the upstream delays the task asked for, milliseconds.
    pub delays_ms: u64,
    /// Upstream requests made.
    pub requests: u32,
}

/// Why a task failed, naming the stage.
#[derive(Debug, Clone)]
pub struct Pz1Error {
    stage: &'static str,
    message: String,
    /// What the task did before it failed (delivered actions still count).
    pub partial: Pz1Outcome,
}

impl Pz1Error {
    pub(crate) fn at(stage: &'static str, error: impl fmt::Display, partial: Pz1Outcome) -> Self {
        Pz1Error { stage, message: error.to_string(), partial }
    }
    pub(crate) fn store(error: impl fmt::Display) -> Self {
        Pz1Error::at("store_failed", error, Pz1Outcome::default())
    }
    /// The same failure, with what the task had done when it happened.
    pub(crate) fn with_partial(self, partial: Pz1Outcome) -> Self {
        Pz1Error { partial, ..self }
    }
    /// `poll_failed`, `transform_failed`, `store_failed`, `action_failed`.
    pub fn stage(&self) -> &'static str {
        self.stage
    }
}

impl fmt::Display for Pz1Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.stage.replace('_', " "), self.message)
    }
}

impl std::error::Error for Pz1Error {}

/// The PZ-1 task with its upstream, parameters and stores.
#[derive(Debug)]
pub struct Pz1Pipeline {
    base_url: String,
    params: Params,
    stores: Stores,
    run_id: String,
}

impl Pz1Pipeline {
    /// A pipeline against the upstream at `base_url` (`http://host:port`).
    pub fn new(
        base_url: impl Into<String>,
        params: Params,
        stores: Stores,
        run_id: impl Into<String>,
    ) -> Arc<Self> {
        let base_url = base_url.into().trim_end_matches('/').to_string();
        Arc::new(Pz1Pipeline { base_url, params, stores, run_id: run_id.into() })
    }

    /// The stores in use.
    pub fn stores(&self) -> &Stores {
        &self.stores
    }

    /// Runs the task and records it, failed or not.
    pub async fn run(&self, cx: &TaskContext, poll: &Pz1Poll) -> Result<Pz1Outcome, Pz1Error> {
        let result = self.execute(cx, poll).await;
        self.stores.record_result(cx, &self.run_id, &poll.zap, poll.seq, poll.release, result).await
    }

    fn delay(&self, zap: &str, seq: u64, step: u32) -> u64 {
        delay_ms(zap, seq, step, self.params.base_ms, self.params.alpha, self.params.max_ms)
    }

    async fn execute(&self, cx: &TaskContext, poll: &Pz1Poll) -> Result<Pz1Outcome, Pz1Error> {
        let (zap, seq, p) = (poll.zap.as_str(), poll.seq, &self.params);
        let mut done = Pz1Outcome::default();

        let poll_delay = self.delay(zap, seq, 0);
        done.delays_ms += poll_delay;
        done.requests += 1;
        let url = format!(
            "{}/poll/{zap}?seq={seq}&n={}&fresh={}&delay_ms={poll_delay}",
            self.base_url, p.items, p.fresh
        );
        let response = cx.http().get(&url).await.and_then(|r| r.error_for_status());
        let body = response.map_err(|e| Pz1Error::at("poll_failed", e, done))?.body;

        // Parsing the body is CPU work too: it runs on the pool with the hashing.
        let rounds = p.rounds;
        let transformed = cx
            .cpu_stage("transform", move || transform_poll(&body, rounds))
            .await
            .map_err(|e| Pz1Error::at("transform_failed", e, done))?
            .map_err(|e| Pz1Error::at("transform_failed", e, done))?;
        done.items = u32::try_from(transformed.len()).unwrap_or(u32::MAX);
        let ids: Vec<String> = transformed.iter().map(|t| t.id.clone()).collect();

        if seq == 1 {
            // The first poll seeds the seen-set and fires nothing.
            self.stores.mark_seen(cx, zap, &ids).await.map_err(|e| e.with_partial(done))?;
            return Ok(done);
        }
        let seen = self.stores.seen(cx, zap, &ids).await.map_err(|e| e.with_partial(done))?;
        drop(ids);
        // The poll lists items newest first; actions fire oldest first. Only
        // the new items are kept across the actions' waits: a task parked on
        // the upstream should hold a few hundred bytes, not the whole poll.
        let new: Vec<Transformed> =
            transformed.into_iter().zip(seen).filter(|(_, seen)| !seen).map(|(t, _)| t).rev().collect();

        let mut delivered = Vec::with_capacity(new.len());
        let mut failure = None;
        for (step, item) in (1u32..).zip(&new) {
            let action_delay = self.delay(zap, seq, step);
            done.delays_ms += action_delay;
            done.requests += 1;
            let url = format!("{}/action/{zap}?delay_ms={action_delay}", self.base_url);
            let body = Bytes::from(action_body(item));
            match cx.http().post_json(&url, body).await.and_then(|r| r.error_for_status()) {
                Ok(_) => delivered.push(item.id.clone()),
                Err(e) => {
                    failure = Some(e);
                    break;
                }
            }
        }
        done.new_items = u32::try_from(delivered.len()).unwrap_or(u32::MAX);
        self.stores.mark_seen(cx, zap, &delivered).await.map_err(|e| e.with_partial(done))?;
        match failure {
            Some(e) => Err(Pz1Error::at("action_failed", e, done)),
            None => Ok(done),
        }
    }
}
