//! The exporter as a process over a temporary pods log root, fed CRI-wrapped real Blender output
//! while it runs; checked through its own `/metrics`, `promtool` and a real Prometheus.

#![allow(
    clippy::float_cmp,
    reason = "counters are whole numbers carried as f64 by the text format"
)]

mod support;

use std::fmt::Write as _;
use std::fs::{self, OpenOptions};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use framescale_exporter::cri::format_rfc3339;
use support::{
    Exporter, Metrics, Prometheus, append, assert_hdr_close, cri, fixture, nearest_rank,
    now_millis, wait_for,
};

const QUANTILES: [(&str, f64); 4] = [("0.5", 0.5), ("0.9", 0.9), ("0.95", 0.95), ("0.99", 0.99)];
const WAIT: Duration = Duration::from_secs(20);

/// framescale frame lines with the given durations in milliseconds.
fn frame_lines(millis: &[f64]) -> String {
    millis
        .iter()
        .enumerate()
        .fold(String::new(), |mut out, (i, ms)| {
            let _ = writeln!(
                out,
                "framescale.frame frame={i} duration_ms={ms} outcome=ok"
            );
            out
        })
}

fn frames_ok(metrics: &Metrics, pod: &str, container: &str) -> f64 {
    metrics
        .series(
            "framescale_frames_total",
            "render",
            pod,
            container,
            r#"outcome="ok""#,
        )
        .unwrap_or(0.0)
}

fn wait_for_frames(exporter: &Exporter, pod: &str, container: &str, want: f64) {
    wait_for(&format!("{want} ok frames of {pod}"), WAIT, || {
        (frames_ok(&exporter.metrics(), pod, container) >= want).then_some(())
    });
}

fn assert_quantiles(metrics: &Metrics, pod: &str, container: &str, millis: &[f64]) {
    let seconds: Vec<f64> = millis.iter().map(|ms| ms / 1000.0).collect();
    for (label, q) in QUANTILES {
        let got = metrics
            .quantile("render", pod, container, label)
            .unwrap_or_else(|| panic!("no P{label} for {pod}"));
        assert_hdr_close(
            got,
            nearest_rank(&seconds, q),
            &format!("{pod} quantile {label}"),
        );
    }
}

