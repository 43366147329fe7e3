//! The errors of PZ-1's pure functions.

use std::fmt;

/// A PZ-1 parameter is out of range. Names the field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParamsError {
    field: &'static str,
    reason: &'static str,
}

impl ParamsError {
    pub(super) fn new(field: &'static str, reason: &'static str) -> Self {
        ParamsError { field, reason }
    }

    /// The name of the bad field, as in the config (`"rate"`, `"warmup_s"`, ...).
    pub fn field(&self) -> &'static str {
        self.field
    }
}

impl fmt::Display for ParamsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "invalid pz1 param `{}`: {}", self.field, self.reason)
    }
}

impl std::error::Error for ParamsError {}

/// A poll body or one of its items could not be transformed.
///
/// Names the field when there is one, as a path into the poll body
/// (`items[3].amount`); never quotes the offending value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TransformError {
    kind: Kind,
    field: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Kind {
    /// Not JSON at all, or JSON that serde rejected for another reason.
    Json(String),
    Missing,
    WrongType(&'static str),
    Amount(&'static str),
}

impl TransformError {
    pub(super) fn json(message: String) -> Self {
        TransformError { kind: Kind::Json(message), field: None }
    }

    pub(super) fn missing(field: String) -> Self {
        TransformError { kind: Kind::Missing, field: Some(field) }
    }

    pub(super) fn wrong_type(field: Option<String>, expected: &'static str) -> Self {
        TransformError { kind: Kind::WrongType(expected), field }
    }

    pub(super) fn amount(reason: &'static str) -> Self {
        TransformError { kind: Kind::Amount(reason), field: None }
    }

    /// Attaches the field path (used when a step's error surfaces in a poll).
    pub(super) fn in_field(mut self, field: String) -> Self {
        self.field = Some(field);
        self
    }

    /// The path of the bad field in the poll body, e.g. `items[3].email`.
    pub fn field(&self) -> Option<&str> {
        self.field.as_deref()
    }

    /// The body is not valid JSON.
    pub fn is_json(&self) -> bool {
        matches!(self.kind, Kind::Json(_))
    }

    /// A required field is missing.
    pub fn is_missing_field(&self) -> bool {
        matches!(self.kind, Kind::Missing)
    }

    /// A field has the wrong JSON type.
    pub fn is_wrong_type(&self) -> bool {
        matches!(self.kind, Kind::WrongType(_))
    }

    /// An amount is not a decimal with at most two places that fits in `i64` cents.
    pub fn is_bad_amount(&self) -> bool {
        matches!(self.kind, Kind::Amount(_))
    }
}

impl fmt::Display for TransformError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (&self.kind, &self.field) {
            (Kind::Json(message), _) => write!(f, "poll body is not valid: {message}"),
            (Kind::Missing, Some(field)) => write!(f, "missing field `{field}`"),
            (Kind::Missing, None) => write!(f, "missing field"),
            (Kind::WrongType(expected), Some(field)) => write!(f, "field `{field}` is not {expected}"),
            (Kind::WrongType(expected), None) => write!(f, "poll body is not {expected}"),
            (Kind::Amount(reason), Some(field)) => write!(f, "bad amount in `{field}`: {reason}"),
            (Kind::Amount(reason), None) => write!(f, "bad amount: {reason}"),
        }
    }
}

impl std::error::Error for TransformError {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_name_the_field_and_predicates_match() {
        let e = TransformError::missing("items[2].email".into());
        assert_eq!(e.to_string(), "missing field `items[2].email`");
        assert!(e.is_missing_field() && !e.is_wrong_type() && !e.is_json() && !e.is_bad_amount());

        let e = TransformError::wrong_type(Some("seq".into()), "an unsigned integer");
        assert_eq!(e.to_string(), "field `seq` is not an unsigned integer");
        assert!(e.is_wrong_type());

        let e = TransformError::amount("more than two decimal places");
        assert_eq!(e.field(), None);
        let e = e.in_field("items[0].amount".into());
        assert_eq!(e.to_string(), "bad amount in `items[0].amount`: more than two decimal places");
        assert!(e.is_bad_amount());

        let e = ParamsError::new("rate", "must be positive");
        assert_eq!(e.to_string(), "invalid pz1 param `rate`: must be positive");
    }
}
