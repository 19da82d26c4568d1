//! The write side of a connection: offering frames under the outbox limit, the one
//! vectored write per turn, poll interest while bytes remain, and what follows a drained
//! outbox on a closing connection.

use mio::{Interest, Token};

use super::{AfterFlush, Conn, ConnCtx, FanOut, Offer, OutFrame, State, WriteStatus};
use crate::config::SlowPolicy;
use crate::frame::{FrameBytes, close_code};
use crate::messages::ConnKey;

/// Bytes of control frames (ping, pong, a resume's reset notice) an outbox may hold past
/// `--outbox-limit`, so that one is not lost behind queued data: room for 30 of the largest
/// (a control frame is at most 129 bytes on the wire, plus its entry).
const CONTROL_ALLOWANCE: usize = 4096;

impl Conn {
    /// Offers a frame for this connection's outbox: queued by reference, or refused when it
    /// would pass the outbox limit (dropped under `drop`, reported under `disconnect`).
    #[inline]
    pub fn offer(
        &mut self,
        token: usize,
        frame: &FrameBytes,
        stamp_us: u64,
        out: &mut FanOut<'_>,
    ) -> Offer {
        let entry = OutFrame::One {
            bytes: frame.clone(),
            stamp_us,
        };
        self.offer_owned(token, entry, out)
    }

    /// [`Conn::offer`] with an entry (a frame or a run of frames) whose reference the caller
    /// already took (a broadcast walk takes them all at once, see `Shard::fan_out`).
    #[inline]
    pub fn offer_owned(&mut self, token: usize, entry: OutFrame, out: &mut FanOut<'_>) -> Offer {
        if self
            .outbox
            .would_exceed(entry.bytes().len(), out.cfg.outbox_limit)
        {
            return match out.cfg.slow_policy {
                SlowPolicy::Drop => {
                    out.stats.outbox_drops += entry.frames() as u64;
                    Offer::Dropped
                }
                SlowPolicy::Disconnect => {
                    out.stats.slow_consumer_drops += entry.frames() as u64;
                    Offer::OverLimit
                }
            };
        }
        self.outbox.push_entry(entry);
        if !self.queued_for_flush {
            self.queued_for_flush = true;
            out.to_flush.push(ConnKey { token, id: self.id });
        }
        Offer::Queued
    }
    /// Closes a connection that could not keep up: frames not yet started are dropped
    /// (counted as `slow_consumer` drops, like the one it was refused) and close 1008
    /// "slow consumer" follows what is already on its way.
    pub fn close_slow_consumer(&mut self, ctx: &mut ConnCtx<'_>) {
        if !matches!(self.state, State::Open(..)) {
            return;
        }
        ctx.stats.slow_disconnects += 1;
        log::debug!("{}: slow consumer, closing", self.peer);
        ctx.stats.slow_consumer_drops += self.outbox.drop_unstarted() as u64;
        self.close_ws(
            ctx,
            close_code::POLICY,
            "slow consumer",
            ctx.cfg.close_timeout,
        );
    }
    /// Queues a reply meant for this connection only (acknowledgements, errors, echoes),
    /// under the same limit and policy as broadcasts.
    pub(super) fn push_reply(&mut self, ctx: &mut ConnCtx<'_>, frame: FrameBytes) {
        let mut out = FanOut {
            cfg: ctx.cfg,
            stats: ctx.stats,
            to_flush: ctx.to_flush,
        };
        if self.offer(ctx.key.token, &frame, 0, &mut out) == Offer::OverLimit {
            self.close_slow_consumer(ctx);
        }
    }
    /// Queues a small control frame, allowed up to [`CONTROL_ALLOWANCE`] bytes past the
    /// outbox limit so that it is not lost behind queued data. Past that it is dropped and
    /// counted (`tickcast_drops_total{reason="control_frame"}`): a peer that reads nothing
    /// while it keeps pinging cannot grow its outbox.
    pub(super) fn push_control(&mut self, ctx: &mut ConnCtx<'_>, frame: FrameBytes) {
        if self
            .outbox
            .would_exceed(frame.len(), ctx.cfg.outbox_limit + CONTROL_ALLOWANCE)
        {
            ctx.stats.control_drops += 1;
            log::debug!("{}: outbox full, control frame dropped", self.peer);
            return;
        }
        self.outbox.push(frame, 0);
        self.want_flush(ctx);
    }
    pub(super) fn want_flush(&mut self, ctx: &mut ConnCtx<'_>) {
        if !self.queued_for_flush {
            self.queued_for_flush = true;
            ctx.to_flush.push(ctx.key);
        }
    }
    /// A WRITABLE edge: the socket has room again, write at the end of this turn.
    pub fn mark_for_flush(&mut self, ctx: &mut ConnCtx<'_>) {
        if !self.outbox.is_empty() || self.stream.wants_write() {
            self.want_flush(ctx);
        }
    }
    /// Writes what is pending, within the per-turn budget, and updates poll interest.
    pub fn flush(&mut self, ctx: &mut ConnCtx<'_>) {
        self.queued_for_flush = false;
        if self.is_closed() {
            return;
        }
        let (stats, now_us) = (&mut *ctx.stats, ctx.now_us);
        let result = self
            .outbox
            .write_to(&mut self.stream, ctx.cfg.write_budget, |f| {
                for &stamp_us in f.stamps() {
                    stats.record_delivery(stamp_us, now_us);
                }
            });
        let (status, written) = match result {
            Ok((status, written)) => {
                ctx.stats.bytes += written as u64;
                (status, written)
            }
            Err(_) => return self.drop_now(ctx, Some(close_code::ABNORMAL)),
        };
        match status {
            // Everything reached the transport; on TLS, records may still wait for the socket.
            WriteStatus::Drained => match self.stream.flush_pending() {
                Ok(true) => {
                    self.stalled_since = None;
                    self.set_writable_interest(ctx, false);
                    self.after_drained(ctx);
                }
                Ok(false) => {
                    self.note_blocked(ctx, written > 0);
                    self.set_writable_interest(ctx, true);
                }
                Err(_) => self.drop_now(ctx, Some(close_code::ABNORMAL)),
            },
            WriteStatus::Blocked => {
                self.note_blocked(ctx, written > 0);
                self.set_writable_interest(ctx, true);
            }
            WriteStatus::BudgetSpent => {
                self.stalled_since = None;
                self.want_flush(ctx);
            }
        }
    }
    /// A write ended with bytes left and the socket full. The write-stall clock starts now
    /// if it was not running or the socket took bytes this time (then it is slow, not
    /// stalled). When it starts, the timer is brought forward if the stall's deadline comes
    /// before the armed one; later moves of the clock only push the deadline back, which the
    /// timer finds out when it fires, so a busy socket adds no timer entries.
    fn note_blocked(&mut self, ctx: &mut ConnCtx<'_>, progressed: bool) {
        let started = self.stalled_since.is_none();
        if started || progressed {
            self.stalled_since = Some(ctx.now);
        }
        if started {
            self.arm_timer_if_earlier(ctx);
        }
    }

