//! Outbound HTTP: a pooled HTTP/1.1 client (plain and TLS) with the limits a
//! task engine needs, so one slow or huge upstream cannot eat the process.
//!
//! [`HttpClient`] is hyper-util's connection-pooling client with rustls
//! (ring, webpki roots) for `https://`. Every call returns a fully read
//! [`HttpResponse`]; a non-2xx status is a response, not an error, until
//! [`HttpResponse::error_for_status`] says otherwise.
//!
//! # The one decision: one deadline for the whole exchange
//!
//! `request_timeout_ms` bounds everything a caller waits for: a turn under
//! the per-host cap, connecting, sending, the headers *and* reading the body
//! to its end. A deadline on the headers alone (what most clients give) lets
//! an upstream that trickles its body hold a task, and its reactor slot,
//! forever. The body is read here, under the deadline and under
//! `max_body_bytes`, rather than handed back as a stream.
//!
//! # Backpressure
//!
//! At most `max_in_flight_per_host` requests run at once against one
//! scheme, host and port; more wait in FIFO order (their wait is recorded)
//! and that wait counts toward the request deadline. hyper-util keeps no such
//! cap itself: without one, a burst of tasks opens a connection each and
//! knocks the upstream over.
//!
//! # Limits
//!
//! - `connect_timeout_ms` bounds the TCP connect (a timeout is both
//!   [`Error::is_connect`] and [`Error::is_timeout`]); the TLS handshake is
//!   bounded by the request deadline.
//! - A body longer than `max_body_bytes` is refused: at once when
//!   `Content-Length` announces it, otherwise as soon as the excess arrives.
//!   The connection is then dropped, not reused.
//!
//! # Shutdown
//!
//! Nothing to stop: idle pooled connections close after
//! `pool_idle_timeout_ms`, and all of them when the last clone of the client
//! is dropped.
//!
//! # Metrics
//!
//! `switchyard_http_requests_total{outcome}` and
//! `switchyard_http_request_duration_seconds` per finished request,
//! `switchyard_http_in_flight`, and `switchyard_http_host_limit_wait_seconds`.
//! A request the caller abandons (drops its future) leaves the in-flight
//! gauge but is not counted as finished.
//!
//! # Example
//!
//! ```no_run
//! use switchyard_io_reactor::{HttpClient, HttpConfig};
//!
//! # async fn run() -> switchyard_io_reactor::Result<()> {
//! let client = HttpClient::new(&HttpConfig::default())?;
//! let response = client.get("http://127.0.0.1:8080/items/1").await?.error_for_status()?;
//! println!("{} bytes", response.body.len());
//! # Ok(())
//! # }
//! ```

use std::collections::HashMap;
use std::error::Error as StdError;
use std::fmt;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::header::{CONTENT_LENGTH, CONTENT_TYPE};
use http::{HeaderMap, HeaderValue, Request, StatusCode, Uri};
use http_body_util::{BodyExt, Full, LengthLimitError, Limited};
use hyper_rustls::{HttpsConnector, HttpsConnectorBuilder};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use tokio::sync::Semaphore;

use crate::config::HttpConfig;
use crate::error::{Error, Kind, Result, TimeoutPhase};
use crate::telemetry::{HttpMetrics, HttpOutcome};

/// Pooled HTTP/HTTPS client with timeouts, a body cap and a per-host cap.
///
/// Cheap to clone: clones share the connection pool and the per-host caps.
/// It can be built outside a runtime but must be used inside tokio.
#[derive(Clone)]
pub struct HttpClient {
    inner: Arc<Inner>,
}

struct Inner {
    client: Client<HttpsConnector<HttpConnector>, Full<Bytes>>,
    /// One semaphore per `scheme://host:port`. Entries are never removed:
    /// the upstreams of one deployment are a small, fixed set.
    host_limits: Mutex<HashMap<String, Arc<Semaphore>>>,
    max_in_flight_per_host: usize,
    request_timeout: Duration,
    max_body_bytes: usize,
    metrics: HttpMetrics,
}

