//! Named transform steps applied to one JSON item, its canonical form and
//! its fingerprint.
//!
//! The canonical form is the item's compact JSON with keys sorted at every
//! level, whatever order the API used, so the same item always has the same
//! fingerprint.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::fingerprint::fingerprint;
use crate::text::{collapse_whitespace, decimal_to_cents, sort_dedupe};

/// One named transform step.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "step", rename_all = "snake_case", deny_unknown_fields)]
pub enum StepConfig {
    /// Strip leading and trailing white space.
    Trim {
        /// The string field.
        field: String,
    },
    /// Lower-case a string, or every string of an array.
    LowerCase {
        /// The field.
        field: String,
    },
    /// Replace every run of white space with one space.
    CollapseWhitespace {
        /// The string field.
        field: String,
    },
    /// Parse a decimal amount ("12.05") into integer cents (1205).
    DecimalToCents {
        /// The string field.
        field: String,
        /// Where the cents go (the source field is removed); default: in place.
        #[serde(default)]
        into: Option<String>,
    },
    /// Sort an array of strings and drop duplicates.
    SortDedupe {
        /// The array field.
        field: String,
    },
    /// Fingerprint the item: SHA-256 of its canonical JSON, chained `rounds` times.
    Fingerprint {
        /// Rounds (at least 1).
        rounds: u32,
    },
}

/// Why a step could not be applied to an item.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StepError {
    /// The item's field at fault.
    pub field: String,
    /// What was wrong.
    pub message: String,
}

impl std::fmt::Display for StepError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "field {}: {}", self.field, self.message)
    }
}

fn err(field: &str, message: impl Into<String>) -> StepError {
    StepError { field: field.to_string(), message: message.into() }
}

fn string_field<'a>(item: &'a mut Map<String, Value>, field: &str) -> Result<&'a mut String, StepError> {
    match item.get_mut(field) {
        Some(Value::String(s)) => Ok(s),
        Some(_) => Err(err(field, "expected a string")),
        None => Err(err(field, "missing")),
    }
}

/// Applies every step but the fingerprint to `item`, in order.
pub fn apply_steps(item: &mut Map<String, Value>, steps: &[StepConfig]) -> Result<(), StepError> {
    for step in steps {
        match step {
            StepConfig::Trim { field } => {
                let s = string_field(item, field)?;
                *s = s.trim().to_string();
            }
            StepConfig::LowerCase { field } => match item.get_mut(field) {
                Some(Value::String(s)) => *s = s.to_lowercase(),
                Some(Value::Array(values)) => {
                    for v in values {
                        match v {
                            Value::String(s) => *s = s.to_lowercase(),
                            _ => return Err(err(field, "expected strings in the array")),
                        }
                    }
                }
                Some(_) => return Err(err(field, "expected a string or an array of strings")),
                None => return Err(err(field, "missing")),
            },
            StepConfig::CollapseWhitespace { field } => {
                let s = string_field(item, field)?;
                *s = collapse_whitespace(s);
            }
            StepConfig::DecimalToCents { field, into } => {
                let cents =
                    decimal_to_cents(string_field(item, field)?).map_err(|e| err(field, e.to_string()))?;
                let target = into.as_deref().unwrap_or(field);
                if target != field {
                    item.remove(field);
                }
                item.insert(target.to_string(), Value::from(cents));
            }
            StepConfig::SortDedupe { field } => {
                let strings = match item.get(field) {
                    Some(Value::Array(values)) => values
                        .iter()
                        .map(|v| {
                            v.as_str()
                                .map(str::to_string)
                                .ok_or_else(|| err(field, "expected strings in the array"))
                        })
                        .collect::<Result<Vec<_>, _>>()?,
                    Some(_) => return Err(err(field, "expected an array of strings")),
                    None => return Err(err(field, "missing")),
                };
                item.insert(field.clone(), Value::from(sort_dedupe(strings)));
            }
            StepConfig::Fingerprint { .. } => {}
        }
    }
    Ok(())
}

/// The item's canonical JSON: compact, keys sorted at every level.
pub fn canonical_json(value: &Value) -> String {
    let mut out = String::new();
    write_canonical(value, &mut out);
    out
}

fn write_canonical(value: &Value, out: &mut String) {
    match value {
        Value::Object(map) => {
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort_unstable();
            out.push('{');
            for (i, key) in keys.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(&Value::String(key.clone()).to_string());
                out.push(':');
                write_canonical(&map[key], out);
            }
            out.push('}');
        }
        Value::Array(values) => {
            out.push('[');
            for (i, v) in values.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_canonical(v, out);
            }
            out.push(']');
        }
        scalar => out.push_str(&scalar.to_string()),
    }
}

