//! A complete data message on an open WebSocket, by route: `/echo` sends it back as it came,
//! `/ws` takes it as one JSON operation (`session.rs`) and answers a binary message with an
//! error frame.
//!
//! On `/ws` every message is charged to the connection's limits before anything else, so
//! an answer costs the client as much as an action: a client flooding invalid JSON, unknown
//! operations or binary frames is refused with `rate_limited`, then closed with 1008 like
//! one flooding publishes. `/echo` answers each message with itself, under the outbox limit.

use super::{Conn, ConnCtx};
use crate::frame;
use crate::http::WsRoute;
use crate::protocol::{ClientError, ErrorCode};

impl Conn {
    /// A complete text message on an open WebSocket.
    pub(super) fn on_text(&mut self, ctx: &mut ConnCtx<'_>, route: WsRoute, text: &str) {
        match route {
            WsRoute::Echo => self.push_reply(ctx, frame::text(text)),
            WsRoute::Stream => {
                if self.charge_message(ctx, text.len()) {
                    self.on_op(ctx, text);
                }
            }
        }
    }

    /// A complete binary message on an open WebSocket.
    pub(super) fn on_binary(&mut self, ctx: &mut ConnCtx<'_>, route: WsRoute, data: &[u8]) {
        match route {
            WsRoute::Echo => self.push_reply(ctx, frame::binary(data)),
            WsRoute::Stream => {
                if self.charge_message(ctx, data.len()) {
                    let e = ClientError::new(
                        ErrorCode::BinaryUnsupported,
                        "/ws accepts JSON text only",
                    );
                    self.send_error(ctx, &e);
                }
            }
        }
    }

    /// Sends an error frame to this connection and counts it.
    pub(super) fn send_error(&mut self, ctx: &mut ConnCtx<'_>, e: &ClientError) {
        ctx.stats.count_client_error(e.code.as_str());
        self.push_reply(ctx, e.frame());
    }
}
