//! A small mixed I/O + CPU job against a loopback upstream started
//! in-process: what the embedding example and several tests run when they
//! need real waits and real CPU work without any server to set up.
//!
//! Each task asks the upstream for a batch of records (the upstream answers
//! after a delay, as a slow API does), then digests them on the CPU side:
//! parse the JSON and run a hash chain over each record. The upstream runs on
//! its own runtime thread, so it never shares the engine's reactor.

use std::hash::{DefaultHasher, Hash, Hasher};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use hyper::body::Incoming;
use hyper::Request;

use crate::http_server::{query_param, respond, Handler, HttpResponse, ServerThread};

use crate::{TaskContext, TaskError};

/// Most concurrent connections the demo upstream serves.
const UPSTREAM_MAX_CONNECTIONS: usize = 4_096;

/// A loopback HTTP server answering `GET /records?n=N&delay_ms=D` after `D`
/// milliseconds with `N` JSON records, on its own thread. Stops when dropped.
pub struct DemoUpstream {
    server: ServerThread,
}

impl DemoUpstream {
    /// Starts the server on 127.0.0.1 and a free port.
    pub fn start() -> std::io::Result<DemoUpstream> {
        let handler: Handler = Arc::new(|req| Box::pin(answer(req)));
        let addr = SocketAddr::from(([127, 0, 0, 1], 0));
        Ok(DemoUpstream {
            server: ServerThread::start(addr, "switchyard-demo-upstream", UPSTREAM_MAX_CONNECTIONS, handler)?,
        })
    }

    /// The server's address.
    pub fn addr(&self) -> SocketAddr {
        self.server.addr()
    }

    /// `http://127.0.0.1:PORT`.
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr())
    }
}

async fn answer(request: Request<Incoming>) -> HttpResponse {
    let query = request.uri().query().unwrap_or("");
    let param = |key: &str| query_param(query, key).and_then(|v| v.parse::<u64>().ok());
    if request.uri().path() != "/records" {
        return respond(404, "text/plain", "not found");
    }
    let n = param("n").unwrap_or(10).min(10_000);
    let delay = Duration::from_millis(param("delay_ms").unwrap_or(0).min(60_000));
    tokio::time::sleep(delay).await;
    let mut body = String::with_capacity(64 * n as usize + 2);
    body.push('[');
    for i in 0..n {
        if i > 0 {
            body.push(',');
        }
        body.push_str(&format!(
            r#"{{"id":{i},"name":"  Record {i}  ","score":"{}.{:02}"}}"#,
            i % 1000,
            i % 100
        ));
    }
    body.push(']');
    respond(200, "application/json", body)
}

/// Digests a JSON array of records: the demo's CPU step.
pub fn digest_records(body: &[u8], rounds: u32) -> Result<u64, serde_json::Error> {
    let records: Vec<serde_json::Value> = serde_json::from_slice(body)?;
    let mut digest = 0u64;
    for record in &records {
        let mut h = DefaultHasher::new();
        record.to_string().hash(&mut h);
        let mut v = h.finish();
        for _ in 1..rounds {
            let mut h = DefaultHasher::new();
            v.hash(&mut h);
            v = h.finish();
        }
        digest ^= v;
    }
    Ok(digest)
}

/// One demo task: wait on the upstream, then digest on the CPU side.
pub async fn demo_task(cx: TaskContext, url: String, rounds: u32) -> Result<(), TaskError> {
    let response = cx.http().get(&url).await?.error_for_status()?;
    cx.cpu_stage("digest", move || digest_records(&response.body, rounds)).await??;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digest_depends_on_content_and_rounds() {
        let a = digest_records(br#"[{"id":1},{"id":2}]"#, 10).unwrap();
        assert_eq!(a, digest_records(br#"[{"id":1},{"id":2}]"#, 10).unwrap());
        assert_ne!(a, digest_records(br#"[{"id":1},{"id":3}]"#, 10).unwrap());
        assert_ne!(a, digest_records(br#"[{"id":1},{"id":2}]"#, 11).unwrap());
        assert!(digest_records(b"not json", 1).is_err());
    }
}
