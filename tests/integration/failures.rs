//! Failure isolation: panics, retries, cancellation and shutdown deadlines.

use crate::support::engine_allowing_loopback;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;

use switchyard::{Engine, ExecutionModel, MemorySource, TaskContext, TaskError};
use switchyard_tests::{burn, exclusive};

fn engine(model: ExecutionModel) -> Engine {
    engine_allowing_loopback()
        .model(model)
        .cpu_threads(2)
        .thread_workers(4)
        .max_in_flight(32)
        .build()
        .unwrap()
}

#[test]
fn a_panicking_cpu_step_fails_only_its_own_task_under_every_model() {
    let _cores = exclusive();
    for model in ExecutionModel::ALL {
        let engine = engine(model);
        let (producer, source) = MemorySource::bounded(20);
        for i in 0..20u32 {
            producer.try_send(i, format!("item-{i}")).unwrap();
        }
        drop(producer);
        let running = engine.block_on(engine.start(source, |cx: TaskContext, i: u32| async move {
            let v = cx
                .cpu(move || {
                    if i == 7 {
                        panic!("bad record {i}");
                    }
                    i + 1
                })
                .await;
            match v {
                Ok(v) => assert_eq!(v, i + 1),
                Err(e) => {
                    assert!(e.is_panicked() && e.to_string().contains("bad record 7"), "{e}");
                    return Err(e.into());
                }
            }
            Ok::<_, TaskError>(())
        }));
        let report = engine.block_on(running.unwrap().unwrap().finished()).unwrap();
        assert_eq!((report.stats.ok, report.stats.failed), (19, 1), "{model}: {report:?}");
    }
}

#[test]
fn a_panic_in_the_task_body_is_contained_and_reported() {
    for model in ExecutionModel::ALL {
        let engine = engine(model);
        let (producer, source) = MemorySource::bounded(8);
        for i in 0..8u32 {
            producer.try_send(i, format!("item-{i}")).unwrap();
        }
        drop(producer);
        let report = engine
            .block_on(async {
                let running = engine
                    .start(source, |_cx: TaskContext, i: u32| async move {
                        tokio::task::yield_now().await;
                        assert!(i != 3, "task body blew up");
                        Ok::<_, TaskError>(())
                    })
                    .await
                    .unwrap();
                let report = running.finished().await;
                (report, running.recent_failures())
            })
            .unwrap();
        let (report, failures) = report;
        assert_eq!((report.stats.ok, report.stats.panicked), (7, 1), "{model}");
        assert_eq!(failures.len(), 1);
        assert_eq!(failures[0].label, "item-3");
        assert!(failures[0].reason.contains("task body blew up"), "{:?}", failures[0]);
    }
}

#[test]
fn a_task_asking_for_a_retry_gets_its_item_back() {
    let engine = engine(ExecutionModel::Hybrid);
    let (producer, source) = MemorySource::bounded(4);
    producer.try_send(41u32, "flaky").unwrap();
    let attempts = Arc::new(AtomicU32::new(0));
    let seen = attempts.clone();
    let report = engine
        .block_on(async {
            let running = engine
                .start(source, move |cx: TaskContext, item: u32| {
                    let seen = seen.clone();
                    async move {
                        seen.fetch_add(1, Ordering::SeqCst);
                        assert_eq!(item, 41);
                        if cx.attempt() == 1 {
                            return Err(TaskError::retry_after(
                                "upstream said 503",
                                Duration::from_millis(20),
                            ));
                        }
                        Ok(())
                    }
                })
                .await
                .unwrap();
            // Wait for the retry to have run, then let the source finish.
            while running.stats().ok == 0 {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            drop(producer);
            running.finished().await
        })
        .unwrap();
    assert_eq!(attempts.load(Ordering::SeqCst), 2);
    assert_eq!((report.stats.retried, report.stats.ok), (1, 1));
}

#[test]
fn shutdown_finishes_short_tasks_and_abandons_long_ones_at_the_deadline() {
    for model in ExecutionModel::ALL {
        let engine = engine(model);
        let (producer, source) = MemorySource::bounded(8);
        for i in 0..4u32 {
            producer.try_send(i, format!("short-{i}")).unwrap();
        }
        producer.try_send(1000, "long-1000").unwrap();
        let report = engine
            .block_on(async {
                let running = engine
                    .start(source, |_cx: TaskContext, i: u32| async move {
                        let wait = if i == 1000 { 60_000 } else { 50 };
                        tokio::time::sleep(Duration::from_millis(wait)).await;
                        Ok::<_, TaskError>(())
                    })
                    .await
                    .unwrap();
                while running.stats().admitted < 5 {
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
                running.shutdown(Duration::from_millis(500)).await
            })
            .unwrap();
        drop(producer);
        assert!(!report.finished_in_time, "{model}");
        assert_eq!(report.unfinished, vec!["long-1000".to_string()], "{model}");
        assert_eq!((report.stats.ok, report.stats.abandoned), (4, 1), "{model}");
        assert_eq!(report.stats.in_flight, 0, "{model}: abandoned tasks must release their slots");
    }
}

#[test]
fn shutdown_within_the_deadline_reports_nothing_unfinished() {
    let engine = engine(ExecutionModel::Hybrid);
    let (producer, source) = MemorySource::bounded(8);
    for i in 0..8u32 {
        producer.try_send(i, format!("t-{i}")).unwrap();
    }
    let report = engine
        .block_on(async {
            let running = engine
                .start(source, |cx: TaskContext, _i: u32| async move {
                    tokio::time::sleep(Duration::from_millis(30)).await;
                    cx.cpu(|| burn(Duration::from_millis(5))).await?;
                    Ok::<_, TaskError>(())
                })
                .await
                .unwrap();
            while running.stats().admitted < 8 {
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
            running.shutdown(Duration::from_secs(10)).await
        })
        .unwrap();
    drop(producer);
    assert!(report.finished_in_time);
    assert!(report.unfinished.is_empty());
    assert_eq!(report.stats.ok, 8);
}

#[test]
fn an_abandoned_task_cancels_its_cpu_job_that_had_not_started() {
    let _cores = exclusive();
    let engine = engine_allowing_loopback().cpu_threads(1).cpu_queue_capacity(4).build().unwrap();
    let ran_second = Arc::new(AtomicBool::new(false));
    let flag = ran_second.clone();
    let (producer, source) = MemorySource::bounded(2);
    producer.try_send(0u32, "blocker").unwrap();
    producer.try_send(1u32, "queued").unwrap();
    drop(producer);
    let report = engine
        .block_on(async {
            let running = engine
                .start(source, move |cx: TaskContext, i: u32| {
                    let flag = flag.clone();
                    async move {
                        if i == 0 {
                            cx.cpu(|| burn(Duration::from_millis(400))).await?;
                        } else {
                            // Make sure the blocker holds the only thread first.
                            tokio::time::sleep(Duration::from_millis(50)).await;
                            cx.cpu(move || flag.store(true, Ordering::SeqCst)).await?;
                        }
                        Ok::<_, TaskError>(())
                    }
                })
                .await
                .unwrap();
            tokio::time::sleep(Duration::from_millis(150)).await;
            running.shutdown(Duration::from_millis(10)).await
        })
        .unwrap();
    assert_eq!(report.stats.abandoned, 2, "{report:?}");
    // The blocker's job finishes on its thread; the queued job must never run.
    std::thread::sleep(Duration::from_millis(500));
    assert!(!ran_second.load(Ordering::SeqCst), "a cancelled job ran");
    assert!(engine.cpu_pool().unwrap().stats().cancelled >= 1);
}
