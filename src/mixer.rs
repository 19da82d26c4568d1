//! The mixer: the single sequencer that merges every provider into one ordered stream.
//!
//! Providers (and later client publishes) send [`Publish`] messages into one bounded channel
//! (fan-in). For each, the mixer stamps the topic's next sequence number and the server time,
//! serializes the message once with serde_json straight into a frame buffer, encodes it once
//! as a complete WebSocket text frame in an `Arc<[u8]>`, and offers it to every shard's
//! bounded queue with `try_send`. A full queue is a counted drop for that shard
//! (`tickcast_drops_total{reason="shard_queue_full"}`), never a block: one slow shard cannot
//! hold back the others.
//!
//! Shards are woken only when parked (see `ShardLink::wake_if_parked`), once per batch of
//! messages; with `--linger` the wake is delayed up to that long so that frames pile up and
//! leave in fewer, larger writes.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender, TrySendError};
use prometheus_client::metrics::counter::Counter;
use serde::Serialize;
use serde_json::value::RawValue;

use crate::frame::FrameBuilder;
use crate::metrics::{DropLabel, Metrics, TopicLabel};
use crate::shard::{Broadcast, ShardLink, ShardMsg, unix_micros};

/// Messages taken from the input per wake-up before shards are woken.
const BATCH: usize = 1024;
/// Distinct topics that get their own `messages_published` label; later ones share `_other`.
const MAX_TOPIC_LABELS: usize = 1000;

/// A message to sequence and broadcast.
#[derive(Debug)]
pub struct Publish {
    /// Topic to publish on.
    pub topic: Arc<str>,
    /// The message body, already valid JSON, relayed byte for byte.
    pub data: Box<RawValue>,
    /// The publishing client's id, for client publishes.
    pub from: Option<Arc<str>>,
}

/// Input of the mixer.
#[derive(Debug)]
pub enum MixerMsg {
    /// Sequence and broadcast a message.
    Publish(Publish),
    /// Flush, close the shard queues and stop. Everything sent before it is delivered.
    Shutdown,
}

/// The wire form of a broadcast message.
#[derive(Serialize)]
struct Envelope<'a> {
    topic: &'a str,
    seq: u64,
    ts: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    from: Option<&'a str>,
    data: &'a RawValue,
}

struct TopicState {
    /// The topic's name, shared by every broadcast on it.
    name: Arc<str>,
    /// Last sequence number assigned on this topic.
    seq: u64,
    published: Counter,
}

impl TopicState {
    /// State for a topic seen for the first time; `known` topics already have labels.
    fn new(name: Arc<str>, known: usize, metrics: &Metrics) -> Self {
        let label = if known < MAX_TOPIC_LABELS {
            name.to_string()
        } else {
            "_other".into()
        };
        let published = metrics
            .published
            .get_or_create(&TopicLabel { topic: label })
            .clone();
        TopicState {
            name,
            seq: 0,
            published,
        }
    }
}

/// Serializes one broadcast message (`{"topic","seq","ts","from"?,"data"}`) straight into
/// `builder` and returns it as a complete text frame: the mixer's per-message work, public
/// for the benchmarks.
pub fn frame_envelope(
    builder: &mut FrameBuilder,
    topic: &str,
    seq: u64,
    ts: u64,
    from: Option<&str>,
    data: &RawValue,
) -> crate::frame::FrameBytes {
    let envelope = Envelope {
        topic,
        seq,
        ts,
        from,
        data,
    };
    // Serializing strings, integers and pre-validated raw JSON into memory cannot fail.
    serde_json::to_writer(builder.payload(), &envelope).expect("serialize envelope");
    builder.finish_text()
}

/// Where the mixer sends frames, and its counters.
struct ShardOut {
    link: ShardLink,
    queue_full: Counter,
    /// Frames queued since the shard was last woken.
    unwoken: bool,
}

/// The mixer thread's state.
pub struct Mixer {
    input: Receiver<MixerMsg>,
    shards: Vec<ShardOut>,
    linger: Duration,
    topics: HashMap<Arc<str>, TopicState>,
    metrics: Arc<Metrics>,
    builder: FrameBuilder,
}

