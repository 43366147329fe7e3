//! A pipeline's configuration, as the service's TOML file writes it, and
//! its validation.
//!
//! Unknown keys are errors; every error names the key to fix
//! (`pipelines[0].source.url`); URLs and header values may reference the
//! environment with `${VAR}` ([`Template`]), so secrets stay out of the file
//! and out of every printout.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::error::ConfigError;
use crate::steps::{fingerprint_rounds, StepConfig};
use crate::template::Template;

/// Default most items one poll may return before it is refused.
pub const DEFAULT_MAX_ITEMS_PER_POLL: usize = 10_000;
/// Largest `source.max_items` a configuration may ask for: every item of a
/// poll is parsed, transformed and fingerprinted in one CPU step, which holds
/// a pool thread for all of them.
pub const MAX_ITEMS_PER_POLL_LIMIT: usize = 100_000;
/// Most rounds a fingerprint step may chain: about 0.6 s of SHA-256 per item
/// (25,000 times PZ-1's CPU knob), enough to model a heavy transform.
pub const MAX_FINGERPRINT_ROUNDS: u32 = 10_000_000;
/// Most fingerprint rounds one poll may ask for, `rounds x source.max_items`:
/// about a minute of one core (the default task timeout), since a poll's
/// items are transformed in one CPU step that cannot be interrupted.
pub const MAX_FINGERPRINT_ROUNDS_PER_POLL: u64 = 1_000_000_000;
/// Default most ids a durable pipeline remembers (the newest first seen).
pub const DEFAULT_DEDUP_MAX_IDS: usize = 100_000;
/// Default longest a durable pipeline remembers an id: 30 days.
pub const DEFAULT_DEDUP_MAX_AGE_MS: u64 = 30 * 24 * 3_600_000;
/// Default webhook delivery attempts per item and poll.
pub const DEFAULT_ACTION_MAX_ATTEMPTS: u32 = 4;
/// Most delivery attempts a configuration may ask for.
pub const MAX_ACTION_ATTEMPTS: u32 = 20;
/// Default first retry delay of a webhook delivery.
pub const DEFAULT_ACTION_INITIAL_BACKOFF_MS: u64 = 200;
/// Default longest retry delay of a webhook delivery.
pub const DEFAULT_ACTION_MAX_BACKOFF_MS: u64 = 5_000;
/// Longest retry delay a configuration may ask for: a retry waits in Redis,
/// and an hour bounds how long one can sit there unnoticed.
pub const MAX_ACTION_BACKOFF_MS: u64 = 3_600_000;

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
    /// How much dedup state a durable pipeline keeps.
    #[serde(default)]
    pub dedup: DedupConfig,
    /// This pipeline's task timeout (each poll, each durable delivery),
    /// instead of the engine's `task_timeout_ms`: 1 ms to one hour.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub task_timeout_ms: Option<u64>,
    /// This pipeline's own rate limit over all its requests (polls and
    /// deliveries), in this process; hosts have theirs in `engine.http.hosts`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate_limit: Option<RateLimitConfig>,
}

/// Requests per second, with a burst.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RateLimitConfig {
    /// Most requests per second (fractions allowed: `0.5`).
    pub per_second: f64,
    /// Requests that may go at once after a quiet spell.
    #[serde(default = "default_burst")]
    pub burst: u32,
}

fn default_burst() -> u32 {
    1
}

/// The bounds of a durable pipeline's dedup state. An id beyond them that
/// reappears on the API is delivered again, with the same Idempotency-Key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DedupConfig {
    /// Most ids remembered, the newest first seen kept.
    pub max_ids: usize,
    /// Longest an id is remembered; also how long the state outlives the
    /// pipeline's last poll.
    pub max_age_ms: u64,
}

