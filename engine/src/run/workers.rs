//! The `threads` model: N OS threads, one task at a time each.
//!
//! This is prefork's shape: every worker has its own single-thread runtime
//! and its own connections (as each prefork process does), CPU steps run
//! inline, and concurrency is exactly the number of workers.

use std::sync::Arc;

use switchyard_io_reactor::MysqlConfig;
use tokio::sync::{mpsc, oneshot, Mutex, OwnedSemaphorePermit};

use super::{run_task, RunShared, TaskFn};
use crate::config::EngineConfig;
use crate::context::{CpuPlacement, IoClients, TaskContext};
use crate::error::Error;
use crate::source::Delivery;

/// One admitted task on its way to a worker.
pub(crate) struct WorkerJob<T> {
    pub(crate) id: u64,
    pub(crate) delivery: Delivery<T>,
    pub(crate) permit: OwnedSemaphorePermit,
    pub(crate) task: TaskFn<T>,
    pub(crate) shared: Arc<RunShared>,
}

/// Resolves once every worker thread has finished: closed its connections
/// and left its runtime. Workers finish when the queue feeding them closes.
pub(crate) struct WorkersGone(Mutex<mpsc::Receiver<()>>);

impl WorkersGone {
    pub(crate) async fn wait(&self) {
        // Nothing is ever sent: `None` comes once every worker's sender is gone.
        let _ = self.0.lock().await.recv().await;
    }
}

/// Starts `workers` worker threads; returns the queue feeding them once
/// every worker has connected its clients, and what tells when they have
/// all finished.
pub(crate) async fn spawn_workers<T: Send + 'static>(
    config: &EngineConfig,
    workers: usize,
) -> Result<(mpsc::Sender<WorkerJob<T>>, WorkersGone), Error> {
    let (tx, rx) = mpsc::channel::<WorkerJob<T>>(workers);
    let rx = Arc::new(Mutex::new(rx));
    let (alive, gone) = mpsc::channel::<()>(1);
    let mut ready = Vec::with_capacity(workers);
    let mut worker_config = config.clone();
    // One task at a time per worker needs one connection, as in a prefork process.
    worker_config.mysql = config.mysql.as_ref().map(|m| MysqlConfig { pool_max: 1, ..m.clone() });
    for index in 0..workers {
        let (ready_tx, ready_rx) = oneshot::channel();
        ready.push(ready_rx);
        let (rx, config, alive) = (rx.clone(), worker_config.clone(), alive.clone());
        std::thread::Builder::new()
            .name(format!("switchyard-worker-{index}"))
            .spawn(move || worker_main(rx, config, ready_tx, alive))
            .map_err(|e| Error::config_from("thread_workers", e))?;
    }
    for ready_rx in ready {
        ready_rx.await.map_err(|_| Error::closed())??;
    }
    Ok((tx, WorkersGone(Mutex::new(gone))))
}

fn worker_main<T: Send + 'static>(
    rx: Arc<Mutex<mpsc::Receiver<WorkerJob<T>>>>,
    config: EngineConfig,
    ready: oneshot::Sender<Result<(), Error>>,
    // Dropped when this function returns, after the connections are closed.
    _alive: mpsc::Sender<()>,
) {
    let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            let _ = ready.send(Err(Error::config_from("thread_workers", e)));
            return;
        }
    };
    runtime.block_on(async move {
        let io = match IoClients::connect(&config).await {
            Ok(io) => io,
            Err(e) => {
                let _ = ready.send(Err(e));
                return;
            }
        };
        let _ = ready.send(Ok(()));
        loop {
            // The lock is held only while waiting for the next job, so idle
            // workers queue up for work in turn.
            let job = rx.lock().await.recv().await;
            let Some(WorkerJob { id, delivery, permit, task, shared }) = job else { break };
            let io = io.clone();
            // The stall watchdog watches the admission reactor, not these
            // threads: a worker computing inline stalls only its own task.
            let make_cx = move |scope| TaskContext::new(CpuPlacement::Inline, io, None, scope);
            run_task(id, delivery, permit, make_cx, task, shared).await;
        }
        // Close the worker's idle connection politely rather than by
        // dropping its runtime; the server would log an aborted connection.
        if let Some(mysql) = io.mysql.clone() {
            let _ = mysql.disconnect().await;
        }
    });
}
