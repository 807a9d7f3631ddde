//! The exporter's HTTP server.
//!
//! | endpoint | answer |
//! |---|---|
//! | `GET /metrics` | OpenMetrics when the `Accept` header asks for it, Prometheus text 0.0.4 otherwise |
//! | `GET /livez` | 200 while the process serves |
//! | `GET /readyz` | 200 once the first scan of the log root is done, 503 before |
//! | `POST /v1/frames` | newline-delimited JSON frames ([`crate::push`]), only with `--push`: 200 `{"accepted":N}`; 400 invalid, 403 for a namespace or container not watched, 404 with pushing off, 413 over the body limit, 429 over the series cap, each with the reason |
//!
//! The push endpoint authenticates no one: who may push is whoever reaches the port, which the
//! chart's NetworkPolicy narrows (docs/exporter.md). The exporter's own filter bounds what a
//! push can touch: only the namespaces and containers it watches, and no more series than
//! `--max-series`.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use axum::Router;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use framescale_core::frame::RenderEvent;

use crate::exposition::{self, Format};
use crate::log_file::now_millis;
use crate::stats::ExporterStats;
use crate::store::SeriesKey;
use crate::{Shared, lock, push};

/// The router, for a real server or for `oneshot` tests.
pub fn router(shared: Arc<Shared>) -> Router {
    let limit = shared.push.body_limit;
    Router::new()
        .route("/metrics", get(metrics))
        .route("/livez", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .route(
            "/v1/frames",
            post(push_frames).layer(DefaultBodyLimit::max(limit)),
        )
        .with_state(shared)
}

async fn metrics(State(shared): State<Arc<Shared>>, headers: HeaderMap) -> Response {
    if !shared.ready.load(Ordering::Relaxed) {
        // Counters restored from a checkpoint are behind until what was written since is read
        // again; served now, they would look like a reset.
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            "catching up with the pods log root; /readyz says when done\n",
        )
            .into_response();
    }
    let format = Format::from_accept(headers.get(header::ACCEPT).and_then(|v| v.to_str().ok()));
    let body = {
        let store = lock(&shared.store);
        let devices = lock(&shared.devices.readings);
        let mut scratch = lock(&shared.scratch);
        exposition::render(
            &store,
            &devices,
            &shared.devices.stats,
            &shared.stats,
            now_millis(),
            format,
            &mut scratch,
        )
    };
    ([(header::CONTENT_TYPE, format.content_type())], body).into_response()
}

async fn readyz(State(shared): State<Arc<Shared>>) -> Response {
    if !shared.ready.load(Ordering::Relaxed) {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            "catching up: the first scan of the pods log root (and the reading of what was written since the checkpoint) has not finished\n",
        )
            .into_response();
    }
    if let Some(why) = shared.devices.stats.down() {
        // Loud on purpose: a GPU node whose exporter measures no GPU must not look healthy
        // (`--device-source nvml`, or `auto` that found NVML and lost it). Frames are still
        // served on /metrics.
        let text = format!(
            "the device source {} cannot run: {why} (framescale_exporter_device_source_up is 0; docs/exporter.md, NVML in a pod)\n",
            shared.devices.stats.source
        );
        return (StatusCode::SERVICE_UNAVAILABLE, text).into_response();
    }
    let window = lock(&shared.store).window();
    let filled = shared.started.elapsed();
    if filled < window {
        // Ready: the values are real, over less time than a window.
        let text = format!(
            "ok; the frame windows restarted empty {} s ago: quantiles cover less than the {} s window until it has passed\n",
            filled.as_secs(),
            window.as_secs()
        );
        return (StatusCode::OK, text).into_response();
    }
    (StatusCode::OK, "ok\n").into_response()
}

