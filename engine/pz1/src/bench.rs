//! The open-loop PZ-1 driver (`docs/pz1.md`): releases tasks on the schedule, keeps a
//! zap's polls serial, feeds the engine, and turns what happened into the
//! spec's [`Report`].
//!
//! Latency counts from each task's *scheduled* release time, so a driver or
//! engine that falls behind shows it as latency instead of hiding it. A poll
//! whose zap is still busy waits in the driver (its latency still counts
//! from its release) and is fed the moment the previous poll finishes.
//!
//! # Backpressure
//!
//! The source between driver and engine is bounded; when the engine is full
//! the driver waits, and tasks not yet fed cost nothing but their schedule
//! entry, which is generated lazily.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

use switchyard::telemetry::ProcessSample;
use switchyard::{Engine, Error, Running, Source, TaskContext, TaskError};
use switchyard_pipeline::{Pipeline, PollJob};
use tokio::sync::mpsc;

use crate::cost::RoleCpu;
use crate::delay::task_delays;
use crate::ideal::IdealClock;
use crate::params::Params;
use crate::report::{percentile, Report};
use crate::schedule::{schedule, Task};
use crate::task_queue::{self, Intake, QueuedTask, TaskQueue};

/// What happened to one released task.
#[derive(Debug, Clone, PartialEq)]
pub struct TaskRecord {
    /// Position in the schedule.
    pub index: u64,
    /// Scheduled release, seconds after start.
    pub release_s: f64,
    /// When the engine started running it, seconds after start.
    pub start_s: f64,
    /// When it finished, seconds after start.
    pub end_s: f64,
    /// Finished without error.
    pub ok: bool,
    /// Upstream requests it made.
    pub requests: u32,
}

/// A snapshot for progress displays.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Progress {
    /// Seconds since start.
    pub elapsed_s: f64,
    /// Tasks released so far.
    pub released: u64,
    /// Tasks finished (ok or not).
    pub finished: u64,
    /// Tasks that failed.
    pub failed: u64,
    /// Tasks in the engine now.
    pub in_flight: usize,
    /// Tasks in the whole schedule.
    pub scheduled: u64,
}

/// Everything a bench run produced.
#[derive(Debug, Clone)]
pub struct BenchOutcome {
    /// The spec's figures.
    pub report: Report,
    /// Every finished task.
    pub records: Vec<TaskRecord>,
    /// Tasks released but not finished by the drain deadline.
    pub unfinished: u64,
    /// The CPU time of one task's CPU steps measured alone, used by the ideal.
    pub cpu_alone_s: f64,
    /// The process's CPU over the measured window `[warmup, duration)`, by
    /// the role of the thread that spent it (`None` where `/proc` is missing).
    pub window_cpu: Option<RoleCpu>,
    /// A few failure reasons, for the operator.
    pub sample_failures: Vec<String>,
}

struct Done {
    zap_index: usize,
    record: TaskRecord,
    failure: Option<String>,
}

