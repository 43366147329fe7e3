//! What a PZ-1 run reports, and the summary helpers every reporter shares, so
//! that the engine, the benchmark and the Python peers compute figures alike.

use serde::{Deserialize, Serialize};

/// The keys of a run report, in the spec's order (the fields of [`Report`]).
pub const REPORT_KEYS: [&str; 16] = [
    "model",
    "rate",
    "rounds",
    "completed",
    "errors",
    "throughput",
    "latency_p50_ms",
    "latency_p99_ms",
    "latency_max_ms",
    "slowdown_p50",
    "slowdown_p99",
    "exec_slowdown_p50",
    "exec_slowdown_p99",
    "cpu_per_wall_s",
    "peak_rss_mb",
    "upstream_rps",
];

/// A model sustains a rate when at least this fraction of the tasks released
/// in the measured window completed ...
pub const SUSTAIN_COMPLETED_FRACTION: f64 = 0.99;
/// ... and its `slowdown_p99` is at most this.
pub const SUSTAIN_MAX_SLOWDOWN_P99: f64 = 1.25;

/// One model run's figures over the warm part of the run: one JSON object,
/// keys as [`REPORT_KEYS`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Report {
    /// Execution model (`hybrid`, `reactor-only`, `threads`, or a peer's name).
    pub model: String,
    /// Offered rate, tasks per second.
    pub rate: f64,
    /// SHA-256 rounds per item.
    pub rounds: u32,
    /// Tasks released in `[warmup, duration)` that finished without error.
    pub completed: u64,
    /// Tasks released in `[warmup, duration)` that failed or did not finish.
    pub errors: u64,
    /// Tasks that finished without error inside `[warmup, duration)`, per second.
    pub throughput: f64,
    /// Median latency from release, milliseconds.
    pub latency_p50_ms: f64,
    /// 99th percentile latency from release, milliseconds.
    pub latency_p99_ms: f64,
    /// Largest latency from release, milliseconds.
    pub latency_max_ms: f64,
    /// Median of latency / ideal latency.
    pub slowdown_p50: f64,
    /// 99th percentile of latency / ideal latency.
    pub slowdown_p99: f64,
    /// Median of (finish - actual start) / (delays + CPU).
    pub exec_slowdown_p50: f64,
    /// 99th percentile of (finish - actual start) / (delays + CPU).
    pub exec_slowdown_p99: f64,
    /// CPU seconds used per second of wall time.
    pub cpu_per_wall_s: f64,
    /// Peak resident set size, MiB.
    pub peak_rss_mb: f64,
    /// Upstream requests per second.
    pub upstream_rps: f64,
}

/// Whether a run sustains its rate: at least 99 % of the tasks released in
/// the window completed, and `slowdown_p99` is at most 1.25 (a NaN slowdown,
/// or a window with no task, never sustains).
///
/// Counted against the tasks released, not as throughput against the rate:
/// throughput counts tasks that *finished* inside the window, so a task
/// released just before its end and finished just after is missing from it,
/// and in a short run at a low rate that one task is more than 1 % (20 s at
/// 3 tasks/s: 51 in the window, so a single task decides). A model that falls
/// behind still fails: its late tasks raise the slowdown, its unfinished ones
/// count as errors.
pub fn sustains(report: &Report) -> bool {
    let released = report.completed + report.errors;
    released > 0
        && report.completed as f64 >= SUSTAIN_COMPLETED_FRACTION * released as f64
        && report.slowdown_p99 <= SUSTAIN_MAX_SLOWDOWN_P99
}

