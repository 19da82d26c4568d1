//! The client side of the wire: the upgrade request and its answer, masked client frames,
//! and an incremental parser for server frames.
//!
//! Server frame headers are read byte by byte with the client's rules: server frames must not
//! be masked (RFC 6455 §5.1). Client frames must be masked; the masking reuses the server's
//! word-at-a-time [`unmask_in_place`] (XOR is its own inverse). The parser works on a byte slice the caller owns and never copies.

use tungstenite::protocol::frame::FrameHeader;
use tungstenite::protocol::frame::coding::{Control, Data, OpCode};

use crate::conn::unmask_in_place;

/// Headers read from an upgrade response; more is a failed handshake.
const MAX_RESPONSE_HEADERS: usize = 32;
/// Largest upgrade response head accepted.
pub const MAX_RESPONSE_HEAD: usize = 8 * 1024;

/// Why a server frame could not be accepted; the connection is dropped and this counted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WireError {
    /// Bad framing (masked server frame, reserved bits, bad opcode or control frame).
    Protocol(&'static str),
    /// A frame larger than `--max-message`.
    TooBig,
}

impl WireError {
    /// The reason counted in the failure table.
    pub fn reason(self) -> &'static str {
        match self {
            WireError::Protocol(_) => "protocol_error",
            WireError::TooBig => "message_too_big",
        }
    }
}

/// A complete frame header found at the start of a buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameInfo {
    /// FIN bit.
    pub fin: bool,
    /// The opcode.
    pub opcode: OpCode,
    /// Bytes of header before the payload.
    pub header_len: usize,
    /// Bytes of payload.
    pub payload_len: usize,
    /// RSV1: the first frame of a compressed message (permessage-deflate). Only a client
    /// that negotiated the extension may accept it; [`parse_header`] leaves that to it.
    pub compressed: bool,
}

impl FrameInfo {
    /// Header plus payload.
    pub fn total_len(&self) -> usize {
        self.header_len + self.payload_len
    }
}

/// Parses the header of the server frame at the start of `buf`. `Ok(None)` means the header
/// itself is not complete yet; the payload may still be incomplete when `Some` is returned
/// (compare [`FrameInfo::total_len`] with what is buffered).
///
/// Read byte by byte rather than through tungstenite's `FrameHeader::parse` (an `io::Read`
/// cursor): this runs once per received message, and was a tenth of the client's CPU.
#[inline]
pub fn parse_header(buf: &[u8], max_message: usize) -> Result<Option<FrameInfo>, WireError> {
    let Some(header_len) = header_len(buf) else {
        return Ok(None);
    };
    if buf.len() < header_len {
        return Ok(None);
    }
    let (b0, b1) = (buf[0], buf[1]);
    // `& 0x0f` keeps the byte within the 16 opcodes `OpCode::from` maps.
    let opcode = OpCode::from(b0 & 0x0f);
    if matches!(
        opcode,
        OpCode::Data(Data::Reserved(_)) | OpCode::Control(Control::Reserved(_))
    ) {
        return Err(WireError::Protocol("reserved opcode"));
    }
    if b1 & 0x80 != 0 {
        return Err(WireError::Protocol("masked server frame"));
    }
    if b0 & 0x30 != 0 {
        return Err(WireError::Protocol("reserved bits set"));
    }
    let fin = b0 & 0x80 != 0;
    let len = match b1 & 0x7f {
        126 | 127 => buf[2..header_len]
            .iter()
            .fold(0u64, |n, &b| (n << 8) | u64::from(b)),
        n => u64::from(n),
    };
    if let OpCode::Control(_) = opcode {
        if len > 125 || !fin {
            return Err(WireError::Protocol("bad control frame"));
        }
    } else if len > max_message as u64 {
        return Err(WireError::TooBig);
    }
    Ok(Some(FrameInfo {
        fin,
        opcode,
        header_len,
        // At most max_message (a usize) or 125, checked above.
        payload_len: len as usize,
        compressed: b0 & 0x40 != 0,
    }))
}

/// The header length of the frame starting at `buf`, known from its first two bytes.
pub fn header_len(buf: &[u8]) -> Option<usize> {
    let b1 = *buf.get(1)?;
    let ext = match b1 & 0x7f {
        126 => 2,
        127 => 8,
        _ => 0,
    };
    let mask = if b1 & 0x80 != 0 { 4 } else { 0 };
    Some(2 + ext + mask)
}

