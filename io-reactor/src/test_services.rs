//! Test helpers for the real MySQL and Redis servers.
//!
//! Tests read `SWITCHYARD_MYSQL_URL` / `SWITCHYARD_REDIS_URL` (defaults: the
//! local servers), skip with a printed reason when the server cannot be
//! reached, and fail instead when `SWITCHYARD_REQUIRE_SERVICES=1`, so CI
//! cannot pass by skipping.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

const DEFAULT_MYSQL_URL: &str = "mysql://root@127.0.0.1:3306/test";
const DEFAULT_REDIS_URL: &str = "redis://127.0.0.1:6379/";
const PROBE_TIMEOUT: Duration = Duration::from_millis(500);

pub(crate) fn mysql_url() -> String {
    std::env::var("SWITCHYARD_MYSQL_URL").unwrap_or_else(|_| DEFAULT_MYSQL_URL.to_string())
}

pub(crate) fn redis_url() -> String {
    std::env::var("SWITCHYARD_REDIS_URL").unwrap_or_else(|_| DEFAULT_REDIS_URL.to_string())
}

fn required() -> bool {
    std::env::var("SWITCHYARD_REQUIRE_SERVICES").is_ok_and(|v| v == "1")
}

/// Whether `service` at `url` accepts TCP connections. When it does not,
/// prints "skipping: ..." and returns false, or panics if services are
/// required.
pub(crate) async fn reachable(service: &str, url: &str) -> bool {
    let reason = match host_port(url) {
        None => format!("{service} url has no host"),
        Some(addr) => {
            match tokio::time::timeout(PROBE_TIMEOUT, tokio::net::TcpStream::connect(&addr)).await {
                Ok(Ok(_)) => return true,
                Ok(Err(e)) => format!("{service} at {addr} unreachable: {e}"),
                Err(_) => format!("{service} at {addr} did not answer within {PROBE_TIMEOUT:?}"),
            }
        }
    };
    if required() {
        panic!("SWITCHYARD_REQUIRE_SERVICES=1 but {reason}");
    }
    println!("skipping: {reason}");
    false
}

/// `host:port` of a `scheme://[user[:pass]@]host[:port][/...]` URL; never
/// the credentials, since it ends up in messages.
fn host_port(url: &str) -> Option<String> {
    let (scheme, rest) = url.split_once("://")?;
    let authority = rest.split(['/', '?']).next()?;
    let host = authority.rsplit_once('@').map_or(authority, |(_, host)| host);
    if host.is_empty() {
        return None;
    }
    let has_port = match host.rfind(']') {
        Some(bracket) => host[bracket..].contains(':'),
        None => host.contains(':'),
    };
    if has_port {
        return Some(host.to_string());
    }
    let port = match scheme {
        "mysql" | "mariadb" => 3306,
        _ => 6379,
    };
    Some(format!("{host}:{port}"))
}

/// A name no other test (or concurrent test run) uses: prefix, process id
/// and a counter.
pub(crate) fn unique_name(prefix: &str) -> String {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    format!("{prefix}_{}_{}", std::process::id(), NEXT.fetch_add(1, Ordering::Relaxed))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_port_drops_credentials_and_fills_the_port() {
        assert_eq!(host_port("mysql://root:pw@db/test").as_deref(), Some("db:3306"));
        assert_eq!(host_port("redis://:pw@127.0.0.1:6380/0").as_deref(), Some("127.0.0.1:6380"));
        assert_eq!(host_port("redis://[::1]").as_deref(), Some("[::1]:6379"));
        assert_eq!(host_port("nonsense"), None);
        assert_ne!(unique_name("t"), unique_name("t"));
    }
}
