//! Configuration strings that may name environment variables: `${VAR}`.
//!
//! The file keeps the template, so printing or logging the configuration
//! never shows a secret; the value is resolved once, at start, and a
//! missing variable is a configuration error naming the key and variable.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::error::ConfigError;

/// A string with `${VAR}` references to the environment.
#[derive(Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Template(String);

impl Template {
    /// A template from its text.
    pub fn new(text: impl Into<String>) -> Self {
        Template(text.into())
    }

    /// The text as written (with `${VAR}` references, never their values).
    pub fn as_written(&self) -> &str {
        &self.0
    }

    /// Whether the text references the environment.
    pub fn has_references(&self) -> bool {
        self.0.contains("${")
    }

    /// Substitutes every `${VAR}` from the environment; `key` names the
    /// setting in errors.
    pub fn resolve(&self, key: &str) -> Result<String, ConfigError> {
        self.resolve_with(key, |var| std::env::var(var).ok())
    }

    pub(crate) fn resolve_with(
        &self,
        key: &str,
        lookup: impl Fn(&str) -> Option<String>,
    ) -> Result<String, ConfigError> {
        let mut out = String::with_capacity(self.0.len());
        let mut rest = self.0.as_str();
        while let Some(start) = rest.find("${") {
            out.push_str(&rest[..start]);
            let after = &rest[start + 2..];
            let Some(end) = after.find('}') else {
                return Err(ConfigError::new(key, "unclosed ${ in value"));
            };
            let var = &after[..end];
            if var.is_empty() || !var.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
                return Err(ConfigError::new(key, format!("invalid variable name ${{{var}}}")));
            }
            let value = lookup(var)
                .ok_or_else(|| ConfigError::new(key, format!("environment variable {var} is not set")))?;
            out.push_str(&value);
            rest = &after[end + 1..];
        }
        out.push_str(rest);
        Ok(out)
    }
}

impl Template {
    /// The text as a URL may be shown (`check-config`, logs, `Debug`):
    /// `${VAR}` and `{seq}` references as written, wherever they are, and
    /// every literal secret redacted as [`redact_url`] does (password, lone
    /// username, query values, fragment). A literal password stays hidden
    /// beside a reference elsewhere (`https://user:pw@host/${PATH}`).
    ///
    /// [`redact_url`]: switchyard::io_reactor::redact_url
    pub fn redacted_url(&self) -> String {
        if only_references(&self.0) {
            return self.0.clone();
        }
        let stand_ins = StandIns::of(&self.0);
        let keep = |part: &str| stand_ins.only_stand_ins(part);
        let shown = match leading_reference(&self.0) {
            // `${API_BASE}/orders?key=...`: the reference stands for scheme
            // and host; the rest is read as the path of a stand-in base.
            Some(_) => {
                let (first, rest) = stand_ins.split_first();
                let stand_in = format!("{STAND_IN_BASE}{rest}");
                let shown = switchyard::io_reactor::redact_url_keeping(&stand_in, keep);
                match shown.strip_prefix(STAND_IN_BASE) {
                    Some(rest) => format!("{first}{rest}"),
                    None => shown,
                }
            }
            None => switchyard::io_reactor::redact_url_keeping(&stand_ins.text, keep),
        };
        stand_ins.restore(&shown)
    }

    /// The text as a header value may be shown: as written when it is
    /// `${VAR}` references only, optionally after a well-known
    /// authentication scheme (`Bearer ${TOKEN}`); `***` when it holds any
    /// other literal text (an unknown first word may be a secret).
    pub fn redacted_header_value(&self) -> String {
        let after_scheme = match self.0.split_once(' ') {
            Some((scheme, rest)) if AUTH_SCHEMES.iter().any(|known| known.eq_ignore_ascii_case(scheme)) => {
                rest.trim_start_matches(' ')
            }
            _ => self.0.as_str(),
        };
        if only_references(after_scheme) {
            self.0.clone()
        } else {
            REDACTED.to_string()
        }
    }
}

impl fmt::Debug for Template {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // A template does not know whether it is a URL or a header value:
        // one that reads as a URL is shown as one, anything else as a header
        // value (so a literal is never shown whole).
        if self.0.contains("://") || leading_reference(&self.0).is_some() {
            fmt::Debug::fmt(&self.redacted_url(), f)
        } else {
            fmt::Debug::fmt(&self.redacted_header_value(), f)
        }
    }
}

