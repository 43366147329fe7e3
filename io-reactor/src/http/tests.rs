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
use crate::config::EgressConfig;

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
                hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(stream), service),
            );
        }
    });
    (addr, counters)
}

async fn route(req: Request<Incoming>, counters: Arc<Counters>) -> Result<Response<Full<Bytes>>, Infallible> {
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

/// A client whose egress policy lets the loopback test servers through.
fn client(config: HttpConfig) -> HttpClient {
    HttpClient::new(&HttpConfig { egress: EgressConfig::allowing_loopback(), ..config }).unwrap()
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
    let response = client(HttpConfig::default()).get(&format!("http://{addr}/unavailable")).await.unwrap();
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

#[test]
fn the_userinfo_is_taken_off_before_hyper_sees_the_uri() {
    let request = Request::get("http://user:pa%2Fss@127.0.0.1:9/x?q=1").body(Bytes::new()).unwrap();
    let request = without_userinfo(request).unwrap();
    assert_eq!(request.uri().to_string(), "http://127.0.0.1:9/x?q=1");
    let request = Request::get("https://TOKEN@[::1]/").body(Bytes::new()).unwrap();
    assert_eq!(without_userinfo(request).unwrap().uri().to_string(), "https://[::1]/");
    let request = Request::get("http://127.0.0.1:9/x").body(Bytes::new()).unwrap();
    assert_eq!(without_userinfo(request).unwrap().uri().to_string(), "http://127.0.0.1:9/x");
}

#[tokio::test]
async fn a_request_with_userinfo_still_reaches_its_host() {
    let (addr, _) = server().await;
    let url = format!("http://user:hunter2@{addr}/big");
    let response = client(HttpConfig::default()).get(&url).await.unwrap();
    assert_eq!(response.status, 200);
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

/// A response whose head carries a header of `value_bytes` characters, then
/// a 100,000-byte body.
fn response_with_header(value_bytes: usize) -> &'static [u8] {
    let head = format!(
        "HTTP/1.1 200 OK\r\nx-padding: {}\r\ncontent-length: 100000\r\n\r\n",
        "p".repeat(value_bytes)
    );
    Box::leak([head.into_bytes(), vec![b'b'; 100_000]].concat().into_boxed_slice())
}

#[tokio::test]
async fn a_head_over_the_read_buffer_is_refused_and_bodies_pass_in_pieces() {
    let config = HttpConfig { request_timeout_ms: 5_000, ..HttpConfig::default() };
    assert_eq!(config.read_buffer_bytes, 8 * 1024);

    // A 100 KB body through the default 8 KiB buffer.
    let addr = raw_server(response_with_header(10)).await;
    let got = client(config.clone()).get(&format!("http://{addr}/")).await.unwrap();
    assert_eq!(got.body.len(), 100_000);

    // A 12 KB head: refused with the default, read with a 16 KiB buffer.
    let big_head = response_with_header(12_000);
    let addr = raw_server(big_head).await;
    let err = client(config.clone()).get(&format!("http://{addr}/")).await.unwrap_err();
    assert!(err.to_string().contains("message head is too large"), "{err}");
    assert!(!err.is_timeout() && !err.is_connect(), "{err:?}");
    let roomy = HttpConfig { read_buffer_bytes: 16 * 1024, ..config };
    let addr = raw_server(big_head).await;
    let got = client(roomy).get(&format!("http://{addr}/")).await.unwrap();
    assert_eq!((got.headers["x-padding"].len(), got.body.len()), (12_000, 100_000));
}

#[test]
fn read_buffer_bounds_are_checked() {
    for bad in [0, 8 * 1024 - 1, 1024 * 1024 + 1] {
        let config = HttpConfig { read_buffer_bytes: bad, ..HttpConfig::default() };
        assert_eq!(config.validate().unwrap_err().config_field(), Some("http.read_buffer_bytes"), "{bad}");
    }
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
    let with_policy = client(HttpConfig::default());
    let egress = EgressConfig { enabled: false, ..EgressConfig::default() };
    let without_policy = HttpClient::new(&HttpConfig { egress, ..HttpConfig::default() }).unwrap();
    for client in [with_policy, without_policy] {
        for url in ["not a url", "/relative", "http:///no-host"] {
            let err = client.get(url).await.unwrap_err();
            assert!(matches!(err.kind(), Kind::InvalidRequest), "{url}: {err:?}");
        }
    }
    let err = client(HttpConfig::default()).get("ftp://127.0.0.1/").await.unwrap_err();
    assert_eq!(err.egress_rule(), Some("scheme"), "{err}");
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
