//! What a PZ-1 task costs in CPU, by CPU clocks rather than wall time.
//!
//! A wall clock counts the time a thread waits for a core as if it were
//! work, so on a loaded machine it overstates a CPU step several-fold. Here
//! a step is timed by the calling thread's own CPU clock, after a warm-up,
//! as the median of many runs ([`calibrate_cpu_alone`]); and a whole run's
//! CPU is split by the threads that spent it ([`RoleCpu`]): the reactor, the
//! CPU threads (the pool, or the `threads` model's workers), and the rest
//! (the bench's own driver, the watchdog).

use serde::{Deserialize, Serialize};
use switchyard::telemetry::ProcessSample;
use switchyard_pipeline::{fingerprint_raw, Transform};

use crate::event::write_poll_body;
use crate::params::Params;
use crate::pipeline::Pz1Transform;
use crate::transform::transform_poll;

/// Runs of a step before the timed ones: caches, branch predictors and the
/// allocator settle, so the figure is the steady state a running engine sees.
const WARM_UP_RUNS: usize = 10;

/// One poll's CPU step measured alone, in seconds of the thread's CPU time.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct CpuAlone {
    /// The whole transform of one poll, as the pipeline runs it: parse,
    /// canonical forms, fingerprints, in-poll dedup. Median of the runs.
    pub transform_s: f64,
    /// A bare loop of the same SHA-256 rounds over the same canonical bytes:
    /// the workload's own work, which no engine can avoid. Median of the runs.
    pub sha_s: f64,
}

impl CpuAlone {
    /// The part of the transform that is not the workload's hashing: what
    /// the engine's transform adds (parse, canonical form, allocation).
    pub fn overhead_s(&self) -> f64 {
        (self.transform_s - self.sha_s).max(0.0)
    }
}

/// Times the transform of one poll, and a bare SHA-256 loop over the same
/// items, by this thread's CPU clock: `runs` timed runs of each (at least
/// one) after a warm-up, alternating the two so that neither always runs on
/// a warmer cache; the medians.
pub fn calibrate_cpu_alone(params: &Params, runs: usize) -> CpuAlone {
    let mut body = Vec::new();
    write_poll_body(&mut body, "z0", 2, params.items, params.fresh);
    let transform = Pz1Transform::new(params.rounds);
    let canonical: Vec<String> = transform_poll(&body, params.rounds.max(1))
        .map(|items| items.into_iter().map(|t| t.canonical_json).collect())
        .unwrap_or_default();
    let rounds = params.rounds.max(1);
    let run_transform = || {
        let start = ProcessSample::current_thread_cpu();
        let _ = std::hint::black_box(transform.prepare(std::hint::black_box(&body)));
        (ProcessSample::current_thread_cpu() - start).as_secs_f64()
    };
    let run_sha = || {
        let start = ProcessSample::current_thread_cpu();
        for bytes in &canonical {
            std::hint::black_box(fingerprint_raw(std::hint::black_box(bytes.as_bytes()), rounds));
        }
        (ProcessSample::current_thread_cpu() - start).as_secs_f64()
    };
    for _ in 0..WARM_UP_RUNS {
        run_transform();
        run_sha();
    }
    let (mut transform_times, mut sha_times) = (Vec::new(), Vec::new());
    for _ in 0..runs.max(1) {
        transform_times.push(run_transform());
        sha_times.push(run_sha());
    }
    CpuAlone { transform_s: median(&mut transform_times), sha_s: median(&mut sha_times) }
}

fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

/// A process's CPU time so far (or over a span), split by the role of the
/// thread that spent it. Thread names tell the roles apart; the kernel keeps
/// 15 bytes of a name, enough for every prefix below.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct RoleCpu {
    /// The tokio reactor's threads (`switchyard-reactor`): HTTP, stores,
    /// the task futures and their bookkeeping.
    pub reactor_s: f64,
    /// The CPU pool's threads (`switchyard-cpu-*`), or the `threads`
    /// model's workers (`switchyard-worker-*`).
    pub cpu_s: f64,
    /// Every other thread: the bench's driver, the watchdog, the main thread.
    pub other_s: f64,
}

