//! The read side of a connection: what the socket holds goes through the request-head
//! parser while handshaking, then through the frame parser (inflating compressed messages
//! with the shard's inflater), and each complete message or control frame is acted on.
//! Protocol violations and the peer's EOF end here too. On a TLS port the first byte is
//! looked at before anything is read: it must open a TLS handshake.

use std::io::{self, Read};

use super::{
    AfterFlush, Assembler, Conn, ConnCtx, Event, Flow, HeadOutcome, MAX_READS_PER_EVENT, Opening,
    State, Violation,
};
use crate::edge::proxy::{self, Parsed};
use crate::frame::{self, close_code};
use crate::metrics::HandshakeFailure;

/// Whether `buf` holds a complete PROXY header (v1 or v2).
pub(super) fn is_proxy_header(buf: &[u8]) -> bool {
    matches!(proxy::parse(buf), Parsed::Header { .. })
}

impl Conn {
    /// Reads what the socket holds and acts on it. `until_eof` is set when the event says
    /// the peer has closed its side (or when re-reading after a spent budget): then a short
    /// read does not prove the socket drained, since data and FIN may arrive in one edge and
    /// no later edge would report the end.
    pub fn on_readable(&mut self, ctx: &mut ConnCtx<'_>, scratch: &mut [u8], until_eof: bool) {
        let handshaking = self.stream.is_tls_handshaking();
        if self.awaiting_proxy && !self.read_proxy_header(ctx, scratch) {
            return;
        }
        if self.opens_as_expected(ctx, scratch) {
            self.read_socket(ctx, scratch, until_eof);
        }
        if self.is_closed() {
            return;
        }
        if handshaking && !self.stream.is_tls_handshaking() {
            ctx.stats.metrics.tls.handshakes.inc();
        }
        // TLS handshake messages (or an alert) to send, with nothing in the outbox.
        if self.stream.wants_write() {
            self.want_flush(ctx);
        }
    }

