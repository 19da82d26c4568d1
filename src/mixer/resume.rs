//! Resumes: replaying a topic after the client's seq, from the mixer's ring or, with
//! `--redis`, from the topic's stream in Redis when the ring cannot serve (the client comes
//! from another node, or this node restarted).
//!
//! A local replay is answered at once. A Redis read is asked of the bus history thread and
//! answered when it comes back ([`Mixer::on_fetched`]); meanwhile the live stream goes on.
//! The replay is Redis's messages after `since`, then whatever the ring holds after the
//! last of them, so the seam has neither a gap nor a duplicate:
//!
//! - when this node's live stream is already past Redis's last message, the ring continues
//!   the replay;
//! - when nothing on this node follows the topic yet (the usual case: a client whose node
//!   went away), the topic's sequence here joins Redis's at once, and what Redis returned
//!   goes into the ring; messages up to it that still arrive live are dropped as passed;
//! - when it is behind (messages still on their way through Pub/Sub to this node's other
//!   clients of the topic), the answer waits for them, at most [`ANCHOR_WAIT`]: the
//!   connection subscribes only after the replay, so a message that arrived live after it
//!   would be shown twice. If they do not come (they were published before this node
//!   subscribed, so they never will), the sequence joins Redis's then.
//!
//! A `reset` is sent only when Redis no longer holds the first message after `since`
//! (trimmed to `--history`, or expired with the room); while Redis cannot be read, the ring
//! answers alone (a `reset` when it does not reach back far enough).
//!
//! A room's newcomer is subscribed the same way, by an empty replay sent right behind its
//! join's delta ([`Mixer::subscribe_after_join`]): it gets its snapshot, then everything
//! after its join, and not its own `join`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use super::history::Replay;
use super::{Mixer, TopicState};
use crate::clock::unix_micros;
use crate::frame::Encoded;
use crate::messages::{ConnRef, FetchAsk, Fetched, Replayed, ResumeAsk, ShardMsg, Stored};
use crate::protocol::{self, replies};

/// Longest a replay read from Redis waits for this node's live stream to reach it.
pub const ANCHOR_WAIT: Duration = Duration::from_secs(1);

/// A replay read from Redis, waiting for the live stream to reach its last message.
#[derive(Debug)]
pub struct Anchoring {
    /// When it is answered anyway.
    pub until: Instant,
    conn: ConnRef,
    ask: ResumeAsk,
    stored: Stored,
}

impl Anchoring {
    fn last(&self) -> u64 {
        last_seq(&self.stored, self.ask.since)
    }
}

/// The last seq Redis returned (or `since` when it returned none).
fn last_seq(stored: &Stored, since: u64) -> u64 {
    stored.messages.last().and_then(|p| p.seq).unwrap_or(since)
}

impl Mixer {
    /// Replays a topic after the client's seq to `conn`, which subscribes once the replay
    /// arrives: from the ring, or from Redis when the ring cannot serve and the topic
    /// travels through Redis.
    pub(super) fn resume(&mut self, conn: ConnRef, ask: ResumeAsk) {
        let (replay, latest) = self.local_replay(&ask.topic, ask.since);
        if matches!(replay, Replay::Reset { .. })
            && self.redis_may_serve(&ask.topic)
            && let Some(fetch) = &self.fetch
            && fetch
                .try_send(FetchAsk {
                    conn,
                    ask: ask.clone(),
                })
                .is_ok()
        {
            return;
        }
        self.send_replay(conn, ask, replay, latest);
    }

    /// Subscribes a room's newcomer, once its join delta has gone out to the members: an
    /// empty replay from the room's latest seq, behind the snapshot and the delta in its
    /// shard's queue. The newcomer then gets every message and change after its join, and
    /// not its own `join`.
    pub(super) fn subscribe_after_join(&mut self, conn: ConnRef, room: Arc<str>, generation: u64) {
        let latest = self.topics.get(&room).map_or(0, |s| s.seq);
        let ask = ResumeAsk {
            topic: room,
            since: latest,
            generation,
        };
        self.send_replay(conn, ask, Replay::Frames(Vec::new()), latest);
    }

    /// Whether resumes of `topic` may be read from Redis.
    fn redis_may_serve(&self, topic: &str) -> bool {
        self.fetch.is_some() && (protocol::is_room(topic) || self.cfg.redis_server_topics)
    }

    /// What the ring says of `since`, and the topic's latest seq here.
    fn local_replay(&self, topic: &str, since: u64) -> (Replay, u64) {
        match self.topics.get(topic) {
            Some(state) => (state.history.replay(since, state.seq), state.seq),
            None if since == 0 => (Replay::Frames(Vec::new()), 0),
            None => (
                Replay::Reset {
                    oldest: 1,
                    latest: 0,
                    frames: Vec::new(),
                },
                0,
            ),
        }
    }

