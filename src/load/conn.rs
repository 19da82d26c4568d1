//! One load-generator connection: connect, upgrade, read frames, and (for publishers) send.
//!
//! Reads go into the thread's scratch buffer and are parsed in place by a
//! [`wire::FrameReader`], which keeps only an incomplete frame, so a connection costs little
//! memory and a batched read of hundreds of frames costs no copy. The connection answers pings,
//! echoes a close, and counts everything in the thread's [`Stats`].
//!
//! The bytes travel over a [`Transport`]: the socket itself, or TLS over it (`wss://`; the
//! TLS handshake is part of the `Upgrading` phase, and its read side is in [`secure`]).
//! Each data message is counted (latency, seq gaps) by [`count`].

mod count;
mod secure;

use std::io::{self, Read};
use std::net::{Ipv4Addr, SocketAddr};
use std::time::Instant;

use mio::{Interest, Registry, Token};
use tungstenite::protocol::frame::coding::{Control, Data, OpCode};

use super::config::Target;
use super::scan::Scanner;
use super::stats::Stats;
use super::tls::TlsClient;
use super::transport::connect_reason;
use super::transport::{Sent, Transport};
use super::wire::{self, FrameInfo};
use crate::deflate::Inflater;
use crate::frame::close_code;

/// Reads per readable event before other connections get their turn.
const MAX_READS_PER_EVENT: usize = 8;
/// Bytes a connection may have waiting to be sent; publishes beyond it are skipped.
pub const MAX_PENDING_OUT: usize = 64 * 1024;

/// Where a connection is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// The TCP connect is in progress.
    Connecting,
    /// The upgrade request is sent; waiting for 101.
    Upgrading,
    /// An open WebSocket.
    Open,
    /// Finished; removed at the end of the turn.
    Closed,
}

/// What a connection may touch of its thread while it runs.
pub struct Ctx<'a> {
    /// The time of this turn.
    pub now: Instant,
    /// The thread's counters.
    pub stats: &'a mut Stats,
    /// The thread's scanner.
    pub scanner: &'a Scanner,
    /// Largest message accepted.
    pub max_message: usize,
    /// Whether to look for a publisher's `sent_us` in data messages.
    pub track_sent: bool,
    /// Source of mask keys.
    pub rng: &'a mut fastrand::Rng,
    /// Whether to offer permessage-deflate (`--deflate`).
    pub deflate: bool,
    /// Whether the URL asks for batches (`batch=1`): a data message may hold several,
    /// one per line.
    pub batch: bool,
    /// The thread's inflater for compressed messages (made on first use).
    pub inflater: &'a mut Option<Box<Inflater>>,
}

/// One connection.
#[derive(Debug)]
pub struct LoadConn {
    transport: Transport,
    phase: Phase,
    /// When the TCP connect started (handshake latency and timeout).
    started: Instant,
    /// The `Sec-WebSocket-Key` sent, until the upgrade completes.
    key: Option<Box<str>>,
    /// An incomplete response head (until upgraded).
    partial: Vec<u8>,
    /// Frames split across reads.
    reader: wire::FrameReader,
    /// A fragmented message being reassembled (never sent by tickcast, but legal), and
    /// whether it is compressed.
    fragments: Option<(Vec<u8>, bool)>,
    /// Whether the server agreed to permessage-deflate.
    deflate: bool,
    /// Bytes to send and how much of them is sent.
    out: Vec<u8>,
    out_sent: usize,
    /// (topic id, last seq) per topic seen.
    seqs: Vec<(u32, u64)>,
    /// Next publish time, for publishers.
    pub next_publish: Option<Instant>,
    /// The room number this connection puts in place of `{r}` (`--rooms`).
    pub room: Option<usize>,
    /// Publishes sent by this connection (the `n` field of each).
    published: u64,
}

