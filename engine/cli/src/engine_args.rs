//! The engine's flags, declared once and shared by `run` and `bench`.
//!
//! Each flag has an environment twin and overrides the configuration file
//! only when given, so the order is defaults < file < environment < flags.

use clap::Args;
use switchyard::io_reactor::{MysqlConfig, RedisConfig};
use switchyard::EngineConfig;

/// Engine settings from the command line.
#[derive(Args, Clone, Default)]
pub(crate) struct EngineArgs {
    /// Reactor worker threads (hybrid).
    #[arg(long, env = "SWITCHYARD_REACTOR_THREADS")]
    reactor_threads: Option<usize>,
    /// CPU pool threads (hybrid; 0: one per core).
    #[arg(long, env = "SWITCHYARD_CPU_THREADS")]
    cpu_threads: Option<usize>,
    /// Most CPU jobs queued or running (0: four per CPU thread).
    #[arg(long, env = "SWITCHYARD_CPU_QUEUE_CAPACITY")]
    cpu_queue_capacity: Option<usize>,
    /// Most tasks in flight.
    #[arg(long, env = "SWITCHYARD_MAX_IN_FLIGHT")]
    max_in_flight: Option<usize>,
    /// Workers of the `threads` model (one task each, like prefork processes).
    #[arg(long, env = "SWITCHYARD_THREAD_WORKERS")]
    thread_workers: Option<usize>,
    /// Milliseconds in-flight tasks get to finish on shutdown.
    #[arg(long, env = "SWITCHYARD_SHUTDOWN_DEADLINE_MS")]
    shutdown_deadline_ms: Option<u64>,
    /// Redis for dedup state (with --mysql-url; default: in-memory stores).
    #[arg(long, env = "SWITCHYARD_REDIS_URL", hide_env_values = true)]
    pub(crate) redis_url: Option<String>,
    /// MySQL for run records (with --redis-url; default: in-memory stores).
    #[arg(long, env = "SWITCHYARD_MYSQL_URL", hide_env_values = true)]
    pub(crate) mysql_url: Option<String>,
}

impl EngineArgs {
    /// Writes every given flag into `engine`.
    pub(crate) fn apply(&self, engine: &mut EngineConfig) {
        let set = |slot: &mut usize, value: Option<usize>| {
            if let Some(v) = value {
                *slot = v;
            }
        };
        set(&mut engine.reactor_threads, self.reactor_threads);
        set(&mut engine.cpu.threads, self.cpu_threads);
        set(&mut engine.cpu.queue_capacity, self.cpu_queue_capacity);
        set(&mut engine.max_in_flight, self.max_in_flight);
        set(&mut engine.thread_workers, self.thread_workers);
        if let Some(v) = self.shutdown_deadline_ms {
            engine.shutdown_deadline_ms = v;
        }
        if let Some(url) = &self.redis_url {
            let base = engine.redis.clone().unwrap_or_else(|| RedisConfig::new(""));
            engine.redis = Some(RedisConfig { url: url.clone(), ..base });
        }
        if let Some(url) = &self.mysql_url {
            let base = engine.mysql.clone().unwrap_or_else(|| MysqlConfig::new(""));
            engine.mysql = Some(MysqlConfig { url: url.clone(), ..base });
        }
    }
}

impl std::fmt::Debug for EngineArgs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The store URLs may carry passwords: shown redacted.
        let redact = |url: &Option<String>| url.as_deref().map(switchyard::io_reactor::redact_url);
        f.debug_struct("EngineArgs")
            .field("reactor_threads", &self.reactor_threads)
            .field("cpu_threads", &self.cpu_threads)
            .field("cpu_queue_capacity", &self.cpu_queue_capacity)
            .field("max_in_flight", &self.max_in_flight)
            .field("thread_workers", &self.thread_workers)
            .field("shutdown_deadline_ms", &self.shutdown_deadline_ms)
            .field("redis_url", &redact(&self.redis_url))
            .field("mysql_url", &redact(&self.mysql_url))
            .finish()
    }
}

/// Redis keeps the dedup state and MySQL the run records: a pipeline needs
/// both or neither (then it uses the in-memory stores). `names` are what the
/// two are called where the user set them (`engine.redis` in a file,
/// `--redis-url` on a command line).
pub(crate) fn check_stores_pair(engine: &EngineConfig, names: [&str; 2]) -> Result<(), String> {
    match (&engine.redis, &engine.mysql) {
        (Some(_), None) | (None, Some(_)) => {
            let missing = if engine.redis.is_none() { names[0] } else { names[1] };
            Err(format!(
                "{missing}: Redis (dedup state) and MySQL (run records) go together; set both or neither"
            ))
        }
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn given_flags_override_and_absent_ones_keep_the_file() {
        let mut engine = EngineConfig { max_in_flight: 7, thread_workers: 3, ..EngineConfig::default() };
        let args = EngineArgs {
            max_in_flight: Some(9),
            cpu_threads: Some(2),
            redis_url: Some("redis://127.0.0.1:1/".into()),
            ..EngineArgs::default()
        };
        args.apply(&mut engine);
        assert_eq!((engine.max_in_flight, engine.thread_workers, engine.cpu.threads), (9, 3, 2));
        assert_eq!(engine.redis.as_ref().map(|r| r.url.as_str()), Some("redis://127.0.0.1:1/"));
        let names = ["--redis-url", "--mysql-url"];
        assert!(check_stores_pair(&engine, names).unwrap_err().starts_with("--mysql-url"));
        engine.mysql = Some(MysqlConfig::new("mysql://root:pa%2Fss@127.0.0.1/test"));
        assert!(check_stores_pair(&engine, names).is_ok());
        let args = EngineArgs { mysql_url: Some("mysql://root:s3cret@db/test".into()), ..args };
        assert!(!format!("{args:?}").contains("s3cret"), "{args:?}");
    }
}
