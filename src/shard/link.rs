//! What other threads hold of a shard and send it: the [`ShardLink`] (queue, intake, waker,
//! parked flag, connection count), the messages on its queue, and the server-wide
//! [`Services`] every shard consults at upgrade time.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering, fence};
use std::time::Instant;

use crossbeam_channel::Sender;
use mio::Waker;
use mio::net::TcpStream;

use crate::admission::Admission;
use crate::auth::Verifier;
use crate::bus::BusState;
use crate::frame::FrameBytes;
use crate::interest::Interest;
use crate::mixer::Publish;

/// A sequenced broadcast message, as the mixer hands it to every shard.
#[derive(Debug, Clone)]
pub struct Broadcast {
    /// The topic it was published on.
    pub topic: Arc<str>,
    /// Its sequence number within the topic.
    pub seq: u64,
    /// The mixer's stamp, µs since the Unix epoch (the `ts` field of the message).
    pub stamp_us: u64,
    /// The complete WebSocket frame, encoded once.
    pub frame: FrameBytes,
}

/// What the mixer sends a shard.
#[derive(Debug, Clone)]
pub enum ShardMsg {
    /// A frame for every subscriber of its topic.
    Broadcast(Broadcast),
    /// A frame for one connection (presence snapshot, `/who` answer).
    Direct {
        /// The connection's token.
        token: usize,
        /// The connection's id (a reused token with another id is someone else).
        id: u64,
        /// The frame.
        frame: FrameBytes,
    },
    /// The replay of a resumed topic; the connection subscribes to it after these frames.
    Resumed {
        /// The connection's token.
        token: usize,
        /// The connection's id.
        id: u64,
        /// What the mixer found.
        replay: Box<Replayed>,
    },
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
    pub frames: Vec<(u64, FrameBytes)>,
}

/// Server-wide services every shard consults at upgrade time (never per message).
#[derive(Debug)]
pub struct Services {
    /// Connection caps.
    pub admission: Arc<Admission>,
    /// Token verification, when `--auth-secret` is set.
    pub verifier: Option<Verifier>,
    /// Which topics this node's clients want (reported by the topic indexes).
    pub interest: Arc<Interest>,
    /// The Redis bus's health, when `--redis` is set (for `/healthz`).
    pub bus: Option<Arc<BusState>>,
    /// The Redis bus publisher's input, when `--redis` is set (client publishes go there).
    pub bus_tx: Option<Sender<Publish>>,
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
