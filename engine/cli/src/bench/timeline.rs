//! `--timeline FILE`: what happened in each second of a bench run.
//!
//! A run's report gives one p99 for a minute; when that p99 is bad, the
//! question is *when* and *why*. The timeline answers it second by second:
//! completions and their latency and slowdown (from the finished tasks), and
//! beside them what the engine itself reports through its metrics: tasks in
//! flight, the CPU pool's queue and busy threads, reactor lag, and the
//! latency of every Redis command, MySQL operation and upstream request.
//! It also notes the process's CPU and the machine's (busy and stolen), so a
//! hiccup can be told apart as the engine's, a store's, the upstream's or
//! the operating system's.
//!
//! The engine's metrics reach the timeline through a [`metrics::Recorder`]
//! of its own, installed in the child before the engine is built (the engine
//! resolves its metric handles once, when built). A sampler thread reads the
//! gauges ten times a second and takes each second's histogram samples, so a
//! starved reactor cannot delay the readings it is being judged by.

use std::collections::HashMap;
use std::io::Write as _;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use metrics::{
    Counter, Gauge, GaugeFn, Histogram, HistogramFn, Key, KeyName, Metadata, Recorder, SharedString, Unit,
};
use serde::Serialize;
use switchyard::protocol::catalogue as cat;
use switchyard::telemetry::ProcessSample;
use switchyard_pz1::{percentile, TaskFigures};

use super::machine::MachineCpu;

/// Gauges the timeline follows: its column stem and the metric.
const GAUGES: [(&str, &str); 4] = [
    ("in_flight", cat::TASKS_IN_FLIGHT.name),
    ("cpu_queue_depth", cat::CPU_QUEUE_DEPTH.name),
    ("cpu_busy_threads", cat::CPU_BUSY_THREADS.name),
    ("mysql_waiters", cat::MYSQL_POOL_WAITERS.name),
];

/// Histograms the timeline follows (values in seconds): column stem, metric.
const HISTOGRAMS: [(&str, &str); 5] = [
    ("reactor_lag", cat::REACTOR_LAG.name),
    ("redis", cat::REDIS_COMMAND_DURATION.name),
    ("mysql", cat::MYSQL_OPERATION_DURATION.name),
    ("upstream", cat::HTTP_REQUEST_DURATION.name),
    ("cpu_queue_wait", cat::TASK_CPU_QUEUE_WAIT.name),
];

/// Gauge readings per second.
const GAUGE_READS_PER_SECOND: u32 = 10;
/// Samples a histogram keeps per second; past it, further samples are
/// dropped (counted, not stored), so a flood cannot grow memory.
const MAX_SAMPLES_PER_SECOND: usize = 200_000;

/// A gauge's value, as f64 bits.
#[derive(Debug, Default)]
struct GaugeCell(AtomicU64);

impl GaugeCell {
    fn get(&self) -> f64 {
        f64::from_bits(self.0.load(Ordering::Relaxed))
    }
    fn update(&self, f: impl Fn(f64) -> f64) {
        let _ = self.0.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |bits| {
            Some(f(f64::from_bits(bits)).to_bits())
        });
    }
}

impl GaugeFn for GaugeCell {
    fn increment(&self, value: f64) {
        self.update(|v| v + value);
    }
    fn decrement(&self, value: f64) {
        self.update(|v| v - value);
    }
    fn set(&self, value: f64) {
        self.0.store(value.to_bits(), Ordering::Relaxed);
    }
}

/// One second's samples of a histogram (every label set together).
#[derive(Debug, Default)]
struct Samples {
    values: Mutex<Vec<f64>>,
    count: AtomicU64,
}

impl Samples {
    fn take(&self) -> (Vec<f64>, u64) {
        let values = std::mem::take(&mut *self.values.lock().unwrap_or_else(|e| e.into_inner()));
        (values, self.count.swap(0, Ordering::Relaxed))
    }
}

impl HistogramFn for Samples {
    fn record(&self, value: f64) {
        self.count.fetch_add(1, Ordering::Relaxed);
        let mut values = self.values.lock().unwrap_or_else(|e| e.into_inner());
        if values.len() < MAX_SAMPLES_PER_SECOND {
            values.push(value);
        }
    }
}

