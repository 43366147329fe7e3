//! The reactor: the tokio runtime every network wait of Switchyard runs on.
//!
//! A [`Reactor`] is either *owned* ([`Reactor::new`]: Switchyard builds a
//! multi-thread runtime and shuts it down) or *attached*
//! ([`Reactor::attach`]: the embedding service already runs tokio and hands
//! over a [`Handle`]).
//!
//! # The one decision: a handle, never a global
//!
//! Everything on the I/O side takes a [`Handle`] rather than calling
//! `tokio::spawn` against whatever runtime happens to be current. A service
//! that embeds Switchyard into its own tokio application keeps a single
//! runtime; the `switchyard` binary gets a dedicated one. Either way, the code
//! that spawns is the same.
//!
//! The reactor is kept small on purpose (one worker by default): it only
//! waits. CPU-heavy steps belong on the CPU pool, and the
//! [`StallWatchdog`](crate::StallWatchdog) reports when one ran here instead.
//!
//! # Shutdown
//!
//! An owned reactor shuts down when dropped, or with a deadline through
//! [`Reactor::shutdown_timeout`]. Dropping it from inside async code (where
//! blocking to wait for the workers would panic) shuts it down in the
//! background instead. An attached reactor never shuts down the runtime: its
//! owner does.
//!
//! # Metrics
//!
//! A reactor adds its worker count to `switchyard_reactor_threads` when it is
//! built or attached and takes it back when dropped, so the reactors of one
//! process add up. Building or attaching one also registers
//! `switchyard_reactor_stalls_total` at zero.
//!
//! # Example
//!
//! ```
//! use switchyard_io_reactor::{Reactor, ReactorConfig};
//!
//! let reactor = Reactor::new(&ReactorConfig { threads: 1 }).unwrap();
//! let answer = reactor.block_on(async { 40 + 2 }).unwrap();
//! assert_eq!(answer, 42);
//! ```

use std::fmt;
use std::future::Future;
use std::time::Duration;

use tokio::runtime::{Builder, Handle, Runtime};

use crate::config::ReactorConfig;
use crate::error::{Error, Kind, Result};
use crate::telemetry::ReactorMetrics;

/// Name of the owned runtime's worker threads, as seen in `top -H` and
/// profilers.
const THREAD_NAME: &str = "switchyard-reactor";

/// The tokio runtime Switchyard's tasks run on.
pub struct Reactor {
    handle: Handle,
    threads: usize,
    /// `Some` when Switchyard built the runtime and so must shut it down.
    owned: Option<Runtime>,
    _metrics: ReactorMetrics,
}

impl Reactor {
    /// Builds an owned multi-thread runtime with `config.threads` workers
    /// (timers and I/O enabled, threads named `switchyard-reactor`).
    pub fn new(config: &ReactorConfig) -> Result<Reactor> {
        config.validate()?;
        let runtime = Builder::new_multi_thread()
            .worker_threads(config.threads)
            .thread_name(THREAD_NAME)
            .enable_all()
            .build()
            .map_err(|e| Error::new(Kind::Runtime).with(e))?;
        Ok(Reactor {
            handle: runtime.handle().clone(),
            threads: config.threads,
            owned: Some(runtime),
            _metrics: ReactorMetrics::new(config.threads),
        })
    }

    /// Attaches to a runtime the embedding service owns. The reactor never
    /// shuts that runtime down.
    pub fn attach(handle: Handle) -> Reactor {
        let threads = handle.metrics().num_workers();
        Reactor { handle, threads, owned: None, _metrics: ReactorMetrics::new(threads) }
    }

    /// The runtime's handle.
    pub fn handle(&self) -> &Handle {
        &self.handle
    }

    /// Worker threads; for an attached runtime, as its handle reports them
    /// (1 for a current-thread runtime).
    pub fn threads(&self) -> usize {
        self.threads
    }

    /// Whether this reactor built (and so shuts down) its runtime.
    pub fn is_owned(&self) -> bool {
        self.owned.is_some()
    }

