//! Soak of the durable service (not in CI): three `switchyard run` processes
//! on one Redis, SIGKILLed at random (one at a time) and restarted, for
//! `SWITCHYARD_SOAK_KILLS` kills (default 1,000). It prints the figure of
//! `BENCHMARKS.md`: lost = 0; duplicate deliveries per kill ≤ deliveries in
//! flight at that kill; every duplicate carrying its key.
//!
//! Run (from the workspace root, Redis on `SWITCHYARD_REDIS_URL`, default
//! `redis://127.0.0.1:6379/`):
//!
//! ```text
//! cargo bench -p switchyard-cli --bench durable_soak
//! SWITCHYARD_SOAK_KILLS=40 SWITCHYARD_SOAK_INTERVAL_MS=150-600 cargo bench -p switchyard-cli --bench durable_soak
//! ```
//!
//! `SWITCHYARD_SOAK_INTERVAL_MS` is the range the pause before each kill is
//! drawn from (default `150-600`: 1,000 kills in about 7 minutes, plus the
//! drain); `SWITCHYARD_SOAK_SEED` fixes the victims and pauses;
//! `SWITCHYARD_SOAK_HOOK_DELAY_MS` is the webhook's time per delivery
//! (default 150 ms, so a victim usually holds deliveries when it dies).
//!
//! The world is the durable tests' (`tests/support/durable_world.rs`): four
//! pipelines polling a loopback API whose page of 20 gains 2 new items per
//! answer, delivering to a loopback webhook (150 ms per request) that records
//! every delivery with its Idempotency-Key.
//!
//! **In flight at a kill**, measured exactly: right before the SIGKILL the
//! victim's TCP connections are read from `/proc`; after it, the soak waits
//! until Redis has dropped every one of them (`CLIENT LIST`), so no command
//! of the victim can still run, and then reads the entries pending for the
//! victim's consumers (`XPENDING ... <consumer>`, on the deliveries and the
//! polls stream) and maps the delivery entries to (pipeline, item id) with
//! `XRANGE`. A consumer is named `{host}-{pid}-{random}` (see
//! `default_consumer_name`): the victim's are the group's consumers with its
//! host and pid that no earlier victim had. Nobody else can take those
//! entries before the read: a claim needs them idle for `claim_idle_ms`
//! (1.5 s), and the victim renewed them every 0.5 s until it died.
//!
//! A poll pending for the victim is redone by another process; its outbox
//! write (new items into the deliveries stream and the seen set) is one
//! script, so a redone poll adds nothing already added: such a poll is
//! counted, and may explain no duplicate.
//!
//! At the end (the page frozen, the deliveries stream drained):
//! - lost: items the API introduced that never reached the webhook (must be 0);
//! - each delivery of an item beyond its first is a duplicate. Its n-th
//!   arrival (n ≥ 2) needs n − 1 kills, before it, at which the item's entry
//!   was pending for the victim; it is attributed to the (n − 1)-th of them.
//!   A duplicate without one is unexplained (must be 0), and no kill may be
//!   attributed more duplicates than it had deliveries in flight;
//! - every delivery carries `idempotency_key(pipeline, id)`, so every
//!   duplicate carries the key of its first arrival.
//!
//! Attributing at most one duplicate per item per kill makes "duplicates of
//! a kill ≤ its deliveries in flight" hold by construction: the check with
//! teeth is "unexplained = 0". "Pending for the victim" is Redis's view: an
//! entry a process dropped without settling it (a lost ack) stays pending,
//! unrenewed, until claimed 1.5 s later, and counts as in flight if its
//! consumer is killed meanwhile. `in flight at kill: idle max` shows whether
//! every entry counted was one a task still held (renewed within 0.5 s).
//!
//! It exits non-zero when a check fails (the processes' logs are kept then).

#[path = "../tests/support/durable_world.rs"]
mod durable_world;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use durable_world::{introduced, pseudo_random, setup_named, until, world, Process, World};
use switchyard::io_reactor::redis::streams::{StreamInfoConsumersReply, StreamRangeReply};
use switchyard::io_reactor::redis::{self, Connection};
use switchyard::source::StreamConfig;
use switchyard_pipeline::idempotency_key;
use switchyard_service::{stream_configs, ServiceConfig};

