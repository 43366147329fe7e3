//! A configured pipeline against a loopback JSON API and a loopback webhook:
//! every new item is delivered exactly once across polls, a webhook outage
//! delays items without losing any, and every poll is recorded.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use http_body_util::BodyExt;
use switchyard::io_reactor::mysql_async::prelude::Queryable;
use switchyard::io_reactor::{MysqlConfig, MysqlPool, RedisConfig};
use switchyard::Engine;
use switchyard_io_reactor::server::{respond, Handler, ServerThread};
use switchyard_pipeline::RateLimitConfig;
use switchyard_service::{run_service, Endpoints, RunLimits, ServiceConfig, SERVICE_RUNS_TABLE};
use switchyard_tests::{mysql_url, redis_url, unique};
use tokio_util::sync::CancellationToken;

/// Items the API lists on its `n`th answer: the 50 newest ids, newest
/// first, two new per poll (a window wider than the outage's growth, as a
/// real API's page is: items that scroll out of a page cannot be fetched).
const WINDOW: u64 = 50;

fn api_items(n: u64) -> Vec<u64> {
    (2 * n..2 * n + WINDOW).rev().collect()
}

struct Loopback {
    api: ServerThread,
    hook: ServerThread,
    polls: Arc<AtomicU64>,
    received: Arc<Mutex<Vec<String>>>,
    failing: Arc<AtomicBool>,
    refused: Arc<AtomicU64>,
}

