//! `/status`: what an operator asks first, as JSON: busy against capacity on
//! both sides, queue depths, the oldest task in flight, per-pipeline counts
//! the last failures with their reasons, and the last tasks cancelled at
//! their deadline.

use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;

use serde::Serialize;

use switchyard::{Engine, Running};
use switchyard_pipeline::PipelineCounters;

/// One pipeline's counters as reported.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct PipelineStatus {
    /// Configured name (`pz1` for the built-in zaps).
    pub name: String,
    /// Polls that finished without error.
    pub polls_ok: u64,
    /// Polls that failed.
    pub polls_failed: u64,
    /// Items delivered.
    pub delivered: u64,
    /// Failed webhook attempts, retries included.
    pub delivery_failures: u64,
    /// Items its transform rejected as malformed.
    pub rejected: u64,
    /// Times its dedup state was found lost (durable pipelines; any is worth a look).
    pub state_lost: u64,
}

/// One Redis stream of the durable service, as last sampled (the engine's
/// own reading of a stream, shown as it is).
pub type StreamStatus = switchyard::source::StreamSnapshot;

/// Everything `/status` shows.
#[derive(Debug, Clone, Serialize)]
pub struct StatusSnapshot {
    /// Execution model.
    pub model: String,
    /// Seconds since the service started.
    pub uptime_s: f64,
    /// Task latency p99 over the last 10 to 20 seconds, milliseconds.
    pub latency_p99_ms: f64,
    /// Admission side.
    pub tasks: TaskStatus,
    /// CPU pool (absent unless `hybrid`).
    pub cpu: Option<CpuStatus>,
    /// Reactor health.
    pub reactor: ReactorStatus,
    /// MySQL pool occupancy, when there is one pool.
    pub mysql: Option<MysqlStatus>,
    /// Per pipeline.
    pub pipelines: Vec<PipelineStatus>,
    /// The durable service's streams (empty otherwise).
    pub streams: Vec<StreamStatus>,
    /// Upstream hosts: every configured one, and any other whose breaker
    /// is not closed, whose concurrency limit is down or that a
    /// `Retry-After` holds.
    pub hosts: Vec<switchyard::io_reactor::HostStatus>,
    /// Most recent failures, oldest first.
    pub recent_failures: Vec<FailureStatus>,
    /// Most recent tasks cancelled at their deadline (at most 20 per run),
    /// oldest first.
    pub recent_timeouts: Vec<TimeoutStatus>,
}

/// Admission and outcomes.
#[derive(Debug, Clone, Serialize)]
#[allow(missing_docs)]
pub struct TaskStatus {
    pub in_flight: usize,
    pub max_in_flight: usize,
    pub admitted: u64,
    pub ok: u64,
    pub failed: u64,
    pub retried: u64,
    pub panicked: u64,
    pub abandoned: u64,
    /// Cancelled at their deadline and handed back for a retry.
    pub timed_out: u64,
    /// The engine-wide task timeout (a pipeline may set its own).
    pub task_timeout_ms: u64,
    /// Age of the longest-running admitted task.
    pub oldest_in_flight_s: f64,
}

/// The CPU side.
#[derive(Debug, Clone, Serialize)]
#[allow(missing_docs)]
pub struct CpuStatus {
    pub threads: usize,
    pub busy: usize,
    pub queued: usize,
    pub queue_capacity: usize,
    /// Producers blocked waiting for a queue slot (backpressure).
    pub waiting_producers: usize,
    pub completed: u64,
    pub panicked: u64,
    pub rejected: u64,
    /// CPU steps that waited `cpu.slot_wait_ms` for a slot and failed as overloaded.
    pub overloaded: u64,
    /// How long a CPU step may wait for a slot.
    pub slot_wait_ms: u64,
}

/// The reactor side.
#[derive(Debug, Clone, Serialize)]
#[allow(missing_docs)]
pub struct ReactorStatus {
    pub lag_p99_ms: f64,
    pub max_lag_ms: f64,
    pub stalls: u64,
    pub last_stall_stage: Option<&'static str>,
}

/// MySQL pool occupancy.
#[derive(Debug, Clone, Serialize)]
#[allow(missing_docs)]
pub struct MysqlStatus {
    pub in_use: usize,
    pub waiters: usize,
    pub max: usize,
}

