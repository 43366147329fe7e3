//! The CPU part of a PZ-1 task: canonical form, fingerprint and in-poll
//! deduplication.
//!
//! The fingerprint is the workload's CPU knob: `rounds` chained SHA-256
//! digests per item. It digests into a fixed array with one reused hasher and
//! formats hex once at the end, so the time measured is the hashing the spec
//! asks for, not allocation. For the same reason the poll body is parsed into
//! borrowed strings and the canonical JSON is written directly.

use std::borrow::Cow;
use std::collections::HashSet;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

use super::error::TransformError;
use super::event::Event;
use super::json::{write_str, write_u64};
use super::steps::{collapse_whitespace, decimal_to_cents, lower_case, sort_dedupe, trim};

/// An event in canonical form. Fields are declared in sorted key order, so
/// serializing gives the sorted-key JSON the spec fingerprints.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CanonicalItem {
    /// The amount in integer cents.
    pub amount_cents: i64,
    /// Trimmed, lower-cased.
    pub email: String,
    /// Unchanged.
    pub id: String,
    /// Trimmed, white space runs collapsed to one space, lower-cased.
    pub name: String,
    /// Unchanged.
    pub note: String,
    /// Lower-cased, duplicates removed, sorted.
    pub tags: Vec<String>,
    /// Unchanged.
    pub updated_at: String,
}

/// One item of a poll after the transform.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transformed {
    /// The event's id.
    pub id: String,
    /// [`fingerprint`] of `canonical_json`, lower-case hex.
    pub fingerprint: String,
    /// The canonical object.
    pub canonical: CanonicalItem,
    /// [`canonical_json`] of `canonical`: the fingerprinted bytes.
    pub canonical_json: String,
}

/// Builds the canonical form of an event. Fails only on a bad `amount`.
pub fn canonical(event: &Event) -> Result<CanonicalItem, TransformError> {
    canonical_of(&WireEvent {
        id: Cow::Borrowed(&event.id),
        updated_at: Cow::Borrowed(&event.updated_at),
        email: Cow::Borrowed(&event.email),
        name: Cow::Borrowed(&event.name),
        amount: Cow::Borrowed(&event.amount),
        tags: event.tags.iter().map(|t| Cow::Borrowed(t.as_str())).collect(),
        note: Cow::Borrowed(&event.note),
    })
}

fn canonical_of(event: &WireEvent<'_>) -> Result<CanonicalItem, TransformError> {
    Ok(CanonicalItem {
        amount_cents: decimal_to_cents(&event.amount)?,
        email: lower_case(trim(&event.email)),
        id: event.id.clone().into_owned(),
        name: lower_case(&collapse_whitespace(trim(&event.name))),
        note: event.note.clone().into_owned(),
        tags: sort_dedupe(event.tags.iter().map(|t| lower_case(t)).collect()),
        updated_at: event.updated_at.clone().into_owned(),
    })
}

/// [`PollBody`] as parsed by [`transform_poll`]: strings borrow from the body
/// when they hold no escapes, which saves most of the parse's allocations.
#[derive(Deserialize)]
struct WirePoll<'a> {
    #[serde(borrow, rename = "zap")]
    _zap: Cow<'a, str>,
    #[serde(rename = "seq")]
    _seq: u64,
    #[serde(borrow)]
    items: Vec<WireEvent<'a>>,
}

/// [`Event`], borrowing from the body.
#[derive(Deserialize)]
struct WireEvent<'a> {
    #[serde(borrow)]
    id: Cow<'a, str>,
    #[serde(borrow)]
    updated_at: Cow<'a, str>,
    #[serde(borrow)]
    email: Cow<'a, str>,
    #[serde(borrow)]
    name: Cow<'a, str>,
    #[serde(borrow)]
    amount: Cow<'a, str>,
    #[serde(borrow)]
    tags: Vec<Cow<'a, str>>,
    #[serde(borrow)]
    note: Cow<'a, str>,
}

/// Compact JSON of a canonical item, keys in sorted order:
/// `{"amount_cents":..,"email":..,"id":..,"name":..,"note":..,"tags":[..],"updated_at":..}`.
///
/// The same bytes as `serde_json::to_string(item)`, written directly: this runs
/// once per item per poll.
pub fn canonical_json(item: &CanonicalItem) -> String {
    let tags_len: usize = item.tags.iter().map(|t| t.len() + 3).sum();
    let len = 110 + item.email.len() + item.id.len() + item.name.len() + item.note.len() + tags_len;
    let mut out = Vec::with_capacity(len + item.updated_at.len());
    out.extend_from_slice(b"{\"amount_cents\":");
    if item.amount_cents < 0 {
        out.push(b'-');
    }
    write_u64(&mut out, item.amount_cents.unsigned_abs());
    out.extend_from_slice(b",\"email\":");
    write_str(&mut out, &item.email);
    out.extend_from_slice(b",\"id\":");
    write_str(&mut out, &item.id);
    out.extend_from_slice(b",\"name\":");
    write_str(&mut out, &item.name);
    out.extend_from_slice(b",\"note\":");
    write_str(&mut out, &item.note);
    out.extend_from_slice(b",\"tags\":[");
    for (i, tag) in item.tags.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        write_str(&mut out, tag);
    }
    out.extend_from_slice(b"],\"updated_at\":");
    write_str(&mut out, &item.updated_at);
    out.push(b'}');
    String::from_utf8(out).expect("built from strings")
}

