//! What the durable service costs its Redis: commands and Redis CPU per
//! 1,000 tasks (a task: one poll, or one delivery), and what an idle
//! process costs per second. `docs/scaling.md` derives from these how far
//! one Redis carries a fleet.
//!
//! Each load point runs `processes` durable services in this process (each
//! with its own engine and Redis connections, as separate `switchyard run`
//! processes would have) on one fresh key prefix, against a loopback API
//! (each pipeline's page holds 20 items, 2 of them new on every answer) and
//! a webhook that accepts everything. After a warm-up, the Redis server's
//! own counters (`INFO commandstats`, `INFO cpu`) are read at the start and
//! the end of the window, beside the polls the API answered and the
//! deliveries the webhook accepted in it.
//!
//! The `idle` point has pipelines that poll once an hour: what remains is
//! each process's background (reads that wait, claim scans, lease renewals,
//! scheduler ticks, metric samples).
//!
//! Needs Redis (`SWITCHYARD_REDIS_URL`, default `redis://127.0.0.1:6379/`);
//! nothing else should use it while this runs.
//!
//! Run: `cargo bench -p switchyard-benches --bench durable_redis_cost`

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use http_body_util::BodyExt;
use switchyard::io_reactor::server::{respond, Handler, ServerThread};
use switchyard::io_reactor::{redis, RedisClient, RedisConfig, RedisServerCounters};
use switchyard::Engine;
use switchyard_benches::machine;
use switchyard_service::{run_service, Endpoints, RunLimits, ServiceConfig};
use tokio_util::sync::CancellationToken;

/// Items on a page; 2 are new on each answer.
const PAGE: u64 = 20;
const WARM_UP: Duration = Duration::from_secs(5);
const WINDOW: Duration = Duration::from_secs(20);

/// One measured configuration.
struct Point {
    name: &'static str,
    pipelines: usize,
    poll_interval_ms: u64,
    processes: usize,
}

const POINTS: [Point; 4] = [
    Point { name: "idle", pipelines: 10, poll_interval_ms: 3_600_000, processes: 3 },
    Point { name: "light", pipelines: 20, poll_interval_ms: 200, processes: 1 },
    Point { name: "busy", pipelines: 100, poll_interval_ms: 200, processes: 1 },
    Point { name: "busy-3-processes", pipelines: 100, poll_interval_ms: 200, processes: 3 },
];

/// The loopback API and webhook, and what they served.
struct World {
    api: ServerThread,
    hook: ServerThread,
    polls: Arc<AtomicU64>,
    deliveries: Arc<AtomicU64>,
}

