use std::time::Duration;

use mysql_async::prelude::Queryable;
use tokio::sync::oneshot;
use tokio::time::timeout;

use super::*;
use switchyard_tests::{mysql_url, unique};

fn config(url: String, pool_max: usize, acquire_timeout_ms: u64) -> MysqlConfig {
    MysqlConfig { pool_max, acquire_timeout_ms, ..MysqlConfig::new(url) }
}

#[tokio::test]
async fn bad_url_is_a_config_error_that_hides_the_url() {
    let err = MysqlPool::new(&MysqlConfig::new("mysql://root:s3cret@db:notaport/test")).unwrap_err();
    assert_eq!(err.config_field(), Some("mysql.url"));
    assert!(!format!("{err} {err:?}").contains("s3cret"), "{err:?}");
    assert!(MysqlPool::new(&MysqlConfig::new("mariadb://root@127.0.0.1:3306/test")).is_ok());
}

#[tokio::test]
async fn server_down_fails_fast() {
    let pool = MysqlPool::new(&config("mysql://root@127.0.0.1:1/test".into(), 2, 1_000)).unwrap();
    let call = pool.with_conn(|conn| Box::pin(conn.query_drop("SELECT 1")));
    let err = timeout(Duration::from_secs(5), call).await.expect("hung").unwrap_err();
    assert!(err.is_mysql(), "{err:?}");
    assert_eq!(pool.status(), PoolStatus { in_use: 0, waiters: 0, max: 2 });
}

