//! Writing one `MetricValueList` of 1,000 pods (the answer `scripts/bench-adapter` asks for),
//! in both API versions: the cost of the wire format when an answer is not cached.

use criterion::{Criterion, criterion_group, criterion_main};
use framescale_adapter::wire::{DescribedObject, MetricValue, Version, metric_value_list};

fn values() -> Vec<MetricValue> {
    (0..1000)
        .map(|i| MetricValue {
            object: DescribedObject {
                kind: "Pod",
                api_version: "v1",
                namespace: Some("render".into()),
                name: format!("render-{i:05}"),
            },
            metric: "render_scaling_score".into(),
            selector: None,
            timestamp_millis: 1_800_000_000_000 + i,
            window_seconds: Some(60),
            quantity: format!("{}m", 500 + i),
        })
        .collect()
}

fn bench(c: &mut Criterion) {
    let values = values();
    let mut group = c.benchmark_group("metric_value_list_1000_pods");
    for version in [Version::V1beta2, Version::V1beta1] {
        group.bench_function(version.as_str(), |b| {
            b.iter(|| metric_value_list(version, &values));
        });
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
