//! The CPU step of a PZ-1 task: parse a poll body, build each item's canonical
//! form and fingerprint, and drop items whose fingerprint repeats in the poll.
//!
//! The happy path is one typed, borrowing parse. Only when it fails is the body
//! re-read as a JSON tree, to name the first missing or wrong-typed field.

use std::collections::HashSet;

use serde_json::{Map, Value};

use super::canonical::{canonical_json, canonical_of, write_canonical, CanonicalItem, Scratch, WirePoll};
use super::error::TransformError;
use switchyard_pipeline::{fingerprint_hex, fingerprint_raw, PreparedItem};

/// One item of a poll after the transform.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transformed {
    /// The event's id.
    pub id: String,
    /// [`fingerprint`](switchyard_pipeline::fingerprint()) of `canonical_json`, lower-case hex.
    pub fingerprint: String,
    /// The canonical object.
    pub canonical: CanonicalItem,
    /// [`canonical_json`] of `canonical`: the fingerprinted bytes.
    pub canonical_json: String,
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

/// [`transform_poll`] as the pipeline wants it: each kept item's id,
/// fingerprint and canonical JSON, the same values, in the same order, with
/// the same errors. The canonical JSON is written straight from the parsed
/// body into one buffer per item, with no canonical object in between: the
/// engine's own share of a task's CPU, apart from the hashing.
///
/// # Panics
///
/// If `rounds` is 0.
pub fn prepare_poll(body: &[u8], rounds: u32) -> Result<Vec<PreparedItem>, TransformError> {
    assert!(rounds >= 1, "pz1: rounds must be at least 1");
    let poll: WirePoll<'_> = serde_json::from_slice(body).map_err(|e| explain(body, e))?;
    let mut seen = HashSet::with_capacity(poll.items.len());
    let mut out = Vec::with_capacity(poll.items.len());
    let mut scratch = Scratch::default();
    for (i, event) in poll.items.iter().enumerate() {
        let mut json = Vec::with_capacity(256);
        write_canonical(&mut json, event, &mut scratch)
            .map_err(|e| e.in_field(format!("items[{i}].amount")))?;
        let raw = fingerprint_raw(&json, rounds);
        if !seen.insert(raw) {
            continue;
        }
        out.push(PreparedItem {
            id: event.id().to_owned(),
            fingerprint: fingerprint_hex(raw),
            canonical: String::from_utf8(json).expect("written from strings"),
        });
    }
    Ok(out)
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
        let item =
            item.as_object().ok_or_else(|| TransformError::wrong_type(Some(path.clone()), "an object"))?;
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
mod tests;
