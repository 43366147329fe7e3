//! `switchyard bench` end to end: a short, low-rate run of every model
//! completes every task, prints the spec's keys, and (with real stores)
//! writes one `pz_runs` row per task.

use std::process::Command;

use switchyard::io_reactor::mysql_async::prelude::Queryable;
use switchyard::io_reactor::{MysqlConfig, MysqlPool};
use switchyard_pz1::REPORT_KEYS;

const RATE: u32 = 20;
const DURATION: u32 = 3;
const WARMUP: u32 = 1;

/// Runs `switchyard bench --json` at the tests' short, low-rate schedule
/// with `args` (never the environment's stores); it must succeed. Returns
/// its stdout and stderr.
fn run_bench(args: &[&str]) -> (String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_switchyard"))
        .args(["bench", "--json"])
        .args(["--rate", &RATE.to_string(), "--duration", &DURATION.to_string()])
        .args(["--warmup", &WARMUP.to_string(), "--drain", "20", "--rounds", "20"])
        .args(args)
        .env_remove("SWITCHYARD_REDIS_URL")
        .env_remove("SWITCHYARD_MYSQL_URL")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "bench failed: {stderr}");
    (String::from_utf8_lossy(&out.stdout).into_owned(), stderr)
}

fn bench(extra: &[&str]) -> (Vec<serde_json::Value>, String) {
    let mut args = vec!["--models", "hybrid,reactor-only,threads", "--thread-workers", "32"];
    args.extend_from_slice(extra);
    let (stdout, stderr) = run_bench(&args);
    let lines: Vec<serde_json::Value> = stdout.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(lines.len(), 3, "one JSON line per model: {stdout}\n{stderr}");
    let measured = u64::from(RATE * (DURATION - WARMUP));
    for (line, model) in lines.iter().zip(["hybrid", "reactor-only", "threads"]) {
        let keys: Vec<&str> = line.as_object().unwrap().keys().map(String::as_str).collect();
        let mut expected = REPORT_KEYS.to_vec();
        expected.sort_unstable();
        let mut got = keys.clone();
        got.sort_unstable();
        assert_eq!(got, expected, "exactly the spec's keys");
        assert_eq!(line["model"], model);
        assert_eq!(line["errors"], 0, "{line}\n{stderr}");
        assert_eq!(line["completed"], measured, "{line}");
        assert!(line["slowdown_p50"].as_f64().unwrap() >= 0.95, "{line}");
        assert!(line["peak_rss_mb"].as_f64().unwrap() > 1.0, "{line}");
        assert!(line["upstream_rps"].as_f64().unwrap() > 0.0, "{line}");
    }
    (lines, stderr)
}

/// The figures after `marker` on a cost line, in order.
fn figures_after(line: &str, marker: &str) -> Vec<f64> {
    let rest = &line[line.find(marker).unwrap_or_else(|| panic!("{marker} in {line}")) + marker.len()..];
    rest.split_whitespace().filter_map(|w| w.parse().ok()).collect()
}

#[test]
fn a_short_bench_with_embedded_stores_completes_every_task_and_says_what_a_task_costs() {
    let (_, stderr) = bench(&[]);
    let alone: Vec<&str> = stderr.lines().filter(|l| l.contains("CPU step alone")).collect();
    assert_eq!(alone.len(), 3, "one line per model: {stderr}");
    for line in alone {
        // transform = SHA-256 loop + the rest, all positive.
        let f = figures_after(line, "transform");
        assert_eq!(f.len(), 3, "{line}");
        assert!(f[1] > 0.0 && f[0] >= f[1] && (f[0] - f[1] - f[2]).abs() < 0.002, "{line}");
    }
    let per_task: Vec<Vec<f64>> = stderr
        .lines()
        .filter(|l| l.contains("CPU per task in the window"))
        .map(|l| figures_after(l, "window:"))
        .collect();
    assert_eq!(per_task.len(), 3, "{stderr}");
    for (f, model) in per_task.iter().zip(["hybrid", "reactor-only", "threads"]) {
        assert_eq!(f.len(), 4, "{f:?}");
        assert!((f[0] - f[1] - f[2] - f[3]).abs() < 0.002, "{model}: the roles add up: {f:?}");
        assert!(f[0] > 0.0, "{model}: {f:?}");
    }
    // Only the pool model runs its transforms off the reactor.
    assert!(per_task[0][2] > 0.0, "hybrid's CPU threads did the hashing: {:?}", per_task[0]);
    assert_eq!(per_task[1][2], 0.0, "reactor-only has no CPU threads: {:?}", per_task[1]);
}

