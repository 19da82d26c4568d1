//! Scenario `history_fill`: clients each join as many rooms as a connection may hold and
//! publish messages near `--max-message` into them at the default rate limits, to make the
//! node's history pin far more than its `--history-budget`.
//!
//! Each room's ring is bounded (1,000 messages, 4 MiB), but a room lives while a member
//! stays, so within the per-connection limits a few hundred clients could pin tens of GiB.
//! The node-wide budget bounds the sum: past it the node's oldest frames are evicted first,
//! whatever room holds them. `scripts/abuse.sh` runs this scenario's server with a small
//! budget (16 MiB); the tool reads the budget in effect from `/metrics`
//! (`tickcast_history_budget_bytes`) and sizes nothing from its own idea of it.
//!
//! Checks: the attack published several budgets' worth of frames; `tickcast_history_bytes`,
//! sampled every 200 ms, never passed the budget (the docs promise the sum fits after each
//! mixer turn: no slack); `tickcast_history_evicted_frames_total` rose; the server's RSS grew
//! by at most the budget plus [`rss_slack_kib`]; a `resume` from the start of the first room,
//! made after the fill while its members are still in it, gets `reset` naming an oldest seq
//! past 1 (its first frame went with the budget); a normal client is served throughout.

use std::time::{Duration, Instant};

use serde::Serialize;
use serde_json::Value;

use super::client::{self, Ending, Tally, WsConn};
use super::crowd;
use super::drive::{Counter, Cx, Judged, Play, Reads, Seen};
use super::ops::{self, Frames, Pacer};
use super::probe;
use super::report::{Check, Raw};
use super::{AbuseConfig, server_sample};

/// Each connection's worst-case own bytes in the server, KiB (docs/limits.md, "Worst-case
/// memory": a message being reassembled, a request head and its byte burst, about 0.33 MiB).
pub const CONN_KIB: u64 = 338;
/// The rest of the RSS slack, KiB: the allocator's free lists and the frames in flight
/// through the shard queues (every frame is up to 64 KiB, and the shards hold a turn's worth).
pub const FIXED_SLACK_KIB: u64 = 16 * 1024;
/// Bytes of envelope left under `--max-message` for the op around the data.
const ENVELOPE: usize = 256;
/// Share of the byte rate the publishers use (the rest is margin for jitter).
const RATE_SHARE: f64 = 0.85;
/// How often `/metrics` is sampled during the fill.
const SAMPLE_EVERY: Duration = Duration::from_millis(200);
/// Time allowed to connect, and for the resume's answer.
const STEP: Duration = Duration::from_secs(10);
/// The gauges sampled during the fill.
const BYTES: &str = "tickcast_history_bytes";
const BUDGET: &str = "tickcast_history_budget_bytes";
/// Frames the budget evicted.
const EVICTED: Counter = Counter::new("evicted", "tickcast_history_evicted_frames_total", &[]);

/// The RSS growth allowed beyond the budget for `clients` connections, KiB.
pub fn rss_slack_kib(clients: usize) -> u64 {
    clients as u64 * CONN_KIB + FIXED_SLACK_KIB
}

/// Scenario `history_fill`: `clients` publishers for `window`.
pub struct HistoryFill {
    clients: usize,
    window: Duration,
    /// Rooms per client: the server's `--max-topics`.
    rooms: usize,
    /// Bytes of each op sent.
    message: usize,
    /// Messages each client sends at once, within its byte burst, before pacing.
    burst: usize,
    /// Messages a second each client sends after its burst.
    rate: f64,
    /// Budgets' worth of frames the run must publish to mean something.
    min_fill: f64,
}

