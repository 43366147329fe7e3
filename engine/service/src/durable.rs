//! The service on Redis streams: configured pipelines that lose nothing on
//! a crash, with several processes sharing the work.
//!
//! ```text
//! scheduler (each process; a due poll is claimed   {prefix}:polls ──▶ poll task
//!  atomically in Redis, one per pipeline at a time)                    fetch (reactor) → steps (pool)
//!                                                                       → dedup → outbox + seen, atomic
//! {prefix}:deliveries ◀─────────────────────────────────────────────────┘  → ack the poll
//!    └──▶ delivery task: POST with Idempotency-Key → ack on 2xx
//!         retry with backoff / Retry-After; dead letter on a permanent answer or after max_attempts
//! any process: claims entries whose consumer died; renews leases of running tasks
//! ```
//!
//! A task's unit of redo is one stream entry: one poll, or one delivery.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use switchyard::io_reactor::{MysqlPool, RedisClient, RedisConfig};
use switchyard::source::{StreamConfig, StreamSource, WithTimeouts};
use switchyard::{Engine, RunReport, Running, TaskContext, TaskError};
use switchyard_pipeline::{
    create_runs_table, Backoff, DeliveryJob, MemoryStores, NoRunLog, Outbox, Pipeline, PollJob, Stores,
    Verdict,
};
use tokio_util::sync::CancellationToken;

use crate::config::ServiceConfig;
use crate::endpoints::Endpoints;
use crate::error::ServiceError;
use crate::runner::{drain_time, RunLimits, SERVICE_RUNS_TABLE, SERVICE_SEEN_PREFIX};
use crate::schedule::Scheduler;
use crate::status::{add_stats, LatencyWindow, StatusSource};

/// The consumer group every process joins.
const GROUP: &str = "switchyard";
/// How long one read blocks: short enough that a stopping process notices.
const BLOCK_MS: u64 = 1_000;
/// Deliveries of one poll before it is dead-lettered: a poll its consumers
/// keep dying on (claims) is given up; a failed poll is not retried (the
/// next one follows on schedule).
const POLL_MAX_DELIVERIES: u32 = 3;

/// A poll entry: poll `seq` of `pipeline`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PollEntry {
    /// The pipeline's name.
    pub pipeline: String,
    /// Its poll number.
    pub seq: u64,
}

/// What the tasks need to know of one pipeline.
#[derive(Debug)]
struct Durable {
    pipeline: Arc<Pipeline>,
    outbox: Outbox,
    backoff: Backoff,
    max_attempts: u32,
    /// The pipeline's own task timeout, if it sets one.
    timeout: Option<Duration>,
}

/// The durable service's two streams, named from the key prefix.
pub fn stream_configs(config: &ServiceConfig) -> (StreamConfig, StreamConfig) {
    let d = &config.durable;
    let stream = |name: &str| StreamConfig {
        block_ms: BLOCK_MS,
        claim_idle_ms: d.claim_idle_ms,
        ..StreamConfig::new(format!("{}:{name}", d.key_prefix), GROUP)
    };
    let polls = StreamConfig { max_deliveries: POLL_MAX_DELIVERIES, ..stream("polls") };
    // The pipelines' own max_attempts give up first; this is the backstop
    // for deliveries whose consumers keep dying.
    let deliveries = StreamConfig {
        max_deliveries: switchyard_pipeline::MAX_ACTION_ATTEMPTS + 1,
        max_len: d.deliveries_max_len,
        ..stream("deliveries")
    };
    (polls, deliveries)
}

