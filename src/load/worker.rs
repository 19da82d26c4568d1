//! One load thread: a mio event loop over its share of the connections.
//!
//! Connection `k` (0-based, of `n`) belongs to thread `k % threads` and is due at
//! `start + k / connect_rate`, so threads ramp together without talking to each other. Each
//! turn: open due connections, follow the window set by the coordinator (see [`Control`]),
//! send due publishes, poll, read, and remove closed connections. A long turn also opens the
//! connections that fall due during it, every few events, so they start on time instead of
//! in a burst after it. The loop ends by itself
//! once the window is over (or on `stop`), so a run is always bounded in time.
//!
//! Connections still connecting or upgrading live on a poll of their own, nested in the main
//! one and looked at every few events: a 101 is read as soon as it arrives even while the
//! thread works through thousands of broadcast reads, so the handshake latency it records is
//! the server's, not this thread's backlog. Once open, a connection moves to the main poll.

use std::os::fd::AsRawFd;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use mio::unix::SourceFd;
use mio::{Events, Interest, Poll, Token};
use slab::Slab;

use super::config::LoadConfig;
use super::conn::{Ctx, LoadConn, Phase};
use super::control::{Control, WindowState, close_window, follow_window};
use super::scan::Scanner;
use super::stats::Stats;
use super::tls::TlsClient;
use super::transport::connect_reason;
use crate::deflate::Inflater;

/// Per-thread read buffer: big reads are what keep the client cheaper than the server.
const SCRATCH: usize = 256 * 1024;
/// Longest poll, so window boundaries and `stop` are seen promptly.
const MAX_POLL: Duration = Duration::from_millis(10);
/// Connections opened per turn at most (each is a few syscalls).
const MAX_CONNECTS_PER_TURN: usize = 256;
/// Publishes per publisher per turn at most, so a stalled loop cannot flood.
const MAX_PUBLISH_BURST: usize = 1000;
/// How often connections still connecting are checked for their timeout.
const TIMEOUT_SCAN: Duration = Duration::from_millis(100);
/// Connections handled between two checks of the window (and of the handshake poll) inside
/// one turn.
const WINDOW_CHECK_EVERY: usize = 16;
/// Token of the handshake poll inside the main poll (never a slab index).
const HANDSHAKES: Token = Token(usize::MAX);
/// Events taken from the handshake poll per look.
const HANDSHAKE_EVENTS: usize = 256;

/// One load thread.
pub struct Worker {
    index: usize,
    cfg: Arc<LoadConfig>,
    control: Arc<Control>,
    poll: Poll,
    /// Connections not yet open (see the module docs); registered in `poll` as one source.
    handshakes: Poll,
    handshake_events: Events,
    conns: Slab<LoadConn>,
    scratch: Vec<u8>,
    /// Where TLS records are read before rustls decrypts them into `scratch`: as large, so
    /// a `wss://` connection reads in the same big bites (empty without TLS).
    cipher: Vec<u8>,
    /// `wss://`: what every connection's TLS is made from.
    tls: Option<TlsClient>,
    /// The counts, scanner and settings every connection uses (see [`Shared::ctx`]).
    shared: Shared,
    /// The next global connection index this thread opens.
    next_k: usize,
    /// Connections whose read budget ran out: read again next turn.
    again: Vec<usize>,
    /// Tokens of publishing connections.
    publishers: Vec<usize>,
    /// Connections not yet open or failed.
    pending: usize,
    next_timeout_scan: Instant,
    window: WindowState,
    /// What was last added to the shared progress counters.
    reported: (usize, usize, u64),
    publish_text: String,
}

impl Worker {
    /// Thread `index` of `cfg.threads`, speaking TLS when `tls` is given.
    pub fn new(
        index: usize,
        cfg: Arc<LoadConfig>,
        control: Arc<Control>,
        tls: Option<TlsClient>,
    ) -> std::io::Result<Self> {
        let base = control.base;
        let poll = Poll::new()?;
        let handshakes = Poll::new()?;
        poll.registry().register(
            &mut SourceFd(&handshakes.as_raw_fd()),
            HANDSHAKES,
            Interest::READABLE,
        )?;
        Ok(Worker {
            index,
            poll,
            handshakes,
            handshake_events: Events::with_capacity(HANDSHAKE_EVENTS),
            conns: Slab::with_capacity(cfg.connections / cfg.threads + 1),
            scratch: vec![0; SCRATCH],
            cipher: if tls.is_some() {
                vec![0; SCRATCH]
            } else {
                Vec::new()
            },
            tls,
            shared: Shared::new(index, &cfg),
            next_k: index,
            again: Vec::new(),
            publishers: Vec::new(),
            pending: 0,
            next_timeout_scan: base,
            window: WindowState::Before,
            reported: (0, 0, 0),
            publish_text: String::with_capacity(256),
            cfg,
            control,
        })
    }

