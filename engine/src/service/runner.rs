//! Runs the configured service on an engine until stopped: the built-in
//! PZ-1 zaps (with an in-process upstream) when no pipeline is configured,
//! otherwise every configured pipeline, each polled on its own schedule.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;

use super::config::ServiceConfig;
use super::endpoints::Endpoints;
use super::poller::{Pipeline, PipelineCounters};
use super::status::{LatencyWindow, StatusSource};
use crate::pz1::{
    EmbeddedStores, Pz1Error, Pz1Outcome, Pz1Pipeline, Pz1Poll, Pz1Upstream, Stores, PZ_RUNS_TABLE,
};
use crate::source::{ScheduleEntry, ScheduleSource};
use crate::{telemetry, Engine, Error, RunReport, TaskContext, TaskError};

/// The run-record table of configured pipelines.
pub const SERVICE_RUNS_TABLE: &str = "pipeline_runs";
/// Seen-set key prefix of configured pipelines (`switchyard:seen:{pipeline}`).
pub const SERVICE_SEEN_PREFIX: &str = "switchyard:seen:";
/// The pipeline name the built-in PZ-1 zaps report under.
pub const PZ1_PIPELINE_NAME: &str = "pz1";

struct ZapJob {
    zap: String,
    seq: AtomicU64,
}

#[derive(Clone)]
enum Job {
    Zap(Arc<ZapJob>),
    Pipeline(Arc<Pipeline>),
}

/// How a run ends: a signal (`stop`), or after `max_tasks` settled tasks.
#[derive(Debug, Clone, Default)]
pub struct RunLimits {
    /// Stop after this many tasks settled (any outcome).
    pub max_tasks: Option<u64>,
}

