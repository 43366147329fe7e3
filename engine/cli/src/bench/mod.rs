//! `switchyard bench`: workload PZ-1 under each execution model, side by side.
//!
//! The parent process starts the upstream (unless `--upstream` points at one)
//! and runs every model, at every rate of a sweep, in a child process of its
//! own: each model then starts from a fresh heap, so peak RSS and CPU time
//! are that model's alone, and the upstream's CPU is never counted as the
//! engine's. Children print one JSON line; the parent prints the spec's
//! report lines (`--json`) and a summary table.

mod child;
mod machine;
mod table;
mod timeline;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Duration;

use anyhow::{bail, Context as _};
use clap::{Args, ValueEnum};
use serde::{Deserialize, Serialize};
use switchyard::io_reactor::{EgressConfig, RedisConfig};
use switchyard::telemetry::ProcessSample;
use switchyard::{EngineConfig, ModelSpec};
use switchyard_pz1::{sustains, Params, Pz1Upstream};

use self::child::{child, ChildResult, ChildSpec, CHILD_SPEC_VAR};
use self::machine::{MachineCpu, DISTURBED_STEAL_SHARE};
use self::table::{print_medians, print_table, Row};
use crate::engine_args::{check_stores_pair, EngineArgs};
use crate::failure::Failure;

/// Where the driver hands tasks to the engine.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub(crate) enum SourceKind {
    /// An in-process bounded queue.
    Memory,
    /// A Redis stream read through a consumer group, acked once settled:
    /// the durable service's path.
    Stream,
}

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
    /// How tasks reach the engine: `memory` (an in-process queue) or
    /// `stream` (a Redis stream with a consumer group, as the durable
    /// service runs). Several: each model runs through each.
    #[arg(long, env = "SWITCHYARD_BENCH_SOURCES", value_delimiter = ',', default_value = "memory")]
    sources: Vec<SourceKind>,
    /// The Redis holding the task stream (default: --redis-url, else a
    /// local Redis). Its commands and CPU are reported per 1,000 tasks,
    /// which is only right when nothing else uses it during the run.
    #[arg(long, env = "SWITCHYARD_BENCH_STREAM_REDIS_URL", hide_env_values = true)]
    stream_redis_url: Option<String>,
    /// Runs of every point; each round runs the models and sources in the
    /// opposite order of the last, and the summary gives medians and ranges.
    #[arg(long, env = "SWITCHYARD_BENCH_REPEATS", default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=50))]
    repeats: u32,
    /// Append each run's per-second timeline to this file (JSON lines: tasks
    /// finished and their latency and slowdown, tasks in flight, CPU queue
    /// and busy threads, reactor lag, Redis, MySQL and upstream latency,
    /// process and machine CPU). Emptied when the bench starts.
    #[arg(long, env = "SWITCHYARD_BENCH_TIMELINE", value_name = "FILE")]
    timeline: Option<PathBuf>,
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

    /// The Redis of the task stream, when a stream run is asked for.
    fn stream_redis(&self) -> Option<RedisConfig> {
        if !self.sources.contains(&SourceKind::Stream) {
            return None;
        }
        let url = self.stream_redis_url.clone().or_else(|| self.engine.redis_url.clone());
        Some(RedisConfig::new(url.unwrap_or_else(|| "redis://127.0.0.1:6379/".to_string())))
    }

    /// Every (model, source) pair a round runs, in the first round's order.
    fn combos(&self) -> Vec<(ModelSpec, SourceKind)> {
        self.models.iter().flat_map(|&m| self.sources.iter().map(move |&s| (m, s))).collect()
    }

    /// The engine configuration of one model's run.
    fn engine_config(&self, spec: ModelSpec) -> EngineConfig {
        let mut config = EngineConfig::default();
        self.engine.apply(&mut config);
        config.http.max_in_flight_per_host = self.http_max_in_flight_per_host;
        // Every waiting request may come back to the pool: keep them all.
        config.http.pool_max_idle_per_host = self.http_max_in_flight_per_host;
        // The bench's upstream runs on this machine, on loopback.
        config.http.egress = EgressConfig::allowing_loopback();
        config.apply_model(spec);
        config
    }
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
    if let Some(path) = &args.timeline {
        std::fs::File::create(path).with_context(|| format!("creating the timeline {}", path.display()))?;
    }
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
    let sources: Vec<_> = args.sources.iter().map(|s| format!("{s:?}").to_lowercase()).collect();
    eprintln!(
        "PZ-1 against {upstream_url} with {stores}; models: {}; task sources: {}; {} round(s)",
        names(&args.models),
        sources.join(", "),
        args.repeats
    );
    let rates = args.sweep.clone().unwrap_or_else(|| vec![args.rate]);
    let combos = args.combos();
    let mut stopped = vec![false; combos.len()];
    let mut failed_in_a_row = vec![0u32; combos.len()];
    let mut rows: Vec<Row> = Vec::new();
    for &rate in &rates {
        let mut sustained = vec![(0u32, 0u32); combos.len()];
        for round in 0..args.repeats {
            // Alternate the order so neither side always runs first.
            let order: Vec<usize> =
                if round % 2 == 0 { (0..combos.len()).collect() } else { (0..combos.len()).rev().collect() };
            for index in order.into_iter().filter(|&i| !stopped[i]) {
                let (model, source) = combos[index];
                let run = Run { model, source, rate, round };
                let (result, steal_share) = run_measured(args, run, &upstream_url, local_upstream.as_ref())?;
                let ok = sustains(&result.report);
                sustained[index].0 += u32::from(ok);
                sustained[index].1 += 1;
                rows.push(Row { label: label(model, source), rate, result, ok, steal_share });
            }
        }
        for (index, &(ok, runs)) in sustained.iter().enumerate() {
            if runs == 0 {
                continue;
            }
            failed_in_a_row[index] = if 2 * ok > runs { 0 } else { failed_in_a_row[index] + 1 };
            if args.sweep.is_some() && failed_in_a_row[index] >= 2 {
                let (model, source) = combos[index];
                eprintln!("  {}: two rates in a row not sustained; stopping its sweep", label(model, source));
                stopped[index] = true;
            }
        }
    }
    print_table(&rows, args.json);
    if args.repeats > 1 {
        print_medians(&rows);
    }
    if args.sweep.is_some() {
        for &(model, source) in &combos {
            let name = label(model, source);
            let ceiling = rows
                .iter()
                .filter(|r| r.ok && r.label == name)
                .map(|r| r.rate)
                .fold(None, |m: Option<f64>, r| Some(m.map_or(r, |m| m.max(r))));
            match ceiling {
                Some(c) => eprintln!("ceiling {name}: {c} tasks/s"),
                None => eprintln!("ceiling {name}: none of the swept rates sustained"),
            }
        }
    }
    Ok(())
}

