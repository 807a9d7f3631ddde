//! The worker's overhead per frame beyond the render itself (goal: under 1 ms): a whole
//! `POST /v1/render` through the router (JSON parsing, admission, slot, the blocking-pool hop,
//! the frame line, the response) against `Backend::render` alone, for the same tiny frame.
//! The frame lines go to stdout; run with `> /dev/null`:
//!
//!     cargo bench -p framescale-worker --bench overhead > /dev/null

use std::sync::Arc;

use axum::body::Body;
use axum::http::Request;
use criterion::{Criterion, criterion_group, criterion_main};
use framescale_worker::backend::Backend;
use framescale_worker::frame::{FrameRequest, Renderer};
use framescale_worker::server::{Worker, router};
use tower::ServiceExt;

const BODY: &str = r#"{"frame": 1, "width": 1, "height": 1, "samples": 1}"#;

fn overhead(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let app = router(Arc::new(Worker::new(Arc::new(Backend::Synthetic), 1, 4)));
    let request: FrameRequest = serde_json::from_str(BODY).unwrap();
    let mut group = c.benchmark_group("frame");
    group.bench_function("render alone, 1x1, 1 sample", |b| {
        b.iter(|| Backend::Synthetic.render(&request).unwrap());
    });
    group.bench_function("POST /v1/render, 1x1, 1 sample", |b| {
        b.iter(|| {
            runtime.block_on(async {
                let response = app
                    .clone()
                    .oneshot(
                        Request::post("/v1/render")
                            .header("content-type", "application/json")
                            .body(Body::from(BODY))
                            .unwrap(),
                    )
                    .await
                    .unwrap();
                assert_eq!(response.status(), 200);
                axum::body::to_bytes(response.into_body(), usize::MAX)
                    .await
                    .unwrap()
            })
        });
    });
    group.finish();
}

criterion_group!(benches, overhead);
criterion_main!(benches);
