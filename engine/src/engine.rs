//! [`Engine`] and its builder.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use switchyard_cpu_pool::CpuPool;
use switchyard_io_reactor::{
    EgressConfig, HostStatus, HttpClient, HttpConfig, MysqlConfig, Reactor, ReactorConfig, RedisConfig,
    StallWatchdog, WatchdogConfig,
};
use tokio::runtime::Handle;

use crate::config::EngineConfig;
use crate::context::{CpuPlacement, IoClients, TaskContext};
use crate::error::Error;
use crate::model::{CpuSide, Driver, ExecutionModel, ModelPlan};
use crate::run::{spawn_admission, spawn_workers, Dispatch, RunShared, Running, TaskError, TaskFn};
use crate::source::Source;
use crate::telemetry::EngineMetrics;

/// Builds an [`Engine`]; [`EngineBuilder::build`] validates everything.
#[derive(Debug, Default)]
pub struct EngineBuilder {
    config: EngineConfig,
    handle: Option<Handle>,
}

impl EngineBuilder {
    /// Replaces the whole configuration.
    pub fn config(mut self, config: EngineConfig) -> Self {
        self.config = config;
        self
    }
    /// Where CPU steps run.
    pub fn model(mut self, model: ExecutionModel) -> Self {
        self.config.model = model;
        self
    }
    /// Reactor worker threads (`hybrid` with an owned reactor).
    pub fn reactor_threads(mut self, threads: usize) -> Self {
        self.config.reactor_threads = threads;
        self
    }
    /// CPU pool threads (0: one per core).
    pub fn cpu_threads(mut self, threads: usize) -> Self {
        self.config.cpu.threads = threads;
        self
    }
    /// Most CPU jobs queued or running at once (0: four per thread).
    pub fn cpu_queue_capacity(mut self, capacity: usize) -> Self {
        self.config.cpu.queue_capacity = capacity;
        self
    }
    /// Microseconds a task may spin for a short CPU job's result before its
    /// reactor thread parks (0: never spin; see `CpuPoolConfig::spin_wait_us`).
    pub fn cpu_spin_wait_us(mut self, micros: u64) -> Self {
        self.config.cpu.spin_wait_us = micros;
        self
    }
    /// Most tasks admitted at once.
    pub fn max_in_flight(mut self, max: usize) -> Self {
        self.config.max_in_flight = max;
        self
    }
    /// Workers of the `threads` model.
    pub fn thread_workers(mut self, workers: usize) -> Self {
        self.config.thread_workers = workers;
        self
    }
    /// Outbound HTTP settings.
    pub fn http(mut self, http: HttpConfig) -> Self {
        self.config.http = http;
        self
    }
    /// Where tasks' HTTP requests may go: the egress policy, on by default
    /// (`EgressConfig::allowing_loopback()` for an upstream on this
    /// machine; `enabled: false` only when no URL comes from users).
    pub fn egress(mut self, egress: EgressConfig) -> Self {
        self.config.http.egress = egress;
        self
    }
    /// Gives tasks a MySQL pool.
    pub fn mysql(mut self, mysql: MysqlConfig) -> Self {
        self.config.mysql = Some(mysql);
        self
    }
    /// Gives tasks a Redis client.
    pub fn redis(mut self, redis: RedisConfig) -> Self {
        self.config.redis = Some(redis);
        self
    }
    /// Stall watchdog settings.
    pub fn watchdog(mut self, watchdog: WatchdogConfig) -> Self {
        self.config.watchdog = watchdog;
        self
    }
    /// Runs `hybrid` tasks on a runtime the embedding service owns instead of
    /// an engine-owned one. The gevent- and prefork-shaped models always own
    /// their reactor, since their point is its single thread (see
    /// [`ExecutionModel`]).
    pub fn runtime_handle(mut self, handle: Handle) -> Self {
        self.handle = Some(handle);
        self
    }

    /// Validates the configuration and starts the reactor (unless attached),
    /// the CPU pool (when the model has one) and the stall watchdog.
    pub fn build(self) -> Result<Engine, Error> {
        let config = self.config;
        config.validate()?;
        let plan = config.plan();
        let reactor = match self.handle {
            Some(handle) if plan.host_runtime_allowed => Reactor::attach(handle),
            _ => Reactor::new(&ReactorConfig { threads: plan.reactor_threads }).map_err(Error::io)?,
        };
        let cpu = match plan.cpu {
            CpuSide::Pool => Some(CpuPool::new(&config.cpu).map_err(Error::cpu)?),
            CpuSide::Inline => None,
        };
        let watchdog = StallWatchdog::start(reactor.handle(), &config.watchdog).map_err(Error::io)?;
        let http = HttpClient::new(&config.http).map_err(Error::io)?;
        let metrics = Arc::new(EngineMetrics::new());
        metrics.engine_started(plan.max_in_flight);
        Ok(Engine { inner: Arc::new(Inner { config, plan, reactor, cpu, watchdog, http, metrics }) })
    }
}

