//! A source that releases a fixed set of jobs on a period: polling triggers.
//!
//! Each entry (a pipeline, a zap) is due every `period`. An entry is never
//! handed out again while its previous delivery is unsettled, so two polls
//! of one trigger never run at once; when a poll overruns its period the
//! next one starts as soon as it is settled (no burst of missed polls).
//!
//! Settlement reports back to the source over a bounded channel (one slot
//! per entry, so it never fills). A nack with a delay makes the entry due
//! again after that delay instead of a whole period. Times are tokio's, so
//! tests can run the schedule on paused time.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::time::Duration;

use tokio::time::Instant;

use tokio::sync::mpsc;

use super::{BoxFuture, Delivery, Settle, Source, SourceError};

/// One recurring job.
#[derive(Debug, Clone)]
pub struct ScheduleEntry<T> {
    /// The job handed to the task each time.
    pub job: T,
    /// Label for logs and reports.
    pub label: String,
    /// Time between polls (from one start to the next).
    pub period: Duration,
    /// Delay of the first poll after the source starts.
    pub first_after: Duration,
}

/// Releases each entry's job every period, one delivery per entry at a time.
pub struct ScheduleSource<T> {
    entries: Vec<ScheduleEntry<T>>,
    /// (due time, entry index) of idle entries.
    due: BinaryHeap<Reverse<(Instant, usize)>>,
    settled_tx: mpsc::Sender<(usize, Instant)>,
    settled_rx: mpsc::Receiver<(usize, Instant)>,
}

impl<T: Clone + Send + 'static> ScheduleSource<T> {
    /// A source over `entries`, starting now.
    pub fn new(entries: Vec<ScheduleEntry<T>>) -> Self {
        let now = Instant::now();
        let due = entries.iter().enumerate().map(|(i, e)| Reverse((now + e.first_after, i))).collect();
        let (settled_tx, settled_rx) = mpsc::channel(entries.len().max(1));
        ScheduleSource { entries, due, settled_tx, settled_rx }
    }

    fn on_settled(&mut self, index: usize, next_due: Instant) {
        self.due.push(Reverse((next_due, index)));
    }
}

impl<T> std::fmt::Debug for ScheduleSource<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ScheduleSource")
            .field("entries", &self.entries.len())
            .field("idle", &self.due.len())
            .finish_non_exhaustive()
    }
}

struct ScheduleSettle {
    index: usize,
    period: Duration,
    started: Instant,
    tx: mpsc::Sender<(usize, Instant)>,
}

impl ScheduleSettle {
    fn report(self: Box<Self>, next_due: Instant) -> BoxFuture<Result<(), SourceError>> {
        Box::pin(async move {
            // One slot per entry and at most one delivery per entry out: never
            // full. Closed means the source is gone (intake stopped): nothing
            // is left to schedule, which is not a failure.
            match self.tx.try_send((self.index, next_due)) {
                Ok(()) | Err(mpsc::error::TrySendError::Closed(_)) => Ok(()),
                Err(e) => Err(e.to_string().into()),
            }
        })
    }
}

impl Settle for ScheduleSettle {
    fn ack(self: Box<Self>) -> BoxFuture<Result<(), SourceError>> {
        let next = (self.started + self.period).max(Instant::now());
        self.report(next)
    }

    fn nack(self: Box<Self>, retry_after: Duration) -> BoxFuture<Result<(), SourceError>> {
        let next = Instant::now() + retry_after.min(self.period);
        self.report(next)
    }
}

impl<T: Clone + Send + 'static> Source for ScheduleSource<T> {
    type Item = T;

    async fn next_batch(&mut self, max: usize) -> Result<Option<Vec<Delivery<T>>>, SourceError> {
        if self.entries.is_empty() {
            return Ok(None);
        }
        loop {
            while let Ok((index, next_due)) = self.settled_rx.try_recv() {
                self.on_settled(index, next_due);
            }
            let now = Instant::now();
            let mut batch = Vec::new();
            while batch.len() < max {
                match self.due.peek() {
                    Some(Reverse((at, _))) if *at <= now => {}
                    _ => break,
                }
                let Reverse((at, index)) = self.due.pop().expect("peeked");
                let entry = &self.entries[index];
                let settle = Box::new(ScheduleSettle {
                    index,
                    period: entry.period,
                    started: now,
                    tx: self.settled_tx.clone(),
                });
                // Every poll is a first attempt: a failed one is simply polled again.
                batch.push(Delivery::new(entry.job.clone(), entry.label.clone(), 1, at.into_std(), settle));
            }
            if !batch.is_empty() {
                return Ok(Some(batch));
            }
            let next_due = self.due.peek().map(|Reverse((at, _))| *at);
            tokio::select! {
                settled = self.settled_rx.recv() => {
                    let (index, next_due) = settled.expect("the source holds a sender");
                    self.on_settled(index, next_due);
                }
                _ = sleep_until(next_due) => {}
            }
        }
    }
}

async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(label: &str, period_ms: u64) -> ScheduleEntry<String> {
        ScheduleEntry {
            job: label.to_string(),
            label: label.to_string(),
            period: Duration::from_millis(period_ms),
            first_after: Duration::ZERO,
        }
    }

    #[tokio::test(start_paused = true)]
    async fn an_entry_is_not_handed_out_again_until_settled() {
        let mut source = ScheduleSource::new(vec![entry("a", 100), entry("b", 100)]);
        let first = source.next_batch(10).await.unwrap().unwrap();
        assert_eq!(first.iter().map(|d| d.item.as_str()).collect::<Vec<_>>(), ["a", "b"]);
        let mut first = first.into_iter();
        let (a, b) = (first.next().unwrap(), first.next().unwrap());
        a.settle.ack().await.unwrap();
        // `a` comes back after its period; `b` is still out and must not.
        let started = tokio::time::Instant::now();
        let second = source.next_batch(10).await.unwrap().unwrap();
        assert_eq!(second.iter().map(|d| d.item.as_str()).collect::<Vec<_>>(), ["a"]);
        assert!(started.elapsed() >= Duration::from_millis(99));
        drop(b);
    }

    #[tokio::test(start_paused = true)]
    async fn an_overrunning_poll_is_followed_at_once_and_a_nack_retries_early() {
        let mut source = ScheduleSource::new(vec![entry("a", 100)]);
        let d = source.next_batch(1).await.unwrap().unwrap().pop().unwrap();
        tokio::time::sleep(Duration::from_millis(250)).await;
        d.settle.ack().await.unwrap();
        let t = tokio::time::Instant::now();
        let d = source.next_batch(1).await.unwrap().unwrap().pop().unwrap();
        assert!(t.elapsed() < Duration::from_millis(5), "overrun: next poll starts at once");
        d.settle.nack(Duration::from_millis(10)).await.unwrap();
        let t = tokio::time::Instant::now();
        source.next_batch(1).await.unwrap().unwrap();
        let waited = t.elapsed();
        assert!(waited >= Duration::from_millis(9) && waited < Duration::from_millis(50), "{waited:?}");
    }
}
