//! What stands between a request and its host: a `Retry-After` pause, the
//! circuit breaker, the rate limit and the adaptive concurrency limit, one
//! set per `scheme://host:port`.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use serde::Serialize;

use super::adaptive::{AdaptiveLimit, LimitPermit, Signal};
use super::breaker::{Admission, Breaker, BreakerState, CallResult};
use super::rate::RateLimit;
use crate::config::{HostConfig, HttpConfig};
use crate::egress::EgressError;
use crate::error::{Error, Kind, Result, TimeoutPhase};
use crate::telemetry::{BreakerMove, HostMetrics};

/// One host's gate.
pub(crate) struct HostGate {
    pub(crate) key: String,
    /// Whether the configuration lists the host (it then has its own label).
    pub(crate) configured: bool,
    breaker: Arc<Breaker>,
    concurrency: Arc<AdaptiveLimit>,
    cap: usize,
    rate: Option<RateLimit>,
    paused_until: Mutex<Option<Instant>>,
    max_retry_after: Duration,
    pub(crate) metrics: Arc<HostMetrics>,
    /// What the egress policy says of the host's scheme and address, decided
    /// when the gate is made: `Some` refuses every request to it.
    pub(crate) egress_refusal: Option<EgressError>,
}

/// A host as `/status` shows it.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct HostStatus {
    /// `scheme://host:port`.
    pub host: String,
    /// `closed`, `half_open` or `open`.
    pub breaker: &'static str,
    /// The adaptive concurrency limit now.
    pub concurrency_limit: usize,
    /// The static cap it stays under.
    pub concurrency_cap: usize,
    /// Requests holding a place now.
    pub in_flight: usize,
    /// The configured rate limit, requests per second.
    pub rate_per_second: Option<f64>,
    /// How much longer a `Retry-After` holds the host, milliseconds.
    pub paused_for_ms: u64,
}

/// A request let through the gate: settle it with [`HostGate::settle`].
pub(crate) struct Pass {
    admission: Admission,
    permit: LimitPermit,
}

impl HostGate {
    pub(crate) fn new(
        key: String,
        host: Option<&HostConfig>,
        config: &HttpConfig,
        metrics: Arc<HostMetrics>,
        egress_refusal: Option<EgressError>,
    ) -> Self {
        let cap = host.and_then(|h| h.max_in_flight).unwrap_or(config.max_in_flight_per_host);
        let rate = host.and_then(|h| RateLimit::new(h.rate_per_second?, h.burst));
        // The limit gauge is per configured host: summed over the hosts
        // labelled `other` it would mean nothing.
        if host.is_some() {
            metrics.limit_moved(0, cap);
        }
        HostGate {
            key,
            configured: host.is_some(),
            breaker: Arc::new(Breaker::new(&config.breaker)),
            concurrency: Arc::new(AdaptiveLimit::new(cap, &config.adaptive)),
            cap,
            rate,
            paused_until: Mutex::new(None),
            egress_refusal,
            max_retry_after: Duration::from_millis(config.max_retry_after_ms),
            metrics,
        }
    }

    /// Waits until the request may go, or fails at once when the host is
    /// off limits past `deadline` (breaker open, or a `Retry-After`).
    pub(crate) async fn enter(&self, deadline: tokio::time::Instant) -> Result<Pass> {
        let (admitted, changed) = self.breaker.admit();
        self.breaker_changed(changed);
        let admission =
            admitted.map_err(|open| Error::new(Kind::Unavailable(open.retry_in, "circuit breaker open")))?;
        let waiting = Instant::now();
        if let Some(until) = self.paused_until() {
            if tokio::time::Instant::from_std(until) > deadline {
                return Err(Error::new(Kind::Unavailable(
                    until - Instant::now(),
                    "the upstream asked to wait (Retry-After)",
                )));
            }
            tokio::time::sleep_until(tokio::time::Instant::from_std(until)).await;
        }
        let queued = async {
            if let Some(rate) = &self.rate {
                rate.until_ready().await;
            }
            self.concurrency.acquire().await.map_err(|e| Error::new(Kind::Http).with(e))
        };
        let permit = match tokio::time::timeout_at(deadline, queued).await {
            Ok(permit) => permit?,
            Err(_) => return Err(Error::timeout(TimeoutPhase::Request)),
        };
        self.metrics.host_limit_waited(waiting.elapsed());
        Ok(Pass { admission, permit })
    }

