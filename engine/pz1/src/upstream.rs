//! The PZ-1 upstream: the workload's HTTP contract (`docs/pz1.md`), served
//! by hyper on its own thread.
//!
//! - `GET /poll/{zap}?seq=S&n=N&fresh=F&delay_ms=D` answers after `D` ms
//!   with the poll's `N` events (built straight into one buffer).
//! - `POST /action/{zap}?delay_ms=D` with a JSON body answers after `D` ms
//!   with `{"ok": true}`.
//! - `&status=CODE` on any request forces that status (fault tests).
//! - `&fault=invalid_json|missing_field|oversized` (a Switchyard extension
//!   for fault tests) answers a poll with a broken body; the same faults,
//!   plus a forced status or an extra delay, can be queued for the next
//!   polls or actions with [`Pz1Upstream::inject`], for clients whose URLs
//!   a test cannot change.
//!
//! A sleeping request costs a timer and a connection, nothing more, so one
//! thread serves thousands of them. The bench starts this in-process on its
//! own runtime thread (never the engine's reactor); `switchyard upstream`
//! serves it standalone for peers and other machines.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;
use hyper::{Method, Request};
use switchyard_io_reactor::server::{query_param, respond, Handler, HttpResponse, ServerThread};

use crate::event::write_poll_body;

/// Most connections served at once (each sleeping request holds one).
pub const UPSTREAM_MAX_CONNECTIONS: usize = 16_384;
/// Largest action body accepted.
pub const MAX_ACTION_BODY_BYTES: usize = 1024 * 1024;
/// Largest delay honoured, whatever the client asks.
const MAX_DELAY_MS: u64 = 60_000;
/// Most events one poll may ask for.
const MAX_ITEMS: u64 = 100_000;

/// A fault the upstream applies to a request instead of its normal answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// A body that is not JSON.
    InvalidJson,
    /// JSON without the `items` field.
    MissingField,
    /// A 64 MiB body.
    Oversized,
    /// This status with a small JSON body.
    Status(u16),
    /// The normal answer, this much later than asked.
    ExtraDelay(Duration),
}

/// Which requests an injected fault applies to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FaultTarget {
    /// `GET /poll/...`
    Poll,
    /// `POST /action/...`
    Action,
}

/// Faults queued for the next requests, one request each.
#[derive(Debug, Default)]
struct FaultQueue {
    polls: VecDeque<Fault>,
    actions: VecDeque<Fault>,
}

/// Most faults that may be queued at once.
const MAX_QUEUED_FAULTS: usize = 10_000;

/// Requests served, for rates and CPU-per-request figures.
#[derive(Debug, Default)]
pub struct UpstreamCounters {
    polls: AtomicU64,
    actions: AtomicU64,
    rejected: AtomicU64,
}

impl UpstreamCounters {
    /// Polls answered.
    pub fn polls(&self) -> u64 {
        self.polls.load(Ordering::Relaxed)
    }
    /// Actions answered.
    pub fn actions(&self) -> u64 {
        self.actions.load(Ordering::Relaxed)
    }
    /// Requests refused as malformed or oversized.
    pub fn rejected(&self) -> u64 {
        self.rejected.load(Ordering::Relaxed)
    }
    /// All requests answered.
    pub fn total(&self) -> u64 {
        self.polls() + self.actions() + self.rejected()
    }
}

/// A running PZ-1 upstream. Stops when dropped.
#[derive(Debug)]
pub struct Pz1Upstream {
    server: ServerThread,
    counters: Arc<UpstreamCounters>,
    faults: Arc<Mutex<FaultQueue>>,
}

impl Pz1Upstream {
    /// Serves on `addr` (port 0 picks a free port) on a thread of its own.
    pub fn start(addr: SocketAddr) -> std::io::Result<Pz1Upstream> {
        let counters = Arc::new(UpstreamCounters::default());
        let faults = Arc::new(Mutex::new(FaultQueue::default()));
        let (c, f) = (counters.clone(), faults.clone());
        let handler: Handler = Arc::new(move |req| Box::pin(answer(req, c.clone(), f.clone())));
        let server = ServerThread::start(addr, "switchyard-pz1-upstream", UPSTREAM_MAX_CONNECTIONS, handler)?;
        Ok(Pz1Upstream { server, counters, faults })
    }

    /// Applies `fault` to each of the next `count` requests to `target`
    /// (after faults already queued). At most 10,000 are queued; more are dropped.
    pub fn inject(&self, target: FaultTarget, fault: Fault, count: usize) {
        let mut queue = self.faults.lock().expect("fault queue lock");
        let q = match target {
            FaultTarget::Poll => &mut queue.polls,
            FaultTarget::Action => &mut queue.actions,
        };
        let room = MAX_QUEUED_FAULTS.saturating_sub(q.len());
        q.extend(std::iter::repeat_n(fault, count.min(room)));
    }

    /// The bound address.
    pub fn addr(&self) -> SocketAddr {
        self.server.addr()
    }

