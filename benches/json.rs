//! JSON serialization of a tick: the provider's tick object, and the mixer's envelope
//! (`topic`/`seq`/`ts`/`data`) serialized straight into a frame, once per message.

use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use tickcast::config::TickerConfig;
use tickcast::frame::FrameBuilder;
use tickcast::mixer::frame_envelope;
use tickcast::provider::ticker::Ticker;

fn serialization(c: &mut Criterion) {
    let mut group = c.benchmark_group("json");
    group.throughput(Throughput::Elements(1));
    let mut ticker = Ticker::new(0, &TickerConfig::default());
    group.bench_function("tick", |b| b.iter(|| ticker.next_tick()));
    let tick = ticker.next_tick();
    let mut builder = FrameBuilder::new();
    let mut seq = 0u64;
    group.bench_function("envelope_into_frame", |b| {
        b.iter(|| {
            seq += 1;
            frame_envelope(
                &mut builder,
                black_box("ticks"),
                seq,
                1_700_000_000_000_000 + seq,
                None,
                &tick,
            )
        })
    });
    group.finish();
}

criterion_group!(benches, serialization);
criterion_main!(benches);
