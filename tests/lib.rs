//! Shared harness of Switchyard's cross-crate integration tests.
//!
//! Tests against MySQL and Redis use the real servers. Their addresses come
//! from `SWITCHYARD_MYSQL_URL` and `SWITCHYARD_REDIS_URL` (defaults: the
//! loopback servers of a developer machine). When a server cannot be reached
//! the test prints why and returns, unless `SWITCHYARD_REQUIRE_SERVICES=1`
//! (CI sets it), in which case it fails.

use std::net::{TcpStream, ToSocketAddrs};
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

/// MySQL URL of the developer machine's loopback MariaDB.
pub const DEFAULT_MYSQL_URL: &str = "mysql://root@127.0.0.1:3306/test";
/// Redis URL of the developer machine's loopback Redis.
pub const DEFAULT_REDIS_URL: &str = "redis://127.0.0.1:6379/";

/// Whether a missing service fails the test instead of skipping it.
pub fn services_required() -> bool {
    std::env::var("SWITCHYARD_REQUIRE_SERVICES").is_ok_and(|v| v == "1")
}

/// The MySQL URL to test against, or `None` (after printing why) when the
/// server is unreachable and services are not required.
pub fn mysql_url() -> Option<String> {
    service_url("SWITCHYARD_MYSQL_URL", DEFAULT_MYSQL_URL, "MySQL")
}

/// The Redis URL to test against, or `None` as for [`mysql_url`].
pub fn redis_url() -> Option<String> {
    service_url("SWITCHYARD_REDIS_URL", DEFAULT_REDIS_URL, "Redis")
}

fn service_url(var: &str, default: &str, name: &str) -> Option<String> {
    let url = std::env::var(var).unwrap_or_else(|_| default.to_string());
    match reachable(&url) {
        Ok(()) => Some(url),
        Err(reason) if services_required() => {
            panic!("{name} is required (SWITCHYARD_REQUIRE_SERVICES=1) but unreachable: {reason}")
        }
        Err(reason) => {
            eprintln!("skipping: {name} unreachable ({reason}); set {var} or start the server");
            None
        }
    }
}

fn reachable(url: &str) -> Result<(), String> {
    let host_port = host_port(url).ok_or("the url has no host")?;
    let addr = host_port
        .to_socket_addrs()
        .map_err(|e| format!("{host_port}: {e}"))?
        .next()
        .ok_or_else(|| format!("{host_port}: no address"))?;
    TcpStream::connect_timeout(&addr, Duration::from_secs(2)).map(drop).map_err(|e| format!("{addr}: {e}"))
}

/// `host:port` of a `scheme://[user[:pass]@]host[:port][/...]` URL, with the
/// scheme's default port; never the credentials, since it ends up in messages.
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

static EXCLUSIVE: Mutex<()> = Mutex::new(());

/// Serialises tests whose assertions depend on having the machine's cores
/// (reactor lateness): hold the guard for the test's duration.
pub fn exclusive() -> MutexGuard<'static, ()> {
    EXCLUSIVE.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// A name unique to this process and call, for tables and keys.
pub fn unique(prefix: &str) -> String {
    use std::sync::atomic::{AtomicU32, Ordering};
    static NEXT: AtomicU32 = AtomicU32::new(0);
    format!("{prefix}_{}_{}", std::process::id(), NEXT.fetch_add(1, Ordering::Relaxed))
}

/// Spins the current thread for `d`: a CPU step that really uses the CPU.
pub fn burn(d: Duration) -> u64 {
    let start = std::time::Instant::now();
    let mut x = 0x9E37_79B9_7F4A_7C15u64;
    while start.elapsed() < d {
        for _ in 0..1_000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
        }
    }
    std::hint::black_box(x)
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
        assert_ne!(unique("t"), unique("t"));
    }
}
