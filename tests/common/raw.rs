//! A raw WebSocket client: frames written byte by byte as the test wants them, valid or not,
//! after a hand-made handshake, and the server's frames parsed by hand.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};

use super::{READ_TIMEOUT, WS_KEY, upgrade_request};

/// Encodes a client frame: `first` is the FIN/RSV/opcode byte, `mask` `None` sends it
/// unmasked (a protocol violation).
pub fn client_frame(first: u8, payload: &[u8], mask: Option<[u8; 4]>) -> Vec<u8> {
    let mut out = vec![first];
    let mask_bit = if mask.is_some() { 0x80 } else { 0 };
    match payload.len() {
        n if n < 126 => out.push(mask_bit | n as u8),
        n if n < 65536 => {
            out.push(mask_bit | 126);
            out.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            out.push(mask_bit | 127);
            out.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    let mut body = payload.to_vec();
    if let Some(m) = mask {
        out.extend_from_slice(&m);
        for (i, b) in body.iter_mut().enumerate() {
            *b ^= m[i % 4];
        }
    }
    out.extend_from_slice(&body);
    out
}

/// The mask used by [`RawWs::send`].
pub const MASK: [u8; 4] = [0x37, 0xfa, 0x21, 0x3d];

/// Opcodes, for readability.
pub mod op {
    pub const CONT: u8 = 0x0;
    pub const TEXT: u8 = 0x1;
    pub const BINARY: u8 = 0x2;
    pub const CLOSE: u8 = 0x8;
    pub const PING: u8 = 0x9;
    pub const PONG: u8 = 0xA;
    pub const FIN: u8 = 0x80;
}

/// One frame as the server sent it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerFrame {
    pub first: u8,
    pub payload: Vec<u8>,
}

impl ServerFrame {
    pub fn opcode(&self) -> u8 {
        self.first & 0x0f
    }
    pub fn fin(&self) -> bool {
        self.first & 0x80 != 0
    }
    /// Bytes this frame took on the wire.
    pub fn wire_len(&self) -> usize {
        let n = self.payload.len();
        n + if n < 126 {
            2
        } else if n < 65536 {
            4
        } else {
            10
        }
    }
    /// The close code of a close frame (1005 when it has none).
    pub fn close_code(&self) -> u16 {
        if self.payload.len() >= 2 {
            u16::from_be_bytes([self.payload[0], self.payload[1]])
        } else {
            1005
        }
    }
    pub fn text(&self) -> String {
        String::from_utf8(self.payload.clone()).expect("utf-8 text frame")
    }
}

/// A WebSocket client over a plain `TcpStream` that writes frames byte by byte as the test
/// wants them, valid or not, and parses the server's frames itself.
pub struct RawWs {
    pub stream: TcpStream,
    /// Bytes read but not yet parsed.
    buf: Vec<u8>,
}

impl RawWs {
    /// Connects and completes a valid handshake on `path`.
    pub fn connect(addr: SocketAddr, path: &str) -> RawWs {
        Self::handshake(TcpStream::connect(addr).expect("connect"), path)
    }

    /// Completes a handshake on an already connected stream; panics unless it gets 101.
    pub fn handshake(mut stream: TcpStream, path: &str) -> RawWs {
        let req = upgrade_request(
            path,
            &format!("Sec-WebSocket-Key: {WS_KEY}\r\nSec-WebSocket-Version: 13\r\n"),
        );
        stream.write_all(req.as_bytes()).unwrap();
        Self::from_upgraded(stream)
    }

    /// Reads the answer to an upgrade request the caller already wrote; panics unless it is
    /// a valid 101. Reads the head byte by byte, so nothing after it is consumed.
    pub fn from_upgraded(mut stream: TcpStream) -> RawWs {
        stream.set_read_timeout(Some(READ_TIMEOUT)).unwrap();
        let mut head = Vec::new();
        let mut byte = [0u8; 1];
        while !head.ends_with(b"\r\n\r\n") {
            assert!(head.len() < 4096, "response head too long");
            let n = stream.read(&mut byte).expect("read handshake response");
            assert_eq!(n, 1, "closed during the handshake: {head:?}");
            head.push(byte[0]);
        }
        let head = String::from_utf8(head).unwrap();
        assert!(head.starts_with("HTTP/1.1 101 "), "{head}");
        assert!(
            head.contains("Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n"),
            "{head}"
        );
        RawWs {
            stream,
            buf: Vec::new(),
        }
    }

    /// A client over a stream whose handshake is done (e.g. a clone of another's stream, to
    /// read on one thread while another writes).
    pub fn from_stream(stream: TcpStream) -> RawWs {
        stream.set_read_timeout(Some(READ_TIMEOUT)).unwrap();
        RawWs {
            stream,
            buf: Vec::new(),
        }
    }

    /// Writes bytes as they are.
    pub fn send_raw(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).expect("write");
    }

    /// Writes one masked frame with first byte `first` (FIN/RSV bits and opcode).
    pub fn send(&mut self, first: u8, payload: &[u8]) {
        self.send_raw(&client_frame(first, payload, Some(MASK)));
    }

    /// Reads the next frame; `None` on EOF or a reset (the server is gone).
    pub fn read_frame(&mut self) -> Option<ServerFrame> {
        loop {
            if let Some((frame, used)) = parse_server_frame(&self.buf) {
                self.buf.drain(..used);
                return Some(frame);
            }
            let mut chunk = [0u8; 16 * 1024];
            match self.stream.read(&mut chunk) {
                Ok(0) => return None,
                Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                    ) =>
                {
                    panic!("no frame from the server within {READ_TIMEOUT:?}")
                }
                Err(_) => return None,
            }
        }
    }

    /// Reads frames until a close frame; returns it (`None` if the stream ended first).
    /// Other frames (pings, welcome, ticks) are skipped.
    pub fn read_close(&mut self) -> Option<ServerFrame> {
        while let Some(f) = self.read_frame() {
            if f.opcode() == op::CLOSE {
                return Some(f);
            }
        }
        None
    }

    /// Reads frames until one with `opcode`, skipping the others; panics on EOF.
    pub fn read_until(&mut self, opcode: u8) -> ServerFrame {
        loop {
            let f = self.read_frame().expect("stream ended");
            if f.opcode() == opcode {
                return f;
            }
            assert_ne!(f.opcode(), op::CLOSE, "unexpected close {}", f.close_code());
        }
    }

    /// Whether the server ends the stream (EOF or reset) before the read timeout, without
    /// sending anything but control frames.
    pub fn ends(&mut self) -> bool {
        loop {
            match self.read_frame() {
                None => return true,
                Some(f) if f.opcode() >= 0x8 => continue,
                Some(f) => panic!("unexpected data frame after close: {f:?}"),
            }
        }
    }
}

/// Parses one server frame from the front of `buf` (servers never mask).
pub fn parse_server_frame(buf: &[u8]) -> Option<(ServerFrame, usize)> {
    if buf.len() < 2 {
        return None;
    }
    assert_eq!(buf[1] & 0x80, 0, "server frames must not be masked");
    let (len, start) = match buf[1] & 0x7f {
        126 if buf.len() >= 4 => (u16::from_be_bytes([buf[2], buf[3]]) as usize, 4),
        127 if buf.len() >= 10 => {
            let mut b = [0u8; 8];
            b.copy_from_slice(&buf[2..10]);
            (u64::from_be_bytes(b) as usize, 10)
        }
        126 | 127 => return None,
        n => (n as usize, 2),
    };
    if buf.len() < start + len {
        return None;
    }
    let frame = ServerFrame {
        first: buf[0],
        payload: buf[start..start + len].to_vec(),
    };
    Some((frame, start + len))
}
