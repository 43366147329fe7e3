//! Admission, settlement, shutdown and abandonment, on paused time: the
//! engine runs on the test's own runtime (attached), and tasks wait on
//! tokio timers, so every duration below is exact and no test sleeps.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::runtime::Handle;
use tokio::time::Instant;

use crate::source::{BoxFuture, Delivery, Settle, Source, SourceError};
use crate::{Engine, TaskContext, TaskError};

/// What happened to the items, in order: `(item, "ack" | "nack")`.
type SettleLog = Arc<Mutex<Vec<(u32, &'static str)>>>;

/// A source that hands out a fixed list of items, records every `max` the
/// engine asked for, and can fail its first read or stay open when empty.
struct ScriptedSource {
    items: VecDeque<u32>,
    asked: Arc<Mutex<Vec<usize>>>,
    settled: SettleLog,
    fail_first_read: bool,
    stay_open: bool,
    /// Items that carry their own task timeout.
    timeouts: Vec<(u32, Duration)>,
}

impl ScriptedSource {
    fn new(items: impl IntoIterator<Item = u32>) -> Self {
        ScriptedSource {
            items: items.into_iter().collect(),
            asked: Arc::default(),
            settled: Arc::default(),
            fail_first_read: false,
            stay_open: false,
            timeouts: Vec::new(),
        }
    }
}

struct LoggedSettle {
    item: u32,
    log: SettleLog,
}

impl Settle for LoggedSettle {
    fn ack(self: Box<Self>) -> BoxFuture<Result<(), SourceError>> {
        self.log.lock().unwrap().push((self.item, "ack"));
        Box::pin(async { Ok(()) })
    }
    fn nack(self: Box<Self>, _retry_after: Duration) -> BoxFuture<Result<(), SourceError>> {
        self.log.lock().unwrap().push((self.item, "nack"));
        Box::pin(async { Ok(()) })
    }
    fn fail(self: Box<Self>, _reason: &str, _panicked: bool) -> BoxFuture<Result<(), SourceError>> {
        self.log.lock().unwrap().push((self.item, "fail"));
        Box::pin(async { Ok(()) })
    }
}

impl Source for ScriptedSource {
    type Item = u32;

    async fn next_batch(&mut self, max: usize) -> Result<Option<Vec<Delivery<u32>>>, SourceError> {
        self.asked.lock().unwrap().push(max);
        if std::mem::take(&mut self.fail_first_read) {
            return Err("the source is down".into());
        }
        if self.items.is_empty() {
            if self.stay_open {
                std::future::pending::<()>().await;
            }
            return Ok(None);
        }
        let n = max.min(self.items.len());
        let batch = self
            .items
            .drain(..n)
            .map(|item| {
                let settle = Box::new(LoggedSettle { item, log: self.settled.clone() });
                let d = Delivery::new(item, format!("item-{item}"), 1, std::time::Instant::now(), settle);
                match self.timeouts.iter().find(|(i, _)| *i == item) {
                    Some((_, timeout)) => d.with_timeout(*timeout),
                    None => d,
                }
            })
            .collect();
        Ok(Some(batch))
    }
}

fn engine(max_in_flight: usize) -> Engine {
    engine_with(max_in_flight, crate::DEFAULT_TASK_TIMEOUT_MS)
}

fn engine_with(max_in_flight: usize, task_timeout_ms: u64) -> Engine {
    let config = crate::EngineConfig { max_in_flight, task_timeout_ms, ..Default::default() };
    Engine::builder()
        .config(config)
        .runtime_handle(Handle::current())
        .cpu_threads(1)
        .build()
        .expect("engine builds")
}

/// A task that waits `secs` seconds, counting how many run at once.
fn sleeper(
    secs: u64,
    running: Arc<AtomicUsize>,
    peak: Arc<AtomicUsize>,
) -> impl Fn(TaskContext, u32) -> BoxFuture<Result<(), TaskError>> + Send + Sync + 'static {
    move |_cx, _item| {
        let (running, peak) = (running.clone(), peak.clone());
        Box::pin(async move {
            let now = running.fetch_add(1, Ordering::SeqCst) + 1;
            peak.fetch_max(now, Ordering::SeqCst);
            tokio::time::sleep(Duration::from_secs(secs)).await;
            running.fetch_sub(1, Ordering::SeqCst);
            Ok(())
        })
    }
}

