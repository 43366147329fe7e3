//! The engine's error type.

use std::fmt;

type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

#[derive(Debug, Clone, PartialEq, Eq)]
enum Kind {
    /// Configuration rejected at build time; names the field.
    Config(String),
    /// The CPU pool refused or lost a job.
    Cpu,
    /// No CPU slot came free within `cpu.slot_wait_ms`.
    Overloaded,
    /// An I/O component failed to start.
    Io,
    /// A CPU step panicked (inline models).
    Panicked(String),
    /// The task asked for a component the engine was not configured with.
    NotConfigured(&'static str),
    /// The engine was shut down.
    Closed,
}

/// An engine failure: bad configuration, a component that would not start,
/// or a CPU step that failed. Messages never contain secrets.
pub struct Error {
    kind: Kind,
    source: Option<BoxError>,
}

/// An I/O component's failure (a Redis or MySQL client an embedder
/// connected itself) as an engine error, as the engine reports its own.
impl From<switchyard_io_reactor::Error> for Error {
    fn from(source: switchyard_io_reactor::Error) -> Self {
        Error::io(source)
    }
}

impl Error {
    pub(crate) fn config(field: impl Into<String>) -> Self {
        Error { kind: Kind::Config(field.into()), source: None }
    }
    pub(crate) fn config_from(field: impl Into<String>, source: impl Into<BoxError>) -> Self {
        Error { kind: Kind::Config(field.into()), source: Some(source.into()) }
    }
    pub(crate) fn cpu(source: switchyard_cpu_pool::Error) -> Self {
        if source.is_panicked() {
            return Error { kind: Kind::Panicked(source.to_string()), source: None };
        }
        if source.is_closed() {
            return Error { kind: Kind::Closed, source: Some(source.into()) };
        }
        if source.is_overloaded() {
            return Error { kind: Kind::Overloaded, source: Some(source.into()) };
        }
        Error { kind: Kind::Cpu, source: Some(source.into()) }
    }
    pub(crate) fn io(source: switchyard_io_reactor::Error) -> Self {
        if let Some(field) = source.config_field() {
            return Error { kind: Kind::Config(field.to_string()), source: None };
        }
        Error { kind: Kind::Io, source: Some(source.into()) }
    }
    pub(crate) fn panicked(message: String) -> Self {
        Error { kind: Kind::Panicked(message), source: None }
    }
    pub(crate) fn not_configured(component: &'static str) -> Self {
        Error { kind: Kind::NotConfigured(component), source: None }
    }
    pub(crate) fn closed() -> Self {
        Error { kind: Kind::Closed, source: None }
    }

    /// Configuration was rejected; [`Error::config_field`] names the key.
    pub fn is_config(&self) -> bool {
        matches!(self.kind, Kind::Config(_))
    }
    /// The configuration key at fault, for a config error.
    pub fn config_field(&self) -> Option<&str> {
        match &self.kind {
            Kind::Config(field) => Some(field),
            _ => None,
        }
    }
    /// A CPU step panicked; the panic was contained to its task.
    pub fn is_panicked(&self) -> bool {
        matches!(self.kind, Kind::Panicked(_))
    }
    /// A CPU step waited `cpu.slot_wait_ms` for a CPU slot and got none: the
    /// pool is saturated. The step never ran; nothing is held on its behalf.
    /// A task that would rather try again later returns
    /// [`TaskError::retry_after`](crate::TaskError::retry_after) for it.
    pub fn is_overloaded(&self) -> bool {
        matches!(self.kind, Kind::Overloaded)
    }
    /// The engine (or its CPU pool) is shut down.
    pub fn is_closed(&self) -> bool {
        matches!(self.kind, Kind::Closed)
    }
    /// The task used a component (MySQL, Redis) the engine was built without.
    pub fn is_not_configured(&self) -> bool {
        matches!(self.kind, Kind::NotConfigured(_))
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.kind {
            Kind::Config(field) => write!(f, "invalid configuration: {field}")?,
            Kind::Cpu => f.write_str("cpu pool error")?,
            // The pool's message says how long and which key.
            Kind::Overloaded => f.write_str("cpu step refused")?,
            Kind::Io => f.write_str("i/o component failed")?,
            Kind::Panicked(message) => return f.write_str(message),
            Kind::NotConfigured(component) => write!(f, "{component} is not configured")?,
            Kind::Closed => f.write_str("engine is shut down")?,
        }
        if let Some(source) = &self.source {
            write!(f, ": {source}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("switchyard::Error").field("kind", &self.kind).field("source", &self.source).finish()
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
    use switchyard_cpu_pool::{CpuPool, CpuPoolConfig};

    #[tokio::test]
    async fn a_cpu_slot_wait_past_its_bound_is_an_overloaded_engine_error() {
        let config = CpuPoolConfig { threads: 1, queue_capacity: 1, slot_wait_ms: 0, ..Default::default() };
        let pool = CpuPool::new(&config).unwrap();
        let (tx, rx) = std::sync::mpsc::channel::<()>();
        let blocker = pool.submit(move || rx.recv().ok());
        let err = Error::cpu(pool.submit(|| ()).await.unwrap_err());
        assert!(err.is_overloaded() && !err.is_closed() && !err.is_panicked(), "{err:?}");
        assert!(err.to_string().contains("cpu.slot_wait_ms"), "{err}");
        drop(tx);
        blocker.await.unwrap();
    }
}
