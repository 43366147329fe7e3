//! The engine's metrics, the process's own resource readings, and (with the
//! `prometheus` feature) what a host needs to export them.
//!
//! Emission goes through the `metrics` facade with names from the catalogue
//! in `switchyard-protocol`; the library never installs a recorder. Handles
//! are resolved once, when the engine is built, so a task pays for atomic
//! updates and no registry look-ups: install the recorder before building
//! the engine.

mod metrics;
#[cfg(feature = "prometheus")]
pub mod prometheus;

pub(crate) use self::metrics::{DeadReason, EngineMetrics, StreamMetrics};
pub use switchyard_io_reactor::ProcessSample;