/// A fully read response.
#[derive(Debug, Clone)]
pub struct HttpResponse {
    /// Status code.
    pub status: StatusCode,
    /// Response headers.
    pub headers: HeaderMap,
    /// The whole body (at most `max_body_bytes`).
    pub body: Bytes,
}

impl HttpResponse {
    /// The response itself when its status is 2xx, otherwise an error whose
    /// [`Error::status`] is the status code.
    pub fn error_for_status(self) -> Result<Self> {
        if self.status.is_success() {
            Ok(self)
        } else {
            Err(Error::new(Kind::Status(self.status.as_u16())))
        }
    }
}

impl HttpClient {
    /// Builds the client; validates `config`.
    pub fn new(config: &HttpConfig) -> Result<HttpClient> {
        config.validate()?;
        let mut tcp = HttpConnector::new();
        tcp.set_connect_timeout(Some(Duration::from_millis(config.connect_timeout_ms)));
        // The TLS wrapper, not the TCP connector, decides which schemes pass.
        tcp.enforce_http(false);
        tcp.set_nodelay(true);
        let connector = HttpsConnectorBuilder::new()
            .with_provider_and_webpki_roots(rustls::crypto::ring::default_provider())
            .map_err(|e| Error::new(Kind::Runtime).with(e))?
            .https_or_http()
            .enable_http1()
            .wrap_connector(tcp);
        let client = Client::builder(TokioExecutor::new())
            // Without a pool timer, hyper-util never expires idle connections.
            .pool_timer(TokioTimer::new())
            .timer(TokioTimer::new())
            .pool_idle_timeout(Duration::from_millis(config.pool_idle_timeout_ms))
            .pool_max_idle_per_host(config.pool_max_idle_per_host)
            .build(connector);
        Ok(HttpClient {
            inner: Arc::new(Inner {
                client,
                host_limits: Mutex::new(HashMap::new()),
                max_in_flight_per_host: config.max_in_flight_per_host,
                request_timeout: Duration::from_millis(config.request_timeout_ms),
                max_body_bytes: config.max_body_bytes,
                metrics: HttpMetrics::new(),
            }),
        })
    }

    /// `GET url`.
    pub async fn get(&self, url: &str) -> Result<HttpResponse> {
        let request = Request::get(parse_url(url)?).body(Bytes::new()).map_err(invalid_request)?;
        self.send(request).await
    }

    /// `POST url` with a JSON body (`Content-Type: application/json`).
    pub async fn post_json(&self, url: &str, body: Bytes) -> Result<HttpResponse> {
        let request = Request::post(parse_url(url)?)
            .header(CONTENT_TYPE, HeaderValue::from_static("application/json"))
            .body(body)
            .map_err(invalid_request)?;
        self.send(request).await
    }

    /// Sends any request, under the per-host cap and the request deadline,
    /// and reads the whole response body.
    pub async fn send(&self, request: Request<Bytes>) -> Result<HttpResponse> {
        // A request that cannot be sent never reached the network: not counted.
        let host = host_key(request.uri())?;
        let started = Instant::now();
        let metrics = &self.inner.metrics;
        // Left even when the caller drops this future half-way.
        let _in_flight = metrics.in_flight();
        let exchange = self.exchange(&host, request.map(Full::new));
        let result = match tokio::time::timeout(self.inner.request_timeout, exchange).await {
            Ok(result) => result,
            Err(_elapsed) => Err(Error::timeout(TimeoutPhase::Request)),
        };
        metrics.finished(outcome(&result), started.elapsed());
        result
    }

