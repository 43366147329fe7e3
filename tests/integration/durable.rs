//! Durable pipelines on Redis streams, in process, against a loopback API
//! and webhook: every new item arrives once with a stable Idempotency-Key
//! through a webhook outage longer than the API's page window; a poison
//! item becomes a dead letter while the others go on, and replays; two
//! processes never poll one pipeline at once; lost dedup state is reported
//! and its page delivered again with the same keys, never swallowed.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use http_body_util::BodyExt;
use switchyard::io_reactor::{redis, RedisClient, RedisConfig};
use switchyard::source::{DeadLetters, DeadSelection};
use switchyard::Engine;
use switchyard_io_reactor::server::{respond, Handler, ServerThread};
use switchyard_pipeline::idempotency_key;
use switchyard_service::{run_service, stream_configs, Endpoints, RunLimits, ServiceConfig};
use switchyard_tests::{redis_url, unique};
use tokio_util::sync::CancellationToken;

/// Items the API lists on its `n`th answer: the `WINDOW` newest ids, newest
/// first, two new per poll; an item that scrolls out cannot be fetched again.
const WINDOW: u64 = 20;

fn api_ids(n: u64) -> Vec<u64> {
    (2 * n..2 * n + WINDOW).rev().collect()
}

/// The loopback API and webhook, and what they saw.
struct World {
    api: ServerThread,
    hook: ServerThread,
    polls: Arc<AtomicU64>,
    /// The most polls answered at once.
    most_polling: Arc<AtomicUsize>,
    /// Every delivery the webhook accepted: (item id, Idempotency-Key).
    received: Arc<Mutex<Vec<(String, String)>>>,
    /// The webhook answers 503 to everything while set.
    down: Arc<AtomicBool>,
    /// The webhook answers 422 to this id while set.
    reject: Arc<Mutex<Option<String>>>,
    refused: Arc<AtomicU64>,
    /// An item without an id goes into this poll's answer.
    malformed_at: Arc<AtomicU64>,
}

