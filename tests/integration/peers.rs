//! The Python peers' PZ-1 implementation reproduces the workload's vectors,
//! and the comparison command's bisection and report hold (their unit tests
//! need only the standard library, so they run here).

use std::path::Path;
use std::process::Command;

#[test]
fn the_python_peers_reproduce_the_pz1_vectors_and_the_comparison_holds() {
    let peers = Path::new(env!("CARGO_MANIFEST_DIR")).join("../benches/peers");
    let run = Command::new("python3")
        .args(["-m", "unittest", "-v", "test_pz1", "test_compare"])
        .current_dir(&peers)
        .output();
    let output = match run {
        Ok(output) => output,
        Err(e) if !switchyard_tests::services_required() => {
            eprintln!("skipping: python3 not found ({e})");
            return;
        }
        Err(e) => panic!("python3 is required (SWITCHYARD_REQUIRE_SERVICES=1): {e}"),
    };
    let report = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "the peers' PZ-1 or comparison tests failed:\n{report}");
    assert!(report.contains("OK"), "{report}");
}