impl LoadConn {
    /// Starts a non-blocking connect to `addr`, from `source` when given (see
    /// [`Transport::connect`]), over TLS when `tls` is given. The handshake clock starts at
    /// the `connect` call itself, not at the turn that found the connection due: connects
    /// opened one after another in a turn each take tens of µs on loopback, and a stale
    /// stamp would charge that to the server.
    pub fn connect(
        addr: SocketAddr,
        source: Option<Ipv4Addr>,
        tls: Option<&TlsClient>,
    ) -> io::Result<Self> {
        let (transport, started) = Transport::connect(addr, source, tls)?;
        Ok(LoadConn {
            transport,
            phase: Phase::Connecting,
            started,
            key: None,
            partial: Vec::new(),
            reader: wire::FrameReader::default(),
            fragments: None,
            deflate: false,
            out: Vec::new(),
            out_sent: 0,
            seqs: Vec::new(),
            next_publish: None,
            room: None,
            published: 0,
        })
    }

    /// Registers for both directions once; edges tell when to read or retry a write.
    pub fn register(&mut self, registry: &Registry, token: usize) -> io::Result<()> {
        registry.register(
            self.transport.socket(),
            Token(token),
            Interest::READABLE | Interest::WRITABLE,
        )
    }

    /// Removes the socket from the poll before it is dropped.
    pub fn deregister(&mut self, registry: &Registry) {
        let _ = registry.deregister(self.transport.socket());
    }

    /// The current phase.
    pub fn phase(&self) -> Phase {
        self.phase
    }

    /// Whether bytes wait to be sent (TLS records included).
    pub fn has_output(&self) -> bool {
        self.out_sent < self.out.len() || self.transport.wants_write()
    }

    /// Bytes of output not yet handed to the socket (or to TLS).
    fn pending_out(&self) -> usize {
        self.out.len() - self.out_sent
    }

    /// A WRITABLE edge: finish the connect and send the upgrade, or send what is pending.
    pub fn on_writable(&mut self, ctx: &mut Ctx<'_>, target: &Target) {
        if self.phase == Phase::Connecting {
            if let Ok(Some(e)) | Err(e) = self.transport.socket().take_error() {
                return self.fail(ctx, connect_reason(&e));
            }
            match self.transport.socket().peer_addr() {
                Ok(_) => {}
                // Spurious edge: still connecting.
                Err(e) if e.kind() == io::ErrorKind::NotConnected => return,
                Err(e) => return self.fail(ctx, connect_reason(&e)),
            }
            let key = tungstenite::handshake::client::generate_key();
            let path = super::config::in_room(&target.path, self.room);
            let offer = ctx.deflate.then_some(wire::DEFLATE_OFFER);
            self.out = wire::upgrade_request_offering(&target.host, &path, &key, offer);
            self.key = Some(key.into());
            self.phase = Phase::Upgrading;
        }
        self.flush(ctx);
    }

    /// Writes pending bytes until done or the socket is full.
    pub fn flush(&mut self, ctx: &mut Ctx<'_>) {
        if self.phase == Phase::Closed || !self.has_output() {
            return;
        }
        if self.transport.write(&self.out, &mut self.out_sent) == Sent::Broken {
            return self.lost(ctx);
        }
        if self.pending_out() == 0 {
            self.out.clear();
            self.out_sent = 0;
            if self.out.capacity() > MAX_PENDING_OUT {
                self.out = Vec::new();
            }
        }
    }

