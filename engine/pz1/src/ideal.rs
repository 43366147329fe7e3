//! Ideal latency: what an engine with unlimited capacity would achieve on the
//! same schedule, the yardstick that slowdown is measured against.
//!
//! A zap's polls are serial, so even a perfect engine may start a poll late:
//! it waits for the zap's previous poll. The clock keeps, per zap, when that
//! previous poll ideally ended.

use std::collections::HashMap;

/// Per-zap ideal end times.
///
/// Feed each zap's tasks **in `seq` order** (e.g. sort finished tasks by
/// schedule index after the run); other zaps may be interleaved freely. Feeding
/// a zap out of order chains its polls in the wrong order and gives wrong
/// ideals.
#[derive(Debug, Clone, Default)]
pub struct IdealClock {
    ideal_end_s: HashMap<String, f64>,
}

impl IdealClock {
    /// An empty clock.
    pub fn new() -> Self {
        IdealClock::default()
    }

    /// Records the next poll of `zap`, released at `release_s` and needing
    /// `work_s` seconds (the sum of its upstream delays plus its CPU time
    /// measured alone), and returns `(ideal_start_s, ideal_end_s)`:
    ///
    /// ```text
    /// ideal_start = max(release_s, ideal_end of the zap's previous poll)
    /// ideal_end   = ideal_start + work_s
    /// ```
    ///
    /// The ideal latency is `ideal_end_s - release_s`.
    pub fn ideal(&mut self, zap: &str, release_s: f64, work_s: f64) -> (f64, f64) {
        let previous_end = self.ideal_end_s.get(zap).copied().unwrap_or(f64::NEG_INFINITY);
        let start = release_s.max(previous_end);
        let end = start + work_s;
        match self.ideal_end_s.get_mut(zap) {
            Some(slot) => *slot = end,
            None => {
                self.ideal_end_s.insert(zap.to_owned(), end);
            }
        }
        (start, end)
    }
}

/// `latency / ideal`, both measured from the release time (any unit, the same
/// for both). 1.0 means the engine added nothing.
///
/// When `ideal` is not positive (no delays, no CPU): 1.0 if `latency` is not
/// positive either, otherwise infinity.
pub fn slowdown(latency: f64, ideal: f64) -> f64 {
    if ideal > 0.0 {
        latency / ideal
    } else if latency > 0.0 {
        f64::INFINITY
    } else {
        1.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn polls_of_a_zap_chain_and_zaps_are_independent() {
        let mut clock = IdealClock::new();
        assert_eq!(clock.ideal("z0", 0.0, 3.0), (0.0, 3.0));
        // Released at 2 s, but the previous poll ideally ends at 3 s.
        assert_eq!(clock.ideal("z0", 2.0, 0.5), (3.0, 3.5));
        // Another zap does not wait for z0.
        assert_eq!(clock.ideal("z1", 2.0, 0.5), (2.0, 2.5));
        // A late release starts at release time.
        assert_eq!(clock.ideal("z0", 10.0, 1.0), (10.0, 11.0));
        assert_eq!(clock.ideal("z1", 2.1, 0.0), (2.5, 2.5));
    }

    #[test]
    fn slowdown_edges() {
        assert_eq!(slowdown(0.3, 0.2), 1.4999999999999998);
        assert_eq!(slowdown(0.2, 0.2), 1.0);
        assert_eq!(slowdown(0.0, 0.0), 1.0);
        assert_eq!(slowdown(0.1, 0.0), f64::INFINITY);
        assert!(slowdown(f64::NAN, 1.0).is_nan());
    }
}
