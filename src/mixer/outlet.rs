//! The mixer's side of one shard's queue.
//!
//! Broadcasts are offered with `try_send`: a full queue is a counted drop for that shard,
//! never a block. Messages for one connection (snapshots, member lists, resume replays) must
//! not be lost, so when the queue is full they wait in a bounded `pending` list, sent before
//! anything else; broadcasts that arrive meanwhile count as drops, which keeps the order every
//! client sees intact.
//!
//! The queue and the pending list are bounded in messages and, together, in bytes
//! (`--shard-queue-bytes`, counted in the link's [`crate::messages::QueueBytes`]): past the
//! bytes, a broadcast is a `shard_queue_full` drop and a reply a `control_overflow` drop. A
//! replay is never dropped (its topic would wait for it forever) but cut to the newest
//! frames that fit, behind a `reset` naming the first one kept; the frames cut are counted as
//! `control_overflow` drops. Only the drain request is exempt from every bound (one per
//! shard, no bytes).

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use crossbeam_channel::TrySendError;
use prometheus_client::metrics::counter::Counter;

use crate::messages::{Replayed, ShardLink, ShardMsg, drain_into};
use crate::metrics::{DropLabel, Metrics};
use crate::protocol::replies;

/// Connection-addressed messages that may wait for room in one shard's queue.
const MAX_PENDING: usize = 64 * 1024;
/// Room kept for a cut replay's `reset` frame (`{"type":"reset","topic":..,"oldest":..,
/// "latest":..}` with the longest topic name is well under it).
const RESET_BYTES: usize = 512;

/// One shard's queue as the mixer sees it.
pub struct Outlet {
    /// The shard.
    pub link: ShardLink,
    queue_full: Counter,
    control_overflow: Counter,
    pending: VecDeque<ShardMsg>,
    /// Messages queued since the shard was last woken.
    unwoken: bool,
    /// When a backlog warning was last logged (at most one a second).
    warned_at: Option<Instant>,
}

impl Outlet {
    /// The outlet of `link`, with its drop counters.
    pub fn new(link: ShardLink, metrics: &Metrics) -> Self {
        let label = |reason| DropLabel {
            shard: link.id as u32,
            reason,
        };
        let queue_full = metrics
            .drops
            .get_or_create(&label("shard_queue_full"))
            .clone();
        let control_overflow = metrics
            .drops
            .get_or_create(&label("control_overflow"))
            .clone();
        Outlet {
            link,
            queue_full,
            control_overflow,
            pending: VecDeque::new(),
            unwoken: false,
            warned_at: None,
        }
    }

    /// Offers a broadcast; counted as a drop when the queue (or the pending list) is full,
    /// in messages or in bytes.
    pub fn offer(&mut self, msg: ShardMsg) {
        let bytes = msg.bytes();
        if !self.flush_pending() || !self.link.bytes.fits(bytes) {
            self.queue_full.inc();
            return;
        }
        self.link.bytes.add(bytes);
        match self.link.queue.try_send(msg) {
            Ok(()) => self.unwoken = true,
            Err(TrySendError::Full(_)) => {
                self.link.bytes.take(bytes);
                self.queue_full.inc();
            }
            Err(TrySendError::Disconnected(_)) => self.link.bytes.take(bytes),
        }
    }

    /// Sends a message meant for one connection, waiting in `pending` if the queue is full.
    pub fn send_control(&mut self, msg: ShardMsg) {
        let msg = match msg {
            // A lost replay would leave its topic waiting forever: it always goes, cut to
            // what fits (at worst its `reset` alone, a hundred bytes; replays are as many as
            // the clients' rate limits and topic limits let through).
            ShardMsg::Resumed { conn, replay } => ShardMsg::Resumed {
                conn,
                replay: self.fit(replay),
            },
            // A lost drain request would hold up the shutdown: one per shard, no bytes.
            ShardMsg::Drain => ShardMsg::Drain,
            other => {
                let bytes = other.bytes();
                if self.pending.len() >= MAX_PENDING || !self.link.bytes.fits(bytes) {
                    self.control_overflow.inc();
                    if self.may_warn() {
                        log::warn!(
                            "shard {}: control backlog full ({} replies, {} bytes queued), dropping a reply",
                            self.link.id,
                            self.pending.len(),
                            self.link.bytes.held()
                        );
                    }
                    return;
                }
                other
            }
        };
        self.link.bytes.add(msg.bytes());
        self.pending.push_back(msg);
        self.flush_pending();
    }

