//! Settling one entry: ack deletes it, a retry re-adds it after a delay, a
//! failure moves it to the dead letters; each in one atomic transaction.

use std::sync::Arc;
use std::time::Duration;

use switchyard_io_reactor::redis;

use super::consumer::Shared;
use super::entry::{now_ms, Entry};
use crate::source::{BoxFuture, Settle, SourceError};
use crate::telemetry::DeadReason;

/// The settlement of one delivered entry. Dropped unsettled (an abandoned
/// task), it stops renewing the entry's lease, so another consumer claims
/// it once it has been idle long enough.
pub(super) struct StreamSettle {
    entry: Entry,
    /// Which delivery of the entry this is (1 for the first).
    attempt: u32,
    shared: Arc<Shared>,
}

impl StreamSettle {
    pub(super) fn new(entry: Entry, attempt: u32, shared: Arc<Shared>) -> Self {
        StreamSettle { entry, attempt, shared }
    }
}

impl Drop for StreamSettle {
    fn drop(&mut self) {
        self.shared.release(&self.entry.id);
    }
}

/// XACK and XDEL: acknowledged entries are deleted, so the stream's length
/// is the work not yet done (and a producer's bound means something).
fn ack_and_delete(pipe: &mut redis::Pipeline, shared: &Shared, id: &str) {
    let c = &shared.config;
    pipe.cmd("XACK").arg(&c.stream).arg(&c.group).arg(id).ignore();
    pipe.cmd("XDEL").arg(&c.stream).arg(id).ignore();
}

impl Settle for StreamSettle {
    fn ack(self: Box<Self>) -> BoxFuture<Result<(), SourceError>> {
        Box::pin(async move {
            let mut pipe = redis::pipe();
            pipe.atomic();
            ack_and_delete(&mut pipe, &self.shared, &self.entry.id);
            self.shared.commands.query_pipeline::<()>(&pipe, true).await?;
            Ok(())
        })
    }

    fn nack(self: Box<Self>, retry_after: Duration) -> BoxFuture<Result<(), SourceError>> {
        Box::pin(async move {
            if self.attempt >= self.shared.config.max_deliveries {
                let why = format!(
                    "asked for a retry on delivery {} of {}",
                    self.attempt, self.shared.config.max_deliveries
                );
                return dead_letter(&self.shared, &self.entry, DeadReason::RetriesExhausted, &why).await;
            }
            delay(&self.shared, &self.entry, retry_after, self.entry.delayed_member()).await
        })
    }

    fn defer(self: Box<Self>, retry_after: Duration) -> BoxFuture<Result<(), SourceError>> {
        // Not an attempt: it comes back as the same delivery, so an upstream
        // that is down for an hour does not use up the item's attempts.
        Box::pin(async move {
            let member = self.entry.delayed_member_as(self.attempt);
            delay(&self.shared, &self.entry, retry_after, member).await
        })
    }

    fn fail(self: Box<Self>, reason: &str, panicked: bool) -> BoxFuture<Result<(), SourceError>> {
        let why = reason.to_string();
        Box::pin(async move {
            let kind = if panicked { DeadReason::Panicked } else { DeadReason::Failed };
            dead_letter(&self.shared, &self.entry, kind, &why).await
        })
    }
}

/// Puts `entry` into the delayed set as `member`, due in `retry_after`, and
/// out of the stream, in one transaction. The retry waits in Redis (moved
/// back to the stream by the next read after it is due), not in this
/// process: it survives a crash, and frees this task's slot now.
async fn delay(
    shared: &Shared,
    entry: &Entry,
    retry_after: Duration,
    member: String,
) -> Result<(), SourceError> {
    let due = now_ms().saturating_add(u64::try_from(retry_after.as_millis()).unwrap_or(u64::MAX));
    let mut pipe = redis::pipe();
    pipe.atomic();
    ack_and_delete(&mut pipe, shared, &entry.id);
    pipe.cmd("ZADD").arg(shared.config.delayed_key()).arg(due).arg(member).ignore();
    shared.commands.query_pipeline::<()>(&pipe, true).await?;
    Ok(())
}

/// Moves `entry` to the dead letters with `why`, and out of the stream, in
/// one transaction. The dead-letter stream is trimmed (approximately) to its
/// configured length, oldest first.
pub(super) async fn dead_letter(
    shared: &Shared,
    entry: &Entry,
    kind: DeadReason,
    why: &str,
) -> Result<(), SourceError> {
    let c = &shared.config;
    let mut pipe = redis::pipe();
    pipe.atomic();
    pipe.cmd("XADD")
        .arg(c.dead_key())
        .arg("MAXLEN")
        .arg("~")
        .arg(c.dead_letter_max_len)
        .arg("*")
        .arg("item")
        .arg(&entry.item)
        .arg("label")
        .arg(&entry.label)
        .arg("attempt")
        .arg(entry.attempt)
        .arg("at")
        .arg(entry.at_ms)
        .arg("reason")
        .arg(kind.as_label())
        .arg("error")
        .arg(why)
        .arg("from")
        .arg(&entry.id)
        .ignore();
    ack_and_delete(&mut pipe, shared, &entry.id);
    // Not retried: the XADD must not run twice.
    shared.commands.query_pipeline::<()>(&pipe, false).await?;
    shared.metrics.dead_lettered(kind);
    tracing::warn!(stream = %c.stream, entry = %entry.id, label = %entry.label, reason = kind.as_label(), error = %why, "dead-lettered");
    Ok(())
}
