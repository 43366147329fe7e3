use super::*;
use metrics::{Key, KeyName, Metadata, Recorder, SharedString, Unit};
use metrics_util::debugging::{DebugValue, DebuggingRecorder};
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use switchyard_protocol::catalogue::{self, MetricKind};

/// The catalogue's closed set of `outcome` values of `def`.
fn closed_outcomes(def: &MetricDef) -> &'static [&'static str] {
    def.labels.first().and_then(|l| l.values.closed()).unwrap_or_else(|| panic!("{}", def.name))
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
        f64::from_bits(gauges.get(def.name).unwrap_or_else(|| panic!("{}", def.name)).load(Ordering::SeqCst))
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
        HostMetrics::new(OTHER_HOST),
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
    for def in [cat::HTTP_REQUESTS, cat::HTTP_EGRESS_REFUSED, cat::MYSQL_OPERATIONS, cat::REDIS_COMMANDS] {
        let values: Vec<_> = registered
            .iter()
            .filter(|(_, key)| key.name() == def.name)
            .flat_map(|(_, key)| {
                let first = def.labels[0].name;
                key.labels().filter(|l| l.key() == first).map(|l| l.value().to_owned()).collect::<Vec<_>>()
            })
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
    assert_eq!(count, 18);
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
    let stalls = recorder
        .snapshotter()
        .snapshot()
        .into_vec()
        .into_iter()
        .find_map(|(key, _, _, value)| (key.key().name() == cat::REACTOR_STALLS.name).then_some(value));
    assert!(matches!(stalls, Some(DebugValue::Counter(0))), "{stalls:?}");
}
