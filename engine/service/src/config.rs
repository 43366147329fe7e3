//! The service's configuration file (TOML) and its validation.
//!
//! Precedence: built-in defaults < the TOML file < `SWITCHYARD_*`
//! environment < command-line flags (the binary applies the last two).
//! Unknown keys are errors; every error names the key to fix; values may
//! reference the environment with `${VAR}` (secrets stay out of the file
//! and out of every printout).

use std::net::SocketAddr;
use std::path::Path;

use serde::{Deserialize, Serialize};
use switchyard::io_reactor::{host_key_of, HostConfig, MAX_CONFIGURED_HOSTS};
use switchyard::EngineConfig;
use switchyard_pipeline::{redact_url_template, ConfigError, PipelineConfig, Template};
use switchyard_pz1::Params;

use crate::endpoints::DEFAULT_LISTEN_ADDR;

mod parse_error;

/// What the egress policy allows when the built-in zaps run: their
/// upstream, which this process starts on loopback.
pub const BUILT_IN_UPSTREAM_RANGE: &str = "127.0.0.1/32";
/// Default poll period of the built-in PZ-1 zaps.
pub const DEFAULT_PZ1_POLL_PERIOD_MS: u64 = 2_000;
/// Default number of built-in PZ-1 zaps (50 polls a second).
pub const DEFAULT_PZ1_ZAPS: u64 = 100;
/// Most built-in PZ-1 zaps: each is a schedule entry and a poll in flight.
pub const MAX_PZ1_ZAPS: u64 = 100_000;

/// The whole service.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServiceConfig {
    /// Address of `/metrics`, `/healthz` and `/status` (port 0 picks one).
    pub listen: SocketAddr,
    /// The engine: model, bounds, HTTP, MySQL, Redis, watchdog.
    pub engine: EngineConfig,
    /// The built-in PZ-1 zaps, run when no pipeline is configured.
    pub pz1: Pz1Default,
    /// Polling pipelines; when empty the built-in PZ-1 zaps run instead.
    pub pipelines: Vec<PipelineConfig>,
    /// Where configured pipelines keep their state.
    pub state: PipelineState,
    /// How durable pipelines use Redis.
    pub durable: DurableConfig,
}

impl Default for ServiceConfig {
    fn default() -> Self {
        ServiceConfig {
            listen: DEFAULT_LISTEN_ADDR,
            engine: EngineConfig::default(),
            pz1: Pz1Default::default(),
            pipelines: Vec::new(),
            state: PipelineState::Redis,
            durable: DurableConfig::default(),
        }
    }
}

/// Where configured pipelines keep their state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PipelineState {
    /// In Redis (`engine.redis` must be set): polls and deliveries are stream
    /// entries, so a crash loses nothing and several processes share the
    /// work.
    Redis,
    /// In this process: a restart forgets what was delivered and what was
    /// in flight. Only when the configuration says so.
    Ephemeral,
}

/// Default key prefix of a durable service's Redis keys.
pub const DEFAULT_DURABLE_KEY_PREFIX: &str = "switchyard";
/// Default most deliveries waiting in the outbox before polls hold back.
pub const DEFAULT_DELIVERIES_MAX_LEN: usize = 100_000;
/// Default time between two looks for due polls.
pub const DEFAULT_SCHEDULER_TICK_MS: u64 = 100;

/// How durable pipelines use Redis.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DurableConfig {
    /// Prefix of every key (`{prefix}:polls`, `{prefix}:deliveries`,
    /// `{prefix}:seen:{pipeline}`, ...); processes sharing it share the work.
    pub key_prefix: String,
    /// Idle time after which a dead process's poll or delivery is claimed.
    pub claim_idle_ms: u64,
    /// Most deliveries waiting in the outbox; a poll that would exceed it
    /// leaves its new items for the next poll.
    pub deliveries_max_len: usize,
    /// Time between two looks for due polls.
    pub scheduler_tick_ms: u64,
}

impl Default for DurableConfig {
    fn default() -> Self {
        DurableConfig {
            key_prefix: DEFAULT_DURABLE_KEY_PREFIX.to_string(),
            claim_idle_ms: switchyard::source::DEFAULT_STREAM_CLAIM_IDLE_MS,
            deliveries_max_len: DEFAULT_DELIVERIES_MAX_LEN,
            scheduler_tick_ms: DEFAULT_SCHEDULER_TICK_MS,
        }
    }
}

