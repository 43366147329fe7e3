//! A durable source on a Redis stream: at-least-once delivery that survives
//! a crash, shared by any number of processes through a consumer group.
//!
//! [`StreamProducer`] adds work; [`StreamSource`] is the engine's end, one
//! consumer of the stream's group. Several processes reading one stream
//! share its entries; Redis keeps everything that is not yet done.
//!
//! # The one decision: the entry is the unit of redo
//!
//! An entry leaves the stream only when its task settled it:
//!
//! - **ack** (`XACK` and `XDEL` in one transaction): done; deleting it keeps
//!   the stream's length equal to the work not yet done;
//! - **nack** with a delay: the entry moves to `{stream}:delayed` and back
//!   into the stream once the delay is over, with its delivery count;
//! - **fail** (the task failed for good or panicked), or too many
//!   deliveries: the entry moves to `{stream}:dead` with the reason, where
//!   [`DeadLetters`] lists, replays or discards it;
//! - **nothing** (the process died, or shutdown abandoned the task): the
//!   entry stays pending, and once it has been idle `claim_idle_ms` another
//!   consumer claims it (`XAUTOCLAIM`; every consumer scans at least every
//!   second, so within `claim_idle_ms` plus a second). While a task runs, its consumer
//!   renews the lease every third of that time ([`StreamSource::maintenance`]),
//!   so a long task is never claimed twice. An entry whose consumers keep
//!   dying on it is dead-lettered after `max_deliveries`, so a poison entry
//!   cannot crash a fleet forever.
//!
//! So delivery is at-least-once: an effect of a task may repeat when its
//! process dies between the effect and the ack. Make effects idempotent.
//!
//! # Backpressure
//!
//! Each read asks for at most the engine's free slots (`COUNT`), so a full
//! engine stops reading and the backlog stays in Redis, not in memory. The
//! stream holds at most `max_len` entries (waiting, in flight or delayed):
//! [`StreamProducer::send`] waits for room, `try_send` fails as full; no
//! unread entry is ever trimmed.
//!
//! # Failures
//!
//! A failed read returns an error (the engine counts it) and the next read
//! waits first, exponentially longer up to 5 s, with jitter: a restarting
//! Redis is retried, never spun on. What Redis kept is delivered once it is
//! back; what it lost (no persistence) is lost. A read that finds the group
//! gone (a Redis that came back empty) creates it again, from the stream's
//! first entry, and logs an error: reading resumes without a restart.
//!
//! # Shutdown
//!
//! Stopping intake drops the read in progress at once. Entries the engine
//! abandons stay pending and are claimed by another consumer after
//! `claim_idle_ms`.
//!
//! # Metrics
//!
//! Per stream: length, pending, delayed, the age of the oldest pending and of
//! the oldest unread entry (sampled every 5 s by the maintenance task),
//! claims, redeliveries, and dead letters by reason.
//!
//! # Example
//!
//! ```no_run
//! use switchyard::io_reactor::RedisConfig;
//! use switchyard::source::{StreamConfig, StreamProducer, StreamSource};
//! use switchyard::{Engine, TaskContext, TaskError};
//!
//! # fn main() -> Result<(), switchyard::Error> {
//! let engine = Engine::builder().build()?;
//! engine.block_on(async {
//!     let redis = RedisConfig::new("redis://127.0.0.1:6379/");
//!     let config = StreamConfig::new("orders:work", "workers");
//!     let producer = StreamProducer::<u64>::connect(&redis, config.clone()).await?;
//!     producer.send(42, "order-42").await.ok();
//!     let source = StreamSource::<u64>::connect(&redis, config).await?;
//!     tokio::spawn(source.maintenance());
//!     let running = engine
//!         .start(source, |_cx: TaskContext, order: u64| async move {
//!             println!("order {order}");
//!             Ok::<_, TaskError>(())
//!         })
//!         .await?;
//!     # running.stop_intake();
//!     running.finished().await;
//!     Ok(())
//! })?
//! # }
//! ```

mod config;
mod consumer;
mod dead;
mod entry;
mod maintenance;
mod producer;
mod scripts;
mod settle;
mod snapshot;

pub use config::{
    StreamConfig, DEFAULT_STREAM_BLOCK_MS, DEFAULT_STREAM_CLAIM_IDLE_MS, DEFAULT_STREAM_DEAD_LETTER_MAX_LEN,
    DEFAULT_STREAM_MAX_DELIVERIES, DEFAULT_STREAM_MAX_LEN, DEFAULT_STREAM_SEND_TIMEOUT_MS,
    MAX_STREAM_MAX_LEN,
};
pub use consumer::StreamSource;
pub use dead::{DeadLetter, DeadLetters, DeadSelection};
pub use entry::now_ms as unix_ms;
pub use producer::{StreamProducer, StreamSendError};
pub use snapshot::{LatestSnapshot, StreamSnapshot};