#[tokio::test(start_paused = true)]
async fn admission_never_exceeds_max_in_flight_and_asks_only_for_free_slots() {
    let engine = engine(4);
    let source = ScriptedSource::new(0..20);
    let (asked, settled) = (source.asked.clone(), source.settled.clone());
    let (running, peak) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let started = Instant::now();
    let run = engine.start(source, sleeper(1, running, peak.clone())).await.unwrap();
    let report = run.finished().await;

    assert_eq!(report.stats.ok, 20);
    assert_eq!(peak.load(Ordering::SeqCst), 4, "four at a time, never more");
    assert_eq!(report.stats.peak_in_flight, 4);
    // 20 one-second tasks, four at a time: five waves.
    let took = started.elapsed();
    assert!(took >= Duration::from_secs(5) && took < Duration::from_secs(6), "{took:?}");
    let asked = asked.lock().unwrap().clone();
    assert!(asked.iter().all(|&max| (1..=4).contains(&max)), "asked for more than free slots: {asked:?}");
    assert_eq!(asked[0], 4, "an idle engine asks for all its slots");
    assert_eq!(settled.lock().unwrap().len(), 20);
    assert!(settled.lock().unwrap().iter().all(|(_, how)| *how == "ack"));
    engine.shutdown(Duration::ZERO).await;
}

#[tokio::test(start_paused = true)]
async fn a_failed_read_is_counted_and_retried_after_a_pause() {
    let engine = engine(2);
    let mut source = ScriptedSource::new(0..3);
    source.fail_first_read = true;
    let asked = source.asked.clone();
    let started = Instant::now();
    let run = engine.start(source, |_cx, _item: u32| async { Ok::<_, TaskError>(()) }).await.unwrap();
    let report = run.finished().await;
    assert_eq!((report.stats.ok, report.stats.source_errors), (3, 1));
    assert!(started.elapsed() >= super::admission::SOURCE_ERROR_BACKOFF, "no hot loop on a broken source");
    assert!(asked.lock().unwrap().len() >= 3);
    engine.shutdown(Duration::ZERO).await;
}

#[tokio::test(start_paused = true)]
async fn retries_are_nacked_and_failures_failed_with_their_reason() {
    let engine = engine(8);
    let source = ScriptedSource::new(0..3);
    let settled = source.settled.clone();
    let run = engine
        .start(source, |_cx, item: u32| async move {
            match item {
                0 => Ok(()),
                1 => Err(TaskError::retry_after("try later", Duration::from_secs(1))),
                _ => Err(TaskError::fatal("bad item")),
            }
        })
        .await
        .unwrap();
    let report = run.finished().await;
    assert_eq!((report.stats.ok, report.stats.retried, report.stats.failed), (1, 1, 1));
    let mut settled = settled.lock().unwrap().clone();
    settled.sort();
    assert_eq!(settled, [(0, "ack"), (1, "nack"), (2, "fail")]);
    let failures = run.recent_failures();
    assert_eq!(failures.len(), 2);
    assert!(failures.iter().any(|f| f.label == "item-2" && f.reason == "bad item"), "{failures:?}");
    engine.shutdown(Duration::ZERO).await;
}

