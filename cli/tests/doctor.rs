//! `framescale doctor` against a fake kube-apiserver that answers what a real one answers, JSON
//! for JSON: a healthy HPA, then each failure the doctor names — an APIService that fails its
//! discovery check (TLS, network), no adapter endpoints, a metric the adapter does not serve,
//! the adapter's backend down, pods without fresh values on nodes with no or an unready
//! exporter, a target that is not a quantity, credentials refused, and a 1.20 cluster with only
//! autoscaling/v2beta2.

#![allow(
    clippy::needless_pass_by_value,
    reason = "the JSON builders take what they embed"
)]

mod support;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::Path;
use std::process::Command;
use std::sync::Arc;

use axum::http::{StatusCode, Uri};
use axum::response::IntoResponse as _;
use serde_json::{Value, json};

const NS: &str = "render";
const SELECTOR: &str = "app.kubernetes.io%2Fname%3Drender";
const HPA_V2: &str = "/apis/autoscaling/v2/namespaces/render/horizontalpodautoscalers/render";
const HPA_V2BETA2: &str =
    "/apis/autoscaling/v2beta2/namespaces/render/horizontalpodautoscalers/render";
const V1BETA2: &str = "/apis/apiregistration.k8s.io/v1/apiservices/v1beta2.custom.metrics.k8s.io";
const V1BETA1: &str = "/apis/apiregistration.k8s.io/v1/apiservices/v1beta1.custom.metrics.k8s.io";
const DISCOVERY: &str = "/apis/custom.metrics.k8s.io/v1beta2";
const EXPORTERS: &str = "/api/v1/pods?labelSelector=app.kubernetes.io%2Fcomponent%3Dexporter%2Capp.kubernetes.io%2Fname%3Dframescale";

fn score_path(metric: &str) -> String {
    format!(
        "/apis/custom.metrics.k8s.io/v1beta2/namespaces/render/pods/%2A/{metric}?labelSelector={SELECTOR}"
    )
}

fn pods_path() -> String {
    format!("/api/v1/namespaces/render/pods?labelSelector={SELECTOR}")
}

/// A `metav1.Status` as the kube-apiserver writes it.
fn status(code: u16, reason: &str, message: &str) -> (u16, Value) {
    (
        code,
        json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure", "message": message, "reason": reason, "code": code}),
    )
}

fn condition(kind: &str, status: &str, reason: &str, message: &str) -> Value {
    json!({"type": kind, "status": status, "lastTransitionTime": "2026-12-03T10:00:00Z", "reason": reason, "message": message})
}

fn hpa(api_version: &str, metric: &str, target: &str, conditions: Vec<Value>) -> Value {
    json!({
        "apiVersion": api_version, "kind": "HorizontalPodAutoscaler",
        "metadata": {"name": "render", "namespace": NS, "uid": "5f0c3d9e-1", "resourceVersion": "4242"},
        "spec": {
            "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "render"},
            "minReplicas": 1, "maxReplicas": 10,
            "metrics": [{"type": "Pods", "pods": {"metric": {"name": metric}, "target": {"type": "AverageValue", "averageValue": target}}}]
        },
        "status": {"currentReplicas": 3, "desiredReplicas": 3, "conditions": conditions}
    })
}

fn healthy_conditions() -> Vec<Value> {
    vec![
        condition(
            "AbleToScale",
            "True",
            "ReadyForNewScale",
            "recommended size matches current size",
        ),
        condition(
            "ScalingActive",
            "True",
            "ValidMetricFound",
            "the HPA was able to successfully calculate a replica count from pods metric render_scaling_score",
        ),
        condition(
            "ScalingLimited",
            "False",
            "DesiredWithinRange",
            "the desired count is within the acceptable range",
        ),
    ]
}

fn api_service(version: &str, available: Value) -> Value {
    json!({
        "apiVersion": "apiregistration.k8s.io/v1", "kind": "APIService",
        "metadata": {"name": format!("{version}.custom.metrics.k8s.io")},
        "spec": {"service": {"namespace": "framescale", "name": "framescale-adapter", "port": 443}, "group": "custom.metrics.k8s.io",
                 "version": version, "caBundle": "LS0tLS1CRUdJTi...", "groupPriorityMinimum": 100, "versionPriority": 200},
        "status": {"conditions": [available]}
    })
}

