//! A running engine: admission, task execution, settlement and shutdown.
//!
//! [`Engine::start`](crate::Engine::start) returns a [`Running`]. The
//! admission loop reads the source only while fewer than `max_in_flight`
//! tasks exist, so a full engine stops pulling and nothing queues without
//! bound. Each task gets a [`TaskContext`](crate::TaskContext); its result
//! settles its item: ack on success, nack with a delay when the task asked
//! for a retry, fail (with the reason) otherwise.
//!
//! # Deadlines
//!
//! Each task runs under a deadline (its item's timeout, else the engine's
//! `task_timeout_ms`, counted from the task's start). Past it the task's
//! future is dropped at its next await, and the task settles as
//! `timed_out`: its item is handed back (nacked) with a delay that doubles
//! per attempt ([`timed_out_retry_delay`]), so a durable source redelivers
//! it and its delivery budget, not this engine, decides when to give up.
//! The run counts timed-out tasks and keeps the most recent ones
//! ([`Running::recent_timeouts`]) with how far past the deadline they were
//! when the engine got to cancel them: a task busy in an inline CPU step
//! (`reactor-only`, `threads`) is only cancelled when the step ends.
//!
//! # Shutdown
//!
//! [`Running::shutdown`] stops intake, lets in-flight tasks finish within a
//! deadline, then abandons the rest without settling them (a durable source
//! delivers them again) and reports which ones they were.

mod admission;
mod task;
mod workers;

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use switchyard_io_reactor::{MysqlPool, PoolStatus};
use switchyard_protocol::TaskOutcome;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::telemetry::EngineMetrics;

pub(crate) use admission::{spawn_admission, Dispatch};
pub(crate) use task::{run_task, TaskFn};
pub use task::{timed_out_retry_delay, TaskError};
pub(crate) use workers::{spawn_workers, WorkersGone};

/// Most recent failures kept for status reports.
const RECENT_FAILURES: usize = 32;
/// Most recent timed-out tasks kept for status reports.
pub const RECENT_TIMEOUTS: usize = 20;

/// A task that passed its deadline, kept for status reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TimeoutRecord {
    /// The item's label.
    pub label: String,
    /// The timeout it ran under (the engine's, or its item's own).
    pub timeout: Duration,
    /// When its deadline was, in milliseconds since the Unix epoch.
    pub deadline_unix_ms: u64,
    /// How long after the deadline the engine got to cancel it: about zero
    /// for a task parked on I/O, the rest of the step for one busy in an
    /// inline CPU step.
    pub overrun: Duration,
    /// Which delivery of the item it was (1 for the first).
    pub attempt: u32,
}

/// A task failure kept for status reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FailureRecord {
    /// The item's label.
    pub label: String,
    /// How the task ended.
    pub outcome: TaskOutcome,
    /// Why (the error's message; never secrets).
    pub reason: String,
}

/// Counters of a run so far.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RunStats {
    /// Tasks admitted so far.
    pub admitted: u64,
    /// Tasks running now.
    pub in_flight: usize,
    /// The most tasks that were running at once.
    pub peak_in_flight: usize,
    /// Settled ok.
    pub ok: u64,
    /// Failed for good.
    pub failed: u64,
    /// Handed back for a retry.
    pub retried: u64,
    /// Panicked.
    pub panicked: u64,
    /// Abandoned at shutdown.
    pub abandoned: u64,
    /// Cancelled at their deadline (and handed back for a retry).
    pub timed_out: u64,
    /// Source reads that failed.
    pub source_errors: u64,
}

/// What a run did, returned when it ends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunReport {
    /// Final counters.
    pub stats: RunStats,
    /// Labels of the tasks that had not finished by the shutdown deadline.
    pub unfinished: Vec<String>,
    /// Whether every admitted task settled before the deadline.
    pub finished_in_time: bool,
    /// From start to the end of the run.
    pub elapsed: Duration,
}

