//! The service's configuration file (TOML) and its validation.
//!
//! Precedence: built-in defaults < the TOML file < `SWITCHYARD_*`
//! environment < command-line flags (the binary applies the last two).
//! Unknown keys are errors; every error names the key to fix; values may
//! reference the environment with `${VAR}` (secrets stay out of the file
//! and out of every printout).

use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::path::Path;

use serde::{Deserialize, Serialize};

use super::secret::Template;
use crate::config::EngineConfig;
use crate::telemetry::DEFAULT_METRICS_ADDR;

/// A configuration problem, naming the key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    key: String,
    message: String,
}

impl ConfigError {
    pub(crate) fn new(key: impl Into<String>, message: impl Into<String>) -> Self {
        ConfigError { key: key.into(), message: message.into() }
    }

    /// The key at fault (`pipelines[0].source.url`), or the file for parse errors.
    pub fn key(&self) -> &str {
        &self.key
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.key, self.message)
    }
}

impl std::error::Error for ConfigError {}

/// Default poll period of the built-in PZ-1 zaps.
pub const DEFAULT_PZ1_POLL_PERIOD_MS: u64 = 2_000;
/// Default number of built-in PZ-1 zaps (50 polls a second).
pub const DEFAULT_PZ1_ZAPS: u64 = 100;
/// Default most items one poll may return before it is refused.
pub const DEFAULT_MAX_ITEMS_PER_POLL: usize = 10_000;
/// Default webhook delivery attempts per item and poll.
pub const DEFAULT_ACTION_MAX_ATTEMPTS: u32 = 4;
/// Default first retry delay of a webhook delivery.
pub const DEFAULT_ACTION_INITIAL_BACKOFF_MS: u64 = 200;
/// Default longest retry delay of a webhook delivery.
pub const DEFAULT_ACTION_MAX_BACKOFF_MS: u64 = 5_000;

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
}

impl Default for ServiceConfig {
    fn default() -> Self {
        ServiceConfig {
            listen: DEFAULT_METRICS_ADDR,
            engine: EngineConfig::default(),
            pz1: Pz1Default::default(),
            pipelines: Vec::new(),
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
        use switchyard_protocol::pz1 as p;
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

/// One polling trigger: fetch, transform, deduplicate, deliver, record.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PipelineConfig {
    /// Unique name: letters, digits, `-` and `_` (a metric label and a key part).
    pub name: String,
    /// Where items come from.
    pub source: SourceConfig,
    /// Transform steps, applied in order to every item.
    #[serde(default)]
    pub steps: Vec<StepConfig>,
    /// Where new items go.
    pub action: ActionConfig,
}

/// The polled API.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SourceConfig {
    /// `http(s)://...`; `{seq}` is replaced by the poll's number (from 1).
    pub url: Template,
    /// Request headers; values may reference the environment (`${TOKEN}`).
    #[serde(default)]
    pub headers: BTreeMap<String, Template>,
    /// Time between polls.
    pub poll_interval_ms: u64,
    /// JSON pointer to the array of items (`""` when the body is the array).
    #[serde(default)]
    pub items_pointer: String,
    /// The field holding each item's id (string or integer).
    #[serde(default = "default_id_field")]
    pub id_field: String,
    /// The API lists items newest first (then actions fire in reverse, oldest first).
    #[serde(default = "default_true")]
    pub newest_first: bool,
    /// Most items one poll may return; more is an error, not a truncation.
    #[serde(default = "default_max_items")]
    pub max_items: usize,
    /// The very first poll (no dedup state yet) marks what it finds as seen
    /// and delivers nothing, so switching a pipeline on does not replay an
    /// API's history. Later polls, and restarts with state in Redis, deliver.
    #[serde(default = "default_true")]
    pub seed_on_first_poll: bool,
}

fn default_id_field() -> String {
    "id".to_string()
}
fn default_true() -> bool {
    true
}
fn default_max_items() -> usize {
    DEFAULT_MAX_ITEMS_PER_POLL
}

/// One named transform step.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "step", rename_all = "snake_case", deny_unknown_fields)]
pub enum StepConfig {
    /// Strip leading and trailing white space.
    Trim {
        /// The string field.
        field: String,
    },
    /// Lower-case a string, or every string of an array.
    LowerCase {
        /// The field.
        field: String,
    },
    /// Replace every run of white space with one space.
    CollapseWhitespace {
        /// The string field.
        field: String,
    },
    /// Parse a decimal amount ("12.05") into integer cents (1205).
    DecimalToCents {
        /// The string field.
        field: String,
        /// Where the cents go (the source field is removed); default: in place.
        #[serde(default)]
        into: Option<String>,
    },
    /// Sort an array of strings and drop duplicates.
    SortDedupe {
        /// The array field.
        field: String,
    },
    /// Fingerprint the item: SHA-256 of its canonical JSON, chained `rounds` times.
    Fingerprint {
        /// Rounds (at least 1).
        rounds: u32,
    },
}

/// The webhook new items are delivered to.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ActionConfig {
    /// `http(s)://...`, POSTed `{"id", "fingerprint", "item"}` as JSON.
    pub url: Template,
    /// Request headers; values may reference the environment.
    #[serde(default)]
    pub headers: BTreeMap<String, Template>,
    /// Delivery attempts per item and poll; an item still failing stays
    /// unseen and is tried again on the next poll.
    #[serde(default = "default_max_attempts")]
    pub max_attempts: u32,
    /// First retry delay; doubles per attempt, with full jitter.
    #[serde(default = "default_initial_backoff_ms")]
    pub initial_backoff_ms: u64,
    /// Longest retry delay.
    #[serde(default = "default_max_backoff_ms")]
    pub max_backoff_ms: u64,
}

