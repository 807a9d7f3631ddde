//! `framescale tune` end to end: every policy on the standard profiles, the same output for the
//! same seed, another for another seed, bad flags named.

mod support;

/// `framescale tune <args>`: (success, stdout, stderr).
fn tune(args: &[&str]) -> (bool, String, String) {
    let mut all = vec!["tune"];
    all.extend(args);
    support::framescale(&all)
}

#[test]
fn every_policy_on_every_standard_profile() {
    let (ok, stdout, stderr) = tune(&["--duration=5m", "--max-settings=0"]);
    assert!(ok, "{stdout}{stderr}");
    assert_eq!(
        stdout.matches("\nload: ").count(),
        5,
        "step, ramp, sine, bursts, render jobs:\n{stdout}"
    );
    for load in [
        "load: a step from",
        "load: a ramp from",
        "load: a wave of",
        "up to 200 frames/s",
        "up to 300 frames/s",
    ] {
        assert!(stdout.contains(load), "{load}:\n{stdout}");
    }
    for policy in [
        "fused score",
        "latency only (100 ms)",
        "duty only (65 %)",
        "latency and duty (100 ms, 65 %)",
        "CPU utilization (70 %)",
        "queue depth (2 frames/pod)",
    ] {
        let rows = stdout
            .lines()
            .filter(|l| l.starts_with(&format!("  {policy} ")) && !l.contains("settled"))
            .filter(|l| !l.contains("changes of direction"))
            .count();
        assert_eq!(rows, 5, "{policy}:\n{stdout}");
    }
    assert!(
        stdout.contains("steady load: a constant 90.8 frames/s (3 pods at 61.8 % duty)"),
        "{stdout}"
    );
    assert!(
        stdout.contains("SLO: P95 latency 100 ms; seed 1"),
        "{stdout}"
    );
    // A GPU render keeps its CPU 30 % busy: an HPA on 70 % CPU never scales.
    let cpu = stdout
        .lines()
        .find(|l| l.trim_start().starts_with("CPU utilization"))
        .unwrap();
    let cells: Vec<&str> = cpu.split_whitespace().collect();
    // Bad frames "%", SLO minutes, rejected frames "%", replica-hours, rescales, …
    let rejected = cells
        .iter()
        .enumerate()
        .filter(|(_, c)| **c == "%")
        .nth(1)
        .unwrap()
        .0;
    assert_eq!(cells[rejected + 2], "0", "no rescale: {cpu}");
}

#[test]
fn a_seed_gives_one_answer() {
    let args = [
        "--duration=3m",
        "--profile=step:10,150,30,120",
        "--max-settings=0",
    ];
    let (_, first, _) = tune(&args);
    let (_, again, _) = tune(&args);
    assert_eq!(first, again);
    let (_, other, _) = tune(&[args[0], args[1], args[2], "--seed=2"]);
    assert_ne!(
        first.lines().skip(3).collect::<Vec<_>>(),
        other.lines().skip(3).collect::<Vec<_>>()
    );
}