/// A run's label: the model, with `+stream` when tasks went through Redis.
fn label(model: ModelSpec, source: SourceKind) -> String {
    match source {
        SourceKind::Memory => model.to_string(),
        SourceKind::Stream => format!("{model}+stream"),
    }
}

/// One run of a bench: a model, through a source, at a rate, in a round.
#[derive(Debug, Clone, Copy)]
struct Run {
    model: ModelSpec,
    source: SourceKind,
    rate: f64,
    round: u32,
}

/// Runs one child and prints what it cost around it: the store servers'
/// and the upstream's CPU, and the Redis commands per task. Returns the
/// child's result and the share of the machine's CPU time stolen by other
/// tenants during it.
fn run_measured(
    args: &BenchArgs,
    run: Run,
    upstream_url: &str,
    local_upstream: Option<&Pz1Upstream>,
) -> anyhow::Result<(ChildResult, Option<f64>)> {
    let before = local_upstream.map(|u| (u.thread_cpu(), u.counters().polls(), u.counters().actions()));
    let stores_before = store_servers_cpu();
    let machine_before = MachineCpu::read();
    let started = std::time::Instant::now();
    let result = run_child(args, run, upstream_url)?;
    let steal_share = machine_before.zip(MachineCpu::read()).and_then(|(b, a)| b.steal_share(&a));
    if let Some(share) = steal_share {
        let verdict =
            if share > DISTURBED_STEAL_SHARE { " (disturbed: left out of the medians)" } else { "" };
        eprintln!("  machine: {:.1} % of its CPU time stolen by the hypervisor{verdict}", share * 100.0);
    }
    let stores_cpu = store_servers_cpu().saturating_sub(stores_before).as_secs_f64();
    if stores_cpu > 0.0 {
        // Over the whole child run (warm-up and drain included).
        let per_s = stores_cpu / started.elapsed().as_secs_f64();
        eprintln!("  store servers (mariadbd, redis-server): {per_s:.3} CPU seconds per second");
    }
    if let (Some(redis), true) = (&result.redis, result.tasks > 0) {
        let per_k = 1_000.0 / result.tasks as f64;
        eprintln!(
            "  redis: {} tasks, {:.0} commands and {:.1} ms of its CPU per 1000 tasks; most called: {}",
            result.tasks,
            redis.commands() as f64 * per_k,
            redis.cpu_s * 1e3 * per_k,
            redis.top(10)
        );
    }
    if let (Some(up), Some((Some(cpu0), polls0, actions0))) = (local_upstream, before) {
        if let Some(cpu1) = up.thread_cpu() {
            let (polls, actions) = (up.counters().polls() - polls0, up.counters().actions() - actions0);
            let requests = polls + actions;
            if requests > 0 {
                let per_k = (cpu1 - cpu0).as_secs_f64() * 1e3 / requests as f64;
                eprintln!(
                    "  upstream: {requests} requests ({polls} polls, {actions} actions), \
                     {per_k:.3} CPU seconds per 1000 requests"
                );
            }
        }
    }
    print_cost(&result);
    if !result.failures.is_empty() {
        eprintln!("  sample failures: {:?}", result.failures);
    }
    if args.json {
        println!("{}", serde_json::to_string(&result.report)?);
    }
    Ok((result, steal_share))
}

