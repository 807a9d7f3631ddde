//! Rendering `/metrics` for 1,000 tracked pods, each with a frame per second over the last
//! minute (60 values in its window). Goal (issue 2): under 5 ms.

use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
use framescale_core::frame::{FrameRecord, RenderEvent};
use framescale_core::window::{Scratch, WindowConfig};
use framescale_exporter::device::DeviceStats;
use framescale_exporter::exposition::{Format, render};
use framescale_exporter::stats::ExporterStats;
use framescale_exporter::store::{SeriesKey, SeriesStore};

fn bench(c: &mut Criterion) {
    let now = 1_800_000_000_000;
    let mut store = SeriesStore::new(WindowConfig::default());
    for pod in 0..1000u64 {
        let key = SeriesKey::new(
            "render",
            &format!("blender-worker-{pod:04}-7d9f8c6b5d"),
            "blender",
        );
        for second in 0..60 {
            let frame = FrameRecord::ok(
                Some(second),
                Duration::from_micros(20_000 + (pod * 131 + second * 977) % 30_000),
            );
            store.record(&key, &RenderEvent::Frame(frame), now - second * 1000);
        }
    }
    let stats = ExporterStats::default();
    let mut scratch = Scratch::default();
    let mut group = c.benchmark_group("metrics_1000_pods");
    for (name, format) in [
        ("prometheus_text", Format::Prometheus),
        ("openmetrics", Format::OpenMetrics),
    ] {
        group.bench_function(name, |b| {
            b.iter(|| {
                render(
                    &store,
                    &[],
                    &DeviceStats::default(),
                    &stats,
                    now,
                    format,
                    &mut scratch,
                )
            });
        });
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