impl HistoryFill {
    /// The scenario as `cfg` sizes it, against a server with the default limits.
    pub fn new(cfg: &AbuseConfig) -> HistoryFill {
        let d = crate::config::ServerConfig::default();
        let message = d.max_message - ENVELOPE;
        HistoryFill {
            clients: cfg.count_or(40, 40),
            window: cfg.duration_or(Duration::from_secs(5), Duration::from_secs(20)),
            rooms: d.max_topics_per_conn,
            message,
            burst: (d.publish_byte_burst / message).saturating_sub(1),
            rate: d.publish_byte_rate * RATE_SHARE / message as f64,
            min_fill: if cfg.quick { 1.5 } else { 4.0 },
        }
    }

    fn room(&self, client: usize, k: usize) -> String {
        format!("room.hf.{client}.{}", k % self.rooms)
    }
}

/// One point of the history series.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Sample {
    /// Seconds since the fill began.
    pub secs: f64,
    /// `tickcast_history_bytes`.
    pub bytes: Option<f64>,
    /// The server's RSS, KiB.
    pub rss_kib: Option<u64>,
}

/// What the fill did.
pub struct Filled {
    connected: usize,
    failures: Tally,
    /// Publishes sent, and the bytes of those ops.
    sent: u64,
    sent_bytes: u64,
    frames: Frames,
    endings: Tally,
    budget: Option<f64>,
    series: Vec<Sample>,
    /// What the resume of the first room got.
    resume: Frames,
    resume_ending: Option<String>,
    secs: f64,
}

impl Play for HistoryFill {
    type Clients = (Vec<WsConn>, Tally);
    type Outcome = Filled;

