//! A durable pipeline's dedup state and outbox in Redis.
//!
//! Per pipeline: a sorted set of the ids seen (`{prefix}:seen:{pipeline}`,
//! scored by when each was first seen, bounded by count and age, its expiry
//! refreshed on every poll), and a marker (`{prefix}:seeded:{pipeline}`)
//! that outlives the set, so a set that vanished (expired while the service
//! was down, flushed, a Redis without persistence restarted) is noticed
//! rather than silently seeded again. A Redis that came back empty lost the
//! marker too: a process that saw the state before still notices (it
//! remembers having seen it); a process started after the loss cannot tell
//! it from a new pipeline and seeds, so only Redis's persistence covers it.
//!
//! The one decision: a poll's new items enter the deliveries stream and the
//! seen set in one script, so a crash can neither lose an item (seen but
//! never enqueued) nor enqueue it twice (enqueued but not seen).

use std::sync::LazyLock;
use std::time::Duration;

use switchyard::io_reactor::redis::{self, Script};
use switchyard::source::StreamConfig;
use switchyard::TaskContext;

use super::delivery::DeliveryJob;
use crate::store::StoreError;
use crate::transform::RejectedItem;

/// A member every seeded set holds, scored +inf so trimming never removes
/// it: the set exists even when a pipeline has seen nothing.
const SENTINEL: &str = "\u{1}seeded";

/// How a durable pipeline's dedup state is bounded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DedupBounds {
    /// Most ids remembered (the newest first seen are kept).
    pub max_ids: usize,
    /// Longest an id is remembered; also the set's expiry, refreshed on
    /// every poll.
    pub max_age: Duration,
}

/// What a pipeline's dedup state says about a poll's ids.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SeenState {
    /// The pipeline was never polled: no state, no marker.
    Fresh,
    /// The state is gone but its marker is not: it was lost.
    Lost,
    /// For each id asked about, whether it was seen.
    Known(Vec<bool>),
}

/// Adds the new items to the deliveries stream and to the seen set, unless
/// the stream lacks room for all of them; trims and refreshes the state.
/// KEYS: seen, marker, deliveries stream, its delayed set.
/// ARGV: now, max_ids, max_age_ms, stream max_len, marker ttl_ms, the
/// sentinel, then (id, job, label) per item (an empty job: seen only).
/// Returns how many were added, or -1 when full.
static ENQUEUE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
local now = tonumber(ARGV[1])
local n = (#ARGV - 6) / 3
local jobs = 0
for i = 0, n - 1 do
  if ARGV[8 + 3 * i] ~= '' then jobs = jobs + 1 end
end
if jobs > 0 and redis.call('XLEN', KEYS[3]) + redis.call('ZCARD', KEYS[4]) + jobs > tonumber(ARGV[4]) then
  return -1
end
local added = 0
for i = 0, n - 1 do
  local id, job, label = ARGV[7 + 3 * i], ARGV[8 + 3 * i], ARGV[9 + 3 * i]
  if redis.call('ZADD', KEYS[1], 'NX', now, id) == 1 then
    if job ~= '' then
      redis.call('XADD', KEYS[3], '*', 'item', job, 'label', label, 'attempt', '1', 'at', now)
    end
    added = added + 1
  end
end
redis.call('ZADD', KEYS[1], '+inf', ARGV[6])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - tonumber(ARGV[3]))
redis.call('ZREMRANGEBYRANK', KEYS[1], 0, -(tonumber(ARGV[2]) + 2))
redis.call('PEXPIRE', KEYS[1], ARGV[3])
redis.call('SET', KEYS[2], now, 'PX', ARGV[5])
return added
",
    )
});

/// Where durable pipelines keep their dedup state, their outbox and the
/// items they rejected.
#[derive(Debug, Clone)]
pub struct Outbox {
    key_prefix: String,
    deliveries: StreamConfig,
    bounds: DedupBounds,
}

impl Outbox {
    /// State under `key_prefix`, new items into the `deliveries` stream.
    pub fn new(key_prefix: impl Into<String>, deliveries: StreamConfig, bounds: DedupBounds) -> Self {
        Outbox { key_prefix: key_prefix.into(), deliveries, bounds }
    }

    /// The same outbox with other bounds (each pipeline has its own).
    pub fn with_bounds(&self, bounds: DedupBounds) -> Self {
        Outbox { bounds, ..self.clone() }
    }

    /// The key of a pipeline's seen set.
    pub fn seen_key(&self, pipeline: &str) -> String {
        format!("{}:seen:{pipeline}", self.key_prefix)
    }

    /// The key of a pipeline's marker.
    pub fn marker_key(&self, pipeline: &str) -> String {
        format!("{}:seeded:{pipeline}", self.key_prefix)
    }

    /// The marker outlives the set ten times over: long enough to notice a
    /// loss after any outage shorter than that.
    fn marker_ttl_ms(&self) -> u128 {
        self.bounds.max_age.as_millis() * 10
    }

