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
//! - A response head (status line and headers) longer than
//!   `read_buffer_bytes` is refused ("message head is too large"): it is
//!   each connection's fixed read buffer, kept while the connection idles in
//!   the pool, so it bounds memory per connection too.
//!
//! # Shutdown
//!
//! Nothing to stop: idle pooled connections close after
//! `pool_idle_timeout_ms`, and all of them when the last clone of the client
//! is dropped.
//!
//! # Egress policy
//!
//! Unless [`crate::EgressConfig::enabled`] is off, every request passes the
//! [`crate::egress`] policy before any socket opens: only `http` and
//! `https`, and no address in an internal range (loopback, private,
//! link-local, ...) unless the allow-list covers it. The scheme and IP
//! literals are checked on every request; a name is resolved once when a
//! connection opens, every address it stands for is checked, and the
//! connection goes to a checked address (see `connector`). A refusal is an
//! [`Error::is_egress_refused`] error naming the rule, counted in
//! `switchyard_http_egress_refused_total{rule}`.
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
//! let response = client.get("https://api.example.com/items/1").await?.error_for_status()?;
//! println!("{} bytes", response.body.len());
//! # Ok(())
//! # }
//! ```

use std::collections::HashMap;
use std::error::Error as StdError;
use std::fmt;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use http::header::{CONTENT_LENGTH, CONTENT_TYPE};
use http::{HeaderMap, HeaderValue, Request, StatusCode, Uri};
use http_body_util::{BodyExt, Full, LengthLimitError, Limited};
use hyper_rustls::{HttpsConnector, HttpsConnectorBuilder};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioTimer};

use self::connector::{system_resolver, EgressConnector, Resolve};
use self::gate::HostGate;
pub use self::gate::HostStatus;
pub use self::rate::RateLimit;
use crate::config::{HostConfig, HttpConfig};
use crate::egress::{EgressError, EgressPolicy};
use crate::error::{Error, Kind, Result, TimeoutPhase};
use crate::telemetry::{HostMetrics, HttpMetrics, HttpOutcome, OTHER_HOST};

/// Pooled HTTP/HTTPS client with timeouts, a body cap and a per-host cap.
///
/// Cheap to clone: clones share the connection pool and the per-host caps.
/// It can be built outside a runtime but must be used inside tokio.
#[derive(Clone)]
pub struct HttpClient {
    inner: Arc<Inner>,
}

struct Inner {
    client: Client<HttpsConnector<EgressConnector>, Full<Bytes>>,
    /// The egress policy, also held by the connector; `None` when it is off.
    egress: Option<Arc<EgressPolicy>>,
    /// One gate per `scheme://host:port`, at most [`MAX_TRACKED_HOSTS`].
    gates: Mutex<HashMap<String, Arc<HostGate>>>,
    /// The configured hosts by key, and the metric handles of each label.
    hosts: HashMap<String, HostConfig>,
    host_metrics: HashMap<String, Arc<HostMetrics>>,
    other_metrics: Arc<HostMetrics>,
    config: HttpConfig,
    request_timeout: Duration,
    max_body_bytes: usize,
    metrics: HttpMetrics,
}

