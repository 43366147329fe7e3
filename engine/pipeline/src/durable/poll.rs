//! A durable pipeline's two tasks: a poll that writes its new items into
//! the outbox, and the delivery of one item from it.

use std::sync::atomic::Ordering;
use std::time::Instant;

use switchyard::TaskContext;

use super::delivery::{verdict, Backoff, DeliveryJob, Verdict, IDEMPOTENCY_KEY};
use super::outbox::{Outbox, Rejections, SeenState, Written};
use crate::job::{PollError, PollJob, PollOutcome, Stage};
use crate::pipeline::{Pipeline, Seeding};

impl Pipeline {
    /// One poll of the durable service: fetch, transform on the CPU pool,
    /// skip what was seen, and put the new items into the outbox and the
    /// seen set, and the rejected items not dead-lettered before into the
    /// dead letters, in one step. Recorded
    /// whether it succeeded or not. Cancelled at any await, it leaves no
    /// partial effect: the outbox write is its only one.
    pub async fn poll_into_outbox(
        &self,
        cx: &TaskContext,
        job: &PollJob,
        outbox: &Outbox,
    ) -> Result<PollOutcome, PollError> {
        let result = self.execute_durable(cx, job, outbox).await;
        self.finish(cx, job, result).await
    }

    async fn execute_durable(
        &self,
        cx: &TaskContext,
        job: &PollJob,
        outbox: &Outbox,
    ) -> Result<PollOutcome, PollError> {
        let mut done = PollOutcome::default();
        let prepared = self.fetch_and_prepare(cx, job, &mut done).await?;
        let name = &self.parts.name;
        let store = |e| PollError::store(e).with_partial(done);
        let rejected = Rejections { seq: job.seq, items: &prepared.rejected };
        let items = prepared.items;
        let ids: Vec<String> = items.iter().map(|i| i.id.clone()).collect();
        let state = outbox.check(cx, name, &ids).await.map_err(store)?;
        // No state and no marker looks like a new pipeline, unless this
        // process has seen the state before: then Redis lost both (it came
        // back empty, or was flushed). A process started after such a loss
        // cannot tell; only Redis's persistence covers that.
        let had_state = self.durable_state_seen.load(Ordering::Relaxed);
        let marker_lost = state == SeenState::Fresh && had_state;
        let seen = match state {
            SeenState::Fresh if !had_state && self.parts.seeding != Seeding::Never => {
                let written = outbox.seed(cx, name, &ids, rejected).await.map_err(store)?;
                self.durable_state_seen.store(true, Ordering::Relaxed);
                self.report_dead_lettered(outbox, written);
                return Ok(done);
            }
            SeenState::Fresh if !had_state => vec![false; items.len()],
            SeenState::Lost | SeenState::Fresh => {
                // Never seeded again in silence: report it, and treat every
                // item as new. Items already delivered go out again, with the
                // same Idempotency-Key, for the receiver to absorb; nothing
                // published meanwhile is swallowed.
                self.counters.state_lost.fetch_add(1, Ordering::Relaxed);
                self.metrics.state_lost();
                let why = if marker_lost {
                    "its marker is gone too, but this process saw it: Redis lost its data"
                } else {
                    "its marker outlived it"
                };
                tracing::error!(
                    pipeline = %name,
                    seen_key = %outbox.seen_key(name),
                    "dedup state lost ({why}): delivering the whole page again, keyed for the receiver to absorb repeats"
                );
                vec![false; items.len()]
            }
            SeenState::Known(seen) => {
                self.durable_state_seen.store(true, Ordering::Relaxed);
                seen
            }
        };
        let mut jobs: Vec<DeliveryJob> = items
            .iter()
            .zip(seen)
            .filter(|(_, seen)| !seen)
            .map(|(item, _)| DeliveryJob::of(name, job.seq, item))
            .collect();
        if self.parts.newest_first {
            jobs.reverse();
        }
        // With nothing new, the write still refreshes the state's expiry and
        // marker, so a quiet API does not let the state lapse while polled.
        match outbox.enqueue(cx, name, &jobs, rejected).await.map_err(store)? {
            Some(written) => {
                self.durable_state_seen.store(true, Ordering::Relaxed);
                self.report_dead_lettered(outbox, written);
                done.new_items = written.added;
                Ok(done)
            }
            None => Err(PollError::at(
                Stage::Store,
                "the deliveries stream is full: its new items stay unseen for the next poll",
                done,
            )),
        }
    }

    /// Counts the rejected items a write dead-lettered (not those an
    /// earlier poll already had) and says so in the log.
    fn report_dead_lettered(&self, outbox: &Outbox, written: Written) {
        if written.dead_lettered > 0 {
            let stream = outbox.deliveries_stream();
            self.metrics.dead_lettered_malformed(stream, written.dead_lettered);
            tracing::warn!(
                pipeline = %self.parts.name,
                dead_letters = written.dead_lettered,
                "malformed items kept as dead letters (`switchyard dead list` shows them with their reason)"
            );
        }
    }

    /// One attempt at delivering `job` (its `attempt`th), with its
    /// Idempotency-Key, and what the answer means.
    pub async fn deliver_job(
        &self,
        cx: &TaskContext,
        job: &DeliveryJob,
        attempt: u32,
        backoff: Backoff,
    ) -> Verdict {
        let poll = PollJob { trigger: job.pipeline.clone(), seq: job.seq, released_at: Instant::now() };
        let mut request = match self.parts.requests.delivery(&poll, 1, job.body()) {
            Ok(request) => request,
            Err(e) => return Verdict::Permanent(format!("cannot build the request: {e}")),
        };
        request.headers_mut().insert(IDEMPOTENCY_KEY, job.idempotency_key());
        let (status, headers) = match self.send(cx, request).await {
            Ok(response) => (Some(response.status.as_u16()), response.headers),
            Err(e) if e.is_body_too_large() => {
                return Verdict::Permanent("the action's answer exceeds the body cap".to_string())
            }
            Err(e) if e.is_unavailable() => {
                // Nothing was sent: neither an attempt nor a failure of the item.
                tracing::debug!(pipeline = %job.pipeline, error = %e, "delivery deferred");
                return Verdict::Unavailable(e.retry_in().unwrap_or(backoff.initial));
            }
            Err(e) => {
                tracing::debug!(pipeline = %job.pipeline, error = %e, "delivery attempt failed");
                (e.status(), http::HeaderMap::new())
            }
        };
        let verdict = verdict(status, &headers, attempt, backoff);
        if verdict == Verdict::Delivered {
            self.counters.delivered.fetch_add(1, Ordering::Relaxed);
            self.metrics.delivered(1);
        } else {
            self.counters.delivery_failures.fetch_add(1, Ordering::Relaxed);
        }
        self.metrics.delivery_attempt(&verdict);
        verdict
    }
}
