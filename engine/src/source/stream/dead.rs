//! Dead letters an operator can act on: list them, replay them into the
//! stream, or discard them.

use std::collections::HashMap;

use switchyard_io_reactor::redis::streams::StreamRangeReply;
use switchyard_io_reactor::redis::{self, Value};
use switchyard_io_reactor::{RedisClient, RedisConfig};

use super::config::StreamConfig;
use super::entry::now_ms;
use super::scripts;
use crate::error::Error;

/// Most dead letters moved or removed per round trip.
const BATCH: usize = 100;

/// One dead letter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeadLetter {
    /// Its id in the dead-letter stream.
    pub id: String,
    /// The entry's label.
    pub label: String,
    /// Why it was dead-lettered (`failed`, `panicked`, `retries_exhausted`,
    /// `claims_exhausted`, `undecodable`).
    pub reason: String,
    /// The error that put it there.
    pub error: String,
    /// The delivery it was on.
    pub attempt: u32,
    /// The item as JSON.
    pub item: String,
}

/// Which dead letters an operation applies to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DeadSelection {
    /// These ids.
    Ids(Vec<String>),
    /// All of them.
    All,
}

/// The dead letters of one stream.
#[derive(Debug, Clone)]
pub struct DeadLetters {
    client: RedisClient,
    config: StreamConfig,
}

impl DeadLetters {
    /// Connects to the dead letters of `config.stream`.
    pub async fn connect(redis: &RedisConfig, config: StreamConfig) -> Result<DeadLetters, Error> {
        config.validate()?;
        let client = RedisClient::connect(redis).await.map_err(Error::io)?;
        Ok(DeadLetters { client, config })
    }

    /// How many there are.
    pub async fn count(&self) -> Result<u64, Error> {
        self.client.query(redis::cmd("XLEN").arg(self.config.dead_key())).await.map_err(Error::io)
    }

    /// The oldest `limit`.
    pub async fn list(&self, limit: usize) -> Result<Vec<DeadLetter>, Error> {
        self.page(None, limit).await
    }

    /// The oldest `limit` after the dead letter `after` (from the first
    /// when `None`): for walking through all of them.
    pub async fn page(&self, after: Option<&str>, limit: usize) -> Result<Vec<DeadLetter>, Error> {
        let start = after.map_or_else(|| "-".to_string(), |id| format!("({id}"));
        let cmd = redis::cmd("XRANGE")
            .arg(self.config.dead_key())
            .arg(start)
            .arg("+")
            .arg("COUNT")
            .arg(limit)
            .clone();
        let range: StreamRangeReply = self.client.query(&cmd).await.map_err(Error::io)?;
        Ok(range.ids.into_iter().map(|e| dead_letter(e.id, &e.map)).collect())
    }

    /// Puts the selected dead letters back into the stream as new entries
    /// (their delivery count starts again); returns how many.
    pub async fn replay(&self, selection: &DeadSelection) -> Result<u64, Error> {
        self.in_batches(selection, |ids| async move {
            let mut invocation = scripts::REPLAY.prepare_invoke();
            invocation.key(self.config.dead_key()).key(&self.config.stream).arg(now_ms()).arg(&ids);
            // Not retried: a replayed entry must not be added twice.
            self.client.invoke_script::<u64>(&invocation, false).await.map_err(Error::io)
        })
        .await
    }

    /// Deletes the selected dead letters; returns how many.
    pub async fn discard(&self, selection: &DeadSelection) -> Result<u64, Error> {
        self.in_batches(selection, |ids| async move {
            let cmd = redis::cmd("XDEL").arg(self.config.dead_key()).arg(&ids).clone();
            self.client.query::<u64>(&cmd).await.map_err(Error::io)
        })
        .await
    }

    async fn in_batches<F, Fut>(&self, selection: &DeadSelection, mut apply: F) -> Result<u64, Error>
    where
        F: FnMut(Vec<String>) -> Fut,
        Fut: std::future::Future<Output = Result<u64, Error>>,
    {
        let mut done = 0;
        match selection {
            DeadSelection::Ids(ids) => {
                for chunk in ids.chunks(BATCH) {
                    done += apply(chunk.to_vec()).await?;
                }
            }
            DeadSelection::All => loop {
                let ids: Vec<String> = self.list(BATCH).await?.into_iter().map(|d| d.id).collect();
                if ids.is_empty() {
                    break;
                }
                let n = apply(ids).await?;
                if n == 0 {
                    break; // nothing moved: do not spin on entries that vanish under us
                }
                done += n;
            },
        }
        Ok(done)
    }
}

fn dead_letter(id: String, fields: &HashMap<String, Value>) -> DeadLetter {
    let text = |key: &str| {
        fields.get(key).and_then(|v| redis::from_redis_value_ref::<String>(v).ok()).unwrap_or_default()
    };
    DeadLetter {
        label: text("label"),
        reason: text("reason"),
        error: text("error"),
        attempt: text("attempt").parse().unwrap_or(0),
        item: text("item"),
        id,
    }
}
