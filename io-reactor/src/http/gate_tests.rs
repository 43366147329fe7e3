//! The host gate as the client applies it, against a loopback server:
//! rate limits, the circuit breaker, `Retry-After`, adaptive concurrency
//! and the bounded `host` label.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU16, Ordering::SeqCst};

use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper::Response;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

use super::*;
use crate::config::{BreakerConfig, EgressConfig};

/// A server that answers every request with the status in `status` (a 503
/// or 429 with `Retry-After: 2`) and notes when each request arrived.
struct Upstream {
    addr: SocketAddr,
    status: Arc<AtomicU16>,
    arrivals: Arc<Mutex<Vec<Instant>>>,
}

async fn upstream() -> Upstream {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let status = Arc::new(AtomicU16::new(200));
    let arrivals = Arc::new(Mutex::new(Vec::new()));
    let (shared_status, shared_arrivals) = (Arc::clone(&status), Arc::clone(&arrivals));
    tokio::spawn(async move {
        loop {
            let (stream, _) = listener.accept().await.unwrap();
            let (status, arrivals) = (Arc::clone(&shared_status), Arc::clone(&shared_arrivals));
            let service = service_fn(move |_req: Request<Incoming>| {
                arrivals.lock().unwrap().push(Instant::now());
                let code = status.load(SeqCst);
                let mut response = Response::builder().status(code);
                if code == 503 || code == 429 {
                    response = response.header("retry-after", "2");
                }
                async move { Ok::<_, Infallible>(response.body(Full::new(Bytes::new())).unwrap()) }
            });
            tokio::spawn(
                hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(stream), service),
            );
        }
    });
    Upstream { addr, status, arrivals }
}

