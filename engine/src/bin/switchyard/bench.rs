//! `switchyard bench`: workload PZ-1 under each execution model, side by side.
//!
//! The parent process starts the upstream (unless `--upstream` points at one)
//! and runs every model, at every rate of a sweep, in a child process of its
//! own: each model then starts from a fresh heap, so peak RSS and CPU time
//! are that model's alone, and the upstream's CPU is never counted as the
//! engine's. Children print one JSON line; the parent prints the spec's
//! report lines (`--json`) and a summary table.

use std::io::IsTerminal;
use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::time::Duration;

use anyhow::{bail, Context as _};
use clap::Args;
use serde::{Deserialize, Serialize};
use switchyard::io_reactor::mysql_async::prelude::Queryable;
use switchyard::io_reactor::{redis, MysqlConfig, MysqlPool, RedisClient, RedisConfig};
use switchyard::protocol::pz1::{sustains, Params, Report};
use switchyard::pz1::{
    calibrate_cpu_alone, run_bench, EmbeddedStores, Pz1Pipeline, Pz1Upstream, Stores, PZ_RUNS_TABLE,
};
use switchyard::telemetry::ProcessSample;
use switchyard::{Engine, EngineConfig, ExecutionModel};

use crate::cli::Failure;

#[derive(Args, Debug, Clone)]
pub(crate) struct BenchArgs {
    /// Tasks released per second.
    #[arg(long, env = "SWITCHYARD_BENCH_RATE", default_value_t = 50.0)]
    rate: f64,
    /// Seconds during which tasks are released.
    #[arg(long, env = "SWITCHYARD_BENCH_DURATION", default_value_t = 60.0)]
    duration: f64,
    /// Seconds at the start left out of the figures.
    #[arg(long, env = "SWITCHYARD_BENCH_WARMUP", default_value_t = 5.0)]
    warmup: f64,
    /// Seconds to wait for released tasks after the last release.
    #[arg(long, env = "SWITCHYARD_BENCH_DRAIN", default_value_t = 30.0)]
    drain: f64,
    /// Number of zaps (default: 2 x rate).
    #[arg(long, env = "SWITCHYARD_BENCH_ZAPS")]
    zaps: Option<u64>,
    /// Events per poll.
    #[arg(long, env = "SWITCHYARD_BENCH_ITEMS", default_value_t = 50)]
    items: u64,
    /// New events per poll after the first.
    #[arg(long, env = "SWITCHYARD_BENCH_FRESH", default_value_t = 2)]
    fresh: u64,
    /// SHA-256 rounds per item (the CPU knob).
    #[arg(long, env = "SWITCHYARD_BENCH_ROUNDS", default_value_t = 400)]
    rounds: u32,
    /// Scale of the upstream delay distribution, milliseconds.
    #[arg(long, env = "SWITCHYARD_BENCH_BASE_MS", default_value_t = 120.0)]
    base_ms: f64,
    /// Tail index of the upstream delay distribution.
    #[arg(long, env = "SWITCHYARD_BENCH_ALPHA", default_value_t = 2.5)]
    alpha: f64,
    /// Cap of one upstream delay, milliseconds.
    #[arg(long, env = "SWITCHYARD_BENCH_MAX_MS", default_value_t = 5000)]
    max_ms: u64,
    /// Models to run, one after another, with the same parameters. `NAME/N`
    /// gives the model N threads: CPU threads for `hybrid/1`, workers for
    /// `threads/64` (overriding --cpu-threads / --thread-workers for that run).
    #[arg(
        long,
        env = "SWITCHYARD_BENCH_MODELS",
        value_delimiter = ',',
        default_value = "hybrid,reactor-only,threads"
    )]
    models: Vec<ModelSpec>,
    /// Print one JSON line per model run with exactly the spec's keys.
    #[arg(long, env = "SWITCHYARD_BENCH_JSON")]
    json: bool,
    /// Rates to sweep (comma-separated); reports each model's ceiling.
    #[arg(long, env = "SWITCHYARD_BENCH_SWEEP", value_delimiter = ',')]
    sweep: Option<Vec<f64>>,
    /// Use this upstream instead of starting one in-process.
    #[arg(long, env = "SWITCHYARD_BENCH_UPSTREAM")]
    upstream: Option<String>,
    /// Redis for the seen-sets (default: embedded in-memory stores).
    #[arg(long, env = "SWITCHYARD_REDIS_URL")]
    redis_url: Option<String>,
    /// MySQL for the run records (default: embedded in-memory stores).
    #[arg(long, env = "SWITCHYARD_MYSQL_URL")]
    mysql_url: Option<String>,
    /// Reactor worker threads (hybrid).
    #[arg(long, env = "SWITCHYARD_REACTOR_THREADS", default_value_t = switchyard::DEFAULT_REACTOR_THREADS)]
    reactor_threads: usize,
    /// CPU pool threads (hybrid; 0: one per core).
    #[arg(long, env = "SWITCHYARD_CPU_THREADS", default_value_t = 0)]
    cpu_threads: usize,
    /// Most tasks in flight.
    #[arg(long, env = "SWITCHYARD_MAX_IN_FLIGHT", default_value_t = switchyard::DEFAULT_MAX_IN_FLIGHT)]
    max_in_flight: usize,
    /// Most CPU jobs queued or running (0: four per CPU thread).
    #[arg(long, env = "SWITCHYARD_CPU_QUEUE_CAPACITY", default_value_t = 0)]
    cpu_queue_capacity: usize,
    /// Workers of the `threads` model (one task each, like prefork processes).
    #[arg(long, env = "SWITCHYARD_THREAD_WORKERS", default_value_t = switchyard::DEFAULT_THREAD_WORKERS)]
    thread_workers: usize,
    /// Most requests in flight to the upstream (one host): PZ-1 keeps about
    /// rate x 3 x 0.2 s of them waiting, so the client default would cap a sweep.
    #[arg(long, env = "SWITCHYARD_BENCH_HTTP_MAX_IN_FLIGHT_PER_HOST", default_value_t = 8192)]
    http_max_in_flight_per_host: usize,
    /// Prefix of the Redis seen-set keys (tests use their own).
    #[arg(long, env = "SWITCHYARD_BENCH_KEY_PREFIX", default_value = "pz:seen:", hide = true)]
    key_prefix: String,
    /// Prefix of the `run_id` written to `pz_runs` (tests use their own).
    #[arg(long, env = "SWITCHYARD_BENCH_RUN_ID_PREFIX", default_value = "bench-", hide = true)]
    run_id_prefix: String,
    /// Run one model in this process and print a child result line.
    #[arg(long, hide = true)]
    child: bool,
}

