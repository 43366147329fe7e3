//! The service's HTTP endpoints: `/metrics` (Prometheus text), `/healthz`
//! and `/status` (JSON), on loopback unless configured otherwise.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::{Arc, OnceLock};

use switchyard_io_reactor::server::{respond, serve, Handler};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::prometheus::PrometheusSetup;
use crate::status::{StatusSnapshot, StatusSource};

/// Where the endpoints listen unless told otherwise: loopback only, never
/// all interfaces.
pub const DEFAULT_LISTEN_ADDR: SocketAddr = SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 9464);

/// Most connections served at once; a scraper and an operator need a few.
const MAX_CONNECTIONS: usize = 64;

/// What the endpoints read. The status source is set once the engine has
/// started, so `/metrics` and `/healthz` answer from the first moment.
#[derive(Debug, Clone, Default)]
pub struct Endpoints {
    metrics: Option<PrometheusSetup>,
    status: Arc<OnceLock<StatusSource>>,
}

impl Endpoints {
    /// Endpoints serving `metrics` (when a recorder is installed).
    pub fn new(metrics: Option<PrometheusSetup>) -> Self {
        Endpoints { metrics, status: Arc::new(OnceLock::new()) }
    }

    pub(crate) fn set_status(&self, source: StatusSource) {
        let _ = self.status.set(source);
    }

    /// The status snapshot, once running.
    pub fn status(&self) -> Option<StatusSnapshot> {
        self.status.get().map(StatusSource::snapshot)
    }

    /// Serves until `stop` is cancelled.
    pub async fn serve(self, listener: TcpListener, stop: CancellationToken) {
        let handler: Handler = Arc::new(move |req| {
            let endpoints = self.clone();
            Box::pin(async move {
                match req.uri().path() {
                    "/metrics" => match &endpoints.metrics {
                        Some(m) => respond(200, "text/plain; version=0.0.4", m.render()),
                        None => respond(404, "text/plain", "no metrics recorder installed\n"),
                    },
                    "/healthz" => respond(200, "text/plain", "ok\n"),
                    "/status" => match endpoints.status() {
                        Some(s) => {
                            respond(200, "application/json", serde_json::to_vec(&s).unwrap_or_default())
                        }
                        None => respond(503, "application/json", r#"{"status":"starting"}"#),
                    },
                    _ => respond(404, "text/plain", "not found\n"),
                }
            })
        });
        serve(listener, MAX_CONNECTIONS, handler, stop).await;
    }
}
