//! The parameters of a PZ-1 run, with the defaults of its specification
//! (`docs/pz1.md`).

use serde::{Deserialize, Serialize};

use super::error::ParamsError;

/// Default `rate`: tasks released per second.
pub const DEFAULT_RATE: f64 = 50.0;
/// Default `duration_s`: how long tasks are released.
pub const DEFAULT_DURATION_S: f64 = 60.0;
/// Default `warmup_s`: the start of the run left out of the figures.
pub const DEFAULT_WARMUP_S: f64 = 5.0;
/// Default `drain_s`: how long the run waits for released tasks after the last release.
pub const DEFAULT_DRAIN_S: f64 = 30.0;
/// Default `items`: events returned by each poll.
pub const DEFAULT_ITEMS: u64 = 50;
/// Default `fresh`: new events per poll after the first.
pub const DEFAULT_FRESH: u64 = 2;
/// Default `rounds`: SHA-256 rounds per item (the CPU knob).
pub const DEFAULT_ROUNDS: u32 = 400;
/// Default `base_ms`: scale of the upstream delay distribution.
pub const DEFAULT_BASE_MS: f64 = 120.0;
/// Default `alpha`: tail index of the upstream delay distribution.
pub const DEFAULT_ALPHA: f64 = 2.5;
/// Default `max_ms`: cap of one upstream delay.
pub const DEFAULT_MAX_MS: u64 = 5000;
/// Most `items` per poll: the whole poll is transformed in one CPU step.
pub const MAX_ITEMS: u64 = 10_000;
/// Most `rounds` per item, as for a configured pipeline's fingerprint step.
pub const MAX_ROUNDS: u32 = switchyard_pipeline::MAX_FINGERPRINT_ROUNDS;

/// The parameters of a PZ-1 run, named as in the spec (units in the names).
///
/// Missing fields take the `DEFAULT_*` values; unknown fields are an error, so
/// a typo in a config file fails at start. Call [`Params::validate`] before use.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Params {
    /// Tasks released per second (open loop, uniform pacing).
    pub rate: f64,
    /// Tasks are released during `[0, duration_s)`.
    pub duration_s: f64,
    /// Tasks released before this are left out of the figures.
    pub warmup_s: f64,
    /// How long to wait for released tasks after the last release.
    pub drain_s: f64,
    /// Number of zaps; `None` or `0` means `2 x rate` (see [`Params::resolved_zaps`]).
    pub zaps: Option<u64>,
    /// Events returned by each poll.
    pub items: u64,
    /// New events per poll after the first (at most `items`).
    pub fresh: u64,
    /// SHA-256 rounds per item; 1 means no extra CPU work.
    pub rounds: u32,
    /// Scale of the upstream delay distribution, in milliseconds.
    pub base_ms: f64,
    /// Tail index of the upstream delay distribution.
    pub alpha: f64,
    /// Cap of one upstream delay, in milliseconds.
    pub max_ms: u64,
}

impl Default for Params {
    fn default() -> Self {
        Params {
            rate: DEFAULT_RATE,
            duration_s: DEFAULT_DURATION_S,
            warmup_s: DEFAULT_WARMUP_S,
            drain_s: DEFAULT_DRAIN_S,
            zaps: None,
            items: DEFAULT_ITEMS,
            fresh: DEFAULT_FRESH,
            rounds: DEFAULT_ROUNDS,
            base_ms: DEFAULT_BASE_MS,
            alpha: DEFAULT_ALPHA,
            max_ms: DEFAULT_MAX_MS,
        }
    }
}

impl Params {
    /// Checks every field; the error names the first bad one.
    pub fn validate(&self) -> Result<(), ParamsError> {
        let positive = |v: f64| v.is_finite() && v > 0.0;
        let non_negative = |v: f64| v.is_finite() && v >= 0.0;
        if !positive(self.rate) {
            return Err(ParamsError::new("rate", "must be a positive finite number"));
        }
        if !positive(self.duration_s) {
            return Err(ParamsError::new("duration_s", "must be a positive finite number"));
        }
        if !non_negative(self.warmup_s) || self.warmup_s >= self.duration_s {
            return Err(ParamsError::new("warmup_s", "must be at least 0 and less than duration_s"));
        }
        if !non_negative(self.drain_s) {
            return Err(ParamsError::new("drain_s", "must be a finite number at least 0"));
        }
        if !(1..=MAX_ITEMS).contains(&self.items) {
            return Err(ParamsError::new("items", "must be 1 to 10,000"));
        }
        if self.fresh == 0 || self.fresh > self.items {
            return Err(ParamsError::new("fresh", "must be at least 1 and at most items"));
        }
        if !(1..=MAX_ROUNDS).contains(&self.rounds) {
            return Err(ParamsError::new("rounds", "must be 1 to 10,000,000"));
        }
        let per_poll = u64::from(self.rounds).saturating_mul(self.items);
        if per_poll > switchyard_pipeline::MAX_FINGERPRINT_ROUNDS_PER_POLL {
            return Err(ParamsError::new("rounds", "rounds x items must be at most 1,000,000,000"));
        }
        if !non_negative(self.base_ms) {
            return Err(ParamsError::new("base_ms", "must be a finite number at least 0"));
        }
        if !positive(self.alpha) {
            return Err(ParamsError::new("alpha", "must be a positive finite number"));
        }
        Ok(())
    }

