//! Scenarios `churn` and `rst_churn`: connections opened and ended over and over, several in
//! flight at once, while a normal client keeps reading ticks.
//!
//! `churn` does the clean cycle: connect, upgrade on `/ws`, close 1000, wait for the server's
//! close frame, then for its TCP close. `rst_churn` resets instead: four cycles in five right
//! after the 101, the fifth halfway through the request. Either way the server must fail no
//! cycle, give back every descriptor, and keep its memory flat: RSS after the last tenth of
//! the cycles within 5 MiB of RSS after the first tenth (the series is recorded).

use std::io::Write;
use std::time::{Duration, Instant};

use serde::Serialize;

use super::client::{self, Ending, Tally, WsConn};
use super::crowd::{self, Pool};
use super::drive::{Counter, Cx, Judged, Play, Reads, Seen};
use super::report::{Check, Raw};
use super::{AbuseConfig, mib, server_sample};

/// How a cycle ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Close handshake, then TCP close.
    Clean,
    /// RST (after the 101, or in the middle of the request).
    Reset,
}

/// Largest RSS growth from the first tenth of the cycles to the last, KiB.
pub const RSS_GROWTH_LIMIT_KIB: u64 = 5 * 1024;
/// Time allowed for connect, upgrade or the close handshake of one cycle.
const STEP_TIMEOUT: Duration = Duration::from_secs(10);
/// Time allowed after the last cycle for the server's descriptors to come back.
const SETTLE: Duration = Duration::from_secs(10);
/// What the server counted of the cycles.
const COUNTERS: &[Counter] = &[
    Counter::new("server_handshakes", "tickcast_handshakes_total", &[]),
    Counter::new(
        "server_closes_1000",
        "tickcast_closes_total",
        &[("code", "1000")],
    ),
    Counter::new(
        "server_closes_1006",
        "tickcast_closes_total",
        &[("code", "1006")],
    ),
];

/// One point of the RSS series.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Sample {
    /// Cycles done when sampled.
    pub cycles: usize,
    /// Seconds since the start.
    pub secs: f64,
    /// Server RSS, KiB.
    pub rss_kib: Option<u64>,
    /// Server descriptors.
    pub fds: Option<u64>,
}

/// Scenario `churn` (clean) or `rst_churn` (reset): `cycles` cycles within `bound`.
pub struct Churn {
    mode: Mode,
    cycles: usize,
    bound: Duration,
}

impl Churn {
    /// The scenario in `mode`, as `cfg` sizes it.
    pub fn new(cfg: &AbuseConfig, mode: Mode) -> Churn {
        let full = match mode {
            Mode::Clean => 500_000,
            Mode::Reset => 225_000,
        };
        Churn {
            mode,
            cycles: cfg.count_or(5_000, full),
            bound: cfg.duration_or(Duration::from_secs(30), Duration::from_secs(330)),
        }
    }

    /// Cycles between two points of the RSS series.
    fn step(&self) -> usize {
        (self.cycles / 10).max(1)
    }
}

/// What the cycles did.
pub struct Churned {
    tally: Tally,
    cycles: usize,
    secs: f64,
    series: Vec<Sample>,
}

impl Play for Churn {
    type Clients = ();
    type Outcome = Churned;

