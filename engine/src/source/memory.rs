//! A bounded in-memory source.
//!
//! Items live only in this process: ack drops them, nack re-queues them after
//! the delay (up to `max_attempts`, then they are reported dead), and an item
//! whose task was abandoned at shutdown is lost with the process. Use it for
//! embedding, tests and benchmarks; use a durable source when items must
//! survive a restart.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::mpsc;

use super::{BoxFuture, Delivery, Settle, Source, SourceError};

/// Most attempts of one item before a nack drops it as dead.
pub const DEFAULT_MAX_ATTEMPTS: u32 = 5;

struct Envelope<T> {
    item: T,
    label: String,
    attempt: u32,
    available_at: Instant,
    timeout: Option<Duration>,
}

struct Shared {
    dead: AtomicU64,
    max_attempts: u32,
}

/// The engine's end of a bounded in-memory queue.
pub struct MemorySource<T> {
    rx: mpsc::Receiver<Envelope<T>>,
    retry_tx: mpsc::WeakSender<Envelope<T>>,
    shared: Arc<Shared>,
}

/// The producer's end: [`MemoryProducer::send`] waits while the queue is full.
pub struct MemoryProducer<T> {
    tx: mpsc::Sender<Envelope<T>>,
    shared: Arc<Shared>,
}

impl<T> Clone for MemoryProducer<T> {
    fn clone(&self) -> Self {
        MemoryProducer { tx: self.tx.clone(), shared: self.shared.clone() }
    }
}

/// The queue is closed (the engine's end was dropped); the item is handed back.
#[derive(Debug)]
pub struct SendError<T>(pub T);

impl<T: Send + 'static> MemorySource<T> {
    /// A queue holding at most `capacity` items, and its producer. The source
    /// finishes once every producer is dropped and the queue is empty.
    pub fn bounded(capacity: usize) -> (MemoryProducer<T>, MemorySource<T>) {
        Self::with_max_attempts(capacity, DEFAULT_MAX_ATTEMPTS)
    }

    /// As [`MemorySource::bounded`], dropping an item after `max_attempts` nacks.
    pub fn with_max_attempts(capacity: usize, max_attempts: u32) -> (MemoryProducer<T>, MemorySource<T>) {
        let (tx, rx) = mpsc::channel(capacity.max(1));
        let shared = Arc::new(Shared { dead: AtomicU64::new(0), max_attempts: max_attempts.max(1) });
        let source = MemorySource { rx, retry_tx: tx.downgrade(), shared: shared.clone() };
        (MemoryProducer { tx, shared }, source)
    }

    /// Items dropped after too many attempts.
    pub fn dead_items(&self) -> u64 {
        self.shared.dead.load(Ordering::Relaxed)
    }

    /// Items waiting in the queue.
    pub fn queued(&self) -> usize {
        self.rx.len()
    }
}

impl<T: Send + 'static> MemoryProducer<T> {
    /// Queues `item`, waiting while the queue is full.
    pub async fn send(&self, item: T, label: impl Into<String>) -> Result<(), SendError<T>> {
        self.send_envelope(item, label.into(), None).await
    }

    /// Queues `item` to run under its own task timeout (each attempt gets
    /// the whole of it) instead of the engine's `task_timeout_ms`.
    pub async fn send_with_timeout(
        &self,
        item: T,
        label: impl Into<String>,
        timeout: Duration,
    ) -> Result<(), SendError<T>> {
        self.send_envelope(item, label.into(), Some(timeout)).await
    }

    async fn send_envelope(
        &self,
        item: T,
        label: String,
        timeout: Option<Duration>,
    ) -> Result<(), SendError<T>> {
        let envelope = Envelope { item, label, attempt: 1, available_at: Instant::now(), timeout };
        self.tx.send(envelope).await.map_err(|e| SendError(e.0.item))
    }

    /// Queues `item` if there is room, else hands it back.
    pub fn try_send(&self, item: T, label: impl Into<String>) -> Result<(), SendError<T>> {
        let envelope =
            Envelope { item, label: label.into(), attempt: 1, available_at: Instant::now(), timeout: None };
        self.tx.try_send(envelope).map_err(|e| match e {
            mpsc::error::TrySendError::Full(e) | mpsc::error::TrySendError::Closed(e) => SendError(e.item),
        })
    }

    /// Items dropped after too many attempts.
    pub fn dead_items(&self) -> u64 {
        self.shared.dead.load(Ordering::Relaxed)
    }
}

impl<T> std::fmt::Debug for MemorySource<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemorySource")
            .field("queued", &self.rx.len())
            .field("dead", &self.shared.dead.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}