impl Default for DedupConfig {
    fn default() -> Self {
        DedupConfig { max_ids: DEFAULT_DEDUP_MAX_IDS, max_age_ms: DEFAULT_DEDUP_MAX_AGE_MS }
    }
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

/// The webhook new items are delivered to.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ActionConfig {
    /// `http(s)://...`, POSTed `{"id", "fingerprint", "item"}` as JSON.
    pub url: Template,
    /// Request headers; values may reference the environment.
    #[serde(default)]
    pub headers: BTreeMap<String, Template>,
    /// Delivery attempts per item. Durable pipelines retry from Redis and
    /// then dead-letter the item; ephemeral ones retry within the poll and
    /// leave an item still failing unseen, for the next poll.
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

/// `url`, a [`Template`], as it may be shown: see [`Template::redacted_url`].
pub fn redact_url_template(url: &str) -> String {
    Template::new(url).redacted_url()
}

impl PipelineConfig {
    /// Checks every value, resolving `${VAR}` references to prove they are
    /// set; `key` names the pipeline in errors (`pipelines[0]`).
    pub fn validate(&self, key: &str) -> Result<(), ConfigError> {
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
        if !(1..=MAX_ITEMS_PER_POLL_LIMIT).contains(&self.source.max_items) {
            return Err(ConfigError::new(format!("{key}.source.max_items"), "must be 1 to 100,000"));
        }
        if self.task_timeout_ms.is_some_and(|ms| !switchyard::valid_task_timeout_ms(ms)) {
            return Err(ConfigError::new(format!("{key}.task_timeout_ms"), "must be 1 ms to one hour"));
        }
        if let Some(rate) = self.rate_limit {
            let max = switchyard::io_reactor::MAX_RATE_PER_SECOND;
            if !(rate.per_second > 0.0 && rate.per_second <= max) {
                return Err(ConfigError::new(
                    format!("{key}.rate_limit.per_second"),
                    format!("must be above 0 and at most {max}"),
                ));
            }
            if !(1..=100_000).contains(&rate.burst) {
                return Err(ConfigError::new(format!("{key}.rate_limit.burst"), "must be 1 to 100,000"));
            }
        }
        if !(1..=MAX_ACTION_ATTEMPTS).contains(&self.action.max_attempts) {
            return Err(ConfigError::new(
                format!("{key}.action.max_attempts"),
                format!("must be 1 to {MAX_ACTION_ATTEMPTS}"),
            ));
        }
        if self.action.max_backoff_ms > MAX_ACTION_BACKOFF_MS {
            return Err(ConfigError::new(format!("{key}.action.max_backoff_ms"), "must be at most one hour"));
        }
        if self.action.initial_backoff_ms > self.action.max_backoff_ms {
            return Err(ConfigError::new(
                format!("{key}.action.initial_backoff_ms"),
                "exceeds max_backoff_ms",
            ));
        }
        if self.dedup.max_ids == 0 || self.dedup.max_ids > 10_000_000 {
            return Err(ConfigError::new(format!("{key}.dedup.max_ids"), "must be 1 to 10,000,000"));
        }
        if !(60_000..=365 * 24 * 3_600_000).contains(&self.dedup.max_age_ms) {
            return Err(ConfigError::new(
                format!("{key}.dedup.max_age_ms"),
                "must be one minute to one year",
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
            if let StepConfig::Fingerprint { rounds } = step {
                let key = format!("{key}.steps[{i}].rounds");
                if !(1..=MAX_FINGERPRINT_ROUNDS).contains(rounds) {
                    return Err(ConfigError::new(key, "must be 1 to 10,000,000"));
                }
                let per_poll = u64::from(*rounds).saturating_mul(self.source.max_items as u64);
                if per_poll > MAX_FINGERPRINT_ROUNDS_PER_POLL {
                    return Err(ConfigError::new(
                        key,
                        "rounds x source.max_items must be at most 1,000,000,000 (about a minute of CPU per poll)",
                    ));
                }
            }
        }
        Ok(())
    }

    /// The configuration as it may be shown (`check-config`, logs): `${VAR}`
    /// references as written, literal secrets replaced by `***` (see
    /// [`Template::redacted_url`] and [`Template::redacted_header_value`]).
    pub fn redacted(&self) -> PipelineConfig {
        let mut shown = self.clone();
        for headers in [&mut shown.source.headers, &mut shown.action.headers] {
            for value in headers.values_mut() {
                *value = Template::new(value.redacted_header_value());
            }
        }
        shown.source.url = Template::new(shown.source.url.redacted_url());
        shown.action.url = Template::new(shown.action.url.redacted_url());
        shown
    }

    /// The dedup bounds of this pipeline when durable.
    pub fn dedup_bounds(&self) -> crate::durable::DedupBounds {
        crate::durable::DedupBounds {
            max_ids: self.dedup.max_ids,
            max_age: std::time::Duration::from_millis(self.dedup.max_age_ms),
        }
    }

    /// This pipeline's task timeout, when it sets one.
    pub fn task_timeout(&self) -> Option<std::time::Duration> {
        self.task_timeout_ms.map(std::time::Duration::from_millis)
    }

    /// Rounds of the fingerprint step (1 when there is none).
    pub fn fingerprint_rounds(&self) -> u32 {
        fingerprint_rounds(&self.steps)
    }
}

fn check_url(url: &Template, key: &str) -> Result<(), ConfigError> {
    let resolved = url.resolve(key)?.replace("{seq}", "1");
    // Read both ways: as the URL standard reads it (the egress policy and
    // the redaction do), and as the request is sent. http's parser alone
    // takes `https://user:pa/ss@host/` for a host `user` with port `pa`.
    let standard = url::Url::parse(&resolved).ok();
    let sent: Option<http::Uri> = resolved.parse().ok();
    match (standard, sent) {
        (Some(standard), Some(sent))
            if matches!(standard.scheme(), "http" | "https") && standard.has_host() && sent.host().is_some() =>
        {
            Ok(())
        }
        _ => Err(ConfigError::new(
            key,
            "expected an http:// or https:// URL (in a user name or password, write / ? # @ as %2F %3F %23 %40)",
        )),
    }
}

#[cfg(test)]
mod tests;
