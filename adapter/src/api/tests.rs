//! The API through its router, with `oneshot` requests: every path form, the score, errors,
//! the answer cache and the request counters.

use axum::body::{Body, to_bytes};
use axum::http::Request as HttpRequest;
use framescale_core::score::Holds;
use serde_json::{Value, json};
use tower::ServiceExt;

use super::*;
use crate::pods::PodsFile;
use crate::source::{MemorySource, PodSignals, Reading};

const HELD: Holds = Holds {
    frame_over: true,
    gpu_over: true,
    both_over: true,
};

struct Fixture {
    state: Arc<AppState>,
    source: MemorySource,
    _dir: tempfile::TempDir,
}

#[allow(clippy::unnecessary_wraps, reason = "reads as a PodSignals field")]
fn reading(value: f64, age_ms: u64) -> Option<Reading> {
    windowed(value, age_ms, None)
}

/// A reading over a `window` the source knows.
#[allow(clippy::unnecessary_wraps, reason = "reads as a PodSignals field")]
fn windowed(value: f64, age_ms: u64, window: Option<Duration>) -> Option<Reading> {
    Some(Reading {
        value,
        at_millis: now_millis() - age_ms,
        window,
    })
}

/// Pods w-0..w-2 labelled app=w (w-2 has no data), x-0 labelled app=x, and a stale pod.
fn fixture() -> Fixture {
    let source = MemorySource::default();
    source.set(
        "render",
        "w-0",
        PodSignals {
            latency_ms: windowed(200.0, 0, Some(Duration::from_secs(20))),
            p95_ms: windowed(64.0, 0, Some(Duration::from_secs(20))),
            duty_pct: windowed(91.0, 0, Some(Duration::from_millis(500))),
            holds: HELD,
        },
    );
    source.set(
        "render",
        "w-1",
        PodSignals {
            latency_ms: windowed(50.0, 0, Some(Duration::from_secs(20))),
            p95_ms: windowed(16.0, 0, Some(Duration::from_secs(20))),
            duty_pct: reading(32.5, 0),
            holds: Holds::default(),
        },
    );
    source.set(
        "render",
        "x-0",
        PodSignals {
            latency_ms: reading(150.0, 0),
            p95_ms: reading(48.0, 0),
            duty_pct: None,
            holds: HELD,
        },
    );
    source.set(
        "render",
        "stale-0",
        PodSignals {
            latency_ms: reading(62.5, 3_600_000),
            p95_ms: reading(20.0, 3_600_000),
            duty_pct: None,
            holds: HELD,
        },
    );
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("pods.yaml");
    std::fs::write(
        &path,
        "pods:\n\
         - { namespace: render, name: w-0, labels: { app: w } }\n\
         - { namespace: render, name: w-1, labels: { app: w } }\n\
         - { namespace: render, name: w-2, labels: { app: w } }\n\
         - { namespace: render, name: x-0, labels: { app: x } }\n\
         - { namespace: render, name: stale-0, labels: { app: w } }\n\
         deployments:\n  - { namespace: render, name: w, selector: app=w }\n",
    )
    .unwrap();
    let state = Arc::new(AppState::new(
        Arc::new(MetricsConfig::default()),
        Arc::new(source.clone()),
        Some(Arc::new(PodsFile::new(path))),
        Arc::default(),
        Duration::ZERO,
    ));
    Fixture {
        state,
        source,
        _dir: dir,
    }
}

/// The fixture's config and source with no pod lister and an answer cache of `ttl`.
fn without_pod_lister(f: &Fixture, ttl: Duration) -> Arc<AppState> {
    Arc::new(AppState::new(
        f.state.config.clone(),
        f.state.source.clone(),
        None,
        Arc::default(),
        ttl,
    ))
}

async fn call(state: &Arc<AppState>, method: Method, uri: &str) -> (StatusCode, Value) {
    let request = HttpRequest::builder()
        .method(method)
        .uri(uri)
        .body(Body::empty())
        .unwrap();
    let response = router(state.clone()).oneshot(request).await.unwrap();
    let status = response.status();
    assert_eq!(
        response.headers()[header::CONTENT_TYPE],
        "application/json",
        "{uri}"
    );
    let body = to_bytes(response.into_body(), usize::MAX).await.unwrap();
    (status, serde_json::from_slice(&body).unwrap())
}

