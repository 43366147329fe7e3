//! One stream entry's fields and their encoding.
//!
//! An entry holds `item` (the work item as JSON), `label` (for logs and
//! shutdown reports), `attempt` (1 when first added; a retry re-adds the
//! entry with the next number) and `at` (unix milliseconds when it became
//! available, so admission wait survives a retry).

use std::collections::HashMap;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use switchyard_io_reactor::redis::{self, Value};

/// An entry as read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Entry {
    pub(super) id: String,
    pub(super) item: String,
    pub(super) label: String,
    pub(super) attempt: u32,
    pub(super) at_ms: u64,
}

impl Entry {
    /// Reads an entry's fields; `None` names nothing when the entry is not
    /// one of ours (a field missing or unreadable).
    pub(super) fn from_fields(id: String, fields: &HashMap<String, Value>) -> Option<Entry> {
        let text = |key: &str| fields.get(key).and_then(|v| redis::from_redis_value_ref::<String>(v).ok());
        Some(Entry {
            item: text("item")?,
            label: text("label").unwrap_or_else(|| id.clone()),
            attempt: text("attempt").and_then(|a| a.parse().ok()).unwrap_or(1),
            at_ms: text("at").and_then(|a| a.parse().ok()).unwrap_or_else(now_ms),
            id,
        })
    }

    /// The sorted-set member a retry waits as: the fields the entry is
    /// re-added with, `attempt` already the next one. The original id keeps
    /// two retries of equal content apart.
    pub(super) fn delayed_member(&self) -> String {
        self.delayed_member_as(self.attempt + 1)
    }

    /// As [`Entry::delayed_member`], but coming back as delivery `attempt`
    /// (the same one, for a delivery that did not count).
    pub(super) fn delayed_member_as(&self, attempt: u32) -> String {
        serde_json::json!({
            "item": self.item,
            "label": self.label,
            "attempt": attempt.to_string(),
            "at": now_ms().to_string(),
            "from": self.id,
        })
        .to_string()
    }

    /// When the entry became available, on this process's clock.
    pub(super) fn available_at(&self) -> Instant {
        let waited = Duration::from_millis(now_ms().saturating_sub(self.at_ms));
        Instant::now().checked_sub(waited).unwrap_or_else(Instant::now)
    }
}

/// Unix time in milliseconds: the clock stream entry ids and the scores
/// of the scripts' sorted sets are in, for anyone writing beside them.
pub fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}

/// The unix milliseconds a stream id (`1700000000000-3`) was made at.
pub(super) fn id_ms(id: &str) -> Option<u64> {
    id.split('-').next()?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_round_trip_through_a_retry() {
        let mut fields = HashMap::new();
        fields.insert("item".to_string(), Value::BulkString(br#"{"n":1}"#.to_vec()));
        fields.insert("label".to_string(), Value::BulkString(b"job-1".to_vec()));
        fields.insert("attempt".to_string(), Value::BulkString(b"2".to_vec()));
        fields.insert("at".to_string(), Value::BulkString(b"1700000000000".to_vec()));
        let entry = Entry::from_fields("1700000000001-0".into(), &fields).unwrap();
        assert_eq!((entry.attempt, entry.at_ms, entry.label.as_str()), (2, 1_700_000_000_000, "job-1"));
        let member: serde_json::Value = serde_json::from_str(&entry.delayed_member()).unwrap();
        assert_eq!(member["attempt"], "3");
        assert_eq!(member["item"], r#"{"n":1}"#);
        assert_eq!(member["from"], "1700000000001-0");
        assert!(Entry::from_fields("1-0".into(), &HashMap::new()).is_none(), "no item: not ours");
        assert_eq!(id_ms("1700000000001-7"), Some(1_700_000_000_001));
    }
}
