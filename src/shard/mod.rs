//! A shard: one pinned thread running one `mio::Poll` over its own connections.
//!
//! Each turn of the loop, in order (Redis's `beforeSleep` shape):
//! 1. handle the socket events of the last poll (reads, WRITABLE edges) and fired timers;
//! 2. take new sockets from the acceptor;
//! 3. drain the broadcast queue from the mixer, pushing each frame by reference into the
//!    outbox of every subscriber (the topic index skips everyone else); frames of one topic
//!    queued together go as one run, one reference per subscriber (`fanout.rs`);
//! 4. write every connection with pending bytes, one vectored write each, within a budget;
//!    a long pass looks at the queue and at new connections every 250 µs;
//! 5. remove connections that closed during the turn (never while iterating events);
//! 6. park: announce sleep through `parked`, re-check the queue, and poll.
//!
//! Nothing here is shared with other threads except the queue ends, the `Waker`, the
//! `parked` flag and the connection counter (see [`ShardLink`]). No lock is taken per message.
//!
//! A connection is named by its [`ConnKey`] (slab token and id) wherever the shard keeps it
//! for later (flush and read lists, timer entries, the mixer's replies), and reached only
//! through `Shard::with_conn`, which checks that the token still holds that connection.

mod fanout;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering, fence};
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender};
use mio::{Events, Poll, Token, Waker};
use slab::Slab;

use crate::clock::unix_micros;
use crate::config::ServerConfig;
use crate::conn::{Conn, ConnCtx, OutFrame, Transport};
use crate::deflate::{Deflater, Inflater};
use crate::messages::{
    Broadcast, ConnKey, Intake, MixerMsg, MixerPort, QueueBytes, ShardLink, ShardMsg,
};
use crate::metrics::{Metrics, Sampled, ShardStats};
use crate::protocol::TELEMETRY_TOPIC;
use crate::services::Services;
use crate::subs::{Subscriptions, Watch};
use crate::timer::TimerWheel;

/// Token of the shard's waker (never a slab index).
const WAKER: Token = Token(usize::MAX);
/// Width of a timer-wheel slot.
const TIMER_TICK: Duration = Duration::from_millis(50);
/// Slots of the timer wheel: 2048 x 50 ms covers 102 s, past the default idle timeout.
const TIMER_SLOTS: usize = 2048;
/// Shard-wide read buffer; connections keep only incomplete frames.
const SCRATCH: usize = 64 * 1024;
/// During a flush pass, the clock is read every this many writes...
const FLUSH_CLOCK_EVERY: usize = 8;
/// ...and once this much time has passed since the last look, the queue and new connections
/// are looked at (a write costs 5-50 µs, so a fixed count of writes would be a time that
/// varies tenfold with the load).
const FLUSH_LOOK_EVERY: Duration = Duration::from_micros(250);
/// Broadcast messages taken from the queue per turn before writing, so sockets are served
/// between bursts.
const MAX_DRAIN_PER_TURN: usize = 4096;

/// The parts of a shard that connections may touch (split from the slab for borrowing).
struct Shared {
    cfg: Arc<ServerConfig>,
    subs: Subscriptions,
    stats: ShardStats,
    timers: TimerWheel<ConnKey>,
    to_flush: Vec<ConnKey>,
    to_read: Vec<ConnKey>,
    to_reap: Vec<usize>,
    to_answer: Vec<ConnKey>,
    mixer: MixerPort,
    services: Arc<Services>,
    /// Inflates compressed client messages, for every connection in turn.
    inflater: Option<Box<Inflater>>,
    /// Compresses runs for `?batch=1` clients that negotiated deflate (made on first use).
    deflater: Option<Box<Deflater>>,
}

/// One shard: built on the main thread, then moved into its own thread by [`Shard::run`].
pub struct Shard {
    id: usize,
    poll: Poll,
    conns: Slab<Conn>,
    shared: Shared,
    queue: Receiver<ShardMsg>,
    /// The bytes in `queue`, shared with the mixer (taken away as they are received).
    queue_bytes: QueueBytes,
    intake: Receiver<Intake>,
    /// The shard's own handle on its waker's eventfd. Without it the last handle could be
    /// another thread's (the mixer's, at shutdown): dropping it right after `wake()` closes
    /// the eventfd, which removes the pending event from this poll, and the wake-up is lost.
    _waker: Arc<Waker>,
    parked: Arc<AtomicBool>,
    conn_count: Arc<AtomicUsize>,
    scratch: Vec<u8>,
    /// Events polled in the middle of a long flush pass.
    mid_events: Events,
    /// Slow consumers found during a broadcast walk, closed right after it.
    slow: Vec<usize>,
    /// References to the entry being fanned out, taken before the walk (see `fan_out`).
    refs: Vec<OutFrame>,
    /// Broadcasts of one topic taken from the queue and not yet fanned out (see `fanout.rs`).
    run: Vec<Broadcast>,
    next_conn_id: u64,
    /// Set once the mixer is gone: the time by which remaining clients are dropped.
    draining_until: Option<Instant>,
}

