//! `framescale record` against Debian's Prometheus over a backfilled history (`promtool tsdb
//! create-blocks-from openmetrics`): the frame rate becomes a load profile `tune` reads, the
//! per-pod P95 and duty a trace `simulate` reads, a gap stays a gap, and bad input is named.

mod support;

use std::fmt::Write as _;

use support::{Prometheus, framescale};

/// Ten minutes ending a minute ago: two pods rendering 5 frames/s each (one with a 30 s gap in
/// its duty), and a pod of another namespace.
fn history(end: u64) -> String {
    let mut text = String::new();
    let mut family = |name: &str, kind: &str, lines: &dyn Fn(&mut String, u64)| {
        let _ = writeln!(text, "# TYPE {name} {kind}");
        for t in (end - 600)..=end {
            lines(&mut text, t);
        }
    };
    family("framescale_frames", "counter", &|out, t| {
        let frames = 5 * (t - (end - 600));
        for (ns, pod) in [
            ("render", "render-a"),
            ("render", "render-b"),
            ("other", "x"),
        ] {
            let _ = writeln!(
                out,
                "framescale_frames_total{{namespace=\"{ns}\",pod=\"{pod}\",container=\"worker\",outcome=\"ok\"}} {frames} {t}"
            );
        }
    });
    family("framescale_frame_duration_seconds", "gauge", &|out, t| {
        for pod in ["render-a", "render-b"] {
            let _ = writeln!(
                out,
                "framescale_frame_duration_seconds{{namespace=\"render\",pod=\"{pod}\",container=\"worker\",quantile=\"0.95\"}} 0.025 {t}"
            );
        }
    });
    family("framescale_gpu_duty_cycle_ratio", "gauge", &|out, t| {
        for pod in ["render-a", "render-b"] {
            if pod == "render-b" && (end - 300..end - 270).contains(&t) {
                continue;
            }
            let _ = writeln!(
                out,
                "framescale_gpu_duty_cycle_ratio{{namespace=\"render\",pod=\"{pod}\",container=\"worker\",device=\"gpu\",uuid=\"GPU-1\",measure=\"sm_active\"}} 0.5 {t}"
            );
        }
    });
    text.push_str("# EOF\n");
    text
}

#[test]
fn a_recording_is_a_profile_and_a_trace() {
    let end = support::now_millis() / 1000 - 60;
    let prometheus = Prometheus::start_with_history(&history(end));
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("rec");
    let rfc3339 = |t: u64| {
        humantime::format_rfc3339_seconds(std::time::UNIX_EPOCH + std::time::Duration::from_secs(t))
            .to_string()
    };
    let (ok, stdout, stderr) = framescale(&[
        "record".into(),
        format!("--prometheus-url=http://{}", prometheus.addr),
        "--namespace=render".into(),
        "--selector=pod=~\"render-.*\"".into(),
        format!("--start={}", rfc3339(end - 540)),
        format!("--end={}", rfc3339(end)),
        format!("--out={}", out.display()),
    ]);
    assert!(ok, "{stdout}{stderr}");
    assert!(stdout.contains("541 seconds of frame rate"), "{stdout}");
    assert!(stdout.contains("of 2 pods, 540 s from"), "{stdout}");

    let load = std::fs::read_to_string(out.join("load.csv")).unwrap();
    let rates: Vec<f64> = load
        .lines()
        .skip(1)
        .map(|l| l.split(',').nth(1).unwrap().parse().unwrap())
        .collect();
    assert!(
        rates.iter().all(|r| (r - 10.0).abs() < 0.01),
        "two pods of 5 frames/s, the other namespace left out: {load}"
    );

    let trace = std::fs::read_to_string(out.join("trace.csv")).unwrap();
    assert!(
        trace.starts_with(
            "t_s,pod,p95_ms,duty_pct\n0,render-a,25.000,50.000\n0,render-b,25.000,50.000\n"
        ),
        "{trace}"
    );
    // Prometheus' lookback fills 5 minutes after a sample: the 30 s gap is inside it, so the
    // duty is there; what a trace reader leaves missing is an empty cell, never a 0.
    assert!(!trace.contains(",0.000"), "{trace}");

    // The recording drives the offline tools.
    let (ok, stdout, stderr) = framescale(&[
        "tune".into(),
        format!("--profile=csv:{}", out.join("load.csv").display()),
        "--duration=5m".into(),
        "--max-settings=0".into(),
    ]);
    assert!(ok, "{stdout}{stderr}");
    assert!(
        stdout.contains("load: 541 points over 540 s, up to 10 frames/s"),
        "{stdout}"
    );
    let (ok, stdout, stderr) = framescale(&[
        "simulate".into(),
        format!("--trace={}", out.join("trace.csv").display()),
        format!("--report-dir={}", dir.path().join("sim").display()),
    ]);
    assert!(ok, "{stdout}{stderr}");
    assert!(stdout.contains("(1082 samples)"), "{stdout}");
}

#[test]
fn bad_input_is_named() {
    let prometheus = Prometheus::start(&[]);
    let url = format!("--prometheus-url=http://{}", prometheus.addr);
    for (args, want) in [
        (
            vec![url.clone(), "--namespace=none".into()],
            "Prometheus has no framescale series",
        ),
        (
            vec![
                url.clone(),
                "--namespace=r".into(),
                "--start=2h".into(),
                "--step=0s".into(),
            ],
            "--step must be at least 1s",
        ),
        (
            vec![url.clone(), "--namespace=r".into(), "--start=7d".into()],
            "more than Prometheus' 11000 points",
        ),
        (
            vec![
                url.clone(),
                "--namespace=r".into(),
                "--start=yesterday".into(),
            ],
            "an RFC 3339 time or a duration",
        ),
        (
            vec![
                url.clone(),
                "--namespace=r".into(),
                "--selector=pod=~\"(\"".into(),
            ],
            "Prometheus refused",
        ),
        (
            vec![
                "--prometheus-url=https://p:9090".into(),
                "--namespace=r".into(),
            ],
            "must be http://",
        ),
    ] {
        let mut full = vec!["record".to_owned()];
        full.extend(args);
        full.push(format!(
            "--out={}",
            tempfile::tempdir().unwrap().path().display()
        ));
        let (ok, _, stderr) = framescale(&full);
        assert!(!ok, "{full:?}");
        assert!(stderr.contains(want), "{full:?}: {stderr}");
    }
}