    /// Sends a replay to its connection's shard.
    fn send_replay(&mut self, conn: ConnRef, ask: ResumeAsk, replay: Replay, latest: u64) {
        let (reset, frames) = match replay {
            Replay::Frames(frames) => (None, frames),
            Replay::Reset {
                oldest,
                latest,
                frames,
            } => (
                Some(replies::reset_frame(&ask.topic, oldest, latest)),
                frames,
            ),
        };
        let replay = Box::new(Replayed {
            topic: ask.topic,
            generation: ask.generation,
            latest,
            reset,
            frames,
        });
        if let Some(out) = self.shards.get_mut(conn.shard) {
            out.send_control(ShardMsg::Resumed {
                conn: conn.key,
                replay,
            });
        }
    }

    /// Redis answered a resume.
    pub(super) fn on_fetched(&mut self, fetched: Fetched, now: Instant) {
        let Fetched {
            asked: FetchAsk { conn, ask },
            stored,
        } = fetched;
        let Some(stored) = stored else {
            let (replay, latest) = self.local_replay(&ask.topic, ask.since);
            return self.send_replay(conn, ask, replay, latest);
        };
        let Some(local) = self.topics.get(&ask.topic).map(|s| s.seq) else {
            // Nothing here follows the topic yet (a client whose node went away): no local
            // client waits for the messages still on their way, so the sequence joins
            // Redis's at once, and those that arrive live later are dropped as passed.
            return self.merge(conn, ask, stored, true);
        };
        if local < last_seq(&stored, ask.since) {
            self.anchoring.push(Anchoring {
                until: now + ANCHOR_WAIT,
                conn,
                ask,
                stored,
            });
            return;
        }
        self.merge(conn, ask, stored, false);
    }

    /// Answers the replays whose live stream caught up, or whose wait is over.
    pub(super) fn settle_anchored(&mut self, now: Instant) {
        let mut i = 0;
        while i < self.anchoring.len() {
            let a = &self.anchoring[i];
            let local = self.topics.get(&a.ask.topic).map_or(0, |s| s.seq);
            let caught_up = local >= a.last();
            if caught_up || now >= a.until {
                let a = self.anchoring.swap_remove(i);
                self.merge(a.conn, a.ask, a.stored, !caught_up);
            } else {
                i += 1;
            }
        }
    }

    /// The replay of Redis's messages after `since`, continued by the ring. `join`: this
    /// node's live stream never reached Redis's last message, so its sequence moves up to it.
    fn merge(&mut self, conn: ConnRef, ask: ResumeAsk, stored: Stored, join: bool) {
        let since = ask.since;
        let first = stored.messages.first().and_then(|p| p.seq);
        let last = last_seq(&stored, since);
        // Redis no longer holds the first message after `since`.
        let missing = match first {
            Some(seq) => seq > since.saturating_add(1),
            None => stored.latest > since,
        };
        let mut frames: Vec<(u64, Encoded)> = Vec::with_capacity(stored.messages.len());
        for p in &stored.messages {
            let seq = p.seq.unwrap_or(0);
            let ts = p.made_us.unwrap_or_else(unix_micros);
            frames.push((seq, self.frame(p, &ask.topic, seq, ts)));
        }
        let local = self.topics.get(&ask.topic).map_or(0, |s| s.seq);
        if local > last {
            let Some(state) = self.topics.get(&ask.topic) else {
                return;
            };
            match state.history.replay(last, local) {
                Replay::Frames(more) => frames.extend(more),
                Replay::Reset { .. } => {
                    // The ring does not continue Redis's range: the ring's own answer.
                    let (replay, latest) = self.local_replay(&ask.topic, since);
                    return self.send_replay(conn, ask, replay, latest);
                }
            }
        } else if join && local < last {
            self.join_sequence(&ask.topic, last, &frames);
        }
        let latest = local.max(last);
        let replay = if missing {
            Replay::Reset {
                oldest: first.unwrap_or(stored.latest.saturating_add(1)),
                latest,
                frames,
            }
        } else {
            Replay::Frames(frames)
        };
        self.send_replay(conn, ask, replay, latest);
    }

    /// Moves `topic`'s sequence here up to `last` (messages up to it that come live later
    /// are duplicates, dropped), and keeps Redis's frames in the ring.
    fn join_sequence(&mut self, topic: &Arc<str>, last: u64, frames: &[(u64, Encoded)]) {
        let (metrics, history, rings) = (&self.metrics, self.cfg.history, &mut self.rings);
        let state = self
            .topics
            .entry(topic.clone())
            .or_insert_with(|| TopicState::new(topic.clone(), rings, metrics, history));
        for (seq, frame) in frames.iter().filter(|(seq, _)| *seq > state.seq) {
            let pushed = state.history.push(*seq, frame);
            let bytes = super::history::kept_bytes(frame);
            self.budget.pushed(topic, state.ring, *seq, bytes, pushed);
        }
        state.seq = state.seq.max(last);
        self.budget.enforce(&mut self.topics);
    }
}
