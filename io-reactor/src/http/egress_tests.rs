//! The egress policy as the client applies it: refusals happen before any
//! socket opens, and a connection goes only to an address that was checked.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};

use metrics_util::debugging::{DebugValue, DebuggingRecorder};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

use super::*;
use crate::config::EgressConfig;
use crate::egress::tests::REFUSED;

/// A listener on 127.0.0.1 that answers 200 with the request's `Host`
/// header as its body and counts the connections it accepted.
async fn host_echo() -> (SocketAddr, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let accepted = Arc::new(AtomicUsize::new(0));
    let counter = Arc::clone(&accepted);
    tokio::spawn(async move {
        loop {
            let (mut stream, _) = listener.accept().await.unwrap();
            counter.fetch_add(1, SeqCst);
            tokio::spawn(async move {
                let mut buf = vec![0u8; 4096];
                let n = stream.read(&mut buf).await.unwrap_or(0);
                let head = String::from_utf8_lossy(&buf[..n]).to_string();
                let host = head
                    .lines()
                    .find_map(|l| l.strip_prefix("host: ").or_else(|| l.strip_prefix("Host: ")))
                    .unwrap_or("")
                    .to_string();
                let reply = format!(
                    "HTTP/1.1 200 OK\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{host}",
                    host.len()
                );
                let _ = stream.write_all(reply.as_bytes()).await;
            });
        }
    });
    (addr, accepted)
}

/// A resolver that answers every name with `addresses` (ports replaced by
/// the one asked for) and counts the lookups.
fn fixed_resolver(addresses: Vec<SocketAddr>, lookups: Arc<AtomicUsize>) -> Resolve {
    Arc::new(move |_host, port| {
        lookups.fetch_add(1, SeqCst);
        let answer = addresses.iter().map(|a| SocketAddr::new(a.ip(), port)).collect();
        Box::pin(async move { Ok(answer) })
    })
}

fn default_policy_client() -> HttpClient {
    HttpClient::new(&HttpConfig::default()).unwrap()
}

#[tokio::test]
async fn the_default_client_refuses_loopback_naming_the_rule_without_connecting() {
    let (addr, accepted) = host_echo().await;
    let err = default_policy_client().get(&format!("http://{addr}/")).await.unwrap_err();
    assert!(err.is_egress_refused(), "{err}");
    assert_eq!(err.egress_rule(), Some("loopback"));
    assert!(err.to_string().contains("loopback"), "the message names the rule: {err}");
    assert!(!err.is_connect() && !err.is_timeout());
    let err = default_policy_client().get(&format!("http://localhost:{}/", addr.port())).await.unwrap_err();
    assert!(matches!(err.egress_rule(), Some("loopback" | "embeds_ipv4")), "{err}");
    assert_eq!(accepted.load(SeqCst), 0, "no connection reached the listener");
}

#[tokio::test]
async fn every_url_of_the_corpus_fails_before_connecting() {
    let client = default_policy_client();
    let mut refused_by_policy = 0;
    for (url, rule) in REFUSED {
        let started = Instant::now();
        let err = client.get(url).await.expect_err(url);
        // A URL that cannot be read (by the policy, or by hyper before it:
        // `file:///...` has no authority) is an invalid request; every other
        // one is the policy's refusal under the corpus's rule.
        let unreadable = *rule == "invalid_url" || url.parse::<Uri>().is_err();
        if unreadable {
            assert!(err.to_string().starts_with("invalid request"), "{url}: {err}");
        } else {
            assert_eq!(err.egress_rule(), Some(*rule), "{url}: {err}");
            refused_by_policy += 1;
        }
        assert!(started.elapsed() < Duration::from_millis(500), "{url} took {:?}", started.elapsed());
    }
    assert!(refused_by_policy >= 40, "{refused_by_policy} of {} refused by the policy", REFUSED.len());
}

#[tokio::test]
async fn a_name_answering_public_then_loopback_never_reaches_loopback() {
    let (addr, accepted) = host_echo().await;
    let lookups = Arc::new(AtomicUsize::new(0));
    let public: SocketAddr = "93.184.216.34:80".parse().unwrap();
    let resolve = fixed_resolver(vec![public, addr], Arc::clone(&lookups));
    let client = HttpClient::with_resolver(&HttpConfig::default(), resolve).unwrap();
    let err = client.get(&format!("http://rebind.example:{}/", addr.port())).await.unwrap_err();
    assert_eq!(err.egress_rule(), Some("loopback"), "{err}");
    assert_eq!(lookups.load(SeqCst), 1);
    assert_eq!(accepted.load(SeqCst), 0);
}