/// Splits a byte stream into server frames. Complete frames in a read are handed out in
/// place; only an incomplete tail is kept, and completing it copies just the bytes it lacks,
/// so a connection holds no buffer between frames and a large batched read costs no copy.
#[derive(Debug, Default)]
pub struct FrameReader {
    partial: Vec<u8>,
}

impl FrameReader {
    /// Bytes of an incomplete frame held.
    pub fn buffered(&self) -> usize {
        self.partial.len()
    }

    /// Feeds received bytes; `on_frame` gets each complete frame's header and payload and
    /// returns false to stop (the rest is dropped: the connection is closing).
    pub fn feed(
        &mut self,
        mut data: &[u8],
        max_message: usize,
        mut on_frame: impl FnMut(FrameInfo, &[u8]) -> bool,
    ) -> Result<(), WireError> {
        while !self.partial.is_empty() && !data.is_empty() {
            let have = self.partial.len();
            let need = match header_len(&self.partial) {
                None => 2 - have,
                Some(h) if have < h => h - have,
                Some(_) => match parse_header(&self.partial, max_message)? {
                    Some(info) => info.total_len() - have,
                    None => return Err(WireError::Protocol("bad header")),
                },
            };
            let take = need.min(data.len());
            self.partial.extend_from_slice(&data[..take]);
            data = &data[take..];
            if let Some(info) = parse_header(&self.partial, max_message)?
                && self.partial.len() == info.total_len()
            {
                let frame = std::mem::take(&mut self.partial);
                let go_on = on_frame(info, &frame[info.header_len..]);
                self.partial = frame;
                self.partial.clear();
                if self.partial.capacity() > 64 * 1024 {
                    self.partial = Vec::new();
                }
                if !go_on {
                    return Ok(());
                }
            }
        }
        let mut pos = 0;
        while pos < data.len() {
            let info = match parse_header(&data[pos..], max_message)? {
                Some(info) if data.len() - pos >= info.total_len() => info,
                _ => break,
            };
            let payload = &data[pos + info.header_len..pos + info.total_len()];
            pos += info.total_len();
            if !on_frame(info, payload) {
                return Ok(());
            }
        }
        self.partial.extend_from_slice(&data[pos..]);
        Ok(())
    }
}

/// Appends a masked client frame (FIN set) carrying `payload` to `out`.
pub fn encode_masked(opcode: OpCode, payload: &[u8], mask: [u8; 4], out: &mut Vec<u8>) {
    let header = FrameHeader {
        is_final: true,
        rsv1: false,
        rsv2: false,
        rsv3: false,
        opcode,
        mask: Some(mask),
    };
    // Writing into a Vec cannot fail.
    let _ = header.format(payload.len() as u64, out);
    let start = out.len();
    out.extend_from_slice(payload);
    unmask_in_place(&mut out[start..], mask);
}

/// The HTTP upgrade request for `path` on `host`, with the client's `key`.
pub fn upgrade_request(host: &str, path: &str, key: &str) -> Vec<u8> {
    upgrade_request_offering(host, path, key, None)
}

/// The offer of permessage-deflate a browser makes.
pub const DEFLATE_OFFER: &str = "permessage-deflate; client_max_window_bits";

/// [`upgrade_request`] offering `extensions` (`Sec-WebSocket-Extensions`), if any.
pub fn upgrade_request_offering(
    host: &str,
    path: &str,
    key: &str,
    extensions: Option<&str>,
) -> Vec<u8> {
    let offer = extensions
        .map(|e| format!("Sec-WebSocket-Extensions: {e}\r\n"))
        .unwrap_or_default();
    format!(
        "GET {path} HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n{offer}\r\n"
    )
    .into_bytes()
}

/// Whether the upgrade response head at the start of `buf` agrees to permessage-deflate.
pub fn agreed_deflate(buf: &[u8]) -> bool {
    let mut headers = [httparse::EMPTY_HEADER; MAX_RESPONSE_HEADERS];
    let mut resp = httparse::Response::new(&mut headers);
    if resp.parse(buf).is_err() {
        return false;
    }
    resp.headers.iter().any(|h| {
        h.name.eq_ignore_ascii_case("sec-websocket-extensions")
            && String::from_utf8_lossy(h.value)
                .split(',')
                .any(|ext| ext.trim().starts_with("permessage-deflate"))
    })
}

/// Why an upgrade did not complete.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HandshakeError {
    /// The server answered with another status (e.g. 503 when full).
    Status(u16),
    /// 101 without the right `Sec-WebSocket-Accept`.
    BadAccept,
    /// Not an HTTP response, or a head larger than [`MAX_RESPONSE_HEAD`].
    Malformed,
}

