//! One client connection, owned by one shard for its whole life.
//!
//! The connection is a state machine ([`State`]): it reads an HTTP request, upgrades to a
//! WebSocket (or answers and closes), exchanges frames, and closes. All I/O is non-blocking
//! and driven by the shard: [`Conn::on_readable`] when mio reports data, [`Conn::flush`] once
//! per turn while the outbox holds bytes, [`Conn::on_tick`] when its timer fires. Time is
//! passed in through [`ConnCtx`], so timers are testable.
//!
//! Memory per idle connection is kept small on purpose: reads go into the shard's scratch
//! buffer and only an incomplete frame (bounded by `--max-message`) is kept here; the outbox
//! holds no allocation until its first frame and gives back a deque grown by a burst (when
//! batches shrink, or at the next heartbeat while empty).

mod deadlines;
mod handshake;
mod inbound;
mod outbox;
mod publish;
mod read;
mod resume;
mod route;
mod session;
mod transport;
mod write;

pub use inbound::{Assembler, Event, Flow, Violation, unmask_in_place};
pub use outbox::{ENTRY_OVERHEAD, OutFrame, Outbox, WriteStatus};
pub use session::{Client, Session};
pub use transport::{Opening, Transport};

use std::io;
use std::net::SocketAddr;
use std::time::Instant;

use mio::{Interest, Registry, Token};

use crate::admission::{Pending, Ticket};
use crate::config::ServerConfig;
use crate::deflate::Inflater;
use crate::frame::{self, close_code};
use crate::http::WsRoute;
use crate::messages::{ConnKey, MixerPort};
use crate::metrics::ShardStats;
use crate::ratelimit::Limiter;
use crate::services::Services;
use crate::subs::{Class, Subscriptions};
use crate::timer::TimerWheel;

/// `Conn::timer_tick` while the connection has no entry in the wheel.
const NO_TIMER: u64 = u64::MAX;

/// Reads per readable event before yielding to other connections (each up to the scratch
/// buffer's size); the connection is revisited next turn.
const MAX_READS_PER_EVENT: usize = 4;

/// Where a connection is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    /// Reading the HTTP request head; closed if incomplete at `deadline`.
    Handshake {
        /// When an incomplete request is given up on.
        deadline: Instant,
        /// When the acceptor took the socket (for the server-side handshake latency).
        accepted: Instant,
    },
    /// An open WebSocket on one of the routes, closed with 1008 at the instant its token
    /// expires (`None` without authentication). Kept here rather than in the `/ws` session
    /// so that `/echo` is held to its token too; the variant is no larger than `Handshake`.
    Open(WsRoute, Option<Instant>),
    /// Writing a last answer (HTTP response or close frame), then closing: the write side is
    /// shut once it is written, and the socket is dropped at the peer's EOF (or its close
    /// frame, see [`AfterFlush`]).
    Closing {
        /// When the socket is dropped whatever remains (`--close-timeout` after closing began).
        deadline: Instant,
        /// What happens once the outbox is written.
        then: AfterFlush,
    },
    /// Finished; removed from the shard at the end of the turn.
    Closed,
}

/// What became of the bytes offered to a connection still reading its request head.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum HeadOutcome {
    /// The head is not complete yet.
    Incomplete,
    /// Upgraded to a WebSocket; the head used this many bytes.
    Upgraded(usize),
    /// An HTTP answer (or refusal) is queued; the connection closes after it.
    Answered,
}

/// How a closing connection ends once its last bytes are written. Either way our write side
/// is shut after them (FIN), and input is read until the peer's EOF: a socket closed with
/// unread input makes the kernel send a reset, which can destroy the close frame or HTTP
/// answer still on its way to the peer (a "lingering close").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AfterFlush {
    /// Input is read and discarded, never parsed: after an HTTP answer, after replying to
    /// the peer's close frame, and once the connection has failed (a protocol violation,
    /// RFC 6455 §7.1.7), whatever follows is not looked at.
    Linger {
        /// Whether the write side is already shut down.
        shut: bool,
    },
    /// We closed a healthy WebSocket: input is still parsed for the peer's close frame,
    /// which ends the connection once ours is written.
    AwaitPeer {
        /// Whether the write side is already shut down.
        shut: bool,
    },
}

