//! Runs the configured service on an engine until stopped: the configured
//! pipelines (durably on Redis streams, see `durable.rs`, unless their
//! state is ephemeral), or, when none is configured, the built-in PZ-1 zaps
//! against an upstream started in-process.
//!
//! Either way the work is the same: a trigger (a configured pipeline, or
//! one zap) is due every period; its poll runs as one engine task through
//! [`Pipeline::poll`]. Two polls of one trigger never run at once.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use switchyard::source::{ScheduleEntry, ScheduleSource, WithTimeouts};
use switchyard::{Engine, RunReport, TaskContext, TaskError};
use switchyard_io_reactor::MysqlPool;
use switchyard_pipeline::{create_runs_table, MemoryStores, Pipeline, PollJob, Stores};
use switchyard_pz1::{pz1_pipeline, Pz1Upstream, PZ1_SEEN_PREFIX, PZ_RUNS_TABLE};
use tokio_util::sync::CancellationToken;

use crate::config::ServiceConfig;
use crate::endpoints::Endpoints;
use crate::error::ServiceError;
use crate::status::{LatencyWindow, StatusSource};

/// The run-record table of configured pipelines.
pub const SERVICE_RUNS_TABLE: &str = "pipeline_runs";
/// Seen-set key prefix of configured pipelines (`switchyard:seen:{pipeline}`).
pub const SERVICE_SEEN_PREFIX: &str = "switchyard:seen:";
/// The pipeline name the built-in PZ-1 zaps report under.
pub const PZ1_PIPELINE_NAME: &str = "pz1";
/// What a shutdown keeps of its deadline for after the drain: abandoning
/// what did not finish (up to 2 s), closing the stores (up to 2 s) and
/// stopping the CPU pool and the rest (2 s).
pub const SHUTDOWN_RESERVE: Duration = Duration::from_secs(6);

/// How long in-flight tasks may drain under `engine`'s shutdown deadline:
/// all but [`SHUTDOWN_RESERVE`], and at least half of it (a short deadline
/// in a test still drains).
pub(crate) fn drain_time(engine: &Engine) -> Duration {
    let deadline = Duration::from_millis(engine.config().shutdown_deadline_ms);
    deadline.saturating_sub(SHUTDOWN_RESERVE).max(deadline / 2)
}

/// One thing polled on a schedule: a pipeline and the trigger it polls.
#[derive(Debug)]
struct Trigger {
    pipeline: Arc<Pipeline>,
    name: String,
    seq: AtomicU64,
    /// The pipeline's own task timeout, if it sets one.
    timeout: Option<Duration>,
}

/// How a run ends: a signal (`stop`), or after `max_tasks` settled tasks.
#[derive(Debug, Clone, Default)]
pub struct RunLimits {
    /// Stop after this many tasks settled (any outcome).
    pub max_tasks: Option<u64>,
}

impl RunLimits {
    /// Returns once `stop` is cancelled or the tasks settled so far, read
    /// from `settled` every 100 ms, reach [`RunLimits::max_tasks`].
    pub(crate) async fn wait(&self, stop: &CancellationToken, settled: impl Fn() -> switchyard::RunStats) {
        let mut tick = tokio::time::interval(Duration::from_millis(100));
        loop {
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = tick.tick() => {
                    let s = settled();
                    if self.max_tasks.is_some_and(|max| s.ok + s.failed + s.panicked + s.timed_out >= max) {
                        return;
                    }
                }
            }
        }
    }
}