/// Runs PZ-1 on `engine` with `pipeline` (see
/// [`pz1_pipeline`](crate::pz1_pipeline)), handing tasks over through
/// `queue`, calling `progress` about five times a second. The engine's own
/// bounds apply; `params` must be valid.
pub async fn run_bench(
    engine: &Engine,
    pipeline: Arc<Pipeline>,
    params: &Params,
    model_label: &str,
    cpu_alone_s: f64,
    queue: &TaskQueue,
    mut progress: impl FnMut(Progress),
) -> Result<BenchOutcome, Error> {
    let zaps = params.resolved_zaps() as usize;
    let scheduled = schedule(params).count() as u64;
    let in_flight_cap = engine.max_in_flight();
    let (producer, intake) = task_queue::open(queue, in_flight_cap.max(16)).await?;
    let (done_tx, mut done_rx) = mpsc::channel::<Done>(in_flight_cap + 16);
    let t0 = Instant::now();
    let running = match intake {
        Intake::Memory(source) => start_tasks(engine, source, pipeline, done_tx, t0).await?,
        Intake::Stream(source) => {
            tokio::spawn(source.maintenance());
            start_tasks(engine, source, pipeline, done_tx, t0).await?
        }
    };

    let cpu_window = CpuWindow::start(params, t0);
    let mut tasks = schedule(params).peekable();
    let mut zap_busy = vec![false; zaps];
    let mut zap_pending: Vec<VecDeque<Task>> = (0..zaps).map(|_| VecDeque::new()).collect();
    let (mut released, mut outstanding) = (0u64, 0u64);
    let mut records = Vec::with_capacity(scheduled as usize);
    let mut sample_failures = Vec::new();
    let mut failed = 0u64;
    let deadline = t0 + Duration::from_secs_f64(params.duration_s + params.drain_s);
    let mut ticker = tokio::time::interval(Duration::from_millis(200));

    let feed = |task: Task| QueuedTask {
        index: task.index,
        zap_index: (task.index % zaps as u64) as usize,
        zap: task.zap,
        seq: task.seq,
        release_s: task.release_s,
    };

    loop {
        if tasks.peek().is_none() && outstanding == 0 {
            break;
        }
        let next_release = tasks.peek().map(|t| t0 + Duration::from_secs_f64(t.release_s));
        tokio::select! {
            biased;
            Some(done) = done_rx.recv() => {
                outstanding -= 1;
                if !done.record.ok {
                    failed += 1;
                    if let (Some(why), true) = (done.failure, sample_failures.len() < 5) {
                        sample_failures.push(why);
                    }
                }
                records.push(done.record);
                zap_busy[done.zap_index] = false;
                if let Some(task) = zap_pending[done.zap_index].pop_front() {
                    zap_busy[done.zap_index] = true;
                    if !producer.send(feed(task)).await {
                        break;
                    }
                }
            }
            _ = sleep_until_opt(next_release), if next_release.is_some() => {
                let task = tasks.next().expect("peeked");
                released += 1;
                outstanding += 1;
                let zap_index = (task.index % zaps as u64) as usize;
                if zap_busy[zap_index] {
                    zap_pending[zap_index].push_back(task);
                } else {
                    zap_busy[zap_index] = true;
                    if !producer.send(feed(task)).await {
                        break;
                    }
                }
            }
            _ = ticker.tick() => {
                let stats = running.stats();
                progress(Progress {
                    elapsed_s: t0.elapsed().as_secs_f64(),
                    released,
                    finished: records.len() as u64,
                    failed,
                    in_flight: stats.in_flight,
                    scheduled,
                });
            }
            _ = tokio::time::sleep_until(deadline.into()) => break,
        }
    }
    drop(producer);
    // Tasks still running at the drain deadline are not completed.
    let _ = running.shutdown(Duration::from_millis(100)).await;
    let unfinished = outstanding;
    if let TaskQueue::Stream { redis, stream } = queue {
        task_queue::delete_stream(redis, stream).await?;
    }
    let (cpu_per_wall_s, window_cpu) = cpu_window.finish();
    let report = summarise(params, model_label, cpu_alone_s, &records, cpu_per_wall_s);
    Ok(BenchOutcome { report, records, unfinished, cpu_alone_s, window_cpu, sample_failures })
}

/// Starts the engine on `source`: each task runs one poll and reports what
/// happened to the driver.
async fn start_tasks<S: Source<Item = QueuedTask>>(
    engine: &Engine,
    source: S,
    pipeline: Arc<Pipeline>,
    done_tx: mpsc::Sender<Done>,
    t0: Instant,
) -> Result<Running, Error> {
    engine
        .start(source, move |cx: TaskContext, job: QueuedTask| {
            let (pipeline, done_tx) = (pipeline.clone(), done_tx.clone());
            async move {
                let start_s = t0.elapsed().as_secs_f64();
                let released_at = t0 + Duration::from_secs_f64(job.release_s);
                let poll = PollJob { trigger: job.zap, seq: job.seq, released_at };
                let result = pipeline.poll(&cx, &poll).await;
                let end_s = t0.elapsed().as_secs_f64();
                let (ok, requests, failure) = match &result {
                    Ok(o) => (true, o.requests, None),
                    Err(e) => (false, e.partial.requests, Some(e.to_string())),
                };
                let record =
                    TaskRecord { index: job.index, release_s: job.release_s, start_s, end_s, ok, requests };
                // The channel holds one slot per in-flight task, so this never waits long.
                let _ = done_tx.send(Done { zap_index: job.zap_index, record, failure }).await;
                result.map(drop).map_err(TaskError::fatal)
            }
        })
        .await
}

async fn sleep_until_opt(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at.into()).await,
        None => std::future::pending().await,
    }
}

/// Process CPU time at the start and end of the measured window, in all and
/// by thread role, read by a plain thread at those moments: the driver's
/// loop may be blocked on a full engine, and a starved reactor may run its
/// timers late.
struct CpuWindow {
    window_s: f64,
    readings: std::thread::JoinHandle<[(Option<Duration>, RoleCpu); 2]>,
}

impl CpuWindow {
    fn start(params: &Params, t0: Instant) -> Self {
        let (warmup, end) =
            (Duration::from_secs_f64(params.warmup_s), Duration::from_secs_f64(params.duration_s));
        let readings = std::thread::spawn(move || {
            let read_at = |at: Duration| {
                std::thread::sleep((t0 + at).saturating_duration_since(Instant::now()));
                (ProcessSample::read().map(|s| s.cpu), RoleCpu::read())
            };
            [read_at(warmup), read_at(end)]
        });
        CpuWindow { window_s: params.duration_s - params.warmup_s, readings }
    }

