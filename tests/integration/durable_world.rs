//! What the durable service's tests share: a loopback API (a page of the
//! `WINDOW` newest ids, two new per answer) and webhook (which records each
//! delivery with its Idempotency-Key and can be made slow, down or picky),
//! a service running in process, and checks on what arrived.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use http_body_util::BodyExt;
use switchyard::io_reactor::{redis, RedisClient};
use switchyard::Engine;
use switchyard_io_reactor::server::{respond, Handler, ServerThread};
use switchyard_pipeline::idempotency_key;
use switchyard_service::{run_service, Endpoints, RunLimits, ServiceConfig};
use tokio_util::sync::CancellationToken;

/// Items the API lists on its `n`th page: the `WINDOW` newest ids, newest
/// first, two new per page; an item that scrolls out cannot be fetched again.
pub(crate) const WINDOW: u64 = 20;

pub(crate) fn api_ids(n: u64) -> Vec<u64> {
    (2 * n..2 * n + WINDOW).rev().collect()
}

/// The loopback API and webhook, and what they saw.
pub(crate) struct World {
    pub(crate) api: ServerThread,
    pub(crate) hook: ServerThread,
    /// Polls answered.
    pub(crate) polls: Arc<AtomicU64>,
    /// The page the API answered last: one more per poll, unless `frozen`.
    pub(crate) page: Arc<AtomicU64>,
    /// While set, the API answers its last page again: it introduces nothing.
    pub(crate) frozen: Arc<AtomicBool>,
    /// The most polls answered at once.
    pub(crate) most_polling: Arc<AtomicUsize>,
    /// Every delivery the webhook accepted: (item id, Idempotency-Key).
    pub(crate) received: Arc<Mutex<Vec<(String, String)>>>,
    /// The webhook answers 503 to everything while set.
    pub(crate) down: Arc<AtomicBool>,
    /// The webhook answers 422 to this id while set.
    pub(crate) reject: Arc<Mutex<Option<String>>>,
    pub(crate) refused: Arc<AtomicU64>,
    /// How long the webhook takes to accept a delivery (ms).
    pub(crate) hook_delay_ms: Arc<AtomicU64>,
    /// Deliveries the webhook is taking right now.
    pub(crate) hook_busy: Arc<AtomicUsize>,
    /// From this page on (0: never), every page also lists an item without
    /// an id, as an API keeps listing a broken record.
    pub(crate) malformed_at: Arc<AtomicU64>,
}

