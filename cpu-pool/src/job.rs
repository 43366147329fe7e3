//! The futures [`CpuPool::submit`](crate::CpuPool::submit) returns, and the
//! body every job runs on a pool thread.
//!
//! A job goes through two waits: for a slot (admission, on the producer's
//! side, asynchronous) and for a thread (in the rayon queue). When a slot is
//! free at submission the job is handed to the pool right away, so the common
//! case costs one boxed closure (rayon's) and one oneshot channel; only a
//! producer that must wait boxes its closure and its wait.
//!
//! # Waiting for the result
//!
//! At its first poll, a producer whose job starts at once and whose pool's
//! recent jobs came back quickly (see `Shared::spin_budget`) spins for the
//! result, up to `cpu.spin_wait_us`, and only then parks: for a job of a few
//! microseconds, parking the reactor and waking it again costs more than the
//! job. Once jobs take longer than twice the spin, producers stop spinning
//! until a run of short jobs brings the estimate back down, so a pool of
//! long jobs costs the reactor at most its first job's spin, and an idle pool
//! nothing at all.
//!
//! # A bounded wait for a slot
//!
//! A producer that finds every slot taken waits at most `cpu.slot_wait_ms`
//! for one; then its future resolves to an overloaded error, its closure is
//! dropped unrun, and its place in the semaphore's queue is given up, so a
//! slot freed later goes to the next producer rather than to nobody.
//!
//! # Cancellation
//!
//! Dropping the future before the job starts cancels it: the thread that
//! picks it up sees the result channel closed, skips the closure and frees the
//! slot. Once the closure runs it runs to the end (a thread cannot be
//! interrupted); its result is dropped.

use std::future::Future;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::pin::Pin;
use std::sync::atomic::Ordering::Relaxed;
use std::task::{ready, Context, Poll};
use std::time::{Duration, Instant};

use tokio::sync::oneshot::error::TryRecvError;
use tokio::sync::{oneshot, AcquireError, OwnedSemaphorePermit};

use crate::slot::{Shared, Slot};
use crate::telemetry::{Outcome, SpinOutcome};
use crate::{CpuPool, Error};

/// How long each phase of one job took.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct JobTimes {
    /// Waiting for a slot (backpressure); zero when one was free.
    pub admission_wait: Duration,
    /// Holding a slot, waiting for a thread.
    pub queue_wait: Duration,
    /// Running on a thread.
    pub run: Duration,
}

pub(crate) type Reply<T> = Result<(T, JobTimes), Error>;

type Acquire = Pin<Box<dyn Future<Output = Result<OwnedSemaphorePermit, AcquireError>> + Send>>;

/// A job waiting for a slot, counted in `waiting_producers` while it lives.
pub(crate) struct Waiting<T> {
    acquire: Acquire,
    // An `Option` only so it can move out of a type with `Drop`.
    f: Option<Box<dyn FnOnce() -> T + Send>>,
    since: Instant,
    /// Fires when the producer has waited `cpu.slot_wait_ms`. Made at the
    /// first poll, not at submission: `submit` may be called outside a
    /// runtime, a poll never is.
    give_up: Option<Pin<Box<tokio::time::Sleep>>>,
    pool: CpuPool,
}

impl<T> Waiting<T> {
    pub(crate) fn new(pool: &CpuPool, f: Box<dyn FnOnce() -> T + Send>) -> Self {
        let shared = pool.shared();
        shared.counters.waiting.fetch_add(1, Relaxed);
        let acquire = Box::pin(shared.semaphore.clone().acquire_owned());
        Waiting { acquire, f: Some(f), since: Instant::now(), give_up: None, pool: pool.clone() }
    }

    /// Whether the producer has waited as long as it may. Dropping the
    /// wait afterwards gives up its place in the semaphore's queue, so no
    /// slot is ever taken on behalf of a producer that left.
    fn waited_too_long(&mut self, cx: &mut Context<'_>) -> bool {
        let (since, limit) = (self.since, self.pool.shared().slot_wait);
        let give_up = self.give_up.get_or_insert_with(|| {
            Box::pin(tokio::time::sleep_until(tokio::time::Instant::from_std(since + limit)))
        });
        give_up.as_mut().poll(cx).is_ready()
    }
}

impl<T> Drop for Waiting<T> {
    fn drop(&mut self) {
        self.pool.shared().counters.waiting.fetch_sub(1, Relaxed);
    }
}

/// A job handed to the pool, whose result has not come back yet.
pub(crate) struct Sent<T> {
    reply: oneshot::Receiver<Reply<T>>,
    /// Whether the first poll, which decides on spinning, is still to come.
    first_poll: bool,
    shared: std::sync::Arc<Shared>,
}

impl<T> Sent<T> {
    pub(crate) fn new(reply: oneshot::Receiver<Reply<T>>, shared: std::sync::Arc<Shared>) -> Self {
        Sent { reply, first_poll: true, shared }
    }

    /// At the first poll only: spins for the result at most the pool's spin
    /// budget, if it grants one, without registering a waker. `None` means
    /// the caller should poll (and park) as usual.
    fn spin_once(&mut self) -> Option<Reply<T>> {
        if !std::mem::take(&mut self.first_poll) {
            return None;
        }
        // Decided now rather than at submission: the job still holds its
        // slot, and the pool's state is as fresh as it gets.
        let budget = self.shared.spin_budget()?;
        let until = Instant::now() + budget;
        let mut spun = false;
        let reply = loop {
            match self.reply.try_recv() {
                Ok(reply) => break Some(reply),
                // Only the pool losing the job closes the channel unsent.
                Err(TryRecvError::Closed) => return Some(Err(Error::cancelled())),
                Err(TryRecvError::Empty) if Instant::now() >= until => break None,
                Err(TryRecvError::Empty) => {
                    spun = true;
                    std::hint::spin_loop();
                }
            }
        };
        // A result already there at the first look cost no spin: not counted.
        if spun {
            self.shared.spun(if reply.is_some() { SpinOutcome::Result } else { SpinOutcome::Parked });
        }
        reply
    }
}

