//! The custom metrics API over HTTP.
//!
//! | endpoint | answer |
//! |---|---|
//! | `GET /apis` | `APIGroupList` with the custom metrics group |
//! | `GET /apis/custom.metrics.k8s.io` | its `APIGroup` (v1beta2 preferred) |
//! | `GET /apis/custom.metrics.k8s.io/{v1beta1,v1beta2}` | `APIResourceList`: `pods/`, `deployments.apps/`, `namespaces/` × each metric |
//! | `GET /apis/custom.metrics.k8s.io/{version}/…` | `MetricValueList` for the five path forms ([`crate::request`]) |
//! | `GET /livez`, `GET /readyz` | `ok` |
//!
//! Values: `pods` by selector (one item per selected pod that has a fresh value — pods without
//! one are left out, never 0), one pod by name, a Deployment (the mean over the pods its selector
//! picks), a namespace (the mean over its pods). Errors are `metav1.Status`: 400 bad path or
//! selector, 404 unknown metric or no fresh value for a single object, 405 non-GET, 503 backend
//! or pod listing down.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::http::{Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use framescale_core::quantity;
use framescale_core::score::{self, Signals};
use serde_json::Value;

use crate::auth::{AuthError, Authenticator, PeerCerts};
use crate::cache::Memo;
use crate::config::MetricsConfig;
use crate::pods::{ListError, PodLister};
use crate::request::{self, MetricRequest, Request, Target};
use crate::selector::Selector;
use crate::source::{PodSignals, Reading, SignalSource, SourceError, now_millis};
use crate::telemetry::Telemetry;
use crate::wire::{self, DescribedObject, MetricValue, Version};

/// Window reported with every value (`windowSeconds`): the exporter's default window.
pub const WINDOW_SECONDS: u64 = 60;

/// What the handlers share.
pub struct AppState {
    /// Metric definitions and score settings.
    pub config: Arc<MetricsConfig>,
    /// Where signals come from.
    pub source: Arc<dyn SignalSource>,
    /// How selectors become pods; `None` means "the pods the source has data for, with no labels".
    pub pods: Option<Arc<dyn PodLister>>,
    /// The adapter's own metrics.
    pub telemetry: Arc<Telemetry>,
    /// Whole answers, reused for the cache TTL.
    responses: Memo<Bytes, ApiError>,
    /// Who may ask; `None` only with `--insecure-disable-auth`.
    pub auth: Option<Arc<Authenticator>>,
}

impl AppState {
    /// State whose answers are reused for `cache_ttl` (zero: never).
    #[must_use]
    pub fn new(
        config: Arc<MetricsConfig>,
        source: Arc<dyn SignalSource>,
        pods: Option<Arc<dyn PodLister>>,
        telemetry: Arc<Telemetry>,
        cache_ttl: Duration,
    ) -> Self {
        AppState {
            config,
            source,
            pods,
            telemetry,
            responses: Memo::new(cache_ttl),
            auth: None,
        }
    }
}

impl AppState {
    /// The same state, checking callers with `auth`.
    #[must_use]
    pub fn with_auth(mut self, auth: Arc<Authenticator>) -> Self {
        self.auth = Some(auth);
        self
    }
}

/// The API router.
pub fn router(state: Arc<AppState>) -> Router {
    Router::new()
        .route(
            "/apis",
            get(|| async { json(StatusCode::OK, &wire::api_group_list()) }),
        )
        .route(
            &format!("/apis/{}", wire::GROUP),
            get(|| async { json(StatusCode::OK, &wire::api_group(false)) }),
        )
        .route(
            &format!("/apis/{}/{{version}}", wire::GROUP),
            get(version_root),
        )
        .route(
            &format!("/apis/{}/{{version}}/{{*rest}}", wire::GROUP),
            get(metric),
        )
        .route("/livez", get(|| async { "ok\n" }))
        .route("/readyz", get(|| async { "ok\n" }))
        .fallback(fallback)
        .method_not_allowed_fallback(fallback)
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            authenticate,
        ))
        .layer(axum::middleware::from_fn_with_state(state.clone(), observe))
        .with_state(state)
}