impl Shard {
    /// Creates shard `id` and the link other threads use to reach it.
    pub fn new(
        id: usize,
        cfg: Arc<ServerConfig>,
        metrics: Arc<Metrics>,
        services: Arc<Services>,
        mixer: Sender<MixerMsg>,
    ) -> std::io::Result<(Shard, ShardLink)> {
        let poll = Poll::new()?;
        let waker = Arc::new(Waker::new(poll.registry(), WAKER)?);
        let (queue_tx, queue_rx) = crossbeam_channel::bounded(cfg.shard_queue);
        let queue_bytes = QueueBytes::new(cfg.shard_queue_bytes);
        // New sockets are few and each is an open file: bounded by the acceptor's handoff.
        let (intake_tx, intake_rx) = crossbeam_channel::bounded(4096);
        let parked = Arc::new(AtomicBool::new(false));
        let conn_count = Arc::new(AtomicUsize::new(0));
        let now = Instant::now();
        let shard = Shard {
            id,
            poll,
            conns: Slab::with_capacity(1024),
            shared: Shared {
                subs: Subscriptions::watching(Watch {
                    topic: TELEMETRY_TOPIC,
                    subscribers: metrics.telemetry_subscribers.clone(),
                })
                .with_interest(services.interest.clone(), services.deflate_interest.clone()),
                stats: ShardStats::new(id, metrics, now),
                timers: TimerWheel::new(now, TIMER_TICK, TIMER_SLOTS),
                to_flush: Vec::new(),
                to_read: Vec::new(),
                to_reap: Vec::new(),
                to_answer: Vec::new(),
                mixer: MixerPort::new(
                    mixer,
                    services.bus_port.clone(),
                    services.mixer_bytes.clone(),
                ),
                inflater: None,
                deflater: None,
                services,
                cfg,
            },
            queue: queue_rx,
            queue_bytes: queue_bytes.clone(),
            intake: intake_rx,
            _waker: waker.clone(),
            parked: parked.clone(),
            conn_count: conn_count.clone(),
            scratch: vec![0; SCRATCH],
            mid_events: Events::with_capacity(256),
            slow: Vec::new(),
            refs: Vec::new(),
            run: Vec::new(),
            next_conn_id: 1,
            draining_until: None,
        };
        let link = ShardLink {
            id,
            queue: queue_tx,
            intake: intake_tx,
            waker,
            parked,
            conns: conn_count,
            bytes: queue_bytes,
        };
        Ok((shard, link))
    }

    /// Runs the event loop until the mixer is gone and every client has closed (or the
    /// drain timeout passed).
    pub fn run(mut self) {
        let mut events = Events::with_capacity(1024);
        let mut fired = Vec::new();
        loop {
            let now = Instant::now();
            let now_us = unix_micros();
            self.handle_events(&events, now, now_us);
            self.fire_timers(now, now_us, &mut fired);
            self.take_new_sockets(now, now_us);
            self.answer_handshakes(now, now_us);
            let mixer_alive = self.drain_queue(now, now_us);
            if !mixer_alive && self.draining_until.is_none() {
                self.begin_drain(now, now_us);
            }
            self.flush(now, now_us);
            self.reap();
            self.shared.mixer.flush();
            let sampled = Sampled {
                queue_depth: self.queue.len(),
                queue_bytes: self.queue_bytes.held(),
                timer_entries: self.shared.timers.len(),
            };
            let next_publish = self.shared.stats.publish(now, self.conns.len(), sampled);
            if let Some(until) = self.draining_until
                && (self.conns.is_empty() || now >= until)
            {
                break;
            }
            let timeout = self.poll_timeout(now, next_publish);
            self.park_and_poll(&mut events, timeout);
        }
        let dropped = self.conns.len();
        if dropped > 0 {
            log::info!(
                "shard {}: drain timeout, dropping {dropped} connections",
                self.id
            );
        }
        for (_, conn) in self.conns.iter_mut() {
            conn.deregister(self.poll.registry());
        }
        log::debug!("shard {} stopped", self.id);
    }