    fn expectation(&self) -> &'static str {
        "clients in 64 rooms each publish near-max messages at the rate limits, several times --history-budget: history_bytes never past the budget, frames evicted, RSS growth <= budget + 0.33 MiB per client + 16 MiB, a resume from seq 1 of the first room gets reset; a normal client served throughout"
    }

    fn reads(&self) -> Reads {
        Reads::scrape(&[EVICTED]).watched().needs_pid()
    }

    fn connect(&self, cx: &Cx) -> Result<(Vec<WsConn>, Tally), String> {
        let cfg = cx.cfg;
        Ok(crowd::each(self.clients, |i| {
            let rooms: Vec<String> = (0..self.rooms)
                .map(|k| format!("room={}", self.room(i, k)))
                .collect();
            let path = format!("/ws?{}", rooms.join("&"));
            WsConn::open(cfg.target, cfg.source(i), &path, STEP)
        }))
    }

    fn run(&self, cx: &Cx, (conns, failures): (Vec<WsConn>, Tally)) -> Result<Filled, String> {
        let cfg = cx.cfg;
        let budget = cx.before.sum(BUDGET, &[]);
        let connected = conns.len();
        let started = Instant::now();
        let end = started + self.window;
        let (publishers, series) = std::thread::scope(|scope| {
            let threads: Vec<_> = conns
                .into_iter()
                .enumerate()
                .map(|(i, conn)| scope.spawn(move || self.publish(i, conn, end)))
                .collect();
            let mut series = Vec::new();
            while Instant::now() < end {
                let bytes = probe::scrape(cfg.target)
                    .ok()
                    .and_then(|m| m.sum(BYTES, &[]));
                series.push(Sample {
                    secs: started.elapsed().as_secs_f64(),
                    bytes,
                    rss_kib: server_sample(cfg).0,
                });
                std::thread::sleep(SAMPLE_EVERY);
            }
            let publishers: Vec<Publisher> =
                threads.into_iter().filter_map(|t| t.join().ok()).collect();
            (publishers, series)
        });
        let secs = started.elapsed().as_secs_f64();
        // The first room still has its member: its history is there to be asked for.
        let (resume, resume_ending) = self.resume_first(cfg);
        let mut out = Filled {
            connected,
            failures,
            sent: 0,
            sent_bytes: 0,
            frames: Frames::default(),
            endings: Tally::new(),
            budget,
            series,
            resume,
            resume_ending,
            secs,
        };
        for p in publishers {
            out.sent += p.sent;
            out.sent_bytes += p.sent_bytes;
            out.frames.merge(p.frames);
            if let Some(end) = p.ending {
                client::count(&mut out.endings, end.label());
            }
            client::abort(p.conn.stream);
        }
        Ok(out)
    }

    fn judge(&self, f: Filled, seen: &Seen) -> Judged {
        let n = self.clients;
        let evicted = seen.delta(&EVICTED);
        let peak = f
            .series
            .iter()
            .filter_map(|s| s.bytes)
            .fold(None, |m: Option<f64>, b| Some(m.map_or(b, |m| m.max(b))));
        let sampled = f.series.iter().filter(|s| s.bytes.is_some()).count();
        let rss0 = seen.host_before.rss_kib;
        let rss_peak = f.series.iter().filter_map(|s| s.rss_kib).max();
        let growth = rss0.zip(rss_peak).map(|(a, b)| b.saturating_sub(a));
        let rss_limit = f
            .budget
            .map(|b| b as u64 / 1024 + rss_slack_kib(f.connected));
        let fill = f.budget.map(|b| f.sent_bytes as f64 / b.max(1.0));
        let first = self.room(0, 0);
        let reset = f.resume.resets.iter().find(|r| r.topic == first);
        let mib = |b: f64| b / (1 << 20) as f64;
        let checks = vec![
            Check::new(
                "all_connected",
                f.connected == n,
                format!(
                    "{} of {n} publishers in {} rooms each; failures: {}",
                    f.connected,
                    self.rooms,
                    client::tally_text(&f.failures)
                ),
            ),
            Check::maybe(
                "overfilled",
                fill.map(|x| x >= self.min_fill),
                format!(
                    "{:.1} MiB published in {} messages = {} budgets (at least {})",
                    mib(f.sent_bytes as f64),
                    f.sent,
                    fill.map_or("?".into(), |x| format!("{x:.1}")),
                    self.min_fill
                ),
            ),
            Check::new(
                "not_refused",
                f.frames.error_count() == 0 && f.endings.is_empty(),
                format!(
                    "errors: {}; closed: {}",
                    client::tally_text(&f.frames.errors),
                    client::tally_text(&f.endings)
                ),
            ),
            Check::maybe(
                "within_budget",
                f.budget
                    .zip(peak)
                    .map(|(b, p)| p <= b && sampled * 2 >= f.series.len()),
                format!(
                    "history_bytes peak {} MiB over {sampled} samples, budget {} MiB",
                    peak.map_or("?".into(), |p| format!("{:.2}", mib(p))),
                    f.budget
                        .map_or("absent".into(), |b| format!("{:.2}", mib(b)))
                ),
            ),
            Check::maybe(
                "evicted",
                evicted.map(|e| e > 0.0),
                format!("history_evicted_frames +{}", probe::shown(evicted)),
            ),
            Check::maybe(
                "rss_bounded",
                growth.zip(rss_limit).map(|(g, l)| g <= l),
                format!(
                    "server RSS grew {} MiB at the peak (limit {} MiB: budget + {} clients x {CONN_KIB} KiB + {} MiB)",
                    growth.map_or("?".into(), |g| format!("{:.1}", g as f64 / 1024.0)),
                    rss_limit.map_or("?".into(), |l| format!("{:.1}", l as f64 / 1024.0)),
                    f.connected,
                    FIXED_SLACK_KIB / 1024
                ),
            ),
            Check::new(
                "resume_reset",
                reset.is_some_and(|r| r.oldest > 1),
                format!(
                    "resume {first} from seq 1: {}",
                    match (reset, &f.resume_ending) {
                        (Some(r), _) => format!("reset oldest {} latest {}", r.oldest, r.latest),
                        (None, Some(e)) => format!("no reset ({e})"),
                        (None, None) => format!("no reset, {} messages", f.resume.messages),
                    }
                ),
            ),
        ];
        let mut raw = Raw::default();
        raw.put("clients", n);
        raw.put("rooms_per_client", self.rooms);
        raw.put("message_bytes", self.message);
        raw.put("published", f.sent);
        raw.put("published_bytes", f.sent_bytes);
        raw.put("echoed", f.frames.messages);
        raw.put("budget_bytes", f.budget);
        raw.put("history_bytes_peak", peak);
        raw.put("server_rss_before_kib", rss0);
        raw.put("server_rss_peak_kib", rss_peak);
        raw.put("rss_growth_kib", growth);
        raw.put("rss_limit_kib", rss_limit);
        raw.put("resume_resets", &f.resume.resets);
        raw.put("series", &f.series);
        let summary = format!(
            "{} clients published {:.1} MiB in {:.1} s ({} budgets); history_bytes peak {} of {} MiB, {} evicted; RSS +{} MiB; resume: {}",
            f.connected,
            mib(f.sent_bytes as f64),
            f.secs,
            fill.map_or("?".into(), |x| format!("{x:.1}")),
            peak.map_or("?".into(), |p| format!("{:.2}", mib(p))),
            f.budget.map_or("?".into(), |b| format!("{:.0}", mib(b))),
            probe::shown(evicted),
            growth.map_or("?".into(), |g| format!("{:.1}", g as f64 / 1024.0)),
            reset.map_or("no reset".into(), |r| format!("reset oldest {}", r.oldest)),
        );
        Judged {
            summary,
            checks,
            raw,
        }
    }
}