    async fn exchange(&self, host: &str, request: Request<Full<Bytes>>) -> Result<HttpResponse> {
        let limit = self.inner.host_limit(host);
        let waiting = Instant::now();
        let _permit = limit.acquire().await.map_err(|e| Error::new(Kind::Http).with(e))?;
        self.inner.metrics.host_limit_waited(waiting.elapsed());

        let response = self.inner.client.request(request).await.map_err(client_error)?;
        let (parts, body) = response.into_parts();
        let max = self.inner.max_body_bytes;
        if content_length(&parts.headers).is_some_and(|len| len > max as u64) {
            return Err(Error::new(Kind::BodyTooLarge(max)));
        }
        let body = Limited::new(body, max)
            .collect()
            .await
            .map_err(|e| {
                if e.is::<LengthLimitError>() {
                    Error::new(Kind::BodyTooLarge(max))
                } else {
                    Error::new(Kind::Http).with(e)
                }
            })?
            .to_bytes();
        Ok(HttpResponse { status: parts.status, headers: parts.headers, body })
    }
}

impl Inner {
    fn host_limit(&self, host: &str) -> Arc<Semaphore> {
        let mut limits = self.host_limits.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(limit) = limits.get(host) {
            return Arc::clone(limit);
        }
        let limit = Arc::new(Semaphore::new(self.max_in_flight_per_host));
        limits.insert(host.to_owned(), Arc::clone(&limit));
        limit
    }
}

impl fmt::Debug for HttpClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HttpClient")
            .field("request_timeout", &self.inner.request_timeout)
            .field("max_body_bytes", &self.inner.max_body_bytes)
            .field("max_in_flight_per_host", &self.inner.max_in_flight_per_host)
            .finish_non_exhaustive()
    }
}

fn parse_url(url: &str) -> Result<Uri> {
    // The parse error names the fault, never the URL (it may hold a password).
    url.parse::<Uri>().map_err(invalid_request)
}

fn invalid_request<E: Into<Box<dyn StdError + Send + Sync>>>(e: E) -> Error {
    Error::new(Kind::InvalidRequest).with(e)
}

/// `scheme://host:port` with the default port filled in, so
/// `http://a/` and `http://a:80/` share one cap; never the userinfo.
fn host_key(uri: &Uri) -> Result<String> {
    let scheme = match uri.scheme_str() {
        Some("http") => "http",
        Some("https") => "https",
        _ => return Err(invalid_request("url needs an http or https scheme")),
    };
    let Some(host) = uri.host() else {
        return Err(invalid_request("url has no host"));
    };
    let port = uri.port_u16().unwrap_or(if scheme == "https" { 443 } else { 80 });
    Ok(format!("{scheme}://{host}:{port}"))
}

fn content_length(headers: &HeaderMap) -> Option<u64> {
    headers.get(CONTENT_LENGTH)?.to_str().ok()?.trim().parse().ok()
}

fn client_error(e: hyper_util::client::legacy::Error) -> Error {
    let kind = if !e.is_connect() {
        Kind::Http
    } else if timed_out(&e) {
        Kind::Timeout(TimeoutPhase::Connect)
    } else {
        Kind::Connect
    };
    Error::new(kind).with(Causes(e))
}

/// hyper-util's error shown by its causes: its own line ("client error
/// (Connect)") repeats the kind, while the causes say what went wrong
/// ("tcp connect error: Connection refused"). None of them carries a URL or
/// a header value.
struct Causes(hyper_util::client::legacy::Error);

impl fmt::Display for Causes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let Some(first) = self.0.source() else { return write!(f, "{}", self.0) };
        write!(f, "{first}")?;
        let mut next = first.source();
        while let Some(cause) = next {
            write!(f, ": {cause}")?;
            next = cause.source();
        }
        Ok(())
    }
}

impl fmt::Debug for Causes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.0, f)
    }
}

// No `source()`: the message already holds the whole chain.
impl StdError for Causes {}

