//! Per-host fairness settings of the HTTP client: rate limits, the circuit
//! breaker and adaptive concurrency (see `http::gate`).

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// Most hosts a configuration may list (each gets its own metric label).
pub const MAX_CONFIGURED_HOSTS: usize = 256;
/// Highest rate a host or pipeline limit may ask for, requests per second.
pub const MAX_RATE_PER_SECOND: f64 = 100_000.0;
/// Default breaker window.
const DEFAULT_BREAKER_WINDOW_MS: u64 = 10_000;
/// Default most recent calls the breaker judges a host by.
const DEFAULT_BREAKER_WINDOW_CALLS: u32 = 100;
/// Default calls in the window before the breaker judges a host.
const DEFAULT_BREAKER_MIN_CALLS: u32 = 20;
/// Default share of failed calls that opens the breaker.
const DEFAULT_BREAKER_FAILURE_RATIO: f64 = 0.5;
/// Default duration from which a call counts as slow.
const DEFAULT_BREAKER_SLOW_CALL_MS: u64 = 5_000;
/// Default share of slow calls that opens the breaker.
const DEFAULT_BREAKER_SLOW_CALL_RATIO: f64 = 0.8;
/// Default time the breaker stays open before it probes.
const DEFAULT_BREAKER_OPEN_MS: u64 = 5_000;
/// Default probes let through while half-open; all must succeed to close.
const DEFAULT_BREAKER_HALF_OPEN_PROBES: u32 = 3;
/// Longest `Retry-After` the client holds a host for; a longer one is cut
/// to this, so a misconfigured upstream cannot park a host for days.
pub const DEFAULT_MAX_RETRY_AFTER_MS: u64 = 300_000;

/// Settings of one upstream host, named as `scheme://host:port` (the port
/// may be left out for the scheme's default). Listed hosts also get their
/// own `host` label on the HTTP metrics; every other host is `other`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HostConfig {
    /// `https://api.partner.example` or `http://10.20.0.5:8080`.
    pub host: String,
    /// Most requests per second to the host (fractions allowed: `0.5`);
    /// unset means no rate limit.
    #[serde(default)]
    pub rate_per_second: Option<f64>,
    /// Requests that may go at once after a quiet spell (at least 1).
    #[serde(default = "default_burst")]
    pub burst: u32,
    /// Most requests in flight to this host (the static cap the adaptive
    /// limit stays under); unset means `max_in_flight_per_host`.
    #[serde(default)]
    pub max_in_flight: Option<usize>,
}

fn default_burst() -> u32 {
    1
}

impl HostConfig {
    /// Settings for `host` with no limit of its own: it gets a metric label.
    pub fn labelled(host: impl Into<String>) -> Self {
        HostConfig { host: host.into(), rate_per_second: None, burst: 1, max_in_flight: None }
    }

    pub(crate) fn validate(&self) -> Result<()> {
        if crate::http::host_key_of(&self.host).is_none() {
            return Err(Error::config("http.hosts.host"));
        }
        if let Some(rate) = self.rate_per_second {
            if !(rate > 0.0 && rate <= MAX_RATE_PER_SECOND) {
                return Err(Error::config("http.hosts.rate_per_second"));
            }
        }
        if self.burst == 0 || self.burst > 100_000 {
            return Err(Error::config("http.hosts.burst"));
        }
        if self.max_in_flight == Some(0) {
            return Err(Error::config("http.hosts.max_in_flight"));
        }
        Ok(())
    }
}

/// The circuit breaker every host gets: open on a failure or slow-call
/// ratio over a minimum volume, probe after a while, close on recovery.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BreakerConfig {
    /// Off: a dead host costs a request timeout per call, not a fast error.
    pub enabled: bool,
    /// The ratios are taken over the most recent calls, at most this many
    /// (so a long healthy past does not hide a host that just went bad)...
    pub window_calls: u32,
    /// ...and none older than this.
    pub window_ms: u64,
    /// Calls in the window before the ratios are judged.
    pub min_calls: u32,
    /// Share of failures (connect errors, timeouts, 5xx) that opens it.
    pub failure_ratio: f64,
    /// Duration from which a call counts as slow.
    pub slow_call_ms: u64,
    /// Share of slow calls that opens it.
    pub slow_call_ratio: f64,
    /// Time it stays open, failing calls at once, before probing.
    pub open_ms: u64,
    /// Probes let through when half-open; all succeed, it closes; one
    /// fails, it opens again.
    pub half_open_probes: u32,
}

impl Default for BreakerConfig {
    fn default() -> Self {
        BreakerConfig {
            enabled: true,
            window_calls: DEFAULT_BREAKER_WINDOW_CALLS,
            window_ms: DEFAULT_BREAKER_WINDOW_MS,
            min_calls: DEFAULT_BREAKER_MIN_CALLS,
            failure_ratio: DEFAULT_BREAKER_FAILURE_RATIO,
            slow_call_ms: DEFAULT_BREAKER_SLOW_CALL_MS,
            slow_call_ratio: DEFAULT_BREAKER_SLOW_CALL_RATIO,
            open_ms: DEFAULT_BREAKER_OPEN_MS,
            half_open_probes: DEFAULT_BREAKER_HALF_OPEN_PROBES,
        }
    }
}

impl BreakerConfig {
    pub(crate) fn validate(&self) -> Result<()> {
        if !(100..=3_600_000).contains(&self.window_ms) {
            return Err(Error::config("http.breaker.window_ms"));
        }
        if self.window_calls == 0 || self.window_calls > 10_000 {
            return Err(Error::config("http.breaker.window_calls"));
        }
        if self.min_calls == 0 || self.min_calls > self.window_calls {
            return Err(Error::config("http.breaker.min_calls"));
        }
        if !(self.failure_ratio > 0.0 && self.failure_ratio <= 1.0) {
            return Err(Error::config("http.breaker.failure_ratio"));
        }
        if self.slow_call_ms == 0 {
            return Err(Error::config("http.breaker.slow_call_ms"));
        }
        if !(self.slow_call_ratio > 0.0 && self.slow_call_ratio <= 1.0) {
            return Err(Error::config("http.breaker.slow_call_ratio"));
        }
        if !(1..=3_600_000).contains(&self.open_ms) {
            return Err(Error::config("http.breaker.open_ms"));
        }
        if self.half_open_probes == 0 || self.half_open_probes > 1_000 {
            return Err(Error::config("http.breaker.half_open_probes"));
        }
        Ok(())
    }
}

/// Adaptive concurrency per host (AIMD): the limit starts at the host's
/// static cap, shrinks by a tenth on a sign of overload (429, 502-504, a
/// timeout, a refused connection), at most once per `decrease_interval_ms`,
/// and grows back by one per window of successful calls that used it all.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AdaptiveConfig {
    /// Off: the static cap alone.
    pub enabled: bool,
    /// The limit never goes below this.
    pub min_limit: usize,
    /// Least time between two decreases, so one burst of failures (all the
    /// calls that were in flight together) counts once.
    pub decrease_interval_ms: u64,
}

impl Default for AdaptiveConfig {
    fn default() -> Self {
        AdaptiveConfig { enabled: true, min_limit: 1, decrease_interval_ms: 1_000 }
    }
}

impl AdaptiveConfig {
    pub(crate) fn validate(&self) -> Result<()> {
        if self.min_limit == 0 {
            return Err(Error::config("http.adaptive.min_limit"));
        }
        if self.decrease_interval_ms == 0 || self.decrease_interval_ms > 3_600_000 {
            return Err(Error::config("http.adaptive.decrease_interval_ms"));
        }
        Ok(())
    }
}
