//! Errors of the CPU pool.
//!
//! One opaque [`Error`] for everything a job or the pool can fail with, asked
//! through predicates (`is_panicked()`, `is_closed()`, ...) the way hyper's
//! error is, so new causes can be added without breaking callers. Refusals of
//! [`try_submit`](crate::CpuPool::try_submit) are a separate type,
//! [`TrySubmitError`], because they hand the closure back, like tokio's
//! `TrySendError`.

use std::any::Any;
use std::fmt;

/// Why a CPU job or the pool failed.
pub struct Error {
    // Boxed so that `Result<T, Error>` stays one pointer wide on the hot path.
    kind: Box<Kind>,
}

#[derive(Debug, thiserror::Error)]
enum Kind {
    #[error("cpu job panicked: {0}")]
    Panicked(String),
    #[error("cpu job panicked")]
    PanickedOpaque,
    #[error("cpu pool closed")]
    Closed,
    #[error("cpu job cancelled")]
    Cancelled,
    #[error("cpu pool overloaded: no slot came free within {waited_ms} ms (cpu.slot_wait_ms)")]
    Overloaded { waited_ms: u64 },
    #[error("invalid config: {field} {reason}")]
    Config { field: &'static str, reason: String },
    #[error("cpu pool failed to start")]
    Start(#[source] rayon::ThreadPoolBuildError),
}

impl Error {
    fn new(kind: Kind) -> Self {
        Error { kind: Box::new(kind) }
    }

    /// Keeps the panic message when it is a string, as `panic!` makes it.
    pub(crate) fn panicked(payload: Box<dyn Any + Send>) -> Self {
        let kind = match payload.downcast::<String>() {
            Ok(message) => Kind::Panicked(*message),
            Err(payload) => match payload.downcast_ref::<&'static str>() {
                Some(message) => Kind::Panicked((*message).to_owned()),
                None => Kind::PanickedOpaque,
            },
        };
        Error::new(kind)
    }

    pub(crate) fn closed() -> Self {
        Error::new(Kind::Closed)
    }

    pub(crate) fn cancelled() -> Self {
        Error::new(Kind::Cancelled)
    }

    pub(crate) fn overloaded(waited: std::time::Duration) -> Self {
        Error::new(Kind::Overloaded { waited_ms: u64::try_from(waited.as_millis()).unwrap_or(u64::MAX) })
    }

    pub(crate) fn config(field: &'static str, reason: impl Into<String>) -> Self {
        Error::new(Kind::Config { field, reason: reason.into() })
    }

    pub(crate) fn start(source: rayon::ThreadPoolBuildError) -> Self {
        Error::new(Kind::Start(source))
    }

    /// The job panicked; the pool and its thread carry on.
    pub fn is_panicked(&self) -> bool {
        matches!(*self.kind, Kind::Panicked(_) | Kind::PanickedOpaque)
    }

    /// The pool was shut down before the job was admitted.
    pub fn is_closed(&self) -> bool {
        matches!(*self.kind, Kind::Closed)
    }

    /// The job was admitted but never ran to an end (the pool dropped it).
    pub fn is_cancelled(&self) -> bool {
        matches!(*self.kind, Kind::Cancelled)
    }

    /// Every slot stayed taken for as long as the producer may wait
    /// (`cpu.slot_wait_ms`): the job never ran and holds no slot. The pool
    /// is saturated; trying again later, or shedding load, is the answer.
    pub fn is_overloaded(&self) -> bool {
        matches!(*self.kind, Kind::Overloaded { .. })
    }

    /// The configuration was rejected by
    /// [`CpuPoolConfig::validate`](crate::CpuPoolConfig::validate).
    pub fn is_config(&self) -> bool {
        matches!(*self.kind, Kind::Config { .. })
    }
}

impl fmt::Debug for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("Error").field(&self.kind).finish()
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.kind, f)
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.kind.source()
    }
}

/// Why [`try_submit`](crate::CpuPool::try_submit) refused a job; the closure
/// comes back so the caller can run it elsewhere or retry.
pub enum TrySubmitError<F> {
    /// Every slot is taken (`queue_capacity` jobs are queued or running).
    Full(F),
    /// The pool was shut down.
    Closed(F),
}

impl<F> TrySubmitError<F> {
    /// The closure that was not submitted.
    pub fn into_inner(self) -> F {
        match self {
            TrySubmitError::Full(f) | TrySubmitError::Closed(f) => f,
        }
    }

    /// Every slot was taken.
    pub fn is_full(&self) -> bool {
        matches!(self, TrySubmitError::Full(_))
    }

    /// The pool was shut down.
    pub fn is_closed(&self) -> bool {
        matches!(self, TrySubmitError::Closed(_))
    }
}

// Closures are rarely `Debug`, so the payload is elided rather than required.
impl<F> fmt::Debug for TrySubmitError<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TrySubmitError::Full(_) => f.write_str("Full(..)"),
            TrySubmitError::Closed(_) => f.write_str("Closed(..)"),
        }
    }
}

impl<F> fmt::Display for TrySubmitError<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TrySubmitError::Full(_) => f.write_str("cpu pool queue full"),
            TrySubmitError::Closed(_) => f.write_str("cpu pool closed"),
        }
    }
}

impl<F> std::error::Error for TrySubmitError<F> {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn panic_messages_are_kept_when_they_are_strings() {
        let err = Error::panicked(Box::new("boom"));
        assert!(err.is_panicked() && !err.is_closed() && !err.is_cancelled());
        assert_eq!(err.to_string(), "cpu job panicked: boom");

        let err = Error::panicked(Box::new(format!("bad {}", 7)));
        assert_eq!(err.to_string(), "cpu job panicked: bad 7");

        let err = Error::panicked(Box::new(42_u32));
        assert!(err.is_panicked());
        assert_eq!(err.to_string(), "cpu job panicked");
    }

    #[test]
    fn predicates_match_their_kind() {
        assert!(Error::closed().is_closed());
        assert!(Error::cancelled().is_cancelled());
        let overloaded = Error::overloaded(std::time::Duration::from_millis(250));
        assert!(overloaded.is_overloaded() && !overloaded.is_closed() && !overloaded.is_cancelled());
        assert_eq!(
            overloaded.to_string(),
            "cpu pool overloaded: no slot came free within 250 ms (cpu.slot_wait_ms)"
        );
        assert!(!Error::closed().is_overloaded());
        let err = Error::config("cpu.threads", "must be at most 1024");
        assert!(err.is_config());
        assert_eq!(err.to_string(), "invalid config: cpu.threads must be at most 1024");
        assert!(format!("{err:?}").starts_with("Error(Config {"), "{err:?}");
    }

    #[test]
    fn try_submit_error_hands_the_closure_back() {
        let err = TrySubmitError::Full(|| 5);
        assert!(err.is_full());
        assert_eq!(format!("{err:?}"), "Full(..)");
        assert_eq!(err.to_string(), "cpu pool queue full");
        assert_eq!(err.into_inner()(), 5);

        let err = TrySubmitError::Closed(|| 6);
        assert!(err.is_closed());
        let boxed: Box<dyn std::error::Error> = Box::new(TrySubmitError::Closed(()));
        assert_eq!(boxed.to_string(), "cpu pool closed");
        assert_eq!(err.into_inner()(), 6);
    }
}
