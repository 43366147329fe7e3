//! Command line. Settings come, lowest first, from built-in defaults, the
//! TOML file (`--config`), `SWITCHYARD_*` environment variables and flags;
//! every flag has an environment twin.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use clap::{Args, Parser, Subcommand};
use switchyard::io_reactor::{MysqlConfig, RedisConfig};
use switchyard::service::ServiceConfig;
use switchyard::ExecutionModel;
use tokio_util::sync::CancellationToken;

/// Exit code for a configuration the binary cannot run with (sysexits' EX_CONFIG).
pub(crate) const EXIT_CONFIG: u8 = 78;

#[derive(Parser, Debug)]
#[command(name = "switchyard", version, about = "A task engine for mixed network-wait and CPU-heavy work")]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run the service: configured pipelines, or the built-in PZ-1 zaps when none are configured.
    Run(RunArgs),
    /// Print the effective configuration (secrets redacted) and check it.
    CheckConfig(RunArgs),
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

/// Settings of `run` and `check-config`. Each overrides the file when given.
#[derive(Args, Debug, Clone, Default)]
pub(crate) struct RunArgs {
    /// TOML configuration file.
    #[arg(long, env = "SWITCHYARD_CONFIG")]
    config: Option<PathBuf>,
    /// Address of /metrics, /healthz and /status (port 0 picks a free port).
    #[arg(long, env = "SWITCHYARD_LISTEN")]
    listen: Option<SocketAddr>,
    /// Execution model: hybrid, reactor-only or threads.
    #[arg(long, env = "SWITCHYARD_MODEL")]
    model: Option<ExecutionModel>,
    /// Reactor worker threads (hybrid).
    #[arg(long, env = "SWITCHYARD_REACTOR_THREADS")]
    reactor_threads: Option<usize>,
    /// CPU pool threads (0: one per core).
    #[arg(long, env = "SWITCHYARD_CPU_THREADS")]
    cpu_threads: Option<usize>,
    /// Most CPU jobs queued or running (0: four per CPU thread).
    #[arg(long, env = "SWITCHYARD_CPU_QUEUE_CAPACITY")]
    cpu_queue_capacity: Option<usize>,
    /// Most tasks in flight.
    #[arg(long, env = "SWITCHYARD_MAX_IN_FLIGHT")]
    max_in_flight: Option<usize>,
    /// Worker threads of the `threads` model.
    #[arg(long, env = "SWITCHYARD_THREAD_WORKERS")]
    thread_workers: Option<usize>,
    /// Milliseconds in-flight tasks get to finish on shutdown.
    #[arg(long, env = "SWITCHYARD_SHUTDOWN_DEADLINE_MS")]
    shutdown_deadline_ms: Option<u64>,
    /// Redis for dedup state (with --mysql-url; default: embedded stores).
    #[arg(long, env = "SWITCHYARD_REDIS_URL")]
    redis_url: Option<String>,
    /// MySQL for run records (with --redis-url; default: embedded stores).
    #[arg(long, env = "SWITCHYARD_MYSQL_URL")]
    mysql_url: Option<String>,
    /// Stop after this many tasks (default: run until stopped).
    #[arg(long, env = "SWITCHYARD_TASKS")]
    pub(crate) tasks: Option<u64>,
}

impl RunArgs {
    /// Defaults < file < environment < flags (clap already put flags over
    /// their environment twins).
    pub(crate) fn effective_config(&self) -> Result<ServiceConfig, Failure> {
        let mut config = match &self.config {
            Some(path) => ServiceConfig::load(path).map_err(|e| Failure::Config(e.into()))?,
            None => ServiceConfig::default(),
        };
        let engine = &mut config.engine;
        if let Some(v) = self.listen {
            config.listen = v;
        }
        if let Some(v) = self.model {
            engine.model = v;
        }
        if let Some(v) = self.reactor_threads {
            engine.reactor_threads = v;
        }
        if let Some(v) = self.cpu_threads {
            engine.cpu.threads = v;
        }
        if let Some(v) = self.cpu_queue_capacity {
            engine.cpu.queue_capacity = v;
        }
        if let Some(v) = self.max_in_flight {
            engine.max_in_flight = v;
        }
        if let Some(v) = self.thread_workers {
            engine.thread_workers = v;
        }
        if let Some(v) = self.shutdown_deadline_ms {
            engine.shutdown_deadline_ms = v;
        }
        if let Some(url) = &self.redis_url {
            engine.redis = Some(RedisConfig {
                url: url.clone(),
                ..engine.redis.clone().unwrap_or_else(|| RedisConfig::new(""))
            });
        }
        if let Some(url) = &self.mysql_url {
            engine.mysql = Some(MysqlConfig {
                url: url.clone(),
                ..engine.mysql.clone().unwrap_or_else(|| MysqlConfig::new(""))
            });
        }
        if engine.redis.is_some() != engine.mysql.is_some() {
            let missing = if engine.redis.is_none() { "engine.redis" } else { "engine.mysql" };
            return Err(Failure::Config(anyhow::anyhow!(
                "{missing}: Redis (dedup state) and MySQL (run records) go together; set both or neither"
            )));
        }
        config.validate().map_err(|e| Failure::Config(e.into()))?;
        Ok(config)
    }
}

pub(crate) fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging();
    let command = cli.command.unwrap_or(Command::Run(RunArgs::default()));
    let result = match command {
        Command::Run(args) => crate::run::run(args),
        Command::CheckConfig(args) => check_config(args),
        Command::Bench(args) => crate::bench::bench(args),
        Command::Upstream(args) => upstream(args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(Failure::Config(e)) => {
            eprintln!("switchyard: configuration: {e:#}");
            ExitCode::from(EXIT_CONFIG)
        }
        Err(Failure::Runtime(e)) => {
            eprintln!("switchyard: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Why the binary stopped: bad configuration (exit 78) or a runtime failure (1).
pub(crate) enum Failure {
    Config(anyhow::Error),
    Runtime(anyhow::Error),
}

fn init_logging() {
    use std::io::IsTerminal;
    let filter = tracing_subscriber::EnvFilter::try_from_env("SWITCHYARD_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    // Machines read the logs when stdout is not a terminal: give them JSON.
    if std::io::stdout().is_terminal() {
        builder.init();
    } else {
        builder.json().init();
    }
}

fn check_config(args: RunArgs) -> Result<(), Failure> {
    let config = args.effective_config()?;
    print!("{}", config.redacted_toml());
    Ok(())
}

fn upstream(args: UpstreamArgs) -> Result<(), Failure> {
    let upstream = switchyard::pz1::Pz1Upstream::start(args.listen)
        .with_context(|| format!("serving the upstream on {}", args.listen))
        .map_err(Failure::Runtime)?;
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

/// First SIGINT/SIGTERM: cancel `stop` (drain). Second: exit at once.
pub(crate) async fn stop_on_signal(stop: CancellationToken) {
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
