//! How a stream stands at one moment: what the metrics sample every few
//! seconds and what a service shows on its status page, read one way.

use std::sync::{Arc, Mutex, PoisonError};

use serde::Serialize;
use switchyard_io_reactor::redis;
use switchyard_io_reactor::redis::streams::{StreamInfoGroupsReply, StreamRangeReply};
use switchyard_io_reactor::RedisClient;

use super::config::StreamConfig;
use super::entry::{id_ms, now_ms};

/// One stream's figures, read in two round trips.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StreamSnapshot {
    /// The stream's key.
    pub stream: String,
    /// Entries waiting or in flight.
    pub length: u64,
    /// Entries read by a consumer of the group and not yet settled.
    pub pending: u64,
    /// Entries waiting out a retry delay.
    pub delayed: u64,
    /// Dead letters kept for an operator.
    pub dead_letters: u64,
    /// Seconds since the oldest pending entry was added (0 when none is).
    pub oldest_pending_age_s: f64,
    /// Seconds since the oldest entry no consumer has read yet was added
    /// (0 when none waits): growing, the consumers are not keeping up.
    pub oldest_unread_age_s: f64,
}

impl StreamSnapshot {
    /// Reads `config`'s stream, its delayed set, its dead letters and its
    /// group (the stream and the group exist once a consumer connected).
    pub async fn read(
        client: &RedisClient,
        config: &StreamConfig,
    ) -> Result<StreamSnapshot, switchyard_io_reactor::Error> {
        let mut pipe = redis::pipe();
        pipe.cmd("XLEN").arg(&config.stream);
        pipe.cmd("ZCARD").arg(config.delayed_key());
        pipe.cmd("XLEN").arg(config.dead_key());
        pipe.cmd("XINFO").arg("GROUPS").arg(&config.stream);
        let (length, delayed, dead_letters, groups): (u64, u64, u64, StreamInfoGroupsReply) =
            client.query_pipeline(&pipe, true).await?;
        let mut snapshot = StreamSnapshot {
            stream: config.stream.clone(),
            length,
            pending: 0,
            delayed,
            dead_letters,
            oldest_pending_age_s: 0.0,
            oldest_unread_age_s: 0.0,
        };
        let Some(group) = groups.groups.into_iter().find(|g| g.name == config.group) else {
            return Ok(snapshot);
        };
        snapshot.pending = group.pending as u64;
        let mut pipe = redis::pipe();
        pipe.cmd("XPENDING").arg(&config.stream).arg(&config.group).arg("-").arg("+").arg(1);
        pipe.cmd("XRANGE")
            .arg(&config.stream)
            .arg(format!("({}", group.last_delivered_id))
            .arg("+")
            .arg("COUNT")
            .arg(1);
        let (oldest_pending, unread): (Vec<(String, String, u64, u64)>, StreamRangeReply) =
            client.query_pipeline(&pipe, true).await?;
        snapshot.oldest_pending_age_s = oldest_pending.first().map_or(0.0, |(id, ..)| age_s(id));
        snapshot.oldest_unread_age_s = unread.ids.first().map_or(0.0, |e| age_s(&e.id));
        Ok(snapshot)
    }
}

/// The last snapshot a consumer's maintenance took (every few seconds), for
/// a status page to show without reading the stream again. Cheap to clone.
#[derive(Debug, Clone, Default)]
pub struct LatestSnapshot(Arc<Mutex<Option<StreamSnapshot>>>);

impl LatestSnapshot {
    /// The most recent snapshot, or `None` before the first one.
    pub fn get(&self) -> Option<StreamSnapshot> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner).clone()
    }

    pub(super) fn set(&self, snapshot: StreamSnapshot) {
        *self.0.lock().unwrap_or_else(PoisonError::into_inner) = Some(snapshot);
    }
}

/// Seconds since a stream entry was added, from its id; 0 for an id from
/// the future (a clock behind the server's) or one that is not an id.
fn age_s(id: &str) -> f64 {
    id_ms(id).map_or(0.0, |ms| now_ms().saturating_sub(ms) as f64 / 1e3)
}

#[cfg(test)]
mod tests {
    use super::age_s;

    #[test]
    fn an_entry_age_comes_from_its_id() {
        let now = super::now_ms();
        let age = age_s(&format!("{}-3", now - 5_000));
        assert!((5.0..6.0).contains(&age), "{age}");
        assert_eq!(age_s(&format!("{}-0", now + 60_000)), 0.0);
        assert_eq!(age_s("not-an-id"), 0.0);
    }
}
