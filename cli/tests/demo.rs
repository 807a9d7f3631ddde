//! `framescale demo` end to end: real worker processes, the exporter with the CPU duty source,
//! the adapter over HTTPS, the local HPA and a load step. Runs alone (see
//! `.config/nextest.toml`): it measures CPU duty, which other tests on the 2 cores would skew.

mod support;

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use support::{spawn_until, wait_for};

/// The demo's working directory, from its first line.
fn workdir(first_line: &str) -> String {
    first_line
        .split("working in ")
        .nth(1)
        .expect("the first line names the working directory")
        .trim()
        .to_owned()
}

/// PIDs of live processes whose command line mentions `text`.
fn processes_mentioning(text: &str) -> Vec<u32> {
    std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|entry| {
            let pid: u32 = entry.file_name().to_str()?.parse().ok()?;
            let cmdline = std::fs::read(entry.path().join("cmdline")).ok()?;
            String::from_utf8_lossy(&cmdline)
                .contains(text)
                .then_some(pid)
        })
        .collect()
}

fn alive(pid: u32) -> bool {
    Path::new(&format!("/proc/{pid}")).exists()
}

/// A short run with the default (calibrated) step profile: replicas go up after the step
/// starts and down after it ends, the controller adds replicas within one sync period of the
/// score leaving the tolerance band (plus the 1 s sampling), and the report holds the series.
#[test]
fn the_demo_scales_up_on_the_step_and_down_after_it() {
    let report = tempfile::tempdir().unwrap();
    let stderr = support::run_demo(
        &[
            "--duration=80s",
            "--sync-period=3s",
            "--scale-down-window=6s",
            "--hold=2s",
            "--window=10s",
        ],
        report.path(),
    );

    // The step runs from 15 % to 55 % of the run: 12 s to 44 s.
    let csv = std::fs::read_to_string(report.path().join("report.csv")).unwrap();
    let rows = support::replicas_over_time(&csv);
    assert!(rows.len() >= 70, "one row per second: {}", rows.len());
    let before = rows
        .iter()
        .filter(|(t, _)| *t < 12.0)
        .map(|r| r.1)
        .max()
        .unwrap();
    let peak = rows
        .iter()
        .filter(|(t, _)| (12.0..48.0).contains(t))
        .map(|r| r.1)
        .max()
        .unwrap();
    let end = rows.last().unwrap().1;
    assert_eq!(before, 1, "one replica before the step\n{stderr}");
    assert!(peak >= 2, "replicas went up during the step\n{stderr}");
    assert!(end < peak, "replicas came down after the step\n{stderr}");
    for column in [
        "p95_ms",
        "duty_pct",
        "score",
        "latency_ms",
        "users_p95_ms",
        "bad_pct",
    ] {
        assert!(csv.lines().next().unwrap().contains(column));
    }
    let filled = |index: usize| {
        csv.lines()
            .skip(1)
            .filter(|l| !l.split(',').nth(index).unwrap().is_empty())
            .count()
    };
    assert!(
        filled(4) > 60 && filled(5) > 60 && filled(6) > 60,
        "series are filled:\n{csv}"
    );
    // The served latency: a gap only while every pod refuses frames (an hour, left out).
    assert!(filled(7) > 30, "the served latency:\n{csv}");
    // What users felt, from the load generator: each second's latency P95 and bad frames.
    assert!(filled(8) > 60 && filled(9) > 60, "users' series:\n{csv}");
    let bad_frames = stderr
        .lines()
        .find(|l| l.contains("users: ") && l.contains("% bad frames"))
        .unwrap_or_else(|| panic!("no bad frames in the summary:\n{stderr}"));
    assert!(bad_frames.contains("later than"), "{bad_frames}");

    check_settings_and_chart(report.path(), &stderr);

    let reaction = stderr
        .lines()
        .find(|l| l.contains("reaction: replicas added"))
        .unwrap_or_else(|| panic!("no reaction line:\n{stderr}"));
    let worst = support::number_after(reaction, "(worst ");
    assert!(worst <= 3.0 + 1.0, "{reaction}");

    let dir = workdir(stderr.lines().next().unwrap());
    assert!(
        !Path::new(&dir).exists(),
        "the working directory is removed"
    );
    assert!(processes_mentioning(&dir).is_empty(), "no child left");
}

