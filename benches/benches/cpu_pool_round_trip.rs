//! Round trip of an empty job through the CPU pool from async code.
//!
//! Target (issue text): "Round trip of an empty job through cpu-pool from
//! async code: target ≤ 5 µs."
//!
//! Two readings, both reported in `BENCHMARKS.md`:
//!
//! - `isolated/*`: one job at a time, awaited from a task on a 1-worker
//!   multi-thread runtime (the engine's reactor shape) or from `block_on` on
//!   a current-thread runtime. The awaiting thread parks while the job runs
//!   and must be woken when it ends. The `baseline_*` entries do the same
//!   hand-off without the pool (bare rayon spawn and spawn_fifo, a plain
//!   parked thread, tokio's blocking pool) to show how much of the figure is
//!   the pool and how much is the hand-off.
//! - `loaded/*`: 64 producers submitting back to back on one reactor, as a
//!   busy engine does; criterion reports the time per job (throughput).
//!
//! Before criterion runs, an accounting table prints per job the median
//! round trip, wall and process CPU time, and voluntary/involuntary context
//! switches, for the same hand-offs, the pool with its spin for short jobs
//! turned off (`spin_wait_us = 0`: the producer always parks), and one
//! diagnostic: the reactor kept awake by a task that yields in a loop. Then
//! it prints what an idle pool costs, to show the spin is paid only while a
//! producer waits for a short job: the process CPU over one idle second.
//!
//! Run: `cargo bench -p switchyard-benches --bench cpu_pool_round_trip`.

use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

use criterion::{BenchmarkId, Criterion, Throughput};
use switchyard_benches::{machine, micros_histogram, ProcessCounters};
use switchyard_cpu_pool::{CpuPool, CpuPoolConfig};
use tokio::runtime::{Builder, Runtime};
use tokio::sync::oneshot;

/// Producers in the loaded readings.
const PRODUCERS: u64 = 64;

fn pool(queue_capacity: usize) -> CpuPool {
    // Threads and spin as the engine's defaults: one thread per core.
    CpuPool::new(&CpuPoolConfig { queue_capacity, ..CpuPoolConfig::default() }).expect("pool starts")
}

/// The pool with spinning off: its producers always park for the result.
fn parking_pool() -> CpuPool {
    CpuPool::new(&CpuPoolConfig { spin_wait_us: 0, ..CpuPoolConfig::default() }).expect("pool starts")
}

fn raw_rayon() -> rayon::ThreadPool {
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    rayon::ThreadPoolBuilder::new().num_threads(threads).build().expect("rayon pool starts")
}

/// The engine's reactor shape: a multi-thread runtime with one worker.
fn reactor() -> Runtime {
    Builder::new_multi_thread().worker_threads(1).enable_all().build().expect("runtime starts")
}

/// Runs `iters` sequential round trips inside a task on `rt`'s worker and
/// returns their total time.
fn sequential_on_worker<F, Fut>(rt: &Runtime, iters: u64, mut round_trip: F) -> Duration
where
    F: FnMut() -> Fut + Send + 'static,
    Fut: std::future::Future<Output = ()> + Send,
{
    rt.block_on(async move {
        tokio::spawn(async move {
            let start = Instant::now();
            for _ in 0..iters {
                round_trip().await;
            }
            start.elapsed()
        })
        .await
        .expect("bench task")
    })
}

/// Runs at least `iters` round trips split over [`PRODUCERS`] tasks on
/// `rt`'s worker; returns the time scaled to exactly `iters`.
fn concurrent_on_worker<F, Fut>(rt: &Runtime, iters: u64, round_trip: F) -> Duration
where
    F: Fn() -> Fut + Clone + Send + 'static,
    Fut: std::future::Future<Output = ()> + Send,
{
    let per_producer = iters.div_ceil(PRODUCERS);
    let elapsed = rt.block_on(async move {
        tokio::spawn(async move {
            let start = Instant::now();
            let producers: Vec<_> = (0..PRODUCERS)
                .map(|_| {
                    let round_trip = round_trip.clone();
                    tokio::spawn(async move {
                        for _ in 0..per_producer {
                            round_trip().await;
                        }
                    })
                })
                .collect();
            for producer in producers {
                producer.await.expect("producer");
            }
            start.elapsed()
        })
        .await
        .expect("bench task")
    });
    elapsed.mul_f64(iters as f64 / (per_producer * PRODUCERS) as f64)
}

