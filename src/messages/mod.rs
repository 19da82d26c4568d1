//! What the threads send each other, and the channel ends they hold.
//!
//! Every thread owns its state; the only things that cross threads are the messages here, the
//! bounded channels that carry them, and a shard's [`ShardLink`] (its queue, intake, waker,
//! parked flag and connection count). Both sides of each channel import this module and
//! nothing of each other, so the mixer and the shards stay independent:
//!
//! - providers, the bus subscriber and shards → mixer: [`MixerMsg`] (publishes, joins,
//!   leaves, nicks, `/who`, resumes);
//! - shards → bus publisher: [`Publish`] (with `--redis`, client publishes are sequenced there);
//! - mixer → shard: [`ShardMsg`] (broadcasts, frames for one connection, resume replays);
//! - acceptor → shard: [`Intake`] (a new socket).
//!
//! A connection is named by [`ConnKey`] on its own shard and by [`ConnRef`] anywhere else.

mod port;
mod queue_bytes;

pub use port::{BusPort, MixerPort, PUBLISH_BACKLOG, Refused, SUBSCRIBED_WAIT, Subscribed};
pub use queue_bytes::QueueBytes;

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering, fence};
use std::time::Instant;

use crossbeam_channel::{Sender, TrySendError};
use mio::Waker;
use mio::net::TcpStream;
use serde_json::value::RawValue;

use crate::frame::{Encoded, FrameBytes};
use crate::protocol::replies::PresenceEvent;

/// One connection on its shard: the slab token and the id the shard gave it. Tokens are
/// reused once a connection is gone, ids never, so a message or timer entry that names a
/// token reused since is told apart by the id.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ConnKey {
    /// Its slab token.
    pub token: usize,
    /// Its id on the shard.
    pub id: u64,
}

/// One connection, wherever it lives.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ConnRef {
    /// Its shard.
    pub shard: usize,
    /// The connection on that shard.
    pub key: ConnKey,
}

/// A message to sequence and broadcast.
#[derive(Debug)]
pub struct Publish {
    /// Topic to publish on.
    pub topic: Arc<str>,
    /// The message body, already valid JSON, relayed byte for byte.
    pub data: Box<RawValue>,
    /// The publishing client's id, for client publishes.
    pub from: Option<Arc<str>>,
    /// The publishing client's nickname, once it set one.
    pub nick: Option<Arc<str>>,
    /// `"me"` for `/me` actions.
    pub kind: Option<&'static str>,
    /// A sequence number already assigned where the order was decided (the Redis bus);
    /// `None` for local messages, which the mixer numbers itself.
    pub seq: Option<u64>,
    /// When the message came to be (µs since the Unix epoch), for a source that knows: a
    /// paced provider's due time. The mixer stamps `ts` with it, so the time the message
    /// waited for the mixer counts in its latency; `None`: stamped when sequenced.
    pub made_us: Option<u64>,
    /// Bytes this publish counts in the bound on client publishes waiting for the mixer
    /// (`--mixer-queue-bytes`), taken away when the mixer receives it; 0 for the others.
    pub queued: usize,
}

impl Publish {
    /// A message from a provider (no sender).
    pub fn new(topic: Arc<str>, data: Box<RawValue>) -> Self {
        Publish {
            topic,
            data,
            from: None,
            nick: None,
            kind: None,
            seq: None,
            made_us: None,
            queued: 0,
        }
    }

    /// The same message, made at `made_us` (see [`Publish::made_us`]).
    pub fn made_at(mut self, made_us: u64) -> Self {
        self.made_us = Some(made_us);
        self
    }
}

/// One topic a connection resumes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResumeAsk {
    /// The topic.
    pub topic: Arc<str>,
    /// The last seq the client saw.
    pub since: u64,
    /// The connection's resume generation for this topic, echoed in the answer.
    pub generation: u64,
}

