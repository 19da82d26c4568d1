//! One shard's fan-out of a frame to N in-memory connections: walk the topic index and push
//! the shared frame into each subscriber's outbox under the limit check (what
//! `Conn::offer` does per subscriber). Only the walk is timed; the outboxes are emptied
//! between iterations. `run_of_8` delivers 8 frames as 8 walks (`frames`) or as one walk with
//! one [`FrameRun`] (`run`), what a shard does with frames queued together.

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use std::sync::Arc;

use tickcast::conn::{OutFrame, Outbox};
use tickcast::frame::{self, FrameRun};
use tickcast::subs::{Class, Subscriptions};

const OUTBOX_LIMIT: usize = 1 << 20;

fn fan_out(c: &mut Criterion) {
    let mut group = c.benchmark_group("fan_out");
    let f = frame::text(&"x".repeat(150));
    for n in [1_000usize, 10_000] {
        let mut subs = Subscriptions::default();
        let mut outboxes: Vec<Outbox> = (0..n).map(|_| Outbox::default()).collect();
        for token in 0..n {
            subs.subscribe("ticks", token, Class::Plain);
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
                    subs.for_each_subscriber(black_box("ticks"), Class::Plain, |token| {
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

/// Times `deliver` over `n` idle outboxes (the walk only), as `fan_out` does.
fn timed_walks(
    iters: u64,
    subs: &Subscriptions,
    outboxes: &mut [Outbox],
    mut deliver: impl FnMut(&mut Outbox),
) -> Duration {
    let mut total = Duration::ZERO;
    for _ in 0..iters {
        let start = Instant::now();
        subs.for_each_subscriber(black_box("ticks"), Class::Plain, |token| {
            deliver(&mut outboxes[token])
        });
        total += start.elapsed();
        for ob in outboxes.iter_mut() {
            let _ = ob.write_to(&mut std::io::sink(), usize::MAX, |_| {});
        }
    }
    total
}

fn run_of_eight(c: &mut Criterion) {
    let mut group = c.benchmark_group("run_of_8");
    let frames: Vec<_> = (0..8)
        .map(|i| frame::text(&i.to_string().repeat(150)))
        .collect();
    let n = 1_000usize;
    let mut subs = Subscriptions::default();
    let mut outboxes: Vec<Outbox> = (0..n).map(|_| Outbox::default()).collect();
    for token in 0..n {
        subs.subscribe("ticks", token, Class::Plain);
    }
    group.throughput(Throughput::Elements(8 * n as u64));
    group.bench_function("frames", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for f in &frames {
                total += timed_walks(iters, &subs, &mut outboxes, |ob| ob.push(f.clone(), 1));
            }
            total
        })
    });
    group.bench_function("run", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                // Concatenating is part of the cost: once per walk.
                let start = Instant::now();
                let run = Arc::new(FrameRun::new(frames.iter().map(|f| (&f[..], 1))));
                total += start.elapsed();
                total += timed_walks(1, &subs, &mut outboxes, |ob| {
                    ob.push_entry(OutFrame::Run(run.clone()))
                });
            }
            total
        })
    });
    group.finish();
}

criterion_group!(benches, fan_out, run_of_eight);
criterion_main!(benches);
