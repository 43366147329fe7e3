//! Execution models: where a task's CPU steps run and how its tasks are
//! driven, decided in this one file.
//!
//! The same task code runs under every model; the benchmarks compare them in
//! one run. [`ExecutionModel`] is what a user picks; [`ModelPlan`] is what it
//! means, resolved once when the engine is built, and the rest of the engine
//! asks the plan, never the enum. Adding a model is a new variant here, its
//! plan, and its tests.
//!
//! | model | CPU steps | tasks driven by | reactor threads |
//! | --- | --- | --- | --- |
//! | `hybrid` | the dedicated pool | the reactor, many at once | configured (or the host's runtime) |
//! | `reactor-only` | inline on the reactor | the reactor, many at once | 1 (gevent's hub) |
//! | `threads` | inline on the worker | N workers, one task each | 1 (admission only) |

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// Where a task's CPU steps run. The same task code runs under each.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ExecutionModel {
    /// CPU steps on the dedicated pool, waits on the reactor: the product.
    Hybrid,
    /// CPU steps inline on a single reactor thread: gevent's shape, where a
    /// CPU burst freezes every other task's I/O.
    ReactorOnly,
    /// N worker threads, one task at a time each, CPU inline: prefork's shape.
    Threads,
}

impl ExecutionModel {
    /// Every model, in benchmark order.
    pub const ALL: [ExecutionModel; 3] =
        [ExecutionModel::Hybrid, ExecutionModel::ReactorOnly, ExecutionModel::Threads];

    /// The model's name as flags and reports spell it.
    pub const fn as_str(self) -> &'static str {
        match self {
            ExecutionModel::Hybrid => "hybrid",
            ExecutionModel::ReactorOnly => "reactor-only",
            ExecutionModel::Threads => "threads",
        }
    }

    /// What `NAME/N` sets for this model, if it takes a thread count.
    pub const fn thread_knob(self) -> Option<ThreadKnob> {
        match self {
            ExecutionModel::Hybrid => Some(ThreadKnob::CpuThreads),
            ExecutionModel::ReactorOnly => None,
            ExecutionModel::Threads => Some(ThreadKnob::ThreadWorkers),
        }
    }
}

impl fmt::Display for ExecutionModel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for ExecutionModel {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        ExecutionModel::ALL.into_iter().find(|m| m.as_str() == s).ok_or_else(|| {
            let names: Vec<_> = ExecutionModel::ALL.iter().map(|m| m.as_str()).collect();
            format!("unknown model {s:?} (expected one of {})", names.join(", "))
        })
    }
}

/// The setting a model's thread count (`NAME/N`) goes to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ThreadKnob {
    /// `cpu.threads`: the CPU pool's size.
    CpuThreads,
    /// `thread_workers`: the worker threads of `threads`.
    ThreadWorkers,
}

/// A model with an optional thread count, as benchmarks name them:
/// `hybrid/1` (one CPU thread), `threads/64` (64 workers).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ModelSpec {
    /// The model.
    pub model: ExecutionModel,
    /// Its thread count, overriding the configuration's.
    pub threads: Option<usize>,
}

impl ModelSpec {
    /// The setting the spec's thread count goes to, and the count.
    pub fn thread_override(&self) -> Option<(ThreadKnob, usize)> {
        Some((self.model.thread_knob()?, self.threads?))
    }
}

impl FromStr for ModelSpec {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (name, threads) = match s.split_once('/') {
            Some((name, n)) => {
                let n: usize =
                    n.parse().map_err(|_| format!("{s:?}: the part after '/' must be a thread count"))?;
                if n == 0 {
                    return Err(format!("{s:?}: the thread count must be at least 1"));
                }
                (name, Some(n))
            }
            None => (s, None),
        };
        let model: ExecutionModel = name.parse()?;
        if threads.is_some() && model.thread_knob().is_none() {
            return Err(format!("{s:?}: {model} always has one thread"));
        }
        Ok(ModelSpec { model, threads })
    }
}

impl fmt::Display for ModelSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.threads {
            Some(n) => write!(f, "{}/{n}", self.model),
            None => write!(f, "{}", self.model),
        }
    }
}

/// Where `cx.cpu` runs a closure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum CpuSide {
    /// On the engine's CPU pool.
    Pool,
    /// Right where the task runs.
    Inline,
}

/// What runs admitted tasks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Driver {
    /// Spawned on the reactor, as many at once as admission allows.
    Reactor,
    /// Handed to this many worker threads, one task at a time each.
    Workers(usize),
}

/// The sizes of a configuration a plan depends on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Sizes {
    pub(crate) reactor_threads: usize,
    pub(crate) max_in_flight: usize,
    pub(crate) thread_workers: usize,
}

/// What a model means for this configuration, resolved once at build.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ModelPlan {
    /// Threads of the reactor the engine builds for itself.
    pub(crate) reactor_threads: usize,
    /// Whether tasks may run on a runtime the embedding host owns. The
    /// gevent- and prefork-shaped models always own their reactor, since
    /// their point is its single thread.
    pub(crate) host_runtime_allowed: bool,
    /// Where CPU steps run.
    pub(crate) cpu: CpuSide,
    /// What runs admitted tasks.
    pub(crate) driver: Driver,
    /// Most tasks admitted at once.
    pub(crate) max_in_flight: usize,
}

impl ModelPlan {
    pub(crate) fn resolve(model: ExecutionModel, config: Sizes) -> ModelPlan {
        match model {
            ExecutionModel::Hybrid => ModelPlan {
                reactor_threads: config.reactor_threads,
                host_runtime_allowed: true,
                cpu: CpuSide::Pool,
                driver: Driver::Reactor,
                max_in_flight: config.max_in_flight,
            },
            // gevent's hub: one thread for every wait and every CPU step.
            ExecutionModel::ReactorOnly => ModelPlan {
                reactor_threads: 1,
                host_runtime_allowed: false,
                cpu: CpuSide::Inline,
                driver: Driver::Reactor,
                max_in_flight: config.max_in_flight,
            },
            // prefork: the reactor only admits; admitting more tasks than
            // there are workers would only queue them.
            ExecutionModel::Threads => ModelPlan {
                reactor_threads: 1,
                host_runtime_allowed: false,
                cpu: CpuSide::Inline,
                driver: Driver::Workers(config.thread_workers),
                max_in_flight: config.max_in_flight.min(config.thread_workers),
            },
        }
    }
}

#[cfg(test)]
mod tests;