fn config_for(host: HostConfig) -> HttpConfig {
    HttpConfig { egress: EgressConfig::allowing_loopback(), hosts: vec![host], ..HttpConfig::default() }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rate_limit_holds_within_five_percent_under_three_times_the_load() {
    const RATE: f64 = 50.0;
    let up = upstream().await;
    let host = HostConfig {
        rate_per_second: Some(RATE),
        burst: 5,
        ..HostConfig::labelled(format!("http://{}", up.addr))
    };
    let client = HttpClient::new(&HttpConfig { request_timeout_ms: 60_000, ..config_for(host) }).unwrap();
    let url = format!("http://{}/", up.addr);
    // Offer 3R: a request every 1/(3R) s for 11 s, each its own task.
    let offered = tokio::spawn({
        let client = client.clone();
        async move {
            let mut tick = tokio::time::interval(Duration::from_secs_f64(1.0 / (3.0 * RATE)));
            let mut tasks = Vec::new();
            let until = Instant::now() + Duration::from_secs(11);
            while Instant::now() < until {
                tick.tick().await;
                let (client, url) = (client.clone(), url.clone());
                tasks.push(tokio::spawn(async move { client.get(&url).await }));
            }
            tasks
        }
    });
    let tasks = offered.await.unwrap();
    let arrivals = up.arrivals.lock().unwrap().clone();
    let first = arrivals[0];
    // The burst passes at once; after it the rate rules. Count a 10 s
    // window that starts after the first second.
    let window = arrivals
        .iter()
        .filter(|t| **t >= first + Duration::from_secs(1) && **t < first + Duration::from_secs(11))
        .count() as f64;
    let expected = RATE * 10.0;
    assert!(
        (window - expected).abs() <= expected * 0.05,
        "{window} requests in 10 s, expected {expected} ± 5%"
    );
    for task in tasks {
        task.abort();
    }
}

#[tokio::test]
async fn the_breaker_opens_on_a_failing_host_probes_and_closes_when_it_recovers() {
    let up = upstream().await;
    let breaker = BreakerConfig {
        window_ms: 2_000,
        min_calls: 5,
        open_ms: 300,
        half_open_probes: 2,
        ..BreakerConfig::default()
    };
    let config = HttpConfig { breaker, ..config_for(HostConfig::labelled(format!("http://{}", up.addr))) };
    let client = HttpClient::new(&config).unwrap();
    let url = format!("http://{}/", up.addr);
    up.status.store(500, SeqCst);
    for _ in 0..5 {
        assert_eq!(client.get(&url).await.unwrap().status, 500);
    }
    let arrived = up.arrivals.lock().unwrap().len();
    let err = client.get(&url).await.unwrap_err();
    assert!(err.is_unavailable(), "{err}");
    assert!(err.to_string().contains("circuit breaker open"), "{err}");
    assert!(err.retry_in().unwrap() <= Duration::from_millis(300));
    assert_eq!(up.arrivals.lock().unwrap().len(), arrived, "an open breaker sends nothing");
    assert_eq!(client.host_status()[0].breaker, "open");

    // Still failing when it probes: open again.
    tokio::time::sleep(Duration::from_millis(350)).await;
    assert_eq!(client.get(&url).await.unwrap().status, 500, "the probe goes out");
    assert!(client.get(&url).await.unwrap_err().is_unavailable(), "a failed probe reopens it");

    // Recovered: two good probes close it.
    up.status.store(200, SeqCst);
    tokio::time::sleep(Duration::from_millis(350)).await;
    client.get(&url).await.unwrap();
    client.get(&url).await.unwrap();
    assert_eq!(client.host_status()[0].breaker, "closed");
    for _ in 0..10 {
        client.get(&url).await.unwrap();
    }
}

#[tokio::test]
async fn retry_after_two_delays_the_next_request_to_the_host_by_at_least_two_seconds() {
    let up = upstream().await;
    let client = HttpClient::new(&config_for(HostConfig::labelled(format!("http://{}", up.addr)))).unwrap();
    let url = format!("http://{}/", up.addr);
    up.status.store(503, SeqCst);
    assert_eq!(client.get(&url).await.unwrap().status, 503);
    up.status.store(200, SeqCst);
    assert!(client.host_status()[0].paused_for_ms > 1_500);
    client.get(&url).await.unwrap();
    let arrivals = up.arrivals.lock().unwrap().clone();
    assert!(arrivals[1] - arrivals[0] >= Duration::from_secs(2), "{:?}", arrivals[1] - arrivals[0]);

    // A pause past the request's deadline fails at once instead of waiting.
    let short = HttpConfig {
        request_timeout_ms: 500,
        ..config_for(HostConfig::labelled(format!("http://{}", up.addr)))
    };
    let client = HttpClient::new(&short).unwrap();
    up.status.store(429, SeqCst);
    client.get(&url).await.unwrap();
    let started = Instant::now();
    let err = client.get(&url).await.unwrap_err();
    assert!(err.is_unavailable() && err.to_string().contains("Retry-After"), "{err}");
    assert!(started.elapsed() < Duration::from_millis(400));
}

#[tokio::test]
async fn throttling_lowers_the_hosts_concurrency_limit() {
    let up = upstream().await;
    let host = HostConfig { max_in_flight: Some(20), ..HostConfig::labelled(format!("http://{}", up.addr)) };
    let client = HttpClient::new(&HttpConfig { max_retry_after_ms: 1, ..config_for(host) }).unwrap();
    let url = format!("http://{}/", up.addr);
    assert_eq!(
        client.host_status()[0].concurrency_limit,
        20,
        "a configured host shows before its first call"
    );
    up.status.store(502, SeqCst);
    client.get(&url).await.unwrap();
    let status = &client.host_status()[0];
    assert_eq!((status.concurrency_limit, status.concurrency_cap), (18, 20), "{status:?}");
}

#[test]
fn the_host_label_is_the_configured_host_or_other() {
    use metrics_util::debugging::{DebugValue, DebuggingRecorder};
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let (configured, unlisted) = metrics::with_local_recorder(&recorder, || {
        runtime.block_on(async {
            let (a, b) = (upstream().await, upstream().await);
            let client =
                HttpClient::new(&config_for(HostConfig::labelled(format!("http://{}/", a.addr)))).unwrap();
            client.get(&format!("http://{}/x", a.addr)).await.unwrap();
            client.get(&format!("http://{}/y", b.addr)).await.unwrap();
            client.get(&format!("http://localhost:{}/z", b.addr.port())).await.unwrap();
            (format!("http://{}", a.addr), b)
        })
    });
    drop(unlisted);
    let hosts: Vec<(String, u64)> = snapshotter
        .snapshot()
        .into_vec()
        .into_iter()
        .filter(|(key, ..)| key.key().name() == switchyard_protocol::catalogue::HTTP_REQUESTS.name)
        .filter_map(|(key, _, _, value)| match value {
            DebugValue::Counter(n) if n > 0 => {
                Some((key.key().labels().find(|l| l.key() == "host")?.value().to_owned(), n))
            }
            _ => None,
        })
        .collect();
    assert_eq!(hosts.len(), 2, "{hosts:?}");
    assert!(hosts.contains(&(configured, 1)), "{hosts:?}");
    assert!(hosts.contains(&("other".to_owned(), 2)), "{hosts:?}");
}

#[test]
fn a_request_the_breaker_turns_away_is_counted_but_not_timed() {
    use metrics_util::debugging::{DebugValue, DebuggingRecorder};
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    metrics::with_local_recorder(&recorder, || {
        runtime.block_on(async {
            let up = upstream().await;
            let breaker = BreakerConfig { min_calls: 2, open_ms: 60_000, ..BreakerConfig::default() };
            let host = HostConfig::labelled(format!("http://{}", up.addr));
            let client = HttpClient::new(&HttpConfig { breaker, ..config_for(host) }).unwrap();
            up.status.store(500, SeqCst);
            let url = format!("http://{}/", up.addr);
            client.get(&url).await.unwrap();
            client.get(&url).await.unwrap();
            assert!(client.get(&url).await.unwrap_err().is_unavailable());
        })
    });
    let metrics = snapshotter.snapshot().into_vec();
    let find = |name: &str, outcome: Option<&str>| {
        metrics.iter().find_map(|(key, _, _, value)| {
            let named = key.key().name() == name && key.key().labels().any(|l| l.value() != "other");
            let labelled = outcome.is_none_or(|o| key.key().labels().any(|l| l.value() == o));
            (named && labelled).then_some(value)
        })
    };
    let cat = switchyard_protocol::catalogue::HTTP_REQUESTS.name;
    assert!(matches!(find(cat, Some("unavailable")), Some(DebugValue::Counter(1))));
    let duration = find(switchyard_protocol::catalogue::HTTP_REQUEST_DURATION.name, None);
    assert!(matches!(duration, Some(DebugValue::Histogram(ref v)) if v.len() == 2), "{duration:?}");
}
