//! permessage-deflate (RFC 7692): negotiated per connection, compressed once per message.
//!
//! Servers that compress per connection pay the compression once per client. tickcast
//! encodes each broadcast frame once and shares its bytes, so it compresses once too: the
//! mixer builds, next to a message's plain frame, one compressed frame (RSV1 set) that every
//! client which negotiated the extension is sent. That only works because every connection
//! agrees to `server_no_context_takeover` (each message is compressed with a fresh
//! context, so its bytes do not depend on what a client was sent before). Each connection
//! is also asked for `client_no_context_takeover`, so nothing has to be kept between a
//! client's messages: one inflater per shard serves all its connections, and a connection
//! holds no 32 KiB window.
//!
//! - `negotiate.rs`: reading the client's offers and writing the answer;
//! - [`Deflater`]: one message into a compressed frame (the mixer's);
//! - [`Inflater`]: a client's compressed message back, bounded by `--max-message` (a
//!   shard's).
//!
//! Compression is per message (RFC 7692 §6): a message too small to be worth it
//! (`--deflate-min-bytes`), or one that does not shrink, is sent plain to everyone, which a
//! client that negotiated the extension reads as well.

mod negotiate;

pub use negotiate::{Agreement, RESPONSE, negotiate};

use std::sync::Arc;

use flate2::{Compress, Compression, Decompress, FlushCompress, FlushDecompress, Status};

use crate::frame::{self, FrameBytes, MAX_HEADER};

/// The empty stored block a sync flush ends with; removed from every compressed message and
/// put back before inflating one (RFC 7692 §7.2.1, §7.2.2).
const TAIL: [u8; 4] = [0x00, 0x00, 0xff, 0xff];

/// What became of one message offered to the [`Deflater`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Deflated {
    /// The compressed frame, and its payload's size before and after.
    Frame {
        /// The complete frame (RSV1 set).
        frame: FrameBytes,
        /// Payload bytes before compression.
        plain: usize,
        /// Payload bytes after.
        compressed: usize,
    },
    /// Under `--deflate-min-bytes`: sent plain to everyone.
    TooSmall,
    /// Compression did not make it smaller: sent plain to everyone.
    NotSmaller,
}

/// Compresses messages one by one, each with a fresh context (`server_no_context_takeover`).
/// Owned by the mixer thread and reused for every message.
pub struct Deflater {
    inner: Compress,
    /// The frame being built: [`MAX_HEADER`] bytes of room, then the compressed payload.
    buf: Vec<u8>,
    min_bytes: usize,
}

impl std::fmt::Debug for Deflater {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Deflater")
            .field("min_bytes", &self.min_bytes)
            .finish_non_exhaustive()
    }
}

impl Deflater {
    /// A compressor at the fastest level, for messages of at least `min_bytes`.
    pub fn new(min_bytes: usize) -> Self {
        Deflater {
            inner: Compress::new(Compression::fast(), false),
            buf: Vec::with_capacity(4096),
            min_bytes,
        }
    }

    /// Compresses the payload of the complete text frame `plain` into a text frame with RSV1
    /// set, when it is large enough and shrinks.
    pub fn deflate_frame(&mut self, plain: &[u8]) -> Deflated {
        let payload = frame::payload_of(plain);
        if payload.len() < self.min_bytes {
            return Deflated::TooSmall;
        }
        self.inner.reset();
        self.buf.clear();
        self.buf.resize(MAX_HEADER, 0);
        // A compressed message never needs more than its payload plus a few bytes per
        // stored block; anything bigger than the payload is given up on anyway.
        self.buf.reserve(payload.len() + 64);
        let mut input = payload;
        loop {
            let before = self.inner.total_in();
            let status = self
                .inner
                .compress_vec(input, &mut self.buf, FlushCompress::Sync);
            let used = (self.inner.total_in() - before) as usize;
            input = &input[used..];
            let done = input.is_empty() && self.buf.len() < self.buf.capacity();
            match status {
                Ok(Status::Ok | Status::BufError) if !done => {
                    if self.buf.len() - MAX_HEADER > payload.len() {
                        return Deflated::NotSmaller;
                    }
                    self.buf.reserve(256);
                }
                Ok(_) => break,
                // A raw DEFLATE stream over bytes in memory has nothing that can fail.
                Err(_) => return Deflated::NotSmaller,
            }
        }
        if self.buf.ends_with(&TAIL) {
            self.buf.truncate(self.buf.len() - TAIL.len());
        }
        let compressed = self.buf.len() - MAX_HEADER;
        if compressed >= payload.len() {
            return Deflated::NotSmaller;
        }
        let (room, _) = self.buf.split_at_mut(MAX_HEADER);
        let start = frame::compressed_header_into_tail(compressed, room);
        Deflated::Frame {
            frame: Arc::from(&self.buf[start..]),
            plain: payload.len(),
            compressed,
        }
    }
}