#[test]
fn follows_pods_through_rotation_truncation_and_bad_input() {
    let root = tempfile::tempdir().unwrap();
    let a_log = root.path().join("render_blender-a_uid-a/blender/0.log");
    // Written before the exporter starts, which by default begins at the end: not counted.
    append(&a_log, cri(&fixture("blender-3.4.1/b_eevee.log")));
    let excluded = root.path().join("kube-system_dns_uid-k/coredns/0.log");
    append(&excluded, "");

    let exporter = Exporter::start(root.path(), &[]);

    // Pod a: Blender output of several runs, each shape of the fixtures.
    append(&a_log, cri(&fixture("blender-3.4.1/a_cycles_3frames.log"))); // 220, 0, 0 ms
    append(&a_log, cri(&fixture("blender-3.4.1/b_eevee.log"))); // 4810, 890, 950 ms
    append(
        &a_log,
        cri(&fixture("blender-3.4.1/f_output_parent_is_file.log")),
    ); // 3 failed frames
    append(&a_log, cri(&fixture("blender-3.4.1/d_missing_blend.log"))); // 1 job error
    // A frame whose Saved line the runtime split into partial records, and whose Time line
    // comes after a rename rotation.
    let stamp = format_rfc3339(now_millis());
    append(
        &a_log,
        format!(
            "{stamp} stdout F Fra:9 Mem:1M | Finished\n{stamp} stdout P Saved: '/render/out/\n{stamp} stdout F 0009.png'\n"
        ),
    );
    wait_for_frames(&exporter, "blender-a", "blender", 6.0);
    fs::rename(&a_log, a_log.with_extension("log.20261122-010203")).unwrap();
    append(&a_log, cri(" Time: 00:02.00 (Saving: 00:00.01)")); // 2000 ms, frame 9
    append(&a_log, cri(&fixture("blender-3.4.1/c_workbench.log"))); // 1240, 0, 0 ms
    append(&a_log, b"\x00\xff\xfe binary garbage\n");
    append(
        &a_log,
        format!("{stamp} stdout F {}\n", "x".repeat(100_000)),
    );

    // Pod b appears after the start: framescale frame lines, truncated in place half-way.
    let b_log = root.path().join("render_worker-b_uid-b/worker/0.log");
    let b_millis: Vec<f64> = (1..=40).map(|i| f64::from(i) * 10.0).collect();
    append(&b_log, cri(&frame_lines(&b_millis[..20])));
    append(&b_log, cri("framescale.frame duration_ms=-5"));
    wait_for_frames(&exporter, "worker-b", "worker", 20.0);
    OpenOptions::new()
        .write(true)
        .truncate(true)
        .open(&b_log)
        .unwrap();
    wait_for("the truncation to be noticed", WAIT, || {
        exporter
            .metrics()
            .value(r#"framescale_exporter_log_rotations_total{kind="truncate"}"#)
            .filter(|&n| n >= 1.0)
    });
    append(&b_log, cri(&frame_lines(&b_millis[20..])));
    append(&excluded, cri(&frame_lines(&[5.0])));

    wait_for_frames(&exporter, "worker-b", "worker", 40.0);
    wait_for_frames(&exporter, "blender-a", "blender", 10.0);
    let metrics = exporter.metrics();
    let a_millis = [
        220.0, 0.0, 0.0, 4810.0, 890.0, 950.0, 2000.0, 1240.0, 0.0, 0.0,
    ];
    assert_quantiles(&metrics, "blender-a", "blender", &a_millis);
    assert_quantiles(&metrics, "worker-b", "worker", &b_millis);

    let a = |name: &str, extra: &str| metrics.series(name, "render", "blender-a", "blender", extra);
    assert_eq!(a("framescale_frames_total", r#"outcome="ok""#), Some(10.0));
    assert_eq!(
        a("framescale_frames_total", r#"outcome="failed""#),
        Some(3.0)
    );
    assert_eq!(a("framescale_render_errors_total", ""), Some(1.0));
    assert_eq!(a("framescale_frame_duration_seconds_count", ""), Some(10.0));
    let sum = a("framescale_frame_duration_seconds_sum", "").unwrap();
    assert!(
        (sum - a_millis.iter().sum::<f64>() / 1000.0).abs() < 1e-9,
        "sum {sum}"
    );

    let total = |series: &str| {
        metrics
            .value(series)
            .unwrap_or_else(|| panic!("no {series}"))
    };
    assert!(total(r#"framescale_exporter_parse_errors_total{reason="cri"}"#) >= 1.0);
    assert_eq!(
        total(r#"framescale_exporter_parse_errors_total{reason="oversize"}"#),
        1.0
    );
    assert_eq!(
        total(r#"framescale_exporter_parse_errors_total{reason="frame_line"}"#),
        1.0
    );
    assert_eq!(
        total(r#"framescale_exporter_log_rotations_total{kind="rename"}"#),
        1.0
    );
    assert_eq!(
        total(r#"framescale_exporter_log_rotations_total{kind="truncate"}"#),
        1.0
    );
    assert_eq!(total("framescale_exporter_pods_tracked"), 2.0);
    assert!(
        !metrics.0.contains("kube-system"),
        "excluded namespace leaked:\n{}",
        metrics.0
    );

    let log = exporter.log();
    let status = exporter.terminate();
    assert!(status.success(), "exit {status:?}; log:\n{log}");
}

#[test]
fn a_pod_that_goes_away_is_dropped_after_the_grace_period() {
    let root = tempfile::tempdir().unwrap();
    let exporter = Exporter::start(root.path(), &["--grace-period", "1s"]);
    let pod_dir = root.path().join("render_gone-0_uid-g");
    append(
        &pod_dir.join("worker/0.log"),
        cri(&frame_lines(&[12.0, 14.0])),
    );
    wait_for_frames(&exporter, "gone-0", "worker", 2.0);
    fs::remove_dir_all(&pod_dir).unwrap();
    wait_for("the gone pod's series to be dropped", WAIT, || {
        let metrics = exporter.metrics();
        (!metrics.0.contains(r#"pod="gone-0""#)).then_some(metrics)
    });
    let metrics = exporter.metrics();
    assert_eq!(
        metrics.value("framescale_exporter_series_dropped_total"),
        Some(1.0)
    );
    assert_eq!(metrics.value("framescale_exporter_pods_tracked"), Some(0.0));
}

#[test]
fn pushed_frames_are_served_and_bad_pushes_refused() {
    let root = tempfile::tempdir().unwrap();
    let exporter = Exporter::start(
        root.path(),
        &[
            "--push",
            "--push-body-limit",
            "4096",
            "--namespaces",
            "render",
        ],
    );
    let body: String = [30.0, 10.0, 20.0]
        .iter()
        .map(|ms| {
            format!(
                r#"{{"namespace":"render","pod":"push-0","container":"worker","duration_ms":{ms}}}"#
            ) + "\n"
        })
        .collect();
    assert_eq!(
        exporter.post("/v1/frames", body.as_bytes()),
        (200, r#"{"accepted":3}"#.to_owned())
    );
    let (status, reason) = exporter.post("/v1/frames", b"{\"namespace\":\"render\"}\n");
    assert_eq!(status, 400);
    assert!(
        reason.contains("line 1") && reason.contains("missing field"),
        "{reason}"
    );
    assert_eq!(exporter.post("/v1/frames", &[b' '; 8192]).0, 413);
    // The review's forgery: a push for a namespace the exporter does not watch.
    let forged = r#"{"namespace":"kube-system","pod":"forged","container":"c","duration_ms":9e5}"#;
    let (status, reason) = exporter.post("/v1/frames", forged.as_bytes());
    assert_eq!(status, 403, "{reason}");
    let metrics = exporter.metrics();
    assert!(metrics.value(r#"framescale_frames_total{namespace="kube-system",pod="forged",container="c",outcome="ok"}"#).is_none());
    assert_quantiles(&metrics, "push-0", "worker", &[30.0, 10.0, 20.0]);
    assert_eq!(
        metrics.value(r#"framescale_exporter_push_requests_rejected_total{reason="invalid"}"#),
        Some(1.0)
    );
    assert_eq!(
        metrics.value(r#"framescale_exporter_push_requests_rejected_total{reason="too_large"}"#),
        Some(1.0)
    );
    assert_eq!(
        metrics.value(r#"framescale_exporter_push_requests_rejected_total{reason="not_watched"}"#),
        Some(1.0)
    );
}

#[test]
fn pushing_is_off_by_default() {
    let root = tempfile::tempdir().unwrap();
    let exporter = Exporter::start(root.path(), &[]);
    let push = r#"{"namespace":"render","pod":"w-0","container":"worker","duration_ms":25}"#;
    let (status, reason) = exporter.post("/v1/frames", push.as_bytes());
    assert_eq!(status, 404, "{reason}");
    assert!(reason.contains("--push"), "{reason}");
}

#[test]
fn bad_flags_fail_with_the_flag_named() {
    let root = tempfile::tempdir().unwrap();
    let cases: [(&[&str], &str); 5] = [
        // Asked for explicitly, the sub-windows must fit (left out, the nearest count that
        // fits is taken: `WindowConfig::fitting` in core).
        (&["--window", "61s", "--sub-windows", "6"], "--window"),
        (&["--window", "1500us"], "--window"),
        (&["--container-regex", "("], "--container-regex"),
        (&["--poll-interval", "1ms"], "--poll-interval"),
        (&["--log-root", "/nonexistent/framescale"], "--log-root"),
    ];
    for (flags, want) in cases {
        let output = Command::new(env!("CARGO_BIN_EXE_framescale"))
            .args(["exporter", "--listen", "127.0.0.1:0", "--log-root"])
            .arg(root.path())
            .args(flags)
            .stdin(Stdio::null())
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(!output.status.success(), "{flags:?} was accepted");
        assert!(stderr.contains(want), "{flags:?}: {stderr}");
    }
}

/// An exporter fed a mix of everything it exposes, for the checks by real tools: frames of
/// Blender and of the worker, and the CPU duty of this test process.
fn exporter_with_data(root: &Path) -> Exporter {
    let processes = root.join("processes");
    std::fs::write(
        &processes,
        format!("{} render/test-0 test 1\n", std::process::id()),
    )
    .unwrap();
    let exporter = Exporter::start(
        root,
        &[
            "--device-source=cpu",
            "--device-poll-interval=100ms",
            // The old name of --local-processes still works.
            &format!("--cpu-processes={}", processes.display()),
        ],
    );
    append(
        &root.join("render_blender-0_uid-0/blender/0.log"),
        cri(&fixture("blender-3.4.1/a_cycles_3frames.log")),
    );
    append(
        &root.join("render_blender-1_uid-1/blender/0.log"),
        cri(&fixture("blender-3.4.1/g_cycles_default_denoise_error.log")),
    );
    let worker_millis: Vec<f64> = (0..100).map(|i| 15.0 + f64::from(i % 37) * 1.5).collect();
    append(
        &root.join("render_worker-0_uid-2/worker/0.log"),
        cri(&frame_lines(&worker_millis)),
    );
    wait_for_frames(&exporter, "worker-0", "worker", 100.0);
    wait_for_frames(&exporter, "blender-0", "blender", 3.0);
    wait_for(
        "the test process's CPU duty",
        Duration::from_secs(10),
        || {
            exporter.metrics().series(
                DUTY,
                "render",
                "test-0",
                "test",
                r#"device="cpu",uuid="cpu",measure="cpu_time""#,
            )
        },
    );
    exporter
}

const DUTY: &str = "framescale_gpu_duty_cycle_ratio";

/// A process burning a whole core, registered with one CPU, reads about 1; a registered PID
/// that is gone gets no value and is counted.
#[test]
fn the_cpu_duty_of_registered_processes_is_served() {
    let root = tempfile::tempdir().unwrap();
    let mut burner = Command::new("sh")
        .args(["-c", "while :; do :; done"])
        .stdin(Stdio::null())
        .spawn()
        .unwrap();
    let processes = root.path().join("processes");
    std::fs::write(
        &processes,
        format!(
            "{} render/busy-0 worker 1\n999999999 render/gone-0 worker\n",
            burner.id()
        ),
    )
    .unwrap();
    let exporter = Exporter::start(
        root.path(),
        &[
            "--device-source=cpu",
            "--device-poll-interval=500ms",
            &format!("--local-processes={}", processes.display()),
        ],
    );
    let busy = |m: &Metrics| {
        m.series(
            DUTY,
            "render",
            "busy-0",
            "worker",
            r#"device="cpu",uuid="cpu",measure="cpu_time""#,
        )
    };
    let duty = wait_for("the burner's duty", Duration::from_secs(10), || {
        busy(&exporter.metrics())
    });
    let _ = burner.kill();
    let _ = burner.wait();
    let metrics = exporter.metrics();
    // The burner shares 2 cores with the other tests: it gets most of one, not all.
    assert!(
        duty > 0.5 && duty <= 1.0,
        "a busy loop read {duty}\n{}",
        metrics.0
    );
    assert!(metrics.0.contains(r#"framescale_gpu_memory_used_bytes{namespace="render",pod="busy-0",container="worker",device="cpu",uuid="cpu"}"#));
    assert!(
        !metrics.0.contains(r#"pod="gone-0""#),
        "a gone process has no value"
    );
    assert!(
        metrics
            .value(r#"framescale_exporter_device_errors_total{reason="process_gone"}"#)
            .unwrap()
            >= 1.0
    );
    // Once the burner is gone its reading goes too, at the next poll.
    wait_for(
        "the burner's reading to go",
        Duration::from_secs(10),
        || busy(&exporter.metrics()).is_none().then_some(()),
    );
}

#[test]
fn promtool_accepts_the_exposition() {
    let root = tempfile::tempdir().unwrap();
    let exporter = exporter_with_data(root.path());
    let text = exporter.metrics().0;
    let mut promtool = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool is not installed: run ./scripts/test, which installs Debian's prometheus package");
    std::io::Write::write_all(&mut promtool.stdin.take().unwrap(), text.as_bytes()).unwrap();
    let output = promtool.wait_with_output().unwrap();
    assert!(
        output.status.success(),
        "promtool check metrics failed:\n{}{}\n--- exposition ---\n{text}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

#[test]
fn prometheus_scrapes_the_p95_the_exporter_computed() {
    let root = tempfile::tempdir().unwrap();
    let exporter = exporter_with_data(root.path());
    let prometheus = Prometheus::start(&[exporter.addr]);
    let results = wait_for("per-pod P95 in Prometheus", Duration::from_secs(40), || {
        let results = prometheus.query(r#"framescale_frame_duration_seconds{quantile="0.95"}"#);
        (results.len() == 2).then_some(results)
    });
    let metrics = exporter.metrics();
    let worker_millis: Vec<f64> = (0..100).map(|i| 15.0 + f64::from(i % 37) * 1.5).collect();
    let mut pods = Vec::new();
    for result in &results {
        let pod = result["metric"]["pod"].as_str().unwrap().to_owned();
        let container = result["metric"]["container"].as_str().unwrap();
        let value: f64 = result["value"][1].as_str().unwrap().parse().unwrap();
        let from_exporter = metrics.quantile("render", &pod, container, "0.95").unwrap();
        assert!(
            (value - from_exporter).abs() < 1e-12,
            "{pod}: Prometheus has {value}, the exporter {from_exporter}"
        );
        let want = if pod == "worker-0" {
            nearest_rank(&worker_millis, 0.95) / 1000.0
        } else {
            0.220
        };
        assert_hdr_close(value, want, &pod);
        pods.push(pod);
    }
    pods.sort();
    assert_eq!(
        pods,
        ["blender-0", "worker-0"],
        "blender-1 rendered no frame, so it has no P95"
    );
    let up = prometheus.query(r#"up{job="framescale-exporter"}"#);
    assert_eq!(up[0]["value"][1], "1");
}

/// On this machine, which has no GPU: `auto` (the default) starts, logs why GPU metrics are off
/// and which source runs instead, counts the missing NVML once, and serves frames; an explicit
/// `--device-source nvml` starts too, serves frames, and keeps saying NVML is unavailable.
#[test]
fn without_a_gpu_the_exporter_says_why_and_serves_frames() {
    if Path::new("/dev/nvidiactl").exists() {
        eprintln!("skipped: this machine has an NVIDIA driver");
        return;
    }
    let push = r#"{"namespace":"render","pod":"cpu-only-0","container":"worker","duration_ms":25}"#;
    for (flags, source) in [
        (&["--push"][..], "cpu"),
        (
            &["--push", "--device-source", "auto", "--cgroup-root", "none"][..],
            "none",
        ),
        (&["--push", "--device-source", "nvml"][..], "nvml"),
    ] {
        let root = tempfile::tempdir().unwrap();
        let exporter = Exporter::start(root.path(), flags);
        assert_eq!(exporter.post("/v1/frames", push.as_bytes()).0, 200);
        let metrics = wait_for("a device poll or two", WAIT, || {
            let metrics = exporter.metrics();
            let unavailable = metrics
                .value(r#"framescale_exporter_device_errors_total{reason="nvml_unavailable"}"#)
                .filter(|n| *n >= 1.0);
            unavailable.map(|_| metrics)
        });
        assert_eq!(
            metrics.value(&format!(
                r#"framescale_exporter_device_source_info{{source="{source}"}}"#
            )),
            Some(1.0),
            "{flags:?}"
        );
        assert_eq!(
            frames_ok(&metrics, "cpu-only-0", "worker"),
            1.0,
            "{flags:?}"
        );
        assert!(
            !metrics.0.contains(r#"device="gpu""#),
            "no GPU series without a GPU: {flags:?}"
        );
        // Asked for NVML and without it: not ready, with the reason, and a gauge at 0; `auto`
        // fell back on purpose and is ready.
        let (ready, reason) = exporter.get("/readyz");
        let up = metrics.value(&format!(
            r#"framescale_exporter_device_source_up{{source="{source}"}}"#
        ));
        if source == "nvml" {
            assert_eq!(ready, 503, "{reason}");
            assert!(reason.contains("libnvidia-ml.so.1"), "{reason}");
            assert_eq!(up, Some(0.0));
        } else {
            assert_eq!(ready, 200, "{flags:?}: {reason}");
            assert_eq!(up, (source == "cpu").then_some(1.0), "{flags:?}");
        }
        let log = exporter.log();
        assert!(
            log.contains("libnvidia-ml.so.1"),
            "{flags:?}: the log names what is missing:\n{log}"
        );
        assert!(
            log.contains(&format!("source=\"{source}\"")),
            "{flags:?}: the log says which source runs:\n{log}"
        );
        assert!(exporter.terminate().success());
    }
}

/// What users waited: a worker's frames with their queue times and its refusals (the worker's
/// own frame lines), and a Blender pod that reports no queue time, whose latency is its render
/// time and says so.
#[test]
fn latency_is_queue_plus_render_and_refusals_are_late() {
    let root = tempfile::tempdir().unwrap();
    let exporter = Exporter::start(root.path(), &[]);
    // 40 frames of 20 ms that waited 0..39 ms, then 1 refused: latencies 20..59 ms and an hour.
    let mut lines = String::new();
    for i in 0..40 {
        let _ = writeln!(
            lines,
            "framescale.frame frame={i} duration_ms=20 queue_ms={i} outcome=ok"
        );
    }
    lines.push_str("framescale.frame frame=40 queue_ms=0 outcome=refused\n");
    append(
        &root.path().join("render_worker-0_uid-0/worker/0.log"),
        cri(&lines),
    );
    append(
        &root.path().join("render_blender-0_uid-1/blender/0.log"),
        cri(&fixture("blender-3.4.1/a_cycles_3frames.log")),
    );
    wait_for_frames(&exporter, "worker-0", "worker", 40.0);
    wait_for_frames(&exporter, "blender-0", "blender", 3.0);
    let metrics = exporter.metrics();
    let latency = |pod: &str, container: &str, measure: &str, q: &str| {
        metrics.series(
            "framescale_frame_latency_seconds",
            "render",
            pod,
            container,
            &format!(r#"measure="{measure}",quantile="{q}""#),
        )
    };
    let latencies: Vec<f64> = (0..40).map(|i| (20.0 + f64::from(i)) / 1000.0).collect();
    // 41 frames: the P95 is rank 39, a frame that waited 38 ms; the P99 is the refusal's hour.
    let p95 = latency("worker-0", "worker", "queue_and_render", "0.95").unwrap();
    assert_hdr_close(
        p95,
        nearest_rank(&latencies, 39.0 / 40.0),
        "worker P95 latency",
    );
    let p99 = latency("worker-0", "worker", "queue_and_render", "0.99").unwrap();
    assert!(
        p99 >= 3600.0,
        "a refused frame is later than any target: {p99}"
    );
    assert_eq!(
        metrics.series(
            "framescale_frames_total",
            "render",
            "worker-0",
            "worker",
            r#"outcome="refused""#
        ),
        Some(1.0)
    );
    assert_eq!(
        metrics.series(
            "framescale_frame_latency_seconds_count",
            "render",
            "worker-0",
            "worker",
            r#"measure="queue_and_render""#
        ),
        Some(41.0)
    );
    // Render time is not latency: the worker's render P95 is 20 ms.
    let render = metrics
        .quantile("render", "worker-0", "worker", "0.95")
        .unwrap();
    assert_hdr_close(render, 0.020, "worker P95 render time");
    // Blender: latency = render time, measure="render".
    let blender_render = metrics
        .quantile("render", "blender-0", "blender", "0.95")
        .unwrap();
    let blender_latency = latency("blender-0", "blender", "render", "0.95").unwrap();
    assert!((blender_latency - blender_render).abs() < 1e-9);
    assert_eq!(
        latency("blender-0", "blender", "queue_and_render", "0.95"),
        None
    );
}