impl<T> std::fmt::Debug for MemoryProducer<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemoryProducer").field("capacity", &self.tx.max_capacity()).finish_non_exhaustive()
    }
}

struct MemorySettle<T> {
    envelope: Option<Envelope<T>>,
    retry_tx: mpsc::WeakSender<Envelope<T>>,
    shared: Arc<Shared>,
}

impl<T: Send + 'static> Settle for MemorySettle<T> {
    fn ack(self: Box<Self>) -> BoxFuture<Result<(), SourceError>> {
        Box::pin(async { Ok(()) })
    }

    fn nack(mut self: Box<Self>, retry_after: Duration) -> BoxFuture<Result<(), SourceError>> {
        let envelope = self.envelope.take();
        let retry_tx = self.retry_tx.clone();
        let shared = self.shared.clone();
        Box::pin(async move {
            let Some(mut envelope) = envelope else { return Ok(()) };
            if envelope.attempt >= shared.max_attempts {
                shared.dead.fetch_add(1, Ordering::Relaxed);
                return Ok(());
            }
            // The delayed re-queue runs on its own so the task's in-flight
            // slot is freed now, not after the delay. It holds a weak sender:
            // once every producer is gone the source may finish, and a retry
            // that then finds the queue closed is counted dead, not lost silently.
            tokio::spawn(async move {
                tokio::time::sleep(retry_after).await;
                envelope.attempt += 1;
                envelope.available_at = Instant::now();
                let sent = match retry_tx.upgrade() {
                    Some(tx) => tx.send(envelope).await.is_ok(),
                    None => false,
                };
                if !sent {
                    shared.dead.fetch_add(1, Ordering::Relaxed);
                }
            });
            Ok(())
        })
    }
}

impl<T: Clone + Send + 'static> Source for MemorySource<T> {
    type Item = T;

    async fn next_batch(&mut self, max: usize) -> Result<Option<Vec<Delivery<T>>>, SourceError> {
        let mut envelopes = Vec::with_capacity(max.min(64));
        if self.rx.recv_many(&mut envelopes, max.max(1)).await == 0 {
            return Ok(None);
        }
        let deliveries = envelopes
            .into_iter()
            .map(|envelope| {
                // The settle half keeps a copy so a nack can queue the item again.
                let item = envelope.item.clone();
                let (label, attempt, available_at, timeout) =
                    (envelope.label.clone(), envelope.attempt, envelope.available_at, envelope.timeout);
                let settle = Box::new(MemorySettle {
                    envelope: Some(envelope),
                    retry_tx: self.retry_tx.clone(),
                    shared: self.shared.clone(),
                });
                let delivery = Delivery::new(item, label, attempt, available_at, settle);
                match timeout {
                    Some(timeout) => delivery.with_timeout(timeout),
                    None => delivery,
                }
            })
            .collect();
        Ok(Some(deliveries))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn producer_waits_when_full_and_source_ends_with_producers() {
        let (producer, mut source) = MemorySource::bounded(2);
        producer.send(1u32, "a").await.unwrap();
        producer.send(2, "b").await.unwrap();
        assert!(producer.try_send(3, "c").is_err(), "third item must not fit");
        let batch = source.next_batch(10).await.unwrap().unwrap();
        assert_eq!(batch.iter().map(|d| d.item).collect::<Vec<_>>(), vec![1, 2]);
        assert_eq!(batch[0].label, "a");
        drop(producer);
        assert!(source.next_batch(10).await.unwrap().is_none());
    }

    #[tokio::test]
    async fn next_batch_never_returns_more_than_asked() {
        let (producer, mut source) = MemorySource::bounded(10);
        for i in 0..10u32 {
            producer.send(i, i.to_string()).await.unwrap();
        }
        assert_eq!(source.next_batch(3).await.unwrap().unwrap().len(), 3);
        assert_eq!(source.queued(), 7);
    }

    #[tokio::test(start_paused = true)]
    async fn nack_requeues_after_the_delay_then_gives_up() {
        let (producer, mut source) = MemorySource::with_max_attempts(4, 2);
        producer.send(7u32, "x").await.unwrap();
        let first = source.next_batch(1).await.unwrap().unwrap().pop().unwrap();
        assert_eq!(first.attempt, 1);
        first.settle.nack(Duration::from_secs(5)).await.unwrap();
        let second = source.next_batch(1).await.unwrap().unwrap().pop().unwrap();
        assert_eq!((second.item, second.attempt), (7, 2));
        second.settle.nack(Duration::from_secs(5)).await.unwrap();
        assert_eq!(source.dead_items(), 1, "second nack exceeds max_attempts");
        assert_eq!(source.queued(), 0);
    }
}