    /// The replay as it may go: whole when it fits the bytes left, else its newest frames
    /// that do, behind a `reset` naming the first of them (or the next seq, when none fits).
    fn fit(&mut self, mut replay: Box<Replayed>) -> Box<Replayed> {
        let mut room = self.link.bytes.room();
        let whole = replay.reset.as_ref().map_or(0, |r| r.len())
            + replay.frames.iter().map(|(_, f)| f.bytes()).sum::<usize>();
        if whole <= room {
            return replay;
        }
        // The reset goes in any case; what is left of the room takes the newest frames.
        room = room.saturating_sub(RESET_BYTES);
        let mut kept = 0;
        for (_, frame) in replay.frames.iter().rev() {
            if frame.bytes() > room {
                break;
            }
            room -= frame.bytes();
            kept += 1;
        }
        let cut = replay.frames.len() - kept;
        replay.frames.drain(..cut);
        let oldest = replay
            .frames
            .first()
            .map_or(replay.latest.saturating_add(1), |(seq, _)| *seq);
        replay.reset = Some(replies::reset_frame(&replay.topic, oldest, replay.latest));
        self.control_overflow.inc_by(cut as u64);
        if self.may_warn() {
            log::warn!(
                "shard {}: queue holds {} bytes, a replay of {} goes cut to its newest {} frames",
                self.link.id,
                self.link.bytes.held(),
                replay.topic,
                kept
            );
        }
        replay
    }

    /// Whether a backlog warning may be logged now (at most one a second per shard; the
    /// drop counters count every one).
    fn may_warn(&mut self) -> bool {
        let now = Instant::now();
        if self
            .warned_at
            .is_some_and(|at| now.duration_since(at) < Duration::from_secs(1))
        {
            return false;
        }
        self.warned_at = Some(now);
        true
    }

    /// Moves pending messages into the queue; true when none is left.
    pub fn flush_pending(&mut self) -> bool {
        let (sent, done) = drain_into(&mut self.pending, &self.link.queue);
        self.unwoken |= sent;
        done
    }

    /// Whether messages still wait for room.
    pub fn has_pending(&self) -> bool {
        !self.pending.is_empty()
    }

