//! The blocking client every hostile scenario is built from: connect (from a chosen loopback
//! source address), a hand-made upgrade, frames written byte for byte as the scenario wants
//! them (valid or not), the server's frames read back, and the clean close handshake. The
//! socket-level steps (connect from a source address, lingering close, reset, TCP state)
//! are in [`super::sock`] and re-exported here.
//!
//! Blocking sockets with timeouts keep each scenario a plain sequence of steps; the framing
//! itself (upgrade request and answer, masking, the server-frame parser) is the load
//! generator's [`crate::load::wire`], so both clients read the server by the same rules.
//! What a socket ended with is an [`Ending`]: the scenarios count endings by kind, because
//! "got the close frame" and "got a reset" are exactly what they measure.

use std::collections::VecDeque;
use std::io::{self, Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use tungstenite::protocol::frame::coding::{Control, Data, OpCode};

use crate::load::wire::{self, FrameReader};

pub use super::sock::{
    TCP_ESTABLISHED, abort, bind_no_port, connect, connect_failure, linger_close, tcp_state,
};

/// Largest server frame a scenario accepts (the oversized burst relays 64 KiB messages).
const MAX_SERVER_FRAME: usize = 16 << 20;
/// Bytes read per `read()`.
const READ_CHUNK: usize = 64 * 1024;
/// Largest response head read while upgrading.
const MAX_HEAD: usize = 16 * 1024;

/// Opcodes and bits of a frame's first byte, for readable hostile frames.
pub mod op {
    /// Continuation.
    pub const CONT: u8 = 0x0;
    /// Text.
    pub const TEXT: u8 = 0x1;
    /// Binary.
    pub const BINARY: u8 = 0x2;
    /// Close.
    pub const CLOSE: u8 = 0x8;
    /// Ping.
    pub const PING: u8 = 0x9;
    /// Pong.
    pub const PONG: u8 = 0xA;
    /// FIN bit.
    pub const FIN: u8 = 0x80;
    /// RSV1 bit.
    pub const RSV1: u8 = 0x40;
}

/// How a socket ended, as the client saw it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Ending {
    /// The server's close frame, with its code (1005 when it carried none).
    Close(u16),
    /// The stream ended (FIN) without a close frame.
    Eof,
    /// The connection was reset (RST), possibly discarding what was in flight.
    Reset,
    /// Nothing ended it before the scenario's deadline.
    Timeout,
    /// Another I/O error.
    Error,
    /// The server sent a frame a client must refuse (masked, reserved bits, ...).
    BadFrame,
}

impl Ending {
    /// The label counted in a scenario's tallies: `close_1002`, `eof`, `reset`, ...
    pub fn label(self) -> String {
        match self {
            Ending::Close(code) => format!("close_{code}"),
            Ending::Eof => "eof".into(),
            Ending::Reset => "reset".into(),
            Ending::Timeout => "timeout".into(),
            Ending::Error => "error".into(),
            Ending::BadFrame => "bad_frame".into(),
        }
    }

    /// The ending of a failed read (`None` when the read should simply be retried).
    pub fn of_error(e: &io::Error) -> Option<Ending> {
        match e.kind() {
            io::ErrorKind::Interrupted => None,
            io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut => Some(Ending::Timeout),
            io::ErrorKind::ConnectionReset
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::BrokenPipe => Some(Ending::Reset),
            _ => Some(Ending::Error),
        }
    }
}

impl serde::Serialize for Ending {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.label())
    }
}