/// Why a compressed client message was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InflateError {
    /// It inflates to more than `--max-message` (a deflate bomb): close 1009.
    TooBig,
    /// It is not a valid DEFLATE stream: close 1007.
    Invalid,
}

/// Inflates clients' compressed messages one at a time, each with a fresh context (every
/// connection agreed to `client_no_context_takeover`). One per shard, lent to the
/// connection whose message it is.
pub struct Inflater {
    inner: Decompress,
    out: Vec<u8>,
    /// Messages inflated so far.
    inflated: u64,
}

impl std::fmt::Debug for Inflater {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Inflater")
            .field("capacity", &self.out.capacity())
            .finish_non_exhaustive()
    }
}

impl Default for Inflater {
    fn default() -> Self {
        Inflater::new()
    }
}

/// Output kept by the inflater between messages; a bigger buffer (a large message) is given
/// back after use.
const KEEP_OUTPUT: usize = 64 * 1024;

impl Inflater {
    /// An inflater with a 32 KiB window (any window a client may use).
    pub fn new() -> Self {
        Inflater {
            inner: Decompress::new(false),
            out: Vec::new(),
            inflated: 0,
        }
    }

    /// Messages inflated so far.
    pub fn inflated(&self) -> u64 {
        self.inflated
    }

    /// Inflates one message's payload (its frames' payloads, concatenated, without the
    /// tail). The output is never allowed past `max` bytes: a message that would inflate to
    /// more is refused as soon as it passes the limit, whatever its compressed size.
    pub fn inflate(&mut self, compressed: &[u8], max: usize) -> Result<&[u8], InflateError> {
        if self.out.capacity() > KEEP_OUTPUT {
            self.out = Vec::new();
        }
        self.out.clear();
        self.inner.reset(false);
        let mut input = compressed;
        let mut tail_fed = false;
        loop {
            if input.is_empty() && !tail_fed {
                input = &TAIL;
                tail_fed = true;
            }
            if self.out.len() == self.out.capacity() {
                if self.out.len() > max {
                    return Err(InflateError::TooBig);
                }
                // Grow by doubling, never past one byte over the limit.
                let want = (self.out.len().max(2048) * 2).min(max + 1);
                self.out.reserve_exact(want - self.out.len());
            }
            let (before_in, before_out) = (self.inner.total_in(), self.out.len());
            let status = self
                .inner
                .decompress_vec(input, &mut self.out, FlushDecompress::Sync)
                .map_err(|_| InflateError::Invalid)?;
            let used = (self.inner.total_in() - before_in) as usize;
            input = &input[used..];
            if self.out.len() > max {
                return Err(InflateError::TooBig);
            }
            let room_left = self.out.len() < self.out.capacity();
            match status {
                // A final block ends the message; anything after it is ignored (the tail).
                Status::StreamEnd => break,
                _ if input.is_empty() && tail_fed && room_left => break,
                _ if used == 0 && self.out.len() == before_out && room_left => {
                    // No progress with input and room left: the stream is cut short.
                    return Err(InflateError::Invalid);
                }
                _ => {}
            }
        }
        self.inflated += 1;
        Ok(&self.out)
    }
}

