//! Isolation between upstream hosts: does a bad host slow the work that
//! uses a good one?
//!
//! Figure (issue text): "two loopback upstream hosts serving pipelines; one
//! slowed by 10 s (then failing 100%): the other host's throughput drops
//! < 10% and its latency p99 stays within 10%, same run, with and without
//! the breaker."
//!
//! One engine (`hybrid`, `max_in_flight` [`MAX_IN_FLIGHT`]) runs tasks that
//! each GET one of two loopback hosts, [`RATE`] tasks a second per host,
//! offered on a fixed schedule. Host A answers in 20 ms for [`PHASE`], then
//! in 10 s for [`PHASE`], then fails every request (503) for [`PHASE`]; host
//! B answers in 20 ms throughout. For host B's tasks the bench prints, per
//! phase, the completions per second and the latency p99 from the moment
//! the task was offered (admission wait included: that is where a bad
//! host's held slots would show). Each configuration, breaker on and off,
//! runs [`REPEATS`] times in alternating order, in one process; the summary
//! gives medians and ranges of B's throughput and p99 in phases 2 and 3 as
//! ratios to phase 1 of the same run.
//!
//! Run: `cargo bench -p switchyard-benches --bench host_isolation`

use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use switchyard::io_reactor::server::{respond, Handler, ServerThread};
use switchyard::io_reactor::{BreakerConfig, EgressConfig, HttpConfig};
use switchyard::{Engine, ExecutionModel, MemorySource, TaskContext, TaskError};
use switchyard_benches::{machine, micros_histogram, quantile, record};

/// Tasks offered per second to each host.
const RATE: u64 = 100;
/// Length of each phase.
const PHASE: Duration = Duration::from_secs(10);
/// Tasks admitted at once.
const MAX_IN_FLIGHT: usize = 512;
/// Runs of each configuration.
const REPEATS: usize = 3;
/// How long the slow host takes to answer.
const SLOW: Duration = Duration::from_secs(10);

const HEALTHY: u8 = 0;
const SLOWED: u8 = 1;
const FAILING: u8 = 2;

/// A loopback host whose behaviour `mode` sets.
fn host(name: &str, mode: Arc<AtomicU8>) -> ServerThread {
    let handler: Handler = Arc::new(move |_req| {
        let mode = mode.load(Ordering::Relaxed);
        Box::pin(async move {
            match mode {
                HEALTHY => tokio::time::sleep(Duration::from_millis(20)).await,
                SLOWED => tokio::time::sleep(SLOW).await,
                _ => return respond(503, "text/plain", "failing"),
            }
            respond(200, "application/json", "{}")
        })
    });
    ServerThread::start(([127, 0, 0, 1], 0).into(), name, 4_096, handler).expect("loopback host")
}

/// One task: which host, and when it was offered.
#[derive(Debug, Clone)]
struct Job {
    url: String,
    good_host: bool,
    phase: usize,
    offered: Instant,
}

/// Host B's figures in one phase.
#[derive(Debug, Clone, Copy)]
struct PhaseFigures {
    per_second: f64,
    p99: Duration,
}

