//! The `switchyard` binary as an operator meets it: the default run, exit
//! codes, the scrape endpoint and signal handling.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

fn switchyard() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_switchyard"));
    cmd.env_remove("SWITCHYARD_LISTEN").env("SWITCHYARD_LOG", "info");
    cmd
}

/// The `ok` count of the final "stopped" log line.
fn stopped_ok(stderr: &str) -> u64 {
    let line =
        stderr.lines().find(|l| l.contains(r#""message":"stopped""#)).unwrap_or_else(|| panic!("{stderr}"));
    let v: serde_json::Value = serde_json::from_str(line).unwrap();
    v["fields"]["ok"].as_u64().unwrap()
}

#[test]
fn the_default_run_polls_the_built_in_zaps_and_exits_zero() {
    let out = switchyard().args(["run", "--tasks", "40", "--listen", "127.0.0.1:0"]).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "exit {:?}: {stderr}", out.status);
    assert!(stderr.contains("running the built-in PZ-1 zaps"), "{stderr}");
    assert!(stopped_ok(&stderr) >= 40, "at least 40 tasks must complete: {stderr}");
}

fn write_config(name: &str, text: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("switchyard-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path
}

const PIPELINE: &str = r#"
state = "ephemeral"
[[pipelines]]
name = "orders"
[pipelines.source]
url = "http://127.0.0.1:9/orders"
headers = { Authorization = "Bearer ${SY_CLI_TOKEN}", X-Api-Key = "literal-secret" }
poll_interval_ms = 1000
[pipelines.action]
url = "http://127.0.0.1:9/hook"
"#;

#[test]
fn bad_configuration_exits_78_naming_the_key() {
    let cases = [
        ("unknown.toml", "[engine]\nmax_inflight = 4\n".to_string(), "max_inflight"),
        ("zero.toml", "[engine]\nreactor_threads = 0\n".to_string(), "engine.reactor_threads"),
        ("url.toml", PIPELINE.replace("http://127.0.0.1:9/hook", "not a url"), "pipelines[0].action.url"),
        ("secret.toml", PIPELINE.to_string(), "SY_CLI_TOKEN is not set"),
    ];
    for (name, text, expected) in cases {
        let path = write_config(name, &text);
        let out =
            switchyard().arg("run").arg("--config").arg(&path).env_remove("SY_CLI_TOKEN").output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(78), "{name}: {stderr}");
        assert!(stderr.contains(expected), "{name}: the message must name {expected}: {stderr}");
    }
    let out = switchyard().args(["run", "--config", "/nonexistent/switchyard.toml"]).output().unwrap();
    assert_eq!(out.status.code(), Some(78), "a missing file is a configuration error");
    assert!(String::from_utf8_lossy(&out.stderr).contains("/nonexistent/switchyard.toml"));
}

#[test]
fn configured_pipelines_without_redis_refuse_to_start_unless_state_is_ephemeral() {
    let path = write_config("no-redis.toml", &PIPELINE.replace("state = \"ephemeral\"\n", ""));
    let out = switchyard().args(["run", "--config"]).arg(&path).env("SY_CLI_TOKEN", "t").output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(78), "{stderr}");
    assert!(
        stderr.contains("engine.redis") && stderr.contains("ephemeral"),
        "says why and what to do: {stderr}"
    );
}

#[test]
fn check_config_prints_the_effective_configuration_without_secrets() {
    let path = write_config("check.toml", PIPELINE);
    let out = switchyard()
        .arg("check-config")
        .arg("--config")
        .arg(&path)
        .args(["--max-in-flight", "77"])
        .env("SY_CLI_TOKEN", "very-secret-token")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(stdout.contains("max_in_flight = 77"), "flags override the file: {stdout}");
    assert!(stdout.contains("${SY_CLI_TOKEN}"), "{stdout}");
    assert!(!stdout.contains("very-secret-token") && !stdout.contains("literal-secret"), "{stdout}");
}

#[test]
fn a_bad_setting_exits_78_naming_the_key() {
    let out = switchyard().args(["run", "--max-in-flight", "0", "--listen", "127.0.0.1:0"]).output().unwrap();
    assert_eq!(out.status.code(), Some(78));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("max_in_flight"), "{stderr}");
    let out = switchyard().args(["run", "--model", "gevent"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2), "an unknown flag value is a usage error");
}