/// The settings are written in words, not in Rust's debug format; the report's chart has axes,
/// and a browser draws every series of it.
fn check_settings_and_chart(report: &Path, stderr: &str) {
    for debug in ["Step {", "Some(", "Behavior {", "Rules {"] {
        assert!(
            !stderr.contains(debug),
            "{debug} in the demo's lines:\n{stderr}"
        );
    }
    assert!(stderr.contains("load: a step from"), "{stderr}");
    // One worker per core, 2 to 4.
    let cores = std::thread::available_parallelism().map_or(2, |n| n.get().clamp(2, 4));
    assert!(
        stderr.contains(&format!("HPA: 1 to {cores} replicas; up: at once")),
        "{stderr}"
    );

    let page = report.join("report.html");
    let html = std::fs::read_to_string(&page).unwrap();
    assert_eq!(
        html.matches("<svg").count(),
        1,
        "one chart over one time axis"
    );
    for axis in ["time since the start (s)", "frames/s", ">ms<", "replicas"] {
        assert!(
            html.replace('\n', "").contains(axis),
            "{axis} is on an axis"
        );
    }
    let shot = support::browser::screenshot(&page, 1000, 1900);
    for (series, color) in [
        ("load", (0, 0, 255)),
        ("users' latency P95", (0, 140, 140)),
        ("bad frames", (170, 0, 0)),
        ("served latency", (200, 0, 200)),
        ("render time", (230, 120, 20)),
        ("duty", (0, 255, 0)),
        ("score", (255, 0, 0)),
        ("replicas", (130, 80, 170)),
    ] {
        assert!(
            shot.count(color) > 200,
            "the screenshot shows the {series} line ({} pixels)",
            shot.count(color)
        );
    }
    assert!(shot.inked() > 20_000, "axes, ticks and text are drawn");
}

/// Ctrl-C stops the demo and every process it started.
#[test]
fn ctrl_c_stops_every_child() {
    let report = tempfile::tempdir().unwrap();
    let mut command = Command::new(env!("CARGO_BIN_EXE_framescale"));
    command
        .args([
            "demo",
            "--duration=60s",
            "--sync-period=2s",
            "--min-replicas=2",
        ])
        .arg("--report-dir")
        .arg(report.path());
    let (mut demo, first, log) = spawn_until(command, "working in");
    let dir = workdir(&first);
    wait_for("the first progress line", Duration::from_mins(1), || {
        log.lock()
            .unwrap()
            .iter()
            .any(|l| l.starts_with('['))
            .then_some(())
    });
    let workers: Vec<u32> = std::fs::read_to_string(Path::new(&dir).join("processes"))
        .unwrap()
        .lines()
        .filter(|l| !l.starts_with('#'))
        .map(|l| l.split(' ').next().unwrap().parse().unwrap())
        .collect();
    let services = processes_mentioning(&dir);
    assert_eq!(workers.len(), 2);
    assert_eq!(services.len(), 2, "the exporter and the adapter");

    let started = Instant::now();
    let interrupt = Command::new("kill")
        .args(["-INT", &demo.id().to_string()])
        .status()
        .unwrap();
    assert!(interrupt.success());
    let status = demo.wait().unwrap();
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "stopped in {:?}",
        started.elapsed()
    );
    assert!(status.success(), "{}", log.lock().unwrap().join("\n"));
    for pid in workers.iter().chain(&services) {
        assert!(!alive(*pid), "process {pid} is still there");
    }
    assert!(
        report.path().join("report.csv").exists(),
        "a stopped demo still reports"
    );
}