    /// Reads what the socket holds (`cipher` is the thread's buffer for TLS records; empty
    /// without TLS). Returns true when the read budget ran out with data possibly left
    /// (read again next turn: edges do not repeat).
    pub fn on_readable(
        &mut self,
        ctx: &mut Ctx<'_>,
        scratch: &mut [u8],
        cipher: &mut [u8],
    ) -> bool {
        if matches!(self.phase, Phase::Connecting | Phase::Closed) {
            return false;
        }
        for _ in 0..MAX_READS_PER_EVENT {
            let read = match &mut self.transport {
                Transport::Plain(stream) => stream.read(scratch),
                Transport::Tls(_) => return self.read_tls(ctx, scratch, cipher),
            };
            match read {
                Ok(0) => {
                    self.lost(ctx);
                    return false;
                }
                Ok(n) => {
                    if ctx.stats.measuring {
                        ctx.stats.window.bytes += n as u64;
                    }
                    let now_us = crate::clock::unix_micros();
                    self.on_bytes(ctx, &scratch[..n], now_us);
                    if self.phase == Phase::Closed || n < scratch.len() {
                        return false;
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return false,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => {
                    self.lost(ctx);
                    return false;
                }
            }
        }
        true
    }

    /// Fails a connection still connecting or upgrading whose time is up.
    pub fn check_timeout(&mut self, ctx: &mut Ctx<'_>, timeout: std::time::Duration) {
        if matches!(self.phase, Phase::Connecting | Phase::Upgrading)
            && ctx.now.duration_since(self.started) >= timeout
        {
            self.fail(ctx, "timeout");
        }
    }

    /// Queues a publish operation whose data carries the send time. Skipped (and counted)
    /// when the send buffer is already full.
    pub fn publish(&mut self, ctx: &mut Ctx<'_>, topic: &str, scratch: &mut String) {
        if self.phase != Phase::Open {
            return;
        }
        if self.pending_out() > MAX_PENDING_OUT {
            if ctx.stats.measuring {
                ctx.stats.window.publish_skipped += 1;
            }
            return;
        }
        use std::fmt::Write as _;
        scratch.clear();
        self.published += 1;
        let _ = write!(
            scratch,
            r#"{{"op":"publish","topic":"{topic}","data":{{"sent_us":{},"n":{}}}}}"#,
            crate::clock::unix_micros(),
            self.published
        );
        let mask = ctx.rng.u32(..).to_ne_bytes();
        wire::encode_masked(
            OpCode::Data(Data::Text),
            scratch.as_bytes(),
            mask,
            &mut self.out,
        );
        if ctx.stats.measuring {
            ctx.stats.window.published += 1;
        }
    }

    /// Ends the run: queues close 1000 and sends it (then TLS's close_notify) if the socket
    /// takes it right away.
    pub fn finish(&mut self, ctx: &mut Ctx<'_>) {
        if self.phase == Phase::Open {
            self.queue_control(ctx, Control::Close, &close_code::NORMAL.to_be_bytes());
            self.flush(ctx);
            self.transport.close_notify();
        }
        self.phase = Phase::Closed;
    }

    fn fail(&mut self, ctx: &mut Ctx<'_>, reason: &str) {
        if matches!(self.phase, Phase::Connecting | Phase::Upgrading) {
            ctx.stats.fail(reason);
        }
        self.phase = Phase::Closed;
    }

    /// The stream ended or broke: a failure before the upgrade, a 1006 close after it.
    pub fn lost(&mut self, ctx: &mut Ctx<'_>) {
        match self.phase {
            Phase::Connecting | Phase::Upgrading => self.fail(ctx, "eof_in_handshake"),
            Phase::Open => {
                ctx.stats.close(close_code::ABNORMAL);
                self.phase = Phase::Closed;
            }
            Phase::Closed => {}
        }
    }

    fn on_bytes(&mut self, ctx: &mut Ctx<'_>, data: &[u8], now_us: u64) {
        match self.phase {
            Phase::Upgrading => {
                self.partial.extend_from_slice(data);
                let key = self.key.as_deref().unwrap_or_default();
                match wire::check_upgrade_response(&self.partial, key) {
                    Ok(None) => {}
                    Ok(Some(used)) => {
                        self.deflate = wire::agreed_deflate(&self.partial[..used]);
                        if ctx.deflate && !self.deflate {
                            return self.fail(ctx, "deflate_declined");
                        }
                        let elapsed = Instant::now().duration_since(self.started);
                        ctx.stats
                            .handshake
                            .saturating_record((elapsed.as_micros() as u64).max(1));
                        ctx.stats.connected += 1;
                        self.phase = Phase::Open;
                        self.key = None;
                        let head = std::mem::take(&mut self.partial);
                        self.on_frames(ctx, &head[used..], now_us);
                    }
                    Err(e) => self.fail(ctx, &e.reason()),
                }
            }
            Phase::Open => self.on_frames(ctx, data, now_us),
            Phase::Connecting | Phase::Closed => {}
        }
    }

    /// Parses frames from `data`, completing a buffered partial frame first.
    fn on_frames(&mut self, ctx: &mut Ctx<'_>, data: &[u8], now_us: u64) {
        let mut reader = std::mem::take(&mut self.reader);
        let result = reader.feed(data, ctx.max_message, |info, payload| {
            self.on_frame(ctx, info, payload, now_us);
            self.phase == Phase::Open
        });
        self.reader = reader;
        if let Err(e) = result {
            self.violation(ctx, e.reason());
        }
    }

    fn violation(&mut self, ctx: &mut Ctx<'_>, reason: &str) {
        ctx.stats.fail(reason);
        ctx.stats.close(close_code::PROTOCOL);
        self.phase = Phase::Closed;
    }

    fn on_frame(&mut self, ctx: &mut Ctx<'_>, info: FrameInfo, payload: &[u8], now_us: u64) {
        let starts_message = matches!(info.opcode, OpCode::Data(Data::Text | Data::Binary));
        if info.compressed && !(self.deflate && starts_message) {
            return self.violation(ctx, "protocol_error");
        }
        match info.opcode {
            OpCode::Data(Data::Text | Data::Binary) if info.fin => {
                if self.fragments.is_some() {
                    return self.violation(ctx, "protocol_error");
                }
                self.on_whole(ctx, payload, info.compressed, now_us);
            }
            OpCode::Data(Data::Text | Data::Binary) => {
                if self.fragments.is_some() {
                    return self.violation(ctx, "protocol_error");
                }
                self.fragments = Some((payload.to_vec(), info.compressed));
            }
            OpCode::Data(Data::Continue) => {
                let Some((mut buf, compressed)) = self.fragments.take() else {
                    return self.violation(ctx, "protocol_error");
                };
                if buf.len() + payload.len() > ctx.max_message {
                    return self.violation(ctx, "message_too_big");
                }
                buf.extend_from_slice(payload);
                if info.fin {
                    self.on_whole(ctx, &buf, compressed, now_us);
                } else {
                    self.fragments = Some((buf, compressed));
                }
            }
            OpCode::Control(Control::Ping) => {
                self.queue_control(ctx, Control::Pong, payload);
                self.flush(ctx);
            }
            OpCode::Control(Control::Pong) => {}
            OpCode::Control(Control::Close) => {
                ctx.stats.close(wire::close_code(payload));
                // Echo the code (RFC 6455 §5.5.1), then drop the socket.
                let code = &payload[..payload.len().min(2)];
                self.queue_control(ctx, Control::Close, code);
                self.flush(ctx);
                self.transport.close_notify();
                self.phase = Phase::Closed;
            }
            OpCode::Data(Data::Reserved(_)) | OpCode::Control(Control::Reserved(_)) => {
                self.violation(ctx, "protocol_error");
            }
        }
    }

    /// Queues a control frame, unless the send buffer is already full (a peer that pings
    /// faster than it reads our pongs gets no more of them).
    fn queue_control(&mut self, ctx: &mut Ctx<'_>, kind: Control, payload: &[u8]) {
        if self.pending_out() > MAX_PENDING_OUT {
            return;
        }
        let mask = ctx.rng.u32(..).to_ne_bytes();
        wire::encode_masked(OpCode::Control(kind), payload, mask, &mut self.out);
    }

    /// A complete message, inflated first when it is compressed.
    fn on_whole(&mut self, ctx: &mut Ctx<'_>, payload: &[u8], compressed: bool, now_us: u64) {
        if !compressed {
            return self.on_messages(ctx, payload, now_us);
        }
        let mut inflater = ctx.inflater.take().unwrap_or_default();
        match inflater.inflate(payload, ctx.max_message) {
            Ok(text) => self.on_messages(ctx, text, now_us),
            Err(_) => self.violation(ctx, "bad_compressed_message"),
        }
        *ctx.inflater = Some(inflater);
    }

    /// A data message: one message, or with `?batch=1` several joined by newlines.
    fn on_messages(&mut self, ctx: &mut Ctx<'_>, text: &[u8], now_us: u64) {
        if !ctx.batch {
            return self.on_message(ctx, text, now_us);
        }
        for line in text.split(|&b| b == b'\n') {
            self.on_message(ctx, line, now_us);
        }
    }
}