/// A model, optionally with its own thread count (`hybrid/1`, `threads/64`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ModelSpec {
    model: ExecutionModel,
    threads: Option<usize>,
}

impl std::str::FromStr for ModelSpec {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (name, threads) = match s.split_once('/') {
            Some((name, n)) => {
                let n: usize =
                    n.parse().map_err(|_| format!("{s:?}: the part after '/' must be a thread count"))?;
                if n == 0 {
                    return Err(format!("{s:?}: the thread count must be at least 1"));
                }
                (name, Some(n))
            }
            None => (s, None),
        };
        let model: ExecutionModel = name.parse()?;
        if threads.is_some() && model == ExecutionModel::ReactorOnly {
            return Err(format!("{s:?}: reactor-only always has one thread"));
        }
        Ok(ModelSpec { model, threads })
    }
}

impl std::fmt::Display for ModelSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.threads {
            Some(n) => write!(f, "{}/{n}", self.model),
            None => write!(f, "{}", self.model),
        }
    }
}

impl BenchArgs {
    fn params(&self, rate: f64) -> Params {
        Params {
            rate,
            duration_s: self.duration,
            warmup_s: self.warmup,
            drain_s: self.drain,
            zaps: self.zaps,
            items: self.items,
            fresh: self.fresh,
            rounds: self.rounds,
            base_ms: self.base_ms,
            alpha: self.alpha,
            max_ms: self.max_ms,
        }
    }