fn available() -> Value {
    condition("Available", "True", "Passed", "all checks passed")
}

fn pod(name: &str, node: &str) -> Value {
    json!({"metadata": {"name": name, "namespace": NS, "labels": {"app.kubernetes.io/name": "render"}},
           "spec": {"nodeName": node, "containers": [{"name": "worker", "image": "framescale-worker"}]},
           "status": {"phase": "Running", "conditions": [{"type": "Ready", "status": "True"}]}})
}

fn exporter(name: &str, node: &str, ready: bool) -> Value {
    json!({"metadata": {"name": name, "namespace": "framescale", "labels": {"app.kubernetes.io/name": "framescale", "app.kubernetes.io/component": "exporter"}},
           "spec": {"nodeName": node},
           "status": {"phase": "Running", "conditions": [{"type": "Ready", "status": if ready { "True" } else { "False" }}]}})
}

fn list(kind: &str, items: Vec<Value>) -> Value {
    json!({"kind": kind, "apiVersion": "v1", "metadata": {"resourceVersion": "4300"}, "items": items})
}

fn value(pod: &str, quantity: &str) -> Value {
    json!({"describedObject": {"kind": "Pod", "namespace": NS, "name": pod, "apiVersion": "/v1"},
           "metric": {"name": "render_scaling_score", "selector": null}, "timestamp": "2026-12-03T10:00:05Z", "windowSeconds": 60, "value": quantity})
}

/// What the API answers, by path and query.
type Answers = BTreeMap<String, (u16, Value)>;

/// A healthy cluster: three pods on three nodes, each with a ready exporter and a value.
fn healthy() -> Answers {
    let mut answers = Answers::new();
    answers.insert(
        HPA_V2.into(),
        (
            200,
            hpa(
                "autoscaling/v2",
                "render_scaling_score",
                "1",
                healthy_conditions(),
            ),
        ),
    );
    answers.insert(V1BETA2.into(), (200, api_service("v1beta2", available())));
    answers.insert(V1BETA1.into(), (200, api_service("v1beta1", available())));
    answers.insert(
        "/apis/apps/v1/namespaces/render/deployments/render/scale".into(),
        (200, json!({"kind": "Scale", "apiVersion": "autoscaling/v1", "metadata": {"name": "render", "namespace": NS},
                     "spec": {"replicas": 3}, "status": {"replicas": 3, "selector": "app.kubernetes.io/name=render"}})),
    );
    answers.insert(
        pods_path(),
        (
            200,
            list(
                "PodList",
                vec![
                    pod("render-a", "node-a"),
                    pod("render-b", "node-b"),
                    pod("render-c", "node-c"),
                ],
            ),
        ),
    );
    answers.insert(
        EXPORTERS.into(),
        (
            200,
            list(
                "PodList",
                vec![
                    exporter("framescale-exporter-1", "node-a", true),
                    exporter("framescale-exporter-2", "node-b", true),
                    exporter("framescale-exporter-3", "node-c", true),
                ],
            ),
        ),
    );
    answers.insert(
        DISCOVERY.into(),
        (200, json!({"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": "custom.metrics.k8s.io/v1beta2", "resources": [
            {"name": "pods/render_frame_duration_ms", "singularName": "", "namespaced": true, "kind": "MetricValueList", "verbs": ["get"]},
            {"name": "pods/nvidia_gpu_duty_cycle", "singularName": "", "namespaced": true, "kind": "MetricValueList", "verbs": ["get"]},
            {"name": "pods/render_scaling_score", "singularName": "", "namespaced": true, "kind": "MetricValueList", "verbs": ["get"]}]})),
    );
    answers.insert(
        score_path("render_scaling_score"),
        (200, json!({"kind": "MetricValueList", "apiVersion": "custom.metrics.k8s.io/v1beta2", "metadata": {},
                     "items": [value("render-a", "1250m"), value("render-b", "900m"), value("render-c", "1")]})),
    );
    answers
}