fn world(poll_delay: Duration) -> World {
    let (polls, polling, most) =
        (Arc::new(AtomicU64::new(0)), Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let malformed_at = Arc::new(AtomicU64::new(0));
    let (p, g, m, bad) = (polls.clone(), polling.clone(), most.clone(), malformed_at.clone());
    let api: Handler = Arc::new(move |_req| {
        let (p, g, m, bad) = (p.clone(), g.clone(), m.clone(), bad.clone());
        Box::pin(async move {
            let now = g.fetch_add(1, Ordering::SeqCst) + 1;
            m.fetch_max(now, Ordering::SeqCst);
            tokio::time::sleep(poll_delay).await;
            let n = p.fetch_add(1, Ordering::SeqCst) + 1;
            let mut items: Vec<_> = api_ids(n)
                .into_iter()
                .map(|id| serde_json::json!({"id": format!("o-{id}"), "email": " A@B.C "}))
                .collect();
            if bad.load(Ordering::SeqCst) == n {
                items.push(serde_json::json!({"email": "no id here"}));
            }
            g.fetch_sub(1, Ordering::SeqCst);
            respond(200, "application/json", serde_json::json!({"data": {"orders": items}}).to_string())
        })
    });
    let received: Arc<Mutex<Vec<(String, String)>>> = Arc::default();
    let reject: Arc<Mutex<Option<String>>> = Arc::default();
    let (down, refused) = (Arc::new(AtomicBool::new(false)), Arc::new(AtomicU64::new(0)));
    let (r, d, j, x) = (received.clone(), down.clone(), reject.clone(), refused.clone());
    let hook: Handler = Arc::new(move |req| {
        let (r, d, j, x) = (r.clone(), d.clone(), j.clone(), x.clone());
        Box::pin(async move {
            let key = req.headers().get("idempotency-key").map(|v| v.to_str().unwrap().to_string());
            let body = req.into_body().collect().await.unwrap().to_bytes();
            let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
            let id = v["id"].as_str().unwrap().to_string();
            if d.load(Ordering::SeqCst) {
                x.fetch_add(1, Ordering::SeqCst);
                return respond(503, "text/plain", "down");
            }
            if j.lock().unwrap().as_deref() == Some(id.as_str()) {
                return respond(422, "text/plain", "cannot take this one");
            }
            r.lock().unwrap().push((id, key.unwrap_or_default()));
            respond(200, "application/json", r#"{"ok":true}"#)
        })
    });
    let local = SocketAddr::from(([127, 0, 0, 1], 0));
    World {
        api: ServerThread::start(local, "test-api", 64, api).unwrap(),
        hook: ServerThread::start(local, "test-hook", 64, hook).unwrap(),
        polls,
        most_polling: most,
        received,
        down,
        reject,
        refused,
        malformed_at,
    }
}

fn config(world: &World, redis: &str, prefix: &str) -> ServiceConfig {
    let text = format!(
        r#"
        [engine]
        max_in_flight = 64
        shutdown_deadline_ms = 5000
        [engine.cpu]
        threads = 1
        [engine.redis]
        url = "{redis}"
        [durable]
        key_prefix = "{prefix}"
        claim_idle_ms = 1000
        scheduler_tick_ms = 20
        [[pipelines]]
        name = "orders"
        [pipelines.source]
        url = "http://{api}/orders"
        poll_interval_ms = 30
        items_pointer = "/data/orders"
        [[pipelines.steps]]
        step = "trim"
        field = "email"
        [[pipelines.steps]]
        step = "fingerprint"
        rounds = 5
        [pipelines.action]
        url = "http://{hook}/hook"
        max_attempts = 20
        initial_backoff_ms = 20
        max_backoff_ms = 100
        "#,
        api = world.api.addr(),
        hook = world.hook.addr(),
    );
    let config = ServiceConfig::parse(&text).unwrap();
    config.validate().unwrap();
    config
}

/// A running durable service and its stop switch.
struct Process {
    stop: CancellationToken,
    endpoints: Endpoints,
    done: tokio::task::JoinHandle<switchyard::RunReport>,
}

fn start(engine: &Engine, config: &ServiceConfig) -> Process {
    let (stop, endpoints) = (CancellationToken::new(), Endpoints::new(None));
    let (engine2, config, s, e) = (engine.clone(), config.clone(), stop.clone(), endpoints.clone());
    let done = engine.handle().spawn(async move {
        run_service(&engine2, &config, &e, s, RunLimits::default()).await.expect("the service runs")
    });
    Process { stop, endpoints, done }
}

impl Process {
    async fn stop(self) -> switchyard::RunReport {
        self.stop.cancel();
        self.done.await.unwrap()
    }
}

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

async fn stream_len(client: &RedisClient, key: &str) -> u64 {
    client.query(redis::cmd("XLEN").arg(key)).await.unwrap()
}

async fn drop_keys(client: &RedisClient, prefix: &str) {
    let mut cursor = 0u64;
    loop {
        let (next, keys): (u64, Vec<String>) = client
            .query(
                redis::cmd("SCAN").arg(cursor).arg("MATCH").arg(format!("{prefix}*")).arg("COUNT").arg(1000),
            )
            .await
            .unwrap();
        if !keys.is_empty() {
            let _: u64 = client.query(redis::cmd("DEL").arg(&keys)).await.unwrap();
        }
        if next == 0 {
            return;
        }
        cursor = next;
    }
}

/// How many times each id arrived, and whether every arrival of an id
/// carried that id's own key.
fn arrivals(world: &World) -> BTreeMap<String, u32> {
    let mut counts = BTreeMap::new();
    for (id, key) in world.received.lock().unwrap().iter() {
        assert_eq!(
            key.as_str(),
            idempotency_key("orders", id).to_str().unwrap(),
            "{id} arrived with a wrong key"
        );
        *counts.entry(id.clone()).or_default() += 1;
    }
    counts
}

/// Every id the API introduced after the seeding poll, up to its `last` answer.
fn introduced(last: u64) -> impl Iterator<Item = String> {
    (2 + WINDOW..2 * last + WINDOW).map(|id| format!("o-{id}"))
}

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
            // Poll 3 holds an item without an id; the webhook refuses item o-47 for good.
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
            let malformed = letters.iter().find(|d| d.reason == "malformed").expect("the malformed item");
            assert!(
                malformed.error.contains("field id") && malformed.item.contains("no id here"),
                "{malformed:?}"
            );
            let refused = letters.iter().find(|d| d.reason == "failed").expect("the refused item");
            assert!(refused.error.contains("422") && refused.label.ends_with(&poison), "{refused:?}");
            assert!(!arrivals(&world).contains_key(&poison));

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