struct Inner {
    config: EngineConfig,
    plan: ModelPlan,
    reactor: Reactor,
    cpu: Option<CpuPool>,
    watchdog: StallWatchdog,
    /// The HTTP client of every run on the reactor (a `threads` worker has
    /// its own, as a prefork process would).
    http: HttpClient,
    metrics: Arc<EngineMetrics>,
}

/// The task engine: a reactor for every wait, a CPU pool for every CPU step,
/// and bounded admission in front of both.
#[derive(Clone)]
pub struct Engine {
    inner: Arc<Inner>,
}

impl Engine {
    /// A builder with every setting at its default.
    pub fn builder() -> EngineBuilder {
        EngineBuilder::default()
    }

    /// The validated configuration.
    pub fn config(&self) -> &EngineConfig {
        &self.inner.config
    }

    /// The execution model tasks run under.
    pub fn model(&self) -> ExecutionModel {
        self.inner.config.model
    }

    /// Most tasks admitted at once under this engine's model.
    pub fn max_in_flight(&self) -> usize {
        self.inner.plan.max_in_flight
    }

    /// The reactor runtime tasks run on (the admission reactor under `threads`).
    pub fn handle(&self) -> &Handle {
        self.inner.reactor.handle()
    }

    /// The CPU pool (`hybrid` only).
    pub fn cpu_pool(&self) -> Option<&CpuPool> {
        self.inner.cpu.as_ref()
    }

    /// The reactor stall watchdog.
    pub fn watchdog(&self) -> &StallWatchdog {
        &self.inner.watchdog
    }

    /// Runs `f` to completion on the engine's own reactor, from a thread that
    /// is not itself inside a runtime (a `main` function, a test). An error
    /// when the reactor is attached to a runtime the host owns: drive the
    /// future there instead.
    pub fn block_on<F: Future>(&self, f: F) -> Result<F::Output, Error> {
        self.inner.reactor.block_on(f).map_err(Error::io)
    }

    /// Starts reading `source` and running `task` for every item.
    ///
    /// The I/O clients are connected first (on the engine's reactor, or on
    /// each worker under `threads`), so a database that is down fails here,
    /// not at the first task.
    pub async fn start<S, F, Fut>(&self, source: S, task: F) -> Result<Running, Error>
    where
        S: Source,
        F: Fn(TaskContext, S::Item) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<(), TaskError>> + Send + 'static,
    {
        let task: TaskFn<S::Item> = Arc::new(move |cx, item| Box::pin(task(cx, item)));
        let (config, plan) = (&self.inner.config, self.inner.plan);
        let handle = self.handle().clone();
        let shared = RunShared::new(self.inner.metrics.clone(), config.task_timeout());
        let (mut mysql, mut workers) = (None, None);
        let dispatch = match plan.driver {
            Driver::Workers(count) => {
                let (queue, gone) = spawn_workers(config, count).await?;
                workers = Some(gone);
                Dispatch::Workers(queue)
            }
            Driver::Reactor => {
                let (cfg, http) = (config.clone(), self.inner.http.clone());
                let io = handle
                    .spawn(async move { IoClients::connect_with(&cfg, http).await })
                    .await
                    .map_err(|_| Error::closed())??;
                mysql = io.mysql.clone();
                let placement = match &self.inner.cpu {
                    Some(pool) => CpuPlacement::Pool(pool.clone()),
                    None => CpuPlacement::Inline,
                };
                Dispatch::Spawn {
                    handle: handle.clone(),
                    placement,
                    io,
                    watchdog: Some(self.inner.watchdog.clone()),
                }
            }
        };
        spawn_admission(&handle, source, task, dispatch, plan.max_in_flight, shared.clone());
        Ok(Running::new(shared, mysql, workers))
    }

    /// The upstream hosts worth a look (configured ones, and any whose
    /// breaker is not closed, whose concurrency limit is down or that a
    /// `Retry-After` holds), as the reactor's HTTP client sees them.
    pub fn http_hosts(&self) -> Vec<HostStatus> {
        self.inner.http.host_status()
    }

    /// Stops the CPU pool (letting queued jobs finish within `deadline`) and
    /// the watchdog. Call after the last run has ended.
    pub async fn shutdown(&self, deadline: Duration) {
        if let Some(cpu) = &self.inner.cpu {
            cpu.shutdown(deadline).await;
        }
        self.inner.watchdog.stop();
    }
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine").field("config", &self.inner.config).finish()
    }
}
