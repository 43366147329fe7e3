//! The process's resident memory and CPU time, read from `/proc/self`.
//!
//! Linux only; elsewhere the sample is `None` and the two metrics are left
//! out rather than reported as zero.

use std::time::Duration;

/// One reading of the process's resources.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProcessSample {
    /// Resident set size.
    pub rss_bytes: u64,
    /// User plus system CPU time since the process started.
    pub cpu: Duration,
}

/// User plus system time from a `/proc/.../stat` line.
fn cpu_of_stat(stat: &str) -> Option<Duration> {
    // The command name may contain spaces and parentheses: fields are
    // counted from after its last ')'. utime and stime are fields 14 and 15.
    let rest = &stat[stat.rfind(')')? + 2..];
    let mut fields = rest.split_whitespace().skip(11);
    let utime: u64 = fields.next()?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some(Duration::from_millis((utime + stime) * 1000 / CLOCK_TICKS_PER_SECOND))
}

/// Time on CPU from a `/proc/.../schedstat` line: its first field, in
/// nanoseconds.
fn cpu_of_schedstat(schedstat: &str) -> Option<Duration> {
    Some(Duration::from_nanos(schedstat.split_whitespace().next()?.parse().ok()?))
}

/// Clock ticks per second of `/proc/self/stat`'s CPU fields. It is 100 on
/// every Linux architecture Switchyard targets (USER_HZ is fixed by the ABI).
const CLOCK_TICKS_PER_SECOND: u64 = 100;

impl ProcessSample {
    /// Reads the current values, or `None` where `/proc` is not available.
    pub fn read() -> Option<ProcessSample> {
        let status = std::fs::read_to_string("/proc/self/status").ok()?;
        let rss_kib: u64 =
            status.lines().find_map(|l| l.strip_prefix("VmRSS:"))?.split_whitespace().next()?.parse().ok()?;
        let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
        Some(ProcessSample { rss_bytes: rss_kib * 1024, cpu: cpu_of_stat(&stat)? })
    }

    /// CPU time used by one thread of this process, by its kernel thread id.
    pub fn thread_cpu(tid: u64) -> Option<Duration> {
        cpu_of_stat(&std::fs::read_to_string(format!("/proc/self/task/{tid}/stat")).ok()?)
    }

    /// CPU time used by another process, by pid (for counting the servers
    /// a workload also costs).
    pub fn process_cpu(pid: u32) -> Option<Duration> {
        cpu_of_stat(&std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?)
    }

    /// CPU time the calling thread has used, to the nanosecond (its own CPU
    /// clock): for timing a short piece of work by the CPU it took, which a
    /// wall clock overstates whenever the thread is descheduled.
    pub fn current_thread_cpu() -> Duration {
        let t = rustix::time::clock_gettime(rustix::time::ClockId::ThreadCPUTime);
        Duration::new(t.tv_sec.max(0) as u64, t.tv_nsec.clamp(0, 999_999_999) as u32)
    }

    /// CPU time used so far by each live thread of this process, with the
    /// thread's name (`comm`, at most 15 bytes): for splitting a process's
    /// CPU between its reactor, its CPU pool and the rest. Threads that end
    /// between the listing and the read are left out.
    ///
    /// The time comes from `schedstat` (nanoseconds the scheduler ran the
    /// thread) where the kernel has it: `stat` counts in 10 ms ticks, so a
    /// pool of threads that each ran a few milliseconds would read as zero.
    pub fn threads_cpu() -> Vec<(String, Duration)> {
        let Ok(entries) = std::fs::read_dir("/proc/self/task") else { return Vec::new() };
        entries
            .flatten()
            .filter_map(|entry| {
                let name = std::fs::read_to_string(entry.path().join("comm")).ok()?;
                let cpu = match std::fs::read_to_string(entry.path().join("schedstat")) {
                    Ok(schedstat) => cpu_of_schedstat(&schedstat)?,
                    Err(_) => cpu_of_stat(&std::fs::read_to_string(entry.path().join("stat")).ok()?)?,
                };
                Some((name.trim_end().to_string(), cpu))
            })
            .collect()
    }

