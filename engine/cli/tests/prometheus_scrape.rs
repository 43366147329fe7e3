//! A real Prometheus server (Debian's `prometheus` package, started here on
//! loopback) scrapes a running `switchyard run` with durable pipelines on
//! real Redis (run records in MySQL), polling and delivering against a
//! `switchyard upstream`, and every query of the Grafana dashboard
//! (`dashboards/switchyard.json`) returns data: every panel target, and the
//! `job`/`instance` variables. `promtool check metrics` accepts a live scrape
//! of the same process.
//!
//! Prometheus scrapes every second; the dashboard's `$__rate_interval` and
//! `$__range` become short windows so the test needs ~15 s of samples, not
//! the minutes a 15 s scrape interval would. Failures are collected and
//! reported together: panel title, the query as sent, and the response.

use std::collections::VecDeque;
use std::fmt::Write as _;
use std::io::{BufRead, BufReader, Write as _};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;
use switchyard::io_reactor::{EgressConfig, HttpClient, HttpConfig};
use switchyard_tests::{mysql_url, redis_url, services_required, unique};

const PROMETHEUS: &str = "/usr/bin/prometheus";
const PROMTOOL: &str = "/usr/bin/promtool";
/// The whole test, start to cleanup, stays under this.
const BUDGET: Duration = Duration::from_secs(120);
/// Job name of the scrape config (the one `dashboards/prometheus.yml` uses).
const JOB: &str = "switchyard";
/// What `$__rate_interval` and `$__interval` become: 15 one-second scrapes.
const RATE_WINDOW: &str = "15s";
/// What `$__range` becomes.
const RANGE_WINDOW: &str = "1m";
/// Scrapes to wait for before querying, so every rate window holds samples.
const MIN_SAMPLES: f64 = 12.0;

#[test]
fn prometheus_scraping_a_running_binary_has_data_for_every_dashboard_panel() {
    let (Some(mysql), Some(redis)) = (mysql_url(), redis_url()) else { return };
    if !Path::new(PROMETHEUS).exists() {
        assert!(
            !services_required(),
            "{PROMETHEUS} is required (SWITCHYARD_REQUIRE_SERVICES=1): install Debian's prometheus package"
        );
        eprintln!("skipping: {PROMETHEUS} not found; install Debian's prometheus package");
        return;
    }
    let deadline = Instant::now() + BUDGET;
    // Declared before the children: dropped after they are stopped.
    let dir = TempDir::new();
    let mut children = Children::default();
    let http = Http::new();

    let (upstream, upstream_address, _) = start_logging(upstream_command(), deadline);
    children.0.push(("upstream", upstream));
    let prefix = unique("sy-scrape");
    let config = write_config(&dir.0, &prefix, &upstream_address, &mysql, &redis);
    let _cleanup = RedisKeys { url: redis.clone(), prefix };
    let (switchyard, address, log) = start_logging(run_command(&config), deadline);
    children.0.push(("switchyard", switchyard));
    let (prometheus, api) = start_prometheus(&dir.0, &address, &http, deadline);
    children.0.push(("prometheus", prometheus));

    let context = || {
        let lines: Vec<String> = log.lock().unwrap().iter().cloned().collect();
        format!("switchyard stderr (last lines):\n{}", lines.concat())
    };
    if let Err(e) = wait_for_samples(&http, &api, deadline) {
        panic!("{e}\nprometheus log:\n{}\n{}", tail(&dir.0.join("prometheus.log")), context());
    }

    let queries = dashboard_queries();
    assert!(queries.len() > 40, "only {} dashboard queries found", queries.len());
    let variables = variable_queries();
    assert!(variables.len() >= 2, "the job and instance variables must be label_values queries");
    // Retry the whole set briefly: a failing panel must fail persistently.
    let panel_deadline = (Instant::now() + Duration::from_secs(30)).min(deadline);
    let mut failures = loop {
        let mut failures: Vec<String> = queries
            .iter()
            .filter_map(|(title, expr)| check_query(&http, &api, expr).err().map(|e| (title, expr, e)))
            .map(|(title, expr, e)| format!("panel {title:?}\n  query: {expr}\n  {e}"))
            .collect();
        failures.extend(variables.iter().filter_map(|(name, label, selector)| {
            check_label_values(&http, &api, label, selector)
                .err()
                .map(|e| format!("variable {name:?}\n  label_values({selector}, {label})\n  {e}"))
        }));
        if failures.is_empty() || Instant::now() >= panel_deadline {
            break failures;
        }
        std::thread::sleep(Duration::from_secs(2));
    };

    if let Err(e) = promtool_check_metrics(&http, &address) {
        failures.push(e);
    }
    assert!(
        failures.is_empty(),
        "{} of {} dashboard queries (and checks) failed:\n\n{}\n\n{}",
        failures.len(),
        queries.len() + variables.len(),
        failures.join("\n\n"),
        context()
    );
}