/// A message compressed as a client compresses it (raw DEFLATE, sync flush, tail removed),
/// for the tests of this module and of the frame parser.
#[cfg(test)]
pub(crate) fn compress_like_a_client(payload: &[u8]) -> Vec<u8> {
    let mut c = Compress::new(Compression::default(), false);
    let mut out = Vec::with_capacity(payload.len() + 1024);
    c.compress_vec(payload, &mut out, FlushCompress::Sync)
        .expect("compressing into memory");
    assert!(out.ends_with(&TAIL));
    out.truncate(out.len() - TAIL.len());
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text_frame(payload: &str) -> FrameBytes {
        frame::text(payload)
    }

    /// Inflates a frame the way a client does: a fresh raw inflater, the tail put back.
    fn client_inflate(frame: &[u8]) -> Vec<u8> {
        assert_eq!(frame[0], 0xc1, "FIN + RSV1 + text");
        let payload = frame::payload_of(frame);
        let mut d = flate2::Decompress::new(false);
        let mut input = payload.to_vec();
        input.extend_from_slice(&TAIL);
        let mut out = Vec::with_capacity(1 << 20);
        d.decompress_vec(&input, &mut out, FlushDecompress::Sync)
            .unwrap();
        out
    }

    #[test]
    fn a_compressed_frame_inflates_to_the_plain_payload() {
        let json = format!(
            r#"{{"topic":"ticks","seq":1,"data":"{}"}}"#,
            "abc".repeat(300)
        );
        let mut d = Deflater::new(64);
        let Deflated::Frame {
            frame,
            plain,
            compressed,
        } = d.deflate_frame(&text_frame(&json))
        else {
            panic!("a repetitive kilobyte compresses");
        };
        assert_eq!(plain, json.len());
        assert!(compressed * 4 < plain, "{compressed} of {plain}");
        assert_eq!(client_inflate(&frame), json.as_bytes());
        // Each message stands alone: the same input gives the same bytes.
        let Deflated::Frame { frame: again, .. } = d.deflate_frame(&text_frame(&json)) else {
            panic!()
        };
        assert_eq!(frame, again);
    }

    #[test]
    fn small_and_incompressible_messages_stay_plain() {
        let mut d = Deflater::new(64);
        assert_eq!(d.deflate_frame(&text_frame("short")), Deflated::TooSmall);
        let mut rng = fastrand::Rng::with_seed(7);
        let noise: Vec<u8> = (0..200).map(|_| rng.u8(..)).collect();
        assert_eq!(
            d.deflate_frame(&frame::binary(&noise)),
            Deflated::NotSmaller
        );
    }

    #[test]
    fn large_messages_compress_whole() {
        let json = format!("[{}]", "1234567,".repeat(40_000));
        let Deflated::Frame { frame, .. } = Deflater::new(1).deflate_frame(&text_frame(&json))
        else {
            panic!()
        };
        assert_eq!(client_inflate(&frame), json.as_bytes());
    }

    #[test]
    fn inflates_within_the_limit_and_refuses_a_bomb() {
        let mut i = Inflater::new();
        let msg = b"hello hello hello hello";
        assert_eq!(i.inflate(&compress_like_a_client(msg), 1024).unwrap(), msg);
        // Exactly the limit passes; one byte more does not.
        assert_eq!(
            i.inflate(&compress_like_a_client(msg), msg.len()).unwrap(),
            msg
        );
        assert_eq!(
            i.inflate(&compress_like_a_client(msg), msg.len() - 1),
            Err(InflateError::TooBig)
        );
        // 64 MiB of zeros in about 64 KiB: refused once past the limit, not allocated.
        let bomb = compress_like_a_client(&vec![0u8; 64 << 20]);
        assert!(bomb.len() < 100 << 10);
        assert_eq!(i.inflate(&bomb, 1 << 20), Err(InflateError::TooBig));
        assert!(i.out.capacity() <= (1 << 20) + 1);
        assert_eq!(
            i.inflate(b"\xff\xff\xff\xff", 1024),
            Err(InflateError::Invalid)
        );
        // The inflater is fine after a refusal.
        assert_eq!(i.inflate(&compress_like_a_client(msg), 1024).unwrap(), msg);
        // An empty message is the empty stored block alone.
        assert_eq!(i.inflate(&compress_like_a_client(b""), 1024).unwrap(), b"");
    }
}
