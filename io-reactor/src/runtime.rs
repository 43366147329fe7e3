//! The reactor: the tokio runtime every network wait of Switchyard runs on.
//!
//! A [`Reactor`] is either *owned* ([`Reactor::new`]: Switchyard builds a
//! runtime and shuts it down; with one worker, a current-thread runtime on
//! a dedicated thread, otherwise a multi-thread runtime) or *attached*
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

use std::sync::{mpsc, Mutex, PoisonError};

use tokio::runtime::{Builder, Handle, Runtime};
use tokio::sync::oneshot;

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
    owned: Option<Owned>,
    _metrics: ReactorMetrics,
}

/// A runtime Switchyard built.
enum Owned {
    /// Several workers: a multi-thread runtime, driven by its own threads.
    Workers(Runtime),
    /// One worker: a current-thread runtime, driven by a thread of ours
    /// until `stop` fires; the thread then hands the runtime back on
    /// `returned` to be shut down.
    /// (`returned` sits in a mutex only so that a reactor is `Sync`.)
    Driven { stop: oneshot::Sender<()>, returned: Mutex<mpsc::Receiver<Runtime>> },
}

impl Reactor {
    /// Builds an owned runtime with `config.threads` workers (timers and
    /// I/O enabled, threads named `switchyard-reactor`).
    ///
    /// With one worker, the default, it is a current-thread runtime that a
    /// dedicated thread drives rather than a multi-thread runtime of one:
    /// the same single thread runs every task, without the work-stealing
    /// scheduler's bookkeeping on each wake-up, which at low load is a
    /// reactor's main cost (BENCHMARKS.md, section 9d).
    pub fn new(config: &ReactorConfig) -> Result<Reactor> {
        config.validate()?;
        let start = |e: std::io::Error| Error::new(Kind::Runtime).with(e);
        if config.threads == 1 {
            let runtime =
                Builder::new_current_thread().thread_name(THREAD_NAME).enable_all().build().map_err(start)?;
            let handle = runtime.handle().clone();
            let (stop, stopped) = oneshot::channel::<()>();
            let (hand_back, returned) = mpsc::channel();
            std::thread::Builder::new()
                .name(THREAD_NAME.into())
                .spawn(move || {
                    // Ends when `stop` fires or is dropped with the reactor.
                    let _ = runtime.block_on(stopped);
                    if let Err(mpsc::SendError(runtime)) = hand_back.send(runtime) {
                        // Nobody waits for it (stopped from async context).
                        runtime.shutdown_background();
                    }
                })
                .map_err(start)?;
            let owned = Some(Owned::Driven { stop, returned: Mutex::new(returned) });
            return Ok(Reactor { handle, threads: 1, owned, _metrics: ReactorMetrics::new(1) });
        }
        let runtime = Builder::new_multi_thread()
            .worker_threads(config.threads)
            .thread_name(THREAD_NAME)
            .enable_all()
            .build()
            .map_err(start)?;
        Ok(Reactor {
            handle: runtime.handle().clone(),
            threads: config.threads,
            owned: Some(Owned::Workers(runtime)),
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
        let Some(owned) = &self.owned else {
            return Err(Error::new(Kind::Runtime).with("block_on needs an owned runtime"));
        };
        if Handle::try_current().is_ok() {
            return Err(Error::new(Kind::Runtime).with("block_on called from async context"));
        }
        Ok(match owned {
            Owned::Workers(runtime) => runtime.block_on(future),
            // The driving thread runs the timers and I/O meanwhile.
            Owned::Driven { .. } => self.handle.block_on(future),
        })
    }

    /// Shuts an owned runtime down, waiting at most `timeout` for its tasks
    /// (including blocking ones) to stop. Does nothing on an attached
    /// reactor.
    pub fn shutdown_timeout(mut self, timeout: Duration) {
        match self.owned.take() {
            None => {}
            // Waiting would block a runtime thread; tokio panics on that.
            Some(owned) if Handle::try_current().is_ok() => owned.shutdown_background(),
            Some(Owned::Workers(runtime)) => runtime.shutdown_timeout(timeout),
            Some(Owned::Driven { stop, returned }) => {
                let deadline = std::time::Instant::now() + timeout;
                let _ = stop.send(());
                // A task stuck on the driving thread keeps the runtime
                // there; past the deadline it is left to end on its own.
                let returned = returned.into_inner().unwrap_or_else(PoisonError::into_inner);
                if let Ok(runtime) = returned.recv_timeout(timeout) {
                    runtime.shutdown_timeout(deadline.saturating_duration_since(std::time::Instant::now()));
                }
            }
        }
    }
}

impl Owned {
    /// Lets the runtime's threads wind down on their own.
    fn shutdown_background(self) {
        match self {
            Owned::Workers(runtime) => runtime.shutdown_background(),
            // Dropping `returned` makes the driving thread shut the runtime
            // down in the background once `stop` ends its loop.
            Owned::Driven { stop, returned } => {
                drop(returned);
                let _ = stop.send(());
            }
        }
    }
}

impl Drop for Reactor {
    fn drop(&mut self) {
        match self.owned.take() {
            None => {}
            // Dropping a runtime inside async context panics in tokio; let
            // its threads wind down on their own instead.
            Some(owned) if Handle::try_current().is_ok() => owned.shutdown_background(),
            // The runtime's own drop waits for its workers.
            Some(Owned::Workers(runtime)) => drop(runtime),
            Some(Owned::Driven { stop, returned }) => {
                let _ = stop.send(());
                // As a multi-thread runtime's drop waits for its workers.
                drop(returned.into_inner().unwrap_or_else(PoisonError::into_inner).recv());
            }
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
    fn one_worker_runs_tasks_timers_and_io_on_its_own_named_thread() {
        let reactor = Reactor::new(&ReactorConfig { threads: 1 }).unwrap();
        assert_eq!(reactor.handle().metrics().num_workers(), 1);
        let caller = std::thread::current().id();
        let (name, elsewhere, echoed) = reactor
            .block_on(async move {
                let task = tokio::spawn(async move {
                    tokio::time::sleep(Duration::from_millis(5)).await;
                    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
                    let addr = listener.local_addr().unwrap();
                    let (mut client, (mut server, _)) =
                        tokio::try_join!(tokio::net::TcpStream::connect(addr), listener.accept()).unwrap();
                    use tokio::io::{AsyncReadExt, AsyncWriteExt};
                    client.write_all(b"ping").await.unwrap();
                    let mut got = [0u8; 4];
                    server.read_exact(&mut got).await.unwrap();
                    let me = std::thread::current();
                    (me.name().map(str::to_owned), me.id() != caller, got)
                });
                task.await.unwrap()
            })
            .unwrap();
        assert_eq!(name.as_deref(), Some(THREAD_NAME));
        assert!(elsewhere, "spawned tasks run on the driving thread, not the caller's");
        assert_eq!(&echoed, b"ping");
        reactor.shutdown_timeout(Duration::from_secs(1));
    }

    #[test]
    fn shutdown_timeout_gives_up_on_a_task_stuck_on_the_driving_thread() {
        let reactor = Reactor::new(&ReactorConfig { threads: 1 }).unwrap();
        // Blocks the only worker thread for 3 s: the deadline must not wait.
        reactor.handle().spawn(async { std::thread::sleep(Duration::from_secs(3)) });
        std::thread::sleep(Duration::from_millis(50));
        let start = std::time::Instant::now();
        reactor.shutdown_timeout(Duration::from_millis(100));
        assert!(start.elapsed() < Duration::from_secs(2), "waited {:?}", start.elapsed());
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
        // One worker (a driven current-thread runtime) and two (multi-thread).
        for threads in [1, 2] {
            let reactor = Reactor::new(&ReactorConfig { threads }).unwrap();
            assert_eq!(reactor.handle().spawn(async { 5 }).await.unwrap(), 5);
            let err = reactor.block_on(async {}).unwrap_err();
            assert!(err.to_string().contains("async context"), "{err}");
            drop(reactor);
        }
    }
}