/// What a connection may touch of its shard while it runs; built by the shard per call.
pub struct ConnCtx<'a> {
    /// This connection on its shard (slab token and id).
    pub key: ConnKey,
    /// The time of this turn.
    pub now: Instant,
    /// The same instant as µs since the Unix epoch (for latency against mixer stamps).
    pub now_us: u64,
    /// Server settings.
    pub cfg: &'a ServerConfig,
    /// The shard's poll registry, to change interest.
    pub registry: &'a Registry,
    /// The shard's topic index.
    pub subs: &'a mut Subscriptions,
    /// The shard's counters.
    pub stats: &'a mut ShardStats,
    /// The shard's timer wheel.
    pub timers: &'a mut TimerWheel<ConnKey>,
    /// Connections with bytes to write this turn.
    pub to_flush: &'a mut Vec<ConnKey>,
    /// Connections to read again next turn (read budget spent).
    pub to_read: &'a mut Vec<ConnKey>,
    /// Connections that reached `Closed`, to remove at the end of the turn.
    pub to_reap: &'a mut Vec<usize>,
    /// Connections that just answered their handshake, written at once even in the middle
    /// of a long flush pass (handshake latency).
    pub to_answer: &'a mut Vec<ConnKey>,
    /// The shard's channel into the mixer.
    pub mixer: &'a mut MixerPort,
    /// The shard's inflater for compressed client messages, lent to one connection at a
    /// time (`None` until first needed).
    pub inflater: &'a mut Option<Box<Inflater>>,
    /// Server-wide services: connection caps, token verification.
    pub services: &'a Services,
    /// Connections open on the shard now, this one included (for a scrape's own figure).
    pub open: usize,
}

/// The part of a shard a broadcast walk touches: a frame is offered to every subscriber
/// while the topic index is being read, so the index itself is not in here.
pub struct FanOut<'a> {
    /// Server settings (outbox limit, slow policy).
    pub cfg: &'a ServerConfig,
    /// The shard's counters.
    pub stats: &'a mut ShardStats,
    /// Connections with bytes to write this turn.
    pub to_flush: &'a mut Vec<ConnKey>,
}

/// What [`Conn::offer`] did with a frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Offer {
    /// Queued by reference.
    Queued,
    /// Skipped for this client (`--slow-policy drop`); counted.
    Dropped,
    /// Over the limit under `--slow-policy disconnect`: the caller closes the connection
    /// with [`Conn::close_slow_consumer`] once it may touch the topic index again.
    OverLimit,
}

/// One client connection.
#[derive(Debug)]
pub struct Conn {
    /// Unique per shard; tells stale timer and flush entries apart when tokens are reused.
    pub id: u64,
    /// The socket (plain, or carrying TLS).
    stream: Transport,
    /// Remote address, for logs and per-address limits.
    pub peer: SocketAddr,
    state: State,
    /// Frames waiting to be written.
    outbox: Outbox,
    /// Received bytes not yet parsed: an incomplete request head or frame.
    partial: Vec<u8>,
    /// Reassembly of fragmented messages.
    assembler: Assembler,
    /// The `/ws` session (identity, rights, topics); `None` on `/echo` and before upgrade.
    session: Option<Box<Session>>,
    /// This connection's place under the connection caps, once upgraded.
    ticket: Option<Ticket>,
    /// Its place under `--max-pending-per-ip` from accept until the upgrade (kept through
    /// an HTTP answer's lingering close).
    pending: Option<Pending>,
    /// Its rate limits (every message on either route; their bytes), from accept.
    limits: Limiter,
    /// Last time anything arrived from the peer (pongs included).
    last_recv: Instant,
    /// Last time a ping was sent.
    last_ping: Instant,
    /// Since when the socket has taken no byte while the outbox holds some (`None` while
    /// writes go through): closed at `--write-timeout`.
    stalled_since: Option<Instant>,
    /// The tick of this connection's live timer entry.
    timer_tick: u64,
    /// Whether WRITABLE interest is registered (only while bytes remain after a write).
    writable_registered: bool,
    /// Whether this connection is already in the shard's flush list.
    queued_for_flush: bool,
    /// Whether it negotiated permessage-deflate: it is sent compressed frames where there
    /// are some, and its messages may be compressed.
    deflate: bool,
    /// Whether it asked for runs of messages as one message (`?batch=1`).
    batch: bool,
    /// Whether a PROXY header must be read before anything else (`--proxy-protocol`, from a
    /// trusted proxy).
    awaiting_proxy: bool,
    /// The close code of this WebSocket (sent or received), for the close metrics.
    close_code: Option<u16>,
    /// Whether it was answered with a plain HTTP response (counted in
    /// `ShardStats::answered_http` until it is reaped).
    answered_http: bool,
}

