//! The bench's summary: one line per run, and with repeats, each point's
//! medians with their range (the figures BENCHMARKS.md quotes).

use super::child::ChildResult;
use super::machine::DISTURBED_STEAL_SHARE;

/// One run's result, as the summary shows it.
#[derive(Debug)]
pub(super) struct Row {
    /// The model, with `+stream` for a stream run.
    pub(super) label: String,
    pub(super) rate: f64,
    pub(super) result: ChildResult,
    /// It sustained its rate.
    pub(super) ok: bool,
    /// The share of the machine's CPU time stolen by other tenants.
    pub(super) steal_share: Option<f64>,
}

impl Row {
    /// Other tenants took enough of the machine to skew its figures.
    fn disturbed(&self) -> bool {
        self.steal_share.is_some_and(|s| s > DISTURBED_STEAL_SHARE)
    }

    /// Engine-process CPU milliseconds per completed task in the window.
    fn cpu_ms_per_task(&self) -> f64 {
        let r = &self.result.report;
        r.cpu_per_wall_s / r.throughput * 1e3
    }

    /// Redis commands per 1,000 tasks, when the run used a Redis.
    fn redis_commands_per_k(&self) -> Option<f64> {
        let redis = self.result.redis.as_ref()?;
        (self.result.tasks > 0).then(|| redis.commands() as f64 * 1e3 / self.result.tasks as f64)
    }

    /// Redis CPU milliseconds per 1,000 tasks.
    fn redis_cpu_ms_per_k(&self) -> Option<f64> {
        let redis = self.result.redis.as_ref()?;
        (self.result.tasks > 0).then(|| redis.cpu_s * 1e6 / self.result.tasks as f64)
    }
}

pub(super) fn print_table(rows: &[Row], to_stderr: bool) {
    let mut out = String::new();
    out.push_str(&format!(
        "{:<15} {:>7} {:>6} {:>9} {:>6} {:>8} {:>8} {:>8} {:>7} {:>7} {:>7} {:>6} {:>8} {:>7} {:>7} {:>9} {:>7}\n",
        "model",
        "rate",
        "rounds",
        "completed",
        "errors",
        "thrpt/s",
        "p50 ms",
        "p99 ms",
        "slow50",
        "slow99",
        "exec99",
        "cpu/s",
        "cpu ms/t",
        "rss MB",
        "up rps",
        "sustains",
        "steal %"
    ));
    for row in rows {
        let r = &row.result.report;
        out.push_str(&format!(
            "{:<15} {:>7.1} {:>6} {:>9} {:>6} {:>8.1} {:>8.1} {:>8.1} {:>7.3} {:>7.3} {:>7.3} {:>6.2} {:>8.3} {:>7.1} {:>7.1} {:>9} {:>7}\n",
            row.label, r.rate, r.rounds, r.completed, r.errors, r.throughput, r.latency_p50_ms,
            r.latency_p99_ms, r.slowdown_p50, r.slowdown_p99, r.exec_slowdown_p99, r.cpu_per_wall_s,
            row.cpu_ms_per_task(), r.peak_rss_mb, r.upstream_rps, if row.ok { "yes" } else { "no" },
            steal_cell(row)
        ));
    }
    if to_stderr {
        eprint!("{out}");
    } else {
        print!("{out}");
    }
}

/// The run's steal in percent, marked `!` when it disturbed the run.
fn steal_cell(row: &Row) -> String {
    match row.steal_share {
        Some(s) => format!("{:.1}{}", s * 100.0, if row.disturbed() { "!" } else { "" }),
        None => "-".to_string(),
    }
}

/// Per (label, rate): the median of each figure over its undisturbed runs
/// and, in brackets, the lowest and highest. Disturbed runs (steal over
/// [`DISTURBED_STEAL_SHARE`]) are left out and counted; when every run of
/// a point was disturbed, all of them are used and the line says so.
pub(super) fn print_medians(rows: &[Row]) {
    let mut points: Vec<(&str, f64)> = Vec::new();
    for row in rows {
        if !points.iter().any(|&(l, r)| l == row.label && r == row.rate) {
            points.push((&row.label, row.rate));
        }
    }
    eprintln!("medians [min-max] per point:");
    for (label, rate) in points {
        let all: Vec<&Row> = rows.iter().filter(|r| r.label == label && r.rate == rate).collect();
        let (runs, note) = undisturbed(&all);
        let figure = |f: &dyn Fn(&Row) -> Option<f64>| spread(runs.iter().filter_map(|r| f(r)).collect());
        eprintln!(
            "  {label:<15} rate {rate:>6.1} runs {}{note}: cpu ms/task {}  slowdown p99 {}  p99 ms {}  rss MB {}  redis cmds/1k tasks {}  redis cpu ms/1k tasks {}",
            runs.len(),
            figure(&|r| Some(r.cpu_ms_per_task())),
            figure(&|r| Some(r.result.report.slowdown_p99)),
            figure(&|r| Some(r.result.report.latency_p99_ms)),
            figure(&|r| Some(r.result.report.peak_rss_mb)),
            figure(&Row::redis_commands_per_k),
            figure(&Row::redis_cpu_ms_per_k),
        );
    }
}