async fn push_frames(
    State(shared): State<Arc<Shared>>,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    if !shared.push.enabled {
        ExporterStats::add(&shared.stats.push_rejected_disabled, 1);
        return json_error(
            StatusCode::NOT_FOUND,
            "pushing frames is off on this exporter (start it with --push; the chart's exporter.push.enabled)",
        );
    }
    let body = match body {
        Ok(body) => body,
        Err(rejection) => {
            let status = rejection.status();
            if status == StatusCode::PAYLOAD_TOO_LARGE {
                ExporterStats::add(&shared.stats.push_rejected_too_large, 1);
                let reason = format!(
                    "the body is over the limit of {} bytes (--push-body-limit)",
                    shared.push.body_limit
                );
                return json_error(status, &reason);
            }
            ExporterStats::add(&shared.stats.push_rejected_invalid, 1);
            return json_error(status, &rejection.body_text());
        }
    };
    let frames = match push::parse_body(&body) {
        Ok(frames) => frames,
        Err(error) => {
            ExporterStats::add(&shared.stats.push_rejected_invalid, 1);
            if let Some(suppressed) = shared.throttle.allow("push_invalid") {
                tracing::warn!(%error, suppressed, "Rejected a push body");
            }
            return json_error(StatusCode::BAD_REQUEST, &error.to_string());
        }
    };
    if let Some((line, (key, _))) = frames
        .iter()
        .enumerate()
        .find(|(_, (key, _))| !shared.filter.allows(&key.namespace, &key.container))
    {
        ExporterStats::add(&shared.stats.push_rejected_not_watched, 1);
        let reason = format!(
            "record {}: {}/{} container {} is not watched by this exporter (--namespaces, --exclude-namespaces, --container-regex)",
            line + 1,
            key.namespace,
            key.pod,
            key.container
        );
        return json_error(StatusCode::FORBIDDEN, &reason);
    }
    let now = now_millis();
    let accepted = frames.len();
    let mut late = 0;
    {
        let mut store = lock(&shared.store);
        let held = store.len();
        let new: std::collections::BTreeSet<&SeriesKey> = frames
            .iter()
            .map(|(key, _)| key)
            .filter(|key| !store.contains(key))
            .collect();
        if held + new.len() > shared.push.max_series {
            ExporterStats::add(&shared.stats.push_rejected_series_cap, 1);
            let reason = format!(
                "the body adds {} series to the {held} held, over the cap of {} (--max-series)",
                new.len(),
                shared.push.max_series
            );
            return json_error(StatusCode::TOO_MANY_REQUESTS, &reason);
        }
        for (key, frame) in frames {
            if !store.record(&key, &RenderEvent::Frame(frame), now) {
                late += 1;
            }
        }
    }
    ExporterStats::add(&shared.stats.late_frames, late);
    ExporterStats::add(&shared.stats.push_records, accepted as u64);
    (
        StatusCode::OK,
        axum::Json(serde_json::json!({ "accepted": accepted })),
    )
        .into_response()
}

fn json_error(status: StatusCode, reason: &str) -> Response {
    (status, axum::Json(serde_json::json!({ "error": reason }))).into_response()
}

#[cfg(test)]
mod tests {
    use axum::body::{Body, to_bytes};
    use axum::http::Request;
    use tower::ServiceExt;

    use super::*;
    use crate::PushConfig;
    use crate::discovery::PodFilter;

    fn with_push(push: PushConfig) -> Arc<Shared> {
        Arc::new(Shared::new(
            framescale_core::window::WindowConfig::default(),
            push,
            PodFilter::default(),
            crate::device::DeviceStats::default(),
        ))
    }

    fn unready() -> Arc<Shared> {
        with_push(PushConfig {
            enabled: true,
            body_limit: 1024,
            max_series: 3,
        })
    }

    /// State after the first scan.
    fn shared() -> Arc<Shared> {
        let shared = unready();
        shared.ready.store(true, Ordering::Relaxed);
        shared
    }

    fn frame(namespace: &str, pod: &str) -> String {
        format!(
            r#"{{"namespace":"{namespace}","pod":"{pod}","container":"worker","duration_ms":40}}"#
        )
    }

    #[tokio::test]
    async fn pushing_is_off_unless_asked_for() {
        let shared = with_push(PushConfig::default());
        shared.ready.store(true, Ordering::Relaxed);
        let (status, body) = call(&shared, post(frame("r", "w-0"))).await;
        assert_eq!(status, StatusCode::NOT_FOUND);
        assert!(body.contains("--push"), "{body}");
        assert!(lock(&shared.store).is_empty());
        assert_eq!(ExporterStats::get(&shared.stats.push_rejected_disabled), 1);
    }

    #[tokio::test]
    async fn pushes_for_namespaces_not_watched_are_refused_whole() {
        let shared = shared();
        let body = format!("{}\n{}", frame("r", "w-0"), frame("kube-system", "forged"));
        let (status, reason) = call(&shared, post(body)).await;
        assert_eq!(status, StatusCode::FORBIDDEN);
        assert!(reason.contains("record 2: kube-system/forged"), "{reason}");
        assert!(
            lock(&shared.store).is_empty(),
            "nothing of the body is taken"
        );
        assert_eq!(
            ExporterStats::get(&shared.stats.push_rejected_not_watched),
            1
        );
    }

