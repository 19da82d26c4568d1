//! The mixer alone: publishes per second it sequences, serializes, frames and offers to
//! every shard, with 1, 2, 8 and 16 shards, the history ring on (1,000 per topic) and off,
//! on one topic and spread over 1,000 rooms. Each shard's queue is a real bounded
//! crossbeam channel with a real `mio::Waker`; the shards are not running, so the queues are
//! emptied between timed stretches (untimed) and no wake-up is counted (they cost the loop,
//! once per batch of up to 1,024 messages, not per publish). This is the ceiling of one
//! mixer thread; the `--rooms` bench shows whether it or the shards saturate first.

use std::hint::black_box;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize};
use std::time::{Duration, Instant};

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use crossbeam_channel::Receiver;
use mio::{Poll, Token, Waker};
use serde_json::value::RawValue;

use tickcast::messages::{MixerMsg, Publish, QueueBytes, ShardLink, ShardMsg};
use tickcast::metrics::Metrics;
use tickcast::mixer::{Mixer, MixerConfig};

/// Messages between two drains of the shard queues (each queue holds this many).
const STRETCH: u64 = 4096;

struct Rig {
    mixer: Mixer,
    queues: Vec<Receiver<ShardMsg>>,
    _polls: Vec<Poll>,
}

fn rig(shards: usize, history: usize) -> Rig {
    let mut links = Vec::new();
    let mut queues = Vec::new();
    let mut polls = Vec::new();
    for id in 0..shards {
        let poll = Poll::new().expect("poll");
        let (queue, rx) = crossbeam_channel::bounded(STRETCH as usize + 16);
        links.push(ShardLink {
            id,
            queue,
            intake: crossbeam_channel::bounded(1).0,
            waker: Arc::new(Waker::new(poll.registry(), Token(0)).expect("waker")),
            parked: Arc::new(AtomicBool::new(false)),
            conns: Arc::new(AtomicUsize::new(0)),
            bytes: QueueBytes::new(usize::MAX),
        });
        queues.push(rx);
        polls.push(poll);
    }
    let cfg = MixerConfig {
        linger: Duration::ZERO,
        history,
        // Never reached here: the benchmark times the sequencing, not eviction.
        history_budget: tickcast::mixer::MAX_BUDGET,
        presence_list_max: 100,
        drain_wait: Duration::from_millis(10),
        redis_server_topics: false,
        deflate_min_bytes: 256,
    };
    let (_tx, input) = Mixer::channel(16);
    Rig {
        mixer: Mixer::new(input, links, cfg, Metrics::new(shards)),
        queues,
        _polls: polls,
    }
}

/// `n` client publishes, the `k`-th on topic `topics[(first + k) % len]`, as a shard hands
/// them over (built untimed).
fn publishes(topics: &[Arc<str>], first: u64, n: u64) -> Vec<Publish> {
    let data: Box<RawValue> =
        RawValue::from_string(r#"{"text":"hello, room","n":42}"#.into()).expect("json");
    let from: Arc<str> = Arc::from("c-3f9a12bc77de");
    (first..first + n)
        .map(|k| Publish {
            topic: topics[k as usize % topics.len()].clone(),
            data: data.clone(),
            from: Some(from.clone()),
            nick: None,
            kind: None,
            seq: None,
            made_us: None,
            queued: 0,
        })
        .collect()
}

fn mixer(c: &mut Criterion) {
    let mut group = c.benchmark_group("mixer_publish");
    group.throughput(Throughput::Elements(1));
    let cases = [
        (1, 1000, 1),
        (2, 1000, 1),
        (8, 1000, 1),
        (16, 1000, 1),
        (1, 0, 1),
        (16, 0, 1),
        (2, 1000, 1000),
    ];
    for (shards, history, topics) in cases {
        let mut rig = rig(shards, history);
        let names: Vec<Arc<str>> = (0..topics)
            .map(|i| Arc::from(format!("room-{i}")))
            .collect();
        let id = format!("shards{shards}-history{history}-topics{topics}");
        group.bench_function(BenchmarkId::from_parameter(id), |b| {
            b.iter_custom(|iters| {
                let mut total = Duration::ZERO;
                let mut done = 0;
                while done < iters {
                    let n = (iters - done).min(STRETCH);
                    let batch = publishes(&names, done, n);
                    let start = Instant::now();
                    for p in batch {
                        black_box(rig.mixer.process(MixerMsg::Publish(p)));
                    }
                    total += start.elapsed();
                    done += n;
                    for q in &rig.queues {
                        while q.try_recv().is_ok() {}
                    }
                }
                total
            })
        });
    }
    group.finish();
}

criterion_group!(benches, mixer);
criterion_main!(benches);
