//! Scenarios `publish_flood` and `error_flood`: one client writing as fast as it can.
//!
//! `publish_flood`: a member of a room publishes valid messages with no pause while ten
//! members read the room. The rate limiter must answer `rate_limited` and close the flooder
//! with 1008 after persistent abuse, and the readers must receive every message the server
//! sequenced (no seq gap; their last seq equals the room's published count) and stay
//! connected. `error_flood`: a client sends nothing but invalid operations (bad JSON,
//! unknown op, invalid message, binary frames); it must be closed with 1008 after a bounded
//! number of error frames, within 10 s.

use std::io::Write;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use super::client::{self, Ending, WsConn};
use super::crowd::{self, Speaking};
use super::drive::{Counter, Cx, Judged, Play, Reads, Seen};
use super::member::{self, Member, MemberReport};
use super::report::{Check, Raw};
use super::{AbuseConfig, probe};

/// Reading members of the flooded room.
const READERS: usize = 10;
/// Frames written per `write()`.
const BATCH: usize = 256;
/// Most frames one flooder writes.
const MAX_FRAMES: u64 = 100_000_000;
/// Most error frames accepted before the server closes the error flooder.
pub const MAX_ERROR_FRAMES: u64 = 10_000;
/// Time allowed for members to receive what the server sequenced.
const SETTLE: Duration = Duration::from_secs(10);
/// Time allowed to connect.
const CONNECT: Duration = Duration::from_secs(10);
/// The flooded room.
const ROOM: &str = "abuse.flood";
/// What the server counted of the publish flood.
const PUBLISH_COUNTERS: &[Counter] = &[
    Counter::new(
        "server_rate_limited",
        "tickcast_client_errors_total",
        &[("code", "rate_limited")],
    ),
    Counter::new("server_drops", "tickcast_drops_total", &[]),
];
/// The server's count of the error frames it sent.
const CLIENT_ERRORS: Counter =
    Counter::new("server_client_errors", "tickcast_client_errors_total", &[]);

/// What a flooder did.
pub struct Flooded {
    /// Frames written.
    sent: u64,
    /// Seconds from the first write to the server's ending (if it ended the stream).
    ended_after: Option<f64>,
    /// Seconds the writes went on.
    secs: f64,
    /// What its reader saw (errors, ending).
    report: MemberReport,
}

impl Flooded {
    /// How the flooder's stream ended, for the measured line.
    fn ending_text(&self) -> String {
        match (self.report.ending, self.ended_after) {
            (Some(end), Some(t)) => format!("ended {} after {t:.2} s", end.label()),
            _ => format!("not closed when the flood stopped after {:.1} s", self.secs),
        }
    }
}

/// Writes batches from `batch(i)` through `flooder`'s socket until the server ends the
/// stream, a write fails, `bound` passes or [`MAX_FRAMES`] are written.
fn flood(flooder: Member, bound: Duration, mut batch: impl FnMut(u64) -> Vec<u8>) -> Flooded {
    let started = Instant::now();
    let mut sent = 0u64;
    if let Ok(s) = flooder.writer.lock() {
        let _ = s.set_write_timeout(Some(Duration::from_millis(100)));
    }
    let over = |sent: u64| {
        started.elapsed() >= bound
            || sent >= MAX_FRAMES
            || flooder.live.ended.load(Ordering::SeqCst)
    };
    let (mut pending, mut off) = (Vec::new(), 0);
    loop {
        if off == pending.len() {
            if !pending.is_empty() {
                sent += BATCH as u64;
            }
            if over(sent) {
                break;
            }
            pending = batch(sent);
            off = 0;
        }
        // A write cut short by the timeout resumes where it stopped, so frames stay whole.
        let result = match flooder.writer.lock() {
            Ok(mut s) => s.write(&pending[off..]),
            Err(_) => break,
        };
        match result {
            Ok(0) => break,
            Ok(n) => off += n,
            Err(e) => match Ending::of_error(&e) {
                None => {}
                Some(Ending::Timeout) if !over(sent) => {}
                Some(_) => break,
            },
        }
    }
    let secs = started.elapsed().as_secs_f64();
    // Give the reader a moment to see the close that ended the writes.
    let deadline = Instant::now() + Duration::from_secs(2);
    while !flooder.live.ended.load(Ordering::SeqCst) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
    let report = flooder.finish();
    Flooded {
        sent,
        ended_after: report.ended_after,
        secs,
        report,
    }
}

