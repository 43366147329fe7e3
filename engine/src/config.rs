//! The engine's configuration: one serde struct, validated once in
//! [`EngineBuilder::build`](crate::EngineBuilder::build) so a bad value fails
//! at start and names its key.

use serde::{Deserialize, Serialize};
use switchyard_cpu_pool::CpuPoolConfig;
use switchyard_io_reactor::{HttpConfig, MysqlConfig, RedisConfig, WatchdogConfig};

use crate::error::Error;
use crate::model::{ExecutionModel, ModelPlan, ModelSpec, Sizes, ThreadKnob};

/// Default most tasks admitted at once.
pub const DEFAULT_MAX_IN_FLIGHT: usize = 1_024;
/// Default reactor worker threads under `hybrid`.
pub const DEFAULT_REACTOR_THREADS: usize = 1;
/// Default time a shutdown may take, every phase included: 25 s, inside the
/// 30 s a container orchestrator grants between SIGTERM and SIGKILL.
pub const DEFAULT_SHUTDOWN_DEADLINE_MS: u64 = 25_000;
/// Default workers of the `threads` model (prefork's one-task-per-worker shape).
pub const DEFAULT_THREAD_WORKERS: usize = 16;
/// Largest `max_in_flight` accepted: each admitted task costs memory.
pub const MAX_IN_FLIGHT_LIMIT: usize = 1_000_000;
/// Default time a task may run, from its start to its settlement: a minute,
/// far beyond a healthy poll or delivery (seconds) and short enough that a
/// task stuck on a peer that never answers frees its in-flight slot.
pub const DEFAULT_TASK_TIMEOUT_MS: u64 = 60_000;
/// Longest task timeout a configuration may ask for (engine-wide, a
/// pipeline's or an item's): an hour. A task that must run longer is a
/// batch job, and it would be abandoned at every shutdown anyway.
pub const MAX_TASK_TIMEOUT_MS: u64 = 3_600_000;

/// Whether `ms` is a task timeout the engine accepts: 1 ms to
/// [`MAX_TASK_TIMEOUT_MS`]. Used for the engine-wide value and for overrides.
pub fn valid_task_timeout_ms(ms: u64) -> bool {
    (1..=MAX_TASK_TIMEOUT_MS).contains(&ms)
}

/// Everything the engine needs to start.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EngineConfig {
    /// Placement of CPU steps.
    pub model: ExecutionModel,
    /// Reactor worker threads under `hybrid` (`reactor-only` always uses one).
    pub reactor_threads: usize,
    /// Most tasks admitted at once; when full the engine stops reading its source.
    pub max_in_flight: usize,
    /// Workers of the `threads` model.
    pub thread_workers: usize,
    /// Time a shutdown may take, every phase included (the service drains
    /// in-flight tasks for all but a few seconds of it, kept for abandoning
    /// the rest and closing).
    pub shutdown_deadline_ms: u64,
    /// Longest a task may run, from its start; past it the task is cancelled
    /// at its next await and its item handed back for a retry. A pipeline or
    /// an item may set its own ([`Delivery::with_timeout`](crate::Delivery::with_timeout)).
    pub task_timeout_ms: u64,
    /// The CPU pool (`hybrid` only).
    pub cpu: CpuPoolConfig,
    /// Outbound HTTP.
    pub http: HttpConfig,
    /// MySQL, when tasks use it.
    pub mysql: Option<MysqlConfig>,
    /// Redis, when tasks use it.
    pub redis: Option<RedisConfig>,
    /// Reactor stall watchdog.
    pub watchdog: WatchdogConfig,
}

impl Default for EngineConfig {
    fn default() -> Self {
        EngineConfig {
            model: ExecutionModel::Hybrid,
            reactor_threads: DEFAULT_REACTOR_THREADS,
            max_in_flight: DEFAULT_MAX_IN_FLIGHT,
            thread_workers: DEFAULT_THREAD_WORKERS,
            shutdown_deadline_ms: DEFAULT_SHUTDOWN_DEADLINE_MS,
            task_timeout_ms: DEFAULT_TASK_TIMEOUT_MS,
            cpu: CpuPoolConfig::default(),
            http: HttpConfig::default(),
            mysql: None,
            redis: None,
            watchdog: WatchdogConfig::default(),
        }
    }
}

