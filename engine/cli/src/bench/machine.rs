//! How much of the machine's CPU time other tenants took during a run.
//!
//! On a virtual machine, *steal* is the time a vCPU wanted to run and the
//! hypervisor gave to someone else. It comes in bursts on shared hosts and
//! inflates every latency and CPU figure of the run it falls in, so each run
//! reports it and the medians leave out runs it disturbed.

/// A run whose steal exceeds this share of the machine's CPU time is marked
/// disturbed and left out of the medians.
pub(super) const DISTURBED_STEAL_SHARE: f64 = 0.05;

/// The machine-wide CPU time counters of `/proc/stat`'s `cpu` line, in
/// clock ticks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct MachineCpu {
    /// Every state: user, nice, system, idle, iowait, irq, softirq, steal.
    total: u64,
    steal: u64,
    /// Idle and iowait: the time no task wanted the CPU.
    idle: u64,
}

impl MachineCpu {
    /// Reads the counters now, or `None` where `/proc/stat` is unavailable.
    pub(super) fn read() -> Option<MachineCpu> {
        parse(&std::fs::read_to_string("/proc/stat").ok()?)
    }

    /// The share of the machine's CPU time stolen between `self` and `later`.
    pub(super) fn steal_share(&self, later: &MachineCpu) -> Option<f64> {
        let total = later.total.checked_sub(self.total)?;
        let steal = later.steal.checked_sub(self.steal)?;
        (total > 0).then(|| steal as f64 / total as f64)
    }

    /// The share of the machine's CPU time spent busy (anything but idle
    /// and iowait; steal included) between `self` and `later`.
    pub(super) fn busy_share(&self, later: &MachineCpu) -> Option<f64> {
        let total = later.total.checked_sub(self.total)?;
        let idle = later.idle.checked_sub(self.idle)?;
        (total > 0).then(|| (total.saturating_sub(idle)) as f64 / total as f64)
    }
}

fn parse(stat: &str) -> Option<MachineCpu> {
    let line = stat.lines().find(|l| l.starts_with("cpu "))?;
    // user nice system idle iowait irq softirq steal [guest guest_nice]: guest
    // time is already counted in user and nice.
    let fields: Vec<u64> =
        line.split_whitespace().skip(1).take(8).map(|f| f.parse().ok()).collect::<Option<_>>()?;
    (fields.len() == 8).then(|| MachineCpu {
        total: fields.iter().sum(),
        steal: fields[7],
        idle: fields[3] + fields[4],
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn steal_share_comes_from_the_cpu_line() {
        let before = parse("cpu  100 0 50 800 10 0 5 35 0 0\ncpu0 50 0 25 400 5 0 2 18 0 0\n").unwrap();
        let after = parse("cpu  200 0 100 1500 10 0 5 185 7 0\n").unwrap();
        assert_eq!(before, MachineCpu { total: 1000, steal: 35, idle: 810 });
        // 1000 more ticks, 150 of them stolen.
        let share = before.steal_share(&after).unwrap();
        assert!((share - 0.15).abs() < 1e-9, "{share}");
        assert_eq!(after.steal_share(&before), None, "counters never go back");
        // 1000 more ticks, 700 of them idle.
        let busy = before.busy_share(&after).unwrap();
        assert!((busy - 0.3).abs() < 1e-9, "{busy}");
        assert_eq!(parse("intr 1 2 3\n"), None);
        assert_eq!(parse("cpu  1 2 3\n"), None, "a short line is not read as zero steal");
    }

    #[test]
    fn this_machine_has_the_counters() {
        let now = MachineCpu::read().expect("/proc/stat on Linux");
        assert!(now.total > 0 && now.steal <= now.total);
    }
}
