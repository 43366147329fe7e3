//! Tasks reaching real MySQL and Redis through the engine's context.

use crate::support::engine_allowing_loopback;
use std::time::Duration;

use switchyard::io_reactor::mysql_async::prelude::Queryable;
use switchyard::io_reactor::{redis, MysqlConfig, RedisConfig};
use switchyard::{ExecutionModel, MemorySource, TaskContext, TaskError};
use switchyard_tests::{mysql_url, redis_url, unique};

#[test]
fn tasks_record_rows_in_mysql_and_counters_in_redis_under_every_model() {
    let (Some(mysql), Some(redis_url)) = (mysql_url(), redis_url()) else { return };
    for model in ExecutionModel::ALL {
        let table = unique("sy_it_runs");
        let key = unique("sy:it:count");
        let engine = engine_allowing_loopback()
            .model(model)
            .cpu_threads(1)
            .thread_workers(3)
            .mysql(MysqlConfig { pool_max: 2, ..MysqlConfig::new(&mysql) })
            .redis(RedisConfig::new(&redis_url))
            .build()
            .unwrap();
        let (producer, source) = MemorySource::bounded(40);
        for i in 0..40u32 {
            producer.try_send(i, format!("row-{i}")).unwrap();
        }
        drop(producer);
        let (t, k) = (table.clone(), key.clone());
        let report = engine
            .block_on(async {
                let setup = engine.config().mysql.clone().unwrap();
                let pool = switchyard::io_reactor::MysqlPool::new(&setup).unwrap();
                let create = format!("CREATE TABLE {t} (id INT PRIMARY KEY, doubled INT NOT NULL)");
                pool.with_conn(move |c| Box::pin(async move { c.query_drop(create).await })).await.unwrap();
                let running = engine
                    .start(source, move |cx: TaskContext, i: u32| {
                        let (table, key) = (t.clone(), k.clone());
                        async move {
                            let doubled = cx.cpu(move || i * 2).await?;
                            let insert = format!("INSERT INTO {table} (id, doubled) VALUES (?, ?)");
                            // The connection is held only inside this scope.
                            cx.mysql()?
                                .with_conn(move |c| {
                                    Box::pin(async move { c.exec_drop(insert, (i, doubled)).await })
                                })
                                .await?;
                            let _: i64 = cx.redis()?.query_once(redis::cmd("INCR").arg(&key)).await?;
                            Ok::<_, TaskError>(())
                        }
                    })
                    .await
                    .unwrap();
                let report = running.finished().await;
                let count_sql = format!("SELECT COUNT(*), COALESCE(SUM(doubled), 0) FROM {table}");
                let (rows, sum): (i64, i64) = pool
                    .with_conn(move |c| {
                        Box::pin(async move { c.query_first(count_sql).await.map(|r| r.unwrap()) })
                    })
                    .await
                    .unwrap();
                let drop_sql = format!("DROP TABLE {table}");
                pool.with_conn(move |c| Box::pin(async move { c.query_drop(drop_sql).await })).await.unwrap();
                let client = switchyard::io_reactor::RedisClient::connect(&RedisConfig::new(&redis_url))
                    .await
                    .unwrap();
                let counted: i64 = client.query(redis::cmd("GET").arg(&key)).await.unwrap();
                let _: i64 = client.query(redis::cmd("DEL").arg(&key)).await.unwrap();
                (report, rows, sum, counted)
            })
            .unwrap();
        let (report, rows, sum, counted) = report;
        assert_eq!(report.stats.ok, 40, "{model}: {report:?}");
        assert_eq!((rows, sum), (40, (0..40).map(|i| i * 2).sum::<i64>()), "{model}");
        assert_eq!(counted, 40, "{model}");
    }
}

#[test]
fn a_task_using_an_unconfigured_store_fails_with_a_clear_error() {
    let engine = engine_allowing_loopback().cpu_threads(1).build().unwrap();
    let (producer, source) = MemorySource::bounded(1);
    producer.try_send((), "needs-mysql").unwrap();
    drop(producer);
    let failures = engine
        .block_on(async {
            let running = engine
                .start(source, |cx: TaskContext, ()| async move {
                    cx.mysql()?;
                    Ok::<_, TaskError>(())
                })
                .await
                .unwrap();
            tokio::time::timeout(Duration::from_secs(5), running.finished()).await.unwrap();
            running.recent_failures()
        })
        .unwrap();
    assert_eq!(failures.len(), 1);
    assert_eq!(failures[0].reason, "mysql is not configured");
}

#[test]
fn a_database_that_is_down_fails_start_not_the_first_task() {
    // Port 1 on loopback: nothing listens there.
    let engine = engine_allowing_loopback().redis(RedisConfig::new("redis://127.0.0.1:1/")).build().unwrap();
    let (_producer, source) = MemorySource::<u32>::bounded(1);
    let started = engine
        .block_on(async {
            let start = engine.start(source, |_cx: TaskContext, _i| async { Ok::<_, TaskError>(()) });
            tokio::time::timeout(Duration::from_secs(10), start).await
        })
        .unwrap();
    let err = started.expect("start must not hang").expect_err("redis is down");
    assert!(err.to_string().contains("redis") || err.to_string().contains("connect"), "{err}");
}