    /// Runs until the window is over (or `stop`), closes every connection, and returns the
    /// thread's counts.
    pub fn run(mut self) -> Stats {
        let mut events = Events::with_capacity(1024);
        loop {
            let now = Instant::now();
            if follow_window(&self.control, &mut self.window, &mut self.shared.stats, now)
                || self.control.stop.load(Ordering::Relaxed)
            {
                break;
            }
            self.open_due(now);
            self.publish_due(now);
            if self.pending > 0 && now >= self.next_timeout_scan {
                self.scan_timeouts(now);
            }
            self.report_progress();
            let timeout = self.poll_timeout(now);
            if let Err(e) = self.poll.poll(&mut events, Some(timeout))
                && e.kind() != std::io::ErrorKind::Interrupted
            {
                log::error!("load thread {}: poll failed: {e}", self.index);
                break;
            }
            if self.handle_events(&events) {
                break;
            }
        }
        self.finish();
        self.shared.stats
    }

    fn due(&self, k: usize) -> Instant {
        self.control.base + Duration::from_secs_f64(k as f64 / self.cfg.connect_rate)
    }

    fn open_due(&mut self, now: Instant) {
        for _ in 0..MAX_CONNECTS_PER_TURN {
            let k = self.next_k;
            if k >= self.cfg.connections || self.due(k) > now {
                return;
            }
            self.next_k += self.cfg.threads;
            let source = (!self.cfg.source_ips.is_empty())
                .then(|| self.cfg.source_ips[k % self.cfg.source_ips.len()]);
            let mut conn = match LoadConn::connect(self.cfg.target.addr, source, self.tls.as_ref())
            {
                Ok(conn) => conn,
                Err(e) => {
                    self.shared.stats.fail(connect_reason(&e));
                    continue;
                }
            };
            conn.room = (self.cfg.rooms > 0).then(|| k % self.cfg.rooms);
            let entry = self.conns.vacant_entry();
            let token = entry.key();
            if let Err(e) = conn.register(self.handshakes.registry(), token) {
                self.shared.stats.fail(connect_reason(&e));
                continue;
            }
            // On loopback the connect has usually completed already: send the upgrade request
            // now rather than a poll later (a spurious try just waits for the WRITABLE edge).
            let mut ctx = self.shared.ctx(now);
            conn.on_writable(&mut ctx, &self.cfg.target);
            if conn.phase() == Phase::Closed {
                continue;
            }
            if k < self.cfg.publishers {
                self.publishers.push(token);
            }
            entry.insert(conn);
            self.pending += 1;
        }
    }

    fn publish_due(&mut self, now: Instant) {
        if self.publishers.is_empty() {
            return;
        }
        let interval = Duration::from_secs_f64(1.0 / self.cfg.publish_rate);
        let mut ctx = self.shared.ctx(now);
        for &token in &self.publishers {
            let Some(conn) = self.conns.get_mut(token) else {
                continue;
            };
            if conn.phase() != Phase::Open {
                continue;
            }
            let next = conn.next_publish.get_or_insert(now);
            let mut sent = 0;
            while *next <= now && sent < MAX_PUBLISH_BURST {
                *next += interval;
                sent += 1;
            }
            if *next <= now {
                // Far behind: skip ahead rather than flood.
                *next = now + interval;
            }
            let topic = super::config::in_room(&self.cfg.publish_topic, conn.room);
            for _ in 0..sent {
                conn.publish(&mut ctx, &topic, &mut self.publish_text);
            }
            if sent > 0 {
                conn.flush(&mut ctx);
            }
        }
    }

