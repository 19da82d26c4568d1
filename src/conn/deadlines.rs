//! A connection's deadlines, all on one timer entry in the shard's wheel: the handshake and
//! closing timeouts, heartbeats (ping every `--ping-interval`, close 1001 after
//! `--idle-timeout` without a byte from the peer), and the end of an authenticated
//! connection's token (close 1008 at `exp`, on every route). The earliest is armed; when it fires, whatever is due is done
//! and the next one armed. Time comes in through [`ConnCtx`], so each rule is testable.

use std::time::Instant;

use super::{Conn, ConnCtx, State};
use crate::config::ServerConfig;
use crate::frame::{self, close_code};
use crate::metrics::HandshakeFailure;

impl Conn {
    /// Arms this connection's timer for its earliest deadline.
    pub fn arm_timer(&mut self, ctx: &mut ConnCtx<'_>) {
        if let Some(at) = self.next_deadline(ctx.cfg) {
            self.timer_tick = ctx.timers.schedule((ctx.token, self.id), at);
        }
    }

    /// Whether a fired wheel entry for `tick` is this connection's live one.
    pub fn is_live_timer(&self, tick: u64) -> bool {
        self.timer_tick == tick
    }

    fn next_deadline(&self, cfg: &ServerConfig) -> Option<Instant> {
        match self.state {
            State::Handshake { deadline, .. } | State::Closing { deadline, .. } => Some(deadline),
            State::Open(_, expires) => {
                let heartbeat =
                    (self.last_recv + cfg.idle_timeout).min(self.last_ping + cfg.ping_interval);
                Some(expires.map_or(heartbeat, |t| t.min(heartbeat)))
            }
            State::Closed => None,
        }
    }

    /// The timer fired: act on whatever deadline has passed, then re-arm.
    pub fn on_tick(&mut self, ctx: &mut ConnCtx<'_>) {
        let now = ctx.now;
        match self.state {
            State::Handshake { deadline, .. } if now >= deadline => {
                ctx.stats
                    .metrics
                    .count_handshake_failure(HandshakeFailure::Timeout);
                self.drop_now(ctx, None);
            }
            State::Closing { deadline, .. } if now >= deadline => self.drop_now(ctx, None),
            State::Open(_, Some(expires)) if now >= expires => {
                ctx.stats.token_expiries += 1;
                log::debug!("{}: token expired, closing", self.peer);
                self.close_ws(
                    ctx,
                    close_code::POLICY,
                    "token expired",
                    ctx.cfg.close_timeout,
                );
            }
            State::Open(..) if now >= self.last_recv + ctx.cfg.idle_timeout => {
                ctx.stats.idle_timeouts += 1;
                log::debug!("closing idle connection from {}", self.peer);
                self.close_ws(
                    ctx,
                    close_code::GOING_AWAY,
                    "idle timeout",
                    ctx.cfg.close_timeout,
                );
            }
            State::Open(..) if now >= self.last_ping + ctx.cfg.ping_interval => {
                self.last_ping = now;
                // Before the ping: an empty outbox left grown by a burst is given back.
                self.outbox.release_if_grown();
                self.push_control(ctx, frame::ping());
            }
            _ => {}
        }
        self.arm_timer(ctx);
    }
}
