//! Configuration of the I/O side, one serde struct per component.
//!
//! Unknown keys are errors (`deny_unknown_fields`), units are in field names
//! and every default is a named constant. Each struct has `validate()`,
//! called by the constructor of its component, so a bad value fails at start
//! and names the field.

use std::net::SocketAddr;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::egress::{Cidr, EgressPolicy};
use crate::error::{Error, Result};

mod fairness;

pub use self::fairness::{
    AdaptiveConfig, BreakerConfig, HostConfig, DEFAULT_MAX_RETRY_AFTER_MS, MAX_CONFIGURED_HOSTS,
    MAX_RATE_PER_SECOND,
};

/// Default reactor worker threads.
pub const DEFAULT_REACTOR_THREADS: usize = 1;
/// Default HTTP connect timeout.
pub const DEFAULT_HTTP_CONNECT_TIMEOUT_MS: u64 = 2_000;
/// Default HTTP total (headers and body) timeout.
pub const DEFAULT_HTTP_REQUEST_TIMEOUT_MS: u64 = 30_000;
/// Default response-body cap.
pub const DEFAULT_HTTP_MAX_BODY_BYTES: usize = 8 * 1024 * 1024;
/// Default cap of requests in flight to one host (scheme, host and port).
pub const DEFAULT_HTTP_MAX_IN_FLIGHT_PER_HOST: usize = 512;
/// Default size of each HTTP connection's read buffer, which is also the
/// largest response head accepted: 8 KiB, as nginx's default buffer for an
/// upstream's response head. A connection keeps its buffer while it idles in
/// the pool, so at hundreds of connections the size is megabytes: hyper's
/// adaptive default grows it to 16 KiB and more after one larger response.
pub const DEFAULT_HTTP_READ_BUFFER_BYTES: usize = 8 * 1024;
/// Smallest read buffer a configuration may ask for: hyper's own first
/// buffer, and room for any ordinary response head.
pub const MIN_HTTP_READ_BUFFER_BYTES: usize = 8 * 1024;
/// Largest read buffer a configuration may ask for.
pub const MAX_HTTP_READ_BUFFER_BYTES: usize = 1024 * 1024;
/// Default idle time after which a pooled HTTP connection is closed.
pub const DEFAULT_HTTP_POOL_IDLE_TIMEOUT_MS: u64 = 90_000;
/// Default idle HTTP connections kept per host.
pub const DEFAULT_HTTP_POOL_MAX_IDLE_PER_HOST: usize = 512;
/// Default most MySQL connections.
pub const DEFAULT_MYSQL_POOL_MAX: usize = 10;
/// Default wait for a pooled MySQL connection.
pub const DEFAULT_MYSQL_ACQUIRE_TIMEOUT_MS: u64 = 2_000;
/// Default deadline of one scoped MySQL operation.
pub const DEFAULT_MYSQL_OPERATION_TIMEOUT_MS: u64 = 10_000;
/// Default [`MysqlConfig::idle_timeout_ms`]: a minute, so a steady load keeps
/// its connections and a burst's extra ones close soon after.
pub const DEFAULT_MYSQL_IDLE_TIMEOUT_MS: u64 = 60_000;
/// Default Redis connect timeout.
pub const DEFAULT_REDIS_CONNECT_TIMEOUT_MS: u64 = 2_000;
/// Default Redis response timeout: long enough for blocking reads of a few
/// seconds (redis's own default of 500 ms breaks `XREADGROUP BLOCK`).
pub const DEFAULT_REDIS_RESPONSE_TIMEOUT_MS: u64 = 30_000;
/// Default reactor heartbeat period. Each probe wakes the watchdog thread
/// and the reactor: at 10 ms the two cost about 7 ms of CPU a second on an
/// idle engine, the largest share of its fixed load. At 25 ms (40 probes a
/// second, 2,400 lag samples a minute) a stall over the 50 ms threshold is
/// still reported within 75 ms, for a fraction of that cost.
pub const DEFAULT_WATCHDOG_INTERVAL_MS: u64 = 25;
/// Default lag above which a heartbeat counts as a stall.
pub const DEFAULT_WATCHDOG_STALL_THRESHOLD_MS: u64 = 50;

