//! Overload becomes backpressure: bounded CPU queue, bounded admission.

use crate::support::engine_allowing_loopback;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use switchyard::{ExecutionModel, MemorySource, TaskContext, TaskError};

/// A gate CPU jobs block on until the test opens it.
#[derive(Clone, Default)]
struct Gate(Arc<(Mutex<bool>, Condvar)>);

impl Gate {
    fn wait(&self) {
        let (open, cv) = &*self.0;
        let mut open = open.lock().unwrap();
        while !*open {
            open = cv.wait(open).unwrap();
        }
    }
    fn open(&self) {
        let (open, cv) = &*self.0;
        *open.lock().unwrap() = true;
        cv.notify_all();
    }
}

#[test]
fn a_flood_of_cpu_jobs_never_exceeds_the_queue_or_the_admission_bounds() {
    const TASKS: usize = 200;
    const MAX_IN_FLIGHT: usize = 16;
    const QUEUE: usize = 3;
    let engine = engine_allowing_loopback()
        .model(ExecutionModel::Hybrid)
        .cpu_threads(1)
        .cpu_queue_capacity(QUEUE)
        .max_in_flight(MAX_IN_FLIGHT)
        .build()
        .unwrap();
    let gate = Gate::default();
    let entered = Arc::new(AtomicUsize::new(0));
    let (producer, source) = MemorySource::bounded(TASKS);
    for i in 0..TASKS {
        producer.try_send(i, format!("job-{i}")).unwrap();
    }
    drop(producer);
    let pool = engine.cpu_pool().unwrap().clone();
    let (task_gate, task_entered) = (gate.clone(), entered.clone());
    let running = engine
        .block_on(engine.start(source, move |cx: TaskContext, i: usize| {
            let (gate, entered) = (task_gate.clone(), task_entered.clone());
            async move {
                entered.fetch_add(1, Ordering::SeqCst);
                let doubled = cx.cpu(move || {
                    gate.wait();
                    i * 2
                });
                assert_eq!(doubled.await?, i * 2);
                Ok::<_, TaskError>(())
            }
        }))
        .unwrap()
        .unwrap();

    // Let the engine fill up: every admitted task is waiting on the pool.
    let mut max_seen = (0, 0);
    for _ in 0..200 {
        let (stats, run) = (pool.stats(), running.stats());
        assert!(stats.queued + stats.running <= QUEUE, "cpu queue over capacity: {stats:?}");
        assert!(run.in_flight <= MAX_IN_FLIGHT, "admission over max_in_flight: {run:?}");
        max_seen = (max_seen.0.max(stats.queued + stats.running), max_seen.1.max(run.in_flight));
        if max_seen == (QUEUE, MAX_IN_FLIGHT) && stats.waiting_producers == MAX_IN_FLIGHT - QUEUE {
            break;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    assert_eq!(max_seen, (QUEUE, MAX_IN_FLIGHT), "the bounds were never reached, so nothing was tested");
    assert_eq!(pool.stats().waiting_producers, MAX_IN_FLIGHT - QUEUE, "excess producers must wait");
    // The engine stopped pulling: only admitted tasks ever started.
    assert_eq!(entered.load(Ordering::SeqCst), MAX_IN_FLIGHT);
    assert_eq!(running.stats().admitted, MAX_IN_FLIGHT as u64);

    gate.open();
    let report = engine.block_on(running.finished()).unwrap();
    assert_eq!(report.stats.ok, TASKS as u64);
    assert!(report.stats.peak_in_flight <= MAX_IN_FLIGHT);
    let stats = pool.stats();
    assert_eq!(stats.completed, TASKS as u64);
    assert_eq!((stats.queued, stats.running), (0, 0));
}

#[test]
fn a_bounded_memory_source_pushes_back_on_its_producer() {
    let (producer, _source) = MemorySource::<u32>::bounded(4);
    for i in 0..4 {
        producer.try_send(i, "x").unwrap();
    }
    let refused = producer.try_send(99, "x").unwrap_err();
    assert_eq!(refused.0, 99, "the refused item is handed back");
}
