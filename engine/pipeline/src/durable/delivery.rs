//! One item's delivery as a stream entry: what it carries, the key that
//! makes its repeats harmless, and what an answer means.

use std::time::{Duration, SystemTime};

use bytes::Bytes;
use http::{HeaderMap, HeaderValue};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::steps::PreparedItem;

/// The header every delivery carries.
pub const IDEMPOTENCY_KEY: &str = "idempotency-key";
/// Longest `Retry-After` honoured: a longer one is probably a mistake, and
/// the entry would sit in the delayed set for it.
pub const MAX_RETRY_AFTER: Duration = Duration::from_secs(3_600);

/// One new item on its way to a pipeline's action: the entry of the
/// deliveries stream (the outbox).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeliveryJob {
    /// The pipeline it belongs to.
    pub pipeline: String,
    /// The item's id.
    pub id: String,
    /// The poll that found it new.
    pub seq: u64,
    /// Its fingerprint (lower-case hex).
    pub fingerprint: String,
    /// Its canonical JSON.
    pub canonical: String,
}

impl DeliveryJob {
    /// The delivery of `item`, found new by poll `seq` of `pipeline`.
    pub fn of(pipeline: &str, seq: u64, item: &PreparedItem) -> Self {
        DeliveryJob {
            pipeline: pipeline.to_string(),
            id: item.id.clone(),
            seq,
            fingerprint: item.fingerprint.clone(),
            canonical: item.canonical.clone(),
        }
    }

    /// The body POSTed: `{"id":..,"fingerprint":..,"item":<canonical>}`.
    pub fn body(&self) -> Bytes {
        crate::pipeline::delivery_body(&PreparedItem {
            id: self.id.clone(),
            fingerprint: self.fingerprint.clone(),
            canonical: self.canonical.clone(),
        })
    }

    /// Stable per pipeline and item id, whatever process, poll or attempt
    /// sends it, so a receiver that honours it absorbs repeats.
    pub fn idempotency_key(&self) -> HeaderValue {
        idempotency_key(&self.pipeline, &self.id)
    }
}

/// `sha256(pipeline NUL id)` in hex: stable, fixed length, and no raw id
/// (which could carry anything) in a header.
pub fn idempotency_key(pipeline: &str, id: &str) -> HeaderValue {
    let mut hash = Sha256::new();
    hash.update(pipeline.as_bytes());
    hash.update([0]);
    hash.update(id.as_bytes());
    let hex = crate::fingerprint::fingerprint_hex(hash.finalize().into());
    HeaderValue::from_str(&hex).expect("hex is a valid header value")
}

/// What one delivery attempt's outcome means.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// 2xx: delivered.
    Delivered,
    /// Worth another attempt after this long (a transport error, 408, 429, 5xx).
    Retry(Duration),
    /// Not attempted: the action's host is unavailable for this long (its
    /// circuit breaker is open, or it asked to wait). Not an attempt.
    Unavailable(Duration),
    /// Will not succeed by retrying (any other status); the reason says why.
    Permanent(String),
}

/// The retry policy of one pipeline's deliveries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    /// Delay before the second attempt.
    pub initial: Duration,
    /// Longest delay between attempts.
    pub max: Duration,
}

impl Backoff {
    /// The delay before attempt `attempt + 1`: exponential from `initial`
    /// to `max`, with full jitter so a fleet's retries spread out.
    pub fn after(&self, attempt: u32) -> Duration {
        let ceiling = self.initial.saturating_mul(1 << attempt.saturating_sub(1).min(20)).min(self.max);
        let random =
            std::hash::BuildHasher::hash_one(&std::collections::hash_map::RandomState::new(), attempt);
        ceiling.mul_f64((random % 1_000) as f64 / 1_000.0)
    }
}

/// Classifies an answer (`status` with its `headers`) or a transport
/// failure (`None`), for attempt number `attempt`.
pub fn verdict(status: Option<u16>, headers: &HeaderMap, attempt: u32, backoff: Backoff) -> Verdict {
    match status {
        Some(200..=299) => Verdict::Delivered,
        Some(408 | 429) | Some(500..=599) | None => {
            let wait = retry_after(headers, SystemTime::now()).unwrap_or_else(|| backoff.after(attempt));
            Verdict::Retry(wait)
        }
        Some(status) => Verdict::Permanent(format!("the action answered HTTP {status}")),
    }
}

/// `Retry-After` in either form (delta-seconds or an HTTP date), capped at
/// [`MAX_RETRY_AFTER`]; `None` when absent or unreadable.
pub fn retry_after(headers: &HeaderMap, now: SystemTime) -> Option<Duration> {
    Some(switchyard::io_reactor::retry_after(headers, now)?.min(MAX_RETRY_AFTER))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(retry_after: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(http::header::RETRY_AFTER, HeaderValue::from_str(retry_after).unwrap());
        h
    }

    #[test]
    fn the_key_is_stable_per_pipeline_and_id_and_nothing_else() {
        let a = idempotency_key("orders", "o-1");
        assert_eq!(a, idempotency_key("orders", "o-1"));
        assert_ne!(a, idempotency_key("orders", "o-2"));
        assert_ne!(a, idempotency_key("invoices", "o-1"));
        assert_ne!(idempotency_key("a", "bc"), idempotency_key("ab", "c"), "the separator counts");
        assert_eq!(a.len(), 64);
    }

    #[test]
    fn answers_are_classified_and_retry_after_honoured() {
        let backoff = Backoff { initial: Duration::from_millis(100), max: Duration::from_secs(5) };
        let none = HeaderMap::new();
        assert_eq!(verdict(Some(204), &none, 1, backoff), Verdict::Delivered);
        assert!(matches!(verdict(Some(422), &none, 1, backoff), Verdict::Permanent(r) if r.contains("422")));
        assert!(matches!(verdict(Some(301), &none, 1, backoff), Verdict::Permanent(_)));
        for status in [Some(408), Some(429), Some(503), None] {
            let Verdict::Retry(wait) = verdict(status, &none, 3, backoff) else { panic!("{status:?}") };
            assert!(wait <= Duration::from_millis(400), "{wait:?}");
        }
        assert_eq!(verdict(Some(429), &headers("2"), 1, backoff), Verdict::Retry(Duration::from_secs(2)));
        assert_eq!(verdict(Some(503), &headers("86400"), 1, backoff), Verdict::Retry(MAX_RETRY_AFTER));
        let later = SystemTime::now() + Duration::from_secs(30);
        let date = httpdate::fmt_http_date(later);
        let Verdict::Retry(wait) = verdict(Some(503), &headers(&date), 1, backoff) else { panic!() };
        assert!(wait > Duration::from_secs(25) && wait <= Duration::from_secs(30), "{wait:?}");
        assert_eq!(retry_after(&headers("soon"), SystemTime::now()), None);
    }

    #[test]
    fn backoff_grows_to_its_cap_with_jitter() {
        let backoff = Backoff { initial: Duration::from_millis(100), max: Duration::from_secs(2) };
        for attempt in 1..30 {
            assert!(backoff.after(attempt) <= Duration::from_secs(2));
        }
        let early: Duration = (0..100).map(|_| backoff.after(1)).sum();
        let late: Duration = (0..100).map(|_| backoff.after(6)).sum();
        assert!(late > early * 4, "{early:?} {late:?}");
    }
}
