//! The settings of a Redis stream and its consumer group.

use serde::{Deserialize, Serialize};

use crate::error::Error;

/// Default most entries a stream holds (waiting, in flight or delayed)
/// before producers wait: backpressure, never trimming of unread work.
pub const DEFAULT_STREAM_MAX_LEN: usize = 100_000;
/// Default longest a read blocks waiting for entries.
pub const DEFAULT_STREAM_BLOCK_MS: u64 = 2_000;
/// Default idle time after which another consumer may claim an entry: a
/// consumer renews its entries every third of this, so only a dead or
/// stalled consumer's entries go idle that long.
pub const DEFAULT_STREAM_CLAIM_IDLE_MS: u64 = 15_000;
/// Default deliveries of one entry (first, retries, claims) before it is
/// dead-lettered.
pub const DEFAULT_STREAM_MAX_DELIVERIES: u32 = 5;
/// Default most dead letters kept (oldest trimmed first).
pub const DEFAULT_STREAM_DEAD_LETTER_MAX_LEN: usize = 100_000;
/// Default longest `send` waits for room before it fails as full.
pub const DEFAULT_STREAM_SEND_TIMEOUT_MS: u64 = 30_000;
/// Largest `max_len` accepted.
pub const MAX_STREAM_MAX_LEN: usize = 100_000_000;

/// A stream, its consumer group and how entries move through it.
///
/// Keys: the stream itself, `{stream}:delayed` (entries waiting out a retry
/// delay, a sorted set) and `{stream}:dead` (dead letters, a stream). With
/// Redis Cluster, give the stream a hash tag (`{orders}:work`) so all three
/// live in one slot.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StreamConfig {
    /// The stream's key.
    pub stream: String,
    /// The consumer group every consumer of this work joins.
    pub group: String,
    /// This consumer's name in the group; unique per process (default:
    /// host, process id and a random suffix).
    pub consumer: Option<String>,
    /// Most entries the stream holds (waiting, in flight or delayed); a
    /// producer waits while it is full.
    pub max_len: usize,
    /// Longest one read blocks waiting for entries (a read also wakes for
    /// the claim scan, which runs at least every second).
    pub block_ms: u64,
    /// Idle time after which an unsettled entry may be claimed by another
    /// consumer. Every consumer scans for such entries every third of this,
    /// or every second if that is sooner, so a dead consumer's entries are taken over
    /// within this plus a second; its leases are renewed every third.
    pub claim_idle_ms: u64,
    /// Deliveries of one entry before it is dead-lettered.
    pub max_deliveries: u32,
    /// Most dead letters kept.
    pub dead_letter_max_len: usize,
    /// Longest `send` waits for room.
    pub send_timeout_ms: u64,
}

impl Default for StreamConfig {
    fn default() -> Self {
        StreamConfig {
            stream: String::new(),
            group: String::new(),
            consumer: None,
            max_len: DEFAULT_STREAM_MAX_LEN,
            block_ms: DEFAULT_STREAM_BLOCK_MS,
            claim_idle_ms: DEFAULT_STREAM_CLAIM_IDLE_MS,
            max_deliveries: DEFAULT_STREAM_MAX_DELIVERIES,
            dead_letter_max_len: DEFAULT_STREAM_DEAD_LETTER_MAX_LEN,
            send_timeout_ms: DEFAULT_STREAM_SEND_TIMEOUT_MS,
        }
    }
}

impl StreamConfig {
    /// `stream` read by `group`, every other setting at its default.
    pub fn new(stream: impl Into<String>, group: impl Into<String>) -> Self {
        StreamConfig { stream: stream.into(), group: group.into(), ..StreamConfig::default() }
    }

    /// Rejects a value that cannot work, naming its key.
    pub fn validate(&self) -> Result<(), Error> {
        let name_ok = |s: &str| !s.is_empty() && s.len() <= 200 && !s.chars().any(char::is_whitespace);
        if !name_ok(&self.stream) {
            return Err(Error::config("stream.stream"));
        }
        if !name_ok(&self.group) {
            return Err(Error::config("stream.group"));
        }
        if self.consumer.as_deref().is_some_and(|c| !name_ok(c)) {
            return Err(Error::config("stream.consumer"));
        }
        if self.max_len == 0 || self.max_len > MAX_STREAM_MAX_LEN {
            return Err(Error::config("stream.max_len"));
        }
        if self.block_ms == 0 || self.block_ms > 60_000 {
            return Err(Error::config("stream.block_ms"));
        }
        // Renewal runs every third of it: shorter would be mostly renewing.
        if self.claim_idle_ms < 300 || self.claim_idle_ms > 3_600_000 {
            return Err(Error::config("stream.claim_idle_ms"));
        }
        if self.max_deliveries == 0 || self.max_deliveries > 100 {
            return Err(Error::config("stream.max_deliveries"));
        }
        if self.dead_letter_max_len == 0 || self.dead_letter_max_len > MAX_STREAM_MAX_LEN {
            return Err(Error::config("stream.dead_letter_max_len"));
        }
        if self.send_timeout_ms > 3_600_000 {
            return Err(Error::config("stream.send_timeout_ms"));
        }
        Ok(())
    }

    /// The sorted set of entries waiting out a retry delay.
    pub fn delayed_key(&self) -> String {
        format!("{}:delayed", self.stream)
    }

    /// The stream of dead letters.
    pub fn dead_key(&self) -> String {
        format!("{}:dead", self.stream)
    }
}

/// A consumer name unique to this process: host, process id and a random
/// suffix (two processes on one host, or a restarted one, never share it).
pub(super) fn default_consumer_name() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "host".to_string());
    let random = std::collections::hash_map::RandomState::new();
    let suffix = std::hash::BuildHasher::hash_one(&random, std::time::SystemTime::now()) & 0xFFFF_FFFF;
    format!("{host}-{}-{suffix:08x}", std::process::id())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn validation_names_the_key_and_names_derive_from_the_stream() {
        let ok = StreamConfig::new("orders:work", "workers");
        ok.validate().unwrap();
        assert_eq!(
            (ok.delayed_key(), ok.dead_key()),
            ("orders:work:delayed".into(), "orders:work:dead".into())
        );
        let bad = |c: StreamConfig| c.validate().unwrap_err().config_field().unwrap().to_string();
        assert_eq!(bad(StreamConfig { stream: String::new(), ..ok.clone() }), "stream.stream");
        assert_eq!(bad(StreamConfig { group: "a b".into(), ..ok.clone() }), "stream.group");
        assert_eq!(bad(StreamConfig { max_len: 0, ..ok.clone() }), "stream.max_len");
        assert_eq!(bad(StreamConfig { claim_idle_ms: 10, ..ok.clone() }), "stream.claim_idle_ms");
        assert_eq!(bad(StreamConfig { max_deliveries: 0, ..ok.clone() }), "stream.max_deliveries");
        let unknown = serde_json::from_str::<StreamConfig>(r#"{"stream": "s", "group": "g", "maxlen": 3}"#);
        assert!(unknown.unwrap_err().to_string().contains("maxlen"));
        assert_ne!(default_consumer_name(), default_consumer_name(), "two consumers never share a name");
    }
}
