//! The adapter as a process, over HTTPS with an rcgen certificate, reading a real exporter fed
//! with CRI-wrapped frame logs; queried with `kubectl get --raw` and checked against the values
//! the input implies, with quantities parsed by the Kubernetes Python client.

mod support;

use std::fmt::Write as _;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use framescale_adapter::testing::Ca;
use serde_json::Value;
use support::{
    Adapter, Exporter, Prometheus, PrometheusTls, adapter_command, append, assert_hdr_close, cri,
    fixture, get, nearest_rank, serving_certificate, wait_for,
};

/// An adapter with authentication off (these tests have no Kubernetes API), plus `extra`.
fn open_adapter(cert: &Path, key: &Path, extra: &[&str]) -> Adapter {
    let mut flags = extra.to_vec();
    flags.push("--insecure-disable-auth");
    Adapter::start(cert, key, &flags)
}

/// `kubectl get --raw PATH` against the adapter, trusting `ca`.
fn kubectl_raw(dir: &Path, adapter: &Adapter, ca: &Path, path: &str) -> Result<Value, String> {
    let kubeconfig = dir.join("kubeconfig");
    std::fs::write(
        &kubeconfig,
        format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: adapter\n  cluster:\n    server: https://{}\n    certificate-authority: {}\n\
             users:\n- name: anyone\n  user: {{token: unused-while-auth-is-off}}\ncontexts:\n- name: adapter\n  context: {{cluster: adapter, user: anyone}}\ncurrent-context: adapter\n",
            adapter.addr,
            ca.display()
        ),
    )
    .unwrap();
    let output = Command::new("kubectl")
        .arg("--kubeconfig")
        .arg(&kubeconfig)
        .args(["get", "--raw", path])
        .output()
        .expect("kubectl is not installed");
    if !output.status.success() {
        return Err(String::from_utf8_lossy(&output.stderr).into_owned());
    }
    serde_json::from_slice(&output.stdout).map_err(|e| e.to_string())
}

/// A metrics file with the original design's 32 ms target and 30/15/10 s holds (the defaults are
/// 100 ms and no holds), to see a hold keep a score at 1.
fn held_design(dir: &Path) -> std::path::PathBuf {
    let path = dir.join("held-design.yaml");
    std::fs::write(
        &path,
        "score: { frame_target_ms: 32, holds: { frame_bound: 30s, gpu_bound: 15s, both: 10s } }\n",
    )
    .unwrap();
    path
}

