//! The producer: adds work to a stream, waiting (or failing) while the
//! stream holds its configured maximum.

use std::fmt;
use std::marker::PhantomData;
use std::time::{Duration, Instant};

use serde::Serialize;
use switchyard_io_reactor::{RedisClient, RedisConfig};

use super::config::StreamConfig;
use super::entry::now_ms;
use super::scripts;
use crate::error::Error;

/// First pause of a producer waiting for room; doubles up to the last.
const WAIT_MIN: Duration = Duration::from_millis(10);
const WAIT_MAX: Duration = Duration::from_millis(500);

/// Why an item was not added. The item is handed back.
pub struct StreamSendError<T> {
    item: T,
    kind: SendErrorKind,
}

#[derive(Debug)]
enum SendErrorKind {
    /// The stream held its maximum (for the whole send timeout, for `send`).
    Full,
    /// The item could not be encoded as JSON.
    Encode(serde_json::Error),
    /// Redis failed or could not be reached.
    Redis(switchyard_io_reactor::Error),
}

impl<T> StreamSendError<T> {
    /// The stream was full: backpressure, try again later.
    pub fn is_full(&self) -> bool {
        matches!(self.kind, SendErrorKind::Full)
    }
    /// The item that was not added.
    pub fn into_item(self) -> T {
        self.item
    }
}

impl<T> fmt::Display for StreamSendError<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.kind {
            SendErrorKind::Full => f.write_str("stream is full"),
            SendErrorKind::Encode(e) => write!(f, "item cannot be encoded: {e}"),
            SendErrorKind::Redis(e) => write!(f, "adding to the stream failed: {e}"),
        }
    }
}

impl<T> fmt::Debug for StreamSendError<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StreamSendError").field("kind", &self.kind).finish_non_exhaustive()
    }
}

impl<T> std::error::Error for StreamSendError<T> {}

/// Adds items to a stream for its consumers. Clones share the connection.
pub struct StreamProducer<T> {
    client: RedisClient,
    config: StreamConfig,
    _item: PhantomData<fn(T)>,
}

impl<T> Clone for StreamProducer<T> {
    fn clone(&self) -> Self {
        StreamProducer { client: self.client.clone(), config: self.config.clone(), _item: PhantomData }
    }
}

impl<T> fmt::Debug for StreamProducer<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StreamProducer").field("stream", &self.config.stream).finish_non_exhaustive()
    }
}

impl<T: Serialize> StreamProducer<T> {
    /// Connects a producer for `config.stream`.
    pub async fn connect(redis: &RedisConfig, config: StreamConfig) -> Result<StreamProducer<T>, Error> {
        config.validate()?;
        let client = RedisClient::connect(redis).await.map_err(Error::io)?;
        Ok(StreamProducer { client, config, _item: PhantomData })
    }

    /// Adds `item`, waiting while the stream is full (at most
    /// `send_timeout_ms`, then it fails as full). Returns the entry's id.
    pub async fn send(&self, mut item: T, label: &str) -> Result<String, StreamSendError<T>> {
        let deadline = Instant::now() + Duration::from_millis(self.config.send_timeout_ms);
        let mut pause = WAIT_MIN;
        loop {
            match self.try_send(item, label).await {
                Err(e) if e.is_full() && Instant::now() < deadline => {
                    item = e.into_item();
                    // The last try happens at the deadline, not a pause before it.
                    tokio::time::sleep(pause.min(deadline.saturating_duration_since(Instant::now()))).await;
                    pause = (pause * 2).min(WAIT_MAX);
                }
                result => return result,
            }
        }
    }

    /// Adds `item` if the stream has room, else hands it back as full.
    pub async fn try_send(&self, item: T, label: &str) -> Result<String, StreamSendError<T>> {
        let json = match serde_json::to_string(&item) {
            Ok(json) => json,
            Err(e) => return Err(StreamSendError { item, kind: SendErrorKind::Encode(e) }),
        };
        let c = &self.config;
        let mut invocation = scripts::SEND.prepare_invoke();
        invocation.key(&c.stream).key(c.delayed_key()).arg(c.max_len).arg(json).arg(label).arg(now_ms());
        // Not retried: the XADD must not run twice.
        match self.client.invoke_script::<Option<String>>(&invocation, false).await {
            Ok(Some(id)) => Ok(id),
            Ok(None) => Err(StreamSendError { item, kind: SendErrorKind::Full }),
            Err(e) => Err(StreamSendError { item, kind: SendErrorKind::Redis(e) }),
        }
    }
}