const PROCESSES: usize = 3;
const PIPELINES: [&str; 4] = ["p0", "p1", "p2", "p3"];
/// The webhook's default time per delivery: long enough that a victim
/// usually holds several deliveries when it is killed.
const DEFAULT_HOOK_DELAY_MS: u64 = 150;
/// Longest wait for a victim's connections to be dropped by Redis.
const SETTLE_LIMIT: Duration = Duration::from_secs(2);
/// Longest wait, after the last kill, for everything to arrive and drain.
const DRAIN_LIMIT: Duration = Duration::from_secs(180);
/// How long the deliveries stream stays empty before what has not arrived
/// counts as lost (a poll every 100 ms, a claim after 1.5 s idle).
const EMPTY_FOR: Duration = Duration::from_secs(10);

/// One kill and what the victim held in Redis at it.
#[derive(Debug)]
struct Kill {
    at: Instant,
    /// (pipeline, item id) of each delivery entry pending for the victim.
    deliveries: Vec<(String, String)>,
    /// Longest a delivery entry pending for the victim had been idle (its
    /// lease renewed every third of `claim_idle_ms` while a task holds it).
    idle: Duration,
    /// Poll entries pending for the victim.
    polls: usize,
    /// The victim's TCP connections when it was killed.
    connections: usize,
    /// Redis dropped them all before the read, after this long.
    settled: Option<Duration>,
}

/// One item's deliveries: Idempotency-Key and arrival time each.
type Arrivals = BTreeMap<(String, String), Vec<(String, Instant)>>;

#[derive(Debug)]
struct Settings {
    kills: usize,
    interval: (u64, u64),
    seed: u64,
    hook_delay: Duration,
}

fn settings() -> anyhow::Result<Settings> {
    let kills = match std::env::var("SWITCHYARD_SOAK_KILLS") {
        Ok(v) => v.trim().parse().context("SWITCHYARD_SOAK_KILLS: a number of kills")?,
        Err(_) => 1_000,
    };
    let interval = match std::env::var("SWITCHYARD_SOAK_INTERVAL_MS") {
        Ok(v) => {
            let (lo, hi) = v.split_once('-').context("SWITCHYARD_SOAK_INTERVAL_MS: MIN-MAX milliseconds")?;
            let (lo, hi): (u64, u64) = (lo.trim().parse()?, hi.trim().parse()?);
            if lo > hi || lo == 0 {
                bail!("SWITCHYARD_SOAK_INTERVAL_MS: MIN-MAX with 0 < MIN <= MAX");
            }
            (lo, hi)
        }
        Err(_) => (150, 600),
    };
    let seed = match std::env::var("SWITCHYARD_SOAK_SEED") {
        Ok(v) => v.trim().parse().context("SWITCHYARD_SOAK_SEED: a number")?,
        Err(_) => 0x2545_F491_4F6C_DD1D_u64 ^ u64::from(std::process::id()) ^ now_nanos(),
    };
    let hook_delay_ms = match std::env::var("SWITCHYARD_SOAK_HOOK_DELAY_MS") {
        Ok(v) => v.trim().parse().context("SWITCHYARD_SOAK_HOOK_DELAY_MS: milliseconds")?,
        Err(_) => DEFAULT_HOOK_DELAY_MS,
    };
    Ok(Settings { kills, interval, seed: seed.max(1), hook_delay: Duration::from_millis(hook_delay_ms) })
}

fn now_nanos() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos() as u64)
}

fn main() {
    // `cargo bench` passes `--bench`; anything else (`cargo test --benches`)
    // must not start a soak of several minutes.
    if !std::env::args().any(|a| a == "--bench") {
        eprintln!("durable_soak: run it with `cargo bench -p switchyard-cli --bench durable_soak`");
        return;
    }
    let Some(redis_url) = switchyard_tests::redis_url() else { std::process::exit(2) };
    let settings = match settings() {
        Ok(s) => s,
        Err(e) => {
            eprintln!("durable_soak: {e:#}");
            std::process::exit(2);
        }
    };
    let interrupted = on_interrupt();
    // Everything (processes, servers, Redis keys) is dropped inside.
    let code = match soak(&redis_url, &settings, &interrupted) {
        Ok(true) => 0,
        Ok(false) => 1,
        Err(e) => {
            eprintln!("durable_soak: {e:#}");
            2
        }
    };
    std::process::exit(code);
}