#[tokio::test(start_paused = true)]
async fn shutdown_stops_intake_and_lets_tasks_finish_within_the_deadline() {
    let engine = engine(3);
    let mut source = ScriptedSource::new(0..10);
    source.stay_open = true;
    let settled = source.settled.clone();
    let (running, peak) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let run = engine.start(source, sleeper(2, running, peak)).await.unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let started = Instant::now();
    let report = run.shutdown(Duration::from_secs(10)).await;

    assert!(report.finished_in_time && report.unfinished.is_empty(), "{report:?}");
    assert_eq!((report.stats.admitted, report.stats.ok, report.stats.abandoned), (3, 3, 0));
    let took = started.elapsed();
    assert!(took >= Duration::from_millis(1500) && took < Duration::from_secs(2), "{took:?}");
    assert_eq!(settled.lock().unwrap().len(), 3, "nothing admitted after shutdown began");
    engine.shutdown(Duration::ZERO).await;
}

#[tokio::test(start_paused = true)]
async fn tasks_past_the_deadline_are_abandoned_unsettled_and_named() {
    let engine = engine(3);
    let source = ScriptedSource::new([7, 8, 9]);
    let settled = source.settled.clone();
    let (running, peak) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let run = engine.start(source, sleeper(60, running.clone(), peak)).await.unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    let started = Instant::now();
    let report = run.shutdown(Duration::from_secs(1)).await;

    assert!(!report.finished_in_time);
    assert_eq!(report.unfinished, ["item-7", "item-8", "item-9"]);
    assert_eq!((report.stats.abandoned, report.stats.ok, report.stats.in_flight), (3, 0, 0));
    // The deadline, not the tasks' minute, bounds shutdown.
    let took = started.elapsed();
    assert!(took >= Duration::from_secs(1) && took < Duration::from_secs(2), "{took:?}");
    assert!(
        settled.lock().unwrap().is_empty(),
        "an abandoned item is left for a durable source to redeliver"
    );
    assert_eq!(running.load(Ordering::SeqCst), 3, "abandoned futures were dropped at their await");
    engine.shutdown(Duration::ZERO).await;
}

#[tokio::test(start_paused = true)]
async fn a_task_past_its_deadline_is_cancelled_nacked_counted_and_named() {
    // The engine's timeout is 10 s; item 2 has 3 s of its own, item 3 has 100 s.
    let engine = engine_with(8, 10_000);
    let mut source = ScriptedSource::new([1, 2, 3, 4]);
    source.timeouts = vec![(2, Duration::from_secs(3)), (3, Duration::from_secs(100))];
    let settled = source.settled.clone();
    let reached_the_end = Arc::new(Mutex::new(Vec::new()));
    let ends = reached_the_end.clone();
    let started = Instant::now();
    let run = engine
        .start(source, move |_cx, item: u32| {
            let ends = ends.clone();
            async move {
                let secs = match item {
                    1 => 1,   // well within 10 s
                    2 => 5,   // past its own 3 s
                    3 => 50,  // past the engine's 10 s, within its own 100 s
                    _ => 600, // past the engine's 10 s
                };
                tokio::time::sleep(Duration::from_secs(secs)).await;
                ends.lock().unwrap().push(item);
                Ok::<_, TaskError>(())
            }
        })
        .await
        .unwrap();
    let report = run.finished().await;

    assert_eq!((report.stats.ok, report.stats.timed_out, report.stats.failed), (2, 2, 0), "{report:?}");
    let mut ends = reached_the_end.lock().unwrap().clone();
    ends.sort();
    assert_eq!(ends, [1, 3], "timed-out tasks were dropped at their await");
    // Item 4 was cancelled at 10 s, not after its ten minutes.
    let took = started.elapsed();
    assert!(took >= Duration::from_secs(50) && took < Duration::from_secs(51), "{took:?}");

    let mut settled = settled.lock().unwrap().clone();
    settled.sort();
    assert_eq!(settled, [(1, "ack"), (2, "nack"), (3, "ack"), (4, "nack")], "timed out: handed back");

    let timeouts = run.recent_timeouts();
    let named: Vec<_> = timeouts.iter().map(|t| (t.label.as_str(), t.timeout.as_secs(), t.attempt)).collect();
    assert_eq!(named, [("item-2", 3, 1), ("item-4", 10, 1)]);
    assert!(timeouts.iter().all(|t| t.overrun < Duration::from_millis(10)), "{timeouts:?}");
    let failures = run.recent_failures();
    assert!(
        failures.iter().any(|f| f.label == "item-4"
            && f.outcome == switchyard_protocol::TaskOutcome::TimedOut
            && f.reason.starts_with("timed out after 10s")),
        "{failures:?}"
    );
    engine.shutdown(Duration::ZERO).await;
}

