//! The reactor stall watchdog: notices when something blocks the reactor
//! and says what was running.
//!
//! A reactor thread that computes instead of waiting freezes every task's
//! I/O on it: gevent's classic failure, and exactly what the CPU pool exists
//! to prevent. [`StallWatchdog`] makes it visible. Every `interval_ms` a
//! plain thread (`switchyard-watchdog`) writes a byte into a socket pair
//! whose other end a heartbeat task on the reactor reads, and the task
//! measures how long the reactor took to notice (the reactor's *lag*: what
//! every socket event waits, I/O driver included); a probe answered
//! later than `stall_threshold_ms` counts as a stall. Code marks what it is
//! doing with [`StallWatchdog::stage`], so a stall can be blamed on a stage
//! by name.
//!
//! # The one decision: probe and observe from outside the reactor
//!
//! The probe comes from outside, not from a timer on the reactor, because
//! lag is what an I/O event waits, and tokio's timers round to whole
//! milliseconds: a sleeping heartbeat would report a millisecond of "lag" on
//! an idle reactor. And only an outside thread, which a stuck reactor cannot
//! stop, can report a stall *while* it lasts, when the stage that caused it
//! is still marked: while a probe goes unanswered past the threshold it logs
//! once per stall, naming the stages marked at that moment:
//!
//! ```text
//! WARN reactor stalled stalled_ms=61 stage="transform"
//! ```
//!
//! # Shutdown
//!
//! [`StallWatchdog::stop`] (or dropping the last clone) ends the heartbeat
//! and joins the observer thread. When the runtime shuts down first, the
//! heartbeat ends with it and the observer exits without reporting a stall.
//!
//! # Metrics
//!
//! Every beat records `switchyard_reactor_lag_seconds`; each stall increments
//! `switchyard_reactor_stalls_total`. [`StallWatchdog::stats`] and
//! [`StallWatchdog::lag_quantile`] give the same figures in-process, for a
//! status page or a benchmark report.
//!
//! # Example
//!
//! ```
//! use switchyard_io_reactor::{Reactor, ReactorConfig, StallWatchdog, WatchdogConfig};
//!
//! let reactor = Reactor::new(&ReactorConfig::default()).unwrap();
//! let watchdog = StallWatchdog::start(reactor.handle(), &WatchdogConfig::default()).unwrap();
//! let wd = watchdog.clone();
//! reactor.block_on(async move {
//!     let _stage = wd.stage("parse");
//!     // ... synchronous work: a stall now would be blamed on "parse"
//! }).unwrap();
//! println!("{:?}", watchdog.stats());
//! watchdog.stop();
//! ```

use std::collections::HashMap;
use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use tokio::runtime::Handle;
use tokio::task::AbortHandle;

use crate::config::WatchdogConfig;
use crate::error::{Error, Kind, Result};
use crate::telemetry::WatchdogMetrics;

/// Largest lag the quantile histogram tells apart (longer ones saturate).
const MAX_TRACKED_LAG: Duration = Duration::from_secs(3600);

/// Heartbeat on the reactor, observed from a plain thread.
///
/// Cheap to clone; the heartbeat and the observer stop when
/// [`stop`](StallWatchdog::stop) is called or the last clone is dropped.
#[derive(Clone)]
pub struct StallWatchdog {
    owner: Arc<Owner>,
}

/// Counters of the watchdog since it started.
#[derive(Debug, Clone, Copy, Default)]
pub struct WatchdogStats {
    /// Heartbeats observed.
    pub beats: u64,
    /// Heartbeats later than the stall threshold.
    pub stalls: u64,
    /// The largest lag seen.
    pub max_lag: Duration,
}

/// Marks the stage running on this thread until dropped.
///
/// Meant for a synchronous stretch of work. Held across an `.await`, the
/// stage stays marked while the task is suspended and may be blamed for a
/// stall caused by someone else.
#[must_use = "the stage is marked only while the guard lives"]
pub struct StageGuard {
    state: Arc<State>,
    id: u64,
}

/// Stops the watchdog when the last [`StallWatchdog`] clone goes. The
/// heartbeat and the observer hold only [`State`], so this is never dropped
/// (and the observer never joined) on the observer thread itself.
struct Owner {
    state: Arc<State>,
    heartbeat: AbortHandle,
    observer: Mutex<Option<JoinHandle<()>>>,
}

struct State {
    interval: Duration,
    threshold: Duration,
    /// Origin of `probe_sent_us`, so a time fits in an atomic.
    epoch: Instant,
    /// When the outstanding probe was sent (microseconds since `epoch`, at
    /// least 1), or 0 when the heartbeat has answered every probe.
    probe_sent_us: AtomicU64,

