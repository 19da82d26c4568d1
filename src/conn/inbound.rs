//! Client-to-server frames: parsing, validation and message reassembly (RFC 6455 §5).
//!
//! Headers are parsed with tungstenite's [`FrameHeader`]; this module adds the rules a server
//! must enforce and turns violations into close codes. It works on a byte slice the caller
//! owns (the shard's scratch buffer, or the connection's small partial-frame buffer), unmasks
//! payloads in place, and only copies when a data message arrives in fragments.
//!
//! With permessage-deflate negotiated, a data message whose first frame has RSV1 set is
//! compressed: it is reassembled like any other, then inflated by the shard's [`Inflater`],
//! never past `--max-message` (RFC 7692 §6.1; RSV1 anywhere else is still a protocol error).

use std::io::Cursor;
use std::ops::Range;

use tungstenite::protocol::frame::FrameHeader;
use tungstenite::protocol::frame::coding::{Control, Data, OpCode};

use crate::deflate::{InflateError, Inflater};
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
    /// A compressed message that inflates past the limit. Close 1009.
    InflatedTooBig,
    /// A compressed message that is not valid DEFLATE data. Close 1007.
    BadCompression,
}

impl Violation {
    /// The close code this violation is answered with.
    pub fn close_code(&self) -> u16 {
        match self {
            Violation::Protocol(_) => close_code::PROTOCOL,
            Violation::InvalidUtf8 | Violation::BadCompression => close_code::INVALID_PAYLOAD,
            Violation::TooBig | Violation::InflatedTooBig => close_code::TOO_BIG,
        }
    }

    /// A short reason for the close frame and the log.
    pub fn reason(&self) -> &'static str {
        match self {
            Violation::Protocol(why) => why,
            Violation::InvalidUtf8 => "invalid utf-8",
            Violation::TooBig => "message too big",
            Violation::InflatedTooBig => "message too big once inflated",
            Violation::BadCompression => "invalid compressed data",
        }
    }

    /// Whether it is about a compressed message's content.
    pub fn is_inflate(&self) -> bool {
        matches!(self, Violation::InflatedTooBig | Violation::BadCompression)
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
    /// RSV1: the message (this is its first frame) is compressed.
    compressed: bool,
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
    /// Whether the fragmented message is compressed.
    compressed: bool,
}

impl Assembler {
    /// Parses as many complete frames from `input` as it holds, calling `on_event` for each
    /// message or control frame. Returns how many bytes were consumed; the caller keeps the
    /// rest for the next read. `max_message` bounds every data message, fragmented or not.
    pub fn feed(
        &mut self,
        input: &mut [u8],
        max_message: usize,
        on_event: impl FnMut(Event<'_>) -> Flow,
    ) -> Result<usize, Violation> {
        self.feed_inflating(input, max_message, None, on_event)
    }

    /// [`Assembler::feed`] for a connection that negotiated permessage-deflate: compressed
    /// messages are inflated with `inflater` (without one, RSV1 is a protocol error).
    pub fn feed_inflating(
        &mut self,
        input: &mut [u8],
        max_message: usize,
        mut inflater: Option<&mut Inflater>,
        mut on_event: impl FnMut(Event<'_>) -> Flow,
    ) -> Result<usize, Violation> {
        let deflate = inflater.is_some();
        let mut pos = 0;
        loop {
            let Some(frame) = parse_frame(&input[pos..], max_message, self.buf.len(), deflate)?
            else {
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
                        let compressed = std::mem::take(&mut self.compressed);
                        let inflater = inflater.as_deref_mut().filter(|_| compressed);
                        let flow = deliver(kind, &message, inflater, max_message, &mut on_event)?;
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
                        let inflater = inflater.as_deref_mut().filter(|_| frame.compressed);
                        deliver(kind, data, inflater, max_message, &mut on_event)?
                    } else {
                        self.kind = Some(kind);
                        self.compressed = frame.compressed;
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

/// Hands a complete message to `on_event`, inflated first when `inflater` is given (the
/// message is compressed).
fn deliver(
    kind: Data,
    data: &[u8],
    inflater: Option<&mut Inflater>,
    max_message: usize,
    on_event: &mut impl FnMut(Event<'_>) -> Flow,
) -> Result<Flow, Violation> {
    let data = match inflater {
        Some(inflater) => inflater.inflate(data, max_message).map_err(|e| match e {
            InflateError::TooBig => Violation::InflatedTooBig,
            InflateError::Invalid => Violation::BadCompression,
        })?,
        None => data,
    };
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
/// is refused as soon as its header arrives, before its payload is buffered. `deflate`:
/// RSV1 may mark the first frame of a data message as compressed.
fn parse_frame(
    input: &[u8],
    max_message: usize,
    assembled: usize,
    deflate: bool,
) -> Result<Option<Parsed>, Violation> {
    let mut cursor = Cursor::new(input);
    let (header, len) = match FrameHeader::parse(&mut cursor) {
        Ok(Some(parsed)) => parsed,
        Ok(None) => return Ok(None),
        Err(_) => return Err(Violation::Protocol("reserved opcode")),
    };
    let starts_message = matches!(header.opcode, OpCode::Data(Data::Text | Data::Binary));
    if header.rsv2 || header.rsv3 || (header.rsv1 && !(deflate && starts_message)) {
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
        compressed: header.rsv1,
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
mod tests;
