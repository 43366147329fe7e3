//! What a task sees: [`TaskContext`].
//!
//! The context is how the *same* task code runs under every execution
//! model: `cx.cpu(f)` sends `f` to the CPU pool under `hybrid` and runs it
//! inline under `reactor-only` and `threads`. It also keeps the task's time
//! split (CPU-queue wait and CPU time; the rest is I/O wait) for telemetry.
//!
//! # Deadlines
//!
//! Every task has a deadline: its start plus the engine's `task_timeout_ms`,
//! or its item's own timeout ([`Delivery::with_timeout`](crate::Delivery::with_timeout)).
//! The engine drops the task's future at its first await past the deadline;
//! [`TaskContext::deadline`] and [`TaskContext::cancelled`] let the task see
//! it coming (to pass a shorter timeout to a peer, or to stop a loop
//! cleanly). A CPU step already running on the pool cannot be interrupted:
//! it runs to its end, its result is discarded and its slot returned. A
//! long step that wants to stop early checks [`TaskContext::is_cancelled`]
//! itself (the context is `Clone` and `'static`, so the closure can own one).

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use switchyard_cpu_pool::CpuPool;
use switchyard_io_reactor::{HttpClient, MysqlPool, RedisClient, StallWatchdog};
use tokio_util::sync::CancellationToken;

pub(crate) use crate::io::IoClients;

use crate::error::Error;

/// Where `cx.cpu` runs its closure.
#[derive(Clone)]
pub(crate) enum CpuPlacement {
    Pool(CpuPool),
    Inline,
}

#[derive(Default)]
pub(crate) struct CpuTimes {
    queue_wait_ns: AtomicU64,
    run_ns: AtomicU64,
}

impl CpuTimes {
    fn add(&self, queue_wait: Duration, run: Duration) {
        self.queue_wait_ns.fetch_add(queue_wait.as_nanos() as u64, Ordering::Relaxed);
        self.run_ns.fetch_add(run.as_nanos() as u64, Ordering::Relaxed);
    }
    pub(crate) fn queue_wait(&self) -> Duration {
        Duration::from_nanos(self.queue_wait_ns.load(Ordering::Relaxed))
    }
    pub(crate) fn run(&self) -> Duration {
        Duration::from_nanos(self.run_ns.load(Ordering::Relaxed))
    }
}

/// What the engine tells one task about itself: its attempt, its deadline,
/// what cancels it, and where its CPU time is counted.
pub(crate) struct TaskScope {
    pub(crate) times: Arc<CpuTimes>,
    pub(crate) attempt: u32,
    /// On tokio's clock, so tests on paused time see the same deadline the
    /// engine enforces.
    pub(crate) deadline: tokio::time::Instant,
    /// The run's abandon signal (shutdown past its deadline).
    pub(crate) abandon: CancellationToken,
}

/// A task's handle on the engine: CPU hand-off, the I/O clients, and its
/// deadline.
#[derive(Clone)]
pub struct TaskContext {
    placement: CpuPlacement,
    io: IoClients,
    watchdog: Option<StallWatchdog>,
    times: Arc<CpuTimes>,
    attempt: u32,
    deadline: tokio::time::Instant,
    abandon: CancellationToken,
}

impl TaskContext {
    pub(crate) fn new(
        placement: CpuPlacement,
        io: IoClients,
        watchdog: Option<StallWatchdog>,
        scope: TaskScope,
    ) -> Self {
        let TaskScope { times, attempt, deadline, abandon } = scope;
        TaskContext { placement, io, watchdog, times, attempt, deadline, abandon }
    }

    /// Runs a CPU step and returns its result. Under `hybrid` this waits
    /// (asynchronously) for a CPU queue slot, then runs `f` on the pool;
    /// under the other models it runs `f` right here. A panic in `f` comes
    /// back as an error for which [`Error::is_panicked`] is true.
    pub async fn cpu<F, T>(&self, f: F) -> Result<T, Error>
    where
        F: FnOnce() -> T + Send + 'static,
        T: Send + 'static,
    {
        self.cpu_stage("cpu", f).await
    }

