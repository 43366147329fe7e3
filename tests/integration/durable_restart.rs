//! The durable service through Redis restarts, in process, against the
//! loopback API and webhook: Redis is SIGKILLed and started again under a
//! running service, never the service itself.
//!
//! With Redis persisting every write (append-only file, fsync always) a
//! restart loses nothing: every item the API introduced arrives, a repeat
//! carries its item's own Idempotency-Key, nothing is reported lost, the
//! service polls on and its streams drain.
//!
//! A Redis that comes back empty has lost the seen set *and* the marker
//! that would tell a lost set from a new pipeline, the outbox and the
//! consumer groups. The service recreates its groups and schedule, and a
//! process that wrote the state before knows it is gone: it reports the loss
//! and delivers the page again, keyed, instead of seeding it in silence, so
//! entries the lost outbox held are delivered while the API still lists them.
//!
//! What cannot be guaranteed: a process that starts after such a loss (every
//! process restarted with Redis) finds no state and no marker, which is
//! what a new pipeline looks like, so it seeds in silence; and an item the
//! lost outbox held after it scrolled off the API is gone either way. Only
//! persistence prevents that.

use std::sync::atomic::Ordering::SeqCst;
use std::time::{Duration, Instant};

use switchyard::io_reactor::{redis, RedisClient, RedisConfig};
use switchyard::source::StreamConfig;
use switchyard::Engine;
use switchyard_service::stream_configs;
use switchyard_tests::unique;

use crate::durable_world::{arrivals, config, introduced, start, stream_len, until, world, World};
use crate::support::LocalRedis;

/// `XPENDING`'s summary: count, smallest and largest id, per-consumer counts.
type PendingSummary = (u64, Option<String>, Option<String>, Option<Vec<(String, String)>>);

/// Kills Redis, leaves it down for `down_ms` and starts it again, keeping
/// its data or not.
async fn restart(mut redis: LocalRedis, down_ms: u64, keep_data: bool) -> LocalRedis {
    tokio::task::spawn_blocking(move || {
        redis.restart_after(Duration::from_millis(down_ms), keep_data);
        redis
    })
    .await
    .unwrap()
}

/// The service polls on after a restart, on its own, within `limit`.
async fn polls_on(world: &World, limit: Duration) {
    let (from, started) = (world.polls.load(SeqCst), Instant::now());
    let polled = until(limit, || world.polls.load(SeqCst) >= from + 10).await;
    assert!(polled, "the service stopped polling after the restart ({} polls)", world.polls.load(SeqCst));
    eprintln!(
        "polling again ({} polls) {:?} after Redis was back",
        world.polls.load(SeqCst) - from,
        started.elapsed()
    );
}

/// Ids the API introduced up to page `last` that never arrived.
fn missing(world: &World, last: u64) -> Vec<String> {
    let counts = arrivals(world);
    introduced(last).filter(|id| !counts.contains_key(id)).collect()
}

/// A stream's entries: (length, pending, delayed).
async fn backlog(client: &RedisClient, c: &StreamConfig) -> Result<(u64, u64, u64), String> {
    let mut pipe = redis::pipe();
    pipe.cmd("XLEN").arg(&c.stream).cmd("XPENDING").arg(&c.stream).arg(&c.group);
    pipe.cmd("ZCARD").arg(c.delayed_key());
    let (length, pending, delayed): (u64, PendingSummary, u64) =
        client.query_pipeline(&pipe, true).await.map_err(|e| e.to_string())?;
    Ok((length, pending.0, delayed))
}

/// Waits until the deliveries are all done (nothing waiting, pending or
/// delayed) and the polls stream holds at most the one poll under way.
async fn drained(
    client: &RedisClient,
    polls: &StreamConfig,
    deliveries: &StreamConfig,
) -> Result<(), String> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (p, d) = (backlog(client, polls).await, backlog(client, deliveries).await);
        match (&p, &d) {
            (Ok((pl, pp, 0)), Ok((0, 0, 0))) if *pl <= 1 && *pp <= 1 => return Ok(()),
            _ if Instant::now() > deadline => return Err(format!("polls {p:?}, deliveries {d:?}")),
            _ => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    }
}

