//! A host that exports its own metrics with its own `PrometheusBuilder`
//! gets Switchyard's histograms as histograms once it applies
//! `with_switchyard_buckets`; without it the exporter publishes summaries.

use crate::support::engine_allowing_loopback;
use std::time::Duration;

use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusRecorder};
use switchyard::protocol::catalogue::{CPU_JOB_DURATION, TASK_DURATION};
use switchyard::telemetry::prometheus::with_switchyard_buckets;
use switchyard::{MemorySource, TaskContext, TaskError};

/// Builds an engine with `recorder` as the recorder in force (the engine
/// resolves its metric handles when built), runs a few tasks with a CPU
/// step, and renders what the recorder holds.
fn exposition_after_a_run(recorder: PrometheusRecorder) -> String {
    let handle = recorder.handle();
    let engine = metrics::with_local_recorder(&recorder, || {
        engine_allowing_loopback().cpu_threads(1).build().unwrap()
    });
    let (producer, source) = MemorySource::bounded(8);
    for i in 0..8u64 {
        producer.try_send(i, i.to_string()).unwrap();
    }
    drop(producer);
    engine
        .block_on(async {
            let running = engine
                .start(source, |cx: TaskContext, i: u64| async move {
                    cx.cpu(move || (0..1_000 * (i + 1)).sum::<u64>()).await?;
                    Ok::<_, TaskError>(())
                })
                .await
                .unwrap();
            assert_eq!(running.finished().await.stats.ok, 8);
            engine.shutdown(Duration::from_secs(5)).await;
        })
        .unwrap();
    handle.run_upkeep();
    handle.render()
}

#[test]
fn a_host_builder_with_switchyard_buckets_exports_histograms() {
    let recorder = with_switchyard_buckets(PrometheusBuilder::new()).unwrap().build_recorder();
    let text = exposition_after_a_run(recorder);
    for def in [&TASK_DURATION, &CPU_JOB_DURATION] {
        assert!(
            text.contains(&format!("# TYPE {} histogram", def.name)),
            "{} not a histogram:\n{text}",
            def.name
        );
        assert!(text.contains(&format!("{}_bucket{{le=", def.name)), "{} has no buckets:\n{text}", def.name);
        assert!(text.contains(&format!("{}_count 8", def.name)), "eight tasks, one CPU job each:\n{text}");
    }
    assert!(!text.contains("quantile="), "a Switchyard histogram was exported as a summary:\n{text}");
}

#[test]
fn without_the_buckets_the_same_run_exports_summaries() {
    let text = exposition_after_a_run(PrometheusBuilder::new().build_recorder());
    assert!(text.contains(&format!("# TYPE {} summary", TASK_DURATION.name)), "{text}");
}
