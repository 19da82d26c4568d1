//! The HTTP side of a connection: parsing its request head, and what it does with a complete
//! request: a plain answer (`/healthz`, `/metrics`, the dashboard), a precise error status,
//! or the WebSocket upgrade with everything checked first (Origin, token, connection caps,
//! client id, topics), then the 101 and, on `/ws`, the welcome and the requested topics.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use super::session::{self, Client, Session};
use super::{Conn, ConnCtx, HeadOutcome, State};
use crate::admission::Refusal;
use crate::auth::{self, Rights};
use crate::deflate::{self, Agreement};
use crate::edge::forwarded::{self, ForwardedHeader};
use crate::http::{self, ParseError, Request, Target, WsRoute};
use crate::metrics::{self, HandshakeFailure};
use crate::protocol::{self, ClientError, ErrorCode, replies};

/// An upgrade refused after routing: status, counted reason, body.
type Refused = (u16, HandshakeFailure, String);

/// What an upgrade that passed every check carries into the open connection.
struct Admitted {
    /// The `/ws` session (none on `/echo`).
    session: Option<Box<Session>>,
    /// When the connection's token expires (none without authentication).
    expires: Option<Instant>,
    /// `?batch=1`: runs of messages as one newline-delimited message.
    batch: bool,
}

impl Conn {
    /// Tries to parse the request head from `buf` and acts on it when complete.
    pub(super) fn on_request_bytes(&mut self, ctx: &mut ConnCtx<'_>, buf: &[u8]) -> HeadOutcome {
        if ctx.cfg.proxy_protocol && super::read::is_proxy_header(buf) {
            // A trusted proxy's header was taken before this; this peer is not one.
            self.refuse_untrusted_proxy(ctx);
            return HeadOutcome::Answered;
        }
        match http::parse_request(buf, ctx.cfg.max_header) {
            Ok(None) => HeadOutcome::Incomplete,
            Ok(Some((req, used))) => {
                // The head is complete: the client's part of the handshake ends here.
                let complete = Instant::now();
                if self.on_request(ctx, &req, complete) {
                    HeadOutcome::Upgraded(used)
                } else {
                    HeadOutcome::Answered
                }
            }
            Err(ParseError::TooLarge) => {
                self.reject(
                    ctx,
                    431,
                    HandshakeFailure::HeaderTooLarge,
                    "request header block too large\n",
                );
                HeadOutcome::Answered
            }
            Err(ParseError::Malformed) => {
                self.reject(
                    ctx,
                    400,
                    HandshakeFailure::Malformed,
                    "malformed HTTP request\n",
                );
                HeadOutcome::Answered
            }
        }
    }

