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
//!
//! Being the single sequencer, the mixer also owns what needs one order across shards:
//! room membership and presence ([`rooms`]), and each topic's recent history for resumes
//! ([`history`]), bounded over every topic by the node's history budget (`budget.rs`). A
//! resumed topic is subscribed by the shard only when the replay arrives
//! through the same queue as the live frames, so there is no gap and no duplicate at the seam.

mod budget;
mod cluster;
mod compress;
mod envelope;
pub mod history;
mod outlet;
mod resume;
pub mod rooms;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender};
use prometheus_client::metrics::counter::Counter;

use crate::clock::unix_micros;
use crate::frame::{Encoded, FrameBuilder, FrameBytes};
use crate::interest::Interest;
use crate::messages::{
    Broadcast, ConnRef, FetchAsk, MixerMsg, Publish, QueueBytes, ShardLink, ShardMsg,
};
use crate::metrics::{Metrics, ROOMS_LABEL, TopicLabel};
use crate::protocol;
use budget::Budget;
pub use budget::{MAX_BUDGET, MIN_BUDGET, default_budget};
use compress::Compressor;
pub use envelope::frame_envelope;
use envelope::{Envelope, encode};
use history::History;
use outlet::Outlet;
use rooms::Rooms;

/// Messages taken from the input per wake-up before shards are woken.
const BATCH: usize = 1024;

/// Settings of the mixer.
#[derive(Debug, Clone)]
pub struct MixerConfig {
    /// How long frames may be held before shards are woken (`--linger`).
    pub linger: Duration,
    /// Messages kept per topic for resumes (`--history`).
    pub history: usize,
    /// Bytes of history kept by every topic together (`--history-budget`).
    pub history_budget: u64,
    /// Rooms larger than this get counts instead of member lists (`--presence-list-max`).
    pub presence_list_max: usize,
    /// At shutdown, how long to wait for the shards to hand over what they accepted
    /// (`--drain-timeout`).
    pub drain_wait: Duration,
    /// With `--redis-publish-providers`, server topics travel through Redis too, and their
    /// resumes may be read from it (rooms always may).
    pub redis_server_topics: bool,
    /// Messages smaller than this are never compressed (`--deflate-min-bytes`).
    pub deflate_min_bytes: usize,
}

struct TopicState {
    /// The topic's name, shared by every broadcast on it.
    name: Arc<str>,
    /// Which life of the topic this is (unique over the process): the history budget's
    /// entries of a room that ended never touch the ring of the same room created again.
    ring: u64,
    /// Last sequence number assigned on this topic.
    seq: u64,
    published: Counter,
    history: History,
}

impl TopicState {
    /// State for a topic seen for the first time, as life `ring` of it. Server topics (a
    /// fixed list) are labelled by name; every room shares [`ROOMS_LABEL`], so rooms that
    /// come and go add no series and `/metrics` names none of them.
    fn new(name: Arc<str>, ring: &mut u64, metrics: &Metrics, history: usize) -> Self {
        *ring += 1;
        let label = if protocol::is_room(&name) {
            ROOMS_LABEL.to_string()
        } else {
            name.to_string()
        };
        let published = metrics
            .published
            .get_or_create(&TopicLabel { topic: label })
            .clone();
        TopicState {
            name,
            ring: *ring,
            seq: 0,
            published,
            history: History::new(history),
        }
    }
}

/// The mixer thread's state.
pub struct Mixer {
    input: Receiver<MixerMsg>,
    shards: Vec<Outlet>,
    cfg: MixerConfig,
    topics: HashMap<Arc<str>, TopicState>,
    rooms: Rooms,
    metrics: Arc<Metrics>,
    builder: FrameBuilder,
    /// Set by `Shutdown`: until when the mixer waits for the shards' `Drained`, and which
    /// shards have not answered yet.
    draining: Option<(Instant, Vec<bool>)>,
    /// With `--redis`: where resumes the ring cannot serve are read from Redis.
    fetch: Option<Sender<FetchAsk>>,
    /// Replays read from Redis that wait for this node's live stream to catch up with them.
    anchoring: Vec<resume::Anchoring>,
    /// With `--redis`: room membership shared with the other nodes.
    presence: Option<cluster::Presence>,
    /// With `--deflate on`: compresses messages for the clients that negotiated it.
    compressor: Option<Compressor>,
    /// Every ring's bytes against `--history-budget`.
    budget: Budget,
    /// The last [`TopicState::ring`] given out.
    rings: u64,
    /// Client publishes on their way here (`--mixer-queue-bytes`), taken as they arrive.
    input_bytes: QueueBytes,
}