impl Conn {
    /// A new connection in the handshake state; the caller registers it and arms its timer.
    pub fn new(
        id: u64,
        stream: Transport,
        peer: SocketAddr,
        accepted: Instant,
        now: Instant,
        cfg: &ServerConfig,
    ) -> Self {
        Conn {
            id,
            stream,
            peer,
            state: State::Handshake {
                deadline: now + cfg.handshake_timeout,
                accepted,
            },
            outbox: Outbox::default(),
            partial: Vec::new(),
            assembler: Assembler::default(),
            session: None,
            ticket: None,
            pending: None,
            limits: Limiter::new(cfg.message_rate(), cfg.byte_rate(), now),
            last_recv: now,
            last_ping: now,
            stalled_since: None,
            timer_tick: NO_TIMER,
            writable_registered: false,
            queued_for_flush: false,
            deflate: false,
            batch: false,
            awaiting_proxy: cfg.proxy_protocol && cfg.trusted_proxies.contains(peer.ip()),
            close_code: None,
            answered_http: false,
        }
    }

    /// The connection, holding `pending` (its place from the acceptor) until its upgrade.
    pub fn with_pending(mut self, pending: Pending) -> Self {
        self.pending = Some(pending);
        self
    }

    /// Registers the socket with the shard's poll for reading.
    pub fn register(&mut self, registry: &Registry, token: usize) -> io::Result<()> {
        self.stream
            .register(registry, Token(token), Interest::READABLE)
    }

    /// Removes the socket from the shard's poll (before it is dropped).
    pub fn deregister(&mut self, registry: &Registry) {
        let _ = self.stream.deregister(registry);
    }

    /// The current state.
    pub fn state(&self) -> State {
        self.state
    }

    /// Whether the connection is finished.
    pub fn is_closed(&self) -> bool {
        self.state == State::Closed
    }

    /// Whether it was answered with plain HTTP (a scrape, a health check, a refusal): the
    /// shard takes it out of `ShardStats::answered_http` when it reaps it.
    pub fn answered_http(&self) -> bool {
        self.answered_http
    }

    /// The close code to count when the connection is reaped (WebSockets only).
    pub fn close_code(&self) -> Option<u16> {
        self.close_code
    }

    /// Which frames it takes of each broadcast (set at the upgrade, kept for its life).
    fn class(&self) -> Class {
        Class::of(self.deflate, self.batch)
    }

    /// Bytes of memory held by the outbox.
    pub fn outbox_cost(&self) -> usize {
        self.outbox.cost()
    }

    /// Starts the closing handshake: leaves every topic, queues a close frame after what is
    /// already queued, and gives the peer until `wait` from now to answer.
    pub fn close_ws(
        &mut self,
        ctx: &mut ConnCtx<'_>,
        code: u16,
        reason: &str,
        wait: std::time::Duration,
    ) {
        self.close_with(
            ctx,
            code,
            reason,
            wait,
            AfterFlush::AwaitPeer { shut: false },
        );
    }

    fn close_with(
        &mut self,
        ctx: &mut ConnCtx<'_>,
        code: u16,
        reason: &str,
        wait: std::time::Duration,
        then: AfterFlush,
    ) {
        if !matches!(self.state, State::Open(..)) {
            return;
        }
        self.leave_topics(ctx);
        self.close_code = Some(code);
        self.outbox.push(frame::close(code, reason), 0);
        self.want_flush(ctx);
        self.state = State::Closing {
            deadline: ctx.now + wait,
            then,
        };
        self.arm_timer(ctx);
    }

    /// Shutdown: open WebSockets get close 1001 after everything already queued; others go.
    pub fn begin_shutdown(&mut self, ctx: &mut ConnCtx<'_>, wait: std::time::Duration) {
        match self.state {
            State::Open(..) => self.close_ws(ctx, close_code::GOING_AWAY, "going away", wait),
            State::Handshake { .. } => self.drop_now(ctx, None),
            State::Closing { .. } | State::Closed => {}
        }
    }

    /// Ends a peer that stopped taking part (its socket takes nothing, or it never finished
    /// closing) with a reset instead of a FIN: a FIN would wait behind the bytes still in the
    /// kernel's send buffer, which the kernel would then keep, orphaned, for minutes.
    fn abort(&mut self, ctx: &mut ConnCtx<'_>, code: Option<u16>) {
        // SO_LINGER 0: close() sends a reset and frees the send buffer. If it cannot be set,
        // the ordinary close still happens.
        let _ =
            socket2::SockRef::from(self.stream.tcp()).set_linger(Some(std::time::Duration::ZERO));
        self.drop_now(ctx, code);
    }

    /// Ends the connection at once (the shard drops the socket at the end of the turn).
    /// `code` records an abnormal end (1006) for a WebSocket that had no close code yet.
    fn drop_now(&mut self, ctx: &mut ConnCtx<'_>, code: Option<u16>) {
        if self.is_closed() {
            return;
        }
        if matches!(self.state, State::Open(..)) {
            self.close_code = self.close_code.or(code.or(Some(close_code::ABNORMAL)));
        }
        self.leave_topics(ctx);
        self.cancel_timer(ctx.timers, ctx.key);
        self.state = State::Closed;
        ctx.to_reap.push(ctx.key.token);
    }
}