    /// `http://ADDR`.
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr())
    }

    /// Requests served so far.
    pub fn counters(&self) -> &UpstreamCounters {
        &self.counters
    }

    /// CPU time the upstream's thread has used, where Linux tells it.
    pub fn thread_cpu(&self) -> Option<Duration> {
        self.server.thread_cpu()
    }
}

fn extra_delay(fault: Option<Fault>) -> Duration {
    match fault {
        Some(Fault::ExtraDelay(d)) => d.min(Duration::from_millis(MAX_DELAY_MS)),
        _ => Duration::ZERO,
    }
}

fn bad_request(counters: &UpstreamCounters, why: &'static str) -> HttpResponse {
    counters.rejected.fetch_add(1, Ordering::Relaxed);
    respond(400, "text/plain", why)
}

fn next_fault(faults: &Mutex<FaultQueue>, target: FaultTarget) -> Option<Fault> {
    let mut queue = faults.lock().expect("fault queue lock");
    match target {
        FaultTarget::Poll => queue.polls.pop_front(),
        FaultTarget::Action => queue.actions.pop_front(),
    }
}

fn query_fault(query: &str) -> Option<Fault> {
    match query_param(query, "fault")? {
        "invalid_json" => Some(Fault::InvalidJson),
        "missing_field" => Some(Fault::MissingField),
        "oversized" => Some(Fault::Oversized),
        _ => None,
    }
}

fn faulty(fault: Fault) -> Option<HttpResponse> {
    match fault {
        Fault::InvalidJson => Some(respond(200, "application/json", r#"{"zap":"z0","seq":1,"items":[{"id""#)),
        Fault::MissingField => Some(respond(200, "application/json", r#"{"zap":"z0","seq":1}"#)),
        Fault::Oversized => Some(respond(200, "application/json", vec![b' '; 64 * 1024 * 1024])),
        Fault::Status(status) => Some(respond(status, "application/json", r#"{"error":"injected"}"#)),
        Fault::ExtraDelay(_) => None,
    }
}

async fn answer(
    req: Request<Incoming>,
    counters: Arc<UpstreamCounters>,
    faults: Arc<Mutex<FaultQueue>>,
) -> HttpResponse {
    let query = req.uri().query().unwrap_or("").to_string();
    let path = req.uri().path().to_string();
    let number = |key| query_param(&query, key).and_then(|v| v.parse::<u64>().ok());
    let delay = Duration::from_millis(number("delay_ms").unwrap_or(0).min(MAX_DELAY_MS));
    let forced = number("status").and_then(|s| u16::try_from(s).ok()).filter(|s| (100..600).contains(s));

    if let (&Method::GET, Some(zap)) = (req.method(), path.strip_prefix("/poll/")) {
        let (Some(seq), Some(items), Some(fresh)) = (number("seq"), number("n"), number("fresh")) else {
            return bad_request(&counters, "seq, n and fresh are required\n");
        };
        if zap.is_empty() || zap.contains('/') || seq == 0 || fresh == 0 || items > MAX_ITEMS {
            return bad_request(&counters, "bad zap, seq, n or fresh\n");
        }
        let fault = next_fault(&faults, FaultTarget::Poll).or_else(|| query_fault(&query));
        tokio::time::sleep(delay + extra_delay(fault)).await;
        counters.polls.fetch_add(1, Ordering::Relaxed);
        if let Some(status) = forced {
            return respond(status, "application/json", r#"{"error":"forced"}"#);
        }
        if let Some(response) = fault.and_then(faulty) {
            return response;
        }
        let mut body = Vec::with_capacity(512 * items as usize + 64);
        write_poll_body(&mut body, zap, seq, items, fresh);
        return respond(200, "application/json", body);
    }
    if let (&Method::POST, Some(zap)) = (req.method(), path.strip_prefix("/action/")) {
        if zap.is_empty() || zap.contains('/') {
            return bad_request(&counters, "bad zap\n");
        }
        // The body is read (as a real webhook would) but only its size matters.
        let body = match Limited::new(req.into_body(), MAX_ACTION_BODY_BYTES).collect().await {
            Ok(body) => body.to_bytes(),
            Err(_) => {
                counters.rejected.fetch_add(1, Ordering::Relaxed);
                return respond(413, "text/plain", "action body too large or unreadable\n");
            }
        };
        if body.is_empty() {
            return bad_request(&counters, "action body is empty\n");
        }
        let fault = next_fault(&faults, FaultTarget::Action);
        tokio::time::sleep(delay + extra_delay(fault)).await;
        counters.actions.fetch_add(1, Ordering::Relaxed);
        if let Some(status) = forced {
            return respond(status, "application/json", r#"{"error":"forced"}"#);
        }
        if let Some(response) = fault.and_then(faulty) {
            return response;
        }
        return respond(200, "application/json", Bytes::from_static(br#"{"ok": true}"#));
    }
    counters.rejected.fetch_add(1, Ordering::Relaxed);
    respond(404, "text/plain", "not found\n")
}
