//! Command line: every flag has an environment twin (`SWITCHYARD_*`);
//! flags win over the environment, which wins over defaults.

use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context as _;
use clap::{Args, Parser, Subcommand};
use switchyard::demo::{run_demo, DemoParams, DemoUpstream};
use switchyard::telemetry::{install_prometheus, DEFAULT_METRICS_ADDR};
use switchyard::{Engine, EngineConfig, ExecutionModel};
use tokio_util::sync::CancellationToken;

/// Exit code for a configuration the binary cannot run with (sysexits' EX_CONFIG).
const EXIT_CONFIG: u8 = 78;

#[derive(Parser, Debug)]
#[command(name = "switchyard", version, about = "A task engine for mixed network-wait and CPU-heavy work")]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run the service (with no configuration: the built-in demo against a loopback upstream).
    Run(RunArgs),
    /// Run workload PZ-1 under each execution model and compare them.
    Bench(crate::bench::BenchArgs),
    /// Serve the PZ-1 upstream HTTP contract until stopped.
    Upstream(UpstreamArgs),
}

#[derive(Args, Debug, Clone)]
struct UpstreamArgs {
    /// Address to serve on (port 0 picks a free port, which is logged).
    #[arg(long, env = "SWITCHYARD_UPSTREAM_LISTEN", default_value = "127.0.0.1:8081")]
    listen: SocketAddr,
}

#[derive(Args, Debug, Clone)]
struct RunArgs {
    /// Address of the /metrics and /healthz endpoint (port 0 picks a free port).
    #[arg(long, env = "SWITCHYARD_LISTEN", default_value_t = DEFAULT_METRICS_ADDR)]
    listen: SocketAddr,
    /// Execution model: hybrid, reactor-only or threads.
    #[arg(long, env = "SWITCHYARD_MODEL", default_value = "hybrid")]
    model: ExecutionModel,
    /// Reactor worker threads (hybrid).
    #[arg(long, env = "SWITCHYARD_REACTOR_THREADS", default_value_t = switchyard::DEFAULT_REACTOR_THREADS)]
    reactor_threads: usize,
    /// CPU pool threads (0: one per core).
    #[arg(long, env = "SWITCHYARD_CPU_THREADS", default_value_t = 0)]
    cpu_threads: usize,
    /// Most CPU jobs queued or running (0: four per CPU thread).
    #[arg(long, env = "SWITCHYARD_CPU_QUEUE_CAPACITY", default_value_t = 0)]
    cpu_queue_capacity: usize,
    /// Most tasks in flight.
    #[arg(long, env = "SWITCHYARD_MAX_IN_FLIGHT", default_value_t = switchyard::DEFAULT_MAX_IN_FLIGHT)]
    max_in_flight: usize,
    /// Worker threads of the `threads` model.
    #[arg(long, env = "SWITCHYARD_THREAD_WORKERS", default_value_t = switchyard::DEFAULT_THREAD_WORKERS)]
    thread_workers: usize,
    /// Seconds in-flight tasks get to finish on shutdown.
    #[arg(long, env = "SWITCHYARD_SHUTDOWN_DEADLINE", default_value_t = 30.0)]
    shutdown_deadline: f64,
    /// Demo: tasks per second.
    #[arg(long, env = "SWITCHYARD_DEMO_RATE", default_value_t = DemoParams::default().rate)]
    rate: u32,
    /// Demo: stop after this many tasks (default: run until stopped).
    #[arg(long, env = "SWITCHYARD_DEMO_TASKS")]
    tasks: Option<u64>,
    /// Demo: upstream delay per request, in milliseconds.
    #[arg(long, env = "SWITCHYARD_DEMO_DELAY_MS", default_value_t = DemoParams::default().delay_ms)]
    delay_ms: u64,
    /// Demo: hash rounds per record (CPU cost).
    #[arg(long, env = "SWITCHYARD_DEMO_ROUNDS", default_value_t = DemoParams::default().rounds)]
    rounds: u32,
}

impl Default for RunArgs {
    fn default() -> Self {
        // Parsing no flags gives the same defaults as `switchyard run`.
        RunArgs::from_args_only(&[])
    }
}

impl RunArgs {
    fn from_args_only(args: &[&str]) -> Self {
        #[derive(Parser)]
        struct Wrapper {
            #[command(flatten)]
            run: RunArgs,
        }
        let argv = std::iter::once("switchyard").chain(args.iter().copied());
        Wrapper::parse_from(argv).run
    }

    fn engine_config(&self) -> EngineConfig {
        let mut config = EngineConfig {
            model: self.model,
            reactor_threads: self.reactor_threads,
            max_in_flight: self.max_in_flight,
            thread_workers: self.thread_workers,
            ..EngineConfig::default()
        };
        config.cpu.threads = self.cpu_threads;
        config.cpu.queue_capacity = self.cpu_queue_capacity;
        config
    }
}

