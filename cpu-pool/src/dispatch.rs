//! The hand-off from producers to the pool's threads.
//!
//! Each rayon thread of the pool runs one long-lived serving loop that takes
//! jobs from a FIFO queue of its own and sleeps on a condition variable when
//! the queue is empty. A submission wakes at most one sleeping thread, and
//! only when one is asleep.
//!
//! # The one decision: the pool's threads sleep here, not in rayon
//!
//! Spawned straight onto rayon, every job at low load paid for rayon's idle
//! protocol: the woken thread, finding work, wakes a second one in case more
//! follows, and each thread that runs out of work calls `sched_yield` 32
//! times before it sleeps. At 50 PZ-1 tasks/s that was ~63 `sched_yield`s
//! and ~31 context switches per task, for one job of about a millisecond:
//! on a VM, where waking an idle vCPU is dear, about 0.1-0.3 ms of CPU per
//! task (BENCHMARKS.md, section 9). A job engine's jobs are independent and
//! rarely shorter than that wake-up, so waking exactly one thread per job is
//! the better trade.
//!
//! A thread that has just finished a short job lingers before it sleeps:
//! for as long as the caller's `linger` allows (the pool grants
//! `cpu.spin_wait_us` while its recent jobs came back within that time, and
//! nothing otherwise), it watches the queue, yielding the core between
//! looks, so a stream of microsecond jobs is served without a wake-up each,
//! while a pool of millisecond jobs sleeps at once.
//!
//! The threads remain rayon's: a job may still use rayon inside (`join`,
//! parallel iterators, `spawn`). Work it splits off runs on its own thread,
//! and on the others only as they finish their jobs and look for more
//! before sleeping (a thread asleep here does not steal), so nested
//! parallelism is best effort rather than guaranteed.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Condvar, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

/// One job as the serving loops see it: everything it needs is inside.
pub(crate) type Task = Box<dyn FnOnce() + Send>;

/// The queue between producers and the pool's serving loops.
#[derive(Default)]
pub(crate) struct Dispatch {
    state: Mutex<State>,
    work: Condvar,
    /// The queue's length, readable without the lock by a lingering thread.
    queued: AtomicUsize,
}

#[derive(Default)]
struct State {
    tasks: VecDeque<Task>,
    /// Serving loops waiting on `work`; a push wakes one only if this is
    /// non-zero, so a busy pool costs no wake-up system call.
    sleeping: usize,
    /// Serving loops watching the queue before they sleep; each takes one
    /// queued task without being woken.
    lingering: usize,
    /// Set once: loops finish what is queued, then return.
    closed: bool,
}

impl Dispatch {
    /// Queues `task` and wakes a sleeping thread if there is one and no
    /// lingering thread is left to take the task. The queue
    /// needs no bound of its own: the pool's slots bound what is admitted.
    pub(crate) fn push(&self, task: Task) {
        let mut state = self.lock();
        state.tasks.push_back(task);
        self.queued.fetch_add(1, Ordering::Release);
        let wake = state.sleeping > 0 && state.tasks.len() > state.lingering;
        drop(state);
        if wake {
            self.work.notify_one();
        }
    }

    /// The serving loop of one pool thread; returns once the dispatch is
    /// closed and its queue empty. `linger` says how long the thread may
    /// watch an empty queue before it sleeps.
    pub(crate) fn serve(&self, linger: impl Fn() -> Duration) {
        while let Some(task) = self.next(&linger) {
            task();
            // Run what the job left to rayon (a `spawn`, a half of a `join`
            // no one stole) before taking the next job or sleeping.
            while let Some(rayon::Yield::Executed) = rayon::yield_now() {}
        }
    }

    /// Stops the serving loops once the queue is empty.
    pub(crate) fn close(&self) {
        self.lock().closed = true;
        self.work.notify_all();
    }