/// Encodes a client frame byte for byte: `first` is the FIN/RSV/opcode byte, `mask` `None`
/// leaves it unmasked (a violation), and `wide_len` encodes even a short length in the
/// 2-byte extended form (a length that is not minimally encoded, also a violation).
pub fn frame(first: u8, payload: &[u8], mask: Option<[u8; 4]>, wide_len: bool) -> Vec<u8> {
    let mut out = Vec::with_capacity(payload.len() + 14);
    out.push(first);
    let mask_bit = if mask.is_some() { 0x80 } else { 0 };
    match payload.len() {
        n if n < 126 && !wide_len => out.push(mask_bit | n as u8),
        n if n < 65536 => {
            out.push(mask_bit | 126);
            out.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            out.push(mask_bit | 127);
            out.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    let start = out.len() + if mask.is_some() { 4 } else { 0 };
    if let Some(m) = mask {
        out.extend_from_slice(&m);
    }
    out.extend_from_slice(payload);
    if let Some(m) = mask {
        crate::conn::unmask_in_place(&mut out[start..], m);
    }
    out
}

/// A valid masked text frame.
pub fn text_frame(text: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(text.len() + 14);
    wire::encode_masked(
        OpCode::Data(Data::Text),
        text.as_bytes(),
        fastrand::u32(..).to_ne_bytes(),
        &mut out,
    );
    out
}

/// A valid masked close frame with `code`.
pub fn close_frame(code: u16) -> Vec<u8> {
    let mut out = Vec::with_capacity(8);
    wire::encode_masked(
        OpCode::Control(Control::Close),
        &code.to_be_bytes(),
        fastrand::u32(..).to_ne_bytes(),
        &mut out,
    );
    out
}

/// Writes a hand-made upgrade request for `path` and reads the answer. `Ok(leftover)`: 101
/// with the right accept key, and the bytes that followed the head (frames).
/// `Err(reason)`: a failure label (`http_400`, `eof_in_handshake`, ...).
pub fn upgrade(
    stream: &mut TcpStream,
    host: &str,
    path: &str,
    timeout: Duration,
) -> Result<Vec<u8>, String> {
    upgrade_with(stream, host, path, &[], timeout)
}

/// [`upgrade`] with `headers` (name, value) added to the request, e.g. a forged
/// `X-Forwarded-For`.
pub fn upgrade_with(
    stream: &mut TcpStream,
    host: &str,
    path: &str,
    headers: &[(&str, &str)],
    timeout: Duration,
) -> Result<Vec<u8>, String> {
    let key = tungstenite::handshake::client::generate_key();
    stream
        .set_write_timeout(Some(timeout))
        .map_err(|_| "socket_error".to_string())?;
    let mut request = wire::upgrade_request(host, path, &key);
    // The request ends with its blank line: the extra headers go just before it.
    request.truncate(request.len() - 2);
    for (name, value) in headers {
        request.extend_from_slice(format!("{name}: {value}\r\n").as_bytes());
    }
    request.extend_from_slice(b"\r\n");
    if let Err(e) = stream.write_all(&request) {
        return Err(format!(
            "{}_in_handshake",
            Ending::of_error(&e).unwrap_or(Ending::Error).label()
        ));
    }
    let deadline = Instant::now() + timeout;
    let mut head = Vec::with_capacity(512);
    let mut buf = [0u8; 4096];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err("timeout_in_handshake".into());
        }
        let _ = stream.set_read_timeout(Some(left));
        match stream.read(&mut buf) {
            Ok(0) => return Err("eof_in_handshake".into()),
            Ok(n) => head.extend_from_slice(&buf[..n]),
            Err(e) => match Ending::of_error(&e) {
                None => continue,
                Some(end) => return Err(format!("{}_in_handshake", end.label())),
            },
        }
        match wire::check_upgrade_response(&head, &key) {
            Ok(None) if head.len() < MAX_HEAD => {}
            Ok(None) => return Err("bad_response".into()),
            Ok(Some(used)) => return Ok(head.split_off(used)),
            Err(e) => return Err(e.reason()),
        }
    }
}

/// One frame the server sent (payload unmasked: servers do not mask).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerFrame {
    /// The opcode (low nibble of the first byte).
    pub opcode: u8,
    /// The payload.
    pub payload: Vec<u8>,
}

/// What [`WsConn::next`] found.
#[derive(Debug)]
pub enum Next {
    /// A data or control frame other than close.
    Frame(ServerFrame),
    /// The stream is over (a close frame included).
    End(Ending),
}

/// An open WebSocket over a blocking socket: reads the server's frames, writes frames.
pub struct WsConn {
    /// The socket (public for scenarios that write hostile bytes or clone it).
    pub stream: TcpStream,
    reader: FrameReader,
    frames: VecDeque<ServerFrame>,
    /// How the stream ended, once it has.
    ended: Option<Ending>,
    buf: Vec<u8>,
}