#[tokio::test]
async fn an_allowed_name_connects_to_the_checked_address_and_keeps_its_host() {
    let (addr, accepted) = host_echo().await;
    let lookups = Arc::new(AtomicUsize::new(0));
    let resolve = fixed_resolver(vec![addr], Arc::clone(&lookups));
    let config = HttpConfig { egress: EgressConfig::allowing_loopback(), ..HttpConfig::default() };
    let client = HttpClient::with_resolver(&config, resolve).unwrap();
    let url = format!("http://partner.example:{}/orders", addr.port());
    let response = client.get(&url).await.unwrap();
    assert_eq!(response.body, format!("partner.example:{}", addr.port()), "Host stays the name");
    assert_eq!(accepted.load(SeqCst), 1);
    assert_eq!(lookups.load(SeqCst), 1, "resolved once, by the connector only");
}

#[tokio::test]
async fn the_engines_own_listener_stays_refused_under_an_allow_list() {
    let (own, own_accepted) = host_echo().await;
    let (other, other_accepted) = host_echo().await;
    let egress = EgressConfig { own_listeners: vec![own], ..EgressConfig::allowing_loopback() };
    let client = HttpClient::new(&HttpConfig { egress, ..HttpConfig::default() }).unwrap();
    let err = client.get(&format!("http://{own}/metrics")).await.unwrap_err();
    assert_eq!(err.egress_rule(), Some("own_listener"), "{err}");
    // By name too: the connector checks the resolved address with its port.
    let err = client.get(&format!("http://localhost:{}/metrics", own.port())).await.unwrap_err();
    assert!(matches!(err.egress_rule(), Some("own_listener" | "embeds_ipv4" | "loopback")), "{err}");
    client.get(&format!("http://{other}/")).await.unwrap();
    assert_eq!((own_accepted.load(SeqCst), other_accepted.load(SeqCst)), (0, 1));
}

#[tokio::test]
async fn with_the_policy_off_loopback_is_reachable() {
    let (addr, accepted) = host_echo().await;
    let egress = EgressConfig { enabled: false, ..EgressConfig::default() };
    let client = HttpClient::new(&HttpConfig { egress, ..HttpConfig::default() }).unwrap();
    client.get(&format!("http://{addr}/")).await.unwrap();
    assert_eq!(accepted.load(SeqCst), 1);
}

#[test]
fn an_allow_list_that_opens_everything_is_refused_at_build() {
    for everything in ["0.0.0.0/0", "::/0"] {
        let egress = EgressConfig { allow: vec![everything.into()], ..EgressConfig::default() };
        let err = HttpClient::new(&HttpConfig { egress, ..HttpConfig::default() }).unwrap_err();
        assert_eq!(err.config_field(), Some("http.egress.allow"));
        assert!(err.to_string().contains("every address"), "{err}");
    }
    let egress = EgressConfig { allow: vec!["10.0.0.1/8".into()], ..EgressConfig::default() };
    let err = HttpClient::new(&HttpConfig { egress, ..HttpConfig::default() }).unwrap_err();
    assert_eq!(err.config_field(), Some("http.egress.allow"), "a sloppy range is refused too");
}

#[test]
fn refusals_are_counted_by_rule_and_not_as_requests() {
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    metrics::with_local_recorder(&recorder, || {
        runtime.block_on(async {
            let client = default_policy_client();
            client.get("http://169.254.169.254/latest/meta-data/").await.unwrap_err();
            client.get("http://10.0.0.1/").await.unwrap_err();
            client.get("http://localhost:9/").await.unwrap_err();
        })
    });
    let metrics = snapshotter.snapshot().into_vec();
    let count = |name: &str, label: &str| {
        metrics.iter().find_map(|(key, _, _, value)| {
            let labelled = key.key().labels().any(|l| l.value() == label);
            match value {
                DebugValue::Counter(n) if key.key().name() == name && labelled => Some(*n),
                _ => None,
            }
        })
    };
    let refused = switchyard_protocol::catalogue::HTTP_EGRESS_REFUSED.name;
    assert_eq!(count(refused, "link_local"), Some(1));
    assert_eq!(count(refused, "private"), Some(1));
    let by_name = count(refused, "loopback").unwrap_or(0) + count(refused, "embeds_ipv4").unwrap_or(0);
    assert_eq!(by_name, 1, "localhost is refused once, when its connection would open");
    let requests = switchyard_protocol::catalogue::HTTP_REQUESTS.name;
    let counted: u64 = ["connect", "error", "timeout"].iter().filter_map(|o| count(requests, o)).sum();
    assert_eq!(counted, 0, "a refused request never reached the network");
}

#[test]
fn the_rule_labels_are_the_catalogues() {
    use crate::egress::Refusal;
    let mut rules: Vec<&str> = vec!["scheme"];
    rules.extend(
        [
            Refusal::Loopback,
            Refusal::Private,
            Refusal::UniqueLocal,
            Refusal::LinkLocal,
            Refusal::SharedAddressSpace,
            Refusal::Unspecified,
            Refusal::Multicast,
            Refusal::Broadcast,
            Refusal::Reserved,
            Refusal::EmbedsIpv4,
            Refusal::OwnListener,
        ]
        .map(|r| r.rule()),
    );
    assert_eq!(crate::telemetry::egress_rules(), rules.as_slice());
}