/// Two durable pipelines (PZ-1's steps, two zaps) against the upstream at
/// `upstream`, on Redis under a key prefix of their own, run records in MySQL.
fn write_config(dir: &Path, prefix: &str, upstream: &str, mysql: &str, redis: &str) -> PathBuf {
    let steps = r#"
[[pipelines.steps]]
step = "trim"
field = "email"
[[pipelines.steps]]
step = "lower_case"
field = "email"
[[pipelines.steps]]
step = "fingerprint"
rounds = 50
"#;
    let mut text = format!(
        "# The upstream runs on this machine.\n[engine.http.egress]\nallow = [\"127.0.0.1/32\"]\n[engine.redis]\nurl = \"{redis}\"\n[engine.mysql]\nurl = \"{mysql}\"\n[durable]\nkey_prefix = \"{prefix}\"\n"
    );
    for zap in ["z0", "z1"] {
        text.push_str(&format!(
            r#"
[[pipelines]]
name = "scrape-{zap}"
[pipelines.source]
url = "http://{upstream}/poll/{zap}?seq={{seq}}&n=50&fresh=2&delay_ms=20"
poll_interval_ms = 200
items_pointer = "/items"
{steps}
[pipelines.action]
url = "http://{upstream}/action/{zap}?delay_ms=10"
"#
        ));
    }
    let path = dir.join("switchyard.toml");
    std::fs::write(&path, text).unwrap();
    path
}

fn upstream_command() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_switchyard"));
    cmd.args(["upstream", "--listen", "127.0.0.1:0"]);
    cmd
}

fn run_command(config: &Path) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_switchyard"));
    cmd.env_remove("SWITCHYARD_LISTEN").env_remove("SWITCHYARD_REDIS_URL").env_remove("SWITCHYARD_MYSQL_URL");
    cmd.args(["run", "--listen", "127.0.0.1:0", "--config"]).arg(config);
    cmd
}

/// Starts `cmd` (a `switchyard` that logs the address it serves on);
/// returns it, that address, and the last lines of its stderr (drained by a
/// thread, so the pipe never fills).
fn start_logging(mut cmd: Command, deadline: Instant) -> (Child, String, Arc<Mutex<VecDeque<String>>>) {
    let mut child = cmd
        .env("SWITCHYARD_LOG", "info")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn switchyard");
    let stderr = child.stderr.take().unwrap();
    let lines = Arc::new(Mutex::new(VecDeque::new()));
    let (tx, rx) = mpsc::channel();
    let kept = lines.clone();
    std::thread::spawn(move || {
        let mut reader = BufReader::new(stderr);
        let mut line = String::new();
        while reader.read_line(&mut line).is_ok_and(|n| n > 0) {
            if let Some(rest) = line.split(r#""address":""#).nth(1) {
                let _ = tx.send(rest.split('"').next().unwrap_or_default().to_string());
            }
            let mut kept = kept.lock().unwrap();
            if kept.len() == 40 {
                kept.pop_front();
            }
            kept.push_back(std::mem::take(&mut line));
        }
    });
    let wait = Duration::from_secs(30).min(deadline.saturating_duration_since(Instant::now()));
    match rx.recv_timeout(wait) {
        Ok(address) => (child, address, lines),
        Err(_) => {
            let _ = child.kill();
            let _ = child.wait();
            let log: Vec<String> = lines.lock().unwrap().iter().cloned().collect();
            panic!("switchyard never logged the address it serves on:\n{}", log.concat());
        }
    }
}

