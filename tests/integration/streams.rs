//! The Redis stream source on its own, against a real Redis: entries flow
//! through and leave the stream, producers feel backpressure, retries come
//! back after their delay, poison entries become dead letters that can be
//! replayed, a dead consumer's entries are claimed, a long task is never
//! claimed twice, and a Redis restart loses nothing Redis kept.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use switchyard::io_reactor::{redis, RedisClient, RedisConfig};
use switchyard::source::{DeadLetters, DeadSelection, StreamConfig, StreamProducer, StreamSource};
use switchyard::{Engine, RunReport, Running, TaskContext, TaskError};
use switchyard_tests::{redis_url, unique};

use crate::support::{engine_allowing_loopback, LocalRedis};

/// A stream config with test-sized timings.
fn config(name: &str) -> StreamConfig {
    StreamConfig {
        block_ms: 200,
        claim_idle_ms: 1_000,
        max_deliveries: 3,
        ..StreamConfig::new(format!("{}:work", unique(name)), "workers")
    }
}

/// Counts how many times each item was delivered.
type Seen = Arc<Mutex<HashMap<String, u32>>>;
/// What a test task does with an item on a given attempt: how long it
/// works, then its result.
type Behaviour = fn(&str, u32) -> (Duration, Result<(), TaskError>);
/// `XPENDING`'s summary: count, smallest and largest id, per-consumer counts.
type PendingSummary = (u64, Option<String>, Option<String>, Option<Vec<(String, String)>>);

async fn cleanup(redis: &RedisConfig, config: &StreamConfig) {
    let client = RedisClient::connect(redis).await.unwrap();
    let keys = [config.stream.clone(), config.delayed_key(), config.dead_key()];
    let _: u64 = client.query(redis::cmd("DEL").arg(&keys)).await.unwrap();
}

