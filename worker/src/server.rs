//! The render API: `POST /v1/render` (one frame: the PNG, or only its timings), `/livez`,
//! `/readyz`. A fixed number of render slots and a bounded queue: a request beyond both is
//! answered 429 with `Retry-After` and logged as a `framescale.frame` line with
//! `outcome=refused`; every admitted frame is rendered, and logged on stdout as a
//! `framescale.frame` line with its render and queue time.

use std::io::Write as _;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use framescale_core::frame::{FrameRecord, Outcome};
use framescale_core::frame_line;
use serde_json::json;
use tokio::sync::Semaphore;

use crate::frame::{FrameRequest, RenderError, Rendered, Renderer};

/// The worker's shared state.
pub struct Worker {
    renderer: Arc<dyn Renderer + Send + Sync>,
    slots: Semaphore,
    admitted: AtomicUsize,
    capacity: usize,
    draining: AtomicBool,
    frames: AtomicU64,
}

impl Worker {
    /// A worker rendering `slots` frames at once on `renderer` with up to `queue` more waiting.
    #[must_use]
    pub fn new(renderer: Arc<dyn Renderer + Send + Sync>, slots: usize, queue: usize) -> Self {
        Worker {
            renderer,
            slots: Semaphore::new(slots),
            admitted: AtomicUsize::new(0),
            capacity: slots + queue,
            draining: AtomicBool::new(false),
            frames: AtomicU64::new(0),
        }
    }

    /// From now on `/readyz` answers 503 (the listener stops accepting separately).
    pub fn start_draining(&self) {
        self.draining.store(true, Ordering::Release);
    }

    /// Frames rendered so far.
    pub fn frames(&self) -> u64 {
        self.frames.load(Ordering::Relaxed)
    }

    /// Frames admitted and not finished.
    pub fn in_flight(&self) -> usize {
        self.admitted.load(Ordering::Acquire)
    }

    /// A place among the admitted frames, if there is one.
    fn admit(self: &Arc<Self>) -> Option<Admitted> {
        self.admitted
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < self.capacity).then_some(n + 1)
            })
            .ok()
            .map(|_| Admitted(self.clone()))
    }
}

/// An admitted frame; leaving frees its place.
struct Admitted(Arc<Worker>);

impl Drop for Admitted {
    fn drop(&mut self) {
        self.0.admitted.fetch_sub(1, Ordering::AcqRel);
    }
}

/// The routes.
pub fn router(worker: Arc<Worker>) -> Router {
    Router::new()
        .route("/v1/render", post(render))
        .with_state(worker.clone())
        .merge(health_router(worker))
}

/// `/livez` and `/readyz` only (queue mode).
pub fn health_router(worker: Arc<Worker>) -> Router {
    Router::new()
        .route("/livez", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .with_state(worker)
}

async fn readyz(State(worker): State<Arc<Worker>>) -> (StatusCode, &'static str) {
    if worker.draining.load(Ordering::Acquire) {
        (StatusCode::SERVICE_UNAVAILABLE, "draining\n")
    } else {
        (StatusCode::OK, "ok\n")
    }
}

async fn render(
    State(worker): State<Arc<Worker>>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let request: FrameRequest = match serde_json::from_slice(&body) {
        Ok(request) => request,
        Err(error) => {
            return problem(
                StatusCode::BAD_REQUEST,
                &format!("bad request body: {error}"),
            );
        }
    };
    if let Err(error) = request.validate() {
        return failure(&error);
    }
    let timings_only = query.as_deref().is_some_and(|q| {
        q.split('&')
            .any(|p| p == "timings=1" || p == "timings=true")
    }) || headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|a| a.contains("application/json"));
    let Some(admitted) = worker.admit() else {
        // The user never gets this frame: the exporter counts it as later than any target.
        log_frame(&FrameRecord::refused(
            Some(request.frame),
            Some(Duration::ZERO),
        ));
        let mut response = problem(
            StatusCode::TOO_MANY_REQUESTS,
            "every render slot is busy and the queue is full",
        );
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        return response;
    };
    let queued_at = Instant::now();
    // The semaphore is never closed.
    let Ok(slot) = worker.slots.acquire().await else {
        return problem(StatusCode::SERVICE_UNAVAILABLE, "the worker is stopping");
    };
    let queue_time = queued_at.elapsed();
    let backend = worker.renderer.clone();
    let frame_request = request.clone();
    let result = tokio::task::spawn_blocking(move || backend.render(&frame_request))
        .await
        .unwrap_or_else(|e| Err(RenderError::Failed(format!("the render panicked: {e}"))));
    drop(slot);
    log_frame(&rendered_record(&request, queue_time, &result));
    drop(admitted);
    let rendered = match result {
        Ok(rendered) => rendered,
        Err(error) => return failure(&error),
    };
    worker.frames.fetch_add(1, Ordering::Relaxed);
    let (render_ms, queue_ms) = (millis(rendered.render_time), millis(queue_time));
    if timings_only {
        return axum::Json(json!({
            "scene": request.scene, "frame": request.frame, "width": request.width,
            "height": request.height, "samples": request.samples,
            "render_ms": render_ms, "queue_ms": queue_ms,
        }))
        .into_response();
    }
    let mut response = (
        [(header::CONTENT_TYPE, HeaderValue::from_static("image/png"))],
        rendered.png,
    )
        .into_response();
    for (name, value) in [("x-render-ms", render_ms), ("x-queue-ms", queue_ms)] {
        if let Ok(value) = HeaderValue::from_str(&format!("{value:.3}")) {
            response.headers_mut().insert(name, value);
        }
    }
    response
}

