//! The admission loop: reads the source only while in-flight slots are free.

use std::sync::Arc;
use std::time::Duration;

use switchyard_io_reactor::StallWatchdog;
use tokio::runtime::Handle;
use tokio::sync::{mpsc, Semaphore};

use super::{run_task, workers::WorkerJob, RunShared, TaskFn};
use crate::context::{CpuPlacement, IoClients, TaskContext};
use crate::source::Source;

/// Pause after a failed source read, so a broken source is retried, not spun on.
pub(crate) const SOURCE_ERROR_BACKOFF: Duration = Duration::from_millis(500);

/// Where admitted tasks go.
pub(crate) enum Dispatch<T> {
    /// Spawned on a reactor (`hybrid`, `reactor-only`).
    Spawn { handle: Handle, placement: CpuPlacement, io: IoClients, watchdog: Option<StallWatchdog> },
    /// Handed to one-task-at-a-time workers (`threads`).
    Workers(mpsc::Sender<WorkerJob<T>>),
}

/// Spawns the admission loop on `handle`.
pub(crate) fn spawn_admission<S: Source>(
    handle: &Handle,
    mut source: S,
    task: TaskFn<S::Item>,
    dispatch: Dispatch<S::Item>,
    max_in_flight: usize,
    shared: Arc<RunShared>,
) {
    handle.spawn(async move {
        let slots = Arc::new(Semaphore::new(max_in_flight));
        loop {
            // Wait for a free slot before reading: a full engine does not pull.
            let first = tokio::select! {
                permit = slots.clone().acquire_owned() => permit.expect("slots never close"),
                _ = shared.stop_intake.cancelled() => break,
            };
            let free = slots.available_permits() + 1;
            let batch = tokio::select! {
                batch = source.next_batch(free) => batch,
                _ = shared.stop_intake.cancelled() => break,
            };
            let deliveries = match batch {
                Ok(Some(deliveries)) => deliveries,
                Ok(None) => break,
                Err(e) => {
                    shared.source_error();
                    tracing::warn!(error = %e, "reading the source failed; retrying");
                    drop(first);
                    tokio::time::sleep(SOURCE_ERROR_BACKOFF).await;
                    continue;
                }
            };
            let mut first = Some(first);
            for delivery in deliveries {
                // Only this loop takes slots, so the ones counted above are still free.
                let permit = match first.take() {
                    Some(p) => p,
                    None => slots.clone().try_acquire_owned().expect("source returned more than asked"),
                };
                let id = shared.task_admitted(&delivery.label);
                match &dispatch {
                    Dispatch::Spawn { handle, placement, io, watchdog } => {
                        let (placement, io, watchdog) = (placement.clone(), io.clone(), watchdog.clone());
                        let make_cx = move |scope| TaskContext::new(placement, io, watchdog, scope);
                        handle.spawn(run_task(id, delivery, permit, make_cx, task.clone(), shared.clone()));
                    }
                    Dispatch::Workers(tx) => {
                        let job =
                            WorkerJob { id, delivery, permit, task: task.clone(), shared: shared.clone() };
                        if tx.send(job).await.is_err() {
                            tracing::error!("every worker thread has exited; stopping intake");
                            shared.stop_intake.cancel();
                        }
                    }
                }
            }
        }
        shared.close_intake();
    });
}