/// Scenario `publish_flood`: a member publishing with no pause for `bound`.
pub struct PublishFlood {
    bound: Duration,
}

impl PublishFlood {
    /// The scenario as `cfg` sizes it.
    pub fn new(cfg: &AbuseConfig) -> PublishFlood {
        PublishFlood {
            bound: cfg.duration_or(Duration::from_secs(5), Duration::from_secs(15)),
        }
    }
}

/// What the flood and the readers saw, and the room's count.
pub struct FloodSeen {
    f: Flooded,
    published: Option<f64>,
    reports: Vec<MemberReport>,
}

impl Play for PublishFlood {
    type Clients = Speaking;
    type Outcome = FloodSeen;

    fn expectation(&self) -> &'static str {
        "the flooder gets rate_limited and is closed with 1008; 10 reading members get every sequenced message (no gap) and stay connected"
    }

    fn reads(&self) -> Reads {
        Reads::scrape(PUBLISH_COUNTERS)
    }

    fn connect(&self, cx: &Cx) -> Result<Speaking, String> {
        crowd::speaking(cx.cfg, ROOM, READERS, "flooder")
    }

    fn run(&self, cx: &Cx, room: Speaking) -> Result<FloodSeen, String> {
        let Speaking {
            readers,
            speaker: flooder,
        } = room;
        let f = flood(flooder, self.bound, |sent| {
            let mut out = Vec::with_capacity(BATCH * 64);
            for n in sent + 1..=sent + BATCH as u64 {
                out.extend(client::text_frame(&format!(
                    r#"{{"op":"publish","topic":"{ROOM}","data":{{"n":{n}}}}}"#
                )));
            }
            out
        });
        let published = probe::settled(
            cx.cfg.target,
            "tickcast_messages_published_total",
            &[("topic", crate::metrics::ROOMS_LABEL)],
            SETTLE,
        )?;
        let refs: Vec<&Member> = readers.iter().collect();
        member::wait_for_seq(&refs, published.unwrap_or(0.0) as u64, SETTLE);
        let reports: Vec<MemberReport> = readers.into_iter().map(Member::finish).collect();
        Ok(FloodSeen {
            f,
            published,
            reports,
        })
    }

    fn judge(&self, out: FloodSeen, _: &Seen) -> Judged {
        let FloodSeen {
            f,
            published,
            reports,
        } = out;
        let rate_limited = f.report.errors.get("rate_limited").copied().unwrap_or(0);
        let closed = f.report.ending;
        let complete = reports.iter().filter(|r| r.complete()).count();
        let cut_off = reports.iter().filter(|r| r.ending.is_some()).count();
        let last_seqs: Vec<u64> = reports.iter().map(|r| r.last_seq).collect();
        let min_last = last_seqs.iter().copied().min().unwrap_or(0);
        let max_last = last_seqs.iter().copied().max().unwrap_or(0);
        let all_sequenced = published.map(|p| reports.iter().all(|r| r.last_seq == p as u64));
        let checks = vec![
            Check::new(
                "flooder_closed_1008",
                closed == Some(Ending::Close(1008)),
                format!(
                    "flooder {}, {} frames sent, {rate_limited} rate_limited errors",
                    f.ending_text(),
                    f.sent
                ),
            ),
            Check::new(
                "readers_complete",
                complete == READERS,
                format!(
                    "{complete} of {READERS} readers without a seq gap, last seq {min_last}-{max_last}"
                ),
            ),
            Check::maybe(
                "readers_got_all_sequenced",
                all_sequenced,
                format!(
                    "room published {} (server), readers' last seq {min_last}-{max_last}",
                    probe::shown(published)
                ),
            ),
            Check::new(
                "readers_connected",
                cut_off == 0,
                format!("{cut_off} of {READERS} readers cut off"),
            ),
        ];
        let mut raw = Raw::default();
        raw.put("frames_sent", f.sent);
        raw.put("flooder_errors", &f.report.errors);
        raw.put("flooder_ending", closed.map(|e| e.label()));
        raw.put("flooder_closed_after_s", f.ended_after);
        raw.metric("room_published", published);
        raw.put("reader_last_seqs", &last_seqs);
        raw.put("reader_gaps", reports.iter().map(|r| r.gaps).sum::<u64>());
        let summary = format!(
            "flooder: {} frames, {rate_limited} rate_limited, {}; room published {}; readers: {complete}/{READERS} complete, last seq {min_last}-{max_last}, {cut_off} cut off",
            f.sent,
            f.ending_text(),
            probe::shown(published),
        );
        Judged {
            summary,
            checks,
            raw,
        }
    }
}

