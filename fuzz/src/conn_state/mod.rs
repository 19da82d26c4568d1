//! One connection's state machine (`tickcast::conn::Conn`), driven the way its shard drives
//! it, by a script the fuzzer writes: byte chunks from the peer, the peer reading (or not),
//! the clock moving (a fake one: timers fire when the script says), broadcasts offered to
//! it, the peer's EOF, a WRITABLE edge and server shutdown.
//!
//! The connection runs on one end of a Unix stream socket pair, the script's peer on the
//! other: `Conn` only reads, writes, shuts down and polls its socket, which every stream
//! socket does alike, and a pair costs no port or handshake per run. Its send buffer is
//! small, so a peer that stops reading fills the outbox.
//!
//! Checked:
//! - what the peer receives is one HTTP answer, then, after a 101 only, server frames
//!   (unmasked, well framed); nothing is written after the close frame, nor after a plain
//!   answer's body;
//! - a close frame on the wire carries a code a peer may receive, and a UTF-8 reason;
//! - while a WebSocket is open or closing, its outbox never holds more than the limit plus
//!   the control allowance and its own close frame;
//! - the connection always ends: with the clock run forward and a reading peer, it is
//!   reaped within a bounded number of turns; an upgraded one with a close code that is
//!   valid, "none" (1005) or "abnormal" (1006).

mod peer;

use std::io::{Read, Write};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::Receiver;
use tickcast::admission::Admission;
use tickcast::config::{ServerConfig, SlowPolicy};
use tickcast::conn::{Conn, ConnCtx, FanOut, Offer, State, Transport};
use tickcast::frame::{self, is_valid_received_close_code};
use tickcast::interest::Interest;
use tickcast::messages::{ConnKey, MixerMsg, MixerPort, QueueBytes};
use tickcast::metrics::{Metrics, ShardStats};
use tickcast::services::Services;
use tickcast::subs::{Class, Subscriptions};
use tickcast::timer::TimerWheel;

use peer::{Wire, socket_pair};

/// The secret of the configuration with tokens on (16 bytes, the minimum).
pub const SECRET: &[u8] = b"fuzz-secret-0123";

/// `--max-token-lifetime` of the configuration with tokens on: long enough for the seeds'
/// tokens, which expire in 2096 (`seeds/make.py`'s `FAR`), so that a token the fuzzer keeps
/// stays valid whatever day the replay runs.
pub const SEED_LIFETIME: std::time::Duration = std::time::Duration::from_secs(100 * 365 * 86_400);
/// The outbox limit the checks run with (small, so a script fills it).
const OUTBOX_LIMIT: usize = 16 * 1024;
/// Control frames an outbox may hold past the limit (`conn/write.rs`).
const CONTROL_ALLOWANCE: usize = 4096;
/// Room for what is pushed past the limit by design: the 101 answer, one close frame.
const SLACK: usize = 1024;
/// The scratch buffer reads go into (small: a chunk may take several reads).
const SCRATCH: usize = 4096;
thread_local! {
    static METRICS: Arc<Metrics> = Metrics::new(1);
}

/// Turns the final drain may take before the connection must have ended.
const DRAIN_TURNS: usize = 64;

/// What the peer saw of one run, for tests that the harness drives the real thing.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Outcome {
    /// The HTTP answer's status.
    pub status: Option<u16>,
    /// Server frames received after a 101 (the close frame included).
    pub frames: usize,
    /// The code of the close frame received, if one was.
    pub close_on_wire: Option<u16>,
    /// The close code the connection recorded when it was reaped (WebSockets only).
    pub close_code: Option<u16>,
}

/// Runs the script `data` and checks the invariants (see the module docs).
pub fn check(data: &[u8]) {
    run(data);
}

