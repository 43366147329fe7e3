//! A smoke run that exercises every component emits every catalogue metric,
//! and `promtool check metrics` accepts the exposition.

use std::io::Write;
use std::process::{Command, Stdio};
use std::time::Duration;

use std::net::SocketAddr;

use switchyard::io_reactor::mysql_async::prelude::Queryable;
use switchyard::io_reactor::{redis, EgressConfig, HttpClient, HttpConfig, MysqlConfig, RedisConfig};
use switchyard::protocol::catalogue::CATALOGUE;
use switchyard::source::{StreamConfig, StreamProducer, StreamSource};
use switchyard::{ExecutionModel, MemorySource, TaskContext, TaskError};
use switchyard_pz1::Pz1Upstream;
use switchyard_service::{install_prometheus, run_service, Endpoints, RunLimits, ServiceConfig};
use switchyard_tests::{burn, exclusive, mysql_url, redis_url, services_required};

use crate::support::{engine_allowing_loopback, fetch_and_digest, poll_url};

#[test]
fn a_smoke_run_emits_every_catalogue_metric_and_promtool_accepts_it() {
    let (Some(mysql), Some(redis_url)) = (mysql_url(), redis_url()) else { return };
    let _cores = exclusive();
    let metrics = install_prometheus().expect("the only recorder this test binary installs");
    let upstream = Pz1Upstream::start(SocketAddr::from(([127, 0, 0, 1], 0))).unwrap();

    // Hybrid: HTTP, CPU pool, MySQL, Redis, a panicking job, a failing request.
    let engine = engine_allowing_loopback()
        .model(ExecutionModel::Hybrid)
        .cpu_threads(1)
        .cpu_queue_capacity(2)
        .mysql(MysqlConfig { pool_max: 1, acquire_timeout_ms: 100, ..MysqlConfig::new(&mysql) })
        .redis(RedisConfig::new(&redis_url))
        .build()
        .unwrap();
    let (producer, source) = MemorySource::bounded(16);
    for i in 0..8 {
        producer.try_send(poll_url(&upstream.base_url(), 5, 5), format!("ok-{i}")).unwrap();
    }
    producer.try_send("panic".to_string(), "panics").unwrap();
    producer.try_send("http://127.0.0.1:1/".to_string(), "refused").unwrap();
    drop(producer);
    engine
        .block_on(async {
            let running = engine
                .start(source, |cx: TaskContext, url: String| async move {
                    if url == "panic" {
                        cx.cpu(|| panic!("smoke panic")).await?;
                    }
                    fetch_and_digest(cx.clone(), url, 10).await?;
                    let _: i64 = cx.redis()?.query(redis::cmd("INCR").arg("switchyard:smoke")).await?;
                    let one: Option<u8> = cx
                        .mysql()?
                        .with_conn(|c| Box::pin(async move { c.query_first("SELECT 1").await }))
                        .await?;
                    assert_eq!(one, Some(1));
                    Ok::<_, TaskError>(())
                })
                .await
                .unwrap();
            let report = running.finished().await;
            assert_eq!(report.stats.ok, 8, "{report:?}");

            // An exhausted pool: one holder, one waiter that times out.
            let pool = switchyard::io_reactor::MysqlPool::new(&MysqlConfig {
                pool_max: 1,
                acquire_timeout_ms: 50,
                ..MysqlConfig::new(&mysql)
            })
            .unwrap();
            let holder = pool.clone();
            let hold = tokio::spawn(async move {
                holder
                    .with_conn(|c| {
                        Box::pin(async move {
                            tokio::time::sleep(Duration::from_millis(300)).await;
                            c.ping().await
                        })
                    })
                    .await
            });
            tokio::time::sleep(Duration::from_millis(50)).await;
            assert!(pool.with_conn(|c| Box::pin(c.ping())).await.unwrap_err().is_overloaded());
            hold.await.unwrap().unwrap();

            // A full CPU queue rejects a try_submit; a dropped job is cancelled.
            let cpu = engine.cpu_pool().unwrap();
            let blockers: Vec<_> = (0..2).map(|_| cpu.submit(|| burn(Duration::from_millis(100)))).collect();
            assert!(cpu.try_submit(|| ()).is_err());
            drop(blockers);
            // A request over the body cap.
            let tiny = HttpClient::new(&HttpConfig {
                max_body_bytes: 10,
                egress: EgressConfig::allowing_loopback(),
                ..HttpConfig::default()
            })
            .unwrap();
            let url = poll_url(&upstream.base_url(), 50, 0);
            assert!(tiny.get(&url).await.unwrap_err().is_body_too_large());
        })
        .unwrap();

    // Reactor-only: an inline CPU step long enough to count as a stall.
    let gevent_shaped = engine_allowing_loopback().model(ExecutionModel::ReactorOnly).build().unwrap();
    let (producer, source) = MemorySource::bounded(1);
    producer.try_send((), "stall").unwrap();
    drop(producer);
    gevent_shaped
        .block_on(async {
            let running = gevent_shaped
                .start(source, |cx: TaskContext, ()| async move {
                    cx.cpu_stage("smoke-burn", || burn(Duration::from_millis(120))).await?;
                    Ok::<_, TaskError>(())
                })
                .await
                .unwrap();
            running.finished().await;
            tokio::time::sleep(Duration::from_millis(50)).await;
        })
        .unwrap();
    assert!(gevent_shaped.watchdog().stats().stalls >= 1);

    // A Redis stream: an entry acked, one retried, one dead-lettered.
    let stream_engine = engine_allowing_loopback().cpu_threads(1).build().unwrap();
    stream_engine
        .block_on(async {
            let redis = RedisConfig::new(&redis_url);
            let config = StreamConfig {
                block_ms: 100,
                ..StreamConfig::new(format!("{}:smoke", switchyard_tests::unique("sy")), "smoke")
            };
            let producer = StreamProducer::<String>::connect(&redis, config.clone()).await.unwrap();
            for item in ["ok", "retry", "fail"] {
                producer.send(item.to_string(), item).await.unwrap();
            }
            let source = StreamSource::<String>::connect(&redis, config.clone()).await.unwrap();
            tokio::spawn(source.maintenance());
            let running = stream_engine
                .start(source, |cx: TaskContext, item: String| async move {
                    match (item.as_str(), cx.attempt()) {
                        ("retry", 1) => Err(TaskError::retry_after("later", Duration::from_millis(10))),
                        ("fail", _) => Err(TaskError::fatal("smoke failure")),
                        _ => Ok(()),
                    }
                })
                .await
                .unwrap();
            let deadline = std::time::Instant::now() + Duration::from_secs(10);
            while running.stats().ok < 2 || running.stats().failed < 1 {
                assert!(std::time::Instant::now() < deadline, "{:?}", running.stats());
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            running.shutdown(Duration::from_secs(1)).await;
            let client = switchyard::io_reactor::RedisClient::connect(&redis).await.unwrap();
            let keys = [config.stream.clone(), config.delayed_key(), config.dead_key()];
            let _: u64 = client.query(redis::cmd("DEL").arg(&keys)).await.unwrap();
        })
        .unwrap();

    // The service layer: the built-in PZ-1 zaps for a few polls.
    let mut service = ServiceConfig::default();
    service.pz1.zaps = 2;
    service.pz1.poll_period_ms = 50;
    service.pz1.base_ms = 1.0;
    service.pz1.max_ms = 5;
    let zaps_engine = engine_allowing_loopback().cpu_threads(1).build().unwrap();
    let report = zaps_engine
        .block_on(run_service(
            &zaps_engine,
            &service,
            &Endpoints::new(None),
            tokio_util::sync::CancellationToken::new(),
            RunLimits { max_tasks: Some(4) },
        ))
        .unwrap()
        .unwrap();
    assert!(report.stats.ok >= 4, "{report:?}");

    metrics.run_upkeep();
    let text = metrics.render();
    let missing: Vec<_> =
        CATALOGUE.iter().map(|m| m.name).filter(|name| !text.contains(&format!("\n{name}"))).collect();
    assert!(missing.is_empty(), "metrics never emitted: {missing:?}\n{text}");
    assert!(!text.contains("quantile="), "a histogram was exported as a summary");
    promtool_check(&text);
}

fn promtool_check(text: &str) {
    let spawned = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn();
    let mut child = match spawned {
        Ok(child) => child,
        Err(e) if !services_required() => {
            eprintln!(
                "skipping promtool check: promtool not found ({e}); install Debian's prometheus package"
            );
            return;
        }
        Err(e) => panic!("promtool is required (SWITCHYARD_REQUIRE_SERVICES=1): {e}"),
    };
    child.stdin.take().unwrap().write_all(text.as_bytes()).unwrap();
    let output = child.wait_with_output().unwrap();
    assert!(
        output.status.success(),
        "promtool rejected /metrics:\n{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}
