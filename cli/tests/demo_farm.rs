//! `framescale demo --shared-queue` end to end: a real redis-server, worker processes pulling
//! frames, the adapter serving the backlog, the local HPA scaling from zero workers on it. A
//! test binary of its own (see `.config/nextest.toml`): its workers would skew the CPU duty the
//! other demo test measures.

mod support;

use std::path::Path;
use std::process::{Command, Stdio};

/// Two jobs, the second urgent: each wakes the workers from zero, is rendered whole and exactly
/// once, and the farm goes back to zero between them and after them.
#[test]
fn the_farm_wakes_from_zero_for_each_job_and_returns_to_it() {
    let report = tempfile::tempdir().unwrap();
    let stderr = support::run_demo(
        &[
            "--shared-queue",
            "--duration=75s",
            "--sync-period=3s",
            "--scale-down-window=6s",
            "--job=5s:300",
            "--job=40s:300:urgent",
        ],
        report.path(),
    );
    assert!(
        stderr.contains("HPA: 0 to ") && stderr.contains("the backlog alone"),
        "{stderr}"
    );

    let csv = std::fs::read_to_string(report.path().join("report.csv")).unwrap();
    let replicas = support::replicas_over_time(&csv);
    let at = |from: f64, to: f64| {
        replicas
            .iter()
            .filter(move |(t, _)| (from..to).contains(t))
            .map(|r| r.1)
    };
    assert_eq!(at(0.0, 5.0).max(), Some(0), "idle at zero:\n{stderr}");
    assert!(
        at(5.0, 40.0).max() >= Some(1),
        "woken by the first job:\n{stderr}"
    );
    assert_eq!(
        at(30.0, 40.0).min(),
        Some(0),
        "back to zero between the jobs:\n{stderr}"
    );
    assert!(
        at(40.0, 75.0).max() >= Some(1),
        "woken by the second:\n{stderr}"
    );

    for (job, urgent) in [("j1", ""), ("j2", "urgent ")] {
        let line = stderr
            .lines()
            .find(|l| l.contains(&format!("job {job}: 300 {urgent}frames submitted")))
            .unwrap_or_else(|| panic!("no line for {job}:\n{stderr}"));
        assert!(
            line.contains("(300 done, 0 failed, 0 duplicates)"),
            "{line}"
        );
        // The first frame within one sync (3 s), a worker's start and 5 s.
        let first = support::number_after(line, "first frame done ");
        assert!(first <= 3.0 + 2.0 + 5.0, "{line}");
    }
    assert!(stderr.contains("back to 0 workers at"), "{stderr}");
    assert!(
        stderr.contains("users: 0.0 % bad frames (0 of 600"),
        "{stderr}"
    );

    let dir = stderr
        .lines()
        .next()
        .and_then(|l| l.split("working in ").nth(1))
        .unwrap()
        .trim()
        .to_owned();
    assert!(
        !Path::new(&dir).exists(),
        "the working directory is removed"
    );
}

#[test]
fn bad_queue_flags_are_refused_before_anything_starts() {
    for (args, expected) in [
        (vec!["--job=5s:300"], "--shared-queue"),
        (vec!["--shared-queue", "--job=5s"], "use AT:FRAMES"),
        (
            vec!["--shared-queue", "--job=5s:10:high"],
            "priority \"high\" is neither normal nor urgent",
        ),
        (
            vec!["--min-replicas=0"],
            "--min-replicas 0 needs --shared-queue",
        ),
        (
            vec!["--shared-queue", "--backlog-per-replica=0"],
            "--backlog-per-replica must be above 0",
        ),
        (
            vec!["--shared-queue", "--profile=constant:5"],
            "cannot be used with",
        ),
    ] {
        let output = Command::new(env!("CARGO_BIN_EXE_framescale"))
            .arg("demo")
            .args(&args)
            .stdin(Stdio::null())
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(!output.status.success(), "{args:?}");
        assert!(stderr.contains(expected), "{args:?}: {stderr}");
        assert!(!stderr.contains("working in"), "{args:?} started: {stderr}");
    }
    let dir = tempfile::tempdir().unwrap();
    let hpa = dir.path().join("hpa.yaml");
    std::fs::write(&hpa, "spec: {minReplicas: 0, maxReplicas: 2}\n").unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_framescale"))
        .args(["demo", "--duration=10s"])
        .arg(format!("--hpa={}", hpa.display()))
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        !output.status.success() && stderr.contains("minReplicas 0 needs --shared-queue"),
        "{stderr}"
    );
    assert!(!stderr.contains("working in"), "started: {stderr}");
}