pub(crate) struct RunShared {
    started: Instant,
    admitted: AtomicU64,
    in_flight: AtomicUsize,
    peak_in_flight: AtomicUsize,
    outcomes: [AtomicU64; TaskOutcome::ALL.len()],
    source_errors: AtomicU64,
    intake_closed: AtomicBool,
    next_id: AtomicU64,
    /// Admitted tasks: label and admission time.
    active: Mutex<HashMap<u64, (String, Instant)>>,
    recent_failures: Mutex<VecDeque<FailureRecord>>,
    recent_timeouts: Mutex<VecDeque<TimeoutRecord>>,
    /// The timeout of tasks whose item sets none.
    pub(crate) task_timeout: Duration,
    done: watch::Sender<bool>,
    /// Cancelled to stop reading the source.
    pub(crate) stop_intake: CancellationToken,
    /// Cancelled to abandon tasks still running after the deadline.
    pub(crate) abort: CancellationToken,
    pub(crate) metrics: Arc<EngineMetrics>,
}

impl RunShared {
    pub(crate) fn new(metrics: Arc<EngineMetrics>, task_timeout: Duration) -> Arc<Self> {
        Arc::new(RunShared {
            started: Instant::now(),
            admitted: AtomicU64::new(0),
            in_flight: AtomicUsize::new(0),
            peak_in_flight: AtomicUsize::new(0),
            outcomes: Default::default(),
            source_errors: AtomicU64::new(0),
            intake_closed: AtomicBool::new(false),
            next_id: AtomicU64::new(0),
            active: Mutex::new(HashMap::new()),
            recent_failures: Mutex::new(VecDeque::with_capacity(RECENT_FAILURES)),
            recent_timeouts: Mutex::new(VecDeque::with_capacity(RECENT_TIMEOUTS)),
            task_timeout,
            done: watch::Sender::new(false),
            stop_intake: CancellationToken::new(),
            abort: CancellationToken::new(),
            metrics,
        })
    }

    /// Registers an admitted task; returns its id. Called by the admission
    /// loop before the task is handed on, so the run cannot look finished
    /// while a task is on its way to a reactor or worker.
    pub(crate) fn task_admitted(&self, label: &str) -> u64 {
        self.admitted.fetch_add(1, Ordering::Relaxed);
        let now = self.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
        self.peak_in_flight.fetch_max(now, Ordering::Relaxed);
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        self.active.lock().expect("active tasks lock").insert(id, (label.to_string(), Instant::now()));
        self.metrics.in_flight(now);
        id
    }

    pub(crate) fn task_settled(&self, id: u64, outcome: TaskOutcome, failure: Option<String>) {
        let label = self.active.lock().expect("active tasks lock").remove(&id).map(|(label, _)| label);
        self.outcomes[outcome.index()].fetch_add(1, Ordering::Relaxed);
        if let (Some(reason), Some(label)) = (failure, label) {
            let mut recent = self.recent_failures.lock().expect("failures lock");
            if recent.len() == RECENT_FAILURES {
                recent.pop_front();
            }
            recent.push_back(FailureRecord { label, outcome, reason });
        }
        if self.in_flight.fetch_sub(1, Ordering::SeqCst) == 1 && self.intake_closed.load(Ordering::SeqCst) {
            self.done.send_replace(true);
        }
    }

    pub(crate) fn timed_out(&self, record: TimeoutRecord) {
        let mut recent = self.recent_timeouts.lock().expect("timeouts lock");
        if recent.len() == RECENT_TIMEOUTS {
            recent.pop_front();
        }
        recent.push_back(record);
    }

    pub(crate) fn source_error(&self) {
        self.source_errors.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn close_intake(&self) {
        self.intake_closed.store(true, Ordering::SeqCst);
        if self.in_flight.load(Ordering::SeqCst) == 0 {
            self.done.send_replace(true);
        }
    }

    pub(crate) fn in_flight(&self) -> usize {
        self.in_flight.load(Ordering::SeqCst)
    }

    fn stats(&self) -> RunStats {
        let outcome = |o: TaskOutcome| self.outcomes[o.index()].load(Ordering::Relaxed);
        RunStats {
            admitted: self.admitted.load(Ordering::Relaxed),
            in_flight: self.in_flight(),
            peak_in_flight: self.peak_in_flight.load(Ordering::Relaxed),
            ok: outcome(TaskOutcome::Ok),
            failed: outcome(TaskOutcome::Failed),
            retried: outcome(TaskOutcome::Retried),
            panicked: outcome(TaskOutcome::Panicked),
            abandoned: outcome(TaskOutcome::Abandoned),
            timed_out: outcome(TaskOutcome::TimedOut),
            source_errors: self.source_errors.load(Ordering::Relaxed),
        }
    }

    async fn wait_done(&self) {
        let mut rx = self.done.subscribe();
        // The sender lives in `self`, so wait_for can only end with the value set.
        let _ = rx.wait_for(|done| *done).await;
    }
}

/// A started run. Dropping it does not stop the run; call
/// [`Running::shutdown`] for that.
pub struct Running {
    shared: Arc<RunShared>,
    mysql: Option<MysqlPool>,
    workers: Option<WorkersGone>,
}

impl Running {
    pub(crate) fn new(
        shared: Arc<RunShared>,
        mysql: Option<MysqlPool>,
        workers: Option<WorkersGone>,
    ) -> Self {
        Running { shared, mysql, workers }
    }

