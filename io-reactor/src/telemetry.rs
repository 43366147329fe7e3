//! Every metric the I/O side emits, and nothing else.
//!
//! Names and label keys come from the catalogue in `switchyard-protocol`;
//! this module is the only place the crate touches the `metrics` facade.
//! Handles are resolved once, when a component is built ([`HttpMetrics`] in
//! `HttpClient::new`, [`MysqlMetrics`] in `MysqlPool::new`, [`RedisMetrics`]
//! in `RedisClient::connect`, [`ReactorMetrics`] with the reactor,
//! [`WatchdogMetrics`] with the stall watchdog), so an event pays for atomic
//! updates and no registry look-up or allocation: install the recorder
//! before building the components (the binary does). Outcome counters are
//! arrays indexed by the outcome enums, whose label values are the
//! catalogue's closed sets (a test keeps the two equal).
//!
//! Gauges move by increments rather than being set, so two clients, pools or
//! reactors in one process (a worker thread's own MySQL pool, a benchmark
//! comparing models) add up instead of overwriting each other; each takes
//! back what it added when it goes.

// The one place this crate may use the raw metrics macros (see clippy.toml).
#![allow(clippy::disallowed_macros)]

use std::time::Duration;

use metrics::{counter, gauge, histogram, Counter, Gauge, Histogram};
use switchyard_protocol::catalogue::{self as cat, MetricDef};

/// One counter of `def` per value in `labels`, in that order, under its
/// (only) label.
fn outcome_counters<const N: usize>(def: &MetricDef, labels: [&'static str; N]) -> [Counter; N] {
    let key = def.labels[0].name;
    labels.map(|value| counter!(def.name, key => value))
}

/// One unit of a gauge, taken back when dropped, so a timeout, an error, a
/// cancelled future or a panic all restore it.
#[must_use = "the unit is taken back as soon as the guard is dropped"]
pub(crate) struct GaugeUnit<'a>(&'a Gauge);

impl<'a> GaugeUnit<'a> {
    fn enter(gauge: &'a Gauge) -> Self {
        gauge.increment(1.0);
        GaugeUnit(gauge)
    }
}

impl Drop for GaugeUnit<'_> {
    fn drop(&mut self) {
        self.0.decrement(1.0);
    }
}

// ---- HTTP -----------------------------------------------------------------

/// How an outbound request ended: the closed set of `outcome` label values
/// of `switchyard_http_requests_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum HttpOutcome {
    Status1xx,
    Status2xx,
    Status3xx,
    Status4xx,
    Status5xx,
    Timeout,
    Connect,
    BodyTooLarge,
    Unavailable,
    Error,
}

impl HttpOutcome {
    const ALL: [HttpOutcome; 10] = [
        HttpOutcome::Status1xx,
        HttpOutcome::Status2xx,
        HttpOutcome::Status3xx,
        HttpOutcome::Status4xx,
        HttpOutcome::Status5xx,
        HttpOutcome::Timeout,
        HttpOutcome::Connect,
        HttpOutcome::BodyTooLarge,
        HttpOutcome::Unavailable,
        HttpOutcome::Error,
    ];

    /// The class of a response status; anything outside 100..=499 counts as
    /// a server error.
    pub(crate) const fn status(code: u16) -> Self {
        match code {
            100..=199 => HttpOutcome::Status1xx,
            200..=299 => HttpOutcome::Status2xx,
            300..=399 => HttpOutcome::Status3xx,
            400..=499 => HttpOutcome::Status4xx,
            _ => HttpOutcome::Status5xx,
        }
    }

    const fn as_label(self) -> &'static str {
        match self {
            HttpOutcome::Status1xx => "1xx",
            HttpOutcome::Status2xx => "2xx",
            HttpOutcome::Status3xx => "3xx",
            HttpOutcome::Status4xx => "4xx",
            HttpOutcome::Status5xx => "5xx",
            HttpOutcome::Timeout => "timeout",
            HttpOutcome::Connect => "connect",
            HttpOutcome::BodyTooLarge => "body_too_large",
            HttpOutcome::Unavailable => "unavailable",
            HttpOutcome::Error => "error",
        }
    }
}

/// An HTTP client's metric handles, shared by its clones.
pub(crate) struct HttpMetrics {
    /// One counter per `rule` the catalogue lists.
    egress_refused: Vec<(&'static str, Counter)>,
    in_flight: Gauge,
}

impl HttpMetrics {
    pub(crate) fn new() -> Self {
        HttpMetrics {
            egress_refused: egress_rules()
                .iter()
                .map(|rule| (*rule, counter!(cat::HTTP_EGRESS_REFUSED.name, "rule" => *rule)))
                .collect(),
            in_flight: gauge!(cat::HTTP_IN_FLIGHT.name),
        }
    }

