//! The CPU stage of a pipeline: a poll's body in, prepared items out.
//!
//! A [`Transform`] runs on the engine's CPU pool (or inline, under the
//! gevent- and prefork-shaped models), so it may take milliseconds; it must
//! not block on I/O. [`StepsTransform`] is what a configured pipeline uses:
//! it reads the item array through a JSON pointer and applies the named
//! steps to each item. A workload whose items have a known shape may bring
//! a compiled transform instead (PZ-1 does, with a typed, borrowing parse),
//! as long as it produces the same [`PreparedItem`]s its steps would.

use std::fmt;

use serde_json::Value;

use crate::steps::{fingerprint_rounds, prepare_item, PreparedItem, StepConfig};

/// Why a poll's body could not be turned into items: names the field or
/// the item, never quotes a value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TransformError(String);

impl TransformError {
    /// An error with this message.
    pub fn new(message: impl Into<String>) -> Self {
        TransformError(message.into())
    }
}

impl fmt::Display for TransformError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for TransformError {}

/// Most characters of a rejected item kept with its reason.
pub const MAX_REJECTED_ITEM_CHARS: usize = 4_096;

/// An item a transform could not prepare, and why. One bad item never
/// fails its poll: it is rejected and the others go on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RejectedItem {
    /// Its position in the poll.
    pub index: usize,
    /// The item as the API sent it (compact JSON, at most
    /// [`MAX_REJECTED_ITEM_CHARS`] characters).
    pub raw: String,
    /// Why, naming the field.
    pub reason: String,
}

/// What a transform made of a poll's body.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Prepared {
    /// The prepared items, in the body's order.
    pub items: Vec<PreparedItem>,
    /// The items that could not be prepared.
    pub rejected: Vec<RejectedItem>,
}

/// Turns a poll's response body into prepared items, in the body's order.
///
/// A body that cannot be read at all fails the poll; an item that cannot be
/// prepared is rejected, with its reason, and the rest go on. Dropping a
/// poll's repeats is the transform's: [`StepsTransform`] keeps the first
/// item of each id (dedup state is kept by id); workload PZ-1's transform
/// keeps the first of each fingerprint, as the workload says.
pub trait Transform: Send + Sync + fmt::Debug + 'static {
    /// Parses `body` and prepares every item: its id, canonical form and
    /// fingerprint.
    fn prepare(&self, body: &[u8]) -> Result<Prepared, TransformError>;
}

/// The configured transform: the array at `items_pointer`, each item put
/// through `steps`, at most `max_items` of them, the first of each id kept.
#[derive(Debug, Clone, PartialEq)]
pub struct StepsTransform {
    items_pointer: String,
    id_field: String,
    steps: Vec<StepConfig>,
    rounds: u32,
    max_items: usize,
}

impl StepsTransform {
    /// A transform applying `steps` (whose fingerprint step, if any, sets
    /// `rounds`) to the items at `items_pointer`.
    pub fn new(
        items_pointer: impl Into<String>,
        id_field: impl Into<String>,
        steps: Vec<StepConfig>,
        max_items: usize,
    ) -> Self {
        let rounds = fingerprint_rounds(&steps).max(1);
        StepsTransform {
            items_pointer: items_pointer.into(),
            id_field: id_field.into(),
            steps,
            rounds,
            max_items,
        }
    }
}

impl Transform for StepsTransform {
    fn prepare(&self, body: &[u8]) -> Result<Prepared, TransformError> {
        let pointer = self.items_pointer.as_str();
        let mut doc: Value = serde_json::from_slice(body)
            .map_err(|e| TransformError::new(format!("poll body is not valid JSON: {e}")))?;
        let items = match doc.pointer_mut(pointer).map(Value::take) {
            Some(Value::Array(items)) => items,
            Some(_) => return Err(TransformError::new(format!("{pointer:?} is not an array"))),
            None => return Err(TransformError::new(format!("no {pointer:?} in the poll body"))),
        };
        if items.len() > self.max_items {
            return Err(TransformError::new(format!(
                "{} items exceed max_items {}",
                items.len(),
                self.max_items
            )));
        }
        let mut ids = std::collections::HashSet::with_capacity(items.len());
        let mut prepared = Prepared { items: Vec::with_capacity(items.len()), rejected: Vec::new() };
        for (index, item) in items.into_iter().enumerate() {
            match prepare_item(item, &self.id_field, &self.steps, self.rounds) {
                Ok(item) => {
                    if ids.insert(item.id.clone()) {
                        prepared.items.push(item);
                    }
                }
                Err(e) => {
                    prepared.rejected.push(RejectedItem { index, raw: String::new(), reason: e.to_string() })
                }
            }
        }
        if !prepared.rejected.is_empty() {
            // The steps consumed the bad items: read them again as sent (a
            // second parse, only for a poll that has rejects).
            fill_raw(body, pointer, &mut prepared.rejected);
        }
        Ok(prepared)
    }
}

/// Puts each rejected item's text as the API sent it into `raw`.
fn fill_raw(body: &[u8], pointer: &str, rejected: &mut [RejectedItem]) {
    let Ok(mut doc) = serde_json::from_slice::<Value>(body) else { return };
    let Some(Value::Array(items)) = doc.pointer_mut(pointer).map(Value::take) else { return };
    for reject in rejected {
        if let Some(item) = items.get(reject.index) {
            reject.raw = item.to_string().chars().take(MAX_REJECTED_ITEM_CHARS).collect();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids(prepared: &Prepared) -> Vec<&str> {
        prepared.items.iter().map(|i| i.id.as_str()).collect()
    }

    #[test]
    fn a_poll_body_is_read_through_its_pointer_and_bounded() {
        let body = br#"{"data":{"items":[{"id":"a"},{"id":"b"},{"id":"a"}]}}"#;
        let transform = |max| StepsTransform::new("/data/items", "id", Vec::new(), max);
        assert_eq!(ids(&transform(10).prepare(body).unwrap()), ["a", "b"], "the first of each id");
        assert!(transform(2).prepare(body).unwrap_err().to_string().contains("exceed max_items"));
        let nope = StepsTransform::new("/data/nope", "id", Vec::new(), 10);
        assert!(nope.prepare(body).unwrap_err().to_string().contains("no \"/data/nope\""));
        let root = StepsTransform::new("", "id", Vec::new(), 10);
        assert!(root.prepare(b"[").unwrap_err().to_string().contains("not valid JSON"));
        assert_eq!(ids(&root.prepare(br#"[{"id":7}]"#).unwrap()), ["7"]);
        let mixed = root.prepare(br#"[{"id":7},{"name":"x"},{"id":8}]"#).unwrap();
        assert_eq!(ids(&mixed), ["7", "8"], "one bad item does not fail the poll");
        assert_eq!(mixed.rejected.len(), 1);
        let reject = &mixed.rejected[0];
        assert_eq!((reject.index, reject.raw.as_str()), (1, r#"{"name":"x"}"#));
        assert!(reject.reason.starts_with("field id"), "{}", reject.reason);
    }

    #[test]
    fn the_fingerprint_step_sets_the_rounds() {
        let steps = vec![StepConfig::Fingerprint { rounds: 5 }];
        assert_eq!(StepsTransform::new("", "id", steps, 1).rounds, 5);
        assert_eq!(StepsTransform::new("", "id", Vec::new(), 1).rounds, 1);
    }
}