    /// The number of zaps: `zaps` when set and non-zero, otherwise `2 x rate`
    /// rounded to the nearest integer, and at least 1.
    pub fn resolved_zaps(&self) -> u64 {
        match self.zaps {
            Some(z) if z > 0 => z,
            // `as` saturates (NaN -> 0), so a bad rate still gives 1.
            _ => ((2.0 * self.rate).round() as u64).max(1),
        }
    }

    /// Seconds between two polls of one zap: `zaps / rate`.
    pub fn poll_period_s(&self) -> f64 {
        self.resolved_zaps() as f64 / self.rate
    }

    /// Whether a task released at `release_s` counts in the figures:
    /// `warmup_s <= release_s < duration_s`.
    pub fn in_measured_window(&self, release_s: f64) -> bool {
        release_s >= self.warmup_s && release_s < self.duration_s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_the_spec_and_valid() {
        let p = Params::default();
        p.validate().unwrap();
        assert_eq!(p.resolved_zaps(), 100);
        assert_eq!(p.poll_period_s(), 2.0);
        // Every first poll falls inside the warm-up.
        assert!(p.poll_period_s() < p.warmup_s);
    }

    #[test]
    fn empty_json_gives_defaults_and_unknown_fields_fail() {
        let p: Params = serde_json::from_str("{}").unwrap();
        assert_eq!(p, Params::default());
        let p: Params = serde_json::from_str(r#"{"rate": 10, "zaps": 3}"#).unwrap();
        assert_eq!((p.rate, p.resolved_zaps(), p.items), (10.0, 3, DEFAULT_ITEMS));
        let err = serde_json::from_str::<Params>(r#"{"rate_hz": 10}"#).unwrap_err();
        assert!(err.to_string().contains("rate_hz"), "{err}");
    }

    #[test]
    fn zaps_fall_back_to_twice_the_rate_and_at_least_one() {
        let with = |rate: f64, zaps: Option<u64>| Params { rate, zaps, ..Params::default() };
        assert_eq!(with(50.0, Some(0)).resolved_zaps(), 100);
        assert_eq!(with(50.0, Some(7)).resolved_zaps(), 7);
        assert_eq!(with(0.1, None).resolved_zaps(), 1);
        assert_eq!(with(2.6, None).resolved_zaps(), 5);
        assert_eq!(with(f64::NAN, None).resolved_zaps(), 1);
        assert_eq!(with(0.25, None).poll_period_s(), 4.0);
    }

    #[test]
    fn validate_names_the_bad_field() {
        let cases: [(&str, Params); 15] = [
            ("rounds", Params { rounds: 100_001, items: MAX_ITEMS, fresh: 1, ..Params::default() }),
            ("items", Params { items: MAX_ITEMS + 1, fresh: 1, ..Params::default() }),
            ("rounds", Params { rounds: MAX_ROUNDS + 1, ..Params::default() }),
            ("rate", Params { rate: 0.0, ..Params::default() }),
            ("rate", Params { rate: f64::INFINITY, ..Params::default() }),
            ("duration_s", Params { duration_s: -1.0, ..Params::default() }),
            ("warmup_s", Params { warmup_s: 60.0, ..Params::default() }),
            ("warmup_s", Params { warmup_s: -0.5, ..Params::default() }),
            ("drain_s", Params { drain_s: f64::NAN, ..Params::default() }),
            ("items", Params { items: 0, ..Params::default() }),
            ("fresh", Params { fresh: 0, ..Params::default() }),
            ("fresh", Params { fresh: 51, ..Params::default() }),
            ("rounds", Params { rounds: 0, ..Params::default() }),
            ("base_ms", Params { base_ms: -1.0, ..Params::default() }),
            ("alpha", Params { alpha: 0.0, ..Params::default() }),
        ];
        for (field, p) in cases {
            let err = p.validate().unwrap_err();
            assert_eq!(err.field(), field);
            assert!(err.to_string().contains(field), "{err}");
        }
        Params { warmup_s: 0.0, drain_s: 0.0, base_ms: 0.0, fresh: 50, ..Params::default() }
            .validate()
            .unwrap();
        Params { items: MAX_ITEMS, rounds: 100_000 - 1, ..Params::default() }.validate().unwrap();
        Params { items: 100, rounds: MAX_ROUNDS, ..Params::default() }.validate().unwrap();
    }

    #[test]
    fn measured_window_is_half_open() {
        let p = Params::default();
        assert!(!p.in_measured_window(4.999));
        assert!(p.in_measured_window(5.0));
        assert!(p.in_measured_window(59.98));
        assert!(!p.in_measured_window(60.0));
    }
}