/// Input of the mixer.
#[derive(Debug)]
pub enum MixerMsg {
    /// Sequence and broadcast a message.
    Publish(Publish),
    /// A connection joined a room (subscribed to a topic clients may publish to).
    Join {
        /// The room.
        room: Arc<str>,
        /// The member.
        conn: ConnRef,
        /// Its client id.
        client_id: Arc<str>,
        /// Its nickname, if set.
        nick: Option<Arc<str>>,
        /// The generation under which the connection waits outside the shard's index to be
        /// subscribed (see `conn/resume.rs`): after the join's delta has gone out, the mixer
        /// answers with an empty replay, so the newcomer never receives its own `join`.
        /// `None` when a resume of the room follows and its replay subscribes it.
        subscribe: Option<u64>,
    },
    /// A connection left a room (unsubscribed or closed).
    Leave {
        /// The room.
        room: Arc<str>,
        /// The member.
        conn: ConnRef,
    },
    /// A connection renamed itself (`/nick`) in its rooms.
    Nick {
        /// The member.
        conn: ConnRef,
        /// The new name.
        nick: Arc<str>,
        /// The rooms it is in.
        rooms: Vec<Arc<str>>,
    },
    /// A connection asked for a room's member list (`/who`).
    Who {
        /// The room.
        room: Arc<str>,
        /// Who asked.
        conn: ConnRef,
    },
    /// A connection asked to resume topics after the given sequence numbers.
    Resume {
        /// Who asked.
        conn: ConnRef,
        /// What it asked for.
        topics: Vec<ResumeAsk>,
    },
    /// Start the shutdown: every shard is sent [`ShardMsg::Drain`]; once each has answered
    /// with [`MixerMsg::Drained`] (or the drain timeout passed), the mixer closes the shard
    /// queues and stops. Everything sent before it is delivered.
    Shutdown,
    /// A shard took [`ShardMsg::Drain`]: every client publish it accepted was sent before
    /// this, and it accepts no more.
    Drained {
        /// The shard.
        shard: usize,
    },
    /// The Redis history's answer to a resume the mixer's ring could not serve.
    Fetched(Box<Fetched>),
    /// Another node's member of a room joined, left or renamed itself (with `--redis`).
    RemotePresence {
        /// The room.
        room: Arc<str>,
        /// What changed.
        change: RemoteChange,
    },
    /// The other nodes' members of a room, as Redis held them at `version`.
    PresenceLoaded {
        /// The room.
        room: Arc<str>,
        /// The room's presence version they were read at.
        version: u64,
        /// The members.
        members: Vec<RemoteMember>,
    },
}

/// A change of another node's room member, numbered by Redis (one sequence per room).
#[derive(Debug, Clone)]
pub struct RemoteChange {
    /// Its number in the room's presence sequence.
    pub version: u64,
    /// Joined, left or renamed.
    pub event: PresenceEvent,
    /// The member's cluster-wide key (`<node>/<shard>/<token>/<id>`).
    pub member: Arc<str>,
    /// Its client id (empty on a leave, which needs none).
    pub client_id: Arc<str>,
    /// Its nickname.
    pub nick: Option<Arc<str>>,
}

/// Another node's member of a room.
#[derive(Debug, Clone)]
pub struct RemoteMember {
    /// Its cluster-wide key.
    pub member: Arc<str>,
    /// Its client id.
    pub client_id: Arc<str>,
    /// Its nickname.
    pub nick: Option<Arc<str>>,
}

/// What the mixer asks of the bus presence thread (with `--redis`).
#[derive(Debug, Clone)]
pub enum PresenceOp {
    /// A member of this node joined `room`.
    Join {
        /// The room.
        room: Arc<str>,
        /// Its cluster-wide key.
        member: Arc<str>,
        /// Its client id.
        client_id: Arc<str>,
        /// Its nickname.
        nick: Option<Arc<str>>,
    },
    /// A member of this node left `room`.
    Leave {
        /// The room.
        room: Arc<str>,
        /// Its cluster-wide key.
        member: Arc<str>,
    },
    /// A member of this node renamed itself in `room`.
    Nick {
        /// The room.
        room: Arc<str>,
        /// Its cluster-wide key.
        member: Arc<str>,
        /// Its client id.
        client_id: Arc<str>,
        /// The new name.
        nick: Arc<str>,
    },
    /// Read the other nodes' members of `room` (its first member here just joined).
    Load {
        /// The room.
        room: Arc<str>,
    },
    /// The last member of this node left `room`.
    Emptied {
        /// The room.
        room: Arc<str>,
    },
}

/// A resume the mixer's ring cannot serve, asked of the Redis history (with `--redis`).
#[derive(Debug, Clone)]
pub struct FetchAsk {
    /// Who resumes.
    pub conn: ConnRef,
    /// What it asked for.
    pub ask: ResumeAsk,
}

/// What the Redis history answered to a [`FetchAsk`].
#[derive(Debug)]
pub struct Fetched {
    /// The question.
    pub asked: FetchAsk,
    /// What Redis holds after `since`; `None` when Redis could not be asked.
    pub stored: Option<Stored>,
}

/// A topic's messages as Redis stores them.
#[derive(Debug)]
pub struct Stored {
    /// The topic's last seq in Redis (0 when it has none: never used, or expired).
    pub latest: u64,
    /// Its messages after the asked-for seq, oldest first, each with its `seq` and its
    /// publish time in `made_us`.
    pub messages: Vec<Publish>,
}

