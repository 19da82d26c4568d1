//! A connection's deadlines, all on one timer entry in the shard's wheel: the handshake and
//! closing timeouts, heartbeats (ping every `--ping-interval`, close 1001 after
//! `--idle-timeout` without a byte from the peer), the write stall (dropped after
//! `--write-timeout` without the socket taking a byte while the outbox holds some), and the
//! end of an authenticated connection's token (close 1008 at `exp`, on every route). The
//! earliest is armed; when it fires, whatever is due is done and the next one armed.
//!
//! The rules themselves are pure functions of the connection's state, its two timestamps
//! and the time passed in ([`next_deadline`], [`due`]), so they are tested below with a fake
//! clock and no socket; [`Conn::on_tick`] only carries out what they decide.

use std::time::Instant;

use super::{Conn, ConnCtx, NO_TIMER, State};
use crate::config::ServerConfig;
use crate::frame::{self, close_code};
use crate::messages::ConnKey;
use crate::metrics::HandshakeFailure;
use crate::timer::TimerWheel;

/// The times the heartbeat rules read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Heartbeat {
    /// Last time anything arrived from the peer (pongs included).
    pub last_recv: Instant,
    /// Last time a ping was sent.
    pub last_ping: Instant,
    /// Since when the socket has taken no byte while bytes wait.
    pub stalled_since: Option<Instant>,
}

/// What a connection's timer finds due at a given time, most urgent first.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Due {
    /// The request head did not complete in `--handshake-timeout`: drop.
    HandshakeTimeout,
    /// A closing connection's last bytes or its peer's close did not come in time: drop.
    CloseTimeout,
    /// The socket took no byte for `--write-timeout` while bytes waited: drop (a close
    /// frame could not be written either).
    WriteTimeout,
    /// The token's `exp` passed: close 1008.
    TokenExpired,
    /// Nothing from the peer for `--idle-timeout`: close 1001.
    Idle,
    /// `--ping-interval` since the last ping: send one.
    Ping,
    /// Nothing yet (an early or stale wake-up).
    Nothing,
}

/// The earliest instant at which something may be due, or `None` for a closed connection.
pub(super) fn next_deadline(state: State, hb: Heartbeat, cfg: &ServerConfig) -> Option<Instant> {
    match state {
        State::Handshake { deadline, .. } | State::Closing { deadline, .. } => Some(deadline),
        State::Open(_, expires) => {
            let mut at = (hb.last_recv + cfg.idle_timeout).min(hb.last_ping + cfg.ping_interval);
            if let Some(t) = expires {
                at = at.min(t);
            }
            if let Some(t) = hb.stalled_since {
                at = at.min(t + cfg.write_timeout);
            }
            Some(at)
        }
        State::Closed => None,
    }
}

/// What is due at `now`.
pub(super) fn due(state: State, hb: Heartbeat, now: Instant, cfg: &ServerConfig) -> Due {
    match state {
        State::Handshake { deadline, .. } if now >= deadline => Due::HandshakeTimeout,
        State::Closing { deadline, .. } if now >= deadline => Due::CloseTimeout,
        State::Open(..)
            if hb
                .stalled_since
                .is_some_and(|t| now >= t + cfg.write_timeout) =>
        {
            Due::WriteTimeout
        }
        State::Open(_, Some(expires)) if now >= expires => Due::TokenExpired,
        State::Open(..) if now >= hb.last_recv + cfg.idle_timeout => Due::Idle,
        State::Open(..) if now >= hb.last_ping + cfg.ping_interval => Due::Ping,
        _ => Due::Nothing,
    }
}

impl Conn {
    fn heartbeat(&self) -> Heartbeat {
        Heartbeat {
            last_recv: self.last_recv,
            last_ping: self.last_ping,
            stalled_since: self.stalled_since,
        }
    }

    /// Arms this connection's timer for its earliest deadline, in place of its entry if it
    /// has one (a closed connection keeps none).
    pub fn arm_timer(&mut self, ctx: &mut ConnCtx<'_>) {
        self.cancel_timer(ctx.timers, ctx.key);
        if let Some(at) = next_deadline(self.state, self.heartbeat(), ctx.cfg) {
            self.timer_tick = ctx.timers.schedule(ctx.key, at);
        }
    }

    /// Takes this connection's entry out of the wheel (before it goes, or is re-armed).
    pub fn cancel_timer(&mut self, timers: &mut TimerWheel<ConnKey>, key: ConnKey) {
        if self.timer_tick != NO_TIMER {
            timers.cancel(key, self.timer_tick);
            self.timer_tick = NO_TIMER;
        }
    }