    fn expectation(&self) -> &'static str {
        match self.mode {
            Mode::Clean => {
                "connect/upgrade/close 1000 cycles: no failure, server fds back to idle, RSS after the last tenth within 5 MiB of the first tenth, a normal client served throughout"
            }
            Mode::Reset => {
                "cycles reset after the 101 (1 in 5 mid-request): no failure, server fds back to idle, RSS within 5 MiB, a normal client served throughout"
            }
        }
    }

    fn reads(&self) -> Reads {
        Reads::scrape(COUNTERS)
            .watched()
            .settle_fds(SETTLE)
            .needs_pid()
    }

    /// Each cycle connects on its own.
    fn connect(&self, _: &Cx) -> Result<(), String> {
        Ok(())
    }

    fn run(&self, cx: &Cx, (): ()) -> Result<Churned, String> {
        let cfg = cx.cfg;
        let started = Instant::now();
        let spec = Pool {
            total: self.cycles,
            threads: cfg.concurrency,
            until: Some(started + self.bound),
            groups: 1,
        };
        // The RSS series: one sample each time another tenth of the cycles is done.
        let step = self.step();
        let mut series = vec![Sample {
            cycles: 0,
            secs: 0.0,
            rss_kib: cx.host.rss_kib,
            fds: cx.host.fds,
        }];
        let mut next_mark = step;
        let pooled = crowd::pool(
            &spec,
            |i| Some(cycle(cfg, i, self.mode)),
            |d| {
                if d >= next_mark {
                    let (rss, fds) = server_sample(cfg);
                    series.push(Sample {
                        cycles: d,
                        secs: started.elapsed().as_secs_f64(),
                        rss_kib: rss,
                        fds,
                    });
                    next_mark = (d / step + 1) * step;
                }
            },
        )?;
        let cycles = pooled.done;
        let secs = started.elapsed().as_secs_f64();
        if series.last().is_none_or(|s| s.cycles < cycles) {
            let (rss, fds) = server_sample(cfg);
            series.push(Sample {
                cycles,
                secs,
                rss_kib: rss,
                fds,
            });
        }
        Ok(Churned {
            tally: pooled.tallies.into_iter().next().unwrap_or_default(),
            cycles,
            secs,
            series,
        })
    }

    fn judge(&self, c: Churned, seen: &Seen) -> Judged {
        let n = self.cycles;
        let (rss0, fds0) = (seen.host_before.rss_kib, seen.host_before.fds);
        let (rss_end, fds_end) = (seen.host_after.rss_kib, seen.host_after.fds);
        let failures: u64 = c
            .tally
            .iter()
            .filter(|(k, _)| !k.starts_with("ok"))
            .map(|(_, v)| v)
            .sum();
        let first_tenth = c
            .series
            .iter()
            .find(|s| s.cycles >= self.step())
            .and_then(|s| s.rss_kib);
        let last = c.series.last().and_then(|s| s.rss_kib);
        let growth = match (first_tenth, last) {
            (Some(a), Some(b)) => Some(b as i64 - a as i64),
            _ => None,
        };
        let cycles = c.cycles;
        let checks = vec![
            Check::maybe(
                "all_cycles",
                (cycles >= n).then_some(true),
                format!("{cycles} of {n} cycles within the {:?} bound", self.bound),
            ),
            Check::new(
                "no_failures",
                failures == 0,
                format!("{failures} failed: {}", client::tally_text(&c.tally)),
            ),
            Check::maybe(
                "fds_back",
                fds0.zip(fds_end).map(|(a, b)| b <= a),
                format!("server fds {} before, {} after", opt(fds0), opt(fds_end)),
            ),
            Check::maybe(
                "rss_flat",
                growth.map(|g| g <= RSS_GROWTH_LIMIT_KIB as i64),
                format!(
                    "RSS {} MiB after the first tenth, {} MiB after the last",
                    opt_mib(first_tenth),
                    opt_mib(last)
                ),
            ),
        ];
        let mut raw = Raw::default();
        raw.put("cycles", cycles);
        raw.put("cycles_per_s", (cycles as f64 / c.secs.max(1e-9)).round());
        raw.put("outcomes", &c.tally);
        raw.put("fds_before", fds0);
        raw.put("fds_after", fds_end);
        raw.put("rss_before_kib", rss0);
        raw.put("rss_end_kib", rss_end);
        raw.put("rss_growth_kib", growth);
        raw.put("series", &c.series);
        let summary = format!(
            "{cycles} cycles ({:.0}/s), {failures} failed; fds {}->{}; RSS {} -> {} MiB (growth {} KiB)",
            cycles as f64 / c.secs.max(1e-9),
            opt(fds0),
            opt(fds_end),
            opt_mib(first_tenth),
            opt_mib(last),
            growth.map_or("?".into(), |g| g.to_string()),
        );
        Judged {
            summary,
            checks,
            raw,
        }
    }
}

/// One cycle; returns its outcome label (`ok...` or a failure reason).
fn cycle(cfg: &AbuseConfig, i: usize, mode: Mode) -> String {
    let source = cfg.source(i);
    match mode {
        Mode::Clean => match WsConn::open(cfg.target, source, "/ws", STEP_TIMEOUT) {
            Err(reason) => reason,
            Ok(conn) => match conn.close_cleanly(STEP_TIMEOUT) {
                (Ending::Close(1000), true) => "ok".into(),
                (Ending::Close(1000), false) => "no_tcp_close_after_close_frame".into(),
                (end, _) => format!("{}_instead_of_close_1000", end.label()),
            },
        },
        Mode::Reset if i % 5 == 4 => {
            let mut stream = match client::connect(cfg.target, source, STEP_TIMEOUT) {
                Ok(s) => s,
                Err(e) => return client::connect_failure(&e).to_string(),
            };
            let req =
                crate::load::wire::upgrade_request(&cfg.host(), "/ws", "dGhlIHNhbXBsZSBub25jZQ==");
            let _ = stream.write_all(&req[..req.len() / 2]);
            client::abort(stream);
            "ok_mid_request".into()
        }
        Mode::Reset => {
            let mut stream = match client::connect(cfg.target, source, STEP_TIMEOUT) {
                Ok(s) => s,
                Err(e) => return client::connect_failure(&e).to_string(),
            };
            match client::upgrade(&mut stream, &cfg.host(), "/ws", STEP_TIMEOUT) {
                Ok(_) => {
                    client::abort(stream);
                    "ok".into()
                }
                Err(reason) => reason,
            }
        }
    }
}

fn opt(v: Option<u64>) -> String {
    v.map_or("?".into(), |v| v.to_string())
}

fn opt_mib(kib: Option<u64>) -> String {
    kib.map_or("?".into(), |k| format!("{:.1}", mib(k)))
}