    /// How long a call may take before the breaker counts it slow (`None`:
    /// the breaker is off).
    pub(crate) fn slow_threshold(&self) -> Option<Duration> {
        self.breaker.slow_threshold()
    }

    /// The request in flight on `pass` has crossed the slow-call threshold.
    pub(crate) fn note_slow(&self, pass: &mut Pass) {
        let changed = self.breaker.note_slow(&mut pass.admission);
        self.breaker_changed(changed);
    }

    /// Tells the breaker and the limit how the request went, and holds the
    /// host for a `Retry-After` on 429 or 503.
    pub(crate) fn settle(&self, pass: Pass, result: Result<(u16, Option<Duration>), &Error>, took: Duration) {
        let (call, signal) = match result {
            Ok((status, retry_after)) => {
                if matches!(status, 429 | 503) {
                    if let Some(wait) = retry_after {
                        self.pause_for(wait.min(self.max_retry_after));
                    }
                }
                let call = if status >= 500 { CallResult::Failure } else { CallResult::Success };
                let signal = match status {
                    429 | 502..=504 => Signal::Overload,
                    200..=399 => Signal::Success,
                    _ => Signal::Neutral,
                };
                (call, signal)
            }
            Err(e) if e.is_timeout() || e.is_connect() => (CallResult::Failure, Signal::Overload),
            Err(e) if e.is_body_too_large() => (CallResult::Success, Signal::Neutral),
            Err(_) => (CallResult::Failure, Signal::Neutral),
        };
        let Pass { admission, permit } = pass;
        let saturated = permit.saturated;
        drop(permit);
        let changed = self.breaker.record(admission, call, took);
        self.breaker_changed(changed);
        let before = self.concurrency.limit();
        if let Some(after) = self.concurrency.record(signal, saturated) {
            if self.configured {
                self.metrics.limit_moved(before, after);
            }
        }
    }

    fn breaker_changed(&self, changed: Option<BreakerState>) {
        let Some(state) = changed else { return };
        self.metrics.breaker_moved(match state {
            BreakerState::Open => BreakerMove::Opened,
            BreakerState::HalfOpen => BreakerMove::LeftOpen,
            BreakerState::Closed => BreakerMove::Other,
        });
        match state {
            BreakerState::Open => {
                tracing::warn!(host = %self.key, "circuit breaker opened: calls fail at once until it probes")
            }
            BreakerState::HalfOpen => tracing::info!(host = %self.key, "circuit breaker half-open: probing"),
            BreakerState::Closed => {
                tracing::info!(host = %self.key, "circuit breaker closed: the host recovered")
            }
        }
    }

    fn paused_until(&self) -> Option<Instant> {
        let until = (*self.paused_until.lock().unwrap_or_else(PoisonError::into_inner))?;
        (until > Instant::now()).then_some(until)
    }

    fn pause_for(&self, wait: Duration) {
        let until = Instant::now() + wait;
        let mut paused = self.paused_until.lock().unwrap_or_else(PoisonError::into_inner);
        if paused.is_none_or(|p| p < until) {
            *paused = Some(until);
        }
    }

    /// Whether `/status` should show the host: it is configured, or
    /// something about it is not normal.
    pub(crate) fn noteworthy(&self) -> bool {
        self.configured
            || self.breaker.state() != BreakerState::Closed
            || self.concurrency.limit() < self.cap
            || self.paused_until().is_some()
    }

    pub(crate) fn status(&self) -> HostStatus {
        HostStatus {
            host: self.key.clone(),
            breaker: self.breaker.state().as_str(),
            concurrency_limit: self.concurrency.limit(),
            concurrency_cap: self.cap,
            in_flight: self.concurrency.in_flight(),
            rate_per_second: self.rate.as_ref().map(RateLimit::per_second),
            paused_for_ms: self.paused_until().map_or(0, |u| (u - Instant::now()).as_millis() as u64),
        }
    }
}

impl Drop for HostGate {
    fn drop(&mut self) {
        // Take back what this gate added to the shared gauges.
        if self.configured {
            self.metrics.limit_moved(self.concurrency.limit(), 0);
        }
        if self.breaker.state() == BreakerState::Open {
            self.metrics.breaker_moved(BreakerMove::LeftOpen);
        }
    }
}