/// Most hosts the client keeps a gate for; past it, gates no request holds
/// are dropped (a task-made URL can name any host: the map must not grow
/// without bound).
const MAX_TRACKED_HOSTS: usize = 4_096;

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
        HttpClient::with_resolver(config, system_resolver())
    }

    /// The client, resolving names with `resolve` (a test's resolver).
    pub(crate) fn with_resolver(config: &HttpConfig, resolve: Resolve) -> Result<HttpClient> {
        config.validate()?;
        let egress = config.egress.policy()?.map(Arc::new);
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
            .wrap_connector(EgressConnector::new(tcp, egress.clone(), resolve));
        let client = Client::builder(TokioExecutor::new())
            // Without a pool timer, hyper-util never expires idle connections.
            .pool_timer(TokioTimer::new())
            .timer(TokioTimer::new())
            .pool_idle_timeout(Duration::from_millis(config.pool_idle_timeout_ms))
            .pool_max_idle_per_host(config.pool_max_idle_per_host)
            // Fixed, not hyper's adaptive buffer, which grows after one large
            // response and stays grown while the connection idles in the pool.
            .http1_read_buf_exact_size(config.read_buffer_bytes)
            .build(connector);
        let hosts: HashMap<String, HostConfig> =
            config.hosts.iter().filter_map(|h| Some((host_key_of(&h.host)?, h.clone()))).collect();
        let host_metrics = hosts.keys().map(|key| (key.clone(), Arc::new(HostMetrics::new(key)))).collect();
        let client = HttpClient {
            inner: Arc::new(Inner {
                client,
                egress,
                gates: Mutex::new(HashMap::new()),
                hosts,
                host_metrics,
                other_metrics: Arc::new(HostMetrics::new(OTHER_HOST)),
                config: config.clone(),
                request_timeout: Duration::from_millis(config.request_timeout_ms),
                max_body_bytes: config.max_body_bytes,
                metrics: HttpMetrics::new(),
            }),
        };
        // Configured hosts show in `/status` (and their limit gauges) from
        // the start, not from their first request.
        for key in client.inner.hosts.keys() {
            client.inner.gate(key);
        }
        Ok(client)
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

    /// Sends any request through its host's gate (a `Retry-After` pause,
    /// the circuit breaker, the rate limit, the concurrency limit), under
    /// the request deadline, and reads the whole response body.
    pub async fn send(&self, request: Request<Bytes>) -> Result<HttpResponse> {
        let metrics = &self.inner.metrics;
        let refuse = |refusal: EgressError| {
            let error = egress_error(refusal);
            metrics.egress_refused(error.egress_rule());
            error
        };
        // A request that cannot be sent never reached the network: not counted.
        let host = match host_key(request.uri()) {
            Ok(host) => host,
            Err(error) => {
                // Not an http(s) URL with a host: the policy, when on, says why.
                if let Some(Err(refusal)) =
                    self.inner.egress.as_ref().map(|policy| policy.check_url(&request.uri().to_string()))
                {
                    return Err(refuse(refusal));
                }
                return Err(error);
            }
        };
        let gate = self.inner.gate(&host);
        // Per request, even on a pooled connection: the scheme, and the
        // address when the URL gives one, as the host's gate decided them
        // once (they depend on nothing else). Names are checked when a
        // connection to them opens.
        if let Some(refusal) = &gate.egress_refusal {
            return Err(refuse(refusal.clone()));
        }
        let request = without_userinfo(request)?;
        let gate = self.inner.gate(&host);
        let started = Instant::now();
        // Left even when the caller drops this future half-way.
        let _in_flight = metrics.in_flight();
        let result = self.exchange(&gate, started, request.map(Full::new)).await;
        match &result {
            Err(error) if error.is_egress_refused() => metrics.egress_refused(error.egress_rule()),
            _ => gate.metrics.finished(outcome(&result), started.elapsed()),
        }
        result
    }

    async fn exchange(
        &self,
        gate: &HostGate,
        started: Instant,
        request: Request<Full<Bytes>>,
    ) -> Result<HttpResponse> {
        // One deadline for the whole exchange, the wait at the gate included.
        let deadline = tokio::time::Instant::from_std(started + self.inner.request_timeout);
        let mut pass = gate.enter(deadline).await?;
        let sent = Instant::now();
        let round_trip = self.round_trip(request);
        tokio::pin!(round_trip);
        let threshold = gate.slow_threshold();
        let answered = async {
            let Some(threshold) = threshold else { return round_trip.await };
            tokio::select! {
                result = &mut round_trip => result,
                () = tokio::time::sleep(threshold) => {
                    // Still waiting: slow already, whatever comes of it.
                    gate.note_slow(&mut pass);
                    round_trip.await
                }
            }
        };
        let result = match tokio::time::timeout_at(deadline, answered).await {
            Ok(result) => result,
            Err(_elapsed) => Err(Error::timeout(TimeoutPhase::Request)),
        };
        let seen = result.as_ref().map(|r| (r.status.as_u16(), retry_after(&r.headers, SystemTime::now())));
        gate.settle(pass, seen, sent.elapsed());
        result
    }

    async fn round_trip(&self, request: Request<Full<Bytes>>) -> Result<HttpResponse> {
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

    /// The hosts worth a look: every configured one, and any other whose
    /// breaker is not closed, whose limit is down or that a `Retry-After`
    /// holds (at most [`MAX_STATUS_HOSTS`] in all).
    pub fn host_status(&self) -> Vec<HostStatus> {
        let gates = self.inner.gates.lock().unwrap_or_else(PoisonError::into_inner);
        let mut shown: Vec<HostStatus> =
            gates.values().filter(|g| g.noteworthy()).take(MAX_STATUS_HOSTS).map(|g| g.status()).collect();
        shown.sort_by(|a, b| a.host.cmp(&b.host));
        shown
    }
}

/// Most hosts [`HttpClient::host_status`] lists.
pub const MAX_STATUS_HOSTS: usize = 100;

impl Inner {
    fn gate(&self, key: &str) -> Arc<HostGate> {
        let mut gates = self.gates.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(gate) = gates.get(key) {
            return Arc::clone(gate);
        }
        if gates.len() >= MAX_TRACKED_HOSTS {
            // Forget the gates no request holds; a configured host's is
            // kept, its limits and breaker are worth remembering.
            gates.retain(|_, gate| gate.configured || Arc::strong_count(gate) > 1);
        }
        let host = self.hosts.get(key);
        let metrics = self.host_metrics.get(key).map_or_else(|| Arc::clone(&self.other_metrics), Arc::clone);
        // The key is `scheme://host:port` as the request wrote them: the
        // policy's verdict on it is its verdict on every URL of the host.
        let egress_refusal = self.egress.as_ref().and_then(|policy| policy.check_url(key).err());
        let gate = Arc::new(HostGate::new(key.to_owned(), host, &self.config, metrics, egress_refusal));
        gates.insert(key.to_owned(), Arc::clone(&gate));
        gate
    }
}

impl fmt::Debug for HttpClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HttpClient")
            .field("request_timeout", &self.inner.request_timeout)
            .field("max_body_bytes", &self.inner.max_body_bytes)
            .field("max_in_flight_per_host", &self.inner.config.max_in_flight_per_host)
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

/// `request` with no userinfo in its URI. hyper sends none of it (no
/// `Authorization` is made from it), but keys its connection pool by the
/// URI's authority, userinfo included, and logs that key at debug level.
fn without_userinfo(mut request: Request<Bytes>) -> Result<Request<Bytes>> {
    let Some(authority) = request.uri().authority() else { return Ok(request) };
    // A parsed authority's host and port hold no `@`: the last one ends
    // the userinfo.
    let Some((_, host_and_port)) = authority.as_str().rsplit_once('@') else { return Ok(request) };
    let mut parts = request.uri().clone().into_parts();
    parts.authority = Some(host_and_port.parse().map_err(invalid_request)?);
    *request.uri_mut() = Uri::from_parts(parts).map_err(invalid_request)?;
    Ok(request)
}

/// `scheme://host:port` of a configured host (`https://api.example`,
/// `http://10.0.0.5:8080/`), or `None` when it is not an http(s) URL.
/// Read by the URL parser, so a URL template's `{seq}` does not stop it.
pub fn host_key_of(text: &str) -> Option<String> {
    let url = url::Url::parse(text).ok()?;
    if !matches!(url.scheme(), "http" | "https") {
        return None;
    }
    Some(format!("{}://{}:{}", url.scheme(), url.host_str()?, url.port_or_known_default()?))
}

/// How long a `Retry-After` header asks to wait: delay-seconds or an
/// HTTP date (a date in the past is no wait).
pub fn retry_after(headers: &HeaderMap, now: SystemTime) -> Option<Duration> {
    let value = headers.get(http::header::RETRY_AFTER)?.to_str().ok()?.trim();
    match value.parse::<u64>() {
        Ok(seconds) => Some(Duration::from_secs(seconds)),
        Err(_) => Some(httpdate::parse_http_date(value).ok()?.duration_since(now).unwrap_or(Duration::ZERO)),
    }
}

fn content_length(headers: &HeaderMap) -> Option<u64> {
    headers.get(CONTENT_LENGTH)?.to_str().ok()?.trim().parse().ok()
}

/// A refusal as this crate's error: a URL that cannot be read is an invalid
/// request and a name that did not resolve a connect failure, like any
/// other; the rest are the policy's refusals.
fn egress_error(refusal: EgressError) -> Error {
    let kind = match &refusal {
        EgressError::InvalidUrl(_) | EgressError::NoHost => Kind::InvalidRequest,
        EgressError::Unresolved { .. } => Kind::Connect,
        other => Kind::Egress(other.reason()),
    };
    Error::new(kind).with(refusal)
}

/// The connector's refusal, found down the chain of causes hyper-util and
/// the TLS layer wrapped it in.
fn egress_refusal(e: &(dyn StdError + 'static)) -> Option<EgressError> {
    let mut next = Some(e);
    while let Some(err) = next {
        if let Some(refusal) = err.downcast_ref::<EgressError>() {
            return Some(refusal.clone());
        }
        next = err.source();
    }
    None
}

fn client_error(e: hyper_util::client::legacy::Error) -> Error {
    if let Some(refusal) = egress_refusal(&e) {
        return egress_error(refusal);
    }
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
        Kind::Unavailable(..) => HttpOutcome::Unavailable,
        _ => HttpOutcome::Error,
    }
}

mod adaptive;
mod breaker;
mod connector;
#[cfg(test)]
mod egress_tests;
mod gate;
#[cfg(test)]
mod gate_tests;
mod rate;
#[cfg(test)]
mod tests;
