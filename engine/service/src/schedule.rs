//! The durable scheduler: each due poll is enqueued exactly once across all
//! processes, and a pipeline's next poll never starts while its previous one
//! is still anywhere in the polls stream.
//!
//! Every process runs one. A sorted set (`{prefix}:schedule`) holds each
//! pipeline's next due time; a hash per pipeline (`{prefix}:pipeline:{name}`)
//! its period, its poll counter, the stream id of its poll in flight and
//! when a process last said it runs the pipeline. One script, run by
//! whichever process looks first, moves every due pipeline whose previous
//! poll has left the stream (done, or dead-lettered) into the polls stream.
//! Redis runs scripts one at a time, so two processes never enqueue the
//! same poll.
//!
//! The script names keys it was not passed, so it needs one Redis, not a
//! cluster (`docs/scaling.md`).

use std::sync::LazyLock;
use std::time::{Duration, Instant};

use switchyard::io_reactor::redis::{self, Script};
use switchyard::io_reactor::RedisClient;
use switchyard::source::unix_ms;
use tokio_util::sync::CancellationToken;

/// How often a process tells the schedule it still runs its pipelines.
const ALIVE_EVERY: Duration = Duration::from_secs(10);
/// A pipeline no process has claimed to run for this long leaves the
/// schedule (it was removed from every configuration).
const FORGOTTEN_AFTER: Duration = Duration::from_secs(3_600);
/// Most pipelines enqueued per look.
const BATCH: usize = 500;
/// A due pipeline whose previous poll is still running is looked at again
/// after this long (or its period, if shorter), not at every tick of every
/// process: with three processes ticking every 100 ms, rechecking at once
/// cost two stream reads per running pipeline per tick, a fifth of Redis's
/// commands in a busy fleet (`docs/scaling.md`).
const RUNNING_RECHECK: Duration = Duration::from_millis(500);

/// KEYS: schedule, polls stream. ARGV: now, most to enqueue, the hash key
/// prefix, forgotten-after ms, longest recheck ms of a running pipeline.
/// Returns how many polls were enqueued, or -1 when the schedule is gone.
static ENQUEUE_DUE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
if redis.call('EXISTS', KEYS[1]) == 0 then
  return -1
end
local now = tonumber(ARGV[1])
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now, 'LIMIT', 0, tonumber(ARGV[2]))
local enqueued = 0
for _, name in ipairs(due) do
  local h = ARGV[3] .. name
  local f = redis.call('HMGET', h, 'period_ms', 'alive_ms', 'running')
  local period, alive, running = tonumber(f[1]), tonumber(f[2]), f[3]
  if not period or not alive or now - alive > tonumber(ARGV[4]) then
    redis.call('ZREM', KEYS[1], name)
    redis.call('DEL', h)
  elseif not running or #redis.call('XRANGE', KEYS[2], running, running) == 0 then
    local seq = redis.call('HINCRBY', h, 'seq', 1)
    local item = cjson.encode({pipeline = name, seq = seq})
    local id = redis.call('XADD', KEYS[2], '*', 'item', item, 'label', name .. '/' .. seq, 'attempt', '1', 'at', now)
    redis.call('HSET', h, 'running', id)
    redis.call('ZADD', KEYS[1], now + period, name)
    enqueued = enqueued + 1
  else
    redis.call('ZADD', KEYS[1], now + math.min(period, tonumber(ARGV[5])), name)
  end
end
return enqueued
",
    )
});

/// One process's scheduler.
#[derive(Debug, Clone)]
pub(crate) struct Scheduler {
    client: RedisClient,
    schedule_key: String,
    hash_prefix: String,
    polls_stream: String,
    /// (pipeline, period) of the pipelines this process runs.
    pipelines: Vec<(String, Duration)>,
    tick: Duration,
}

impl Scheduler {
    pub(crate) fn new(
        client: RedisClient,
        key_prefix: &str,
        polls_stream: &str,
        pipelines: Vec<(String, Duration)>,
        tick: Duration,
    ) -> Self {
        Scheduler {
            client,
            schedule_key: format!("{key_prefix}:schedule"),
            hash_prefix: format!("{key_prefix}:pipeline:"),
            polls_stream: polls_stream.to_string(),
            pipelines,
            tick,
        }
    }

    /// Says this process runs its pipelines: their periods (a changed
    /// period takes effect), and a first due time for a pipeline new to the
    /// schedule (now).
    pub(crate) async fn register(&self) -> Result<(), switchyard::io_reactor::Error> {
        let now = unix_ms();
        let mut pipe = redis::pipe();
        for (name, period) in &self.pipelines {
            let hash = format!("{}{name}", self.hash_prefix);
            pipe.cmd("HSET")
                .arg(&hash)
                .arg("period_ms")
                .arg(period.as_millis() as u64)
                .arg("alive_ms")
                .arg(now)
                .ignore();
            pipe.cmd("ZADD").arg(&self.schedule_key).arg("NX").arg(now).arg(name).ignore();
        }
        self.client.query_pipeline::<()>(&pipe, true).await
    }

    /// Looks for due polls every tick until `stop` is cancelled.
    pub(crate) async fn run(self, stop: CancellationToken) {
        let mut tick = tokio::time::interval(self.tick);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut alive = Instant::now();
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = stop.cancelled() => return,
            }
            if alive.elapsed() >= ALIVE_EVERY {
                if let Err(e) = self.register().await {
                    tracing::warn!(error = %e, "refreshing the schedule failed");
                }
                alive = Instant::now();
            }
            if let Err(e) = self.enqueue_due().await {
                // Redis is away: the next tick tries again (100 ms by default, a
                // single small script, no hot loop).
                tracing::debug!(error = %e, "looking for due polls failed");
            }
        }
    }

    /// Enqueues every due poll whose previous one is done; returns how many.
    ///
    /// A schedule that is gone (a Redis that came back empty, a flush) is
    /// registered again at once rather than at the next refresh, up to
    /// [`ALIVE_EVERY`] later: the pipelines' seq counters start over, the
    /// polls go on.
    pub(crate) async fn enqueue_due(&self) -> Result<u64, switchyard::io_reactor::Error> {
        let enqueued = self.enqueue_due_once().await?;
        if enqueued >= 0 {
            return Ok(enqueued as u64);
        }
        tracing::warn!(
            schedule = %self.schedule_key,
            "the schedule was gone from Redis (it lost its data?): registering this process's pipelines again"
        );
        self.register().await?;
        Ok(self.enqueue_due_once().await?.max(0) as u64)
    }

    async fn enqueue_due_once(&self) -> Result<i64, switchyard::io_reactor::Error> {
        let mut invocation = ENQUEUE_DUE.prepare_invoke();
        invocation
            .key(&self.schedule_key)
            .key(&self.polls_stream)
            .arg(unix_ms())
            .arg(BATCH)
            .arg(&self.hash_prefix)
            .arg(FORGOTTEN_AFTER.as_millis() as u64)
            .arg(RUNNING_RECHECK.as_millis() as u64);
        // Not retried: a repeat after a lost reply would find nothing due.
        self.client.invoke_script(&invocation, false).await
    }
}
