//! A TOML error as it may be shown: the key, the line and column and the
//! reason, never the text.
//!
//! The `toml` crate's own message echoes the offending line, and serde's
//! can echo a value (`invalid type: string "...", expected u64`): either may
//! be a secret, mistyped or not (`token = "sk_live_...` without its closing
//! quote).

use std::ops::Range;

use switchyard_pipeline::ConfigError;
use toml::de::{DeTable, DeValue};
use toml::Spanned;

/// What replaces a value found in a message.
const REDACTED: &str = "***";
/// Values shorter than this are left in a message: too short to be a
/// secret, and short enough to turn up by chance in its other words.
const MIN_SCRUBBED_LEN: usize = 4;

/// `error`, from reading `text`, as a configuration error naming the key at
/// fault when the TOML itself could be read, else the line and column.
pub(super) fn parse_error(text: &str, error: &toml::de::Error) -> ConfigError {
    let Some(span) = error.span() else {
        return ConfigError::new("configuration", without_values(error.message(), &[]));
    };
    let (line, column) = line_and_column(text, span.start);
    let at = format!("line {line}, column {column}");
    match key_at(text, span.start) {
        Some(found) => {
            // Only a value is scrubbed: an unknown key's name is the news.
            let values = match &found.value {
                Some(value) => vec![unquoted(text.get(span).unwrap_or("")), value.as_str()],
                None => Vec::new(),
            };
            let reason = without_values(error.message(), &values);
            ConfigError::new(found.path, format!("{reason} ({at})"))
        }
        // Bad TOML: the parser's reasons are fixed text, naming no input.
        None => ConfigError::new(at, without_values(error.message(), &[])),
    }
}

/// `message` without the value it complains about: serde's standard
/// messages are rewritten to keep only the kind of value and what was
/// expected; in any other message each of `values` is replaced by `***`.
fn without_values(message: &str, values: &[&str]) -> String {
    for prefix in ["invalid type: ", "invalid value: "] {
        if let Some(rest) = message.strip_prefix(prefix) {
            // `string "sk_live_..."`, `integer `5``: the kind is what
            // precedes the quoted value.
            let (unexpected, expected) = split_expected(rest);
            let kind = unexpected.split(['"', '`', '\'']).next().unwrap_or("").trim();
            return format!("{prefix}{kind}{expected}");
        }
    }
    if let Some(rest) = message.strip_prefix("unknown variant ") {
        return format!("unknown variant{}", split_expected(rest).1);
    }
    values
        .iter()
        .filter(|value| value.len() >= MIN_SCRUBBED_LEN)
        .fold(message.to_string(), |message, value| message.replace(value, REDACTED))
}

/// `value, expected what` as `(value, ", expected what")`. Split at the
/// last `, expected ` (the value, first, may hold those words too).
fn split_expected(rest: &str) -> (&str, &str) {
    match rest.rfind(", expected ") {
        Some(at) => rest.split_at(at),
        None => (rest, ""),
    }
}

/// A value as written without its quotes (`"x"`, `'x'`, `"""x"""`).
fn unquoted(written: &str) -> &str {
    let written = written.trim();
    for quote in ["\"\"\"", "'''", "\"", "'"] {
        if let Some(inner) = written.strip_prefix(quote).and_then(|w| w.strip_suffix(quote)) {
            return inner;
        }
    }
    written
}

/// 1-based line and column (in characters) of byte `at` of `text`.
fn line_and_column(text: &str, at: usize) -> (usize, usize) {
    let before = text.get(..at.min(text.len())).unwrap_or(text);
    let line_start = before.rfind('\n').map_or(0, |nl| nl + 1);
    (before.matches('\n').count() + 1, before[line_start..].chars().count() + 1)
}

/// The deepest key whose name or value covers a byte.
struct Found {
    path: String,
    /// The value, as parsed, when the byte is in it (a string's text, or
    /// empty for other values: their text is taken from the document).
    value: Option<String>,
}

/// The key at byte `at` of `text`, `pipelines[0].source.url` style; `None`
/// when `text` is not TOML at all.
fn key_at(text: &str, at: usize) -> Option<Found> {
    let document = DeTable::parse(text).ok()?;
    let mut best = None;
    search_table(document.get_ref(), at, &mut Vec::new(), &mut best);
    best.map(|(path, value)| Found { path: join(&path), value })
}

type Best = Option<(Vec<String>, Option<String>)>;

fn search_table(table: &DeTable<'_>, at: usize, path: &mut Vec<String>, best: &mut Best) {
    for (key, value) in table.iter() {
        path.push(key.get_ref().to_string());
        // A table's span is its header only: its keys are searched anyway.
        if covers(value.span(), at) {
            consider(path, Some(value), best);
        } else if covers(key.span(), at) {
            consider(path, None, best);
        }
        search_value(value, at, path, best);
        path.pop();
    }
}

