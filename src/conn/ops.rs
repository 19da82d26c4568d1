//! What a connection does with a complete request or message: the HTTP answer or upgrade,
//! and, once open, each route's handling of data messages (`/ws` operations, `/echo`).
//!
//! Everything here answers this connection only; anything meant for other clients goes
//! through the mixer.

use std::sync::Arc;

use super::{Conn, ConnCtx, HeadOutcome, State};
use crate::http::{self, ParseError, Request, Target, WsRoute};
use crate::metrics;
use crate::protocol::{self, ClientError, ClientOp, ErrorCode};
use crate::shard::WILDCARD;

impl Conn {
    /// Tries to parse the request head from `buf` and acts on it when complete.
    pub(super) fn on_request_bytes(&mut self, ctx: &mut ConnCtx<'_>, buf: &[u8]) -> HeadOutcome {
        match http::parse_request(buf, ctx.cfg.max_header) {
            Ok(None) => HeadOutcome::Incomplete,
            Ok(Some((req, used))) => {
                if self.on_request(ctx, &req) {
                    HeadOutcome::Upgraded(used)
                } else {
                    HeadOutcome::Answered
                }
            }
            Err(ParseError::TooLarge) => {
                self.reject(
                    ctx,
                    431,
                    "header_too_large",
                    "request header block too large\n",
                );
                HeadOutcome::Answered
            }
            Err(ParseError::Malformed) => {
                self.reject(ctx, 400, "malformed", "malformed HTTP request\n");
                HeadOutcome::Answered
            }
        }
    }

    /// Routes a complete request. Returns true when the connection became a WebSocket.
    fn on_request(&mut self, ctx: &mut ConnCtx<'_>, req: &Request) -> bool {
        match http::route(req) {
            Target::Upgrade { route, accept } => {
                let topics = match route {
                    WsRoute::Stream => match requested_topics(req, ctx.cfg.max_topics_per_conn) {
                        Ok(topics) => topics,
                        Err(e) => {
                            ctx.stats.metrics.count_handshake_failure("bad_topics");
                            let body = format!("{}\n", e.message);
                            self.answer(
                                ctx,
                                http::response(400, "text/plain", body.as_bytes(), &[]),
                            );
                            return false;
                        }
                    },
                    WsRoute::Echo => Vec::new(),
                };
                self.outbox
                    .push(Arc::from(http::switching_protocols(&accept)), 0);
                self.want_flush(ctx);
                self.state = State::Open(route);
                self.last_recv = ctx.now;
                self.last_ping = ctx.now;
                ctx.stats.handshakes += 1;
                if route == WsRoute::Stream {
                    self.join_topics(ctx, &topics);
                    self.push_reply(ctx, protocol::welcome_frame(ctx.stats.shard, &self.topics));
                }
                self.arm_timer(ctx);
                true
            }
            Target::Healthz => {
                self.answer(ctx, http::response(200, "text/plain", b"ok\n", &[]));
                false
            }
            Target::Dashboard => {
                let page = crate::dashboard::PAGE.as_bytes();
                self.answer(
                    ctx,
                    http::response(200, crate::dashboard::CONTENT_TYPE, page, &[]),
                );
                false
            }
            Target::Metrics => {
                let body = ctx.stats.metrics.render();
                self.answer(
                    ctx,
                    http::response(200, metrics::CONTENT_TYPE, body.as_bytes(), &[]),
                );
                false
            }
            Target::Reject {
                status,
                reason,
                message,
            } => {
                self.reject(ctx, status, reason, message);
                false
            }
        }
    }

    /// Answers with an error status and counts the reason.
    fn reject(&mut self, ctx: &mut ConnCtx<'_>, status: u16, reason: &'static str, message: &str) {
        ctx.stats.metrics.count_handshake_failure(reason);
        log::debug!("{}: HTTP {status} ({reason})", self.peer);
        let response = http::response(
            status,
            "text/plain",
            message.as_bytes(),
            http::reject_headers(status),
        );
        self.answer(ctx, response);
    }

    /// Queues a complete HTTP response; the connection closes once it is written.
    fn answer(&mut self, ctx: &mut ConnCtx<'_>, response: Vec<u8>) {
        self.outbox.push(Arc::from(response), 0);
        self.want_flush(ctx);
        let deadline = ctx.now + ctx.cfg.close_timeout;
        self.state = State::Closing {
            deadline,
            then: super::AfterFlush::Drop,
        };
        self.arm_timer(ctx);
    }

    /// A complete text message on an open WebSocket.
    pub(super) fn on_text(&mut self, ctx: &mut ConnCtx<'_>, route: WsRoute, text: &str) {
        match route {
            WsRoute::Echo => self.push_reply(ctx, crate::frame::text(text)),
            WsRoute::Stream => {
                let result = protocol::parse_op(text).and_then(|op| match op {
                    ClientOp::Subscribe(names) => self.subscribe(ctx, names),
                    ClientOp::Unsubscribe(names) => self.unsubscribe(ctx, names),
                });
                if let Err(e) = result {
                    self.send_error(ctx, &e);
                }
            }
        }
    }