    /// A request is in flight until the guard drops, even when the caller
    /// drops the request future half-way.
    pub(crate) fn in_flight(&self) -> GaugeUnit<'_> {
        GaugeUnit::enter(&self.in_flight)
    }

    /// The egress policy refused a request under `rule`.
    pub(crate) fn egress_refused(&self, rule: Option<&'static str>) {
        if let Some((_, counter)) = self.egress_refused.iter().find(|(r, _)| Some(*r) == rule) {
            counter.increment(1);
        }
    }
}

/// The `rule` label values of `switchyard_http_egress_refused_total`, as
/// the catalogue lists them: every egress refusal's rule (a test keeps them
/// equal to the policy's).
pub(crate) fn egress_rules() -> &'static [&'static str] {
    cat::HTTP_EGRESS_REFUSED.labels[0].values.closed().unwrap_or(&[])
}

/// The `host` label value of every host the configuration does not list.
pub(crate) const OTHER_HOST: &str = "other";

/// The metric handles of one `host` label value: a configured host, or
/// `other` for the rest, so the label stays bounded by the configuration.
pub(crate) struct HostMetrics {
    requests: [Counter; 10],
    duration: Histogram,
    host_limit_wait: Histogram,
    breakers_open: Gauge,
    concurrency_limit: Gauge,
}

impl HostMetrics {
    pub(crate) fn new(host: &str) -> Self {
        let host = host.to_owned();
        let outcome = cat::HTTP_REQUESTS.labels[0].name;
        HostMetrics {
            requests: HttpOutcome::ALL
                .map(|o| counter!(cat::HTTP_REQUESTS.name, outcome => o.as_label(), "host" => host.clone())),
            duration: histogram!(cat::HTTP_REQUEST_DURATION.name, "host" => host.clone()),
            host_limit_wait: histogram!(cat::HTTP_HOST_LIMIT_WAIT.name, "host" => host.clone()),
            breakers_open: gauge!(cat::HTTP_BREAKERS_OPEN.name, "host" => host.clone()),
            concurrency_limit: gauge!(cat::HTTP_HOST_CONCURRENCY_LIMIT.name, "host" => host),
        }
    }

    /// A request got through the host's gate (pause, rate limit,
    /// concurrency limit) after `waited`.
    pub(crate) fn host_limit_waited(&self, waited: Duration) {
        self.host_limit_wait.record(waited);
    }

    /// A request finished with `outcome` after `elapsed`. One its host's
    /// gate turned away at once is counted but not timed: its zero would
    /// drag the host's request-time quantiles down while it is failing.
    pub(crate) fn finished(&self, outcome: HttpOutcome, elapsed: Duration) {
        self.requests[outcome as usize].increment(1);
        if outcome != HttpOutcome::Unavailable {
            self.duration.record(elapsed);
        }
    }

    /// A breaker moved to `state`: the open-breaker gauge counts breakers
    /// (several clients add up), so only entering and leaving `open` move it.
    pub(crate) fn breaker_moved(&self, state: BreakerMove) {
        match state {
            BreakerMove::Opened => self.breakers_open.increment(1.0),
            BreakerMove::LeftOpen => self.breakers_open.decrement(1.0),
            BreakerMove::Other => {}
        }
    }

    /// A host's concurrency limit moved from `before` to `after`.
    pub(crate) fn limit_moved(&self, before: usize, after: usize) {
        self.concurrency_limit.increment(after as f64 - before as f64);
    }
}

/// How a breaker's move shows on the open-breaker gauge.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum BreakerMove {
    Opened,
    LeftOpen,
    Other,
}

// ---- MySQL ----------------------------------------------------------------

/// How a scoped MySQL operation ended: the closed set of `outcome` label
/// values of `switchyard_mysql_operations_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum MysqlOutcome {
    Ok,
    Error,
    AcquireTimeout,
}

impl MysqlOutcome {
    const ALL: [MysqlOutcome; 3] = [MysqlOutcome::Ok, MysqlOutcome::Error, MysqlOutcome::AcquireTimeout];

    const fn as_label(self) -> &'static str {
        match self {
            MysqlOutcome::Ok => "ok",
            MysqlOutcome::Error => "error",
            MysqlOutcome::AcquireTimeout => "acquire_timeout",
        }
    }
}

/// A MySQL pool's metric handles, shared by its clones.
pub(crate) struct MysqlMetrics {
    in_use: Gauge,
    waiters: Gauge,
    max: Gauge,
    acquire: Histogram,
    duration: Histogram,
    operations: [Counter; 3],
    /// What this pool added to the shared `max` gauge, taken back when it goes.
    pool_max: usize,
}