/// `h_rounds` of the chain `h_1 = SHA-256(bytes)`, `h_{k+1} = SHA-256(h_k)`
/// (over the 32 raw digest bytes), as raw bytes.
///
/// # Panics
///
/// If `rounds` is 0 ([`Params::validate`](super::Params::validate) rejects it).
pub fn fingerprint_raw(canonical_bytes: &[u8], rounds: u32) -> [u8; 32] {
    assert!(rounds >= 1, "pz1: rounds must be at least 1");
    let mut hasher = Sha256::new();
    let mut h = sha2::digest::Output::<Sha256>::default();
    hasher.update(canonical_bytes);
    hasher.finalize_into_reset(&mut h);
    for _ in 1..rounds {
        hasher.update(h);
        hasher.finalize_into_reset(&mut h);
    }
    h.into()
}

/// [`fingerprint_raw`] in lower-case hex (64 characters).
///
/// # Panics
///
/// If `rounds` is 0.
pub fn fingerprint(canonical_bytes: &[u8], rounds: u32) -> String {
    fingerprint_hex(fingerprint_raw(canonical_bytes, rounds))
}

/// The whole CPU step of a task: parses a poll response body, builds each
/// item's canonical form and fingerprint, and drops items whose fingerprint
/// already appeared earlier in the same poll (the first occurrence stays).
/// Items keep the body's order (newest first).
///
/// Errors name the field: a missing or wrong-typed field of the body
/// (`seq`, `items[3].email`, `items[0].tags[1]`), or an unparsable amount
/// (`items[7].amount`). Unknown fields are ignored.
///
/// # Panics
///
/// If `rounds` is 0.
pub fn transform_poll(body: &[u8], rounds: u32) -> Result<Vec<Transformed>, TransformError> {
    assert!(rounds >= 1, "pz1: rounds must be at least 1");
    let poll: WirePoll<'_> = serde_json::from_slice(body).map_err(|e| explain(body, e))?;
    let mut seen = HashSet::with_capacity(poll.items.len());
    let mut out = Vec::with_capacity(poll.items.len());
    for (i, event) in poll.items.iter().enumerate() {
        let item = canonical_of(event).map_err(|e| e.in_field(format!("items[{i}].amount")))?;
        let json = canonical_json(&item);
        let raw = fingerprint_raw(json.as_bytes(), rounds);
        if !seen.insert(raw) {
            continue;
        }
        out.push(Transformed {
            id: item.id.clone(),
            fingerprint: fingerprint_hex(raw),
            canonical: item,
            canonical_json: json,
        });
    }
    Ok(out)
}

fn fingerprint_hex(raw: [u8; 32]) -> String {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut hex = String::with_capacity(64);
    for b in raw {
        hex.push(char::from(HEX[usize::from(b >> 4)]));
        hex.push(char::from(HEX[usize::from(b & 0xF)]));
    }
    hex
}

/// The body of the action call for a transformed item:
/// `{"id":..,"fingerprint":..,"item":<canonical object>}` (compact, in that order).
pub fn action_body(item: &Transformed) -> String {
    let mut out = Vec::with_capacity(item.canonical_json.len() + item.id.len() + 100);
    out.extend_from_slice(b"{\"id\":");
    write_str(&mut out, &item.id);
    out.extend_from_slice(b",\"fingerprint\":");
    write_str(&mut out, &item.fingerprint);
    out.extend_from_slice(b",\"item\":");
    out.extend_from_slice(item.canonical_json.as_bytes());
    out.push(b'}');
    String::from_utf8(out).expect("built from strings")
}

/// Turns serde's error into one naming the field. The fast typed parse failed,
/// so this slow path re-reads the body as a tree to find the first bad field.
fn explain(body: &[u8], err: serde_json::Error) -> TransformError {
    if !err.is_data() {
        return TransformError::json(err.to_string());
    }
    match serde_json::from_slice::<Value>(body) {
        Ok(tree) => find_bad_field(&tree).err().unwrap_or_else(|| TransformError::json(err.to_string())),
        Err(_) => TransformError::json(err.to_string()),
    }
}