#[test]
fn a_short_bench_with_real_redis_and_mysql_writes_a_row_per_task() {
    let (Some(mysql), Some(redis)) = (switchyard_tests::mysql_url(), switchyard_tests::redis_url()) else {
        return;
    };
    let prefix = format!("clitest-{}-", std::process::id());
    let key_prefix = format!("pz:clitest:{}:", std::process::id());
    let timeline = std::env::temp_dir().join(format!("switchyard-timeline-{}.jsonl", std::process::id()));
    bench(&[
        "--timeline",
        timeline.to_str().unwrap(),
        "--mysql-url",
        &mysql,
        "--redis-url",
        &redis,
        "--run-id-prefix",
        &prefix,
        "--key-prefix",
        &key_prefix,
    ]);
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let pool = MysqlPool::new(&MysqlConfig::new(&mysql)).unwrap();
    let query = format!("SELECT status, COUNT(*) FROM pz_runs WHERE run_id LIKE '{prefix}%' GROUP BY status");
    let counts: Vec<(String, u64)> =
        runtime.block_on(pool.with_conn(move |c| Box::pin(c.query(query)))).unwrap();
    assert_eq!(
        counts,
        vec![("ok".to_string(), 3 * u64::from(RATE * DURATION))],
        "one ok row per task and model"
    );
    // The timeline: every task of every run in some second, and the
    // engine's view of its stores and upstream beside them.
    let text = std::fs::read_to_string(&timeline).unwrap();
    let _ = std::fs::remove_file(&timeline);
    let seconds: Vec<serde_json::Value> = text.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    for model in ["hybrid", "reactor-only", "threads"] {
        let run: Vec<&serde_json::Value> = seconds.iter().filter(|s| s["run"] == model).collect();
        assert!(run.len() >= DURATION as usize, "{model}: {} seconds", run.len());
        let completions: u64 = run.iter().map(|s| s["completions"].as_u64().unwrap()).sum();
        assert_eq!(completions, u64::from(RATE * DURATION), "{model}: every task in some second");
        let t: Vec<u64> = run.iter().map(|s| s["t"].as_u64().unwrap()).collect();
        assert!(t.windows(2).all(|w| w[1] == w[0] + 1), "{model}: one line per second in order: {t:?}");
        for column in ["redis_calls", "mysql_calls", "upstream_calls", "reactor_lag_calls"] {
            let calls: u64 = run.iter().filter_map(|s| s[column].as_u64()).sum();
            assert!(calls > 0, "{model}: {column} never recorded");
        }
        let busy = run.iter().filter_map(|s| s["in_flight_max"].as_f64()).fold(0.0, f64::max);
        assert!(busy >= 1.0, "{model}: tasks were in flight");
        assert!(run.iter().any(|s| s["mysql_p99_ms"].as_f64().is_some_and(|v| v > 0.0)));
    }
}

#[test]
fn a_stream_source_run_completes_every_task_alternates_and_leaves_no_stream() {
    let Some(redis) = switchyard_tests::redis_url() else { return };
    let (stdout, stderr) = run_bench(&[
        "--models",
        "hybrid",
        "--sources",
        "memory,stream",
        "--repeats",
        "2",
        "--stream-redis-url",
        &redis,
    ]);
    let labels: Vec<String> = stdout
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .map(|line| {
            assert_eq!(line["errors"], 0, "{line}\n{stderr}");
            assert_eq!(line["completed"], u64::from(RATE * (DURATION - WARMUP)), "{line}");
            line["model"].as_str().unwrap().to_string()
        })
        .collect();
    // The second round runs the pair in the opposite order.
    assert_eq!(labels, ["hybrid", "hybrid+stream", "hybrid+stream", "hybrid"], "{stderr}");
    // Redis did the stream's work, counted by the server itself.
    let redis_lines: Vec<&str> = stderr.lines().filter(|l| l.contains("commands and")).collect();
    assert_eq!(redis_lines.len(), 2, "one Redis cost line per stream run: {stderr}");
    assert!(
        redis_lines.iter().all(|l| l.contains("xreadgroup=") && l.contains("xack=") && l.contains("xadd=")),
        "{stderr}"
    );
    assert!(stderr.contains("medians [min-max] per point"), "{stderr}");
    // Each run says how much of the machine other tenants took meanwhile.
    let steal_lines = stderr.lines().filter(|l| l.contains("stolen by the hypervisor")).count();
    assert_eq!(steal_lines, 4, "one steal line per run: {stderr}");
    // Each run deleted its stream.
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let client = runtime
        .block_on(switchyard::io_reactor::RedisClient::connect(&switchyard::io_reactor::RedisConfig::new(
            &redis,
        )))
        .unwrap();
    let keys: Vec<String> = runtime
        .block_on(client.query(switchyard::io_reactor::redis::cmd("KEYS").arg("switchyard:bench:*:tasks*")))
        .unwrap();
    assert!(keys.is_empty(), "streams left behind: {keys:?}");
}
