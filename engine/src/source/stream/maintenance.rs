//! What runs beside a consumer: lease renewal for entries its tasks still
//! hold, the stream's metrics, and the removal of long-gone consumers.

use std::sync::Weak;
use std::time::{Duration, Instant};

use switchyard_io_reactor::redis;
use switchyard_io_reactor::redis::streams::StreamInfoConsumersReply;

use super::consumer::Shared;
use super::scripts;
use super::snapshot::StreamSnapshot;
use crate::source::SourceError;

/// How often the stream's metrics are sampled.
const SAMPLE_EVERY: Duration = Duration::from_secs(5);
/// How often long-gone consumers are looked for.
const SWEEP_EVERY: Duration = Duration::from_secs(60);
/// A consumer with nothing pending and idle this long is removed from the
/// group (each process start adds one; the group's list stays bounded).
const GONE_AFTER: Duration = Duration::from_secs(3_600);
/// Most entries renewed per script call.
const RENEW_BATCH: usize = 200;

/// Runs until the consumer and every delivery it handed out are gone.
pub(super) async fn run(shared: Weak<Shared>) {
    let Some(renew_every) = shared.upgrade().map(|s| Duration::from_millis(s.config.claim_idle_ms / 3))
    else {
        return;
    };
    let mut tick = tokio::time::interval(renew_every.min(SAMPLE_EVERY));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let (mut sampled, mut swept, mut renewed) = (None::<Instant>, Instant::now(), None::<Instant>);
    loop {
        tick.tick().await;
        let Some(shared) = shared.upgrade() else { return };
        let now = Instant::now();
        if renewed.is_none_or(|at| now.duration_since(at) >= renew_every) {
            if let Err(e) = renew(&shared).await {
                tracing::warn!(stream = %shared.config.stream, error = %e, "renewing leases failed");
            }
            renewed = Some(now);
        }
        if sampled.is_none_or(|at| now.duration_since(at) >= SAMPLE_EVERY) {
            if let Err(e) = sample(&shared).await {
                tracing::debug!(stream = %shared.config.stream, error = %e, "sampling the stream failed");
            }
            sampled = Some(now);
        }
        if now.duration_since(swept) >= SWEEP_EVERY {
            if let Err(e) = sweep(&shared).await {
                tracing::debug!(stream = %shared.config.stream, error = %e, "removing gone consumers failed");
            }
            swept = now;
        }
    }
}

/// Resets the idle time of every entry this consumer's tasks still hold,
/// so no other consumer claims work that is still being done.
async fn renew(shared: &Shared) -> Result<(), SourceError> {
    let held: Vec<String> = shared.held.lock().expect("held entries lock").iter().cloned().collect();
    for ids in held.chunks(RENEW_BATCH) {
        let c = &shared.config;
        let mut invocation = scripts::RENEW.prepare_invoke();
        invocation.key(&c.stream).arg(&c.group).arg(&shared.consumer).arg(ids);
        let _renewed: u64 = shared.commands.invoke_script(&invocation, true).await?;
    }
    Ok(())
}

/// The stream's length, pending, delayed and dead entries, the age of the
/// oldest pending entry and of the oldest entry not yet read, as gauges.
async fn sample(shared: &Shared) -> Result<(), SourceError> {
    let now = StreamSnapshot::read(&shared.commands, &shared.config).await?;
    let m = &shared.metrics;
    m.length.set(now.length as f64);
    m.delayed.set(now.delayed as f64);
    m.dead_letters_kept.set(now.dead_letters as f64);
    m.pending.set(now.pending as f64);
    m.oldest_pending_age.set(now.oldest_pending_age_s);
    m.oldest_unread_age.set(now.oldest_unread_age_s);
    shared.latest.set(now);
    Ok(())
}

/// Removes consumers that have been idle for an hour with nothing pending:
/// each process start adds a consumer, and nothing else would remove them.
async fn sweep(shared: &Shared) -> Result<(), SourceError> {
    let c = &shared.config;
    let consumers: StreamInfoConsumersReply =
        shared.commands.query(redis::cmd("XINFO").arg("CONSUMERS").arg(&c.stream).arg(&c.group)).await?;
    let gone = GONE_AFTER.as_millis() as usize;
    for consumer in consumers.consumers.iter().filter(|k| k.pending == 0 && k.idle >= gone) {
        if consumer.name == shared.consumer {
            continue;
        }
        let cmd =
            redis::cmd("XGROUP").arg("DELCONSUMER").arg(&c.stream).arg(&c.group).arg(&consumer.name).clone();
        let _removed: u64 = shared.commands.query(&cmd).await?;
    }
    Ok(())
}