    /// Wakes the shard if anything was queued since the last wake.
    pub fn wake(&mut self) {
        if self.unwoken {
            self.unwoken = false;
            self.link.wake_if_parked();
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, AtomicUsize};

    use crossbeam_channel::Receiver;
    use mio::{Poll, Token, Waker};

    use super::*;
    use crate::frame::{Encoded, FrameBytes};
    use crate::messages::{Broadcast, ConnKey, QueueBytes};

    const KEY: ConnKey = ConnKey { token: 1, id: 1 };

    fn outlet(capacity: usize, bytes: usize) -> (Outlet, Receiver<ShardMsg>, Arc<Metrics>, Poll) {
        let poll = Poll::new().unwrap();
        let (queue, rx) = crossbeam_channel::bounded(capacity);
        let link = ShardLink {
            id: 0,
            queue,
            intake: crossbeam_channel::bounded(1).0,
            waker: Arc::new(Waker::new(poll.registry(), Token(0)).unwrap()),
            parked: Arc::new(AtomicBool::new(false)),
            conns: Arc::new(AtomicUsize::new(0)),
            bytes: QueueBytes::new(bytes),
        };
        let metrics = Metrics::new(1);
        (Outlet::new(link, &metrics), rx, metrics, poll)
    }

    fn frame(len: usize) -> FrameBytes {
        Arc::from(vec![0u8; len])
    }

    fn broadcast(len: usize) -> ShardMsg {
        ShardMsg::Broadcast(Broadcast {
            topic: Arc::from("t"),
            seq: 1,
            stamp_us: 0,
            frame: Encoded::plain(frame(len)),
        })
    }

    fn replay(frames: u64, len: usize) -> ShardMsg {
        ShardMsg::Resumed {
            conn: KEY,
            replay: Box::new(Replayed {
                topic: Arc::from("room.r"),
                generation: 1,
                latest: frames,
                reset: None,
                frames: (1..=frames)
                    .map(|s| (s, Encoded::plain(frame(len))))
                    .collect(),
            }),
        }
    }

    #[test]
    fn broadcasts_past_the_bytes_are_counted_drops() {
        let (mut out, rx, metrics, _poll) = outlet(100, 10_000);
        for _ in 0..12 {
            out.offer(broadcast(1000));
        }
        assert_eq!(rx.len(), 10, "ten of 1,000 bytes fit in 10,000");
        assert_eq!(metrics.drops_for("shard_queue_full"), 2);
        assert_eq!(out.link.bytes.held(), 10_000);
        // The shard takes what it received: room again.
        while let Ok(msg) = rx.try_recv() {
            out.link.bytes.take(msg.bytes());
        }
        out.offer(broadcast(1000));
        assert_eq!(rx.len(), 1);
        assert_eq!(metrics.drops_for("shard_queue_full"), 2);
    }

    #[test]
    fn replies_wait_for_room_in_the_queue_but_not_past_the_bytes() {
        let (mut out, rx, metrics, _poll) = outlet(1, 5_000);
        for _ in 0..6 {
            out.send_control(ShardMsg::Direct {
                conn: KEY,
                frame: frame(1000),
            });
        }
        // One in the queue, four waiting: five of 1,000 bytes; the sixth is dropped.
        assert_eq!((rx.len(), out.pending.len()), (1, 4));
        assert_eq!(metrics.drops_for("control_overflow"), 1);
        // The drain request always goes, whatever the bounds.
        out.send_control(ShardMsg::Drain);
        assert!(matches!(out.pending.back(), Some(ShardMsg::Drain)));
    }

    #[test]
    fn a_replay_past_the_bytes_is_cut_to_its_newest_frames_behind_a_reset() {
        let (mut out, rx, metrics, _poll) = outlet(10, 10_000);
        out.send_control(replay(100, 1000));
        let Ok(ShardMsg::Resumed { replay, .. }) = rx.try_recv() else {
            panic!("the replay goes");
        };
        let seqs: Vec<u64> = replay.frames.iter().map(|(s, _)| *s).collect();
        // 10,000 bytes less the reset's room: nine frames, the newest.
        assert_eq!(seqs, (92..=100).collect::<Vec<_>>());
        let reset = replay.reset.expect("a reset");
        let json: serde_json::Value = serde_json::from_slice(&reset[2..]).unwrap();
        assert_eq!(json["type"], "reset");
        assert_eq!(
            (json["oldest"].as_u64(), json["latest"].as_u64()),
            (Some(92), Some(100))
        );
        assert_eq!(metrics.drops_for("control_overflow"), 91);
    }

    #[test]
    fn a_replay_that_fits_goes_whole_and_one_that_cannot_goes_as_its_reset() {
        let (mut out, rx, _metrics, _poll) = outlet(10, 10_000);
        out.send_control(replay(5, 1000));
        let Ok(ShardMsg::Resumed { replay: whole, .. }) = rx.try_recv() else {
            panic!("the replay goes");
        };
        assert_eq!(whole.frames.len(), 5);
        assert!(whole.reset.is_none());
        // The queue is full in bytes now: a replay is its reset alone, naming the next seq.
        out.offer(broadcast(5000));
        out.send_control(replay(3, 1000));
        let _ = rx.try_recv();
        let Ok(ShardMsg::Resumed { replay: cut, .. }) = rx.try_recv() else {
            panic!("the replay goes");
        };
        assert!(cut.frames.is_empty());
        let reset = cut.reset.expect("a reset");
        let json: serde_json::Value = serde_json::from_slice(&reset[2..]).unwrap();
        assert_eq!(json["oldest"], 4);
    }
}
