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
    Error,
}

impl HttpOutcome {
    const ALL: [HttpOutcome; 9] = [
        HttpOutcome::Status1xx,
        HttpOutcome::Status2xx,
        HttpOutcome::Status3xx,
        HttpOutcome::Status4xx,
        HttpOutcome::Status5xx,
        HttpOutcome::Timeout,
        HttpOutcome::Connect,
        HttpOutcome::BodyTooLarge,
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
            HttpOutcome::Error => "error",
        }
    }
}

/// An HTTP client's metric handles, shared by its clones.
pub(crate) struct HttpMetrics {
    requests: [Counter; 9],
    duration: Histogram,
    in_flight: Gauge,
    host_limit_wait: Histogram,
}

impl HttpMetrics {
    pub(crate) fn new() -> Self {
        HttpMetrics {
            requests: outcome_counters(&cat::HTTP_REQUESTS, HttpOutcome::ALL.map(HttpOutcome::as_label)),
            duration: histogram!(cat::HTTP_REQUEST_DURATION.name),
            in_flight: gauge!(cat::HTTP_IN_FLIGHT.name),
            host_limit_wait: histogram!(cat::HTTP_HOST_LIMIT_WAIT.name),
        }
    }

    /// A request is in flight until the guard drops, even when the caller
    /// drops the request future half-way.
    pub(crate) fn in_flight(&self) -> GaugeUnit<'_> {
        GaugeUnit::enter(&self.in_flight)
    }

    /// A request got a turn under the per-host cap after `waited`.
    pub(crate) fn host_limit_waited(&self, waited: Duration) {
        self.host_limit_wait.record(waited);
    }

    /// A request finished with `outcome` after `elapsed`.
    pub(crate) fn finished(&self, outcome: HttpOutcome, elapsed: Duration) {
        self.requests[outcome as usize].increment(1);
        self.duration.record(elapsed);
    }
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

    /// A scoped operation ended with `outcome`.
    pub(crate) fn operation(&self, outcome: MysqlOutcome) {
        self.operations[outcome as usize].increment(1);
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
mod tests {
    use super::*;
    use metrics::{Key, KeyName, Metadata, Recorder, SharedString, Unit};
    use metrics_util::debugging::{DebugValue, DebuggingRecorder};
    use std::collections::HashMap;
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::sync::{Arc, Mutex};
    use switchyard_protocol::catalogue::{self, MetricKind};

    /// The catalogue's closed set of `outcome` values of `def`.
    fn closed_outcomes(def: &MetricDef) -> &'static [&'static str] {
        def.label("outcome").and_then(|l| l.values.closed()).unwrap_or_else(|| panic!("{}", def.name))
    }

    #[test]
    fn outcome_enums_are_the_catalogue_closed_sets() {
        assert_eq!(HttpOutcome::ALL.map(HttpOutcome::as_label), closed_outcomes(&cat::HTTP_REQUESTS));
        assert_eq!(MysqlOutcome::ALL.map(MysqlOutcome::as_label), closed_outcomes(&cat::MYSQL_OPERATIONS));
        assert_eq!(RedisOutcome::ALL.map(RedisOutcome::as_label), closed_outcomes(&cat::REDIS_COMMANDS));
        // Indexing the counter arrays by `as usize` relies on ALL's order.
        assert!(HttpOutcome::ALL.iter().enumerate().all(|(i, o)| *o as usize == i));
        assert!(MysqlOutcome::ALL.iter().enumerate().all(|(i, o)| *o as usize == i));
        assert!(RedisOutcome::ALL.iter().enumerate().all(|(i, o)| *o as usize == i));
    }

    #[test]
    fn status_codes_map_to_their_class() {
        let cases = [(101, "1xx"), (200, "2xx"), (204, "2xx"), (302, "3xx"), (404, "4xx"), (503, "5xx")];
        for (code, label) in cases {
            assert_eq!(HttpOutcome::status(code).as_label(), label, "{code}");
        }
        assert_eq!(HttpOutcome::status(99), HttpOutcome::Status5xx);
        assert_eq!(HttpOutcome::status(600), HttpOutcome::Status5xx);
    }

    /// Notes what was registered; hands out no-op counters and histograms,
    /// and gauges whose value it keeps (by name) for [`Registrations::gauge`].
    #[derive(Default)]
    struct Registrations(Mutex<Vec<(MetricKind, Key)>>, Mutex<HashMap<String, Arc<AtomicU64>>>);

    impl Registrations {
        fn push(&self, kind: MetricKind, key: &Key) {
            self.0.lock().unwrap().push((kind, key.clone()));
        }

        fn gauge(&self, def: MetricDef) -> f64 {
            let gauges = self.1.lock().unwrap();
            f64::from_bits(
                gauges.get(def.name).unwrap_or_else(|| panic!("{}", def.name)).load(Ordering::SeqCst),
            )
        }
    }

    impl Recorder for Registrations {
        fn describe_counter(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
        fn describe_gauge(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
        fn describe_histogram(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
        fn register_counter(&self, key: &Key, _: &Metadata<'_>) -> Counter {
            self.push(MetricKind::Counter, key);
            Counter::noop()
        }
        fn register_gauge(&self, key: &Key, _: &Metadata<'_>) -> Gauge {
            self.push(MetricKind::Gauge, key);
            Gauge::from_arc(Arc::clone(self.1.lock().unwrap().entry(key.name().to_owned()).or_default()))
        }
        fn register_histogram(&self, key: &Key, _: &Metadata<'_>) -> Histogram {
            self.push(MetricKind::Histogram, key);
            Histogram::noop()
        }
    }

    fn build_every_handle() {
        drop((
            HttpMetrics::new(),
            MysqlMetrics::new(4),
            RedisMetrics::new(),
            ReactorMetrics::new(1),
            WatchdogMetrics::new(),
        ));
    }

    #[test]
    fn every_metric_is_in_the_catalogue_with_its_kind_and_labels() {
        let recorder = Registrations::default();
        metrics::with_local_recorder(&recorder, build_every_handle);
        let registered = recorder.0.into_inner().unwrap();
        for (kind, key) in &registered {
            let def = catalogue::find(key.name()).unwrap_or_else(|| panic!("{} not catalogued", key.name()));
            assert_eq!(def.kind, *kind, "{}", def.name);
            let labels: Vec<_> = key.labels().map(|l| l.key()).collect();
            let names: Vec<_> = def.labels.iter().map(|l| l.name).collect();
            assert_eq!(labels, names, "{}", def.name);
        }
        for def in [cat::HTTP_REQUESTS, cat::MYSQL_OPERATIONS, cat::REDIS_COMMANDS] {
            let values: Vec<_> = registered
                .iter()
                .filter(|(_, key)| key.name() == def.name)
                .flat_map(|(_, key)| key.labels().map(|l| l.value().to_owned()).collect::<Vec<_>>())
                .collect();
            assert_eq!(values, closed_outcomes(&def), "{}", def.name);
        }
    }

    #[test]
    fn every_io_metric_of_the_catalogue_is_emitted() {
        let recorder = Registrations::default();
        metrics::with_local_recorder(&recorder, build_every_handle);
        let registered = recorder.0.into_inner().unwrap();
        let io = catalogue::CATALOGUE.iter().filter(|def| {
            ["switchyard_reactor_", "switchyard_http_", "switchyard_mysql_", "switchyard_redis_"]
                .iter()
                .any(|prefix| def.name.starts_with(prefix))
        });
        let mut count = 0;
        for def in io {
            count += 1;
            assert!(registered.iter().any(|(_, key)| key.name() == def.name), "{} never emitted", def.name);
        }
        assert_eq!(count, 14);
    }

    #[test]
    fn gauges_of_several_instances_add_up_and_are_taken_back() {
        let recorder = Registrations::default();
        metrics::with_local_recorder(&recorder, || {
            let value = |def| recorder.gauge(def);
            let (a, b) = (MysqlMetrics::new(4), MysqlMetrics::new(6));
            let (r1, r2) = (ReactorMetrics::new(1), ReactorMetrics::new(2));
            let (h1, h2) = (HttpMetrics::new(), HttpMetrics::new());
            assert_eq!(value(cat::MYSQL_POOL_MAX), 10.0);
            assert_eq!(value(cat::REACTOR_THREADS), 3.0);
            {
                let _units = (a.waiting(), a.holding(), b.holding(), h1.in_flight(), h2.in_flight());
                assert_eq!(value(cat::MYSQL_POOL_WAITERS), 1.0);
                assert_eq!(value(cat::MYSQL_POOL_IN_USE), 2.0);
                assert_eq!(value(cat::HTTP_IN_FLIGHT), 2.0);
            }
            assert_eq!(value(cat::MYSQL_POOL_WAITERS), 0.0);
            assert_eq!(value(cat::MYSQL_POOL_IN_USE), 0.0);
            assert_eq!(value(cat::HTTP_IN_FLIGHT), 0.0);
            drop((a, r1));
            assert_eq!(value(cat::MYSQL_POOL_MAX), 6.0);
            assert_eq!(value(cat::REACTOR_THREADS), 2.0);
            drop((b, r2));
            assert_eq!(value(cat::MYSQL_POOL_MAX), 0.0);
            assert_eq!(value(cat::REACTOR_THREADS), 0.0);
        });
    }

    #[test]
    fn a_reactor_registers_its_stall_counter_at_zero() {
        let recorder = DebuggingRecorder::new();
        let _reactor = metrics::with_local_recorder(&recorder, || ReactorMetrics::new(1));
        let stalls =
            recorder.snapshotter().snapshot().into_vec().into_iter().find_map(|(key, _, _, value)| {
                (key.key().name() == cat::REACTOR_STALLS.name).then_some(value)
            });
        assert!(matches!(stalls, Some(DebugValue::Counter(0))), "{stalls:?}");
    }
}
