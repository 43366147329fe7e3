//! The vocabulary every Switchyard crate shares.
//!
//! This crate is pure: no runtime, no I/O, no global state. It holds
//!
//! - the [metric catalogue](catalogue): the one place a metric name, its
//!   kind, unit, help text, labels and histogram buckets are written down;
//! - task outcomes and the time split every task reports.
//!
//! Other crates refer to metrics only through the constants of
//! [`catalogue`], so a dashboard, an alert rule and the code can be checked
//! against one table.

pub mod catalogue;
mod outcome;

pub use catalogue::{LabelDef, LabelValues, MetricDef, MetricKind, Unit, CATALOGUE};
pub use outcome::{TaskOutcome, TaskTimes};