    /// Brings the timer forward when the earliest deadline now falls before the armed entry
    /// (a new entry only then; the old one becomes stale).
    pub(super) fn arm_timer_if_earlier(&mut self, ctx: &mut ConnCtx<'_>) {
        if let Some(at) = next_deadline(self.state, self.heartbeat(), ctx.cfg)
            && ctx.timers.tick_of(at) < self.timer_tick
        {
            self.cancel_timer(ctx.timers, ctx.key);
            self.timer_tick = ctx.timers.schedule(ctx.key, at);
        }
    }

    /// Whether a fired wheel entry for `tick` is this connection's live one.
    pub fn is_live_timer(&self, tick: u64) -> bool {
        self.timer_tick == tick
    }

    /// The timer fired (its entry left the wheel): act on whatever deadline has passed, then
    /// re-arm.
    pub fn on_tick(&mut self, ctx: &mut ConnCtx<'_>) {
        self.timer_tick = NO_TIMER;
        match due(self.state, self.heartbeat(), ctx.now, ctx.cfg) {
            Due::HandshakeTimeout => {
                ctx.stats
                    .metrics
                    .count_handshake_failure(HandshakeFailure::Timeout);
                self.drop_now(ctx, None);
            }
            Due::CloseTimeout => self.abort(ctx, None),
            Due::WriteTimeout => {
                ctx.stats.write_timeouts += 1;
                // What it still had queued is lost with it, like a slow consumer's.
                ctx.stats.slow_consumer_drops += self.outbox.drop_unstarted() as u64;
                log::debug!("{}: socket took nothing for the write timeout", self.peer);
                self.abort(ctx, Some(close_code::ABNORMAL));
            }
            Due::TokenExpired => {
                ctx.stats.token_expiries += 1;
                log::debug!("{}: token expired, closing", self.peer);
                self.close_ws(
                    ctx,
                    close_code::POLICY,
                    "token expired",
                    ctx.cfg.close_timeout,
                );
            }
            Due::Idle => {
                ctx.stats.idle_timeouts += 1;
                log::debug!("closing idle connection from {}", self.peer);
                self.close_ws(
                    ctx,
                    close_code::GOING_AWAY,
                    "idle timeout",
                    ctx.cfg.close_timeout,
                );
            }
            Due::Ping => {
                self.last_ping = ctx.now;
                // Before the ping: an empty outbox left grown by a burst is given back.
                self.outbox.release_if_grown();
                self.push_control(ctx, frame::ping());
            }
            Due::Nothing => {}
        }
        self.arm_timer(ctx);
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::super::AfterFlush;
    use super::*;
    use crate::http::WsRoute;

    const S: Duration = Duration::from_secs(1);

    /// Settings with round numbers: handshake 5 s, ping 30 s, idle 75 s.
    fn cfg() -> ServerConfig {
        ServerConfig {
            handshake_timeout: 5 * S,
            ping_interval: 30 * S,
            idle_timeout: 75 * S,
            ..ServerConfig::default()
        }
    }

    /// A heartbeat where everything last happened at `t`, writes going through.
    fn quiet_since(t: Instant) -> Heartbeat {
        Heartbeat {
            last_recv: t,
            last_ping: t,
            stalled_since: None,
        }
    }

    #[test]
    fn a_handshake_is_given_up_at_its_deadline_never_before() {
        let t0 = Instant::now();
        let state = State::Handshake {
            deadline: t0 + 5 * S,
            accepted: t0,
        };
        let hb = quiet_since(t0);
        assert_eq!(next_deadline(state, hb, &cfg()), Some(t0 + 5 * S));
        assert_eq!(due(state, hb, t0 + 4 * S, &cfg()), Due::Nothing);
        assert_eq!(due(state, hb, t0 + 5 * S, &cfg()), Due::HandshakeTimeout);
        // Heartbeats do not apply before the upgrade, however long ago the last byte was.
        let old = quiet_since(t0 - 100 * S);
        assert_eq!(due(state, old, t0 + S, &cfg()), Due::Nothing);
    }

    #[test]
    fn a_closing_connection_is_dropped_at_its_deadline() {
        let t0 = Instant::now();
        let state = State::Closing {
            deadline: t0 + 2 * S,
            then: AfterFlush::AwaitPeer { shut: true },
        };
        let hb = quiet_since(t0 - 100 * S);
        assert_eq!(next_deadline(state, hb, &cfg()), Some(t0 + 2 * S));
        assert_eq!(
            due(state, hb, t0 + S, &cfg()),
            Due::Nothing,
            "no ping or idle"
        );
        assert_eq!(due(state, hb, t0 + 2 * S, &cfg()), Due::CloseTimeout);
    }

    #[test]
    fn an_open_connection_is_pinged_then_closed_when_idle() {
        let t0 = Instant::now();
        let state = State::Open(WsRoute::Stream, None);
        let mut hb = quiet_since(t0);
        assert_eq!(next_deadline(state, hb, &cfg()), Some(t0 + 30 * S));
        assert_eq!(due(state, hb, t0 + 29 * S, &cfg()), Due::Nothing);
        assert_eq!(due(state, hb, t0 + 30 * S, &cfg()), Due::Ping);
        // The ping went out at 30 s; the peer stays silent.
        hb.last_ping = t0 + 30 * S;
        assert_eq!(next_deadline(state, hb, &cfg()), Some(t0 + 60 * S));
        hb.last_ping = t0 + 60 * S;
        assert_eq!(
            next_deadline(state, hb, &cfg()),
            Some(t0 + 75 * S),
            "idle comes before the third ping"
        );
        assert_eq!(due(state, hb, t0 + 75 * S, &cfg()), Due::Idle);
    }

    #[test]
    fn anything_from_the_peer_postpones_the_idle_close() {
        let t0 = Instant::now();
        let state = State::Open(WsRoute::Echo, None);
        let hb = Heartbeat {
            last_recv: t0 + 70 * S,
            last_ping: t0 + 60 * S,
            stalled_since: None,
        };
        assert_eq!(due(state, hb, t0 + 75 * S, &cfg()), Due::Nothing);
        assert_eq!(next_deadline(state, hb, &cfg()), Some(t0 + 90 * S));
        assert_eq!(due(state, hb, t0 + 90 * S, &cfg()), Due::Ping);
        assert_eq!(due(state, hb, t0 + 145 * S, &cfg()), Due::Idle);
    }

    #[test]
    fn a_token_ends_the_connection_at_its_expiry_before_any_heartbeat() {
        let t0 = Instant::now();
        let state = State::Open(WsRoute::Stream, Some(t0 + 10 * S));
        let hb = quiet_since(t0);
        assert_eq!(next_deadline(state, hb, &cfg()), Some(t0 + 10 * S));
        assert_eq!(due(state, hb, t0 + 9 * S, &cfg()), Due::Nothing);
        assert_eq!(due(state, hb, t0 + 10 * S, &cfg()), Due::TokenExpired);
        // Expired and idle at once: the expiry is what the client is told.
        assert_eq!(due(state, hb, t0 + 80 * S, &cfg()), Due::TokenExpired);
        // A token that outlives the heartbeats does not delay them.
        let late = State::Open(WsRoute::Stream, Some(t0 + 1000 * S));
        assert_eq!(next_deadline(late, hb, &cfg()), Some(t0 + 30 * S));
    }

    #[test]
    fn a_socket_that_takes_nothing_is_dropped_at_the_write_timeout() {
        let t0 = Instant::now();
        let state = State::Open(WsRoute::Stream, None);
        // The peer still sends (pongs), so it is not idle, but takes none of our bytes.
        let hb = Heartbeat {
            last_recv: t0 + 9 * S,
            last_ping: t0,
            stalled_since: Some(t0 + S),
        };
        assert_eq!(next_deadline(state, hb, &cfg()), Some(t0 + 11 * S));
        assert_eq!(due(state, hb, t0 + 10 * S, &cfg()), Due::Nothing);
        assert_eq!(due(state, hb, t0 + 11 * S, &cfg()), Due::WriteTimeout);
        // Before a token's expiry or an idle close: the socket cannot take a close frame.
        let expiring = State::Open(WsRoute::Stream, Some(t0 + 5 * S));
        assert_eq!(due(expiring, hb, t0 + 80 * S, &cfg()), Due::WriteTimeout);
        // A closing connection is bounded by its own deadline instead.
        let closing = State::Closing {
            deadline: t0 + 20 * S,
            then: AfterFlush::Linger { shut: false },
        };
        assert_eq!(due(closing, hb, t0 + 11 * S, &cfg()), Due::Nothing);
    }

    #[test]
    fn a_closed_connection_has_no_deadline() {
        let t0 = Instant::now();
        assert_eq!(next_deadline(State::Closed, quiet_since(t0), &cfg()), None);
        assert_eq!(
            due(State::Closed, quiet_since(t0), t0 + 1000 * S, &cfg()),
            Due::Nothing
        );
    }
}