    fn engine_config(&self, spec: ModelSpec) -> EngineConfig {
        let mut config = EngineConfig {
            model: spec.model,
            reactor_threads: self.reactor_threads,
            max_in_flight: self.max_in_flight,
            thread_workers: self.thread_workers,
            mysql: self.mysql_url.as_ref().map(|url| MysqlConfig::new(url.clone())),
            redis: self.redis_url.as_ref().map(|url| RedisConfig::new(url.clone())),
            ..EngineConfig::default()
        };
        config.cpu.threads = self.cpu_threads;
        config.cpu.queue_capacity = self.cpu_queue_capacity;
        config.http.max_in_flight_per_host = self.http_max_in_flight_per_host;
        config.http.pool_max_idle_per_host = self.http_max_in_flight_per_host;
        match (spec.model, spec.threads) {
            (ExecutionModel::Hybrid, Some(n)) => config.cpu.threads = n,
            (ExecutionModel::Threads, Some(n)) => config.thread_workers = n,
            _ => {}
        }
        config
    }
}

/// One child's result line.
#[derive(Debug, Serialize, Deserialize)]
struct ChildResult {
    report: Report,
    unfinished: u64,
    cpu_alone_ms: f64,
    failures: Vec<String>,
}

pub(crate) fn bench(args: BenchArgs) -> Result<(), Failure> {
    let config_error = |e: anyhow::Error| Failure::Config(e);
    args.params(args.rate)
        .validate()
        .map_err(|e| config_error(anyhow::anyhow!("{e}; fix `--{}`", flag_of(e.field()))))?;
    if args.redis_url.is_some() != args.mysql_url.is_some() {
        return Err(config_error(anyhow::anyhow!(
            "give both --redis-url and --mysql-url for real stores, or neither for the embedded ones"
        )));
    }
    if args.child {
        return child(&args).map_err(Failure::Runtime);
    }
    parent(&args).map_err(Failure::Runtime)
}

fn flag_of(field: &str) -> String {
    field.trim_end_matches("_s").replace('_', "-")
}

fn parent(args: &BenchArgs) -> anyhow::Result<()> {
    let local_upstream = match &args.upstream {
        Some(_) => None,
        None => {
            Some(Pz1Upstream::start(SocketAddr::from(([127, 0, 0, 1], 0))).context("starting the upstream")?)
        }
    };
    let upstream_url = match (&args.upstream, &local_upstream) {
        (Some(url), _) => url.clone(),
        (None, Some(up)) => up.base_url(),
        (None, None) => unreachable!("an upstream was started above"),
    };
    let stores = if args.redis_url.is_some() { "real Redis and MySQL" } else { "embedded in-memory stores" };
    eprintln!("PZ-1 against {upstream_url} with {stores}; models: {}", names(&args.models));
    let rates = args.sweep.clone().unwrap_or_else(|| vec![args.rate]);
    let mut rows = Vec::new();
    for &model in &args.models {
        let mut failed_in_a_row = 0;
        for &rate in &rates {
            let before = local_upstream.as_ref().map(|u| (u.thread_cpu(), u.counters().total()));
            let stores_before = store_servers_cpu();
            let started = std::time::Instant::now();
            let result = run_child(args, model, rate, &upstream_url)?;
            let stores_cpu = store_servers_cpu().saturating_sub(stores_before).as_secs_f64();
            if stores_cpu > 0.0 {
                // Over the whole child run (warm-up and drain included).
                let per_s = stores_cpu / started.elapsed().as_secs_f64();
                eprintln!("  store servers (mariadbd, redis-server): {per_s:.3} CPU seconds per second");
            }
            if let (Some(up), Some((Some(cpu0), n0))) = (&local_upstream, before) {
                if let Some(cpu1) = up.thread_cpu() {
                    let requests = up.counters().total() - n0;
                    if requests > 0 {
                        let per_k = (cpu1 - cpu0).as_secs_f64() * 1e3 / requests as f64;
                        eprintln!(
                            "  upstream: {requests} requests, {per_k:.3} CPU seconds per 1000 requests"
                        );
                    }
                }
            }
            if !result.failures.is_empty() {
                eprintln!("  sample failures: {:?}", result.failures);
            }
            if args.json {
                println!("{}", serde_json::to_string(&result.report)?);
            }
            let ok = sustains(&result.report, rate);
            rows.push((result, ok));
            failed_in_a_row = if ok { 0 } else { failed_in_a_row + 1 };
            if args.sweep.is_some() && failed_in_a_row >= 2 {
                eprintln!("  {model}: two rates in a row not sustained; stopping its sweep");
                break;
            }
        }
    }
    print_table(&rows, args.json);
    if args.sweep.is_some() {
        for &model in &args.models {
            let ceiling = rows
                .iter()
                .filter(|(r, ok)| *ok && r.report.model == model.to_string())
                .map(|(r, _)| r.report.rate)
                .fold(None, |m: Option<f64>, r| Some(m.map_or(r, |m| m.max(r))));
            match ceiling {
                Some(c) => eprintln!("ceiling {model}: {c} tasks/s"),
                None => eprintln!("ceiling {model}: none of the swept rates sustained"),
            }
        }
    }
    Ok(())
}

