//! Where PZ-1 keeps its dedup state and run records: real Redis and MySQL,
//! or embedded in-memory stand-ins so the benchmark runs with no servers.
//!
//! The embedded stores are named for what they are: nothing survives the
//! process, and they exist so a newcomer (or a CI job without servers) can
//! run the workload. Both kinds are reached only through scoped calls, so a
//! MySQL connection is held for exactly one statement.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex};

use switchyard_io_reactor::mysql_async::prelude::Queryable;
use switchyard_io_reactor::{redis, MysqlPool};

use super::pipeline::{Pz1Error, Pz1Outcome};
use crate::TaskContext;

/// The table PZ-1 records its runs in.
pub const PZ_RUNS_TABLE: &str = "pz_runs";

/// Schema of a run-record table, created if missing: the spec's columns
/// (`zap, seq, items, new_items, latency_ms, status`; `zap` holds the
/// trigger, a zap id or a pipeline name) plus the run they belong to and the
/// failure reason. `table` must be a plain identifier.
pub fn runs_table_ddl(table: &str) -> String {
    format!(
        "CREATE TABLE IF NOT EXISTS {table} (
    id BIGINT AUTO_INCREMENT PRIMARY KEY,
    run_id VARCHAR(64) NOT NULL,
    zap VARCHAR(64) NOT NULL,
    seq BIGINT NOT NULL,
    items INT NOT NULL,
    new_items INT NOT NULL,
    latency_ms DOUBLE NOT NULL,
    status VARCHAR(32) NOT NULL,
    error VARCHAR(255) NULL,
    created_at TIMESTAMP(3) NOT NULL DEFAULT CURRENT_TIMESTAMP(3),
    KEY run_zap_seq (run_id, zap, seq)
)"
    )
}

/// How long a zap's seen-set outlives its last write: dedup state is
/// bounded in time as well as by the run.
const SEEN_TTL_S: u64 = 7 * 24 * 3600;
/// Most run rows the embedded log keeps (oldest dropped first).
const EMBEDDED_MAX_ROWS: usize = 100_000;
/// Most ids the embedded store remembers per zap (oldest forgotten first).
/// A poll only ever shows an API's recent items, so ids far older than a
/// page can never come back; this keeps a long-running service's memory flat.
const EMBEDDED_MAX_SEEN_PER_ZAP: usize = 10_000;

/// One zap's embedded seen-set, bounded, forgetting the oldest ids first.
#[derive(Debug, Default)]
struct SeenSet {
    ids: HashSet<String>,
    order: VecDeque<String>,
}

impl SeenSet {
    fn insert(&mut self, id: &str) {
        if self.ids.insert(id.to_string()) {
            self.order.push_back(id.to_string());
            if self.order.len() > EMBEDDED_MAX_SEEN_PER_ZAP {
                if let Some(oldest) = self.order.pop_front() {
                    self.ids.remove(&oldest);
                }
            }
        }
    }

    fn contains(&self, id: &str) -> bool {
        self.ids.contains(id)
    }
}
/// Longest error text stored in a row (the column is VARCHAR(255)).
const MAX_ERROR_CHARS: usize = 250;

/// One task's record.
#[derive(Debug, Clone, PartialEq)]
pub struct RunRow {
    /// The run (benchmark invocation) the task belongs to.
    pub run_id: String,
    /// Zap id.
    pub zap: String,
    /// Poll sequence number.
    pub seq: u64,
    /// Items the poll returned.
    pub items: u32,
    /// Actions delivered.
    pub new_items: u32,
    /// From release to record, milliseconds.
    pub latency_ms: f64,
    /// `ok` or the stage that failed (`poll_failed`, `transform_failed`, ...).
    pub status: &'static str,
    /// Why, when it failed.
    pub error: Option<String>,
}

/// In-memory stand-ins for Redis's seen-sets and MySQL's `pz_runs`.
#[derive(Debug, Default)]
pub struct EmbeddedStores {
    seen: Mutex<HashMap<String, SeenSet>>,
    runs: Mutex<VecDeque<RunRow>>,
}

impl EmbeddedStores {
    /// Empty stores.
    pub fn new() -> Arc<Self> {
        Arc::new(EmbeddedStores::default())
    }

    /// The recorded rows, oldest first.
    pub fn rows(&self) -> Vec<RunRow> {
        self.runs.lock().expect("runs lock").iter().cloned().collect()
    }

    /// Whether `id` is in `zap`'s seen-set.
    pub fn is_seen(&self, zap: &str, id: &str) -> bool {
        self.seen.lock().expect("seen lock").get(zap).is_some_and(|s| s.contains(id))
    }
}

/// The stores a pipeline uses.
#[derive(Debug, Clone)]
pub enum Stores {
    /// Redis (the task context's client) and MySQL (its pool).
    External {
        /// Prefix of the seen-set keys; the spec's is `pz:seen:`.
        key_prefix: String,
        /// The run-record table (see [`runs_table_ddl`]).
        runs_table: String,
    },
    /// The embedded in-memory stores.
    Embedded(Arc<EmbeddedStores>),
}

impl Stores {
    /// Real Redis and MySQL with PZ-1's key and table names.
    pub fn external_pz1() -> Stores {
        Stores::External { key_prefix: "pz:seen:".to_string(), runs_table: PZ_RUNS_TABLE.to_string() }
    }

    /// Creates the run-record table if missing (external stores only).
    pub async fn ensure_schema(&self, pool: &MysqlPool) -> Result<(), switchyard_io_reactor::Error> {
        match self {
            Stores::External { runs_table, .. } => {
                let ddl = runs_table_ddl(runs_table);
                pool.with_conn(move |c| Box::pin(c.query_drop(ddl))).await
            }
            Stores::Embedded(_) => Ok(()),
        }
    }