/// A sequenced broadcast message, as the mixer hands it to every shard.
#[derive(Debug, Clone)]
pub struct Broadcast {
    /// The topic it was published on.
    pub topic: Arc<str>,
    /// Its sequence number within the topic (0: not part of the sequence, e.g. presence).
    pub seq: u64,
    /// The mixer's stamp, µs since the Unix epoch (the `ts` field of the message).
    pub stamp_us: u64,
    /// The complete WebSocket frame, encoded once (and compressed once, when some
    /// subscriber of the topic negotiated permessage-deflate).
    pub frame: Encoded,
}

/// What the mixer sends a shard.
#[derive(Debug, Clone)]
pub enum ShardMsg {
    /// A frame for every subscriber of its topic.
    Broadcast(Broadcast),
    /// A frame for one connection (presence snapshot, `/who` answer).
    Direct {
        /// The connection.
        conn: ConnKey,
        /// The frame.
        frame: FrameBytes,
    },
    /// The replay of a resumed topic; the connection subscribes to it after these frames.
    Resumed {
        /// The connection.
        conn: ConnKey,
        /// What the mixer found.
        replay: Box<Replayed>,
    },
    /// The server is stopping: accept no more client publishes, and answer with
    /// [`MixerMsg::Drained`] behind the ones already accepted.
    Drain,
}

/// The mixer's answer to one resumed topic.
#[derive(Debug, Clone)]
pub struct Replayed {
    /// The topic.
    pub topic: Arc<str>,
    /// Which of the connection's resumes of this topic it answers (only the latest counts).
    pub generation: u64,
    /// The topic's last seq when the replay was taken.
    pub latest: u64,
    /// A reset notice when history does not reach back far enough.
    pub reset: Option<FrameBytes>,
    /// Every frame after the client's seq that history still holds, in order, with its seq.
    pub frames: Vec<(u64, Encoded)>,
}

/// A new socket from the acceptor.
#[derive(Debug)]
pub struct Intake {
    /// The accepted socket.
    pub stream: TcpStream,
    /// Its remote address.
    pub peer: SocketAddr,
    /// When the acceptor took it from the listen queue (server-side handshake latency).
    pub accepted: Instant,
    /// Its place under `--max-pending-per-ip`, given back at its upgrade or close.
    pub pending: crate::admission::Pending,
}

/// The handles other threads hold to one shard.
#[derive(Debug, Clone)]
pub struct ShardLink {
    /// Shard index.
    pub id: usize,
    /// The bounded broadcast queue (mixer side); `try_send` only.
    pub queue: Sender<ShardMsg>,
    /// New sockets (acceptor side).
    pub intake: Sender<Intake>,
    /// Wakes the shard's poll.
    pub waker: Arc<Waker>,
    /// Set by the shard right before it sleeps; whoever clears it must wake it.
    pub parked: Arc<AtomicBool>,
    /// Connections handed to the shard and not yet closed (acceptor's load balancing).
    pub conns: Arc<AtomicUsize>,
    /// Bytes in the queue and in the mixer's backlog for it (`--shard-queue-bytes`).
    pub bytes: QueueBytes,
}

impl ShardLink {
    /// Wakes the shard if it is parked; costs no syscall when it is awake. Call after
    /// queueing work for it.
    pub fn wake_if_parked(&self) {
        fence(Ordering::SeqCst);
        if self.parked.load(Ordering::SeqCst) && self.parked.swap(false, Ordering::SeqCst) {
            let _ = self.waker.wake();
        }
    }
}

/// Moves waiting messages into a bounded channel, in order, until it is full. Returns
/// whether anything was sent and whether nothing is left waiting (a closed channel discards
/// the rest: its receiver is gone).
pub fn drain_into<T>(pending: &mut VecDeque<T>, tx: &Sender<T>) -> (bool, bool) {
    let mut sent = false;
    while let Some(msg) = pending.pop_front() {
        match tx.try_send(msg) {
            Ok(()) => sent = true,
            Err(TrySendError::Full(msg)) => {
                pending.push_front(msg);
                return (sent, false);
            }
            Err(TrySendError::Disconnected(_)) => pending.clear(),
        }
    }
    (sent, true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn drain_into_keeps_order_and_stops_at_a_full_channel() {
        let (tx, rx) = crossbeam_channel::bounded(2);
        let mut pending: VecDeque<u32> = (1..=3).collect();
        assert_eq!(drain_into(&mut pending, &tx), (true, false));
        assert_eq!(pending, [3]);
        assert_eq!((rx.try_recv(), rx.try_recv()), (Ok(1), Ok(2)));
        assert_eq!(drain_into(&mut pending, &tx), (true, true));
        assert_eq!(rx.try_recv(), Ok(3));
        drop(rx);
        pending.extend([4, 5]);
        assert_eq!(
            drain_into(&mut pending, &tx),
            (false, true),
            "a closed channel discards"
        );
        assert!(pending.is_empty());
    }
}
