//! The canonical form of an event: what the transform's steps make of it, and
//! the sorted-key compact JSON that gets fingerprinted.
//!
//! `canonical_json` is written directly (the same bytes the configured
//! steps' canonical JSON gives) and the poll body is parsed into borrowed
//! strings: both run once per item per poll.

use std::borrow::Cow;

use serde::{Deserialize, Serialize};

use super::error::TransformError;
use super::event::Event;
use super::json::{write_str, write_u64};
use switchyard_pipeline::{collapse_whitespace, decimal_to_cents, lower_case, sort_dedupe, trim};

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

pub(super) fn canonical_of(event: &WireEvent<'_>) -> Result<CanonicalItem, TransformError> {
    Ok(CanonicalItem {
        amount_cents: decimal_to_cents(&event.amount).map_err(|e| TransformError::amount(e.reason()))?,
        email: lower_case(trim(&event.email)),
        id: event.id.clone().into_owned(),
        name: lower_case(&collapse_whitespace(trim(&event.name))),
        note: event.note.clone().into_owned(),
        tags: sort_dedupe(event.tags.iter().map(|t| lower_case(t)).collect()),
        updated_at: event.updated_at.clone().into_owned(),
    })
}

/// [`PollBody`](super::PollBody) as parsed by [`transform_poll`](super::transform_poll): strings borrow from the body
/// when they hold no escapes, which saves most of the parse's allocations.
#[derive(Deserialize)]
pub(super) struct WirePoll<'a> {
    #[serde(borrow, rename = "zap")]
    _zap: Cow<'a, str>,
    #[serde(rename = "seq")]
    _seq: u64,
    #[serde(borrow)]
    pub(super) items: Vec<WireEvent<'a>>,
}

/// [`Event`], borrowing from the body.
#[derive(Deserialize)]
pub(super) struct WireEvent<'a> {
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

impl WireEvent<'_> {
    /// The event's id.
    pub(super) fn id(&self) -> &str {
        &self.id
    }
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

/// Buffers [`write_canonical`] reuses from item to item, so a poll's items
/// cost no allocation per field.
#[derive(Debug, Default)]
pub(super) struct Scratch {
    text: String,
    tags: Vec<String>,
}

/// Appends the canonical JSON of `event` to `out`: the same bytes as
/// [`canonical_json`] of [`canonical_of`], written straight from the wire
/// form. ASCII fields (the common case) are trimmed, collapsed and
/// lower-cased into `scratch`; others go through the shared text steps,
/// whose Unicode rules (final sigma) this does not repeat. Fails only on a
/// bad `amount`, leaving `out` as it was.
pub(super) fn write_canonical(
    out: &mut Vec<u8>,
    event: &WireEvent<'_>,
    scratch: &mut Scratch,
) -> Result<(), TransformError> {
    let cents = decimal_to_cents(&event.amount).map_err(|e| TransformError::amount(e.reason()))?;
    out.extend_from_slice(b"{\"amount_cents\":");
    if cents < 0 {
        out.push(b'-');
    }
    write_u64(out, cents.unsigned_abs());
    out.extend_from_slice(b",\"email\":");
    lower_case_into(&mut scratch.text, trim(&event.email), false);
    write_str(out, &scratch.text);
    out.extend_from_slice(b",\"id\":");
    write_str(out, &event.id);
    out.extend_from_slice(b",\"name\":");
    lower_case_into(&mut scratch.text, trim(&event.name), true);
    write_str(out, &scratch.text);
    out.extend_from_slice(b",\"note\":");
    write_str(out, &event.note);
    out.extend_from_slice(b",\"tags\":[");
    let count = event.tags.len();
    if scratch.tags.len() < count {
        scratch.tags.resize_with(count, String::new);
    }
    for (slot, tag) in scratch.tags.iter_mut().zip(&event.tags) {
        lower_case_into(slot, tag, false);
    }
    let tags = &mut scratch.tags[..count];
    tags.sort_unstable();
    let mut previous: Option<&String> = None;
    for tag in tags.iter() {
        if previous == Some(tag) {
            continue;
        }
        if previous.is_some() {
            out.push(b',');
        }
        write_str(out, tag);
        previous = Some(tag);
    }
    out.extend_from_slice(b"],\"updated_at\":");
    write_str(out, &event.updated_at);
    out.push(b'}');
    Ok(())
}

/// `into` becomes `s` lower-cased, with its white-space runs collapsed to
/// one space when `collapse` is set: [`lower_case`] (of
/// [`collapse_whitespace`]), without allocating for ASCII.
fn lower_case_into(into: &mut String, s: &str, collapse: bool) {
    into.clear();
    if !s.is_ascii() {
        into.push_str(&if collapse { lower_case(&collapse_whitespace(s)) } else { lower_case(s) });
        return;
    }
    let mut in_run = false;
    for c in s.chars() {
        if collapse && c.is_whitespace() {
            if !in_run {
                into.push(' ');
            }
            in_run = true;
        } else {
            into.push(c.to_ascii_lowercase());
            in_run = false;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
    fn written_canonical_json_is_the_canonical_items() {
        let mut events: Vec<Event> = (0..60).map(|i| Event::generate("z3", i)).collect();
        let odd = Event {
            id: "é\"q".into(),
            updated_at: "".into(),
            email: " \t MiXed@Case.ORG\u{b}\n".into(),
            name: "  Ada \t\n\u{b}\u{c}\r LOVELACE  ".into(),
            amount: "-3.1".into(),
            tags: ["B", "a", "b", "A", "a", "", "ÉTÉ", "été", "ΣΑΣ"].map(String::from).to_vec(),
            note: "\u{1}\\".into(),
        };
        events.push(odd.clone());
        events.push(Event {
            name: "ΌΣΟΣ  Σ\tΑΣ".into(),
            email: "ÄB@X.DE".into(),
            tags: vec![],
            ..odd.clone()
        });
        events.push(Event { name: "".into(), email: " ".into(), tags: vec!["x".into()], ..odd.clone() });
        let mut scratch = Scratch::default();
        for event in &events {
            let wire = WireEvent {
                id: Cow::Borrowed(&event.id),
                updated_at: Cow::Borrowed(&event.updated_at),
                email: Cow::Borrowed(&event.email),
                name: Cow::Borrowed(&event.name),
                amount: Cow::Borrowed(&event.amount),
                tags: event.tags.iter().map(|t| Cow::Borrowed(t.as_str())).collect(),
                note: Cow::Borrowed(&event.note),
            };
            let mut out = b"kept".to_vec();
            write_canonical(&mut out, &wire, &mut scratch).unwrap();
            let expected = canonical_json(&canonical(event).unwrap());
            assert_eq!(std::str::from_utf8(&out[4..]).unwrap(), expected, "{event:?}");
        }
        let bad = Event { amount: "1.234".into(), ..odd };
        let wire = WireEvent {
            id: Cow::Borrowed(&bad.id),
            updated_at: Cow::Borrowed(&bad.updated_at),
            email: Cow::Borrowed(&bad.email),
            name: Cow::Borrowed(&bad.name),
            amount: Cow::Borrowed(&bad.amount),
            tags: vec![],
            note: Cow::Borrowed(&bad.note),
        };
        let mut out = Vec::new();
        assert!(write_canonical(&mut out, &wire, &mut scratch).unwrap_err().is_bad_amount());
        assert!(out.is_empty(), "nothing written for a bad amount");
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
}