pub(crate) fn world(poll_delay: Duration) -> World {
    let (polls, polling, most) =
        (Arc::new(AtomicU64::new(0)), Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let (page, frozen) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicBool::new(false)));
    let malformed_at = Arc::new(AtomicU64::new(0));
    let (p, g, m, bad) = (polls.clone(), polling.clone(), most.clone(), malformed_at.clone());
    let (pg, fz) = (page.clone(), frozen.clone());
    let api: Handler = Arc::new(move |_req| {
        let (p, g, m, bad, pg, fz) = (p.clone(), g.clone(), m.clone(), bad.clone(), pg.clone(), fz.clone());
        Box::pin(async move {
            let now = g.fetch_add(1, Ordering::SeqCst) + 1;
            m.fetch_max(now, Ordering::SeqCst);
            tokio::time::sleep(poll_delay).await;
            let n = if fz.load(Ordering::SeqCst) {
                pg.load(Ordering::SeqCst)
            } else {
                pg.fetch_add(1, Ordering::SeqCst) + 1
            };
            p.fetch_add(1, Ordering::SeqCst);
            let mut items: Vec<_> = api_ids(n)
                .into_iter()
                .map(|id| serde_json::json!({"id": format!("o-{id}"), "email": " A@B.C "}))
                .collect();
            let bad_from = bad.load(Ordering::SeqCst);
            if bad_from != 0 && n >= bad_from {
                items.push(serde_json::json!({"email": "no id here"}));
            }
            g.fetch_sub(1, Ordering::SeqCst);
            respond(200, "application/json", serde_json::json!({"data": {"orders": items}}).to_string())
        })
    });
    let received: Arc<Mutex<Vec<(String, String)>>> = Arc::default();
    let reject: Arc<Mutex<Option<String>>> = Arc::default();
    let (down, refused) = (Arc::new(AtomicBool::new(false)), Arc::new(AtomicU64::new(0)));
    let (hook_delay_ms, hook_busy) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicUsize::new(0)));
    let (r, d, j, x) = (received.clone(), down.clone(), reject.clone(), refused.clone());
    let (delay, busy) = (hook_delay_ms.clone(), hook_busy.clone());
    let hook: Handler = Arc::new(move |req| {
        let (r, d, j, x, delay, busy) =
            (r.clone(), d.clone(), j.clone(), x.clone(), delay.clone(), busy.clone());
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
            busy.fetch_add(1, Ordering::SeqCst);
            tokio::time::sleep(Duration::from_millis(delay.load(Ordering::SeqCst))).await;
            busy.fetch_sub(1, Ordering::SeqCst);
            r.lock().unwrap().push((id, key.unwrap_or_default()));
            respond(200, "application/json", r#"{"ok":true}"#)
        })
    });
    let local = SocketAddr::from(([127, 0, 0, 1], 0));
    World {
        api: ServerThread::start(local, "test-api", 64, api).unwrap(),
        hook: ServerThread::start(local, "test-hook", 64, hook).unwrap(),
        polls,
        page,
        frozen,
        most_polling: most,
        received,
        down,
        reject,
        refused,
        hook_delay_ms,
        hook_busy,
        malformed_at,
    }
}

pub(crate) fn config(world: &World, redis: &str, prefix: &str) -> ServiceConfig {
    let text = format!(
        r#"
        [engine]
        max_in_flight = 64
        shutdown_deadline_ms = 5000
        [engine.cpu]
        threads = 1
        [engine.redis]
        url = "{redis}"
        # The API and the webhook run on this machine.
        [engine.http.egress]
        allow = ["127.0.0.1/32"]
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
pub(crate) struct Process {
    pub(crate) stop: CancellationToken,
    pub(crate) endpoints: Endpoints,
    pub(crate) done: tokio::task::JoinHandle<switchyard::RunReport>,
}

pub(crate) fn start(engine: &Engine, config: &ServiceConfig) -> Process {
    let (stop, endpoints) = (CancellationToken::new(), Endpoints::new(None));
    let (engine2, config, s, e) = (engine.clone(), config.clone(), stop.clone(), endpoints.clone());
    let done = engine.handle().spawn(async move {
        run_service(&engine2, &config, &e, s, RunLimits::default()).await.expect("the service runs")
    });
    Process { stop, endpoints, done }
}

impl Process {
    pub(crate) async fn stop(self) -> switchyard::RunReport {
        self.stop.cancel();
        self.done.await.unwrap()
    }

    /// Dedup-state losses the pipeline `i` reported on `/status`.
    pub(crate) fn state_lost(&self, i: usize) -> u64 {
        self.endpoints.status().map_or(0, |s| s.pipelines[i].state_lost)
    }
}

/// Waits until `done` holds (checking every 20 ms), at most `limit`.
pub(crate) async fn until(limit: Duration, mut done: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + limit;
    while !done() {
        if Instant::now() > deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    true
}

pub(crate) async fn stream_len(client: &RedisClient, key: &str) -> u64 {
    client.query(redis::cmd("XLEN").arg(key)).await.unwrap()
}

pub(crate) async fn drop_keys(client: &RedisClient, prefix: &str) {
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
pub(crate) fn arrivals(world: &World) -> BTreeMap<String, u32> {
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

/// Every id the API introduced after the seeding poll, up to its page `last`.
pub(crate) fn introduced(last: u64) -> impl Iterator<Item = String> {
    (2 + WINDOW..2 * last + WINDOW).map(|id| format!("o-{id}"))
}
