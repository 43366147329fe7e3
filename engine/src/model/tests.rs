use super::*;

#[test]
fn models_round_trip_through_their_names() {
    for m in ExecutionModel::ALL {
        assert_eq!(m.as_str().parse::<ExecutionModel>().unwrap(), m);
    }
    let err = "gevent".parse::<ExecutionModel>().unwrap_err();
    assert!(err.contains("hybrid, reactor-only, threads"), "{err}");
}

#[test]
fn specs_parse_and_print() {
    let spec: ModelSpec = "hybrid/1".parse().unwrap();
    assert_eq!(spec.thread_override(), Some((ThreadKnob::CpuThreads, 1)));
    let spec: ModelSpec = "threads/64".parse().unwrap();
    assert_eq!(spec.thread_override(), Some((ThreadKnob::ThreadWorkers, 64)));
    assert_eq!(spec.to_string(), "threads/64");
    let plain: ModelSpec = "reactor-only".parse().unwrap();
    assert_eq!(plain, ModelSpec { model: ExecutionModel::ReactorOnly, threads: None });
    assert!("reactor-only/2".parse::<ModelSpec>().unwrap_err().contains("one thread"));
    assert!("hybrid/0".parse::<ModelSpec>().is_err());
    assert!("hybrid/x".parse::<ModelSpec>().is_err());
}

#[test]
fn each_model_resolves_to_its_plan() {
    let sizes = Sizes { reactor_threads: 3, max_in_flight: 100, thread_workers: 8 };
    let hybrid = ModelPlan::resolve(ExecutionModel::Hybrid, sizes);
    assert_eq!(
        hybrid,
        ModelPlan {
            reactor_threads: 3,
            host_runtime_allowed: true,
            cpu: CpuSide::Pool,
            driver: Driver::Reactor,
            max_in_flight: 100
        }
    );
    let gevent = ModelPlan::resolve(ExecutionModel::ReactorOnly, sizes);
    assert_eq!((gevent.reactor_threads, gevent.cpu, gevent.driver), (1, CpuSide::Inline, Driver::Reactor));
    assert!(!gevent.host_runtime_allowed);
    let prefork = ModelPlan::resolve(ExecutionModel::Threads, sizes);
    assert_eq!((prefork.cpu, prefork.driver), (CpuSide::Inline, Driver::Workers(8)));
    assert_eq!(prefork.max_in_flight, 8, "one task per worker");
}
