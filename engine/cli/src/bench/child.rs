//! One model's run in a process of its own: reads its [`ChildSpec`] from
//! the environment, runs PZ-1, prints one [`ChildResult`] line.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context as _;
use serde::{Deserialize, Serialize};
use switchyard::io_reactor::{redis, MysqlConfig, MysqlPool, RedisClient, RedisConfig, RedisServerCounters};
use switchyard::source::StreamConfig;
use switchyard::{Engine, EngineConfig};
use switchyard_pipeline::{create_runs_table, MemoryStores, Stores};
use switchyard_pz1::{
    calibrate_cpu_alone, pz1_pipeline, run_bench, task_figures, CpuAlone, Params, Report, RoleCpu, TaskQueue,
    PZ_RUNS_TABLE,
};

use super::timeline::{RunTag, Timeline, TimelineRecorder};
use super::SourceKind;

/// Timed runs of the CPU step alone: enough for a stable median, about a
/// quarter of a second at the defaults.
const CPU_ALONE_RUNS: usize = 101;

/// The environment variable a parent hands its child run's [`ChildSpec`] in.
pub(super) const CHILD_SPEC_VAR: &str = "SWITCHYARD_BENCH_CHILD_SPEC";

/// Everything a child process needs for its one run.
#[derive(Debug, Serialize, Deserialize)]
pub(super) struct ChildSpec {
    /// The run's label: the model, and `+stream` when tasks go through Redis.
    pub(super) label: String,
    pub(super) params: Params,
    pub(super) engine: EngineConfig,
    pub(super) upstream: String,
    pub(super) key_prefix: String,
    pub(super) run_id_prefix: String,
    pub(super) source: SourceKind,
    /// The Redis holding the task stream (with `source = stream`).
    pub(super) stream_redis: Option<RedisConfig>,
    /// Where to append the run's per-second timeline, if anywhere.
    pub(super) timeline: Option<PathBuf>,
    /// The model as asked for, and the round of the run (for the timeline).
    pub(super) model: String,
    pub(super) round: u32,
}

/// One child's result line.
#[derive(Debug, Serialize, Deserialize)]
pub(super) struct ChildResult {
    pub(super) report: Report,
    pub(super) unfinished: u64,
    pub(super) cpu_alone_ms: f64,
    /// The CPU step alone, and the bare SHA-256 loop inside it, by the
    /// thread's CPU clock.
    pub(super) cpu_alone: CpuAlone,
    /// The process's CPU per task finished in the measured window, by the
    /// role of the thread that spent it.
    pub(super) cpu_per_task: Option<RoleCpu>,
    pub(super) failures: Vec<String>,
    /// Tasks finished over the whole run (warm-up and drain included).
    pub(super) tasks: u64,
    /// What the run cost the Redis it used, over the same span as `tasks`.
    pub(super) redis: Option<RedisServerCounters>,
}

