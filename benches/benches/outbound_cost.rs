//! What the outbound safety costs per request.
//!
//! Figure (issue text): "The cost of the egress check and the limiter per
//! request (µs), so users see it is negligible."
//!
//! Parts, each timed over many calls, [`ROUNDS`] rounds, median and range:
//! - the per-request egress check (`EgressPolicy::check_url`: URL parse,
//!   scheme, address class) on a typical API URL;
//! - the check of a name's resolved addresses (once per new connection);
//! - a rate limit that lets the request through at once (GCRA check).
//!
//! Whole: sequential GETs over one kept-alive connection to a loopback
//! server that answers at once, with everything on (egress policy, a listed
//! host with a rate limit, breaker, adaptive limit) against everything off,
//! alternating, [`GET_ROUNDS`] rounds of [`REQUESTS`]; the difference of the
//! medians is the gate's and the policy's cost in a real request.
//!
//! Run: `cargo bench -p switchyard-benches --bench outbound_cost`

use std::hint::black_box;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use switchyard::io_reactor::egress::EgressPolicy;
use switchyard::io_reactor::server::{respond, Handler, ServerThread};
use switchyard::io_reactor::{
    AdaptiveConfig, BreakerConfig, EgressConfig, HostConfig, HttpClient, HttpConfig, RateLimit,
};
use switchyard_benches::machine;

const ROUNDS: usize = 5;
/// Rounds of the whole-request comparison: a loopback round trip is noisy
/// on a shared machine, so it gets more of them.
const GET_ROUNDS: usize = 11;
const CALLS: u32 = 200_000;
const REQUESTS: u32 = 5_000;
const URL: &str = "https://api.partner.example/v2/orders?page=7&limit=100";

fn per_call(calls: u32, mut f: impl FnMut()) -> Duration {
    let started = Instant::now();
    for _ in 0..calls {
        f();
    }
    started.elapsed() / calls
}

fn summary(mut values: Vec<Duration>) -> String {
    values.sort();
    let ns = |d: Duration| d.as_nanos();
    format!("{} ns [{}-{}]", ns(values[values.len() / 2]), ns(values[0]), ns(values[values.len() - 1]))
}

fn main() {
    println!("# outbound cost per request: {}", machine());
    let policy = EgressPolicy::new();
    let check =
        (0..ROUNDS).map(|_| per_call(CALLS, || drop(black_box(policy.check_url(black_box(URL)))))).collect();
    println!("egress check_url (once per host, when its gate is made): {}", summary(check));
    let resolved: Vec<SocketAddr> =
        vec!["93.184.216.34:443".parse().unwrap(), "[2606:2800:220:1::1]:443".parse().unwrap()];
    let names = (0..ROUNDS)
        .map(|_| {
            per_call(CALLS, || {
                drop(black_box(policy.check_resolved("api.partner.example", resolved.clone())))
            })
        })
        .collect();
    println!("egress check of 2 resolved addresses (each new connection): {}", summary(names));

    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let limit = RateLimit::new(1e9, 1_000_000).unwrap();
    let rate = (0..ROUNDS)
        .map(|_| {
            runtime.block_on(async {
                let started = Instant::now();
                for _ in 0..CALLS {
                    limit.until_ready().await;
                }
                started.elapsed() / CALLS
            })
        })
        .collect();
    println!("rate limit that lets the request through: {}", summary(rate));

    let handler: Handler = Arc::new(|_req| Box::pin(async { respond(200, "text/plain", "ok") }));
    let server = ServerThread::start(([127, 0, 0, 1], 0).into(), "cost-upstream", 16, handler).unwrap();
    let url = format!("http://{}/", server.addr());
    let guarded = HttpConfig {
        egress: EgressConfig::allowing_loopback(),
        hosts: vec![HostConfig { rate_per_second: Some(1e5), burst: 100_000, ..HostConfig::labelled(&url) }],
        ..HttpConfig::default()
    };
    let bare = HttpConfig {
        egress: EgressConfig { enabled: false, ..EgressConfig::default() },
        breaker: BreakerConfig { enabled: false, ..BreakerConfig::default() },
        adaptive: AdaptiveConfig { enabled: false, ..AdaptiveConfig::default() },
        ..HttpConfig::default()
    };
    let (mut with, mut without) = (Vec::new(), Vec::new());
    for round in 0..GET_ROUNDS {
        let order = if round.is_multiple_of(2) { [true, false] } else { [false, true] };
        for guarded_run in order {
            let config = if guarded_run { &guarded } else { &bare };
            let per_request = runtime.block_on(async {
                let client = HttpClient::new(config).unwrap();
                client.get(&url).await.unwrap();
                let started = Instant::now();
                for _ in 0..REQUESTS {
                    client.get(&url).await.unwrap();
                }
                started.elapsed() / REQUESTS
            });
            if guarded_run { &mut with } else { &mut without }.push(per_request);
        }
    }
    let median = |v: &mut Vec<Duration>| {
        v.sort();
        v[v.len() / 2]
    };
    let (m_with, m_without) = (median(&mut with), median(&mut without));
    println!("loopback GET, policy + gate on: {}", summary(with));
    println!("loopback GET, all off:          {}", summary(without));
    println!(
        "difference of the medians: {:.2} µs per request",
        (m_with.as_nanos() as f64 - m_without.as_nanos() as f64) / 1e3
    );
}
