//! The Grafana dashboards and the alerts, checked with real tools: the dashboards' JSON is what
//! `scripts/dashboards` writes and has what Grafana needs to load it; every PromQL expression
//! in them (template variables substituted) and in the rules passes `promtool check rules`; the
//! alerts pass their unit tests (`promtool test rules`); and every expression over framescale's
//! own series returns data from Debian's Prometheus scraping a real exporter, fed with fixture
//! logs and measuring CPU duty, and a real adapter answering requests from it. Expressions over
//! kube-state-metrics, cAdvisor or kube-apiserver series cannot have data here and are checked
//! for syntax only.

mod support;

use std::collections::BTreeSet;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use serde_json::Value;
use support::{Adapter, Exporter, Prometheus, append, cri, fixture, serving_certificate, wait_for};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

const RULES: &str = "charts/framescale/files/alerts/framescale.rules.yml";

/// The namespace and pods the test's exporter reads: a Deployment `render`'s pods.
const NAMESPACE: &str = "demo";
const PODS: [&str; 2] = ["render-7d9f8b-abcde", "render-7d9f8b-fghij"];

/// The dashboards, by file name.
fn dashboards() -> Vec<(String, Value)> {
    let dir = root().join("dashboards");
    let mut names: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| Path::new(n).extension().is_some_and(|e| e == "json"))
        .collect();
    names.sort();
    names
        .into_iter()
        .map(|name| {
            let text = std::fs::read_to_string(dir.join(&name)).unwrap();
            let json = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{name}: {e}"));
            (name, json)
        })
        .collect()
}

/// Every panel target's expression, with the template variables as Grafana would fill them
/// for the test's workload: `(where, expr)`.
fn expressions() -> Vec<(String, String)> {
    let mut out = Vec::new();
    for (name, dashboard) in dashboards() {
        for panel in dashboard["panels"].as_array().unwrap() {
            for target in panel["targets"].as_array().unwrap() {
                let expr = target["expr"].as_str().unwrap();
                let filled = expr
                    .replace("$__rate_interval", "30s")
                    .replace("$namespace", NAMESPACE)
                    .replace("$workload", "render")
                    .replace("$hpa", "render")
                    .replace("$instance", ".*")
                    .replace("$frame_target_ms", "32")
                    .replace("$gpu_target_pct", "65");
                assert!(!filled.contains('$'), "{name}: a variable left in {filled}");
                let at = format!(
                    "{name} / {} / {}",
                    panel["title"].as_str().unwrap(),
                    target["refId"].as_str().unwrap()
                );
                out.push((at, filled));
            }
        }
    }
    out
}

/// Names of the series an expression reads: its words that are a metric of ours, of the
/// cluster's (kube-state-metrics, cAdvisor, kube-apiserver) or Prometheus' `up`.
fn series_names(expr: &str) -> BTreeSet<String> {
    let prefixes = ["framescale_", "kube_", "container_", "aggregator_"];
    expr.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == ':'))
        .filter(|word| *word == "up" || prefixes.iter().any(|p| word.starts_with(p)))
        .map(str::to_owned)
        .collect()
}

fn ours_only(expr: &str) -> bool {
    series_names(expr)
        .iter()
        .all(|n| n.starts_with("framescale_"))
}

fn promtool(args: &[&str], dir: &Path) -> String {
    let output = Command::new("promtool")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("promtool is not installed: run ./scripts/test");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(output.status.success(), "promtool {args:?}:\n{text}");
    text
}

#[test]
fn the_dashboards_are_what_the_script_writes() {
    let output = Command::new("python3")
        .arg(root().join("scripts/dashboards"))
        .arg("--check")
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
}