    /// Which of `ids` `pipeline` has seen, or whether its state is fresh or lost.
    pub async fn check(
        &self,
        cx: &TaskContext,
        pipeline: &str,
        ids: &[String],
    ) -> Result<SeenState, StoreError> {
        let (seen, marker) = (self.seen_key(pipeline), self.marker_key(pipeline));
        let mut pipe = redis::pipe();
        pipe.cmd("EXISTS").arg(&seen).cmd("EXISTS").arg(&marker);
        if !ids.is_empty() {
            pipe.cmd("ZMSCORE").arg(&seen).arg(ids);
        }
        let redis = cx.redis()?;
        let (has_set, has_marker, scores): (u64, u64, Vec<Option<String>>) = if ids.is_empty() {
            let (a, b): (u64, u64) = redis.query_pipeline(&pipe, true).await?;
            (a, b, Vec::new())
        } else {
            redis.query_pipeline(&pipe, true).await?
        };
        Ok(match (has_set > 0, has_marker > 0) {
            (false, false) => SeenState::Fresh,
            (false, true) => SeenState::Lost,
            (true, _) => SeenState::Known(scores.into_iter().map(|s| s.is_some()).collect()),
        })
    }

    /// Marks `ids` seen without delivering them (a first poll's seeding).
    pub async fn seed(&self, cx: &TaskContext, pipeline: &str, ids: &[String]) -> Result<(), StoreError> {
        let items: Vec<(&str, String, String)> =
            ids.iter().map(|id| (id.as_str(), String::new(), String::new())).collect();
        self.run(cx, pipeline, &items).await.map(drop)
    }

    /// Refreshes `pipeline`'s state (its expiry, its marker) after a poll
    /// that found nothing new, creating it if it is gone.
    pub async fn refresh(&self, cx: &TaskContext, pipeline: &str) -> Result<(), StoreError> {
        self.run(cx, pipeline, &[]).await.map(drop)
    }

    /// Adds `jobs` to the deliveries stream and their ids to the seen set,
    /// atomically; ids already seen are skipped. `None` when the stream
    /// lacks room for all of them (nothing is added: the next poll tries
    /// again).
    pub async fn enqueue(&self, cx: &TaskContext, jobs: &[DeliveryJob]) -> Result<Option<u32>, StoreError> {
        let Some(first) = jobs.first() else { return Ok(Some(0)) };
        let mut items = Vec::with_capacity(jobs.len());
        for job in jobs {
            let label = format!("{}/{}", job.pipeline, job.id);
            items.push((job.id.as_str(), serde_json::to_string(job)?, label));
        }
        self.run(cx, &first.pipeline, &items).await
    }

    async fn run(
        &self,
        cx: &TaskContext,
        pipeline: &str,
        items: &[(&str, String, String)],
    ) -> Result<Option<u32>, StoreError> {
        let d = &self.deliveries;
        let mut invocation = ENQUEUE.prepare_invoke();
        invocation
            .key(self.seen_key(pipeline))
            .key(self.marker_key(pipeline))
            .key(&d.stream)
            .key(d.delayed_key())
            .arg(now_ms())
            .arg(self.bounds.max_ids)
            .arg(self.bounds.max_age.as_millis() as u64)
            .arg(d.max_len)
            .arg(self.marker_ttl_ms() as u64)
            .arg(SENTINEL);
        for (id, job, label) in items {
            invocation.arg(*id).arg(job).arg(label);
        }
        // Not retried: a second run would be harmless for the seen set but
        // the caller must learn whether the first one happened.
        let added: i64 = cx.redis()?.invoke_script(&invocation, false).await?;
        Ok(u32::try_from(added).ok())
    }

    /// Keeps a poll's rejected items as dead letters of the deliveries
    /// stream (reason `malformed`), for an operator to inspect.
    pub async fn reject(
        &self,
        cx: &TaskContext,
        pipeline: &str,
        seq: u64,
        rejected: &[RejectedItem],
    ) -> Result<(), StoreError> {
        if rejected.is_empty() {
            return Ok(());
        }
        let d = &self.deliveries;
        let mut pipe = redis::pipe();
        for item in rejected {
            pipe.cmd("XADD")
                .arg(d.dead_key())
                .arg("MAXLEN")
                .arg("~")
                .arg(d.dead_letter_max_len)
                .arg("*")
                .arg("item")
                .arg(&item.raw)
                .arg("label")
                .arg(format!("{pipeline}/{seq}#{}", item.index))
                .arg("attempt")
                .arg(0)
                .arg("at")
                .arg(now_ms())
                .arg("reason")
                .arg("malformed")
                .arg("error")
                .arg(&item.reason)
                .arg("from")
                .arg(format!("poll {pipeline}/{seq}"))
                .ignore();
        }
        // Not retried: a repeat would add the dead letters twice.
        cx.redis()?.query_pipeline::<()>(&pipe, false).await?;
        Ok(())
    }
}

fn now_ms() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}