/// The `p`-th percentile (0-100) of ascending `sorted` values, by the
/// nearest-rank method: the value at 1-based rank `ceil(p * n / 100)`,
/// clamped to `[1, n]`. Always one of the values, never interpolated;
/// `p = 0` gives the minimum, `p = 100` the maximum. `None` when empty.
///
/// `p * n / 100` is computed in that order so integral `p` gives exact ranks
/// (`0.99 * n` would not).
pub fn percentile(sorted: &[f64], p: f64) -> Option<f64> {
    debug_assert!(
        sorted.windows(2).all(|w| w[0].partial_cmp(&w[1]) != Some(std::cmp::Ordering::Greater)),
        "percentile needs sorted input"
    );
    let n = sorted.len();
    if n == 0 {
        return None;
    }
    let rank = (p * n as f64 / 100.0).ceil();
    // `as` saturates (NaN -> 0), then clamp into 1..=n.
    let rank = (rank as usize).clamp(1, n);
    Some(sorted[rank - 1])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report() -> Report {
        Report {
            model: "hybrid".into(),
            rate: 50.0,
            rounds: 400,
            completed: 2750,
            errors: 0,
            throughput: 49.6,
            latency_p50_ms: 170.0,
            latency_p99_ms: 900.0,
            latency_max_ms: 1500.0,
            slowdown_p50: 1.01,
            slowdown_p99: 1.25,
            exec_slowdown_p50: 1.0,
            exec_slowdown_p99: 1.1,
            cpu_per_wall_s: 0.4,
            peak_rss_mb: 30.0,
            upstream_rps: 150.0,
        }
    }

    #[test]
    fn report_serializes_with_exactly_the_keys_in_order() {
        let json = serde_json::to_string(&report()).unwrap();
        let mut at = 0;
        for key in REPORT_KEYS {
            let found = json[at..].find(&format!("\"{key}\":")).unwrap_or_else(|| panic!("{key} in {json}"));
            at += found + key.len();
        }
        let value: serde_json::Value = serde_json::from_str(&json).unwrap();
        assert_eq!(value.as_object().unwrap().len(), REPORT_KEYS.len());
        assert_eq!(serde_json::from_str::<Report>(&json).unwrap(), report());
        assert!(serde_json::from_str::<Report>(&json.replace("\"errors\"", "\"errs\"")).is_err());
    }

    #[test]
    fn sustain_rule_edges() {
        let r = report();
        // Every task completed, slowdown exactly 1.25.
        assert!(sustains(&r));
        // 2,723 of 2,750 is 99.02 %, 2,722 is 98.98 %.
        assert!(sustains(&Report { completed: 2723, errors: 27, ..r.clone() }));
        assert!(!sustains(&Report { completed: 2722, errors: 28, ..r.clone() }));
        assert!(!sustains(&Report { slowdown_p99: 1.2500001, ..r.clone() }));
        assert!(!sustains(&Report { slowdown_p99: f64::NAN, ..r.clone() }));
        assert!(!sustains(&Report { completed: 0, errors: 0, slowdown_p99: f64::NAN, ..r.clone() }));
        // A short run at a low rate: all 53 tasks of the window completed, but
        // one finished after the window's end, so throughput is 52 / 17 s,
        // 98 % of the rate. The rule counts the tasks released, not finished.
        let short = Report { rate: 3.12, completed: 53, errors: 0, throughput: 52.0 / 17.0, ..r };
        assert!(short.throughput < 0.99 * short.rate);
        assert!(sustains(&short));
    }

    #[test]
    fn nearest_rank_percentiles() {
        let v: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(percentile(&v, 50.0), Some(50.0));
        assert_eq!(percentile(&v, 99.0), Some(99.0));
        assert_eq!(percentile(&v, 99.5), Some(100.0));
        assert_eq!(percentile(&v, 100.0), Some(100.0));
        assert_eq!(percentile(&v, 0.0), Some(1.0));
        assert_eq!(percentile(&v, 0.5), Some(1.0));
        assert_eq!(percentile(&v, 1.01), Some(2.0));
        assert_eq!(percentile(&[7.0], 99.0), Some(7.0));
        assert_eq!(percentile(&[1.0, 2.0], 50.0), Some(1.0));
        assert_eq!(percentile(&[1.0, 2.0, 3.0], 50.0), Some(2.0));
        assert_eq!(percentile(&[], 50.0), None);
        assert_eq!(percentile(&v, 250.0), Some(100.0));
        assert_eq!(percentile(&v, -5.0), Some(1.0));
        // Exact rank for large n: 99 * 100000 / 100 = 99000 exactly.
        let big: Vec<f64> = (1..=100_000).map(f64::from).collect();
        assert_eq!(percentile(&big, 99.0), Some(99_000.0));
        assert_eq!(percentile(&big, 99.9), Some(99_900.0));
    }
}