/// Lets a request through only if its caller is authenticated and authorized (health
/// endpoints are open); without an authenticator (`--insecure-disable-auth`) everything passes.
async fn authenticate(
    State(state): State<Arc<AppState>>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let path = request.uri().path();
    if let Some(auth) = &state.auth
        && path != "/livez"
        && path != "/readyz"
    {
        let certs = request.extensions().get::<PeerCerts>();
        if let Err(error) = auth.check(certs, request.headers(), path).await {
            let code = match error {
                AuthError::Unauthenticated(_) => StatusCode::UNAUTHORIZED,
                AuthError::Forbidden(_) => StatusCode::FORBIDDEN,
                AuthError::ReviewFailed(_) => StatusCode::SERVICE_UNAVAILABLE,
            };
            if let Some(suppressed) = state.telemetry.throttle_auth_log() {
                tracing::info!(%error, %path, suppressed, "Refused a request");
            }
            return ApiError::new(code, error.to_string()).into_response();
        }
    }
    next.run(request).await
}

/// Counts each request by route and status, with its latency.
async fn observe(
    State(state): State<Arc<AppState>>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let route = route_of(request.uri().path());
    let started = std::time::Instant::now();
    let response = next.run(request).await;
    state
        .telemetry
        .request(route, response.status().as_u16(), started.elapsed());
    response
}

/// The route label of a path, from its shape (bounded: six values).
fn route_of(path: &str) -> &'static str {
    let Some(rest) = path.strip_prefix(&format!("/apis/{}/", wire::GROUP)) else {
        return if path.starts_with("/apis") {
            "discovery"
        } else {
            "other"
        };
    };
    let segments: Vec<&str> = rest.trim_end_matches('/').split('/').skip(1).collect();
    match segments.as_slice() {
        [] => "discovery",
        ["namespaces", _, "metrics", _] => "namespace",
        ["namespaces", _, "pods", "*" | "%2A" | "%2a", _] => "pods",
        ["namespaces", _, "pods", _, _] => "pod",
        ["namespaces", _, "deployments.apps", _, _] => "deployment",
        _ => "other",
    }
}

/// Errors answered as `metav1.Status`.
#[derive(Debug, Clone)]
pub struct ApiError {
    code: StatusCode,
    message: String,
}

impl ApiError {
    fn new(code: StatusCode, message: impl Into<String>) -> Self {
        ApiError {
            code,
            message: message.into(),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        json(self.code, &wire::status(self.code, &self.message))
    }
}

impl From<request::Error> for ApiError {
    fn from(error: request::Error) -> Self {
        ApiError::new(StatusCode::BAD_REQUEST, error.to_string())
    }
}

impl From<SourceError> for ApiError {
    fn from(error: SourceError) -> Self {
        ApiError::new(StatusCode::SERVICE_UNAVAILABLE, error.to_string())
    }
}

impl From<ListError> for ApiError {
    fn from(error: ListError) -> Self {
        ApiError::new(StatusCode::SERVICE_UNAVAILABLE, error.to_string())
    }
}

async fn fallback(method: Method) -> ApiError {
    if method == Method::GET {
        ApiError::new(
            StatusCode::NOT_FOUND,
            "the server could not find the requested resource",
        )
    } else {
        ApiError::new(
            StatusCode::METHOD_NOT_ALLOWED,
            format!("method {method} is not supported"),
        )
    }
}

async fn version_root(
    State(state): State<Arc<AppState>>,
    Path(version): Path<String>,
) -> Result<Response, ApiError> {
    let version = parse_version(&version)?;
    Ok(json(StatusCode::OK, &discovery(&state.config, version)))
}

async fn metric(
    State(state): State<Arc<AppState>>,
    Path((version, rest)): Path<(String, String)>,
    RawQuery(query): RawQuery,
) -> Result<Response, ApiError> {
    let version = parse_version(&version)?;
    match request::parse(&rest, query.as_deref())? {
        Request::Discovery => Ok(json(StatusCode::OK, &discovery(&state.config, version))),
        Request::Metric(request) => {
            let key = format!(
                "{}/{rest}?{}",
                version.as_str(),
                query.as_deref().unwrap_or("")
            );
            let (body, fetched) = state
                .responses
                .get_or_fetch(&key, || async {
                    let values = values(&state, &request).await?;
                    if let Some(oldest) = values.iter().map(|v| v.timestamp_millis).min() {
                        state
                            .telemetry
                            .served_age(Duration::from_millis(now_millis().saturating_sub(oldest)));
                    }
                    Ok(Bytes::from(wire::metric_value_list(version, &values)))
                })
                .await;
            let counter = if fetched {
                &state.telemetry.response_misses
            } else {
                &state.telemetry.response_hits
            };
            counter.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            Ok((
                StatusCode::OK,
                [(header::CONTENT_TYPE, "application/json")],
                body?,
            )
                .into_response())
        }
    }
}

fn parse_version(text: &str) -> Result<Version, ApiError> {
    Version::parse(text).ok_or_else(|| {
        ApiError::new(
            StatusCode::NOT_FOUND,
            format!(
                "the server could not find version {text} of {}",
                wire::GROUP
            ),
        )
    })
}

fn discovery(config: &MetricsConfig, version: Version) -> Value {
    let mut resources = Vec::new();
    for name in config.metric_names() {
        resources.push((format!("pods/{name}"), true));
        resources.push((format!("deployments.apps/{name}"), true));
        resources.push((format!("namespaces/{name}"), false));
    }
    wire::api_resource_list(version, &resources)
}

/// Which of the three served metrics a name is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Served {
    Frame,
    Gpu,
    Score,
}