/// Serves `answers` on 127.0.0.1; anything else is the kube-apiserver's plain 404.
fn serve(runtime: &tokio::runtime::Runtime, answers: Answers) -> SocketAddr {
    let answers = Arc::new(answers);
    let app = axum::Router::new().fallback(move |uri: Uri| {
        let answers = answers.clone();
        async move {
            let key = uri.path_and_query().map_or("", |p| p.as_str()).to_owned();
            match answers.get(&key) {
                Some((code, body)) => (
                    StatusCode::from_u16(*code).unwrap(),
                    axum::Json(body.clone()),
                )
                    .into_response(),
                None => (StatusCode::NOT_FOUND, "404 page not found\n").into_response(),
            }
        }
    });
    support::apiserver::serve(runtime, app)
}

/// Runs `framescale doctor` against `answers`: (succeeded, stdout, stderr).
fn doctor(answers: Answers) -> (bool, String, String) {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let addr = serve(&runtime, answers);
    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = write_kubeconfig(dir.path(), addr);
    let output = Command::new(env!("CARGO_BIN_EXE_framescale"))
        .args(["doctor", "--namespace", NS, "--hpa", "render"])
        .env("KUBECONFIG", &kubeconfig)
        .output()
        .unwrap();
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

fn write_kubeconfig(dir: &Path, addr: SocketAddr) -> std::path::PathBuf {
    let path = dir.join("kubeconfig");
    std::fs::write(
        &path,
        format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: fake\n  cluster:\n    server: http://{addr}\nusers:\n- name: sre\n  user:\n    token: sre-token\ncontexts:\n- name: fake\n  context:\n    cluster: fake\n    user: sre\ncurrent-context: fake\n"
        ),
    )
    .unwrap();
    path
}

/// The table line of `check`.
fn line<'a>(stdout: &'a str, check: &str) -> &'a str {
    stdout
        .lines()
        .find(|l| l.get(8..).is_some_and(|rest| rest.starts_with(check)))
        .unwrap_or_else(|| panic!("no row {check}:\n{stdout}"))
}

#[test]
fn a_healthy_hpa_can_scale() {
    let (ok, stdout, stderr) = doctor(healthy());
    assert!(ok, "{stdout}{stderr}");
    assert!(line(&stdout, "HPA render/render").contains(
        "autoscaling/v2 scales Deployment render between 1 and 10 replicas on render_scaling_score"
    ));
    assert!(
        line(&stdout, "APIService v1beta2").starts_with("ok"),
        "{stdout}"
    );
    assert!(
        line(&stdout, "metric render_scaling_score")
            .contains("3 of 3 running pods have a value, mean 1.050"),
        "{stdout}"
    );
    assert!(
        !stdout.contains("FAIL") && !stdout.contains("warn"),
        "{stdout}"
    );
    assert!(stdout.contains("HPA render/render can scale."), "{stdout}");
}

