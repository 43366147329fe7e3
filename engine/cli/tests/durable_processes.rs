//! Several `switchyard run` processes on one Redis, as operators run them:
//! SIGKILLed at random and restarted, they lose no item, and an item sent
//! twice carries the same Idempotency-Key and was in flight at a kill; a
//! process killed in the middle of a transform leaves no partial effect and
//! its poll is redone elsewhere; SIGTERM stops intake at once and exits
//! within the deadline, and the next process finishes what was left.

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use http_body_util::BodyExt;
use switchyard_io_reactor::server::{query_param, respond, Handler, ServerThread};
use switchyard_pipeline::idempotency_key;
use switchyard_tests::{redis_url, unique};

/// Items the API lists per answer; two are new on each.
const WINDOW: u64 = 20;

/// One accepted delivery: pipeline, item id, Idempotency-Key, when.
type Arrival = (String, String, String, Instant);

/// The API and the webhook every process talks to, and what they saw.
struct World {
    api: ServerThread,
    hook: ServerThread,
    /// Answers served per pipeline; frozen: the page stops moving.
    answers: Arc<Mutex<HashMap<String, u64>>>,
    frozen: Arc<AtomicBool>,
    /// (pipeline, seq) of every poll request, in order.
    polls: Arc<Mutex<Vec<(String, u64)>>>,
    /// Every accepted delivery: (pipeline, id, key, when).
    received: Arc<Mutex<Vec<Arrival>>>,
    /// Deliveries seen starting, by start time.
    started: Arc<Mutex<Vec<Instant>>>,
}