    /// Routes a complete request. Returns true when the connection became a WebSocket.
    fn on_request(&mut self, ctx: &mut ConnCtx<'_>, req: &Request, complete: Instant) -> bool {
        self.believe_forwarding(ctx, req);
        // HEAD gets GET's head, `Content-Length` included, and no body.
        let head = req.method == "HEAD";
        let plain = |status, content_type: &str, body: &[u8], extra: &[(&str, &str)]| {
            if head {
                http::response_head(status, content_type, body, extra)
            } else {
                http::response(status, content_type, body, extra)
            }
        };
        match http::route(req) {
            Target::Upgrade { route, accept } => match self.admit(ctx, req, route) {
                Ok(Admitted {
                    session,
                    expires,
                    batch,
                }) => {
                    self.deflate = agree_deflate(ctx, req);
                    self.batch = batch;
                    self.open(ctx, route, expires, &accept, session, complete);
                    true
                }
                Err((status, reason, message)) => {
                    self.reject(ctx, status, reason, &message);
                    false
                }
            },
            Target::Healthz => {
                // Still 200 while Redis is away: the node serves its local streams, so a load
                // balancer should keep it; the body tells operators what is missing.
                let degraded = ctx.services.bus.as_ref().is_some_and(|b| !b.healthy());
                let body: &[u8] = if degraded {
                    b"degraded: redis\n"
                } else {
                    b"ok\n"
                };
                self.answer(ctx, plain(200, "text/plain", body, &[]));
                false
            }
            Target::Dashboard => {
                let page = crate::dashboard::page(ctx.services.verifier.is_some());
                self.answer(
                    ctx,
                    plain(200, crate::dashboard::CONTENT_TYPE, page.as_bytes(), &[]),
                );
                false
            }
            Target::Metrics if ctx.cfg.metrics_listen.is_some() => {
                // Served on `--metrics-listen` only: the public port does not know it.
                self.reject(ctx, 404, HandshakeFailure::NotFound, "no such path\n");
                false
            }
            Target::Metrics => {
                // The scrape's own connection is not one `tickcast_connections` counts.
                self.mark_answered(ctx);
                ctx.stats.set_connections(ctx.open);
                let body = ctx.stats.metrics.render();
                self.answer(ctx, plain(200, metrics::CONTENT_TYPE, body.as_bytes(), &[]));
                false
            }
            Target::Reject {
                status,
                reason,
                message,
            } if head => {
                ctx.stats.metrics.count_handshake_failure(reason);
                let extra = http::reject_headers(status);
                self.answer(ctx, plain(status, "text/plain", message.as_bytes(), extra));
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

    /// From a trusted proxy, the forwarding header the operator named (`--forwarded-header`)
    /// names the client: the right-most address of the chain that is not a trusted proxy
    /// becomes the peer (its port is unknown: 0). The other header, and both headers from
    /// any other peer, are ignored.
    fn believe_forwarding(&mut self, ctx: &mut ConnCtx<'_>, req: &Request) {
        let trusted = &ctx.cfg.trusted_proxies;
        let header = ctx.cfg.forwarded_header;
        let chain = match header {
            ForwardedHeader::XForwardedFor => req.x_forwarded_for.as_deref(),
            ForwardedHeader::Forwarded => req.forwarded.as_deref(),
        };
        if chain.is_none() || !trusted.contains(self.peer.ip()) {
            return;
        }
        let client = forwarded::client_address(trusted, self.peer.ip(), header, chain);
        if client != self.peer.ip() {
            log::debug!("{}: forwarded for {client}", self.peer);
            self.peer = SocketAddr::new(client, 0);
            ctx.stats.metrics.tls.forwarded.inc();
        }
    }

    /// Every check an upgrade must pass, in the order of the statuses' precedence.
    fn admit(
        &mut self,
        ctx: &mut ConnCtx<'_>,
        req: &Request,
        route: WsRoute,
    ) -> Result<Admitted, Refused> {
        if route == WsRoute::Echo && !ctx.cfg.echo {
            // `--echo off`: the path does not exist.
            return Err((404, HandshakeFailure::NotFound, "no such path\n".into()));
        }
        if !auth::origin_allowed(&ctx.cfg.allowed_origins, req.origin.as_deref()) {
            return Err((
                403,
                HandshakeFailure::OriginForbidden,
                "origin not allowed\n".into(),
            ));
        }
        let query_token = req.query_param("token");
        let identity = match &ctx.services.verifier {
            Some(verifier) => {
                let token = auth::token_of(query_token.as_deref(), req.authorization.as_deref());
                match verifier.verify(token) {
                    Ok((sub, rights)) => Some((sub, rights)),
                    Err(e) => {
                        // Only a correctly signed token reaches these two: an issuer's
                        // mistake worth an operator's eye, not a flood an attacker can cause.
                        if matches!(e, auth::AuthError::TooLong | auth::AuthError::NotYetValid) {
                            log::info!("{}: token refused: {}", self.peer, e.message().trim_end());
                        }
                        return Err((401, e.reason(), e.message().into()));
                    }
                }
            }
            None => None,
        };
        let expires = identity
            .as_ref()
            .and_then(|(_, rights)| rights.expires_at())
            .and_then(|exp| session::expiry_instant(exp, ctx.now, ctx.now_us));
        let batch = match req.query_param("batch").as_deref() {
            None | Some("0") => false,
            Some("1") => route == WsRoute::Stream,
            Some(_) => {
                return Err((
                    400,
                    HandshakeFailure::BadBatch,
                    "batch must be 0 or 1\n".into(),
                ));
            }
        };
        let session = if route == WsRoute::Stream {
            let session = self
                .new_session(ctx, req, identity)
                .map_err(|e| refusal(&e))?;
            Some(Box::new(session))
        } else {
            None
        };
        match ctx.services.admission.admit(self.peer.ip()) {
            Ok(ticket) => {
                // Counted as open from here on; no longer as pending.
                self.ticket = Some(ticket);
                self.pending = None;
            }
            Err(Refusal::ServerFull) => {
                return Err((
                    503,
                    HandshakeFailure::ServerFull,
                    "too many connections\n".into(),
                ));
            }
            Err(Refusal::AddressFull) => {
                return Err((
                    429,
                    HandshakeFailure::AddressFull,
                    "too many connections from this address\n".into(),
                ));
            }
        }
        Ok(Admitted {
            session,
            expires,
            batch,
        })
    }

    /// The `/ws` session an upgrade asks for: identity, rights, topics and resumes.
    fn new_session(
        &self,
        ctx: &mut ConnCtx<'_>,
        req: &Request,
        identity: Option<(String, Rights)>,
    ) -> Result<Session, ClientError> {
        let (client_id, rights) = match identity {
            Some((sub, rights)) => (sub, rights),
            None => {
                let id = match req.query_param("client_id") {
                    Some(id) => {
                        protocol::validate_client_id(&id)?;
                        id
                    }
                    None => format!("c-{:012x}", fastrand::u64(..) >> 16),
                };
                (id, Rights::all())
            }
        };
        // List parameters may be repeated: every occurrence counts, as if joined by commas
        // (`?room=a&room=b` joins both, within `--max-topics`).
        let mut since = Vec::new();
        for v in req.query_values("since") {
            since.extend(protocol::parse_since(&v)?);
        }
        let mut names: Vec<String> = Vec::new();
        let mut explicit = false;
        for list in req.query_values("topics").chain(req.query_values("room")) {
            explicit = true;
            names.extend(protocol::split_topics(&list));
        }
        // `*` by default only when the request names nothing at all: a `since` names the
        // topics it resumes, and those are what the client gets.
        if !explicit && since.is_empty() && rights.may_subscribe(crate::protocol::WILDCARD) {
            names.push(crate::protocol::WILDCARD.to_string());
        }
        names.retain(|n| !since.iter().any(|(t, _)| t == n));
        let client = Client {
            id: Arc::from(client_id.as_str()),
            nick: None,
            rights,
        };
        Session::prepare(client, names, since, ctx.cfg.max_topics_per_conn)
    }

    /// Completes the upgrade: 101, then (on `/ws`) the welcome, topics and resumes.
    fn open(
        &mut self,
        ctx: &mut ConnCtx<'_>,
        route: WsRoute,
        expires: Option<Instant>,
        accept: &str,
        session: Option<Box<Session>>,
        complete: Instant,
    ) {
        let extensions = self.deflate.then_some(deflate::RESPONSE);
        self.outbox
            .push(Arc::from(http::switching_protocols(accept, extensions)), 0);
        self.want_flush(ctx);
        ctx.to_answer.push(ctx.key);
        if let State::Handshake { accepted, .. } = self.state {
            // The client's part (accept -> complete head) and the server's (head -> 101
            // queued; it is written right after this, in the same pass: `to_answer`).
            ctx.stats.record_handshake(
                complete.saturating_duration_since(accepted),
                complete.elapsed(),
            );
        }
        self.state = State::Open(route, expires);
        self.last_recv = ctx.now;
        self.last_ping = ctx.now;
        ctx.stats.handshakes += 1;
        if let Some(mut session) = session {
            let (names, since) = session.take_requested();
            let topics: Vec<&str> = names
                .iter()
                .map(String::as_str)
                .chain(since.iter().map(|(t, _)| t.as_str()))
                .collect();
            let welcome = replies::welcome_frame(ctx.stats.shard, &session.client.id, &topics);
            self.session = Some(session);
            self.push_reply(ctx, welcome);
            self.join_topics(ctx, &names);
            if names.iter().any(|n| n == protocol::WILDCARD) {
                self.add_wildcard(ctx);
            }
            if !since.is_empty() {
                self.request_resume(ctx, since);
            }
        }
        self.arm_timer(ctx);
    }

    /// Answers with an error status and counts the reason.
    pub(super) fn reject(
        &mut self,
        ctx: &mut ConnCtx<'_>,
        status: u16,
        reason: HandshakeFailure,
        message: &str,
    ) {
        ctx.stats.metrics.count_handshake_failure(reason);
        log::debug!("{}: HTTP {status} ({})", self.peer, reason.as_str());
        let response = http::response(
            status,
            "text/plain",
            message.as_bytes(),
            http::reject_headers(status),
        );
        self.answer(ctx, response);
    }

    /// Counts this connection out of `tickcast_connections`: it got a plain HTTP answer and
    /// only closes from now on.
    fn mark_answered(&mut self, ctx: &mut ConnCtx<'_>) {
        if !self.answered_http {
            self.answered_http = true;
            ctx.stats.answered_http += 1;
        }
    }

    /// Queues a complete HTTP response; the connection closes once it is written.
    fn answer(&mut self, ctx: &mut ConnCtx<'_>, response: Vec<u8>) {
        self.mark_answered(ctx);
        self.outbox.push(Arc::from(response), 0);
        self.want_flush(ctx);
        let deadline = ctx.now + ctx.cfg.close_timeout;
        self.state = State::Closing {
            deadline,
            then: super::AfterFlush::Linger { shut: false },
        };
        self.arm_timer(ctx);
    }
}

/// Whether the upgrade `req` gets permessage-deflate: offered, acceptable, and not turned
/// off (`--deflate off`). Counted either way.
fn agree_deflate(ctx: &mut ConnCtx<'_>, req: &Request) -> bool {
    let counters = &ctx.stats.metrics.deflate;
    match deflate::negotiate([req.extensions.as_str()]) {
        Agreement::NotOffered => false,
        Agreement::Accepted if ctx.cfg.deflate => {
            counters.negotiated.inc();
            true
        }
        Agreement::Accepted | Agreement::Declined => {
            counters.declined.inc();
            false
        }
    }
}

/// The answer to an upgrade whose `/ws` parameters are wrong: status and counted reason.
fn refusal(e: &ClientError) -> Refused {
    let (status, reason) = match e.code {
        ErrorCode::Forbidden => (403, HandshakeFailure::Forbidden),
        ErrorCode::InvalidName => (400, HandshakeFailure::BadClientId),
        ErrorCode::InvalidMessage => (400, HandshakeFailure::BadSince),
        _ => (400, HandshakeFailure::BadTopics),
    };
    (status, reason, format!("{}\n", e.message))
}
