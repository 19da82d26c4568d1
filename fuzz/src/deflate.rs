//! permessage-deflate: `tickcast::deflate`'s offer parser, its bounded inflater and its
//! compressor, and the frame parser of a connection that negotiated the extension.
//!
//! The input's first byte picks what the rest is:
//! - `0`: `Sec-WebSocket-Extensions` values (one per line): negotiation never panics, and
//!   without a `permessage-deflate` token anywhere nothing was offered;
//! - `1`: a compressed message from a client: the inflater's output never passes the limit
//!   (the second byte, in KiB), and an accepted message fits it;
//! - `2`: a message to compress (as the mixer does): it inflates back to the same bytes,
//!   exactly at its own size as the limit, and one byte under it is refused as too big;
//! - `3`: client frames on a deflate connection (RSV1 allowed): every message within
//!   `--max-message` once inflated, failures answered with 1002, 1007 or 1009.

use tickcast::conn::{Assembler, Event, Flow};
use tickcast::deflate::{Agreement, Deflated, Deflater, InflateError, Inflater, negotiate};
use tickcast::frame;

/// The `--max-message` of mode 3.
const MAX_MESSAGE: usize = 1024;

/// Runs the check the first byte picks.
pub fn check(data: &[u8]) {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    match mode % 4 {
        0 => offers(rest),
        1 => inflate(rest),
        2 => round_trip(rest),
        _ => frames(rest),
    }
}

fn offers(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let agreement = negotiate(text.lines());
    if !text.to_ascii_lowercase().contains("permessage-deflate") {
        assert_eq!(agreement, Agreement::NotOffered, "{text:?}");
    }
}

fn inflate(data: &[u8]) {
    let Some((&kib, compressed)) = data.split_first() else {
        return;
    };
    let max = usize::from(kib) * 1024;
    let mut inflater = Inflater::new();
    if let Ok(out) = inflater.inflate(compressed, max) {
        assert!(out.len() <= max);
    }
}

fn round_trip(data: &[u8]) {
    let plain = frame::binary(data);
    let Deflated::Frame {
        frame, plain: len, ..
    } = Deflater::new(0).deflate_frame(&plain)
    else {
        return;
    };
    assert_eq!(len, data.len());
    assert_eq!(frame[0], 0xc1, "FIN, RSV1, text");
    let compressed = frame::payload_of(&frame);
    assert!(compressed.len() < data.len());
    let mut inflater = Inflater::new();
    assert_eq!(inflater.inflate(compressed, data.len()).unwrap(), data);
    if !data.is_empty() {
        assert_eq!(
            inflater.inflate(compressed, data.len() - 1),
            Err(InflateError::TooBig)
        );
    }
}

fn frames(data: &[u8]) {
    let mut buf = data.to_vec();
    let mut inflater = Inflater::new();
    let mut asm = Assembler::default();
    let result = asm.feed_inflating(&mut buf, MAX_MESSAGE, Some(&mut inflater), |ev| {
        match ev {
            Event::Text(t) => assert!(t.len() <= MAX_MESSAGE),
            Event::Binary(b) => assert!(b.len() <= MAX_MESSAGE),
            Event::Ping(p) => assert!(p.len() <= 125),
            Event::Pong | Event::Close(..) => {}
        }
        Flow::Continue
    });
    match result {
        Ok(used) => assert!(used <= data.len()),
        Err(v) => assert!(matches!(v.close_code(), 1002 | 1007 | 1009), "{v:?}"),
    }
}