/// The authentication schemes a header value may start with and still be
/// shown as written: the registered ones HTTP APIs use, and the common
/// unregistered `Token`, `Bot` and `ApiKey`.
const AUTH_SCHEMES: [&str; 7] = ["Basic", "Bearer", "Digest", "Negotiate", "Token", "Bot", "ApiKey"];

/// What a redacted template shows in place of a literal secret.
const REDACTED: &str = "***";
/// The scheme and host a URL template that starts with a reference is read
/// under (`.invalid` is reserved: it names no real host).
const STAND_IN_BASE: &str = "http://stand-in.invalid";

/// A `${VAR}` reference (`VAR` of letters, digits and `_`) or `{seq}` at
/// the start of `text`: its length.
fn reference_at(text: &str) -> Option<usize> {
    if text.starts_with("{seq}") {
        return Some("{seq}".len());
    }
    let name = text.strip_prefix("${")?;
    let end = name.find('}')?;
    let valid = end > 0 && name[..end].chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
    valid.then_some(end + "${}".len())
}

/// The reference a URL template starts with, when a path, query or
/// fragment follows it (it stands for the scheme and host).
fn leading_reference(text: &str) -> Option<&str> {
    let len = reference_at(text)?;
    text[len..].starts_with(['/', '?', '#']).then(|| &text[..len])
}

/// The references of `text` in order, each with where it starts.
fn references(text: &str) -> Vec<(usize, &str)> {
    let mut found = Vec::new();
    let mut at = 0;
    while let Some(c) = text[at..].chars().next() {
        match reference_at(&text[at..]) {
            Some(len) => {
                found.push((at, &text[at..at + len]));
                at += len;
            }
            None => at += c.len_utf8(),
        }
    }
    found
}

/// Whether `text` is one or more references and nothing else.
fn only_references(text: &str) -> bool {
    let found = references(text);
    !found.is_empty() && found.iter().map(|(_, r)| r.len()).sum::<usize>() == text.len()
}

/// A template with stand-ins for its references while the URL parser reads
/// it: lower-case letters and digits, which every part of a URL (the host
/// too) keeps as they are, and which occur nowhere in the template.
struct StandIns {
    /// The template, each reference replaced by its stand-in.
    text: String,
    /// `(stand-in, reference)` in the order of the template.
    pairs: Vec<(String, String)>,
}

impl StandIns {
    fn of(template: &str) -> Self {
        // Compared lower-cased: the parser lower-cases a host. `zq…x` has no
        // proper prefix that is also a suffix, so no stand-in can be found
        // straddling the template's text and another stand-in.
        let lower = template.to_ascii_lowercase();
        let mut marker = "zqx".to_string();
        while lower.contains(&marker) {
            marker.insert(2, 'j');
        }
        let mut text = String::with_capacity(template.len());
        let mut pairs = Vec::new();
        let mut copied = 0;
        for (i, (at, reference)) in references(template).into_iter().enumerate() {
            let stand_in = format!("{marker}{i}{marker}");
            text.push_str(&template[copied..at]);
            text.push_str(&stand_in);
            copied = at + reference.len();
            pairs.push((stand_in, reference.to_string()));
        }
        text.push_str(&template[copied..]);
        StandIns { text, pairs }
    }

    /// The first stand-in and the text after it.
    fn split_first(&self) -> (&str, &str) {
        match self.pairs.first() {
            Some((stand_in, _)) => {
                (stand_in, self.text.strip_prefix(stand_in.as_str()).unwrap_or(&self.text))
            }
            None => ("", &self.text),
        }
    }

    /// Whether `part` of the URL is stand-ins and nothing else.
    fn only_stand_ins(&self, part: &str) -> bool {
        let rest = self.pairs.iter().fold(part.to_string(), |rest, (stand_in, _)| rest.replace(stand_in, ""));
        !part.is_empty() && rest.is_empty()
    }