/// Set on SIGINT or SIGTERM: the soak stops, kills its processes and cleans up.
fn on_interrupt() -> Arc<AtomicBool> {
    let flag = Arc::new(AtomicBool::new(false));
    let set = flag.clone();
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
    let (interrupt, terminate) = runtime.block_on(async {
        use tokio::signal::unix::{signal, SignalKind};
        (signal(SignalKind::interrupt()), signal(SignalKind::terminate()))
    });
    let (Ok(mut interrupt), Ok(mut terminate)) = (interrupt, terminate) else { return flag };
    std::thread::spawn(move || {
        runtime.block_on(async {
            tokio::select! {
                _ = interrupt.recv() => {}
                _ = terminate.recv() => {}
            }
        });
        eprintln!("durable_soak: interrupted; stopping the processes");
        set.store(true, Ordering::SeqCst);
    });
    flag
}

/// Sleeps `d`, or less when interrupted; false when interrupted.
fn sleep(d: Duration, interrupted: &AtomicBool) -> bool {
    let until = Instant::now() + d;
    while !interrupted.load(Ordering::SeqCst) {
        let left = until.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return true;
        }
        std::thread::sleep(left.min(Duration::from_millis(20)));
    }
    false
}

/// The streams the processes share and a connection to read them.
struct Streams {
    con: Connection,
    polls: StreamConfig,
    deliveries: StreamConfig,
}

impl std::fmt::Debug for Streams {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Streams").field("polls", &self.polls.stream).finish_non_exhaustive()
    }
}

