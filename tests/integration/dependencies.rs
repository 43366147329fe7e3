//! The dependency direction of `docs/architecture.md`, checked against
//! Cargo's own view of the workspace, and the rule that only the service
//! and the binary install process-wide things (a metrics recorder, a tracing
//! subscriber, a runtime of their own).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_path_buf()
}

/// One dependency of a package, as its manifest declares it.
#[derive(Debug)]
struct Dep {
    name: String,
    optional: bool,
    features: Vec<String>,
}

/// Normal (non-dev, non-build) dependencies of every workspace package, and
/// each package's default features.
fn workspace() -> BTreeMap<String, (Vec<Dep>, Vec<String>)> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let output = Command::new(cargo)
        .args(["metadata", "--format-version", "1", "--no-deps", "--offline"])
        .current_dir(workspace_root())
        .output()
        .expect("cargo metadata runs");
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let metadata: Value = serde_json::from_slice(&output.stdout).unwrap();
    let strings = |v: &Value| -> Vec<String> {
        v.as_array().map(|a| a.iter().map(|s| s.as_str().unwrap().to_string()).collect()).unwrap_or_default()
    };
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
                .map(|d| Dep {
                    name: d["name"].as_str().unwrap().to_string(),
                    optional: d["optional"].as_bool().unwrap_or(false),
                    features: strings(&d["features"]),
                })
                .collect();
            (p["name"].as_str().unwrap().to_string(), (deps, strings(&p["features"]["default"])))
        })
        .collect()
}

/// What a package depends on when built with its default features.
fn default_build_dependencies(name: &str) -> Vec<Dep> {
    let mut all = workspace();
    let (deps, default_features) = all.remove(name).unwrap_or_else(|| panic!("package {name} missing"));
    assert!(default_features.is_empty(), "{name} must have no default features: {default_features:?}");
    deps.into_iter().filter(|d| !d.optional).collect()
}

const WORKSPACE_LIBRARIES: &[&str] =
    &["switchyard-protocol", "switchyard-cpu-pool", "switchyard-io-reactor", "switchyard"];
const APPLICATION: &[&str] =
    &["switchyard-pipeline", "switchyard-pz1", "switchyard-service", "switchyard-cli"];
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
/// What an embedder must not pay for: the binary's and the service's crates.
const APPLICATION_CRATES: &[&str] =
    &["clap", "anyhow", "indicatif", "tracing-subscriber", "toml", "metrics-exporter-prometheus"];

fn names(deps: &[Dep]) -> Vec<&str> {
    deps.iter().map(|d| d.name.as_str()).collect()
}

#[test]
fn crates_depend_only_in_the_designed_direction() {
    let all = workspace();
    let of = |name: &str| names(&all.get(name).unwrap_or_else(|| panic!("package {name} missing")).0);
    let forbid = |package: &str, forbidden: &[&str]| {
        let deps = of(package);
        for f in forbidden {
            assert!(!deps.contains(f), "{package} must not depend on {f}");
        }
    };
    forbid("switchyard-protocol", WORKSPACE_LIBRARIES);
    forbid("switchyard-protocol", RUNTIME_CRATES);
    forbid("switchyard-cpu-pool", &["switchyard-io-reactor", "switchyard", "hyper", "mysql_async", "redis"]);
    forbid("switchyard-io-reactor", &["switchyard-cpu-pool", "switchyard", "rayon"]);
    for library in WORKSPACE_LIBRARIES {
        forbid(library, APPLICATION);
        forbid(library, &["tracing-subscriber", "clap", "anyhow", "indicatif", "toml"]);
    }
    for needed in ["switchyard-protocol", "switchyard-cpu-pool", "switchyard-io-reactor"] {
        assert!(of("switchyard").contains(&needed), "the engine composes {needed}");
    }
    // The application packages stack: pipeline < pz1 < service < cli.
    forbid("switchyard-pipeline", &["switchyard-pz1", "switchyard-service", "switchyard-cli"]);
    forbid("switchyard-pz1", &["switchyard-service", "switchyard-cli"]);
    forbid("switchyard-service", &["switchyard-cli"]);
    for package in all.keys() {
        forbid(package, &["switchyard-cli"]);
    }
}

#[test]
fn the_engine_with_default_features_carries_no_application_crate() {
    for library in WORKSPACE_LIBRARIES {
        let deps = default_build_dependencies(library);
        for forbidden in APPLICATION_CRATES {
            assert!(!names(&deps).contains(forbidden), "{library} (default features) depends on {forbidden}");
        }
    }
    // Nor hyper's server: io-reactor's `server` feature is off unless asked.
    let engine = default_build_dependencies("switchyard");
    let io = engine.iter().find(|d| d.name == "switchyard-io-reactor").unwrap();
    assert!(io.features.is_empty(), "the engine turns on io-reactor features {:?}", io.features);
    let hyper = default_build_dependencies("switchyard-io-reactor");
    let hyper = hyper.iter().find(|d| d.name == "hyper").unwrap();
    assert!(!hyper.features.iter().any(|f| f == "server"), "{hyper:?}");
}