async fn get(state: &Arc<AppState>, uri: &str) -> (StatusCode, Value) {
    call(state, Method::GET, uri).await
}

fn names_and_values(body: &Value) -> Vec<(String, String)> {
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

fn pair(name: &str, value: &str) -> (String, String) {
    (name.to_owned(), value.to_owned())
}

#[tokio::test]
async fn discovery_documents() {
    let f = fixture();
    for version in ["v1beta1", "v1beta2"] {
        let (status, body) = get(&f.state, &format!("/apis/custom.metrics.k8s.io/{version}")).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(body["kind"], "APIResourceList");
        assert_eq!(
            body["groupVersion"],
            format!("custom.metrics.k8s.io/{version}")
        );
        let names: Vec<&str> = body["resources"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["name"].as_str().unwrap())
            .collect();
        assert!(names.contains(&"pods/render_scaling_score"), "{names:?}");
        assert!(names.contains(&"deployments.apps/render_frame_duration_ms"));
        assert!(names.contains(&"namespaces/nvidia_gpu_duty_cycle"));
    }
    let (_, group) = get(&f.state, "/apis/custom.metrics.k8s.io").await;
    assert_eq!(group["preferredVersion"]["version"], "v1beta2");
    let (_, groups) = get(&f.state, "/apis").await;
    assert_eq!(groups["groups"][0]["name"], "custom.metrics.k8s.io");
}

#[tokio::test]
async fn pods_by_selector_in_both_versions() {
    let f = fixture();
    for (version, star) in [("v1beta2", "%2A"), ("v1beta1", "*")] {
        let uri = format!(
            "/apis/custom.metrics.k8s.io/{version}/namespaces/render/pods/{star}/render_frame_duration_ms?labelSelector=app%3Dw"
        );
        let (status, body) = get(&f.state, &uri).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert_eq!(
            body["apiVersion"],
            format!("custom.metrics.k8s.io/{version}")
        );
        // w-2 has no data and stale-0 is past max age: left out, never 0.
        assert_eq!(
            names_and_values(&body),
            [pair("w-0", "64"), pair("w-1", "16")]
        );
    }
    let uri = "/apis/custom.metrics.k8s.io/v1beta2/namespaces/render/pods/*/nvidia_gpu_duty_cycle?labelSelector=app+in+(w,x)";
    let (_, body) = get(&f.state, uri).await;
    assert_eq!(
        names_and_values(&body),
        [pair("w-0", "91"), pair("w-1", "32500m")]
    );
    assert_eq!(
        body["items"][0]["metric"],
        json!({"name": "nvidia_gpu_duty_cycle", "selector": null})
    );
    // The window is the data's: w-0's duty was averaged over 0.5 s (1 s whole), w-1's over
    // an unknown window, which is left out rather than made up.
    assert_eq!(body["items"][0]["windowSeconds"], 1);
    assert!(body["items"][1].get("windowSeconds").is_none(), "{body}");
}

#[tokio::test]
async fn windows_follow_the_data() {
    let f = fixture();
    let base = "/apis/custom.metrics.k8s.io";
    let (_, body) = get(
        &f.state,
        &format!(
            "{base}/v1beta2/namespaces/render/pods/*/render_frame_duration_ms?labelSelector=app%3Dw"
        ),
    )
    .await;
    assert_eq!(body["items"][0]["windowSeconds"], 20);
    // The score covers the longer of its inputs' windows; a mean, the longest of its pods'.
    let (_, body) = get(
        &f.state,
        &format!("{base}/v1beta2/namespaces/render/pods/w-0/render_scaling_score"),
    )
    .await;
    assert_eq!(body["items"][0]["windowSeconds"], 20);
    let (_, body) = get(
        &f.state,
        &format!("{base}/v1beta1/namespaces/render/deployments.apps/w/render_scaling_score"),
    )
    .await;
    assert_eq!(body["items"][0]["window"], 20, "v1beta1 calls it window");
}

#[tokio::test]
async fn paths_are_decoded_exactly_once() {
    let f = fixture();
    let base = "/apis/custom.metrics.k8s.io/v1beta2/namespaces/render";
    let (status, body) = get(
        &f.state,
        &format!("{base}/pods/%2A/render_frame_duration_ms"),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["items"].as_array().unwrap().len(), 3);
    // Decoded twice, `%252A` would be `*`: it is the name `%2A`, which no pod can have.
    let (status, body) = get(
        &f.state,
        &format!("{base}/pods/%252A/render_frame_duration_ms"),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .contains("invalid request path"),
        "{body}"
    );
    // An encoded `/` does not split its segment into a path to another pod's value.
    let (status, body) = get(
        &f.state,
        "/apis/custom.metrics.k8s.io/v1beta2/namespaces/render%2Fpods%2Fw-1/render_frame_duration_ms",
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    let (status, _) = get(
        &f.state,
        &format!("{base}/pods/w-1%2Fx/render_frame_duration_ms"),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    // Other escapes decode to their characters, once.
    let (status, body) = get(
        &f.state,
        &format!("{base}/pods/w%2D1/render_frame_duration_ms"),
    )
    .await;
    assert_eq!(
        (status, names_and_values(&body)),
        (StatusCode::OK, vec![pair("w-1", "16")])
    );
}

#[tokio::test]
async fn the_score_fuses_both_signals() {
    let f = fixture();
    let uri = "/apis/custom.metrics.k8s.io/v1beta2/namespaces/render/pods/*/render_scaling_score";
    let (_, body) = get(&f.state, uri).await;
    // w-0: both over and held: (0.4·2 + 0.6·1.4)·1.5 = 2.46; w-1: 0.5; x-0: frame only, 1.5.
    assert_eq!(
        names_and_values(&body),
        [
            pair("w-0", "2460m"),
            pair("w-1", "500m"),
            pair("x-0", "1500m")
        ]
    );
}

#[tokio::test]
async fn single_objects() {
    let f = fixture();
    let base = "/apis/custom.metrics.k8s.io/v1beta2/namespaces/render";
    let (status, body) = get(&f.state, &format!("{base}/pods/w-1/render_scaling_score")).await;
    assert_eq!(
        (status, names_and_values(&body)),
        (StatusCode::OK, vec![pair("w-1", "500m")])
    );
    let (status, body) = get(&f.state, &format!("{base}/pods/w-2/render_scaling_score")).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert!(
        body["message"].as_str().unwrap().contains("no fresh value"),
        "{body}"
    );
    let (status, body) = get(
        &f.state,
        &format!("{base}/deployments.apps/w/render_scaling_score"),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    // The mean of w-0 (2.46) and w-1 (0.5).
    assert_eq!(names_and_values(&body), [pair("w", "1480m")]);
    assert_eq!(body["items"][0]["describedObject"]["kind"], "Deployment");
    assert_eq!(body["items"][0]["describedObject"]["apiVersion"], "apps/v1");
    let (status, _) = get(
        &f.state,
        &format!("{base}/deployments.apps/nope/render_scaling_score"),
    )
    .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, body) = get(
        &f.state,
        &format!("{base}/metrics/render_frame_duration_ms"),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    // Mean of 64, 16, 48 (the stale pod is left out).
    assert_eq!(names_and_values(&body), [pair("render", "42667m")]);
    assert_eq!(
        body["items"][0]["describedObject"],
        json!({"kind": "Namespace", "name": "render", "apiVersion": "v1"})
    );
}

#[tokio::test]
async fn errors_are_status_documents() {
    let f = fixture();
    let base = "/apis/custom.metrics.k8s.io/v1beta2";
    let cases = [
        (
            format!("{base}/namespaces/render/pods/*/nope"),
            StatusCode::NOT_FOUND,
            "the server could not find the metric nope for pods",
        ),
        (
            format!("{base}/nodes/n-1/render_scaling_score"),
            StatusCode::NOT_FOUND,
            "for nodes",
        ),
        (
            format!(
                "{base}/namespaces/render/pods/*/render_scaling_score?labelSelector=app%3D%3D%3D"
            ),
            StatusCode::BAD_REQUEST,
            "invalid labelSelector",
        ),
        (
            format!("{base}/namespaces/render/foo"),
            StatusCode::BAD_REQUEST,
            "invalid request path",
        ),
        (
            format!(
                "{base}/namespaces/render/metrics/render_scaling_score?metricLabelSelector=a%3Db"
            ),
            StatusCode::NOT_FOUND,
            "with selector a=b",
        ),
        (
            "/apis/custom.metrics.k8s.io/v2/namespaces/render/metrics/m".to_owned(),
            StatusCode::NOT_FOUND,
            "version v2",
        ),
        (
            "/nowhere".to_owned(),
            StatusCode::NOT_FOUND,
            "could not find",
        ),
    ];
    for (uri, code, message) in cases {
        let (status, body) = get(&f.state, &uri).await;
        assert_eq!(status, code, "{uri}: {body}");
        assert_eq!(body["kind"], "Status");
        assert_eq!(body["code"], code.as_u16());
        assert!(
            body["message"].as_str().unwrap().contains(message),
            "{uri}: {body}"
        );
    }
    let (status, body) = call(
        &f.state,
        Method::POST,
        &format!("{base}/namespaces/render/metrics/m"),
    )
    .await;
    assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED, "{body}");
    f.source.set_down(Some("exporters unreachable"));
    let (status, body) = get(
        &f.state,
        &format!("{base}/namespaces/render/pods/*/render_scaling_score"),
    )
    .await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(body["reason"], "ServiceUnavailable");
}

#[tokio::test]
async fn answers_are_reused_for_the_cache_ttl() {
    let f = fixture();
    let state = without_pod_lister(&f, Duration::from_mins(1));
    let uri =
        "/apis/custom.metrics.k8s.io/v1beta2/namespaces/render/pods/*/render_frame_duration_ms";
    let (_, first) = get(&state, uri).await;
    f.source.set(
        "render",
        "w-1",
        PodSignals {
            latency_ms: reading(309.375, 0),
            p95_ms: reading(99.0, 0),
            ..PodSignals::default()
        },
    );
    let (_, second) = get(&state, uri).await;
    assert_eq!(first, second);
    let (_, v1) = get(&state, &uri.replace("v1beta2", "v1beta1")).await;
    assert_eq!(
        names_and_values(&v1)[1],
        pair("w-1", "99"),
        "another version is another answer"
    );
    assert_eq!(state.telemetry.lookups(Cache::Responses, false), 1);
}

#[tokio::test]
async fn requests_are_counted_by_route() {
    let f = fixture();
    let base = "/apis/custom.metrics.k8s.io/v1beta2/namespaces/render";
    get(&f.state, &format!("{base}/pods/%2A/render_scaling_score")).await;
    get(&f.state, &format!("{base}/pods/w-2/render_scaling_score")).await;
    get(&f.state, "/apis/custom.metrics.k8s.io/v1beta1").await;
    let text = f.state.telemetry.render();
    for want in [
        r#"framescale_adapter_requests_total{route="pods",code="200"} 1"#,
        r#"framescale_adapter_requests_total{route="pod",code="404"} 1"#,
        r#"framescale_adapter_requests_total{route="discovery",code="200"} 1"#,
    ] {
        assert!(text.contains(want), "missing {want} in\n{text}");
    }
}

#[test]
fn routes() {
    let base = "/apis/custom.metrics.k8s.io/v1beta2";
    for (path, want) in [
        ("/apis", "discovery"),
        (base, "discovery"),
        (&format!("{base}/namespaces/a/pods/%2A/m") as &str, "pods"),
        (&format!("{base}/namespaces/a/pods/p/m"), "pod"),
        (
            &format!("{base}/namespaces/a/deployments.apps/d/m"),
            "deployment",
        ),
        (&format!("{base}/namespaces/a/metrics/m"), "namespace"),
        (&format!("{base}/nodes/n/m"), "other"),
        (&format!("{base}/namespaces/a/pods/%252A/m"), "other"),
        ("/apis/custom.metrics.k8s.io", "discovery"),
        ("/apis/other.k8s.io", "other"),
        ("/healthz", "other"),
    ] {
        assert_eq!(route_of(&path.parse().unwrap()), want, "{path}");
    }
}

#[tokio::test]
async fn without_a_pod_lister_pods_with_data_are_listed_unlabelled() {
    let f = fixture();
    let state = without_pod_lister(&f, Duration::ZERO);
    let base =
        "/apis/custom.metrics.k8s.io/v1beta2/namespaces/render/pods/*/render_frame_duration_ms";
    let (_, body) = get(&state, base).await;
    assert_eq!(
        names_and_values(&body),
        [pair("w-0", "64"), pair("w-1", "16"), pair("x-0", "48")]
    );
    let (_, body) = get(&state, &format!("{base}?labelSelector=app%3Dw")).await;
    assert_eq!(body["items"], json!([]));
}

/// The render queue's backlog on a real redis-server: served on the one Deployment, counted as
/// waiting plus in flight, 503 (never 0) while Redis is down, and back when it is.
#[tokio::test]
async fn the_queue_backlog_is_an_object_metric_never_zero_when_the_queue_is_down() {
    use framescale_queue::testing::RedisServer;
    use framescale_queue::{JobSpec, Queue};

    let mut redis = RedisServer::start();
    let queue = Arc::new(Queue::new(&redis.url(), "t:frames", Duration::from_secs(1)).unwrap());
    let f = fixture();
    let state = Arc::new(
        AppState::new(
            f.state.config.clone(),
            f.state.source.clone(),
            None,
            Arc::default(),
            Duration::ZERO,
        )
        .with_backlog(crate::backlog::BacklogMetric {
            name: "render_backlog_frames".into(),
            namespace: "render".into(),
            deployment: "w".into(),
            queue: queue.clone(),
        }),
    );
    let uri = "/apis/custom.metrics.k8s.io/v1beta2/namespaces/render/deployments.apps/w/render_backlog_frames";
    let (status, body) = get(&state, uri).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(
        names_and_values(&body),
        [pair("w", "0")],
        "an empty queue is 0"
    );
    let spec = JobSpec {
        scene: "spheres".into(),
        frames: 1..=1500,
        width: 8,
        height: 8,
        samples: 1,
        priority: framescale_queue::Priority::Normal,
    };
    queue.submit(&spec, 0, |_| {}).await.unwrap();
    queue
        .take("pod-a", 20, Duration::from_millis(1))
        .await
        .unwrap();
    let (status, body) = get(&state, uri).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(
        names_and_values(&body),
        [pair("w", "1500")],
        "waiting plus in flight"
    );
    assert_eq!(body["items"][0]["describedObject"]["kind"], "Deployment");
    let (_, discovery) = get(&state, "/apis/custom.metrics.k8s.io/v1beta2").await;
    assert!(
        discovery
            .to_string()
            .contains("deployments.apps/render_backlog_frames"),
        "{discovery}"
    );
    for other in [
        "/apis/custom.metrics.k8s.io/v1beta2/namespaces/render/deployments.apps/x/render_backlog_frames",
        "/apis/custom.metrics.k8s.io/v1beta2/namespaces/shop/deployments.apps/w/render_backlog_frames",
        "/apis/custom.metrics.k8s.io/v1beta2/namespaces/render/pods/w-0/render_backlog_frames",
    ] {
        assert_eq!(get(&state, other).await.0, StatusCode::NOT_FOUND, "{other}");
    }
    redis.stop();
    let (status, body) = get(&state, uri).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert_eq!(body["kind"], "Status");
    assert!(
        body["message"].as_str().unwrap().contains("cannot answer"),
        "{body}"
    );
    redis.restart();
    let mut answer = get(&state, uri).await;
    for _ in 0..50 {
        if answer.0 == StatusCode::OK {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        answer = get(&state, uri).await;
    }
    assert_eq!(
        names_and_values(&answer.1),
        [pair("w", "1500")],
        "nothing lost"
    );
}