#[tokio::test(start_paused = true)]
async fn a_task_sees_its_deadline_and_its_cancellation() {
    let engine = engine_with(2, 2_000);
    let source = ScriptedSource::new([1]);
    let seen = Arc::new(Mutex::new(None));
    let seen_by_task = seen.clone();
    let run = engine
        .start(source, move |cx: TaskContext, _item: u32| {
            let seen = seen_by_task.clone();
            async move {
                let start = Instant::now();
                let until = cx.deadline() - start.into_std();
                let remaining = cx.remaining();
                // A helper the task spawned outlives the task: it learns of
                // the cancellation from the context and stops.
                let (cancelled, cx) = (cx.cancelled(), cx.clone());
                tokio::spawn(async move {
                    cancelled.await;
                    *seen.lock().unwrap() = Some((until, remaining, start.elapsed(), cx.is_cancelled()));
                });
                tokio::time::sleep(Duration::from_secs(60)).await;
                Ok::<_, TaskError>(())
            }
        })
        .await
        .unwrap();
    let report = run.finished().await;
    assert_eq!(report.stats.timed_out, 1);
    for _ in 0..100 {
        if seen.lock().unwrap().is_some() {
            break;
        }
        tokio::task::yield_now().await;
    }
    let (until, remaining, cancelled_after, is_cancelled) = seen.lock().unwrap().expect("the helper ran");
    let two = Duration::from_secs(2);
    assert_eq!((until, remaining, cancelled_after), (two, two, two));
    assert!(is_cancelled);
    engine.shutdown(Duration::ZERO).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cpu_step_outliving_its_task_returns_its_slot_and_its_result_is_dropped() {
    let engine = engine_with(4, 50);
    let pool = engine.cpu_pool().expect("hybrid has a pool").clone();
    let source = ScriptedSource::new([1]);
    let settled = source.settled.clone();
    let after_cpu = Arc::new(AtomicUsize::new(0));
    let reached = after_cpu.clone();
    let started = std::time::Instant::now();
    let run = engine
        .start(source, move |cx: TaskContext, _item: u32| {
            let reached = reached.clone();
            async move {
                cx.cpu(|| std::thread::sleep(Duration::from_millis(400))).await?;
                reached.fetch_add(1, Ordering::SeqCst);
                Ok::<_, TaskError>(())
            }
        })
        .await
        .unwrap();
    let report = run.finished().await;
    // Cancelled at its 50 ms deadline, not when the 400 ms step ended
    // (a generous bound, not a timing goal).
    assert!(started.elapsed() < Duration::from_millis(350), "{:?}", started.elapsed());
    assert_eq!(report.stats.timed_out, 1);
    assert_eq!(settled.lock().unwrap().clone(), [(1, "nack")]);
    // The step runs on to its end; then its slot is free and its result gone.
    for _ in 0..500 {
        let stats = pool.stats();
        if stats.completed == 1 && stats.queued + stats.running == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let stats = pool.stats();
    assert_eq!((stats.completed, stats.queued + stats.running), (1, 0), "{stats:?}");
    assert_eq!(after_cpu.load(Ordering::SeqCst), 0, "the task never resumed after its deadline");
    engine.shutdown(Duration::from_secs(5)).await;
}