/// The reactor runtime.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ReactorConfig {
    /// Worker threads of the tokio runtime (at least 1).
    pub threads: usize,
}

impl Default for ReactorConfig {
    fn default() -> Self {
        ReactorConfig { threads: DEFAULT_REACTOR_THREADS }
    }
}

impl ReactorConfig {
    /// Rejects a value that cannot work.
    pub fn validate(&self) -> Result<()> {
        if self.threads == 0 {
            return Err(Error::config("reactor.threads"));
        }
        Ok(())
    }
}

/// The outbound HTTP client.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HttpConfig {
    /// Deadline to open a connection (TCP and TLS).
    pub connect_timeout_ms: u64,
    /// Deadline of a whole exchange: sending, headers and the full body.
    pub request_timeout_ms: u64,
    /// Largest response body accepted; a larger one is an error.
    pub max_body_bytes: usize,
    /// Each connection's read buffer, a fixed size, and so the largest
    /// response head (status line and headers) accepted: a larger head is an
    /// error ("message head is too large"). Bodies of any size (up to
    /// `max_body_bytes`) are read through it in pieces.
    pub read_buffer_bytes: usize,
    /// Most requests in flight to one host; more wait their turn.
    pub max_in_flight_per_host: usize,
    /// Idle time after which a pooled connection is closed.
    pub pool_idle_timeout_ms: u64,
    /// Idle connections kept per host.
    pub pool_max_idle_per_host: usize,
    /// Where requests may go.
    pub egress: EgressConfig,
    /// Hosts with settings of their own (rate limit, cap) and a metric label.
    pub hosts: Vec<HostConfig>,
    /// The circuit breaker of every host.
    pub breaker: BreakerConfig,
    /// Adaptive concurrency of every host, under its static cap.
    pub adaptive: AdaptiveConfig,
    /// Longest `Retry-After` (on 429 and 503) the client holds a host for.
    pub max_retry_after_ms: u64,
}

/// Where outbound requests may go: see [`crate::egress`]. On by default,
/// because the URLs a pipeline polls and delivers to are user input.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EgressConfig {
    /// Refuse loopback, private, link-local and the other internal ranges.
    /// Off only for an embedder whose URLs never come from users.
    pub enabled: bool,
    /// Ranges allowed whatever their class (`"10.20.0.0/16"`, or
    /// `"127.0.0.1/32"` for an upstream on this machine). A range that
    /// covers every address (`0.0.0.0/0`, `::/0`) is refused.
    pub allow: Vec<String>,
    /// This engine's own listen addresses, refused even where `allow`
    /// covers them. Not read from the file: the service adds the address it
    /// listens on, an embedder its own.
    #[serde(skip)]
    pub own_listeners: Vec<SocketAddr>,
}

impl Default for EgressConfig {
    fn default() -> Self {
        EgressConfig { enabled: true, allow: Vec::new(), own_listeners: Vec::new() }
    }
}

impl EgressConfig {
    /// The policy on, with this machine's loopback range allowed: for an
    /// upstream that runs beside the engine (the built-in demo, tests).
    pub fn allowing_loopback() -> Self {
        EgressConfig { allow: vec!["127.0.0.0/8".into(), "::1/128".into()], ..EgressConfig::default() }
    }

    /// The policy this configuration describes, or `None` when it is off.
    pub fn policy(&self) -> Result<Option<EgressPolicy>> {
        if !self.enabled {
            return Ok(None);
        }
        let mut policy = EgressPolicy::new();
        for text in &self.allow {
            let cidr = Cidr::from_str(text).map_err(|e| Error::config("http.egress.allow").with(e))?;
            policy = policy.allow(cidr).map_err(|e| Error::config("http.egress.allow").with(e))?;
        }
        for own in &self.own_listeners {
            policy = policy.own_listener(*own);
        }
        Ok(Some(policy))
    }
}

