//! Memory per waiting task.
//!
//! Target (issue text): "Memory per waiting task (100,000 tasks parked on
//! timers or sleeping upstream requests): target ≤ 2 KB per task."
//!
//! Two variants, each in a fresh child process (a variant's freed memory,
//! kept by the allocator, would otherwise hide the next one's growth):
//!
//! - `timer`: a `hybrid` engine admits [`TIMER_TASKS`] tasks that each sleep
//!   on a tokio timer.
//! - `http`: a `hybrid` engine admits [`HTTP_TASKS`] tasks that each await a
//!   real HTTP GET against PZ-1 upstreams that answer only after a minute.
//!   The upstreams run in another child process, so their memory is not
//!   counted; HTTP/1 needs a connection per waiting request, so this counts
//!   the client connection (its hyper task and buffers) too. Needs
//!   `ulimit -n` above `HTTP_TASKS` (plus a margin).
//! - `tcp`: as `http`, but each task writes its GET on a bare tokio
//!   `TcpStream` and awaits the answer into a 256-byte buffer: not a target,
//!   the floor for a task parked on a socket, which tells the HTTP client's
//!   share of the `http` figure apart.
//!
//! Each variant first runs a warm-up batch through the same path, reads
//! `VmRSS`, admits its tasks, waits until every one is parked (and, for
//! HTTP, every socket is open), reads `VmRSS` again and prints
//! `(after - before) / tasks`. Kernel socket buffers are not in RSS; the
//! system-wide TCP buffer pages are printed alongside for the HTTP variant.
//!
//! Run: `cargo bench -p switchyard-benches --bench memory_per_task`
//! (`-- timer`, `-- http` or `-- tcp` for one variant).

use std::io::{BufRead, BufReader, Read, Write};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant};

use switchyard::io_reactor::{EgressConfig, HttpConfig};
use switchyard::telemetry::ProcessSample;
use switchyard::{Engine, MemorySource, Running, TaskContext, TaskError};
use switchyard_benches::{machine, open_fds, open_files_limit};
use switchyard_pz1::Pz1Upstream;

/// Tasks parked on timers.
const TIMER_TASKS: usize = 100_000;
/// Tasks parked on upstream requests.
const HTTP_TASKS: usize = 10_000;
/// Upstream servers, so no one server holds every waiting connection.
const UPSTREAMS: usize = 3;
/// Tasks run to completion before the first reading.
const WARM_UP: usize = 64;
/// How long a parked task waits: far longer than the measurement.
const HOLD: Duration = Duration::from_secs(60);
/// Gives up waiting for the tasks to park after this long.
const PARK_DEADLINE: Duration = Duration::from_secs(60);
/// Selects what a (re-executed) process of this bench does.
const ROLE: &str = "SWITCHYARD_BENCH_MEMORY_ROLE";

fn main() {
    match std::env::var(ROLE).as_deref() {
        Ok("upstream") => return serve_upstreams(),
        Ok("timer") => return timer_variant(),
        Ok("http") => return socket_variant(Client::Http),
        Ok("tcp") => return socket_variant(Client::RawTcp),
        _ => {}
    }
    let filters: Vec<String> = std::env::args().skip(1).filter(|a| !a.starts_with("--")).collect();
    println!("memory_per_task: {}", machine());
    let exe = std::env::current_exe().expect("own path");
    for variant in ["timer", "http", "tcp"] {
        if !filters.is_empty() && !filters.iter().any(|f| variant.contains(f.as_str())) {
            continue;
        }
        let status = Command::new(&exe).env(ROLE, variant).status().expect("variant runs");
        assert!(status.success(), "{variant} variant failed: {status}");
    }
}

fn rss() -> u64 {
    ProcessSample::read().expect("linux /proc").rss_bytes
}

fn mib(bytes: u64) -> String {
    format!("{:.1} MiB", bytes as f64 / (1024.0 * 1024.0))
}