pub(super) fn child() -> anyhow::Result<()> {
    let spec = std::env::var(CHILD_SPEC_VAR).context("the parent passes the run's spec")?;
    let spec: ChildSpec = serde_json::from_str(&spec).context("reading the run's spec")?;
    let params = &spec.params;
    // Before the engine is built: it resolves its metric handles then.
    let timeline_source = match &spec.timeline {
        Some(_) => Some(TimelineRecorder::install()?),
        None => None,
    };
    let engine = Engine::builder().config(spec.engine.clone()).build()?;
    let run_id = format!("{}{}-{}-{}", spec.run_id_prefix, spec.label, params.rate, std::process::id());
    let stores = match (&spec.engine.redis, &spec.engine.mysql) {
        (Some(redis), Some(mysql)) => {
            engine.block_on(prepare_real_stores(redis, mysql, &spec.key_prefix))??;
            Stores::redis_mysql(spec.key_prefix.clone(), PZ_RUNS_TABLE)
        }
        _ => Stores::memory(MemoryStores::new()),
    };
    let queue = match (spec.source, &spec.stream_redis) {
        (SourceKind::Memory, _) => TaskQueue::Memory,
        (SourceKind::Stream, Some(redis)) => {
            let name = format!("switchyard:bench:{}:tasks", std::process::id());
            TaskQueue::Stream { redis: redis.clone(), stream: StreamConfig::new(name, "bench") }
        }
        (SourceKind::Stream, None) => anyhow::bail!("a stream run needs its Redis"),
    };
    // The Redis a run costs: the stream's, else the dedup store's.
    let stream_redis = spec.stream_redis.as_ref().filter(|_| spec.source == SourceKind::Stream);
    let measured_redis = stream_redis.or(spec.engine.redis.as_ref());
    let meter = match measured_redis {
        Some(config) => Some(engine.block_on(RedisClient::connect(config))??),
        None => None,
    };
    let cpu_alone = calibrate_cpu_alone(params, CPU_ALONE_RUNS);
    let cpu_alone_s = cpu_alone.transform_s;
    let pipeline = pz1_pipeline("pz1", &spec.upstream, params, stores, run_id);
    let bar = progress_bar(&spec.label, params);
    let before = read_meter(&engine, meter.as_ref())?;
    let timeline = timeline_source.as_ref().map(Timeline::start);
    let outcome =
        engine.block_on(run_bench(&engine, pipeline, params, &spec.label, cpu_alone_s, &queue, |p| {
            bar.set_length(p.scheduled);
            bar.set_position(p.finished);
            bar.set_message(format!("in flight {:>5}  failed {}", p.in_flight, p.failed));
        }))??;
    let after = read_meter(&engine, meter.as_ref())?;
    bar.finish_and_clear();
    if let (Some(timeline), Some(path)) = (timeline, &spec.timeline) {
        let tag = RunTag {
            run: spec.label.clone(),
            model: spec.model.clone(),
            rate: params.rate,
            round: spec.round,
        };
        let tasks = task_figures(params, cpu_alone_s, &outcome.records);
        timeline
            .write(path, &tag, &tasks)
            .with_context(|| format!("writing the timeline to {}", path.display()))?;
    }
    let window_tasks = outcome.report.throughput * (params.duration_s - params.warmup_s);
    engine.block_on(engine.shutdown(Duration::from_secs(5)))?;
    let result = ChildResult {
        report: outcome.report,
        unfinished: outcome.unfinished,
        cpu_alone_ms: outcome.cpu_alone_s * 1e3,
        cpu_alone,
        cpu_per_task: outcome.window_cpu.map(|cpu| cpu.per_task(window_tasks)),
        failures: outcome.sample_failures,
        tasks: outcome.records.len() as u64,
        redis: before.zip(after).map(|(b, a)| b.until(&a)),
    };
    println!("{}", serde_json::to_string(&result)?);
    Ok(())
}

fn read_meter(engine: &Engine, meter: Option<&RedisClient>) -> anyhow::Result<Option<RedisServerCounters>> {
    match meter {
        Some(client) => Ok(Some(engine.block_on(client.server_counters())??)),
        None => Ok(None),
    }
}

fn progress_bar(label: &str, params: &Params) -> indicatif::ProgressBar {
    if !std::io::stderr().is_terminal() {
        return indicatif::ProgressBar::hidden();
    }
    let bar = indicatif::ProgressBar::new(0);
    let style =
        indicatif::ProgressStyle::with_template("{prefix:>13} [{bar:30}] {pos}/{len} {elapsed} {msg}")
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar())
            .progress_chars("=> ");
    bar.set_style(style);
    bar.set_prefix(format!("{label} @{}", params.rate));
    bar
}

/// Creates `pz_runs` if missing and clears this prefix's seen-sets, so a
/// run never finds ids from an earlier one.
async fn prepare_real_stores(
    redis: &RedisConfig,
    mysql: &MysqlConfig,
    key_prefix: &str,
) -> anyhow::Result<()> {
    let pool = MysqlPool::new(mysql)?;
    create_runs_table(&pool, PZ_RUNS_TABLE).await.context("creating pz_runs")?;
    pool.disconnect().await?;
    let redis = RedisClient::connect(redis).await?;
    let mut cursor: u64 = 0;
    loop {
        let (next, keys): (u64, Vec<String>) = redis
            .query(
                redis::cmd("SCAN")
                    .arg(cursor)
                    .arg("MATCH")
                    .arg(format!("{key_prefix}*"))
                    .arg("COUNT")
                    .arg(1000),
            )
            .await?;
        if !keys.is_empty() {
            let _: u64 = redis.query(redis::cmd("DEL").arg(&keys)).await?;
        }
        if next == 0 {
            return Ok(());
        }
        cursor = next;
    }
}
