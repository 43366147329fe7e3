//! The world several `switchyard run` processes share in the durable
//! tests and the soak (`benches/durable_soak.rs`): a loopback API whose page
//! moves on every answer, a webhook recording every delivery, a config
//! writer, and the processes themselves (killed when dropped).
//!
//! Included by path (`#[path = ...] mod durable_world;`) from each target;
//! not every target uses every part.
#![allow(dead_code)]

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
use switchyard_tests::unique;

/// Items the API lists per answer; two are new on each.
pub(crate) const WINDOW: u64 = 20;

/// One accepted delivery: pipeline, item id, Idempotency-Key, when.
pub(crate) type Arrival = (String, String, String, Instant);

/// The API and the webhook every process talks to, and what they saw.
pub(crate) struct World {
    pub(crate) api: ServerThread,
    pub(crate) hook: ServerThread,
    /// Answers served per pipeline; frozen: the page stops moving.
    pub(crate) answers: Arc<Mutex<HashMap<String, u64>>>,
    pub(crate) frozen: Arc<AtomicBool>,
    /// (pipeline, seq) of every poll request, in order.
    pub(crate) polls: Arc<Mutex<Vec<(String, u64)>>>,
    /// Every accepted delivery: (pipeline, id, key, when).
    pub(crate) received: Arc<Mutex<Vec<Arrival>>>,
    /// Deliveries seen starting, by start time.
    pub(crate) started: Arc<Mutex<Vec<Instant>>>,
}

pub(crate) fn world(hook_delay: Duration) -> World {
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

pub(crate) struct Setup {
    pub(crate) dir: PathBuf,
    pub(crate) config: PathBuf,
    pub(crate) redis: String,
    pub(crate) prefix: String,
    /// Keep `dir` (the processes' logs) when dropped; Redis is cleaned anyway.
    pub(crate) keep_dir: bool,
}

impl Setup {
    /// One Redis command on the setup's Redis, by `redis-cli`; its reply as text.
    pub(crate) fn redis_cli(&self, args: &[&str]) -> String {
        let out = Command::new("redis-cli").args(["-u", &self.redis]).args(args).output().unwrap();
        assert!(out.status.success(), "redis-cli {args:?}: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }
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
        if !self.keep_dir {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

pub(crate) fn setup(world: &World, redis: &str, pipelines: &[&str], rounds: u32, extra: &str) -> Setup {
    setup_named("sy-procs", world, redis, pipelines, rounds, extra)
}

/// [`setup`] with its own key prefix (and temporary directory), `name_N_M`.
pub(crate) fn setup_named(
    name: &str,
    world: &World,
    redis: &str,
    pipelines: &[&str],
    rounds: u32,
    extra: &str,
) -> Setup {
    let prefix = unique(name);
    let dir = std::env::temp_dir().join(&prefix);
    std::fs::create_dir_all(&dir).unwrap();
    let mut text = format!(
        "[engine]\nshutdown_deadline_ms = 4000\n[engine.cpu]\nthreads = 1\n[engine.redis]\nurl = \"{redis}\"\n\
         [engine.http.egress]\nallow = [\"127.0.0.1/32\"]\n[durable]\nkey_prefix = \"{prefix}\"\nclaim_idle_ms = 1500\nscheduler_tick_ms = 20\n{extra}"
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
# A page is WINDOW items; a small bound lets the slow-transform tests ask
# for millions of rounds per item within the per-poll CPU bound.
max_items = 100
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
    Setup { dir, config, redis: redis.to_string(), prefix, keep_dir: false }
}

/// A `switchyard run` process whose stderr is drained to a file.
pub(crate) struct Process {
    child: Child,
}

impl Process {
    pub(crate) fn start(config: &Path, log: &Path) -> Process {
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

    /// Its process id.
    pub(crate) fn id(&self) -> u32 {
        self.child.id()
    }

    pub(crate) fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    pub(crate) fn term(&mut self) {
        let _ = Command::new("kill").args(["-TERM", &self.child.id().to_string()]).status();
    }

    pub(crate) fn wait(&mut self, limit: Duration) -> Option<std::process::ExitStatus> {
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

pub(crate) fn until(limit: Duration, mut done: impl FnMut() -> bool) -> bool {
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
pub(crate) fn introduced(world: &World) -> Vec<(String, String)> {
    let answers = world.answers.lock().unwrap().clone();
    answers
        .iter()
        .flat_map(|(p, n)| (2 + WINDOW..2 * n + WINDOW).map(move |e| (p.clone(), format!("{p}-{e}"))))
        .collect()
}

pub(crate) fn arrivals(world: &World) -> BTreeMap<(String, String), Vec<Instant>> {
    let mut out: BTreeMap<(String, String), Vec<Instant>> = BTreeMap::new();
    for (p, id, key, at) in world.received.lock().unwrap().iter() {
        assert_eq!(key.as_str(), idempotency_key(p, id).to_str().unwrap(), "{p}/{id} carried a wrong key");
        out.entry((p.clone(), id.clone())).or_default().push(*at);
    }
    out
}

pub(crate) fn pseudo_random(seed: &mut u64) -> u64 {
    *seed ^= *seed << 13;
    *seed ^= *seed >> 7;
    *seed ^= *seed << 17;
    *seed
}