fn loopback() -> Loopback {
    let polls = Arc::new(AtomicU64::new(0));
    let p = polls.clone();
    let api: Handler = Arc::new(move |_req| {
        let n = p.fetch_add(1, Ordering::SeqCst) + 1;
        let items: Vec<_> = api_items(n)
            .into_iter()
            .map(|id| serde_json::json!({"id": format!("o-{id}"), "email": format!("  User{id}@Example.COM ")}))
            .collect();
        let body = serde_json::json!({"data": {"orders": items}}).to_string();
        Box::pin(async move { respond(200, "application/json", body) })
    });
    let (received, failing, refused) =
        (Arc::new(Mutex::new(Vec::new())), Arc::new(AtomicBool::new(false)), Arc::new(AtomicU64::new(0)));
    let (r, f, x) = (received.clone(), failing.clone(), refused.clone());
    let hook: Handler = Arc::new(move |req| {
        let (r, f, x) = (r.clone(), f.clone(), x.clone());
        Box::pin(async move {
            assert_eq!(req.headers()["authorization"], "Bearer hook-token");
            let body = req.into_body().collect().await.unwrap().to_bytes();
            if f.load(Ordering::SeqCst) {
                x.fetch_add(1, Ordering::SeqCst);
                return respond(503, "text/plain", "down for maintenance");
            }
            let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
            assert_eq!(
                v["item"]["email"].as_str().unwrap(),
                v["item"]["email"].as_str().unwrap().trim().to_lowercase()
            );
            assert_eq!(v["fingerprint"].as_str().unwrap().len(), 64);
            r.lock().unwrap().push(v["id"].as_str().unwrap().to_string());
            respond(200, "application/json", r#"{"ok":true}"#)
        })
    });
    let local = SocketAddr::from(([127, 0, 0, 1], 0));
    Loopback {
        api: ServerThread::start(local, "test-api", 64, api).unwrap(),
        hook: ServerThread::start(local, "test-hook", 64, hook).unwrap(),
        polls,
        received,
        failing,
        refused,
    }
}

fn config(lb: &Loopback, name: &str) -> ServiceConfig {
    std::env::set_var("SY_IT_HOOK_TOKEN", "hook-token");
    let text = format!(
        r#"
        state = "ephemeral"
        # The API and the webhook run on this machine.
        [engine.http.egress]
        allow = ["127.0.0.1/32"]
        # An ephemeral pipeline keeps an item only while the API lists it:
        # the outage, and the webhook breaker's open time after it, must
        # fit in the API's window of polls.
        [engine.http.breaker]
        open_ms = 100
        [[pipelines]]
        name = "{name}"
        [pipelines.source]
        url = "http://{api}/orders?page={{seq}}"
        poll_interval_ms = 50
        items_pointer = "/data/orders"
        [[pipelines.steps]]
        step = "trim"
        field = "email"
        [[pipelines.steps]]
        step = "lower_case"
        field = "email"
        [[pipelines.steps]]
        step = "fingerprint"
        rounds = 10
        [pipelines.action]
        url = "http://{hook}/hook"
        headers = {{ Authorization = "Bearer ${{SY_IT_HOOK_TOKEN}}" }}
        max_attempts = 2
        initial_backoff_ms = 5
        max_backoff_ms = 20
        "#,
        api = lb.api.addr(),
        hook = lb.hook.addr(),
    );
    let config = ServiceConfig::parse(&text).unwrap();
    config.validate().unwrap();
    config
}

/// Runs the pipeline: normal polls, an outage, recovery; returns the engine's
/// status counts for the pipeline after stopping.
fn exercise(engine: &Engine, config: &ServiceConfig, lb: &Loopback) -> (u64, u64) {
    let endpoints = Endpoints::new(None);
    let stop = CancellationToken::new();
    engine
        .block_on(async {
            let service = run_service(engine, config, &endpoints, stop.clone(), RunLimits::default());
            let script = async {
                let wait_polls = |n: u64| async move {
                    let start = lb.polls.load(Ordering::SeqCst);
                    let deadline = Instant::now() + Duration::from_secs(20);
                    while lb.polls.load(Ordering::SeqCst) < start + n {
                        assert!(Instant::now() < deadline, "polling stalled");
                        tokio::time::sleep(Duration::from_millis(10)).await;
                    }
                };
                wait_polls(5).await;
                lb.failing.store(true, Ordering::SeqCst);
                wait_polls(6).await;
                lb.failing.store(false, Ordering::SeqCst);
                wait_polls(6).await;
                // The outage may have opened the webhook's circuit breaker:
                // it lasts until a probe finds the webhook well again.
                let deadline = Instant::now() + Duration::from_secs(20);
                while engine.http_hosts().iter().any(|h| h.breaker != "closed") {
                    assert!(Instant::now() < deadline, "the breaker never closed after the outage");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                wait_polls(3).await;
                stop.cancel();
            };
            let (report, ()) = tokio::join!(service, script);
            report.unwrap();
            let status = endpoints.status().unwrap();
            // Both hosts the pipeline talks to are listed, with their gates.
            for server in [&lb.api, &lb.hook] {
                let key = format!("http://{}", server.addr());
                let host = status.hosts.iter().find(|h| h.host == key);
                let host = host.unwrap_or_else(|| panic!("{key} not in /status: {:?}", status.hosts));
                assert_eq!((host.breaker, host.concurrency_cap), ("closed", 512), "{host:?}");
            }
            let p = &status.pipelines[0];
            (p.polls_ok, p.polls_failed)
        })
        .unwrap()
}

fn check_deliveries(lb: &Loopback) {
    let received = lb.received.lock().unwrap().clone();
    let mut counts: HashMap<&str, u32> = HashMap::new();
    for id in &received {
        *counts.entry(id.as_str()).or_default() += 1;
    }
    let duplicates: Vec<_> = counts.iter().filter(|(_, n)| **n > 1).collect();
    assert!(duplicates.is_empty(), "delivered more than once: {duplicates:?}");
    assert!(lb.refused.load(Ordering::SeqCst) > 0, "the outage never hit a delivery");
    // Poll 1 seeds (its window); every id a later poll introduced, up to the
    // last poll that certainly finished, arrives despite the outage.
    let last_complete = lb.polls.load(Ordering::SeqCst) - 2;
    for id in 2 + WINDOW..2 * last_complete + WINDOW {
        assert!(counts.contains_key(format!("o-{id}").as_str()), "o-{id} was lost; got {received:?}");
    }
    for id in 2..2 + WINDOW {
        assert!(!counts.contains_key(format!("o-{id}").as_str()), "the seeding poll must not deliver o-{id}");
    }
}

#[test]
fn a_pipeline_with_embedded_stores_delivers_each_new_item_once_through_an_outage() {
    let lb = loopback();
    let config = config(&lb, "orders-embedded");
    let engine = Engine::builder().config(config.resolved_engine().unwrap()).cpu_threads(1).build().unwrap();
    let (ok, failed) = exercise(&engine, &config, &lb);
    check_deliveries(&lb);
    assert!(ok >= 10 && failed >= 1, "ok {ok}, failed {failed}");
}

#[test]
fn a_pipeline_with_redis_and_mysql_records_every_poll() {
    let (Some(mysql), Some(redis)) = (mysql_url(), redis_url()) else { return };
    let lb = loopback();
    let name = unique("orders-real").replace('_', "-");
    let config = config(&lb, &name);
    let engine = Engine::builder()
        .config(config.resolved_engine().unwrap())
        .cpu_threads(1)
        .mysql(MysqlConfig::new(&mysql))
        .redis(RedisConfig::new(&redis))
        .build()
        .unwrap();
    let (ok, failed) = exercise(&engine, &config, &lb);
    check_deliveries(&lb);
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let pool = MysqlPool::new(&MysqlConfig::new(&mysql)).unwrap();
    let query = format!("SELECT status, COUNT(*) FROM {SERVICE_RUNS_TABLE} WHERE zap = '{name}' GROUP BY status ORDER BY status");
    let rows: Vec<(String, u64)> =
        runtime.block_on(pool.with_conn(move |c| Box::pin(c.query(query)))).unwrap();
    assert_eq!(
        rows,
        vec![("action_failed".to_string(), failed), ("ok".to_string(), ok)],
        "every poll recorded"
    );
    let cleanup = format!("switchyard:seen:{name}");
    let client =
        runtime.block_on(switchyard::io_reactor::RedisClient::connect(&RedisConfig::new(&redis))).unwrap();
    let _: i64 =
        runtime.block_on(client.query(switchyard::io_reactor::redis::cmd("DEL").arg(cleanup))).unwrap();
}

#[test]
fn a_pipelines_own_rate_limit_paces_all_its_requests() {
    const PER_SECOND: f64 = 5.0;
    let lb = loopback();
    let mut config = config(&lb, "paced");
    // Polls would go every 10 ms; the pipeline's limit allows 5 requests a
    // second, polls and deliveries together.
    config.pipelines[0].source.poll_interval_ms = 10;
    config.pipelines[0].rate_limit = Some(RateLimitConfig { per_second: PER_SECOND, burst: 1 });
    config.validate().unwrap();
    let engine = Engine::builder().config(config.resolved_engine().unwrap()).cpu_threads(1).build().unwrap();
    let endpoints = Endpoints::new(None);
    let stop = CancellationToken::new();
    let window = Duration::from_secs(3);
    engine
        .block_on(async {
            let service = run_service(&engine, &config, &endpoints, stop.clone(), RunLimits::default());
            let stopper = async {
                tokio::time::sleep(window).await;
                stop.cancel();
            };
            let (report, ()) = tokio::join!(service, stopper);
            report.unwrap();
        })
        .unwrap();
    let requests = lb.polls.load(Ordering::SeqCst) as f64 + lb.received.lock().unwrap().len() as f64;
    let allowed = PER_SECOND * window.as_secs_f64() + 1.0;
    assert!(requests <= allowed, "{requests} requests in {window:?}, the limit allows {allowed}");
    assert!(requests >= allowed * 0.7, "{requests} requests: the pipeline was slower than its limit");
}