/// Rounds of the fingerprint step among `steps` (1 when there is none).
pub(crate) fn fingerprint_rounds(steps: &[StepConfig]) -> u32 {
    steps
        .iter()
        .find_map(|s| match s {
            StepConfig::Fingerprint { rounds } => Some(*rounds),
            _ => None,
        })
        .unwrap_or(1)
}

/// A transformed item ready for delivery.
#[derive(Debug, Clone, PartialEq)]
pub struct PreparedItem {
    /// The item's id as a string.
    pub id: String,
    /// Lower-case hex fingerprint of `canonical`.
    pub fingerprint: String,
    /// The canonical JSON of the transformed item.
    pub canonical: String,
}

/// Transforms one item: steps, canonical form, fingerprint. `id_field`
/// must hold a string or an integer.
pub fn prepare_item(
    item: Value,
    id_field: &str,
    steps: &[StepConfig],
    rounds: u32,
) -> Result<PreparedItem, StepError> {
    let Value::Object(mut map) = item else { return Err(err("(item)", "expected a JSON object")) };
    let id = match map.get(id_field) {
        Some(Value::String(s)) if !s.is_empty() => s.clone(),
        Some(Value::Number(n)) if n.is_i64() || n.is_u64() => n.to_string(),
        Some(_) => return Err(err(id_field, "the id must be a non-empty string or an integer")),
        None => return Err(err(id_field, "missing")),
    };
    apply_steps(&mut map, steps)?;
    let canonical = canonical_json(&Value::Object(map));
    Ok(PreparedItem { fingerprint: fingerprint(canonical.as_bytes(), rounds.max(1)), id, canonical })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn steps(rounds: u32) -> Vec<StepConfig> {
        let f = |s: &str| s.to_string();
        vec![
            StepConfig::Trim { field: f("email") },
            StepConfig::LowerCase { field: f("email") },
            StepConfig::Trim { field: f("name") },
            StepConfig::CollapseWhitespace { field: f("name") },
            StepConfig::LowerCase { field: f("name") },
            StepConfig::DecimalToCents { field: f("amount"), into: Some(f("amount_cents")) },
            StepConfig::LowerCase { field: f("tags") },
            StepConfig::SortDedupe { field: f("tags") },
            StepConfig::Fingerprint { rounds },
        ]
    }

    #[test]
    fn steps_build_the_canonical_form_and_fingerprint_it() {
        let item = serde_json::json!({
            "id": "a-1", "email": "  User1@Example.COM ", "name": "  First1   LAST1 ",
            "amount": "1.01", "tags": ["Tag1", "tag1", "TAG1"], "note": "n"
        });
        let prepared = prepare_item(item, "id", &steps(3), 3).unwrap();
        let canonical = r#"{"amount_cents":101,"email":"user1@example.com","id":"a-1","name":"first1 last1","note":"n","tags":["tag1"]}"#;
        assert_eq!(prepared.canonical, canonical);
        assert_eq!(prepared.fingerprint, fingerprint(canonical.as_bytes(), 3));
        assert_eq!(prepared.id, "a-1");
    }

    #[test]
    fn bad_items_name_the_field() {
        let steps = steps(1);
        let no_id = serde_json::json!({"email": "a"});
        assert_eq!(prepare_item(no_id, "id", &steps, 1).unwrap_err().field, "id");
        let bad_amount =
            serde_json::json!({"id": 1, "email": " A ", "name": "x", "amount": "1.234", "tags": []});
        let e = prepare_item(bad_amount, "id", &steps, 1).unwrap_err();
        assert_eq!(e.field, "amount");
        let not_object = serde_json::json!([1]);
        assert!(prepare_item(not_object, "id", &steps, 1).is_err());
        let numeric_id =
            serde_json::json!({"id": 42, "email": "a", "name": "b", "amount": "1", "tags": ["B", "a", "b"]});
        let p = prepare_item(numeric_id, "id", &steps, 1).unwrap();
        assert_eq!(p.id, "42");
        assert!(p.canonical.contains(r#""tags":["a","b"]"#), "{}", p.canonical);
    }

    #[test]
    fn canonical_json_sorts_nested_keys() {
        let v = serde_json::json!({"b": {"z": 1, "a": [{"y": 2, "x": 1}]}, "a": "q\"uote"});
        assert_eq!(canonical_json(&v), r#"{"a":"q\"uote","b":{"a":[{"x":1,"y":2}],"z":1}}"#);
    }
}