#[tokio::test]
async fn exhausted_pool_times_out_instead_of_hanging() {
    let Some(url) = mysql_url() else { return };
    let test = async {
        let pool = MysqlPool::new(&config(url, 1, 200)).unwrap();
        let (held_tx, held_rx) = oneshot::channel();
        let (release_tx, release_rx) = oneshot::channel::<()>();
        let holder = tokio::spawn({
            let pool = pool.clone();
            async move {
                pool.with_conn(move |conn| {
                    Box::pin(async move {
                        conn.query_drop("SELECT 1").await?;
                        let _ = held_tx.send(());
                        let _ = release_rx.await;
                        Ok(())
                    })
                })
                .await
            }
        });
        held_rx.await.unwrap();
        assert_eq!(pool.status(), PoolStatus { in_use: 1, waiters: 0, max: 1 });

        let waiter = tokio::spawn({
            let pool = pool.clone();
            async move { pool.with_conn(|conn| Box::pin(conn.query_drop("SELECT 1"))).await }
        });
        while pool.status().waiters == 0 {
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        assert_eq!(pool.status(), PoolStatus { in_use: 1, waiters: 1, max: 1 });
        let err = waiter.await.unwrap().unwrap_err();
        assert!(err.is_timeout() && err.is_overloaded(), "{err:?}");
        assert_eq!(pool.status(), PoolStatus { in_use: 1, waiters: 0, max: 1 });

        release_tx.send(()).unwrap();
        holder.await.unwrap().unwrap();
        assert_eq!(pool.status(), PoolStatus { in_use: 0, waiters: 0, max: 1 });
        let two: Option<u32> = pool.with_conn(|conn| Box::pin(conn.query_first("SELECT 2"))).await.unwrap();
        assert_eq!(two, Some(2));
        pool.disconnect().await.unwrap();
    };
    timeout(Duration::from_secs(10), test).await.expect("exhausted pool hung");
}

#[tokio::test]
async fn scoped_calls_always_return_their_connection() {
    let Some(url) = mysql_url() else { return };
    let table = unique("sy_scoped");
    let test = async {
        let pool = MysqlPool::new(&config(url, 2, 5_000)).unwrap();
        pool.exec_drop(
            &format!("CREATE TABLE IF NOT EXISTS {table} (id INT PRIMARY KEY AUTO_INCREMENT, v INT)"),
            (),
        )
        .await
        .unwrap();
        let insert = format!("INSERT INTO {table} (v) VALUES (?)");
        for i in 0..50 {
            pool.exec_drop(&insert, (i,)).await.unwrap();
        }
        let mut set = tokio::task::JoinSet::new();
        for i in 0..20 {
            let (pool, insert) = (pool.clone(), insert.clone());
            set.spawn(async move {
                let seen = pool.clone();
                pool.with_conn(move |conn| {
                    Box::pin(async move {
                        assert!(seen.status().in_use <= 2);
                        conn.exec_drop(insert, (i,)).await
                    })
                })
                .await
            });
        }
        while let Some(done) = set.join_next().await {
            done.unwrap().unwrap();
        }
        let count = format!("SELECT COUNT(*) FROM {table}");
        let n: Option<u64> = pool.with_conn(move |conn| Box::pin(conn.query_first(count))).await.unwrap();
        assert_eq!(n, Some(70));
        assert_eq!(pool.status(), PoolStatus { in_use: 0, waiters: 0, max: 2 });

        let err = pool.with_conn(|conn| Box::pin(conn.query_drop("SELEKT nonsense"))).await.unwrap_err();
        assert!(err.is_mysql() && !err.is_timeout(), "{err:?}");
        assert_eq!(pool.status().in_use, 0);

        pool.exec_drop(&format!("DROP TABLE {table}"), ()).await.unwrap();
        pool.disconnect().await.unwrap();
    };
    timeout(Duration::from_secs(30), test).await.expect("scoped calls hung");
}

#[tokio::test]
async fn returned_connections_are_reused_with_their_session_reset() {
    let Some(url) = mysql_url() else { return };
    let test = async {
        let connection_id = |pool: MysqlPool| async move {
            pool.with_conn(|conn| Box::pin(conn.query_first::<u64, _>("SELECT CONNECTION_ID()")))
                .await
                .unwrap()
                .unwrap()
        };
        let set_and_read = |pool: MysqlPool| async move {
            pool.with_conn(|conn| Box::pin(conn.query_drop("SET @switchyard_left_over = 7"))).await.unwrap();
            pool.with_conn(|conn| {
                Box::pin(conn.query_first::<Option<u32>, _>("SELECT @switchyard_left_over"))
            })
            .await
            .unwrap()
            .flatten()
        };

        let pool = MysqlPool::new(&config(url.clone(), 1, 2_000)).unwrap();
        let first = connection_id(pool.clone()).await;
        for _ in 0..5 {
            assert_eq!(connection_id(pool.clone()).await, first, "a returned connection was closed");
        }
        // By default the session is reset on return: nothing leaks to the next caller.
        assert_eq!(set_and_read(pool.clone()).await, None);
        pool.disconnect().await.unwrap();

        // The driver's URL parameters still apply.
        let sep = if url.contains('?') { '&' } else { '?' };
        let keep = MysqlPool::new(&config(format!("{url}{sep}reset_connection=false"), 1, 2_000)).unwrap();
        assert_eq!(set_and_read(keep.clone()).await, Some(7));
        keep.disconnect().await.unwrap();
    };
    timeout(Duration::from_secs(10), test).await.expect("reuse test hung");
}

#[tokio::test]
async fn operation_deadline_discards_the_connection() {
    let Some(url) = mysql_url() else { return };
    let test = async {
        let cfg = MysqlConfig { operation_timeout_ms: 200, ..config(url, 1, 2_000) };
        let pool = MysqlPool::new(&cfg).unwrap();
        let err = pool.with_conn(|conn| Box::pin(conn.query_drop("SELECT SLEEP(2)"))).await.unwrap_err();
        assert!(err.is_timeout() && !err.is_overloaded(), "{err:?}");
        assert_eq!(pool.status().in_use, 0);
        // The cut-short connection must not hand its late reply to the next caller.
        let three: Option<u32> = pool.with_conn(|conn| Box::pin(conn.query_first("SELECT 3"))).await.unwrap();
        assert_eq!(three, Some(3));
        pool.disconnect().await.unwrap();
    };
    timeout(Duration::from_secs(10), test).await.expect("operation deadline hung");
}
