//! Configuration of the CPU pool.
//!
//! Zero means "pick for this machine" for the thread count and the queue
//! capacity, so a config file can stay silent and still be right on a laptop
//! and on a 64-core box. Every limit is checked by [`CpuPoolConfig::validate`], which
//! [`CpuPool::new`](crate::CpuPool::new) calls, so a bad value fails at start
//! and never at first use. Field names in errors are prefixed with `cpu.`, the
//! table the engine nests this config under.

use serde::{Deserialize, Serialize};

use crate::Error;

/// Default for [`CpuPoolConfig::threads`]: one thread per available core.
pub const DEFAULT_CPU_THREADS: usize = 0;
/// Default for [`CpuPoolConfig::queue_capacity`]: [`QUEUE_SLOTS_PER_THREAD`]
/// slots per thread.
pub const DEFAULT_QUEUE_CAPACITY: usize = 0;
/// Slots per thread when the queue capacity is automatic: enough that a
/// thread finishing a job always finds the next one waiting, few enough that
/// a queued job does not wait long.
pub const QUEUE_SLOTS_PER_THREAD: usize = 4;
/// Default for [`CpuPoolConfig::spin_wait_us`]: how long a producer may spin
/// for a short job's result before it parks. Long enough to cover a pool
/// thread that is awake picking up the job and replying (a few microseconds),
/// short enough that a wrong guess costs the reactor less than one timer tick.
pub const DEFAULT_SPIN_WAIT_US: u64 = 20;
/// Most a spin may last; beyond this parking is always cheaper.
pub const MAX_SPIN_WAIT_US: u64 = 1_000;
/// Most threads a pool may have; more is a typo, not a machine.
pub const MAX_CPU_THREADS: usize = 1024;
/// Most slots a pool may have; a queue that deep hides overload instead of
/// pushing back on the producers.
pub const MAX_QUEUE_CAPACITY: usize = 1_000_000;
/// Default for [`CpuPoolConfig::slot_wait_ms`]: how long a producer may wait
/// for a slot before its job fails as overloaded. Long enough to ride out a
/// burst (a slot turns over every job's run time divided by the threads),
/// short enough that a pool which stays saturated is reported within seconds
/// rather than holding every waiting task until its own deadline.
pub const DEFAULT_SLOT_WAIT_MS: u64 = 5_000;
/// Longest slot wait a configuration may ask for: a producer waiting ten
/// minutes for a CPU slot is an outage, not backpressure.
pub const MAX_SLOT_WAIT_MS: u64 = 600_000;

/// How big the CPU pool is and how many jobs it takes in at once.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CpuPoolConfig {
    /// Worker threads; 0 means one per available core.
    pub threads: usize,
    /// Most jobs queued or running at once; 0 means
    /// [`QUEUE_SLOTS_PER_THREAD`] per thread. Producers wait (asynchronously)
    /// for a slot when all are taken.
    pub queue_capacity: usize,
    /// Microseconds a producer may spin waiting for a job's result before it
    /// parks; 0 never spins. A producer spins only when its job starts at
    /// once and the pool's recent jobs came back within this time (from
    /// hand-off to result), and only on a machine with more than one core:
    /// for such jobs waking a parked reactor costs more than the job itself.
    /// The same time bounds how long a pool thread that ran out of jobs
    /// watches the queue before it sleeps, while recent jobs ran within it.
    pub spin_wait_us: u64,
    /// Milliseconds a producer may wait for a slot; past it the job is not
    /// run and fails with an error for which
    /// [`Error::is_overloaded`](crate::Error::is_overloaded) is true. 0 never
    /// waits: a full pool refuses at once. The wait is kept by a tokio timer,
    /// so a producer that has to wait must run on a runtime with its time
    /// driver enabled.
    pub slot_wait_ms: u64,
}

impl Default for CpuPoolConfig {
    fn default() -> Self {
        CpuPoolConfig {
            threads: DEFAULT_CPU_THREADS,
            queue_capacity: DEFAULT_QUEUE_CAPACITY,
            spin_wait_us: DEFAULT_SPIN_WAIT_US,
            slot_wait_ms: DEFAULT_SLOT_WAIT_MS,
        }
    }
}

impl CpuPoolConfig {
    /// Rejects limits no machine needs, and a queue too small to keep every
    /// thread busy (its extra threads would never get work).
    pub fn validate(&self) -> Result<(), Error> {
        if self.threads > MAX_CPU_THREADS {
            return Err(Error::config("cpu.threads", format!("must be at most {MAX_CPU_THREADS}")));
        }
        if self.queue_capacity > MAX_QUEUE_CAPACITY {
            return Err(Error::config("cpu.queue_capacity", format!("must be at most {MAX_QUEUE_CAPACITY}")));
        }
        if self.spin_wait_us > MAX_SPIN_WAIT_US {
            return Err(Error::config("cpu.spin_wait_us", format!("must be at most {MAX_SPIN_WAIT_US}")));
        }
        if self.slot_wait_ms > MAX_SLOT_WAIT_MS {
            return Err(Error::config("cpu.slot_wait_ms", format!("must be at most {MAX_SLOT_WAIT_MS}")));
        }
        // Only when both are explicit: an automatic thread count must not make
        // the same file valid on one machine and invalid on another.
        if self.threads != 0 && self.queue_capacity != 0 && self.queue_capacity < self.threads {
            return Err(Error::config(
                "cpu.queue_capacity",
                format!("must be at least cpu.threads ({})", self.threads),
            ));
        }
        Ok(())
    }