/// Where a submitted job is; shared by [`Job`] and [`TimedJob`].
pub(crate) enum Admission<T> {
    Waiting(Waiting<T>),
    Sent(Sent<T>),
    Refused(Error),
    Done,
}

impl<T: Send + 'static> Admission<T> {
    fn poll_reply(&mut self, cx: &mut Context<'_>) -> Poll<Reply<T>> {
        loop {
            match self {
                Admission::Waiting(waiting) => {
                    let acquired = match waiting.acquire.as_mut().poll(cx) {
                        Poll::Ready(acquired) => acquired,
                        Poll::Pending if waiting.waited_too_long(cx) => {
                            let waited = waiting.since.elapsed();
                            waiting.pool.shared().settle(Outcome::Overloaded);
                            *self = Admission::Done;
                            return Poll::Ready(Err(Error::overloaded(waited)));
                        }
                        Poll::Pending => return Poll::Pending,
                    };
                    let Admission::Waiting(mut waiting) = std::mem::replace(self, Admission::Done) else {
                        unreachable!("matched above")
                    };
                    let Ok(permit) = acquired else {
                        // Shutdown closed the semaphore while this producer waited.
                        waiting.pool.shared().settle(Outcome::Rejected);
                        return Poll::Ready(Err(Error::closed()));
                    };
                    permit.forget();
                    let admitted = Instant::now();
                    let waited = admitted.saturating_duration_since(waiting.since);
                    let slot = Slot::new(waiting.pool.shared_arc(), admitted, waited);
                    let f = waiting.f.take().expect("taken once");
                    *self = Admission::Sent(waiting.pool.spawn(slot, f, waited));
                }
                Admission::Sent(sent) => {
                    if let Some(reply) = sent.spin_once() {
                        *self = Admission::Done;
                        return Poll::Ready(reply);
                    }
                    // The sender is only dropped unsent if the pool lost the job.
                    let reply = ready!(Pin::new(&mut sent.reply).poll(cx))
                        .unwrap_or_else(|_| Err(Error::cancelled()));
                    *self = Admission::Done;
                    return Poll::Ready(reply);
                }
                Admission::Refused(_) => {
                    let Admission::Refused(err) = std::mem::replace(self, Admission::Done) else {
                        unreachable!("matched above")
                    };
                    return Poll::Ready(Err(err));
                }
                Admission::Done => panic!("cpu job polled after completion"),
            }
        }
    }
}

/// A job submitted to the [`CpuPool`]; resolves to the closure's value.
///
/// Dropping it before the job starts cancels the job; dropping it while it
/// waits for a slot gives up the wait.
#[must_use = "a job is cancelled when its future is dropped before it starts"]
pub struct Job<T> {
    admission: Admission<T>,
}

impl<T> Job<T> {
    pub(crate) fn new(admission: Admission<T>) -> Self {
        Job { admission }
    }
}

impl<T: Send + 'static> Future for Job<T> {
    type Output = Result<T, Error>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        self.get_mut().admission.poll_reply(cx).map(|reply| reply.map(|(value, _)| value))
    }
}

impl<T> std::fmt::Debug for Job<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Job").finish_non_exhaustive()
    }
}

/// Like [`Job`], but also reports how long each phase took.
#[must_use = "a job is cancelled when its future is dropped before it starts"]
pub struct TimedJob<T> {
    admission: Admission<T>,
}

impl<T> TimedJob<T> {
    pub(crate) fn new(admission: Admission<T>) -> Self {
        TimedJob { admission }
    }
}

impl<T: Send + 'static> Future for TimedJob<T> {
    type Output = Result<(T, JobTimes), Error>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        self.get_mut().admission.poll_reply(cx)
    }
}

impl<T> std::fmt::Debug for TimedJob<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TimedJob").finish_non_exhaustive()
    }
}

/// The body of every job, on a pool thread. Counts are settled and the slot
/// is freed before the reply is sent, so a producer that sees its result also
/// sees them in [`CpuPool::stats`].
pub(crate) fn run<F, T>(mut slot: Slot, f: F, admission_wait: Duration, reply: oneshot::Sender<Reply<T>>)
where
    F: FnOnce() -> T,
{
    let started = Instant::now();
    let queue_wait = slot.pick_up(started);
    let shared = slot.shared();
    if reply.is_closed() {
        shared.settle(Outcome::Cancelled);
        return;
    }
    shared.counters.running.fetch_add(1, Relaxed);
    shared.telemetry.started();
    let result = catch_unwind(AssertUnwindSafe(f));
    let run = started.elapsed();
    shared.record_turnaround(queue_wait, run);
    shared.counters.running.fetch_sub(1, Relaxed);
    shared.telemetry.ran(run);
    let outcome = match result {
        Ok(value) => {
            shared.settle(Outcome::Completed);
            Ok((value, JobTimes { admission_wait, queue_wait, run }))
        }
        Err(payload) => {
            shared.settle(Outcome::Panicked);
            Err(Error::panicked(payload))
        }
    };
    drop(slot);
    // The producer may have given up meanwhile; the value is then dropped here.
    let _ = reply.send(outcome);
}

#[cfg(test)]
mod tests;