pub(crate) async fn run(
    engine: &Engine,
    config: &ServiceConfig,
    endpoints: &Endpoints,
    stop: CancellationToken,
    limits: RunLimits,
    run_id: &str,
) -> Result<RunReport, ServiceError> {
    let redis = engine.config().redis.clone().expect("validated: durable pipelines have Redis");
    let (polls, deliveries) = stream_configs(config);
    let runs = match &engine.config().mysql {
        Some(mysql) => {
            let pool = MysqlPool::new(mysql).map_err(ServiceError::io)?;
            let created = create_runs_table(&pool, SERVICE_RUNS_TABLE).await.map_err(ServiceError::io);
            let _ = pool.disconnect().await;
            created?;
            Stores::redis_mysql(SERVICE_SEEN_PREFIX, SERVICE_RUNS_TABLE).runs
        }
        None => Arc::new(NoRunLog),
    };
    let defaults = switchyard_pipeline::DedupConfig::default();
    let bounds = switchyard_pipeline::DedupBounds {
        max_ids: defaults.max_ids,
        max_age: Duration::from_millis(defaults.max_age_ms),
    };
    let outbox = Outbox::new(config.durable.key_prefix.clone(), deliveries.clone(), bounds);
    let mut by_name = HashMap::new();
    let mut schedule = Vec::new();
    for (i, pc) in config.pipelines.iter().enumerate() {
        // The in-memory seen store is never used here: the outbox keeps the state.
        let stores = Stores { seen: MemoryStores::new(), runs: runs.clone() };
        let pipeline = Pipeline::from_config(pc, &format!("pipelines[{i}]"), stores, run_id)?;
        let a = &pc.action;
        let durable = Durable {
            pipeline,
            outbox: outbox.with_bounds(pc.dedup_bounds()),
            backoff: Backoff {
                initial: Duration::from_millis(a.initial_backoff_ms),
                max: Duration::from_millis(a.max_backoff_ms),
            },
            max_attempts: a.max_attempts,
            timeout: pc.task_timeout(),
        };
        schedule.push((pc.name.clone(), Duration::from_millis(pc.source.poll_interval_ms)));
        by_name.insert(pc.name.clone(), durable);
    }
    let by_name = Arc::new(by_name);

    let client = RedisClient::connect(&redis).await.map_err(ServiceError::io)?;
    let tick = Duration::from_millis(config.durable.scheduler_tick_ms);
    let scheduler = Scheduler::new(client.clone(), &config.durable.key_prefix, &polls.stream, schedule, tick);
    scheduler.register().await.map_err(ServiceError::io)?;

    let poll_source = StreamSource::<PollEntry>::connect(&redis, polls.clone()).await?;
    let delivery_source = StreamSource::<DeliveryJob>::connect(&redis, deliveries.clone()).await?;
    let maintenance = (poll_source.maintenance(), delivery_source.maintenance());
    let streams = vec![poll_source.latest_snapshot(), delivery_source.latest_snapshot()];
    tracing::info!(
        consumer = poll_source.consumer(),
        polls = %polls.stream,
        deliveries = %deliveries.stream,
        pipelines = by_name.len(),
        "running durable pipelines on Redis streams"
    );

    let latency = Arc::new(LatencyWindow::default());
    let poll_run = start_polls(engine, poll_source, by_name.clone(), latency.clone()).await?;
    let delivery_run = start_deliveries(engine, delivery_source, by_name.clone()).await?;
    tokio::spawn(maintenance.0);
    tokio::spawn(maintenance.1);
    let serving = CancellationToken::new();
    tokio::spawn(scheduler.run(serving.clone()));

    let (poll_run, delivery_run) = (Arc::new(poll_run), Arc::new(delivery_run));
    endpoints.set_status(StatusSource {
        latency,
        engine: engine.clone(),
        runs: vec![poll_run.clone(), delivery_run.clone()],
        pipelines: by_name
            .values()
            .map(|d| (d.pipeline.name().to_string(), d.pipeline.counters().clone()))
            .collect(),
        streams,
        started: Instant::now(),
    });

    limits.wait(&stop, || add_stats(poll_run.stats(), delivery_run.stats())).await;
    // Intake stops at once on both streams; what is left stays there for
    // the other processes (or this one's next start).
    serving.cancel();
    poll_run.stop_intake();
    delivery_run.stop_intake();
    let drain = drain_time(engine);
    let (polls_report, deliveries_report) =
        tokio::join!(poll_run.shutdown(drain), delivery_run.shutdown(drain));
    Ok(merge(polls_report, deliveries_report))
}

