//! `framescale simulate`: `--check-vectors` (the reference vectors pass, and a file with a wrong
//! expectation or an unknown kind fails with a line per vector saying what differs), and runs
//! over a load profile or a trace that write the report.

mod support;

use std::fmt::Write as _;

/// `framescale simulate <args>`: (success, stdout, stderr).
fn simulate(args: &[&str]) -> (bool, String, String) {
    let mut all = vec!["simulate"];
    all.extend(args);
    support::framescale(&all)
}

fn check_vectors(path: &std::path::Path) -> (bool, String, String) {
    simulate(&["--check-vectors", path.to_str().unwrap()])
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
    list[2]["expected"] = serde_json::json!({});
    let emptied = list[2]["id"].as_str().unwrap().to_owned();
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
        stdout.contains(&format!(
            "INVALID {emptied}: `expected` is empty: the vector checks nothing"
        )),
        "{stdout}"
    );
    assert!(
        stdout.ends_with("73 vectors: 70 passed, 1 failed, 2 invalid\n"),
        "{stdout}"
    );
    assert!(stderr.contains("3 of 73 vectors did not pass"), "{stderr}");

    std::fs::write(&path, "{").unwrap();
    let (ok, _, stderr) = check_vectors(&path);
    assert!(!ok && stderr.contains("--check-vectors"), "{stderr}");
    let (ok, _, stderr) = check_vectors(&dir.path().join("absent.json"));
    assert!(!ok && stderr.contains("absent.json"), "{stderr}");
}

/// Replicas of each second, from report.csv.
fn replicas(dir: &std::path::Path) -> Vec<u32> {
    let csv = std::fs::read_to_string(dir.join("report.csv")).unwrap();
    csv.lines()
        .skip(1)
        .map(|l| l.split(',').nth(2).unwrap().parse().unwrap())
        .collect()
}

#[test]
fn a_load_profile_scales_up_and_down_in_the_report() {
    let dir = tempfile::tempdir().unwrap();
    let hpa = dir.path().join("hpa.yaml");
    std::fs::write(
        &hpa,
        "spec:\n  minReplicas: 1\n  maxReplicas: 8\n  behavior:\n    scaleDown: {stabilizationWindowSeconds: 60}\n",
    )
    .unwrap();
    let report = dir.path().join("report");
    let (ok, stdout, stderr) = simulate(&[
        "--profile=step:10,150,60s,300s",
        "--duration=10m",
        "--render-ms=20",
        &format!("--hpa={}", hpa.display()),
        &format!("--report-dir={}", report.display()),
    ]);
    assert!(ok, "{stdout}{stderr}");
    assert!(stdout.contains("report: "), "{stdout}");
    let replicas = replicas(&report);
    assert_eq!(replicas.len(), 600);
    let peak = *replicas.iter().max().unwrap();
    assert_eq!(replicas[59], 1);
    assert!(
        peak >= 4,
        "150 frames/s of 20 ms frames is 3 busy pods: {peak}"
    );
    assert!(replicas[599] < peak, "down after the step");
    let html = std::fs::read_to_string(report.join("report.html")).unwrap();
    assert_eq!(html.matches("<svg").count(), 1);
    assert!(
        html.contains("time since the start (min:s)"),
        "minutes on the time axis"
    );
    assert!(
        stdout.contains("load: a step from 10 to 150 frames/s at 60 s, back to 10 at 300 s"),
        "{stdout}"
    );
    assert!(
        stdout.contains("score = 0.4 × max(latency P95 / 100 ms, duty / 65 %)"),
        "{stdout}"
    );
    // minReplicas 0: nothing here could wake the Deployment from zero.
    std::fs::write(&hpa, "spec: {minReplicas: 0, maxReplicas: 8}\n").unwrap();
    let (ok, _, stderr) = simulate(&[
        "--profile=constant:10",
        "--duration=1m",
        &format!("--hpa={}", hpa.display()),
    ]);
    assert!(
        !ok && stderr
            .contains("minReplicas 0 scales from zero only on an Object or External metric"),
        "{stderr}"
    );
}

#[test]
fn a_trace_is_replayed_and_bad_input_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let trace = dir.path().join("trace.csv");
    let mut text = String::from("t_s,pod,p95_ms,duty_pct\n");
    for t in 0..120 {
        let duty = if t < 60 { 40 } else { 95 };
        for pod in ["a", "b"] {
            writeln!(text, "{t},{pod},20,{duty}").unwrap();
        }
    }
    std::fs::write(&trace, text).unwrap();
    let report = dir.path().join("report");
    let (ok, stdout, stderr) = simulate(&[
        &format!("--trace={}", trace.display()),
        &format!("--report-dir={}", report.display()),
    ]);
    assert!(ok, "{stdout}{stderr}");
    let csv = std::fs::read_to_string(report.join("report.csv")).unwrap();
    let desired: Vec<u32> = csv
        .lines()
        .skip(1)
        .filter_map(|l| l.split(',').nth(3)?.parse().ok())
        .collect();
    assert!(
        desired.first() == Some(&2) && desired.last() > Some(&2),
        "{csv}"
    );

    std::fs::write(&trace, "t_s,pod,p95_ms,duty_pct\n1,a,x,1\n").unwrap();
    let (ok, _, stderr) = simulate(&[&format!("--trace={}", trace.display())]);
    assert!(
        !ok && stderr.contains("line 2") && stderr.contains("p95_ms"),
        "{stderr}"
    );
    let (ok, _, stderr) = simulate(&["--profile=constant:1", "--check-vectors=x"]);
    assert!(!ok && stderr.contains("one of"), "{stderr}");
    let (ok, _, stderr) = simulate(&["--profile=wobble:1"]);
    assert!(!ok && stderr.contains("--profile"), "{stderr}");
}