    /// The kernel thread id of the calling thread.
    pub fn current_thread_id() -> Option<u64> {
        let link = std::fs::read_link("/proc/thread-self").ok()?;
        link.file_name()?.to_str()?.parse().ok()
    }

    /// Peak resident set size of the process so far (`VmHWM`), in bytes.
    pub fn peak_rss_bytes() -> Option<u64> {
        let status = std::fs::read_to_string("/proc/self/status").ok()?;
        let kib: u64 =
            status.lines().find_map(|l| l.strip_prefix("VmHWM:"))?.split_whitespace().next()?.parse().ok()?;
        Some(kib * 1024)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_plausible_values_and_cpu_grows_with_work() {
        let before = ProcessSample::read().expect("linux /proc");
        assert!(before.rss_bytes > 1024 * 1024, "rss {} is implausibly small", before.rss_bytes);
        // Spin until this thread has used 200 ms of CPU by the kernel's
        // own account (a wall-clock loop gets less on a loaded machine).
        let tid = ProcessSample::current_thread_id().unwrap();
        let thread_before = ProcessSample::thread_cpu(tid).unwrap();
        let give_up = std::time::Instant::now() + Duration::from_secs(30);
        let mut x = 0u64;
        while ProcessSample::thread_cpu(tid).unwrap() < thread_before + Duration::from_millis(200) {
            assert!(std::time::Instant::now() < give_up, "the thread's CPU time does not grow");
            for _ in 0..100_000 {
                x = x.wrapping_mul(6364136223846793005).wrapping_add(1);
            }
        }
        std::hint::black_box(x);
        let after = ProcessSample::read().unwrap();
        assert!(
            after.cpu >= before.cpu + Duration::from_millis(150),
            "the process's CPU did not grow with its thread's: {:?} -> {:?}",
            before.cpu,
            after.cpu
        );
        assert!(ProcessSample::peak_rss_bytes().unwrap() >= after.rss_bytes / 2);
    }

    #[test]
    fn thread_cpu_clock_counts_work_not_sleep() {
        let start = ProcessSample::current_thread_cpu();
        std::thread::sleep(Duration::from_millis(50));
        let slept = ProcessSample::current_thread_cpu() - start;
        assert!(slept < Duration::from_millis(20), "a sleeping thread used {slept:?} of CPU");
        let mut x = 0u64;
        let give_up = std::time::Instant::now() + Duration::from_secs(30);
        while ProcessSample::current_thread_cpu() - start < Duration::from_millis(30) {
            assert!(std::time::Instant::now() < give_up, "the thread's CPU clock does not move");
            for _ in 0..10_000 {
                x = x.wrapping_mul(6364136223846793005).wrapping_add(1);
            }
        }
        std::hint::black_box(x);
    }

    #[test]
    fn schedstat_gives_nanoseconds_on_cpu() {
        assert_eq!(cpu_of_schedstat("796668 0 2\n"), Some(Duration::from_nanos(796_668)));
        assert_eq!(cpu_of_schedstat(""), None);
    }

    #[test]
    fn a_thread_that_ran_a_millisecond_reads_as_more_than_zero() {
        // Below one 10 ms tick: `stat` alone would report nothing.
        let name = "sy-short-spin";
        let seen = std::thread::Builder::new()
            .name(name.into())
            .spawn(|| {
                let start = ProcessSample::current_thread_cpu();
                while ProcessSample::current_thread_cpu() - start < Duration::from_millis(1) {}
                ProcessSample::threads_cpu()
            })
            .unwrap()
            .join()
            .unwrap();
        let (_, cpu) = seen.iter().find(|(n, _)| n == name).expect("this thread is listed");
        assert!(*cpu >= Duration::from_micros(900), "{cpu:?}");
    }

    #[test]
    fn threads_cpu_names_this_thread() {
        let name = "sy-threads-cpu";
        let seen = std::thread::Builder::new()
            .name(name.into())
            .spawn(ProcessSample::threads_cpu)
            .unwrap()
            .join()
            .unwrap();
        assert!(seen.iter().any(|(n, _)| n == name), "{seen:?}");
    }
}
