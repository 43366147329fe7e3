//! Deadlines, end to end on real engines: a task past its deadline is
//! cancelled, handed back and reported (by the run and by `/status`); a CPU
//! step that cannot get a slot in time fails as overloaded; neither leaks a
//! CPU slot or an in-flight slot. Elapsed times are checked against
//! generous bounds only: how fast is the benchmarks' business.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use switchyard::{Engine, EngineConfig, ExecutionModel, MemorySource, TaskContext, TaskError};
use switchyard_cpu_pool::CpuPoolConfig;
use switchyard_io_reactor::server::{respond, Handler, ServerThread};
use switchyard_service::{run_service, Endpoints, RunLimits, ServiceConfig};
use switchyard_tests::{burn, exclusive};
use tokio_util::sync::CancellationToken;

/// Waits (really) until the pool holds no slot, or fails after 10 s.
async fn pool_drained(engine: &Engine) {
    let Some(pool) = engine.cpu_pool() else { return };
    let until = Instant::now() + Duration::from_secs(10);
    while pool.stats().queued + pool.stats().running > 0 {
        assert!(Instant::now() < until, "a CPU slot was never given back: {:?}", pool.stats());
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

#[test]
fn a_task_past_its_deadline_is_cancelled_handed_back_and_reported_under_every_model() {
    let _cores = exclusive();
    for model in ExecutionModel::ALL {
        let config =
            EngineConfig { model, task_timeout_ms: 150, max_in_flight: 16, ..EngineConfig::default() };
        let engine = Engine::builder().config(config).cpu_threads(2).thread_workers(4).build().unwrap();
        // One attempt per item: a timed-out item's nack then counts it dead.
        let (producer, source) = MemorySource::with_max_attempts(8, 1);
        for (item, label) in [(0u32, "quick"), (1, "stuck-on-io"), (2, "long-cpu-step"), (3, "quick-2")] {
            producer.try_send(item, label).unwrap();
        }
        drop(producer);
        let resumed = Arc::new(AtomicU64::new(0));
        let after_deadline = resumed.clone();
        let started = Instant::now();
        let (report, timeouts) = engine
            .block_on(async {
                let running = engine
                    .start(source, move |cx: TaskContext, item: u32| {
                        let after_deadline = after_deadline.clone();
                        async move {
                            match item {
                                1 => tokio::time::sleep(Duration::from_secs(3_600)).await,
                                2 => {
                                    cx.cpu(|| burn(Duration::from_millis(400))).await?;
                                    // Reached only if the engine let the task run on.
                                    tokio::task::yield_now().await;
                                    after_deadline.fetch_add(1, Ordering::SeqCst);
                                }
                                _ => tokio::time::sleep(Duration::from_millis(10)).await,
                            }
                            Ok::<_, TaskError>(())
                        }
                    })
                    .await
                    .unwrap();
                let report = running.finished().await;
                pool_drained(&engine).await;
                (report, running.recent_timeouts())
            })
            .unwrap();

        let stats = report.stats;
        assert_eq!(
            (stats.ok + stats.timed_out, stats.in_flight, stats.failed),
            (4, 0, 0),
            "{model}: {stats:?}"
        );
        assert!(started.elapsed() < Duration::from_secs(10), "{model}: the hour-long task was cancelled");
        assert_eq!(resumed.load(Ordering::SeqCst), 0, "{model}: no task resumed past its deadline");
        let named: Vec<_> = timeouts.iter().map(|t| t.label.as_str()).collect();
        assert!(named.contains(&"stuck-on-io") && named.contains(&"long-cpu-step"), "{model}: {named:?}");
        if model == ExecutionModel::ReactorOnly {
            // gevent's shape: the 400 ms step held the only reactor thread, so
            // a quick task caught behind it may have passed its deadline too.
            assert!(stats.timed_out >= 2, "{model}: {stats:?}");
        } else {
            assert_eq!((stats.ok, stats.timed_out), (2, 2), "{model}: {named:?}");
        }
        let io = timeouts.iter().find(|t| t.label == "stuck-on-io").unwrap();
        assert_eq!(io.timeout, Duration::from_millis(150), "{model}");
        assert!(io.overrun < Duration::from_secs(1), "{model}: parked on I/O, cancelled on time: {io:?}");
        let cpu = timeouts.iter().find(|t| t.label == "long-cpu-step").unwrap();
        if model != ExecutionModel::Hybrid {
            // Inline, the step holds the thread: the task is cancelled when it ends.
            assert!(cpu.overrun >= Duration::from_millis(100), "{model}: {cpu:?}");
        }
        if let Some(pool) = engine.cpu_pool() {
            let stats = pool.stats();
            // The step ran to its end on the pool; its result was dropped with the task.
            assert_eq!((stats.completed, stats.queued + stats.running), (1, 0), "{stats:?}");
        }
        engine.block_on(engine.shutdown(Duration::from_secs(5))).unwrap();
    }
}

#[test]
fn a_cpu_slot_wait_past_its_bound_fails_overloaded_and_leaks_no_slot() {
    let _cores = exclusive();
    let cpu = CpuPoolConfig { threads: 1, queue_capacity: 2, slot_wait_ms: 30, ..CpuPoolConfig::default() };
    let config = EngineConfig { cpu, max_in_flight: 64, ..EngineConfig::default() };
    let engine = Engine::builder().config(config).build().unwrap();
    let (producer, source) = MemorySource::bounded(64);
    for i in 0..40u32 {
        producer.try_send(i, format!("item-{i}")).unwrap();
    }
    drop(producer);
    let overloaded = Arc::new(AtomicU64::new(0));
    let seen = overloaded.clone();
    let report = engine
        .block_on(async {
            let running = engine
                .start(source, move |cx: TaskContext, _i: u32| {
                    let seen = seen.clone();
                    async move {
                        match cx.cpu(|| burn(Duration::from_millis(100))).await {
                            Ok(_) => Ok(()),
                            Err(e) if e.is_overloaded() => {
                                seen.fetch_add(1, Ordering::SeqCst);
                                Err(TaskError::fatal(e))
                            }
                            Err(e) => panic!("not an overload: {e}"),
                        }
                    }
                })
                .await
                .unwrap();
            let report = running.finished().await;
            pool_drained(&engine).await;
            report
        })
        .unwrap();

    // 40 tasks at once, two slots of 100 ms steps, 30 ms of patience:
    // the two that got slots ran, most of the rest were turned away.
    let overloaded = overloaded.load(Ordering::SeqCst);
    assert!(overloaded >= 30, "{overloaded} overloaded: {report:?}");
    assert_eq!(report.stats.ok + report.stats.failed, 40);
    assert_eq!(report.stats.failed, overloaded);
    let pool = engine.cpu_pool().unwrap();
    let stats = pool.stats();
    assert_eq!(stats.overloaded, overloaded, "{stats:?}");
    assert_eq!((stats.queued, stats.running, stats.waiting_producers), (0, 0, 0), "{stats:?}");
    // Every slot is free: as many jobs as the capacity go in without waiting.
    engine
        .block_on(async {
            let jobs: Vec<_> = (0..2).map(|i| pool.try_submit(move || i).expect("a free slot")).collect();
            for job in jobs {
                job.await.unwrap();
            }
        })
        .unwrap();
    engine.block_on(engine.shutdown(Duration::from_secs(5))).unwrap();
}

#[test]
fn a_pipeline_poll_past_its_own_timeout_is_named_in_status() {
    // An API that answers its first poll after five seconds, later ones at once.
    let polls = Arc::new(AtomicU64::new(0));
    let counted = polls.clone();
    let api: Handler = Arc::new(move |_req| {
        let n = counted.fetch_add(1, Ordering::SeqCst);
        Box::pin(async move {
            if n == 0 {
                tokio::time::sleep(Duration::from_secs(5)).await;
            }
            respond(200, "application/json", r#"{"data": []}"#)
        })
    });
    let local = SocketAddr::from(([127, 0, 0, 1], 0));
    let api = ServerThread::start(local, "slow-api", 8, api).unwrap();
    let text = format!(
        r#"
        state = "ephemeral"
        [engine]
        task_timeout_ms = 60000
        # The API runs on this machine.
        [engine.http.egress]
        allow = ["127.0.0.1/32"]
        [[pipelines]]
        name = "slow-orders"
        task_timeout_ms = 200
        [pipelines.source]
        url = "http://{api}/orders"
        poll_interval_ms = 50
        items_pointer = "/data"
        [pipelines.action]
        url = "http://127.0.0.1:9/hook"
        "#,
        api = api.addr(),
    );
    let config = ServiceConfig::parse(&text).unwrap();
    config.validate().unwrap();
    let engine = Engine::builder().config(config.resolved_engine().unwrap()).build().unwrap();
    let endpoints = Endpoints::new(None);
    let stop = CancellationToken::new();
    let status = engine
        .block_on(async {
            let service = run_service(&engine, &config, &endpoints, stop.clone(), RunLimits::default());
            let script = async {
                // The timed-out poll is retried (after 1 s) and later polls succeed.
                let until = Instant::now() + Duration::from_secs(20);
                loop {
                    let ok = endpoints.status().map_or(0, |s| s.pipelines[0].polls_ok);
                    if ok >= 2 {
                        break;
                    }
                    assert!(Instant::now() < until, "the pipeline never recovered: {:?}", endpoints.status());
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                let status = endpoints.status().unwrap();
                stop.cancel();
                status
            };
            let (report, status) = tokio::join!(service, script);
            report.unwrap();
            status
        })
        .unwrap();

    assert_eq!(status.tasks.timed_out, 1, "{status:?}");
    assert_eq!(status.tasks.task_timeout_ms, 60_000);
    let [timeout] = &status.recent_timeouts[..] else { panic!("{:?}", status.recent_timeouts) };
    assert_eq!((timeout.task.as_str(), timeout.timeout_ms, timeout.attempt), ("slow-orders", 200, 1));
    assert!(timeout.over_by_ms < 1_000, "{timeout:?}");
    let json = serde_json::to_value(&status).unwrap();
    assert_eq!(json["recent_timeouts"][0]["task"], "slow-orders");
    assert!(
        status.recent_failures.iter().any(|f| f.outcome == "timed_out" && f.task == "slow-orders"),
        "{:?}",
        status.recent_failures
    );
}
