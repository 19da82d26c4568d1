//! One connection's outbox: push shared frames by reference, then write them with vectored
//! writes into a mock writer that accepts everything (no syscall: the outbox's own cost).

use std::hint::black_box;
use std::io::{self, IoSlice, Write};

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use tickcast::conn::{Outbox, WriteStatus};
use tickcast::frame;

/// Accepts every byte of every slice; counts calls.
struct Sink {
    calls: u64,
}

impl Write for Sink {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.calls += 1;
        Ok(buf.len())
    }
    fn write_vectored(&mut self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        self.calls += 1;
        Ok(bufs.iter().map(|b| b.len()).sum())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

fn push_and_flush(c: &mut Criterion) {
    let mut group = c.benchmark_group("outbox_push_flush");
    let f = frame::text(&"x".repeat(150));
    let mut sink = Sink { calls: 0 };
    for frames in [1usize, 16, 256] {
        group.throughput(Throughput::Elements(frames as u64));
        group.bench_with_input(BenchmarkId::from_parameter(frames), &frames, |b, &n| {
            let mut outbox = Outbox::default();
            b.iter(|| {
                for i in 0..n {
                    outbox.push(f.clone(), i as u64 + 1);
                }
                let (status, written) = outbox
                    .write_to(&mut sink, 1 << 20, |done| {
                        black_box(done.stamps());
                    })
                    .unwrap_or((WriteStatus::Blocked, 0));
                black_box((status, written))
            })
        });
    }
    group.finish();
    black_box(sink.calls);
}

criterion_group!(benches, push_and_flush);
criterion_main!(benches);
