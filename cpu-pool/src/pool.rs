//! The pool: a dedicated rayon thread pool behind a bounded number of slots.
//!
//! The pool owns its threads (never rayon's global pool, which other
//! libraries in the process may use), named `switchyard-cpu-{i}` so they stand
//! out in `top -H` and profiles. Submitting is cheap and never blocks a
//! thread: a producer awaits a slot, then the closure is queued for the
//! pool's threads (see `dispatch` for why not onto rayon's own queue) and
//! its result comes back on a oneshot channel.
//!
//! # Backpressure
//!
//! At most `queue_capacity` jobs are queued or running. A producer that finds
//! every slot taken waits asynchronously in [`CpuPool::submit`]'s future
//! ([`CpuPool::try_submit`] hands the closure back instead), so an overloaded
//! pool slows its producers down rather than growing a queue, for at most
//! `slot_wait_ms`: a producer still waiting then fails as overloaded.
//!
//! # Panics
//!
//! A panicking job resolves to an error for which
//! [`Error::is_panicked`](crate::Error::is_panicked) is true; the thread and
//! the pool carry on. The pool also has a panic handler, so nothing that
//! escapes a job can abort the process.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{oneshot, TryAcquireError};

use crate::dispatch::Dispatch;
use crate::job::{self, Admission, Sent, Waiting};
use crate::slot::{Shared, Slot};
use crate::telemetry::Outcome;
use crate::{CpuPoolConfig, Error, Job, PoolStats, ShutdownReport, TimedJob, TrySubmitError};

/// A handle to a CPU pool; clones share the same threads and slots.
///
/// The threads exit once every handle is dropped and their jobs are done.
#[derive(Clone)]
pub struct CpuPool {
    inner: Arc<Inner>,
}

struct Inner {
    // Held so the threads live as long as a handle does; jobs reach them
    // through `dispatch`.
    _rayon: rayon::ThreadPool,
    dispatch: Arc<Dispatch>,
    // Apart from the threads so that jobs, which hold it, never own the pool
    // they run on.
    shared: Arc<Shared>,
}

impl CpuPool {
    /// Validates `config` and starts the pool's threads.
    pub fn new(config: &CpuPoolConfig) -> Result<CpuPool, Error> {
        config.validate()?;
        let threads = config.resolved_threads();
        let capacity = config.resolved_queue_capacity();
        let rayon = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .thread_name(|i| format!("switchyard-cpu-{i}"))
            // Jobs catch their own panics; this only meets one escaping the
            // pool's own code, which rayon would otherwise answer by aborting.
            .panic_handler(drop)
            .build()
            .map_err(Error::start)?;
        let shared =
            Arc::new(Shared::new(threads, capacity, config.resolved_spin_wait(), config.slot_wait()));
        let dispatch = Arc::new(Dispatch::default());
        let (serving, policy) = (dispatch.clone(), shared.clone());
        // One serving loop per thread, for the pool's whole life (see `dispatch`).
        rayon.spawn_broadcast(move |_| serving.serve(|| policy.idle_linger()));
        Ok(CpuPool { inner: Arc::new(Inner { _rayon: rayon, dispatch, shared }) })
    }

    /// Worker threads.
    pub fn threads(&self) -> usize {
        self.inner.shared.threads
    }

    /// Most jobs queued or running at once.
    pub fn queue_capacity(&self) -> usize {
        self.inner.shared.capacity
    }

    /// Waits asynchronously for a slot (at most `queue_capacity` jobs queued
    /// or running), then runs `f` on the pool. When a slot is free the job is
    /// handed to the pool at once, before the future is first polled. When
    /// none comes free within `slot_wait_ms` the future resolves to an error
    /// for which [`Error::is_overloaded`] is true and `f` never runs.
    pub fn submit<F, T>(&self, f: F) -> Job<T>
    where
        F: FnOnce() -> T + Send + 'static,
        T: Send + 'static,
    {
        Job::new(self.admit(f))
    }

    /// Same as [`submit`](Self::submit), but resolves to the value together
    /// with how long each phase took.
    pub fn submit_timed<F, T>(&self, f: F) -> TimedJob<T>
    where
        F: FnOnce() -> T + Send + 'static,
        T: Send + 'static,
    {
        TimedJob::new(self.admit(f))
    }

    /// Never waits: hands `f` back when every slot is taken or the pool is
    /// shut down. Either refusal counts as a rejected job.
    pub fn try_submit<F, T>(&self, f: F) -> Result<Job<T>, TrySubmitError<F>>
    where
        F: FnOnce() -> T + Send + 'static,
        T: Send + 'static,
    {
        match self.inner.shared.try_slot() {
            Ok(slot) => Ok(Job::new(Admission::Sent(self.spawn(slot, f, Duration::ZERO)))),
            Err(refusal) => {
                self.inner.shared.settle(Outcome::Rejected);
                Err(match refusal {
                    TryAcquireError::NoPermits => TrySubmitError::Full(f),
                    TryAcquireError::Closed => TrySubmitError::Closed(f),
                })
            }
        }
    }