impl HandshakeError {
    /// The reason counted in the failure table, e.g. `http_503`.
    pub fn reason(&self) -> String {
        match self {
            HandshakeError::Status(s) => format!("http_{s}"),
            HandshakeError::BadAccept => "bad_accept".into(),
            HandshakeError::Malformed => "bad_response".into(),
        }
    }
}

/// Checks the upgrade response at the start of `buf` for the client `key`. `Ok(None)`: the
/// head is incomplete; `Ok(Some(n))`: upgraded, the head used `n` bytes (frames may follow).
pub fn check_upgrade_response(buf: &[u8], key: &str) -> Result<Option<usize>, HandshakeError> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_RESPONSE_HEADERS];
    let mut resp = httparse::Response::new(&mut headers);
    let used = match resp.parse(buf) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) if buf.len() <= MAX_RESPONSE_HEAD => return Ok(None),
        Ok(httparse::Status::Partial) | Err(_) => return Err(HandshakeError::Malformed),
    };
    let status = resp.code.unwrap_or(0);
    if status != 101 {
        return Err(HandshakeError::Status(status));
    }
    let expected = tungstenite::handshake::derive_accept_key(key.as_bytes());
    let accepted = resp.headers.iter().any(|h| {
        h.name.eq_ignore_ascii_case("sec-websocket-accept") && h.value == expected.as_bytes()
    });
    if !accepted {
        return Err(HandshakeError::BadAccept);
    }
    Ok(Some(used))
}

