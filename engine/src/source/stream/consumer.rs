//! The consumer: a [`Source`] over a stream's consumer group.

use std::collections::HashSet;
use std::marker::PhantomData;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::de::DeserializeOwned;
use switchyard_io_reactor::redis;
use switchyard_io_reactor::redis::streams::{StreamAutoClaimReply, StreamId, StreamReadReply};
use switchyard_io_reactor::{RedisClient, RedisConfig};

use super::config::{default_consumer_name, StreamConfig};
use super::entry::{now_ms, Entry};
use super::scripts;
use super::settle::{dead_letter, StreamSettle};
use super::snapshot::LatestSnapshot;
use crate::error::Error;
use crate::source::{Delivery, Source, SourceError};
use crate::telemetry::{DeadReason, StreamMetrics};

/// How often retries whose delay is over are moved back, at most.
const PROMOTE_EVERY: Duration = Duration::from_millis(100);
/// Longest between two scans for entries a dead consumer left (reads block
/// no longer than the next scan): an orphan waits at most its claim idle
/// time plus this, and a due retry at most this.
const CLAIM_SCAN_MAX: Duration = Duration::from_secs(1);
/// Most delayed entries moved back per read.
const PROMOTE_BATCH: usize = 256;
/// First pause after a failed read; doubles per failure, with full jitter.
const RETRY_MIN: Duration = Duration::from_millis(100);
/// Longest pause after failed reads (a restarting Redis is retried this often).
const RETRY_MAX: Duration = Duration::from_secs(5);

/// What the consumer, its settles and its maintenance share.
pub(super) struct Shared {
    pub(super) config: StreamConfig,
    pub(super) consumer: String,
    pub(super) commands: RedisClient,
    /// Entries handed to tasks and not yet settled: their lease is renewed.
    pub(super) held: Mutex<HashSet<String>>,
    pub(super) metrics: StreamMetrics,
    /// What the maintenance sampled last.
    pub(super) latest: LatestSnapshot,
}

impl Shared {
    pub(super) fn release(&self, id: &str) {
        self.held.lock().expect("held entries lock").remove(id);
    }
}

/// The engine's end of a Redis stream: a consumer in the stream's group.
///
/// Each read asks for at most the engine's free slots (`XREADGROUP COUNT`),
/// after moving back retries whose delay is over and claiming entries other
/// consumers left idle past `claim_idle_ms`. Run [`StreamSource::maintenance`]
/// beside it: it renews the leases of entries still being worked on and
/// samples the stream's metrics.
pub struct StreamSource<T> {
    shared: Arc<Shared>,
    /// A connection of its own: a blocking read holds its connection.
    reader: RedisClient,
    claim_cursor: String,
    last_claim: Option<Instant>,
    last_promote: Option<Instant>,
    failures: u32,
    _item: PhantomData<fn() -> T>,
}

impl<T> std::fmt::Debug for StreamSource<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StreamSource")
            .field("stream", &self.shared.config.stream)
            .field("group", &self.shared.config.group)
            .field("consumer", &self.shared.consumer)
            .finish_non_exhaustive()
    }
}

