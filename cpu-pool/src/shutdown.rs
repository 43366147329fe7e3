//! Shutdown: stop admitting, let admitted jobs finish, bounded by a deadline.
//!
//! Closing the slot semaphore is the whole stop: no slot is handed out again,
//! producers still waiting wake with a closed error, and the last slot given
//! back signals the drain. Jobs already queued or running are never dropped;
//! a thread cannot be interrupted, so the deadline only bounds how long the
//! caller waits, and [`ShutdownReport::unfinished`] says what was left.
//!
//! The deadline is kept by a short-lived helper thread rather than a tokio
//! timer: the jobs run in real time on real threads, so the deadline must
//! too, whether the caller's runtime has a time driver or runs paused time in
//! a test (where a tokio timer would fire at once while the jobs still run).
//! The helper exits as soon as the drain ends.

use std::future::{poll_fn, Future};
use std::pin::pin;
use std::task::Poll;
use std::thread::{self, Thread};
use std::time::{Duration, Instant};

use tokio::sync::oneshot;

use crate::slot::Shared;

/// How [`CpuPool::shutdown`](crate::CpuPool::shutdown) ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ShutdownReport {
    /// Every admitted job finished before the deadline.
    pub finished_in_time: bool,
    /// Jobs still queued or running when the deadline passed; they go on
    /// running and their results still reach their futures.
    pub unfinished: usize,
}

pub(crate) async fn drain(shared: &Shared, deadline: Duration) -> ShutdownReport {
    shared.semaphore.close();
    let mut drained = pin!(shared.drained.notified());
    // Registered before the check, so a slot given back in between still wakes us.
    drained.as_mut().enable();
    if shared.held() == 0 {
        return ShutdownReport { finished_in_time: true, unfinished: 0 };
    }

    // If no helper thread can be started there is no deadline to keep; say
    // what is left rather than wait without bound.
    let Ok(mut timer) = Timer::start(deadline) else {
        return ShutdownReport { finished_in_time: false, unfinished: shared.held() };
    };
    poll_fn(|cx| loop {
        if shared.held() == 0 {
            return Poll::Ready(ShutdownReport { finished_in_time: true, unfinished: 0 });
        }
        if drained.as_mut().poll(cx).is_ready() {
            // Woken: check again, re-armed in case this was not the last slot.
            drained.set(shared.drained.notified());
            drained.as_mut().enable();
            continue;
        }
        if timer.expired(cx) {
            let unfinished = shared.held();
            return Poll::Ready(ShutdownReport { finished_in_time: unfinished == 0, unfinished });
        }
        return Poll::Pending;
    })
    .await
}

/// A deadline kept by a parked helper thread; dropping it ends the thread.
struct Timer {
    // `None` when the deadline is too far to represent: it never expires.
    helper: Option<(Thread, oneshot::Receiver<()>)>,
}

impl Timer {
    fn start(after: Duration) -> std::io::Result<Timer> {
        let Some(until) = Instant::now().checked_add(after) else {
            return Ok(Timer { helper: None });
        };
        let (expired, rx) = oneshot::channel();
        let handle = thread::Builder::new().name("switchyard-cpu-shutdown".into()).spawn(move || loop {
            // Closed when the drain finished first.
            if expired.is_closed() {
                return;
            }
            let now = Instant::now();
            if now >= until {
                let _ = expired.send(());
                return;
            }
            thread::park_timeout(until - now);
        })?;
        Ok(Timer { helper: Some((handle.thread().clone(), rx)) })
    }

    fn expired(&mut self, cx: &mut std::task::Context<'_>) -> bool {
        match &mut self.helper {
            Some((_, rx)) => std::pin::Pin::new(rx).poll(cx).is_ready(),
            None => false,
        }
    }
}

impl Drop for Timer {
    fn drop(&mut self) {
        if let Some((helper, rx)) = &mut self.helper {
            rx.close();
            helper.unpark();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pool::tests::{eventually, pool, Gate};

    #[tokio::test]
    async fn a_long_job_outlives_a_short_deadline() {
        let pool = pool(1, 2);
        let gate = Gate::new();
        let long = pool.submit({
            let gate = gate.clone();
            move || gate.wait()
        });
        eventually(|| pool.stats().running == 1).await;

        let report = pool.shutdown(Duration::from_millis(20)).await;
        assert!(!report.finished_in_time);
        assert!(report.unfinished >= 1, "{report:?}");

        // The job was not dropped: it finishes once released.
        gate.open();
        long.await.unwrap();
        assert_eq!(pool.stats().completed, 1);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn short_jobs_are_drained() {
        let pool = pool(2, 4);
        let jobs: Vec<_> = (0..4u64)
            .map(|i| {
                pool.submit(move || {
                    thread::sleep(Duration::from_millis(5));
                    i
                })
            })
            .collect();
        let waiting = pool.submit(|| 99);

        let report = pool.shutdown(Duration::from_secs(30)).await;
        assert_eq!(report, ShutdownReport { finished_in_time: true, unfinished: 0 });
        for (i, job) in jobs.into_iter().enumerate() {
            assert_eq!(job.await.unwrap(), i as u64);
        }
        // A producer still waiting for a slot is turned away, not run.
        assert!(waiting.await.unwrap_err().is_closed());

        let err = pool.submit(|| 1).await.unwrap_err();
        assert!(err.is_closed(), "{err}");
        let stats = pool.stats();
        assert_eq!((stats.completed, stats.rejected, stats.queued + stats.running), (4, 2, 0));
    }

    #[tokio::test(start_paused = true)]
    async fn the_deadline_is_real_time_even_when_tokio_time_is_paused() {
        let pool = pool(1, 1);
        let job = pool.submit(|| thread::sleep(Duration::from_millis(20)));
        let report = pool.shutdown(Duration::from_secs(30)).await;
        assert_eq!(report, ShutdownReport { finished_in_time: true, unfinished: 0 });
        job.await.unwrap();
    }

    #[tokio::test]
    async fn an_idle_pool_shuts_down_at_once_and_twice() {
        let pool = pool(1, 1);
        let done = ShutdownReport { finished_in_time: true, unfinished: 0 };
        assert_eq!(pool.shutdown(Duration::ZERO).await, done);
        assert_eq!(pool.shutdown(Duration::MAX).await, done);
    }
}