fn run_once(breaker: bool) -> [PhaseFigures; 3] {
    let mode = Arc::new(AtomicU8::new(HEALTHY));
    let bad = host("bad-host", Arc::clone(&mode));
    let good = host("good-host", Arc::new(AtomicU8::new(HEALTHY)));
    let http = HttpConfig {
        egress: EgressConfig::allowing_loopback(),
        request_timeout_ms: 15_000,
        breaker: BreakerConfig { enabled: breaker, slow_call_ms: 1_000, ..BreakerConfig::default() },
        ..HttpConfig::default()
    };
    let engine = Engine::builder()
        .model(ExecutionModel::Hybrid)
        .max_in_flight(MAX_IN_FLIGHT)
        .http(http)
        .build()
        .expect("engine");
    let good_done: Arc<Mutex<Vec<Histogram<u64>>>> = Arc::new(Mutex::new(vec![micros_histogram(); 3]));
    let (producer, source) = MemorySource::bounded(100_000);
    let done = Arc::clone(&good_done);
    let runner = engine.clone();
    engine
        .block_on(async move {
            let running = runner
                .start(source, move |cx: TaskContext, job: Job| {
                    let done = Arc::clone(&done);
                    async move {
                        let result = cx.http().get(&job.url).await;
                        if job.good_host && result.as_ref().is_ok_and(|r| r.status.is_success()) {
                            record(&mut done.lock().unwrap()[job.phase], job.offered.elapsed());
                        }
                        Ok::<(), TaskError>(())
                    }
                })
                .await
                .expect("start");
            let started = tokio::time::Instant::now();
            let mut tick = tokio::time::interval(Duration::from_secs_f64(1.0 / (2 * RATE) as f64));
            let mut n = 0u64;
            loop {
                tick.tick().await;
                let phase = (started.elapsed().as_secs_f64() / PHASE.as_secs_f64()) as usize;
                if phase >= 3 {
                    break;
                }
                mode.store([HEALTHY, SLOWED, FAILING][phase], Ordering::Relaxed);
                n += 1;
                let good_host = n.is_multiple_of(2);
                let addr = if good_host { good.addr() } else { bad.addr() };
                let job = Job { url: format!("http://{addr}/"), good_host, phase, offered: Instant::now() };
                // Never blocks: the queue is far larger than one run offers.
                let _ = producer.try_send(job, "isolation");
            }
            // Host B's tasks of the last phase get their time to finish.
            tokio::time::sleep(Duration::from_secs(2)).await;
            drop(running);
        })
        .expect("run");
    let histograms = good_done.lock().unwrap().clone();
    std::array::from_fn(|i| PhaseFigures {
        per_second: histograms[i].len() as f64 / PHASE.as_secs_f64(),
        p99: quantile(&histograms[i], 0.99),
    })
}

fn median_range(mut values: Vec<f64>) -> String {
    values.sort_by(f64::total_cmp);
    format!("{:.3} [{:.3}-{:.3}]", values[values.len() / 2], values[0], values[values.len() - 1])
}

fn main() {
    println!("# host isolation: {}", machine());
    println!(
        "# {RATE} tasks/s per host, phases of {} s: A healthy, A answering in {} s, A failing (503); max_in_flight {MAX_IN_FLIGHT}",
        PHASE.as_secs(),
        SLOW.as_secs()
    );
    let mut results: Vec<(bool, [PhaseFigures; 3])> = Vec::new();
    for repeat in 0..REPEATS {
        let order = if repeat.is_multiple_of(2) { [true, false] } else { [false, true] };
        for breaker in order {
            let figures = run_once(breaker);
            println!(
                "run {repeat} breaker={:<5} B/s {:.1} {:.1} {:.1}  B p99 ms {:.1} {:.1} {:.1}",
                breaker,
                figures[0].per_second,
                figures[1].per_second,
                figures[2].per_second,
                figures[0].p99.as_secs_f64() * 1e3,
                figures[1].p99.as_secs_f64() * 1e3,
                figures[2].p99.as_secs_f64() * 1e3,
            );
            results.push((breaker, figures));
        }
    }
    for breaker in [true, false] {
        let runs: Vec<_> = results.iter().filter(|(b, _)| *b == breaker).map(|(_, f)| f).collect();
        let ratio = |phase: usize, f: fn(&PhaseFigures) -> f64| {
            median_range(runs.iter().map(|r| f(&r[phase]) / f(&r[0])).collect())
        };
        println!(
            "breaker={breaker}: B throughput vs healthy: slowed {} failing {}; B p99 vs healthy: slowed {} failing {}",
            ratio(1, |p| p.per_second),
            ratio(2, |p| p.per_second),
            ratio(1, |p| p.p99.as_secs_f64()),
            ratio(2, |p| p.p99.as_secs_f64()),
        );
    }
}