#[derive(Debug, Default)]
struct Registry {
    /// One cell per key (name and labels), as any recorder keeps them.
    gauges: Mutex<HashMap<Key, Arc<GaugeCell>>>,
    /// One buffer per followed histogram name.
    histograms: HashMap<&'static str, Arc<Samples>>,
}

impl Registry {
    fn gauge_sum(&self, name: &str) -> f64 {
        let gauges = self.gauges.lock().unwrap_or_else(|e| e.into_inner());
        gauges.iter().filter(|(k, _)| k.name() == name).map(|(_, c)| c.get()).sum()
    }
}

/// The recorder the child installs when asked for a timeline. Metrics the
/// timeline does not follow cost nothing (no-op handles).
#[derive(Debug)]
pub(super) struct TimelineRecorder(Arc<Registry>);

impl TimelineRecorder {
    /// Installs the recorder for the whole process; returns what the
    /// sampler reads. Call before the engine is built.
    pub(super) fn install() -> anyhow::Result<TimelineSource> {
        let registry = Arc::new(Registry {
            gauges: Mutex::default(),
            histograms: HISTOGRAMS.iter().map(|&(_, name)| (name, Arc::new(Samples::default()))).collect(),
        });
        metrics::set_global_recorder(TimelineRecorder(registry.clone()))
            .map_err(|e| anyhow::anyhow!("installing the timeline recorder: {e}"))?;
        Ok(TimelineSource(registry))
    }
}

