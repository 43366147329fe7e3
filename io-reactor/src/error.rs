//! The one error type of the I/O side, shaped like hyper's: an opaque
//! struct with predicates, so callers branch on what happened
//! (`is_timeout()`) rather than on driver types.

use std::fmt;

type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// A `Result` whose error is this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Which deadline passed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum TimeoutPhase {
    /// Opening a TCP (and TLS) connection.
    Connect,
    /// A whole HTTP exchange: headers and body.
    Request,
    /// Waiting for a pooled MySQL connection.
    PoolAcquire,
    /// A MySQL operation or a Redis command.
    Operation,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Kind {
    Timeout(TimeoutPhase),
    /// A response body exceeded the configured cap (bytes).
    BodyTooLarge(usize),
    /// The peer could not be reached.
    Connect,
    /// An HTTP protocol or transport failure.
    Http,
    /// A request could not be built (bad URL, bad header).
    InvalidRequest,
    /// The host is off limits for this long: its circuit breaker is open,
    /// or it asked to wait (`Retry-After`) past the request's deadline.
    Unavailable(std::time::Duration, &'static str),
    /// The egress policy refused the request before any socket opened;
    /// holds the rule's name (`loopback`, `private`, `scheme`, ...).
    Egress(&'static str),
    /// The upstream answered with a non-2xx status, turned into an error on
    /// request (`HttpResponse::error_for_status`).
    Status(u16),
    /// A MySQL error other than a timeout.
    Mysql,
    /// A Redis error other than a timeout.
    Redis,
    /// Configuration rejected at build time; names the field.
    Config(&'static str),
    /// The runtime or a thread could not be started.
    Runtime,
}

/// An I/O-side failure. Messages are short, lower case and never contain
/// secrets such as passwords or header values.
pub struct Error {
    kind: Kind,
    source: Option<BoxError>,
}

impl Error {
    pub(crate) fn new(kind: Kind) -> Self {
        Error { kind, source: None }
    }

    pub(crate) fn with<E: Into<BoxError>>(mut self, source: E) -> Self {
        self.source = Some(source.into());
        self
    }

    pub(crate) fn timeout(phase: TimeoutPhase) -> Self {
        Error::new(Kind::Timeout(phase))
    }

    pub(crate) fn config(field: &'static str) -> Self {
        Error::new(Kind::Config(field))
    }

    /// A deadline passed: connect, request, pool acquire or operation.
    pub fn is_timeout(&self) -> bool {
        matches!(self.kind, Kind::Timeout(_))
    }

    /// Waiting for a pooled connection timed out: the pool is exhausted.
    pub fn is_overloaded(&self) -> bool {
        matches!(self.kind, Kind::Timeout(TimeoutPhase::PoolAcquire))
    }

    /// The egress policy refused the request before it connected:
    /// [`Error::egress_rule`] names the rule.
    pub fn is_egress_refused(&self) -> bool {
        matches!(self.kind, Kind::Egress(_))
    }

    /// The egress rule that refused the request (`loopback`, `private`,
    /// `link_local`, `embeds_ipv4`, `scheme`, ...), for a refused request.
    pub fn egress_rule(&self) -> Option<&'static str> {
        match self.kind {
            Kind::Egress(rule) => Some(rule),
            _ => None,
        }
    }

    /// The host is off limits for now, without a request being sent: its
    /// circuit breaker is open or it asked to wait (`Retry-After`);
    /// [`Error::retry_in`] says for how long.
    pub fn is_unavailable(&self) -> bool {
        matches!(self.kind, Kind::Unavailable(..))
    }

    /// How long until the host takes requests again, for an
    /// [`Error::is_unavailable`] error.
    pub fn retry_in(&self) -> Option<std::time::Duration> {
        match self.kind {
            Kind::Unavailable(wait, _) => Some(wait),
            _ => None,
        }
    }

    /// A response body was larger than allowed.
    pub fn is_body_too_large(&self) -> bool {
        matches!(self.kind, Kind::BodyTooLarge(_))
    }

    /// The peer could not be reached (refused, unresolvable, connect timeout).
    pub fn is_connect(&self) -> bool {
        matches!(self.kind, Kind::Connect | Kind::Timeout(TimeoutPhase::Connect))
    }

    /// Configuration was rejected; [`Error::config_field`] names the field.
    pub fn is_config(&self) -> bool {
        matches!(self.kind, Kind::Config(_))
    }

    /// The configuration field at fault, for a config error.
    pub fn config_field(&self) -> Option<&'static str> {
        match self.kind {
            Kind::Config(field) => Some(field),
            _ => None,
        }
    }

    /// The upstream's non-2xx status, for an error from
    /// `HttpResponse::error_for_status`.
    pub fn status(&self) -> Option<u16> {
        match self.kind {
            Kind::Status(code) => Some(code),
            _ => None,
        }
    }

    /// A MySQL failure (including its timeouts).
    pub fn is_mysql(&self) -> bool {
        matches!(self.kind, Kind::Mysql | Kind::Timeout(TimeoutPhase::PoolAcquire))
    }

    /// A Redis failure.
    pub fn is_redis(&self) -> bool {
        matches!(self.kind, Kind::Redis)
    }

    /// The error code a Redis server answered with (`NOGROUP`,
    /// `BUSYGROUP`, `NOSCRIPT`, ...), when the failure is such an answer.
    pub fn redis_code(&self) -> Option<&str> {
        self.source.as_ref()?.downcast_ref::<redis::RedisError>()?.code()
    }

    pub(crate) fn kind(&self) -> &Kind {
        &self.kind
    }

    fn description(&self) -> String {
        match &self.kind {
            Kind::Timeout(TimeoutPhase::Connect) => "connect timed out".into(),
            Kind::Timeout(TimeoutPhase::Request) => "request timed out".into(),
            Kind::Timeout(TimeoutPhase::PoolAcquire) => "timed out waiting for a pooled connection".into(),
            Kind::Timeout(TimeoutPhase::Operation) => "operation timed out".into(),
            Kind::BodyTooLarge(limit) => format!("response body exceeds {limit} bytes"),
            Kind::Connect => "connection failed".into(),
            Kind::Http => "http error".into(),
            Kind::InvalidRequest => "invalid request".into(),
            Kind::Unavailable(wait, why) => {
                format!("host unavailable for another {:.1} s: {why}", wait.as_secs_f64())
            }
            // The source names the address and the rule.
            Kind::Egress(_) => "refused by the egress policy".into(),
            Kind::Status(code) => format!("upstream answered {code}"),
            Kind::Mysql => "mysql error".into(),
            Kind::Redis => "redis error".into(),
            Kind::Config(field) => format!("invalid configuration: {field}"),
            Kind::Runtime => "runtime error".into(),
        }
    }
}

impl fmt::Debug for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut d = f.debug_struct("io_reactor::Error");
        d.field("kind", &self.kind);
        if let Some(source) = &self.source {
            d.field("source", source);
        }
        d.finish()
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.source {
            Some(source) => write!(f, "{}: {}", self.description(), source),
            None => f.write_str(&self.description()),
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.source.as_ref().map(|e| &**e as _)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn predicates_follow_kind() {
        let e = Error::timeout(TimeoutPhase::PoolAcquire);
        assert!(e.is_timeout() && e.is_overloaded() && e.is_mysql());
        assert!(!Error::timeout(TimeoutPhase::Request).is_overloaded());
        assert!(Error::new(Kind::BodyTooLarge(10)).is_body_too_large());
        assert_eq!(Error::config("http.connect_timeout_ms").config_field(), Some("http.connect_timeout_ms"));
        assert_eq!(Error::new(Kind::BodyTooLarge(10)).to_string(), "response body exceeds 10 bytes");
        let e = Error::new(Kind::Status(503));
        assert_eq!((e.status(), e.to_string().as_str()), (Some(503), "upstream answered 503"));
        assert_eq!(Error::new(Kind::Http).status(), None);
    }
}