#[test]
fn a_redis_restarted_mid_run_loses_nothing_it_kept_and_the_service_polls_on() {
    let Some(redis) = LocalRedis::start() else { return };
    let url = redis.url();
    let world = world(Duration::ZERO);
    let prefix = unique("sy-restart");
    let config = config(&world, &url, &prefix);
    let (polls, deliveries) = stream_configs(&config);
    let engine = Engine::builder().config(config.resolved_engine().unwrap()).build().unwrap();
    engine
        .block_on(async {
            let process = start(&engine, &config);
            assert!(until(Duration::from_secs(10), || arrivals(&world).len() >= 6).await, "nothing arrived");

            // 1. While it polls and delivers.
            let redis = restart(redis, 300, true).await;
            polls_on(&world, Duration::from_secs(5)).await;

            // 2. With the outbox full: the webhook refuses for a while (the
            // retries wait in the delayed set), then takes 400 ms a delivery,
            // and Redis dies for 2 s with deliveries on the wire: they are
            // accepted while it is down, so their acks fail. (Reads back off
            // to at most 5 s apart after failures: a longer wait to poll again.)
            world.down.store(true, SeqCst);
            let refused = world.refused.load(SeqCst);
            assert!(until(Duration::from_secs(10), || world.refused.load(SeqCst) >= refused + 10).await);
            world.hook_delay_ms.store(400, SeqCst);
            world.down.store(false, SeqCst);
            assert!(until(Duration::from_secs(10), || world.hook_busy.load(SeqCst) >= 2).await);
            let redis = restart(redis, 2_000, true).await;
            world.hook_delay_ms.store(0, SeqCst);
            polls_on(&world, Duration::from_secs(10)).await;

            // The API stops introducing items: each one it did arrives, and
            // the streams drain.
            world.frozen.store(true, SeqCst);
            let last = world.page.load(SeqCst);
            let all = until(Duration::from_secs(15), || missing(&world, last).is_empty()).await;
            assert!(all, "items lost across the restarts: {:?}", missing(&world, last));
            let client = RedisClient::connect(&RedisConfig::new(&url)).await.unwrap();
            drained(&client, &polls, &deliveries).await.expect("entries stuck in the streams");
            assert_eq!(process.state_lost(0), 0, "a persisted state was reported lost");
            // Polls that find nothing new still refresh the seen set's expiry,
            // so a quiet API never makes a live state look lost.
            let pttl = redis::cmd("PTTL").arg(format!("{prefix}:seen:orders")).clone();
            let before: i64 = client.query(&pttl).await.unwrap();
            tokio::time::sleep(Duration::from_secs(1)).await;
            let after: i64 = client.query(&pttl).await.unwrap();
            assert!(
                after > before - 500,
                "quiet polls let the state's expiry run down: {before} then {after} ms"
            );
            let report = process.stop().await;
            assert!(report.stats.source_errors >= 2, "the restarts went unseen: {:?}", report.stats);
            assert_eq!(report.stats.panicked, 0);
            assert_eq!(stream_len(&client, &deliveries.dead_key()).await, 0, "nothing gave up");
            // The deliveries whose ack the restart cut off were claimed from
            // the persisted pending list and went out again, each with its
            // item's own key (arrivals checks every one).
            let repeats = arrivals(&world).values().filter(|n| **n > 1).count();
            eprintln!(
                "{} items, {repeats} repeated, {} polls",
                arrivals(&world).len(),
                world.polls.load(SeqCst)
            );
            assert!(repeats >= 1, "no delivery whose ack was cut off went out again");
            drop(redis);
        })
        .unwrap();
}

#[test]
fn a_redis_that_comes_back_empty_is_reported_and_the_page_delivered_again() {
    let Some(redis) = LocalRedis::start() else { return };
    let url = redis.url();
    let world = world(Duration::ZERO);
    let config = config(&world, &url, &unique("sy-restart-empty"));
    let (polls, deliveries) = stream_configs(&config);
    let engine = Engine::builder().config(config.resolved_engine().unwrap()).build().unwrap();
    engine
        .block_on(async {
            let process = start(&engine, &config);
            assert!(until(Duration::from_secs(10), || arrivals(&world).len() >= 6).await, "nothing arrived");
            // The outbox holds entries when the data goes: the webhook refuses.
            world.down.store(true, SeqCst);
            let refused = world.refused.load(SeqCst);
            assert!(until(Duration::from_secs(10), || world.refused.load(SeqCst) >= refused + 4).await);
            let redis = restart(redis, 300, false).await;
            world.down.store(false, SeqCst);

            // The service finds its feet (groups and schedule made again) at
            // once, not when the schedule's own refresh comes round (10 s)...
            polls_on(&world, Duration::from_secs(5)).await;
            // ...says its dedup state is gone...
            let reported = until(Duration::from_secs(10), || process.state_lost(0) > 0).await;
            assert!(reported, "a Redis that lost everything went unreported");
            // ...and swallows nothing the API still lists: what only the lost
            // outbox held arrives, and the page goes out again, keyed.
            world.frozen.store(true, SeqCst);
            let last = world.page.load(SeqCst);
            let all = until(Duration::from_secs(15), || missing(&world, last).is_empty()).await;
            assert!(all, "items swallowed with the lost state: {:?}", missing(&world, last));
            assert!(arrivals(&world).values().any(|n| *n > 1), "the page was not delivered again");
            let client = RedisClient::connect(&RedisConfig::new(&url)).await.unwrap();
            drained(&client, &polls, &deliveries).await.expect("entries stuck in the streams");
            let report = process.stop().await;
            assert_eq!(report.stats.panicked, 0);
            drop(redis);
        })
        .unwrap();
}
