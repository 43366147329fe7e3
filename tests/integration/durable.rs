//! Durable pipelines on Redis streams, in process, against a loopback API
//! and webhook: every new item arrives once with a stable Idempotency-Key
//! through a webhook outage longer than the API's page window; a poison
//! item becomes a dead letter while the others go on, and replays; two
//! processes never poll one pipeline at once; lost dedup state is reported
//! and its page delivered again with the same keys, never swallowed.

use std::sync::atomic::Ordering;
use std::time::Duration;

use switchyard::io_reactor::{redis, RedisClient, RedisConfig};
use switchyard::source::{DeadLetters, DeadSelection};
use switchyard::Engine;
use switchyard_service::stream_configs;
use switchyard_tests::{redis_url, unique};

use crate::durable_world::{
    arrivals, config, drop_keys, introduced, start, stream_len, until, world, WINDOW,
};

#[test]
fn every_new_item_arrives_once_with_its_key_through_an_outage_longer_than_the_page() {
    let Some(url) = redis_url() else { return };
    let prefix = unique("sy-durable-outage");
    let world = world(Duration::ZERO);
    let config = config(&world, &url, &prefix);
    let engine = Engine::builder().config(config.resolved_engine().unwrap()).build().unwrap();
    engine
        .block_on(async {
            let client = RedisClient::connect(&RedisConfig::new(&url)).await.unwrap();
            let process = start(&engine, &config);
            assert!(until(Duration::from_secs(10), || world.polls.load(Ordering::SeqCst) >= 5).await);
            // An outage of far more polls than the API's page holds: items
            // scroll off the API, but they are in the outbox already.
            world.down.store(true, Ordering::SeqCst);
            let from = world.polls.load(Ordering::SeqCst);
            assert!(
                until(Duration::from_secs(20), || world.polls.load(Ordering::SeqCst) >= from + WINDOW).await
            );
            world.down.store(false, Ordering::SeqCst);
            assert!(world.refused.load(Ordering::SeqCst) > 0, "the outage never hit a delivery");
            let last = world.polls.load(Ordering::SeqCst);
            let (_, deliveries) = stream_configs(&config);
            let arrived = until(Duration::from_secs(30), || {
                let counts = arrivals(&world);
                introduced(last).all(|id| counts.contains_key(&id))
            })
            .await;
            assert!(arrived, "items lost: {:?}", arrivals(&world));
            let report = process.stop().await;
            let counts = arrivals(&world);
            let repeated: Vec<_> = counts.iter().filter(|(_, n)| **n > 1).collect();
            assert!(repeated.is_empty(), "delivered more than once without a crash: {repeated:?}");
            for id in 2..2 + WINDOW {
                assert!(!counts.contains_key(&format!("o-{id}")), "the seeding poll delivered o-{id}");
            }
            assert_eq!(report.stats.panicked, 0);
            assert_eq!(stream_len(&client, &deliveries.dead_key()).await, 0, "nothing gave up");
            drop_keys(&client, &prefix).await;
        })
        .unwrap();
}