impl Mixer {
    /// A mixer reading `input` and feeding `shards`.
    pub fn new(
        input: Receiver<MixerMsg>,
        shards: Vec<ShardLink>,
        cfg: MixerConfig,
        metrics: Arc<Metrics>,
    ) -> Self {
        let shards = shards
            .into_iter()
            .map(|link| Outlet::new(link, &metrics))
            .collect();
        Mixer {
            input,
            shards,
            rooms: Rooms::new(cfg.presence_list_max, Instant::now()),
            budget: Budget::new(cfg.history_budget),
            rings: 0,
            cfg,
            topics: HashMap::new(),
            metrics,
            builder: FrameBuilder::new(),
            draining: None,
            fetch: None,
            anchoring: Vec::new(),
            presence: None,
            compressor: None,
            input_bytes: QueueBytes::new(usize::MAX),
        }
    }

    /// Client publishes arrive counted in `bytes` (the shards' [`crate::messages::MixerPort`]s
    /// add them, the mixer takes them away as it receives them).
    pub fn with_input_bytes(mut self, bytes: QueueBytes) -> Self {
        self.input_bytes = bytes;
        self
    }

    /// Messages are compressed too for topics `interest` names (a subscriber negotiated
    /// permessage-deflate).
    pub fn with_deflate(mut self, interest: Arc<Interest>) -> Self {
        self.compressor = Some(Compressor::new(
            interest,
            self.cfg.deflate_min_bytes,
            self.metrics.deflate.clone(),
        ));
        self
    }

    /// Resumes the ring cannot serve are read from the Redis history through `fetch`.
    pub fn with_history(mut self, fetch: Sender<FetchAsk>) -> Self {
        self.fetch = Some(fetch);
        self
    }

    /// The input channel: bounded, so a provider that outpaces the mixer waits (only itself).
    pub fn channel(capacity: usize) -> (Sender<MixerMsg>, Receiver<MixerMsg>) {
        crossbeam_channel::bounded(capacity)
    }