impl Mixer {
    /// A mixer reading `input` and feeding `shards`.
    pub fn new(
        input: Receiver<MixerMsg>,
        shards: Vec<ShardLink>,
        linger: Duration,
        metrics: Arc<Metrics>,
    ) -> Self {
        let shards = shards
            .into_iter()
            .map(|link| {
                let label = DropLabel {
                    shard: link.id as u32,
                    reason: "shard_queue_full",
                };
                let queue_full = metrics.drops.get_or_create(&label).clone();
                ShardOut {
                    link,
                    queue_full,
                    unwoken: false,
                }
            })
            .collect();
        Mixer {
            input,
            shards,
            linger,
            topics: HashMap::new(),
            metrics,
            builder: FrameBuilder::new(),
        }
    }

    /// The input channel: bounded, so a provider that outpaces the mixer waits (only itself).
    pub fn channel(capacity: usize) -> (Sender<MixerMsg>, Receiver<MixerMsg>) {
        crossbeam_channel::bounded(capacity)
    }

    /// Runs until [`MixerMsg::Shutdown`] (or every sender is gone), then closes the shard
    /// queues so shards start their drain after the last frame.
    pub fn run(mut self) {
        let mut held_since: Option<Instant> = None;
        'run: loop {
            let first = match held_since {
                None => self
                    .input
                    .recv()
                    .map_err(|_| RecvTimeoutError::Disconnected),
                Some(since) => self.input.recv_deadline(since + self.linger),
            };
            match first {
                Ok(msg) => {
                    if !self.handle(msg) {
                        break 'run;
                    }
                    for _ in 1..BATCH {
                        let Ok(msg) = self.input.try_recv() else {
                            break;
                        };
                        if !self.handle(msg) {
                            break 'run;
                        }
                    }
                    held_since.get_or_insert_with(Instant::now);
                }
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => break 'run,
            }
            if held_since.is_some_and(|since| since.elapsed() >= self.linger) {
                self.wake_shards();
                held_since = None;
            }
        }
        self.wake_shards();
        // Dropping the queue senders is the shards' signal that the stream has ended; wake
        // them once more so they notice.
        let wakers: Vec<_> = self
            .shards
            .drain(..)
            .map(|s| s.link.waker.clone())
            .collect();
        for waker in wakers {
            let _ = waker.wake();
        }
        log::debug!("mixer stopped");
    }

    /// Handles one input message; false means stop.
    fn handle(&mut self, msg: MixerMsg) -> bool {
        match msg {
            MixerMsg::Publish(p) => {
                self.broadcast(&p);
                true
            }
            MixerMsg::Shutdown => false,
        }
    }

    /// Sequences, serializes and frames one message, and offers it to every shard.
    fn broadcast(&mut self, p: &Publish) {
        let ts = unix_micros();
        let known = self.topics.len();
        let metrics = &self.metrics;
        let state = self
            .topics
            .entry(p.topic.clone())
            .or_insert_with(|| TopicState::new(p.topic.clone(), known, metrics));
        state.seq += 1;
        state.published.inc();
        let (topic, seq) = (state.name.clone(), state.seq);
        let frame = frame_envelope(
            &mut self.builder,
            &topic,
            seq,
            ts,
            p.from.as_deref(),
            &p.data,
        );
        let b = Broadcast {
            topic,
            seq,
            stamp_us: ts,
            frame,
        };
        for out in &mut self.shards {
            match out.link.queue.try_send(ShardMsg::Broadcast(b.clone())) {
                Ok(()) => out.unwoken = true,
                Err(TrySendError::Full(_)) => {
                    out.queue_full.inc();
                }
                Err(TrySendError::Disconnected(_)) => {}
            }
        }
        if self.linger.is_zero() {
            self.wake_shards();
        }
    }

    fn wake_shards(&mut self) {
        for out in &mut self.shards {
            if out.unwoken {
                out.unwoken = false;
                out.link.wake_if_parked();
            }
        }
    }
}
