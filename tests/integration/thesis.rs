//! The thesis in miniature: with the CPU side saturated, the reactor keeps
//! its timers on time under `hybrid` and falls behind by at least a job's
//! length under `reactor-only` (gevent's shape).

use crate::support::engine_allowing_loopback;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use switchyard::{ExecutionModel, MemorySource, TaskContext, TaskError};
use switchyard_tests::{burn, exclusive};

const JOB: Duration = Duration::from_millis(100);
const TICK: Duration = Duration::from_millis(5);

/// Runs 16 tasks of one CPU job each while a 5 ms timer ticks on the same
/// reactor; returns the timer's worst lateness.
fn worst_timer_lateness(model: ExecutionModel) -> Duration {
    let engine = engine_allowing_loopback().model(model).cpu_threads(1).max_in_flight(64).build().unwrap();
    let worst_ns = Arc::new(AtomicU64::new(0));
    let (producer, source) = MemorySource::bounded(16);
    for i in 0..16u32 {
        producer.try_send(i, format!("burn-{i}")).unwrap();
    }
    drop(producer);
    engine
        .block_on(async {
            let worst = worst_ns.clone();
            let ticker = tokio::spawn(async move {
                loop {
                    let asked = Instant::now();
                    tokio::time::sleep(TICK).await;
                    let late = asked.elapsed().saturating_sub(TICK);
                    worst.fetch_max(late.as_nanos() as u64, Ordering::Relaxed);
                }
            });
            // Let the ticker settle before the load starts.
            tokio::time::sleep(Duration::from_millis(20)).await;
            let running = engine
                .start(source, |cx: TaskContext, _i: u32| async move {
                    cx.cpu_stage("burn", || burn(JOB)).await?;
                    Ok::<_, TaskError>(())
                })
                .await
                .unwrap();
            let report = running.finished().await;
            // A starved ticker records its lateness only once it runs again.
            tokio::time::sleep(TICK * 4).await;
            ticker.abort();
            assert_eq!(report.stats.ok, 16);
        })
        .unwrap();
    Duration::from_nanos(worst_ns.load(Ordering::Relaxed))
}

#[test]
fn hybrid_keeps_the_reactor_on_time_while_reactor_only_falls_a_job_behind() {
    let _cores = exclusive();
    let hybrid = worst_timer_lateness(ExecutionModel::Hybrid);
    let reactor_only = worst_timer_lateness(ExecutionModel::ReactorOnly);
    eprintln!("worst timer lateness: hybrid {hybrid:?}, reactor-only {reactor_only:?} (job {JOB:?})");
    assert!(hybrid < JOB / 2, "hybrid reactor was late by {hybrid:?}, half a job or more");
    assert!(reactor_only >= JOB * 9 / 10, "reactor-only lateness {reactor_only:?} is under a job's length");
}

#[test]
fn the_watchdog_counts_stalls_only_where_cpu_runs_on_the_reactor() {
    let _cores = exclusive();
    for (model, expect_stalls) in [(ExecutionModel::ReactorOnly, true), (ExecutionModel::Hybrid, false)] {
        let engine = engine_allowing_loopback().model(model).cpu_threads(1).build().unwrap();
        let (producer, source) = MemorySource::bounded(4);
        for i in 0..4u32 {
            producer.try_send(i, format!("burn-{i}")).unwrap();
        }
        drop(producer);
        let report = engine
            .block_on(async {
                let running = engine
                    .start(source, |cx: TaskContext, _i: u32| async move {
                        cx.cpu_stage("transform", || burn(JOB)).await?;
                        Ok::<_, TaskError>(())
                    })
                    .await
                    .unwrap();
                let report = running.finished().await;
                // The heartbeat records a late beat only once it runs again.
                tokio::time::sleep(Duration::from_millis(50)).await;
                report
            })
            .unwrap();
        assert_eq!(report.stats.ok, 4);
        let stats = engine.watchdog().stats();
        if expect_stalls {
            // Back-to-back jobs starve the heartbeat: at least one stall as long as a job.
            assert!(stats.stalls >= 1 && stats.max_lag >= JOB, "{model}: expected a stall, got {stats:?}");
            assert_eq!(engine.watchdog().last_stall_stage(), Some("transform"), "stall names its stage");
        } else {
            // 50 ms threshold against 100 ms jobs running off the reactor.
            assert_eq!(stats.stalls, 0, "{model}: the reactor stalled: {stats:?}");
        }
    }
}
