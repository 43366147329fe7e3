//! The same task code runs under every execution model, with each model's
//! concurrency shape.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use std::net::SocketAddr;

use switchyard::{ExecutionModel, MemorySource, TaskContext, TaskError};
use switchyard_pz1::Pz1Upstream;
use switchyard_tests::exclusive;

use crate::support::{engine_allowing_loopback, fetch_and_digest, poll_url};

#[test]
fn one_task_function_gives_the_same_results_under_all_three_models() {
    let _cores = exclusive();
    let mut sums = Vec::new();
    for model in ExecutionModel::ALL {
        let engine =
            engine_allowing_loopback().model(model).cpu_threads(2).thread_workers(4).build().unwrap();
        let sum = Arc::new(AtomicU64::new(0));
        let (producer, source) = MemorySource::bounded(100);
        for i in 1..=100u64 {
            producer.try_send(i, i.to_string()).unwrap();
        }
        drop(producer);
        let task_sum = sum.clone();
        let report = engine
            .block_on(async {
                let running = engine
                    .start(source, move |cx: TaskContext, i: u64| {
                        let sum = task_sum.clone();
                        async move {
                            tokio::time::sleep(Duration::from_millis(2)).await;
                            let squared = cx.cpu(move || i * i).await?;
                            sum.fetch_add(squared, Ordering::Relaxed);
                            Ok::<_, TaskError>(())
                        }
                    })
                    .await
                    .unwrap();
                running.finished().await
            })
            .unwrap();
        assert_eq!(report.stats.ok, 100, "{model}");
        sums.push(sum.load(Ordering::Relaxed));
    }
    let expected: u64 = (1..=100u64).map(|i| i * i).sum();
    assert_eq!(sums, vec![expected; 3]);
}

#[test]
fn the_threads_model_runs_exactly_one_task_per_worker() {
    const WORKERS: usize = 3;
    let engine =
        engine_allowing_loopback().model(ExecutionModel::Threads).thread_workers(WORKERS).build().unwrap();
    let now = Arc::new(AtomicUsize::new(0));
    let peak = Arc::new(AtomicUsize::new(0));
    let (producer, source) = MemorySource::bounded(30);
    for i in 0..30u32 {
        producer.try_send(i, i.to_string()).unwrap();
    }
    drop(producer);
    let (task_now, task_peak) = (now.clone(), peak.clone());
    let report = engine
        .block_on(async {
            let running = engine
                .start(source, move |_cx: TaskContext, _i: u32| {
                    let (now, peak) = (task_now.clone(), task_peak.clone());
                    async move {
                        let current = now.fetch_add(1, Ordering::SeqCst) + 1;
                        peak.fetch_max(current, Ordering::SeqCst);
                        tokio::time::sleep(Duration::from_millis(10)).await;
                        now.fetch_sub(1, Ordering::SeqCst);
                        Ok::<_, TaskError>(())
                    }
                })
                .await
                .unwrap();
            running.finished().await
        })
        .unwrap();
    assert_eq!(report.stats.ok, 30);
    assert_eq!(peak.load(Ordering::SeqCst), WORKERS, "workers must all be used, and never more");
}

#[test]
fn a_fetch_and_digest_task_runs_against_the_loopback_upstream() {
    let upstream = Pz1Upstream::start(SocketAddr::from(([127, 0, 0, 1], 0))).unwrap();
    let engine = engine_allowing_loopback().cpu_threads(1).build().unwrap();
    let (producer, source) = MemorySource::bounded(11);
    for i in 0..10 {
        producer.try_send(poll_url(&upstream.base_url(), 20, 10), format!("digest-{i}")).unwrap();
    }
    producer.try_send(format!("{}/missing", upstream.base_url()), "broken").unwrap();
    drop(producer);
    let report = engine
        .block_on(async {
            let running = engine.start(source, |cx, url| fetch_and_digest(cx, url, 10)).await.unwrap();
            let report = running.finished().await;
            (report, running.recent_failures())
        })
        .unwrap();
    let (report, failures) = report;
    assert_eq!((report.stats.ok, report.stats.failed), (10, 1));
    assert_eq!(failures[0].label, "broken");
    assert!(failures[0].reason.contains("404"), "{:?}", failures[0]);
}