pub(crate) fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging();
    let command = cli.command.unwrap_or(Command::Run(RunArgs::default()));
    let result = match command {
        Command::Run(args) => run(args),
        Command::Bench(args) => crate::bench::bench(args),
        Command::Upstream(args) => upstream(args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(Failure::Config(e)) => {
            eprintln!("switchyard: {e:#}");
            ExitCode::from(EXIT_CONFIG)
        }
        Err(Failure::Runtime(e)) => {
            eprintln!("switchyard: {e:#}");
            ExitCode::FAILURE
        }
    }
}

pub(crate) enum Failure {
    Config(anyhow::Error),
    Runtime(anyhow::Error),
}

fn init_logging() {
    use std::io::IsTerminal;
    let filter = tracing_subscriber::EnvFilter::try_from_env("SWITCHYARD_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    if std::io::stderr().is_terminal() {
        builder.init();
    } else {
        builder.json().init();
    }
}

fn run(args: RunArgs) -> Result<(), Failure> {
    let engine = Engine::builder().config(args.engine_config()).build().map_err(|e| {
        let key = e.config_field().unwrap_or("?").to_string();
        Failure::Config(anyhow::Error::new(e).context(format!("fix the setting `{key}`")))
    })?;
    let metrics = install_prometheus().map_err(|e| Failure::Runtime(e.into()))?;
    let upstream = DemoUpstream::start().context("starting the demo upstream").map_err(Failure::Runtime)?;
    let params = DemoParams {
        rate: args.rate,
        tasks: args.tasks,
        delay_ms: args.delay_ms,
        rounds: args.rounds,
        ..DemoParams::default()
    };
    let deadline = Duration::from_secs_f64(args.shutdown_deadline.max(0.0));
    let outcome = engine.block_on(async {
        let listener = tokio::net::TcpListener::bind(args.listen)
            .await
            .with_context(|| format!("binding the metrics listener on {}", args.listen))
            .map_err(Failure::Config)?;
        let local = listener.local_addr().map_err(|e| Failure::Runtime(e.into()))?;
        tracing::info!(address = %local, "serving /metrics and /healthz");
        let stop = CancellationToken::new();
        tokio::spawn(crate::metrics_server::serve(listener, metrics.clone(), stop.clone()));
        tokio::spawn(upkeep(metrics, stop.clone()));
        tokio::spawn(stop_on_signal(stop.clone()));
        tracing::info!(model = %engine.config().model, upstream = %upstream.base_url(), "running the built-in demo");
        let report = run_demo(&engine, &upstream, params, stop.clone(), deadline, Duration::from_secs(5))
            .await
            .map_err(|e| Failure::Runtime(e.into()))?;
        stop.cancel();
        engine.shutdown(deadline).await;
        let s = report.stats;
        tracing::info!(
            ok = s.ok, failed = s.failed, panicked = s.panicked, abandoned = s.abandoned,
            peak_in_flight = s.peak_in_flight, elapsed_s = report.elapsed.as_secs_f64(),
            "demo finished"
        );
        if !report.unfinished.is_empty() {
            tracing::warn!(unfinished = ?report.unfinished, "tasks not finished by the shutdown deadline");
        }
        Ok(())
    });
    outcome.map_err(|e| Failure::Runtime(e.into()))?
}

fn upstream(args: UpstreamArgs) -> Result<(), Failure> {
    let upstream = switchyard::pz1::Pz1Upstream::start(args.listen)
        .with_context(|| format!("serving the upstream on {}", args.listen))
        .map_err(Failure::Config)?;
    tracing::info!(address = %upstream.addr(), "serving the PZ-1 upstream");
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| Failure::Runtime(e.into()))?;
    runtime.block_on(async {
        let stop = CancellationToken::new();
        tokio::spawn(stop_on_signal(stop.clone()));
        stop.cancelled().await;
    });
    let c = upstream.counters();
    tracing::info!(polls = c.polls(), actions = c.actions(), rejected = c.rejected(), "upstream stopped");
    Ok(())
}

async fn upkeep(metrics: switchyard::telemetry::PrometheusSetup, stop: CancellationToken) {
    let mut every = tokio::time::interval(Duration::from_secs(5));
    while tokio::select! { _ = every.tick() => true, _ = stop.cancelled() => false } {
        metrics.run_upkeep();
    }
}

/// First SIGINT/SIGTERM: stop intake and drain. Second: exit at once.
async fn stop_on_signal(stop: CancellationToken) {
    use tokio::signal::unix::{signal, SignalKind};
    let (Ok(mut term), Ok(mut int)) = (signal(SignalKind::terminate()), signal(SignalKind::interrupt()))
    else {
        tracing::error!("cannot install signal handlers");
        return;
    };
    tokio::select! { _ = term.recv() => {}, _ = int.recv() => {} }
    tracing::info!("stopping: draining in-flight tasks (signal again to exit at once)");
    stop.cancel();
    tokio::select! { _ = term.recv() => {}, _ = int.recv() => {} }
    tracing::warn!("second signal: exiting without draining");
    std::process::exit(1);
}