/// The invalid operations the error flooder cycles through.
fn bad_ops() -> Vec<Vec<u8>> {
    let binary = client::frame(
        client::op::FIN | client::op::BINARY,
        &[1, 2, 3, 4],
        Some(fastrand::u32(..).to_ne_bytes()),
        false,
    );
    vec![
        client::text_frame("{not json"),
        client::text_frame(r#"{"op":"nope"}"#),
        client::text_frame(r#"{"op":"publish"}"#),
        binary,
    ]
}

/// Scenario `error_flood`: a client sending only invalid operations for at most `bound`.
pub struct ErrorFlood {
    bound: Duration,
}

impl ErrorFlood {
    /// The scenario as `cfg` sizes it.
    pub fn new(cfg: &AbuseConfig) -> ErrorFlood {
        ErrorFlood {
            bound: cfg.duration.unwrap_or(Duration::from_secs(10)),
        }
    }
}

impl Play for ErrorFlood {
    type Clients = Member;
    type Outcome = Flooded;

    fn expectation(&self) -> &'static str {
        "a client sending only invalid operations is closed with 1008 after at most 10,000 error frames, within 10 s; a normal client served throughout"
    }

    fn reads(&self) -> Reads {
        Reads::scrape(&[CLIENT_ERRORS]).watched()
    }

    fn connect(&self, cx: &Cx) -> Result<Member, String> {
        let cfg = cx.cfg;
        let conn = WsConn::open(cfg.target, cfg.source(0), "/ws?topics=ticks", CONNECT)?;
        Member::spawn(conn, "ticks")
    }

    fn run(&self, _: &Cx, flooder: Member) -> Result<Flooded, String> {
        let ops = bad_ops();
        let batch: Vec<u8> = (0..BATCH)
            .flat_map(|i| ops[i % ops.len()].clone())
            .collect();
        Ok(flood(flooder, self.bound, |_| batch.clone()))
    }

    fn judge(&self, f: Flooded, seen: &Seen) -> Judged {
        let errors = f.report.error_count();
        let closed = f.report.ending;
        let checks = vec![
            Check::new(
                "closed_1008",
                closed == Some(Ending::Close(1008)),
                format!("{} ({} frames sent)", f.ending_text(), f.sent),
            ),
            Check::new(
                "bounded_errors",
                closed.is_some() && errors <= MAX_ERROR_FRAMES,
                format!("{errors} error frames before the end (limit {MAX_ERROR_FRAMES})"),
            ),
        ];
        let mut raw = Raw::default();
        raw.put("frames_sent", f.sent);
        raw.put("error_frames", errors);
        raw.put("errors_by_code", &f.report.errors);
        raw.put("ending", closed.map(|e| e.label()));
        raw.put("ended_after_s", f.ended_after);
        raw.put("flood_secs", (f.secs * 10.0).round() / 10.0);
        let server_errors = seen.delta(&CLIENT_ERRORS);
        let summary = format!(
            "{} frames sent, server answered {} errors, {errors} error frames received, {}",
            f.sent,
            probe::shown(server_errors),
            f.ending_text(),
        );
        Judged {
            summary,
            checks,
            raw,
        }
    }
}
