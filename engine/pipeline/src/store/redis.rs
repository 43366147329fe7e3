//! Dedup state in Redis: one set per trigger, `{key_prefix}{trigger}`.

use std::time::Duration;

use switchyard::io_reactor::redis;
use switchyard::TaskContext;

use super::{SeenCheck, SeenStore, StoreFuture};

/// How long a trigger's set outlives its last write: dedup state is bounded
/// in time as well as by the API's page.
pub const SEEN_TTL: Duration = Duration::from_secs(7 * 24 * 3600);

/// Seen ids in Redis sets, reached through the task's Redis client.
#[derive(Debug, Clone)]
pub struct RedisSeenStore {
    key_prefix: String,
}

impl RedisSeenStore {
    /// Sets named `{key_prefix}{trigger}`.
    pub fn new(key_prefix: impl Into<String>) -> Self {
        RedisSeenStore { key_prefix: key_prefix.into() }
    }

    fn key(&self, trigger: &str) -> String {
        format!("{}{trigger}", self.key_prefix)
    }
}

impl SeenStore for RedisSeenStore {
    fn seen<'a>(
        &'a self,
        cx: &'a TaskContext,
        trigger: &'a str,
        ids: &'a [&'a str],
        want_state: bool,
    ) -> StoreFuture<'a, SeenCheck> {
        Box::pin(async move {
            let redis = cx.redis()?;
            let key = self.key(trigger);
            match (ids.is_empty(), want_state) {
                (true, false) => Ok(SeenCheck { has_state: true, seen: Vec::new() }),
                (true, true) => {
                    let exists: u64 = redis.query(redis::cmd("EXISTS").arg(&key)).await?;
                    Ok(SeenCheck { has_state: exists > 0, seen: Vec::new() })
                }
                (false, false) => {
                    let seen: Vec<bool> = redis.query(redis::cmd("SMISMEMBER").arg(&key).arg(ids)).await?;
                    Ok(SeenCheck { has_state: true, seen })
                }
                (false, true) => {
                    // One round trip for both answers.
                    let mut pipe = redis::pipe();
                    pipe.cmd("EXISTS").arg(&key).cmd("SMISMEMBER").arg(&key).arg(ids);
                    let (exists, seen): (u64, Vec<bool>) = redis.query_pipeline(&pipe, true).await?;
                    Ok(SeenCheck { has_state: exists > 0, seen })
                }
            }
        })
    }

    fn mark_seen<'a>(
        &'a self,
        cx: &'a TaskContext,
        trigger: &'a str,
        ids: &'a [&'a str],
    ) -> StoreFuture<'a, ()> {
        Box::pin(async move {
            if ids.is_empty() {
                return Ok(());
            }
            let key = self.key(trigger);
            let mut pipe = redis::pipe();
            pipe.cmd("SADD").arg(&key).arg(ids).ignore();
            pipe.cmd("EXPIRE").arg(&key).arg(SEEN_TTL.as_secs()).ignore();
            cx.redis()?.query_pipeline::<()>(&pipe, true).await?;
            Ok(())
        })
    }
}
