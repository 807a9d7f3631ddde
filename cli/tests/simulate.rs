//! `framescale simulate --check-vectors`: the reference vectors pass, and a file with a wrong
//! expectation or an unknown kind fails with a line per vector saying what differs.

use std::process::Command;

fn check_vectors(path: &std::path::Path) -> (bool, String, String) {
    let output = Command::new(env!("CARGO_BIN_EXE_framescale"))
        .args(["simulate", "--check-vectors"])
        .arg(path)
        .output()
        .unwrap();
    (
        output.status.success(),
        String::from_utf8(output.stdout).unwrap(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

fn reference() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/reference/hpa-vectors.json")
}

#[test]
fn the_reference_vectors_all_pass() {
    let (ok, stdout, stderr) = check_vectors(&reference());
    assert!(ok, "{stdout}{stderr}");
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.iter().filter(|l| l.starts_with("PASS ")).count(), 73);
    assert!(lines.contains(&"PASS rc-pods-scale-up"), "{stdout}");
    assert!(
        lines.contains(&"PASS beh-user-pods-down-20 (unsure)"),
        "{stdout}"
    );
    assert_eq!(
        lines.last(),
        Some(&"73 vectors: 73 passed, 0 failed, 0 invalid")
    );
}

#[test]
fn mismatches_fail_with_the_values_that_differ() {
    let text = std::fs::read_to_string(reference()).unwrap();
    let mut vectors: serde_json::Value = serde_json::from_str(&text).unwrap();
    let list = vectors.as_array_mut().unwrap();
    list[0]["expected"]["desiredReplicas"] = serde_json::json!(5);
    list[1]["kind"] = serde_json::json!("resource_utilization");
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("vectors.json");
    std::fs::write(&path, serde_json::to_string(&vectors).unwrap()).unwrap();

    let (ok, stdout, stderr) = check_vectors(&path);
    assert!(!ok, "{stdout}");
    assert!(
        stdout.contains("FAIL rc-pods-scale-up: desiredReplicas expected 5, got 4"),
        "{stdout}"
    );
    assert!(
        stdout.contains(
            r#"INVALID rc-pods-unready-ignored-for-non-cpu: unknown kind "resource_utilization""#
        ),
        "{stdout}"
    );
    assert!(
        stdout.ends_with("73 vectors: 71 passed, 1 failed, 1 invalid\n"),
        "{stdout}"
    );
    assert!(stderr.contains("2 of 73 vectors did not pass"), "{stderr}");

    std::fs::write(&path, "{").unwrap();
    let (ok, _, stderr) = check_vectors(&path);
    assert!(!ok && stderr.contains("--check-vectors"), "{stderr}");
    let (ok, _, stderr) = check_vectors(&dir.path().join("absent.json"));
    assert!(!ok && stderr.contains("absent.json"), "{stderr}");
}
