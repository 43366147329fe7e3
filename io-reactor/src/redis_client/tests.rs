use std::io;

use super::*;
use switchyard_tests::{redis_url, unique};

fn config(url: String) -> RedisConfig {
    RedisConfig::new(url)
}

#[test]
fn retries_only_lost_connections() {
    assert!(connection_lost(&RedisError::from(io::Error::from(io::ErrorKind::BrokenPipe))));
    assert!(connection_lost(&RedisError::from(io::Error::from(io::ErrorKind::ConnectionReset))));
    assert!(!connection_lost(&RedisError::from(io::Error::from(io::ErrorKind::TimedOut))));
    assert!(!connection_lost(&RedisError::from((redis::ErrorKind::Client, "bad"))));
}

#[tokio::test]
async fn bad_url_is_a_config_error_that_hides_the_url() {
    let err = RedisClient::connect(&config("redis://:s3cret@host:notaport/".into())).await.unwrap_err();
    assert_eq!(err.config_field(), Some("redis.url"));
    assert!(!format!("{err} {err:?}").contains("s3cret"), "{err:?}");
}

#[tokio::test]
async fn server_down_fails_within_the_connect_timeout() {
    let cfg = RedisConfig { connect_timeout_ms: 500, ..config("redis://127.0.0.1:1/".into()) };
    let started = Instant::now();
    let err = RedisClient::connect(&cfg).await.unwrap_err();
    assert!(err.is_redis() || err.is_timeout(), "{err:?}");
    assert!(started.elapsed() < Duration::from_millis(700), "took {:?}", started.elapsed());
}

#[tokio::test]
async fn query_survives_a_killed_connection() {
    let Some(url) = redis_url() else { return };
    let key = unique("sy_kill");
    let test = async {
        let client = RedisClient::connect(&config(url.clone())).await.unwrap();
        let killer = redis::Client::open(url.as_str()).unwrap();
        let mut killer = killer.get_multiplexed_async_connection().await.unwrap();
        let kill = |id: i64| redis::cmd("CLIENT").arg("KILL").arg("ID").arg(id).to_owned();

        let id: i64 = client.query(redis::cmd("CLIENT").arg("ID")).await.unwrap();
        let killed: i64 = kill(id).query_async(&mut killer).await.unwrap();
        assert_eq!(killed, 1);
        let () = client.query(redis::cmd("SET").arg(&key).arg("v1").arg("EX").arg(60)).await.unwrap();
        let got: Option<String> = client.query(redis::cmd("GET").arg(&key)).await.unwrap();
        assert_eq!(got.as_deref(), Some("v1"));

        // query_once has no retry: the first command after a drop fails,
        // and the manager's reconnect serves the next one.
        let id: i64 = client.query(redis::cmd("CLIENT").arg("ID")).await.unwrap();
        let _: i64 = kill(id).query_async(&mut killer).await.unwrap();
        let err = client.query_once::<Option<String>>(redis::cmd("GET").arg(&key)).await.unwrap_err();
        assert!(err.is_redis() && !err.is_timeout(), "{err:?}");
        let got: Option<String> = client.query_once(redis::cmd("GET").arg(&key)).await.unwrap();
        assert_eq!(got.as_deref(), Some("v1"));

        let () = client.query(redis::cmd("DEL").arg(&key)).await.unwrap();
    };
    tokio::time::timeout(Duration::from_secs(10), test).await.expect("redis reconnect hung");
}

#[tokio::test]
async fn blocking_reads_outlast_the_driver_default_timeout() {
    let Some(url) = redis_url() else { return };
    let key = unique("sy_blpop");
    let client = RedisClient::connect(&config(url)).await.unwrap();
    let started = Instant::now();
    let popped: Option<(String, String)> =
        client.query_once(redis::cmd("BLPOP").arg(&key).arg(1.5)).await.unwrap();
    assert_eq!(popped, None);
    assert!(started.elapsed() >= Duration::from_millis(1_400), "{:?}", started.elapsed());
}

#[tokio::test]
async fn pipelines_and_server_errors() {
    let Some(url) = redis_url() else { return };
    let key = unique("sy_pipe");
    let client = RedisClient::connect(&config(url)).await.unwrap();
    let mut pipe = redis::pipe();
    pipe.cmd("SET").arg(&key).arg("text").arg("EX").arg(60).ignore().cmd("GET").arg(&key);
    let (got,): (String,) = client.query_pipeline(&pipe, true).await.unwrap();
    assert_eq!(got, "text");

    let err = client.query::<i64>(redis::cmd("INCR").arg(&key)).await.unwrap_err();
    assert!(err.is_redis() && !err.is_timeout(), "{err:?}");

    let () = client.query(redis::cmd("DEL").arg(&key)).await.unwrap();
}

#[tokio::test]
async fn a_server_error_keeps_its_code() {
    let Some(url) = redis_url() else { return };
    let stream = unique("sy_codes");
    let client = RedisClient::connect(&config(url)).await.unwrap();
    let create = redis::cmd("XGROUP").arg("CREATE").arg(&stream).arg("g").arg("0").arg("MKSTREAM").to_owned();
    let () = client.query(&create).await.unwrap();
    let again = client.query::<()>(&create).await.unwrap_err();
    assert_eq!(again.redis_code(), Some("BUSYGROUP"), "{again:?}");
    let read = redis::cmd("XREADGROUP")
        .arg("GROUP")
        .arg("missing")
        .arg("c")
        .arg("STREAMS")
        .arg(&stream)
        .arg(">")
        .to_owned();
    let gone = client.query::<redis::Value>(&read).await.unwrap_err();
    assert_eq!(gone.redis_code(), Some("NOGROUP"), "{gone:?}");
    let dropped: u64 = client.query(redis::cmd("DEL").arg(&stream)).await.unwrap();
    assert_eq!(dropped, 1);
}