/// One publisher's run; it keeps its connection (its rooms live while it stays).
struct Publisher {
    conn: WsConn,
    sent: u64,
    sent_bytes: u64,
    frames: Frames,
    ending: Option<Ending>,
}

impl HistoryFill {
    /// Client `i`: its burst at once, then messages at the pace until `end`, round-robin
    /// over its rooms, reading its echoes meanwhile.
    fn publish(&self, i: usize, conn: WsConn, end: Instant) -> Publisher {
        let mut p = Publisher {
            conn,
            sent: 0,
            sent_bytes: 0,
            frames: Frames::default(),
            ending: None,
        };
        let mut pacer = Pacer::new(self.rate);
        let mut k = 0usize;
        while p.ending.is_none() {
            let due = if k < self.burst {
                Instant::now()
            } else {
                pacer.next_due()
            };
            if due >= end {
                break;
            }
            p.ending = ops::read_until(&mut p.conn, due, &mut p.frames);
            if p.ending.is_some() {
                break;
            }
            let op = self.message_op(&self.room(i, k));
            if p.conn.send_text(&op).is_err() {
                p.ending = Some(Ending::Reset);
                break;
            }
            p.sent += 1;
            p.sent_bytes += op.len() as u64;
            k += 1;
        }
        p
    }

    /// A publish of `self.message` bytes into `room`.
    fn message_op(&self, room: &str) -> String {
        let shell = ops::publish(room, &Value::String(String::new()));
        let fill = self.message.saturating_sub(shell.len());
        ops::publish(room, &Value::String("h".repeat(fill)))
    }

    /// A fresh connection resumes the first room from its start: what did it get?
    fn resume_first(&self, cfg: &AbuseConfig) -> (Frames, Option<String>) {
        let mut frames = Frames::default();
        let first = self.room(0, 0);
        let path = format!("/ws?room={}", ops::fresh_room("hf-probe"));
        let mut conn = match WsConn::open(cfg.target, cfg.source(self.clients), &path, STEP) {
            Ok(c) => c,
            Err(e) => return (frames, Some(e)),
        };
        if let Err(e) = conn.send_text(&ops::resume(&first, 0)) {
            return (frames, Some(e.to_string()));
        }
        let done = ops::read_for(&mut conn, Instant::now() + STEP, &mut frames, |f| {
            !f.resets.is_empty() || f.messages > 0 || f.error_count() > 0
        });
        client::abort(conn.stream);
        (frames, (!done).then(|| "no answer".to_string()))
    }
}
