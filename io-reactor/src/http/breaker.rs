//! A circuit breaker per host: over the sliding window of its most recent
//! calls (at most `window_calls`, none older than `window_ms`), once there
//! are `min_calls`, a failure or slow-call ratio over its threshold opens it; open, it fails
//! calls at once; after `open_ms` it lets a few probes through (half-open);
//! all succeed, it closes; one fails, it opens again.
//!
//! Why: a dead or hanging host otherwise holds every caller for a whole
//! request timeout, and their admission slots with them, so one bad host
//! slows every pipeline. Open, it costs a fast, clear error instead.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use crate::config::BreakerConfig;

/// How long a caller is told to wait while enough probes are out.
const PROBES_OUT_RETRY: Duration = Duration::from_millis(100);

/// Where a breaker stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum BreakerState {
    Closed,
    HalfOpen,
    Open,
}

impl BreakerState {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            BreakerState::Closed => "closed",
            BreakerState::HalfOpen => "half_open",
            BreakerState::Open => "open",
        }
    }
}

/// How one call went, as the breaker judges it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum CallResult {
    Success,
    /// A connect error, a timeout, a 5xx.
    Failure,
}

/// One call of the window: when it was counted, and how it went.
#[derive(Debug, Clone, Copy)]
struct Call {
    at: Instant,
    failed: bool,
    slow: bool,
}

/// The most recent calls, oldest first: a count window (recent calls weigh,
/// not a long healthy past) bounded in age too, with its failed and slow
/// calls counted as they come and go, so a call costs no walk over it.
#[derive(Default)]
struct Window {
    calls: VecDeque<Call>,
    failed: u32,
    slow: u32,
}

impl Window {
    fn push(&mut self, call: Call) {
        self.failed += u32::from(call.failed);
        self.slow += u32::from(call.slow);
        self.calls.push_back(call);
    }

    fn pop_front(&mut self) {
        if let Some(call) = self.calls.pop_front() {
            self.failed -= u32::from(call.failed);
            self.slow -= u32::from(call.slow);
        }
    }

    fn clear(&mut self) {
        self.calls.clear();
        (self.failed, self.slow) = (0, 0);
    }
}

struct State {
    state: BreakerState,
    window: Window,
    opened_at: Instant,
    probes_in_flight: u32,
    probes_succeeded: u32,
    /// Bumped on every transition: a call admitted before one is not
    /// counted after it (a slow call that started while closed must not
    /// reopen a breaker that has since closed again).
    generation: u64,
}

/// One host's breaker.
pub(crate) struct Breaker {
    config: BreakerConfig,
    window_age: Duration,
    state: Mutex<State>,
}

/// A call the breaker let through; settle it with [`Breaker::record`].
/// Dropped unsettled (the caller gave up), a probe's place is given back.
pub(crate) struct Admission {
    breaker: Arc<Breaker>,
    generation: u64,
    probe: bool,
    settled: bool,
    /// Counted slow already, when it crossed the threshold in flight.
    slow_noted: bool,
}

/// The breaker is open: fail now, try again after `retry_in`.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Open {
    pub(crate) retry_in: Duration,
}