async fn values(state: &AppState, request: &MetricRequest) -> Result<Vec<MetricValue>, ApiError> {
    let config = &state.config;
    let not_found = |what: String| {
        ApiError::new(
            StatusCode::NOT_FOUND,
            format!(
                "the server could not find the metric {} for {what}",
                request.metric
            ),
        )
    };
    let served = match request.metric.as_str() {
        name if name == config.frame.name => Served::Frame,
        name if name == config.gpu.name => Served::Gpu,
        name if name == config.score_name => Served::Score,
        _ => return Err(not_found(request.target.resource().to_owned())),
    };
    if let Some(selector) = &request.metric_selector {
        // framescale's metrics are one series per pod: there are no series labels to select.
        return Err(not_found(format!(
            "{} with selector {selector}",
            request.target.resource()
        )));
    }
    let now = now_millis();
    match &request.target {
        Target::Selected {
            namespace,
            resource,
            selector,
        } if resource == "pods" => {
            let (pods, signals) = pods_and_signals(state, namespace, selector).await?;
            Ok(pods
                .iter()
                .filter_map(|pod| {
                    let reading = value_of(config, served, signals.get(pod)?, now)?;
                    metric_value(request, pod_object(namespace, pod), reading)
                })
                .collect())
        }
        Target::Object {
            namespace,
            resource,
            name,
        } if resource == "pods" => {
            let signals = state.source.namespace_signals(namespace).await?;
            let value = signals
                .get(name)
                .and_then(|s| value_of(config, served, s, now))
                .and_then(|reading| metric_value(request, pod_object(namespace, name), reading));
            Ok(vec![value.ok_or_else(|| no_value(request, name))?])
        }
        Target::Object {
            namespace,
            resource,
            name,
        } if resource == "deployments.apps" => {
            let lister = state.pods.as_ref().ok_or_else(|| ApiError::new(StatusCode::NOT_FOUND, format!("deployments need the Kubernetes API or a pods file listing them; cannot resolve deployment {name}")))?;
            let selector = lister
                .deployment_selector(namespace, name)?
                .ok_or_else(|| not_found(format!("deployments.apps {name}")))?;
            let (pods, signals) = pods_and_signals(state, namespace, &selector).await?;
            let object = DescribedObject {
                kind: "Deployment",
                api_version: "apps/v1",
                namespace: Some(namespace.clone()),
                name: name.clone(),
            };
            let value = mean(
                pods.iter()
                    .filter_map(|pod| value_of(config, served, signals.get(pod)?, now)),
            )
            .and_then(|reading| metric_value(request, object, reading));
            Ok(vec![value.ok_or_else(|| no_value(request, name))?])
        }
        Target::Namespace { namespace } => {
            let signals = state.source.namespace_signals(namespace).await?;
            let object = DescribedObject {
                kind: "Namespace",
                api_version: "v1",
                namespace: None,
                name: namespace.clone(),
            };
            let value = mean(
                signals
                    .values()
                    .filter_map(|s| value_of(config, served, s, now)),
            )
            .and_then(|reading| metric_value(request, object, reading));
            Ok(vec![value.ok_or_else(|| no_value(request, namespace))?])
        }
        other => Err(not_found(other.resource().to_owned())),
    }
}

/// The names of the pods `selector` picks in `namespace`, and the namespace's signals. Without a
/// pod lister the pods are those the source has data for, with no labels.
async fn pods_and_signals(
    state: &AppState,
    namespace: &str,
    selector: &Selector,
) -> Result<(Vec<String>, BTreeMap<String, PodSignals>), ApiError> {
    let signals = state.source.namespace_signals(namespace).await?;
    let pods = if let Some(lister) = &state.pods {
        lister.pods(namespace, selector)?
    } else if selector.matches(&BTreeMap::new()) {
        signals.keys().cloned().collect()
    } else {
        Vec::new()
    };
    Ok((pods, signals))
}

