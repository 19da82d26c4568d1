//! Scenario `label_churn`: a few anonymous clients, within the default rate limits, each
//! make room after short-lived room (subscribe to a fresh `room.lc.<random>`, publish one
//! message, unsubscribe) for the whole window, to grow `/metrics` one series per room.
//!
//! Before the metrics aggregated rooms, three clients made 1,896 rooms in 20 s and as many
//! `tickcast_messages_published_total{topic=...}` series, each naming a room a scraper was
//! never meant to see. Now every room is counted under `topic="rooms"`, so the set of series
//! is fixed: after the churn the page must have as many series as before (within
//! [`SERIES_SLACK`]) and about the same size (within [`BYTES_SLACK`]: counters gain digits),
//! and no room name made may appear anywhere in it. The clients pace themselves under
//! `--publish-rate` (three messages a room), so the server has no reason to refuse or close
//! them: any error frame fails the run.

use std::time::{Duration, Instant};

use super::AbuseConfig;
use super::client::{self, Tally, WsConn};
use super::crowd;
use super::drive::{Cx, Judged, Play, Reads, Seen};
use super::ops::{self, Frames, Maker};
use super::report::{Check, Raw};

/// Series the page may gain during the run: a family's first series can appear at its
/// first use (`topic="rooms"` at the first room publish).
pub const SERIES_SLACK: usize = 4;
/// Bytes the page may grow by: every counter and histogram gaining a few digits.
pub const BYTES_SLACK: usize = 8 * 1024;
/// The prefix of every room the scenario makes (searched for in the page as a whole).
const TAG: &str = "lc";
/// Operations per room: subscribe, publish, unsubscribe.
const OPS_PER_ROOM: f64 = 3.0;
/// Share of the server's message rate the clients use (the rest is margin for jitter).
const RATE_SHARE: f64 = 0.9;
/// Time allowed to connect, and to read the last replies after the window.
const STEP: Duration = Duration::from_secs(5);

/// Scenario `label_churn`: `clients` room makers for `window`.
pub struct LabelChurn {
    clients: usize,
    window: Duration,
    /// Rooms each client makes a second, under the server's default `--publish-rate`.
    rooms_per_sec: f64,
    /// Rooms the run must have made for the result to mean something.
    min_rooms: u64,
}

impl LabelChurn {
    /// The scenario as `cfg` sizes it.
    pub fn new(cfg: &AbuseConfig) -> LabelChurn {
        let rate = crate::config::ServerConfig::default().publish_rate;
        LabelChurn {
            clients: cfg.count_or(3, 3),
            window: cfg.duration_or(Duration::from_secs(4), Duration::from_secs(20)),
            rooms_per_sec: rate * RATE_SHARE / OPS_PER_ROOM,
            min_rooms: if cfg.quick { 50 } else { 500 },
        }
    }
}

/// What the makers did.
pub struct Churned {
    makers: Vec<Maker>,
    failures: Tally,
    secs: f64,
}

impl Play for LabelChurn {
    type Clients = (Vec<WsConn>, Tally);
    type Outcome = Churned;

