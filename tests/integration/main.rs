//! Cross-crate integration tests: one binary, the shared harness in `lib.rs`.

mod backpressure;
mod dashboards;
mod deadlines;
mod dependencies;
mod durable;
mod durable_restart;
mod durable_world;
mod examples;
mod failures;
mod host_recorder;
mod metrics_smoke;
mod models;
mod peers;
mod pz1;
mod service;
mod services;
mod streams;
mod support;
mod thesis;