    /// The thread count the pool will have on this machine.
    pub fn resolved_threads(&self) -> usize {
        if self.threads != 0 {
            return self.threads;
        }
        std::thread::available_parallelism().map_or(1, |n| n.get()).min(MAX_CPU_THREADS)
    }

    /// How long a producer may spin for a short job on this machine: never on
    /// a single core, where the spinning producer would hold the core the job
    /// needs.
    pub fn resolved_spin_wait(&self) -> std::time::Duration {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        if cores < 2 {
            return std::time::Duration::ZERO;
        }
        std::time::Duration::from_micros(self.spin_wait_us)
    }

    /// Longest a producer waits for a slot.
    pub fn slot_wait(&self) -> std::time::Duration {
        std::time::Duration::from_millis(self.slot_wait_ms)
    }

    /// The number of slots the pool will have on this machine.
    pub fn resolved_queue_capacity(&self) -> usize {
        if self.queue_capacity != 0 {
            return self.queue_capacity;
        }
        self.resolved_threads().saturating_mul(QUEUE_SLOTS_PER_THREAD).min(MAX_QUEUE_CAPACITY)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_config_resolves_to_the_machine() {
        let config: CpuPoolConfig = serde_json::from_str("{}").unwrap();
        assert_eq!(config, CpuPoolConfig::default());
        config.validate().unwrap();
        let cores = std::thread::available_parallelism().unwrap().get();
        assert_eq!(config.resolved_threads(), cores);
        assert_eq!(config.resolved_queue_capacity(), cores * QUEUE_SLOTS_PER_THREAD);
    }

    #[test]
    fn explicit_values_are_kept() {
        let config: CpuPoolConfig =
            serde_json::from_str(r#"{"threads": 3, "queue_capacity": 7, "spin_wait_us": 0}"#).unwrap();
        config.validate().unwrap();
        assert_eq!((config.resolved_threads(), config.resolved_queue_capacity()), (3, 7));
        assert_eq!(config.resolved_spin_wait(), std::time::Duration::ZERO);

        let config = CpuPoolConfig { threads: 2, ..CpuPoolConfig::default() };
        assert_eq!(config.resolved_queue_capacity(), 8);
    }

    #[test]
    fn unknown_fields_are_rejected() {
        let err = serde_json::from_str::<CpuPoolConfig>(r#"{"thread": 3}"#).unwrap_err();
        assert!(err.to_string().contains("unknown field `thread`"), "{err}");
    }

    #[test]
    fn validate_names_the_field() {
        let too_many = CpuPoolConfig { threads: MAX_CPU_THREADS + 1, ..CpuPoolConfig::default() };
        let err = too_many.validate().unwrap_err();
        assert!(err.is_config() && err.to_string().contains("cpu.threads"), "{err}");

        let too_deep = CpuPoolConfig { queue_capacity: MAX_QUEUE_CAPACITY + 1, ..CpuPoolConfig::default() };
        assert!(too_deep.validate().unwrap_err().to_string().contains("cpu.queue_capacity"));

        let starved = CpuPoolConfig { threads: 4, queue_capacity: 2, ..CpuPoolConfig::default() };
        let err = starved.validate().unwrap_err();
        assert!(err.to_string().contains("cpu.queue_capacity must be at least cpu.threads"), "{err}");

        let spins_too_long = CpuPoolConfig { spin_wait_us: MAX_SPIN_WAIT_US + 1, ..CpuPoolConfig::default() };
        assert!(spins_too_long.validate().unwrap_err().to_string().contains("cpu.spin_wait_us"));

        let waits_too_long = CpuPoolConfig { slot_wait_ms: MAX_SLOT_WAIT_MS + 1, ..CpuPoolConfig::default() };
        assert!(waits_too_long.validate().unwrap_err().to_string().contains("cpu.slot_wait_ms"));

        CpuPoolConfig { queue_capacity: 1, spin_wait_us: 0, ..CpuPoolConfig::default() }.validate().unwrap();
        CpuPoolConfig {
            threads: MAX_CPU_THREADS,
            queue_capacity: MAX_QUEUE_CAPACITY,
            spin_wait_us: MAX_SPIN_WAIT_US,
            slot_wait_ms: MAX_SLOT_WAIT_MS,
        }
        .validate()
        .unwrap();
    }

    #[test]
    fn round_trips_through_serde() {
        let config = CpuPoolConfig { threads: 2, queue_capacity: 16, spin_wait_us: 5, slot_wait_ms: 250 };
        let json = serde_json::to_string(&config).unwrap();
        assert_eq!(json, r#"{"threads":2,"queue_capacity":16,"spin_wait_us":5,"slot_wait_ms":250}"#);
        assert_eq!(serde_json::from_str::<CpuPoolConfig>(&json).unwrap(), config);
    }
}