fn isolated(c: &mut Criterion) {
    let mut group = c.benchmark_group("cpu_pool_round_trip/isolated");
    group.warm_up_time(Duration::from_secs(1)).measurement_time(Duration::from_secs(3));

    let current_thread = Builder::new_current_thread().enable_all().build().expect("runtime starts");
    let p = pool(0);
    group.bench_function("submit/block_on_current_thread", |b| {
        let p = &p;
        b.to_async(&current_thread).iter(|| async move { p.submit(|| ()).await.expect("job runs") });
    });

    let rt = reactor();
    group.bench_function("submit/task_on_reactor_worker", |b| {
        b.iter_custom(|iters| {
            let p = p.clone();
            sequential_on_worker(&rt, iters, move || {
                let job = p.submit(|| ());
                async move { job.await.expect("job runs") }
            })
        });
    });

    let rayon = std::sync::Arc::new(raw_rayon());
    group.bench_function("baseline_rayon_spawn/task_on_reactor_worker", |b| {
        b.iter_custom(|iters| {
            let rayon = rayon.clone();
            sequential_on_worker(&rt, iters, move || {
                let (tx, rx) = oneshot::channel();
                rayon.spawn(move || {
                    let _ = tx.send(());
                });
                async move { rx.await.expect("job runs") }
            })
        });
    });
    group.bench_function("baseline_rayon_spawn_fifo/task_on_reactor_worker", |b| {
        b.iter_custom(|iters| {
            let rayon = rayon.clone();
            sequential_on_worker(&rt, iters, move || {
                let (tx, rx) = oneshot::channel();
                rayon.spawn_fifo(move || {
                    let _ = tx.send(());
                });
                async move { rx.await.expect("job runs") }
            })
        });
    });

    // The floor for any hand-off to a thread that sleeps (no spinning) when
    // idle: one plain thread blocked on a channel, replying on a oneshot.
    let (jobs, inbox) = mpsc::channel::<oneshot::Sender<()>>();
    let parked = std::thread::spawn(move || {
        for reply in inbox {
            let _ = reply.send(());
        }
    });
    group.bench_function("baseline_parked_thread/task_on_reactor_worker", |b| {
        b.iter_custom(|iters| {
            let jobs = jobs.clone();
            sequential_on_worker(&rt, iters, move || {
                let (tx, rx) = oneshot::channel();
                jobs.send(tx).expect("thread alive");
                async move { rx.await.expect("job runs") }
            })
        });
    });

    group.bench_function("baseline_spawn_blocking/task_on_reactor_worker", |b| {
        b.iter_custom(|iters| {
            sequential_on_worker(&rt, iters, || async {
                tokio::task::spawn_blocking(|| ()).await.expect("job runs")
            })
        });
    });
    group.finish();
    drop(jobs);
    parked.join().expect("parked thread");
}

fn loaded(c: &mut Criterion) {
    let mut group = c.benchmark_group("cpu_pool_round_trip/loaded");
    group.warm_up_time(Duration::from_secs(1)).measurement_time(Duration::from_secs(3));
    group.throughput(Throughput::Elements(1));
    let rt = reactor();

    let default_capacity = pool(0);
    let capacity = default_capacity.queue_capacity();
    for (label, p) in [("default", default_capacity), ("64", pool(PRODUCERS as usize))] {
        let id = BenchmarkId::new(format!("submit/{PRODUCERS}_producers/queue_capacity"), label);
        group.bench_function(id, |b| {
            b.iter_custom(|iters| {
                let p = p.clone();
                concurrent_on_worker(&rt, iters, move || {
                    let job = p.submit(|| ());
                    async move { job.await.expect("job runs") }
                })
            });
        });
    }
    eprintln!("(queue_capacity default = {capacity} on this machine)");

    let rayon = std::sync::Arc::new(raw_rayon());
    group.bench_function(format!("baseline_rayon_spawn/{PRODUCERS}_producers"), |b| {
        b.iter_custom(|iters| {
            let rayon = rayon.clone();
            concurrent_on_worker(&rt, iters, move || {
                let (tx, rx) = oneshot::channel();
                rayon.spawn(move || {
                    let _ = tx.send(());
                });
                async move { rx.await.expect("job runs") }
            })
        });
    });
    group.finish();
}

/// How long each accounting row runs.
const ACCOUNTING_FOR: Duration = Duration::from_secs(1);

