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

impl fmt::Debug for Template {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // `${VAR}` references as written, never their values; a literal that
        // is a URL without its password; any other literal (a header value
        // such as `Bearer ...`) not at all.
        if self.has_references() {
            fmt::Debug::fmt(&self.0, f)
        } else if self.0.contains("://") {
            fmt::Debug::fmt(&switchyard::io_reactor::redact_url(&self.0), f)
        } else {
            f.write_str("\"***\"")
        }
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
}