    /// `shown` with every stand-in back to the reference it stands for.
    fn restore(&self, shown: &str) -> String {
        self.pairs
            .iter()
            .fold(shown.to_string(), |text, (stand_in, reference)| text.replace(stand_in, reference))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(var: &str) -> Option<String> {
        (var == "TOKEN").then(|| "s3cret".to_string())
    }

    #[test]
    fn substitutes_and_reports_missing_variables_by_key() {
        let t = Template::new("Bearer ${TOKEN}");
        assert_eq!(t.resolve_with("h", env).unwrap(), "Bearer s3cret");
        assert_eq!(format!("{t:?}"), "\"Bearer ${TOKEN}\"");
        assert_eq!(format!("{:?}", Template::new("Bearer s3cret")), "\"***\"");
        let url = format!("{:?}", Template::new("https://user:s3cret@api.example.com/x"));
        assert!(url.contains("api.example.com") && !url.contains("s3cret"), "{url}");
        let err = Template::new("${NOPE}").resolve_with("pipelines[0].source.headers.X", env).unwrap_err();
        assert_eq!(err.key(), "pipelines[0].source.headers.X");
        assert!(err.to_string().contains("NOPE is not set"), "{err}");
        assert!(Template::new("${oops").resolve_with("k", env).is_err());
        assert!(Template::new("${A-B}").resolve_with("k", env).is_err());
        assert_eq!(Template::new("plain").resolve_with("k", env).unwrap(), "plain");
    }

    #[test]
    fn url_references_are_shown_as_written_and_literal_secrets_are_not() {
        let cases = [
            (
                "https://api.example.com/x?api_key=${KEY}&page={seq}",
                "https://api.example.com/x?api_key=${KEY}&page={seq}",
            ),
            (
                "https://api.example.com/x?api_key=sk_live_123&page={seq}",
                "https://api.example.com/x?api_key=***&page={seq}",
            ),
            ("https://user:literalpw@host/${X}", "https://user:***@host/${X}"),
            ("https://user:${PASSWORD}@host/x", "https://user:${PASSWORD}@host/x"),
            ("https://${USER}:${PASSWORD}@host/x", "https://${USER}:${PASSWORD}@host/x"),
            ("https://lit${TOKEN}@host/x", "https://***@host/x"),
            ("https://${HOST}/x?key=literal", "https://${HOST}/x?key=***"),
            ("https://${SUB}.example.com/{seq}#literal", "https://${SUB}.example.com/{seq}#***"),
            ("${API_BASE}/orders?page={seq}&key=literal", "${API_BASE}/orders?page={seq}&key=***"),
            ("${API_BASE}?key=literal", "${API_BASE}/?key=***"),
            ("${WEBHOOK_URL}", "${WEBHOOK_URL}"),
            ("mysql://root:${MYSQL_PASSWORD}@db:3306/test", "mysql://root:${MYSQL_PASSWORD}@db:3306/test"),
            ("redis://:literal@127.0.0.1:6379/${DB}", "redis://:***@127.0.0.1:6379/${DB}"),
            // The parser cannot read a stand-in as a port: nothing is shown.
            ("https://${HOST}:${PORT}/x?key=literal", "<unparsable url>"),
            ("https://user:CANARY/pw@host/${X}", "<unparsable url>"),
        ];
        for (written, shown) in cases {
            assert_eq!(Template::new(written).redacted_url(), shown, "{written}");
        }
    }

    #[test]
    fn a_template_text_like_a_stand_in_is_not_mistaken_for_one() {
        let t = Template::new("https://zqx0zqx.example.com/x?k=${K}&zqjx=ZQX1ZQX");
        assert_eq!(t.redacted_url(), "https://zqx0zqx.example.com/x?k=${K}&zqjx=***");
    }

    #[test]
    fn header_values_show_references_only() {
        for shown in ["Bearer ${TOKEN}", "token  ${TOKEN}", "${A}${B}", "${TOKEN}"] {
            assert_eq!(Template::new(shown).redacted_header_value(), shown);
        }
        for hidden in [
            "Bearer s3cret",
            "Bearer s3cret${T}",
            "sk_${T}",
            "${T} s3cret",
            "${oops",
            "Bearer ${T-1}",
            "Secret ${T}",
        ] {
            assert_eq!(Template::new(hidden).redacted_header_value(), "***", "{hidden}");
        }
    }

    #[test]
    fn debug_never_shows_a_literal_secret() {
        for (written, secret) in [
            ("https://user:CANARY/pw@127.0.0.1:9/hook", "CANARY"),
            ("https://user:CANARY%2Fpw@127.0.0.1:9/hook", "CANARY"),
            ("https://api.example.com/x?api_key=CANARY&page={seq}", "CANARY"),
            ("https://user:CANARY@host/${X}", "CANARY"),
            ("${BASE}/x?api_key=CANARY", "CANARY"),
            ("CANARY ${TOKEN}", "CANARY"),
            ("Bearer CANARY", "CANARY"),
        ] {
            let shown = format!("{:?}", Template::new(written));
            assert!(!shown.contains(secret), "{written} shown as {shown}");
        }
        assert_eq!(format!("{:?}", Template::new("${BASE}/x?page={seq}")), "\"${BASE}/x?page={seq}\"");
    }
}