/// One recent failure.
#[derive(Debug, Clone, Serialize)]
#[allow(missing_docs)]
pub struct FailureStatus {
    pub task: String,
    pub outcome: &'static str,
    pub reason: String,
}

/// One task cancelled at its deadline.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct TimeoutStatus {
    /// The task's label: the pipeline (a poll) or the pipeline and item (a delivery).
    pub task: String,
    /// The timeout it ran under.
    pub timeout_ms: u64,
    /// When its deadline was, milliseconds since the Unix epoch.
    pub deadline_unix_ms: u64,
    /// How far past the deadline it was when cancelled.
    pub over_by_ms: u64,
    /// Which delivery of its item it was.
    pub attempt: u32,
}

impl From<switchyard::TimeoutRecord> for TimeoutStatus {
    fn from(t: switchyard::TimeoutRecord) -> Self {
        let ms = |d: Duration| u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
        TimeoutStatus {
            task: t.label,
            timeout_ms: ms(t.timeout),
            deadline_unix_ms: t.deadline_unix_ms,
            over_by_ms: ms(t.overrun),
            attempt: t.attempt,
        }
    }
}

/// Task latencies of the recent past: two 10-second windows, the current
/// and the one before, so a reading always covers at least 10 seconds.
#[derive(Debug)]
pub struct LatencyWindow {
    windows: Mutex<(Instant, Histogram<u64>, Histogram<u64>)>,
}

/// Length of one latency window.
const LATENCY_WINDOW: Duration = Duration::from_secs(10);

impl Default for LatencyWindow {
    fn default() -> Self {
        let empty = || Histogram::new_with_bounds(1, 3_600_000, 2).expect("static bounds are valid");
        LatencyWindow { windows: Mutex::new((Instant::now(), empty(), empty())) }
    }
}

impl LatencyWindow {
    /// Records one task's latency.
    pub fn record(&self, latency: Duration) {
        let mut w = self.windows.lock().expect("latency lock");
        self.rotate(&mut w);
        w.1.saturating_record(u64::try_from(latency.as_millis()).unwrap_or(u64::MAX).max(1));
    }

    /// p99 of the recent latencies in milliseconds (0 with none).
    pub fn p99_ms(&self) -> f64 {
        let mut w = self.windows.lock().expect("latency lock");
        self.rotate(&mut w);
        let mut both = w.1.clone();
        let _ = both.add(&w.2);
        if both.is_empty() {
            0.0
        } else {
            both.value_at_quantile(0.99) as f64
        }
    }

    fn rotate(&self, w: &mut (Instant, Histogram<u64>, Histogram<u64>)) {
        if w.0.elapsed() >= LATENCY_WINDOW {
            std::mem::swap(&mut w.1, &mut w.2);
            w.1.reset();
            w.0 = Instant::now();
        }
    }
}

/// Where the snapshot's numbers come from.
#[derive(Debug)]
pub struct StatusSource {
    pub(crate) latency: Arc<LatencyWindow>,
    pub(crate) engine: Engine,
    /// The engine's runs (one, or the durable service's polls and deliveries).
    pub(crate) runs: Vec<Arc<Running>>,
    pub(crate) pipelines: Vec<(String, Arc<PipelineCounters>)>,
    /// The last sample of each stream, kept by the durable service.
    /// The durable streams, as their consumers last sampled them.
    pub(crate) streams: Vec<switchyard::source::LatestSnapshot>,
    pub(crate) started: Instant,
}

