//! A small HTTP/1.1 server for Switchyard's own endpoints and loopback
//! upstreams (feature `server`, off by default): bounded connections, a
//! header-read timeout, keep-alive, and a stop signal. Handlers answer with
//! a fully built body.
//!
//! [`serve`] runs on whatever runtime awaits it (the scrape endpoint runs on
//! the engine's reactor); [`ServerThread`] gives a server its own thread and
//! runtime, so a loopback upstream never shares the engine's reactor.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::{Request, Response};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

/// A response with its whole body.
pub type HttpResponse = Response<Full<Bytes>>;

/// Answers one request.
pub type Handler =
    Arc<dyn Fn(Request<Incoming>) -> Pin<Box<dyn Future<Output = HttpResponse> + Send>> + Send + Sync>;

/// How long a client may take to send request headers.
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(30);

/// A response of `status` with a plain-text or JSON body.
pub fn respond(status: u16, content_type: &'static str, body: impl Into<Bytes>) -> HttpResponse {
    Response::builder()
        .status(status)
        .header("content-type", content_type)
        .body(Full::new(body.into()))
        .unwrap_or_else(|_| Response::new(Full::new(Bytes::from_static(b"invalid status"))))
}

/// Serves `listener` with `handler` until `stop` is cancelled, holding at
/// most `max_connections` connections (more wait in the kernel's backlog).
pub async fn serve(listener: TcpListener, max_connections: usize, handler: Handler, stop: CancellationToken) {
    let slots = Arc::new(tokio::sync::Semaphore::new(max_connections.max(1)));
    loop {
        let permit = tokio::select! {
            permit = slots.clone().acquire_owned() => permit.expect("never closed"),
            _ = stop.cancelled() => return,
        };
        let stream = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(e) => {
                    // Out of file descriptors, most likely: back off instead of spinning.
                    tracing::warn!(error = %e, "accepting a connection failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = stop.cancelled() => return,
        };
        let _ = stream.set_nodelay(true);
        let (handler, stop) = (handler.clone(), stop.clone());
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |req| {
                let answer = handler(req);
                async move { Ok::<_, Infallible>(answer.await) }
            });
            let connection = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(HEADER_READ_TIMEOUT)
                .serve_connection(TokioIo::new(stream), service);
            tokio::pin!(connection);
            tokio::select! {
                _ = connection.as_mut() => {}
                _ = stop.cancelled() => connection.as_mut().graceful_shutdown(),
            }
            drop(permit);
        });
    }
}

/// A server on its own thread and single-thread runtime. Stops when dropped.
#[derive(Debug)]
pub struct ServerThread {
    addr: SocketAddr,
    tid: Option<u64>,
    stop: CancellationToken,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl ServerThread {
    /// Binds `addr` (port 0 picks a free port) and serves it on a new thread named `name`.
    pub fn start(
        addr: SocketAddr,
        name: &str,
        max_connections: usize,
        handler: Handler,
    ) -> std::io::Result<Self> {
        let listener = std::net::TcpListener::bind(addr)?;
        listener.set_nonblocking(true)?;
        let addr = listener.local_addr()?;
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
        let stop = CancellationToken::new();
        let token = stop.clone();
        let (tid_tx, tid_rx) = std::sync::mpsc::sync_channel(1);
        let thread = std::thread::Builder::new().name(name.to_string()).spawn(move || {
            let _ = tid_tx.send(crate::ProcessSample::current_thread_id());
            runtime.block_on(async move {
                match TcpListener::from_std(listener) {
                    Ok(listener) => serve(listener, max_connections, handler, token).await,
                    Err(e) => tracing::error!(error = %e, "server listener unusable"),
                }
            })
        })?;
        let tid = tid_rx.recv().ok().flatten();
        Ok(ServerThread { addr, tid, stop, thread: Some(thread) })
    }

    /// CPU time the server's thread has used (Linux only).
    pub fn thread_cpu(&self) -> Option<std::time::Duration> {
        crate::ProcessSample::thread_cpu(self.tid?)
    }

    /// The bound address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Stops accepting, closes idle connections, and waits for the thread.
    pub fn stop(&mut self) {
        self.stop.cancel();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl Drop for ServerThread {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The value of `key` in a query string (`a=1&b=2`), unescaped only as far
/// as the loopback protocols here need (no percent-decoding).
pub fn query_param<'q>(query: &'q str, key: &str) -> Option<&'q str> {
    query.split('&').find_map(|kv| kv.strip_prefix(key)?.strip_prefix('='))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_params_are_found_by_exact_key() {
        assert_eq!(query_param("seq=3&n=50&delay_ms=120", "n"), Some("50"));
        assert_eq!(query_param("seq=3&n=50", "se"), None);
        assert_eq!(query_param("", "n"), None);
    }
}