#[test]
fn an_apiservice_failing_its_discovery_check_is_named_with_its_cause() {
    let mut answers = healthy();
    let x509 = r#"failing or missing response from https://10.96.0.12:443/apis/custom.metrics.k8s.io/v1beta2: Get "https://10.96.0.12:443/apis/custom.metrics.k8s.io/v1beta2": x509: certificate signed by unknown authority"#;
    answers.insert(
        V1BETA2.into(),
        (
            200,
            api_service(
                "v1beta2",
                condition("Available", "False", "FailedDiscoveryCheck", x509),
            ),
        ),
    );
    let timeout = r#"failing or missing response from https://10.96.0.12:443/apis/custom.metrics.k8s.io/v1beta1: Get "https://10.96.0.12:443/apis/custom.metrics.k8s.io/v1beta1": dial tcp 10.96.0.12:443: i/o timeout"#;
    answers.insert(
        V1BETA1.into(),
        (
            200,
            api_service(
                "v1beta1",
                condition("Available", "False", "FailedDiscoveryCheck", timeout),
            ),
        ),
    );
    let mut conditions = healthy_conditions();
    conditions[1] = condition(
        "ScalingActive",
        "False",
        "FailedGetPodsMetric",
        "the HPA was unable to compute the replica count: unable to get metric render_scaling_score: unable to fetch metrics from custom metrics API: the server is currently unable to handle the request (get pods.custom.metrics.k8s.io *)",
    );
    answers.insert(
        HPA_V2.into(),
        (
            200,
            hpa("autoscaling/v2", "render_scaling_score", "1", conditions),
        ),
    );
    // An unavailable APIService makes the kube-apiserver answer its group with 503.
    answers.insert(
        DISCOVERY.into(),
        status(
            503,
            "ServiceUnavailable",
            "the server is currently unable to handle the request",
        ),
    );
    answers.insert(score_path("render_scaling_score"), status(503, "ServiceUnavailable", "the server is currently unable to handle the request (get pods.custom.metrics.k8s.io *)"));
    let (ok, stdout, stderr) = doctor(answers);
    assert!(!ok, "{stdout}");
    assert!(
        stderr.contains("HPA render/render cannot scale: 4 check(s) failed"),
        "{stderr}"
    );
    assert!(
        line(&stdout, "HPA ScalingActive").starts_with("FAIL"),
        "{stdout}"
    );
    assert!(
        stdout.contains("fix: TLS: the APIService's caBundle does not verify"),
        "{stdout}"
    );
    assert!(
        stdout.contains("fix: network: the kube-apiserver cannot reach the adapter's pods"),
        "{stdout}"
    );
    assert!(
        line(&stdout, "metric render_scaling_score").contains("the adapter cannot read its data"),
        "{stdout}"
    );
}

