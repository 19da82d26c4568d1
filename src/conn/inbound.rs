//! Client-to-server frames: parsing, validation and message reassembly (RFC 6455 §5).
//!
//! Headers are parsed with tungstenite's [`FrameHeader`]; this module adds the rules a server
//! must enforce and turns violations into close codes. It works on a byte slice the caller
//! owns (the shard's scratch buffer, or the connection's small partial-frame buffer), unmasks
//! payloads in place, and only copies when a data message arrives in fragments.

use std::io::Cursor;
use std::ops::Range;

use tungstenite::protocol::frame::FrameHeader;
use tungstenite::protocol::frame::coding::{Control, Data, OpCode};

use crate::frame::{close_code, is_valid_received_close_code};

/// Why a connection must be failed; each maps to the close code sent to the peer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Violation {
    /// Bad framing: unmasked frame, reserved bits, unknown opcode, bad control frame,
    /// continuation out of place, a length not minimally encoded. Close 1002.
    Protocol(&'static str),
    /// A text message (or close reason) that is not UTF-8. Close 1007.
    InvalidUtf8,
    /// A message larger than the configured limit. Close 1009.
    TooBig,
}

impl Violation {
    /// The close code this violation is answered with.
    pub fn close_code(&self) -> u16 {
        match self {
            Violation::Protocol(_) => close_code::PROTOCOL,
            Violation::InvalidUtf8 => close_code::INVALID_PAYLOAD,
            Violation::TooBig => close_code::TOO_BIG,
        }
    }

    /// A short reason for the close frame and the log.
    pub fn reason(&self) -> &'static str {
        match self {
            Violation::Protocol(why) => why,
            Violation::InvalidUtf8 => "invalid utf-8",
            Violation::TooBig => "message too big",
        }
    }
}

