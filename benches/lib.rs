//! Helpers shared by Switchyard's benchmarks.
//!
//! The figure-printing benchmarks (`reactor_lag`, `memory_per_task`) print
//! the machine they ran on next to their figures, so a line pasted into
//! `BENCHMARKS.md` carries its context. Figures that compare execution
//! models are measured in the same process run and read as ratios: the
//! benchmark machines are shared and noisy.

use std::time::{Duration, Instant};

use hdrhistogram::Histogram;

/// A fixed amount of CPU work that never yields, calibrated to take about a
/// given time on an uncontended core.
///
/// Fixed work rather than "spin until the clock says so": a job preempted by
/// the OS still does all its work, so jobs per second compare models fairly
/// even when they have more threads than the machine has cores.
#[derive(Debug, Clone, Copy)]
pub struct Spin {
    chunks: u64,
}

/// Xorshift steps per chunk of [`Spin`] work.
const CHUNK_STEPS: u64 = 1_000;

impl Spin {
    /// Measures this machine (the fastest of several trials, so a noisy
    /// neighbour makes it no shorter) and sizes the work to take `target`.
    pub fn calibrate(target: Duration) -> Spin {
        let probe = Spin { chunks: 1_000 };
        let fastest = (0..20)
            .map(|_| {
                let start = Instant::now();
                probe.run();
                start.elapsed()
            })
            .min()
            .expect("trials ran");
        let per_chunk = fastest.as_secs_f64() / probe.chunks as f64;
        Spin { chunks: ((target.as_secs_f64() / per_chunk) as u64).max(1) }
    }

    /// Does the work; returns a value so it cannot be optimised away.
    pub fn run(self) -> u64 {
        let mut x = 0x9E37_79B9_7F4A_7C15u64;
        for _ in 0..self.chunks {
            for _ in 0..CHUNK_STEPS {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
            }
            x = std::hint::black_box(x);
        }
        x
    }

    /// How long the work takes right now on this thread (one run).
    pub fn time_once(self) -> Duration {
        let start = Instant::now();
        std::hint::black_box(self.run());
        start.elapsed()
    }
}

/// `"<cores> cores, <GiB> GiB RAM, <cpu model>"` of this machine.
pub fn machine() -> String {
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    let mem_kib: u64 = meminfo
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0);
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo
        .lines()
        .find_map(|l| l.strip_prefix("model name")?.split_once(':').map(|(_, m)| m.trim().to_owned()))
        .unwrap_or_else(|| "unknown cpu".to_owned());
    format!("{cores} cores, {:.1} GiB RAM, {model}", mem_kib as f64 / (1024.0 * 1024.0))
}

/// A latency histogram in microseconds, 1 µs to one hour, 3 significant digits.
pub fn micros_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 3_600_000_000, 3).expect("valid bounds")
}

/// Records `d` into a histogram made by [`micros_histogram`].
pub fn record(histogram: &mut Histogram<u64>, d: Duration) {
    histogram.saturating_record(u64::try_from(d.as_micros()).unwrap_or(u64::MAX).max(1));
}

/// The value at quantile `q` of a [`micros_histogram`], as a duration.
pub fn quantile(histogram: &Histogram<u64>, q: f64) -> Duration {
    if histogram.is_empty() {
        return Duration::ZERO;
    }
    Duration::from_micros(histogram.value_at_quantile(q))
}

/// `d` in milliseconds with two decimals, for tables.
pub fn ms(d: Duration) -> String {
    format!("{:.2}", d.as_secs_f64() * 1e3)
}

/// Open file descriptors of this process (Linux), e.g. to see that a
/// benchmark's sockets are all connected.
pub fn open_fds() -> usize {
    std::fs::read_dir("/proc/self/fd").map_or(0, |dir| dir.count())
}

/// The soft limit on open files of this process (Linux `/proc/self/limits`).
pub fn open_files_limit() -> Option<u64> {
    let limits = std::fs::read_to_string("/proc/self/limits").ok()?;
    let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
    line.split_whitespace().nth(3)?.parse().ok()
}