    beats: AtomicU64,
    stalls: AtomicU64,
    max_lag_us: AtomicU64,
    /// At 40 beats a second (100 at most sensible settings), a mutex costs
    /// nothing worth avoiding.
    lags: Mutex<Histogram<u64>>,
    /// Marked stages by guard id: nested and concurrent guards each own an
    /// entry, so dropping one never unmarks another.
    stages: Mutex<HashMap<u64, (&'static str, Instant)>>,
    next_stage: AtomicU64,
    last_stall_stage: Mutex<Option<&'static str>>,
    /// Stalls the observer logged (a test hook).
    reported: AtomicU64,
    /// Set by `stop`, or when the heartbeat task is dropped with its runtime.
    finished: AtomicBool,
    metrics: WatchdogMetrics,
}

impl StallWatchdog {
    /// Starts the heartbeat on `handle` and the observer thread.
    pub fn start(handle: &Handle, config: &WatchdogConfig) -> Result<StallWatchdog> {
        config.validate()?;
        let max_us = u64::try_from(MAX_TRACKED_LAG.as_micros()).unwrap_or(u64::MAX);
        let lags = Histogram::new_with_bounds(1, max_us, 2).map_err(|e| Error::new(Kind::Runtime).with(e))?;
        let state = Arc::new(State {
            interval: Duration::from_millis(config.interval_ms),
            threshold: Duration::from_millis(config.stall_threshold_ms),
            epoch: Instant::now(),
            probe_sent_us: AtomicU64::new(0),
            beats: AtomicU64::new(0),
            stalls: AtomicU64::new(0),
            max_lag_us: AtomicU64::new(0),
            lags: Mutex::new(lags),
            stages: Mutex::new(HashMap::new()),
            next_stage: AtomicU64::new(0),
            last_stall_stage: Mutex::new(None),
            reported: AtomicU64::new(0),
            finished: AtomicBool::new(false),
            metrics: WatchdogMetrics::new(),
        });
        let (probe_tx, probe_rx) =
            std::os::unix::net::UnixStream::pair().map_err(|e| Error::new(Kind::Runtime).with(e))?;
        probe_rx.set_nonblocking(true).map_err(|e| Error::new(Kind::Runtime).with(e))?;
        let probe_rx = {
            // Registering the socket needs the reactor's context.
            let _entered = handle.enter();
            tokio::net::UnixStream::from_std(probe_rx).map_err(|e| Error::new(Kind::Runtime).with(e))?
        };
        let heartbeat = handle.spawn(heartbeat(Arc::clone(&state), probe_rx)).abort_handle();
        let observed = Arc::clone(&state);
        let observer = thread::Builder::new()
            .name("switchyard-watchdog".into())
            .spawn(move || observe(&observed, probe_tx));
        let observer = match observer {
            Ok(observer) => observer,
            Err(e) => {
                heartbeat.abort();
                return Err(Error::new(Kind::Runtime).with(e));
            }
        };
        let owner = Owner { state, heartbeat, observer: Mutex::new(Some(observer)) };
        Ok(StallWatchdog { owner: Arc::new(owner) })
    }

    /// Marks `stage` as running on the current thread until the guard drops.
    pub fn stage(&self, stage: &'static str) -> StageGuard {
        let state = &self.owner.state;
        let id = state.next_stage.fetch_add(1, Relaxed);
        lock(&state.stages).insert(id, (stage, Instant::now()));
        StageGuard { state: Arc::clone(state), id }
    }

    /// Counters so far.
    pub fn stats(&self) -> WatchdogStats {
        let state = &self.owner.state;
        WatchdogStats {
            beats: state.beats.load(Relaxed),
            stalls: state.stalls.load(Relaxed),
            max_lag: Duration::from_micros(state.max_lag_us.load(Relaxed)),
        }
    }

    /// The lag below which fraction `q` of heartbeats fell (`q` in 0..=1;
    /// zero before the first beat).
    pub fn lag_quantile(&self, q: f64) -> Duration {
        let lags = lock(&self.owner.state.lags);
        if lags.is_empty() {
            return Duration::ZERO;
        }
        Duration::from_micros(lags.value_at_quantile(q.clamp(0.0, 1.0)))
    }

    /// The stage blamed for the most recent stall the observer caught while
    /// it was happening (the longest-marked one when several were), or
    /// `None` when no stage was marked then or no stall was caught yet.
    pub fn last_stall_stage(&self) -> Option<&'static str> {
        *lock(&self.owner.state.last_stall_stage)
    }

