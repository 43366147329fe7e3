//! The open-loop release schedule: which task is released when, for which zap.
//!
//! Latency is measured from a task's release time, not from when an engine
//! picked it up, so a backlog shows up as latency instead of being hidden.

use super::params::Params;

/// One scheduled task: poll `seq` of `zap`, released `release_s` after start.
#[derive(Debug, Clone, PartialEq)]
pub struct Task {
    /// 0-based position in the schedule.
    pub index: u64,
    /// Release time in seconds after start: `index / rate`.
    pub release_s: f64,
    /// `"z{index mod zaps}"`.
    pub zap: String,
    /// `index div zaps + 1`: polls of a zap are numbered from 1.
    pub seq: u64,
}

/// Every task of a run, in release order: task `i` is released at `i / rate`
/// for every `i / rate < duration_s`, for zap `"z{i mod zaps}"`, poll
/// `i div zaps + 1` (zaps from [`Params::resolved_zaps`]).
///
/// Yields nothing when `rate` is not a positive finite number, so unvalidated
/// parameters cannot produce an endless schedule.
pub fn schedule(params: &Params) -> impl Iterator<Item = Task> {
    let rate = params.rate;
    let duration_s = params.duration_s;
    let zaps = params.resolved_zaps();
    let valid = rate.is_finite() && rate > 0.0;
    (0u64..)
        .map(move |i| (i, i as f64 / rate))
        .take_while(move |&(_, release_s)| valid && release_s < duration_s)
        .map(move |(index, release_s)| Task {
            index,
            release_s,
            zap: format!("z{}", index % zaps),
            seq: index / zaps + 1,
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_schedule() {
        let p = Params::default();
        let tasks: Vec<Task> = schedule(&p).collect();
        assert_eq!(tasks.len(), 3000); // 50/s for 60 s
        assert_eq!(tasks[0], Task { index: 0, release_s: 0.0, zap: "z0".into(), seq: 1 });
        assert_eq!(tasks[99].zap, "z99");
        assert_eq!(tasks[100], Task { index: 100, release_s: 2.0, zap: "z0".into(), seq: 2 });
        assert!(tasks.last().unwrap().release_s < 60.0);
        // Every zap is polled every poll_period_s, and its first poll is in the warm-up.
        let z7: Vec<&Task> = tasks.iter().filter(|t| t.zap == "z7").collect();
        assert_eq!(z7.len(), 30);
        assert!(z7.windows(2).all(|w| w[1].seq == w[0].seq + 1
            && (w[1].release_s - w[0].release_s - p.poll_period_s()).abs() < 1e-9));
        assert!(!p.in_measured_window(z7[0].release_s));
        assert_eq!(tasks.iter().filter(|t| p.in_measured_window(t.release_s)).count(), 2750);
    }

    #[test]
    fn fractional_rates_and_boundaries() {
        // 3 tasks/s for 1 s: t = 0, 1/3, 2/3; t = 1.0 is excluded.
        let p = Params { rate: 3.0, duration_s: 1.0, warmup_s: 0.0, zaps: Some(2), ..Params::default() };
        let tasks: Vec<(String, u64)> = schedule(&p).map(|t| (t.zap, t.seq)).collect();
        assert_eq!(tasks, [("z0".into(), 1), ("z1".into(), 1), ("z0".into(), 2)]);
        let p = Params { rate: 0.4, duration_s: 5.0, ..Params::default() };
        let times: Vec<f64> = schedule(&p).map(|t| t.release_s).collect();
        assert_eq!(times, [0.0, 2.5]);
    }

    #[test]
    fn bad_rates_give_an_empty_schedule() {
        for rate in [0.0, -1.0, f64::NAN, f64::INFINITY] {
            assert_eq!(schedule(&Params { rate, ..Params::default() }).count(), 0, "{rate}");
        }
    }
}