    /// How long the longest-running admitted task has been in flight.
    pub fn oldest_in_flight(&self) -> Option<Duration> {
        let active = self.shared.active.lock().expect("active tasks lock");
        active.values().map(|(_, admitted)| admitted.elapsed()).max()
    }

    /// The MySQL pool's occupancy, when the run has one pool (not under
    /// `threads`, where each worker has its own connection).
    pub fn mysql_status(&self) -> Option<PoolStatus> {
        self.mysql.as_ref().map(MysqlPool::status)
    }

    /// Counters so far.
    pub fn stats(&self) -> RunStats {
        self.shared.stats()
    }

    /// The most recent task failures, oldest first.
    pub fn recent_failures(&self) -> Vec<FailureRecord> {
        self.shared.recent_failures.lock().expect("failures lock").iter().cloned().collect()
    }

    /// The most recent tasks cancelled at their deadline (at most
    /// [`RECENT_TIMEOUTS`]), oldest first.
    pub fn recent_timeouts(&self) -> Vec<TimeoutRecord> {
        self.shared.recent_timeouts.lock().expect("timeouts lock").iter().cloned().collect()
    }

    /// Stops reading the source; tasks already admitted go on.
    pub fn stop_intake(&self) {
        self.shared.stop_intake.cancel();
    }

    /// Waits until the source is finished (or intake stopped) and every
    /// admitted task has settled.
    pub async fn finished(&self) -> RunReport {
        self.shared.wait_done().await;
        self.close_stores().await;
        self.report(Vec::new(), true)
    }

    /// The run's MySQL connections end with the run: closed now rather than
    /// dropped with a runtime (the server would log aborted connections).
    /// Under `threads` each worker closes its own as it finishes, which it
    /// does once intake has stopped. Bounded, so a connection an abandoned
    /// task still holds cannot hold up the report.
    async fn close_stores(&self) {
        let closed = async {
            if let Some(mysql) = self.mysql.clone() {
                let _ = mysql.disconnect().await;
            }
            if let Some(workers) = &self.workers {
                workers.wait().await;
            }
        };
        let _ = tokio::time::timeout(ABANDON_GRACE, closed).await;
    }

    /// Stops intake, waits up to `deadline` for in-flight tasks, then
    /// abandons the rest (their items are not settled) and reports them.
    pub async fn shutdown(&self, deadline: Duration) -> RunReport {
        let until = tokio::time::Instant::now() + deadline;
        self.shared.stop_intake.cancel();
        let in_time = tokio::time::timeout_at(until, self.shared.wait_done()).await.is_ok();
        let mut unfinished = Vec::new();
        if !in_time {
            unfinished = self
                .shared
                .active
                .lock()
                .expect("active tasks lock")
                .values()
                .map(|(l, _)| l.clone())
                .collect();
            unfinished.sort();
            self.shared.abort.cancel();
            // Abandoning is immediate for tasks parked on I/O; a task stuck in
            // a CPU step notices at its next await, so this wait is bounded too.
            let _ = tokio::time::timeout(ABANDON_GRACE, self.shared.wait_done()).await;
        }
        self.close_stores().await;
        self.report(unfinished, in_time)
    }

    fn report(&self, unfinished: Vec<String>, finished_in_time: bool) -> RunReport {
        RunReport {
            stats: self.shared.stats(),
            unfinished,
            finished_in_time,
            elapsed: self.shared.started.elapsed(),
        }
    }
}

impl std::fmt::Debug for Running {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Running").field("stats", &self.stats()).finish_non_exhaustive()
    }
}

/// How long abandoned tasks get to notice before shutdown returns anyway.
const ABANDON_GRACE: Duration = Duration::from_secs(2);

#[cfg(test)]
mod tests;