impl Default for HttpConfig {
    fn default() -> Self {
        HttpConfig {
            connect_timeout_ms: DEFAULT_HTTP_CONNECT_TIMEOUT_MS,
            request_timeout_ms: DEFAULT_HTTP_REQUEST_TIMEOUT_MS,
            max_body_bytes: DEFAULT_HTTP_MAX_BODY_BYTES,
            read_buffer_bytes: DEFAULT_HTTP_READ_BUFFER_BYTES,
            max_in_flight_per_host: DEFAULT_HTTP_MAX_IN_FLIGHT_PER_HOST,
            pool_idle_timeout_ms: DEFAULT_HTTP_POOL_IDLE_TIMEOUT_MS,
            pool_max_idle_per_host: DEFAULT_HTTP_POOL_MAX_IDLE_PER_HOST,
            egress: EgressConfig::default(),
            hosts: Vec::new(),
            breaker: BreakerConfig::default(),
            adaptive: AdaptiveConfig::default(),
            max_retry_after_ms: DEFAULT_MAX_RETRY_AFTER_MS,
        }
    }
}

impl HttpConfig {
    /// Rejects a value that cannot work.
    pub fn validate(&self) -> Result<()> {
        if self.connect_timeout_ms == 0 {
            return Err(Error::config("http.connect_timeout_ms"));
        }
        if self.request_timeout_ms == 0 {
            return Err(Error::config("http.request_timeout_ms"));
        }
        if self.max_body_bytes == 0 {
            return Err(Error::config("http.max_body_bytes"));
        }
        if !(MIN_HTTP_READ_BUFFER_BYTES..=MAX_HTTP_READ_BUFFER_BYTES).contains(&self.read_buffer_bytes) {
            return Err(Error::config("http.read_buffer_bytes"));
        }
        if self.max_in_flight_per_host == 0 {
            return Err(Error::config("http.max_in_flight_per_host"));
        }
        if self.pool_idle_timeout_ms == 0 {
            return Err(Error::config("http.pool_idle_timeout_ms"));
        }
        self.egress.policy()?;
        if self.hosts.len() > MAX_CONFIGURED_HOSTS {
            return Err(Error::config("http.hosts"));
        }
        for host in &self.hosts {
            host.validate()?;
        }
        self.breaker.validate()?;
        self.adaptive.validate()?;
        if self.max_retry_after_ms == 0 || self.max_retry_after_ms > 86_400_000 {
            return Err(Error::config("http.max_retry_after_ms"));
        }
        Ok(())
    }
}

/// The MySQL pool.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MysqlConfig {
    /// `mysql://user:password@host:port/database`; the password is never logged.
    pub url: String,
    /// Most connections open at once.
    #[serde(default = "default_mysql_pool_max")]
    pub pool_max: usize,
    /// How long a caller waits for a connection before an overload error.
    #[serde(default = "default_mysql_acquire_timeout_ms")]
    pub acquire_timeout_ms: u64,
    /// Deadline of one scoped operation, from acquire to release.
    #[serde(default = "default_mysql_operation_timeout_ms")]
    pub operation_timeout_ms: u64,
    /// How long a returned connection may sit idle before the pool closes it.
    /// The pool checks every `min(idle_timeout_ms, 30 s)`, so a connection
    /// closes up to that much later. Until then it is reused: opening one
    /// costs a TCP and authentication handshake on both sides.
    #[serde(default = "default_mysql_idle_timeout_ms")]
    pub idle_timeout_ms: u64,
}

fn default_mysql_pool_max() -> usize {
    DEFAULT_MYSQL_POOL_MAX
}
fn default_mysql_acquire_timeout_ms() -> u64 {
    DEFAULT_MYSQL_ACQUIRE_TIMEOUT_MS
}
fn default_mysql_operation_timeout_ms() -> u64 {
    DEFAULT_MYSQL_OPERATION_TIMEOUT_MS
}
fn default_mysql_idle_timeout_ms() -> u64 {
    DEFAULT_MYSQL_IDLE_TIMEOUT_MS
}

impl MysqlConfig {
    /// A config for `url` with every other field at its default.
    pub fn new(url: impl Into<String>) -> Self {
        MysqlConfig {
            url: url.into(),
            pool_max: DEFAULT_MYSQL_POOL_MAX,
            acquire_timeout_ms: DEFAULT_MYSQL_ACQUIRE_TIMEOUT_MS,
            operation_timeout_ms: DEFAULT_MYSQL_OPERATION_TIMEOUT_MS,
            idle_timeout_ms: DEFAULT_MYSQL_IDLE_TIMEOUT_MS,
        }
    }

