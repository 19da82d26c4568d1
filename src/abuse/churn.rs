//! Scenarios `churn` and `rst_churn`: connections opened and ended over and over, several in
//! flight at once, while a normal client keeps reading ticks.
//!
//! `churn` does the clean cycle: connect, upgrade on `/ws`, close 1000, wait for the server's
//! close frame, then for its TCP close. `rst_churn` resets instead: four cycles in five right
//! after the 101, the fifth halfway through the request. Either way the server must fail no
//! cycle, give back every descriptor, and keep its memory flat: RSS after the last tenth of
//! the cycles within 5 MiB of RSS after the first tenth (the series is recorded).

use std::io::Write;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use serde::Serialize;

use super::client::{self, Ending, Tally, WsConn};
use super::report::{Check, Raw, Report};
use super::watch::Watcher;
use super::{AbuseConfig, mib, probe, server_sample, wait_for_fds};

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

/// Runs `churn` (clean) or `rst_churn` (reset).
pub fn run(cfg: &AbuseConfig, mode: Mode) -> Result<Report, String> {
    let (name, quick_n, full_n) = match mode {
        Mode::Clean => ("churn", 5_000, 500_000),
        Mode::Reset => ("rst_churn", 5_000, 225_000),
    };
    let n = cfg.count_or(quick_n, full_n);
    let bound = cfg.duration_or(Duration::from_secs(30), Duration::from_secs(330));
    let (rss0, fds0) = server_sample(cfg);
    let before = probe::scrape(cfg.target)?;
    let watcher = Watcher::start(cfg.target)?;

    let next = Arc::new(AtomicUsize::new(0));
    let done = Arc::new(AtomicUsize::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let started = Instant::now();
    let deadline = started + bound;
    let workers: Vec<_> = (0..cfg.concurrency)
        .map(|_| {
            let (cfg, next, done, stop) = (cfg.clone(), next.clone(), done.clone(), stop.clone());
            std::thread::spawn(move || {
                let mut tally = Tally::new();
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= n || Instant::now() >= deadline || stop.load(Ordering::Relaxed) {
                        break;
                    }
                    client::count(&mut tally, cycle(&cfg, i, mode));
                    done.fetch_add(1, Ordering::Relaxed);
                }
                tally
            })
        })
        .collect();

    // The RSS series: one sample each time another tenth of the cycles is done.
    let step = (n / 10).max(1);
    let mut series = vec![Sample {
        cycles: 0,
        secs: 0.0,
        rss_kib: rss0,
        fds: fds0,
    }];
    let mut next_mark = step;
    while !workers.iter().all(|w| w.is_finished()) {
        let d = done.load(Ordering::Relaxed);
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
        std::thread::sleep(Duration::from_millis(5));
    }
    let mut tally = Tally::new();
    for w in workers {
        for (k, v) in w.join().map_err(|_| "a churn thread panicked")? {
            *tally.entry(k).or_default() += v;
        }
    }
    let cycles = done.load(Ordering::Relaxed);
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
    let watch = watcher.finish();
    let fds_end = fds0.and_then(|f| wait_for_fds(cfg, f, SETTLE));
    let (rss_end, _) = server_sample(cfg);
    let after = probe::scrape(cfg.target)?;

    let failures: u64 = tally
        .iter()
        .filter(|(k, _)| !k.starts_with("ok"))
        .map(|(_, v)| v)
        .sum();
    let first_tenth = series
        .iter()
        .find(|s| s.cycles >= step)
        .and_then(|s| s.rss_kib);
    let last = series.last().and_then(|s| s.rss_kib);
    let growth = match (first_tenth, last) {
        (Some(a), Some(b)) => Some(b as i64 - a as i64),
        _ => None,
    };

    let mut checks = vec![
        Check::maybe(
            "all_cycles",
            (cycles >= n).then_some(true),
            format!("{cycles} of {n} cycles within the {bound:?} bound"),
        ),
        Check::new(
            "no_failures",
            failures == 0,
            format!("{failures} failed: {}", client::tally_text(&tally)),
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
        Check::new("watcher", watch.healthy(), watch.summary()),
    ];
    if cfg.server_pid.is_none() {
        checks.push(Check::maybe(
            "server_pid",
            None,
            "no --server-pid: fds and RSS not read",
        ));
    }
    let mut raw = Raw::default();
    raw.put("cycles", cycles);
    raw.put("cycles_per_s", (cycles as f64 / secs.max(1e-9)).round());
    raw.put("outcomes", &tally);
    raw.put("fds_before", fds0);
    raw.put("fds_after", fds_end);
    raw.put("rss_before_kib", rss0);
    raw.put("rss_end_kib", rss_end);
    raw.put("rss_growth_kib", growth);
    raw.put("series", &series);
    raw.put("watcher", &watch);
    let d = |name: &str, labels: &[(&str, &str)]| {
        probe::delta(before.sum(name, labels), after.sum(name, labels))
    };
    raw.metric("server_handshakes", d("tickcast_handshakes_total", &[]));
    raw.metric(
        "server_closes_1000",
        d("tickcast_closes_total", &[("code", "1000")]),
    );
    raw.metric(
        "server_closes_1006",
        d("tickcast_closes_total", &[("code", "1006")]),
    );
    let summary = format!(
        "{cycles} cycles ({:.0}/s), {failures} failed; fds {}->{}; RSS {} -> {} MiB (growth {} KiB); {}",
        cycles as f64 / secs.max(1e-9),
        opt(fds0),
        opt(fds_end),
        opt_mib(first_tenth),
        opt_mib(last),
        growth.map_or("?".into(), |g| g.to_string()),
        watch.summary()
    );
    let expectation = match mode {
        Mode::Clean => {
            "connect/upgrade/close 1000 cycles: no failure, server fds back to idle, RSS after the last tenth within 5 MiB of the first tenth, a normal client served throughout"
        }
        Mode::Reset => {
            "cycles reset after the 101 (1 in 5 mid-request): no failure, server fds back to idle, RSS within 5 MiB, a normal client served throughout"
        }
    };
    Ok(Report::new(name, expectation, summary, checks, raw.0))
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