/// Parses quantities with the Kubernetes Python client's `parse_quantity`, independently of
/// framescale's formatter.
fn parse_quantities(quantities: &[String]) -> Vec<f64> {
    let python = std::env::var("FRAMESCALE_TEST_PYTHON").unwrap_or_else(|_| "python3".into());
    let script = "import sys\nfrom kubernetes.utils import parse_quantity\nfor q in sys.argv[1:]: print(float(parse_quantity(q)))";
    let output = Command::new(&python)
        .args(["-c", script])
        .args(quantities)
        .output()
        .expect("python3");
    assert!(
        output.status.success(),
        "the Kubernetes Python client is needed (./scripts/test installs it): {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout)
        .unwrap()
        .lines()
        .map(|l| l.parse().unwrap())
        .collect()
}

fn frame_lines(millis: &[f64]) -> String {
    millis.iter().fold(String::new(), |mut out, ms| {
        let _ = writeln!(out, "framescale.frame duration_ms={ms} outcome=ok");
        out
    })
}

fn items(body: &Value) -> Vec<(String, String)> {
    body["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| {
            (
                i["describedObject"]["name"].as_str().unwrap().to_owned(),
                i["value"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

#[test]
fn kubectl_reads_render_metrics_from_a_real_exporter_over_https() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("pods");
    std::fs::create_dir_all(&root).unwrap();
    let exporter = Exporter::start(&root, &[]);
    let w0: Vec<f64> = (1..=20).map(|i| 30.0 + f64::from(i) * 2.0).collect(); // P95 = 68 ms
    append(
        &root.join("render_w-0_uid-0/worker/0.log"),
        cri(&frame_lines(&w0)),
    );
    append(
        &root.join("render_w-1_uid-1/blender/0.log"),
        cri(&fixture("blender-3.4.1/b_eevee.log")),
    ); // P95 = 4810 ms
    append(
        &root.join("render_x-0_uid-2/worker/0.log"),
        cri(&frame_lines(&[10.0])),
    );

    let (cert, key) = serving_certificate(dir.path());
    let pods = dir.path().join("pods.yaml");
    std::fs::write(
        &pods,
        "pods:\n- {namespace: render, name: w-0, labels: {app: w}}\n- {namespace: render, name: w-1, labels: {app: w}}\n\
         - {namespace: render, name: w-2, labels: {app: w}}\n- {namespace: render, name: x-0, labels: {app: x}}\n\
         deployments:\n- {namespace: render, name: w, selector: app=w}\n",
    )
    .unwrap();
    let exporter_url = format!("http://{}/metrics", exporter.addr);
    let metrics_file = held_design(dir.path());
    let adapter = open_adapter(
        &cert,
        &key,
        &[
            "--pods-file",
            pods.to_str().unwrap(),
            "--exporter",
            &exporter_url,
            "--metrics-config",
            metrics_file.to_str().unwrap(),
        ],
    );

    let path = "/apis/custom.metrics.k8s.io/v1beta2/namespaces/render/pods/*/render_frame_duration_ms?labelSelector=app%3Dw";
    let body = wait_for(
        "both w pods in the adapter",
        Duration::from_secs(20),
        || {
            let body = kubectl_raw(dir.path(), &adapter, &cert, path).ok()?;
            (items(&body).len() == 2).then_some(body)
        },
    );
    assert_eq!(body["kind"], "MetricValueList");
    let got = items(&body);
    let values = parse_quantities(&got.iter().map(|(_, q)| q.clone()).collect::<Vec<_>>());
    assert_eq!(
        (got[0].0.as_str(), got[1].0.as_str()),
        ("w-0", "w-1"),
        "w-2 has no data and is left out"
    );
    assert_hdr_close(
        values[0] / 1000.0,
        nearest_rank(&w0, 0.95) / 1000.0,
        "w-0 P95",
    );
    assert_hdr_close(values[1] / 1000.0, 4.810, "w-1 P95");

    // v1beta1 shape of the same data.
    let v1 = kubectl_raw(
        dir.path(),
        &adapter,
        &cert,
        &path.replace("v1beta2", "v1beta1"),
    )
    .unwrap();
    assert_eq!(v1["items"][0]["metricName"], "render_frame_duration_ms");
    assert_eq!(items(&v1), got);

    // The score: no GPU signal yet, so each pod is scored on its frame ratio alone (its latency,
    // here its render time: these lines carry no queue time) and, its frame-bound regime not
    // having held 30 s, held at 1.0 when over target.
    let score = kubectl_raw(
        dir.path(),
        &adapter,
        &cert,
        "/apis/custom.metrics.k8s.io/v1beta2/namespaces/render/pods/%2A/render_scaling_score",
    )
    .unwrap();
    let scores = items(&score);
    assert_eq!(
        scores.iter().map(|(n, _)| n.as_str()).collect::<Vec<_>>(),
        ["w-0", "w-1", "x-0"]
    );
    let parsed = parse_quantities(&scores.iter().map(|(_, q)| q.clone()).collect::<Vec<_>>());
    assert_eq!(parsed[0..2], [1.0, 1.0]);
    assert!(
        (parsed[2] - 10.0 / 32.0).abs() < 0.002,
        "x-0: {}",
        parsed[2]
    );

    // A Deployment as an Object metric, and discovery.
    let deployment = kubectl_raw(dir.path(), &adapter, &cert, "/apis/custom.metrics.k8s.io/v1beta2/namespaces/render/deployments.apps/w/render_scaling_score").unwrap();
    assert_eq!(items(&deployment), [("w".to_owned(), "1".to_owned())]);
    let discovery = kubectl_raw(
        dir.path(),
        &adapter,
        &cert,
        "/apis/custom.metrics.k8s.io/v1beta1",
    )
    .unwrap();
    assert_eq!(discovery["kind"], "APIResourceList");

    // Errors reach kubectl as Status messages.
    let err = kubectl_raw(
        dir.path(),
        &adapter,
        &cert,
        "/apis/custom.metrics.k8s.io/v1beta2/namespaces/render/pods/*/nope",
    )
    .unwrap_err();
    assert!(
        err.contains("the server could not find the metric nope for pods"),
        "{err}"
    );

    // The adapter's own metrics count what was asked, on the admin port.
    let (status, text) = get(&format!("http://{}/metrics", adapter.admin));
    assert_eq!(status, 200);
    assert!(
        text.contains(r#"framescale_adapter_requests_total{route="pods",code="200"}"#),
        "{text}"
    );
    assert!(
        text.contains(r#"framescale_adapter_requests_total{route="pods",code="404"} 1"#),
        "{text}"
    );
    assert!(
        text.contains("framescale_adapter_cache_requests_total{cache=\"signals\",result=\"miss\"}"),
        "{text}"
    );
}

#[test]
fn the_adapter_refuses_to_start_without_a_kubernetes_api_or_certificates() {
    let cases: [(&[&str], &str); 3] = [
        (
            &[
                "--self-signed",
                "--exporter",
                "http://127.0.0.1:1/metrics",
                "--kubeconfig",
                "/nonexistent/kubeconfig",
            ],
            "--kubeconfig /nonexistent/kubeconfig",
        ),
        (
            &[
                "--insecure-disable-auth",
                "--exporter",
                "http://127.0.0.1:1/metrics",
            ],
            "--self-signed",
        ),
        (
            &[
                "--insecure-disable-auth",
                "--self-signed",
                "--exporter",
                "127.0.0.1:1",
            ],
            "--exporter",
        ),
    ];
    for (flags, want) in cases {
        let output = adapter_command().args(flags).output().unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(!output.status.success(), "{flags:?} started");
        assert!(stderr.contains(want), "{flags:?}: {stderr}");
    }
}

#[test]
#[allow(clippy::too_many_lines, reason = "one scenario, told in order")]
fn the_prometheus_backend_serves_what_a_real_prometheus_scraped() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("pods");
    std::fs::create_dir_all(&root).unwrap();
    let exporter = Exporter::start(&root, &[]);
    let w0: Vec<f64> = (1..=40).map(|i| 20.0 + f64::from(i)).collect(); // P95 = 58 ms
    append(
        &root.join("render_w-0_uid-0/worker/0.log"),
        cri(&frame_lines(&w0)),
    );
    append(
        &root.join("render_w-1_uid-1/blender/0.log"),
        cri(&fixture("blender-3.4.1/a_cycles_3frames.log")),
    ); // P95 = 220 ms
    let prometheus = Prometheus::start(&[exporter.addr]);
    wait_for("both pods in Prometheus", Duration::from_secs(40), || {
        (prometheus
            .query(r#"framescale_frame_duration_seconds{quantile="0.95",namespace="render"}"#)
            .len()
            == 2)
            .then_some(())
    });
    let (cert, key) = serving_certificate(dir.path());
    let prometheus_url = format!("http://{}", prometheus.addr);
    let held = held_design(dir.path());
    let adapter = open_adapter(
        &cert,
        &key,
        &[
            "--prometheus-url",
            &prometheus_url,
            "--metrics-config",
            held.to_str().unwrap(),
        ],
    );
    let path =
        "/apis/custom.metrics.k8s.io/v1beta2/namespaces/render/pods/%2A/render_frame_duration_ms";
    let body = kubectl_raw(dir.path(), &adapter, &cert, path).unwrap();
    let got = items(&body);
    assert_eq!(
        got.iter().map(|(n, _)| n.as_str()).collect::<Vec<_>>(),
        ["w-0", "w-1"],
        "{body}"
    );
    let values = parse_quantities(&got.iter().map(|(_, q)| q.clone()).collect::<Vec<_>>());
    assert_hdr_close(
        values[0] / 1000.0,
        nearest_rank(&w0, 0.95) / 1000.0,
        "w-0 P95 via Prometheus",
    );
    assert_hdr_close(values[1] / 1000.0, 0.220, "w-1 P95 via Prometheus");
    // The timestamp is the data's (the scrape), not the request's: within the last minute.
    let stamp = body["items"][0]["timestamp"].as_str().unwrap();
    assert!(stamp.ends_with('Z') && stamp.len() == 20, "{stamp}");

    // Over target for less than the 30 s hold: the score is held at 1.0 (frame-only pods).
    let score = kubectl_raw(
        dir.path(),
        &adapter,
        &cert,
        &path.replace("render_frame_duration_ms", "render_scaling_score"),
    )
    .unwrap();
    assert_eq!(
        items(&score),
        [
            ("w-0".to_owned(), "1".to_owned()),
            ("w-1".to_owned(), "1".to_owned())
        ]
    );

    // With 2 s holds, once Prometheus' history shows the frame ratio over target for 2 s the
    // hold is met and the frame-only score is the ratio itself: 58.03 / 32 → 1814m (HDR top of
    // bucket, rounded up), 220.03 / 32 → 6876m.
    let metrics_file = dir.path().join("metrics.yaml");
    std::fs::write(
        &metrics_file,
        "score: { frame_target_ms: 32, holds: { frame_bound: 2s, gpu_bound: 2s, both: 2s, max_gap: 2s } }\n",
    )
    .unwrap();
    let with_short_holds = || {
        open_adapter(
            &cert,
            &key,
            &[
                "--prometheus-url",
                &prometheus_url,
                "--metrics-config",
                metrics_file.to_str().unwrap(),
            ],
        )
    };
    let short_holds = with_short_holds();
    let score_path = path.replace("render_frame_duration_ms", "render_scaling_score");
    let held = wait_for("the 2 s hold to be met", Duration::from_secs(20), || {
        let body = kubectl_raw(dir.path(), &short_holds, &cert, &score_path).ok()?;
        let scores = items(&body);
        (scores.len() == 2 && scores.iter().all(|(_, v)| v != "1")).then_some(scores)
    });
    let held_values = parse_quantities(&held.iter().map(|(_, q)| q.clone()).collect::<Vec<_>>());
    assert!(
        (held_values[0] - values[0] / 32.0).abs() < 0.002,
        "{held:?}"
    );
    assert!(
        (held_values[1] - values[1] / 32.0).abs() < 0.002,
        "{held:?}"
    );

    // A second replica, started only now (the chart's production example runs two): its holds
    // are Prometheus' history, not its own, so it answers as the first at once. A direct-backend
    // replica would start its holds over, which is why the chart refuses direct replicas with
    // holds.
    let second = with_short_holds();
    let from_second = items(&kubectl_raw(dir.path(), &second, &cert, &score_path).unwrap());
    assert_eq!(from_second, held, "two replicas, one answer");

    // Prometheus gone: once the answer cached for the TTL (2 s) has expired, the adapter
    // answers 503 instead of inventing values.
    drop(prometheus);
    let err = wait_for("a 503 without Prometheus", Duration::from_secs(10), || {
        kubectl_raw(dir.path(), &adapter, &cert, path).err()
    });
    assert!(
        err.contains("ServiceUnavailable") || err.contains("unavailable"),
        "{err}"
    );
}

/// A hold is made of samples: a series that stops (no staleness marker, as behind remote write
/// or federation) or has a gap longer than `max_gap` does not complete it; only the series
/// sampled all the way is scored past 1.
#[test]
fn prometheus_holds_are_made_of_samples() {
    let now = support::now_millis() / 1000;
    let mut history = String::from("# TYPE framescale_frame_latency_seconds gauge\n");
    let mut sample = |pod: &str, from: i64, to: i64, skip: std::ops::Range<i64>| {
        for offset in (from..=to).filter(|o| !skip.contains(o)) {
            let _ = writeln!(
                history,
                r#"framescale_frame_latency_seconds{{namespace="render",pod="{pod}",container="worker",quantile="0.95"}} 0.125 {}"#,
                now.cast_signed() + offset
            );
        }
    };
    sample("live", -120, 600, 0..0);
    sample("stopped", -120, -5, 0..0);
    sample("gap", -120, 600, -6..0);
    history.push_str("# EOF\n");
    let prometheus = Prometheus::start_with_history(&history);
    let dir = tempfile::tempdir().unwrap();
    let metrics_file = dir.path().join("metrics.yaml");
    std::fs::write(
        &metrics_file,
        "score: { holds: { frame_bound: 10s, max_gap: 3s } }\n",
    )
    .unwrap();
    let (cert, key) = serving_certificate(dir.path());
    let adapter = open_adapter(
        &cert,
        &key,
        &[
            "--prometheus-url",
            &format!("http://{}", prometheus.addr),
            "--metrics-config",
            metrics_file.to_str().unwrap(),
        ],
    );
    let path =
        "/apis/custom.metrics.k8s.io/v1beta2/namespaces/render/pods/%2A/render_scaling_score";
    let body = kubectl_raw(dir.path(), &adapter, &cert, path).unwrap();
    let elapsed = support::now_millis() / 1000 - now;
    assert!(
        elapsed < 12,
        "the gap must lie within the hold: {elapsed} s"
    );
    let got = items(&body);
    let names: Vec<&str> = got.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names, ["gap", "live", "stopped"], "{body}");
    let scores = parse_quantities(&got.iter().map(|(_, q)| q.clone()).collect::<Vec<_>>());
    // 125 ms against 100: only the pod sampled throughout is past its hold.
    assert_eq!(got[0].1, "1", "a 6 s gap breaks the hold: {body}");
    assert!((scores[1] - 1.25).abs() < 0.002, "{body}");
    assert_eq!(
        got[2].1, "1",
        "a series that stopped 5 s ago holds nothing: {body}"
    );
}

#[test]
fn the_prometheus_backend_verifies_an_https_prometheus() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("pods");
    std::fs::create_dir_all(&root).unwrap();
    let exporter = Exporter::start(&root, &[]);
    append(
        &root.join("render_w-0_uid-0/worker/0.log"),
        cri("framescale.frame duration_ms=25 outcome=ok"),
    );
    let ca = Ca::new("prometheus-ca");
    let (prometheus_cert, prometheus_key) = ca.server(&["127.0.0.1", "localhost"]);
    let paths =
        ["prometheus.crt", "prometheus.key", "prometheus-ca.crt"].map(|f| dir.path().join(f));
    for (path, pem) in paths
        .iter()
        .zip([&prometheus_cert, &prometheus_key, &ca.pem])
    {
        std::fs::write(path, pem).unwrap();
    }
    let tls = PrometheusTls {
        cert: &paths[0],
        key: &paths[1],
        ca: &paths[2],
        client_ca: None,
    };
    let prometheus = Prometheus::start_with(&[exporter.addr], Some(&tls));
    let (cert, key) = serving_certificate(dir.path());
    let prometheus_url = format!("https://{}", prometheus.addr);
    let ca_file = paths[2].to_str().unwrap();
    let adapter = open_adapter(
        &cert,
        &key,
        &[
            "--prometheus-url",
            &prometheus_url,
            "--prometheus-ca-file",
            ca_file,
        ],
    );
    let path =
        "/apis/custom.metrics.k8s.io/v1beta2/namespaces/render/pods/%2A/render_frame_duration_ms";
    let served = wait_for("the value through HTTPS", Duration::from_secs(30), || {
        let body = kubectl_raw(dir.path(), &adapter, &cert, path).ok()?;
        let got = items(&body);
        (!got.is_empty()).then_some(got)
    });
    assert_eq!(served[0].0, "w-0");
    assert_hdr_close(
        parse_quantities(&[served[0].1.clone()])[0] / 1000.0,
        0.025,
        "w-0 P95 via HTTPS Prometheus",
    );

    // Trusting the system's CAs instead, the adapter refuses Prometheus' certificate: 503,
    // never a value.
    let untrusting = open_adapter(&cert, &key, &["--prometheus-url", &prometheus_url]);
    let err = kubectl_raw(dir.path(), &untrusting, &cert, path).unwrap_err();
    assert!(
        err.contains("ServiceUnavailable") || err.contains("unavailable"),
        "{err}"
    );
    assert!(err.contains("invalid peer certificate"), "{err}");
}

/// An exporter over a temporary log root with one frame of pod `render/w-0`.
fn exporter_with_one_pod(dir: &Path) -> Exporter {
    let root = dir.join("pods");
    std::fs::create_dir_all(&root).unwrap();
    let exporter = Exporter::start(&root, &[]);
    append(
        &root.join("render_w-0_uid-0/worker/0.log"),
        cri("framescale.frame duration_ms=25 outcome=ok"),
    );
    exporter
}

const FRAME_PATH: &str =
    "/apis/custom.metrics.k8s.io/v1beta2/namespaces/render/pods/%2A/render_frame_duration_ms";

fn path_text(path: &Path) -> String {
    path.to_str().unwrap().to_owned()
}

/// A Prometheus that requires client certificates (its own `--web.config.file`): the adapter
/// answers with `--prometheus-client-cert-file`, 503 without it.
#[test]
fn the_prometheus_backend_presents_a_client_certificate() {
    let dir = tempfile::tempdir().unwrap();
    let exporter = exporter_with_one_pod(dir.path());
    let (server_ca, client_ca) = (Ca::new("prometheus-ca"), Ca::new("clients-ca"));
    let (prometheus_cert, prometheus_key) = server_ca.server(&["127.0.0.1", "localhost"]);
    let (_, client_cert, client_key) = client_ca.client("framescale-adapter", &[]);
    let write = |name: &str, pem: &str| {
        let path = dir.path().join(name);
        std::fs::write(&path, pem).unwrap();
        path
    };
    let files = [
        write("prometheus.crt", &prometheus_cert),
        write("prometheus.key", &prometheus_key),
        write("prometheus-ca.crt", &server_ca.pem),
        write("clients-ca.crt", &client_ca.pem),
        write("adapter-client.crt", &client_cert),
        write("adapter-client.key", &client_key),
    ];
    let tls = PrometheusTls {
        cert: &files[0],
        key: &files[1],
        ca: &files[2],
        client_ca: Some(&files[3]),
    };
    let mutual = Prometheus::start_with(&[exporter.addr], Some(&tls));
    let (cert, key) = serving_certificate(dir.path());
    let url = format!("https://{}", mutual.addr);
    let ca = path_text(&files[2]);
    let with_cert = open_adapter(
        &cert,
        &key,
        &[
            "--prometheus-url",
            &url,
            "--prometheus-ca-file",
            &ca,
            "--prometheus-client-cert-file",
            &path_text(&files[4]),
            "--prometheus-client-key-file",
            &path_text(&files[5]),
        ],
    );
    let served = wait_for(
        "a value through mutual TLS",
        Duration::from_secs(30),
        || {
            let got = items(&kubectl_raw(dir.path(), &with_cert, &cert, FRAME_PATH).ok()?);
            (!got.is_empty()).then_some(got)
        },
    );
    assert_eq!(served[0].0, "w-0");
    let without = open_adapter(
        &cert,
        &key,
        &["--prometheus-url", &url, "--prometheus-ca-file", &ca],
    );
    let err = kubectl_raw(dir.path(), &without, &cert, FRAME_PATH).unwrap_err();
    assert!(err.contains("ServiceUnavailable"), "{err}");
}

/// A Prometheus behind a proxy that requires a bearer token, as kube-rbac-proxy does: the adapter
/// answers with `--prometheus-bearer-token-file`, 503 without it, and follows a rotated token
/// with no restart.
#[test]
fn the_prometheus_backend_sends_a_bearer_token_and_follows_its_rotation() {
    let dir = tempfile::tempdir().unwrap();
    let exporter = exporter_with_one_pod(dir.path());
    let plain = Prometheus::start(&[exporter.addr]);
    let accepted = std::sync::Arc::new(std::sync::Mutex::new("first-token".to_owned()));
    let proxy = bearer_proxy(plain.addr, accepted.clone());
    let token = dir.path().join("token");
    std::fs::write(&token, "first-token\n").unwrap();
    let (cert, key) = serving_certificate(dir.path());
    let proxied = format!("http://{proxy}");
    let with_token = open_adapter(
        &cert,
        &key,
        &[
            "--prometheus-url",
            &proxied,
            "--prometheus-bearer-token-file",
            &path_text(&token),
            "--cache-ttl",
            "0s",
        ],
    );
    let served = |adapter: &Adapter| {
        kubectl_raw(dir.path(), adapter, &cert, FRAME_PATH)
            .ok()
            .filter(|body| !items(body).is_empty())
            .map(|_| ())
    };
    wait_for(
        "a value through the bearer proxy",
        Duration::from_secs(30),
        || served(&with_token),
    );
    // Without the token the proxy answers 401 (plain text, as kube-rbac-proxy does): a 503,
    // never a value.
    let no_token = open_adapter(&cert, &key, &["--prometheus-url", &proxied]);
    let err = kubectl_raw(dir.path(), &no_token, &cert, FRAME_PATH).unwrap_err();
    assert!(err.contains("ServiceUnavailable"), "{err}");
    // The token rotates: the proxy takes only the new one, and so does the adapter.
    *accepted.lock().unwrap() = "second-token".to_owned();
    std::fs::write(&token, "second-token\n").unwrap();
    let file = std::fs::File::options().append(true).open(&token).unwrap();
    file.set_modified(std::time::SystemTime::now() + Duration::from_secs(1))
        .unwrap();
    wait_for(
        "a value with the rotated token",
        Duration::from_secs(30),
        || served(&with_token),
    );
}

/// An HTTP proxy to `prometheus` that answers 401 unless `Authorization: Bearer <accepted>`.
fn bearer_proxy(
    prometheus: std::net::SocketAddr,
    accepted: std::sync::Arc<std::sync::Mutex<String>>,
) -> std::net::SocketAddr {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    listener.set_nonblocking(true).unwrap();
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async move {
            let app = axum::Router::new().fallback(
                move |uri: axum::http::Uri, headers: axum::http::HeaderMap| {
                    let accepted = accepted.lock().unwrap().clone();
                    async move {
                        let given = headers
                            .get(axum::http::header::AUTHORIZATION)
                            .and_then(|v| v.to_str().ok())
                            .unwrap_or_default()
                            .to_owned();
                        let json = [(axum::http::header::CONTENT_TYPE, "application/json")];
                        if given != format!("Bearer {accepted}") {
                            return (
                                axum::http::StatusCode::UNAUTHORIZED,
                                json,
                                "Unauthorized".to_owned(),
                            );
                        }
                        let url = format!("http://{prometheus}{uri}");
                        let body = tokio::task::spawn_blocking(move || support::get(&url).1)
                            .await
                            .unwrap();
                        (axum::http::StatusCode::OK, json, body)
                    }
                },
            );
            let listener = tokio::net::TcpListener::from_std(listener).unwrap();
            axum::serve(listener, app).await.unwrap();
        });
    });
    addr
}
