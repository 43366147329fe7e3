//! A bounded MySQL pool reached only through scoped calls.
//!
//! [`MysqlPool`] wraps `mysql_async::Pool` and hands out a connection only
//! for the duration of a closure: [`MysqlPool::with_conn`] acquires, runs the
//! closure's future and returns the connection to the pool before it returns.
//!
//! # The one decision: scoped access, never a checked-out connection
//!
//! A task that holds a pooled connection across an unrelated await (an
//! outbound HTTP call, a CPU step) keeps it from every other task for that
//! whole time; with a small pool, a few slow upstreams then starve the
//! database side, which is how a gevent worker queue grinds to a halt. A
//! closure that receives `&mut Conn` cannot let the connection escape, so
//! the hold time is exactly the database work.
//!
//! # Backpressure
//!
//! At most `pool_max` connections exist. A caller that finds them all in use
//! waits at most `acquire_timeout_ms`, then gets an error for which
//! [`Error::is_overloaded`] holds: `mysql_async` itself would wait forever.
//! The same deadline bounds opening a new connection, so an unreachable
//! (blackholed) server also surfaces as an acquire timeout. Each scoped
//! operation has its own deadline, `operation_timeout_ms`. A connection whose
//! operation was cut short is never handed out mid-reply: the driver either
//! drops it or reads the rest of the reply off it before reusing it.
//!
//! # Reuse
//!
//! A returned connection stays open for the next caller until it has been
//! idle for `idle_timeout_ms`. By default the driver resets its session state
//! (`COM_RESET_CONNECTION`) on return, so one task's session variables or
//! temporary tables never leak into another's; a service that sets no session
//! state can turn that off with `?reset_connection=false` in the URL and save
//! a round trip and a statement re-prepare per call.
//!
//! # Shutdown
//!
//! [`MysqlPool::disconnect`] closes idle connections and resolves once every
//! checked-out one has come back; later calls fail.
//!
//! # Metrics
//!
//! Connections in use, callers waiting and the pool size are gauges that
//! every pool of the process adds to (a pool takes its size back when its
//! last clone goes); acquire wait time is a histogram; each operation counts
//! once by outcome (ok, error, acquire_timeout).
//!
//! # Example
//!
//! ```no_run
//! use switchyard_io_reactor::mysql_async::prelude::Queryable;
//! use switchyard_io_reactor::{MysqlConfig, MysqlPool};
//!
//! # async fn run() -> switchyard_io_reactor::Result<()> {
//! let pool = MysqlPool::new(&MysqlConfig::new("mysql://root@127.0.0.1:3306/test"))?;
//! let one: Option<u32> = pool.with_conn(|conn| Box::pin(conn.query_first("SELECT 1"))).await?;
//! assert_eq!(one, Some(1));
//! pool.disconnect().await?;
//! # Ok(()) }
//! ```

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use mysql_async::prelude::Queryable;
use mysql_async::{Opts, OptsBuilder, PoolConstraints, PoolOpts};

use crate::config::MysqlConfig;
use crate::error::{Error, Kind, Result, TimeoutPhase};
use crate::telemetry::{GaugeUnit, MysqlMetrics, MysqlOutcome};

/// A bounded MySQL pool. Clones share the pool.
#[derive(Clone)]
pub struct MysqlPool {
    pool: mysql_async::Pool,
    shared: Arc<Shared>,
    acquire_timeout: Duration,
    operation_timeout: Duration,
}

/// Pool occupancy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PoolStatus {
    /// Connections checked out.
    pub in_use: usize,
    /// Callers waiting for one.
    pub waiters: usize,
    /// Most connections.
    pub max: usize,
}

/// Counted here rather than read from the driver's metrics because only we
/// see callers that wait (and give up) before the driver hands anything out.
struct Shared {
    in_use: AtomicUsize,
    waiters: AtomicUsize,
    max: usize,
    metrics: MysqlMetrics,
}

impl Shared {
    fn status(&self) -> PoolStatus {
        PoolStatus {
            in_use: self.in_use.load(Ordering::Relaxed),
            waiters: self.waiters.load(Ordering::Relaxed),
            max: self.max,
        }
    }
}

/// One unit of a counter and of its gauge, given back on drop so a timeout,
/// an error, a cancelled future or a panic all restore the count.
struct Counted<'a> {
    counter: &'a AtomicUsize,
    _gauge: GaugeUnit<'a>,
}

impl<'a> Counted<'a> {
    fn enter(counter: &'a AtomicUsize, gauge: GaugeUnit<'a>) -> Self {
        counter.fetch_add(1, Ordering::Relaxed);
        Counted { counter, _gauge: gauge }
    }
}

impl Drop for Counted<'_> {
    fn drop(&mut self) {
        self.counter.fetch_sub(1, Ordering::Relaxed);
    }
}