    fn scan_timeouts(&mut self, now: Instant) {
        self.next_timeout_scan = now + TIMEOUT_SCAN;
        let mut ctx = self.shared.ctx(now);
        let mut closed = Vec::new();
        for (token, conn) in self.conns.iter_mut() {
            if is_pending(conn.phase()) {
                conn.check_timeout(&mut ctx, self.cfg.connect_timeout);
                if conn.phase() == Phase::Closed {
                    self.pending -= 1;
                    closed.push(token);
                }
            }
        }
        self.reap(closed);
    }

    fn poll_timeout(&self, now: Instant) -> Duration {
        if !self.again.is_empty() {
            return Duration::ZERO;
        }
        let mut wake = now + MAX_POLL;
        if self.next_k < self.cfg.connections {
            wake = wake.min(self.due(self.next_k));
        }
        if let Some((start, end)) = self.control.window() {
            for t in [start, end] {
                if t > now {
                    wake = wake.min(t);
                }
            }
        }
        for &token in &self.publishers {
            if let Some(t) = self.conns.get(token).and_then(|c| c.next_publish) {
                wake = wake.min(t);
            }
        }
        wake.saturating_duration_since(now)
    }

    /// Handles the handshake poll, the connections whose read budget ran out last turn, then
    /// this poll's events. The window and the handshake poll are checked every few
    /// connections, so a long turn under overload cannot stretch the window or delay a 101.
    /// Returns true once the window is over.
    fn handle_events(&mut self, events: &Events) -> bool {
        let again = std::mem::take(&mut self.again);
        let mut closed = Vec::new();
        let mut ended = false;
        let mut now = Instant::now();
        self.serve_handshakes(now, &mut closed);
        let work = again
            .into_iter()
            .map(|t| (t, false, true))
            .chain(events.iter().map(|e| {
                let readable = e.is_readable() || e.is_read_closed() || e.is_error();
                (e.token().0, e.is_writable(), readable)
            }));
        for (i, (token, writable, readable)) in work.enumerate() {
            if i % WINDOW_CHECK_EVERY == WINDOW_CHECK_EVERY - 1 {
                now = Instant::now();
                if follow_window(&self.control, &mut self.window, &mut self.shared.stats, now) {
                    ended = true;
                    break;
                }
                self.serve_handshakes(now, &mut closed);
                // Connections due meanwhile open now, on time, rather than in a burst
                // after the turn (where each would wait for the others' connects).
                self.open_due(now);
            }
            self.on_event(token, writable, readable, now, &mut closed);
        }
        self.reap(closed);
        ended
    }

    /// Handles everything ready on the handshake poll, without blocking.
    fn serve_handshakes(&mut self, now: Instant, closed: &mut Vec<usize>) {
        if self.pending == 0 {
            return;
        }
        let mut events = std::mem::replace(&mut self.handshake_events, Events::with_capacity(0));
        loop {
            if self
                .handshakes
                .poll(&mut events, Some(Duration::ZERO))
                .is_err()
            {
                break;
            }
            let mut n = 0;
            for e in events.iter() {
                n += 1;
                let readable = e.is_readable() || e.is_read_closed() || e.is_error();
                self.on_event(e.token().0, e.is_writable(), readable, now, closed);
            }
            if n < HANDSHAKE_EVENTS {
                break;
            }
        }
        self.handshake_events = events;
    }

    /// One connection's edge: finish the connect, read, write. A connection that just opened
    /// moves from the handshake poll to the main one (registering reports data already there).
    fn on_event(
        &mut self,
        token: usize,
        writable: bool,
        readable: bool,
        now: Instant,
        closed: &mut Vec<usize>,
    ) {
        let Some(conn) = self.conns.get_mut(token) else {
            return;
        };
        let mut ctx = self.shared.ctx(now);
        let was_pending = is_pending(conn.phase());
        if writable {
            conn.on_writable(&mut ctx, &self.cfg.target);
        }
        if readable && conn.on_readable(&mut ctx, &mut self.scratch, &mut self.cipher) {
            self.again.push(token);
        }
        if conn.has_output() {
            conn.flush(&mut ctx);
        }
        if was_pending && !is_pending(conn.phase()) {
            self.pending -= 1;
            if conn.phase() == Phase::Open {
                conn.deregister(self.handshakes.registry());
                if conn.register(self.poll.registry(), token).is_err() {
                    conn.lost(&mut ctx);
                }
            }
        }
        if conn.phase() == Phase::Closed {
            closed.push(token);
        }
    }