#[test]
fn the_search_writes_a_recommendation_framescale_reads() {
    let dir = tempfile::tempdir().unwrap();
    let report = dir.path().join("tune");
    let (ok, stdout, stderr) = tune(&[
        "--duration=2m",
        "--max-settings=8",
        "--threads=2",
        &format!("--report-dir={}", report.display()),
    ]);
    assert!(ok, "{stdout}{stderr}");
    assert!(
        stdout.contains(
            "search: 208 settings (8 of the fused score, 200 of the other policies) × 5 profiles on 2 thread(s)"
        ),
        "{stdout}"
    );
    assert!(
        stdout.contains("each policy's front of bad frames"),
        "{stdout}"
    );
    for family in [
        "fused score",
        "duty only",
        "latency only",
        "latency and duty",
        "CPU utilization",
        "queue depth",
    ] {
        assert!(
            stdout.contains(&format!("\n{family} (")),
            "{family}'s front:\n{stdout}"
        );
    }
    // The fused front against each other one: dominated, or where it loses.
    assert_eq!(
        stdout.matches("the fused score front d").count(),
        5,
        "a verdict per other policy:\n{stdout}"
    );
    assert!(
        stdout.contains("shipped defaults against duty only (65 %)"),
        "{stdout}"
    );
    assert_eq!(
        stdout.lines().filter(|l| l.starts_with('*')).count(),
        1,
        "one recommended:\n{stdout}"
    );
    assert!(
        stderr.contains("tune: 208/208 settings (100 %)"),
        "progress: {stderr}"
    );
    let html = std::fs::read_to_string(report.join("report.html")).unwrap();
    assert_eq!(
        html.matches("<svg").count(),
        2,
        "the fronts and the recommended run"
    );
    assert!(
        html.contains("latency and duty"),
        "every front in the legend"
    );
    // Every run, machine-readable: a line per setting and profile, and one per setting.
    let runs = std::fs::read_to_string(report.join("runs.csv")).unwrap();
    let lines: Vec<&str> = runs.lines().collect();
    assert!(lines[0].starts_with("policy,setting,profile,frames,late,rejected,bad_frames_pct"));
    assert_eq!(lines.len(), 1 + 208 * 6);
    assert_eq!(
        lines.iter().filter(|l| l.ends_with(",true")).count(),
        6,
        "the recommended's"
    );
    // The recommended files are what the adapter and the HPA model read.
    let (ok, _, stderr) = support::framescale(&[
        "simulate".to_owned(),
        "--profile=constant:10".to_owned(),
        "--duration=1m".to_owned(),
        format!(
            "--metrics-config={}",
            report.join("recommended-metrics.yaml").display()
        ),
        format!("--hpa={}", report.join("recommended-hpa.yaml").display()),
        format!("--report-dir={}", dir.path().join("sim").display()),
    ]);
    assert!(ok, "{stderr}");
}

#[test]
fn the_predictive_term_is_judged_against_the_reactive_score() {
    let (ok, stdout, stderr) = tune(&[
        "--duration=5m",
        "--max-settings=0",
        "--predictive",
        "--profile=ramp:25,400",
    ]);
    assert!(ok, "{stdout}{stderr}");
    assert!(stdout.contains("\n  fused + forecast "), "{stdout}");
    assert_eq!(
        stdout
            .matches("forecast against reactive: SLO minutes")
            .count(),
        2,
        "the ramp and the steady load:\n{stdout}"
    );
    assert!(
        stdout.contains("steady load: a constant 97.5 frames/s"),
        "{stdout}"
    );
    let (ok, _, stderr) = tune(&["--predictive", "--forecast-alpha=2"]);
    assert!(
        !ok && stderr.contains("--forecast-alpha and --forecast-beta must be in [0, 1]"),
        "{stderr}"
    );
}

/// The model against a real demo run (fixtures/demo/report.csv) with the demo's settings.
#[test]
fn the_model_follows_a_real_demo() {
    let dir = tempfile::tempdir().unwrap();
    let metrics = dir.path().join("demo-metrics.yaml");
    std::fs::write(
        &metrics,
        "score:\n  frame_target_ms: 27\n  holds: { frame_bound: 5s, gpu_bound: 5s, both: 5s }\n",
    )
    .unwrap();
    let report = concat!(env!("CARGO_MANIFEST_DIR"), "/../fixtures/demo/report.csv");
    let (ok, stdout, stderr) = tune(&[
        &format!("--calibrate={report}"),
        "--render-ms=17.8",
        "--render-sigma=0.13",
        "--window=20s",
        "--cpu-share=1",
        "--scale-down-window=30s",
        "--max-replicas=4",
        "--startup=1s",
        &format!("--metrics-config={}", metrics.display()),
    ]);
    assert!(ok, "{stdout}{stderr}");
    assert!(
        stdout.contains("first scale-up: demo 46 s, model 46 s"),
        "{stdout}"
    );
    let error = support::number_after(&stdout, "mean |model - demo| ");
    assert!(
        error < 1.0,
        "replicas within one of the demo's on average: {stdout}"
    );
    let (ok, _, stderr) = tune(&["--calibrate=/nonexistent/report.csv"]);
    assert!(
        !ok && stderr.contains("--calibrate /nonexistent/report.csv"),
        "{stderr}"
    );
}

