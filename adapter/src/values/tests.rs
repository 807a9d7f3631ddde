//! Values without HTTP: freshness, the score's inputs, means, and what is not found.

use framescale_core::score::Holds;

use super::*;
use crate::request::Request;
use crate::source::MemorySource;

const NOW: u64 = 1_800_000_000_000;

#[allow(clippy::unnecessary_wraps, reason = "reads as a PodSignals field")]
fn reading(value: f64, age_ms: u64, window_secs: u64) -> Option<Reading> {
    Some(Reading {
        value,
        at_millis: NOW - age_ms,
        window: Some(Duration::from_secs(window_secs)),
    })
}

fn source() -> MemorySource {
    let source = MemorySource::default();
    source.set(
        "render",
        "a",
        PodSignals {
            latency_ms: reading(125.0, 1_000, 20),
            p95_ms: reading(40.0, 1_000, 20),
            duty_pct: reading(52.0, 3_000, 1),
            holds: Holds::default(),
        },
    );
    source.set(
        "render",
        "b",
        PodSignals {
            latency_ms: reading(62.5, 0, 60),
            p95_ms: reading(20.0, 0, 60),
            duty_pct: None,
            holds: Holds::default(),
        },
    );
    source.set(
        "render",
        "stale",
        PodSignals {
            latency_ms: reading(309.375, 46_000, 20),
            p95_ms: reading(99.0, 46_000, 20),
            duty_pct: None,
            holds: Holds::default(),
        },
    );
    source
}

async fn ask(path: &str) -> Result<Vec<MetricValue>, ValuesError> {
    ask_with(path, None).await
}

async fn ask_with(
    path: &str,
    pods: Option<&dyn PodLister>,
) -> Result<Vec<MetricValue>, ValuesError> {
    let (path, query) = match path.split_once('?') {
        Some((path, query)) => (path, Some(query)),
        None => (path, None),
    };
    let (_, request) =
        crate::request::parse(&format!("/apis/custom.metrics.k8s.io/v1beta2{path}"), query)
            .unwrap();
    let Request::Metric(request) = request else {
        panic!("{path} is not a metric request")
    };
    let (config, source) = (MetricsConfig::default(), source());
    let inputs = Inputs {
        config: &config,
        source: &source,
        pods,
        backlog: None,
    };
    values(inputs, &request, NOW).await
}

/// The pods of a pods file: `a` only (`b` is gone, its exporter still serves it).
fn pods_file(dir: &tempfile::TempDir) -> crate::pods::PodsFile {
    let path = dir.path().join("pods.yaml");
    std::fs::write(
        &path,
        "pods:\n  - { namespace: render, name: a, labels: { app: w } }\n",
    )
    .unwrap();
    crate::pods::PodsFile::new(path)
}

#[tokio::test]
async fn a_namespace_is_the_mean_of_the_pods_it_has_now() {
    let dir = tempfile::tempdir().unwrap();
    let lister = pods_file(&dir);
    let values = ask_with(
        "/namespaces/render/metrics/render_frame_duration_ms",
        Some(&lister),
    )
    .await
    .unwrap();
    assert_eq!(values[0].quantity, "40", "a alone, not the mean with b");
}

#[tokio::test]
async fn without_a_lister_a_negative_selector_selects_no_pod() {
    for selector in ["!app", "app!=web", "app notin (web)"] {
        let path = format!(
            "/namespaces/render/pods/*/render_frame_duration_ms?labelSelector={}",
            selector.replace(' ', "%20").replace('!', "%21")
        );
        let values = ask(&path).await.unwrap();
        assert!(values.is_empty(), "{selector}: {values:?}");
    }
    let all = ask("/namespaces/render/pods/*/render_frame_duration_ms?labelSelector=")
        .await
        .unwrap();
    assert_eq!(all.len(), 2, "an empty selector selects every fresh pod");
}

#[tokio::test]
async fn stale_values_are_left_out_never_zero() {
    let values = ask("/namespaces/render/pods/*/render_frame_duration_ms")
        .await
        .unwrap();
    let names: Vec<&str> = values.iter().map(|v| v.object.name.as_str()).collect();
    assert_eq!(
        names,
        ["a", "b"],
        "stale is 46 s old, past the 45 s max age"
    );
    let error = ask("/namespaces/render/pods/stale/render_frame_duration_ms")
        .await
        .unwrap_err();
    assert!(
        matches!(&error, ValuesError::NotFound(m) if m.ends_with("pods stale: no fresh value")),
        "{error}"
    );
}

#[tokio::test]
async fn the_score_is_as_old_as_its_older_input_over_the_longer_window() {
    let values = ask("/namespaces/render/pods/a/render_scaling_score")
        .await
        .unwrap();
    // Latency, not render time: 0.4 × max(125/100, 52/65) + 0.6 × 52/65 = 0.98: under
    // target, no hold needed.
    assert_eq!(values[0].quantity, "980m");
    assert_eq!(values[0].timestamp_millis, NOW - 3_000);
    assert_eq!(values[0].window_seconds, Some(20));
}

#[tokio::test]
async fn latency_and_render_time_are_two_metrics() {
    let latency = ask("/namespaces/render/pods/a/render_frame_latency_ms")
        .await
        .unwrap();
    assert_eq!(latency[0].quantity, "125");
    let render = ask("/namespaces/render/pods/a/render_frame_duration_ms")
        .await
        .unwrap();
    assert_eq!(render[0].quantity, "40");
}

#[tokio::test]
async fn a_namespace_is_the_mean_of_its_fresh_pods() {
    let values = ask("/namespaces/render/metrics/render_frame_duration_ms")
        .await
        .unwrap();
    assert_eq!(values[0].quantity, "30");
    assert_eq!(values[0].timestamp_millis, NOW - 1_000);
    assert_eq!(values[0].window_seconds, Some(60));
    assert_eq!(values[0].object.kind, "Namespace");
}

#[tokio::test]
async fn unknown_metrics_and_deployments_without_a_lister_are_not_found() {
    for path in [
        "/namespaces/render/pods/*/nope",
        "/namespaces/render/deployments.apps/w/render_scaling_score",
        "/nodes/n-1/render_scaling_score",
    ] {
        assert!(
            matches!(ask(path).await, Err(ValuesError::NotFound(_))),
            "{path}"
        );
    }
}