/// The embedded default: PZ-1 zaps polled on a schedule against an
/// in-process upstream, with embedded stores unless Redis and MySQL are set.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Pz1Default {
    /// Number of zaps.
    pub zaps: u64,
    /// Time between two polls of one zap.
    pub poll_period_ms: u64,
    /// Events per poll.
    pub items: u64,
    /// New events per poll after the first.
    pub fresh: u64,
    /// SHA-256 rounds per item.
    pub rounds: u32,
    /// Upstream delay scale, milliseconds.
    pub base_ms: f64,
    /// Upstream delay tail index.
    pub alpha: f64,
    /// Upstream delay cap, milliseconds.
    pub max_ms: u64,
}

impl Default for Pz1Default {
    fn default() -> Self {
        use switchyard_pz1 as p;
        Pz1Default {
            zaps: DEFAULT_PZ1_ZAPS,
            poll_period_ms: DEFAULT_PZ1_POLL_PERIOD_MS,
            items: p::DEFAULT_ITEMS,
            fresh: p::DEFAULT_FRESH,
            rounds: p::DEFAULT_ROUNDS,
            base_ms: p::DEFAULT_BASE_MS,
            alpha: p::DEFAULT_ALPHA,
            max_ms: p::DEFAULT_MAX_MS,
        }
    }
}

impl ServiceConfig {
    /// Reads a TOML file. A missing file, bad TOML and unknown keys are errors.
    pub fn load(path: &Path) -> Result<ServiceConfig, ConfigError> {
        let file = path.display().to_string();
        let text = std::fs::read_to_string(path)
            .map_err(|e| ConfigError::new(&file, format!("cannot read: {e}")))?;
        Self::parse(&text).map_err(|e| ConfigError::new(&file, e.to_string()))
    }

    /// Parses TOML text. An error names the key at fault (or the line and
    /// column of bad TOML) and never echoes the text, which may hold a
    /// secret.
    pub fn parse(text: &str) -> Result<ServiceConfig, ConfigError> {
        toml::from_str(text).map_err(|e| parse_error::parse_error(text, &e))
    }

