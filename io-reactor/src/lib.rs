//! Switchyard's I/O side: everything a task waits on.
//!
//! - [`Reactor`]: the tokio runtime the engine's tasks run on, either owned or
//!   attached to a [`tokio::runtime::Handle`] the embedding service already has.
//! - [`HttpClient`]: hyper-util's pooled client with connect and total
//!   timeouts, a response-body cap and a per-host in-flight cap.
//! - [`MysqlPool`]: mysql_async behind an acquire timeout and a scoped
//!   [`MysqlPool::with_conn`] so a connection is never held across other I/O.
//! - [`RedisClient`]: redis's `ConnectionManager` with explicit timeouts and
//!   one retry of an idempotent command after a dropped connection.
//! - [`StallWatchdog`]: a heartbeat on the reactor, observed from a plain
//!   thread, that measures reactor lag and reports stalls with the stage that
//!   was running.
//!
//! - [`ProcessSample`]: the process's own memory and CPU time, from `/proc`.
//! - `server` (feature `server`, off by default): a small HTTP/1.1 server for
//!   the service's endpoints and loopback test upstreams.
//!
//! This crate never sees the CPU pool: only the engine composes the two.
//!
//! Each component emits the reactor, HTTP, MySQL and Redis metrics of the
//! catalogue in `switchyard-protocol` through the `metrics` facade; the crate
//! never installs a recorder, and each component resolves its metric handles
//! when it is built, so install the recorder before building them.

mod config;
pub mod egress;
mod error;
mod http;
mod mysql;
mod process;
mod redis_client;
mod runtime;
#[cfg(feature = "server")]
pub mod server;
mod telemetry;
mod watchdog;

pub use config::{
    redact_url, redact_url_keeping, AdaptiveConfig, BreakerConfig, EgressConfig, HostConfig, HttpConfig,
    MysqlConfig, ReactorConfig, RedisConfig, WatchdogConfig, DEFAULT_HTTP_CONNECT_TIMEOUT_MS,
    DEFAULT_HTTP_MAX_BODY_BYTES, DEFAULT_HTTP_MAX_IN_FLIGHT_PER_HOST, DEFAULT_HTTP_POOL_IDLE_TIMEOUT_MS,
    DEFAULT_HTTP_POOL_MAX_IDLE_PER_HOST, DEFAULT_HTTP_READ_BUFFER_BYTES, DEFAULT_HTTP_REQUEST_TIMEOUT_MS,
    DEFAULT_MAX_RETRY_AFTER_MS, DEFAULT_MYSQL_ACQUIRE_TIMEOUT_MS, DEFAULT_MYSQL_IDLE_TIMEOUT_MS,
    DEFAULT_MYSQL_OPERATION_TIMEOUT_MS, DEFAULT_MYSQL_POOL_MAX, DEFAULT_REACTOR_THREADS,
    DEFAULT_REDIS_CONNECT_TIMEOUT_MS, DEFAULT_REDIS_RESPONSE_TIMEOUT_MS, DEFAULT_WATCHDOG_INTERVAL_MS,
    DEFAULT_WATCHDOG_STALL_THRESHOLD_MS, MAX_CONFIGURED_HOSTS, MAX_HTTP_READ_BUFFER_BYTES,
    MAX_RATE_PER_SECOND, MIN_HTTP_READ_BUFFER_BYTES,
};
pub use error::{Error, Result};
pub use http::{host_key_of, retry_after, HostStatus, HttpClient, HttpResponse, RateLimit, MAX_STATUS_HOSTS};
pub use mysql::{MysqlPool, PoolStatus};
pub use process::ProcessSample;
pub use redis_client::{RedisClient, RedisServerCounters};
pub use runtime::Reactor;
pub use watchdog::{StageGuard, StallWatchdog, WatchdogStats};

/// The MySQL driver, re-exported so callers of [`MysqlPool::with_conn`] name
/// the same `Conn` and `Queryable` types.
pub use mysql_async;
/// The Redis driver, re-exported for building commands.
pub use redis;
