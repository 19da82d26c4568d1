//! Server-to-client WebSocket frames, encoded once into shared bytes.
//!
//! Server frames are never masked (RFC 6455 §5.1), so the bytes of a frame are identical for
//! every client: the mixer builds each broadcast frame once into an `Arc<[u8]>` and every
//! connection's outbox holds a reference to it. The header is written with tungstenite's
//! [`FrameHeader::format`]; nothing here allocates per client.

use std::sync::Arc;

use tungstenite::protocol::frame::FrameHeader;
use tungstenite::protocol::frame::coding::{Control, Data, OpCode};

/// The bytes of one complete frame (header + payload), shared by every outbox holding it.
pub type FrameBytes = Arc<[u8]>;

/// One message's frame as each kind of client is sent it: plain, and compressed once for
/// the clients that negotiated permessage-deflate (none when it was not worth it, or when
/// nobody asked; those clients then get the plain frame, which they read as well).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Encoded {
    /// The plain frame.
    pub plain: FrameBytes,
    /// The same message compressed (RSV1 set).
    pub deflated: Option<FrameBytes>,
}

impl Encoded {
    /// A message with a plain frame only.
    pub fn plain(plain: FrameBytes) -> Self {
        Encoded {
            plain,
            deflated: None,
        }
    }

    /// The bytes it keeps alive: the plain frame and the compressed one.
    pub fn bytes(&self) -> usize {
        self.plain.len() + self.deflated.as_ref().map_or(0, |d| d.len())
    }

    /// The frame a client gets: compressed if it negotiated deflate and there is one.
    #[inline]
    pub fn for_client(&self, deflate: bool) -> &FrameBytes {
        match &self.deflated {
            Some(d) if deflate => d,
            _ => &self.plain,
        }
    }
}

/// Broadcast frames of one topic that reached a shard together, concatenated once by the
/// shard so that each subscriber's outbox takes one reference for all of them instead of
/// one per frame. The bytes on the wire are the same as frame by frame.
#[derive(Debug)]
pub struct FrameRun {
    bytes: Box<[u8]>,
    /// The stamps of its sequenced frames; unsequenced ones (presence) have none.
    stamps: Box<[u64]>,
    frames: usize,
}

impl FrameRun {
    /// Concatenates complete frames, each with the mixer's stamp (µs since the Unix epoch;
    /// 0 for a frame outside the topic's sequence, which is not a delivery to count).
    pub fn new<'a>(frames: impl Iterator<Item = (&'a [u8], u64)> + Clone) -> FrameRun {
        let len = frames.clone().map(|(f, _)| f.len()).sum();
        let mut bytes = Vec::with_capacity(len);
        let mut stamps = Vec::new();
        let mut count = 0;
        for (frame, stamp) in frames {
            bytes.extend_from_slice(frame);
            if stamp != 0 {
                stamps.push(stamp);
            }
            count += 1;
        }
        FrameRun {
            bytes: bytes.into_boxed_slice(),
            stamps: stamps.into_boxed_slice(),
            frames: count,
        }
    }

    /// One frame that carries `messages` messages (a batch: their payloads joined by
    /// newlines), with the stamps of the sequenced ones.
    pub fn batch(frame: &[u8], stamps: Vec<u64>, messages: usize) -> FrameRun {
        FrameRun {
            bytes: frame.into(),
            stamps: stamps.into_boxed_slice(),
            frames: messages,
        }
    }

    /// The frames' bytes, back to back.
    #[inline]
    pub fn bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// The stamps of its sequenced frames, in order (none for unsequenced frames).
    #[inline]
    pub fn stamps(&self) -> &[u64] {
        &self.stamps
    }

    /// How many messages it holds (frames, or the messages of a batch).
    #[inline]
    pub fn frames(&self) -> usize {
        self.frames
    }
}

/// Longest server frame header: 2 bytes + 8 bytes of extended length (servers never mask).
pub const MAX_HEADER: usize = 10;