/// The record of a frame that was rendered, or failed to.
pub(crate) fn rendered_record(
    request: &FrameRequest,
    queue: Duration,
    result: &Result<Rendered, RenderError>,
) -> FrameRecord {
    FrameRecord {
        frame: Some(request.frame),
        duration: result.as_ref().ok().map(|r| r.render_time),
        queue: Some(queue),
        outcome: if result.is_ok() {
            Outcome::Ok
        } else {
            Outcome::Failed
        },
        output: None,
        error: result.as_ref().err().map(ToString::to_string),
    }
}

/// One `framescale.frame` line on stdout per frame, refused ones included, so the exporter
/// measures the worker like any other pod.
pub(crate) fn log_frame(record: &FrameRecord) {
    let line = frame_line::format(record);
    let mut stdout = std::io::stdout().lock();
    if writeln!(stdout, "{line}")
        .and_then(|()| stdout.flush())
        .is_err()
    {
        tracing::warn!("Cannot write the frame line to stdout");
    }
}

fn millis(duration: Duration) -> f64 {
    duration.as_secs_f64() * 1000.0
}

fn failure(error: &RenderError) -> Response {
    let status = match error {
        RenderError::BadRequest(_) => StatusCode::BAD_REQUEST,
        RenderError::SceneNotFound(_) => StatusCode::NOT_FOUND,
        RenderError::Failed(_) => StatusCode::INTERNAL_SERVER_ERROR,
    };
    problem(status, &error.to_string())
}

/// A JSON error body: `{"error": "..."}`.
fn problem(status: StatusCode, message: &str) -> Response {
    (status, axum::Json(json!({ "error": message }))).into_response()
}

#[cfg(test)]
mod tests {
    use std::sync::{Condvar, Mutex};

    use axum::body::{Body, to_bytes};
    use axum::http::Request;
    use tower::ServiceExt;

    use super::*;

    /// A renderer that holds every frame until the test opens it.
    #[derive(Default)]
    struct Gate {
        open: Mutex<bool>,
        opened: Condvar,
        started: AtomicUsize,
    }

    impl Gate {
        fn open(&self) {
            *self.open.lock().unwrap() = true;
            self.opened.notify_all();
        }
    }

    impl Renderer for Gate {
        fn render(&self, _: &FrameRequest) -> Result<Rendered, RenderError> {
            self.started.fetch_add(1, Ordering::SeqCst);
            let mut open = self.open.lock().unwrap();
            while !*open {
                open = self.opened.wait(open).unwrap();
            }
            Ok(Rendered {
                png: b"png".to_vec(),
                render_time: Duration::from_millis(1),
            })
        }
    }

    fn frame() -> Request<Body> {
        Request::post("/v1/render")
            .body(Body::from(r#"{"frame": 1}"#))
            .unwrap()
    }

    /// Waits (on the worker's state, not on a clock) until `done` holds.
    async fn until(done: impl Fn() -> bool) {
        while !done() {
            tokio::task::yield_now().await;
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn beyond_the_slots_and_the_queue_frames_are_refused_with_429() {
        let gate = Arc::new(Gate::default());
        let worker = Arc::new(Worker::new(gate.clone(), 1, 1));
        let app = router(worker.clone());
        // The first frame takes the slot and is held there; the second waits in the queue.
        let first = tokio::spawn(app.clone().oneshot(frame()));
        until(|| gate.started.load(Ordering::SeqCst) == 1).await;
        let second = tokio::spawn(app.clone().oneshot(frame()));
        until(|| worker.in_flight() == 2).await;
        let refused = app.clone().oneshot(frame()).await.unwrap();
        assert_eq!(refused.status(), StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(refused.headers()[header::RETRY_AFTER], "1");
        let body = to_bytes(refused.into_body(), usize::MAX).await.unwrap();
        assert!(String::from_utf8_lossy(&body).contains("queue is full"));

        gate.open();
        for answer in [first, second] {
            let answer = answer.await.unwrap().unwrap();
            assert_eq!(answer.status(), StatusCode::OK);
            assert!(answer.headers().contains_key("x-queue-ms"));
        }
        assert_eq!((worker.frames(), worker.in_flight()), (2, 0));
        assert_eq!(
            gate.started.load(Ordering::SeqCst),
            2,
            "the refused frame never ran"
        );
    }
}