/// Runs the service until `stop` is cancelled (or `limits` are reached),
/// then drains in-flight tasks within the engine's shutdown deadline.
pub async fn run_service(
    engine: &Engine,
    config: &ServiceConfig,
    endpoints: &Endpoints,
    stop: CancellationToken,
    limits: RunLimits,
) -> Result<RunReport, ServiceError> {
    let run_id = format!("run-{}-{}", std::process::id(), switchyard::source::unix_ms());
    if config.durable_pipelines() {
        return crate::durable::run(engine, config, endpoints, stop, limits, &run_id).await;
    }
    let external = engine.config().redis.is_some() && engine.config().mysql.is_some();
    let stores_for = |key_prefix: &str, runs_table: &str| match external {
        true => Stores::redis_mysql(key_prefix, runs_table),
        false => Stores::memory(MemoryStores::new()),
    };

    let mut upstream = None;
    let mut entries = Vec::new();
    let mut pipelines = Vec::new();
    let runs_table = if config.pipelines.is_empty() {
        let up = Pz1Upstream::start(SocketAddr::from(([127, 0, 0, 1], 0))).map_err(ServiceError::io)?;
        tracing::info!(upstream = %up.base_url(), zaps = config.pz1.zaps, "running the built-in PZ-1 zaps");
        let stores = stores_for(PZ1_SEEN_PREFIX, PZ_RUNS_TABLE);
        let pipeline =
            pz1_pipeline(PZ1_PIPELINE_NAME, up.base_url(), &config.pz1_params(), stores, run_id.as_str());
        let period = Duration::from_millis(config.pz1.poll_period_ms);
        for i in 0..config.pz1.zaps {
            // Spread first polls over one period, as the workload's schedule does.
            let first_after = period.mul_f64(i as f64 / config.pz1.zaps as f64);
            entries.push(entry(&pipeline, format!("z{i}"), period, first_after, None));
        }
        pipelines.push(pipeline);
        upstream = Some(up);
        PZ_RUNS_TABLE
    } else {
        tracing::warn!(
            "configured pipelines run with ephemeral state (state = \"ephemeral\"): a crash loses the polls \
             and deliveries in flight, and one process does all the work"
        );
        for (i, pc) in config.pipelines.iter().enumerate() {
            let stores = stores_for(SERVICE_SEEN_PREFIX, SERVICE_RUNS_TABLE);
            let pipeline = Pipeline::from_config(pc, &format!("pipelines[{i}]"), stores, &run_id)?;
            let period = Duration::from_millis(pc.source.poll_interval_ms);
            entries.push(entry(&pipeline, pc.name.clone(), period, Duration::ZERO, pc.task_timeout()));
            pipelines.push(pipeline);
        }
        SERVICE_RUNS_TABLE
    };
    if external {
        ensure_runs_table(engine, runs_table).await?;
    }

    let latency = Arc::new(LatencyWindow::default());
    let task_latency = latency.clone();
    // Each poll runs under its pipeline's task timeout, else the engine's.
    let source = WithTimeouts::new(ScheduleSource::new(entries), |t: &Arc<Trigger>| t.timeout);
    let running = engine
        .start(source, move |cx: TaskContext, trigger: Arc<Trigger>| {
            let latency = task_latency.clone();
            async move {
                let seq = trigger.seq.fetch_add(1, Ordering::Relaxed) + 1;
                let job = PollJob { trigger: trigger.name.clone(), seq, released_at: Instant::now() };
                let result = trigger.pipeline.poll(&cx, &job).await;
                latency.record(job.released_at.elapsed());
                result.map(drop).map_err(TaskError::fatal)
            }
        })
        .await?;
    let running = Arc::new(running);
    endpoints.set_status(StatusSource {
        latency,
        engine: engine.clone(),
        runs: vec![running.clone()],
        pipelines: pipelines.iter().map(|p| (p.name().to_string(), p.counters().clone())).collect(),
        streams: Vec::new(),
        started: Instant::now(),
    });

    limits.wait(&stop, || running.stats()).await;
    let report = running.shutdown(drain_time(engine)).await;
    if let Some(up) = upstream {
        // Joining the upstream's thread blocks briefly: not on the reactor.
        let _ = tokio::task::spawn_blocking(move || drop(up)).await;
    }
    Ok(report)
}

fn entry(
    pipeline: &Arc<Pipeline>,
    name: String,
    period: Duration,
    first_after: Duration,
    timeout: Option<Duration>,
) -> ScheduleEntry<Arc<Trigger>> {
    let trigger =
        Arc::new(Trigger { pipeline: pipeline.clone(), name: name.clone(), seq: AtomicU64::new(0), timeout });
    ScheduleEntry { job: trigger, label: name, period, first_after }
}

async fn ensure_runs_table(engine: &Engine, table: &str) -> Result<(), ServiceError> {
    let mysql = engine.config().mysql.clone().expect("external stores have MySQL");
    let pool = MysqlPool::new(&mysql).map_err(ServiceError::io)?;
    let created = create_runs_table(&pool, table).await.map_err(ServiceError::io);
    let _ = pool.disconnect().await;
    created
}