    fn set_writable_interest(&mut self, ctx: &mut ConnCtx<'_>, writable: bool) {
        if self.writable_registered == writable {
            return;
        }
        let interest = if writable {
            Interest::READABLE | Interest::WRITABLE
        } else {
            Interest::READABLE
        };
        match self
            .stream
            .reregister(ctx.registry, Token(ctx.key.token), interest)
        {
            Ok(()) => self.writable_registered = writable,
            Err(_) => self.drop_now(ctx, Some(close_code::ABNORMAL)),
        }
    }
    /// The outbox is empty: a closing connection shuts its write side (FIN after its last
    /// bytes; on TLS a `close_notify` before it) and goes on reading until the peer's EOF (or
    /// its close frame, or the deadline).
    pub(super) fn after_drained(&mut self, ctx: &mut ConnCtx<'_>) {
        let State::Closing { deadline, then } = self.state else {
            return;
        };
        let then = match then {
            AfterFlush::Linger { shut: false } => AfterFlush::Linger { shut: true },
            AfterFlush::AwaitPeer { shut: false } => AfterFlush::AwaitPeer { shut: true },
            AfterFlush::Linger { shut: true } | AfterFlush::AwaitPeer { shut: true } => return,
        };
        match self.stream.shutdown_write() {
            Ok(true) => self.state = State::Closing { deadline, then },
            // The close_notify waits for room: the WRITABLE edge brings the flush back here.
            Ok(false) => self.set_writable_interest(ctx, true),
            // Not connected any more: nothing to wait for.
            Err(_) => self.drop_now(ctx, None),
        }
    }
}
