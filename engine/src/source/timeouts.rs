//! Per-item task timeouts for any source: [`WithTimeouts`].
//!
//! The engine runs every task under its `task_timeout_ms` unless the item's
//! [`Delivery`] carries its own ([`Delivery::with_timeout`]). A source that
//! knows nothing of timeouts (a Redis stream of pipeline jobs) gets them
//! from this wrapper, which asks a function of the item: the service uses it
//! to give each pipeline's tasks that pipeline's `task_timeout_ms`.

use std::time::Duration;

use super::{Delivery, Source, SourceError};

/// `source`, with each item's task timeout chosen by `timeout_of` (`None`
/// keeps what the source set, else the engine's).
pub struct WithTimeouts<S, F> {
    source: S,
    timeout_of: F,
}

impl<S, F> WithTimeouts<S, F> {
    /// Wraps `source`.
    pub fn new(source: S, timeout_of: F) -> Self {
        WithTimeouts { source, timeout_of }
    }
}

impl<S, F> Source for WithTimeouts<S, F>
where
    S: Source,
    F: Fn(&S::Item) -> Option<Duration> + Send + 'static,
{
    type Item = S::Item;

    async fn next_batch(&mut self, max: usize) -> Result<Option<Vec<Delivery<S::Item>>>, SourceError> {
        let Some(batch) = self.source.next_batch(max).await? else { return Ok(None) };
        let with = |delivery: Delivery<S::Item>| match (self.timeout_of)(&delivery.item) {
            Some(timeout) => delivery.with_timeout(timeout),
            None => delivery,
        };
        Ok(Some(batch.into_iter().map(with).collect()))
    }
}

impl<S: std::fmt::Debug, F> std::fmt::Debug for WithTimeouts<S, F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WithTimeouts").field("source", &self.source).finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::MemorySource;

    #[tokio::test]
    async fn each_item_gets_the_timeout_its_function_picks() {
        let (producer, source) = MemorySource::bounded(4);
        producer.send(1u32, "one").await.unwrap();
        producer.send_with_timeout(2, "two", Duration::from_secs(7)).await.unwrap();
        producer.send(3, "three").await.unwrap();
        drop(producer);
        let mut source =
            WithTimeouts::new(source, |item: &u32| (*item == 1).then_some(Duration::from_millis(250)));
        let batch = source.next_batch(10).await.unwrap().unwrap();
        let timeouts: Vec<_> = batch.iter().map(|d| d.timeout).collect();
        // 1: the function's; 2: the producer's, kept; 3: none, the engine's.
        assert_eq!(timeouts, [Some(Duration::from_millis(250)), Some(Duration::from_secs(7)), None]);
        assert!(source.next_batch(10).await.unwrap().is_none());
    }

    #[test]
    fn an_item_timeout_is_cut_to_the_engine_maximum() {
        let settle: Box<dyn crate::Settle> = Box::new(Noop);
        let d = Delivery::new((), "x", 1, std::time::Instant::now(), settle).with_timeout(Duration::MAX);
        assert_eq!(d.timeout, Some(Duration::from_millis(crate::MAX_TASK_TIMEOUT_MS)));
    }

    struct Noop;
    impl crate::Settle for Noop {
        fn ack(self: Box<Self>) -> crate::source::BoxFuture<Result<(), SourceError>> {
            Box::pin(async { Ok(()) })
        }
        fn nack(self: Box<Self>, _: Duration) -> crate::source::BoxFuture<Result<(), SourceError>> {
            Box::pin(async { Ok(()) })
        }
    }
}
