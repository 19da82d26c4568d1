//! Client-to-server frames: `tickcast::conn::Assembler`, the parser every `/ws` and `/echo`
//! byte goes through after the upgrade.
//!
//! The input's first byte picks where the rest is cut into two reads; the stream is fed the
//! way a connection feeds it (unconsumed bytes are kept and the next read appended). Checked:
//! - the same messages and the same ending whether the bytes come in one read or two;
//! - every data message is at most `--max-message`, text is UTF-8 (the type says so) and a
//!   fragmented message arrives whole; pings carry at most 125 bytes;
//! - a close frame's code is 1005 (none) or one a peer may send, and its reason fits;
//! - a failure is answered with 1002, 1007 or 1009, and nothing is delivered after it;
//! - the parser never consumes more than it was given.

use tickcast::conn::{Assembler, Event, Flow, Violation};
use tickcast::frame::is_valid_received_close_code;

/// The `--max-message` the checks run with (small, so fragments reach it).
const MAX_MESSAGE: usize = 256;

/// What a run of the parser produced, owned.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Seen {
    Text(String),
    Binary(Vec<u8>),
    Ping(Vec<u8>),
    Pong,
    Close(u16, String),
}

/// Feeds `data` in one read, then cut at the point its first byte picks, and compares.
pub fn check(data: &[u8]) {
    let Some((&cut, stream)) = data.split_first() else {
        return;
    };
    let whole = run(stream, &[stream.len()]);
    let at = if stream.is_empty() {
        0
    } else {
        usize::from(cut) * stream.len() / 255
    };
    let split = run(stream, &[at, stream.len()]);
    assert_eq!(whole, split, "cut at {at} of {}", stream.len());
}

/// Feeds `stream` as reads ending at each of `cuts`, as `Conn::on_bytes` does.
fn run(stream: &[u8], cuts: &[usize]) -> (Vec<Seen>, Option<Violation>) {
    let mut asm = Assembler::default();
    let mut seen = Vec::new();
    let mut kept: Vec<u8> = Vec::new();
    let mut from = 0;
    for &to in cuts {
        kept.extend_from_slice(&stream[from..to]);
        from = to;
        let mut buf = std::mem::take(&mut kept);
        let result = asm.feed(&mut buf, MAX_MESSAGE, |ev| {
            seen.push(check_event(&ev));
            Flow::Continue
        });
        match result {
            Ok(used) => {
                assert!(used <= buf.len());
                kept = buf[used..].to_vec();
            }
            Err(v) => {
                assert!(matches!(v.close_code(), 1002 | 1007 | 1009), "{v:?}");
                assert!(!v.reason().is_empty() && v.reason().len() <= 123);
                return (seen, Some(v));
            }
        }
    }
    (seen, None)
}

/// Checks one event against the limits and returns it owned.
fn check_event(ev: &Event<'_>) -> Seen {
    match *ev {
        Event::Text(t) => {
            assert!(t.len() <= MAX_MESSAGE);
            Seen::Text(t.to_string())
        }
        Event::Binary(b) => {
            assert!(b.len() <= MAX_MESSAGE);
            Seen::Binary(b.to_vec())
        }
        Event::Ping(p) => {
            assert!(p.len() <= 125);
            Seen::Ping(p.to_vec())
        }
        Event::Pong => Seen::Pong,
        Event::Close(code, reason) => {
            assert!(code == 1005 || is_valid_received_close_code(code), "{code}");
            assert!(reason.len() <= 123);
            if code == 1005 {
                assert!(reason.is_empty());
            }
            Seen::Close(code, reason.to_string())
        }
    }
}
