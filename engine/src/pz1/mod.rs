//! Workload PZ-1 on the engine: its upstream, its pipeline and the
//! open-loop benchmark that compares the execution models.
//!
//! The pure parts (event generation, canonical form, fingerprints, delays,
//! the ideal-latency clock, the report's keys) live in
//! [`switchyard_protocol::pz1`]; this module adds what waits and computes.

mod bench;
mod pipeline;
mod stores;
mod upstream;

pub use bench::{calibrate_cpu_alone, run_bench, summarise, BenchOutcome, Progress, TaskRecord};
pub use pipeline::{Pz1Error, Pz1Outcome, Pz1Pipeline, Pz1Poll};
pub use stores::{runs_table_ddl, EmbeddedStores, RunRow, Stores, PZ_RUNS_TABLE};
pub use upstream::{
    Fault, FaultTarget, Pz1Upstream, UpstreamCounters, MAX_ACTION_BODY_BYTES, UPSTREAM_MAX_CONNECTIONS,
};