/// Polls `done` every 20 ms until it holds; false after [`PARK_DEADLINE`].
fn wait_until(mut done: impl FnMut() -> bool) -> bool {
    let start = Instant::now();
    while !done() {
        if start.elapsed() > PARK_DEADLINE {
            return false;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    true
}

/// Prints the figure; `target` is false for a variant that is only a floor.
fn report(variant: &str, tasks: usize, before: u64, after: u64, running: &Running, target: bool) {
    let per_task = after.saturating_sub(before) as f64 / tasks as f64;
    let verdict = match (target, per_task <= 2048.0) {
        (false, _) => "floor, not a target",
        (true, true) => "target <= 2048: MET",
        (true, false) => "target <= 2048: MISSED",
    };
    println!(
        "{variant:<6} {tasks:>7} tasks parked (in_flight {}): VmRSS {} -> {} = {:.0} bytes per task; {verdict}",
        running.stats().in_flight,
        mib(before),
        mib(after),
        per_task,
    );
}

fn timer_variant() {
    let engine = Engine::builder().max_in_flight(TIMER_TASKS).build().expect("engine starts");
    let parked = Arc::new(AtomicUsize::new(0));
    let (producer, source) = MemorySource::bounded(1_024);
    let running = engine
        .block_on(engine.start(source, {
            let parked = parked.clone();
            move |_cx: TaskContext, hold: bool| {
                let parked = parked.clone();
                async move {
                    if hold {
                        parked.fetch_add(1, Relaxed);
                        tokio::time::sleep(HOLD).await;
                    }
                    Ok::<_, TaskError>(())
                }
            }
        }))
        .expect("reactor runs")
        .expect("run starts");

    let feed = |hold: bool, n: usize, from: usize| {
        engine
            .block_on(async {
                for i in from..from + n {
                    producer.send(hold, format!("task-{i}")).await.expect("source open");
                }
            })
            .expect("reactor runs");
    };
    feed(false, WARM_UP, 0);
    assert!(wait_until(|| running.stats().ok == WARM_UP as u64), "warm-up did not finish");
    std::thread::sleep(Duration::from_millis(200));
    let before = rss();

    feed(true, TIMER_TASKS, WARM_UP);
    let all_parked =
        wait_until(|| parked.load(Relaxed) == TIMER_TASKS && running.stats().in_flight == TIMER_TASKS);
    assert!(all_parked, "only {} of {TIMER_TASKS} tasks parked", parked.load(Relaxed));
    std::thread::sleep(Duration::from_millis(200));
    let after = rss();
    report("timer", TIMER_TASKS, before, after, &running, true);

    drop(producer);
    let report = engine.block_on(running.shutdown(Duration::ZERO)).expect("reactor runs");
    assert_eq!(report.stats.abandoned, TIMER_TASKS as u64, "{:?}", report.stats);
}

/// How the socket variants wait on the upstream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Client {
    /// `cx.http().get(..)`: the engine's HTTP client (hyper-util, HTTP/1.1).
    Http,
    /// A bare tokio `TcpStream` writing the request by hand and awaiting the
    /// first bytes of the answer into a 256-byte buffer: the floor for a
    /// task parked on a socket, to tell the HTTP client's share apart.
    RawTcp,
}

impl Client {
    fn label(self) -> &'static str {
        match self {
            Client::Http => "http",
            Client::RawTcp => "tcp",
        }
    }
}

/// Connects to `base` (`http://host:port`), sends one GET for `path` and
/// waits for the first bytes of the answer.
async fn raw_get(base: &str, path: &str) -> std::io::Result<usize> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let addr = base.trim_start_matches("http://");
    let mut stream = tokio::net::TcpStream::connect(addr).await?;
    let request = format!("GET {path} HTTP/1.1\r\nhost: {addr}\r\nconnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await?;
    let mut buf = [0u8; 256];
    match stream.read(&mut buf).await? {
        0 => Err(std::io::ErrorKind::UnexpectedEof.into()),
        n => Ok(n),
    }
}