#[test]
fn only_the_service_and_the_binary_install_process_wide_things() {
    let all = workspace();
    let has = |package: &str, dep: &str| all[package].0.iter().any(|d| d.name == dep && !d.optional);
    for package in all.keys() {
        let may = matches!(package.as_str(), "switchyard-service" | "switchyard-cli" | "switchyard-tests");
        if !may {
            assert!(!has(package, "metrics-exporter-prometheus"), "{package} may not build a recorder");
            assert!(!has(package, "tracing-subscriber"), "{package} may not install a subscriber");
        }
    }
    // Source text, for what a manifest cannot show.
    const INSTALLERS: &[&str] = &[
        "set_global_recorder",
        "set_global_default",
        "tracing_subscriber",
        "#[tokio::main]",
        "install_default(",
    ];
    let root = workspace_root();
    let library_sources = [
        "protocol/src",
        "cpu-pool/src",
        "io-reactor/src",
        "engine/src",
        "engine/pipeline/src",
        "engine/pz1/src",
    ];
    let mut offenders = Vec::new();
    for dir in library_sources {
        let mut files = Vec::new();
        rust_files(&root.join(dir), &mut files);
        assert!(!files.is_empty(), "no sources under {dir}");
        for file in files {
            let text = std::fs::read_to_string(&file).unwrap();
            for needle in INSTALLERS.iter().filter(|n| text.contains(*n)) {
                offenders.push(format!("{}: {needle}", file.display()));
            }
        }
    }
    assert!(offenders.is_empty(), "only the service and the binary install these: {offenders:?}");
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The metrics macros are for telemetry modules only (the catalogue names
/// every metric; handles are resolved once there): `clippy.toml` disallows
/// them everywhere else, and CI runs clippy with warnings denied.
#[test]
fn clippy_disallows_the_raw_metrics_macros() {
    let clippy = std::fs::read_to_string(workspace_root().join("clippy.toml")).expect("clippy.toml exists");
    for mac in ["counter", "gauge", "histogram"] {
        assert!(
            clippy.contains(&format!("\"metrics::{mac}\"")),
            "clippy.toml does not disallow metrics::{mac}!"
        );
    }
    let manifest = std::fs::read_to_string(workspace_root().join("Cargo.toml")).unwrap();
    assert!(manifest.contains("disallowed_macros = \"deny\""), "the lint must be an error, not a warning");
}

/// `rust-version` must be true to what the lock file needs: no locked
/// dependency built on this platform may ask for a newer compiler.
#[test]
fn the_declared_rust_version_covers_every_locked_dependency() {
    let version = |v: &str| -> Vec<u64> { v.split('.').map(|p| p.parse().unwrap()).collect() };
    let manifest = std::fs::read_to_string(workspace_root().join("Cargo.toml")).unwrap();
    let declared = manifest
        .lines()
        .find_map(|l| l.strip_prefix("rust-version = \""))
        .and_then(|l| l.strip_suffix('"'))
        .expect("[workspace.package] declares rust-version");
    let rustc = Command::new("rustc").arg("-vV").output().expect("rustc runs");
    let host = String::from_utf8_lossy(&rustc.stdout)
        .lines()
        .find_map(|l| l.strip_prefix("host: ").map(str::to_string))
        .expect("rustc names its host");
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let output = Command::new(cargo)
        .args(["metadata", "--format-version", "1", "--locked", "--offline", "--filter-platform", &host])
        .current_dir(workspace_root())
        .output()
        .expect("cargo metadata runs");
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let metadata: Value = serde_json::from_slice(&output.stdout).unwrap();
    let used: std::collections::HashSet<&str> =
        metadata["resolve"]["nodes"].as_array().unwrap().iter().map(|n| n["id"].as_str().unwrap()).collect();
    let newer: Vec<String> = metadata["packages"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| used.contains(p["id"].as_str().unwrap()))
        .filter_map(|p| Some((p["name"].as_str()?, p["rust_version"].as_str()?)))
        .filter(|(_, needs)| version(needs) > version(declared))
        .map(|(name, needs)| format!("{name} needs {needs}"))
        .collect();
    assert!(newer.is_empty(), "rust-version {declared} is below what locked dependencies need: {newer:?}");
}