/// Writes the scrape config and starts Prometheus on a free loopback port
/// (another one when the port was taken meanwhile); returns it once
/// `/-/ready` answers, with its base URL.
fn start_prometheus(dir: &Path, target: &str, http: &Http, deadline: Instant) -> (Child, String) {
    let config = dir.join("prometheus.yml");
    let yaml = format!(
        "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n  evaluation_interval: 1s\n\
         scrape_configs:\n  - job_name: {JOB}\n    static_configs:\n      - targets: ['{target}']\n"
    );
    std::fs::write(&config, yaml).unwrap();
    let log_path = dir.join("prometheus.log");
    for attempt in 0..5 {
        let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let log = std::fs::File::create(&log_path).unwrap();
        let mut child = Command::new(PROMETHEUS)
            .arg(format!("--config.file={}", config.display()))
            .arg(format!("--storage.tsdb.path={}", dir.join(format!("data-{attempt}")).display()))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("spawn prometheus");
        let api = format!("http://127.0.0.1:{port}");
        let ready_by = (Instant::now() + Duration::from_secs(30)).min(deadline);
        loop {
            if let Ok(Some(status)) = child.try_wait() {
                let log = tail(&log_path);
                if log.contains("address already in use") {
                    break; // taken between probing and binding: another port
                }
                panic!("prometheus exited ({status}) before it was ready:\n{log}");
            }
            if http.get(&format!("{api}/-/ready")).is_ok_and(|(status, _)| status == 200) {
                return (child, api);
            }
            if Instant::now() >= ready_by {
                let _ = child.kill();
                let _ = child.wait();
                panic!("prometheus was not ready within 30 s:\n{}", tail(&log_path));
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }
    panic!("prometheus found no free port in 5 attempts:\n{}", tail(&log_path));
}

/// Waits until the target is up and Prometheus holds enough samples for the
/// rate windows.
fn wait_for_samples(http: &Http, api: &str, deadline: Instant) -> Result<(), String> {
    let by = (Instant::now() + Duration::from_secs(45)).min(deadline);
    let up = format!(r#"up{{job="{JOB}"}}"#);
    let samples = format!(r#"count_over_time(up{{job="{JOB}"}}[1m])"#);
    loop {
        let is_up = query(http, api, &up).ok().and_then(|r| first_value(&r)) == Some(1.0);
        let count = query(http, api, &samples).ok().and_then(|r| first_value(&r)).unwrap_or(0.0);
        if is_up && count >= MIN_SAMPLES {
            return Ok(());
        }
        if Instant::now() >= by {
            let targets = http.get(&format!("{api}/api/v1/targets")).map(|(_, body)| body);
            return Err(format!(
                "the target was not up with {MIN_SAMPLES} samples in time (up: {is_up}, samples: {count}); \
                 targets: {targets:?}"
            ));
        }
        std::thread::sleep(Duration::from_millis(500));
    }
}

/// Every panel target's expression (with its panel title), rows included.
fn dashboard_queries() -> Vec<(String, String)> {
    fn walk(panels: &[Value], out: &mut Vec<(String, String)>) {
        for panel in panels {
            let title = panel["title"].as_str().unwrap_or("(untitled)");
            for target in panel["targets"].as_array().into_iter().flatten() {
                if let Some(expr) = target["expr"].as_str() {
                    out.push((title.to_string(), expr.to_string()));
                }
            }
            walk(panel["panels"].as_array().map_or(&[], |p| p.as_slice()), out);
        }
    }
    let mut out = Vec::new();
    walk(dashboard()["panels"].as_array().expect("panels"), &mut out);
    out
}

/// The `label_values(selector, label)` template variables: (name, label, selector).
fn variable_queries() -> Vec<(String, String, String)> {
    let dashboard = dashboard();
    let list = dashboard["templating"]["list"].as_array().expect("templating.list");
    list.iter()
        .filter_map(|var| {
            let definition = var["definition"].as_str()?;
            let inner = definition.strip_prefix("label_values(")?.strip_suffix(')')?;
            let (selector, label) = inner.rsplit_once(',')?;
            let name = var["name"].as_str().unwrap_or_default().to_string();
            Some((name, label.trim().to_string(), selector.trim().to_string()))
        })
        .collect()
}

fn dashboard() -> Value {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../dashboards/switchyard.json");
    serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap()
}

/// The dashboard's variables as Grafana would fill them for this one target.
fn substitute(expr: &str) -> String {
    [
        ("${job}", JOB),
        ("$job", JOB),
        ("${instance}", ".+"),
        ("$instance", ".+"),
        ("${__rate_interval}", RATE_WINDOW),
        ("$__rate_interval", RATE_WINDOW),
        ("${__interval}", RATE_WINDOW),
        ("$__interval", RATE_WINDOW),
        ("${__range}", RANGE_WINDOW),
        ("$__range", RANGE_WINDOW),
    ]
    .iter()
    .fold(expr.to_string(), |e, (var, value)| e.replace(var, value))
}

/// The expression returns at least one sample that is a number (a NaN
/// quantile draws nothing either).
fn check_query(http: &Http, api: &str, expr: &str) -> Result<(), String> {
    let sent = substitute(expr);
    if sent.contains('$') {
        return Err(format!("a variable is left after substitution: {sent}"));
    }
    let result = query(http, api, &sent)?;
    let has_number = result.iter().any(|s| s["value"][1].as_str().is_some_and(|v| v != "NaN"));
    match has_number {
        true => Ok(()),
        false if result.is_empty() => Err(format!("sent: {sent}\n  empty result")),
        false => Err(format!("sent: {sent}\n  only NaN: {}", Value::from(result))),
    }
}

/// The variable's label has at least one value, and `job` includes ours.
fn check_label_values(http: &Http, api: &str, label: &str, selector: &str) -> Result<(), String> {
    let selector = substitute(selector);
    let url = format!("{api}/api/v1/label/{}/values?match%5B%5D={}", encode(label), encode(&selector));
    let body = api_get(http, &url)?;
    let values: Vec<&str> = body["data"].as_array().into_iter().flatten().filter_map(Value::as_str).collect();
    if values.is_empty() || (label == "job" && !values.contains(&JOB)) {
        return Err(format!("values: {values:?}"));
    }
    Ok(())
}

/// An instant query's `data.result`.
fn query(http: &Http, api: &str, expr: &str) -> Result<Vec<Value>, String> {
    let body = api_get(http, &format!("{api}/api/v1/query?query={}", encode(expr)))?;
    match body["data"]["result"].as_array() {
        Some(result) => Ok(result.clone()),
        None => Err(format!("no data.result: {body}")),
    }
}

fn api_get(http: &Http, url: &str) -> Result<Value, String> {
    let (status, body) = http.get(url)?;
    let json: Value =
        serde_json::from_str(&body).map_err(|e| format!("HTTP {status}, not JSON ({e}): {body}"))?;
    if status != 200 || json["status"] != "success" {
        return Err(format!("HTTP {status}: {body}"));
    }
    Ok(json)
}

fn first_value(result: &[Value]) -> Option<f64> {
    result.first()?["value"][1].as_str()?.parse().ok()
}

/// Percent-encodes everything but RFC 3986's unreserved characters.
fn encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len() * 3);
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
            out.push(char::from(b));
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
    out
}

/// `promtool check metrics` on one live scrape of the binary's `/metrics`.
fn promtool_check_metrics(http: &Http, address: &str) -> Result<(), String> {
    if !Path::new(PROMTOOL).exists() {
        if services_required() {
            return Err(format!("{PROMTOOL} is required (SWITCHYARD_REQUIRE_SERVICES=1)"));
        }
        eprintln!("skipping promtool check: {PROMTOOL} not found");
        return Ok(());
    }
    let (status, text) = http.get(&format!("http://{address}/metrics"))?;
    if status != 200 {
        return Err(format!("GET /metrics: HTTP {status}: {text}"));
    }
    let mut child = Command::new(PROMTOOL)
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("spawn promtool: {e}"))?;
    child.stdin.take().unwrap().write_all(text.as_bytes()).map_err(|e| format!("promtool stdin: {e}"))?;
    let out = child.wait_with_output().map_err(|e| format!("promtool: {e}"))?;
    match out.status.success() {
        true => Ok(()),
        false => Err(format!(
            "promtool check metrics rejected the live scrape ({}):\n{}{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )),
    }
}

/// A blocking front to the engine's HTTP client.
struct Http {
    runtime: tokio::runtime::Runtime,
    client: HttpClient,
}

impl Http {
    fn new() -> Http {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        let config = HttpConfig {
            request_timeout_ms: 10_000,
            egress: EgressConfig::allowing_loopback(),
            ..HttpConfig::default()
        };
        Http { runtime, client: HttpClient::new(&config).unwrap() }
    }

    /// Status and body of a GET.
    fn get(&self, url: &str) -> Result<(u16, String), String> {
        let response = self.runtime.block_on(self.client.get(url)).map_err(|e| format!("GET {url}: {e}"))?;
        Ok((response.status.as_u16(), String::from_utf8_lossy(&response.body).into_owned()))
    }
}

/// The last lines of a log file.
fn tail(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(30)..].join("\n")
}

/// Child processes stopped on drop, last started first: SIGTERM, then
/// SIGKILL when one has not exited within 10 s.
#[derive(Default)]
struct Children(Vec<(&'static str, Child)>);

impl Drop for Children {
    fn drop(&mut self) {
        for (name, child) in self.0.iter_mut().rev() {
            if matches!(child.try_wait(), Ok(Some(_))) {
                continue;
            }
            let _ = Command::new("kill").args(["-TERM", &child.id().to_string()]).status();
            let by = Instant::now() + Duration::from_secs(10);
            while Instant::now() < by && matches!(child.try_wait(), Ok(None)) {
                std::thread::sleep(Duration::from_millis(50));
            }
            if matches!(child.try_wait(), Ok(None)) {
                eprintln!("{name} ignored SIGTERM for 10 s: killing it");
                let _ = child.kill();
                let _ = child.wait();
            }
        }
    }
}

/// A directory removed on drop.
/// Deletes the test's Redis keys when dropped.
struct RedisKeys {
    url: String,
    prefix: String,
}

impl Drop for RedisKeys {
    fn drop(&mut self) {
        let _ = Command::new("sh")
            .arg("-c")
            .arg(format!(
                "redis-cli -u '{}' --scan --pattern '{}*' | xargs -r redis-cli -u '{}' del > /dev/null",
                self.url, self.prefix, self.url
            ))
            .status();
    }
}

struct TempDir(PathBuf);

impl TempDir {
    fn new() -> TempDir {
        let path = std::env::temp_dir().join(unique("switchyard-prometheus"));
        std::fs::create_dir_all(&path).unwrap();
        TempDir(path)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
