//! What a task sees: [`TaskContext`].
//!
//! The context is how the *same* task code runs under every execution
//! model: `cx.cpu(f)` sends `f` to the CPU pool under `hybrid` and runs it
//! inline under `reactor-only` and `threads`. It also keeps the task's time
//! split (CPU-queue wait and CPU time; the rest is I/O wait) for telemetry.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use switchyard_cpu_pool::CpuPool;
use switchyard_io_reactor::{HttpClient, MysqlPool, RedisClient, StallWatchdog};

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

/// A task's handle on the engine: CPU hand-off and the I/O clients.
#[derive(Clone)]
pub struct TaskContext {
    placement: CpuPlacement,
    io: IoClients,
    watchdog: Option<StallWatchdog>,
    times: Arc<CpuTimes>,
    attempt: u32,
}

impl TaskContext {
    pub(crate) fn new(
        placement: CpuPlacement,
        io: IoClients,
        watchdog: Option<StallWatchdog>,
        times: Arc<CpuTimes>,
        attempt: u32,
    ) -> Self {
        TaskContext { placement, io, watchdog, times, attempt }
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