    #[tokio::test]
    async fn pushes_beyond_the_series_cap_are_refused() {
        let shared = shared();
        let body = |pods: &[&str]| {
            pods.iter()
                .map(|p| frame("r", p))
                .collect::<Vec<_>>()
                .join("\n")
        };
        assert_eq!(
            call(&shared, post(body(&["a", "b"]))).await.0,
            StatusCode::OK
        );
        let (status, reason) = call(&shared, post(body(&["a", "c", "d"]))).await;
        assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);
        assert!(
            reason.contains("adds 2 series to the 2 held, over the cap of 3"),
            "{reason}"
        );
        assert_eq!(lock(&shared.store).len(), 2);
        // Series already held take more frames; one more series fits.
        assert_eq!(
            call(&shared, post(body(&["a", "b", "c"]))).await.0,
            StatusCode::OK
        );
        assert_eq!(
            ExporterStats::get(&shared.stats.push_rejected_series_cap),
            1
        );
    }

    async fn call(shared: &Arc<Shared>, request: Request<Body>) -> (StatusCode, String) {
        let response = router(shared.clone()).oneshot(request).await.unwrap();
        let status = response.status();
        let body = to_bytes(response.into_body(), usize::MAX).await.unwrap();
        (status, String::from_utf8(body.to_vec()).unwrap())
    }

    fn post(body: impl Into<Body>) -> Request<Body> {
        Request::post("/v1/frames").body(body.into()).unwrap()
    }

    #[tokio::test]
    async fn pushed_frames_show_in_metrics() {
        let shared = shared();
        let body = r#"{"namespace":"r","pod":"w-0","container":"worker","duration_ms":40}"#;
        assert_eq!(
            call(&shared, post(body)).await,
            (StatusCode::OK, r#"{"accepted":1}"#.into())
        );
        let (status, text) = call(
            &shared,
            Request::get("/metrics").body(Body::empty()).unwrap(),
        )
        .await;
        assert_eq!(status, StatusCode::OK);
        assert!(text.contains(r#"framescale_frames_total{namespace="r",pod="w-0",container="worker",outcome="ok"} 1"#), "{text}");
        assert!(
            text.contains("framescale_exporter_push_records_total 1"),
            "{text}"
        );
    }

    #[tokio::test]
    async fn bad_pushes_are_refused_and_counted() {
        let shared = shared();
        let (status, body) = call(&shared, post("nope")).await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert!(body.contains("line 1"), "{body}");
        let (status, body) = call(&shared, post(vec![b' '; 2048])).await;
        assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
        assert!(body.contains("--push-body-limit"), "{body}");
        assert_eq!(ExporterStats::get(&shared.stats.push_rejected_invalid), 1);
        assert_eq!(ExporterStats::get(&shared.stats.push_rejected_too_large), 1);
    }

    #[tokio::test]
    async fn openmetrics_when_asked() {
        let shared = shared();
        let request = Request::get("/metrics")
            .header("accept", "application/openmetrics-text;version=1.0.0")
            .body(Body::empty())
            .unwrap();
        let response = router(shared).oneshot(request).await.unwrap();
        assert_eq!(
            response.headers()[header::CONTENT_TYPE],
            Format::OpenMetrics.content_type()
        );
    }

    #[tokio::test]
    async fn ready_after_the_first_scan() {
        let shared = unready();
        let readyz = || Request::get("/readyz").body(Body::empty()).unwrap();
        assert_eq!(
            call(&shared, readyz()).await.0,
            StatusCode::SERVICE_UNAVAILABLE
        );
        let metrics = || Request::get("/metrics").body(Body::empty()).unwrap();
        assert_eq!(
            call(&shared, metrics()).await.0,
            StatusCode::SERVICE_UNAVAILABLE,
            "restored counters are not served before the catch-up"
        );
        shared.ready.store(true, Ordering::Relaxed);
        let (status, body) = call(&shared, readyz()).await;
        assert_eq!(status, StatusCode::OK);
        assert!(body.contains("windows restarted empty 0 s ago"), "{body}");
        assert_eq!(call(&shared, metrics()).await.0, StatusCode::OK);
        assert_eq!(
            call(&shared, Request::get("/livez").body(Body::empty()).unwrap())
                .await
                .0,
            StatusCode::OK
        );
    }
}