#[test]
fn bad_flags_are_named() {
    for (flag, want) in [
        ("--slots=0", "--slots must be above 0"),
        ("--duration=10s", "--duration must be at least 1m"),
        ("--profile=wobble:3", "use constant:R"),
        ("--tolerance=2", "--tolerance must be in [0, 1)"),
    ] {
        let (ok, _, stderr) = tune(&[flag]);
        assert!(!ok, "{flag}");
        assert!(stderr.contains(want), "{flag}: {stderr}");
    }
}

/// The replica-hours column of the table row that starts with `policy`.
fn replica_hours(stdout: &str, load: usize, policy: &str) -> f64 {
    let table = stdout.split("\nload: ").nth(load).unwrap();
    let row = table
        .lines()
        .find(|l| l.trim_start().starts_with(policy))
        .unwrap_or_else(|| panic!("{policy}:\n{table}"));
    let cells: Vec<&str> = row
        .split("  ")
        .map(str::trim)
        .filter(|c| !c.is_empty())
        .collect();
    cells[5].parse().unwrap_or_else(|_| panic!("{row}"))
}

#[test]
fn the_shared_queue_compares_the_backlog_at_zero_and_one_pod_and_searches() {
    let (ok, stdout, stderr) = tune(&["--shared-queue", "--slo-ms=30000", "--max-settings=30"]);
    assert!(ok, "{stdout}{stderr}");
    // By default the chart's queue-mode scale-down window, not the API's 5 minutes.
    assert!(
        stdout.contains("down: to the highest recommendation of the last 60 s"),
        "{stdout}"
    );
    assert_eq!(stdout.matches("\nload: ").count(), 3, "{stdout}");
    // The default target: half of the 1,500 frames one 20 ms replica renders in 30 s.
    for load in 1..=3 {
        for policy in ["backlog only", "fused + backlog"] {
            let zero = replica_hours(
                &stdout,
                load,
                &format!("{policy} (750 frames/replica), min 0"),
            );
            let warm = replica_hours(
                &stdout,
                load,
                &format!("{policy} (750 frames/replica), min 1"),
            );
            // An idle farm at zero costs less than one kept warm (with the short scale-down
            // window the chart sets in queue mode: docs/queue.md).
            assert!(zero < warm, "{policy}: {zero} {warm}:\n{stdout}");
        }
    }
    assert!(stdout.contains("latency P95 / 30000 ms"), "{stdout}");
    // The search: both fronts, the verdict, each family's pick.
    assert!(
        stdout.contains(
            "search: 190 settings (30 of the fused + backlog, 160 of the other policies) × 3 profiles"
        ),
        "{stdout}"
    );
    for family in ["fused + backlog", "backlog only", "backlog + oldest wait"] {
        assert!(
            stdout.contains(&format!("\n{family} (")),
            "{family}:\n{stdout}"
        );
    }
    assert_eq!(
        stdout.matches("the fused + backlog front d").count(),
        2,
        "{stdout}"
    );
    assert_eq!(
        stdout.matches("recommended (min 0): ").count(),
        2,
        "{stdout}"
    );
    assert!(stdout.contains("none is rejected"), "{stdout}");
    let (ok, _, stderr) = tune(&["--shared-queue", "--backlog-per-replica=0"]);
    assert!(
        !ok && stderr.contains("--backlog-per-replica must be above 0"),
        "{stderr}"
    );
}
