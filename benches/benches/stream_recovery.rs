//! Recovery of a dead consumer's entries, against the claim idle time.
//!
//! Figure (issue text): "Recovery time of a dead consumer's entries against
//! the claim idle time." The bound the stream source states: a dead
//! consumer's entries are taken over within `claim_idle_ms` plus a second.
//!
//! For each claim idle time, [`REPEATS`] times: a fresh stream gets
//! [`ENTRIES`] entries; a consumer in a child process (this executable,
//! re-run) takes them all and holds them in tasks that never end, renewing
//! their leases; a second consumer, in this process, is already reading the
//! same group with the default block time. The child is SIGKILLed 0, 1/9
//! or 2/9 of the idle time after it took the entries (spread over its
//! renewal period, a third of the idle time), and the bench prints how long
//! after the kill the second consumer received the first and the last entry.
//!
//! Needs Redis (`SWITCHYARD_REDIS_URL`, default `redis://127.0.0.1:6379/`);
//! nothing else should use it while this runs.
//!
//! Run: `cargo bench -p switchyard-benches --bench stream_recovery`
//! (`-- 1000,3000` for chosen claim idle times in milliseconds).

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use switchyard::io_reactor::{redis, RedisClient, RedisConfig};
use switchyard::source::{StreamConfig, StreamProducer, StreamSource};
use switchyard::{Engine, TaskContext, TaskError};
use switchyard_benches::machine;

/// Entries the dying consumer holds.
const ENTRIES: usize = 20;
/// Kills per claim idle time.
const REPEATS: u32 = 3;
/// Claim idle times measured by default, milliseconds (the last is the default).
const DEFAULT_IDLES_MS: [u64; 4] = [1_000, 3_000, 10_000, 15_000];
/// Selects the holding role in a re-executed process; carries the stream's JSON.
const HOLD_ROLE: &str = "SWITCHYARD_BENCH_RECOVERY_HOLD";
/// Longer than any measured recovery may take.
const GIVE_UP: Duration = Duration::from_secs(60);

fn main() {
    let url = std::env::var("SWITCHYARD_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379/".into());
    let redis = RedisConfig::new(url);
    if let Ok(stream) = std::env::var(HOLD_ROLE) {
        let stream: StreamConfig = serde_json::from_str(&stream).expect("the parent's stream config");
        return hold(&redis, stream);
    }
    let idles: Vec<u64> = std::env::args()
        .skip(1)
        .find(|a| !a.starts_with('-'))
        .map(|list| list.split(',').map(|v| v.parse().expect("claim idle times in ms")).collect())
        .unwrap_or_else(|| DEFAULT_IDLES_MS.to_vec());
    println!("machine: {}", machine());
    println!("{ENTRIES} entries held by a consumer that is SIGKILLed; another consumer already reading");
    let engine = Engine::builder().cpu_threads(1).build().expect("engine");
    for idle_ms in idles {
        let mut lasts = Vec::new();
        for repeat in 0..REPEATS {
            // Spread the kill over the renewal period: 0, 1/3, 2/3 of it.
            let phase = Duration::from_millis(idle_ms / 3 * u64::from(repeat) / u64::from(REPEATS));
            let (first, last) = engine.block_on(measure(&engine, &redis, idle_ms, phase)).expect("runtime");
            println!(
                "claim_idle_ms={idle_ms} kill_after_taking_ms={} first_s={:.3} last_s={:.3} bound_s={:.3}",
                phase.as_millis(),
                first.as_secs_f64(),
                last.as_secs_f64(),
                (idle_ms + 1_000) as f64 / 1e3
            );
            lasts.push(last.as_secs_f64());
        }
        lasts.sort_by(f64::total_cmp);
        println!(
            "claim_idle_ms={idle_ms} recovery_last_median_s={:.3} min_s={:.3} max_s={:.3}",
            lasts[lasts.len() / 2],
            lasts[0],
            lasts[lasts.len() - 1]
        );
    }
}

/// One kill: returns when after it the first and the last entry reached the
/// surviving consumer.
async fn measure(
    engine: &Engine,
    redis: &RedisConfig,
    idle_ms: u64,
    phase: Duration,
) -> (Duration, Duration) {
    let name = format!("switchyard:bench:recovery:{}:{idle_ms}:{}", std::process::id(), phase.as_millis());
    let stream = StreamConfig { claim_idle_ms: idle_ms, ..StreamConfig::new(name, "recovery") };
    let producer = StreamProducer::<u32>::connect(redis, stream.clone()).await.expect("producer");
    // The group is created (from the first entry) before anything is added.
    let survivor_source = StreamSource::<u32>::connect(redis, stream.clone()).await.expect("consumer");
    let mut holder = Command::new(std::env::current_exe().expect("this bench"))
        .env(HOLD_ROLE, serde_json::to_string(&stream).expect("json"))
        .stdout(Stdio::piped())
        .spawn()
        .expect("the holding consumer starts");
    let mut lines = BufReader::new(holder.stdout.take().expect("piped")).lines();
    assert_eq!(lines.next().and_then(Result::ok).as_deref(), Some("ready"));
    for i in 0..ENTRIES as u32 {
        producer.send(i, "held").await.expect("send");
    }
    assert_eq!(lines.next().and_then(Result::ok).as_deref(), Some("holding"), "the holder took every entry");
    // The survivor joins only now, so every entry went to the holder.
    let arrivals: Arc<Mutex<Vec<Instant>>> = Arc::default();
    tokio::spawn(survivor_source.maintenance());
    let seen = arrivals.clone();
    let survivor = engine
        .start(survivor_source, move |_cx: TaskContext, _item: u32| {
            seen.lock().expect("arrivals").push(Instant::now());
            async { Ok::<_, TaskError>(()) }
        })
        .await
        .expect("survivor starts");
    tokio::time::sleep(phase).await;
    holder.kill().expect("SIGKILL");
    let killed = Instant::now();
    let _ = holder.wait();
    while arrivals.lock().expect("arrivals").len() < ENTRIES && killed.elapsed() < GIVE_UP {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let at = arrivals.lock().expect("arrivals").clone();
    assert_eq!(at.len(), ENTRIES, "every held entry was recovered within {GIVE_UP:?}");
    survivor.shutdown(Duration::from_secs(1)).await;
    let client = RedisClient::connect(redis).await.expect("redis");
    let keys = [stream.stream.clone(), stream.delayed_key(), stream.dead_key()];
    let _: u64 = client.query(redis::cmd("DEL").arg(&keys[..])).await.expect("cleanup");
    (at[0] - killed, at[at.len() - 1] - killed)
}

/// The dying consumer: takes every entry into a task that never ends.
fn hold(redis: &RedisConfig, stream: StreamConfig) {
    let engine = Engine::builder().cpu_threads(1).build().expect("engine");
    engine
        .block_on(async {
            let source = StreamSource::<u32>::connect(redis, stream).await.expect("consumer");
            tokio::spawn(source.maintenance());
            let started = Arc::new(Mutex::new(0usize));
            let counter = started.clone();
            let _running = engine
                .start(source, move |_cx: TaskContext, _item: u32| {
                    let mut n = counter.lock().expect("count");
                    *n += 1;
                    if *n == ENTRIES {
                        println!("holding");
                    }
                    async { std::future::pending::<Result<(), TaskError>>().await }
                })
                .await
                .expect("holder starts");
            println!("ready");
            std::future::pending::<()>().await
        })
        .expect("runtime");
}