impl Breaker {
    pub(crate) fn new(config: &BreakerConfig) -> Self {
        let now = Instant::now();
        Breaker {
            window_age: Duration::from_millis(config.window_ms),
            config: config.clone(),
            state: Mutex::new(State {
                state: BreakerState::Closed,
                window: Window {
                    calls: VecDeque::with_capacity(config.window_calls as usize),
                    ..Window::default()
                },
                opened_at: now,
                probes_in_flight: 0,
                probes_succeeded: 0,
                generation: 0,
            }),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Where the breaker stands (an open breaker whose time is up stays
    /// open until the next call probes).
    pub(crate) fn state(&self) -> BreakerState {
        self.lock().state
    }

    fn open_for(&self) -> Duration {
        Duration::from_millis(self.config.open_ms)
    }

    /// Lets a call through, or says the host is off limits for now. The
    /// second value is the state after the call, when it changed.
    pub(crate) fn admit(self: &Arc<Self>) -> (Result<Admission, Open>, Option<BreakerState>) {
        if !self.config.enabled {
            return (Ok(self.admission(0, false)), None);
        }
        let mut state = self.lock();
        let mut changed = None;
        if state.state == BreakerState::Open {
            let open_for = state.opened_at.elapsed();
            if open_for < self.open_for() {
                return (Err(Open { retry_in: self.open_for() - open_for }), None);
            }
            state.state = BreakerState::HalfOpen;
            state.probes_in_flight = 0;
            state.probes_succeeded = 0;
            state.generation += 1;
            changed = Some(BreakerState::HalfOpen);
        }
        if state.state == BreakerState::HalfOpen {
            if state.probes_in_flight + state.probes_succeeded >= self.config.half_open_probes {
                // Enough probes are out; the rest wait for their verdict.
                return (Err(Open { retry_in: PROBES_OUT_RETRY }), changed);
            }
            state.probes_in_flight += 1;
            return (Ok(self.admission(state.generation, true)), changed);
        }
        (Ok(self.admission(state.generation, false)), changed)
    }

    fn admission(self: &Arc<Self>, generation: u64, probe: bool) -> Admission {
        Admission { breaker: Arc::clone(self), generation, probe, settled: false, slow_noted: false }
    }

    /// Settles a call; returns the new state when the call changed it.
    pub(crate) fn record(
        &self,
        mut admission: Admission,
        result: CallResult,
        took: Duration,
    ) -> Option<BreakerState> {
        admission.settled = true;
        if !self.config.enabled {
            return None;
        }
        let failed = result == CallResult::Failure;
        let slow = admission.slow_noted || self.slow_threshold().is_some_and(|at| took >= at);
        let mut state = self.lock_for(&admission)?;
        match state.state {
            BreakerState::HalfOpen if admission.probe => {
                state.probes_in_flight = state.probes_in_flight.saturating_sub(1);
                if failed || slow {
                    return Some(self.open(&mut state));
                }
                state.probes_succeeded += 1;
                if state.probes_succeeded >= self.config.half_open_probes {
                    state.state = BreakerState::Closed;
                    state.window.clear();
                    state.generation += 1;
                    return Some(BreakerState::Closed);
                }
                None
            }
            // A call counted when it crossed the slow threshold counts once.
            BreakerState::Closed if admission.slow_noted => None,
            BreakerState::Closed => self.count(&mut state, failed, slow),
            _ => None,
        }
    }

    /// How long a call may take before it counts as slow; `None` when the
    /// breaker is off (no timer to arm).
    pub(crate) fn slow_threshold(&self) -> Option<Duration> {
        self.config.enabled.then(|| Duration::from_millis(self.config.slow_call_ms))
    }

    /// A call still in flight has just crossed the slow-call threshold: it
    /// counts as slow now, not when it ends, so a host that hangs opens its
    /// breaker within `slow_call_ms` instead of holding every caller for a
    /// whole request timeout first.
    pub(crate) fn note_slow(&self, admission: &mut Admission) -> Option<BreakerState> {
        if !self.config.enabled || admission.slow_noted {
            return None;
        }
        admission.slow_noted = true;
        let mut state = self.lock_for(admission)?;
        match state.state {
            BreakerState::HalfOpen if admission.probe => {
                state.probes_in_flight = state.probes_in_flight.saturating_sub(1);
                Some(self.open(&mut state))
            }
            BreakerState::Closed => self.count(&mut state, false, true),
            _ => None,
        }
    }

    /// The state, when `admission` belongs to its current generation (a
    /// call let through before the last transition no longer counts).
    fn lock_for(&self, admission: &Admission) -> Option<std::sync::MutexGuard<'_, State>> {
        let state = self.lock();
        (state.generation == admission.generation).then_some(state)
    }

    /// Adds a call to the window and opens the breaker when the window's
    /// ratios say so.
    fn count(&self, state: &mut State, failed: bool, slow: bool) -> Option<BreakerState> {
        let now = Instant::now();
        let window = &mut state.window;
        if window.calls.len() >= self.config.window_calls as usize {
            window.pop_front();
        }
        window.push(Call { at: now, failed, slow });
        while window.calls.front().is_some_and(|c| now.duration_since(c.at) > self.window_age) {
            window.pop_front();
        }
        let calls = window.calls.len() as u32;
        if calls < self.config.min_calls {
            return None;
        }
        let (failed, slow_calls) = (window.failed, window.slow);
        let ratio = |n: u32| f64::from(n) / f64::from(calls);
        if ratio(failed) >= self.config.failure_ratio || ratio(slow_calls) >= self.config.slow_call_ratio {
            return Some(self.open(state));
        }
        None
    }

    fn open(&self, state: &mut State) -> BreakerState {
        state.state = BreakerState::Open;
        state.opened_at = Instant::now();
        state.probes_in_flight = 0;
        state.probes_succeeded = 0;
        state.generation += 1;
        BreakerState::Open
    }
}

impl Drop for Admission {
    fn drop(&mut self) {
        if self.settled || !self.probe || self.slow_noted {
            return;
        }
        let mut state = self.breaker.lock();
        if state.generation == self.generation {
            state.probes_in_flight = state.probes_in_flight.saturating_sub(1);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn breaker(open_ms: u64) -> Arc<Breaker> {
        Arc::new(Breaker::new(&BreakerConfig {
            window_calls: 8,
            window_ms: 1_000,
            min_calls: 4,
            failure_ratio: 0.5,
            slow_call_ms: 100,
            slow_call_ratio: 0.5,
            open_ms,
            half_open_probes: 2,
            enabled: true,
        }))
    }

    fn call(b: &Arc<Breaker>, result: CallResult, took_ms: u64) -> Option<BreakerState> {
        let admission = b.admit().0.expect("admitted");
        b.record(admission, result, Duration::from_millis(took_ms))
    }

    #[test]
    fn opens_only_over_the_minimum_volume_and_the_ratio() {
        let b = breaker(60_000);
        assert_eq!(call(&b, CallResult::Failure, 1), None);
        assert_eq!(call(&b, CallResult::Failure, 1), None);
        assert_eq!(call(&b, CallResult::Success, 1), None, "3 calls: under the minimum volume");
        assert_eq!(call(&b, CallResult::Failure, 1), Some(BreakerState::Open), "3 of 4 failed");
        assert!(b.admit().0.is_err(), "open: calls fail at once");
        assert_eq!(b.state(), BreakerState::Open);
    }

    #[test]
    fn slow_calls_open_it_too_and_successes_keep_it_closed() {
        let b = breaker(60_000);
        for _ in 0..10 {
            assert_eq!(call(&b, CallResult::Success, 1), None);
        }
        let healthy = breaker(60_000);
        for _ in 0..3 {
            call(&healthy, CallResult::Success, 500);
        }
        assert_eq!(call(&healthy, CallResult::Success, 500), Some(BreakerState::Open), "4 of 4 slow");
    }

    #[test]
    fn half_open_probes_close_it_on_success_and_reopen_it_on_failure() {
        let b = breaker(30);
        for _ in 0..4 {
            call(&b, CallResult::Failure, 1);
        }
        assert_eq!(b.state(), BreakerState::Open);
        std::thread::sleep(Duration::from_millis(40));
        let (first, changed) = b.admit();
        assert_eq!(changed, Some(BreakerState::HalfOpen));
        let second = b.admit().0.expect("second probe");
        assert!(b.admit().0.is_err(), "only two probes at once");
        assert_eq!(b.record(first.unwrap(), CallResult::Success, Duration::ZERO), None);
        assert_eq!(b.record(second, CallResult::Success, Duration::ZERO), Some(BreakerState::Closed));
        for _ in 0..4 {
            call(&b, CallResult::Failure, 1);
        }
        std::thread::sleep(Duration::from_millis(40));
        let probe = b.admit().0.unwrap();
        assert_eq!(b.record(probe, CallResult::Failure, Duration::ZERO), Some(BreakerState::Open));
        assert!(b.admit().0.is_err());
    }

    #[test]
    fn a_call_counts_slow_once_when_it_crosses_the_threshold() {
        let b = breaker(60_000);
        let mut held: Vec<Admission> = (0..4).map(|_| b.admit().0.unwrap()).collect();
        for admission in &mut held[..3] {
            assert_eq!(b.note_slow(admission), None);
        }
        assert_eq!(
            b.note_slow(&mut held[3]),
            Some(BreakerState::Open),
            "4 of 4 in flight past the threshold"
        );
        assert!(b.admit().0.is_err(), "open before any of them answered");
        for admission in held {
            assert_eq!(b.record(admission, CallResult::Success, Duration::from_secs(1)), None);
        }
    }

    #[test]
    fn an_abandoned_probe_gives_its_place_back() {
        let b = breaker(10);
        for _ in 0..4 {
            call(&b, CallResult::Failure, 1);
        }
        std::thread::sleep(Duration::from_millis(20));
        drop(b.admit().0.unwrap());
        drop(b.admit().0.unwrap());
        assert!(b.admit().0.is_ok(), "dropped probes do not hold the half-open breaker shut");
    }

    #[test]
    fn the_most_recent_calls_decide_not_a_long_healthy_past() {
        let b = breaker(60_000);
        for _ in 0..100 {
            call(&b, CallResult::Success, 1);
        }
        for _ in 0..3 {
            assert_eq!(call(&b, CallResult::Failure, 1), None);
        }
        assert_eq!(call(&b, CallResult::Failure, 1), Some(BreakerState::Open), "4 of the last 8 failed");
    }

    #[test]
    fn old_calls_leave_the_window() {
        let b = Arc::new(Breaker::new(&BreakerConfig {
            window_ms: 100,
            min_calls: 4,
            ..BreakerConfig::default()
        }));
        for _ in 0..3 {
            call(&b, CallResult::Failure, 1);
        }
        std::thread::sleep(Duration::from_millis(150));
        assert_eq!(call(&b, CallResult::Failure, 1), None, "the first three failures have left the window");
    }
}
