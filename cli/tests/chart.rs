//! The Helm chart, checked offline with real tools (`tests/chart/check.py`: Helm's own library
//! renders it, kubernetes-validate checks every manifest, the Kubernetes client parses every
//! quantity), against this build of `framescale`: its flags and the metrics its adapter serves.

mod support;

use std::process::Command;

#[test]
fn the_chart_renders_valid_objects_that_this_build_understands() {
    let python = std::env::var("FRAMESCALE_TEST_PYTHON").unwrap_or_else(|_| "python3".into());
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../tests/chart/check.py");
    let output = Command::new(&python)
        .arg(script)
        .args(["--framescale", env!("CARGO_BIN_EXE_framescale")])
        .output()
        .unwrap_or_else(|e| panic!("cannot run {python}: {e}"));
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "the chart check failed (./scripts/test installs helm-python-sdk and kubernetes-validate):\n{stdout}\n{stderr}"
    );
    assert!(
        stdout.contains("the chart passes in 16 combinations"),
        "{stdout}"
    );
}