fn find_bad_field(tree: &Value) -> Result<(), TransformError> {
    let body = tree.as_object().ok_or_else(|| TransformError::wrong_type(None, "an object"))?;
    expect_str(field(body, "", "zap")?, "zap")?;
    if !field(body, "", "seq")?.is_u64() {
        return Err(TransformError::wrong_type(Some("seq".into()), "an unsigned integer"));
    }
    let items = field(body, "", "items")?
        .as_array()
        .ok_or_else(|| TransformError::wrong_type(Some("items".into()), "an array"))?;
    for (i, item) in items.iter().enumerate() {
        let path = format!("items[{i}]");
        let item = item.as_object().ok_or_else(|| TransformError::wrong_type(Some(path.clone()), "an object"))?;
        for key in ["id", "updated_at", "email", "name", "amount"] {
            expect_str(field(item, &path, key)?, &format!("{path}.{key}"))?;
        }
        let tags = field(item, &path, "tags")?
            .as_array()
            .ok_or_else(|| TransformError::wrong_type(Some(format!("{path}.tags")), "an array"))?;
        for (j, tag) in tags.iter().enumerate() {
            expect_str(tag, &format!("{path}.tags[{j}]"))?;
        }
        expect_str(field(item, &path, "note")?, &format!("{path}.note"))?;
    }
    Ok(())
}

fn field<'a>(object: &'a Map<String, Value>, path: &str, key: &str) -> Result<&'a Value, TransformError> {
    object.get(key).ok_or_else(|| {
        TransformError::missing(if path.is_empty() { key.to_owned() } else { format!("{path}.{key}") })
    })
}

fn expect_str(value: &Value, path: &str) -> Result<(), TransformError> {
    match value {
        Value::String(_) => Ok(()),
        _ => Err(TransformError::wrong_type(Some(path.to_owned()), "a string")),
    }
}

#[cfg(test)]
mod tests {
    use super::super::event::{write_poll_body, PollBody};
    use super::*;

    fn body(zap: &str, seq: u64, items: u64, fresh: u64) -> Vec<u8> {
        let mut out = Vec::new();
        write_poll_body(&mut out, zap, seq, items, fresh);
        out
    }

    #[test]
    fn canonical_form_of_a_messy_event() {
        let event = Event {
            id: "z1-9".into(),
            updated_at: "2026-01-01T00:00:09Z".into(),
            email: "\t MiXed@Case.ORG\n".into(),
            name: "  Ada \t\n  LOVELACE  ".into(),
            amount: "-3.1".into(),
            tags: ["B", "a", "b", "A", "a"].map(String::from).to_vec(),
            note: "n".into(),
        };
        let item = canonical(&event).unwrap();
        assert_eq!(
            canonical_json(&item),
            r#"{"amount_cents":-310,"email":"mixed@case.org","id":"z1-9","name":"ada lovelace","note":"n","tags":["a","b"],"updated_at":"2026-01-01T00:00:09Z"}"#
        );
        let bad = Event { amount: "1.234".into(), ..event };
        assert!(canonical(&bad).unwrap_err().is_bad_amount());
    }

    #[test]
    fn canonical_json_matches_serde_json() {
        let base = canonical(&Event::generate("z7", 59)).unwrap();
        let cases = [
            base.clone(),
            CanonicalItem { amount_cents: i64::MIN, tags: vec![], ..base.clone() },
            CanonicalItem { amount_cents: i64::MAX, tags: vec!["\"q\"".into()], ..base.clone() },
            CanonicalItem {
                amount_cents: 0,
                email: "a\\b\u{1}\n".into(),
                id: "é€".into(),
                name: String::new(),
                note: "\t".into(),
                tags: vec!["x".into(), "".into()],
                updated_at: "".into(),
            },
        ];
        for item in cases {
            assert_eq!(canonical_json(&item), serde_json::to_string(&item).unwrap());
        }
    }

