//! Frame encoding: a broadcast text frame built once per message (header + payload into
//! shared bytes), for a natural tick (~150 bytes) and a padded 1 KiB one.

use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use tickcast::frame::{self, FrameBuilder};

fn encoding(c: &mut Criterion) {
    let mut group = c.benchmark_group("frame_encode");
    group.throughput(Throughput::Elements(1));
    for size in [150usize, 1024] {
        let text = "x".repeat(size);
        group.bench_function(format!("text_{size}B"), |b| {
            b.iter(|| frame::text(black_box(&text)))
        });
        let mut builder = FrameBuilder::new();
        group.bench_function(format!("builder_{size}B"), |b| {
            b.iter(|| {
                builder
                    .payload()
                    .extend_from_slice(black_box(text.as_bytes()));
                builder.finish_text()
            })
        });
    }
    group.finish();
}

criterion_group!(benches, encoding);
criterion_main!(benches);