impl MysqlMetrics {
    pub(crate) fn new(pool_max: usize) -> Self {
        let metrics = MysqlMetrics {
            in_use: gauge!(cat::MYSQL_POOL_IN_USE.name),
            waiters: gauge!(cat::MYSQL_POOL_WAITERS.name),
            max: gauge!(cat::MYSQL_POOL_MAX.name),
            acquire: histogram!(cat::MYSQL_ACQUIRE_DURATION.name),
            duration: histogram!(cat::MYSQL_OPERATION_DURATION.name),
            operations: outcome_counters(
                &cat::MYSQL_OPERATIONS,
                MysqlOutcome::ALL.map(MysqlOutcome::as_label),
            ),
            pool_max,
        };
        metrics.max.increment(pool_max as f64);
        metrics
    }

    /// A caller waits for a connection until the guard drops.
    pub(crate) fn waiting(&self) -> GaugeUnit<'_> {
        GaugeUnit::enter(&self.waiters)
    }

    /// A connection is checked out until the guard drops.
    pub(crate) fn holding(&self) -> GaugeUnit<'_> {
        GaugeUnit::enter(&self.in_use)
    }

    /// A caller got a connection after `waited`.
    pub(crate) fn acquired(&self, waited: Duration) {
        self.acquire.record(waited);
    }

    /// A scoped operation ended with `outcome` after `elapsed` (connection
    /// wait included).
    pub(crate) fn operation(&self, outcome: MysqlOutcome, elapsed: Duration) {
        self.operations[outcome as usize].increment(1);
        self.duration.record(elapsed);
    }
}

impl Drop for MysqlMetrics {
    fn drop(&mut self) {
        self.max.decrement(self.pool_max as f64);
    }
}

// ---- Redis ----------------------------------------------------------------

/// How a Redis call ended: the closed set of `outcome` label values of
/// `switchyard_redis_commands_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum RedisOutcome {
    Ok,
    Retried,
    Error,
}

impl RedisOutcome {
    const ALL: [RedisOutcome; 3] = [RedisOutcome::Ok, RedisOutcome::Retried, RedisOutcome::Error];

    const fn as_label(self) -> &'static str {
        match self {
            RedisOutcome::Ok => "ok",
            RedisOutcome::Retried => "retried",
            RedisOutcome::Error => "error",
        }
    }
}

/// A Redis client's metric handles, shared by its clones.
pub(crate) struct RedisMetrics {
    commands: [Counter; 3],
    duration: Histogram,
}

impl RedisMetrics {
    pub(crate) fn new() -> Self {
        RedisMetrics {
            commands: outcome_counters(&cat::REDIS_COMMANDS, RedisOutcome::ALL.map(RedisOutcome::as_label)),
            duration: histogram!(cat::REDIS_COMMAND_DURATION.name),
        }
    }

    /// A call ended with `outcome` after `elapsed`, retry included.
    pub(crate) fn command(&self, outcome: RedisOutcome, elapsed: Duration) {
        self.commands[outcome as usize].increment(1);
        self.duration.record(elapsed);
    }
}

// ---- Reactor and watchdog ---------------------------------------------------

/// A reactor's share of `switchyard_reactor_threads`, taken back when the
/// reactor goes.
pub(crate) struct ReactorMetrics {
    threads: Gauge,
    added: usize,
}

impl ReactorMetrics {
    /// A reactor with `threads` workers was built or attached. Also registers
    /// the stall counter at zero, so "no stalls" is a series at 0 (what
    /// `rate()` and the dashboard need) rather than an absent one until the
    /// first stall.
    pub(crate) fn new(threads: usize) -> Self {
        let metrics = ReactorMetrics { threads: gauge!(cat::REACTOR_THREADS.name), added: threads };
        metrics.threads.increment(threads as f64);
        counter!(cat::REACTOR_STALLS.name).increment(0);
        metrics
    }
}

impl Drop for ReactorMetrics {
    fn drop(&mut self) {
        self.threads.decrement(self.added as f64);
    }
}

/// The stall watchdog's metric handles.
pub(crate) struct WatchdogMetrics {
    lag: Histogram,
    stalls: Counter,
}

impl WatchdogMetrics {
    pub(crate) fn new() -> Self {
        WatchdogMetrics { lag: histogram!(cat::REACTOR_LAG.name), stalls: counter!(cat::REACTOR_STALLS.name) }
    }

    /// A heartbeat was answered `lag` late.
    pub(crate) fn beat(&self, lag: Duration) {
        self.lag.record(lag);
    }

    /// A heartbeat was later than the stall threshold.
    pub(crate) fn stall(&self) {
        self.stalls.increment(1);
    }
}

#[cfg(test)]
mod tests;