    fn expectation(&self) -> &'static str {
        "clients within the rate limits make hundreds of short-lived rooms: /metrics keeps its series (within 4) and its size (within 8 KiB), names none of the rooms, refuses no client; a normal client served throughout"
    }

    fn reads(&self) -> Reads {
        Reads::scrape(&[]).watched()
    }

    fn connect(&self, cx: &Cx) -> Result<(Vec<WsConn>, Tally), String> {
        let cfg = cx.cfg;
        Ok(crowd::each(self.clients, |i| {
            // A room of its own to start in: `/ws` alone would subscribe to `*`.
            let path = format!("/ws?room={}", ops::fresh_room("lc-home"));
            WsConn::open(cfg.target, cfg.source(i), &path, STEP)
        }))
    }

    fn run(&self, _: &Cx, (conns, failures): (Vec<WsConn>, Tally)) -> Result<Churned, String> {
        let started = Instant::now();
        let end = started + self.window;
        let makers = std::thread::scope(|scope| {
            let threads: Vec<_> = conns
                .into_iter()
                .map(|conn| {
                    scope.spawn(move || {
                        ops::make_rooms(conn, TAG, self.rooms_per_sec, usize::MAX, end)
                    })
                })
                .collect();
            threads
                .into_iter()
                .map(|t| t.join().map_err(|_| "a room maker panicked".to_string()))
                .collect::<Result<Vec<_>, _>>()
        })?;
        Ok(Churned {
            makers,
            failures,
            secs: started.elapsed().as_secs_f64(),
        })
    }

    fn judge(&self, c: Churned, seen: &Seen) -> Judged {
        let n = self.clients as u64;
        let connected = c.makers.len() as u64;
        let mut frames = Frames::default();
        let mut endings = Tally::new();
        let mut names = Vec::new();
        for m in c.makers {
            frames.merge(m.frames);
            if let Some(end) = m.ending {
                client::count(&mut endings, end.label());
            }
            names.extend(m.names);
        }
        // The welcome and each maker's home room are acks too.
        let rooms = frames.acks_of("subscribed");
        let left = frames.acks_of("unsubscribed");
        let (series0, series1) = (seen.before.series(), seen.after.series());
        let (bytes0, bytes1) = (seen.before.body().len(), seen.after.body().len());
        let body = seen.after.body();
        let named = names.iter().filter(|r| body.contains(r.as_str())).count();
        let tagged = body.contains(&format!("room.{TAG}"));
        let scraped = series0 > 0 && series1 > 0;
        let checks = vec![
            Check::new(
                "all_connected",
                connected == n,
                format!(
                    "{connected} of {n} makers connected; failures: {}",
                    client::tally_text(&c.failures)
                ),
            ),
            Check::new(
                "rooms_made",
                rooms >= self.min_rooms,
                format!(
                    "{rooms} rooms joined, {left} left, {} published back in {:.1} s (at least {})",
                    frames.messages, c.secs, self.min_rooms
                ),
            ),
            Check::new(
                "not_refused",
                frames.error_count() == 0 && endings.is_empty(),
                format!(
                    "errors: {}; closed: {}",
                    client::tally_text(&frames.errors),
                    client::tally_text(&endings)
                ),
            ),
            Check::new(
                "series_fixed",
                scraped && series1 <= series0 + SERIES_SLACK,
                format!("{series0} series before, {series1} after (slack {SERIES_SLACK})"),
            ),
            Check::new(
                "size_fixed",
                scraped && bytes1 <= bytes0 + BYTES_SLACK,
                format!("/metrics {bytes0} bytes before, {bytes1} after (slack {BYTES_SLACK})"),
            ),
            Check::new(
                "no_room_named",
                named == 0 && !tagged,
                format!(
                    "{named} of {} room names in /metrics; prefix room.{TAG} {}",
                    names.len(),
                    if tagged { "present" } else { "absent" }
                ),
            ),
        ];
        let mut raw = Raw::default();
        raw.put("clients", n);
        raw.put("rooms_asked", names.len());
        raw.put("rooms_joined", rooms);
        raw.put("rooms_left", left);
        raw.put("published_back", frames.messages);
        raw.put("rooms_per_s", (rooms as f64 / c.secs.max(1e-9)).round());
        raw.put("errors", &frames.errors);
        raw.put("series_before", series0);
        raw.put("series_after", series1);
        raw.put("metrics_bytes_before", bytes0);
        raw.put("metrics_bytes_after", bytes1);
        raw.put("room_names_in_metrics", named);
        let summary = format!(
            "{rooms} rooms made by {connected} clients in {:.1} s, {} errors; /metrics {series0} -> {series1} series, {bytes0} -> {bytes1} bytes, {named} room names shown",
            c.secs,
            frames.error_count()
        );
        Judged {
            summary,
            checks,
            raw,
        }
    }
}