    /// A snapshot of occupancy and counts.
    pub fn stats(&self) -> PoolStats {
        self.inner.shared.stats()
    }

    /// Stops accepting jobs (later submits fail with a closed error, as do
    /// producers waiting for a slot), lets queued and running jobs finish, and
    /// waits for them at most `deadline`. See [`ShutdownReport`].
    pub async fn shutdown(&self, deadline: Duration) -> ShutdownReport {
        crate::shutdown::drain(&self.inner.shared, deadline).await
    }

    fn admit<F, T>(&self, f: F) -> Admission<T>
    where
        F: FnOnce() -> T + Send + 'static,
        T: Send + 'static,
    {
        match self.inner.shared.try_slot() {
            Ok(slot) => Admission::Sent(self.spawn(slot, f, Duration::ZERO)),
            Err(TryAcquireError::NoPermits) if self.inner.shared.slot_wait.is_zero() => {
                self.inner.shared.settle(Outcome::Overloaded);
                Admission::Refused(Error::overloaded(Duration::ZERO))
            }
            Err(TryAcquireError::NoPermits) => Admission::Waiting(Waiting::new(self, Box::new(f))),
            Err(TryAcquireError::Closed) => {
                self.inner.shared.settle(Outcome::Rejected);
                Admission::Refused(Error::closed())
            }
        }
    }

    pub(crate) fn spawn<F, T>(&self, slot: Slot, f: F, admission_wait: Duration) -> Sent<T>
    where
        F: FnOnce() -> T + Send + 'static,
        T: Send + 'static,
    {
        let (tx, rx) = oneshot::channel();
        self.inner.dispatch.push(Box::new(move || job::run(slot, f, admission_wait, tx)));
        Sent::new(rx, self.shared_arc())
    }

    pub(crate) fn shared(&self) -> &Shared {
        &self.inner.shared
    }

    pub(crate) fn shared_arc(&self) -> Arc<Shared> {
        self.inner.shared.clone()
    }
}

impl Drop for Inner {
    /// The last handle is gone: the serving loops finish the queued jobs and
    /// return, and rayon then ends its threads.
    fn drop(&mut self) {
        self.dispatch.close();
    }
}