    fn read_socket(&mut self, ctx: &mut ConnCtx<'_>, scratch: &mut [u8], until_eof: bool) {
        // On TLS a short read of plaintext says nothing of what the socket still holds.
        let short_read_drains = !self.stream.is_tls();
        for _ in 0..MAX_READS_PER_EVENT {
            if self.is_closed() {
                return;
            }
            match self.stream.read(scratch) {
                Ok(0) => return self.on_eof(ctx),
                Ok(n) => {
                    self.last_recv = ctx.now;
                    self.on_bytes(ctx, &mut scratch[..n]);
                    if n < scratch.len() && !until_eof && short_read_drains {
                        // Short read: the socket is drained; a new edge comes with new data.
                        return;
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return self.on_read_error(ctx, &e),
            }
        }
        ctx.to_read.push(ctx.key);
    }

    /// On a TLS port, the first byte must open a TLS handshake. A plain HTTP request gets a
    /// plain 400 saying so (the client most likely used `ws://` for a `wss://` server); the
    /// TLS session is dropped for that answer. Returns whether to read on.
    fn opens_as_expected(&mut self, ctx: &mut ConnCtx<'_>, scratch: &mut [u8]) -> bool {
        if !matches!(self.state, State::Handshake { .. }) {
            return true;
        }
        match self.stream.opening() {
            Ok(Opening::Tls) => true,
            Ok(Opening::Nothing) => false,
            Ok(Opening::Eof) => {
                self.on_eof(ctx);
                false
            }
            Ok(Opening::NotTls) => {
                self.stream.drop_tls();
                let n = self.stream.peek_raw(scratch).unwrap_or(0);
                if ctx.cfg.proxy_protocol && is_proxy_header(&scratch[..n]) {
                    self.refuse_untrusted_proxy(ctx);
                } else {
                    self.reject(
                        ctx,
                        400,
                        HandshakeFailure::PlainOnTls,
                        "this port speaks TLS: connect with wss:// or https://\n",
                    );
                }
                // The request is read and discarded while the answer goes out.
                true
            }
            Err(e) => {
                self.on_read_error(ctx, &e);
                false
            }
        }
    }

    /// `--proxy-protocol`, from a trusted proxy: the connection must open with a PROXY
    /// header. It is looked at in place (peeked) until complete, then exactly its bytes are
    /// read, so what follows (a request, a ClientHello) is read as if the header had not
    /// been there. The client it names becomes the connection's peer. Returns whether to
    /// read on; a connection without a valid header is closed (its peer is a proxy, which
    /// would not show an HTTP answer to anyone).
    fn read_proxy_header(&mut self, ctx: &mut ConnCtx<'_>, scratch: &mut [u8]) -> bool {
        let window = proxy::MAX_V2_HEADER.min(scratch.len());
        let n = match self.stream.peek_raw(&mut scratch[..window]) {
            Ok(0) => {
                self.on_eof(ctx);
                return false;
            }
            Ok(n) => n,
            // Nothing yet, or interrupted: the next edge comes back here.
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted
                ) =>
            {
                return false;
            }
            Err(e) => {
                self.on_read_error(ctx, &e);
                return false;
            }
        };
        let (source, used) = match proxy::parse(&scratch[..n]) {
            // The rest of the header comes with a later edge (the handshake timeout bounds
            // the wait).
            Parsed::Incomplete => return false,
            Parsed::Header { source, used } => (source, used),
            Parsed::Invalid(why) => {
                log::debug!("{}: PROXY header refused: {why}", self.peer);
                ctx.stats
                    .metrics
                    .count_handshake_failure(HandshakeFailure::BadProxyHeader);
                self.drop_now(ctx, None);
                return false;
            }
        };
        // The header is in the socket's buffer (it was just peeked): one read takes it.
        match self.stream.read_raw(&mut scratch[..used]) {
            Ok(read) if read == used => {}
            _ => {
                self.drop_now(ctx, None);
                return false;
            }
        }
        self.awaiting_proxy = false;
        // LOCAL (the proxy's own health check) and unknown families keep the socket's peer.
        if let Some(client) = source {
            self.peer = client;
            ctx.stats.metrics.tls.proxied.inc();
        }
        true
    }

    /// A PROXY header from a peer that is not a trusted proxy: refused with a 400 (a peer
    /// that can forge one could claim any address).
    pub(super) fn refuse_untrusted_proxy(&mut self, ctx: &mut ConnCtx<'_>) {
        log::debug!("{}: PROXY header from an untrusted peer", self.peer);
        self.reject(
            ctx,
            400,
            HandshakeFailure::ProxyUntrusted,
            "PROXY header from a peer that is not a trusted proxy\n",
        );
    }

    /// A failed read: a TLS error during the handshake is counted as a failed handshake,
    /// after it as a TLS error; either way the connection ends.
    fn on_read_error(&mut self, ctx: &mut ConnCtx<'_>, e: &io::Error) {
        if self.stream.is_tls() && e.kind() == io::ErrorKind::InvalidData {
            log::debug!("{}: TLS: {e}", self.peer);
            if let State::Handshake { .. } = self.state {
                ctx.stats
                    .metrics
                    .count_handshake_failure(HandshakeFailure::Tls);
            } else {
                ctx.stats.metrics.tls.errors.inc();
            }
        }
        self.drop_now(ctx, Some(close_code::ABNORMAL));
    }

    fn on_eof(&mut self, ctx: &mut ConnCtx<'_>) {
        if let State::Handshake { .. } = self.state {
            ctx.stats
                .metrics
                .count_handshake_failure(HandshakeFailure::Eof);
        }
        // A peer that half-closes after our close frame has done its part.
        self.drop_now(ctx, Some(close_code::ABNORMAL));
    }

    /// Feeds received bytes through the parser for the current state, keeping any
    /// incomplete tail in `partial`.
    fn on_bytes(&mut self, ctx: &mut ConnCtx<'_>, data: &mut [u8]) {
        if self.partial.is_empty() {
            let used = self.process(ctx, data);
            if used < data.len() && !self.is_closed() {
                self.partial.extend_from_slice(&data[used..]);
            }
        } else {
            let mut buf = std::mem::take(&mut self.partial);
            buf.extend_from_slice(data);
            let used = self.process(ctx, &mut buf);
            buf.drain(..used.min(buf.len()));
            if buf.is_empty() && buf.capacity() > 4096 {
                buf = Vec::new();
            }
            self.partial = buf;
        }
    }

    /// Parses `buf` according to the state; returns the bytes consumed.
    fn process(&mut self, ctx: &mut ConnCtx<'_>, buf: &mut [u8]) -> usize {
        let mut pos = 0;
        if let State::Handshake { .. } = self.state {
            match self.on_request_bytes(ctx, buf) {
                // Incomplete head: keep everything for the next read.
                HeadOutcome::Incomplete => return 0,
                // Upgraded: frames may follow the head in the same read.
                HeadOutcome::Upgraded(used) => pos = used,
                // Answered (or refused): whatever follows is ignored.
                HeadOutcome::Answered => return buf.len(),
            }
        }
        match self.state {
            // Failed, answered or replied: nothing more is parsed.
            State::Closing {
                then: AfterFlush::Linger { .. },
                ..
            } => buf.len(),
            State::Open(..)
            | State::Closing {
                then: AfterFlush::AwaitPeer { .. },
                ..
            } => {
                let mut asm = std::mem::take(&mut self.assembler);
                let max = ctx.cfg.max_message;
                // The shard's inflater, lent for this call (made on first use).
                let mut inflater = self
                    .deflate
                    .then(|| ctx.inflater.take().unwrap_or_default());
                let inflated = inflater.as_ref().map_or(0, |i| i.inflated());
                let res = asm.feed_inflating(&mut buf[pos..], max, inflater.as_deref_mut(), |ev| {
                    self.on_event(ctx, ev)
                });
                if let Some(inflater) = inflater {
                    let n = inflater.inflated() - inflated;
                    if n > 0 {
                        ctx.stats.metrics.deflate.inflated.inc_by(n);
                    }
                    *ctx.inflater = Some(inflater);
                }
                self.assembler = asm;
                match res {
                    Ok(used) => pos + used,
                    Err(violation) => {
                        if violation.is_inflate() {
                            ctx.stats.metrics.deflate.inflate_refused.inc();
                        }
                        self.on_violation(ctx, &violation);
                        // Nothing more is parsed: a message in reassembly is let go.
                        self.assembler = Assembler::default();
                        buf.len()
                    }
                }
            }
            _ => buf.len(),
        }
    }

    fn on_violation(&mut self, ctx: &mut ConnCtx<'_>, violation: &Violation) {
        log::debug!(
            "{}: {} -> close {}",
            self.peer,
            violation.reason(),
            violation.close_code()
        );
        match self.state {
            State::Open(..) => self.close_with(
                ctx,
                violation.close_code(),
                violation.reason(),
                ctx.cfg.close_timeout,
                AfterFlush::Linger { shut: false },
            ),
            // A violation while waiting for the peer's close: stop parsing, keep lingering.
            State::Closing {
                deadline,
                then: AfterFlush::AwaitPeer { shut },
            } => {
                self.state = State::Closing {
                    deadline,
                    then: AfterFlush::Linger { shut },
                };
            }
            _ => self.drop_now(ctx, None),
        }
    }

    /// Handles one parsed frame or message.
    fn on_event(&mut self, ctx: &mut ConnCtx<'_>, event: Event<'_>) -> Flow {
        let route = match self.state {
            State::Open(route, _) => route,
            // Waiting for the peer's close: only its close (or EOF) matters.
            State::Closing { deadline, .. } => {
                if let Event::Close(..) = event {
                    if self.outbox.is_empty() {
                        // Our close is written and our side shut: the handshake is complete.
                        self.drop_now(ctx, None);
                    } else {
                        self.state = State::Closing {
                            deadline,
                            then: AfterFlush::Linger { shut: false },
                        };
                    }
                    return Flow::Stop;
                }
                return Flow::Continue;
            }
            _ => return Flow::Stop,
        };
        match event {
            Event::Ping(payload) => self.push_control(ctx, frame::pong(payload)),
            Event::Pong => {}
            Event::Close(code, _) => {
                // Echo the peer's code (RFC 6455 §5.5.1); 1005 means none, answered with 1000.
                let reply = if code == close_code::NO_STATUS {
                    close_code::NORMAL
                } else {
                    code
                };
                self.leave_topics(ctx);
                self.close_code = Some(code);
                self.outbox.push(frame::close(reply, ""), 0);
                self.want_flush(ctx);
                let deadline = ctx.now + ctx.cfg.close_timeout;
                self.state = State::Closing {
                    deadline,
                    then: AfterFlush::Linger { shut: false },
                };
                self.arm_timer(ctx);
                return Flow::Stop;
            }
            Event::Text(text) => self.on_text(ctx, route, text),
            Event::Binary(data) => self.on_binary(ctx, route, data),
        }
        if matches!(self.state, State::Open(..)) {
            Flow::Continue
        } else {
            Flow::Stop
        }
    }
}