/// hyper-util reports its connect timeout as a connect error caused by an
/// `io::Error` of kind `TimedOut` somewhere down the source chain.
fn timed_out(e: &(dyn StdError + 'static)) -> bool {
    let mut next = Some(e);
    while let Some(err) = next {
        if err.downcast_ref::<std::io::Error>().is_some_and(|io| io.kind() == std::io::ErrorKind::TimedOut) {
            return true;
        }
        next = err.source();
    }
    false
}

fn outcome(result: &Result<HttpResponse>) -> HttpOutcome {
    let err = match result {
        Ok(response) => return HttpOutcome::status(response.status.as_u16()),
        Err(err) => err,
    };
    match err.kind() {
        // A connect timeout means "unreachable", like a refused connection.
        Kind::Connect | Kind::Timeout(TimeoutPhase::Connect) => HttpOutcome::Connect,
        Kind::Timeout(_) => HttpOutcome::Timeout,
        Kind::BodyTooLarge(_) => HttpOutcome::BodyTooLarge,
        _ => HttpOutcome::Error,
    }
}

#[cfg(test)]
mod tests {
    use std::convert::Infallible;
    use std::net::SocketAddr;
    use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};

    use hyper::body::Incoming;
    use hyper::service::service_fn;
    use hyper::Response;
    use hyper_util::rt::TokioIo;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;

    use super::*;

    #[derive(Default)]
    struct Counters {
        accepts: AtomicUsize,
        current: AtomicUsize,
        max_current: AtomicUsize,
    }

    /// A hyper server on 127.0.0.1:0 with a few test routes; counts accepted
    /// connections and concurrent `/count` requests.
    async fn server() -> (SocketAddr, Arc<Counters>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let counters = Arc::new(Counters::default());
        let shared = Arc::clone(&counters);
        tokio::spawn(async move {
            loop {
                let (stream, _) = listener.accept().await.unwrap();
                shared.accepts.fetch_add(1, SeqCst);
                let counters = Arc::clone(&shared);
                let service = service_fn(move |req| route(req, Arc::clone(&counters)));
                tokio::spawn(
                    hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service),
                );
            }
        });
        (addr, counters)
    }

    async fn route(
        req: Request<Incoming>,
        counters: Arc<Counters>,
    ) -> Result<Response<Full<Bytes>>, Infallible> {
        let reply =
            |status: u16, body: Bytes| Ok(Response::builder().status(status).body(Full::new(body)).unwrap());
        match req.uri().path() {
            "/echo" => {
                let head = format!("{} {:?}\n", req.method(), req.headers().get(CONTENT_TYPE));
                let body = req.into_body().collect().await.unwrap().to_bytes();
                reply(200, Bytes::from([head.as_bytes(), &body].concat()))
            }
            "/slow" => {
                tokio::time::sleep(Duration::from_secs(3)).await;
                reply(200, Bytes::new())
            }
            "/big" => reply(200, Bytes::from(vec![b'x'; 1000])),
            "/unavailable" => reply(503, Bytes::from_static(b"busy")),
            "/count" => {
                let now = counters.current.fetch_add(1, SeqCst) + 1;
                counters.max_current.fetch_max(now, SeqCst);
                tokio::time::sleep(Duration::from_millis(50)).await;
                counters.current.fetch_sub(1, SeqCst);
                reply(200, Bytes::new())
            }
            _ => reply(404, Bytes::new()),
        }
    }

    /// A server that answers every connection with `response` verbatim and
    /// then keeps the connection open, for bodies hyper's server won't write.
    async fn raw_server(response: &'static [u8]) -> SocketAddr {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            loop {
                let (mut stream, _) = listener.accept().await.unwrap();
                tokio::spawn(async move {
                    let mut buf = [0u8; 4096];
                    let _ = stream.read(&mut buf).await;
                    let _ = stream.write_all(response).await;
                    tokio::time::sleep(Duration::from_secs(10)).await;
                });
            }
        });
        addr
    }

    fn client(config: HttpConfig) -> HttpClient {
        HttpClient::new(&config).unwrap()
    }

    #[test]
    fn builds_outside_a_runtime_and_validates() {
        assert!(HttpClient::new(&HttpConfig::default()).is_ok());
        let err =
            HttpClient::new(&HttpConfig { max_in_flight_per_host: 0, ..HttpConfig::default() }).unwrap_err();
        assert_eq!(err.config_field(), Some("http.max_in_flight_per_host"));
    }

    #[tokio::test]
    async fn get_and_post_json_round_trip() {
        let (addr, _) = server().await;
        let client = client(HttpConfig::default());
        let got = client.get(&format!("http://{addr}/echo")).await.unwrap();
        assert_eq!(got.status, StatusCode::OK);
        assert_eq!(got.body, "GET None\n");
        let posted =
            client.post_json(&format!("http://{addr}/echo"), Bytes::from_static(b"{\"a\":1}")).await.unwrap();
        assert_eq!(posted.body, "POST Some(\"application/json\")\n{\"a\":1}");
    }

    #[tokio::test]
    async fn non_2xx_is_a_response_until_error_for_status() {
        let (addr, _) = server().await;
        let response =
            client(HttpConfig::default()).get(&format!("http://{addr}/unavailable")).await.unwrap();
        assert_eq!(response.status, StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(response.body, "busy");
        let err = response.error_for_status().unwrap_err();
        assert_eq!(err.status(), Some(503));
        assert_eq!(err.to_string(), "upstream answered 503");
    }

    #[tokio::test]
    async fn request_timeout_covers_headers_and_body() {
        let config = HttpConfig { request_timeout_ms: 200, ..HttpConfig::default() };
        let (addr, _) = server().await;
        let start = Instant::now();
        let err = client(config.clone()).get(&format!("http://{addr}/slow")).await.unwrap_err();
        assert!(err.is_timeout() && !err.is_connect(), "{err:?}");
        assert!(start.elapsed() < Duration::from_secs(2), "took {:?}", start.elapsed());

        // Headers arrive at once, the body never completes.
        let addr = raw_server(b"HTTP/1.1 200 OK\r\ncontent-length: 10\r\n\r\nab").await;
        let err = client(config).get(&format!("http://{addr}/")).await.unwrap_err();
        assert!(err.is_timeout(), "{err:?}");
        assert_eq!(err.to_string(), "request timed out");
    }

    #[tokio::test]
    async fn closed_port_is_a_connect_error_without_secrets() {
        let port = TcpListener::bind("127.0.0.1:0").await.unwrap().local_addr().unwrap().port();
        let url = format!("http://user:hunter2@127.0.0.1:{port}/");
        let err = client(HttpConfig::default()).get(&url).await.unwrap_err();
        assert!(err.is_connect() && !err.is_timeout(), "{err:?}");
        assert!(err.to_string().starts_with("connection failed: tcp connect error: "), "{err}");
        assert!(!format!("{err} {err:?}").contains("hunter2"));
    }

    #[tokio::test]
    async fn body_over_the_cap_is_refused() {
        let config = HttpConfig { max_body_bytes: 100, request_timeout_ms: 5_000, ..HttpConfig::default() };
        let (addr, _) = server().await;
        let err = client(config.clone()).get(&format!("http://{addr}/big")).await.unwrap_err();
        assert!(err.is_body_too_large(), "{err:?}");
        assert_eq!(err.to_string(), "response body exceeds 100 bytes");

        // Content-Length announces too much and the body never comes: refusing
        // must not wait for it (this would be a timeout otherwise).
        let addr = raw_server(b"HTTP/1.1 200 OK\r\ncontent-length: 1000000000\r\n\r\nxx").await;
        let err = client(config.clone()).get(&format!("http://{addr}/")).await.unwrap_err();
        assert!(err.is_body_too_large(), "{err:?}");

        // Chunked, no length: refused once the excess arrives.
        let chunked: &[u8] = b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n\
            3c\r\n012345678901234567890123456789012345678901234567890123456789\r\n\
            3c\r\n012345678901234567890123456789012345678901234567890123456789\r\n0\r\n\r\n";
        let addr = raw_server(chunked).await;
        let err = client(config).get(&format!("http://{addr}/")).await.unwrap_err();
        assert!(err.is_body_too_large(), "{err:?}");
        assert!(err.to_string().contains("100 bytes"));
    }

    #[tokio::test]
    async fn sequential_requests_reuse_one_connection() {
        let (addr, counters) = server().await;
        let client = client(HttpConfig::default());
        for _ in 0..20 {
            assert_eq!(client.get(&format!("http://{addr}/echo")).await.unwrap().status, 200);
        }
        assert_eq!(counters.accepts.load(SeqCst), 1);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn per_host_cap_bounds_concurrency_at_the_server() {
        let (addr, counters) = server().await;
        let client = client(HttpConfig { max_in_flight_per_host: 2, ..HttpConfig::default() });
        let url = format!("http://{addr}/count");
        let tasks: Vec<_> = (0..10)
            .map(|_| {
                let (client, url) = (client.clone(), url.clone());
                tokio::spawn(async move { client.get(&url).await })
            })
            .collect();
        for task in tasks {
            assert_eq!(task.await.unwrap().unwrap().status, 200);
        }
        let max = counters.max_current.load(SeqCst);
        assert!((1..=2).contains(&max), "{max} requests were in flight at once");
        assert!(counters.accepts.load(SeqCst) <= 2);
    }

    #[tokio::test]
    async fn https_to_a_plain_server_fails_promptly() {
        let (addr, _) = server().await;
        let (client, url) = (client(HttpConfig::default()), format!("https://{addr}/echo"));
        let err = tokio::time::timeout(Duration::from_secs(5), client.get(&url)).await.unwrap().unwrap_err();
        assert!(err.is_connect(), "{err:?}");
        assert!(err.to_string().starts_with("connection failed: received corrupt message"), "{err}");
    }

    #[tokio::test]
    async fn bad_urls_are_invalid_requests() {
        let client = client(HttpConfig::default());
        for url in ["not a url", "ftp://127.0.0.1/", "/relative"] {
            let err = client.get(url).await.unwrap_err();
            assert!(matches!(err.kind(), Kind::InvalidRequest), "{url}: {err:?}");
        }
    }

    #[test]
    fn host_key_fills_default_ports_and_drops_userinfo() {
        let key = |u: &str| host_key(&u.parse().unwrap()).unwrap();
        assert_eq!(key("http://a.example/x"), key("http://a.example:80/y"));
        assert_eq!(key("https://u:pw@a.example/"), "https://a.example:443");
    }

    #[test]
    fn connect_timeout_is_found_down_the_source_chain() {
        #[derive(Debug)]
        struct Wrap(std::io::Error);
        impl fmt::Display for Wrap {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("tcp connect error")
            }
        }
        impl StdError for Wrap {
            fn source(&self) -> Option<&(dyn StdError + 'static)> {
                Some(&self.0)
            }
        }
        let io = |kind| std::io::Error::new(kind, "x");
        assert!(timed_out(&Wrap(io(std::io::ErrorKind::TimedOut))));
        assert!(!timed_out(&Wrap(io(std::io::ErrorKind::ConnectionRefused))));
    }

    #[test]
    fn metrics_balance_in_flight_and_count_outcomes() {
        use metrics_util::debugging::{DebugValue, DebuggingRecorder};
        let recorder = DebuggingRecorder::new();
        let snapshotter = recorder.snapshotter();
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        metrics::with_local_recorder(&recorder, || {
            runtime.block_on(async {
                let (addr, _) = server().await;
                let client = client(HttpConfig::default());
                client.get(&format!("http://{addr}/echo")).await.unwrap();
                client.get(&format!("http://{addr}/unavailable")).await.unwrap();
            })
        });
        let metrics = snapshotter.snapshot().into_vec();
        let find = |name: &str, label: Option<&str>| {
            metrics.iter().find(|(key, ..)| {
                key.key().name() == name && label.is_none_or(|l| key.key().labels().any(|x| x.value() == l))
            })
        };
        let cat = switchyard_protocol::catalogue::HTTP_REQUESTS.name;
        for label in ["2xx", "5xx"] {
            assert!(matches!(find(cat, Some(label)), Some((.., DebugValue::Counter(1)))), "{label}");
        }
        let gauge = find(switchyard_protocol::catalogue::HTTP_IN_FLIGHT.name, None);
        assert!(matches!(gauge, Some((.., DebugValue::Gauge(v))) if v.0 == 0.0), "{gauge:?}");
    }
}
