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
//! - **Lost state is reported, not seeded again.** A seen set gone while its
//!   marker lives, or gone with its marker under a process that had seen
//!   them (a Redis that came back empty), counts as lost
//!   (`switchyard_pipeline_state_lost_total`, `/status`, an error log) and
//!   the poll's whole page is delivered again, keyed, so nothing the API
//!   still lists is swallowed. A process started after Redis lost both
//!   cannot tell that from a new pipeline and seeds; and outbox entries a
//!   Redis without persistence lost are gone once the API no longer lists
//!   them. Run Redis with an append-only file.

mod delivery;
mod outbox;
mod poll;

pub use delivery::{
    idempotency_key, retry_after, verdict, Backoff, DeliveryJob, Verdict, IDEMPOTENCY_KEY, MAX_RETRY_AFTER,
};
pub use outbox::{DedupBounds, Outbox, Rejections, SeenState, Written};
