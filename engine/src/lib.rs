//! Switchyard: a task engine for work that mixes long network waits with
//! CPU-heavy processing.
//!
//! Every wait runs on a tokio reactor, every CPU step on a dedicated rayon
//! pool, and bounded hand-off between them turns overload into backpressure
//! instead of latency or memory growth: a CPU burst in one task never
//! delays another task's I/O.
//!
//! ```no_run
//! use std::time::Duration;
//! use switchyard::{Engine, MemorySource, TaskContext, TaskError};
//!
//! let engine = Engine::builder().max_in_flight(256).build()?;
//! let (producer, source) = MemorySource::bounded(1024);
//! engine.block_on(async {
//!     let running = engine
//!         .start(source, |cx: TaskContext, url: String| async move {
//!             let body = cx.http().get(&url).await?.body; // waits on the reactor
//!             let words = cx.cpu(move || body.split(|b| *b == b' ').count()).await?; // runs on the pool
//!             println!("{url}: {words} words");
//!             Ok::<_, TaskError>(())
//!         })
//!         .await?;
//!     producer.send("http://127.0.0.1:8080/".to_string(), "page-1").await.ok();
//!     drop(producer);
//!     let report = running.finished().await;
//!     println!("{} ok", report.stats.ok);
//!     engine.shutdown(Duration::from_secs(5)).await;
//!     Ok::<_, switchyard::Error>(())
//! })??;
//! # Ok::<_, switchyard::Error>(())
//! ```
//!
//! # Deadlines and overload
//!
//! Every task runs under a deadline: its start plus
//! [`EngineConfig::task_timeout_ms`] (60 s by default, at most an hour), or
//! its item's own timeout ([`Delivery::with_timeout`],
//! [`MemoryProducer::send_with_timeout`], [`source::WithTimeouts`]). The
//! task sees it ([`TaskContext::deadline`], [`TaskContext::remaining`],
//! [`TaskContext::cancelled`]); the engine drops the task at its first await
//! past it, settles it as timed out (its item is nacked with a growing
//! delay, so a durable source delivers it again), counts it
//! (`switchyard_tasks_total{outcome="timed_out"}`) and keeps the last ones
//! ([`Running::recent_timeouts`]). A CPU step already running cannot be
//! interrupted: it runs to its end, its result is dropped and its CPU slot
//! returned.
//!
//! A CPU step waits at most `cpu.slot_wait_ms` (5 s by default) for a slot
//! on the pool; past it the step fails, unrun, with an [`Error`] for which
//! [`Error::is_overloaded`] is true.
//!
//! The same task code runs under three [`ExecutionModel`]s: `hybrid` (the
//! product), `reactor-only` (gevent's shape) and `threads` (prefork's shape),
//! which is how the benchmarks compare them.
//!
//! This crate is the engine alone: it never installs a metrics recorder, a
//! tracing subscriber or a global runtime, and it has no command line. The
//! `prometheus` feature (off by default) adds
//! [`telemetry::prometheus`], which puts Switchyard's histogram buckets and
//! help texts on a host's own Prometheus exporter.

mod config;
mod context;
mod engine;
mod error;
mod io;
mod model;
mod run;
pub mod source;
pub mod telemetry;

pub use config::{
    valid_task_timeout_ms, EngineConfig, DEFAULT_MAX_IN_FLIGHT, DEFAULT_REACTOR_THREADS,
    DEFAULT_SHUTDOWN_DEADLINE_MS, DEFAULT_TASK_TIMEOUT_MS, DEFAULT_THREAD_WORKERS, MAX_IN_FLIGHT_LIMIT,
    MAX_TASK_TIMEOUT_MS,
};
pub use context::TaskContext;
pub use engine::{Engine, EngineBuilder};
pub use error::Error;
pub use model::{ExecutionModel, ModelSpec, ThreadKnob};
pub use run::{
    timed_out_retry_delay, FailureRecord, RunReport, RunStats, Running, TaskError, TimeoutRecord,
    RECENT_TIMEOUTS,
};
pub use source::{Delivery, MemoryProducer, MemorySource, Settle, Source};

pub use switchyard_cpu_pool as cpu_pool;
pub use switchyard_io_reactor as io_reactor;
pub use switchyard_protocol as protocol;