/// CPU time and context switches of the whole process so far (Linux
/// `/proc`), to account for where a round trip's time goes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ProcessCounters {
    /// User plus system CPU time of all threads (10 ms resolution).
    pub cpu: Duration,
    /// Voluntary (a thread blocked: futex, epoll) and involuntary (a thread
    /// was preempted) context switches, per live thread id.
    switches: std::collections::BTreeMap<u64, (u64, u64)>,
}

impl ProcessCounters {
    /// Reads the counters now; zeros where `/proc` is missing.
    pub fn read() -> ProcessCounters {
        let cpu = switchyard::telemetry::ProcessSample::read().map_or(Duration::ZERO, |s| s.cpu);
        let mut counters = ProcessCounters { cpu, ..ProcessCounters::default() };
        let Ok(tasks) = std::fs::read_dir("/proc/self/task") else { return counters };
        for task in tasks.flatten() {
            let Some(tid) = task.file_name().to_str().and_then(|t| t.parse().ok()) else { continue };
            let status = std::fs::read_to_string(task.path().join("status")).unwrap_or_default();
            let field = |name: &str| -> u64 {
                status.lines().find_map(|l| l.strip_prefix(name)?.trim().parse().ok()).unwrap_or(0)
            };
            counters
                .switches
                .insert(tid, (field("voluntary_ctxt_switches:"), field("nonvoluntary_ctxt_switches:")));
        }
        counters
    }

    /// Voluntary and involuntary switches since `earlier`, of the threads
    /// alive now (a thread started meanwhile counts whole). A thread that
    /// ended meanwhile is left out rather than making the sum go backwards.
    pub fn switches_since(&self, earlier: &ProcessCounters) -> (u64, u64) {
        self.switches.iter().fold((0, 0), |(voluntary, involuntary), (tid, &(v, i))| {
            let (v0, i0) = earlier.switches.get(tid).copied().unwrap_or((0, 0));
            (voluntary + v.saturating_sub(v0), involuntary + i.saturating_sub(i0))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_round_trips_durations() {
        let mut h = micros_histogram();
        for ms in 1..=100u64 {
            record(&mut h, Duration::from_millis(ms));
        }
        let p99 = quantile(&h, 0.99);
        assert!(p99 >= Duration::from_millis(98) && p99 <= Duration::from_millis(100), "{p99:?}");
        assert_eq!(quantile(&micros_histogram(), 0.5), Duration::ZERO);
    }

    #[test]
    fn spin_is_calibrated_to_its_target() {
        let spin = Spin::calibrate(Duration::from_millis(5));
        let took = (0..5).map(|_| spin.time_once()).min().unwrap();
        assert!(took >= Duration::from_millis(3) && took <= Duration::from_millis(20), "{took:?}");
    }

    #[test]
    fn switches_count_per_thread_and_ignore_threads_that_ended() {
        let before = ProcessCounters::read();
        // A thread that blocks once and ends before the second read.
        std::thread::spawn(|| std::thread::sleep(Duration::from_millis(5))).join().unwrap();
        // This thread blocks a few times: its voluntary switches must show.
        for _ in 0..5 {
            std::thread::sleep(Duration::from_millis(1));
        }
        let (voluntary, _) = ProcessCounters::read().switches_since(&before);
        assert!((5..1_000).contains(&voluntary), "{voluntary}");
        let ended = ProcessCounters {
            cpu: Duration::ZERO,
            switches: [(1, (100, 100)), (2, (5, 5))].into_iter().collect(),
        };
        let now = ProcessCounters { cpu: Duration::ZERO, switches: [(2, (7, 6))].into_iter().collect() };
        assert_eq!(now.switches_since(&ended), (2, 1));
    }

    #[test]
    fn machine_names_cores() {
        assert!(machine().contains("cores"));
        assert!(open_fds() > 0);
    }
}