fn socket_variant(client: Client) {
    let name = client.label();
    let limit = open_files_limit().unwrap_or(0);
    if limit < (HTTP_TASKS + 1_024) as u64 {
        println!(
            "{name:<6} skipped: open-files limit {limit} is below {} (raise it: `ulimit -n 65536`)",
            HTTP_TASKS + 1_024
        );
        return;
    }
    // The upstreams, in a process of their own so their memory is not counted.
    let mut upstream = Command::new(std::env::current_exe().expect("own path"))
        .env(ROLE, "upstream")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("upstream process starts");
    let mut lines = BufReader::new(upstream.stdout.take().expect("piped")).lines();
    let bases: Arc<Vec<String>> =
        Arc::new((0..UPSTREAMS).map(|_| lines.next().expect("upstream address").expect("utf-8")).collect());

    let http = HttpConfig {
        max_in_flight_per_host: HTTP_TASKS,
        pool_max_idle_per_host: HTTP_TASKS,
        connect_timeout_ms: 30_000,
        request_timeout_ms: 2 * HOLD.as_millis() as u64,
        // The upstreams run on this machine.
        egress: EgressConfig::allowing_loopback(),
        ..HttpConfig::default()
    };
    let engine = Engine::builder().max_in_flight(HTTP_TASKS).http(http).build().expect("engine starts");
    let (producer, source) = MemorySource::bounded(1_024);
    let running = engine
        .block_on(engine.start(source, {
            let bases = bases.clone();
            move |cx: TaskContext, (i, delay_ms): (usize, u64)| {
                let base = bases[i % bases.len()].clone();
                async move {
                    let path = format!("/poll/m?seq=1&n=1&fresh=1&delay_ms={delay_ms}");
                    match client {
                        Client::Http => {
                            drop(cx.http().get(&format!("{base}{path}")).await?.error_for_status()?)
                        }
                        Client::RawTcp => drop(raw_get(&base, &path).await?),
                    }
                    Ok::<_, TaskError>(())
                }
            }
        }))
        .expect("reactor runs")
        .expect("run starts");

    let feed = |delay_ms: u64, n: usize, from: usize| {
        engine
            .block_on(async {
                for i in from..from + n {
                    producer.send((i, delay_ms), format!("get-{i}")).await.expect("source open");
                }
            })
            .expect("reactor runs");
    };
    feed(0, WARM_UP, 0);
    assert!(wait_until(|| running.stats().ok == WARM_UP as u64), "warm-up failed: {:?}", running.stats());
    std::thread::sleep(Duration::from_millis(200));
    let (before, fds_before, tcp_before) = (rss(), open_fds(), tcp_buffer_pages());

    feed(HOLD.as_millis() as u64, HTTP_TASKS, WARM_UP);
    // Warm-up connections idle in the HTTP pool are reused, so at least this many are new.
    let new_sockets = HTTP_TASKS - WARM_UP;
    let connected =
        wait_until(|| running.stats().in_flight == HTTP_TASKS && open_fds() >= fds_before + new_sockets);
    let stats = running.stats();
    assert!(connected, "only {} sockets opened for {} tasks: {stats:?}", open_fds() - fds_before, HTTP_TASKS);
    assert_eq!(stats.failed, 0, "requests failed: {:?}", running.recent_failures());
    // Requests written, connection tasks parked on their reads.
    std::thread::sleep(Duration::from_millis(1_000));
    let after = rss();
    report(name, HTTP_TASKS, before, after, &running, client == Client::Http);
    println!(
        "       sockets opened {}; system-wide TCP buffer pages {} -> {} (kernel memory, not in RSS)",
        open_fds() - fds_before,
        tcp_before,
        tcp_buffer_pages()
    );

    drop(producer);
    let report = engine.block_on(running.shutdown(Duration::ZERO)).expect("reactor runs");
    assert_eq!(report.stats.abandoned, HTTP_TASKS as u64, "{:?}", report.stats);
    // Closing its stdin stops the upstream process.
    drop(upstream.stdin.take());
    let deadline = Instant::now() + Duration::from_secs(10);
    while upstream.try_wait().expect("upstream status").is_none() {
        if Instant::now() > deadline {
            let _ = upstream.kill();
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = upstream.wait();
}

/// Child process: starts the upstreams, prints their base URLs, serves until
/// stdin closes.
fn serve_upstreams() {
    let loopback = std::net::SocketAddr::from(([127, 0, 0, 1], 0));
    let upstreams: Vec<Pz1Upstream> =
        (0..UPSTREAMS).map(|_| Pz1Upstream::start(loopback).expect("upstream starts")).collect();
    let mut stdout = std::io::stdout().lock();
    for upstream in &upstreams {
        writeln!(stdout, "{}", upstream.base_url()).expect("parent reads");
    }
    stdout.flush().expect("parent reads");
    let _ = std::io::stdin().read_to_end(&mut Vec::new());
    // No graceful drain: the parent has already given up on every request.
    std::process::exit(0);
}

/// `mem` of the TCP line in `/proc/net/sockstat`: pages of socket buffers, system-wide.
fn tcp_buffer_pages() -> u64 {
    let sockstat = std::fs::read_to_string("/proc/net/sockstat").unwrap_or_default();
    sockstat
        .lines()
        .find(|l| l.starts_with("TCP:"))
        .and_then(|l| {
            let fields: Vec<&str> = l.split_whitespace().collect();
            let at = fields.iter().position(|f| *f == "mem")?;
            fields.get(at + 1)?.parse().ok()
        })
        .unwrap_or(0)
}