fn default_max_attempts() -> u32 {
    DEFAULT_ACTION_MAX_ATTEMPTS
}
fn default_initial_backoff_ms() -> u64 {
    DEFAULT_ACTION_INITIAL_BACKOFF_MS
}
fn default_max_backoff_ms() -> u64 {
    DEFAULT_ACTION_MAX_BACKOFF_MS
}

impl ServiceConfig {
    /// Reads a TOML file. A missing file, bad TOML and unknown keys are errors.
    pub fn load(path: &Path) -> Result<ServiceConfig, ConfigError> {
        let file = path.display().to_string();
        let text = std::fs::read_to_string(path)
            .map_err(|e| ConfigError::new(&file, format!("cannot read: {e}")))?;
        Self::parse(&text).map_err(|e| ConfigError::new(&file, e.to_string()))
    }

    /// Parses TOML text.
    pub fn parse(text: &str) -> Result<ServiceConfig, toml::de::Error> {
        toml::from_str(text)
    }

    /// Checks every value, resolving `${VAR}` references to prove they are set.
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.engine.validate().map_err(|e| {
            let key = e.config_field().map_or("engine".to_string(), |f| format!("engine.{f}"));
            ConfigError::new(key, e.to_string())
        })?;
        self.resolved_engine()?;
        let p = &self.pz1;
        if p.zaps == 0 {
            return Err(ConfigError::new("pz1.zaps", "must be at least 1"));
        }
        if p.poll_period_ms == 0 {
            return Err(ConfigError::new("pz1.poll_period_ms", "must be at least 1"));
        }
        self.pz1_params()
            .validate()
            .map_err(|e| ConfigError::new(format!("pz1.{}", e.field()), e.to_string()))?;
        let mut names = std::collections::HashSet::new();
        for (i, pipeline) in self.pipelines.iter().enumerate() {
            pipeline.validate(&format!("pipelines[{i}]"))?;
            if !names.insert(pipeline.name.as_str()) {
                return Err(ConfigError::new(format!("pipelines[{i}].name"), "duplicate pipeline name"));
            }
        }
        Ok(())
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
        Ok(engine)
    }

    /// PZ-1 parameters of the built-in zaps.
    pub fn pz1_params(&self) -> switchyard_protocol::pz1::Params {
        let p = &self.pz1;
        switchyard_protocol::pz1::Params {
            rate: p.zaps as f64 * 1000.0 / p.poll_period_ms.max(1) as f64,
            zaps: Some(p.zaps),
            items: p.items,
            fresh: p.fresh,
            rounds: p.rounds,
            base_ms: p.base_ms,
            alpha: p.alpha,
            max_ms: p.max_ms,
            ..switchyard_protocol::pz1::Params::default()
        }
    }

    /// The configuration as TOML for `check-config`: `${VAR}` references as
    /// written, literal header values and URL passwords replaced by `***`.
    pub fn redacted_toml(&self) -> String {
        let mut shown = self.clone();
        let redact_headers = |headers: &mut BTreeMap<String, Template>| {
            for value in headers.values_mut() {
                if !value.has_references() {
                    *value = Template::new("***");
                }
            }
        };
        for pipeline in &mut shown.pipelines {
            redact_headers(&mut pipeline.source.headers);
            redact_headers(&mut pipeline.action.headers);
            pipeline.source.url = Template::new(redact_url_template(pipeline.source.url.as_written()));
            pipeline.action.url = Template::new(redact_url_template(pipeline.action.url.as_written()));
        }
        if let Some(mysql) = &mut shown.engine.mysql {
            mysql.url = redact_url_template(&mysql.url);
        }
        if let Some(redis) = &mut shown.engine.redis {
            redis.url = redact_url_template(&redis.url);
        }
        toml::to_string_pretty(&shown).unwrap_or_else(|e| format!("# cannot print the configuration: {e}\n"))
    }
}