#[test]
fn a_poison_item_is_dead_lettered_while_the_others_arrive_and_replay_delivers_it() {
    let Some(url) = redis_url() else { return };
    let prefix = unique("sy-durable-poison");
    let world = world(Duration::ZERO);
    let config = config(&world, &url, &prefix);
    let engine = Engine::builder().config(config.resolved_engine().unwrap()).build().unwrap();
    engine
        .block_on(async {
            let client = RedisClient::connect(&RedisConfig::new(&url)).await.unwrap();
            // From poll 3 on, every page lists an item without an id; the
            // webhook refuses item o-47 for good.
            world.malformed_at.store(3, Ordering::SeqCst);
            let poison = format!("o-{}", 2 * 3 + WINDOW - 1);
            *world.reject.lock().unwrap() = Some(poison.clone());
            let process = start(&engine, &config);
            assert!(until(Duration::from_secs(10), || world.polls.load(Ordering::SeqCst) >= 8).await);
            let last = world.polls.load(Ordering::SeqCst);
            let arrived = until(Duration::from_secs(20), || {
                let counts = arrivals(&world);
                introduced(last).filter(|id| *id != poison).all(|id| counts.contains_key(&id))
            })
            .await;
            assert!(arrived, "a poison item held back the others: {:?}", arrivals(&world));
            let (_, deliveries) = stream_configs(&config);
            let dead = DeadLetters::connect(&RedisConfig::new(&url), deliveries.clone()).await.unwrap();
            let mut letters = Vec::new();
            for _ in 0..250 {
                letters = dead.list(10).await.unwrap();
                if letters.len() >= 2 {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            // Listed by every poll since the third, kept once.
            let polls_seeing_it = world.polls.load(Ordering::SeqCst).saturating_sub(2);
            assert!(polls_seeing_it >= 6, "{polls_seeing_it}");
            let malformed: Vec<_> = letters.iter().filter(|d| d.reason == "malformed").collect();
            assert_eq!(
                malformed.len(),
                1,
                "the malformed item was dead-lettered more than once: {letters:?}"
            );
            let malformed = malformed[0];
            assert!(
                malformed.error.contains("field id") && malformed.item.contains("no id here"),
                "{malformed:?}"
            );
            let refused = letters.iter().find(|d| d.reason == "failed").expect("the refused item");
            assert!(refused.error.contains("422") && refused.label.ends_with(&poison), "{refused:?}");
            assert!(!arrivals(&world).contains_key(&poison));
            // `/status` counts them on the deliveries stream, with its ages.
            let shown = until(Duration::from_secs(12), || {
                process.endpoints.status().is_some_and(|s| {
                    s.streams.iter().any(|st| {
                        st.stream == deliveries.stream
                            && st.dead_letters == 2
                            && st.oldest_pending_age_s >= 0.0
                            && st.oldest_unread_age_s >= 0.0
                    })
                })
            })
            .await;
            assert!(shown, "/status: {:?}", process.endpoints.status().map(|s| s.streams));

            // The webhook is fixed: replay delivers the item, once.
            *world.reject.lock().unwrap() = None;
            assert_eq!(dead.replay(&DeadSelection::Ids(vec![refused.id.clone()])).await.unwrap(), 1);
            assert!(until(Duration::from_secs(10), || arrivals(&world).get(&poison) == Some(&1)).await);
            process.stop().await;
            drop_keys(&client, &prefix).await;
        })
        .unwrap();
}

#[test]
fn two_processes_never_poll_one_pipeline_at_once() {
    let Some(url) = redis_url() else { return };
    let prefix = unique("sy-durable-two");
    // Each poll takes 100 ms against a 30 ms period: two processes racing
    // for the schedule would overlap at once.
    let world = world(Duration::from_millis(100));
    let config = config(&world, &url, &prefix);
    let first = Engine::builder().config(config.resolved_engine().unwrap()).build().unwrap();
    let second = Engine::builder().config(config.resolved_engine().unwrap()).build().unwrap();
    first
        .block_on(async {
            let client = RedisClient::connect(&RedisConfig::new(&url)).await.unwrap();
            let (a, b) = (start(&first, &config), start(&second, &config));
            assert!(until(Duration::from_secs(20), || world.polls.load(Ordering::SeqCst) >= 20).await);
            assert_eq!(world.most_polling.load(Ordering::SeqCst), 1, "two polls of one pipeline ran at once");
            let (ra, rb) = (a.stop().await, b.stop().await);
            assert!(ra.stats.ok + rb.stats.ok >= 20);
            drop_keys(&client, &prefix).await;
        })
        .unwrap();
}

#[test]
fn lost_dedup_state_is_reported_and_its_page_delivered_again_with_the_same_keys() {
    let Some(url) = redis_url() else { return };
    let prefix = unique("sy-durable-lost");
    let world = world(Duration::ZERO);
    let config = config(&world, &url, &prefix);
    let engine = Engine::builder().config(config.resolved_engine().unwrap()).build().unwrap();
    engine
        .block_on(async {
            let client = RedisClient::connect(&RedisConfig::new(&url)).await.unwrap();
            let process = start(&engine, &config);
            assert!(until(Duration::from_secs(10), || world.polls.load(Ordering::SeqCst) >= 4).await);
            let before = arrivals(&world).len();
            assert!(before > 0);
            // The seen set vanishes (an expiry during a long outage, a flush);
            // its marker does not.
            let _: u64 = client.query(redis::cmd("DEL").arg(format!("{prefix}:seen:orders"))).await.unwrap();
            let status = &process.endpoints;
            assert!(
                until(Duration::from_secs(10), || status
                    .status()
                    .is_some_and(|s| s.pipelines[0].state_lost > 0))
                .await,
                "the loss was not reported"
            );
            // Every item of the page that found the loss goes out again, keyed:
            // what was already delivered arrives a second time with its key.
            let repeated = until(Duration::from_secs(10), || arrivals(&world).values().any(|n| *n > 1)).await;
            assert!(repeated, "the page was swallowed instead of delivered again");
            process.stop().await;
            drop_keys(&client, &prefix).await;
        })
        .unwrap();
}