#[test]
fn no_adapter_endpoints_and_no_apiservice() {
    let mut answers = healthy();
    answers.insert(V1BETA2.into(), (200, api_service("v1beta2", condition("Available", "False", "MissingEndpoints", r#"endpoints for service/framescale-adapter in "framescale" have no addresses with port name "https""#))));
    answers.insert(
        V1BETA1.into(),
        status(
            404,
            "NotFound",
            r#"apiservices.apiregistration.k8s.io "v1beta1.custom.metrics.k8s.io" not found"#,
        ),
    );
    let (ok, stdout, _) = doctor(answers);
    assert!(!ok);
    assert!(
        line(&stdout, "APIService v1beta2").contains("unavailable, MissingEndpoints"),
        "{stdout}"
    );
    assert!(
        stdout.contains("fix: no ready adapter pod behind the Service"),
        "{stdout}"
    );
    assert!(
        line(&stdout, "APIService v1beta1")
            .starts_with("warn    APIService v1beta1.custom.metrics.k8s.io  not registered"),
        "{stdout}"
    );
}

#[test]
fn a_metric_the_adapter_does_not_serve() {
    let mut answers = healthy();
    answers.insert(
        HPA_V2.into(),
        (
            200,
            hpa(
                "autoscaling/v2",
                "render_frametime",
                "30",
                healthy_conditions(),
            ),
        ),
    );
    answers.insert(
        score_path("render_frametime"),
        status(
            404,
            "NotFound",
            "the server could not find the metric render_frametime for pods",
        ),
    );
    let (ok, stdout, _) = doctor(answers);
    assert!(!ok);
    assert!(
        line(&stdout, "metric render_frametime").contains("the adapter does not serve render_frametime; it serves nvidia_gpu_duty_cycle, render_frame_duration_ms, render_scaling_score"),
        "{stdout}"
    );
}

#[test]
fn pods_without_values_name_their_nodes_exporter() {
    let mut answers = healthy();
    answers.insert(
        score_path("render_scaling_score"),
        (200, json!({"kind": "MetricValueList", "apiVersion": "custom.metrics.k8s.io/v1beta2", "metadata": {}, "items": [value("render-a", "1250m")]})),
    );
    answers.insert(
        EXPORTERS.into(),
        (
            200,
            list(
                "PodList",
                vec![
                    exporter("framescale-exporter-1", "node-a", true),
                    exporter("framescale-exporter-3", "node-c", false),
                ],
            ),
        ),
    );
    let (ok, stdout, stderr) = doctor(answers);
    assert!(
        ok,
        "one pod has a value: the HPA scales on it\n{stdout}{stderr}"
    );
    assert!(
        line(&stdout, "metric render_scaling_score").contains("1 of 3 running pods have a value"),
        "{stdout}"
    );
    assert!(
        line(&stdout, "pod render-b").contains("no framescale exporter runs on node node-b"),
        "{stdout}"
    );
    assert!(
        line(&stdout, "pod render-c")
            .contains("the exporter framescale-exporter-3 on node node-c is not ready"),
        "{stdout}"
    );
}

#[test]
fn no_fresh_value_at_all_fails() {
    let mut answers = healthy();
    answers.insert(score_path("render_scaling_score"), status(404, "NotFound", "the server could not find the metric render_scaling_score for pods: 3 pods stale: no fresh value"));
    let (ok, stdout, _) = doctor(answers);
    assert!(!ok);
    assert!(
        line(&stdout, "metric render_scaling_score").contains("no pod has a fresh value"),
        "{stdout}"
    );
    assert!(
        line(&stdout, "pod render-a")
            .contains("though the exporter framescale-exporter-1 on node node-a is ready"),
        "{stdout}"
    );
}

#[test]
fn a_target_that_is_not_a_quantity() {
    let mut answers = healthy();
    answers.insert(
        HPA_V2.into(),
        (
            200,
            hpa(
                "autoscaling/v2",
                "render_scaling_score",
                "1.5x",
                healthy_conditions(),
            ),
        ),
    );
    let (ok, stdout, _) = doctor(answers);
    assert!(!ok);
    assert!(
        line(&stdout, "metric render_scaling_score target")
            .contains(r#"averageValue "1.5x" is not a Kubernetes quantity"#),
        "{stdout}"
    );
}

#[test]
fn credentials_refused() {
    let mut answers = Answers::new();
    for path in [HPA_V2, V1BETA2, V1BETA1] {
        answers.insert(path.into(), status(401, "Unauthorized", "Unauthorized"));
    }
    let (ok, stdout, _) = doctor(answers);
    assert!(!ok);
    assert!(
        line(&stdout, "HPA render/render").contains("answered 401 Unauthorized"),
        "{stdout}"
    );
    assert!(
        stdout.contains("fix: the API server rejected your credentials"),
        "{stdout}"
    );
}

#[test]
fn a_kubernetes_1_20_hpa_in_v2beta2() {
    let mut answers = healthy();
    let hpa_v2 = answers.remove(HPA_V2).unwrap().1;
    let mut old = hpa_v2.clone();
    old["apiVersion"] = json!("autoscaling/v2beta2");
    answers.insert(HPA_V2BETA2.into(), (200, old));
    // What a real 1.20 API server answers for a group version it does not serve: a NotFound
    // Status, as for a missing object (a plain-text 404 here hid the bug).
    answers.insert(
        HPA_V2.into(),
        status(
            404,
            "NotFound",
            "the server could not find the requested resource",
        ),
    );
    let (ok, stdout, stderr) = doctor(answers);
    assert!(ok, "{stdout}{stderr}");
    assert!(
        line(&stdout, "HPA render/render").contains("autoscaling/v2beta2 scales"),
        "{stdout}"
    );
}

#[test]
fn an_hpa_at_its_maximum_is_a_warning() {
    let mut answers = healthy();
    let mut conditions = healthy_conditions();
    conditions[2] = condition(
        "ScalingLimited",
        "True",
        "TooManyReplicas",
        "the desired replica count is more than the maximum replica count",
    );
    answers.insert(
        HPA_V2.into(),
        (
            200,
            hpa("autoscaling/v2", "render_scaling_score", "1", conditions),
        ),
    );
    let (ok, stdout, _) = doctor(answers);
    assert!(ok, "{stdout}");
    assert!(
        line(&stdout, "HPA ScalingLimited").starts_with("warn"),
        "{stdout}"
    );
    assert!(
        stdout.contains("fix: the HPA wants more than maxReplicas"),
        "{stdout}"
    );
}
