//! `switchyard dead` against real Redis: lists the durable service's dead
//! letters, replays deliveries (not malformed items) into their stream,
//! discards the rest.

use std::process::Command;

use switchyard::io_reactor::{redis, RedisClient, RedisConfig};

fn switchyard(args: &[&str], config: &std::path::Path, redis: &str) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_switchyard"))
        .args(args)
        .arg("--config")
        .arg(config)
        .args(["--redis-url", redis])
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into(),
        String::from_utf8_lossy(&out.stderr).into(),
    )
}

#[test]
fn dead_letters_are_listed_replayed_and_discarded() {
    let Some(url) = switchyard_tests::redis_url() else { return };
    let prefix = switchyard_tests::unique("sy-cli-dead");
    let dir = std::env::temp_dir().join(&prefix);
    std::fs::create_dir_all(&dir).unwrap();
    let config = dir.join("switchyard.toml");
    std::fs::write(&config, format!("[durable]\nkey_prefix = \"{prefix}\"\n")).unwrap();
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let client = runtime.block_on(RedisClient::connect(&RedisConfig::new(&url))).unwrap();
    let dead = format!("{prefix}:deliveries:dead");
    let add = |label: &str, reason: &str, item: &str| {
        let cmd = redis::cmd("XADD")
            .arg(&dead)
            .arg("*")
            .arg("item")
            .arg(item)
            .arg("label")
            .arg(label)
            .arg("attempt")
            .arg(3)
            .arg("at")
            .arg(0)
            .arg("reason")
            .arg(reason)
            .arg("error")
            .arg(format!("{reason} here"))
            .clone();
        runtime.block_on(client.query::<String>(&cmd)).unwrap()
    };
    let job = r#"{"pipeline":"orders","id":"o-1","seq":2,"fingerprint":"ab","canonical":"{}"}"#;
    add("orders/o-1", "failed", job);
    add("orders/7#3", "malformed", r#"{"no":"id"}"#);
    add("invoices/i-9", "retries_exhausted", job);

    let (ok, out, err) = switchyard(&["dead", "list", "--json"], &config, &url);
    assert!(ok, "{err}");
    let lines: Vec<serde_json::Value> = out.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(lines.len(), 3, "{out}");
    assert!(lines.iter().any(|l| l["label"] == "orders/7#3" && l["reason"] == "malformed"), "{out}");

    let (ok, out, err) = switchyard(&["dead", "list", "--limit", "1"], &config, &url);
    assert!(ok && out.lines().count() == 1 && err.contains("2 more"), "{out} {err}");

    let (ok, out, _) = switchyard(&["dead", "list", "--pipeline", "orders"], &config, &url);
    assert!(ok && out.lines().count() == 2 && !out.contains("invoices"), "{out}");

    let (ok, out, err) = switchyard(&["dead", "replay", "--pipeline", "orders", "--all"], &config, &url);
    assert!(ok, "{err}");
    assert!(
        out.contains("replayed 1") && err.contains("not replayed: 1"),
        "the malformed item stays: {out} {err}"
    );
    let queued: u64 =
        runtime.block_on(client.query(redis::cmd("XLEN").arg(format!("{prefix}:deliveries")))).unwrap();
    assert_eq!(queued, 1, "the replayed delivery is back in its stream");

    let (ok, _, err) = switchyard(&["dead", "discard"], &config, &url);
    assert!(!ok && err.contains("--id ID"), "discard must say which: {err}");
    let (ok, out, err) = switchyard(&["dead", "discard", "--all"], &config, &url);
    assert!(ok && out.contains("discarded 2"), "{out} {err}");
    let left: u64 = runtime.block_on(client.query(redis::cmd("XLEN").arg(&dead))).unwrap();
    assert_eq!(left, 0);
    let keys = [dead, format!("{prefix}:deliveries"), format!("{prefix}:polls:dead")];
    let _: u64 = runtime.block_on(client.query(redis::cmd("DEL").arg(&keys))).unwrap();
    let _ = std::fs::remove_dir_all(dir);
}
