//! The text primitives of the transform steps, one small pure function
//! each, so configured steps and compiled transforms share them.
//!
//! "White space" is Unicode `White_Space` throughout (as [`str::trim`] and
//! [`char::is_whitespace`]); lower-casing is Unicode (as [`str::to_lowercase`]).

use std::fmt;

/// A decimal amount could not be read as cents; says why, never quotes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AmountError(&'static str);

impl AmountError {
    /// Why the amount was refused (`"empty"`, `"more than two decimal places"`, ...).
    pub fn reason(&self) -> &'static str {
        self.0
    }
}

impl fmt::Display for AmountError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "bad amount: {}", self.0)
    }
}

impl std::error::Error for AmountError {}

/// Removes leading and trailing white space.
pub fn trim(s: &str) -> &str {
    s.trim()
}

/// Lower-cases (Unicode).
pub fn lower_case(s: &str) -> String {
    if s.is_ascii() {
        s.to_ascii_lowercase()
    } else {
        s.to_lowercase()
    }
}

/// Replaces every run of white space with one space `' '`. Does not trim: a
/// leading or trailing run becomes one space, so compose with [`trim`] first.
pub fn collapse_whitespace(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut in_run = false;
    for c in s.chars() {
        if c.is_whitespace() {
            if !in_run {
                out.push(' ');
            }
            in_run = true;
        } else {
            out.push(c);
            in_run = false;
        }
    }
    out
}

/// Sorts and removes duplicates (byte-wise order of the UTF-8 strings).
pub fn sort_dedupe(mut v: Vec<String>) -> Vec<String> {
    v.sort_unstable();
    v.dedup();
    v
}

/// Parses a decimal amount into integer cents: `"12.05"` -> 1205,
/// `"12.5"` -> 1250, `"12"` -> 1200, `"-3.10"` -> -310.
///
/// Accepted: an optional `-`, one or more ASCII digits, then optionally `.`
/// and one or two digits. Everything else is an error: empty strings, signs
/// other than a leading `-`, white space, exponents, a bare `.`, more than two
/// decimal places, and values outside `i64` cents.
pub fn decimal_to_cents(s: &str) -> Result<i64, AmountError> {
    let (negative, rest) = match s.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, s),
    };
    let (whole, frac) = match rest.split_once('.') {
        Some((whole, frac)) => (whole, Some(frac)),
        None => (rest, None),
    };
    if rest.is_empty() {
        return Err(AmountError("empty"));
    }
    let all_digits = |p: &str| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit());
    if !all_digits(whole) || frac.is_some_and(|f| !all_digits(f)) {
        return Err(AmountError("not a decimal number"));
    }
    let frac = frac.unwrap_or("");
    if frac.len() > 2 {
        return Err(AmountError("more than two decimal places"));
    }
    let overflow = || AmountError("out of range");
    // Accumulate the magnitude in u64: i64::MIN's magnitude does not fit in i64.
    let mut cents: u64 = 0;
    for b in whole.bytes() {
        cents =
            cents.checked_mul(10).and_then(|c| c.checked_add(u64::from(b - b'0'))).ok_or_else(overflow)?;
    }
    let mut frac_cents = 0;
    for (i, b) in frac.bytes().enumerate() {
        frac_cents += u64::from(b - b'0') * if i == 0 { 10 } else { 1 };
    }
    cents = cents.checked_mul(100).and_then(|c| c.checked_add(frac_cents)).ok_or_else(overflow)?;
    if negative {
        0i64.checked_sub_unsigned(cents).ok_or_else(overflow)
    } else {
        i64::try_from(cents).map_err(|_| overflow())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn string_steps() {
        assert_eq!(trim("  a b \t\n"), "a b");
        assert_eq!(trim("   "), "");
        assert_eq!(lower_case("User1@Example.COM"), "user1@example.com");
        assert_eq!(lower_case("ÉCOLE Straße"), "école straße");
        assert_eq!(collapse_whitespace("First1   LAST1"), "First1 LAST1");
        assert_eq!(collapse_whitespace("  a \t\n b  "), " a b ");
        assert_eq!(collapse_whitespace("a\u{a0}\u{2003}b"), "a b");
        assert_eq!(collapse_whitespace(""), "");
        assert_eq!(lower_case(&collapse_whitespace(trim("  First1   LAST1 "))), "first1 last1");
        assert_eq!(
            sort_dedupe(["tag1", "Tag1", "tag1", "b", "a"].map(String::from).to_vec()),
            ["Tag1", "a", "b", "tag1"]
        );
        assert!(sort_dedupe(Vec::new()).is_empty());
    }

    #[test]
    fn amounts_accepted() {
        let cases = [
            ("12.05", 1205),
            ("12.5", 1250),
            ("12", 1200),
            ("-3.10", -310),
            ("0.00", 0),
            ("-0", 0),
            ("007.1", 710),
            ("999.99", 99_999),
            ("92233720368547758.07", i64::MAX),
            ("-92233720368547758.08", i64::MIN),
        ];
        for (s, want) in cases {
            assert_eq!(decimal_to_cents(s).unwrap(), want, "{s}");
        }
    }

    #[test]
    fn amounts_rejected_with_a_reason() {
        let cases = [
            ("", "empty"),
            ("-", "empty"),
            ("abc", "not a decimal"),
            ("1e5", "not a decimal"),
            ("1.", "not a decimal"),
            (".5", "not a decimal"),
            ("+1", "not a decimal"),
            (" 1", "not a decimal"),
            ("1 ", "not a decimal"),
            ("--1", "not a decimal"),
            ("1.2.3", "not a decimal"),
            ("1,5", "not a decimal"),
            ("١٢", "not a decimal"), // non-ASCII digits
            ("1.234", "more than two decimal places"),
            ("92233720368547758.08", "out of range"),
            ("-92233720368547758.09", "out of range"),
            ("99999999999999999999999", "out of range"),
        ];
        for (s, reason) in cases {
            let err = decimal_to_cents(s).unwrap_err();
            assert!(err.reason().contains(reason), "{s}: {err}");
        }
    }
}