impl WsConn {
    /// Connects from `source` and upgrades on `path`.
    pub fn open(
        addr: SocketAddr,
        source: Option<Ipv4Addr>,
        path: &str,
        timeout: Duration,
    ) -> Result<WsConn, String> {
        WsConn::open_with(addr, source, path, &[], timeout)
    }

    /// [`WsConn::open`] with `headers` added to the upgrade request.
    pub fn open_with(
        addr: SocketAddr,
        source: Option<Ipv4Addr>,
        path: &str,
        headers: &[(&str, &str)],
        timeout: Duration,
    ) -> Result<WsConn, String> {
        let mut stream =
            connect(addr, source, timeout).map_err(|e| connect_failure(&e).to_string())?;
        let leftover = upgrade_with(&mut stream, &addr.to_string(), path, headers, timeout)?;
        Ok(WsConn::from_upgraded(stream, &leftover))
    }

    /// Wraps an upgraded stream; `leftover` is what followed the 101 head.
    pub fn from_upgraded(stream: TcpStream, leftover: &[u8]) -> WsConn {
        let mut conn = WsConn {
            stream,
            reader: FrameReader::default(),
            frames: VecDeque::new(),
            ended: None,
            buf: vec![0; READ_CHUNK],
        };
        conn.feed_bytes(leftover.to_vec().as_slice());
        conn
    }

    /// Writes one valid masked text frame.
    pub fn send_text(&mut self, text: &str) -> io::Result<()> {
        self.stream.write_all(&text_frame(text))
    }

    /// Writes bytes as they are.
    pub fn send_raw(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.stream.write_all(bytes)
    }

    /// The next frame, or how the stream ended; waits at most until `deadline`. After the
    /// end, every call returns the same ending.
    pub fn next(&mut self, deadline: Instant) -> Next {
        loop {
            if let Some(f) = self.frames.pop_front() {
                if f.opcode == op::CLOSE {
                    let code = wire::close_code(&f.payload);
                    self.ended = Some(Ending::Close(code));
                    self.frames.clear();
                    return Next::End(Ending::Close(code));
                }
                return Next::Frame(f);
            }
            if let Some(end) = self.ended {
                return Next::End(end);
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Next::End(Ending::Timeout);
            }
            let _ = self.stream.set_read_timeout(Some(left));
            let mut buf = std::mem::take(&mut self.buf);
            match self.stream.read(&mut buf) {
                Ok(0) => self.ended = Some(Ending::Eof),
                Ok(n) => self.feed_bytes(&buf[..n]),
                Err(e) => match Ending::of_error(&e) {
                    None => {}
                    Some(Ending::Timeout) => {
                        self.buf = buf;
                        return Next::End(Ending::Timeout);
                    }
                    Some(end) => self.ended = Some(end),
                },
            }
            self.buf = buf;
        }
    }

    /// Reads until the stream ends, skipping frames; `Timeout` if `deadline` passes first.
    pub fn read_to_end(&mut self, deadline: Instant) -> Ending {
        loop {
            if let Next::End(end) = self.next(deadline) {
                return end;
            }
        }
    }

    /// The clean close: send close 1000, read (skipping frames) until the server's close
    /// frame, then shut the write side and wait for the server to close TCP. Returns what
    /// the close frame wait ended with, and whether TCP then ended with EOF.
    pub fn close_cleanly(mut self, timeout: Duration) -> (Ending, bool) {
        let deadline = Instant::now() + timeout;
        if self.ended.is_none() && self.send_raw(&close_frame(1000)).is_err() {
            return (Ending::Reset, false);
        }
        let end = self.read_to_end(deadline);
        if !matches!(end, Ending::Close(_)) {
            return (end, false);
        }
        let left = deadline.saturating_duration_since(Instant::now());
        let tcp = linger_close(self.stream, left.max(Duration::from_millis(1)));
        (end, tcp == Ending::Eof)
    }