#[test]
fn the_dashboards_have_what_grafana_needs_to_load_them() {
    let dashboards = dashboards();
    let names: Vec<&str> = dashboards.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(
        names,
        [
            "adapter-health.json",
            "autoscaling.json",
            "exporter-health.json"
        ]
    );
    let mut uids = BTreeSet::new();
    for (name, d) in &dashboards {
        let uid = d["uid"].as_str().unwrap_or_else(|| panic!("{name}: uid"));
        assert!(
            uid.len() <= 40 && uids.insert(uid.to_owned()),
            "{name}: uid {uid}"
        );
        assert!(
            d["title"].as_str().is_some_and(|t| !t.is_empty()),
            "{name}: title"
        );
        assert!(
            d["schemaVersion"].as_u64().unwrap() >= 36,
            "{name}: schemaVersion"
        );
        let variables: Vec<&str> = d["templating"]["list"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v["name"].as_str().unwrap())
            .collect();
        assert_eq!(
            variables[0], "datasource",
            "{name}: a datasource variable first"
        );
        assert_eq!(d["templating"]["list"][0]["query"], "prometheus");
        if name == "autoscaling.json" {
            for want in ["namespace", "workload", "hpa"] {
                assert!(variables.contains(&want), "{name}: variable {want}");
            }
        }
        let panels = d["panels"].as_array().unwrap();
        assert!(panels.len() >= 7, "{name}: {} panels", panels.len());
        let mut ids = BTreeSet::new();
        for panel in panels {
            let title = panel["title"].as_str().unwrap();
            assert!(
                ids.insert(panel["id"].as_u64().unwrap()),
                "{name}: id of {title}"
            );
            assert_eq!(
                panel["datasource"]["uid"], "${datasource}",
                "{name}: {title}"
            );
            let unit = panel["fieldConfig"]["defaults"]["unit"].as_str().unwrap();
            assert!(!unit.is_empty(), "{name}: {title} has a unit");
            for key in ["x", "y", "w", "h"] {
                assert!(
                    panel["gridPos"][key].is_u64(),
                    "{name}: {title} gridPos.{key}"
                );
            }
            let targets = panel["targets"].as_array().unwrap();
            assert!(!targets.is_empty(), "{name}: {title} has targets");
            for t in targets {
                assert!(t["expr"].as_str().is_some_and(|e| !e.is_empty()));
                assert!(t["refId"].is_string());
                assert_eq!(t["datasource"]["uid"], "${datasource}");
            }
        }
    }
}

#[test]
fn every_expression_and_alert_passes_promtool() {
    let dir = tempfile::tempdir().unwrap();
    let mut rules = String::from("groups:\n  - name: dashboards\n    rules:\n");
    for (i, (at, expr)) in expressions().iter().enumerate() {
        let _ = writeln!(
            rules,
            "      # {at}\n      - record: framescale:dashboard_check:{i}\n        expr: {}",
            serde_json::to_string(expr).unwrap()
        );
    }
    std::fs::write(dir.path().join("dashboards.rules.yml"), rules).unwrap();
    let out = promtool(&["check", "rules", "dashboards.rules.yml"], dir.path());
    assert!(out.contains("SUCCESS"), "{out}");

    let out = promtool(&["check", "rules", RULES], &root());
    assert!(out.contains("SUCCESS: 10 rules found"), "{out}");
    let out = promtool(
        &["test", "rules", "framescale.test.yml"],
        &root().join("tests/alerts"),
    );
    assert!(out.contains("SUCCESS"), "{out}");
}

