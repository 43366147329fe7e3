//! The dependency direction of DESIGN.md, checked against Cargo's own view
//! of the workspace, and the one-catalogue rule for metric names.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_path_buf()
}

/// Normal (non-dev, non-build) dependencies of every workspace package.
fn normal_dependencies() -> BTreeMap<String, Vec<String>> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let output = Command::new(cargo)
        .args(["metadata", "--format-version", "1", "--no-deps", "--offline"])
        .current_dir(workspace_root())
        .output()
        .expect("cargo metadata runs");
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let metadata: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    metadata["packages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            let deps = p["dependencies"]
                .as_array()
                .unwrap()
                .iter()
                .filter(|d| d["kind"].is_null())
                .map(|d| d["name"].as_str().unwrap().to_string())
                .collect();
            (p["name"].as_str().unwrap().to_string(), deps)
        })
        .collect()
}

const RUNTIME_CRATES: &[&str] = &[
    "tokio",
    "rayon",
    "hyper",
    "hyper-util",
    "mysql_async",
    "redis",
    "metrics",
    "futures-util",
    "tokio-util",
];
const GLOBAL_INSTALLERS: &[&str] = &["metrics-exporter-prometheus", "tracing-subscriber"];

#[test]
fn crates_depend_only_in_the_designed_direction() {
    let deps = normal_dependencies();
    let of = |name: &str| deps.get(name).unwrap_or_else(|| panic!("package {name} missing"));
    let forbid = |package: &str, forbidden: &[&str]| {
        for f in forbidden {
            assert!(!of(package).iter().any(|d| d == f), "{package} must not depend on {f}");
        }
    };
    forbid("switchyard-protocol", &["switchyard-cpu-pool", "switchyard-io-reactor", "switchyard"]);
    forbid("switchyard-protocol", RUNTIME_CRATES);
    forbid("switchyard-cpu-pool", &["switchyard-io-reactor", "switchyard", "hyper", "mysql_async", "redis"]);
    forbid("switchyard-io-reactor", &["switchyard-cpu-pool", "switchyard", "rayon"]);
    for library in ["switchyard-protocol", "switchyard-cpu-pool", "switchyard-io-reactor"] {
        forbid(library, GLOBAL_INSTALLERS);
    }
    for needed in ["switchyard-protocol", "switchyard-cpu-pool", "switchyard-io-reactor"] {
        assert!(of("switchyard").iter().any(|d| d == needed), "the engine composes {needed}");
    }
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            if !path.ends_with("target") && !path.file_name().unwrap().to_string_lossy().starts_with('.') {
                rust_files(&path, out);
            }
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

#[test]
fn metric_names_are_written_only_in_the_catalogue() {
    let root = workspace_root();
    let mut files = Vec::new();
    for dir in ["protocol", "cpu-pool", "io-reactor", "engine", "tests", "benches", "examples"] {
        if root.join(dir).exists() {
            rust_files(&root.join(dir), &mut files);
        }
    }
    assert!(files.len() > 20, "found only {} files: wrong root?", files.len());
    let needle = ['"', 's', 'w', 'i', 't', 'c', 'h', 'y', 'a', 'r', 'd', '_'].iter().collect::<String>();
    let offenders: Vec<_> = files
        .iter()
        .filter(|f| !f.ends_with("protocol/src/catalogue.rs"))
        .filter(|f| std::fs::read_to_string(f).unwrap().contains(&needle))
        .collect();
    assert!(offenders.is_empty(), "metric-name literals outside the catalogue: {offenders:?}");
}