fn soak(redis_url: &str, s: &Settings, interrupted: &AtomicBool) -> anyhow::Result<bool> {
    let wall = Instant::now();
    let world = world(s.hook_delay);
    let mut setup = setup_named("sy-soak", &world, redis_url, &PIPELINES, 20, "");
    let config = ServiceConfig::load(&setup.config).map_err(|e| anyhow::anyhow!("{e}"))?;
    let (polls, deliveries) = stream_configs(&config);
    let con = redis::Client::open(redis_url)?.get_connection()?;
    let mut streams = Streams { con, polls, deliveries };
    let commands_before = commands_processed(&mut streams.con)?;
    let host = hostname();
    let redis_port = port_of(redis_url);

    let log = |slot: usize, generation: usize| setup.dir.join(format!("process-{slot}-{generation}.log"));
    let mut processes: Vec<Process> =
        (0..PROCESSES).map(|slot| Process::start(&setup.config, &log(slot, 0))).collect();
    // The first kill once work flows (which also shows the world is wired).
    if !until(Duration::from_secs(60), || {
        !world.started.lock().unwrap().is_empty() || interrupted.load(Ordering::SeqCst)
    }) {
        setup.keep_dir = true;
        bail!("no delivery started within 60 s; logs in {}", setup.dir.display());
    }

    let mut seed = s.seed;
    let mut kills: Vec<Kill> = Vec::with_capacity(s.kills);
    // Consumer names already taken by earlier victims (a pid can come back).
    let mut dead: HashSet<String> = HashSet::new();
    let (lo, hi) = s.interval;
    for n in 0..s.kills {
        let pause = Duration::from_millis(lo + pseudo_random(&mut seed) % (hi - lo + 1));
        if !sleep(pause, interrupted) {
            break;
        }
        let slot = (pseudo_random(&mut seed) % PROCESSES as u64) as usize;
        let pid = processes[slot].id();
        let ports = tcp_ports(pid, redis_port);
        let at = Instant::now();
        processes[slot].kill();
        let settled = disconnected(&mut streams.con, &ports, SETTLE_LIMIT)?.then(|| at.elapsed());
        let prefix = format!("{host}-{pid}-");
        let held = held_by(&mut streams, &prefix, &mut dead)?;
        kills.push(Kill {
            at,
            deliveries: held.deliveries,
            idle: held.idle,
            polls: held.polls,
            connections: ports.len(),
            settled,
        });
        processes[slot] = Process::start(&setup.config, &log(slot, n + 1));
        if (n + 1) % 100 == 0 {
            eprintln!("durable_soak: {} kills, {:.0} s", n + 1, wall.elapsed().as_secs_f64());
        }
    }
    if interrupted.load(Ordering::SeqCst) {
        bail!("interrupted after {} kills", kills.len());
    }

    // Calm: the page stops moving; everything introduced must arrive and
    // the deliveries stream drain (every redelivery done and recorded). When
    // the stream has stayed empty for a while, what is missing is lost.
    sleep(Duration::from_secs(2), interrupted);
    world.frozen.store(true, Ordering::SeqCst);
    let expected = introduced(&world);
    let drain_started = Instant::now();
    let mut empty_since: Option<Instant> = None;
    while drain_started.elapsed() < DRAIN_LIMIT && !interrupted.load(Ordering::SeqCst) {
        let got = arrivals(&world);
        if backlog(&mut streams)? > 0 {
            empty_since = None;
        } else if expected.iter().all(|k| got.contains_key(k))
            || empty_since.get_or_insert_with(Instant::now).elapsed() >= EMPTY_FOR
        {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let left = backlog(&mut streams)?;
    let commands = commands_processed(&mut streams.con)?.saturating_sub(commands_before);
    let dead_letters = dead_letters(&mut streams)?;
    for p in &mut processes {
        p.term();
    }
    for p in &mut processes {
        p.wait(Duration::from_secs(10));
    }
    let started = world.started.lock().unwrap().len();
    let report = Report::of(&world, &expected, &kills);

    let inflight: Vec<usize> = kills.iter().map(|k| k.deliveries.len()).collect();
    let mut sorted = inflight.clone();
    sorted.sort_unstable();
    let median = if sorted.is_empty() {
        0.0
    } else if sorted.len() % 2 == 1 {
        sorted[sorted.len() / 2] as f64
    } else {
        (sorted[sorted.len() / 2 - 1] + sorted[sorted.len() / 2]) as f64 / 2.0
    };
    let idle_max = kills.iter().map(|k| k.idle).max().unwrap_or_default();
    let unsettled = kills.iter().filter(|k| k.settled.is_none()).count();
    let settle_max = kills.iter().filter_map(|k| k.settled).max().unwrap_or_default();
    let unconnected = kills.iter().filter(|k| k.connections == 0).count();
    let polls_pending: Vec<usize> = kills.iter().map(|k| k.polls).collect();
    let mut failures = Vec::new();
    if report.lost > 0 {
        failures.push(format!("{} items lost, e.g. {:?}", report.lost, report.lost_examples));
    }
    if report.unexplained > 0 {
        failures.push(format!(
            "{} duplicates with no kill at which the item was in flight, e.g. {:?}",
            report.unexplained, report.unexplained_examples
        ));
    }
    if report.over_inflight > 0 {
        failures
            .push(format!("{} kills with more duplicates than deliveries in flight", report.over_inflight));
    }
    if report.wrong_keys > 0 {
        failures.push(format!("{} deliveries with a wrong Idempotency-Key", report.wrong_keys));
    }
    if report.unexpected > 0 {
        failures.push(format!("{} deliveries of items the API never introduced", report.unexpected));
    }
    if report.unmapped > 0 {
        failures.push(format!("{} pending entries not found by XRANGE", report.unmapped));
    }
    if unsettled > 0 {
        failures
            .push(format!("{unsettled} kills whose connections Redis had not dropped in {SETTLE_LIMIT:?}"));
    }
    if left > 0 {
        failures
            .push(format!("{left} delivery entries still in the stream {DRAIN_LIMIT:?} after the last kill"));
    }
    if expected.len() < 100 {
        failures.push(format!("too little work to mean anything: {} items", expected.len()));
    }

    println!(
        "durable soak: {PROCESSES} `switchyard run` processes, {} pipelines, one SIGKILLed every {lo}-{hi} ms, webhook {} ms per delivery (seed {})",
        PIPELINES.len(),
        s.hook_delay.as_millis(),
        s.seed
    );
    println!("machine                         {}", machine());
    println!("commit                          {}", commit());
    println!("kills                           {}", kills.len());
    println!("items                           {}", expected.len());
    println!("deliveries started              {started}");
    println!("deliveries received             {}", report.received);
    println!("duplicates                      {} (on {} items)", report.duplicates, report.duplicated_items);
    println!("in flight at kill: max          {}", sorted.last().copied().unwrap_or(0));
    println!("in flight at kill: median       {median}");
    println!("in flight at kill: total        {}", inflight.iter().sum::<usize>());
    println!(
        "in flight at kill: idle max     {} ms (leases renewed every {} ms)",
        idle_max.as_millis(),
        streams.deliveries.claim_idle_ms / 3
    );
    println!(
        "polls pending at kill           max {}, total {} (redone: no duplicate may come of them)",
        polls_pending.iter().max().copied().unwrap_or(0),
        polls_pending.iter().sum::<usize>()
    );
    println!(
        "victims' connections dropped   {}/{} kills, within {:.1} ms of SIGKILL (no connection yet: {unconnected})",
        kills.len() - unsettled,
        kills.len(),
        settle_max.as_secs_f64() * 1e3
    );
    println!("max duplicates per kill         {}", report.max_per_kill);
    println!("kills over their in-flight      {}", report.over_inflight);
    println!("duplicates unexplained          {}", report.unexplained);
    println!("wrong or changed keys           {}", report.wrong_keys);
    println!("lost                            {}", report.lost);
    println!("dead letters                    deliveries {}, polls {}", dead_letters.0, dead_letters.1);
    println!("wall time                       {:.1} s", wall.elapsed().as_secs_f64());
    println!("redis commands processed        {commands} (the whole server, during the soak)");
    if failures.is_empty() {
        println!("result                          PASS");
        Ok(true)
    } else {
        setup.keep_dir = true;
        for f in &failures {
            println!("FAILED: {f}");
        }
        println!("logs kept in {}", setup.dir.display());
        println!("result                          FAIL");
        Ok(false)
    }
}

/// What the webhook saw, checked against the kills.
#[derive(Debug, Default)]
struct Report {
    received: usize,
    lost: usize,
    lost_examples: Vec<(String, String)>,
    unexpected: usize,
    duplicates: usize,
    duplicated_items: usize,
    unexplained: usize,
    unexplained_examples: Vec<(String, String)>,
    max_per_kill: usize,
    over_inflight: usize,
    wrong_keys: usize,
    unmapped: usize,
}

impl Report {
    fn of(world: &World, expected: &[(String, String)], kills: &[Kill]) -> Report {
        let got = arrivals(world);
        let mut r = Report { received: got.values().map(Vec::len).sum(), ..Report::default() };
        let expected_set: HashSet<&(String, String)> = expected.iter().collect();
        for k in expected.iter().filter(|k| !got.contains_key(*k)) {
            r.lost += 1;
            if r.lost_examples.len() < 10 {
                r.lost_examples.push(k.clone());
            }
        }
        r.unexpected = got.keys().filter(|k| !expected_set.contains(k)).count();
        // The kills (in time order) at which each item was in flight.
        let mut pending_at: HashMap<&(String, String), Vec<usize>> = HashMap::new();
        for (i, kill) in kills.iter().enumerate() {
            let once: HashSet<&(String, String)> = kill.deliveries.iter().collect();
            for item in once {
                if item.1.is_empty() {
                    r.unmapped += 1;
                    continue;
                }
                pending_at.entry(item).or_default().push(i);
            }
        }
        let mut per_kill = vec![0usize; kills.len()];
        for (item @ (pipeline, id), deliveries) in &got {
            let key = idempotency_key(pipeline, id);
            let key = key.to_str().expect("hex");
            let first_key = &deliveries[0].0;
            for (k, _) in deliveries {
                if k != key || k != first_key {
                    r.wrong_keys += 1;
                }
            }
            if deliveries.len() < 2 {
                continue;
            }
            r.duplicated_items += 1;
            let pending = pending_at.get(item).map_or(&[][..], Vec::as_slice);
            for (n, (_, arrived)) in deliveries.iter().enumerate().skip(1) {
                r.duplicates += 1;
                // The n-th repeat needs n kills before it at which the item was in flight.
                let before: Vec<usize> =
                    pending.iter().copied().filter(|&k| kills[k].at < *arrived).collect();
                match before.get(n - 1) {
                    Some(&k) => per_kill[k] += 1,
                    None => {
                        r.unexplained += 1;
                        if r.unexplained_examples.len() < 10 {
                            r.unexplained_examples.push(item.clone());
                        }
                    }
                }
            }
        }
        r.max_per_kill = per_kill.iter().copied().max().unwrap_or(0);
        r.over_inflight = per_kill.iter().zip(kills).filter(|(d, k)| **d > k.deliveries.len()).count();
        r
    }
}

/// Every delivery the webhook accepted, per item, in arrival order.
fn arrivals(world: &World) -> Arrivals {
    let mut out: Arrivals = BTreeMap::new();
    for (p, id, key, at) in world.received.lock().unwrap().iter() {
        out.entry((p.clone(), id.clone())).or_default().push((key.clone(), *at));
    }
    for deliveries in out.values_mut() {
        deliveries.sort_by_key(|(_, at)| *at);
    }
    out
}

/// The local ports of a process's TCP connections to `redis_port`.
fn tcp_ports(pid: u32, redis_port: u16) -> HashSet<u16> {
    let inodes: HashSet<String> = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|fd| std::fs::read_link(fd.path()).ok())
        .filter_map(|link| {
            let link = link.to_string_lossy().into_owned();
            Some(link.strip_prefix("socket:[")?.strip_suffix(']')?.to_string())
        })
        .collect();
    let mut ports = HashSet::new();
    for table in ["/proc/net/tcp", "/proc/net/tcp6"] {
        let text = std::fs::read_to_string(table).unwrap_or_default();
        for line in text.lines().skip(1) {
            let fields: Vec<&str> = line.split_whitespace().collect();
            if fields.len() <= 9 || !inodes.contains(fields[9]) {
                continue;
            }
            let port = |f: &str| f.rsplit_once(':').and_then(|(_, p)| u16::from_str_radix(p, 16).ok());
            if let (Some(local), Some(remote)) = (port(fields[1]), port(fields[2])) {
                if remote == redis_port {
                    ports.insert(local);
                }
            }
        }
    }
    ports
}

/// The port of a `redis://[user[:pass]@]host[:port][/db]` URL.
fn port_of(url: &str) -> u16 {
    let rest = url.split_once("://").map_or(url, |(_, rest)| rest);
    let authority = rest.split(['/', '?']).next().unwrap_or_default();
    let host = authority.rsplit_once('@').map_or(authority, |(_, host)| host);
    match host.rsplit_once(':') {
        Some((_, port)) if !host.ends_with(']') => port.parse().unwrap_or(6379),
        _ => 6379,
    }
}

/// Waits until Redis lists no client on `ports`: every command the victim
/// sent has run (or never will). False after `limit`.
fn disconnected(con: &mut Connection, ports: &HashSet<u16>, limit: Duration) -> anyhow::Result<bool> {
    if ports.is_empty() {
        return Ok(true);
    }
    let deadline = Instant::now() + limit;
    loop {
        let list: String = redis::cmd("CLIENT").arg("LIST").query(con)?;
        let connected = list.lines().any(|line| {
            line.split_whitespace()
                .find_map(|f| f.strip_prefix("addr="))
                .and_then(|addr| addr.rsplit_once(':')?.1.parse::<u16>().ok())
                .is_some_and(|port| ports.contains(&port))
        });
        if !connected {
            return Ok(true);
        }
        if Instant::now() > deadline {
            return Ok(false);
        }
        std::thread::sleep(Duration::from_millis(2));
    }
}

/// What a victim held in Redis.
#[derive(Debug)]
struct Held {
    /// (pipeline, id) of each pending delivery entry (an empty id when the
    /// entry cannot be read).
    deliveries: Vec<(String, String)>,
    /// The longest any of them had been idle.
    idle: Duration,
    /// Pending poll entries.
    polls: usize,
}

/// What the consumers named `prefix*` (and not in `dead`) hold. The
/// consumers join `dead`.
fn held_by(streams: &mut Streams, prefix: &str, dead: &mut HashSet<String>) -> anyhow::Result<Held> {
    let Streams { con, polls, deliveries } = streams;
    let mut held_deliveries = Vec::new();
    let mut idle = Duration::ZERO;
    for (id, idle_ms) in pending_of(con, deliveries, prefix, dead)? {
        idle = idle.max(Duration::from_millis(idle_ms));
        let range: StreamRangeReply =
            redis::cmd("XRANGE").arg(&deliveries.stream).arg(&id).arg(&id).query(con)?;
        let item = range.ids.first().and_then(|e| e.get::<String>("item"));
        let job = item.and_then(|i| serde_json::from_str::<serde_json::Value>(&i).ok());
        let text = |v: &serde_json::Value, k: &str| v[k].as_str().unwrap_or_default().to_string();
        held_deliveries.push(job.map_or((id, String::new()), |j| (text(&j, "pipeline"), text(&j, "id"))));
    }
    let held_polls = pending_of(con, polls, prefix, dead)?.len();
    Ok(Held { deliveries: held_deliveries, idle, polls: held_polls })
}

/// Ids (and idle milliseconds) of the entries of `stream` pending for its
/// consumers named `prefix*` and not in `dead`; those consumers join `dead`.
fn pending_of(
    con: &mut Connection,
    stream: &StreamConfig,
    prefix: &str,
    dead: &mut HashSet<String>,
) -> anyhow::Result<Vec<(String, u64)>> {
    let consumers: StreamInfoConsumersReply =
        match redis::cmd("XINFO").arg("CONSUMERS").arg(&stream.stream).arg(&stream.group).query(con) {
            Ok(c) => c,
            // The stream or its group not there yet: nobody holds anything.
            Err(e) if e.to_string().contains("no such key") || e.to_string().contains("NOGROUP") => {
                return Ok(Vec::new())
            }
            Err(e) => return Err(e.into()),
        };
    let victims: Vec<String> = consumers
        .consumers
        .into_iter()
        .map(|c| c.name)
        .filter(|name| name.starts_with(prefix) && !dead.contains(name))
        .collect();
    if victims.len() > 1 {
        bail!("{} consumers of {} look like the victim's: {victims:?}", victims.len(), stream.stream);
    }
    let mut ids = Vec::new();
    for consumer in victims {
        let rows: Vec<(String, String, u64, u64)> = redis::cmd("XPENDING")
            .arg(&stream.stream)
            .arg(&stream.group)
            .arg("-")
            .arg("+")
            .arg(100_000)
            .arg(&consumer)
            .query(con)?;
        ids.extend(rows.into_iter().map(|(id, _, idle, _)| (id, idle)));
        dead.insert(consumer);
    }
    Ok(ids)
}

/// Delivery entries not yet done: in the stream (waiting or pending) or
/// waiting out a retry delay. Acknowledged entries are deleted.
fn backlog(streams: &mut Streams) -> anyhow::Result<u64> {
    let d = &streams.deliveries;
    let (len, delayed): (u64, u64) =
        redis::pipe().cmd("XLEN").arg(&d.stream).cmd("ZCARD").arg(d.delayed_key()).query(&mut streams.con)?;
    Ok(len + delayed)
}

/// Dead letters of the deliveries and the polls streams.
fn dead_letters(streams: &mut Streams) -> anyhow::Result<(u64, u64)> {
    let (d, p) = (streams.deliveries.dead_key(), streams.polls.dead_key());
    Ok(redis::pipe().cmd("XLEN").arg(d).cmd("XLEN").arg(p).query(&mut streams.con)?)
}

fn commands_processed(con: &mut Connection) -> anyhow::Result<u64> {
    let info: String = redis::cmd("INFO").arg("stats").query(con)?;
    info.lines()
        .find_map(|l| l.strip_prefix("total_commands_processed:")?.trim().parse().ok())
        .context("INFO stats has no total_commands_processed")
}

/// The host name consumer names start with (as `default_consumer_name` reads it).
fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "host".to_string())
}

/// `"<cores> cores, <cpu model>"` of this machine.
fn machine() -> String {
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo
        .lines()
        .find_map(|l| l.strip_prefix("model name")?.split_once(':').map(|(_, m)| m.trim().to_owned()))
        .unwrap_or_else(|| "unknown cpu".to_owned());
    format!("{cores} cores, {model}")
}

/// `git rev-parse --short HEAD`, and whether the tree had changes.
fn commit() -> String {
    let git = |args: &[&str]| {
        std::process::Command::new("git")
            .args(args)
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
    };
    match (git(&["rev-parse", "--short", "HEAD"]), git(&["status", "--porcelain", "--untracked-files=no"])) {
        (Some(head), Some(changes)) if changes.is_empty() => head,
        (Some(head), Some(_)) => format!("{head} (with uncommitted changes)"),
        _ => "unknown".to_string(),
    }
}