/// The rules' expressions, by alert name.
fn alert_expressions() -> Vec<(String, String)> {
    let text = std::fs::read_to_string(root().join(RULES)).unwrap();
    let rules: serde_yaml_ng::Value = serde_yaml_ng::from_str(&text).unwrap();
    rules["groups"][0]["rules"]
        .as_sequence()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["alert"].as_str().unwrap().to_owned(),
                r["expr"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

/// Series of ours that this setup cannot make, and why.
const NOT_HERE: [(&str, &str); 1] = [(
    "framescale_adapter_watches_synced",
    "only an adapter watching a Kubernetes API serves it",
)];

#[test]
fn expressions_over_our_series_return_data_from_a_real_prometheus() {
    let dir = tempfile::tempdir().unwrap();
    let logs = dir.path().join("pods");
    std::fs::create_dir_all(&logs).unwrap();
    // CPU duty of this test process for both pods, and a process that is gone (a device error).
    let processes = dir.path().join("processes");
    std::fs::write(
        &processes,
        format!(
            "{pid} {NAMESPACE}/{} worker 1\n{pid} {NAMESPACE}/{} worker 1\n999999999 {NAMESPACE}/gone worker 1\n",
            PODS[0],
            PODS[1],
            pid = std::process::id()
        ),
    )
    .unwrap();
    let exporter = Exporter::start(
        &logs,
        &[
            "--device-source=cpu",
            "--device-poll-interval=200ms",
            &format!("--local-processes={}", processes.display()),
        ],
    );
    for (i, pod) in PODS.iter().enumerate() {
        let log = logs.join(format!("{NAMESPACE}_{pod}_uid-{i}/blender/0.log"));
        append(&log, cri(&fixture("blender-3.4.1/a_cycles_3frames.log")));
        append(
            &log,
            cri(&fixture("blender-3.4.1/g_cycles_default_denoise_error.log")),
        );
    }
    let (cert, key) = serving_certificate(dir.path());
    let exporter_url = format!("http://{}/metrics", exporter.addr);
    let adapter = Adapter::start(
        &cert,
        &key,
        &["--insecure-disable-auth", "--exporter", &exporter_url],
    );
    let admin = adapter.admin.parse().unwrap();
    let prometheus = Prometheus::start(&[exporter.addr, admin]);
    let ask = |path: &str| {
        let status = Command::new("curl")
            .args(["-s", "-o", "/dev/null", "--cacert"])
            .arg(&cert)
            .arg(format!("https://{}{path}", adapter.addr))
            .status()
            .unwrap();
        assert!(status.success());
    };
    let score = format!(
        "/apis/custom.metrics.k8s.io/v1beta2/namespaces/{NAMESPACE}/pods/%2A/render_scaling_score"
    );
    // Requests over a few scrapes, so that rates and histograms have two samples.
    wait_for(
        "the adapter's requests and the frames in Prometheus",
        Duration::from_mins(1),
        || {
            ask(&score);
            ask(&score);
            ask("/apis/custom.metrics.k8s.io/v1beta2");
            let seen = |q: &str| !prometheus.query(q).is_empty();
            (seen("rate(framescale_adapter_requests_total[30s]) > 0")
                && seen("rate(framescale_frames_total[30s]) >= 0")
                && seen("framescale_exporter_device_poll_age_seconds")
                && seen("rate(framescale_exporter_device_errors_total[30s]) > 0"))
            .then_some(())
        },
    );

    let mut empty = Vec::new();
    let mut checked = 0;
    for (at, expr) in expressions() {
        if !ours_only(&expr) || NOT_HERE.iter().any(|(n, _)| expr.contains(n)) {
            continue;
        }
        checked += 1;
        if prometheus.query(&expr).is_empty() {
            empty.push(format!("{at}: {expr}"));
        }
    }
    assert!(
        empty.is_empty(),
        "no data for:\n{}\nexporter:\n{}\nadapter:\n{}",
        empty.join("\n"),
        exporter.metrics().0,
        adapter.log()
    );
    assert!(checked >= 40, "{checked} expressions over our series");

    // Each alert evaluates, and every series of ours it reads is there.
    for (alert, expr) in alert_expressions() {
        prometheus.query(&expr);
        for name in series_names(&expr) {
            if name.starts_with("framescale_") {
                let count = prometheus.query(&format!("count({{__name__=\"{name}\"}})"));
                assert!(
                    !count.is_empty(),
                    "{alert} reads {name}, which nothing serves"
                );
            }
        }
    }
}

#[test]
fn series_names_are_found_in_expressions() {
    let names = series_names(
        "sum by (pod) (rate(framescale_frames_total{a=\"b\"}[5m])) / on (pod) kube_pod_info and up{job=\"x\"} == 0 and absent(up)",
    );
    let want: BTreeSet<String> = ["framescale_frames_total", "kube_pod_info", "up"]
        .map(String::from)
        .into();
    assert_eq!(names, want);
    assert!(ours_only(
        "histogram_quantile(0.9, sum by (le) (rate(framescale_adapter_request_duration_seconds_bucket[1m])))"
    ));
    assert!(!ours_only(
        "container_memory_working_set_bytes{container=\"exporter\"}"
    ));
}
