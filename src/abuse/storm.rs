//! Scenario `reconnect_storm`: thousands of clients connected on `/ws`, all dropped at once
//! and all reconnecting at once, as after a network blip or a load balancer's restart.
//!
//! Connections are spread over source addresses 127.0.0.1-127.0.0.8 (bound with
//! `IP_BIND_ADDRESS_NO_PORT`) so ephemeral ports do not run out. Every client must be back
//! (101) within a few seconds with no failure; the time from the first reconnect to the last
//! 101 and the failures by kind are reported.

use std::time::{Duration, Instant};

use super::client;
use super::fleet::Fleet;
use super::report::{Check, Raw, Report, quantile, sorted};
use super::{AbuseConfig, probe};

/// Longest time from the first reconnect to the last 101.
pub const BACK_WITHIN: Duration = Duration::from_secs(5);
/// Initial connections opened per second.
const RAMP_RATE: f64 = 2000.0;
/// Connects issued between two polls while storming.
const STORM_SLICE: usize = 256;

/// Runs `reconnect_storm`.
pub fn run(cfg: &AbuseConfig) -> Result<Report, String> {
    let n = cfg.count_or(500, 10_000);
    let path = "/ws?topics=ticks";
    let before = probe::scrape(cfg.target)?;

    // Everyone connects, at a steady ramp.
    let mut fleet = Fleet::new().map_err(|e| format!("poll: {e}"))?;
    let ramp_start = Instant::now();
    let mut opened = 0;
    while opened < n {
        let due = ((ramp_start.elapsed().as_secs_f64() * RAMP_RATE) as usize + 1).min(n);
        while opened < due {
            fleet.open(cfg.target, cfg.source(opened), path);
            opened += 1;
        }
        fleet
            .turn(Duration::from_millis(5))
            .map_err(|e| e.to_string())?;
    }
    fleet
        .run_until(Instant::now() + Duration::from_secs(15), |f| {
            f.counts().0 == 0
        })
        .map_err(|e| e.to_string())?;
    let (_, first_open, first_failed, _) = fleet.counts();
    let first_tally = fleet.tally();
    // Let the server settle with everyone connected.
    fleet
        .run_until(Instant::now() + Duration::from_secs(1), |_| false)
        .map_err(|e| e.to_string())?;

    // Everyone drops at once, and everyone reconnects at once.
    fleet.drop_all();
    let storm_start = Instant::now();
    let mut storm = Fleet::new().map_err(|e| format!("poll: {e}"))?;
    for i in 0..n {
        storm.open(cfg.target, cfg.source(i), path);
        if i % STORM_SLICE == STORM_SLICE - 1 {
            storm.turn(Duration::ZERO).map_err(|e| e.to_string())?;
        }
    }
    let issued_secs = storm_start.elapsed().as_secs_f64();
    storm
        .run_until(Instant::now() + Duration::from_secs(30), |f| {
            f.counts().0 == 0
        })
        .map_err(|e| e.to_string())?;
    let (_, back, failed, ended) = storm.counts();
    let tally = storm.tally();
    let last_back = storm
        .last_upgrade()
        .map(|t| t.saturating_duration_since(storm_start).as_secs_f64());
    let hs = sorted(storm.handshake_ms());
    storm.drop_all();
    let after = probe::scrape(cfg.target)?;

    let mut failures = tally.clone();
    failures.remove("open");
    let checks = vec![
        Check::new(
            "first_connect",
            first_open == n && first_failed == 0,
            format!(
                "{first_open} of {n} connected before the storm: {}",
                client::tally_text(&first_tally)
            ),
        ),
        Check::new(
            "all_back",
            back == n && failed == 0 && ended == 0,
            format!(
                "{back} of {n} back; failures: {}",
                client::tally_text(&failures)
            ),
        ),
        Check::new(
            "back_quickly",
            back == n && last_back.is_some_and(|t| t <= BACK_WITHIN.as_secs_f64()),
            format!(
                "last 101 {} s after the first reconnect (limit {} s)",
                last_back.map_or("-".into(), |t| format!("{t:.2}")),
                BACK_WITHIN.as_secs()
            ),
        ),
    ];
    let mut raw = Raw::default();
    raw.put("clients", n);
    raw.put("first_connect", &first_tally);
    raw.put("storm_outcomes", &tally);
    raw.put(
        "connects_issued_in_s",
        (issued_secs * 1000.0).round() / 1000.0,
    );
    raw.put("last_101_s", last_back);
    raw.put("storm_handshake_p50_ms", quantile(&hs, 0.5));
    raw.put("storm_handshake_p99_ms", quantile(&hs, 0.99));
    raw.put("storm_handshake_max_ms", hs.last());
    raw.metric(
        "server_handshakes",
        probe::delta(
            before.sum("tickcast_handshakes_total", &[]),
            after.sum("tickcast_handshakes_total", &[]),
        ),
    );
    raw.metric(
        "server_accept_errors",
        probe::delta(
            before.sum("tickcast_accept_errors_total", &[]),
            after.sum("tickcast_accept_errors_total", &[]),
        ),
    );
    let summary = format!(
        "{back}/{n} back, last 101 after {} s (connect->101 p50 {:.1} ms, p99 {:.1} ms, max {:.0} ms); failures: {}",
        last_back.map_or("-".into(), |t| format!("{t:.2}")),
        quantile(&hs, 0.5),
        quantile(&hs, 0.99),
        hs.last().copied().unwrap_or(0.0),
        client::tally_text(&failures)
    );
    Ok(Report::new(
        "reconnect_storm",
        "all clients dropped at once reconnect at once: every one back (101) within 5 s, no failure",
        summary,
        checks,
        raw.0,
    ))
}