/// The value of `served` for a pod, if fresh; the timestamp is that of the data.
fn value_of(
    config: &MetricsConfig,
    served: Served,
    signals: &PodSignals,
    now: u64,
) -> Option<Reading> {
    let max_age = config.max_age.as_millis() as u64;
    let fresh = |r: Option<Reading>| {
        r.filter(|r| now.saturating_sub(r.at_millis) <= max_age && r.value.is_finite())
    };
    let (p95, duty) = (fresh(signals.p95_ms), fresh(signals.duty_pct));
    match served {
        Served::Frame => p95,
        Served::Gpu => duty,
        Served::Score => {
            let fused = score::score(
                &config.score,
                Signals {
                    p95_ms: p95.map(|r| r.value),
                    duty_pct: duty.map(|r| r.value),
                },
                signals.holds,
            )?;
            let at_millis = p95
                .map(|r| r.at_millis)
                .into_iter()
                .chain(duty.map(|r| r.at_millis))
                .min()?;
            Some(Reading {
                value: fused.value,
                at_millis,
            })
        }
    }
}

fn mean(readings: impl Iterator<Item = Reading>) -> Option<Reading> {
    let readings: Vec<Reading> = readings.collect();
    let at_millis = readings.iter().map(|r| r.at_millis).min()?;
    Some(Reading {
        value: readings.iter().map(|r| r.value).sum::<f64>() / readings.len() as f64,
        at_millis,
    })
}

fn no_value(request: &MetricRequest, name: &str) -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        format!(
            "the server could not find the metric {} for {} {name}: no fresh value",
            request.metric,
            request.target.resource()
        ),
    )
}

fn pod_object(namespace: &str, name: &str) -> DescribedObject {
    DescribedObject {
        kind: "Pod",
        api_version: "v1",
        namespace: Some(namespace.to_owned()),
        name: name.to_owned(),
    }
}

/// The item for one object; `None` when the value cannot be a quantity (too large), which is
/// treated like a missing value rather than replaced by anything.
fn metric_value(
    request: &MetricRequest,
    object: DescribedObject,
    reading: Reading,
) -> Option<MetricValue> {
    Some(MetricValue {
        object,
        metric: request.metric.clone(),
        selector: None,
        timestamp_millis: reading.at_millis,
        window_seconds: Some(WINDOW_SECONDS),
        quantity: quantity::format(reading.value).ok()?,
    })
}

fn json(code: StatusCode, body: &Value) -> Response {
    (
        code,
        [(header::CONTENT_TYPE, "application/json")],
        body.to_string(),
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use axum::body::{Body, to_bytes};
    use axum::http::Request as HttpRequest;
    use framescale_core::score::Holds;
    use serde_json::json;
    use tower::ServiceExt;

    use super::*;
    use crate::pods::PodsFile;
    use crate::source::MemorySource;

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
        Some(Reading {
            value,
            at_millis: now_millis() - age_ms,
        })
    }

    /// Pods w-0..w-2 labelled app=w (w-2 has no data), x-0 labelled app=x, and a stale pod.
    fn fixture() -> Fixture {
        let source = MemorySource::default();
        source.set(
            "render",
            "w-0",
            PodSignals {
                p95_ms: reading(64.0, 0),
                duty_pct: reading(91.0, 0),
                holds: HELD,
            },
        );
        source.set(
            "render",
            "w-1",
            PodSignals {
                p95_ms: reading(16.0, 0),
                duty_pct: reading(32.5, 0),
                holds: Holds::default(),
            },
        );
        source.set(
            "render",
            "x-0",
            PodSignals {
                p95_ms: reading(48.0, 0),
                duty_pct: None,
                holds: HELD,
            },
        );
        source.set(
            "render",
            "stale-0",
            PodSignals {
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
            let (status, body) =
                get(&f.state, &format!("/apis/custom.metrics.k8s.io/{version}")).await;
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
        assert_eq!(body["items"][0]["windowSeconds"], 60);
    }

    #[tokio::test]
    async fn the_score_fuses_both_signals() {
        let f = fixture();
        let uri =
            "/apis/custom.metrics.k8s.io/v1beta2/namespaces/render/pods/*/render_scaling_score";
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
        let telemetry = &state.telemetry;
        assert_eq!(
            telemetry
                .response_hits
                .load(std::sync::atomic::Ordering::Relaxed),
            1
        );
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
            ("/healthz", "other"),
        ] {
            assert_eq!(route_of(path), want, "{path}");
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
}
