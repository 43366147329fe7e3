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
//! never enqueued) nor enqueue it twice (enqueued but not seen). The items
//! its transform rejected go into the dead letters in the same script, each
//! remembered in the seen set under a digest of what was rejected, so a
//! malformed item the API keeps listing is dead-lettered once, not on every
//! poll, and a redone poll adds none twice.

use std::sync::LazyLock;
use std::time::Duration;

use sha2::{Digest, Sha256};
use switchyard::io_reactor::redis::{self, Script};
use switchyard::source::{unix_ms, StreamConfig};
use switchyard::TaskContext;

use super::delivery::DeliveryJob;
use crate::fingerprint::fingerprint_hex;
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

/// Adds the new items to the deliveries stream and to the seen set, and the
/// rejected items not yet dead-lettered to the dead letters, unless the
/// stream lacks room for the new items; trims and refreshes the state.
/// KEYS: seen, marker, deliveries stream, its delayed set, its dead letters.
/// ARGV: now, max_ids, max_age_ms, stream max_len, marker ttl_ms, the
/// sentinel, dead letters max_len, how many items, then (id, job, label)
/// per item (an empty job: seen only), then (digest, raw, label, reason,
/// from) per rejected item. Returns {new items added, rejected items
/// dead-lettered}, or {-1, 0} when the stream is full (nothing written).
static ENQUEUE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
local now = tonumber(ARGV[1])
local n = tonumber(ARGV[8])
local first_rejected = 9 + 3 * n
local jobs = 0
for i = 0, n - 1 do
  if ARGV[10 + 3 * i] ~= '' then jobs = jobs + 1 end
end
if jobs > 0 and redis.call('XLEN', KEYS[3]) + redis.call('ZCARD', KEYS[4]) + jobs > tonumber(ARGV[4]) then
  return {-1, 0}
end
local added = 0
for i = 0, n - 1 do
  local id, job, label = ARGV[9 + 3 * i], ARGV[10 + 3 * i], ARGV[11 + 3 * i]
  if redis.call('ZADD', KEYS[1], 'NX', now, id) == 1 then
    if job ~= '' then
      redis.call('XADD', KEYS[3], '*', 'item', job, 'label', label, 'attempt', '1', 'at', now)
    end
    added = added + 1
  end
end
local dead = 0
for i = first_rejected, #ARGV - 4, 5 do
  if redis.call('ZADD', KEYS[1], 'NX', now, ARGV[i]) == 1 then
    redis.call('XADD', KEYS[5], 'MAXLEN', '~', ARGV[7], '*', 'item', ARGV[i + 1], 'label', ARGV[i + 2],
      'attempt', '0', 'at', now, 'reason', 'malformed', 'error', ARGV[i + 3], 'from', ARGV[i + 4])
    dead = dead + 1
  end
end
redis.call('ZADD', KEYS[1], '+inf', ARGV[6])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - tonumber(ARGV[3]))
redis.call('ZREMRANGEBYRANK', KEYS[1], 0, -(tonumber(ARGV[2]) + 2))
redis.call('PEXPIRE', KEYS[1], ARGV[3])
redis.call('SET', KEYS[2], now, 'PX', ARGV[5])
return {added, dead}
",
    )
});

/// The items of one poll its transform rejected, with where they came from.
#[derive(Debug, Clone, Copy)]
pub struct Rejections<'a> {
    /// The poll's sequence number, for the dead letters' labels.
    pub seq: u64,
    /// The items, as the transform rejected them.
    pub items: &'a [RejectedItem],
}

/// What one outbox write did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Written {
    /// New items added to the deliveries stream (or, seeding, to the seen set).
    pub added: u32,
    /// Rejected items dead-lettered now (not by an earlier poll).
    pub dead_lettered: u32,
}

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

    /// The deliveries stream's key (the `stream` label of its metrics).
    pub fn deliveries_stream(&self) -> &str {
        &self.deliveries.stream
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

    /// Marks `ids` seen without delivering them (a first poll's seeding),
    /// and dead-letters `rejected`.
    pub async fn seed(
        &self,
        cx: &TaskContext,
        pipeline: &str,
        ids: &[String],
        rejected: Rejections<'_>,
    ) -> Result<Written, StoreError> {
        let items: Vec<(&str, String, String)> =
            ids.iter().map(|id| (id.as_str(), String::new(), String::new())).collect();
        Ok(self.run(cx, pipeline, &items, rejected).await?.unwrap_or_default())
    }

    /// Adds `jobs` to the deliveries stream and their ids to the seen set,
    /// and `rejected` to the dead letters, atomically; ids and rejections
    /// already seen are skipped. With no jobs it refreshes the state (its
    /// expiry, its marker), creating it if it is gone, so a quiet API does
    /// not let it lapse. `None` when the stream lacks room for all the jobs
    /// (nothing is written: the next poll tries again).
    pub async fn enqueue(
        &self,
        cx: &TaskContext,
        pipeline: &str,
        jobs: &[DeliveryJob],
        rejected: Rejections<'_>,
    ) -> Result<Option<Written>, StoreError> {
        let mut items = Vec::with_capacity(jobs.len());
        for job in jobs {
            let label = format!("{}/{}", job.pipeline, job.id);
            items.push((job.id.as_str(), serde_json::to_string(job)?, label));
        }
        self.run(cx, pipeline, &items, rejected).await
    }

    async fn run(
        &self,
        cx: &TaskContext,
        pipeline: &str,
        items: &[(&str, String, String)],
        rejected: Rejections<'_>,
    ) -> Result<Option<Written>, StoreError> {
        let d = &self.deliveries;
        let mut invocation = ENQUEUE.prepare_invoke();
        invocation
            .key(self.seen_key(pipeline))
            .key(self.marker_key(pipeline))
            .key(&d.stream)
            .key(d.delayed_key())
            .key(d.dead_key())
            .arg(unix_ms())
            .arg(self.bounds.max_ids)
            .arg(self.bounds.max_age.as_millis() as u64)
            .arg(d.max_len)
            .arg(self.marker_ttl_ms() as u64)
            .arg(SENTINEL)
            .arg(d.dead_letter_max_len)
            .arg(items.len());
        for (id, job, label) in items {
            invocation.arg(*id).arg(job).arg(label);
        }
        for item in rejected.items {
            invocation
                .arg(rejection_member(item))
                .arg(&item.raw)
                .arg(format!("{pipeline}/{}#{}", rejected.seq, item.index))
                .arg(&item.reason)
                .arg(format!("poll {pipeline}/{}", rejected.seq));
        }
        // Not retried: a second run would be harmless for the seen set but
        // the caller must learn whether the first one happened.
        let (added, dead): (i64, i64) = cx.redis()?.invoke_script(&invocation, false).await?;
        Ok(u32::try_from(added).ok().map(|added| Written { added, dead_lettered: dead as u32 }))
    }
}

/// The seen-set member that remembers a rejected item: a digest of the item
/// and why it was rejected, behind a prefix no item id starts with (so the
/// same id sent again well-formed is still new).
fn rejection_member(item: &RejectedItem) -> String {
    let mut hasher = Sha256::new();
    hasher.update(item.reason.as_bytes());
    hasher.update([0]);
    hasher.update(item.raw.as_bytes());
    format!("\u{2}malformed:{}", fingerprint_hex(hasher.finalize().into()))
}
