//! The custom metrics API over HTTP: routes, handlers and the answer cache.
//!
//! | endpoint | answer |
//! |---|---|
//! | `GET /apis` | `APIGroupList` with the custom metrics group |
//! | `GET /apis/custom.metrics.k8s.io` | its `APIGroup` (v1beta2 preferred) |
//! | `GET /apis/custom.metrics.k8s.io/{v1beta1,v1beta2}` | `APIResourceList`: `pods/`, `deployments.apps/`, `namespaces/` × each metric; `deployments.apps/` × the queue's backlog when served ([`crate::backlog`]) |
//! | `GET /apis/custom.metrics.k8s.io/{version}/…` | `MetricValueList` for the five path forms ([`crate::request`]) |
//! | `GET /livez`, `GET /readyz` | `ok` |
//!
//! Paths are parsed from the request's raw URI ([`crate::request::parse`]), values resolved by
//! [`crate::values`], errors answered as `metav1.Status` ([`crate::status`]): 400 bad path or
//! selector, 404 unknown version, metric or no fresh value for a single object, 405 non-GET, 503
//! backend or pod listing down. Callers are checked first by [`crate::auth::middleware`] when
//! auth is on; every request is counted by route and status.

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;

use crate::auth::Authenticator;
use crate::auth::middleware::{AuthLayer, authenticate};
use crate::backlog::BacklogMetric;
use crate::cache::Memo;
use crate::config::MetricsConfig;
use crate::pods::PodLister;
use crate::request::{self, Request, Target};
use crate::source::{SignalSource, now_millis};
use crate::status::ApiError;
use crate::telemetry::{Cache, Telemetry};
use crate::values::{self, Inputs};
use crate::wire::{self, Version};

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
    /// The render queue's backlog, when served.
    backlog: Option<BacklogMetric>,
    /// Whole answers, reused for the cache TTL.
    responses: Memo<Bytes, ApiError>,
    /// Who may ask; `None` only with `--insecure-disable-auth`.
    auth: Option<Arc<Authenticator>>,
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
            backlog: None,
            responses: Memo::new(cache_ttl),
            auth: None,
        }
    }

    /// The same state, serving the render queue's backlog as `backlog` says.
    #[must_use]
    pub fn with_backlog(mut self, backlog: BacklogMetric) -> Self {
        self.backlog = Some(backlog);
        self
    }

    /// The same state, checking callers with `auth`.
    #[must_use]
    pub fn with_auth(mut self, auth: Arc<Authenticator>) -> Self {
        self.auth = Some(auth);
        self
    }
}

/// The API router.
pub fn router(state: Arc<AppState>) -> Router {
    let group = format!("/apis/{}", wire::GROUP);
    let mut router = Router::new()
        .route("/apis", get(|| async { json(wire::api_group_list()) }))
        .route(&group, get(|| async { json(wire::api_group()) }))
        .route(&format!("{group}/{{version}}"), get(version_path))
        .route(&format!("{group}/{{version}}/{{*rest}}"), get(version_path))
        .route("/livez", get(|| async { "ok\n" }))
        .route("/readyz", get(|| async { "ok\n" }))
        .fallback(fallback)
        .method_not_allowed_fallback(fallback);
    if let Some(auth) = &state.auth {
        let layer = AuthLayer {
            auth: auth.clone(),
            telemetry: state.telemetry.clone(),
        };
        router = router.layer(axum::middleware::from_fn_with_state(layer, authenticate));
    }
    router
        .layer(axum::middleware::from_fn_with_state(state.clone(), observe))
        .with_state(state)
}

/// Counts each request by route and status, with its latency.
async fn observe(
    State(state): State<Arc<AppState>>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let route = route_of(request.uri());
    let started = std::time::Instant::now();
    let response = next.run(request).await;
    state
        .telemetry
        .request(route, response.status().as_u16(), started.elapsed());
    response
}

/// The route label of a request, from what its path asks (bounded: six values).
fn route_of(uri: &Uri) -> &'static str {
    let path = uri.path();
    if path == "/apis" || path.strip_prefix("/apis/") == Some(wire::GROUP) {
        return "discovery";
    }
    let Ok((_, request)) = request::parse(path, uri.query()) else {
        return "other";
    };
    let Request::Metric(request) = request else {
        return "discovery";
    };
    match request.target {
        Target::Namespace { .. } => "namespace",
        Target::Selected { resource, .. } if resource == "pods" => "pods",
        Target::Object { resource, .. } if resource == "pods" => "pod",
        Target::Object { resource, .. } if resource == "deployments.apps" => "deployment",
        _ => "other",
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

/// Everything below a version: its discovery document or metric values. The path is parsed
/// from the raw URI, so each segment is percent-decoded exactly once.
async fn version_path(State(state): State<Arc<AppState>>, uri: Uri) -> Result<Response, ApiError> {
    let (version, request) = request::parse(uri.path(), uri.query())?;
    let Request::Metric(request) = request else {
        return Ok(json(discovery(
            &state.config,
            state.backlog.as_ref(),
            version,
        )));
    };
    let key = format!("{}?{}", uri.path(), uri.query().unwrap_or(""));
    let (body, fetched) = state
        .responses
        .get_or_fetch(&key, || async {
            let inputs = Inputs {
                config: &state.config,
                source: state.source.as_ref(),
                pods: state.pods.as_deref(),
                backlog: state.backlog.as_ref(),
            };
            let values = values::values(inputs, &request, now_millis()).await?;
            if let Some(oldest) = values.iter().map(|v| v.timestamp_millis).min() {
                state
                    .telemetry
                    .served_age(Duration::from_millis(now_millis().saturating_sub(oldest)));
            }
            Ok(Bytes::from(wire::metric_value_list(version, &values)))
        })
        .await;
    state.telemetry.lookup(Cache::Responses, fetched);
    Ok(json(body?))
}

fn discovery(config: &MetricsConfig, backlog: Option<&BacklogMetric>, version: Version) -> String {
    let mut resources = Vec::new();
    for name in config.metric_names() {
        resources.push((format!("pods/{name}"), true));
        resources.push((format!("deployments.apps/{name}"), true));
        resources.push((format!("namespaces/{name}"), false));
    }
    if let Some(backlog) = backlog {
        resources.push((format!("deployments.apps/{}", backlog.name), true));
    }
    wire::api_resource_list(version, &resources)
}

/// A 200 answer of JSON text.
fn json(body: impl Into<axum::body::Body>) -> Response {
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "application/json")],
        body.into(),
    )
        .into_response()
}

#[cfg(test)]
mod tests;
