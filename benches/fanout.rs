//! One shard's fan-out of a frame to N in-memory connections: walk the topic index and push
//! the shared frame into each subscriber's outbox under the limit check (what
//! `Conn::offer` does per subscriber). Only the walk is timed; the outboxes are emptied
//! between iterations.

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use tickcast::conn::Outbox;
use tickcast::frame;
use tickcast::shard::Subscriptions;

const OUTBOX_LIMIT: usize = 1 << 20;

fn fan_out(c: &mut Criterion) {
    let mut group = c.benchmark_group("fan_out");
    let f = frame::text(&"x".repeat(150));
    for n in [1_000usize, 10_000] {
        let mut subs = Subscriptions::default();
        let mut outboxes: Vec<Outbox> = (0..n).map(|_| Outbox::default()).collect();
        for token in 0..n {
            subs.subscribe("ticks", token);
        }
        group.throughput(Throughput::Elements(n as u64));
        // Timed: the walk and the pushes. Untimed: emptying the outboxes afterwards, so
        // every iteration starts from idle connections.
        group.bench_with_input(BenchmarkId::new("push", n), &n, |b, _| {
            b.iter_custom(|iters| {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    let start = Instant::now();
                    let mut dropped = 0u64;
                    subs.for_each_subscriber(black_box("ticks"), |token| {
                        let ob = &mut outboxes[token];
                        if ob.would_exceed(f.len(), OUTBOX_LIMIT) {
                            dropped += 1;
                        } else {
                            ob.push(f.clone(), 1);
                        }
                    });
                    total += start.elapsed();
                    black_box(dropped);
                    for ob in &mut outboxes {
                        let _ = ob.write_to(&mut std::io::sink(), usize::MAX, |_| {});
                    }
                }
                total
            })
        });
    }
    group.finish();
}

criterion_group!(benches, fan_out);
criterion_main!(benches);
