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

use super::{RunShared, TimeoutRecord};
use crate::context::{panic_message, CpuTimes, TaskContext, TaskScope};
use crate::source::{unix_ms, Delivery};

/// First retry delay of a timed-out task's item.
const TIMED_OUT_FIRST_RETRY: Duration = Duration::from_secs(1);
/// Longest retry delay of a timed-out task's item.
const TIMED_OUT_MAX_RETRY: Duration = Duration::from_secs(60);

/// How long a timed-out task's item waits before it is delivered again:
/// 1 s after the first attempt, doubling per attempt, at most a minute. A
/// peer slow enough to time a task out is given room to recover rather than
/// a retry at once.
pub fn timed_out_retry_delay(attempt: u32) -> Duration {
    let doublings = attempt.saturating_sub(1).min(16);
    TIMED_OUT_FIRST_RETRY.saturating_mul(1 << doublings).min(TIMED_OUT_MAX_RETRY)
}

/// How a task's future ended.
enum Ended {
    /// It returned (or panicked).
    Ran(std::thread::Result<Result<(), TaskError>>),
    /// Shutdown abandoned it.
    Abandoned,
    /// Its deadline passed; the engine got to it this long after.
    TimedOut(Duration),
}

type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// Why a task failed, and whether its item should come back.
///
/// Any error converts with `?`; by default a failure is final. Use
/// [`TaskError::retry_after`] for a failure worth another attempt.
pub struct TaskError {
    source: BoxError,
    retry_after: Option<Duration>,
    /// The work was not attempted: the retry does not count as an attempt.
    deferred: bool,
}

impl TaskError {
    /// A final failure.
    pub fn fatal(source: impl Into<BoxError>) -> Self {
        TaskError { source: source.into(), retry_after: None, deferred: false }
    }

    /// A failure after which the item is delivered again in `delay`.
    pub fn retry_after(source: impl Into<BoxError>, delay: Duration) -> Self {
        TaskError { source: source.into(), retry_after: Some(delay), deferred: false }
    }

    /// The task could not try (its upstream is unavailable for now, say a
    /// circuit breaker is open): the item comes back in `delay`, and a
    /// source that counts attempts does not count this one.
    pub fn deferred(source: impl Into<BoxError>, delay: Duration) -> Self {
        TaskError { source: source.into(), retry_after: Some(delay), deferred: true }
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
/// settlement, within its deadline, and releases its in-flight slot.
pub(crate) async fn run_task<T: Send + 'static>(
    id: u64,
    delivery: Delivery<T>,
    permit: OwnedSemaphorePermit,
    make_cx: impl FnOnce(TaskScope) -> TaskContext,
    task: TaskFn<T>,
    shared: Arc<RunShared>,
) {
    let Delivery { item, label, attempt, available_at, timeout, settle } = delivery;
    let started = Instant::now();
    let times = Arc::new(CpuTimes::default());
    let timeout = timeout.unwrap_or(shared.task_timeout);
    let deadline = tokio::time::Instant::now() + timeout;
    let scope = TaskScope { times: times.clone(), attempt, deadline, abandon: shared.abort.clone() };
    let cx = make_cx(scope);

    // Dropping the body (abandoned, timed out) cancels it at its await; a CPU
    // job it had on the pool runs on, and its result is dropped with its slot.
    let body = AssertUnwindSafe(task(cx, item)).catch_unwind();
    let timer = tokio::time::sleep_until(deadline);
    tokio::pin!(timer);
    // Checked against the clock before every poll of the body, not only when
    // the timer fires: a task that held its thread in an inline CPU step
    // past its deadline is not polled again, even before the runtime has
    // turned its timer wheel.
    let deadline_passed = std::future::poll_fn(|cx| match tokio::time::Instant::now() >= deadline {
        true => std::task::Poll::Ready(()),
        false => timer.as_mut().poll(cx),
    });
    let ended = tokio::select! {
        biased;
        _ = deadline_passed => Ended::TimedOut(deadline.elapsed()),
        result = body => Ended::Ran(result),
        _ = shared.abort.cancelled() => Ended::Abandoned,
    };
    let run = started.elapsed();

    let mut deferred = false;
    let (outcome, failure, retry_delay) = match ended {
        Ended::Abandoned => {
            (TaskOutcome::Abandoned, Some("abandoned at shutdown deadline".to_string()), None)
        }
        Ended::TimedOut(overrun) => {
            let record = TimeoutRecord {
                label: label.clone(),
                timeout,
                deadline_unix_ms: unix_ms().saturating_sub(u64::try_from(overrun.as_millis()).unwrap_or(0)),
                overrun,
                attempt,
            };
            shared.timed_out(record);
            let reason = format!("timed out after {timeout:?} (cancelled {overrun:?} past its deadline)");
            (TaskOutcome::TimedOut, Some(reason), Some(timed_out_retry_delay(attempt)))
        }
        Ended::Ran(Ok(Ok(()))) => (TaskOutcome::Ok, None, None),
        Ended::Ran(Ok(Err(e))) => match e.retry_after {
            Some(delay) => {
                deferred = e.deferred;
                (TaskOutcome::Retried, Some(e.to_string()), Some(delay))
            }
            None => (TaskOutcome::Failed, Some(e.to_string()), None),
        },
        Ended::Ran(Err(panic)) => {
            (TaskOutcome::Panicked, Some(panic_message(&*panic).replace("cpu job", "task")), None)
        }
    };
    let settled = match (outcome, retry_delay, &failure) {
        // An abandoned item is deliberately left unsettled: a durable source delivers it again.
        (TaskOutcome::Abandoned, _, _) => Ok(()),
        (_, Some(delay), _) if deferred => settle.defer(delay).await,
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
        (Some(reason), TaskOutcome::TimedOut) => {
            tracing::warn!(task = %label, attempt, %reason, "task timed out")
        }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_timed_out_item_waits_longer_each_attempt_up_to_a_minute() {
        let secs = |attempt| timed_out_retry_delay(attempt).as_secs();
        assert_eq!([secs(0), secs(1), secs(2), secs(3), secs(6)], [1, 1, 2, 4, 32]);
        assert_eq!(secs(7), 60);
        assert_eq!(secs(u32::MAX), 60);
    }
}