    /// Which of `ids` `zap` has seen (`SMISMEMBER`), in order.
    pub(crate) async fn seen(
        &self,
        cx: &TaskContext,
        zap: &str,
        ids: &[String],
    ) -> Result<Vec<bool>, Pz1Error> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        match self {
            Stores::External { key_prefix, .. } => {
                let mut cmd = redis::cmd("SMISMEMBER");
                cmd.arg(format!("{key_prefix}{zap}")).arg(ids);
                Ok(cx.redis().map_err(Pz1Error::store)?.query(&cmd).await.map_err(Pz1Error::store)?)
            }
            Stores::Embedded(stores) => {
                let seen = stores.seen.lock().expect("seen lock");
                let set = seen.get(zap);
                Ok(ids.iter().map(|id| set.is_some_and(|s| s.contains(id))).collect())
            }
        }
    }

    /// Whether `zap` has any dedup state yet (a seen-set exists).
    pub(crate) async fn has_state(&self, cx: &TaskContext, zap: &str) -> Result<bool, Pz1Error> {
        match self {
            Stores::External { key_prefix, .. } => {
                let mut cmd = redis::cmd("EXISTS");
                cmd.arg(format!("{key_prefix}{zap}"));
                let n: u64 =
                    cx.redis().map_err(Pz1Error::store)?.query(&cmd).await.map_err(Pz1Error::store)?;
                Ok(n > 0)
            }
            Stores::Embedded(stores) => Ok(stores.seen.lock().expect("seen lock").contains_key(zap)),
        }
    }

    /// Adds `ids` to `zap`'s seen-set (`SADD`, idempotent, so safe to retry).
    pub(crate) async fn mark_seen(
        &self,
        cx: &TaskContext,
        zap: &str,
        ids: &[String],
    ) -> Result<(), Pz1Error> {
        if ids.is_empty() {
            return Ok(());
        }
        match self {
            Stores::External { key_prefix, .. } => {
                let key = format!("{key_prefix}{zap}");
                let mut pipe = redis::pipe();
                pipe.cmd("SADD").arg(&key).arg(ids).ignore().cmd("EXPIRE").arg(&key).arg(SEEN_TTL_S).ignore();
                cx.redis()
                    .map_err(Pz1Error::store)?
                    .query_pipeline::<()>(&pipe, true)
                    .await
                    .map_err(Pz1Error::store)
            }
            Stores::Embedded(stores) => {
                let mut seen = stores.seen.lock().expect("seen lock");
                let set = seen.entry(zap.to_string()).or_default();
                for id in ids {
                    set.insert(id);
                }
                Ok(())
            }
        }
    }

    /// Records how one task went, failed or not, and passes its result on:
    /// the task's own error wins over a failure to record it.
    pub(crate) async fn record_result(
        &self,
        cx: &TaskContext,
        run_id: &str,
        zap: &str,
        seq: u64,
        since: std::time::Instant,
        result: Result<Pz1Outcome, Pz1Error>,
    ) -> Result<Pz1Outcome, Pz1Error> {
        let (outcome, status, error) = match &result {
            Ok(outcome) => (*outcome, "ok", None),
            Err(e) => (e.partial, e.stage(), Some(e.to_string())),
        };
        let row = RunRow {
            run_id: run_id.to_string(),
            zap: zap.to_string(),
            seq,
            items: outcome.items,
            new_items: outcome.new_items,
            latency_ms: since.elapsed().as_secs_f64() * 1e3,
            status,
            error,
        };
        let recorded = self.record(cx, row).await;
        let outcome = result?;
        recorded.map_err(|e| e.with_partial(outcome))?;
        Ok(outcome)
    }

    /// Records one task (one INSERT; the connection is held for it alone).
    pub(crate) async fn record(&self, cx: &TaskContext, row: RunRow) -> Result<(), Pz1Error> {
        match self {
            Stores::External { runs_table, .. } => {
                let error: Option<String> = row.error.map(|e| e.chars().take(MAX_ERROR_CHARS).collect());
                let insert = format!(
                    "INSERT INTO {runs_table} (run_id, zap, seq, items, new_items, latency_ms, status, error) \
                     VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
                );
                let params = (
                    row.run_id,
                    row.zap,
                    row.seq,
                    row.items,
                    row.new_items,
                    row.latency_ms,
                    row.status,
                    error,
                );
                cx.mysql()
                    .map_err(Pz1Error::store)?
                    .with_conn(move |conn| Box::pin(conn.exec_drop(insert, params)))
                    .await
                    .map_err(Pz1Error::store)
            }
            Stores::Embedded(stores) => {
                let mut runs = stores.runs.lock().expect("runs lock");
                if runs.len() == EMBEDDED_MAX_ROWS {
                    runs.pop_front();
                }
                runs.push_back(row);
                Ok(())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_embedded_seen_set_forgets_its_oldest_ids_past_its_bound() {
        let mut set = SeenSet::default();
        for i in 0..EMBEDDED_MAX_SEEN_PER_ZAP + 5 {
            set.insert(&format!("id-{i}"));
        }
        set.insert("id-100"); // already there: no change
        assert_eq!(set.ids.len(), EMBEDDED_MAX_SEEN_PER_ZAP);
        assert!(!set.contains("id-0") && !set.contains("id-4"));
        assert!(set.contains("id-5") && set.contains(&format!("id-{}", EMBEDDED_MAX_SEEN_PER_ZAP + 4)));
    }
}
