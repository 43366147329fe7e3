//! Where a pipeline keeps its dedup state and its run records, behind two
//! small traits.
//!
//! [`SeenStore`] remembers which item ids each trigger has delivered;
//! [`RunLog`] keeps one [`RunRecord`] per poll. Both are reached with the
//! task's context, so under the `threads` model each worker uses its own
//! connections, and a MySQL connection is held for one statement only.
//!
//! | store | dedup state | run records |
//! | --- | --- | --- |
//! | [`Stores::redis_mysql`] | a Redis set per trigger, expiring | a MySQL table |
//! | [`Stores::memory`] | in this process, bounded | in this process, bounded |
//!
//! The in-memory stores keep nothing across a restart: they are for the
//! built-in demo, tests and benchmarks.

mod memory;
mod mysql;
mod redis;

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use switchyard::TaskContext;

pub use self::memory::{MemoryStores, MEMORY_MAX_RECORDS, MEMORY_MAX_SEEN_PER_TRIGGER};
pub use self::mysql::{create_runs_table, runs_table_ddl, MysqlRunLog};
pub use self::redis::{RedisSeenStore, SEEN_TTL};

/// A store's failure.
pub type StoreError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// What a store call returns.
pub type StoreFuture<'a, T> = Pin<Box<dyn Future<Output = Result<T, StoreError>> + Send + 'a>>;

/// Which ids a trigger has seen.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SeenCheck {
    /// Whether the trigger has any dedup state at all (when asked; else true).
    pub has_state: bool,
    /// For each id asked about, in order, whether it was seen.
    pub seen: Vec<bool>,
}

/// Remembers the ids each trigger has delivered.
pub trait SeenStore: Send + Sync + fmt::Debug + 'static {
    /// Which of `ids` `trigger` has seen, and, when `want_state`, whether
    /// it has any state at all.
    fn seen<'a>(
        &'a self,
        cx: &'a TaskContext,
        trigger: &'a str,
        ids: &'a [&'a str],
        want_state: bool,
    ) -> StoreFuture<'a, SeenCheck>;

    /// Adds `ids` to what `trigger` has seen. Idempotent, so safe to retry.
    fn mark_seen<'a>(
        &'a self,
        cx: &'a TaskContext,
        trigger: &'a str,
        ids: &'a [&'a str],
    ) -> StoreFuture<'a, ()>;
}

/// One poll's record.
#[derive(Debug, Clone, PartialEq)]
pub struct RunRecord {
    /// The run (process start or benchmark invocation) the poll belongs to.
    pub run_id: String,
    /// The trigger polled.
    pub trigger: String,
    /// The poll's number.
    pub seq: u64,
    /// Items the poll returned.
    pub items: u32,
    /// Items delivered.
    pub new_items: u32,
    /// From release to record, milliseconds.
    pub latency_ms: f64,
    /// `ok`, or the stage that failed (`poll_failed`, `transform_failed`, ...).
    pub status: &'static str,
    /// Why, when it failed.
    pub error: Option<String>,
}

/// Keeps one record per poll.
pub trait RunLog: Send + Sync + fmt::Debug + 'static {
    /// Records one poll.
    fn record<'a>(&'a self, cx: &'a TaskContext, record: RunRecord) -> StoreFuture<'a, ()>;
}

/// A run log that keeps nothing: the poll is still counted in metrics and
/// `/status`, its record just goes nowhere (a durable service without MySQL).
#[derive(Debug, Clone, Copy, Default)]
pub struct NoRunLog;

impl RunLog for NoRunLog {
    fn record<'a>(&'a self, _cx: &'a TaskContext, _record: RunRecord) -> StoreFuture<'a, ()> {
        Box::pin(std::future::ready(Ok(())))
    }
}

/// A pipeline's two stores.
#[derive(Debug, Clone)]
pub struct Stores {
    /// Dedup state.
    pub seen: Arc<dyn SeenStore>,
    /// Run records.
    pub runs: Arc<dyn RunLog>,
}

impl Stores {
    /// Redis sets under `key_prefix` (`{key_prefix}{trigger}`) and the MySQL
    /// table `runs_table`, reached through the task context's clients.
    pub fn redis_mysql(key_prefix: impl Into<String>, runs_table: impl Into<String>) -> Stores {
        Stores {
            seen: Arc::new(RedisSeenStore::new(key_prefix)),
            runs: Arc::new(MysqlRunLog::new(runs_table)),
        }
    }

    /// Both kinds of state in `memory`.
    pub fn memory(memory: Arc<MemoryStores>) -> Stores {
        Stores { seen: memory.clone(), runs: memory }
    }
}
