//! Scenario `reconnect_storm`: thousands of clients connected on `/ws`, all dropped at once
//! and all reconnecting at once, as after a network blip or a load balancer's restart.
//!
//! Connections are spread over source addresses 127.0.0.1-127.0.0.8 (bound with
//! `IP_BIND_ADDRESS_NO_PORT`) so ephemeral ports do not run out. Every client must be back
//! (101) within a few seconds with no failure; the time from the first reconnect to the last
//! 101 and the failures by kind are reported.

use std::time::{Duration, Instant};

use super::AbuseConfig;
use super::client::{self, Tally};
use super::crowd::{self, Pace};
use super::drive::{Counter, Cx, Judged, Play, Reads, Seen};
use super::fleet::Fleet;
use super::report::{Check, Raw, quantile, sorted};

/// Longest time from the first reconnect to the last 101.
pub const BACK_WITHIN: Duration = Duration::from_secs(5);
/// Initial connections opened per second.
const RAMP_RATE: f64 = 2000.0;
/// Connects issued between two polls while storming.
const STORM_SLICE: usize = 256;
/// The path every client connects to.
const PATH: &str = "/ws?topics=ticks";
/// What the server counted of the storm.
const COUNTERS: &[Counter] = &[
    Counter::new("server_handshakes", "tickcast_handshakes_total", &[]),
    Counter::new("server_accept_errors", "tickcast_accept_errors_total", &[]),
];

/// Scenario `reconnect_storm`: `clients` clients dropped and reconnecting at once.
pub struct ReconnectStorm {
    clients: usize,
}

impl ReconnectStorm {
    /// The scenario as `cfg` sizes it.
    pub fn new(cfg: &AbuseConfig) -> ReconnectStorm {
        ReconnectStorm {
            clients: cfg.count_or(500, 10_000),
        }
    }
}

/// Everyone connected, and how the first connect went.
pub struct Connected {
    fleet: Fleet,
    first_open: usize,
    first_failed: usize,
    first_tally: Tally,
}

/// What the storm saw.
pub struct Stormed {
    first_open: usize,
    first_failed: usize,
    first_tally: Tally,
    issued_secs: f64,
    back: usize,
    failed: usize,
    ended: usize,
    tally: Tally,
    last_back: Option<f64>,
    hs: Vec<f64>,
}

impl Play for ReconnectStorm {
    type Clients = Connected;
    type Outcome = Stormed;

    fn expectation(&self) -> &'static str {
        "all clients dropped at once reconnect at once: every one back (101) within 5 s, no failure"
    }

    fn reads(&self) -> Reads {
        Reads::scrape(COUNTERS)
    }

    /// Everyone connects, at a steady ramp.
    fn connect(&self, cx: &Cx) -> Result<Connected, String> {
        let mut fleet = Fleet::new().map_err(|e| format!("poll: {e}"))?;
        crowd::issue(
            &mut fleet,
            cx.cfg,
            self.clients,
            PATH,
            Pace::Rate(RAMP_RATE),
        )?;
        crowd::until_open(&mut fleet, Instant::now() + Duration::from_secs(15))?;
        let (_, first_open, first_failed, _) = fleet.counts();
        let first_tally = fleet.tally();
        // Let the server settle with everyone connected.
        crowd::turn_for(&mut fleet, Duration::from_secs(1))?;
        Ok(Connected {
            fleet,
            first_open,
            first_failed,
            first_tally,
        })
    }

    /// Everyone drops at once, and everyone reconnects at once.
    fn run(&self, cx: &Cx, c: Connected) -> Result<Stormed, String> {
        let mut fleet = c.fleet;
        fleet.drop_all();
        let storm_start = Instant::now();
        let mut storm = Fleet::new().map_err(|e| format!("poll: {e}"))?;
        crowd::issue(
            &mut storm,
            cx.cfg,
            self.clients,
            PATH,
            Pace::Slices(STORM_SLICE),
        )?;
        let issued_secs = storm_start.elapsed().as_secs_f64();
        crowd::until_open(&mut storm, Instant::now() + Duration::from_secs(30))?;
        let (_, back, failed, ended) = storm.counts();
        let tally = storm.tally();
        let last_back = storm
            .last_upgrade()
            .map(|t| t.saturating_duration_since(storm_start).as_secs_f64());
        let hs = sorted(storm.handshake_ms());
        storm.drop_all();
        Ok(Stormed {
            first_open: c.first_open,
            first_failed: c.first_failed,
            first_tally: c.first_tally,
            issued_secs,
            back,
            failed,
            ended,
            tally,
            last_back,
            hs,
        })
    }

    fn judge(&self, s: Stormed, _: &Seen) -> Judged {
        let n = self.clients;
        let Stormed {
            first_open,
            first_failed,
            first_tally,
            issued_secs,
            back,
            failed,
            ended,
            tally,
            last_back,
            hs,
        } = s;
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
        let summary = format!(
            "{back}/{n} back, last 101 after {} s (connect->101 p50 {:.1} ms, p99 {:.1} ms, max {:.0} ms); failures: {}",
            last_back.map_or("-".into(), |t| format!("{t:.2}")),
            quantile(&hs, 0.5),
            quantile(&hs, 0.99),
            hs.last().copied().unwrap_or(0.0),
            client::tally_text(&failures)
        );
        Judged {
            summary,
            checks,
            raw,
        }
    }
}