/// CPU time used so far by the local database servers (Linux `/proc`), so
/// a report can count every process a task costs, not only Switchyard.
fn store_servers_cpu() -> Duration {
    const SERVERS: [&str; 3] = ["mariadbd", "mysqld", "redis-server"];
    let Ok(entries) = std::fs::read_dir("/proc") else { return Duration::ZERO };
    let mut total = Duration::ZERO;
    for entry in entries.flatten() {
        let Some(pid) = entry.file_name().to_str().and_then(|n| n.parse::<u32>().ok()) else { continue };
        let is_server =
            std::fs::read_to_string(entry.path().join("comm")).is_ok_and(|c| SERVERS.contains(&c.trim()));
        if is_server {
            total += ProcessSample::process_cpu(pid).unwrap_or_default();
        }
    }
    total
}

fn names(models: &[ModelSpec]) -> String {
    models.iter().map(ToString::to_string).collect::<Vec<_>>().join(", ")
}

fn run_child(args: &BenchArgs, model: ModelSpec, rate: f64, upstream: &str) -> anyhow::Result<ChildResult> {
    let exe = std::env::current_exe().context("locating the switchyard binary")?;
    let mut cmd = Command::new(exe);
    cmd.arg("bench").arg("--child").arg(format!("--models={model}")).arg(format!("--rate={rate}"));
    cmd.arg(format!("--upstream={upstream}"));
    for (flag, value) in [
        ("duration", args.duration.to_string()),
        ("warmup", args.warmup.to_string()),
        ("drain", args.drain.to_string()),
        ("items", args.items.to_string()),
        ("fresh", args.fresh.to_string()),
        ("rounds", args.rounds.to_string()),
        ("base-ms", args.base_ms.to_string()),
        ("alpha", args.alpha.to_string()),
        ("max-ms", args.max_ms.to_string()),
        ("reactor-threads", args.reactor_threads.to_string()),
        ("cpu-threads", args.cpu_threads.to_string()),
        ("max-in-flight", args.max_in_flight.to_string()),
        ("cpu-queue-capacity", args.cpu_queue_capacity.to_string()),
        ("thread-workers", args.thread_workers.to_string()),
        ("key-prefix", args.key_prefix.clone()),
        ("http-max-in-flight-per-host", args.http_max_in_flight_per_host.to_string()),
        ("run-id-prefix", args.run_id_prefix.clone()),
    ] {
        cmd.arg(format!("--{flag}={value}"));
    }
    if let Some(zaps) = args.zaps {
        cmd.arg(format!("--zaps={zaps}"));
    }
    if let (Some(redis), Some(mysql)) = (&args.redis_url, &args.mysql_url) {
        cmd.env("SWITCHYARD_REDIS_URL", redis).env("SWITCHYARD_MYSQL_URL", mysql);
    } else {
        cmd.env_remove("SWITCHYARD_REDIS_URL").env_remove("SWITCHYARD_MYSQL_URL");
    }
    eprintln!("{model} at {rate} tasks/s ...");
    let output = cmd.stdin(Stdio::null()).stderr(Stdio::inherit()).output().context("running a model")?;
    if !output.status.success() {
        bail!("the {model} run failed ({})", output.status);
    }
    let line = String::from_utf8_lossy(&output.stdout);
    serde_json::from_str(line.trim()).with_context(|| format!("reading the {model} result: {line}"))
}