/// Runs round trips from `producers` tasks on `rt`'s worker for
/// [`ACCOUNTING_FOR`] and prints: the median round trip, wall time per job
/// (the mean for one producer, throughput cost for many), process CPU time
/// per job, and context switches per job. A voluntary switch per job is a
/// thread that went to sleep and had to be woken.
fn account<F, Fut>(rt: &Runtime, label: &str, producers: usize, keep_reactor_busy: bool, round_trip: F)
where
    F: Fn() -> Fut + Clone + Send + 'static,
    Fut: std::future::Future<Output = ()> + Send,
{
    let stop = Arc::new(AtomicBool::new(false));
    let spinner = keep_reactor_busy.then(|| {
        let stop = stop.clone();
        rt.spawn(async move {
            while !stop.load(Relaxed) {
                tokio::task::yield_now().await;
            }
        })
    });
    let (n, wall, hist, before, after) = rt.block_on(async move {
        tokio::spawn(async move {
            for _ in 0..1_000 {
                round_trip().await; // warm up
            }
            let before = ProcessCounters::read();
            let start = Instant::now();
            let tasks: Vec<_> = (0..producers)
                .map(|_| {
                    let round_trip = round_trip.clone();
                    tokio::spawn(async move {
                        let mut hist = micros_histogram();
                        let mut n = 0u64;
                        while start.elapsed() < ACCOUNTING_FOR {
                            let one = Instant::now();
                            round_trip().await;
                            // Nanoseconds, to keep sub-microsecond resolution.
                            hist.saturating_record(one.elapsed().as_nanos() as u64);
                            n += 1;
                        }
                        (n, hist)
                    })
                })
                .collect();
            let (mut n, mut hist) = (0, micros_histogram());
            for task in tasks {
                let (count, h) = task.await.expect("producer");
                n += count;
                hist.add(h).expect("same bounds");
            }
            (n, start.elapsed(), hist, before, ProcessCounters::read())
        })
        .await
        .expect("accounting task")
    });
    stop.store(true, Relaxed);
    if let Some(spinner) = spinner {
        rt.block_on(spinner).expect("spinner");
    }
    let per = |x: f64| x / n as f64;
    let (voluntary, involuntary) = after.switches_since(&before);
    println!(
        "{label:<62} {:>8.2} {:>8.2} {:>8.2} {:>7.2} {:>7.2}",
        hist.value_at_quantile(0.5) as f64 / 1e3,
        per(wall.as_secs_f64() * 1e6),
        per((after.cpu - before.cpu).as_secs_f64() * 1e6),
        per(voluntary as f64),
        per(involuntary as f64),
    );
}

/// Where a round trip's time goes, printed before criterion runs.
fn accounting() {
    println!("cpu_pool_round_trip: {}", machine());
    println!("where the time goes (tasks on a 1-worker reactor; per job: p50 round trip, wall, process CPU, switches):");
    println!(
        "{:<62} {:>8} {:>8} {:>8} {:>7} {:>7}",
        "round trip", "p50 µs", "wall µs", "cpu µs", "vol cs", "invol"
    );
    let rt = reactor();
    let default_capacity = pool(0);
    let submit = |p: &CpuPool| {
        let p = p.clone();
        move || {
            let job = p.submit(|| ());
            async move { job.await.expect("job runs") }
        }
    };
    account(&rt, "isolated: cpu-pool submit", 1, false, submit(&default_capacity));
    account(
        &rt,
        "isolated: cpu-pool submit, spin_wait_us = 0 (always parks)",
        1,
        false,
        submit(&parking_pool()),
    );
    account(
        &rt,
        "isolated: cpu-pool submit, reactor kept awake (diagnostic)",
        1,
        true,
        submit(&default_capacity),
    );
    let rayon = Arc::new(raw_rayon());
    for (label, fifo) in
        [("isolated: bare rayon spawn + oneshot", false), ("isolated: bare rayon spawn_fifo + oneshot", true)]
    {
        let rayon = rayon.clone();
        account(&rt, label, 1, false, move || {
            let (tx, rx) = oneshot::channel();
            let reply = move || {
                let _ = tx.send(());
            };
            if fifo {
                rayon.spawn_fifo(reply);
            } else {
                rayon.spawn(reply);
            }
            async move { rx.await.expect("job runs") }
        });
    }
    let (jobs, inbox) = mpsc::channel::<oneshot::Sender<()>>();
    let parked = std::thread::spawn(move || {
        for reply in inbox {
            let _ = reply.send(());
        }
    });
    account(&rt, "isolated: plain thread blocked on a channel + oneshot", 1, false, move || {
        let (tx, rx) = oneshot::channel();
        jobs.send(tx).expect("thread alive");
        async move { rx.await.expect("job runs") }
    });
    parked.join().expect("parked thread");
    let producers = PRODUCERS as usize;
    let label =
        format!("loaded: {producers} producers, queue_capacity {}", default_capacity.queue_capacity());
    account(&rt, &label, producers, false, submit(&default_capacity));
    let label = format!("loaded: {producers} producers, queue_capacity {producers}");
    account(&rt, &label, producers, false, submit(&pool(producers)));

    let idle = pool(0);
    rt.block_on(submit(&idle)());
    // Let rayon's threads finish their own brief search for work and sleep.
    std::thread::sleep(Duration::from_millis(200));
    let before = ProcessCounters::read();
    std::thread::sleep(ACCOUNTING_FOR);
    let after = ProcessCounters::read();
    println!(
        "idle: pools and reactor alive, no jobs, for {:?}: process CPU {} µs",
        ACCOUNTING_FOR,
        (after.cpu - before.cpu).as_micros()
    );
    println!();
}

// What `criterion_group!`/`criterion_main!` expand to, minus an undocumented `pub fn`.
fn main() {
    let mut c = Criterion::default().configure_from_args();
    // `--list` and the like: only criterion's output.
    if !std::env::args().any(|a| a == "--list" || a == "--test") {
        accounting();
    }
    isolated(&mut c);
    loaded(&mut c);
    c.final_summary();
}