impl StatusSource {
    /// Takes a snapshot now.
    pub fn snapshot(&self) -> StatusSnapshot {
        let run = self.runs.iter().map(|r| r.stats()).fold(switchyard::RunStats::default(), add_stats);
        let cpu = self.engine.cpu_pool().map(|pool| {
            let s = pool.stats();
            CpuStatus {
                threads: s.threads,
                busy: s.running,
                queued: s.queued,
                queue_capacity: s.queue_capacity,
                waiting_producers: s.waiting_producers,
                completed: s.completed,
                panicked: s.panicked,
                rejected: s.rejected,
                overloaded: s.overloaded,
                slot_wait_ms: self.engine.config().cpu.slot_wait_ms,
            }
        });
        let watchdog = self.engine.watchdog();
        let w = watchdog.stats();
        StatusSnapshot {
            model: self.engine.model().to_string(),
            uptime_s: self.started.elapsed().as_secs_f64(),
            latency_p99_ms: self.latency.p99_ms(),
            tasks: TaskStatus {
                in_flight: run.in_flight,
                max_in_flight: self.engine.max_in_flight(),
                admitted: run.admitted,
                ok: run.ok,
                failed: run.failed,
                retried: run.retried,
                panicked: run.panicked,
                abandoned: run.abandoned,
                timed_out: run.timed_out,
                task_timeout_ms: self.engine.config().task_timeout_ms,
                oldest_in_flight_s: self
                    .runs
                    .iter()
                    .filter_map(|r| r.oldest_in_flight())
                    .max()
                    .map_or(0.0, |d| d.as_secs_f64()),
            },
            cpu,
            reactor: ReactorStatus {
                lag_p99_ms: watchdog.lag_quantile(0.99).as_secs_f64() * 1e3,
                max_lag_ms: w.max_lag.as_secs_f64() * 1e3,
                stalls: w.stalls,
                last_stall_stage: watchdog.last_stall_stage(),
            },
            hosts: self.engine.http_hosts(),
            mysql: self.runs.first().and_then(|r| r.mysql_status()).map(|m| MysqlStatus {
                in_use: m.in_use,
                waiters: m.waiters,
                max: m.max,
            }),
            pipelines: self
                .pipelines
                .iter()
                .map(|(name, c)| PipelineStatus {
                    name: name.clone(),
                    polls_ok: c.polls_ok.load(Ordering::Relaxed),
                    polls_failed: c.polls_failed.load(Ordering::Relaxed),
                    delivered: c.delivered.load(Ordering::Relaxed),
                    delivery_failures: c.delivery_failures.load(Ordering::Relaxed),
                    rejected: c.rejected.load(Ordering::Relaxed),
                    state_lost: c.state_lost.load(Ordering::Relaxed),
                })
                .collect(),
            streams: self.streams.iter().filter_map(|s| s.get()).collect(),
            recent_failures: self
                .runs
                .iter()
                .flat_map(|r| r.recent_failures())
                .map(|f| FailureStatus { task: f.label, outcome: f.outcome.as_label(), reason: f.reason })
                .collect(),
            recent_timeouts: recent_timeouts(&self.runs),
        }
    }
}

/// The runs' recent timeouts, oldest first by deadline.
fn recent_timeouts(runs: &[Arc<Running>]) -> Vec<TimeoutStatus> {
    let mut all: Vec<TimeoutStatus> =
        runs.iter().flat_map(|r| r.recent_timeouts()).map(TimeoutStatus::from).collect();
    all.sort_by_key(|t| t.deadline_unix_ms);
    all
}

/// Two runs' counters as one.
pub(crate) fn add_stats(a: switchyard::RunStats, b: switchyard::RunStats) -> switchyard::RunStats {
    switchyard::RunStats {
        admitted: a.admitted + b.admitted,
        in_flight: a.in_flight + b.in_flight,
        peak_in_flight: a.peak_in_flight.max(b.peak_in_flight),
        ok: a.ok + b.ok,
        failed: a.failed + b.failed,
        retried: a.retried + b.retried,
        panicked: a.panicked + b.panicked,
        abandoned: a.abandoned + b.abandoned,
        timed_out: a.timed_out + b.timed_out,
        source_errors: a.source_errors + b.source_errors,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_timeout_is_shown_in_milliseconds() {
        let record = switchyard::TimeoutRecord {
            label: "orders".to_string(),
            timeout: Duration::from_secs(30),
            deadline_unix_ms: 1_700_000_000_000,
            overrun: Duration::from_micros(2_500),
            attempt: 2,
        };
        let shown = serde_json::to_value(TimeoutStatus::from(record)).unwrap();
        let expected = serde_json::json!({
            "task": "orders", "timeout_ms": 30_000, "deadline_unix_ms": 1_700_000_000_000u64,
            "over_by_ms": 2, "attempt": 2
        });
        assert_eq!(shown, expected);
    }

    #[test]
    fn the_latency_window_reports_recent_p99() {
        let w = LatencyWindow::default();
        assert_eq!(w.p99_ms(), 0.0);
        for ms in 1..=100 {
            w.record(Duration::from_millis(ms));
        }
        let p99 = w.p99_ms();
        assert!((98.0..=100.0).contains(&p99), "{p99}");
    }
}
