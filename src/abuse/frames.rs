//! Scenario `malformed_frames`: connections that upgrade (on `/ws` or `/echo`) and send one
//! frame breaking RFC 6455, one kind per connection in turn.
//!
//! For each kind the client must *read* the server's close frame with the right code
//! (1002 protocol error, 1007 invalid UTF-8, 1009 too big), not a bare EOF and not a reset
//! that discarded it: the outcome of every connection is counted per kind, and the target is
//! 100 %. A normal client keeps reading ticks throughout. The per-kind runner here is shared
//! with `malformed_http`.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use serde::Serialize;

use super::client::{self, Ending, Next, Tally, WsConn, frame, op};
use super::report::{Check, Raw, Report};
use super::watch::Watcher;
use super::{AbuseConfig, probe};

/// Time allowed for the server to end a connection after the bad frame.
const END_TIMEOUT: Duration = Duration::from_secs(3);
/// After this many timeouts a kind is not tried again (the server ignores it; each further
/// try would only cost the timeout).
const SKIP_AFTER_TIMEOUTS: u64 = 50;

/// What one kind of bad input got.
#[derive(Debug, Clone, Serialize)]
pub struct KindResult {
    /// The kind.
    pub kind: &'static str,
    /// The outcome label that counts as right (`close_1002`, `status_431`).
    pub expected: String,
    /// Connections tried.
    pub attempts: u64,
    /// Connections that got the expected outcome.
    pub right: u64,
    /// Every outcome, counted.
    pub outcomes: Tally,
    /// Attempts skipped after repeated timeouts.
    pub skipped: u64,
}

/// Runs `total` attempts spread evenly over `kinds` (name, expected outcome label) on
/// `threads` threads; `attempt(kind, i)` plays one and returns its outcome label.
pub fn run_kinds(
    total: usize,
    threads: usize,
    kinds: &[(&'static str, String)],
    attempt: impl Fn(usize, usize) -> String + Sync,
) -> Vec<KindResult> {
    let next = AtomicUsize::new(0);
    let timeouts: Vec<AtomicU64> = kinds.iter().map(|_| AtomicU64::new(0)).collect();
    let tallies: Vec<std::sync::Mutex<(Tally, u64)>> = kinds
        .iter()
        .map(|_| std::sync::Mutex::new((Tally::new(), 0)))
        .collect();
    std::thread::scope(|scope| {
        for _ in 0..threads {
            scope.spawn(|| {
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= total {
                        break;
                    }
                    let k = i % kinds.len();
                    if timeouts[k].load(Ordering::Relaxed) >= SKIP_AFTER_TIMEOUTS {
                        if let Ok(mut t) = tallies[k].lock() {
                            t.1 += 1;
                        }
                        continue;
                    }
                    let outcome = attempt(k, i);
                    if outcome.contains("timeout") {
                        timeouts[k].fetch_add(1, Ordering::Relaxed);
                    }
                    if let Ok(mut t) = tallies[k].lock() {
                        client::count(&mut t.0, outcome);
                    }
                }
            });
        }
    });
    kinds
        .iter()
        .zip(tallies)
        .map(|(&(kind, ref expected), t)| {
            let (outcomes, skipped) = t.into_inner().unwrap_or_default();
            KindResult {
                kind,
                expected: expected.clone(),
                attempts: outcomes.values().sum(),
                right: outcomes.get(expected).copied().unwrap_or(0),
                outcomes,
                skipped,
            }
        })
        .collect()
}

/// `kind right/attempts` for every kind, wrong ones with their outcomes.
pub fn kinds_text(results: &[KindResult]) -> String {
    results
        .iter()
        .map(|r| {
            let mut s = format!("{} {}/{}", r.kind, r.right, r.attempts + r.skipped);
            if r.right < r.attempts + r.skipped {
                let wrong: Tally = r
                    .outcomes
                    .iter()
                    .filter(|(k, _)| **k != r.expected)
                    .map(|(k, v)| (k.clone(), *v))
                    .collect();
                s.push_str(&format!(" ({}", client::tally_text(&wrong)));
                if r.skipped > 0 {
                    s.push_str(&format!(", {} skipped", r.skipped));
                }
                s.push(')');
            }
            s
        })
        .collect::<Vec<_>>()
        .join("; ")
}

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

/// Runs `malformed_frames`.
pub fn run(cfg: &AbuseConfig) -> Result<Report, String> {
    let total = cfg.count_or(200, 20_000);
    let before = probe::scrape(cfg.target)?;
    let watcher = Watcher::start(cfg.target)?;
    let kinds: Vec<(&'static str, String)> = bad_frames(0)
        .into_iter()
        .map(|(name, _, code)| (name, Ending::Close(code).label()))
        .collect();
    let started = Instant::now();
    let results = run_kinds(total, cfg.concurrency * 4, &kinds, |k, i| {
        // Each kind alternates between the two endpoints from one round to the next.
        let round = i / kinds.len();
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
    });
    let secs = started.elapsed().as_secs_f64();
    let watch = watcher.finish();
    let after = probe::scrape(cfg.target)?;

    let attempted: u64 = results.iter().map(|r| r.attempts + r.skipped).sum();
    let right: u64 = results.iter().map(|r| r.right).sum();
    let resets: u64 = results
        .iter()
        .map(|r| r.outcomes.get("reset").copied().unwrap_or(0))
        .sum();
    let eofs: u64 = results
        .iter()
        .map(|r| r.outcomes.get("eof").copied().unwrap_or(0))
        .sum();
    let text = kinds_text(&results);
    let checks = vec![
        Check::new(
            "close_code_read",
            right == attempted && attempted == total as u64,
            format!("{right} of {attempted} read the expected close frame: {text}"),
        ),
        Check::new("watcher", watch.healthy(), watch.summary()),
    ];
    let mut raw = Raw::default();
    raw.put("connections", attempted);
    raw.put("right", right);
    raw.put("eof", eofs);
    raw.put("reset", resets);
    raw.put("secs", (secs * 10.0).round() / 10.0);
    raw.put("kinds", &results);
    for code in ["1002", "1007", "1009"] {
        raw.metric(
            &format!("server_closes_{code}"),
            probe::delta(
                before.sum("tickcast_closes_total", &[("code", code)]),
                after.sum("tickcast_closes_total", &[("code", code)]),
            ),
        );
    }
    raw.put("watcher", &watch);
    let summary = format!(
        "{right}/{attempted} got the right close frame ({eofs} EOF, {resets} reset): {text}; {}",
        watch.summary()
    );
    Ok(Report::new(
        "malformed_frames",
        "each bad frame (unmasked, RSV, reserved opcode, control > 125, fragmented control, 1-byte close, invalid close code, non-minimal length: 1002; invalid UTF-8: 1007; 70 KiB message: 1009) answered with a close frame the client reads (100 %); a normal client served throughout",
        summary,
        checks,
        raw.0,
    ))
}