/// Runs the script `data`: its first byte picks the configuration (bit 0: `--slow-policy
/// disconnect`, bit 1: tokens required, bit 2: an Origin allow-list), the rest are steps.
pub fn run(data: &[u8]) -> Outcome {
    let Some((&flags, script)) = data.split_first() else {
        return Outcome::default();
    };
    let mut h = Harness::new(flags);
    let mut steps = Steps(script);
    while let Some(op) = steps.byte() {
        if h.conn.is_none() {
            h.peer_read(usize::MAX);
            continue;
        }
        match op % 8 {
            0 => {
                let len = usize::from(steps.byte().unwrap_or(0));
                let chunk = steps.take(len);
                h.send(chunk);
            }
            1 => {
                let n = usize::from(steps.byte().unwrap_or(0)) * 64;
                h.peer_read(n);
            }
            2 => {
                let quarters = steps.byte().unwrap_or(0);
                h.advance(Duration::from_millis(u64::from(quarters) * 250));
            }
            3 => {
                let len = usize::from(steps.byte().unwrap_or(0)) * 32;
                h.broadcast(len);
            }
            4 => h.peer_eof(),
            5 => h.shutdown(),
            6 => h.writable(),
            _ => h.send_repeated(steps.byte().unwrap_or(0), steps.take(8)),
        }
        h.turn();
        h.check_outbox();
    }
    h.finish()
}

/// The script, consumed a byte or a slice at a time.
struct Steps<'a>(&'a [u8]);

impl<'a> Steps<'a> {
    fn byte(&mut self) -> Option<u8> {
        let (&b, rest) = self.0.split_first()?;
        self.0 = rest;
        Some(b)
    }

    fn take(&mut self, n: usize) -> &'a [u8] {
        let (head, rest) = self.0.split_at(n.min(self.0.len()));
        self.0 = rest;
        head
    }
}

/// The shard around one connection: the same parts `Shard` lends it, with a clock the
/// script moves.
struct Harness {
    cfg: ServerConfig,
    poll: mio::Poll,
    subs: Subscriptions,
    stats: ShardStats,
    timers: TimerWheel<ConnKey>,
    to_flush: Vec<ConnKey>,
    to_read: Vec<ConnKey>,
    to_reap: Vec<usize>,
    to_answer: Vec<ConnKey>,
    mixer: MixerPort,
    inflater: Option<Box<tickcast::deflate::Inflater>>,
    mixer_rx: Receiver<MixerMsg>,
    services: Services,
    key: ConnKey,
    conn: Option<Conn>,
    peer: std::os::unix::net::UnixStream,
    peer_shut: bool,
    scratch: Vec<u8>,
    now: Instant,
    /// The clock's start, and the same instant as µs since the Unix epoch (token expiry).
    origin: Instant,
    origin_us: u64,
    wire: Wire,
    was_websocket: bool,
    close_code: Option<u16>,
    frame_id: u8,
}

impl Harness {
    fn new(flags: u8) -> Harness {
        let mut cfg = ServerConfig {
            max_message: 1024,
            max_header: 1024,
            outbox_limit: OUTBOX_LIMIT,
            write_budget: 2048,
            publish_byte_burst: 4096,
            publish_burst: 20,
            slow_policy: if flags & 1 == 0 {
                SlowPolicy::Drop
            } else {
                SlowPolicy::Disconnect
            },
            ..ServerConfig::default()
        };
        if flags & 2 != 0 {
            cfg.auth_secret = Some(tickcast::auth::Secret(SECRET.to_vec()));
        }
        if flags & 4 != 0 {
            cfg.allowed_origins = vec!["https://app.example".into()];
        }
        cfg.validate().expect("the fuzz configuration is valid");
        let now = Instant::now();
        // One registry per thread: building it is most of a run's cost, and its counters
        // only ever grow.
        let metrics = METRICS.with(Arc::clone);
        let (mixer_tx, mixer_rx) = crossbeam_channel::bounded(64);
        let services = Services {
            admission: Admission::new(
                cfg.connection_cap(),
                cfg.max_connections_per_ip,
                cfg.ipv6_prefix,
            ),
            verifier: cfg
                .auth_secret
                .as_ref()
                .map(|s| tickcast::auth::Verifier::new(&s.0).with_max_lifetime(SEED_LIFETIME)),
            interest: Interest::new(),
            deflate_interest: Interest::new(),
            bus: None,
            bus_port: None,
            tls: None,
            // No mixer takes publishes here: unbounded, as if it kept up.
            mixer_bytes: QueueBytes::new(usize::MAX),
        };
        let (server_end, peer) = socket_pair();
        let poll = mio::Poll::new().expect("epoll");
        let key = ConnKey { token: 0, id: 1 };
        let peer_addr = SocketAddr::from(([127, 0, 0, 2], 40000));
        let mut conn = Conn::new(
            key.id,
            Transport::plain(server_end),
            peer_addr,
            now,
            now,
            &cfg,
        );
        conn.register(poll.registry(), key.token)
            .expect("register the connection");
        let mut h = Harness {
            poll,
            subs: Subscriptions::default(),
            stats: ShardStats::new(0, metrics, now),
            // The shard's tick with fewer slots: long deadlines then wrap around the wheel
            // (fired early and re-armed), a path the shard's 100 s lap rarely takes.
            timers: TimerWheel::new(now, Duration::from_millis(50), 64),
            to_flush: Vec::new(),
            to_read: Vec::new(),
            to_reap: Vec::new(),
            to_answer: Vec::new(),
            mixer: MixerPort::new(mixer_tx, None, QueueBytes::new(usize::MAX)),
            inflater: None,
            mixer_rx,
            services,
            key,
            conn: None,
            peer,
            peer_shut: false,
            scratch: vec![0; SCRATCH],
            now,
            origin: now,
            origin_us: tickcast::clock::unix_micros(),
            wire: Wire::default(),
            was_websocket: false,
            close_code: None,
            frame_id: 0,
            cfg,
        };
        h.with_conn(&mut conn, |c, ctx| c.arm_timer(ctx));
        h.conn = Some(conn);
        h
    }