impl<T: DeserializeOwned + Send + 'static> StreamSource<T> {
    /// Connects (two connections: one for blocking reads, one for the rest)
    /// and creates the group if it is missing, starting from the stream's
    /// first entry so nothing added before the group existed is skipped.
    pub async fn connect(redis: &RedisConfig, config: StreamConfig) -> Result<StreamSource<T>, Error> {
        config.validate()?;
        let commands = RedisClient::connect(redis).await.map_err(Error::io)?;
        // The read blocks up to block_ms: its response deadline must be longer.
        let read_deadline = redis.response_timeout_ms.max(config.block_ms + 5_000);
        let reader =
            RedisClient::connect(&RedisConfig { response_timeout_ms: read_deadline, ..redis.clone() })
                .await
                .map_err(Error::io)?;
        create_group(&commands, &config).await.map_err(Error::io)?;
        let consumer = config.consumer.clone().unwrap_or_else(default_consumer_name);
        let metrics = StreamMetrics::new(&config.stream);
        let shared = Arc::new(Shared {
            config,
            consumer,
            commands,
            held: Mutex::default(),
            metrics,
            latest: LatestSnapshot::default(),
        });
        Ok(StreamSource {
            shared,
            reader,
            claim_cursor: "0-0".to_string(),
            last_claim: None,
            last_promote: None,
            failures: 0,
            _item: PhantomData,
        })
    }

    /// The stream as this consumer's maintenance last sampled it (see
    /// [`StreamSource::maintenance`]); it stays readable after the source
    /// has moved into a run.
    pub fn latest_snapshot(&self) -> LatestSnapshot {
        self.shared.latest.clone()
    }

    /// This consumer's name in the group.
    pub fn consumer(&self) -> &str {
        &self.shared.consumer
    }

    /// Renews the leases of entries this consumer's tasks still hold, and
    /// samples the stream's metrics. Spawn it beside the run; it ends once
    /// the source and every delivery it handed out are gone.
    pub fn maintenance(&self) -> impl std::future::Future<Output = ()> + Send + 'static {
        super::maintenance::run(Arc::downgrade(&self.shared))
    }

    async fn read(&mut self, max: usize) -> Result<Vec<Delivery<T>>, SourceError> {
        let now = Instant::now();
        if self.last_promote.is_none_or(|at| now.duration_since(at) >= PROMOTE_EVERY) {
            self.promote().await?;
            self.last_promote = Some(now);
        }
        let mut deliveries = Vec::new();
        let claim_every = Duration::from_millis(self.shared.config.claim_idle_ms / 3).min(CLAIM_SCAN_MAX);
        let claim_due = self.last_claim.is_none_or(|at| now.duration_since(at) >= claim_every);
        if claim_due || self.claim_cursor != "0-0" {
            self.claim(max, &mut deliveries).await?;
            self.last_claim = Some(now);
        }
        if deliveries.len() < max {
            // Block only when there is nothing to hand over yet, and no
            // longer than the next claim scan is due.
            let since_claim = self.last_claim.map_or(Duration::ZERO, |at| at.elapsed());
            let until_claim = claim_every.saturating_sub(since_claim);
            let block_ms = (deliveries.is_empty())
                .then(|| (until_claim.as_millis() as u64).clamp(1, self.shared.config.block_ms));
            self.read_new(max - deliveries.len(), block_ms, &mut deliveries).await?;
        }
        Ok(deliveries)
    }

    async fn promote(&self) -> Result<(), SourceError> {
        let c = &self.shared.config;
        let mut invocation = scripts::PROMOTE.prepare_invoke();
        invocation.key(c.delayed_key()).key(&c.stream).arg(now_ms()).arg(PROMOTE_BATCH);
        // Safe to repeat: a second run finds the moved entries gone from the set.
        let _moved: u64 = self.shared.commands.invoke_script(&invocation, true).await?;
        Ok(())
    }

    /// Takes over entries idle past `claim_idle_ms`: their consumer died or
    /// stalled (a live one renews its entries well before).
    async fn claim(&mut self, max: usize, out: &mut Vec<Delivery<T>>) -> Result<(), SourceError> {
        let c = &self.shared.config;
        let reply: StreamAutoClaimReply = self
            .shared
            .commands
            .query(
                redis::cmd("XAUTOCLAIM")
                    .arg(&c.stream)
                    .arg(&c.group)
                    .arg(&self.shared.consumer)
                    .arg(c.claim_idle_ms)
                    .arg(&self.claim_cursor)
                    .arg("COUNT")
                    .arg(max),
            )
            .await?;
        self.claim_cursor = reply.next_stream_id;
        if reply.claimed.is_empty() {
            return Ok(());
        }
        self.shared.metrics.claimed(reply.claimed.len());
        let counts = self.delivery_counts(&reply.claimed).await?;
        for (sid, times) in reply.claimed.into_iter().zip(counts) {
            self.accept(sid, times, out).await?;
        }
        Ok(())
    }

    /// How many times each claimed entry has been delivered, claims
    /// included, in the order given: one `XPENDING` of exactly that id per
    /// entry (a range from the first to the last would also hold this
    /// consumer's own entries in flight, and its count would cut claimed
    /// ones off), pipelined in one round trip.
    async fn delivery_counts(&self, claimed: &[StreamId]) -> Result<Vec<u32>, SourceError> {
        let c = &self.shared.config;
        let mut pipe = redis::pipe();
        for sid in claimed {
            pipe.cmd("XPENDING").arg(&c.stream).arg(&c.group).arg(&sid.id).arg(&sid.id).arg(1);
        }
        let rows: Vec<Vec<(String, String, u64, u64)>> =
            self.shared.commands.query_pipeline(&pipe, true).await?;
        // An entry acknowledged meanwhile has no row: count it as delivered once.
        Ok(rows
            .into_iter()
            .map(|row| row.first().map_or(1, |(_, _, _, times)| u32::try_from(*times).unwrap_or(u32::MAX)))
            .collect())
    }

    async fn read_new(
        &mut self,
        count: usize,
        block_ms: Option<u64>,
        out: &mut Vec<Delivery<T>>,
    ) -> Result<(), SourceError> {
        let c = &self.shared.config;
        let mut cmd = redis::cmd("XREADGROUP");
        cmd.arg("GROUP").arg(&c.group).arg(&self.shared.consumer).arg("COUNT").arg(count);
        if let Some(ms) = block_ms {
            cmd.arg("BLOCK").arg(ms);
        }
        cmd.arg("STREAMS").arg(&c.stream).arg(">");
        // Not retried: a read that reached Redis has assigned its entries to
        // this consumer; if the reply is lost they are claimed later.
        let reply: Option<StreamReadReply> = self.reader.query_once(&cmd).await?;
        for key in reply.map(|r| r.keys).unwrap_or_default() {
            for sid in key.ids {
                self.accept(sid, 1, out).await?;
            }
        }
        Ok(())
    }

    /// Turns an entry into a delivery, or dead-letters it when it cannot be
    /// read or has been delivered too often. `times` counts this delivery.
    async fn accept(&self, sid: StreamId, times: u32, out: &mut Vec<Delivery<T>>) -> Result<(), SourceError> {
        let shared = &self.shared;
        let Some(entry) = Entry::from_fields(sid.id.clone(), &sid.map) else {
            let entry =
                Entry { id: sid.id, item: String::new(), label: String::new(), attempt: 1, at_ms: now_ms() };
            return dead_letter(shared, &entry, DeadReason::Undecodable, "the entry has no item field").await;
        };
        let attempt = entry.attempt.saturating_add(times.saturating_sub(1));
        if attempt > shared.config.max_deliveries {
            let why =
                format!("delivered {attempt} times without being settled (its consumers died or stalled)");
            return dead_letter(shared, &entry, DeadReason::ClaimsExhausted, &why).await;
        }
        let item: T = match serde_json::from_str(&entry.item) {
            Ok(item) => item,
            Err(e) => {
                let why = format!("the item is not a valid {}: {e}", std::any::type_name::<T>());
                return dead_letter(shared, &entry, DeadReason::Undecodable, &why).await;
            }
        };
        if attempt > 1 {
            shared.metrics.redelivered(1);
        }
        shared.held.lock().expect("held entries lock").insert(entry.id.clone());
        let (label, available_at) = (entry.label.clone(), entry.available_at());
        let settle = Box::new(StreamSettle::new(entry, attempt, shared.clone()));
        out.push(Delivery::new(item, label, attempt, available_at, settle));
        Ok(())
    }
}

