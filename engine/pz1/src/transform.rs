//! The CPU step of a PZ-1 task: parse a poll body, build each item's canonical
//! form and fingerprint, and drop items whose fingerprint repeats in the poll.
//!
//! The happy path is one typed, borrowing parse. Only when it fails is the body
//! re-read as a JSON tree, to name the first missing or wrong-typed field.

use std::collections::HashSet;

use serde_json::{Map, Value};

use super::canonical::{canonical_json, canonical_of, CanonicalItem, WirePoll};
use super::error::TransformError;
use switchyard_pipeline::{fingerprint_hex, fingerprint_raw};

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
mod tests {
    use super::super::event::{write_poll_body, PollBody};
    use super::*;
    use switchyard_pipeline::fingerprint;

    fn body(zap: &str, seq: u64, items: u64, fresh: u64) -> Vec<u8> {
        let mut out = Vec::new();
        write_poll_body(&mut out, zap, seq, items, fresh);
        out
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
            (
                r#"{"zap":"z","seq":1,"items":[{"id":"a","updated_at":"t","email":"e","name":"n","tags":[],"note":"x"}]}"#,
                "items[0].amount",
            ),
            (
                r#"{"zap":"z","seq":1,"items":[{"id":"a","updated_at":"t","email":null,"name":"n","amount":"1","tags":[],"note":"x"}]}"#,
                "items[0].email",
            ),
            (
                r#"{"zap":"z","seq":1,"items":[{"id":"a","updated_at":"t","email":"e","name":"n","amount":"1","tags":["a",2],"note":"x"}]}"#,
                "items[0].tags[1]",
            ),
            (
                r#"{"zap":"z","seq":1,"items":[{"id":"a","updated_at":"t","email":"e","name":"n","amount":"1","tags":"a","note":"x"}]}"#,
                "items[0].tags",
            ),
            (
                r#"{"zap":"z","seq":1,"items":[{"id":"a","updated_at":"t","email":"e","name":"n","amount":"1","tags":[]}]}"#,
                "items[0].note",
            ),
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
}