    /// Stops the heartbeat and joins the observer thread. Idempotent.
    pub fn stop(&self) {
        self.owner.stop();
    }
}

impl Owner {
    fn stop(&self) {
        self.state.finished.store(true, Relaxed);
        self.heartbeat.abort();
        let Some(observer) = lock(&self.observer).take() else { return };
        observer.thread().unpark();
        if observer.thread().id() != thread::current().id() {
            // The observer only ever panics on a bug; nothing to recover.
            let _ = observer.join();
        }
    }
}

impl Drop for Owner {
    fn drop(&mut self) {
        self.stop();
    }
}

impl Drop for StageGuard {
    fn drop(&mut self) {
        lock(&self.state.stages).remove(&self.id);
    }
}

impl State {
    fn since_epoch_us(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_micros()).unwrap_or(u64::MAX)
    }

    fn record_beat(&self, lag: Duration) {
        self.metrics.beat(lag);
        let lag_us = u64::try_from(lag.as_micros()).unwrap_or(u64::MAX);
        lock(&self.lags).saturating_record(lag_us);
        self.max_lag_us.fetch_max(lag_us, Relaxed);
        if lag > self.threshold {
            self.stalls.fetch_add(1, Relaxed);
            self.metrics.stall();
        }
        self.beats.fetch_add(1, Relaxed);
    }

    /// Marked stage names, longest-marked first, without repeats.
    fn marked_stages(&self) -> Vec<&'static str> {
        let mut marked: Vec<_> = lock(&self.stages).values().copied().collect();
        marked.sort_by_key(|&(_, since)| since);
        let mut names: Vec<&'static str> = Vec::with_capacity(marked.len());
        for (name, _) in marked {
            if !names.contains(&name) {
                names.push(name);
            }
        }
        names
    }
}

async fn heartbeat(state: Arc<State>, mut probe: tokio::net::UnixStream) {
    use tokio::io::AsyncReadExt;
    /// Dropped with the task: by `stop`'s abort or by the runtime shutting down.
    struct Finish(Arc<State>);
    impl Drop for Finish {
        fn drop(&mut self) {
            self.0.finished.store(true, Relaxed);
        }
    }
    let _finish = Finish(Arc::clone(&state));
    let mut buf = [0u8; 64];
    loop {
        match probe.read(&mut buf).await {
            Ok(0) | Err(_) => return, // the observer has gone
            Ok(_) => {}
        }
        let sent = state.probe_sent_us.load(Relaxed);
        if sent == 0 {
            continue;
        }
        let lag_us = state.since_epoch_us().saturating_sub(sent);
        state.record_beat(Duration::from_micros(lag_us));
        state.probe_sent_us.store(0, Relaxed);
    }
}

fn observe(state: &State, mut probe: std::os::unix::net::UnixStream) {
    use std::io::Write;
    let threshold_us = u64::try_from(state.threshold.as_micros()).unwrap_or(u64::MAX);
    // The probe a stall was last reported for: one report per stall.
    let mut reported_for = None;
    loop {
        thread::park_timeout(state.interval);
        if state.finished.load(Relaxed) {
            return;
        }
        let now = state.since_epoch_us().max(1);
        let sent = state.probe_sent_us.load(Relaxed);
        if sent == 0 {
            // The last probe was answered: send the next one.
            state.probe_sent_us.store(now, Relaxed);
            if probe.write_all(&[1]).is_err() {
                return; // the heartbeat (and its runtime) has gone
            }
            continue;
        }
        let overdue_us = now.saturating_sub(sent);
        if overdue_us <= threshold_us || reported_for == Some(sent) {
            continue;
        }
        reported_for = Some(sent);
        let stages = state.marked_stages();
        *lock(&state.last_stall_stage) = stages.first().copied();
        state.reported.fetch_add(1, Relaxed);
        let stage = if stages.is_empty() { "none".to_owned() } else { stages.join(",") };
        tracing::warn!(stalled_ms = overdue_us / 1000, stage = %stage, "reactor stalled");
    }
}

/// A poisoned lock here only means a panic elsewhere mid-update of plain
/// counters or a map; the data is still usable.
fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

impl fmt::Debug for StallWatchdog {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StallWatchdog")
            .field("interval", &self.owner.state.interval)
            .field("stall_threshold", &self.owner.state.threshold)
            .field("stats", &self.stats())
            .finish()
    }
}

impl fmt::Debug for StageGuard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let stage = lock(&self.state.stages).get(&self.id).map(|&(name, _)| name);
        f.debug_struct("StageGuard").field("stage", &stage).finish()
    }
}

#[cfg(test)]
mod tests;