    /// CPU seconds per wall second over the window, and the window's CPU by
    /// thread role (waits for the window's end).
    fn finish(self) -> (f64, Option<RoleCpu>) {
        match self.readings.join() {
            Ok([(Some(a), roles_a), (Some(b), roles_b)]) => {
                ((b - a).as_secs_f64() / self.window_s, Some(roles_b.since(&roles_a)))
            }
            _ => (f64::NAN, None),
        }
    }
}

/// One finished task's figures, as the report computes them.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TaskFigures {
    /// Position in the schedule.
    pub index: u64,
    /// When it finished, seconds after start.
    pub end_s: f64,
    /// Finished without error.
    pub ok: bool,
    /// Released in the measured window `[warmup, duration)`.
    pub measured: bool,
    /// Latency from its scheduled release, milliseconds.
    pub latency_ms: f64,
    /// Latency over its ideal latency (see [`IdealClock`]).
    pub slowdown: f64,
    /// (finish - actual start) over (its delays + the CPU step alone).
    pub exec_slowdown: f64,
}

/// Each finished task's latency and slowdowns, in schedule order. Tasks the
/// schedule released but `records` lacks (unfinished) are left out; the
/// ideal clock still runs through them, as it does for the report.
pub fn task_figures(params: &Params, cpu_alone_s: f64, records: &[TaskRecord]) -> Vec<TaskFigures> {
    let mut by_index: Vec<&TaskRecord> = records.iter().collect();
    by_index.sort_by_key(|r| r.index);
    let mut finished = by_index.iter().peekable();
    let mut clock = IdealClock::new();
    let mut figures = Vec::with_capacity(records.len());
    for task in schedule(params) {
        let new_items = if task.seq == 1 { 0 } else { params.fresh as u32 };
        let (poll_delay, action_delays) = task_delays(&task.zap, task.seq, new_items, params);
        let work_s = (poll_delay + action_delays.iter().sum::<u64>()) as f64 / 1e3 + cpu_alone_s;
        let (_, ideal_end) = clock.ideal(&task.zap, task.release_s, work_s);
        let Some(r) = (match finished.peek() {
            Some(r) if r.index == task.index => finished.next(),
            _ => None,
        }) else {
            continue;
        };
        let latency_s = r.end_s - r.release_s;
        figures.push(TaskFigures {
            index: r.index,
            end_s: r.end_s,
            ok: r.ok,
            measured: params.in_measured_window(task.release_s),
            latency_ms: latency_s * 1e3,
            slowdown: latency_s / (ideal_end - r.release_s),
            exec_slowdown: (r.end_s - r.start_s) / work_s,
        });
    }
    figures
}

/// The spec's figures from the finished tasks.
pub fn summarise(
    params: &Params,
    model: &str,
    cpu_alone_s: f64,
    records: &[TaskRecord],
    cpu_per_wall_s: f64,
) -> Report {
    let window = params.duration_s - params.warmup_s;
    let measured = schedule(params).filter(|t| params.in_measured_window(t.release_s)).count() as u64;
    let (mut latency, mut slowdown, mut exec_slowdown) = (Vec::new(), Vec::new(), Vec::new());
    for f in task_figures(params, cpu_alone_s, records).iter().filter(|f| f.measured && f.ok) {
        latency.push(f.latency_ms);
        slowdown.push(f.slowdown);
        exec_slowdown.push(f.exec_slowdown);
    }
    let completed = latency.len() as u64;
    for v in [&mut latency, &mut slowdown, &mut exec_slowdown] {
        v.sort_by(f64::total_cmp);
    }
    let in_window = |s: f64| s >= params.warmup_s && s < params.duration_s;
    let done_in_window: Vec<&TaskRecord> = records.iter().filter(|r| r.ok && in_window(r.end_s)).collect();
    let requests: u64 = records.iter().filter(|r| in_window(r.end_s)).map(|r| u64::from(r.requests)).sum();
    let p = |v: &[f64], q: f64| percentile(v, q).unwrap_or(f64::NAN);
    Report {
        model: model.to_string(),
        rate: params.rate,
        rounds: params.rounds,
        completed,
        errors: measured - completed,
        throughput: done_in_window.len() as f64 / window,
        latency_p50_ms: p(&latency, 50.0),
        latency_p99_ms: p(&latency, 99.0),
        latency_max_ms: latency.last().copied().unwrap_or(f64::NAN),
        slowdown_p50: p(&slowdown, 50.0),
        slowdown_p99: p(&slowdown, 99.0),
        exec_slowdown_p50: p(&exec_slowdown, 50.0),
        exec_slowdown_p99: p(&exec_slowdown, 99.0),
        cpu_per_wall_s,
        peak_rss_mb: ProcessSample::peak_rss_bytes().map_or(f64::NAN, |b| b as f64 / (1024.0 * 1024.0)),
        upstream_rps: requests as f64 / window,
    }
}