    /// Checks every value, resolving `${VAR}` references to prove they are set.
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.engine.validate().map_err(|e| {
            let key = e.config_field().map_or("engine".to_string(), |f| format!("engine.{f}"));
            ConfigError::new(key, e.to_string())
        })?;
        self.resolved_engine()?;
        let p = &self.pz1;
        if !(1..=MAX_PZ1_ZAPS).contains(&p.zaps) {
            return Err(ConfigError::new("pz1.zaps", "must be 1 to 100,000"));
        }
        if p.poll_period_ms == 0 {
            return Err(ConfigError::new("pz1.poll_period_ms", "must be at least 1"));
        }
        self.pz1_params()
            .validate()
            .map_err(|e| ConfigError::new(format!("pz1.{}", e.field()), e.to_string()))?;
        let d = &self.durable;
        let prefix_ok = !d.key_prefix.is_empty()
            && d.key_prefix.len() <= 64
            && d.key_prefix.chars().all(|c| c.is_ascii_alphanumeric() || "-_:.{}".contains(c));
        if !prefix_ok {
            return Err(ConfigError::new(
                "durable.key_prefix",
                "use 1-64 letters, digits, '-', '_', ':', '.', '{}'",
            ));
        }
        if !(300..=3_600_000).contains(&d.claim_idle_ms) {
            return Err(ConfigError::new("durable.claim_idle_ms", "must be 300 ms to one hour"));
        }
        if d.deliveries_max_len == 0 || d.deliveries_max_len > switchyard::source::MAX_STREAM_MAX_LEN {
            return Err(ConfigError::new("durable.deliveries_max_len", "must be 1 to 100,000,000"));
        }
        if !(10..=10_000).contains(&d.scheduler_tick_ms) {
            return Err(ConfigError::new("durable.scheduler_tick_ms", "must be 10 ms to 10 s"));
        }
        // Durable pipelines need Redis only (MySQL adds run records); the
        // others keep dedup state in Redis and records in MySQL, or neither.
        if !self.durable_pipelines() && self.engine.redis.is_some() != self.engine.mysql.is_some() {
            let missing = if self.engine.redis.is_none() { "engine.redis" } else { "engine.mysql" };
            return Err(ConfigError::new(
                missing,
                "Redis (dedup state) and MySQL (run records) go together here; set both or neither",
            ));
        }
        let mut names = std::collections::HashSet::new();
        for (i, pipeline) in self.pipelines.iter().enumerate() {
            pipeline.validate(&format!("pipelines[{i}]"))?;
            if !names.insert(pipeline.name.as_str()) {
                return Err(ConfigError::new(format!("pipelines[{i}].name"), "duplicate pipeline name"));
            }
        }
        if !self.pipelines.is_empty() && self.state == PipelineState::Redis && self.engine.redis.is_none() {
            return Err(ConfigError::new(
                "engine.redis",
                "configured pipelines keep their state in Redis so that nothing is lost on a restart: \
                 set [engine.redis], or say state = \"ephemeral\" to accept that a restart forgets what \
                 was delivered and what was in flight",
            ));
        }
        Ok(())
    }

    /// Whether configured pipelines run durably, on Redis streams.
    pub fn durable_pipelines(&self) -> bool {
        !self.pipelines.is_empty() && self.state == PipelineState::Redis
    }

    /// The engine configuration with `${VAR}` references in store URLs resolved.
    pub fn resolved_engine(&self) -> Result<EngineConfig, ConfigError> {
        let mut engine = self.engine.clone();
        if let Some(mysql) = &mut engine.mysql {
            mysql.url = Template::new(mysql.url.clone()).resolve("engine.mysql.url")?;
        }
        if let Some(redis) = &mut engine.redis {
            redis.url = Template::new(redis.url.clone()).resolve("engine.redis.url")?;
        }
        // Every host a pipeline talks to gets its own `host` label on the
        // HTTP metrics (and a line in `/status`), unless listed already.
        let urls = self.pipelines.iter().flat_map(|p| [&p.source.url, &p.action.url]);
        for url in urls {
            let Some(key) = url.resolve("pipelines.url").ok().as_deref().and_then(host_key_of) else {
                continue;
            };
            let listed =
                engine.http.hosts.iter().any(|h| host_key_of(&h.host).as_deref() == Some(key.as_str()));
            if !listed && engine.http.hosts.len() < MAX_CONFIGURED_HOSTS {
                engine.http.hosts.push(HostConfig::labelled(key));
            }
        }
        if self.pipelines.is_empty() {
            // The built-in zaps poll an upstream this process starts on
            // 127.0.0.1; configured pipelines get exactly what the file allows.
            engine.http.egress.allow.push(BUILT_IN_UPSTREAM_RANGE.to_string());
        }
        Ok(engine)
    }

    /// PZ-1 parameters of the built-in zaps.
    pub fn pz1_params(&self) -> Params {
        let p = &self.pz1;
        Params {
            rate: p.zaps as f64 * 1000.0 / p.poll_period_ms.max(1) as f64,
            zaps: Some(p.zaps),
            items: p.items,
            fresh: p.fresh,
            rounds: p.rounds,
            base_ms: p.base_ms,
            alpha: p.alpha,
            max_ms: p.max_ms,
            ..Params::default()
        }
    }

    /// The configuration as TOML for `check-config`: `${VAR}` references as
    /// written, literal header values and URL passwords replaced by `***`.
    pub fn redacted_toml(&self) -> String {
        let mut shown = self.clone();
        shown.pipelines = self.pipelines.iter().map(PipelineConfig::redacted).collect();
        if let Some(mysql) = &mut shown.engine.mysql {
            mysql.url = redact_url_template(&mysql.url);
        }
        if let Some(redis) = &mut shown.engine.redis {
            redis.url = redact_url_template(&redis.url);
        }
        toml::to_string_pretty(&shown).unwrap_or_else(|e| format!("# cannot print the configuration: {e}\n"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PIPELINE: &str = r#"
        state = "ephemeral"
        [[pipelines]]
        name = "orders"
        [pipelines.source]
        url = "https://api.example.com/orders?page={seq}"
        headers = { Authorization = "Bearer ${SY_TEST_TOKEN}", Accept = "application/json" }
        poll_interval_ms = 1000
        items_pointer = "/data"
        [[pipelines.steps]]
        step = "trim"
        field = "email"
        [[pipelines.steps]]
        step = "fingerprint"
        rounds = 3
        [pipelines.action]
        url = "http://127.0.0.1:9/hook"
    "#;

    #[test]
    fn a_full_file_parses_and_validates() {
        std::env::set_var("SY_TEST_TOKEN", "t0ken");
        let config = ServiceConfig::parse(PIPELINE).unwrap();
        config.validate().unwrap();
        assert_eq!(config.pipelines[0].fingerprint_rounds(), 3);
        let shown = config.redacted_toml();
        assert!(shown.contains("${SY_TEST_TOKEN}") && !shown.contains("t0ken"), "{shown}");
        assert!(shown.contains("Accept = \"***\""), "literal header values are redacted: {shown}");
    }

    #[test]
    fn redacted_toml_shows_no_literal_secret() {
        let text = PIPELINE
            .replace("orders?page={seq}", "orders?api_key=sk_live_query&page={seq}")
            .replace("http://127.0.0.1:9/hook", "https://user:sk_live_pw@hooks.example.com/${SY_TEST_PATH}")
            + "[engine.mysql]\nurl = \"mysql://root:sk_live/mysql@db:3306/test\"\n\
               [engine.redis]\nurl = \"redis://:${SY_TEST_REDIS_PASSWORD}@127.0.0.1:6379/0?token=sk_live_redis\"\n";
        let shown = ServiceConfig::parse(&text).unwrap().redacted_toml();
        assert!(!shown.contains("sk_live"), "{shown}");
        assert!(shown.contains("orders?api_key=***&page={seq}"), "{shown}");
        assert!(shown.contains("https://user:***@hooks.example.com/${SY_TEST_PATH}"), "{shown}");
        assert!(shown.contains("url = \"<unparsable url>\""), "a password holding '/' is not shown: {shown}");
        assert!(shown.contains("redis://:${SY_TEST_REDIS_PASSWORD}@127.0.0.1:6379/0?token=***"), "{shown}");
    }

    #[test]
    fn errors_name_the_key() {
        let unknown = ServiceConfig::parse("[engine]\nmax_inflight = 3\n").unwrap_err().to_string();
        assert!(unknown.contains("max_inflight"), "{unknown}");
        let bad_url = PIPELINE.replace("http://127.0.0.1:9/hook", "ftp://x");
        std::env::set_var("SY_TEST_TOKEN", "t0ken");
        let err = ServiceConfig::parse(&bad_url).unwrap().validate().unwrap_err();
        assert_eq!(err.key(), "pipelines[0].action.url");
        let missing = PIPELINE.replace("SY_TEST_TOKEN", "SY_TEST_UNSET_VARIABLE");
        let err = ServiceConfig::parse(&missing).unwrap().validate().unwrap_err();
        assert_eq!(err.key(), "pipelines[0].source.headers.Authorization");
        assert!(err.to_string().contains("SY_TEST_UNSET_VARIABLE is not set"));
        let zero = ServiceConfig::parse("[engine]\nreactor_threads = 0\n").unwrap().validate().unwrap_err();
        assert_eq!(zero.key(), "engine.reactor_threads");
        let zero_cpu =
            ServiceConfig::parse("[engine.cpu]\nthreads = 100000\n").unwrap().validate().unwrap_err();
        assert_eq!(zero_cpu.key(), "engine.cpu");
    }

    #[test]
    fn deadlines_and_cpu_heavy_values_are_bounded_and_name_their_key() {
        let key =
            |text: &str| ServiceConfig::parse(text).unwrap().validate().err().map(|e| e.key().to_string());
        assert_eq!(key("[engine]\ntask_timeout_ms = 0\n").as_deref(), Some("engine.task_timeout_ms"));
        assert_eq!(key("[engine]\ntask_timeout_ms = 3600001\n").as_deref(), Some("engine.task_timeout_ms"));
        assert_eq!(key("[engine]\ntask_timeout_ms = 30000\n"), None);
        let slot_wait = key("[engine.cpu]\nslot_wait_ms = 600001\n").unwrap();
        assert_eq!(slot_wait, "engine.cpu");
        let err =
            ServiceConfig::parse("[engine.cpu]\nslot_wait_ms = 600001\n").unwrap().validate().unwrap_err();
        assert!(err.to_string().contains("cpu.slot_wait_ms"), "{err}");
        assert_eq!(key("[pz1]\nrounds = 10000001\n").as_deref(), Some("pz1.rounds"));
        assert_eq!(key("[pz1]\nrounds = 1000000\nitems = 10000\n").as_deref(), Some("pz1.rounds"));
        assert_eq!(key("[pz1]\nitems = 10001\n").as_deref(), Some("pz1.items"));
        assert_eq!(key("[pz1]\nzaps = 100001\n").as_deref(), Some("pz1.zaps"));
        assert_eq!(key("[engine.cpu]\nqueue_capacity = 1000001\n").as_deref(), Some("engine.cpu"));
    }

    #[test]
    fn a_missing_file_is_an_error_naming_it() {
        let err = ServiceConfig::load(Path::new("/nonexistent/switchyard.toml")).unwrap_err();
        assert_eq!(err.key(), "/nonexistent/switchyard.toml");
    }
}