    #[test]
    fn fingerprint_chains_raw_digests() {
        let h1 = Sha256::digest(b"abc");
        let h2 = Sha256::digest(h1);
        let h3 = Sha256::digest(h2);
        assert_eq!(fingerprint_raw(b"abc", 1), <[u8; 32]>::from(h1));
        assert_eq!(fingerprint_raw(b"abc", 3), <[u8; 32]>::from(h3));
        // SHA-256("abc"), FIPS 180-2.
        assert_eq!(
            fingerprint(b"abc", 1),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert_eq!(fingerprint(b"abc", 2), fingerprint_hex(h2.into()));
        assert_ne!(fingerprint(b"abc", 2), fingerprint(b"abc", 3));
    }

    #[test]
    #[should_panic(expected = "rounds must be at least 1")]
    fn zero_rounds_panics() {
        fingerprint(b"abc", 0);
    }

    #[test]
    fn transform_poll_keeps_order_and_fingerprints() {
        let out = transform_poll(&body("z7", 1, 50, 2), 3).unwrap();
        assert_eq!(out.len(), 50);
        assert_eq!(out[0].id, "z7-52");
        assert_eq!(out[49].id, "z7-3");
        for t in &out {
            assert_eq!(t.id, t.canonical.id);
            assert_eq!(t.canonical_json, canonical_json(&t.canonical));
            assert_eq!(t.fingerprint, fingerprint(t.canonical_json.as_bytes(), 3));
        }
    }

    #[test]
    fn repeated_fingerprints_are_dropped_keeping_the_first() {
        let mut poll = PollBody::generate("z2", 1, 4, 1);
        let first = poll.items[1].clone();
        poll.items.push(first.clone());
        poll.items.insert(3, first);
        // Same canonical form (case and spacing differ), same fingerprint.
        let mut messy = poll.items[0].clone();
        messy.email = messy.email.to_uppercase();
        messy.name = format!("\t{}  ", messy.name);
        poll.items.push(messy);
        let out = transform_poll(&serde_json::to_vec(&poll).unwrap(), 2).unwrap();
        let ids: Vec<&str> = out.iter().map(|t| t.id.as_str()).collect();
        assert_eq!(ids, ["z2-5", "z2-4", "z2-3", "z2-2"]);
    }

    #[test]
    fn bad_bodies_name_the_field() {
        let cases: [(&str, &str); 12] = [
            (r#"{"seq":1,"items":[]}"#, "zap"),
            (r#"{"zap":"z","seq":-1,"items":[]}"#, "seq"),
            (r#"{"zap":"z","seq":1.5,"items":[]}"#, "seq"),
            (r#"{"zap":"z","seq":1}"#, "items"),
            (r#"{"zap":"z","seq":1,"items":{}}"#, "items"),
            (r#"{"zap":"z","seq":1,"items":[7]}"#, "items[0]"),
            (r#"{"zap":5,"seq":1,"items":[]}"#, "zap"),
            (r#"{"zap":"z","seq":1,"items":[{"id":"a","updated_at":"t","email":"e","name":"n","tags":[],"note":"x"}]}"#, "items[0].amount"),
            (r#"{"zap":"z","seq":1,"items":[{"id":"a","updated_at":"t","email":null,"name":"n","amount":"1","tags":[],"note":"x"}]}"#, "items[0].email"),
            (r#"{"zap":"z","seq":1,"items":[{"id":"a","updated_at":"t","email":"e","name":"n","amount":"1","tags":["a",2],"note":"x"}]}"#, "items[0].tags[1]"),
            (r#"{"zap":"z","seq":1,"items":[{"id":"a","updated_at":"t","email":"e","name":"n","amount":"1","tags":"a","note":"x"}]}"#, "items[0].tags"),
            (r#"{"zap":"z","seq":1,"items":[{"id":"a","updated_at":"t","email":"e","name":"n","amount":"1","tags":[]}]}"#, "items[0].note"),
        ];
        for (body, field) in cases {
            let err = transform_poll(body.as_bytes(), 1).unwrap_err();
            assert_eq!(err.field(), Some(field), "{body}: {err}");
            assert!(err.is_missing_field() || err.is_wrong_type(), "{body}: {err}");
            assert!(err.to_string().contains(field));
        }
    }

    #[test]
    fn bad_amounts_and_syntax() {
        let mut poll = PollBody::generate("z2", 1, 3, 1);
        poll.items[2].amount = "1e5".into();
        let err = transform_poll(&serde_json::to_vec(&poll).unwrap(), 1).unwrap_err();
        assert!(err.is_bad_amount());
        assert_eq!(err.field(), Some("items[2].amount"));

        for bad in [&b""[..], b"{", b"not json", b"[1,2]", b"{\"zap\":\"z\",\"seq\":1,\"items\":[]} x"] {
            let err = transform_poll(bad, 1).unwrap_err();
            assert!(err.is_json() || err.is_wrong_type(), "{err}");
        }
        assert!(transform_poll(b"[1,2]", 1).unwrap_err().is_wrong_type());
        // Unknown fields are tolerated, and an empty poll is fine.
        let ok = br#"{"zap":"z","seq":1,"items":[],"next":null}"#;
        assert!(transform_poll(ok, 1).unwrap().is_empty());
    }

    #[test]
    fn action_body_matches_serde_json() {
        #[derive(Serialize)]
        struct Action<'a> {
            id: &'a str,
            fingerprint: &'a str,
            item: &'a CanonicalItem,
        }
        let t = &transform_poll(&body("z\"q", 2, 2, 1), 1).unwrap()[0];
        let want = serde_json::to_string(&Action { id: &t.id, fingerprint: &t.fingerprint, item: &t.canonical })
            .unwrap();
        assert_eq!(action_body(t), want);
    }
}