#[test]
fn an_environment_twin_overrides_the_file_and_the_flag_wins() {
    let out = switchyard()
        .env("SWITCHYARD_MAX_IN_FLIGHT", "0")
        .args(["run", "--listen", "127.0.0.1:0", "--tasks", "1"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(78), "SWITCHYARD_MAX_IN_FLIGHT=0 must be read");
    let out = switchyard()
        .env("SWITCHYARD_MAX_IN_FLIGHT", "0")
        .args(["run", "--listen", "127.0.0.1:0", "--tasks", "1", "--max-in-flight", "8"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    // The file says 0 (invalid); the environment twin overrides it.
    let path = write_config("env-over-file.toml", "[engine]\nmax_in_flight = 0\n");
    let out = switchyard()
        .env("SWITCHYARD_MAX_IN_FLIGHT", "8")
        .arg("run")
        .arg("--config")
        .arg(&path)
        .args(["--listen", "127.0.0.1:0", "--tasks", "1"])
        .output()
        .unwrap();
    assert!(out.status.success(), "the environment beats the file: {}", String::from_utf8_lossy(&out.stderr));
}

/// Starts a long run and returns it with the address it logged.
fn start_long_run() -> (Child, String, BufReader<std::process::ChildStderr>) {
    let mut child =
        switchyard().args(["run", "--listen", "127.0.0.1:0"]).stderr(Stdio::piped()).spawn().unwrap();
    let mut stderr = BufReader::new(child.stderr.take().unwrap());
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut line = String::new();
    while Instant::now() < deadline {
        line.clear();
        if stderr.read_line(&mut line).unwrap() == 0 {
            break;
        }
        if let Some(rest) = line.split(r#""address":""#).nth(1) {
            let addr = rest.split('"').next().unwrap().to_string();
            return (child, addr, stderr);
        }
    }
    child.kill().ok();
    child.wait().ok();
    panic!("the binary never logged its listen address");
}

fn http_get(addr: &str, path: &str) -> String {
    let mut stream = TcpStream::connect(addr).unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(stream, "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n").unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    response
}

#[test]
fn sigterm_drains_in_flight_tasks_and_exits_zero() {
    let (mut child, addr, mut stderr) = start_long_run();
    assert!(http_get(&addr, "/healthz").starts_with("HTTP/1.1 200"));
    std::thread::sleep(Duration::from_millis(800));
    let metrics = http_get(&addr, "/metrics");
    let in_flight = switchyard::protocol::catalogue::TASKS_IN_FLIGHT.name;
    assert!(metrics.contains(in_flight), "{metrics}");
    let status = http_get(&addr, "/status");
    let body = status.split("\r\n\r\n").nth(1).unwrap();
    let status: serde_json::Value = serde_json::from_str(body).unwrap();
    assert_eq!(status["model"], "hybrid");
    assert!(status["tasks"]["admitted"].as_u64().unwrap() > 0, "{status}");
    assert_eq!(status["pipelines"][0]["name"], "pz1");
    assert!(status["cpu"]["threads"].as_u64().unwrap() >= 1);
    let status = Command::new("kill").args(["-TERM", &child.id().to_string()]).status().unwrap();
    assert!(status.success());
    let mut rest = String::new();
    stderr.read_to_string(&mut rest).unwrap();
    let exit = child.wait().unwrap();
    assert!(exit.success(), "exit {exit:?}: {rest}");
    assert!(rest.contains(r#""message":"stopped""#), "{rest}");
    assert!(rest.contains(r#""abandoned":0"#), "in-flight tasks must drain, not be abandoned: {rest}");
}

/// A marker no output may contain: planted as every kind of secret a
/// configuration holds.
const CANARY: &str = "CANARY-3f9c1e7a";

/// A pipeline whose every secret carries [`CANARY`]: a source query value,
/// source and action header values, and the action URL's password
/// (`action_password`, written into the URL as given).
fn canary_config(upstream: &str, action_password: &str) -> String {
    format!(
        r#"
state = "ephemeral"
# The upstream runs on this machine: the requests must reach it, so the
# debug-level client logs that once leaked userinfo are exercised.
[engine.http.egress]
allow = ["127.0.0.1/32"]
[[pipelines]]
name = "canary"
[pipelines.source]
url = "http://{upstream}/poll/z0?seq={{seq}}&n=5&fresh=2&api_key={CANARY}-query"
headers = {{ Authorization = "Bearer {CANARY}-bearer", X-Api-Key = "{CANARY}-header" }}
poll_interval_ms = 100
items_pointer = "/items"
[pipelines.action]
url = "http://user:{action_password}@{upstream}/action/z0?token={CANARY}-action-query"
headers = {{ X-Hook-Secret = "{CANARY}-action-header" }}
max_attempts = 2
initial_backoff_ms = 10
max_backoff_ms = 50
"#
    )
}

fn assert_no_canary(what: &str, text: &str) {
    assert!(!text.contains(CANARY), "{what} shows the secret:\n{text}");
}

/// Issue 11, point 4: a canary placed in a header, URL userinfo holding
/// `/`, a query string and a mistyped TOML line appears in no output of
/// `check-config`, no error, no log line, no metric and not in `/status`.
#[test]
fn a_canary_secret_appears_in_no_output() {
    // clap's help shows the environment twins' values unless told not to.
    for command in [&["run", "--help"][..], &["dead", "list", "--help"], &["bench", "--help"]] {
        let out = switchyard()
            .args(command)
            .env("SWITCHYARD_REDIS_URL", format!("redis://:{CANARY}@127.0.0.1:6379/0"))
            .env("SWITCHYARD_MYSQL_URL", format!("mysql://root:{CANARY}@127.0.0.1:3306/test"))
            .env("SWITCHYARD_BENCH_STREAM_REDIS_URL", format!("redis://:{CANARY}@127.0.0.1:6379/0"))
            .output()
            .unwrap();
        let help = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success() && help.contains("SWITCHYARD_REDIS_URL"), "{command:?}: {help}");
        assert_no_canary(&format!("{command:?}"), &help);
    }

    // check-config of a valid file: printed, every secret redacted.
    let password = format!("{CANARY}%2Fpw");
    let path = write_config("canary.toml", &canary_config("127.0.0.1:9", &password));
    let out = switchyard().arg("check-config").arg("--config").arg(&path).output().unwrap();
    let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "{stderr}");
    assert!(stdout.contains("api_key=***") && stdout.contains("user:***@127.0.0.1:9"), "{stdout}");
    assert_no_canary("check-config", &format!("{stdout}{stderr}"));

    // A password holding a bare `/`, a mistyped line and a value of the
    // wrong type: refused, naming the key or the line, showing no secret.
    let slash = canary_config("127.0.0.1:9", &format!("{CANARY}/pw"));
    let valid = canary_config("127.0.0.1:9", &password);
    let mistyped = format!("{valid}token = \"{CANARY}\n");
    let mistyped_at = format!("line {}, column ", valid.lines().count() + 1);
    let wrong_type = canary_config("127.0.0.1:9", &password)
        .replace("poll_interval_ms = 100", &format!("poll_interval_ms = \"{CANARY}\""));
    let cases = [
        ("canary-slash.toml", slash, "pipelines[0].action.url"),
        ("canary-mistyped.toml", mistyped, mistyped_at.as_str()),
        ("canary-type.toml", wrong_type, "pipelines[0].source.poll_interval_ms"),
    ];
    for (name, text, expected) in cases {
        assert!(text.contains(CANARY), "{name}: the test must plant the canary");
        let path = write_config(name, &text);
        for command in ["check-config", "run"] {
            let out = switchyard().arg(command).arg("--config").arg(&path).output().unwrap();
            let (stdout, stderr) =
                (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
            assert_eq!(out.status.code(), Some(78), "{name} {command}: {stderr}");
            assert!(stderr.contains(expected), "{name} {command}: the error must name {expected}: {stderr}");
            assert_no_canary(&format!("{name} {command}"), &format!("{stdout}{stderr}"));
        }
    }

    // A run at debug level against a real upstream (a request refused or
    // failing for any reason is fine: only the canary's absence counts).
    let mut upstream = switchyard()
        .args(["upstream", "--listen", "127.0.0.1:0"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let upstream_address = logged_address(&mut upstream);
    let path = write_config("canary-run.toml", &canary_config(&upstream_address, &password));
    let mut run = switchyard()
        .arg("run")
        .arg("--config")
        .arg(&path)
        .args(["--listen", "127.0.0.1:0"])
        .env("SWITCHYARD_LOG", "debug")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let (log, address) = drain_stderr(&mut run);
    let address = match address {
        Some(address) => address,
        None => {
            run.kill().ok();
            upstream.kill().ok();
            panic!("the run never logged its listen address:\n{}", log.join().unwrap());
        }
    };
    // Polls every 100 ms: a second and a half is several polls and deliveries.
    std::thread::sleep(Duration::from_millis(1500));
    let metrics = http_get(&address, "/metrics");
    let status = http_get(&address, "/status");
    Command::new("kill").args(["-TERM", &run.id().to_string()]).status().unwrap();
    let mut stdout = String::new();
    run.stdout.take().unwrap().read_to_string(&mut stdout).unwrap();
    run.wait().unwrap();
    let log = log.join().unwrap();
    upstream.kill().ok();
    upstream.wait().ok();
    assert!(status.contains(r#""name":"canary""#), "/status must show the pipeline: {status}");
    assert!(log.contains(r#""level":"DEBUG""#), "the run must log at debug level: {log}");
    assert_no_canary("the run's log", &log);
    assert_no_canary("the run's stdout", &stdout);
    assert_no_canary("/metrics", &metrics);
    assert_no_canary("/status", &status);
}

/// The address a `switchyard` child logs it serves on; its stderr is then
/// drained by a thread, so the pipe never fills.
fn logged_address(child: &mut Child) -> String {
    let (_, address) = drain_stderr(child);
    address.unwrap_or_else(|| {
        child.kill().ok();
        panic!("the child never logged its address");
    })
}

/// Reads `child`'s stderr on a thread until it closes, so the pipe never
/// fills; returns that thread (which answers the whole text) and the
/// address the child logged it serves on, once it has (`None` when it
/// exited first).
fn drain_stderr(child: &mut Child) -> (std::thread::JoinHandle<String>, Option<String>) {
    let mut stderr = BufReader::new(child.stderr.take().unwrap());
    let (tx, rx) = std::sync::mpsc::channel();
    let reader = std::thread::spawn(move || {
        let mut text = String::new();
        loop {
            let start = text.len();
            if stderr.read_line(&mut text).unwrap_or(0) == 0 {
                return text;
            }
            if let Some(rest) = text[start..].split(r#""address":""#).nth(1) {
                let _ = tx.send(rest.split('"').next().unwrap_or_default().to_string());
            }
        }
    });
    let address = rx.recv_timeout(Duration::from_secs(30)).ok();
    (reader, address)
}
