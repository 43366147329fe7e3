//! A dedicated rayon pool behind bounded admission: submit a CPU job from
//! async code, get a future.
//!
//! Switchyard keeps every network wait on the tokio reactor and every
//! CPU-heavy step here, on threads of its own, so a long computation never
//! delays another task's I/O. The hand-off between the two is bounded: at
//! most `queue_capacity` jobs are queued or running, and a producer that finds
//! the pool full waits asynchronously for a slot, which costs the reactor
//! nothing and slows producers to the pool's pace instead of growing a queue.
//!
//! - [`CpuPool::submit`] waits for a slot, runs the closure on the pool and
//!   resolves to its value; [`CpuPool::try_submit`] never waits and hands the
//!   closure back when the pool is full or shut down.
//! - The wait for a slot is bounded by `slot_wait_ms` (5 s by default): a
//!   producer still waiting then gets an error for which
//!   [`Error::is_overloaded`] is true, its closure never runs, and no slot is
//!   held on its behalf. A pool that stays saturated is reported as such
//!   instead of parking its producers without bound.
//! - A panic in a job comes back as an [`Error`] (`is_panicked()`), never
//!   aborts the process, and leaves the pool serving.
//! - Dropping a [`Job`] before it starts cancels it; it never runs.
//! - [`CpuPool::shutdown`] stops admission and drains, bounded by a deadline.
//! - An idle thread sleeps until a job comes, and a job wakes at most one
//!   thread; while recent jobs ran within `spin_wait_us`, a thread that ran
//!   out of work watches the queue that long before it sleeps. Jobs may use
//!   rayon inside (`join`, parallel iterators, `spawn`); the work they split
//!   off is shared with the other threads only as those look for work
//!   between jobs.
//! - A producer whose job starts at once, in a pool whose recent jobs came
//!   back quickly, spins for its result for up to `spin_wait_us` (20 µs by
//!   default) before it parks, since waking a parked reactor costs more than
//!   such a job. A pool of long jobs stops spinning after its first job.
//!
//! The pool emits the `switchyard_cpu_*` metrics of the catalogue in
//! `switchyard-protocol` through the `metrics` facade; it never installs a
//! recorder, and resolves its metric handles when it is built.
//!
//! # Example
//!
//! ```
//! use switchyard_cpu_pool::{CpuPool, CpuPoolConfig};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), switchyard_cpu_pool::Error> {
//! let pool = CpuPool::new(&CpuPoolConfig { threads: 2, queue_capacity: 8, ..CpuPoolConfig::default() })?;
//! let sum = pool.submit(|| (1..=1_000u64).sum::<u64>()).await?;
//! assert_eq!(sum, 500_500);
//!
//! let report = pool.shutdown(std::time::Duration::from_secs(5)).await;
//! assert!(report.finished_in_time);
//! assert!(pool.submit(|| ()).await.unwrap_err().is_closed());
//! # Ok(())
//! # }
//! ```

mod config;
mod dispatch;
mod error;
mod job;
mod pool;
mod shutdown;
mod slot;
mod stats;
mod telemetry;

pub use config::{
    CpuPoolConfig, DEFAULT_CPU_THREADS, DEFAULT_QUEUE_CAPACITY, DEFAULT_SLOT_WAIT_MS, DEFAULT_SPIN_WAIT_US,
    MAX_CPU_THREADS, MAX_QUEUE_CAPACITY, MAX_SLOT_WAIT_MS, MAX_SPIN_WAIT_US, QUEUE_SLOTS_PER_THREAD,
};
pub use error::{Error, TrySubmitError};
pub use job::{Job, JobTimes, TimedJob};
pub use pool::CpuPool;
pub use shutdown::ShutdownReport;
pub use stats::PoolStats;
