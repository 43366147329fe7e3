//! Upstream delays: the client tells the upstream how long each call takes.
//!
//! A delay is a pure function of `(zap, seq, step)`, so every engine and peer
//! asks for the same waits in the same places. The distribution is Pareto-like
//! (`base_ms * u^(-1/alpha)`, capped): with the defaults the median is about
//! 158 ms, the mean about 200 ms and p99 about 760 ms.

use sha2::{Digest, Sha256};

use super::json::u64_digits;
use super::params::Params;

/// The delay of step `step` (0 for the poll, 1, 2, ... for the actions) of
/// poll `seq` of `zap`, in whole milliseconds:
///
/// ```text
/// x     = first 8 bytes of SHA-256("{zap}/{seq}/{step}"), big-endian
/// u     = (x + 0.5) / 2^64                      (in (0, 1))
/// delay = floor(min(max_ms, base_ms * u^(-1/alpha)))
/// ```
///
/// `x + 0.5` is computed in `f64` (`x` rounded to the nearest `f64` first), as
/// Python's `(x + 0.5) / 2**64` does.
pub fn delay_ms(zap: &str, seq: u64, step: u32, base_ms: f64, alpha: f64, max_ms: u64) -> u64 {
    let mut hasher = Sha256::new();
    hasher.update(zap.as_bytes());
    hasher.update(b"/");
    hasher.update(u64_digits(&mut [0u8; 20], seq));
    hasher.update(b"/");
    hasher.update(u64_digits(&mut [0u8; 20], u64::from(step)));
    let digest = hasher.finalize();
    let mut first = [0u8; 8];
    first.copy_from_slice(&digest[..8]);
    let x = u64::from_be_bytes(first);
    let u = (x as f64 + 0.5) / 18_446_744_073_709_551_616.0; // 2^64
    let delay = (base_ms * u.powf(-1.0 / alpha)).min(max_ms as f64);
    // `as` saturates: NaN (bad params) gives 0, never a panic.
    delay.floor() as u64
}

/// The delays of one task: the poll's (step 0) and one per action
/// (steps 1..=`new_items`, in the order the actions fire: oldest item first).
pub fn task_delays(zap: &str, seq: u64, new_items: u32, params: &Params) -> (u64, Vec<u64>) {
    let delay = |step| delay_ms(zap, seq, step, params.base_ms, params.alpha, params.max_ms);
    (delay(0), (1..=new_items).map(delay).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(zap: &str, seq: u64, step: u32) -> u64 {
        delay_ms(zap, seq, step, 120.0, 2.5, 5000)
    }

    #[test]
    fn spec_examples() {
        assert_eq!(d("z0", 1, 0), 127);
        assert_eq!(d("z0", 1, 1), 135);
        assert_eq!(d("z42", 17, 2), 211);
    }

    #[test]
    fn never_below_base_and_capped() {
        // u < 1, so u^(-1/alpha) > 1: every delay is at least base_ms.
        for seq in 1..2000 {
            let v = d("z1", seq, 0);
            assert!((120..=5000).contains(&v), "{v}");
        }
        for seq in 1..200 {
            assert!(delay_ms("z1", seq, 0, 120.0, 0.05, 777) <= 777);
        }
        // A tiny alpha pushes nearly everything to the cap.
        let capped = (1..200).filter(|&s| delay_ms("z1", s, 0, 120.0, 0.05, 777) == 777).count();
        assert!(capped > 150, "{capped}");
        assert_eq!(delay_ms("z1", 1, 0, 0.0, 2.5, 5000), 0);
        assert_eq!(delay_ms("z1", 1, 0, 120.0, 2.5, 0), 0);
    }

    #[test]
    fn steps_zaps_and_seqs_differ() {
        let all: Vec<u64> = [d("z0", 1, 0), d("z0", 1, 1), d("z0", 2, 0), d("z1", 1, 0)].into();
        assert!(all.windows(2).any(|w| w[0] != w[1]), "{all:?}");
        // "z1/11/0" and "z11/1/0" must not collide by construction of the key.
        assert_ne!(d("z1", 11, 0), d("z11", 1, 0));
    }

    #[test]
    fn task_delays_uses_steps_in_order() {
        let p = Params::default();
        let (poll, actions) = task_delays("z42", 17, 3, &p);
        assert_eq!(poll, d("z42", 17, 0));
        assert_eq!(actions, [d("z42", 17, 1), d("z42", 17, 2), d("z42", 17, 3)]);
        assert_eq!(actions[1], 211);
        assert!(task_delays("z42", 17, 0, &p).1.is_empty());
    }
}