impl EngineConfig {
    /// Rejects any value that cannot work, naming its key.
    pub fn validate(&self) -> Result<(), Error> {
        if self.reactor_threads == 0 {
            return Err(Error::config("reactor_threads"));
        }
        if self.max_in_flight == 0 || self.max_in_flight > MAX_IN_FLIGHT_LIMIT {
            return Err(Error::config("max_in_flight"));
        }
        if self.thread_workers == 0 {
            return Err(Error::config("thread_workers"));
        }
        if !valid_task_timeout_ms(self.task_timeout_ms) {
            return Err(Error::config("task_timeout_ms"));
        }
        self.cpu.validate().map_err(|e| Error::config_from("cpu", e))?;
        self.http.validate().map_err(Error::io)?;
        self.watchdog.validate().map_err(Error::io)?;
        if let Some(mysql) = &self.mysql {
            mysql.validate().map_err(Error::io)?;
        }
        if let Some(redis) = &self.redis {
            redis.validate().map_err(Error::io)?;
        }
        Ok(())
    }

    /// Sets the model of `spec`, and its thread count where it gives one.
    pub fn apply_model(&mut self, spec: ModelSpec) {
        self.model = spec.model;
        match spec.thread_override() {
            Some((ThreadKnob::CpuThreads, n)) => self.cpu.threads = n,
            Some((ThreadKnob::ThreadWorkers, n)) => self.thread_workers = n,
            None => {}
        }
    }

    /// The engine-wide task timeout.
    pub fn task_timeout(&self) -> std::time::Duration {
        std::time::Duration::from_millis(self.task_timeout_ms)
    }

    /// What the configured model means for these settings.
    pub(crate) fn plan(&self) -> ModelPlan {
        let sizes = Sizes {
            reactor_threads: self.reactor_threads,
            max_in_flight: self.max_in_flight,
            thread_workers: self.thread_workers,
        };
        ModelPlan::resolve(self.model, sizes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn validation_names_the_key() {
        let bad = EngineConfig { max_in_flight: 0, ..EngineConfig::default() };
        assert_eq!(bad.validate().unwrap_err().config_field(), Some("max_in_flight"));
        let bad = EngineConfig { reactor_threads: 0, ..EngineConfig::default() };
        assert_eq!(bad.validate().unwrap_err().config_field(), Some("reactor_threads"));
        for ms in [0, MAX_TASK_TIMEOUT_MS + 1] {
            let bad = EngineConfig { task_timeout_ms: ms, ..EngineConfig::default() };
            assert_eq!(bad.validate().unwrap_err().config_field(), Some("task_timeout_ms"));
        }
        EngineConfig { task_timeout_ms: MAX_TASK_TIMEOUT_MS, ..EngineConfig::default() }.validate().unwrap();
        let slow = EngineConfig {
            cpu: switchyard_cpu_pool::CpuPoolConfig { slot_wait_ms: u64::MAX, ..Default::default() },
            ..EngineConfig::default()
        };
        assert_eq!(slow.validate().unwrap_err().config_field(), Some("cpu"));
        let bad = EngineConfig { redis: Some(RedisConfig::new("http://x")), ..EngineConfig::default() };
        assert_eq!(bad.validate().unwrap_err().config_field(), Some("redis.url"));
        EngineConfig::default().validate().unwrap();
    }

    #[test]
    fn a_model_spec_sets_the_model_and_its_thread_count() {
        let mut c = EngineConfig::default();
        c.apply_model("hybrid/1".parse().unwrap());
        assert_eq!((c.model, c.cpu.threads), (ExecutionModel::Hybrid, 1));
        c.apply_model("threads/64".parse().unwrap());
        assert_eq!((c.model, c.thread_workers, c.cpu.threads), (ExecutionModel::Threads, 64, 1));
        c.apply_model("reactor-only".parse().unwrap());
        assert_eq!((c.model, c.thread_workers), (ExecutionModel::ReactorOnly, 64));
    }

    #[test]
    fn threads_model_admits_one_task_per_worker() {
        let c = EngineConfig { model: ExecutionModel::Threads, thread_workers: 8, ..EngineConfig::default() };
        assert_eq!(c.plan().max_in_flight, 8);
    }

    #[test]
    fn unknown_keys_are_rejected() {
        let err = serde_json::from_str::<EngineConfig>(r#"{"max_inflight": 3}"#).unwrap_err();
        assert!(err.to_string().contains("unknown field"), "{err}");
        let ok: EngineConfig = serde_json::from_str(r#"{"model": "reactor-only"}"#).unwrap();
        assert_eq!(ok.model, ExecutionModel::ReactorOnly);
    }
}
