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
use super::member::{self, Member, MemberReport};
use super::report::{Check, Raw, Report};
use super::watch::Watcher;
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

/// What a flooder did.
struct Flooded {
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

/// Runs `publish_flood`.
pub fn run_publish(cfg: &AbuseConfig) -> Result<Report, String> {
    let bound = cfg.duration_or(Duration::from_secs(5), Duration::from_secs(15));
    let room = "abuse.flood";
    let before = probe::scrape(cfg.target)?;
    let mut readers = Vec::with_capacity(READERS);
    for i in 0..READERS {
        let path = format!("/ws?room={room}&client_id=reader{i}");
        let conn = WsConn::open(cfg.target, cfg.source(i), &path, CONNECT)?;
        readers.push(Member::spawn(conn, room)?);
    }
    let path = format!("/ws?room={room}&client_id=flooder");
    let flooder = Member::spawn(
        WsConn::open(cfg.target, cfg.source(READERS), &path, CONNECT)?,
        room,
    )?;
    let mut everyone: Vec<&Member> = readers.iter().collect();
    everyone.push(&flooder);
    if !member::wait_joined(&everyone, CONNECT) {
        return Err("the room's presence snapshot did not reach every member".into());
    }
    let f = flood(flooder, bound, |sent| {
        let mut out = Vec::with_capacity(BATCH * 64);
        for n in sent + 1..=sent + BATCH as u64 {
            out.extend(client::text_frame(&format!(
                r#"{{"op":"publish","topic":"{room}","data":{{"n":{n}}}}}"#
            )));
        }
        out
    });
    let published = probe::settled(
        cfg.target,
        "tickcast_messages_published_total",
        &[("topic", room)],
        SETTLE,
    )?;
    let refs: Vec<&Member> = readers.iter().collect();
    member::wait_for_seq(&refs, published.unwrap_or(0.0) as u64, SETTLE);
    let reports: Vec<MemberReport> = readers.into_iter().map(Member::finish).collect();
    let after = probe::scrape(cfg.target)?;

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
    raw.metric(
        "server_rate_limited",
        probe::delta(
            before.sum("tickcast_client_errors_total", &[("code", "rate_limited")]),
            after.sum("tickcast_client_errors_total", &[("code", "rate_limited")]),
        ),
    );
    raw.metric(
        "server_drops",
        probe::delta(
            before.sum("tickcast_drops_total", &[]),
            after.sum("tickcast_drops_total", &[]),
        ),
    );
    let summary = format!(
        "flooder: {} frames, {rate_limited} rate_limited, {}; room published {}; readers: {complete}/{READERS} complete, last seq {min_last}-{max_last}, {cut_off} cut off",
        f.sent,
        f.ending_text(),
        probe::shown(published),
    );
    Ok(Report::new(
        "publish_flood",
        "the flooder gets rate_limited and is closed with 1008; 10 reading members get every sequenced message (no gap) and stay connected",
        summary,
        checks,
        raw.0,
    ))
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

/// Runs `error_flood`.
pub fn run_errors(cfg: &AbuseConfig) -> Result<Report, String> {
    let bound = cfg.duration.unwrap_or(Duration::from_secs(10));
    let before = probe::scrape(cfg.target)?;
    let watcher = Watcher::start(cfg.target)?;
    let conn = WsConn::open(cfg.target, cfg.source(0), "/ws?topics=ticks", CONNECT)?;
    let flooder = Member::spawn(conn, "ticks")?;
    let ops = bad_ops();
    let batch: Vec<u8> = (0..BATCH)
        .flat_map(|i| ops[i % ops.len()].clone())
        .collect();
    let f = flood(flooder, bound, |_| batch.clone());
    let watch = watcher.finish();
    let after = probe::scrape(cfg.target)?;
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
        Check::new("watcher", watch.healthy(), watch.summary()),
    ];
    let mut raw = Raw::default();
    raw.put("frames_sent", f.sent);
    raw.put("error_frames", errors);
    raw.put("errors_by_code", &f.report.errors);
    raw.put("ending", closed.map(|e| e.label()));
    raw.put("ended_after_s", f.ended_after);
    raw.put("flood_secs", (f.secs * 10.0).round() / 10.0);
    let server_errors = probe::delta(
        before.sum("tickcast_client_errors_total", &[]),
        after.sum("tickcast_client_errors_total", &[]),
    );
    raw.metric("server_client_errors", server_errors);
    raw.put("watcher", &watch);
    let summary = format!(
        "{} frames sent, server answered {} errors, {errors} error frames received, {}; {}",
        f.sent,
        probe::shown(server_errors),
        f.ending_text(),
        watch.summary()
    );
    Ok(Report::new(
        "error_flood",
        "a client sending only invalid operations is closed with 1008 after at most 10,000 error frames, within 10 s; a normal client served throughout",
        summary,
        checks,
        raw.0,
    ))
}
