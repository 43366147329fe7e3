//! Redis through one multiplexed, self-healing connection.
//!
//! [`RedisClient`] wraps redis's `ConnectionManager`: one TCP connection
//! shared by every task (commands are pipelined over it), replaced in the
//! background when it drops. Clones share it.
//!
//! # The one decision: explicit timeouts and one retry of idempotent commands
//!
//! Two driver defaults break a task engine. The response timeout of 500 ms
//! fails any blocking read longer than that (`XREADGROUP BLOCK 2000`,
//! `BLPOP`), so it is set from `response_timeout_ms` (30 s by default).
//! And after the connection drops (server restart, `CLIENT KILL`, an idle
//! cut by a proxy) the next command fails even though a reconnect is
//! already under way. [`RedisClient::query`] therefore retries a command
//! once when its error says the connection was lost; the caller promises
//! the command is idempotent (`GET`, `SET`, `XACK`). A command that must not
//! run twice (`INCR`, `XADD`, `BLPOP`) goes through
//! [`RedisClient::query_once`], which may fail once after a drop.
//!
//! # Backpressure
//!
//! None here: commands share one connection and queue in the driver. The
//! engine's admission limit bounds how many are in flight.
//!
//! # Shutdown
//!
//! The connection closes when the last clone is dropped.
//!
//! # Metrics
//!
//! Each call counts once by outcome (ok, retried = succeeded on the retry,
//! error) and records its duration, retry included.
//!
//! # Example
//!
//! ```no_run
//! use switchyard_io_reactor::{redis, RedisClient, RedisConfig};
//!
//! # async fn run() -> switchyard_io_reactor::Result<()> {
//! let client = RedisClient::connect(&RedisConfig::new("redis://127.0.0.1:6379/")).await?;
//! let () = client.query(redis::cmd("SET").arg("greeting").arg("hello")).await?;
//! let value: Option<String> = client.query(redis::cmd("GET").arg("greeting")).await?;
//! assert_eq!(value.as_deref(), Some("hello"));
//! # Ok(()) }
//! ```

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::RedisError;

use crate::config::RedisConfig;
use crate::error::{Error, Kind, Result, TimeoutPhase};
use crate::telemetry::{RedisMetrics, RedisOutcome};

mod server_counters;
pub use server_counters::RedisServerCounters;

/// Reconnect attempts after a drop (and at connect) before commands fail:
/// few, so an absent server shows up as errors in well under a second
/// rather than as a long stall.
const RECONNECT_RETRIES: usize = 2;
/// Longest pause between reconnect attempts.
const RECONNECT_MAX_DELAY: Duration = Duration::from_millis(500);

/// Redis through a `ConnectionManager`. Clones share the connection.
#[derive(Clone)]
pub struct RedisClient {
    manager: ConnectionManager,
    /// Our own deadline around each attempt, beyond the driver's response
    /// timeout: it also covers waiting for a reconnect, which the driver's
    /// timeout does not.
    attempt_deadline: Duration,
    metrics: Arc<RedisMetrics>,
}