/// The runs a point's medians use, and what the summary says about the
/// ones left out.
fn undisturbed<'a>(runs: &[&'a Row]) -> (Vec<&'a Row>, String) {
    let clean: Vec<&Row> = runs.iter().copied().filter(|r| !r.disturbed()).collect();
    let left_out = runs.len() - clean.len();
    let limit = DISTURBED_STEAL_SHARE * 100.0;
    if left_out == 0 {
        (clean, String::new())
    } else if clean.is_empty() {
        (runs.to_vec(), format!(" (every run had steal over {limit:.0} %: all used, figures unreliable)"))
    } else {
        (clean, format!(" of {} ({left_out} with steal over {limit:.0} % left out)", runs.len()))
    }
}

/// `median [min-max]`, or `-` without values.
fn spread(mut values: Vec<f64>) -> String {
    values.retain(|v| v.is_finite());
    if values.is_empty() {
        return "-".to_string();
    }
    values.sort_by(f64::total_cmp);
    let n = values.len();
    let median = if n % 2 == 1 { values[n / 2] } else { (values[n / 2 - 1] + values[n / 2]) / 2.0 };
    let digits = if median.abs() >= 100.0 { 0 } else { 3 };
    format!("{median:.digits$} [{:.digits$}-{:.digits$}]", values[0], values[n - 1])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(cpu_per_wall_s: f64, steal_share: Option<f64>) -> Row {
        let line = format!(
            r#"{{"report":{{"model":"hybrid","rate":300.0,"rounds":400,"completed":7500,"errors":0,"throughput":300.0,"latency_p50_ms":534.0,"latency_p99_ms":1614.0,"latency_max_ms":5400.0,"slowdown_p50":1.01,"slowdown_p99":1.02,"exec_slowdown_p50":1.0,"exec_slowdown_p99":1.02,"cpu_per_wall_s":{cpu_per_wall_s},"peak_rss_mb":32.0,"upstream_rps":900.0}},"unfinished":0,"cpu_alone_ms":1.2,"cpu_alone":{{"transform_s":0.0012,"sha_s":0.001}},"cpu_per_task":null,"failures":[],"tasks":10500,"redis":null}}"#
        );
        let result = serde_json::from_str(&line).expect("a child result line");
        Row { label: "hybrid".into(), rate: 300.0, result, ok: true, steal_share }
    }

    #[test]
    fn medians_leave_out_runs_with_steal_over_the_limit() {
        let (a, b, c) = (row(0.5, Some(0.01)), row(0.9, Some(0.12)), row(0.6, None));
        let (used, note) = undisturbed(&[&a, &b, &c]);
        let used: Vec<f64> = used.iter().map(|r| r.result.report.cpu_per_wall_s).collect();
        assert_eq!(used, vec![0.5, 0.6], "the disturbed run is left out, a run without a reading is kept");
        assert_eq!(note, " of 3 (1 with steal over 5 % left out)");
        assert_eq!(steal_cell(&b), "12.0!");
        assert_eq!(steal_cell(&a), "1.0");
        assert_eq!(steal_cell(&c), "-");

        let (used, note) = undisturbed(&[&b]);
        assert_eq!(used.len(), 1, "with every run disturbed, all are used");
        assert!(note.contains("unreliable"), "{note}");
        assert_eq!(undisturbed(&[&a, &c]).1, "");
    }

    #[test]
    fn spread_gives_the_median_and_the_range() {
        assert_eq!(spread(vec![3.0, 1.0, 2.0]), "2.000 [1.000-3.000]");
        assert_eq!(spread(vec![4.0, 1.0, 2.0, 3.0]), "2.500 [1.000-4.000]");
        assert_eq!(spread(vec![f64::NAN]), "-");
        assert_eq!(spread(vec![150.0, 250.0]), "200 [150-250]");
    }
}