    /// Runs `future` to completion on an owned runtime, blocking the calling
    /// thread.
    ///
    /// Fails (rather than panicking, as tokio would) on an attached reactor,
    /// whose owner decides how to drive it, and when called from inside any
    /// tokio runtime, where blocking the thread would stall that runtime.
    pub fn block_on<F: Future>(&self, future: F) -> Result<F::Output> {
        let Some(runtime) = &self.owned else {
            return Err(Error::new(Kind::Runtime).with("block_on needs an owned runtime"));
        };
        if Handle::try_current().is_ok() {
            return Err(Error::new(Kind::Runtime).with("block_on called from async context"));
        }
        Ok(runtime.block_on(future))
    }

    /// Shuts an owned runtime down, waiting at most `timeout` for its tasks
    /// (including blocking ones) to stop. Does nothing on an attached
    /// reactor.
    pub fn shutdown_timeout(mut self, timeout: Duration) {
        if let Some(runtime) = self.owned.take() {
            if Handle::try_current().is_ok() {
                // Waiting would block a runtime thread; tokio panics on that.
                runtime.shutdown_background();
            } else {
                runtime.shutdown_timeout(timeout);
            }
        }
    }
}

impl Drop for Reactor {
    fn drop(&mut self) {
        if let Some(runtime) = self.owned.take() {
            if Handle::try_current().is_ok() {
                // Dropping a runtime inside async context panics in tokio;
                // let its threads wind down on their own instead.
                runtime.shutdown_background();
            }
            // Otherwise the runtime's own drop waits for its workers.
        }
    }
}

impl fmt::Debug for Reactor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Reactor").field("threads", &self.threads).field("owned", &self.is_owned()).finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zero_threads_is_rejected_naming_the_field() {
        let err = Reactor::new(&ReactorConfig { threads: 0 }).unwrap_err();
        assert!(err.is_config());
        assert_eq!(err.config_field(), Some("reactor.threads"));
    }

    #[test]
    fn owned_runtime_runs_on_named_threads() {
        let reactor = Reactor::new(&ReactorConfig { threads: 2 }).unwrap();
        assert!(reactor.is_owned());
        assert_eq!(reactor.threads(), 2);
        assert_eq!(reactor.handle().metrics().num_workers(), 2);
        let name = reactor
            .block_on(async {
                tokio::spawn(async { std::thread::current().name().map(str::to_owned) }).await.unwrap()
            })
            .unwrap();
        assert_eq!(name.as_deref(), Some(THREAD_NAME));
        reactor.shutdown_timeout(Duration::from_secs(1));
    }

    #[test]
    fn shutdown_timeout_does_not_wait_for_stuck_blocking_work() {
        let reactor = Reactor::new(&ReactorConfig::default()).unwrap();
        reactor.handle().spawn_blocking(|| std::thread::sleep(Duration::from_secs(5)));
        let start = std::time::Instant::now();
        reactor.shutdown_timeout(Duration::from_millis(50));
        assert!(start.elapsed() < Duration::from_secs(4), "waited {:?}", start.elapsed());
    }

    #[tokio::test]
    async fn attach_uses_the_given_runtime_and_refuses_block_on() {
        let reactor = Reactor::attach(Handle::current());
        assert!(!reactor.is_owned());
        assert_eq!(reactor.threads(), 1); // #[tokio::test] is a current-thread runtime
        let out = reactor.handle().spawn(async { 7 }).await.unwrap();
        assert_eq!(out, 7);
        assert!(reactor.block_on(async {}).is_err());
        drop(reactor); // must leave the test's runtime running
        tokio::task::yield_now().await;
    }

    #[tokio::test]
    async fn dropping_an_owned_reactor_in_async_context_does_not_panic() {
        let reactor = Reactor::new(&ReactorConfig::default()).unwrap();
        let err = reactor.block_on(async {}).unwrap_err();
        assert!(err.to_string().contains("async context"), "{err}");
        drop(reactor);
    }
}