/// Common close codes, named for readability at call sites.
pub mod close_code {
    /// Normal closure.
    pub const NORMAL: u16 = 1000;
    /// The server is going away (shutdown, idle timeout).
    pub const GOING_AWAY: u16 = 1001;
    /// Protocol error: bad framing, unmasked frame, reserved bits, bad opcode.
    pub const PROTOCOL: u16 = 1002;
    /// No status code was present in a received close frame.
    pub const NO_STATUS: u16 = 1005;
    /// The connection dropped without a close frame (never sent on the wire).
    pub const ABNORMAL: u16 = 1006;
    /// A text message was not valid UTF-8.
    pub const INVALID_PAYLOAD: u16 = 1007;
    /// Policy violation (slow consumer, abuse).
    pub const POLICY: u16 = 1008;
    /// A message was larger than the server accepts.
    pub const TOO_BIG: u16 = 1009;
}

fn header_for(opcode: OpCode) -> FrameHeader {
    FrameHeader {
        is_final: true,
        rsv1: false,
        rsv2: false,
        rsv3: false,
        opcode,
        mask: None,
    }
}

/// Writes the header of an unmasked final frame into the end of `room` and returns where
/// it starts. `room` must be at least [`MAX_HEADER`] bytes.
fn header_into_tail(opcode: OpCode, payload_len: usize, room: &mut [u8]) -> usize {
    write_header_into_tail(header_for(opcode), payload_len, room)
}

/// [`header_into_tail`] for a compressed text message (RSV1 set, RFC 7692 §6).
pub(crate) fn compressed_header_into_tail(payload_len: usize, room: &mut [u8]) -> usize {
    let header = FrameHeader {
        rsv1: true,
        ..header_for(OpCode::Data(Data::Text))
    };
    write_header_into_tail(header, payload_len, room)
}

fn write_header_into_tail(header: FrameHeader, payload_len: usize, room: &mut [u8]) -> usize {
    let len = header.len(payload_len as u64);
    let start = room.len() - len;
    let mut out = &mut room[start..];
    // Writing into a slice of exactly `len` bytes cannot fail: `len` is what `format` writes.
    header
        .format(payload_len as u64, &mut out)
        .expect("header fits its computed length");
    start
}

/// The payload of a complete unmasked frame this module encoded (its header skipped).
pub fn payload_of(frame: &[u8]) -> &[u8] {
    let header = match frame.get(1).map(|b| b & 0x7f) {
        Some(126) => 4,
        Some(127) => 10,
        Some(_) => 2,
        None => return &[],
    };
    frame.get(header..).unwrap_or(&[])
}

/// Encodes a complete unmasked frame with `payload`.
pub fn encode(opcode: OpCode, payload: &[u8]) -> FrameBytes {
    let header = header_for(opcode);
    let mut out = Vec::with_capacity(header.len(payload.len() as u64) + payload.len());
    // Writing into a Vec cannot fail.
    header
        .format(payload.len() as u64, &mut out)
        .expect("write to Vec");
    out.extend_from_slice(payload);
    out.into()
}

/// A text frame carrying `text`.
pub fn text(text: &str) -> FrameBytes {
    encode(OpCode::Data(Data::Text), text.as_bytes())
}

/// A binary frame carrying `data`.
pub fn binary(data: &[u8]) -> FrameBytes {
    encode(OpCode::Data(Data::Binary), data)
}

/// A ping frame with an empty payload.
pub fn ping() -> FrameBytes {
    encode(OpCode::Control(Control::Ping), &[])
}

/// A pong answering a ping with `payload` (at most 125 bytes, checked by the parser).
pub fn pong(payload: &[u8]) -> FrameBytes {
    encode(OpCode::Control(Control::Pong), payload)
}

/// A close frame with `code` and a reason truncated to fit the 125-byte control limit.
pub fn close(code: u16, reason: &str) -> FrameBytes {
    let mut reason_end = reason.len().min(123);
    while !reason.is_char_boundary(reason_end) {
        reason_end -= 1;
    }
    let mut payload = Vec::with_capacity(2 + reason_end);
    payload.extend_from_slice(&code.to_be_bytes());
    payload.extend_from_slice(&reason.as_bytes()[..reason_end]);
    encode(OpCode::Control(Control::Close), &payload)
}

/// Whether a close code received from a peer is one RFC 6455 §7.4 allows on the wire.
pub fn is_valid_received_close_code(code: u16) -> bool {
    // 1004-1006 and 1015 are reserved and must never be sent; 1012-1014 are registered
    // with IANA; 3000-4999 belong to libraries and applications.
    matches!(code, 1000..=1003 | 1007..=1014 | 3000..=4999)
}

