//! A complete data message on an open WebSocket, by route: `/echo` sends it back as it came,
//! `/ws` takes it as one JSON operation (`session.rs`) and answers a binary message with an
//! error frame.
//!
//! Every message is charged to the connection's limits (`--publish-rate`,
//! `--publish-byte-rate`) before anything else, so an answer costs the client as much as an
//! action. On `/ws` a client flooding invalid JSON, unknown operations or binary frames is
//! refused with `rate_limited`, then closed with 1008 like one flooding publishes. `/echo`
//! answers each message with itself, under the outbox limit; it has no protocol to carry an
//! error frame, so its first message past the limits closes it with 1008.

use super::{Conn, ConnCtx};
use crate::frame::{self, close_code};
use crate::http::WsRoute;
use crate::protocol::{ClientError, ErrorCode};
use crate::ratelimit::Verdict;

impl Conn {
    /// A complete text message on an open WebSocket.
    pub(super) fn on_text(&mut self, ctx: &mut ConnCtx<'_>, route: WsRoute, text: &str) {
        if !self.charge_message(ctx, route, text.len()) {
            return;
        }
        match route {
            WsRoute::Echo => self.push_reply(ctx, frame::text(text)),
            WsRoute::Stream => self.on_op(ctx, text),
        }
    }

    /// A complete binary message on an open WebSocket.
    pub(super) fn on_binary(&mut self, ctx: &mut ConnCtx<'_>, route: WsRoute, data: &[u8]) {
        if !self.charge_message(ctx, route, data.len()) {
            return;
        }
        match route {
            WsRoute::Echo => self.push_reply(ctx, frame::binary(data)),
            WsRoute::Stream => {
                let e =
                    ClientError::new(ErrorCode::BinaryUnsupported, "/ws accepts JSON text only");
                self.send_error(ctx, &e);
            }
        }
    }

    /// Charges a message of `len` bytes to the connection's limits, before anything else is
    /// done with it, so that every message costs (errors included): true to go on; false
    /// when it was refused (on `/ws` answered `rate_limited`) or the connection closed for
    /// it (on `/ws` after persistent abuse, on `/echo` at once).
    fn charge_message(&mut self, ctx: &mut ConnCtx<'_>, route: WsRoute, len: usize) -> bool {
        let verdict = self
            .limits
            .take(ctx.cfg.message_rate(), ctx.cfg.byte_rate(), ctx.now, len);
        match (verdict, route) {
            (Verdict::Allow, _) => true,
            (Verdict::Refuse, WsRoute::Stream) => {
                let e = ClientError::new(ErrorCode::RateLimited, "too many messages or bytes");
                self.send_error(ctx, &e);
                false
            }
            (Verdict::Abuse, _) | (Verdict::Refuse, WsRoute::Echo) => {
                ctx.stats
                    .count_client_error(ErrorCode::RateLimited.as_str());
                log::info!("{}: closing for rate abuse on {route:?}", self.peer);
                self.close_ws(
                    ctx,
                    close_code::POLICY,
                    "rate limit exceeded",
                    ctx.cfg.close_timeout,
                );
                false
            }
        }
    }

    /// Sends an error frame to this connection and counts it.
    pub(super) fn send_error(&mut self, ctx: &mut ConnCtx<'_>, e: &ClientError) {
        ctx.stats.count_client_error(e.code.as_str());
        self.push_reply(ctx, e.frame());
    }
}
