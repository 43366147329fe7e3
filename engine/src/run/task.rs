//! One task from admission to settlement.

use std::fmt;
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::FutureExt;
use switchyard_protocol::{TaskOutcome, TaskTimes};
use tokio::sync::OwnedSemaphorePermit;

use super::RunShared;
use crate::context::{panic_message, CpuTimes, TaskContext};
use crate::source::Delivery;

type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// Why a task failed, and whether its item should come back.
///
/// Any error converts with `?`; by default a failure is final. Use
/// [`TaskError::retry_after`] for a failure worth another attempt.
pub struct TaskError {
    source: BoxError,
    retry_after: Option<Duration>,
}

impl TaskError {
    /// A final failure.
    pub fn fatal(source: impl Into<BoxError>) -> Self {
        TaskError { source: source.into(), retry_after: None }
    }

    /// A failure after which the item is delivered again in `delay`.
    pub fn retry_after(source: impl Into<BoxError>, delay: Duration) -> Self {
        TaskError { source: source.into(), retry_after: Some(delay) }
    }

    /// The requested retry delay, if any.
    pub fn retry_delay(&self) -> Option<Duration> {
        self.retry_after
    }
}

impl<E: std::error::Error + Send + Sync + 'static> From<E> for TaskError {
    fn from(e: E) -> Self {
        TaskError::fatal(e)
    }
}

impl fmt::Display for TaskError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.source, f)
    }
}

impl fmt::Debug for TaskError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TaskError")
            .field("source", &self.source)
            .field("retry_after", &self.retry_after)
            .finish()
    }
}

/// The user's task function, type-erased so every model can call it.
pub(crate) type TaskFn<T> = Arc<
    dyn Fn(TaskContext, T) -> Pin<Box<dyn Future<Output = Result<(), TaskError>> + Send + 'static>>
        + Send
        + Sync,
>;

/// Runs one admitted delivery (see [`RunShared::task_admitted`]) to
/// settlement and releases its in-flight slot.
pub(crate) async fn run_task<T: Send + 'static>(
    id: u64,
    delivery: Delivery<T>,
    permit: OwnedSemaphorePermit,
    make_cx: impl FnOnce(Arc<CpuTimes>, u32) -> TaskContext,
    task: TaskFn<T>,
    shared: Arc<RunShared>,
) {
    let Delivery { item, label, attempt, available_at, settle } = delivery;
    let started = Instant::now();
    let times = Arc::new(CpuTimes::default());
    let cx = make_cx(times.clone(), attempt);

    let body = AssertUnwindSafe(task(cx, item)).catch_unwind();
    let result = tokio::select! {
        biased;
        result = body => Some(result),
        _ = shared.abort.cancelled() => None,
    };
    let run = started.elapsed();

    let (outcome, failure, retry_delay) = match result {
        None => (TaskOutcome::Abandoned, Some("abandoned at shutdown deadline".to_string()), None),
        Some(Ok(Ok(()))) => (TaskOutcome::Ok, None, None),
        Some(Ok(Err(e))) => match e.retry_after {
            Some(delay) => (TaskOutcome::Retried, Some(e.to_string()), Some(delay)),
            None => (TaskOutcome::Failed, Some(e.to_string()), None),
        },
        Some(Err(panic)) => {
            (TaskOutcome::Panicked, Some(panic_message(&*panic).replace("cpu job", "task")), None)
        }
    };
    let settled = match (outcome, retry_delay, &failure) {
        // An abandoned item is deliberately left unsettled: a durable source delivers it again.
        (TaskOutcome::Abandoned, _, _) => Ok(()),
        (_, Some(delay), _) => settle.nack(delay).await,
        (TaskOutcome::Failed | TaskOutcome::Panicked, _, Some(reason)) => {
            settle.fail(reason, outcome == TaskOutcome::Panicked).await
        }
        _ => settle.ack().await,
    };
    if let Err(e) = settled {
        tracing::warn!(task = %label, error = %e, "settling the item failed");
    }
    match (&failure, outcome) {
        (Some(reason), TaskOutcome::Panicked) => tracing::error!(task = %label, %reason, "task panicked"),
        (Some(reason), TaskOutcome::Failed | TaskOutcome::Retried) => {
            tracing::warn!(task = %label, attempt, %reason, outcome = outcome.as_label(), "task failed")
        }
        _ => {}
    }

    let split =
        TaskTimes::from_parts(started.duration_since(available_at), run, times.queue_wait(), times.run());
    shared.metrics.task_settled(outcome, run, split);
    drop(permit);
    shared.task_settled(id, outcome, failure);
    shared.metrics.in_flight(shared.in_flight());
}