impl std::fmt::Debug for CpuPool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CpuPool")
            .field("threads", &self.threads())
            .field("queue_capacity", &self.queue_capacity())
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::SeqCst};
    use std::sync::{Condvar, Mutex};

    /// A latch jobs block on until the test opens it.
    #[derive(Default)]
    pub(crate) struct Gate {
        open: Mutex<bool>,
        opened: Condvar,
    }

    impl Gate {
        pub(crate) fn new() -> Arc<Gate> {
            Arc::new(Gate::default())
        }

        pub(crate) fn wait(&self) {
            let mut open = self.open.lock().unwrap();
            while !*open {
                open = self.opened.wait(open).unwrap();
            }
        }

        pub(crate) fn open(&self) {
            *self.open.lock().unwrap() = true;
            self.opened.notify_all();
        }
    }

    pub(crate) fn pool(threads: usize, queue_capacity: usize) -> CpuPool {
        CpuPool::new(&CpuPoolConfig { threads, queue_capacity, ..CpuPoolConfig::default() }).unwrap()
    }

    /// Yields (with a real sleep, since the work is on other threads) until
    /// `done` holds; gives up after ten seconds so a bug fails instead of hanging.
    pub(crate) async fn eventually(mut done: impl FnMut() -> bool) {
        for _ in 0..10_000 {
            if done() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        panic!("condition not reached");
    }

    #[tokio::test]
    async fn runs_on_its_own_named_threads() {
        let pool = pool(2, 0);
        assert_eq!((pool.threads(), pool.queue_capacity()), (2, 8));
        let name = pool.submit(|| std::thread::current().name().map(str::to_owned)).await.unwrap();
        assert!(name.unwrap().starts_with("switchyard-cpu-"));
        assert_eq!(pool.stats().completed, 1);
    }

    #[tokio::test]
    async fn a_job_may_use_rayon_inside_and_its_spawns_still_run() {
        let pool = pool(2, 0);
        let (tx, rx) = std::sync::mpsc::channel();
        let sum = pool
            .submit(move || {
                // Fire and forget: runs after the job, on a pool thread.
                rayon::spawn(move || tx.send(rayon::current_thread_index().is_some()).unwrap());
                let (a, b) = rayon::join(|| (1..=100u64).sum::<u64>(), || (101..=200u64).sum::<u64>());
                a + b
            })
            .await
            .unwrap();
        assert_eq!(sum, 20_100);
        let on_the_pool = rx.recv_timeout(Duration::from_secs(10)).expect("the job's spawn ran");
        assert!(on_the_pool);
    }

    #[tokio::test]
    async fn dropping_the_last_handle_ends_the_threads() {
        let pool = pool(2, 0);
        let alive = Arc::new(());
        let witness = alive.clone();
        // A thread-local dropped when the thread exits tells that it did.
        pool.submit(move || {
            thread_local!(static HELD: std::cell::RefCell<Option<Arc<()>>> = const { std::cell::RefCell::new(None) });
            HELD.with(|held| *held.borrow_mut() = Some(witness));
        })
        .await
        .unwrap();
        assert_eq!(Arc::strong_count(&alive), 2);
        drop(pool);
        eventually(|| Arc::strong_count(&alive) == 1).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn backpressure_bounds_the_queue_and_every_job_completes() {
        let pool = pool(1, 4);
        let gate = Gate::new();
        let started = Arc::new(AtomicUsize::new(0));
        let producers: Vec<_> = (0..50)
            .map(|i| {
                let (pool, gate, started) = (pool.clone(), gate.clone(), started.clone());
                tokio::spawn(async move {
                    pool.submit(move || {
                        started.fetch_add(1, SeqCst);
                        gate.wait();
                        i
                    })
                    .await
                })
            })
            .collect();

        eventually(|| pool.stats().waiting_producers == 46).await;
        for _ in 0..100 {
            let stats = pool.stats();
            assert!(stats.queued + stats.running <= 4, "{stats:?}");
            assert!(started.load(SeqCst) <= 1);
            tokio::task::yield_now().await;
        }
        let stats = pool.stats();
        assert_eq!((stats.queued + stats.running, stats.waiting_producers), (4, 46), "{stats:?}");

        gate.open();
        let mut values = Vec::new();
        for producer in producers {
            values.push(producer.await.unwrap().unwrap());
        }
        values.sort_unstable();
        assert_eq!(values, (0..50).collect::<Vec<_>>());
        let stats = pool.stats();
        assert_eq!((stats.completed, stats.queued, stats.running, stats.waiting_producers), (50, 0, 0, 0));
    }

    #[tokio::test]
    async fn try_submit_hands_the_closure_back_when_full_or_closed() {
        let pool = pool(1, 1);
        let gate = Gate::new();
        let blocker = pool.try_submit({
            let gate = gate.clone();
            move || gate.wait()
        });
        let blocker = blocker.unwrap();

        let Err(refused) = pool.try_submit(|| 7) else { panic!("admitted past capacity") };
        assert!(refused.is_full());
        assert_eq!(refused.into_inner()(), 7);

        gate.open();
        blocker.await.unwrap();
        assert!(pool.shutdown(Duration::from_secs(10)).await.finished_in_time);

        let Err(refused) = pool.try_submit(|| 8) else { panic!("admitted after shutdown") };
        assert!(refused.is_closed());
        assert_eq!(refused.into_inner()(), 8);
        assert_eq!(pool.stats().rejected, 2);
    }

    #[tokio::test]
    async fn a_panic_becomes_an_error_and_the_pool_carries_on() {
        let pool = pool(1, 2);
        let err = pool.submit(|| -> u32 { panic!("boom {}", 42) }).await.unwrap_err();
        assert!(err.is_panicked(), "{err}");
        assert_eq!(err.to_string(), "cpu job panicked: boom 42");

        assert_eq!(pool.submit(|| 1 + 1).await.unwrap(), 2);
        let stats = pool.stats();
        assert_eq!((stats.panicked, stats.completed, stats.running, stats.queued), (1, 1, 0, 0));
    }

    #[tokio::test]
    async fn dropping_a_job_before_it_starts_cancels_it() {
        let pool = pool(1, 2);
        let gate = Gate::new();
        let blocker = pool.submit({
            let gate = gate.clone();
            move || gate.wait()
        });
        let ran = Arc::new(AtomicBool::new(false));
        let queued = pool.submit({
            let ran = ran.clone();
            move || ran.store(true, SeqCst)
        });
        assert_eq!(pool.stats().queued + pool.stats().running, 2);

        drop(queued);
        gate.open();
        blocker.await.unwrap();
        eventually(|| pool.stats().cancelled == 1).await;
        assert!(!ran.load(SeqCst));
        let stats = pool.stats();
        assert_eq!((stats.queued, stats.running, stats.completed), (0, 0, 1));
        // Both slots are free again.
        let (a, b) = (pool.try_submit(|| 1).unwrap(), pool.try_submit(|| 2).unwrap());
        assert_eq!((a.await.unwrap(), b.await.unwrap()), (1, 2));
    }

    #[tokio::test]
    async fn dropping_a_waiting_job_gives_up_the_wait() {
        let pool = pool(1, 1);
        let gate = Gate::new();
        let blocker = pool.submit({
            let gate = gate.clone();
            move || gate.wait()
        });
        let ran = Arc::new(AtomicBool::new(false));
        let waiting = pool.submit({
            let ran = ran.clone();
            move || ran.store(true, SeqCst)
        });
        assert_eq!(pool.stats().waiting_producers, 1);
        drop(waiting);
        assert_eq!(pool.stats().waiting_producers, 0);

        gate.open();
        blocker.await.unwrap();
        assert_eq!(pool.submit(|| 3).await.unwrap(), 3);
        assert!(!ran.load(SeqCst));
        assert_eq!(pool.stats().cancelled, 0);
    }

    fn pool_waiting_at_most(threads: usize, queue_capacity: usize, slot_wait_ms: u64) -> CpuPool {
        let config = CpuPoolConfig { threads, queue_capacity, slot_wait_ms, ..CpuPoolConfig::default() };
        CpuPool::new(&config).unwrap()
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_producer_waiting_past_the_slot_wait_fails_as_overloaded_and_leaks_no_slot() {
        let pool = pool_waiting_at_most(1, 2, 20);
        let gate = Gate::new();
        let blockers: Vec<_> = (0..2)
            .map(|_| {
                let gate = gate.clone();
                pool.submit(move || gate.wait())
            })
            .collect();
        let ran = Arc::new(AtomicUsize::new(0));
        let started = std::time::Instant::now();
        let waiting: Vec<_> = (0..40)
            .map(|_| {
                let (pool, ran) = (pool.clone(), ran.clone());
                tokio::spawn(async move { pool.submit(move || ran.fetch_add(1, SeqCst)).await })
            })
            .collect();
        for producer in waiting {
            let err = producer.await.unwrap().unwrap_err();
            assert!(err.is_overloaded() && !err.is_closed(), "{err}");
        }
        // Each gave up after its own 20 ms; generous bound, not a timing goal.
        assert!(started.elapsed() < Duration::from_secs(5), "{:?}", started.elapsed());
        let stats = pool.stats();
        assert_eq!((stats.overloaded, stats.waiting_producers, stats.queued + stats.running), (40, 0, 2));

        gate.open();
        for blocker in blockers {
            blocker.await.unwrap();
        }
        assert_eq!(ran.load(SeqCst), 0, "an overloaded job never runs");
        // Every slot is free again: as many jobs as the capacity go in without waiting.
        eventually(|| pool.stats().queued + pool.stats().running == 0).await;
        let again: Vec<_> = (0..2).map(|i| pool.try_submit(move || i).unwrap()).collect();
        for (i, job) in again.into_iter().enumerate() {
            assert_eq!(job.await.unwrap(), i);
        }
        assert_eq!(pool.stats().cancelled, 0);
    }

    #[tokio::test]
    async fn a_zero_slot_wait_refuses_at_once_when_full() {
        let pool = pool_waiting_at_most(1, 1, 0);
        let gate = Gate::new();
        let blocker = pool.submit({
            let gate = gate.clone();
            move || gate.wait()
        });
        let err = pool.submit(|| ()).await.unwrap_err();
        assert!(err.is_overloaded(), "{err}");
        assert_eq!((pool.stats().overloaded, pool.stats().waiting_producers), (1, 0));
        gate.open();
        blocker.await.unwrap();
        assert_eq!(pool.submit(|| 5).await.unwrap(), 5);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_slot_freed_within_the_wait_admits_the_job() {
        let pool = pool_waiting_at_most(1, 1, 10_000);
        let gate = Gate::new();
        let blocker = pool.submit({
            let gate = gate.clone();
            move || gate.wait()
        });
        let waiting = tokio::spawn({
            let pool = pool.clone();
            async move { pool.submit(|| "admitted").await }
        });
        eventually(|| pool.stats().waiting_producers == 1).await;
        gate.open();
        blocker.await.unwrap();
        assert_eq!(waiting.await.unwrap().unwrap(), "admitted");
        assert_eq!(pool.stats().overloaded, 0);
    }

    #[test]
    fn futures_are_send_and_unpin() {
        fn check<T: Send + Unpin>() {}
        check::<Job<Vec<u8>>>();
        check::<TimedJob<String>>();
        check::<CpuPool>();
        fn shareable<T: Send + Sync>() {}
        shareable::<CpuPool>();
    }
}
