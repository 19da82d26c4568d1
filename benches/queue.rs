//! The mixer -> shard queue: `try_send` a batch of broadcasts into a bounded crossbeam
//! channel, then drain it with `try_recv`, as the mixer and a shard do.

use std::hint::black_box;
use std::sync::Arc;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use tickcast::frame;
use tickcast::messages::{Broadcast, ShardMsg};

fn offer_and_drain(c: &mut Criterion) {
    let mut group = c.benchmark_group("shard_queue");
    let b = Broadcast {
        topic: Arc::from("ticks"),
        seq: 1,
        stamp_us: 1,
        frame: frame::Encoded::plain(frame::text(&"x".repeat(150))),
    };
    for batch in [1usize, 64, 1024] {
        let (tx, rx) = crossbeam_channel::bounded::<ShardMsg>(16 * 1024);
        group.throughput(Throughput::Elements(batch as u64));
        group.bench_with_input(BenchmarkId::from_parameter(batch), &batch, |bench, &n| {
            bench.iter(|| {
                for _ in 0..n {
                    let _ = tx.try_send(ShardMsg::Broadcast(b.clone()));
                }
                let mut got = 0;
                while let Ok(msg) = rx.try_recv() {
                    black_box(msg);
                    got += 1;
                }
                got
            })
        });
    }
    group.finish();
}

criterion_group!(benches, offer_and_drain);
criterion_main!(benches);