impl MysqlPool {
    /// Builds the pool; validates `config`. Opens no connection yet.
    pub fn new(config: &MysqlConfig) -> Result<MysqlPool> {
        config.validate()?;
        // The driver knows only `mysql://`; the config also accepts `mariadb://`.
        let url = match config.url.strip_prefix("mariadb://") {
            Some(rest) => format!("mysql://{rest}"),
            None => config.url.clone(),
        };
        // The parse error would echo parts of the URL, password included.
        let opts = Opts::from_url(&url).map_err(|_| Error::config("mysql.url"))?;
        let constraints =
            PoolConstraints::new(0, config.pool_max).ok_or_else(|| Error::config("mysql.pool_max"))?;
        let idle_timeout = Duration::from_millis(config.idle_timeout_ms);
        // Starting from the URL's pool options keeps the driver's other URL
        // parameters (`reset_connection=false`, `abs_conn_ttl`) working; the
        // pool's bounds and idle TTL are this config's and override the URL's
        // `pool_min`, `pool_max`, `inactive_connection_ttl` and
        // `ttl_check_interval`. A non-zero idle TTL matters: with the
        // driver's default of zero, the pool keeps no more idle connections
        // than its minimum (0 here), so every returned connection would be
        // closed and the next caller would pay a new TCP and authentication
        // handshake.
        let pool_opts: PoolOpts = opts
            .pool_opts()
            .clone()
            .with_constraints(constraints)
            .with_inactive_connection_ttl(idle_timeout)
            .with_ttl_check_interval(idle_timeout.clamp(Duration::from_secs(1), Duration::from_secs(30)));
        let opts = OptsBuilder::from_opts(opts).pool_opts(pool_opts);
        let shared = Arc::new(Shared {
            in_use: AtomicUsize::new(0),
            waiters: AtomicUsize::new(0),
            max: config.pool_max,
            metrics: MysqlMetrics::new(config.pool_max),
        });
        Ok(MysqlPool {
            pool: mysql_async::Pool::new(opts),
            shared,
            acquire_timeout: Duration::from_millis(config.acquire_timeout_ms),
            operation_timeout: Duration::from_millis(config.operation_timeout_ms),
        })
    }

    /// Runs `f` with a pooled connection and returns the connection when
    /// `f`'s future completes.
    ///
    /// Fails with [`Error::is_overloaded`] when no connection frees up within
    /// `acquire_timeout_ms`, with a timeout when `f` runs past
    /// `operation_timeout_ms`, and with [`Error::is_mysql`] when the driver or
    /// the server reports an error. The connection is back in the pool
    /// before this returns, whatever the outcome.
    pub async fn with_conn<T, F>(&self, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: for<'c> FnOnce(
                &'c mut mysql_async::Conn,
            ) -> Pin<
                Box<dyn Future<Output = std::result::Result<T, mysql_async::Error>> + Send + 'c>,
            > + Send,
    {
        let shared = &*self.shared;
        let started = Instant::now();
        let metrics = &shared.metrics;
        let waiting = Counted::enter(&shared.waiters, metrics.waiting());
        let acquired = tokio::time::timeout(self.acquire_timeout, self.pool.get_conn()).await;
        drop(waiting);
        let mut conn = match acquired {
            Ok(Ok(conn)) => conn,
            Ok(Err(e)) => {
                metrics.operation(MysqlOutcome::Error, started.elapsed());
                return Err(mysql_error(e));
            }
            Err(_) => {
                metrics.operation(MysqlOutcome::AcquireTimeout, started.elapsed());
                return Err(Error::timeout(TimeoutPhase::PoolAcquire));
            }
        };
        let held = Counted::enter(&shared.in_use, metrics.holding());
        metrics.acquired(started.elapsed());

        // On a deadline the driver leaves the connection marked as
        // mid-exchange, so the pool discards it instead of reusing it.
        let result = tokio::time::timeout(self.operation_timeout, f(&mut conn)).await;
        drop(conn);
        drop(held);

        let result = match result {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(e)) => Err(mysql_error(e)),
            Err(_) => Err(Error::timeout(TimeoutPhase::Operation)),
        };
        let outcome = if result.is_ok() { MysqlOutcome::Ok } else { MysqlOutcome::Error };
        metrics.operation(outcome, started.elapsed());
        result
    }

    /// Executes one statement with `params`, discarding any result: the
    /// common write, built on [`MysqlPool::with_conn`].
    pub async fn exec_drop(&self, stmt: &str, params: impl Into<mysql_async::Params> + Send) -> Result<()> {
        // Owned, because the closure's future must not borrow the caller.
        let stmt = stmt.to_owned();
        let params = params.into();
        self.with_conn(move |conn| Box::pin(conn.exec_drop(stmt, params))).await
    }

    /// Current occupancy.
    pub fn status(&self) -> PoolStatus {
        self.shared.status()
    }

    /// Closes every connection. Resolves once connections still checked out
    /// (by clones of this pool) have been returned, or fails with a timeout
    /// after `operation_timeout_ms`, the longest a scoped call may hold one.
    pub async fn disconnect(self) -> Result<()> {
        match tokio::time::timeout(self.operation_timeout, self.pool.disconnect()).await {
            Ok(done) => done.map_err(mysql_error),
            Err(_) => Err(Error::timeout(TimeoutPhase::Operation)),
        }
    }
}

/// Keeps the driver's error as the source (server code and message help),
/// except a URL error, which may quote the URL.
fn mysql_error(e: mysql_async::Error) -> Error {
    match e {
        mysql_async::Error::Url(_) => Error::new(Kind::Mysql),
        e => Error::new(Kind::Mysql).with(e),
    }
}

impl std::fmt::Debug for MysqlPool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MysqlPool").field("status", &self.status()).finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests;