/// One complete message or control frame, borrowed from the caller's buffer.
#[derive(Debug, PartialEq, Eq)]
pub enum Event<'a> {
    /// A complete text message (UTF-8 checked).
    Text(&'a str),
    /// A complete binary message.
    Binary(&'a [u8]),
    /// A ping with its payload (to be echoed in a pong).
    Ping(&'a [u8]),
    /// A pong (only proves liveness).
    Pong,
    /// A close frame: the code (1005 when absent) and the reason.
    Close(u16, &'a str),
}

/// What the event handler wants after an event.
#[derive(Debug, PartialEq, Eq)]
pub enum Flow {
    /// Keep parsing.
    Continue,
    /// Stop: the connection is closing, ignore the rest of the input.
    Stop,
}

/// A header whose payload is not yet fully buffered, remembered so the caller can tell how
/// many more bytes are needed.
#[derive(Debug)]
struct Parsed {
    fin: bool,
    opcode: OpCode,
    payload: Range<usize>,
}

/// Reassembles fragmented data messages. Holds no allocation between messages unless a
/// fragmented message is in flight.
#[derive(Debug, Default)]
pub struct Assembler {
    /// Opcode of the message being reassembled (`Text` or `Binary`), if any.
    kind: Option<Data>,
    /// Payload received so far for the fragmented message.
    buf: Vec<u8>,
}

impl Assembler {
    /// Parses as many complete frames from `input` as it holds, calling `on_event` for each
    /// message or control frame. Returns how many bytes were consumed; the caller keeps the
    /// rest for the next read. `max_message` bounds every data message, fragmented or not.
    pub fn feed(
        &mut self,
        input: &mut [u8],
        max_message: usize,
        mut on_event: impl FnMut(Event<'_>) -> Flow,
    ) -> Result<usize, Violation> {
        let mut pos = 0;
        loop {
            let Some(frame) = parse_frame(&input[pos..], max_message, self.buf.len())? else {
                return Ok(pos);
            };
            let payload = (pos + frame.payload.start)..(pos + frame.payload.end);
            pos = payload.end;
            let mask = frame_mask(&input[..payload.start]);
            unmask_in_place(&mut input[payload.clone()], mask);
            let data = &input[payload];
            let flow = match frame.opcode {
                OpCode::Control(Control::Ping) => on_event(Event::Ping(data)),
                OpCode::Control(Control::Pong) => on_event(Event::Pong),
                OpCode::Control(Control::Close) => {
                    let (code, reason) = parse_close(data)?;
                    on_event(Event::Close(code, reason))
                }
                OpCode::Data(Data::Continue) => {
                    let Some(kind) = self.kind else {
                        return Err(Violation::Protocol("continuation without a message"));
                    };
                    if self.buf.len() + data.len() > max_message {
                        return Err(Violation::TooBig);
                    }
                    self.buf.extend_from_slice(data);
                    if frame.fin {
                        self.kind = None;
                        let message = std::mem::take(&mut self.buf);
                        let flow = deliver(kind, &message, &mut on_event)?;
                        self.buf = message;
                        self.buf.clear();
                        if self.buf.capacity() > 4096 {
                            self.buf = Vec::new();
                        }
                        flow
                    } else {
                        Flow::Continue
                    }
                }
                OpCode::Data(kind @ (Data::Text | Data::Binary)) => {
                    if self.kind.is_some() {
                        return Err(Violation::Protocol("new message inside a fragmented one"));
                    }
                    if frame.fin {
                        deliver(kind, data, &mut on_event)?
                    } else {
                        self.kind = Some(kind);
                        self.buf.extend_from_slice(data);
                        Flow::Continue
                    }
                }
                // Reserved opcodes are rejected by `parse_frame`.
                OpCode::Data(Data::Reserved(_)) | OpCode::Control(Control::Reserved(_)) => {
                    return Err(Violation::Protocol("reserved opcode"));
                }
            };
            if flow == Flow::Stop {
                return Ok(pos);
            }
        }
    }

    /// Whether a fragmented message is in flight (its bytes count against memory).
    pub fn in_progress(&self) -> bool {
        self.kind.is_some()
    }
}

fn deliver(
    kind: Data,
    data: &[u8],
    on_event: &mut impl FnMut(Event<'_>) -> Flow,
) -> Result<Flow, Violation> {
    Ok(match kind {
        Data::Text => {
            let text = std::str::from_utf8(data).map_err(|_| Violation::InvalidUtf8)?;
            on_event(Event::Text(text))
        }
        _ => on_event(Event::Binary(data)),
    })
}

/// Parses one frame header and checks the server-side rules. `Ok(None)` means more bytes are
/// needed. `assembled` is the size of the fragmented message so far, so an oversized message
/// is refused as soon as its header arrives, before its payload is buffered.
fn parse_frame(
    input: &[u8],
    max_message: usize,
    assembled: usize,
) -> Result<Option<Parsed>, Violation> {
    let mut cursor = Cursor::new(input);
    let (header, len) = match FrameHeader::parse(&mut cursor) {
        Ok(Some(parsed)) => parsed,
        Ok(None) => return Ok(None),
        Err(_) => return Err(Violation::Protocol("reserved opcode")),
    };
    if header.rsv1 || header.rsv2 || header.rsv3 {
        return Err(Violation::Protocol("reserved bits set"));
    }
    if header.mask.is_none() {
        return Err(Violation::Protocol("unmasked client frame"));
    }
    // A malformed length is a framing error whatever the size it claims (a parsed header
    // has its two fixed bytes).
    check_length_encoding(input.get(1).map_or(0, |b| b & 0x7f), len)?;
    if let OpCode::Control(_) = header.opcode {
        if len > 125 {
            return Err(Violation::Protocol("control frame over 125 bytes"));
        }
        if !header.is_final {
            return Err(Violation::Protocol("fragmented control frame"));
        }
    } else if len > (max_message.saturating_sub(assembled)) as u64 {
        return Err(Violation::TooBig);
    }
    let start = cursor.position() as usize;
    // `len` is at most max_message here (or 125), so it fits in usize.
    let end = start + len as usize;
    if input.len() < end {
        return Ok(None);
    }
    Ok(Some(Parsed {
        fin: header.is_final,
        opcode: header.opcode,
        payload: start..end,
    }))
}

/// RFC 6455 §5.2: "the minimal number of bytes MUST be used to encode the length", and a
/// 64-bit length has its most significant bit clear. `field` is the 7-bit length field
/// (126: a 16-bit length follows, 127: a 64-bit one), `len` the length it gave.
fn check_length_encoding(field: u8, len: u64) -> Result<(), Violation> {
    match field {
        126 if len < 126 => Err(Violation::Protocol("16-bit length under 126")),
        127 if len < 65536 => Err(Violation::Protocol("64-bit length under 65536")),
        127 if len >> 63 != 0 => Err(Violation::Protocol("64-bit length with the top bit set")),
        _ => Ok(()),
    }
}

/// The mask key sits in the four bytes right before the payload (checked present above).
fn frame_mask(header: &[u8]) -> [u8; 4] {
    let n = header.len();
    [header[n - 4], header[n - 3], header[n - 2], header[n - 1]]
}

/// XORs `data` with the 4-byte `mask`, a word at a time where possible.
pub fn unmask_in_place(data: &mut [u8], mask: [u8; 4]) {
    let word = u64::from_ne_bytes([
        mask[0], mask[1], mask[2], mask[3], mask[0], mask[1], mask[2], mask[3],
    ]);
    let mut chunks = data.chunks_exact_mut(8);
    for chunk in &mut chunks {
        let mut v = [0u8; 8];
        v.copy_from_slice(chunk);
        chunk.copy_from_slice(&(u64::from_ne_bytes(v) ^ word).to_ne_bytes());
    }
    // Chunks of 8 keep the mask phase aligned, so the tail starts at mask index 0.
    for (i, b) in chunks.into_remainder().iter_mut().enumerate() {
        *b ^= mask[i & 3];
    }
}

fn parse_close(payload: &[u8]) -> Result<(u16, &str), Violation> {
    match payload.len() {
        0 => Ok((close_code::NO_STATUS, "")),
        1 => Err(Violation::Protocol("close payload of one byte")),
        _ => {
            let code = u16::from_be_bytes([payload[0], payload[1]]);
            if !is_valid_received_close_code(code) {
                return Err(Violation::Protocol("invalid close code"));
            }
            let reason = std::str::from_utf8(&payload[2..]).map_err(|_| Violation::InvalidUtf8)?;
            Ok((code, reason))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Encodes a masked client frame like a browser would.
    pub(crate) fn client_frame(first: u8, payload: &[u8], mask: Option<[u8; 4]>) -> Vec<u8> {
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

    const M: Option<[u8; 4]> = Some([0x11, 0x22, 0x33, 0x44]);

    #[derive(Debug, PartialEq)]
    enum Owned {
        Text(String),
        Binary(Vec<u8>),
        Ping(Vec<u8>),
        Pong,
        Close(u16, String),
    }

    fn run(bytes: &[u8], max: usize) -> (Result<usize, Violation>, Vec<Owned>) {
        let mut asm = Assembler::default();
        let mut buf = bytes.to_vec();
        let mut seen = Vec::new();
        let res = asm.feed(&mut buf, max, |ev| {
            seen.push(match ev {
                Event::Text(t) => Owned::Text(t.into()),
                Event::Binary(b) => Owned::Binary(b.into()),
                Event::Ping(p) => Owned::Ping(p.into()),
                Event::Pong => Owned::Pong,
                Event::Close(c, r) => Owned::Close(c, r.into()),
            });
            Flow::Continue
        });
        (res, seen)
    }

    #[test]
    fn masked_text_is_unmasked_and_delivered() {
        let f = client_frame(0x81, b"hello world, a longer text", M);
        let (res, seen) = run(&f, 1024);
        assert_eq!(res, Ok(f.len()));
        assert_eq!(seen, vec![Owned::Text("hello world, a longer text".into())]);
    }

    #[test]
    fn unmask_matches_bytewise_for_every_length() {
        for len in 0..40 {
            let data: Vec<u8> = (0..len as u8).collect();
            let mask = [1, 2, 3, 250];
            let mut fast = data.clone();
            unmask_in_place(&mut fast, mask);
            let slow: Vec<u8> = data
                .iter()
                .enumerate()
                .map(|(i, b)| b ^ mask[i % 4])
                .collect();
            assert_eq!(fast, slow);
        }
    }

    #[test]
    fn partial_frames_consume_nothing_until_complete() {
        let f = client_frame(0x82, &[7u8; 300], M);
        for cut in [1, 2, 4, 8, 100, f.len() - 1] {
            let (res, seen) = run(&f[..cut], 1024);
            assert_eq!(res, Ok(0), "cut at {cut}");
            assert!(seen.is_empty());
        }
    }

    #[test]
    fn unmasked_frame_is_a_protocol_error() {
        let f = client_frame(0x81, b"hi", None);
        assert_eq!(run(&f, 1024).0.unwrap_err().close_code(), 1002);
    }

    #[test]
    fn reserved_bits_and_opcodes_are_protocol_errors() {
        for first in [0xC1u8, 0xA1, 0x91, 0x83, 0x8B] {
            let f = client_frame(first, b"x", M);
            assert_eq!(
                run(&f, 1024).0.unwrap_err().close_code(),
                1002,
                "{first:#x}"
            );
        }
    }

    #[test]
    fn bad_control_frames() {
        let long_ping = client_frame(0x89, &[0u8; 126], M);
        assert_eq!(run(&long_ping, 1024).0.unwrap_err().close_code(), 1002);
        let fragmented_ping = client_frame(0x09, b"x", M);
        assert_eq!(
            run(&fragmented_ping, 1024).0.unwrap_err().close_code(),
            1002
        );
        let one_byte_close = client_frame(0x88, &[3], M);
        assert_eq!(run(&one_byte_close, 1024).0.unwrap_err().close_code(), 1002);
        let bad_code = client_frame(0x88, &1005u16.to_be_bytes(), M);
        assert_eq!(run(&bad_code, 1024).0.unwrap_err().close_code(), 1002);
    }

    #[test]
    fn invalid_utf8_is_1007() {
        let f = client_frame(0x81, &[0xff, 0xfe], M);
        assert_eq!(run(&f, 1024).0.unwrap_err().close_code(), 1007);
        // Split in the middle of a valid multi-byte char across fragments: still fine.
        let text = "héllo".as_bytes();
        let mut two = client_frame(0x01, &text[..2], M);
        two.extend(client_frame(0x80, &text[2..], M));
        assert_eq!(run(&two, 1024).1, vec![Owned::Text("héllo".into())]);
    }

    #[test]
    fn oversized_messages_are_refused_from_the_header() {
        // Only the header of a 1 MB frame: refused without waiting for the payload.
        let f = client_frame(0x82, &vec![0u8; 1 << 20], M);
        assert_eq!(run(&f[..14], 1000).0.unwrap_err().close_code(), 1009);
        // Fragments that add up past the limit.
        let mut frags = client_frame(0x02, &[1u8; 600], M);
        frags.extend(client_frame(0x80, &[1u8; 600], M));
        assert_eq!(run(&frags, 1000).0.unwrap_err().close_code(), 1009);
    }

    /// A masked frame whose length is written with `field` (126 or 127) and `len` as given.
    fn long_form(first: u8, field: u8, len: u64, payload: &[u8]) -> Vec<u8> {
        let mut f = vec![first, 0x80 | field];
        match field {
            126 => f.extend_from_slice(&(len as u16).to_be_bytes()),
            _ => f.extend_from_slice(&len.to_be_bytes()),
        }
        let m = M.unwrap();
        f.extend_from_slice(&m);
        f.extend(payload.iter().enumerate().map(|(i, b)| b ^ m[i % 4]));
        f
    }

    #[test]
    fn lengths_must_be_minimally_encoded() {
        for (first, field, len) in [(0x81, 126, 5), (0x82, 126, 125), (0x82, 127, 65535)] {
            let f = long_form(first, field, len as u64, &vec![b'a'; len]);
            assert_eq!(run(&f, 1 << 20).0.unwrap_err().close_code(), 1002);
            // Refused from the header (mask included), before the payload arrives.
            let header = if field == 126 { 8 } else { 14 };
            assert_eq!(run(&f[..header], 1 << 20).0.unwrap_err().close_code(), 1002);
        }
        let ping = long_form(0x89, 126, 1, b"p");
        assert_eq!(run(&ping, 1024).0.unwrap_err().close_code(), 1002);
        // The smallest length of each form is fine.
        for (field, len) in [(126u8, 126usize), (127, 65536)] {
            let f = long_form(0x82, field, len as u64, &vec![1; len]);
            assert_eq!(run(&f, 1 << 20).0, Ok(f.len()), "{field}/{len}");
        }
        // A 64-bit length with the top bit set is a framing error (1002) under any limit,
        // before its size is looked at.
        let top = long_form(0x82, 127, 1 << 63, b"");
        assert_eq!(run(&top, 1 << 20).0.unwrap_err().close_code(), 1002);
        assert_eq!(run(&top, usize::MAX).0.unwrap_err().close_code(), 1002);
    }

    #[test]
    fn fragments_reassemble_with_interleaved_control_frames() {
        let mut bytes = client_frame(0x02, b"ab", M);
        bytes.extend(client_frame(0x89, b"p", M));
        bytes.extend(client_frame(0x00, b"cd", M));
        bytes.extend(client_frame(0x80, b"ef", M));
        let (res, seen) = run(&bytes, 1024);
        assert_eq!(res, Ok(bytes.len()));
        assert_eq!(
            seen,
            vec![
                Owned::Ping(b"p".to_vec()),
                Owned::Binary(b"abcdef".to_vec())
            ]
        );
    }

    #[test]
    fn continuation_rules() {
        let stray = client_frame(0x80, b"x", M);
        assert_eq!(run(&stray, 1024).0.unwrap_err().close_code(), 1002);
        let mut nested = client_frame(0x01, b"a", M);
        nested.extend(client_frame(0x81, b"b", M));
        assert_eq!(run(&nested, 1024).0.unwrap_err().close_code(), 1002);
    }

    #[test]
    fn close_and_pong_events() {
        let mut payload = 1000u16.to_be_bytes().to_vec();
        payload.extend_from_slice(b"bye");
        let mut bytes = client_frame(0x8A, b"", M);
        bytes.extend(client_frame(0x88, &payload, M));
        let (_, seen) = run(&bytes, 1024);
        assert_eq!(seen, vec![Owned::Pong, Owned::Close(1000, "bye".into())]);
        let (_, seen) = run(&client_frame(0x88, b"", M), 1024);
        assert_eq!(seen, vec![Owned::Close(1005, String::new())]);
    }

    #[test]
    fn stop_leaves_the_rest_unconsumed() {
        let a = client_frame(0x81, b"a", M);
        let mut bytes = a.clone();
        bytes.extend(client_frame(0x81, b"b", M));
        let mut asm = Assembler::default();
        let used = asm.feed(&mut bytes, 1024, |_| Flow::Stop).unwrap();
        assert_eq!(used, a.len());
    }
}