    /// Runs `f` on `conn` with the context the shard would lend it this turn.
    fn with_conn<R>(
        &mut self,
        conn: &mut Conn,
        f: impl FnOnce(&mut Conn, &mut ConnCtx<'_>) -> R,
    ) -> R {
        let now_us = self.origin_us + self.now.duration_since(self.origin).as_micros() as u64;
        let mut ctx = ConnCtx {
            key: self.key,
            now: self.now,
            now_us,
            cfg: &self.cfg,
            registry: self.poll.registry(),
            subs: &mut self.subs,
            stats: &mut self.stats,
            timers: &mut self.timers,
            to_flush: &mut self.to_flush,
            to_read: &mut self.to_read,
            to_reap: &mut self.to_reap,
            to_answer: &mut self.to_answer,
            mixer: &mut self.mixer,
            inflater: &mut self.inflater,
            services: &self.services,
            // The one connection of this harness.
            open: 1,
        };
        f(conn, &mut ctx)
    }

    /// Runs `f` on the connection, if it is still there.
    fn on_conn(&mut self, f: impl FnOnce(&mut Conn, &mut ConnCtx<'_>)) {
        if let Some(mut conn) = self.conn.take() {
            self.with_conn(&mut conn, f);
            self.conn = Some(conn);
        }
    }

    /// The peer writes `chunk` (what its socket takes) and the connection reads it.
    fn send(&mut self, chunk: &[u8]) {
        if self.peer_shut || chunk.is_empty() {
            return;
        }
        let _ = self.peer.write(chunk);
        self.readable(false);
    }

    /// The peer writes `pattern` `times` times over (long frames, floods).
    fn send_repeated(&mut self, times: u8, pattern: &[u8]) {
        if pattern.is_empty() {
            return;
        }
        let bytes: Vec<u8> = pattern
            .iter()
            .copied()
            .cycle()
            .take(pattern.len() * usize::from(times) * 16)
            .collect();
        self.send(&bytes);
    }

    fn readable(&mut self, until_eof: bool) {
        let mut scratch = std::mem::take(&mut self.scratch);
        self.on_conn(|c, ctx| c.on_readable(ctx, &mut scratch, until_eof));
        self.scratch = scratch;
    }

    /// The peer half-closes: the connection reads to EOF.
    fn peer_eof(&mut self) {
        if !self.peer_shut {
            let _ = self.peer.shutdown(std::net::Shutdown::Write);
            self.peer_shut = true;
        }
        self.readable(true);
    }

    /// The clock moves by `by`; due timers fire.
    fn advance(&mut self, by: Duration) {
        self.now += by;
        let mut fired = Vec::new();
        self.timers.expire(self.now, &mut fired);
        for (key, tick) in fired {
            if key == self.key {
                self.on_conn(|c, ctx| {
                    if c.is_live_timer(tick) {
                        c.on_tick(ctx);
                    }
                });
            }
        }
    }

    /// A broadcast of a `len`-byte text frame on `ticks`, offered as the shard offers it:
    /// to subscribers of the topic or of `*`, closing a slow consumer under `disconnect`.
    fn broadcast(&mut self, len: usize) {
        let mut subscribed = false;
        for topic in ["ticks", "*"] {
            for class in Class::ALL {
                self.subs
                    .for_each_subscriber(topic, class, |t| subscribed |= t == self.key.token);
            }
        }
        if !subscribed {
            return;
        }
        self.frame_id = self.frame_id.wrapping_add(1);
        let body = vec![b'a' + self.frame_id % 26; len];
        let text = String::from_utf8(body).expect("ASCII");
        let bytes = frame::text(&text);
        let token = self.key.token;
        let Some(mut conn) = self.conn.take() else {
            return;
        };
        let mut out = FanOut {
            cfg: &self.cfg,
            stats: &mut self.stats,
            to_flush: &mut self.to_flush,
        };
        if conn.offer(token, &bytes, 1, &mut out) == Offer::OverLimit {
            self.with_conn(&mut conn, |c, ctx| c.close_slow_consumer(ctx));
        }
        self.conn = Some(conn);
    }

    /// Server shutdown: open WebSockets get 1001.
    fn shutdown(&mut self) {
        let wait = self.cfg.drain_timeout;
        self.on_conn(|c, ctx| c.begin_shutdown(ctx, wait));
    }

    /// A WRITABLE edge.
    fn writable(&mut self) {
        self.on_conn(|c, ctx| c.mark_for_flush(ctx));
    }

    /// The end of a shard turn: reads left over, answers and flushes, the mixer's input
    /// taken, the connection reaped if it ended.
    fn turn(&mut self) {
        for _ in std::mem::take(&mut self.to_read) {
            self.readable(true);
        }
        let keys: Vec<ConnKey> = self
            .to_answer
            .drain(..)
            .chain(self.to_flush.drain(..))
            .collect();
        for key in keys {
            if key == self.key {
                self.on_conn(|c, ctx| c.flush(ctx));
            }
        }
        self.mixer.flush();
        while self.mixer_rx.try_recv().is_ok() {}
        if let Some(conn) = &self.conn
            && matches!(conn.state(), State::Open(..))
        {
            self.was_websocket = true;
        }
        if !self.to_reap.is_empty() {
            self.to_reap.clear();
            let mut conn = self.conn.take().expect("a reaped connection was there");
            assert!(conn.is_closed(), "reaped while {:?}", conn.state());
            if self.was_websocket {
                let code = conn
                    .close_code()
                    .expect("an upgraded connection has a close code");
                self.close_code = Some(code);
                assert!(
                    is_valid_received_close_code(code) || code == 1005 || code == 1006,
                    "close code {code}"
                );
            }
            conn.deregister(self.poll.registry());
        }
    }

    /// The outbox of an open or closing WebSocket stays within its bounds.
    fn check_outbox(&self) {
        let Some(conn) = &self.conn else { return };
        if self.was_websocket {
            let bound = OUTBOX_LIMIT + CONTROL_ALLOWANCE + SLACK;
            assert!(
                conn.outbox_cost() <= bound,
                "outbox {} > {bound}",
                conn.outbox_cost()
            );
        }
    }

    /// The peer reads up to `max` bytes and checks them.
    fn peer_read(&mut self, max: usize) {
        let mut buf = [0u8; 4096];
        let mut left = max;
        while left > 0 {
            match self.peer.read(&mut buf[..left.min(4096)]) {
                Ok(0) => break,
                Ok(n) => {
                    self.wire.take(&buf[..n]);
                    left -= n;
                }
                Err(_) => break,
            }
        }
    }

    /// Runs the clock forward with a reading peer until the connection ends; it must.
    fn finish(mut self) -> Outcome {
        for _ in 0..DRAIN_TURNS {
            if self.conn.is_none() {
                break;
            }
            self.peer_read(usize::MAX);
            self.writable();
            self.shutdown();
            self.readable(self.peer_shut);
            self.turn();
            self.advance(Duration::from_secs(30));
            self.turn();
        }
        assert!(self.conn.is_none(), "the connection never ended");
        self.peer_read(usize::MAX);
        self.wire.outcome.close_code = self.close_code;
        self.wire.outcome
    }
}