fn world() -> World {
    let answers: Arc<Mutex<HashMap<String, u64>>> = Arc::default();
    let (polls, deliveries) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let (a, p) = (answers.clone(), polls.clone());
    let api: Handler = Arc::new(move |req| {
        let pipeline = req.uri().path().trim_start_matches("/orders/").to_string();
        p.fetch_add(1, Ordering::Relaxed);
        let n = {
            let mut answers = a.lock().expect("answers");
            let n = answers.entry(pipeline.clone()).or_default();
            *n += 1;
            *n
        };
        let items: Vec<_> = (2 * n..2 * n + PAGE)
            .rev()
            .map(|e| format!(r#"{{"id":"{pipeline}-{e}","email":" X@Y.Z "}}"#))
            .collect();
        let body = format!(r#"{{"items":[{}]}}"#, items.join(","));
        Box::pin(async move { respond(200, "application/json", body) })
    });
    let d = deliveries.clone();
    let hook: Handler = Arc::new(move |req| {
        let d = d.clone();
        Box::pin(async move {
            let _ = req.into_body().collect().await;
            d.fetch_add(1, Ordering::Relaxed);
            respond(200, "application/json", r#"{"ok":true}"#)
        })
    });
    let local = SocketAddr::from(([127, 0, 0, 1], 0));
    World {
        api: ServerThread::start(local, "bench-api", 256, api).expect("api"),
        hook: ServerThread::start(local, "bench-hook", 256, hook).expect("hook"),
        polls,
        deliveries,
    }
}

fn config(world: &World, redis: &str, prefix: &str, point: &Point) -> ServiceConfig {
    let mut text = format!(
        "[engine]\nmax_in_flight = 512\n[engine.cpu]\nthreads = 1\n[engine.redis]\nurl = \"{redis}\"\n\
         [engine.http.egress]\nallow = [\"127.0.0.1/32\"]\n[durable]\nkey_prefix = \"{prefix}\"\n"
    );
    for i in 0..point.pipelines {
        text.push_str(&format!(
            "[[pipelines]]\nname = \"p{i}\"\n[pipelines.source]\nurl = \"http://{api}/orders/p{i}\"\n\
             poll_interval_ms = {interval}\nitems_pointer = \"/items\"\n\
             [[pipelines.steps]]\nstep = \"trim\"\nfield = \"email\"\n\
             [pipelines.action]\nurl = \"http://{hook}/hook/p{i}\"\n",
            api = world.api.addr(),
            hook = world.hook.addr(),
            interval = point.poll_interval_ms,
        ));
    }
    let config = ServiceConfig::parse(&text).expect("config parses");
    config.validate().expect("config is valid");
    config
}

fn main() {
    let url = std::env::var("SWITCHYARD_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379/".into());
    let only: Option<String> = std::env::args().skip(1).find(|a| !a.starts_with('-'));
    println!("machine: {}", machine());
    println!(
        "window {} s after {} s of warm-up; task = one poll or one delivery",
        WINDOW.as_secs(),
        WARM_UP.as_secs()
    );
    let meter_engine = Engine::builder().cpu_threads(1).build().expect("engine");
    let meter =
        meter_engine.block_on(RedisClient::connect(&RedisConfig::new(&url))).expect("rt").expect("redis");
    for point in POINTS.iter().filter(|p| only.as_deref().is_none_or(|o| o == p.name)) {
        measure(&meter_engine, &meter, &url, point);
    }
}

fn measure(meter_engine: &Engine, meter: &RedisClient, url: &str, point: &Point) {
    let world = world();
    let prefix = format!("switchyard:bench:cost:{}:{}", std::process::id(), point.name);
    let config = config(&world, url, &prefix, point);
    let mut services = Vec::new();
    for _ in 0..point.processes {
        let engine = Engine::builder().config(config.engine.clone()).build().expect("engine");
        let (stop, endpoints) = (CancellationToken::new(), Endpoints::new(None));
        let (e, c, s) = (engine.clone(), config.clone(), stop.clone());
        let done = engine.handle().spawn(async move {
            run_service(&e, &c, &endpoints, s, RunLimits::default()).await.expect("the service runs")
        });
        services.push((engine, stop, done));
    }
    std::thread::sleep(WARM_UP);
    let read = || meter_engine.block_on(meter.server_counters()).expect("rt").expect("INFO");
    let (polls0, deliveries0, before) =
        (world.polls.load(Ordering::Relaxed), world.deliveries.load(Ordering::Relaxed), read());
    std::thread::sleep(WINDOW);
    let (polls1, deliveries1, after) =
        (world.polls.load(Ordering::Relaxed), world.deliveries.load(Ordering::Relaxed), read());
    let seen_set = meter_engine.block_on(seen_set_size(meter, &format!("{prefix}:seen:p0"))).expect("rt");
    for (engine, stop, done) in services {
        stop.cancel();
        let _ = engine.block_on(done);
    }
    meter_engine.block_on(drop_keys(meter, &prefix)).expect("rt");
    report(point, polls1 - polls0, deliveries1 - deliveries0, &before.until(&after));
    if let Some((ids, bytes)) = seen_set.filter(|(ids, _)| *ids > 100) {
        println!(
            "point={} seen_set_ids={ids} seen_set_bytes={bytes} bytes_per_id={:.1}",
            point.name,
            bytes as f64 / ids as f64
        );
    }
}

/// Ids in one pipeline's seen set and the bytes Redis uses for it.
async fn seen_set_size(client: &RedisClient, key: &str) -> Option<(u64, u64)> {
    let ids: u64 = client.query(redis::cmd("ZCARD").arg(key)).await.ok()?;
    let bytes: Option<u64> =
        client.query(redis::cmd("MEMORY").arg("USAGE").arg(key).arg("SAMPLES").arg(0)).await.ok()?;
    Some((ids, bytes?))
}

fn report(point: &Point, polls: u64, deliveries: u64, cost: &RedisServerCounters) {
    let window_s = WINDOW.as_secs_f64();
    let tasks = polls + deliveries;
    let per_k = |v: f64| if tasks == 0 { f64::NAN } else { v * 1e3 / tasks as f64 };
    println!(
        "point={} pipelines={} poll_interval_ms={} processes={} polls={} deliveries={} tasks_per_s={:.1} \
         redis_commands_per_s={:.0} redis_cpu_share={:.4} redis_commands_per_1k_tasks={:.0} \
         redis_cpu_ms_per_1k_tasks={:.1} top: {}",
        point.name,
        point.pipelines,
        point.poll_interval_ms,
        point.processes,
        polls,
        deliveries,
        tasks as f64 / window_s,
        cost.commands() as f64 / window_s,
        cost.cpu_s / window_s,
        per_k(cost.commands() as f64),
        per_k(cost.cpu_s * 1e3),
        cost.top(10),
    );
}

async fn drop_keys(client: &RedisClient, prefix: &str) {
    let mut cursor = 0u64;
    loop {
        let scan = redis::cmd("SCAN")
            .arg(cursor)
            .arg("MATCH")
            .arg(format!("{prefix}*"))
            .arg("COUNT")
            .arg(1000)
            .clone();
        let (next, keys): (u64, Vec<String>) = client.query(&scan).await.expect("SCAN");
        if !keys.is_empty() {
            let _: u64 = client.query(redis::cmd("DEL").arg(&keys)).await.expect("DEL");
        }
        if next == 0 {
            return;
        }
        cursor = next;
    }
}
