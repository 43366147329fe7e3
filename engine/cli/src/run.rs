//! `switchyard run`: the service, its endpoints, and a live status line.

use std::io::{IsTerminal, Write};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context as _;
use clap::Args;
use switchyard::Engine;
use switchyard::ExecutionModel;
use switchyard_service::{
    install_prometheus, run_service, Endpoints, PrometheusSetup, RunLimits, ServiceConfig,
};
use tokio_util::sync::CancellationToken;

use crate::engine_args::EngineArgs;
use crate::failure::Failure;
use crate::signals::{exit_at_deadline, stop_on_signal};

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
    #[command(flatten)]
    engine: EngineArgs,
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
        if let Some(v) = self.listen {
            config.listen = v;
        }
        if let Some(v) = self.model {
            config.engine.model = v;
        }
        self.engine.apply(&mut config.engine);
        config.validate().map_err(|e| Failure::Config(e.into()))?;
        Ok(config)
    }
}

pub(crate) fn check_config(args: RunArgs) -> Result<(), Failure> {
    let config = args.effective_config()?;
    print!("{}", config.redacted_toml());
    Ok(())
}

pub(crate) fn run(args: RunArgs) -> Result<(), Failure> {
    let config = args.effective_config()?;
    let mut engine_config = config.resolved_engine().map_err(|e| Failure::Config(e.into()))?;
    // Bound before the engine is built, so the egress policy knows the
    // address (port 0 included) it must never let a pipeline reach.
    let listener = std::net::TcpListener::bind(config.listen)
        .and_then(|l| l.set_nonblocking(true).map(|()| l))
        .with_context(|| format!("listening on {} (the `listen` setting)", config.listen))
        .map_err(Failure::Runtime)?;
    let local = listener.local_addr().map_err(|e| Failure::Runtime(e.into()))?;
    engine_config.http.egress.own_listeners.push(local);
    // The recorder goes in first: components register their metrics when built.
    let metrics = install_prometheus().map_err(Failure::of_service)?;
    let engine = Engine::builder().config(engine_config).build().map_err(|e| match e.is_config() {
        true => Failure::Config(anyhow::Error::new(e)),
        false => Failure::Runtime(anyhow::Error::new(e)),
    })?;
    let endpoints = Endpoints::new(Some(metrics.clone()));
    let limits = RunLimits { max_tasks: args.tasks };
    let outcome = engine.block_on(async {
        let listener = tokio::net::TcpListener::from_std(listener).map_err(|e| Failure::Runtime(e.into()))?;
        tracing::info!(address = %local, model = %engine.model(), "serving /metrics, /healthz and /status");
        let stop = CancellationToken::new();
        let serving = CancellationToken::new();
        tokio::spawn(endpoints.clone().serve(listener, serving.clone()));
        tokio::spawn(upkeep(metrics, serving.clone()));
        tokio::spawn(stop_on_signal(stop.clone()));
        let deadline = Duration::from_millis(engine.config().shutdown_deadline_ms);
        tokio::spawn(exit_at_deadline(stop.clone(), deadline));
        if std::io::stderr().is_terminal() {
            tokio::spawn(live_status(endpoints.clone(), serving.clone()));
        }
        let report =
            run_service(&engine, &config, &endpoints, stop, limits).await.map_err(Failure::of_service)?;
        serving.cancel();
        // The last phase: what the drain left of the deadline's reserve.
        engine.shutdown(Duration::from_secs(2)).await;
        let s = report.stats;
        tracing::info!(
            ok = s.ok,
            failed = s.failed,
            panicked = s.panicked,
            abandoned = s.abandoned,
            peak_in_flight = s.peak_in_flight,
            elapsed_s = report.elapsed.as_secs_f64(),
            "stopped"
        );
        if report.unfinished.is_empty() {
            return Ok(());
        }
        let durable = config.durable_pipelines();
        tracing::warn!(
            unfinished = ?report.unfinished,
            left_in_streams = durable,
            "tasks not finished by the shutdown deadline{}",
            if durable { ": their entries stay in the streams for another process" } else { " were lost" }
        );
        Err(Failure::WorkLeft(report.unfinished.len()))
    });
    outcome.map_err(|e| Failure::Runtime(e.into()))?
}

async fn upkeep(metrics: PrometheusSetup, stop: CancellationToken) {
    let mut every = tokio::time::interval(Duration::from_secs(5));
    while tokio::select! { _ = every.tick() => true, _ = stop.cancelled() => false } {
        metrics.run_upkeep();
    }
}

/// One line, redrawn every second: what an operator at a terminal wants.
async fn live_status(endpoints: Endpoints, stop: CancellationToken) {
    let mut every = tokio::time::interval(Duration::from_secs(1));
    let mut last_settled = 0u64;
    while tokio::select! { _ = every.tick() => true, _ = stop.cancelled() => false } {
        let Some(s) = endpoints.status() else { continue };
        let settled = s.tasks.ok + s.tasks.failed + s.tasks.panicked;
        let queue =
            s.cpu.as_ref().map_or("-".to_string(), |c| format!("{}/{}", c.queued + c.busy, c.queue_capacity));
        let line = format!(
            "\r{:>6} tasks/s  in flight {:>5}  cpu queue {:>7}  latency p99 {:>7.0} ms  errors {:>5}  reactor lag p99 {:>5.1} ms ",
            settled - last_settled,
            s.tasks.in_flight,
            queue,
            s.latency_p99_ms,
            s.tasks.failed + s.tasks.panicked,
            s.reactor.lag_p99_ms
        );
        last_settled = settled;
        let mut err = std::io::stderr().lock();
        let _ = err.write_all(line.as_bytes());
        let _ = err.flush();
    }
    eprintln!();
}