impl Recorder for TimelineRecorder {
    fn describe_counter(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn describe_gauge(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn describe_histogram(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}

    fn register_counter(&self, _: &Key, _: &Metadata<'_>) -> Counter {
        Counter::noop()
    }

    fn register_gauge(&self, key: &Key, _: &Metadata<'_>) -> Gauge {
        if !GAUGES.iter().any(|&(_, name)| name == key.name()) {
            return Gauge::noop();
        }
        let mut gauges = self.0.gauges.lock().unwrap_or_else(|e| e.into_inner());
        Gauge::from_arc(gauges.entry(key.clone()).or_default().clone())
    }

    fn register_histogram(&self, key: &Key, _: &Metadata<'_>) -> Histogram {
        match self.0.histograms.get(key.name()) {
            Some(samples) => Histogram::from_arc(samples.clone()),
            None => Histogram::noop(),
        }
    }
}

/// What the sampler reads: the installed recorder's registry.
#[derive(Debug, Clone)]
pub(super) struct TimelineSource(Arc<Registry>);

/// One second of the engine's side of the timeline.
#[derive(Debug, Clone, Default)]
struct EngineSecond {
    /// Per followed gauge: mean and max of the second's readings.
    gauges: Vec<(f64, f64)>,
    /// Per followed histogram: the second's values (seconds) and how many
    /// were recorded (more than kept past the cap).
    histograms: Vec<(Vec<f64>, u64)>,
    /// This process's CPU seconds in the second.
    process_cpu_s: Option<f64>,
    /// The machine's busy and stolen shares of its CPU time in the second.
    machine_busy: Option<f64>,
    steal: Option<f64>,
}

/// The sampler thread: one [`EngineSecond`] per second until stopped.
#[derive(Debug)]
pub(super) struct Sampler {
    stop: Arc<AtomicBool>,
    thread: JoinHandle<Vec<EngineSecond>>,
}

impl Sampler {
    pub(super) fn start(source: &TimelineSource) -> Sampler {
        let (registry, stop) = (source.0.clone(), Arc::new(AtomicBool::new(false)));
        let stopping = stop.clone();
        let thread = std::thread::Builder::new()
            .name("bench-timeline".into())
            .spawn(move || sample(&registry, &stopping))
            .expect("spawning the timeline sampler");
        Sampler { stop, thread }
    }

    fn finish(self) -> Vec<EngineSecond> {
        self.stop.store(true, Ordering::Relaxed);
        self.thread.join().unwrap_or_default()
    }
}

fn sample(registry: &Registry, stop: &AtomicBool) -> Vec<EngineSecond> {
    let started = Instant::now();
    let tick = Duration::from_secs(1) / GAUGE_READS_PER_SECOND;
    let mut seconds = Vec::new();
    let (mut cpu_before, mut machine_before) = (ProcessSample::read().map(|s| s.cpu), MachineCpu::read());
    // Start each second's histograms clean.
    for samples in registry.histograms.values() {
        samples.take();
    }
    while !stop.load(Ordering::Relaxed) {
        let mut readings = vec![Vec::with_capacity(GAUGE_READS_PER_SECOND as usize); GAUGES.len()];
        for n in 1..=GAUGE_READS_PER_SECOND {
            let next = started + Duration::from_secs(seconds.len() as u64) + tick * n;
            std::thread::sleep(next.saturating_duration_since(Instant::now()));
            for (reading, &(_, name)) in readings.iter_mut().zip(&GAUGES) {
                reading.push(registry.gauge_sum(name));
            }
        }
        let gauges = readings
            .iter()
            .map(|r| (r.iter().sum::<f64>() / r.len() as f64, r.iter().copied().fold(f64::MIN, f64::max)))
            .collect();
        let histograms = HISTOGRAMS.iter().map(|&(_, name)| registry.histograms[name].take()).collect();
        let (cpu_now, machine_now) = (ProcessSample::read().map(|s| s.cpu), MachineCpu::read());
        let process_cpu_s = cpu_before.zip(cpu_now).map(|(a, b)| b.saturating_sub(a).as_secs_f64());
        let shares = machine_before.zip(machine_now).map(|(a, b)| (a.busy_share(&b), a.steal_share(&b)));
        seconds.push(EngineSecond {
            gauges,
            histograms,
            process_cpu_s,
            machine_busy: shares.and_then(|s| s.0),
            steal: shares.and_then(|s| s.1),
        });
        (cpu_before, machine_before) = (cpu_now, machine_now);
    }
    seconds
}

/// A running timeline: started before the bench, written after it.
#[derive(Debug)]
pub(super) struct Timeline {
    sampler: Sampler,
}

/// What names a run's lines in the timeline file.
#[derive(Debug, Clone, Serialize)]
pub(super) struct RunTag {
    pub(super) run: String,
    pub(super) model: String,
    pub(super) rate: f64,
    pub(super) round: u32,
}

impl Timeline {
    pub(super) fn start(source: &TimelineSource) -> Timeline {
        Timeline { sampler: Sampler::start(source) }
    }

    /// Stops sampling and appends one JSON line per second to `path`.
    pub(super) fn write(self, path: &Path, tag: &RunTag, tasks: &[TaskFigures]) -> anyhow::Result<()> {
        let engine = self.sampler.finish();
        let lines = lines(tag, &engine, tasks);
        let mut file = std::fs::OpenOptions::new().create(true).append(true).open(path)?;
        let mut out = Vec::new();
        for line in lines {
            serde_json::to_writer(&mut out, &line)?;
            out.push(b'\n');
        }
        // One write per run: runs never interleave within a line.
        file.write_all(&out)?;
        Ok(())
    }
}

/// The seconds of a run: tasks by the second they finished in, beside the
/// engine's second. Columns are flat, so any tool can chart them.
fn lines(tag: &RunTag, engine: &[EngineSecond], tasks: &[TaskFigures]) -> Vec<serde_json::Value> {
    let last_task_second = tasks.iter().map(|t| t.end_s.max(0.0) as usize + 1).max().unwrap_or(0);
    let seconds = engine.len().max(last_task_second);
    let mut by_second: Vec<Vec<&TaskFigures>> = vec![Vec::new(); seconds];
    for task in tasks {
        by_second[task.end_s.max(0.0) as usize].push(task);
    }
    let ms = |s: f64| (s * 1e6).round() / 1e3;
    by_second
        .iter()
        .enumerate()
        .map(|(second, finished)| {
            let mut line = serde_json::Map::new();
            let mut put = |key: &str, value: serde_json::Value| {
                line.insert(key.to_string(), value);
            };
            put("run", tag.run.clone().into());
            put("model", tag.model.clone().into());
            put("rate", tag.rate.into());
            put("round", tag.round.into());
            put("t", second.into());
            let ok: Vec<&&TaskFigures> = finished.iter().filter(|t| t.ok).collect();
            put("completions", ok.len().into());
            put("failures", (finished.len() - ok.len()).into());
            let mut latency: Vec<f64> = ok.iter().map(|t| t.latency_ms).collect();
            let mut slowdown: Vec<f64> = ok.iter().map(|t| t.slowdown).collect();
            latency.sort_by(f64::total_cmp);
            slowdown.sort_by(f64::total_cmp);
            for (q, name) in [(50.0, "p50"), (99.0, "p99")] {
                put(&format!("latency_{name}_ms"), json_number(percentile(&latency, q)));
                put(&format!("slowdown_{name}"), json_number(percentile(&slowdown, q)));
            }
            put("slowdown_max", json_number(slowdown.last().copied()));
            if let Some(engine) = engine.get(second) {
                for (&(stem, _), &(mean, max)) in GAUGES.iter().zip(&engine.gauges) {
                    put(stem, json_number(Some((mean * 100.0).round() / 100.0)));
                    put(&format!("{stem}_max"), json_number(Some(max)));
                }
                for (&(stem, _), (values, count)) in HISTOGRAMS.iter().zip(&engine.histograms) {
                    let mut values = values.clone();
                    values.sort_by(f64::total_cmp);
                    put(&format!("{stem}_calls"), (*count).into());
                    for (q, name) in [(50.0, "p50"), (99.0, "p99"), (100.0, "max")] {
                        put(&format!("{stem}_{name}_ms"), json_number(percentile(&values, q).map(ms)));
                    }
                }
                put("process_cpu_s", json_number(engine.process_cpu_s));
                put("machine_busy", json_number(engine.machine_busy));
                put("steal", json_number(engine.steal));
            }
            serde_json::Value::Object(line)
        })
        .collect()
}

/// A finite figure as a JSON number; anything else as null.
fn json_number(value: Option<f64>) -> serde_json::Value {
    value.filter(|v| v.is_finite()).map_or(serde_json::Value::Null, serde_json::Value::from)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn task(end_s: f64, slowdown: f64, ok: bool) -> TaskFigures {
        TaskFigures {
            index: 0,
            end_s,
            ok,
            measured: true,
            latency_ms: slowdown * 100.0,
            slowdown,
            exec_slowdown: 1.0,
        }
    }

    #[test]
    fn tasks_land_in_the_second_they_finished() {
        let tag = RunTag { run: "hybrid".into(), model: "hybrid".into(), rate: 2.0, round: 0 };
        let tasks = [task(0.2, 1.0, true), task(0.9, 3.0, true), task(2.5, 1.5, false), task(2.7, 1.2, true)];
        let engine = vec![
            EngineSecond {
                gauges: vec![(1.5, 3.0); GAUGES.len()],
                histograms: vec![(vec![0.001, 0.003], 2); HISTOGRAMS.len()],
                process_cpu_s: Some(0.25),
                machine_busy: Some(0.5),
                steal: Some(0.0),
            };
            2
        ];
        let lines = lines(&tag, &engine, &tasks);
        assert_eq!(lines.len(), 3, "the last task finished in second 2");
        assert_eq!(lines[0]["completions"], 2);
        assert_eq!(lines[0]["slowdown_max"], 3.0);
        assert_eq!(lines[0]["slowdown_p50"], 1.0);
        assert_eq!(lines[0]["in_flight"], 1.5);
        assert_eq!(lines[0]["cpu_queue_depth_max"], 3.0);
        assert_eq!(lines[0]["mysql_p99_ms"], 3.0);
        assert_eq!(lines[0]["redis_calls"], 2);
        assert_eq!(lines[1]["completions"], 0);
        assert!(lines[1]["latency_p99_ms"].is_null(), "no task finished in second 1");
        assert_eq!((lines[2]["completions"].clone(), lines[2]["failures"].clone()), (1.into(), 1.into()));
        assert!(lines[2].get("in_flight").is_none(), "the sampler stopped before second 2");
        assert_eq!(lines[2]["run"], "hybrid");
    }

    #[test]
    fn gauges_keep_their_value_per_key_and_histograms_reset_each_second() {
        let cell = GaugeCell::default();
        cell.increment(3.0);
        cell.decrement(1.0);
        assert_eq!(cell.get(), 2.0);
        cell.set(7.0);
        assert_eq!(cell.get(), 7.0);
        let samples = Samples::default();
        samples.record(0.5);
        samples.record(0.25);
        assert_eq!(samples.take(), (vec![0.5, 0.25], 2));
        assert_eq!(samples.take(), (vec![], 0));
    }
}
