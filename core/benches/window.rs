//! Recording into a sliding window, in values per second on one core. Goal (issue 2): at least
//! 20 million values per second.

use std::time::Duration;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use framescale_core::window::{QuantileWindow, Scratch, WindowConfig};

const VALUES: u64 = 1_000_000;

fn bench(c: &mut Criterion) {
    let mut group = c.benchmark_group("window");
    group.throughput(Throughput::Elements(VALUES));
    // Values of 5-50 ms; time advancing so that every sub-window rotates several times.
    let values: Vec<Duration> = (0..VALUES)
        .map(|i| Duration::from_micros(5_000 + (i * 7919) % 45_000))
        .collect();
    for (name, millis_per_value) in [("record_dense", 1u64), ("record_sparse", 100)] {
        // 1 ms apart: 10,000 values per 10 s sub-window (dense form); 100 ms apart: 100 (list form).
        group.bench_function(name, |b| {
            b.iter(|| {
                let mut window = QuantileWindow::new(WindowConfig::default());
                for (i, value) in values.iter().enumerate() {
                    window.record(*value, 1_800_000_000_000 + i as u64 * millis_per_value);
                }
                window
            });
        });
    }
    group.finish();

    let mut group = c.benchmark_group("window_snapshot");
    let now = 1_800_000_000_000;
    for (name, count) in [("60_values", 60u64), ("10000_values", 10_000)] {
        let mut window = QuantileWindow::new(WindowConfig::default());
        for i in 0..count {
            window.record(values[i as usize], now - (i * 59_000 / count));
        }
        let mut scratch = Scratch::default();
        group.bench_function(name, |b| {
            b.iter(|| window.snapshot(now, &[0.5, 0.9, 0.95, 0.99], &mut scratch));
        });
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