async fn start_polls(
    engine: &Engine,
    source: StreamSource<PollEntry>,
    by_name: Arc<HashMap<String, Durable>>,
    latency: Arc<LatencyWindow>,
) -> Result<Running, ServiceError> {
    // Each poll runs under its pipeline's task timeout, else the engine's. A
    // poll that times out is nacked like any failure: its entry comes back
    // (up to the stream's delivery budget, then a dead letter), never lost.
    let timeouts = by_name.clone();
    let source = WithTimeouts::new(source, move |e: &PollEntry| timeouts.get(&e.pipeline)?.timeout);
    let running = engine
        .start(source, move |cx: TaskContext, entry: PollEntry| {
            let (by_name, latency) = (by_name.clone(), latency.clone());
            async move {
                let Some(durable) = by_name.get(&entry.pipeline) else {
                    // Another process's pipeline (a rolling deploy adds or removes one).
                    tracing::warn!(pipeline = %entry.pipeline, "a poll of a pipeline this process does not run");
                    return Ok(());
                };
                let job = PollJob { trigger: entry.pipeline, seq: entry.seq, released_at: Instant::now() };
                // A failed poll is recorded and not retried: the next one follows
                // on schedule, and what this one missed is still on the API.
                if let Err(e) = durable.pipeline.poll_into_outbox(&cx, &job, &durable.outbox).await {
                    tracing::debug!(pipeline = %job.trigger, seq = job.seq, error = %e, "poll failed");
                }
                latency.record(job.released_at.elapsed());
                Ok::<_, TaskError>(())
            }
        })
        .await?;
    Ok(running)
}

async fn start_deliveries(
    engine: &Engine,
    source: StreamSource<DeliveryJob>,
    by_name: Arc<HashMap<String, Durable>>,
) -> Result<Running, ServiceError> {
    // A delivery that times out is nacked, so it comes back like a retry;
    // the stream's delivery budget is its backstop.
    let timeouts = by_name.clone();
    let source = WithTimeouts::new(source, move |j: &DeliveryJob| timeouts.get(&j.pipeline)?.timeout);
    let running = engine
        .start(source, move |cx: TaskContext, job: DeliveryJob| {
            let by_name = by_name.clone();
            async move {
                let Some(durable) = by_name.get(&job.pipeline) else {
                    return Err(TaskError::fatal(format!("no pipeline {:?} runs here", job.pipeline)));
                };
                let attempt = cx.attempt();
                match durable.pipeline.deliver_job(&cx, &job, attempt, durable.backoff).await {
                    Verdict::Delivered => Ok(()),
                    Verdict::Retry(wait) if attempt < durable.max_attempts => {
                        Err(TaskError::retry_after(format!("attempt {attempt} failed"), wait))
                    }
                    Verdict::Retry(_) => {
                        Err(TaskError::fatal(format!("gave up after {attempt} attempts (max_attempts)")))
                    }
                    Verdict::Permanent(why) => Err(TaskError::fatal(why)),
                    Verdict::Unavailable(wait) => {
                        Err(TaskError::deferred("the action's host is unavailable for now", wait))
                    }
                }
            }
        })
        .await?;
    Ok(running)
}

/// The polls' and the deliveries' reports as one.
fn merge(a: RunReport, b: RunReport) -> RunReport {
    let mut unfinished = a.unfinished;
    unfinished.extend(b.unfinished);
    RunReport {
        stats: add_stats(a.stats, b.stats),
        unfinished,
        finished_in_time: a.finished_in_time && b.finished_in_time,
        elapsed: a.elapsed.max(b.elapsed),
    }
}

/// The Redis the durable service uses, for tools that act on its streams.
pub fn redis_config(config: &ServiceConfig) -> Option<RedisConfig> {
    config.resolved_engine().ok()?.redis
}