    /// Rejects a value that cannot work.
    pub fn validate(&self) -> Result<()> {
        if !(self.url.starts_with("mysql://") || self.url.starts_with("mariadb://")) {
            return Err(Error::config("mysql.url"));
        }
        if self.pool_max == 0 {
            return Err(Error::config("mysql.pool_max"));
        }
        if self.acquire_timeout_ms == 0 {
            return Err(Error::config("mysql.acquire_timeout_ms"));
        }
        if self.operation_timeout_ms == 0 {
            return Err(Error::config("mysql.operation_timeout_ms"));
        }
        // The driver checks for idle connections at most once a second (it
        // would silently take 30 s instead of anything shorter).
        if self.idle_timeout_ms < 1_000 {
            return Err(Error::config("mysql.idle_timeout_ms"));
        }
        Ok(())
    }
}

impl std::fmt::Debug for MysqlConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MysqlConfig")
            .field("url", &redact_url(&self.url))
            .field("pool_max", &self.pool_max)
            .field("acquire_timeout_ms", &self.acquire_timeout_ms)
            .field("operation_timeout_ms", &self.operation_timeout_ms)
            .field("idle_timeout_ms", &self.idle_timeout_ms)
            .finish()
    }
}

/// The Redis connection.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RedisConfig {
    /// `redis://[:password@]host:port[/db]`; the password is never logged.
    pub url: String,
    /// Deadline to (re)connect.
    #[serde(default = "default_redis_connect_timeout_ms")]
    pub connect_timeout_ms: u64,
    /// Deadline of one command's response; must exceed any `BLOCK` time used.
    #[serde(default = "default_redis_response_timeout_ms")]
    pub response_timeout_ms: u64,
}

fn default_redis_connect_timeout_ms() -> u64 {
    DEFAULT_REDIS_CONNECT_TIMEOUT_MS
}
fn default_redis_response_timeout_ms() -> u64 {
    DEFAULT_REDIS_RESPONSE_TIMEOUT_MS
}

impl RedisConfig {
    /// A config for `url` with every other field at its default.
    pub fn new(url: impl Into<String>) -> Self {
        RedisConfig {
            url: url.into(),
            connect_timeout_ms: DEFAULT_REDIS_CONNECT_TIMEOUT_MS,
            response_timeout_ms: DEFAULT_REDIS_RESPONSE_TIMEOUT_MS,
        }
    }

    /// Rejects a value that cannot work.
    pub fn validate(&self) -> Result<()> {
        if !(self.url.starts_with("redis://") || self.url.starts_with("rediss://")) {
            return Err(Error::config("redis.url"));
        }
        if self.connect_timeout_ms == 0 {
            return Err(Error::config("redis.connect_timeout_ms"));
        }
        if self.response_timeout_ms == 0 {
            return Err(Error::config("redis.response_timeout_ms"));
        }
        Ok(())
    }
}

impl std::fmt::Debug for RedisConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisConfig")
            .field("url", &redact_url(&self.url))
            .field("connect_timeout_ms", &self.connect_timeout_ms)
            .field("response_timeout_ms", &self.response_timeout_ms)
            .finish()
    }
}

/// The reactor stall watchdog.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct WatchdogConfig {
    /// Heartbeat period on the reactor.
    pub interval_ms: u64,
    /// Lag above which a heartbeat counts as a stall and is logged.
    pub stall_threshold_ms: u64,
}

impl Default for WatchdogConfig {
    fn default() -> Self {
        WatchdogConfig {
            interval_ms: DEFAULT_WATCHDOG_INTERVAL_MS,
            stall_threshold_ms: DEFAULT_WATCHDOG_STALL_THRESHOLD_MS,
        }
    }
}

impl WatchdogConfig {
    /// Rejects a value that cannot work.
    pub fn validate(&self) -> Result<()> {
        if self.interval_ms == 0 {
            return Err(Error::config("watchdog.interval_ms"));
        }
        if self.stall_threshold_ms == 0 {
            return Err(Error::config("watchdog.stall_threshold_ms"));
        }
        Ok(())
    }
}

