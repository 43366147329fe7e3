//! The scrape endpoint: `/metrics` (Prometheus text) and `/healthz`.

use std::sync::Arc;

use switchyard::http_server::{respond, serve as serve_http, Handler};
use switchyard::telemetry::PrometheusSetup;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

/// Most scrape connections served at once; a scraper needs one or two.
const MAX_CONNECTIONS: usize = 64;

pub(crate) async fn serve(listener: TcpListener, metrics: PrometheusSetup, stop: CancellationToken) {
    let handler: Handler = Arc::new(move |req| {
        let metrics = metrics.clone();
        Box::pin(async move {
            match req.uri().path() {
                "/metrics" => respond(200, "text/plain; version=0.0.4", metrics.render()),
                "/healthz" => respond(200, "text/plain", "ok\n"),
                _ => respond(404, "text/plain", "not found\n"),
            }
        })
    });
    serve_http(listener, MAX_CONNECTIONS, handler, stop).await;
}