/// Waits until `done` holds (checking every 20 ms), at most `limit`.
async fn until(limit: Duration, mut done: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + limit;
    while !done() {
        if Instant::now() > deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    true
}

fn total(seen: &Seen) -> u32 {
    seen.lock().unwrap().values().sum()
}

/// Starts a consumer whose task records each delivery and then does what
/// `behave` says for the item.
async fn consume(
    engine: &Engine,
    redis: &RedisConfig,
    config: StreamConfig,
    seen: Seen,
    behave: Behaviour,
) -> Running {
    let source = StreamSource::<String>::connect(redis, config).await.unwrap();
    tokio::spawn(source.maintenance());
    engine
        .start(source, move |cx: TaskContext, item: String| {
            let seen = seen.clone();
            async move {
                *seen.lock().unwrap().entry(item.clone()).or_default() += 1;
                let (work, result) = behave(&item, cx.attempt());
                tokio::time::sleep(work).await;
                result
            }
        })
        .await
        .unwrap()
}

fn quick(_: &str, _: u32) -> (Duration, Result<(), TaskError>) {
    (Duration::ZERO, Ok(()))
}

async fn stream_len(client: &RedisClient, key: &str) -> u64 {
    client.query(redis::cmd("XLEN").arg(key)).await.unwrap()
}

#[test]
fn entries_flow_through_once_and_leave_the_stream() {
    let Some(url) = redis_url() else { return };
    let redis = RedisConfig::new(&url);
    let engine = engine_allowing_loopback().cpu_threads(1).max_in_flight(8).build().unwrap();
    let config = config("sy:flow");
    engine
        .block_on(async {
            let producer = StreamProducer::<String>::connect(&redis, config.clone()).await.unwrap();
            for i in 0..50 {
                producer.send(format!("item-{i}"), &format!("label-{i}")).await.unwrap();
            }
            let seen = Seen::default();
            let running = consume(&engine, &redis, config.clone(), seen.clone(), quick).await;
            assert!(until(Duration::from_secs(20), || total(&seen) == 50).await, "{:?}", seen);
            let report: RunReport = running.shutdown(Duration::from_secs(5)).await;
            assert_eq!(report.stats.ok, 50);
            assert!(seen.lock().unwrap().values().all(|n| *n == 1), "each once: {seen:?}");
            let client = RedisClient::connect(&redis).await.unwrap();
            assert_eq!(stream_len(&client, &config.stream).await, 0, "acked entries are deleted");
            let pending: PendingSummary =
                client.query(redis::cmd("XPENDING").arg(&config.stream).arg(&config.group)).await.unwrap();
            assert_eq!(pending.0, 0, "nothing left pending");
            cleanup(&redis, &config).await;
        })
        .unwrap();
}

#[test]
fn a_full_stream_makes_producers_wait_or_fail_as_full() {
    let Some(url) = redis_url() else { return };
    let redis = RedisConfig::new(&url);
    let engine = engine_allowing_loopback().cpu_threads(1).build().unwrap();
    let config = StreamConfig { max_len: 3, send_timeout_ms: 300, ..config("sy:full") };
    engine
        .block_on(async {
            let producer = StreamProducer::<String>::connect(&redis, config.clone()).await.unwrap();
            for i in 0..3 {
                producer.try_send(format!("item-{i}"), "x").await.unwrap();
            }
            let full = producer.try_send("item-3".to_string(), "x").await.unwrap_err();
            assert!(full.is_full(), "{full}");
            assert_eq!(full.into_item(), "item-3", "the item is handed back");
            let started = Instant::now();
            let timed_out = producer.send("item-3".to_string(), "x").await.unwrap_err();
            assert!(timed_out.is_full() && started.elapsed() >= Duration::from_millis(250), "{timed_out}");

            // A patient producer waits; a consumer makes room; the send goes through.
            let patient = StreamConfig { send_timeout_ms: 10_000, ..config.clone() };
            let patient = StreamProducer::<String>::connect(&redis, patient).await.unwrap();
            let waiting = tokio::spawn(async move { patient.send("item-3".to_string(), "x").await });
            tokio::time::sleep(Duration::from_millis(200)).await;
            assert!(!waiting.is_finished(), "the send waits while the stream is full");
            let seen = Seen::default();
            let running = consume(&engine, &redis, config.clone(), seen.clone(), quick).await;
            waiting.await.unwrap().expect("room was made");
            assert!(until(Duration::from_secs(10), || total(&seen) == 4).await, "{seen:?}");
            running.shutdown(Duration::from_secs(5)).await;
            cleanup(&redis, &config).await;
        })
        .unwrap();
}

fn picky(item: &str, attempt: u32) -> (Duration, Result<(), TaskError>) {
    let result = match item {
        "retry-once" if attempt == 1 => Err(TaskError::retry_after("not yet", Duration::from_millis(300))),
        "always-retry" => Err(TaskError::retry_after("never ready", Duration::from_millis(50))),
        "fatal" => Err(TaskError::fatal("the upstream said 422")),
        _ => Ok(()),
    };
    (Duration::ZERO, result)
}

#[test]
fn retries_come_back_after_their_delay_and_poison_entries_become_dead_letters() {
    let Some(url) = redis_url() else { return };
    let redis = RedisConfig::new(&url);
    let engine = engine_allowing_loopback().cpu_threads(1).build().unwrap();
    let config = config("sy:dead");
    engine
        .block_on(async {
            let producer = StreamProducer::<String>::connect(&redis, config.clone()).await.unwrap();
            for item in ["ok", "retry-once", "always-retry", "fatal"] {
                producer.send(item.to_string(), item).await.unwrap();
            }
            // An entry that is not one of ours at all.
            let client = RedisClient::connect(&redis).await.unwrap();
            let _: String = client
                .query(redis::cmd("XADD").arg(&config.stream).arg("*").arg("item").arg("{not json"))
                .await
                .unwrap();

            let seen = Seen::default();
            let started = Instant::now();
            let running = consume(&engine, &redis, config.clone(), seen.clone(), picky).await;
            let dead = DeadLetters::connect(&redis, config.clone()).await.unwrap();
            let settled = until(Duration::from_secs(20), || {
                let seen = seen.lock().unwrap();
                seen.get("retry-once") == Some(&2) && seen.get("always-retry") == Some(&3)
            })
            .await;
            assert!(settled, "{seen:?}");
            assert!(started.elapsed() >= Duration::from_millis(300), "the retry waited out its delay");
            let mut letters = Vec::new();
            for _ in 0..100 {
                letters = dead.list(10).await.unwrap();
                if letters.len() == 3 {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            let mut reasons: Vec<(String, String)> =
                letters.iter().map(|d| (d.label.clone(), d.reason.clone())).collect();
            reasons.sort();
            let expected = [("always-retry", "retries_exhausted"), ("fatal", "failed")];
            assert_eq!(reasons.len(), 3, "{letters:?}");
            for (label, reason) in expected {
                assert!(reasons.contains(&(label.to_string(), reason.to_string())), "{reasons:?}");
            }
            assert!(letters.iter().any(|d| d.reason == "undecodable"), "{letters:?}");
            let fatal = letters.iter().find(|d| d.label == "fatal").unwrap();
            assert!(fatal.error.contains("422"), "the reason is kept: {fatal:?}");
            assert_eq!(seen.lock().unwrap().get("fatal"), Some(&1), "a final failure is not retried");

            // Replay puts a dead letter back as a fresh entry; discard removes the rest.
            assert_eq!(dead.replay(&DeadSelection::Ids(vec![fatal.id.clone()])).await.unwrap(), 1);
            assert!(until(Duration::from_secs(10), || seen.lock().unwrap().get("fatal") == Some(&2)).await);
            tokio::time::sleep(Duration::from_millis(300)).await;
            let count = dead.count().await.unwrap();
            assert_eq!(count, 3, "the replayed entry failed again and came back");
            assert_eq!(dead.discard(&DeadSelection::All).await.unwrap(), 3);
            assert_eq!(dead.count().await.unwrap(), 0);
            running.shutdown(Duration::from_secs(5)).await;
            cleanup(&redis, &config).await;
        })
        .unwrap();
}

fn slow(_: &str, _: u32) -> (Duration, Result<(), TaskError>) {
    (Duration::from_secs(3), Ok(()))
}

/// Starts a consumer on `engine`'s own runtime (its maintenance task too).
async fn consume_on(engine: &Engine, redis: &RedisConfig, config: &StreamConfig, seen: &Seen) -> Running {
    let (engine, redis, config, seen) = (engine.clone(), redis.clone(), config.clone(), seen.clone());
    let handle = engine.handle().clone();
    handle.spawn(async move { consume(&engine, &redis, config, seen, quick).await }).await.unwrap()
}

#[test]
fn a_long_task_keeps_its_entry_and_a_dead_consumers_entries_are_claimed() {
    let Some(url) = redis_url() else { return };
    let redis = RedisConfig::new(&url);
    let config = config("sy:claim");
    let first = engine_allowing_loopback().cpu_threads(1).build().unwrap();
    let second = engine_allowing_loopback().cpu_threads(1).build().unwrap();
    let seen = Seen::default();
    first
        .block_on(async {
            let producer = StreamProducer::<String>::connect(&redis, config.clone()).await.unwrap();
            for i in 0..3 {
                producer.send(format!("long-{i}"), "long").await.unwrap();
            }
            // The first consumer takes all three and works on each for 3 s,
            // three times the claim idle time: its leases are renewed, so the
            // second consumer, reading all along, never gets them.
            let a = consume(&first, &redis, config.clone(), seen.clone(), slow).await;
            assert!(until(Duration::from_secs(5), || total(&seen) == 3).await);
            let b_seen = Seen::default();
            let b = consume_on(&second, &redis, &config, &b_seen).await;
            assert!(until(Duration::from_secs(10), || a.stats().ok == 3).await, "{:?}", a.stats());
            assert_eq!(total(&b_seen), 0, "an entry of a live consumer was claimed: {b_seen:?}");
            assert_eq!(total(&seen), 3, "each long task delivered once: {seen:?}");
            a.shutdown(Duration::from_secs(1)).await;
            b.shutdown(Duration::from_secs(1)).await;

            // A consumer dies holding entries (abandoned, never settled) ...
            for i in 0..3 {
                producer.send(format!("orphan-{i}"), "orphan").await.unwrap();
            }
            let dying = consume(&first, &redis, config.clone(), seen.clone(), slow).await;
            assert!(until(Duration::from_secs(5), || total(&seen) == 6).await, "{seen:?}");
            // ... while another is already reading, blocked far longer than
            // the claim idle time on a stream with nothing new ...
            let c_seen = Seen::default();
            let patient = StreamConfig { block_ms: 10_000, ..config.clone() };
            let c = consume_on(&second, &redis, &patient, &c_seen).await;
            tokio::time::sleep(Duration::from_millis(300)).await;
            dying.shutdown(Duration::ZERO).await;
            let died = Instant::now();
            // ... which still claims them within the claim idle time plus a second.
            let claimed = until(Duration::from_secs(5), || total(&c_seen) == 3).await;
            let took = died.elapsed();
            assert!(claimed, "the dead consumer's entries were never claimed: {c_seen:?}");
            assert!(took <= Duration::from_millis(config.claim_idle_ms + 1_000), "claimed after {took:?}");
            c.shutdown(Duration::from_secs(1)).await;
            cleanup(&redis, &config).await;
        })
        .unwrap();
}

fn hang(_: &str, _: u32) -> (Duration, Result<(), TaskError>) {
    (Duration::from_secs(60), Ok(()))
}

#[test]
fn an_entry_whose_consumers_keep_dying_is_dead_lettered_after_max_deliveries() {
    let Some(url) = redis_url() else { return };
    let redis = RedisConfig::new(&url);
    let config = config("sy:claims"); // max_deliveries 3
    let engine = engine_allowing_loopback().cpu_threads(1).build().unwrap();
    let seen = Seen::default();
    engine
        .block_on(async {
            let producer = StreamProducer::<String>::connect(&redis, config.clone()).await.unwrap();
            producer.send("poison".to_string(), "poison").await.unwrap();
            // Three consumers in turn take it (the first read, then two
            // claims) and die holding it.
            for delivered in 1..=3 {
                let dying = consume(&engine, &redis, config.clone(), seen.clone(), hang).await;
                let took = until(Duration::from_secs(5), || total(&seen) == delivered).await;
                assert!(took, "delivery {delivered} never came: {seen:?}");
                dying.shutdown(Duration::ZERO).await;
            }
            // The fourth claim would be its fourth delivery: a dead letter instead.
            let last = consume(&engine, &redis, config.clone(), seen.clone(), hang).await;
            let dead = DeadLetters::connect(&redis, config.clone()).await.unwrap();
            let deadline = Instant::now() + Duration::from_secs(5);
            let mut letters = dead.list(10).await.unwrap();
            while letters.is_empty() && Instant::now() < deadline {
                tokio::time::sleep(Duration::from_millis(50)).await;
                letters = dead.list(10).await.unwrap();
            }
            assert_eq!(letters.len(), 1, "{letters:?}");
            assert_eq!(letters[0].reason, "claims_exhausted", "{letters:?}");
            assert_eq!(total(&seen), 3, "a fourth delivery ran: {seen:?}");
            last.shutdown(Duration::from_secs(1)).await;
            cleanup(&redis, &config).await;
        })
        .unwrap();
}

#[test]
fn a_redis_restart_loses_nothing_redis_kept() {
    let Some(mut redis) = LocalRedis::start() else { return };
    let config = RedisConfig::new(redis.url());
    let stream = StreamConfig { block_ms: 100, ..self::config("sy:restart") };
    let engine = engine_allowing_loopback().cpu_threads(1).max_in_flight(2).build().unwrap();
    engine
        .block_on(async {
            let producer = StreamProducer::<String>::connect(&config, stream.clone()).await.unwrap();
            for i in 0..20 {
                producer.send(format!("item-{i}"), "x").await.unwrap();
            }
            let seen = Seen::default();
            let running = consume(&engine, &config, stream.clone(), seen.clone(), |_, _| {
                (Duration::from_millis(100), Ok(()))
            })
            .await;
            assert!(until(Duration::from_secs(5), || total(&seen) >= 4).await);
            let restarted = tokio::task::spawn_blocking(move || {
                redis.restart();
                redis
            })
            .await
            .unwrap();
            let all = until(Duration::from_secs(30), || {
                let seen = seen.lock().unwrap();
                (0..20).all(|i| seen.contains_key(&format!("item-{i}")))
            })
            .await;
            assert!(all, "items lost across the restart: {seen:?}");
            let stats = running.shutdown(Duration::from_secs(5)).await.stats;
            assert!(stats.source_errors >= 1, "the restart was seen: {stats:?}");
            drop(restarted);
        })
        .unwrap();
}
