//! Stopping on a signal.

use tokio_util::sync::CancellationToken;

use crate::failure::EXIT_WORK_LEFT;

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

/// Holds the shutdown to one deadline: once `stop` is cancelled, a plain
/// thread (so a busy reactor cannot delay it) waits `deadline` and, if the
/// process is still stopping, exits with [`EXIT_WORK_LEFT`]. The phases of
/// a shutdown (drain, abandon, close the stores, stop the pools) each have
/// a bound of their own; this makes their sum one promise an orchestrator's
/// grace period can rely on. What was not settled stays in the streams.
pub(crate) async fn exit_at_deadline(stop: CancellationToken, deadline: std::time::Duration) {
    stop.cancelled().await;
    std::thread::spawn(move || {
        std::thread::sleep(deadline);
        tracing::warn!(
            deadline_ms = deadline.as_millis() as u64,
            "shutdown deadline passed: exiting with work left"
        );
        std::process::exit(i32::from(EXIT_WORK_LEFT));
    });
}