    /// Takes a connection off whichever poll holds it (one closed while handshaking is still
    /// on the handshake poll; the other answers ENOENT, which is ignored).
    fn deregister(&self, conn: &mut LoadConn) {
        conn.deregister(self.poll.registry());
        conn.deregister(self.handshakes.registry());
    }

    /// Removes closed connections (never while iterating events).
    fn reap(&mut self, closed: Vec<usize>) {
        for token in closed {
            if self
                .conns
                .get(token)
                .is_none_or(|c| c.phase() != Phase::Closed)
            {
                continue;
            }
            let mut conn = self.conns.remove(token);
            self.deregister(&mut conn);
            self.publishers.retain(|&t| t != token);
            self.again.retain(|&t| t != token);
        }
    }

    fn report_progress(&mut self) {
        let now = (
            self.shared.stats.connected as usize,
            self.shared.stats.failure_count() as usize,
            self.shared.stats.window.messages,
        );
        let (o, f, m) = self.reported;
        if now.0 > o {
            self.control.opened.fetch_add(now.0 - o, Ordering::Relaxed);
        }
        if now.1 > f {
            self.control.failed.fetch_add(now.1 - f, Ordering::Relaxed);
        }
        if now.2 > m {
            self.control
                .messages
                .fetch_add(now.2 - m, Ordering::Relaxed);
        }
        self.reported = (now.0, now.1, now.2.max(m));
    }

    /// Closes the window if `stop` came first, counts connections still connecting as
    /// `unfinished`, sends close 1000 on every open connection (best effort) and drops them.
    fn finish(&mut self) {
        let now = Instant::now();
        if let WindowState::Open { since, cpu_ns } = self.window {
            close_window(&mut self.shared.stats, since, cpu_ns, now);
            self.window = WindowState::Closed;
        }
        let mut ctx = self.shared.ctx(Instant::now());
        for (_, conn) in self.conns.iter_mut() {
            if is_pending(conn.phase()) {
                ctx.stats.fail("unfinished");
            }
            conn.finish(&mut ctx);
            // Closed connections are on one of the two polls; the other answers ENOENT.
            conn.deregister(self.poll.registry());
            conn.deregister(self.handshakes.registry());
        }
        self.conns.clear();
        self.report_progress();
    }
}

/// What every connection of a thread shares, lent to one connection at a time as a [`Ctx`].
struct Shared {
    /// The thread's counts.
    stats: Stats,
    scanner: Scanner,
    /// Source of mask keys, seeded per thread so runs repeat.
    rng: fastrand::Rng,
    /// Largest message accepted (`cfg.max_message`).
    max_message: usize,
    /// Whether data messages may carry a publisher's `sent_us`: someone publishes, or
    /// publish latency is tracked.
    track_sent: bool,
    /// Whether connections offer permessage-deflate.
    deflate: bool,
    /// Whether the URL asks for batches (`batch=1`).
    batch: bool,
    /// Inflates compressed messages, for every connection of the thread in turn.
    inflater: Option<Box<Inflater>>,
}

impl Shared {
    /// What thread `index` lends its connections under `cfg`.
    fn new(index: usize, cfg: &LoadConfig) -> Self {
        Shared {
            stats: Stats::default(),
            scanner: Scanner::default(),
            rng: fastrand::Rng::with_seed(0x10ad_0000 + index as u64),
            max_message: cfg.max_message,
            track_sent: cfg.publishers > 0 || cfg.track_publish_latency,
            deflate: cfg.deflate,
            batch: cfg.target.asks_batches(),
            inflater: None,
        }
    }

    /// The context of one connection's work at `now`.
    fn ctx(&mut self, now: Instant) -> Ctx<'_> {
        Ctx {
            now,
            stats: &mut self.stats,
            scanner: &self.scanner,
            max_message: self.max_message,
            track_sent: self.track_sent,
            rng: &mut self.rng,
            deflate: self.deflate,
            batch: self.batch,
            inflater: &mut self.inflater,
        }
    }
}

/// Whether a connection is still connecting or upgrading.
fn is_pending(phase: Phase) -> bool {
    matches!(phase, Phase::Connecting | Phase::Upgrading)
}
