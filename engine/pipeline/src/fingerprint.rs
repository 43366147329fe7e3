//! An item's fingerprint: `rounds` chained SHA-256 digests of its
//! canonical bytes. `rounds` is the CPU knob of a pipeline (and of workload
//! PZ-1).
//!
//! One hasher is reused and each round digests into a fixed array; hex is
//! formatted once at the end, so the time spent is the hashing asked for,
//! not allocation.

use sha2::{Digest, Sha256};

/// `h_rounds` of the chain `h_1 = SHA-256(bytes)`, `h_{k+1} = SHA-256(h_k)`
/// (over the 32 raw digest bytes), as raw bytes.
///
/// # Panics
///
/// If `rounds` is 0 (configuration validation rejects it).
pub fn fingerprint_raw(canonical_bytes: &[u8], rounds: u32) -> [u8; 32] {
    assert!(rounds >= 1, "fingerprint: rounds must be at least 1");
    let mut hasher = Sha256::new();
    let mut h = sha2::digest::Output::<Sha256>::default();
    hasher.update(canonical_bytes);
    hasher.finalize_into_reset(&mut h);
    for _ in 1..rounds {
        hasher.update(h);
        hasher.finalize_into_reset(&mut h);
    }
    h.into()
}

/// [`fingerprint_raw`] in lower-case hex (64 characters).
///
/// # Panics
///
/// If `rounds` is 0.
pub fn fingerprint(canonical_bytes: &[u8], rounds: u32) -> String {
    fingerprint_hex(fingerprint_raw(canonical_bytes, rounds))
}

/// Lower-case hex of a raw fingerprint.
pub fn fingerprint_hex(raw: [u8; 32]) -> String {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut hex = String::with_capacity(64);
    for b in raw {
        hex.push(char::from(HEX[usize::from(b >> 4)]));
        hex.push(char::from(HEX[usize::from(b & 0xF)]));
    }
    hex
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fingerprint_chains_raw_digests() {
        let h1 = Sha256::digest(b"abc");
        let h2 = Sha256::digest(h1);
        let h3 = Sha256::digest(h2);
        assert_eq!(fingerprint_raw(b"abc", 1), <[u8; 32]>::from(h1));
        assert_eq!(fingerprint_raw(b"abc", 3), <[u8; 32]>::from(h3));
        // SHA-256("abc"), FIPS 180-2.
        assert_eq!(
            fingerprint(b"abc", 1),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert_eq!(fingerprint(b"abc", 2), fingerprint_hex(h2.into()));
        assert_ne!(fingerprint(b"abc", 2), fingerprint(b"abc", 3));
    }

    #[test]
    #[should_panic(expected = "rounds must be at least 1")]
    fn zero_rounds_panics() {
        fingerprint(b"abc", 0);
    }
}