fn redact_url_template(url: &str) -> String {
    if url.contains("${") {
        return url.to_string();
    }
    switchyard_io_reactor::redact_url(url)
}

impl PipelineConfig {
    fn validate(&self, key: &str) -> Result<(), ConfigError> {
        let name_ok = !self.name.is_empty()
            && self.name.len() <= 64
            && self.name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
        if !name_ok {
            return Err(ConfigError::new(format!("{key}.name"), "use 1-64 letters, digits, '-' or '_'"));
        }
        check_url(&self.source.url, &format!("{key}.source.url"))?;
        check_url(&self.action.url, &format!("{key}.action.url"))?;
        for (name, value) in &self.source.headers {
            value.resolve(&format!("{key}.source.headers.{name}"))?;
        }
        for (name, value) in &self.action.headers {
            value.resolve(&format!("{key}.action.headers.{name}"))?;
        }
        if self.source.poll_interval_ms == 0 {
            return Err(ConfigError::new(format!("{key}.source.poll_interval_ms"), "must be at least 1"));
        }
        if !(self.source.items_pointer.is_empty() || self.source.items_pointer.starts_with('/')) {
            return Err(ConfigError::new(
                format!("{key}.source.items_pointer"),
                "a JSON pointer starts with '/'",
            ));
        }
        if self.source.max_items == 0 {
            return Err(ConfigError::new(format!("{key}.source.max_items"), "must be at least 1"));
        }
        if self.action.max_attempts == 0 || self.action.max_attempts > 20 {
            return Err(ConfigError::new(format!("{key}.action.max_attempts"), "must be 1 to 20"));
        }
        if self.action.initial_backoff_ms > self.action.max_backoff_ms {
            return Err(ConfigError::new(
                format!("{key}.action.initial_backoff_ms"),
                "exceeds max_backoff_ms",
            ));
        }
        let fingerprints: Vec<usize> = self
            .steps
            .iter()
            .enumerate()
            .filter(|(_, s)| matches!(s, StepConfig::Fingerprint { .. }))
            .map(|(i, _)| i)
            .collect();
        match fingerprints.as_slice() {
            [] => {}
            [i] if *i + 1 == self.steps.len() => {}
            _ => {
                return Err(ConfigError::new(
                    format!("{key}.steps"),
                    "one fingerprint step at most, and last",
                ))
            }
        }
        for (i, step) in self.steps.iter().enumerate() {
            if let StepConfig::Fingerprint { rounds: 0 } = step {
                return Err(ConfigError::new(format!("{key}.steps[{i}].rounds"), "must be at least 1"));
            }
        }
        Ok(())
    }

    /// Rounds of the fingerprint step (1 when there is none).
    pub fn fingerprint_rounds(&self) -> u32 {
        self.steps
            .iter()
            .find_map(|s| match s {
                StepConfig::Fingerprint { rounds } => Some(*rounds),
                _ => None,
            })
            .unwrap_or(1)
    }
}

fn check_url(url: &Template, key: &str) -> Result<(), ConfigError> {
    let resolved = url.resolve(key)?.replace("{seq}", "1");
    let parsed: Result<http::Uri, _> = resolved.parse();
    match parsed {
        Ok(uri) if matches!(uri.scheme_str(), Some("http" | "https")) && uri.host().is_some() => Ok(()),
        _ => Err(ConfigError::new(key, "expected an http:// or https:// URL")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PIPELINE: &str = r#"
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
    fn a_missing_file_is_an_error_naming_it() {
        let err = ServiceConfig::load(Path::new("/nonexistent/switchyard.toml")).unwrap_err();
        assert_eq!(err.key(), "/nonexistent/switchyard.toml");
    }
}