impl<T: DeserializeOwned + Send + 'static> Source for StreamSource<T> {
    type Item = T;

    async fn next_batch(&mut self, max: usize) -> Result<Option<Vec<Delivery<T>>>, SourceError> {
        loop {
            if self.failures > 0 {
                tokio::time::sleep(retry_pause(self.failures)).await;
            }
            match self.read(max.max(1)).await {
                Ok(batch) => {
                    self.failures = 0;
                    if !batch.is_empty() {
                        return Ok(Some(batch));
                    }
                    // A read that blocked and found nothing: read again
                    // (the engine stops intake by dropping this future).
                }
                Err(e) => {
                    self.failures = self.failures.saturating_add(1);
                    let code = e.downcast_ref::<switchyard_io_reactor::Error>().and_then(|e| e.redis_code());
                    if code == Some("NOGROUP") {
                        self.group_gone().await;
                    }
                    return Err(e);
                }
            }
        }
    }
}

impl<T> StreamSource<T> {
    /// The group (or the whole stream) is gone: Redis lost its data (it
    /// restarted without persistence, or was flushed) or someone destroyed
    /// the group. Every read would fail until it exists again, so it is made
    /// again, from the stream's first entry: what the stream holds now is
    /// unfinished work. What Redis lost is lost; that is said, loudly.
    async fn group_gone(&mut self) {
        let c = &self.shared.config;
        match create_group(&self.shared.commands, c).await {
            Ok(true) => tracing::error!(
                stream = %c.stream,
                group = %c.group,
                "the consumer group was gone (Redis lost its data, or the group was destroyed): created it again; entries Redis lost are lost"
            ),
            Ok(false) => {}
            Err(e) => {
                tracing::warn!(stream = %c.stream, error = %e, "creating the consumer group again failed")
            }
        }
        self.claim_cursor = "0-0".to_string();
    }
}

/// Creates the group if it is missing (and the stream with it), starting
/// from the stream's first entry so nothing added before the group existed
/// is skipped. Whether it was missing.
async fn create_group(
    commands: &RedisClient,
    c: &StreamConfig,
) -> Result<bool, switchyard_io_reactor::Error> {
    let created: Result<(), _> = commands
        .query(redis::cmd("XGROUP").arg("CREATE").arg(&c.stream).arg(&c.group).arg("0").arg("MKSTREAM"))
        .await;
    match created {
        Ok(()) => Ok(true),
        Err(e) if e.redis_code() == Some("BUSYGROUP") => Ok(false),
        Err(e) => Err(e),
    }
}

/// The pause before read number `failures` + 1 after consecutive failures:
/// exponential from [`RETRY_MIN`] to [`RETRY_MAX`], with full jitter so a
/// fleet of consumers does not reconnect in step.
fn retry_pause(failures: u32) -> Duration {
    let ceiling = RETRY_MIN.saturating_mul(1 << failures.min(16)).min(RETRY_MAX);
    let random = std::hash::BuildHasher::hash_one(&std::collections::hash_map::RandomState::new(), failures);
    ceiling.mul_f64((random % 1_000) as f64 / 1_000.0).max(Duration::from_millis(10))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_pauses_grow_and_stay_bounded() {
        for failures in 1..40 {
            let pause = retry_pause(failures);
            assert!(pause >= Duration::from_millis(10) && pause <= RETRY_MAX, "{failures}: {pause:?}");
        }
        let early: Duration = (0..200).map(|_| retry_pause(1)).sum();
        let late: Duration = (0..200).map(|_| retry_pause(10)).sum();
        assert!(late > early * 5, "the pause grows with failures: {early:?} then {late:?}");
    }
}
