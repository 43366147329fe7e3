//! Run records in a MySQL table.

use switchyard::io_reactor::mysql_async::prelude::Queryable;
use switchyard::TaskContext;

use super::{RunLog, RunRecord, StoreFuture};

/// Longest error text stored in a row (the column is VARCHAR(255)).
const MAX_ERROR_CHARS: usize = 250;

/// Schema of a run-record table, created if missing: `zap` holds the
/// trigger (a zap id or a pipeline name; the column keeps workload PZ-1's
/// name so existing tables stay valid), then the poll's number and figures,
/// the run it belongs to and the failure reason. `table` must be a plain
/// identifier.
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

/// Run records in `table`, one INSERT per poll through the task's pool.
#[derive(Debug, Clone)]
pub struct MysqlRunLog {
    insert: String,
}

impl MysqlRunLog {
    /// Records into `table` (see [`runs_table_ddl`]).
    pub fn new(table: impl Into<String>) -> Self {
        let table = table.into();
        let insert = format!(
            "INSERT INTO {table} (run_id, zap, seq, items, new_items, latency_ms, status, error) \
             VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
        );
        MysqlRunLog { insert }
    }
}

impl RunLog for MysqlRunLog {
    fn record<'a>(&'a self, cx: &'a TaskContext, record: RunRecord) -> StoreFuture<'a, ()> {
        Box::pin(async move {
            let error: Option<String> = record.error.map(|e| e.chars().take(MAX_ERROR_CHARS).collect());
            let params = (
                record.run_id,
                record.trigger,
                record.seq,
                record.items,
                record.new_items,
                record.latency_ms,
                record.status,
                error,
            );
            let insert = self.insert.clone();
            cx.mysql()?.with_conn(move |conn| Box::pin(conn.exec_drop(insert, params))).await?;
            Ok(())
        })
    }
}

/// Creates `table` (see [`runs_table_ddl`]) if it is missing.
pub async fn create_runs_table(
    pool: &switchyard::io_reactor::MysqlPool,
    table: &str,
) -> Result<(), switchyard::io_reactor::Error> {
    let ddl = runs_table_ddl(table);
    pool.with_conn(move |c| Box::pin(c.query_drop(ddl))).await
}