    /// A complete binary message on an open WebSocket.
    pub(super) fn on_binary(&mut self, ctx: &mut ConnCtx<'_>, route: WsRoute, data: &[u8]) {
        match route {
            WsRoute::Echo => self.push_reply(ctx, crate::frame::binary(data)),
            WsRoute::Stream => {
                let e =
                    ClientError::new(ErrorCode::BinaryUnsupported, "/ws accepts JSON text only");
                self.send_error(ctx, &e);
            }
        }
    }

    fn send_error(&mut self, ctx: &mut ConnCtx<'_>, e: &ClientError) {
        ctx.stats.count_client_error(e.code.as_str());
        self.push_reply(ctx, e.frame());
    }

    /// `{"op":"subscribe"}`: all names are checked before any takes effect.
    fn subscribe(&mut self, ctx: &mut ConnCtx<'_>, names: Vec<String>) -> Result<(), ClientError> {
        check_topics(&names, ctx.cfg.max_topics_per_conn)?;
        let wildcard = names.iter().any(|n| n == WILDCARD);
        let has_wildcard = self.has_wildcard();
        if wildcard && !has_wildcard {
            // `*` replaces every named topic.
            self.leave_topics(ctx);
            self.join_topics(ctx, &[WILDCARD.to_string()]);
        } else if !has_wildcard {
            let mut new: Vec<String> = names
                .iter()
                .filter(|n| !self.topics.iter().any(|t| &**t == n.as_str()))
                .cloned()
                .collect();
            dedup_in_order(&mut new);
            if self.topics.len() + new.len() > ctx.cfg.max_topics_per_conn {
                return Err(ClientError::new(
                    ErrorCode::TooManyTopics,
                    format!(
                        "at most {} topics per connection",
                        ctx.cfg.max_topics_per_conn
                    ),
                ));
            }
            self.join_topics(ctx, &new);
        }
        self.push_reply(ctx, protocol::ack_frame("subscribed", &names));
        Ok(())
    }

    /// `{"op":"unsubscribe"}`: unknown names are ignored; named topics under `*` are refused.
    fn unsubscribe(
        &mut self,
        ctx: &mut ConnCtx<'_>,
        names: Vec<String>,
    ) -> Result<(), ClientError> {
        check_topics(&names, usize::MAX)?;
        if self.has_wildcard() && names.iter().any(|n| n != WILDCARD) {
            return Err(ClientError::new(
                ErrorCode::WildcardActive,
                "subscribed to every topic (`*`): unsubscribe `*` first",
            ));
        }
        for name in &names {
            if let Some(i) = self.topics.iter().position(|t| &**t == name.as_str()) {
                let topic = self.topics.swap_remove(i);
                ctx.subs.unsubscribe(&topic, ctx.token);
            }
        }
        self.push_reply(ctx, protocol::ack_frame("unsubscribed", &names));
        Ok(())
    }

    fn has_wildcard(&self) -> bool {
        self.topics.iter().any(|t| &**t == WILDCARD)
    }

    /// Adds topics (already validated and new) to this connection and the shard's index.
    fn join_topics(&mut self, ctx: &mut ConnCtx<'_>, names: &[String]) {
        for name in names {
            let topic = ctx.subs.subscribe(name, ctx.token);
            self.topics.push(topic);
        }
    }
}

/// Validates a list of topic names against the per-connection limit.
fn check_topics(names: &[String], max: usize) -> Result<(), ClientError> {
    if names.len() > max {
        return Err(ClientError::new(
            ErrorCode::TooManyTopics,
            format!("at most {max} topics per connection"),
        ));
    }
    names.iter().try_for_each(|n| protocol::validate_topic(n))
}

/// The topics asked for at connect time: `?topics=a,b` (default: every topic, `*`).
fn requested_topics(req: &Request, max: usize) -> Result<Vec<String>, ClientError> {
    let mut names = match req.query_param("topics") {
        Some(list) => protocol::split_topics(&list),
        None => vec![WILDCARD.to_string()],
    };
    if names.is_empty() {
        names.push(WILDCARD.to_string());
    }
    check_topics(&names, max)?;
    dedup_in_order(&mut names);
    if names.iter().any(|n| n == WILDCARD) {
        names = vec![WILDCARD.to_string()];
    }
    Ok(names)
}

/// Removes repeated names, keeping the first occurrence of each (lists are short: ≤ max topics).
fn dedup_in_order(names: &mut Vec<String>) {
    let mut seen = 0;
    for i in 0..names.len() {
        if !names[..seen].contains(&names[i]) {
            names.swap(seen, i);
            seen += 1;
        }
    }
    names.truncate(seen);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dedup_keeps_first_occurrences_in_order() {
        let mut v: Vec<String> = ["b", "a", "b", "c", "a"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        dedup_in_order(&mut v);
        assert_eq!(v, ["b", "a", "c"]);
    }
}