fn child(args: &BenchArgs) -> anyhow::Result<()> {
    let model = *args.models.first().context("one model")?;
    let upstream = args.upstream.clone().context("the parent passes --upstream")?;
    let params = args.params(args.rate);
    let engine = Engine::builder().config(args.engine_config(model)).build()?;
    let label = model.to_string();
    let run_id = format!("{}{label}-{}-{}", args.run_id_prefix, args.rate, std::process::id());
    let stores = match (&args.redis_url, &args.mysql_url) {
        (Some(redis_url), Some(mysql_url)) => {
            engine.block_on(prepare_real_stores(redis_url, mysql_url, &args.key_prefix))??;
            Stores::External { key_prefix: args.key_prefix.clone(), runs_table: PZ_RUNS_TABLE.to_string() }
        }
        _ => Stores::Embedded(EmbeddedStores::new()),
    };
    let cpu_alone_s = calibrate_cpu_alone(&params, 15);
    let pipeline = Pz1Pipeline::new(upstream, params.clone(), stores, run_id);
    let bar = progress_bar(model, &params);
    let outcome = engine.block_on(run_bench(&engine, pipeline, &params, &label, cpu_alone_s, |p| {
        bar.set_length(p.scheduled);
        bar.set_position(p.finished);
        bar.set_message(format!("in flight {:>5}  failed {}", p.in_flight, p.failed));
    }))??;
    bar.finish_and_clear();
    engine.block_on(engine.shutdown(Duration::from_secs(5)))?;
    let result = ChildResult {
        report: outcome.report,
        unfinished: outcome.unfinished,
        cpu_alone_ms: outcome.cpu_alone_s * 1e3,
        failures: outcome.sample_failures,
    };
    println!("{}", serde_json::to_string(&result)?);
    Ok(())
}

fn progress_bar(model: ModelSpec, params: &Params) -> indicatif::ProgressBar {
    if !std::io::stderr().is_terminal() {
        return indicatif::ProgressBar::hidden();
    }
    let bar = indicatif::ProgressBar::new(0);
    let style =
        indicatif::ProgressStyle::with_template("{prefix:>13} [{bar:30}] {pos}/{len} {elapsed} {msg}")
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar())
            .progress_chars("=> ");
    bar.set_style(style);
    bar.set_prefix(format!("{model} @{}", params.rate));
    bar
}

/// Creates `pz_runs` if missing and clears this prefix's seen-sets, so a
/// run never finds ids from an earlier one.
async fn prepare_real_stores(redis_url: &str, mysql_url: &str, key_prefix: &str) -> anyhow::Result<()> {
    let pool = MysqlPool::new(&MysqlConfig::new(mysql_url))?;
    let ddl = switchyard::pz1::runs_table_ddl(PZ_RUNS_TABLE);
    pool.with_conn(move |c| Box::pin(c.query_drop(ddl))).await.context("creating pz_runs")?;
    pool.disconnect().await?;
    let redis = RedisClient::connect(&RedisConfig::new(redis_url)).await?;
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

fn print_table(rows: &[(ChildResult, bool)], to_stderr: bool) {
    let mut out = String::new();
    out.push_str(&format!(
        "{:<13} {:>7} {:>6} {:>9} {:>6} {:>8} {:>8} {:>8} {:>7} {:>7} {:>7} {:>6} {:>7} {:>7} {:>9}\n",
        "model",
        "rate",
        "rounds",
        "completed",
        "errors",
        "thrpt/s",
        "p50 ms",
        "p99 ms",
        "slow50",
        "slow99",
        "exec99",
        "cpu/s",
        "rss MB",
        "up rps",
        "sustains"
    ));
    for (r, ok) in rows {
        let r2 = &r.report;
        out.push_str(&format!(
            "{:<13} {:>7.1} {:>6} {:>9} {:>6} {:>8.1} {:>8.1} {:>8.1} {:>7.3} {:>7.3} {:>7.3} {:>6.2} {:>7.1} {:>7.1} {:>9}\n",
            r2.model, r2.rate, r2.rounds, r2.completed, r2.errors, r2.throughput, r2.latency_p50_ms,
            r2.latency_p99_ms, r2.slowdown_p50, r2.slowdown_p99, r2.exec_slowdown_p99, r2.cpu_per_wall_s,
            r2.peak_rss_mb, r2.upstream_rps, if *ok { "yes" } else { "no" }
        ));
    }
    if to_stderr {
        eprint!("{out}");
    } else {
        print!("{out}");
    }
}