    /// The context connection `key` runs with: the shard's parts it may touch, and the turn's
    /// clock.
    fn ctx<'a>(
        shared: &'a mut Shared,
        registry: &'a mio::Registry,
        key: ConnKey,
        now: Instant,
        now_us: u64,
    ) -> ConnCtx<'a> {
        ConnCtx {
            key,
            now,
            now_us,
            cfg: &shared.cfg,
            registry,
            subs: &mut shared.subs,
            stats: &mut shared.stats,
            timers: &mut shared.timers,
            to_flush: &mut shared.to_flush,
            to_read: &mut shared.to_read,
            to_reap: &mut shared.to_reap,
            to_answer: &mut shared.to_answer,
            mixer: &mut shared.mixer,
            inflater: &mut shared.inflater,
            services: &shared.services,
            open: 0,
        }
    }

    /// The one way to reach a connection: runs `f` on the connection `key` names, with its
    /// context. `None` when it is gone: its token is free, or was reused by a newer
    /// connection (another id), as happens to entries queued before it closed.
    fn with_conn<R>(
        &mut self,
        key: ConnKey,
        now: Instant,
        now_us: u64,
        f: impl FnOnce(&mut Conn, &mut ConnCtx<'_>) -> R,
    ) -> Option<R> {
        let open = self.conns.len();
        let conn = self.conns.get_mut(key.token).filter(|c| c.id == key.id)?;
        let mut ctx = Self::ctx(&mut self.shared, self.poll.registry(), key, now, now_us);
        ctx.open = open;
        Some(f(conn, &mut ctx))
    }

    /// The key of the connection on slab token `token` now (poll events carry tokens only).
    fn key_of(&self, token: usize) -> Option<ConnKey> {
        self.conns.get(token).map(|c| ConnKey { token, id: c.id })
    }

    fn handle_events(&mut self, events: &Events, now: Instant, now_us: u64) {
        // The read buffer is lent to each connection in turn (moving a Vec is a pointer copy).
        let mut scratch = std::mem::take(&mut self.scratch);
        // Connections whose read budget ran out last turn go first.
        let again = std::mem::take(&mut self.shared.to_read);
        for key in again {
            self.with_conn(key, now, now_us, |conn, ctx| {
                conn.on_readable(ctx, &mut scratch, true)
            });
        }
        for event in events.iter() {
            let token = event.token();
            let Some(key) = (token != WAKER).then(|| self.key_of(token.0)).flatten() else {
                continue;
            };
            if event.is_readable() || event.is_read_closed() || event.is_error() {
                let closed = event.is_read_closed() || event.is_error();
                self.with_conn(key, now, now_us, |conn, ctx| {
                    conn.on_readable(ctx, &mut scratch, closed)
                });
            }
            if event.is_writable() {
                self.with_conn(key, now, now_us, |conn, ctx| conn.mark_for_flush(ctx));
            }
        }
        self.scratch = scratch;
    }

    fn fire_timers(&mut self, now: Instant, now_us: u64, fired: &mut Vec<(ConnKey, u64)>) {
        self.shared.timers.expire(now, fired);
        for (key, tick) in fired.drain(..) {
            self.with_conn(key, now, now_us, |conn, ctx| {
                if conn.is_live_timer(tick) {
                    conn.on_tick(ctx);
                }
            });
        }
    }

    fn take_new_sockets(&mut self, now: Instant, now_us: u64) {
        while let Ok(Intake {
            stream,
            peer,
            accepted,
            pending,
        }) = self.intake.try_recv()
        {
            if self.draining_until.is_some() {
                self.conn_count.fetch_sub(1, Ordering::Relaxed);
                continue;
            }
            let id = self.next_conn_id;
            self.next_conn_id += 1;
            let transport = match &self.shared.services.tls {
                None => Transport::plain(stream),
                Some(tls) => match tls.accept() {
                    Ok(session) => Transport::tls(stream, session),
                    Err(e) => {
                        log::warn!("shard {}: no TLS session for {peer}: {e}", self.id);
                        self.conn_count.fetch_sub(1, Ordering::Relaxed);
                        continue;
                    }
                },
            };
            let entry = self.conns.vacant_entry();
            let key = ConnKey {
                token: entry.key(),
                id,
            };
            let conn = entry.insert(
                Conn::new(id, transport, peer, accepted, now, &self.shared.cfg)
                    .with_pending(pending),
            );
            if let Err(e) = conn.register(self.poll.registry(), key.token) {
                log::warn!("shard {}: cannot register {peer}: {e}", self.id);
                self.conns.remove(key.token);
                self.conn_count.fetch_sub(1, Ordering::Relaxed);
                continue;
            }
            self.with_conn(key, now, now_us, |conn, ctx| conn.arm_timer(ctx));
        }
    }

    /// Writes every connection with pending bytes. A long pass (thousands of clients, one
    /// write each) looks at the queue and at new connections every
    /// [`FLUSH_LOOK_EVERY`]: frames that arrived meanwhile join the outboxes of the
    /// clients not yet written, so they leave in this pass instead of waiting for the next
    /// one (the busier the shard, the more frames each write carries), and a connecting
    /// client is answered within about that time.
    fn flush(&mut self, now: Instant, mut now_us: u64) {
        let pending = std::mem::take(&mut self.shared.to_flush);
        let mut looked = Instant::now();
        for (i, &key) in pending.iter().enumerate() {
            if i % FLUSH_CLOCK_EVERY == FLUSH_CLOCK_EVERY - 1
                && looked.elapsed() >= FLUSH_LOOK_EVERY
            {
                looked = Instant::now();
                now_us = unix_micros();
                if !self.queue.is_empty() {
                    self.drain_queue(now, now_us);
                }
                self.serve_newcomers(now, now_us);
            }
            self.with_conn(key, now, now_us, |conn, ctx| conn.flush(ctx));
        }
        let mut pending = pending;
        pending.clear();
        if self.shared.to_flush.is_empty() {
            // Keep the allocation for the next turn.
            self.shared.to_flush = pending;
        }
    }

    /// In the middle of a long flush pass: takes new sockets, reads what is ready (without
    /// blocking) and writes the answers to handshakes completed just now, so connecting
    /// clients do not wait for the whole pass. Other work found here waits for the next turn.
    fn serve_newcomers(&mut self, now: Instant, now_us: u64) {
        self.take_new_sockets(now, now_us);
        let mut events = std::mem::replace(&mut self.mid_events, Events::with_capacity(0));
        if self.poll.poll(&mut events, Some(Duration::ZERO)).is_ok() && !events.is_empty() {
            self.handle_events(&events, now, now_us);
        }
        self.mid_events = events;
        self.answer_handshakes(now, now_us);
    }

    /// Writes the connections that completed their handshake this turn.
    fn answer_handshakes(&mut self, now: Instant, now_us: u64) {
        let fresh = std::mem::take(&mut self.shared.to_answer);
        for &key in &fresh {
            self.with_conn(key, now, now_us, |conn, ctx| conn.flush(ctx));
        }
        let mut fresh = fresh;
        fresh.clear();
        self.shared.to_answer = fresh;
    }

    fn reap(&mut self) {
        let metrics = self.shared.stats.metrics.clone();
        for token in self.shared.to_reap.drain(..) {
            let Some(conn) = self.conns.get_mut(token) else {
                continue;
            };
            if !conn.is_closed() {
                continue;
            }
            conn.deregister(self.poll.registry());
            if let Some(code) = conn.close_code() {
                metrics.count_close(code);
            }
            if conn.answered_http() {
                self.shared.stats.answered_http = self.shared.stats.answered_http.saturating_sub(1);
            }
            self.conns.remove(token);
            self.conn_count.fetch_sub(1, Ordering::Relaxed);
        }
    }

    /// The mixer is gone (shutdown): every open WebSocket gets close 1001 after what is
    /// already queued, and the loop waits up to the drain timeout for the replies.
    fn begin_drain(&mut self, now: Instant, now_us: u64) {
        let wait = self.shared.cfg.drain_timeout;
        self.draining_until = Some(now + wait);
        let keys: Vec<ConnKey> = self
            .conns
            .iter()
            .map(|(token, c)| ConnKey { token, id: c.id })
            .collect();
        for key in keys {
            self.with_conn(key, now, now_us, |conn, ctx| conn.begin_shutdown(ctx, wait));
        }
        log::debug!(
            "shard {}: draining {} connections",
            self.id,
            self.conns.len()
        );
    }

    fn poll_timeout(&self, now: Instant, next_publish: Instant) -> Duration {
        if !self.shared.to_flush.is_empty() || !self.shared.to_read.is_empty() {
            return Duration::ZERO;
        }
        if self.shared.mixer.has_pending() {
            // The mixer's channel was full: try again soon without spinning.
            return Duration::from_millis(1);
        }
        let mut wake = next_publish;
        if let Some(t) = self.shared.timers.next_wakeup() {
            wake = wake.min(t);
        }
        if let Some(t) = self.draining_until {
            wake = wake.min(t);
        }
        wake.saturating_duration_since(now)
    }

    /// Announces sleep, re-checks for work that raced with the announcement, and polls.
    fn park_and_poll(&mut self, events: &mut Events, mut timeout: Duration) {
        if !timeout.is_zero() {
            self.parked.store(true, Ordering::SeqCst);
            fence(Ordering::SeqCst);
            if !self.queue.is_empty() || !self.intake.is_empty() {
                timeout = Duration::ZERO;
            }
        }
        loop {
            match self.poll.poll(events, Some(timeout)) {
                Ok(()) => break,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    // epoll_wait fails only on programming errors (EBADF, EINVAL); log and
                    // carry on rather than take every client down.
                    log::error!("shard {}: poll failed: {e}", self.id);
                    events.clear();
                    break;
                }
            }
        }
        self.parked.store(false, Ordering::SeqCst);
    }
}
