//! Allocation-free JSON writing helpers that produce the same bytes as
//! `serde_json`'s compact serializer.

/// `v` in decimal, written into the end of `buf`.
pub(super) fn u64_digits(buf: &mut [u8; 20], mut v: u64) -> &[u8] {
    let mut i = buf.len();
    loop {
        i -= 1;
        buf[i] = b'0' + (v % 10) as u8;
        v /= 10;
        if v == 0 {
            break;
        }
    }
    &buf[i..]
}

/// Appends `v` in decimal.
pub(super) fn write_u64(out: &mut Vec<u8>, v: u64) {
    out.extend_from_slice(u64_digits(&mut [0u8; 20], v));
}

/// Appends `v` in decimal, left-padded with zeros to at least `width` digits.
pub(super) fn write_u64_padded(out: &mut Vec<u8>, v: u64, width: usize) {
    let start = out.len();
    write_u64(out, v);
    let len = out.len() - start;
    if len < width {
        let pad = width - len;
        out.splice(start..start, std::iter::repeat_n(b'0', pad));
    }
}

/// Appends `s` as a JSON string, quoted and escaped exactly as `serde_json` does:
/// `"` and `\` escaped, control characters as `\b \t \n \f \r` or `\u00xx`,
/// everything else (including non-ASCII) written as is.
pub(super) fn write_str(out: &mut Vec<u8>, s: &str) {
    out.push(b'"');
    write_str_content(out, s);
    out.push(b'"');
}

/// Appends `s` escaped as in [`write_str`], without the quotes.
pub(super) fn write_str_content(out: &mut Vec<u8>, s: &str) {
    let bytes = s.as_bytes();
    let mut start = 0;
    for (i, &b) in bytes.iter().enumerate() {
        let escape: &[u8] = match b {
            b'"' => b"\\\"",
            b'\\' => b"\\\\",
            0x08 => b"\\b",
            b'\t' => b"\\t",
            b'\n' => b"\\n",
            0x0C => b"\\f",
            b'\r' => b"\\r",
            0x00..=0x1F => b"",
            _ => continue,
        };
        out.extend_from_slice(&bytes[start..i]);
        if escape.is_empty() {
            const HEX: &[u8; 16] = b"0123456789abcdef";
            out.extend_from_slice(&[
                b'\\',
                b'u',
                b'0',
                b'0',
                HEX[(b >> 4) as usize],
                HEX[(b & 0xF) as usize],
            ]);
        } else {
            out.extend_from_slice(escape);
        }
        start = i + 1;
    }
    out.extend_from_slice(&bytes[start..]);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_match_display() {
        for v in [0, 1, 9, 10, 99, 100, 12345, u64::MAX] {
            let mut out = Vec::new();
            write_u64(&mut out, v);
            assert_eq!(out, v.to_string().into_bytes());
        }
        let mut out = b"x".to_vec();
        write_u64_padded(&mut out, 7, 2);
        write_u64_padded(&mut out, 2026, 4);
        write_u64_padded(&mut out, 12345, 4);
        write_u64_padded(&mut out, 0, 2);
        assert_eq!(out, b"x0720261234500");
    }

    #[test]
    fn strings_match_serde_json() {
        let all_ascii: String = (0u8..=0x7F).map(char::from).collect();
        for s in
            ["", "plain", "quote\" back\\slash", "tab\tnl\nr\r\u{8}\u{c}", "\u{0}\u{1f}", "é/ü €", &all_ascii]
        {
            let mut out = Vec::new();
            write_str(&mut out, s);
            assert_eq!(String::from_utf8(out).unwrap(), serde_json::to_string(s).unwrap(), "{s:?}");
        }
    }
}