fn search_value(value: &Spanned<DeValue<'_>>, at: usize, path: &mut Vec<String>, best: &mut Best) {
    match value.get_ref() {
        DeValue::Table(table) => search_table(table, at, path, best),
        DeValue::Array(array) => {
            for (i, element) in array.iter().enumerate() {
                path.push(format!("[{i}]"));
                if covers(element.span(), at) {
                    consider(path, Some(element), best);
                }
                search_value(element, at, path, best);
                path.pop();
            }
        }
        _ => {}
    }
}

/// Keeps `path` when deeper than the best so far; `value` is the value the
/// byte is in, if it is in one.
fn consider(path: &[String], value: Option<&Spanned<DeValue<'_>>>, best: &mut Best) {
    if best.as_ref().is_none_or(|(deepest, _)| deepest.len() < path.len()) {
        let value = value.map(|v| v.get_ref().as_str().unwrap_or("").to_string());
        *best = Some((path.to_vec(), value));
    }
}

fn covers(span: Range<usize>, at: usize) -> bool {
    span.contains(&at) || (span.is_empty() && span.start == at)
}

fn join(path: &[String]) -> String {
    let mut joined = String::new();
    for part in path {
        if !joined.is_empty() && !part.starts_with('[') {
            joined.push('.');
        }
        joined.push_str(part);
    }
    joined
}

#[cfg(test)]
mod tests {
    use super::*;

    fn error(text: &str) -> ConfigError {
        let err = toml::from_str::<crate::ServiceConfig>(text).unwrap_err();
        parse_error(text, &err)
    }

    #[test]
    fn a_mistyped_line_is_located_but_not_echoed() {
        let err = error("state = \"ephemeral\"\ntoken = \"sk_live_CANARY\n");
        assert_eq!(err.key(), "line 2, column 24");
        assert_eq!(err.to_string(), "line 2, column 24: invalid basic string, expected `\"`");
        let err = error("[engine]\nmax_in_flight = sk_live_CANARY\n");
        assert!(!err.to_string().contains("CANARY"), "{err}");
        assert!(err.to_string().starts_with("line 2, column 17: "), "{err}");
    }

    #[test]
    fn serde_errors_name_the_key_and_the_expected_type_not_the_value() {
        let err = error("[engine]\nmax_in_flight = \"sk_live_CANARY\"\n");
        assert_eq!(err.key(), "engine.max_in_flight");
        assert_eq!(
            err.to_string(),
            "engine.max_in_flight: invalid type: string, expected usize (line 2, column 17)"
        );
        let err = error("state = \"sk_live_CANARY\"\n");
        assert_eq!(
            err.to_string(),
            "state: unknown variant, expected `redis` or `ephemeral` (line 1, column 9)"
        );
        let err = error("[engine]\nmodel = \"sk_live_CANARY\"\n");
        assert_eq!(err.key(), "engine.model");
        assert!(!err.to_string().contains("CANARY"), "{err}");
        let pipeline = "[[pipelines]]\nname = \"p\"\n[pipelines.action]\nurl = \"http://h/\"\n\
                        [pipelines.source]\nurl = \"http://h/\"\npoll_interval_ms = \"sk_live_CANARY\"\n";
        let err = error(pipeline);
        assert_eq!(err.key(), "pipelines[0].source.poll_interval_ms");
        assert!(!err.to_string().contains("CANARY"), "{err}");
        let headers = pipeline.replace("\"sk_live_CANARY\"", "1\nheaders = { Authorization = 5 }");
        assert_eq!(error(&headers).key(), "pipelines[0].source.headers.Authorization");
    }

    #[test]
    fn unknown_and_missing_keys_are_named() {
        let err = error("[engine]\nmax_inflight = 4\n");
        assert_eq!(err.key(), "engine.max_inflight");
        assert!(err.to_string().contains("unknown field `max_inflight`"), "{err}");
        let err = error("[[pipelines]]\nname = \"p\"\n");
        assert_eq!(err.key(), "pipelines[0]");
        assert!(err.to_string().contains("missing field `source`"), "{err}");
    }

    #[test]
    fn other_messages_lose_the_value_found_at_the_key() {
        assert_eq!(
            without_values("unknown model \"sk_live_CANARY\" (expected hybrid)", &["sk_live_CANARY"]),
            "unknown model \"***\" (expected hybrid)"
        );
        assert_eq!(
            without_values("invalid value: integer `0`, expected a port", &[]),
            "invalid value: integer, expected a port"
        );
        assert_eq!(
            without_values("invalid type: string \"a, expected b\", expected u64", &[]),
            "invalid type: string, expected u64"
        );
    }
}
