//! Scenario `malformed_frames`: connections that upgrade (on `/ws` or `/echo`) and send one
//! frame breaking RFC 6455, one kind per connection in turn.
//!
//! For each kind the client must *read* the server's close frame with the right code
//! (1002 protocol error, 1007 invalid UTF-8, 1009 too big), not a bare EOF and not a reset
//! that discarded it: the outcome of every connection is counted per kind
//! ([`super::kinds`]), and the target is 100 %. A normal client keeps reading ticks
//! throughout.

use std::time::{Duration, Instant};

use super::AbuseConfig;
use super::client::{self, Ending, Next, WsConn, frame, op};
use super::drive::{Counter, Cx, Judged, Play, Reads, Seen};
use super::kinds::{self, KindResult, kinds_text, run_kinds};
use super::report::{Check, Raw};

/// Time allowed for the server to end a connection after the bad frame.
const END_TIMEOUT: Duration = Duration::from_secs(3);
/// The server's count of the close codes the bad frames should get.
const COUNTERS: &[Counter] = &[
    Counter::new(
        "server_closes_1002",
        "tickcast_closes_total",
        &[("code", "1002")],
    ),
    Counter::new(
        "server_closes_1007",
        "tickcast_closes_total",
        &[("code", "1007")],
    ),
    Counter::new(
        "server_closes_1009",
        "tickcast_closes_total",
        &[("code", "1009")],
    ),
];

/// The bad frames of round `round` (one connection per kind): name, bytes, expected close
/// code.
pub fn bad_frames(round: usize) -> Vec<(&'static str, Vec<u8>, u16)> {
    let m = Some(fastrand::u32(..).to_ne_bytes());
    // Codes a peer must never send: below 1000, and the reserved 1005.
    let bad_code: u16 = if (round / 2).is_multiple_of(2) {
        999
    } else {
        1005
    };
    vec![
        (
            "unmasked",
            frame(op::FIN | op::TEXT, b"{}", None, false),
            1002,
        ),
        (
            "reserved_bits",
            frame(op::FIN | op::RSV1 | op::TEXT, b"{}", m, false),
            1002,
        ),
        (
            "reserved_opcode",
            frame(op::FIN | 0x3, b"x", m, false),
            1002,
        ),
        (
            "control_over_125",
            frame(op::FIN | op::PING, &[b'p'; 126], m, false),
            1002,
        ),
        ("fragmented_control", frame(op::PING, b"p", m, false), 1002),
        (
            "close_one_byte",
            frame(op::FIN | op::CLOSE, &[0x03], m, false),
            1002,
        ),
        (
            "close_invalid_code",
            frame(op::FIN | op::CLOSE, &bad_code.to_be_bytes(), m, false),
            1002,
        ),
        (
            "invalid_utf8",
            frame(op::FIN | op::TEXT, &[b'{', 0xff, 0xfe, b'}'], m, false),
            1007,
        ),
        (
            "oversize_70k",
            frame(op::FIN | op::TEXT, &vec![b'a'; 70 * 1024], m, false),
            1009,
        ),
        (
            "length_not_minimal",
            frame(op::FIN | op::TEXT, b"{}", m, true),
            1002,
        ),
    ]
}

/// Whether a text frame is an error frame (`"type":"error"`).
fn is_error(payload: &[u8]) -> bool {
    memchr::memmem::find(payload, b"\"type\":\"error\"").is_some()
}

/// Scenario `malformed_frames`: `total` connections, one bad frame each.
pub struct MalformedFrames {
    total: usize,
}

impl MalformedFrames {
    /// The scenario as `cfg` sizes it.
    pub fn new(cfg: &AbuseConfig) -> MalformedFrames {
        MalformedFrames {
            total: cfg.count_or(200, 20_000),
        }
    }
}

/// What the connections got, and how long they took, s.
pub struct Tried(Vec<KindResult>, f64);

impl Play for MalformedFrames {
    type Clients = ();
    type Outcome = Tried;

    fn expectation(&self) -> &'static str {
        "each bad frame (unmasked, RSV, reserved opcode, control > 125, fragmented control, 1-byte close, invalid close code, non-minimal length: 1002; invalid UTF-8: 1007; 70 KiB message: 1009) answered with a close frame the client reads (100 %); a normal client served throughout"
    }

    fn reads(&self) -> Reads {
        Reads::scrape(COUNTERS).watched()
    }

    /// Each attempt connects on its own.
    fn connect(&self, _: &Cx) -> Result<(), String> {
        Ok(())
    }

    fn run(&self, cx: &Cx, (): ()) -> Result<Tried, String> {
        let kinds: Vec<(&'static str, String)> = bad_frames(0)
            .into_iter()
            .map(|(name, _, code)| (name, Ending::Close(code).label()))
            .collect();
        let started = Instant::now();
        let results = run_kinds(self.total, cx.cfg.concurrency * 4, &kinds, |k, i| {
            attempt(cx.cfg, kinds.len(), k, i)
        })?;
        Ok(Tried(results, started.elapsed().as_secs_f64()))
    }

    fn judge(&self, Tried(results, secs): Tried, _: &Seen) -> Judged {
        let attempted = kinds::attempted(&results);
        let right = kinds::right(&results);
        let resets = kinds::outcomes(&results, |k| k == "reset");
        let eofs = kinds::outcomes(&results, |k| k == "eof");
        let text = kinds_text(&results);
        let checks = vec![Check::new(
            "close_code_read",
            right == attempted && attempted == self.total as u64,
            format!("{right} of {attempted} read the expected close frame: {text}"),
        )];
        let mut raw = Raw::default();
        raw.put("connections", attempted);
        raw.put("right", right);
        raw.put("eof", eofs);
        raw.put("reset", resets);
        raw.put("secs", (secs * 10.0).round() / 10.0);
        raw.put("kinds", &results);
        let summary = format!(
            "{right}/{attempted} got the right close frame ({eofs} EOF, {resets} reset): {text}"
        );
        Judged {
            summary,
            checks,
            raw,
        }
    }
}

/// Plays attempt `i`, of kind `k` of `kinds`: returns its outcome label.
fn attempt(cfg: &AbuseConfig, kinds: usize, k: usize, i: usize) -> String {
    // Each kind alternates between the two endpoints from one round to the next.
    let round = i / kinds;
    let path = if round.is_multiple_of(2) {
        "/echo"
    } else {
        "/ws?topics=ticks"
    };
    let mut conn = match WsConn::open(cfg.target, cfg.source(i), path, END_TIMEOUT) {
        Ok(c) => c,
        Err(reason) => return reason,
    };
    let (_, bytes, _) = bad_frames(round).swap_remove(k);
    // A write the server cuts short is fine: what it answers is what counts.
    let _ = conn.send_raw(&bytes);
    let deadline = Instant::now() + END_TIMEOUT;
    let end = loop {
        match conn.next(deadline) {
            // The server took the frame as a message: it will not close.
            Next::Frame(f) if path == "/echo" && f.opcode != op::PONG => {
                client::abort(conn.stream);
                return "echoed_instead".into();
            }
            Next::Frame(f) if f.opcode == op::TEXT && is_error(&f.payload) => {
                client::abort(conn.stream);
                return "error_frame_instead".into();
            }
            Next::Frame(_) => {}
            Next::End(end) => break end,
        }
    };
    if let Ending::Close(code) = end {
        let _ = conn.send_raw(&client::close_frame(code));
    }
    client::linger_close(conn.stream, Duration::from_secs(1));
    end.label()
}