    /// As [`TaskContext::cpu`], naming the step so a reactor stall that it
    /// causes (under the inline models) is logged with its name.
    pub async fn cpu_stage<F, T>(&self, stage: &'static str, f: F) -> Result<T, Error>
    where
        F: FnOnce() -> T + Send + 'static,
        T: Send + 'static,
    {
        match &self.placement {
            CpuPlacement::Pool(pool) => {
                let (value, times) = pool.submit_timed(f).await.map_err(Error::cpu)?;
                self.times.add(times.admission_wait + times.queue_wait, times.run);
                Ok(value)
            }
            CpuPlacement::Inline => {
                let _stage = self.watchdog.as_ref().map(|w| w.stage(stage));
                let started = Instant::now();
                let result = catch_unwind(AssertUnwindSafe(f));
                self.times.add(Duration::ZERO, started.elapsed());
                result.map_err(|panic| Error::panicked(panic_message(&*panic)))
            }
        }
    }

    /// The outbound HTTP client.
    pub fn http(&self) -> &HttpClient {
        &self.io.http
    }

    /// The MySQL pool; an error when the engine was built without MySQL.
    pub fn mysql(&self) -> Result<&MysqlPool, Error> {
        self.io.mysql.as_ref().ok_or_else(|| Error::not_configured("mysql"))
    }

    /// The Redis client; an error when the engine was built without Redis.
    pub fn redis(&self) -> Result<&RedisClient, Error> {
        self.io.redis.as_ref().ok_or_else(|| Error::not_configured("redis"))
    }

    /// Which delivery of the item this is (1 for the first).
    pub fn attempt(&self) -> u32 {
        self.attempt
    }

    /// When the engine cancels this task: its start plus its timeout.
    pub fn deadline(&self) -> Instant {
        self.deadline.into_std()
    }

    /// Time left before the deadline (zero once it has passed): a bound to
    /// hand a peer, so a request gives up before the task is cancelled.
    pub fn remaining(&self) -> Duration {
        self.deadline.saturating_duration_since(tokio::time::Instant::now())
    }

    /// Whether the task is being cancelled: its deadline has passed, or
    /// shutdown is abandoning it. For CPU steps that check now and then.
    pub fn is_cancelled(&self) -> bool {
        self.abandon.is_cancelled() || tokio::time::Instant::now() >= self.deadline
    }

    /// Resolves when the task is cancelled: its deadline passes, or shutdown
    /// abandons it. The engine drops the task at its next await then anyway;
    /// this is for work the task wants to wind down itself (a helper it
    /// spawned, a loop it would rather leave between two steps). Owns what
    /// it needs, so it can be moved into a spawned future.
    pub fn cancelled(&self) -> impl std::future::Future<Output = ()> + Send + 'static {
        let (deadline, abandon) = (self.deadline, self.abandon.clone());
        async move {
            tokio::select! {
                _ = tokio::time::sleep_until(deadline) => {}
                _ = abandon.cancelled() => {}
            }
        }
    }
}

impl std::fmt::Debug for TaskContext {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let cpu = match self.placement {
            CpuPlacement::Pool(_) => "pool",
            CpuPlacement::Inline => "inline",
        };
        f.debug_struct("TaskContext")
            .field("cpu", &cpu)
            .field("attempt", &self.attempt)
            .field("remaining", &self.remaining())
            .field("mysql", &self.io.mysql.is_some())
            .field("redis", &self.io.redis.is_some())
            .finish_non_exhaustive()
    }
}

pub(crate) fn panic_message(panic: &(dyn std::any::Any + Send)) -> String {
    let detail = panic
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "non-string payload".to_string());
    format!("cpu job panicked: {detail}")
}
