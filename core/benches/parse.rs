//! Parsing throughput: Blender console output and framescale frame lines, in bytes per second
//! on one core. Goal (issue 2): at least 200 MB/s of Blender output.

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use framescale_core::frame::RenderEvent;
use framescale_core::render_log::RenderLogParser;

/// About 8 MiB of real Blender 3.4.1 output (Cycles and EEVEE runs), repeated.
fn blender_output() -> Vec<u8> {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../fixtures/blender-3.4.1");
    let mut one = std::fs::read(format!("{dir}/a_cycles_3frames.log")).expect("fixture");
    one.extend(std::fs::read(format!("{dir}/b_eevee.log")).expect("fixture"));
    one.repeat((8 << 20) / one.len() + 1)
}

fn frame_lines() -> Vec<u8> {
    (0..100_000)
        .flat_map(|i| {
            format!(
                "framescale.frame frame={i} duration_ms={}.{} queue_ms=4.1 outcome=ok\n",
                20 + i % 40,
                i % 10
            )
            .into_bytes()
        })
        .collect()
}

fn parse_all(input: &[u8]) -> usize {
    let mut parser = RenderLogParser::new();
    let mut frames = 0;
    let mut count = |_: RenderEvent| frames += 1;
    for line in input.split(|&b| b == b'\n') {
        let _ = parser.feed(line, &mut count);
    }
    frames
}

fn bench(c: &mut Criterion) {
    let mut group = c.benchmark_group("parse");
    for (name, input) in [
        ("blender_3.4.1_output", blender_output()),
        ("frame_lines", frame_lines()),
    ] {
        group.throughput(Throughput::Bytes(input.len() as u64));
        group.bench_function(name, |b| b.iter(|| parse_all(std::hint::black_box(&input))));
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
