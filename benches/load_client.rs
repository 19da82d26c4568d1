//! The load generator's cost per received message: split a batched read into frames and
//! scan each for `topic`/`seq`/`ts`, as `tickcast load` does. It must stay well below the
//! server's cost per delivery, or the client would be what a sweep measures.

use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use serde_json::value::to_raw_value;
use tickcast::frame::FrameBuilder;
use tickcast::load::scan::Scanner;
use tickcast::load::wire::FrameReader;
use tickcast::mixer::frame_envelope;

fn read_and_scan(c: &mut Criterion) {
    let data = to_raw_value(&serde_json::json!({
        "feed": 0, "symbol": "ACME", "price": 101.2345, "bid": 101.2143, "ask": 101.2547, "size": 512
    }))
    .unwrap_or_else(|e| panic!("tick: {e}"));
    let mut builder = FrameBuilder::new();
    let mut batch = Vec::new();
    const FRAMES: u64 = 400;
    for seq in 1..=FRAMES {
        batch.extend_from_slice(&frame_envelope(
            &mut builder,
            "ticks",
            seq,
            1_700_000_000_000_000,
            None,
            &data,
        ));
    }
    let scanner = Scanner::default();
    let mut group = c.benchmark_group("load_client");
    group.throughput(Throughput::Elements(FRAMES));
    group.bench_function("frames_and_scan", |b| {
        let mut reader = FrameReader::default();
        b.iter(|| {
            let mut sum = 0u64;
            // A read that ends mid-frame, as socket reads do.
            let (a, rest) = batch.split_at(batch.len() / 2 + 7);
            for part in [a, rest] {
                let _ = reader.feed(black_box(part), 1 << 20, |_, payload| {
                    let e = scanner.envelope(payload);
                    sum += e.seq.unwrap_or(0) ^ e.ts.unwrap_or(0);
                    true
                });
            }
            sum
        })
    });
    group.finish();
}

criterion_group!(benches, read_and_scan);
criterion_main!(benches);
