//! The upstream's data: which events a poll returns, what an event holds, and
//! a fast writer for a whole poll response body.
//!
//! The upstream serves thousands of poll bodies per second, so
//! [`write_poll_body`] writes straight into a caller-owned buffer with no
//! per-field allocation. It produces the same bytes as `serde_json` does for
//! [`PollBody::generate`], which stays as the readable reference (a test
//! holds the two together).

use serde::{Deserialize, Serialize};

use super::json::{write_str, write_str_content, write_u64, write_u64_padded};
use super::rfc3339::{updated_at, write_updated_at};

/// Every event's `note`: `"pz1-note-"` followed by 191 `'x'`, 200 bytes.
pub const NOTE: &str = "pz1-note-xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx";

/// The time of event 0; event `e` is `e` seconds later.
pub const EPOCH_RFC3339: &str = "2026-01-01T00:00:00Z";

/// The events of poll `seq`, newest first.
///
/// With `w = ceil(items / fresh)` and `hi = (seq + w) * fresh`, these are
/// `hi`, `hi - 1`, ..., `hi - items + 1` (always at least 1): every poll returns
/// exactly `items` events and poll `seq + 1` holds exactly `fresh` events poll
/// `seq` did not (when `fresh <= items`). Use `.rev()` for oldest first.
///
/// # Panics
///
/// If `fresh` is 0, or `(seq + w) * fresh` overflows `u64`.
pub fn poll_event_ids(seq: u64, items: u64, fresh: u64) -> impl DoubleEndedIterator<Item = u64> + Clone {
    assert!(fresh > 0, "pz1: fresh must be at least 1");
    let w = items.div_ceil(fresh);
    let hi = seq.checked_add(w).and_then(|s| s.checked_mul(fresh)).expect("pz1: event id overflows u64");
    // hi >= w * fresh >= items, so this cannot underflow.
    (hi + 1 - items..=hi).rev()
}

/// One upstream event, as the poll response carries it (fields in wire order).
///
/// Deserializing ignores unknown fields, so an upstream may add some.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Event {
    /// `"{zap}-{e}"`.
    pub id: String,
    /// RFC 3339 UTC, 2026-01-01T00:00:00Z plus `e` seconds.
    pub updated_at: String,
    /// `"  User{e}@Example.COM "`: needs trimming and lower-casing.
    pub email: String,
    /// `"  First{e mod 97}   LAST{e mod 89} "`: needs trimming, collapsing, lower-casing.
    pub name: String,
    /// `"{e mod 1000}.{e mod 100:02}"`: a decimal string.
    pub amount: String,
    /// `["Tag{e mod 7}", "tag{e mod 5}", "TAG{e mod 3}"]`.
    pub tags: Vec<String>,
    /// [`NOTE`].
    pub note: String,
}

impl Event {
    /// Event `e` of zap `zap`, exactly as the spec defines it.
    pub fn generate(zap: &str, e: u64) -> Event {
        Event {
            id: format!("{zap}-{e}"),
            updated_at: updated_at(e),
            email: format!("  User{e}@Example.COM "),
            name: format!("  First{}   LAST{} ", e % 97, e % 89),
            amount: format!("{}.{:02}", e % 1000, e % 100),
            tags: vec![format!("Tag{}", e % 7), format!("tag{}", e % 5), format!("TAG{}", e % 3)],
            note: NOTE.to_owned(),
        }
    }
}

/// The JSON body of a poll response: `{"zap":..,"seq":..,"items":[..]}`.
///
/// Deserializing ignores unknown fields.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PollBody {
    /// The zap polled.
    pub zap: String,
    /// The poll sequence number (1 for the first poll).
    pub seq: u64,
    /// The events, newest first.
    pub items: Vec<Event>,
}

impl PollBody {
    /// The body the upstream answers to poll `seq` of `zap` (the readable
    /// reference for [`write_poll_body`]).
    pub fn generate(zap: &str, seq: u64, items: u64, fresh: u64) -> PollBody {
        PollBody {
            zap: zap.to_owned(),
            seq,
            items: poll_event_ids(seq, items, fresh).map(|e| Event::generate(zap, e)).collect(),
        }
    }
}

/// Appends the poll response body for poll `seq` of `zap` to `out`: the same
/// bytes as `serde_json::to_vec(&PollBody::generate(zap, seq, items, fresh))`,
/// without building the events.
///
/// # Panics
///
/// As [`poll_event_ids`].
pub fn write_poll_body(out: &mut Vec<u8>, zap: &str, seq: u64, items: u64, fresh: u64) {
    let ids = poll_event_ids(seq, items, fresh);
    // ~330 bytes per event plus the zap in each id; an estimate, not a bound.
    let per_event = 340 + zap.len();
    out.reserve(40 + zap.len() + per_event.saturating_mul(usize::try_from(items).unwrap_or(0).min(1 << 16)));
    out.extend_from_slice(b"{\"zap\":");
    write_str(out, zap);
    out.extend_from_slice(b",\"seq\":");
    write_u64(out, seq);
    out.extend_from_slice(b",\"items\":[");
    for (n, e) in ids.enumerate() {
        if n > 0 {
            out.push(b',');
        }
        write_event(out, zap, e);
    }
    out.extend_from_slice(b"]}");
}