    fn next(&self, linger: impl Fn() -> Duration) -> Option<Task> {
        let mut state = self.lock();
        let mut timed_out = false;
        loop {
            if let Some(task) = state.tasks.pop_front() {
                self.queued.fetch_sub(1, Ordering::Relaxed);
                return Some(task);
            }
            if state.closed {
                return None;
            }
            let budget = if timed_out { Duration::ZERO } else { linger() };
            if !budget.is_zero() {
                state.lingering += 1;
                drop(state);
                timed_out = !self.watch(budget);
                state = self.lock();
                state.lingering -= 1;
                continue;
            }
            timed_out = false;
            state.sleeping += 1;
            state = self.work.wait(state).unwrap_or_else(PoisonError::into_inner);
            state.sleeping -= 1;
        }
    }

    /// Busy-waits, without the lock, until a task is queued (true) or
    /// `budget` has passed (false).
    fn watch(&self, budget: Duration) -> bool {
        let until = Instant::now() + budget;
        loop {
            if self.queued.load(Ordering::Acquire) > 0 {
                return true;
            }
            if Instant::now() >= until {
                return false;
            }
            // Gives the core to whatever else is runnable there (the
            // producer, on a small machine), as rayon's idle loop does.
            std::thread::yield_now();
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // Tasks run outside the lock, and nothing inside it can panic, so
        // a poisoned lock still guards a consistent queue.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
    use std::sync::Arc;

    /// A serving loop on a thread of its own, lingering `linger` each time.
    fn serving(dispatch: &Arc<Dispatch>, linger: Duration) -> std::thread::JoinHandle<()> {
        let dispatch = dispatch.clone();
        std::thread::spawn(move || dispatch.serve(|| linger))
    }

    /// A task that counts its run in `ran`.
    fn counting(ran: &Arc<AtomicUsize>) -> Task {
        let ran = ran.clone();
        Box::new(move || {
            ran.fetch_add(1, SeqCst);
        })
    }

    fn wait_until_ran(ran: &AtomicUsize) {
        while ran.load(SeqCst) == 0 {
            std::thread::yield_now();
        }
    }

    #[test]
    fn serves_queued_tasks_in_order_then_returns_once_closed() {
        let dispatch = Dispatch::default();
        let order = Arc::new(Mutex::new(Vec::new()));
        for i in 0..3 {
            let order = order.clone();
            dispatch.push(Box::new(move || order.lock().unwrap().push(i)));
        }
        dispatch.close();
        // Closed with three tasks queued: all three run before serve returns.
        dispatch.serve(|| Duration::ZERO);
        assert_eq!(*order.lock().unwrap(), vec![0, 1, 2]);
    }

    #[test]
    fn a_push_wakes_a_sleeping_loop() {
        let dispatch = Arc::new(Dispatch::default());
        let ran = Arc::new(AtomicUsize::new(0));
        let server = serving(&dispatch, Duration::ZERO);
        // Wait until the loop sleeps, so the push must wake it.
        while dispatch.lock().sleeping == 0 {
            std::thread::yield_now();
        }
        dispatch.push(counting(&ran));
        wait_until_ran(&ran);
        dispatch.close();
        server.join().unwrap();
        assert_eq!(ran.load(SeqCst), 1);
    }

    #[test]
    fn a_lingering_loop_takes_a_task_pushed_meanwhile_without_sleeping() {
        let dispatch = Arc::new(Dispatch::default());
        let ran = Arc::new(AtomicUsize::new(0));
        // Lingers for up to a minute: the push below must be seen by the
        // busy loop, since the thread never sleeps in that time.
        let server = serving(&dispatch, Duration::from_secs(60));
        std::thread::sleep(Duration::from_millis(20));
        assert_eq!(dispatch.lock().sleeping, 0, "still lingering, not asleep");
        dispatch.push(counting(&ran));
        wait_until_ran(&ran);
        // A second task ends the next linger at once; closing then ends
        // the loop once the queue is empty.
        dispatch.push(Box::new(|| ()));
        dispatch.close();
        server.join().unwrap();
    }
}