    /// Runs until [`MixerMsg::Shutdown`] has been answered by every shard (or every sender is
    /// gone), then closes the shard queues so shards start their drain after the last frame.
    pub fn run(mut self) {
        let mut held_since: Option<Instant> = None;
        'run: loop {
            let mut deadline = self.rooms.next_tick();
            if let Some((until, _)) = &self.draining {
                if Instant::now() >= *until {
                    log::warn!("mixer: shards did not all drain in time; stopping anyway");
                    break 'run;
                }
                deadline = deadline.min(*until);
            }
            if let Some(since) = held_since {
                deadline = deadline.min(since + self.cfg.linger);
            }
            if self.shards.iter().any(Outlet::has_pending) {
                deadline = deadline.min(Instant::now() + Duration::from_millis(1));
            }
            if let Some(until) = self.anchoring.iter().map(|a| a.until).min() {
                deadline = deadline.min(until);
            }
            match self.input.recv_deadline(deadline) {
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
            self.housekeeping(&mut held_since);
        }
        // Replies still waiting for room in a shard's queue go before the queue is closed
        // (the shards keep draining their queues; bounded by the drain timeout).
        let until = Instant::now() + self.cfg.drain_wait;
        loop {
            let mut done = true;
            for out in &mut self.shards {
                done &= out.flush_pending();
            }
            self.wake_shards();
            if done || Instant::now() >= until {
                break;
            }
            std::thread::sleep(Duration::from_millis(1));
        }
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

    /// Once per loop turn: presence counts, pending control messages, replays waiting for
    /// the live stream, the linger deadline.
    fn housekeeping(&mut self, held_since: &mut Option<Instant>) {
        let now = Instant::now();
        if !self.anchoring.is_empty() {
            self.settle_anchored(now);
        }
        if let Some(p) = &mut self.presence {
            p.flush();
        }
        self.publish_budget();
        self.metrics
            .mixer_queue_bytes
            .set(i64::try_from(self.input_bytes.held()).unwrap_or(i64::MAX));
        for (room, frame) in self.rooms.tick(now) {
            self.offer_unsequenced(room, frame);
        }
        for out in &mut self.shards {
            out.flush_pending();
        }
        if held_since.is_some_and(|since| since.elapsed() >= self.cfg.linger) {
            self.wake_shards();
            *held_since = None;
        }
    }

    /// Handles one input message as [`Mixer::run`] does, without the loop's housekeeping
    /// (shard wake-ups, linger, presence ticks): what the mixer benchmark times. False means
    /// stop.
    pub fn process(&mut self, msg: MixerMsg) -> bool {
        self.handle(msg)
    }

    /// Handles one input message; false means stop.
    fn handle(&mut self, msg: MixerMsg) -> bool {
        match msg {
            MixerMsg::Publish(p) => {
                self.input_bytes.take(p.queued);
                self.broadcast(&p);
            }
            MixerMsg::Join {
                room,
                conn,
                client_id,
                nick,
                subscribe,
            } => {
                let out =
                    self.rooms
                        .join(&room, conn, client_id.clone(), nick.clone(), Instant::now());
                self.joined_here(&room, conn, client_id, nick, out.created);
                self.apply(&room, out);
                if let Some(generation) = subscribe {
                    self.subscribe_after_join(conn, room, generation);
                }
            }
            MixerMsg::Leave { room, conn } => {
                let out = self.rooms.leave(&room, conn);
                self.left_here(&room, conn, out.emptied);
                self.apply(&room, out);
            }
            MixerMsg::Nick { conn, nick, rooms } => {
                for (room, frame) in self.rooms.rename(conn, &nick, &rooms) {
                    self.offer_unsequenced(room, frame);
                }
                self.renamed_here(conn, &nick, &rooms);
            }
            MixerMsg::RemotePresence { room, change } => {
                let out = self.rooms.remote(&room, change);
                self.apply(&room, out);
            }
            MixerMsg::PresenceLoaded {
                room,
                version,
                members,
            } => {
                let out = self.rooms.loaded(&room, version, members);
                self.apply(&room, out);
            }
            MixerMsg::Who { room, conn } => {
                let frame = self.rooms.who(&room);
                self.send_to(conn, frame);
            }
            MixerMsg::Resume { conn, topics } => {
                for ask in topics {
                    self.resume(conn, ask);
                }
            }
            MixerMsg::Shutdown => return self.begin_drain(),
            MixerMsg::Fetched(fetched) => self.on_fetched(*fetched, Instant::now()),
            MixerMsg::Drained { shard } => {
                if let Some((_, waiting)) = &mut self.draining
                    && let Some(w) = waiting.get_mut(shard)
                {
                    *w = false;
                    if !waiting.iter().any(|w| *w) {
                        return false;
                    }
                }
            }
        }
        if self.cfg.linger.is_zero() {
            self.wake_shards();
        }
        true
    }

    /// Shutdown: asks every shard to stop taking publishes and to say so behind the ones it
    /// took; the mixer goes on sequencing until all have. False when there is no shard.
    fn begin_drain(&mut self) -> bool {
        if self.shards.is_empty() {
            return false;
        }
        if self.draining.is_none() {
            for out in &mut self.shards {
                out.send_control(ShardMsg::Drain);
            }
            self.draining = Some((
                Instant::now() + self.cfg.drain_wait,
                vec![true; self.shards.len()],
            ));
            self.wake_shards();
        }
        true
    }

    /// Sends what a membership change produced.
    fn apply(&mut self, room: &Arc<str>, out: rooms::Outcome) {
        if let Some((conn, frame)) = out.to_conn {
            self.send_to(conn, frame);
        }
        for frame in out.to_room {
            self.offer_unsequenced(room.clone(), frame);
        }
        if out.emptied
            && protocol::is_room(room)
            && let Some(state) = self.topics.remove(room)
        {
            // Rooms exist while someone is in them: their sequence and history go too.
            self.budget
                .dropped_ring(state.history.len(), state.history.bytes());
        }
    }

    /// A frame for one connection, through its shard's queue (in order with broadcasts).
    fn send_to(&mut self, conn: ConnRef, frame: FrameBytes) {
        if let Some(out) = self.shards.get_mut(conn.shard) {
            out.send_control(ShardMsg::Direct {
                conn: conn.key,
                frame,
            });
        }
    }

    /// A frame for every subscriber of `topic` that is not part of its sequence (presence).
    fn offer_unsequenced(&mut self, topic: Arc<str>, frame: FrameBytes) {
        let frame = compress::encode(&mut self.compressor, &topic, frame);
        self.offer_all(Broadcast {
            topic,
            seq: 0,
            stamp_us: 0,
            frame,
        });
    }

    /// Offers one broadcast to every shard's queue (a full queue is that shard's drop).
    fn offer_all(&mut self, b: Broadcast) {
        for out in &mut self.shards {
            out.offer(ShardMsg::Broadcast(b.clone()));
        }
    }

    /// Sequences, serializes and frames one message, and offers it to every shard.
    fn broadcast(&mut self, p: &Publish) {
        let ts = p.made_us.unwrap_or_else(unix_micros);
        if let Some(seq) = p.seq
            && protocol::is_room(&p.topic)
            && self.rooms.count(&p.topic) == 0
            && !self.topics.contains_key(&p.topic)
        {
            // A room of another node that no local client is in (a local `*` subscriber, or
            // a leave that overtook the message): relay it, keep no state for it.
            let frame = self.frame(p, &p.topic, seq, ts);
            self.offer_all(Broadcast {
                topic: p.topic.clone(),
                seq,
                stamp_us: ts,
                frame,
            });
            return;
        }
        let (metrics, history, rings) = (&self.metrics, self.cfg.history, &mut self.rings);
        let state = self
            .topics
            .entry(p.topic.clone())
            .or_insert_with(|| TopicState::new(p.topic.clone(), rings, metrics, history));
        match p.seq {
            None => state.seq += 1,
            Some(seq) if seq > state.seq => state.seq = seq,
            Some(_) => {
                // Already passed (a duplicate delivery): never shown twice.
                metrics.bus_duplicates.inc();
                return;
            }
        }
        state.published.inc();
        metrics.published_all.inc();
        let (topic, seq) = (state.name.clone(), state.seq);
        let plain = encode(&mut self.builder, &Envelope::of(p, &topic, seq, ts));
        let frame = compress::encode(&mut self.compressor, &topic, plain);
        let pushed = state.history.push(seq, &frame);
        let bytes = history::kept_bytes(&frame);
        self.budget.pushed(&topic, state.ring, seq, bytes, pushed);
        self.budget.enforce(&mut self.topics);
        self.offer_all(Broadcast {
            topic,
            seq,
            stamp_us: ts,
            frame,
        });
    }

    /// Serializes a message's envelope once and encodes it as one text frame (and its
    /// compressed twin, when wanted).
    fn frame(&mut self, p: &Publish, topic: &str, seq: u64, ts: u64) -> Encoded {
        let plain = encode(&mut self.builder, &Envelope::of(p, topic, seq, ts));
        compress::encode(&mut self.compressor, topic, plain)
    }

    /// The history budget's figures into `/metrics` (once per loop turn, not per message).
    fn publish_budget(&self) {
        let m = &self.metrics;
        m.history_bytes
            .set(i64::try_from(self.budget.kept()).unwrap_or(i64::MAX));
        let evicted = self.budget.evicted();
        let counted = m.history_evicted.get();
        if evicted > counted {
            m.history_evicted.inc_by(evicted - counted);
        }
    }

    fn wake_shards(&mut self) {
        for out in &mut self.shards {
            out.wake();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::PUBLISH_OVERHEAD;
    use crate::conn::ENTRY_OVERHEAD;
    use crate::protocol::{MAX_NAME_LEN, MAX_TOPIC_LEN};
    use serde_json::value::RawValue;

    /// The configuration's promise (a publisher's burst fits a member's outbox) rests on
    /// this bound: every byte a published message adds beyond its data.
    #[test]
    fn the_largest_envelope_fits_the_publish_overhead() {
        let topic = "t".repeat(MAX_TOPIC_LEN);
        let data = "null";
        let p = Publish {
            topic: Arc::from(topic.as_str()),
            data: RawValue::from_string(data.into()).unwrap(),
            from: Some(Arc::from("f".repeat(MAX_NAME_LEN).as_str())),
            nick: Some(Arc::from("n".repeat(MAX_NAME_LEN).as_str())),
            kind: Some("me"),
            seq: None,
            made_us: None,
            queued: 0,
        };
        let envelope = Envelope::of(&p, &topic, u64::MAX, u64::MAX);
        let payload = serde_json::to_vec(&envelope).unwrap().len();
        // The longest frame header (64-bit length) and the outbox entry.
        let worst = payload - data.len() + 10 + ENTRY_OVERHEAD;
        assert!(worst <= PUBLISH_OVERHEAD, "{worst} > {PUBLISH_OVERHEAD}");
        // And the frame the mixer builds is that envelope.
        let frame = encode(&mut FrameBuilder::new(), &envelope);
        assert!(frame.len() <= payload + 10);
    }
}
