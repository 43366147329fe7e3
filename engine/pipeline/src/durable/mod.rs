//! Durable pipelines: a poll's new items go into a Redis stream (the
//! outbox) together with being marked seen, and each is delivered by a task
//! of its own, with an `Idempotency-Key`, retried with jittered exponential
//! backoff (honouring `Retry-After`) and dead-lettered on a permanent
//! answer or when its attempts run out.
//!
//! Each poll and each delivery is one entry of a stream the engine reads
//! through [`StreamSource`](switchyard::source::StreamSource): a crash redoes
//! at most the entries in flight, and several processes share the work.
//!
//! # Guarantees
//!
//! - **At least once.** An item is delivered until the action answers 2xx,
//!   it is dead-lettered, or (with its attempts) it is kept for an
//!   operator. A crash between a delivery and its acknowledgement sends it
//!   again, with the same key.
//! - **No loss between poll and outbox.** New items enter the outbox and the
//!   seen set in one script: an item is never seen without being enqueued.
//! - **No order.** Deliveries of one pipeline run concurrently and retries
//!   come back later: a receiver must not rely on the order items arrive in.
//! - **Bounded state.** The seen set keeps the newest `max_ids` ids for at
//!   most `max_age`; an id older than that which reappears is delivered
//!   again (with the same key).

mod delivery;
mod outbox;
mod poll;

pub use delivery::{
    idempotency_key, retry_after, verdict, Backoff, DeliveryJob, Verdict, IDEMPOTENCY_KEY, MAX_RETRY_AFTER,
};
pub use outbox::{DedupBounds, Outbox, SeenState};