/// Appends event `e` of `zap` as serde_json would serialize [`Event::generate`].
fn write_event(out: &mut Vec<u8>, zap: &str, e: u64) {
    out.extend_from_slice(b"{\"id\":\"");
    write_str_content(out, zap);
    out.push(b'-');
    write_u64(out, e);
    out.extend_from_slice(b"\",\"updated_at\":\"");
    write_updated_at(out, e);
    out.extend_from_slice(b"\",\"email\":\"  User");
    write_u64(out, e);
    out.extend_from_slice(b"@Example.COM \",\"name\":\"  First");
    write_u64(out, e % 97);
    out.extend_from_slice(b"   LAST");
    write_u64(out, e % 89);
    out.extend_from_slice(b" \",\"amount\":\"");
    write_u64(out, e % 1000);
    out.push(b'.');
    write_u64_padded(out, e % 100, 2);
    out.extend_from_slice(b"\",\"tags\":[\"Tag");
    write_u64(out, e % 7);
    out.extend_from_slice(b"\",\"tag");
    write_u64(out, e % 5);
    out.extend_from_slice(b"\",\"TAG");
    write_u64(out, e % 3);
    out.extend_from_slice(b"\"],\"note\":\"");
    out.extend_from_slice(NOTE.as_bytes());
    out.extend_from_slice(b"\"}");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn note_is_200_bytes() {
        assert_eq!(NOTE.len(), 200);
        assert!(NOTE.starts_with("pz1-note-"));
        assert!(NOTE[9..].bytes().all(|b| b == b'x'));
    }

    #[test]
    fn polls_overlap_by_all_but_fresh() {
        for (items, fresh) in [(50, 2), (5, 4), (1, 1), (7, 7), (10, 3)] {
            let mut prev: Option<Vec<u64>> = None;
            for seq in 1..20 {
                let ids: Vec<u64> = poll_event_ids(seq, items, fresh).collect();
                assert_eq!(ids.len() as u64, items);
                assert!(ids.windows(2).all(|w| w[0] == w[1] + 1), "newest first, contiguous");
                assert!(*ids.last().unwrap() >= 1);
                if let Some(prev) = prev {
                    let new = ids.iter().filter(|e| !prev.contains(e)).count() as u64;
                    assert_eq!(new, fresh, "items {items} fresh {fresh} seq {seq}");
                }
                prev = Some(ids);
            }
        }
        assert_eq!(poll_event_ids(1, 50, 2).next_back(), Some(3));
    }

    #[test]
    #[should_panic(expected = "fresh must be at least 1")]
    fn zero_fresh_panics() {
        let _ = poll_event_ids(1, 50, 0);
    }

    #[test]
    fn generate_follows_the_spec() {
        let ev = Event::generate("z3", 1234);
        assert_eq!(ev.id, "z3-1234");
        assert_eq!(ev.updated_at, "2026-01-01T00:20:34Z");
        assert_eq!(ev.email, "  User1234@Example.COM ");
        assert_eq!(ev.name, format!("  First{}   LAST{} ", 1234 % 97, 1234 % 89));
        assert_eq!(ev.amount, "234.34");
        assert_eq!(Event::generate("z", 1005).amount, "5.05");
        assert_eq!(Event::generate("z", 0).amount, "0.00");
        assert_eq!(ev.tags, ["Tag2", "tag4", "TAG1"]);
    }

    #[test]
    fn fast_writer_matches_serde_json() {
        let cases = [
            ("z7", 1, 50, 2),
            ("z0", 30, 50, 2),
            ("z99", 1_000_000, 50, 2),
            ("z1", 3, 5, 4),
            ("weird \"zap\"\\n\u{1}é", 2, 3, 1),
            ("", 1, 1, 1),
            ("z5", 86_400 * 400, 4, 4), // a few years in
        ];
        for (zap, seq, items, fresh) in cases {
            let mut fast = b"prefix".to_vec();
            write_poll_body(&mut fast, zap, seq, items, fresh);
            let reference = serde_json::to_vec(&PollBody::generate(zap, seq, items, fresh)).unwrap();
            assert_eq!(&fast[..6], b"prefix", "appends");
            assert_eq!(
                String::from_utf8_lossy(&fast[6..]),
                String::from_utf8_lossy(&reference),
                "zap {zap:?} seq {seq}"
            );
        }
    }

    #[test]
    fn body_round_trips() {
        let mut body = Vec::new();
        write_poll_body(&mut body, "z1", 2, 5, 2);
        let parsed: PollBody = serde_json::from_slice(&body).unwrap();
        assert_eq!(parsed, PollBody::generate("z1", 2, 5, 2));
        assert_eq!(parsed.items.iter().map(|e| e.id.as_str()).collect::<Vec<_>>()[..2], ["z1-10", "z1-9"]);
    }
}
