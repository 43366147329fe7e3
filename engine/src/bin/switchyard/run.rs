//! `switchyard run`: the service, its endpoints, and a live status line.

use std::io::{IsTerminal, Write};
use std::time::Duration;

use anyhow::Context as _;
use switchyard::service::{run_service, Endpoints, RunLimits};
use switchyard::telemetry::{install_prometheus, PrometheusSetup};
use switchyard::Engine;
use tokio_util::sync::CancellationToken;

use crate::cli::{stop_on_signal, Failure, RunArgs};

pub(crate) fn run(args: RunArgs) -> Result<(), Failure> {
    let config = args.effective_config()?;
    let engine_config = config.resolved_engine().map_err(|e| Failure::Config(e.into()))?;
    // The recorder goes in first: components register their metrics when built.
    let metrics = install_prometheus().map_err(|e| Failure::Runtime(e.into()))?;
    let engine = Engine::builder().config(engine_config).build().map_err(|e| match e.is_config() {
        true => Failure::Config(anyhow::Error::new(e)),
        false => Failure::Runtime(anyhow::Error::new(e)),
    })?;
    let endpoints = Endpoints::new(Some(metrics.clone()));
    let limits = RunLimits { max_tasks: args.tasks };
    let outcome = engine.block_on(async {
        let listener = tokio::net::TcpListener::bind(config.listen)
            .await
            .with_context(|| format!("listening on {} (the `listen` setting)", config.listen))
            .map_err(Failure::Runtime)?;
        let local = listener.local_addr().map_err(|e| Failure::Runtime(e.into()))?;
        tracing::info!(address = %local, model = %engine.config().model, "serving /metrics, /healthz and /status");
        let stop = CancellationToken::new();
        let serving = CancellationToken::new();
        tokio::spawn(endpoints.clone().serve(listener, serving.clone()));
        tokio::spawn(upkeep(metrics, serving.clone()));
        tokio::spawn(stop_on_signal(stop.clone()));
        if std::io::stderr().is_terminal() {
            tokio::spawn(live_status(endpoints.clone(), serving.clone()));
        }
        let report = run_service(&engine, &config, &endpoints, stop, limits)
            .await
            .map_err(|e| if e.is_config() { Failure::Config(e.into()) } else { Failure::Runtime(e.into()) })?;
        serving.cancel();
        engine.shutdown(Duration::from_secs(5)).await;
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
        if !report.unfinished.is_empty() {
            tracing::warn!(unfinished = ?report.unfinished, "tasks not finished by the shutdown deadline");
        }
        Ok(())
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
