use super::*;
use metrics::{Key, KeyName, Metadata, Recorder, SharedString, Unit};
use std::sync::Mutex;
use switchyard_protocol::catalogue::{self, MetricKind};

/// Notes what was registered; hands out no-op handles.
#[derive(Default)]
struct Registrations(Mutex<Vec<(MetricKind, Key)>>);

impl Registrations {
    fn push(&self, kind: MetricKind, key: &Key) {
        self.0.lock().unwrap().push((kind, key.clone()));
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
        Gauge::noop()
    }
    fn register_histogram(&self, key: &Key, _: &Metadata<'_>) -> Histogram {
        self.push(MetricKind::Histogram, key);
        Histogram::noop()
    }
}

#[test]
fn every_metric_is_in_the_catalogue_with_its_kind_and_labels() {
    let recorder = Registrations::default();
    metrics::with_local_recorder(&recorder, || drop(Telemetry::new(2, 8)));
    let registered = recorder.0.into_inner().unwrap();
    assert_eq!(registered.len(), 14);
    for (kind, key) in &registered {
        let def = catalogue::find(key.name()).unwrap_or_else(|| panic!("{} not catalogued", key.name()));
        assert_eq!(def.kind, *kind, "{}", def.name);
        let labels: Vec<_> = key.labels().map(|l| l.key()).collect();
        let names: Vec<_> = def.labels.iter().map(|l| l.name).collect();
        assert_eq!(labels, names, "{}", def.name);
    }
    let label_values = |name: &str| -> Vec<String> {
        registered
            .iter()
            .filter(|(_, key)| key.name() == name)
            .flat_map(|(_, key)| key.labels().map(|l| l.value().to_owned()).collect::<Vec<_>>())
            .collect()
    };
    for def in [CPU_JOBS, CPU_SPIN_WAITS] {
        assert_eq!(label_values(def.name), closed_outcomes(&def).unwrap(), "{}", def.name);
    }
}

/// The catalogue's closed set of `outcome` values of `def`.
fn closed_outcomes(def: &catalogue::MetricDef) -> Option<&'static [&'static str]> {
    def.label("outcome")?.values.closed()
}

#[test]
fn outcome_enums_are_the_catalogue_closed_sets() {
    assert_eq!(Some(&Outcome::ALL.map(Outcome::as_label)[..]), closed_outcomes(&CPU_JOBS));
    assert_eq!(Some(&SpinOutcome::ALL.map(SpinOutcome::as_label)[..]), closed_outcomes(&CPU_SPIN_WAITS));
}

#[test]
fn every_cpu_metric_of_the_catalogue_is_emitted() {
    let recorder = Registrations::default();
    metrics::with_local_recorder(&recorder, || drop(Telemetry::new(1, 4)));
    let registered = recorder.0.into_inner().unwrap();
    let cpu = [
        CPU_THREADS,
        CPU_BUSY_THREADS,
        CPU_QUEUE_CAPACITY,
        CPU_QUEUE_DEPTH,
        CPU_ADMISSION_WAIT,
        CPU_QUEUE_WAIT,
        CPU_JOB_DURATION,
        CPU_JOBS,
        CPU_SPIN_WAITS,
    ];
    for def in cpu {
        assert!(registered.iter().any(|(_, key)| key.name() == def.name), "{} never emitted", def.name);
    }
}