fn world(hook_delay: Duration) -> World {
    let answers: Arc<Mutex<HashMap<String, u64>>> = Arc::default();
    let frozen = Arc::new(AtomicBool::new(false));
    let polls: Arc<Mutex<Vec<(String, u64)>>> = Arc::default();
    let (a, f, p) = (answers.clone(), frozen.clone(), polls.clone());
    let api: Handler = Arc::new(move |req| {
        let pipeline = req.uri().path().trim_start_matches("/orders/").to_string();
        let seq =
            query_param(req.uri().query().unwrap_or(""), "seq").and_then(|s| s.parse().ok()).unwrap_or(0);
        p.lock().unwrap().push((pipeline.clone(), seq));
        let n = {
            let mut answers = a.lock().unwrap();
            let n = answers.entry(pipeline.clone()).or_default();
            if !f.load(Ordering::SeqCst) {
                *n += 1;
            }
            *n
        };
        let items: Vec<_> = (2 * n..2 * n + WINDOW)
            .rev()
            .map(|e| serde_json::json!({"id": format!("{pipeline}-{e}"), "email": " X@Y.Z "}))
            .collect();
        Box::pin(async move {
            respond(200, "application/json", serde_json::json!({ "items": items }).to_string())
        })
    });
    let received: Arc<Mutex<Vec<Arrival>>> = Arc::default();
    let started: Arc<Mutex<Vec<Instant>>> = Arc::default();
    let (r, s) = (received.clone(), started.clone());
    let hook: Handler = Arc::new(move |req| {
        let (r, s) = (r.clone(), s.clone());
        Box::pin(async move {
            s.lock().unwrap().push(Instant::now());
            let pipeline = req.uri().path().trim_start_matches("/hook/").to_string();
            let key = req.headers().get("idempotency-key").map(|v| v.to_str().unwrap().to_string());
            let body = req.into_body().collect().await.unwrap().to_bytes();
            let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
            tokio::time::sleep(hook_delay).await;
            let id = v["id"].as_str().unwrap().to_string();
            r.lock().unwrap().push((pipeline, id, key.unwrap_or_default(), Instant::now()));
            respond(200, "application/json", r#"{"ok":true}"#)
        })
    });
    let local = SocketAddr::from(([127, 0, 0, 1], 0));
    World {
        api: ServerThread::start(local, "test-api", 256, api).unwrap(),
        hook: ServerThread::start(local, "test-hook", 1024, hook).unwrap(),
        answers,
        frozen,
        polls,
        received,
        started,
    }
}

struct Setup {
    dir: PathBuf,
    config: PathBuf,
    redis: String,
    prefix: String,
}

impl Drop for Setup {
    fn drop(&mut self) {
        let _ = Command::new("sh")
            .arg("-c")
            .arg(format!(
                "redis-cli -u '{}' --scan --pattern '{}*' | xargs -r redis-cli -u '{}' del > /dev/null",
                self.redis, self.prefix, self.redis
            ))
            .status();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn setup(world: &World, redis: &str, pipelines: &[&str], rounds: u32, extra: &str) -> Setup {
    let prefix = unique("sy-procs");
    let dir = std::env::temp_dir().join(&prefix);
    std::fs::create_dir_all(&dir).unwrap();
    let mut text = format!(
        "[engine]\nshutdown_deadline_ms = 4000\n[engine.cpu]\nthreads = 1\n[engine.redis]\nurl = \"{redis}\"\n\
         [durable]\nkey_prefix = \"{prefix}\"\nclaim_idle_ms = 1500\nscheduler_tick_ms = 20\n{extra}"
    );
    for p in pipelines {
        text.push_str(&format!(
            r#"
[[pipelines]]
name = "{p}"
[pipelines.source]
url = "http://{api}/orders/{p}?seq={{seq}}"
poll_interval_ms = 100
items_pointer = "/items"
[[pipelines.steps]]
step = "trim"
field = "email"
[[pipelines.steps]]
step = "fingerprint"
rounds = {rounds}
[pipelines.action]
url = "http://{hook}/hook/{p}"
max_attempts = 20
initial_backoff_ms = 50
max_backoff_ms = 500
"#,
            api = world.api.addr(),
            hook = world.hook.addr(),
        ));
    }
    let config = dir.join("switchyard.toml");
    std::fs::write(&config, text).unwrap();
    Setup { dir, config, redis: redis.to_string(), prefix }
}

/// A `switchyard run` process whose stderr is drained to a file.
struct Process {
    child: Child,
}

impl Process {
    fn start(config: &Path, log: &Path) -> Process {
        let log = std::fs::File::create(log).unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_switchyard"))
            .env_remove("SWITCHYARD_LISTEN")
            .env_remove("SWITCHYARD_REDIS_URL")
            .env("SWITCHYARD_LOG", "info")
            .args(["run", "--listen", "127.0.0.1:0", "--config"])
            .arg(config)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        Process { child }
    }

    fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    fn term(&mut self) {
        let _ = Command::new("kill").args(["-TERM", &self.child.id().to_string()]).status();
    }

    fn wait(&mut self, limit: Duration) -> Option<std::process::ExitStatus> {
        let deadline = Instant::now() + limit;
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Some(status);
            }
            if Instant::now() > deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        self.kill();
    }
}

fn until(limit: Duration, mut done: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + limit;
    while !done() {
        if Instant::now() > deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    true
}

/// Every id the API introduced after each pipeline's seeding answer.
fn introduced(world: &World) -> Vec<(String, String)> {
    let answers = world.answers.lock().unwrap().clone();
    answers
        .iter()
        .flat_map(|(p, n)| (2 + WINDOW..2 * n + WINDOW).map(move |e| (p.clone(), format!("{p}-{e}"))))
        .collect()
}

fn arrivals(world: &World) -> BTreeMap<(String, String), Vec<Instant>> {
    let mut out: BTreeMap<(String, String), Vec<Instant>> = BTreeMap::new();
    for (p, id, key, at) in world.received.lock().unwrap().iter() {
        assert_eq!(key.as_str(), idempotency_key(p, id).to_str().unwrap(), "{p}/{id} carried a wrong key");
        out.entry((p.clone(), id.clone())).or_default().push(*at);
    }
    out
}

fn pseudo_random(seed: &mut u64) -> u64 {
    *seed ^= *seed << 13;
    *seed ^= *seed >> 7;
    *seed ^= *seed << 17;
    *seed
}

#[test]
fn processes_killed_at_random_lose_nothing_and_repeat_only_what_was_in_flight() {
    let Some(redis) = redis_url() else { return };
    let world = world(Duration::from_millis(30));
    let pipelines = ["p0", "p1", "p2", "p3"];
    let setup = setup(&world, &redis, &pipelines, 20, "");
    let log = |i: usize, gen: usize| setup.dir.join(format!("process-{i}-{gen}.log"));
    let mut processes: Vec<Process> = (0..3).map(|i| Process::start(&setup.config, &log(i, 0))).collect();
    let mut kills = Vec::new();
    let mut seed = 0x2545_F491_4F6C_DD1D_u64 ^ u64::from(std::process::id());
    let soak_until = Instant::now() + Duration::from_secs(45);
    let mut generation = 1;
    while Instant::now() < soak_until {
        std::thread::sleep(Duration::from_millis(500 + pseudo_random(&mut seed) % 1_500));
        let victim = (pseudo_random(&mut seed) % 3) as usize;
        processes[victim].kill();
        kills.push(Instant::now());
        processes[victim] = Process::start(&setup.config, &log(victim, generation));
        generation += 1;
    }
    // Calm: the page stops moving, and everything introduced must arrive.
    std::thread::sleep(Duration::from_secs(2));
    world.frozen.store(true, Ordering::SeqCst);
    let expected = introduced(&world);
    assert!(expected.len() > 100, "too little work to mean anything: {}", expected.len());
    let all = until(Duration::from_secs(40), || {
        let got = arrivals(&world);
        expected.iter().all(|k| got.contains_key(k))
    });
    let got = arrivals(&world);
    let missing: Vec<_> = expected.iter().filter(|k| !got.contains_key(*k)).take(10).collect();
    assert!(all, "lost after {} kills: {missing:?} (of {})", kills.len(), expected.len());
    // A repeat follows a kill: its first arrival was at most a claim idle
    // time (plus the webhook's answer) before some kill, its second after it.
    let claim_window = Duration::from_millis(1_500 + 1_000);
    let repeats: Vec<_> = got.iter().filter(|(_, at)| at.len() > 1).collect();
    for ((p, id), at) in &repeats {
        let explained =
            kills.iter().any(|k| at[0] <= *k + Duration::from_millis(100) && at[0] + claim_window >= *k);
        assert!(explained, "{p}/{id} arrived {} times with no kill while it was in flight", at.len());
    }
    let started = world.started.lock().unwrap().len();
    eprintln!(
        "{} kills, {} items, {} deliveries started, {} repeated",
        kills.len(),
        expected.len(),
        started,
        repeats.len()
    );
    for p in &mut processes {
        p.term();
    }
    for p in &mut processes {
        p.wait(Duration::from_secs(10));
    }
}

#[test]
fn a_process_killed_mid_transform_leaves_no_partial_effect_and_its_poll_is_redone() {
    let Some(redis) = redis_url() else { return };
    let world = world(Duration::ZERO);
    // 20 items x 2,000,000 SHA-256 rounds: each poll's transform takes seconds.
    let setup = setup(&world, &redis, &["slow"], 2_000_000, "");
    let mut first = Process::start(&setup.config, &setup.dir.join("first.log"));
    // The seeding poll, then the second poll's request: kill in its transform.
    let polled = |seq| world.polls.lock().unwrap().iter().any(|(_, s)| *s == seq);
    assert!(until(Duration::from_secs(30), || polled(2)), "poll 2 never came");
    std::thread::sleep(Duration::from_millis(200));
    first.kill();
    assert!(world.received.lock().unwrap().is_empty(), "a delivery before the transform finished");
    let _second = Process::start(&setup.config, &setup.dir.join("second.log"));
    // The same poll (seq 2) is asked again by the process that claimed it.
    let redone = until(Duration::from_secs(30), || {
        world.polls.lock().unwrap().iter().filter(|(_, s)| *s == 2).count() >= 2
    });
    assert!(redone, "poll 2 was not redone: {:?}", world.polls.lock().unwrap());
    assert!(until(Duration::from_secs(60), || world.received.lock().unwrap().len() >= 2));
    let got = arrivals(&world);
    assert!(got.values().all(|at| at.len() == 1), "an item of the redone poll arrived twice: {got:?}");
}

#[test]
fn sigterm_stops_intake_at_once_exits_in_time_and_the_next_process_finishes() {
    let Some(redis) = redis_url() else { return };
    // Each delivery takes 3 s: at SIGTERM some are in flight, more wait.
    let world = world(Duration::from_secs(3));
    let setup = setup(&world, &redis, &["calm"], 5, "");
    let mut first = Process::start(&setup.config, &setup.dir.join("first.log"));
    assert!(until(Duration::from_secs(20), || world.started.lock().unwrap().len() >= 2));
    world.frozen.store(true, Ordering::SeqCst);
    let termed = Instant::now();
    first.term();
    let status = first.wait(Duration::from_secs(10)).expect("exits within the deadline");
    let took = termed.elapsed();
    assert!(took <= Duration::from_millis(4_000 + 1_000), "took {took:?} against a 4 s deadline");
    let late =
        world.started.lock().unwrap().iter().filter(|t| **t > termed + Duration::from_millis(100)).count();
    assert_eq!(late, 0, "deliveries started more than 100 ms after SIGTERM");
    assert!(matches!(status.code(), Some(0 | 75)), "{status:?}");
    // The next process finishes what was left (in the streams, not lost).
    let _next = Process::start(&setup.config, &setup.dir.join("next.log"));
    let expected = introduced(&world);
    let all = until(Duration::from_secs(60), || {
        let got = arrivals(&world);
        expected.iter().all(|k| got.contains_key(k))
    });
    assert!(all, "what the stopped process left was lost");
}
