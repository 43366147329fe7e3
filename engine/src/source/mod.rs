//! Where tasks come from, and how they are settled.
//!
//! A [`Source`] hands the engine [`Delivery`]s: an item plus the means to
//! settle it. The engine acknowledges an item once its task succeeded,
//! hands it back with a retry delay when the task asked for a retry, marks
//! it failed (with the reason) when the task failed for good or panicked,
//! and does nothing at all when it could not finish it (shutdown deadline,
//! process death), so a durable source delivers it again.
//!
//! The one decision: the engine asks for *at most* as many items as it has
//! free in-flight slots ([`Source::next_batch`] with `max`), so a full engine
//! stops reading instead of buffering. A Redis Streams consumer group fits
//! this shape directly: `XREADGROUP COUNT max`, `XACK` on ack, no ack plus a
//! delayed re-add on nack, `XAUTOCLAIM` for items whose consumer died.
//!
//! # Backpressure
//!
//! [`MemorySource`] is bounded: its producer waits when the queue is full.
//! [`ScheduleSource`] holds one delivery per recurring entry at most.
//! [`StreamSource`] reads at most the free slots, and its stream holds at
//! most `max_len` entries ([`StreamProducer::send`] waits for room).

mod memory;
mod schedule;
mod stream;
mod timeouts;

use std::future::Future;
use std::pin::Pin;
use std::time::{Duration, Instant};

pub use memory::{MemoryProducer, MemorySource, SendError, DEFAULT_MAX_ATTEMPTS};
pub use schedule::{ScheduleEntry, ScheduleSource};
pub use stream::{
    unix_ms, DeadLetter, DeadLetters, DeadSelection, LatestSnapshot, StreamConfig, StreamProducer,
    StreamSendError, StreamSnapshot, StreamSource, DEFAULT_STREAM_BLOCK_MS, DEFAULT_STREAM_CLAIM_IDLE_MS,
    DEFAULT_STREAM_DEAD_LETTER_MAX_LEN, DEFAULT_STREAM_MAX_DELIVERIES, DEFAULT_STREAM_MAX_LEN,
    DEFAULT_STREAM_SEND_TIMEOUT_MS, MAX_STREAM_MAX_LEN,
};
pub use timeouts::WithTimeouts;

/// A boxed future, as settlement returns.
pub type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send + 'static>>;

/// A source's failure to read or settle.
pub type SourceError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// The means to settle one delivered item.
pub trait Settle: Send + 'static {
    /// The task succeeded: the source is done with the item.
    fn ack(self: Box<Self>) -> BoxFuture<Result<(), SourceError>>;
    /// The task failed and the item should be delivered again after `retry_after`.
    fn nack(self: Box<Self>, retry_after: Duration) -> BoxFuture<Result<(), SourceError>>;
    /// The task did not get to try (its upstream is unavailable for now):
    /// deliver the item again after `retry_after` without counting this
    /// delivery as an attempt. A source that counts no attempts nacks.
    fn defer(self: Box<Self>, retry_after: Duration) -> BoxFuture<Result<(), SourceError>> {
        self.nack(retry_after)
    }
    /// The task failed for good, for `reason`, or `panicked`: a durable
    /// source keeps the item as a dead letter an operator can inspect and
    /// replay. By default the item is simply acknowledged.
    fn fail(self: Box<Self>, reason: &str, panicked: bool) -> BoxFuture<Result<(), SourceError>> {
        let _ = (reason, panicked);
        self.ack()
    }
}

/// One item with its settlement.
pub struct Delivery<T> {
    /// The work item.
    pub item: T,
    /// A short label for logs and shutdown reports ("z3/17"); never secrets.
    pub label: String,
    /// 1 for the first delivery, 2 after one nack, ...
    pub attempt: u32,
    /// When the item became available to the engine; admission wait counts from here.
    pub available_at: Instant,
    /// This item's task timeout, counted from its task's start; `None` runs
    /// it under the engine's `task_timeout_ms`.
    pub timeout: Option<Duration>,
    pub(crate) settle: Box<dyn Settle>,
}

impl<T> Delivery<T> {
    /// Wraps an item and its settlement.
    pub fn new(
        item: T,
        label: impl Into<String>,
        attempt: u32,
        available_at: Instant,
        settle: Box<dyn Settle>,
    ) -> Self {
        Delivery { item, label: label.into(), attempt, available_at, timeout: None, settle }
    }

    /// Runs this item's task under `timeout` instead of the engine's
    /// `task_timeout_ms` (longer or shorter; at most
    /// [`MAX_TASK_TIMEOUT_MS`](crate::MAX_TASK_TIMEOUT_MS), which longer
    /// values are cut to).
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout.min(Duration::from_millis(crate::MAX_TASK_TIMEOUT_MS)));
        self
    }
}

impl<T> std::fmt::Debug for Delivery<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Delivery")
            .field("label", &self.label)
            .field("attempt", &self.attempt)
            .field("timeout", &self.timeout)
            .finish()
    }
}

/// A stream of work for the engine.
pub trait Source: Send + 'static {
    /// The work item type.
    type Item: Send + 'static;

    /// Waits until at least one item is available and returns at most `max`
    /// (`max >= 1`). `Ok(None)` means the source is finished for good.
    fn next_batch(
        &mut self,
        max: usize,
    ) -> impl Future<Output = Result<Option<Vec<Delivery<Self::Item>>>, SourceError>> + Send;
}
