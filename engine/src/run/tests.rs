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
}

impl ScriptedSource {
    fn new(items: impl IntoIterator<Item = u32>) -> Self {
        ScriptedSource {
            items: items.into_iter().collect(),
            asked: Arc::default(),
            settled: Arc::default(),
            fail_first_read: false,
            stay_open: false,
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
                Delivery::new(item, format!("item-{item}"), 1, std::time::Instant::now(), settle)
            })
            .collect();
        Ok(Some(batch))
    }
}

fn engine(max_in_flight: usize) -> Engine {
    Engine::builder()
        .runtime_handle(Handle::current())
        .cpu_threads(1)
        .max_in_flight(max_in_flight)
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