/// What a redacted URL shows in place of a secret.
const REDACTED: &str = "***";
/// What a redacted URL shows for text the URL parser rejects: nothing of it,
/// since nothing tells where a secret in it starts or ends.
const UNPARSABLE: &str = "<unparsable url>";

/// `url` as logs, errors and `check-config` may show it, taken apart by the
/// URL parser (not by splitting text, which a password holding `/` defeats):
///
/// - a password becomes `***`, its username kept (an account name);
/// - a username without a password becomes `***`: alone it is usually the
///   token itself (`https://TOKEN@host`, `https://sk_live_...:@host`);
/// - every query value becomes `***`, its name kept (`?api_key=***&page=***`),
///   and a query part without `=` becomes `***`;
/// - a fragment becomes `***`;
/// - text the parser rejects (`https://user:pa/ss@host`, where `/` ends the
///   host before the `@`) becomes `<unparsable url>`;
/// - the scheme, host, port and path are shown: a secret belongs in the
///   userinfo, the query or an environment variable, not in the path.
///
/// The parser normalises what it shows (a default port is dropped, a
/// special scheme's empty path becomes `/`).
pub fn redact_url(url: &str) -> String {
    redact_url_keeping(url, |_| false)
}

/// [`redact_url`], except that a username, password, query value or
/// fragment for which `shown_as_written` answers true is kept: a caller's
/// placeholder that holds no secret (a `${VAR}` reference of a template).
pub fn redact_url_keeping(url: &str, shown_as_written: impl Fn(&str) -> bool) -> String {
    let Ok(mut parsed) = url::Url::parse(url) else {
        return UNPARSABLE.to_string();
    };
    if parsed.cannot_be_a_base() {
        // `scheme:anything` (`user:password@host` without `//` reads so):
        // no structure tells a secret from the rest.
        return format!("{}:{REDACTED}", parsed.scheme());
    }
    let credentials = match parsed.password() {
        Some(password) if !shown_as_written(password) => parsed.set_password(Some(REDACTED)),
        Some(_) => Ok(()),
        None if !parsed.username().is_empty() && !shown_as_written(parsed.username()) => {
            parsed.set_username(REDACTED)
        }
        None => Ok(()),
    };
    if credentials.is_err() {
        // Only a URL that cannot have credentials refuses them, and such a
        // URL has none to hide; refusing to show it is the safe answer.
        return UNPARSABLE.to_string();
    }
    if let Some(query) = parsed.query() {
        let shown: Vec<String> = query
            .split('&')
            .map(|part| match part.split_once('=') {
                Some((_, value)) if value.is_empty() || shown_as_written(value) => part.to_string(),
                Some((name, _)) => format!("{name}={REDACTED}"),
                None if part.is_empty() || shown_as_written(part) => part.to_string(),
                None => REDACTED.to_string(),
            })
            .collect();
        parsed.set_query(Some(&shown.join("&")));
    }
    if parsed.fragment().is_some_and(|f| !f.is_empty() && !shown_as_written(f)) {
        parsed.set_fragment(Some(REDACTED));
    }
    parsed.into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redacts_passwords_keeping_the_username() {
        assert_eq!(redact_url("mysql://root:hunter2@db:3306/test"), "mysql://root:***@db:3306/test");
        assert_eq!(redact_url("mysql://root:pa%2Fss@db:3306/test"), "mysql://root:***@db:3306/test");
        assert_eq!(redact_url("redis://:pw@127.0.0.1:6379"), "redis://:***@127.0.0.1:6379");
        assert_eq!(redact_url("redis://127.0.0.1:6379/0"), "redis://127.0.0.1:6379/0");
        assert_eq!(redact_url("https://user:s3cret@api.example.com/x"), "https://user:***@api.example.com/x");
        assert!(!format!("{:?}", MysqlConfig::new("mysql://u:secret@h/d")).contains("secret"));
        assert!(!format!("{:?}", RedisConfig::new("redis://:secret@h:6379")).contains("secret"));
    }

    #[test]
    fn a_password_holding_a_slash_is_never_shown() {
        // Written unencoded, `/` ends the host before the `@`: the parser
        // rejects the URL (as the drivers do), and nothing of it is shown.
        for url in [
            "mysql://root:pa/ss@db:3306/test",
            "redis://:p/w@127.0.0.1:6379/0",
            "https://user:CANARY/pw@127.0.0.1:9/hook",
        ] {
            let shown = redact_url(url);
            assert_eq!(shown, "<unparsable url>", "{url}");
        }
        let shown = format!("{:?}", MysqlConfig::new("mysql://root:pa/ss@db:3306/test"));
        assert!(!shown.contains("pa/ss") && !shown.contains("ss@db"), "{shown}");
        let shown = format!("{:?}", RedisConfig::new("redis://:p/w@127.0.0.1:6379/0"));
        assert!(!shown.contains("p/w"), "{shown}");
    }

    #[test]
    fn a_lone_username_is_taken_for_a_token() {
        assert_eq!(redact_url("https://ghp_TOKEN@github.com/o/r"), "https://***@github.com/o/r");
        // Stripe's form: the key as username, an empty password.
        assert_eq!(redact_url("https://sk_live_123:@api.stripe.com/v1"), "https://***@api.stripe.com/v1");
    }

    #[test]
    fn query_values_and_fragments_are_redacted_names_kept() {
        assert_eq!(
            redact_url("https://api.example.com/x?api_key=sk_live_123&page=2"),
            "https://api.example.com/x?api_key=***&page=***"
        );
        assert_eq!(redact_url("https://h/x?sk_live_123&empty=&&a=b"), "https://h/x?***&empty=&&a=***");
        assert_eq!(redact_url("https://h/x?token=a%2Fb%26c=d#access_token=xyz"), "https://h/x?token=***#***");
        assert_eq!(redact_url("https://h/x#"), "https://h/x#");
    }

    #[test]
    fn what_the_parser_rejects_is_not_echoed() {
        for url in ["not a url sk_live_123", "", "https://[sk_live_123/x", "http://h:sk_live_123/"] {
            assert_eq!(redact_url(url), "<unparsable url>", "{url}");
        }
        // Without `//`, `user:password@host` reads as `scheme:opaque`.
        assert_eq!(redact_url("user:sk_live_123@host"), "user:***");
    }

    #[test]
    fn placeholders_the_caller_vouches_for_are_kept() {
        let placeholder = |part: &str| part == "zvarz";
        assert_eq!(
            redact_url_keeping("https://zvarz:zvarz@h/p?k=zvarz&l=lit#zvarz", placeholder),
            "https://zvarz:zvarz@h/p?k=zvarz&l=***#zvarz"
        );
        assert_eq!(redact_url_keeping("https://u:lit@h/?zvarz", placeholder), "https://u:***@h/?zvarz");
    }

    #[test]
    fn an_egress_refusal_of_a_bad_url_does_not_echo_it() {
        let policy = crate::egress::EgressPolicy::new();
        for url in ["https://user:CANARY/pw@127.0.0.1:9/hook", "http://[CANARY", "CANARY"] {
            let err = policy.check_url(url).unwrap_err();
            assert!(!err.to_string().contains("CANARY") && !format!("{err:?}").contains("CANARY"), "{err:?}");
        }
    }

    #[test]
    fn rejects_bad_values_naming_the_field() {
        let err = ReactorConfig { threads: 0 }.validate().unwrap_err();
        assert_eq!(err.config_field(), Some("reactor.threads"));
        let err = MysqlConfig::new("postgres://x").validate().unwrap_err();
        assert_eq!(err.config_field(), Some("mysql.url"));
        let err =
            MysqlConfig { idle_timeout_ms: 999, ..MysqlConfig::new("mysql://h/d") }.validate().unwrap_err();
        assert_eq!(err.config_field(), Some("mysql.idle_timeout_ms"));
        let err = HttpConfig { max_body_bytes: 0, ..HttpConfig::default() }.validate().unwrap_err();
        assert_eq!(err.config_field(), Some("http.max_body_bytes"));
    }

    #[test]
    fn unknown_keys_are_rejected() {
        let err = serde_json::from_str::<HttpConfig>(r#"{"connect_timeout":5}"#).unwrap_err();
        assert!(err.to_string().contains("unknown field"), "{err}");
    }
}