/// The run's CPU per task by thread role, beside the CPU step alone.
fn print_cost(result: &ChildResult) {
    let alone = &result.cpu_alone;
    let ms = |s: f64| s * 1e3;
    eprintln!(
        "  CPU step alone (thread CPU clock, median): transform {:.3} ms = SHA-256 loop {:.3} ms + the rest {:.3} ms",
        ms(alone.transform_s),
        ms(alone.sha_s),
        ms(alone.overhead_s())
    );
    if let Some(per) = &result.cpu_per_task {
        eprintln!(
            "  CPU per task in the window: {:.3} ms = reactor {:.3} + CPU threads {:.3} + other threads {:.3}",
            ms(per.total_s()),
            ms(per.reactor_s),
            ms(per.cpu_s),
            ms(per.other_s)
        );
    }
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

fn run_child(args: &BenchArgs, run: Run, upstream: &str) -> anyhow::Result<ChildResult> {
    let Run { model, source, rate, round } = run;
    let exe = std::env::current_exe().context("locating the switchyard binary")?;
    let name = label(model, source);
    let spec = ChildSpec {
        label: name.clone(),
        params: args.params(rate),
        engine: args.engine_config(model),
        upstream: upstream.to_string(),
        key_prefix: args.key_prefix.clone(),
        run_id_prefix: args.run_id_prefix.clone(),
        source,
        stream_redis: args.stream_redis(),
        timeline: args.timeline.clone(),
        model: model.to_string(),
        round,
    };
    // Through the environment, not argv: store URLs may carry passwords.
    let mut cmd = Command::new(exe);
    cmd.args(["bench", "--child"]).env(CHILD_SPEC_VAR, serde_json::to_string(&spec)?);
    eprintln!("{name} at {rate} tasks/s ...");
    let output = cmd.stdin(Stdio::null()).stderr(Stdio::inherit()).output().context("running a model")?;
    if !output.status.success() {
        bail!("the {name} run failed ({})", output.status);
    }
    let line = String::from_utf8_lossy(&output.stdout);
    serde_json::from_str(line.trim()).with_context(|| format!("reading the {name} result: {line}"))
}
