//! The service's error: a configuration it cannot run with, or a failure
//! while running.

use std::fmt;

use switchyard_pipeline::ConfigError;

/// Why the service could not start or stopped.
#[derive(Debug)]
pub enum ServiceError {
    /// A configuration value that cannot work, naming its key.
    Config(ConfigError),
    /// The engine refused to start or run.
    Engine(switchyard::Error),
    /// A store, a socket or another I/O component failed.
    Io(Box<dyn std::error::Error + Send + Sync + 'static>),
}

impl ServiceError {
    /// A failure of configuration (the binary exits 78 for these).
    pub fn is_config(&self) -> bool {
        match self {
            ServiceError::Config(_) => true,
            ServiceError::Engine(e) => e.is_config(),
            ServiceError::Io(_) => false,
        }
    }

    pub(crate) fn io(source: impl Into<Box<dyn std::error::Error + Send + Sync + 'static>>) -> Self {
        ServiceError::Io(source.into())
    }
}

impl fmt::Display for ServiceError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ServiceError::Config(e) => fmt::Display::fmt(e, f),
            ServiceError::Engine(e) => fmt::Display::fmt(e, f),
            ServiceError::Io(e) => fmt::Display::fmt(e, f),
        }
    }
}

// Transparent: Display shows the inner error, so its source is the inner
// error's source (else `{:#}` chains would print the message twice).
impl std::error::Error for ServiceError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            ServiceError::Config(e) => e.source(),
            ServiceError::Engine(e) => e.source(),
            ServiceError::Io(e) => e.source(),
        }
    }
}

impl From<ConfigError> for ServiceError {
    fn from(e: ConfigError) -> Self {
        ServiceError::Config(e)
    }
}

impl From<switchyard::Error> for ServiceError {
    fn from(e: switchyard::Error) -> Self {
        ServiceError::Engine(e)
    }
}
