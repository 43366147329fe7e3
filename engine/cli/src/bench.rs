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
use switchyard::io_reactor::{redis, MysqlConfig, MysqlPool, RedisClient, RedisConfig};
use switchyard::telemetry::ProcessSample;
use switchyard::{Engine, EngineConfig, ModelSpec};
use switchyard_pipeline::{create_runs_table, MemoryStores, Stores};
use switchyard_pz1::{
    calibrate_cpu_alone, pz1_pipeline, run_bench, sustains, Params, Pz1Upstream, Report, PZ_RUNS_TABLE,
};

use crate::engine_args::{check_stores_pair, EngineArgs};
use crate::failure::Failure;

/// The environment variable a parent hands its child run's [`ChildSpec`] in.
const CHILD_SPEC_VAR: &str = "SWITCHYARD_BENCH_CHILD_SPEC";

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
    #[command(flatten)]
    engine: EngineArgs,
    /// Most requests in flight to the upstream (one host): PZ-1 keeps about
    /// rate x 3 x 0.2 s of them waiting, so the client's default would cap a sweep.
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

    /// The engine configuration of one model's run.
    fn engine_config(&self, spec: ModelSpec) -> EngineConfig {
        let mut config = EngineConfig::default();
        self.engine.apply(&mut config);
        config.http.max_in_flight_per_host = self.http_max_in_flight_per_host;
        // Every waiting request may come back to the pool: keep them all.
        config.http.pool_max_idle_per_host = self.http_max_in_flight_per_host;
        config.apply_model(spec);
        config
    }
}

/// Everything a child process needs for its one run.
#[derive(Debug, Serialize, Deserialize)]
struct ChildSpec {
    model: String,
    params: Params,
    engine: EngineConfig,
    upstream: String,
    key_prefix: String,
    run_id_prefix: String,
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
    if args.child {
        return child().map_err(Failure::Runtime);
    }
    let config_error = |e: anyhow::Error| Failure::Config(e);
    args.params(args.rate)
        .validate()
        .map_err(|e| config_error(anyhow::anyhow!("{e}; fix `--{}`", flag_of(e.field()))))?;
    for &model in &args.models {
        let config = args.engine_config(model);
        check_stores_pair(&config, ["--redis-url", "--mysql-url"])
            .map_err(|e| config_error(anyhow::anyhow!(e)))?;
        config.validate().map_err(|e| config_error(e.into()))?;
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
    let stores =
        if args.engine.redis_url.is_some() { "real Redis and MySQL" } else { "embedded in-memory stores" };
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
    let spec = ChildSpec {
        model: model.to_string(),
        params: args.params(rate),
        engine: args.engine_config(model),
        upstream: upstream.to_string(),
        key_prefix: args.key_prefix.clone(),
        run_id_prefix: args.run_id_prefix.clone(),
    };
    // Through the environment, not argv: store URLs may carry passwords.
    let mut cmd = Command::new(exe);
    cmd.args(["bench", "--child"]).env(CHILD_SPEC_VAR, serde_json::to_string(&spec)?);
    eprintln!("{model} at {rate} tasks/s ...");
    let output = cmd.stdin(Stdio::null()).stderr(Stdio::inherit()).output().context("running a model")?;
    if !output.status.success() {
        bail!("the {model} run failed ({})", output.status);
    }
    let line = String::from_utf8_lossy(&output.stdout);
    serde_json::from_str(line.trim()).with_context(|| format!("reading the {model} result: {line}"))
}

fn child() -> anyhow::Result<()> {
    let spec = std::env::var(CHILD_SPEC_VAR).context("the parent passes the run's spec")?;
    let spec: ChildSpec = serde_json::from_str(&spec).context("reading the run's spec")?;
    let params = &spec.params;
    let engine = Engine::builder().config(spec.engine.clone()).build()?;
    let run_id = format!("{}{}-{}-{}", spec.run_id_prefix, spec.model, params.rate, std::process::id());
    let stores = match (&spec.engine.redis, &spec.engine.mysql) {
        (Some(redis), Some(mysql)) => {
            engine.block_on(prepare_real_stores(redis, mysql, &spec.key_prefix))??;
            Stores::redis_mysql(spec.key_prefix.clone(), PZ_RUNS_TABLE)
        }
        _ => Stores::memory(MemoryStores::new()),
    };
    let cpu_alone_s = calibrate_cpu_alone(params, 15);
    let pipeline = pz1_pipeline("pz1", &spec.upstream, params, stores, run_id);
    let bar = progress_bar(&spec.model, params);
    let outcome =
        engine.block_on(run_bench(&engine, pipeline, params, &spec.model, cpu_alone_s, |p| {
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

fn progress_bar(model: &str, params: &Params) -> indicatif::ProgressBar {
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
