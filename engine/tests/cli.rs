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

#[test]
fn the_default_run_completes_its_tasks_and_exits_zero() {
    let out = switchyard()
        .args(["run", "--tasks", "40", "--rate", "200", "--delay-ms", "20", "--listen", "127.0.0.1:0"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "exit {:?}: {stderr}", out.status);
    assert!(stderr.contains(r#""ok":40"#), "the summary must count 40 ok tasks: {stderr}");
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
fn an_environment_twin_sets_a_flag_and_the_flag_wins() {
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
}

/// Starts a long run and returns it with the address it logged.
fn start_long_run() -> (Child, String, BufReader<std::process::ChildStderr>) {
    let mut child = switchyard()
        .args(["run", "--rate", "100", "--delay-ms", "200", "--listen", "127.0.0.1:0"])
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
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
    let status = Command::new("kill").args(["-TERM", &child.id().to_string()]).status().unwrap();
    assert!(status.success());
    let mut rest = String::new();
    stderr.read_to_string(&mut rest).unwrap();
    let exit = child.wait().unwrap();
    assert!(exit.success(), "exit {exit:?}: {rest}");
    assert!(rest.contains("demo finished"), "{rest}");
    assert!(rest.contains(r#""abandoned":0"#), "in-flight tasks must drain, not be abandoned: {rest}");
}