/// Builds text frames whose payload is written in place, so a JSON message is serialized
/// straight into the frame buffer and copied once into its shared `Arc<[u8]>`.
///
/// Owned by one thread (the mixer, or a shard for its per-connection replies) and reused for
/// every frame it builds.
#[derive(Debug, Default)]
pub struct FrameBuilder {
    buf: Vec<u8>,
}

impl FrameBuilder {
    /// A builder with an empty reusable buffer.
    pub fn new() -> Self {
        FrameBuilder {
            buf: Vec::with_capacity(4096),
        }
    }

    /// Starts a frame: returns the buffer to write the payload into.
    pub fn payload(&mut self) -> &mut Vec<u8> {
        self.buf.clear();
        self.buf.resize(MAX_HEADER, 0);
        &mut self.buf
    }

    /// The payload written since [`FrameBuilder::payload`].
    pub fn written(&self) -> &[u8] {
        &self.buf[MAX_HEADER.min(self.buf.len())..]
    }

    /// The payload written since [`FrameBuilder::payload`], to edit in place.
    pub fn written_mut(&mut self) -> &mut [u8] {
        let start = MAX_HEADER.min(self.buf.len());
        &mut self.buf[start..]
    }

    /// Finishes the frame started by [`FrameBuilder::payload`] as a text frame.
    pub fn finish_text(&mut self) -> FrameBytes {
        let payload_len = self.buf.len() - MAX_HEADER;
        let (room, _) = self.buf.split_at_mut(MAX_HEADER);
        let start = header_into_tail(OpCode::Data(Data::Text), payload_len, room);
        Arc::from(&self.buf[start..])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Cursor;

    fn parse(bytes: &[u8]) -> (FrameHeader, u64, usize) {
        let mut cur = Cursor::new(bytes);
        let (h, len) = FrameHeader::parse(&mut cur).unwrap().unwrap();
        (h, len, cur.position() as usize)
    }

    #[test]
    fn small_text_frame_has_two_byte_header() {
        let f = text("hello");
        assert_eq!(&f[..], b"\x81\x05hello");
    }

    #[test]
    fn builder_matches_encode_across_length_formats() {
        let mut b = FrameBuilder::new();
        for len in [0usize, 1, 125, 126, 127, 65535, 65536, 70000] {
            let payload = vec![b'x'; len];
            b.payload().extend_from_slice(&payload);
            let built = b.finish_text();
            let plain = encode(OpCode::Data(Data::Text), &payload);
            assert_eq!(built, plain, "length {len}");
            let (h, plen, hlen) = parse(&built);
            assert!(h.is_final && h.mask.is_none());
            assert_eq!(plen as usize, len);
            assert_eq!(hlen + len, built.len());
        }
    }

    #[test]
    fn close_frame_carries_code_and_truncated_reason() {
        let f = close(1008, "slow consumer");
        assert_eq!(f[0], 0x88);
        assert_eq!(&f[2..4], &1008u16.to_be_bytes());
        assert_eq!(&f[4..], b"slow consumer");
        let long = "é".repeat(100); // 200 bytes, multi-byte chars
        let f = close(1000, &long);
        let (_, plen, _) = parse(&f);
        assert!(plen <= 125);
        assert!(std::str::from_utf8(&f[4..]).is_ok());
    }

    #[test]
    fn received_close_codes() {
        for ok in [
            1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 3000, 4999,
        ] {
            assert!(is_valid_received_close_code(ok), "{ok}");
        }
        for bad in [0, 999, 1004, 1005, 1006, 1015, 1016, 2999, 5000] {
            assert!(!is_valid_received_close_code(bad), "{bad}");
        }
    }

    #[test]
    fn payload_of_skips_every_header_length() {
        for len in [0usize, 125, 126, 65535, 65536] {
            let payload = vec![b'y'; len];
            assert_eq!(
                payload_of(&text(std::str::from_utf8(&payload).unwrap())),
                &payload[..]
            );
        }
        let mut room = [0u8; MAX_HEADER];
        let start = compressed_header_into_tail(300, &mut room);
        assert_eq!(
            &room[start..],
            b"\xc1\x7e\x01\x2c",
            "FIN, RSV1, text, 16-bit length"
        );
    }

    #[test]
    fn ping_and_pong() {
        assert_eq!(&ping()[..], b"\x89\x00");
        assert_eq!(&pong(b"ab")[..], b"\x8a\x02ab");
    }
}
