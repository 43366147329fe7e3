//! Where the PZ-1 driver hands released tasks to the engine: an in-memory
//! queue, or a Redis stream read through a consumer group (the durable path
//! the service runs on), so the two can be compared in one invocation.

use serde::{Deserialize, Serialize};
use switchyard::io_reactor::RedisConfig;
use switchyard::io_reactor::{redis, RedisClient};
use switchyard::source::{StreamConfig, StreamProducer, StreamSource};
use switchyard::{Error, MemoryProducer, MemorySource};

/// How released tasks reach the engine.
#[derive(Debug, Clone)]
pub enum TaskQueue {
    /// A bounded in-process queue: nothing survives the process.
    Memory,
    /// A Redis stream: every task is an entry (`XADD`), read with
    /// `XREADGROUP`, acked and deleted once settled, its lease renewed while
    /// it runs. The stream is emptied before and deleted after the run.
    Stream {
        /// The Redis holding the stream.
        redis: RedisConfig,
        /// The stream and its group (`max_len` bounds the queue as the
        /// in-memory queue is bounded).
        stream: StreamConfig,
    },
}

impl TaskQueue {
    /// `memory` or `stream`, as reports label it.
    pub fn label(&self) -> &'static str {
        match self {
            TaskQueue::Memory => "memory",
            TaskQueue::Stream { .. } => "stream",
        }
    }
}

/// One released task as it travels through the queue.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct QueuedTask {
    pub(crate) index: u64,
    pub(crate) zap_index: usize,
    pub(crate) zap: String,
    pub(crate) seq: u64,
    pub(crate) release_s: f64,
}

/// The driver's end of a [`TaskQueue`].
pub(crate) enum Feeder {
    Memory(MemoryProducer<QueuedTask>),
    Stream(StreamProducer<QueuedTask>),
}

impl Feeder {
    /// Adds `task`, waiting while the queue is full; false once the engine's
    /// end is gone or the stream cannot take it.
    pub(crate) async fn send(&self, task: QueuedTask) -> bool {
        let label = format!("{}/{}", task.zap, task.seq);
        match self {
            Feeder::Memory(producer) => producer.send(task, label).await.is_ok(),
            Feeder::Stream(producer) => producer.send(task, &label).await.is_ok(),
        }
    }
}

/// The engine's end of a [`TaskQueue`]; the stream's comes with its
/// maintenance (lease renewal), which the run must spawn.
pub(crate) enum Intake {
    Memory(MemorySource<QueuedTask>),
    Stream(StreamSource<QueuedTask>),
}

/// Opens `queue` with room for `capacity` waiting tasks.
pub(crate) async fn open(queue: &TaskQueue, capacity: usize) -> Result<(Feeder, Intake), Error> {
    match queue {
        TaskQueue::Memory => {
            let (producer, source) = MemorySource::bounded(capacity);
            Ok((Feeder::Memory(producer), Intake::Memory(source)))
        }
        TaskQueue::Stream { redis, stream } => {
            let config = StreamConfig { max_len: capacity, ..stream.clone() };
            delete_stream(redis, &config).await?;
            let source = StreamSource::connect(redis, config.clone()).await?;
            let producer = StreamProducer::connect(redis, config).await?;
            Ok((Feeder::Stream(producer), Intake::Stream(source)))
        }
    }
}

/// Deletes the stream and its delayed and dead-letter keys.
pub(crate) async fn delete_stream(redis_config: &RedisConfig, config: &StreamConfig) -> Result<(), Error> {
    let client = RedisClient::connect(redis_config).await?;
    let keys = [config.stream.clone(), config.delayed_key(), config.dead_key()];
    let _: u64 = client.query(redis::cmd("DEL").arg(&keys[..])).await?;
    Ok(())
}