impl RedisClient {
    /// Connects; validates `config`. Fails within `connect_timeout_ms`
    /// when the server cannot be reached.
    pub async fn connect(config: &RedisConfig) -> Result<RedisClient> {
        config.validate()?;
        // The parse error would echo parts of the URL, password included.
        let client = redis::Client::open(config.url.as_str()).map_err(|_| Error::config("redis.url"))?;
        let connect_timeout = Duration::from_millis(config.connect_timeout_ms);
        let response_timeout = Duration::from_millis(config.response_timeout_ms);
        let manager_config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(connect_timeout))
            .set_response_timeout(Some(response_timeout))
            .set_number_of_retries(RECONNECT_RETRIES)
            .set_max_delay(RECONNECT_MAX_DELAY);
        // The driver retries the first connect too; the outer deadline keeps
        // the whole of it within the connect timeout.
        let connecting = ConnectionManager::new_with_config(client, manager_config);
        let manager = match tokio::time::timeout(connect_timeout, connecting).await {
            Ok(Ok(manager)) => manager,
            Ok(Err(e)) if e.is_timeout() => return Err(Error::timeout(TimeoutPhase::Connect).with(e)),
            Ok(Err(e)) => return Err(Error::new(Kind::Redis).with(e)),
            Err(_) => return Err(Error::timeout(TimeoutPhase::Connect)),
        };
        Ok(RedisClient {
            manager,
            attempt_deadline: connect_timeout + response_timeout,
            metrics: Arc::new(RedisMetrics::new()),
        })
    }

    /// Runs an idempotent command, retried once after a dropped connection.
    pub async fn query<T: redis::FromRedisValue>(&self, cmd: &redis::Cmd) -> Result<T> {
        self.run(true, |mut conn| async move { cmd.query_async(&mut conn).await }).await
    }

    /// Runs a command that must not be repeated (no retry). The first
    /// command after the connection dropped fails with [`Error::is_redis`];
    /// the one after that runs on the new connection.
    pub async fn query_once<T: redis::FromRedisValue>(&self, cmd: &redis::Cmd) -> Result<T> {
        self.run(false, |mut conn| async move { cmd.query_async(&mut conn).await }).await
    }

    /// Runs a pipeline (or a `MULTI`/`EXEC` transaction when `pipe.atomic()`
    /// was called), retried once after a dropped connection only if the
    /// caller says every command in it is `idempotent`.
    pub async fn query_pipeline<T: redis::FromRedisValue>(
        &self,
        pipe: &redis::Pipeline,
        idempotent: bool,
    ) -> Result<T> {
        self.run(idempotent, |mut conn| async move { pipe.query_async(&mut conn).await }).await
    }

    /// Runs a Lua script (`EVALSHA`, loading the script when the server does
    /// not have it yet), retried once after a dropped connection only if
    /// the caller says the script is `idempotent`.
    pub async fn invoke_script<T: redis::FromRedisValue>(
        &self,
        invocation: &redis::ScriptInvocation<'_>,
        idempotent: bool,
    ) -> Result<T> {
        self.run(idempotent, |mut conn| async move { invocation.invoke_async(&mut conn).await }).await
    }

    /// The server's own counters: commands executed per name and CPU used
    /// (two `INFO` reads; subtract two readings with
    /// [`RedisServerCounters::until`]).
    pub async fn server_counters(&self) -> Result<RedisServerCounters> {
        let commandstats: String = self.query(redis::cmd("INFO").arg("commandstats")).await?;
        let cpu: String = self.query(redis::cmd("INFO").arg("cpu")).await?;
        Ok(RedisServerCounters::parse(&commandstats, &cpu))
    }

    /// The underlying connection manager, for what the methods above do not
    /// cover (e.g. streaming replies). Calls through it get the configured
    /// timeouts and reconnects, but no retry, deadline or metrics from here.
    pub fn manager(&self) -> ConnectionManager {
        self.manager.clone()
    }

    async fn run<T, F, Fut>(&self, retry: bool, mut attempt: F) -> Result<T>
    where
        F: FnMut(ConnectionManager) -> Fut,
        Fut: Future<Output = redis::RedisResult<T>>,
    {
        let started = Instant::now();
        let first = self.attempt(&mut attempt).await;
        let (result, outcome) = match first {
            Err(Attempt::Redis(e)) if retry && connection_lost(&e) => {
                tracing::debug!(error = %e, "redis connection lost; retrying once");
                match self.attempt(&mut attempt).await {
                    Ok(value) => (Ok(value), RedisOutcome::Retried),
                    Err(e) => (Err(e.into_error()), RedisOutcome::Error),
                }
            }
            Ok(value) => (Ok(value), RedisOutcome::Ok),
            Err(e) => (Err(e.into_error()), RedisOutcome::Error),
        };
        self.metrics.command(outcome, started.elapsed());
        result
    }

    async fn attempt<T, F, Fut>(&self, attempt: &mut F) -> std::result::Result<T, Attempt>
    where
        F: FnMut(ConnectionManager) -> Fut,
        Fut: Future<Output = redis::RedisResult<T>>,
    {
        match tokio::time::timeout(self.attempt_deadline, attempt(self.manager.clone())).await {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(e)) => Err(Attempt::Redis(e)),
            Err(_) => Err(Attempt::Deadline),
        }
    }
}

impl std::fmt::Debug for RedisClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisClient")
            .field("attempt_deadline", &self.attempt_deadline)
            .finish_non_exhaustive()
    }
}

/// How one attempt failed, before it becomes an [`Error`].
enum Attempt {
    Redis(RedisError),
    Deadline,
}

impl Attempt {
    fn into_error(self) -> Error {
        match self {
            Attempt::Redis(e) if e.is_timeout() => Error::timeout(TimeoutPhase::Operation).with(e),
            Attempt::Redis(e) => Error::new(Kind::Redis).with(e),
            Attempt::Deadline => Error::timeout(TimeoutPhase::Operation),
        }
    }
}

/// The connection is gone (the manager is already reconnecting), so the
/// command may not have run and running it again is the remedy. A timed-out
/// command is not retried: the connection may be fine and the command may
/// have run, and a retry would double the wait.
fn connection_lost(e: &RedisError) -> bool {
    !e.is_timeout() && (e.is_connection_dropped() || e.is_unrecoverable_error())
}

#[cfg(test)]
mod tests;