/// The close code of a close frame's payload (1005 when it has none).
pub fn close_code(payload: &[u8]) -> u16 {
    match payload {
        [a, b, ..] => u16::from_be_bytes([*a, *b]),
        _ => crate::frame::close_code::NO_STATUS,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_frames_parse_in_every_length_format() {
        for len in [0usize, 5, 125, 126, 65535, 65536, 100_000] {
            let payload = vec![b'a'; len];
            let f = crate::frame::text(std::str::from_utf8(&payload).unwrap());
            let info = parse_header(&f, 1 << 20).unwrap().unwrap();
            assert_eq!(info.total_len(), f.len(), "len {len}");
            assert_eq!(info.payload_len, len);
            assert!(info.fin);
            assert_eq!(info.opcode, OpCode::Data(Data::Text));
        }
    }

    #[test]
    fn incomplete_headers_ask_for_more() {
        let f = crate::frame::text(&"x".repeat(70_000));
        for cut in 0..10 {
            assert_eq!(parse_header(&f[..cut], 1 << 20), Ok(None), "cut {cut}");
        }
        assert_eq!(header_len(&f[..1]), None);
        assert_eq!(header_len(&f[..2]), Some(10));
        assert_eq!(header_len(b"\x81\x05"), Some(2));
        assert_eq!(header_len(b"\x81\xfe"), Some(8));
        // The header is complete at 10 bytes even though the payload is not.
        assert!(parse_header(&f[..10], 1 << 20).unwrap().is_some());
    }

    #[test]
    fn client_rules_for_server_frames() {
        let mut masked = Vec::new();
        encode_masked(OpCode::Data(Data::Text), b"hi", [1, 2, 3, 4], &mut masked);
        assert_eq!(
            parse_header(&masked, 1024),
            Err(WireError::Protocol("masked server frame"))
        );
        let big = crate::frame::text(&"y".repeat(2000));
        assert_eq!(parse_header(&big, 1000), Err(WireError::TooBig));
        // RSV1 marks a compressed message; whether it is allowed is the connection's call.
        assert!(parse_header(b"\xc1\x00", 1000).unwrap().unwrap().compressed);
        assert!(!parse_header(b"\x81\x00", 1000).unwrap().unwrap().compressed);
        assert!(parse_header(b"\xa1\x00", 1000).is_err(), "rsv2");
        assert!(parse_header(b"\x91\x00", 1000).is_err(), "rsv3");
        assert!(parse_header(b"\x09\x00", 1000).is_err(), "fragmented ping");
        assert_eq!(
            parse_header(b"\x83\x00", 1000),
            Err(WireError::Protocol("reserved opcode"))
        );
        assert!(parse_header(b"\x8b\x00", 1000).is_err(), "reserved control");
        assert!(
            parse_header(b"\x88\x7e\x00\x7e", 1000).is_err(),
            "long close"
        );
    }

    #[test]
    fn masked_frames_decode_with_the_server_parser() {
        let mut out = Vec::new();
        let text = "{\"op\":\"publish\",\"topic\":\"t\",\"data\":{\"sent_us\":1}}";
        encode_masked(
            OpCode::Data(Data::Text),
            text.as_bytes(),
            [9, 8, 7, 6],
            &mut out,
        );
        encode_masked(OpCode::Control(Control::Pong), b"p", [1, 1, 1, 1], &mut out);
        let mut asm = crate::conn::Assembler::default();
        let mut seen = Vec::new();
        let used = asm
            .feed(&mut out, 1024, |ev| {
                seen.push(format!("{ev:?}"));
                crate::conn::Flow::Continue
            })
            .unwrap();
        assert_eq!(used, out.len());
        assert_eq!(seen, vec![format!("Text({text:?})"), "Pong".to_string()]);
    }

    #[test]
    fn upgrade_responses() {
        let key = "dGhlIHNhbXBsZSBub25jZQ==";
        let ok =
            b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
                   Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n\x81\x01x";
        assert_eq!(check_upgrade_response(ok, key), Ok(Some(ok.len() - 3)));
        assert_eq!(check_upgrade_response(&ok[..20], key), Ok(None));
        assert!(!agreed_deflate(ok));
        let zipped = b"HTTP/1.1 101 Switching Protocols\r\nSec-WebSocket-Extensions: \
                       permessage-deflate; server_no_context_takeover\r\n\r\n";
        assert!(agreed_deflate(zipped));
        let offer = upgrade_request_offering("h", "/ws", key, Some(DEFLATE_OFFER));
        assert!(String::from_utf8(offer).unwrap().contains(
            "\r\nSec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n\r\n"
        ));
        let wrong = b"HTTP/1.1 101 Switching Protocols\r\nSec-WebSocket-Accept: nope\r\n\r\n";
        assert_eq!(
            check_upgrade_response(wrong, key),
            Err(HandshakeError::BadAccept)
        );
        let full = b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\n\r\n";
        let err = check_upgrade_response(full, key).unwrap_err();
        assert_eq!(err.reason(), "http_503");
        assert_eq!(
            check_upgrade_response(b"SSH-2.0\r\n\r\n", key),
            Err(HandshakeError::Malformed)
        );
        let req = String::from_utf8(upgrade_request("127.0.0.1:1", "/ws?topics=a", key)).unwrap();
        let parsed = crate::http::parse_request(req.as_bytes(), 8192)
            .unwrap()
            .unwrap()
            .0;
        assert!(matches!(
            crate::http::route(&parsed),
            crate::http::Target::Upgrade { .. }
        ));
    }

    /// Feeds `stream` cut into pieces of `piece` bytes; returns the payloads seen.
    fn split_feed(stream: &[u8], piece: usize) -> Vec<Vec<u8>> {
        let mut r = FrameReader::default();
        let mut seen = Vec::new();
        for chunk in stream.chunks(piece) {
            r.feed(chunk, 1 << 20, |_, p| {
                seen.push(p.to_vec());
                true
            })
            .unwrap();
        }
        assert_eq!(r.buffered(), 0);
        seen
    }

    #[test]
    fn frames_split_anywhere_are_reassembled() {
        let sizes = [0usize, 1, 7, 125, 126, 300, 65_535, 65_536, 70_000];
        let mut stream = Vec::new();
        let mut want = Vec::new();
        for (i, &n) in sizes.iter().enumerate() {
            let payload: Vec<u8> = (0..n).map(|j| b'a' + ((i + j) % 26) as u8).collect();
            stream.extend_from_slice(&crate::frame::text(std::str::from_utf8(&payload).unwrap()));
            want.push(payload);
        }
        for piece in [1, 2, 3, 9, 10, 11, 127, 4096, 65_537, stream.len()] {
            assert_eq!(split_feed(&stream, piece), want, "piece {piece}");
        }
    }

    #[test]
    fn the_reader_stops_when_asked_and_reports_bad_frames() {
        let mut stream = crate::frame::text("a").to_vec();
        stream.extend_from_slice(&crate::frame::text("b"));
        let mut r = FrameReader::default();
        let mut n = 0;
        r.feed(&stream, 1024, |_, _| {
            n += 1;
            false
        })
        .unwrap();
        assert_eq!(n, 1);
        let mut r = FrameReader::default();
        // A partial header, then a header announcing more than the limit.
        r.feed(b"\x81", 100, |_, _| true).unwrap();
        assert_eq!(
            r.feed(b"\x7e\x10\x00", 100, |_, _| true),
            Err(WireError::TooBig)
        );
    }

    #[test]
    fn close_codes() {
        assert_eq!(close_code(&[0x03, 0xe9, b'x']), 1001);
        assert_eq!(close_code(&[]), 1005);
    }
}