    fn feed_bytes(&mut self, data: &[u8]) {
        let frames = &mut self.frames;
        let mut compressed = false;
        let result = self.reader.feed(data, MAX_SERVER_FRAME, |info, payload| {
            // These clients never offer permessage-deflate: RSV1 is the server's error.
            compressed |= info.compressed;
            frames.push_back(ServerFrame {
                opcode: op_byte(info.opcode),
                payload: payload.to_vec(),
            });
            !compressed
        });
        if result.is_err() || compressed {
            self.ended = Some(Ending::BadFrame);
        }
    }
}

/// The wire value of a parsed opcode.
fn op_byte(opcode: OpCode) -> u8 {
    u8::from(opcode)
}

/// Tally of endings by label, in a stable order.
pub type Tally = std::collections::BTreeMap<String, u64>;

/// Adds one to `label` in `tally`.
pub fn count(tally: &mut Tally, label: impl Into<String>) {
    *tally.entry(label.into()).or_default() += 1;
}

/// `a=1 b=2` for a tally (`none` when empty).
pub fn tally_text(tally: &Tally) -> String {
    if tally.is_empty() {
        return "none".into();
    }
    tally
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_one(bytes: &[u8]) -> (u8, Vec<u8>) {
        let mut r = FrameReader::default();
        let mut out = None;
        r.feed(bytes, 1 << 20, |info, p| {
            out = Some((op_byte(info.opcode), p.to_vec()));
            true
        })
        .unwrap();
        out.unwrap()
    }

    #[test]
    fn close_frames_are_read_with_their_code() {
        let f = crate::frame::close(1009, "too big");
        let (opcode, payload) = parse_one(&f);
        assert_eq!(opcode, op::CLOSE);
        assert_eq!(wire::close_code(&payload), 1009);
        assert_eq!(wire::close_code(&[]), 1005);
    }

    #[test]
    fn hostile_frames_are_written_as_asked() {
        let unmasked = frame(op::FIN | op::TEXT, b"hi", None, false);
        assert_eq!(unmasked, b"\x81\x02hi");
        let wide = frame(op::FIN | op::TEXT, b"hey", None, true);
        assert_eq!(wide, b"\x81\x7e\x00\x03hey");
        let masked = frame(op::FIN | op::TEXT, b"abcd", Some([1, 2, 3, 4]), false);
        assert_eq!(&masked[..6], b"\x81\x84\x01\x02\x03\x04");
        assert_eq!(&masked[6..], &[b'a' ^ 1, b'b' ^ 2, b'c' ^ 3, b'd' ^ 4]);
        let big = frame(
            op::FIN | op::BINARY,
            &vec![0u8; 70_000],
            Some([0; 4]),
            false,
        );
        assert_eq!(big[1], 0x80 | 127);
        assert_eq!(big.len(), 2 + 8 + 4 + 70_000);
    }

    #[test]
    fn valid_frames_decode_on_the_server_side() {
        let mut bytes = text_frame("{\"op\":\"x\"}");
        bytes.extend(close_frame(1000));
        let mut asm = crate::conn::Assembler::default();
        let mut seen = Vec::new();
        asm.feed(&mut bytes, 1024, |ev| {
            seen.push(format!("{ev:?}"));
            crate::conn::Flow::Continue
        })
        .unwrap();
        assert_eq!(seen.len(), 2, "{seen:?}");
        assert!(seen[0].starts_with("Text"), "{seen:?}");
        assert!(seen[1].starts_with("Close"), "{seen:?}");
    }

    #[test]
    fn read_errors_map_to_endings() {
        let e = |k| io::Error::from(k);
        assert_eq!(
            Ending::of_error(&e(io::ErrorKind::ConnectionReset)),
            Some(Ending::Reset)
        );
        assert_eq!(
            Ending::of_error(&e(io::ErrorKind::WouldBlock)),
            Some(Ending::Timeout)
        );
        assert_eq!(Ending::of_error(&e(io::ErrorKind::Interrupted)), None);
        assert_eq!(Ending::Close(1002).label(), "close_1002");
        let mut t = Tally::new();
        count(&mut t, "eof");
        count(&mut t, "eof");
        count(&mut t, "close_1000");
        assert_eq!(tally_text(&t), "close_1000=1 eof=2");
    }
}