impl RoleCpu {
    /// The live threads' CPU time so far. Threads that have ended are not
    /// counted, so read it while the engine runs.
    pub fn read() -> RoleCpu {
        RoleCpu::split(ProcessSample::threads_cpu())
    }

    /// Sums each thread's CPU time into its role.
    fn split(threads: impl IntoIterator<Item = (String, std::time::Duration)>) -> RoleCpu {
        let mut split = RoleCpu::default();
        for (name, cpu) in threads {
            let seconds = cpu.as_secs_f64();
            match Role::of(&name) {
                Role::Reactor => split.reactor_s += seconds,
                Role::Cpu => split.cpu_s += seconds,
                Role::Other => split.other_s += seconds,
            }
        }
        split
    }

    /// What was spent between `earlier` and `self`.
    pub fn since(&self, earlier: &RoleCpu) -> RoleCpu {
        RoleCpu {
            reactor_s: self.reactor_s - earlier.reactor_s,
            cpu_s: self.cpu_s - earlier.cpu_s,
            other_s: self.other_s - earlier.other_s,
        }
    }

    /// Every role together.
    pub fn total_s(&self) -> f64 {
        self.reactor_s + self.cpu_s + self.other_s
    }

    /// Each figure divided by `tasks` (NaN figures for no tasks).
    pub fn per_task(&self, tasks: f64) -> RoleCpu {
        let per = |s: f64| if tasks > 0.0 { s / tasks } else { f64::NAN };
        RoleCpu { reactor_s: per(self.reactor_s), cpu_s: per(self.cpu_s), other_s: per(self.other_s) }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Role {
    Reactor,
    Cpu,
    Other,
}

impl Role {
    fn of(thread_name: &str) -> Role {
        if thread_name.starts_with("switchyard-reac") {
            Role::Reactor
        } else if thread_name.starts_with("switchyard-cpu-") || thread_name.starts_with("switchyard-work") {
            Role::Cpu
        } else {
            Role::Other
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_transform_costs_at_least_its_hashing() {
        let params = Params { rounds: 50, items: 20, ..Params::default() };
        let alone = calibrate_cpu_alone(&params, 21);
        assert!(alone.sha_s > 0.0 && alone.transform_s > 0.0, "{alone:?}");
        // The transform runs the same hashing plus its parse: never much cheaper.
        assert!(alone.transform_s > 0.8 * alone.sha_s, "{alone:?}");
        let more = calibrate_cpu_alone(&Params { rounds: 500, ..params }, 21);
        assert!(more.sha_s > 3.0 * alone.sha_s, "ten times the rounds: {alone:?} then {more:?}");
    }

    #[test]
    fn roles_come_from_thread_names() {
        assert_eq!(Role::of("switchyard-reac"), Role::Reactor);
        assert_eq!(Role::of("switchyard-cpu-"), Role::Cpu);
        assert_eq!(Role::of("switchyard-work"), Role::Cpu);
        assert_eq!(Role::of("switchyard-watc"), Role::Other);
        assert_eq!(Role::of("switchyard"), Role::Other);
    }

    #[test]
    fn threads_add_up_by_role() {
        let ms = std::time::Duration::from_millis;
        let threads = [
            ("switchyard-reac", ms(30)),
            ("switchyard-reac", ms(20)),
            ("switchyard-cpu-", ms(100)),
            ("switchyard-work", ms(10)),
            ("switchyard", ms(5)),
        ];
        let split = RoleCpu::split(threads.map(|(n, d)| (n.to_string(), d)));
        let close = |a: f64, b: f64| (a - b).abs() < 1e-9;
        assert!(close(split.reactor_s, 0.05) && close(split.cpu_s, 0.11) && close(split.other_s, 0.005));
        assert!(close(split.total_s(), 0.165));
        let later = RoleCpu { cpu_s: 0.31, ..split };
        assert!(close(later.since(&split).cpu_s, 0.2) && close(later.since(&split).reactor_s, 0.0));
        assert!(close(split.per_task(2.0).cpu_s, 0.055));
        assert!(RoleCpu::default().per_task(0.0).cpu_s.is_nan());
        // This process's own threads are read (the test thread at least).
        assert!(RoleCpu::read().total_s() >= 0.0);
    }
}