/// Runs the service until `stop` is cancelled (or `limits` are reached),
/// then drains in-flight tasks within the engine's shutdown deadline.
pub async fn run_service(
    engine: &Engine,
    config: &ServiceConfig,
    endpoints: &Endpoints,
    stop: CancellationToken,
    limits: RunLimits,
) -> Result<RunReport, Error> {
    let run_id = format!("run-{}-{}", std::process::id(), unix_millis());
    let external = engine.config().redis.is_some() && engine.config().mysql.is_some();
    let stores_for = |key_prefix: &str, runs_table: &str| match external {
        true => Stores::External { key_prefix: key_prefix.to_string(), runs_table: runs_table.to_string() },
        false => Stores::Embedded(EmbeddedStores::new()),
    };

    let mut upstream = None;
    let mut entries = Vec::new();
    let mut counters = Vec::new();
    let pz1_counters = Arc::new(PipelineCounters::default());
    let pz1 = if config.pipelines.is_empty() {
        let up = Pz1Upstream::start(SocketAddr::from(([127, 0, 0, 1], 0)))
            .map_err(|e| Error::config_from("pz1.upstream", e))?;
        tracing::info!(upstream = %up.base_url(), zaps = config.pz1.zaps, "running the built-in PZ-1 zaps");
        let stores = stores_for("pz:seen:", PZ_RUNS_TABLE);
        let pipeline = Pz1Pipeline::new(up.base_url(), config.pz1_params(), stores, run_id.clone());
        let period = Duration::from_millis(config.pz1.poll_period_ms);
        for i in 0..config.pz1.zaps {
            let zap = format!("z{i}");
            // Spread first polls over one period, as the spec's schedule does.
            let first_after = period.mul_f64(i as f64 / config.pz1.zaps as f64);
            let job = Job::Zap(Arc::new(ZapJob { zap: zap.clone(), seq: AtomicU64::new(0) }));
            entries.push(ScheduleEntry { job, label: zap, period, first_after });
        }
        counters.push((PZ1_PIPELINE_NAME.to_string(), pz1_counters.clone()));
        upstream = Some(up);
        Some(pipeline)
    } else {
        for (i, pc) in config.pipelines.iter().enumerate() {
            let stores = stores_for(SERVICE_SEEN_PREFIX, SERVICE_RUNS_TABLE);
            let pipeline = Pipeline::new(pc, &format!("pipelines[{i}]"), stores, &run_id)
                .map_err(|e| Error::config_from(e.key().to_string(), e.to_string()))?;
            counters.push((pc.name.clone(), pipeline.counters_handle()));
            let period = Duration::from_millis(pc.source.poll_interval_ms);
            entries.push(ScheduleEntry {
                job: Job::Pipeline(pipeline),
                label: pc.name.clone(),
                period,
                first_after: Duration::ZERO,
            });
        }
        None
    };

    if external {
        ensure_schemas(engine, pz1.is_some()).await?;
    }

    let task_counters = pz1_counters.clone();
    let latency = Arc::new(LatencyWindow::default());
    let task_latency = latency.clone();
    let running = engine
        .start(ScheduleSource::new(entries), move |cx: TaskContext, job: Job| {
            let (pz1, counters, latency) = (pz1.clone(), task_counters.clone(), task_latency.clone());
            async move {
                let started = Instant::now();
                let (name, result) = match job {
                    Job::Zap(zap) => {
                        let seq = zap.seq.fetch_add(1, Ordering::Relaxed) + 1;
                        let poll = Pz1Poll { zap: zap.zap.clone(), seq, release: Instant::now() };
                        let pipeline = pz1.expect("zaps run only with the PZ-1 pipeline");
                        let result = pipeline.run(&cx, &poll).await;
                        count(&counters, &result);
                        (PZ1_PIPELINE_NAME.to_string(), result)
                    }
                    Job::Pipeline(pipeline) => (pipeline.name().to_string(), pipeline.poll(&cx).await),
                };
                let delivered = match &result {
                    Ok(o) => o.new_items,
                    Err(e) => e.partial.new_items,
                };
                telemetry::pipeline_poll(&name, result.is_ok(), delivered);
                latency.record(started.elapsed());
                result.map(drop).map_err(TaskError::fatal)
            }
        })
        .await?;
    let running = Arc::new(running);
    endpoints.set_status(StatusSource {
        latency,
        engine: engine.clone(),
        running: running.clone(),
        pipelines: counters,
        started: Instant::now(),
    });

    let mut tick = tokio::time::interval(Duration::from_millis(100));
    loop {
        tokio::select! {
            _ = stop.cancelled() => break,
            _ = tick.tick() => {
                let s = running.stats();
                if limits.max_tasks.is_some_and(|max| s.ok + s.failed + s.panicked >= max) {
                    break;
                }
            }
        }
    }
    let deadline = Duration::from_millis(engine.config().shutdown_deadline_ms);
    let report = running.shutdown(deadline).await;
    if let Some(up) = upstream {
        // Joining the upstream's thread blocks briefly: not on the reactor.
        let _ = tokio::task::spawn_blocking(move || drop(up)).await;
    }
    Ok(report)
}

fn count(counters: &PipelineCounters, result: &Result<Pz1Outcome, Pz1Error>) {
    let (polls, delivered) = match result {
        Ok(o) => (&counters.polls_ok, o.new_items),
        Err(e) => (&counters.polls_failed, e.partial.new_items),
    };
    polls.fetch_add(1, Ordering::Relaxed);
    counters.delivered.fetch_add(u64::from(delivered), Ordering::Relaxed);
}

async fn ensure_schemas(engine: &Engine, pz1: bool) -> Result<(), Error> {
    let mysql = engine.config().mysql.clone().expect("external stores have MySQL");
    let pool = switchyard_io_reactor::MysqlPool::new(&mysql).map_err(Error::io)?;
    let (prefix, table) =
        if pz1 { ("pz:seen:", PZ_RUNS_TABLE) } else { (SERVICE_SEEN_PREFIX, SERVICE_RUNS_TABLE) };
    let stores = Stores::External { key_prefix: prefix.to_string(), runs_table: table.to_string() };
    let created = stores.ensure_schema(&pool).await.map_err(Error::io);
    let _ = pool.disconnect().await;
    created
}

fn unix_millis() -> u128 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis())
}
