//! `tickcast abuse`: the client side of the hostile scenarios of the reliability suite.
//!
//! Each run plays one scenario against a running server on loopback (churn, resets,
//! slowloris, stalled readers, malformed frames and requests, floods, oversized messages,
//! shutdown under load, a reconnect storm), measures what the server did from the outside,
//! decides each expectation as passed, failed or undecided, and prints one line of JSON
//! ([`report::Report`]). `scripts/abuse.sh` starts a fresh server per scenario, samples it
//! from outside, stops it, and turns the lines into `reliability.md` and `reliability.csv`.
//!
//! Every loop here is bounded in count and in time, every socket goes to 127.0.0.0/8, and
//! one run holds well under the 20,000 open files a process may have.
//!
//! Layout: [`sock`] (connect from a source address, lingering close, reset, TCP state),
//! [`client`] (blocking raw client: upgrade, hostile frames, endings),
//! [`fleet`] (many non-blocking WebSockets at once), [`member`] (a room member's reader),
//! [`watch`] (the normal client that must stay served), [`probe`] (`/metrics`, `/proc`,
//! sockstat), [`report`] (checks and verdicts); [`drive`] (the one driver: the [`drive::Play`]
//! trait a scenario implements, the readings before and after, the watcher, the report),
//! [`crowd`] (how clients are brought up: a pool of attempts, a room, a paced fleet),
//! [`ops`] (the client protocol's operations, the server's frames sorted, room makers, a
//! pacer) and [`kinds`] (one connection per kind of bad input); then one file per scenario
//! family, each a value saying only what is particular to it: [`churn`], [`slowloris`],
//! [`pending`], [`stalled`], [`echo_hold`], [`frames`], [`bad_http`], [`flood`], [`burst`],
//! [`shutdown`], [`storm`], [`label_churn`], [`history_fill`], [`presence_churn`],
//! [`forged_headers`], [`abandoned_rooms`].

pub mod abandoned_rooms;
pub mod bad_http;
pub mod burst;
pub mod churn;
pub mod client;
pub mod crowd;
pub mod drive;
pub mod echo_hold;
pub mod fleet;
pub mod flood;
pub mod forged_headers;
pub mod frames;
pub mod history_fill;
pub mod kinds;
pub mod label_churn;
pub mod member;
pub mod ops;
pub mod pending;
pub mod presence_churn;
pub mod probe;
pub mod report;
pub mod shutdown;
pub mod slowloris;
pub mod sock;
pub mod stalled;
pub mod storm;
pub mod watch;

use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use drive::drive;
pub use report::{Check, Report, Verdict};

/// The scenarios, in the order the suite runs them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scenario {
    /// Connect, upgrade, clean close, many times over.
    Churn,
    /// Connect, upgrade (or half a request), reset, many times over.
    RstChurn,
    /// Request heads sent a byte a second.
    Slowloris,
    /// Half-sent request heads from one address, past its cap on pending sockets.
    PendingSockets,
    /// Subscribers that never read.
    StalledReaders,
    /// `/echo` writers that never read.
    EchoHold,
    /// One protocol violation per connection, of each kind.
    MalformedFrames,
    /// One bad HTTP request per connection, of each kind.
    MalformedHttp,
    /// One member publishing as fast as it can into a room others read.
    PublishFlood,
    /// One client sending nothing but invalid operations.
    ErrorFlood,
    /// A burst of messages just under `--max-message` into a room.
    OversizedBurst,
    /// SIGTERM with subscribers connected and publishers publishing.
    Shutdown,
    /// Every client drops at once and reconnects at once.
    ReconnectStorm,
    /// Short-lived rooms by the thousand, to grow `/metrics`.
    LabelChurn,
    /// Rooms filled past the node's `--history-budget`.
    HistoryFill,
    /// A room of many members and a churner leaving and rejoining it.
    PresenceChurn,
    /// Through nginx, upgrades with forged forwarding headers past the per-address cap.
    ForgedHeaders,
    /// Rooms made and left on a Redis-backed server, and streams past their byte cap.
    AbandonedRooms,
}

impl Scenario {
    /// Every scenario, in suite order.
    pub const ALL: [Scenario; 18] = [
        Scenario::Churn,
        Scenario::RstChurn,
        Scenario::Slowloris,
        Scenario::PendingSockets,
        Scenario::StalledReaders,
        Scenario::EchoHold,
        Scenario::MalformedFrames,
        Scenario::MalformedHttp,
        Scenario::PublishFlood,
        Scenario::ErrorFlood,
        Scenario::OversizedBurst,
        Scenario::Shutdown,
        Scenario::ReconnectStorm,
        Scenario::LabelChurn,
        Scenario::HistoryFill,
        Scenario::PresenceChurn,
        Scenario::ForgedHeaders,
        Scenario::AbandonedRooms,
    ];

    /// The name used on the command line and in the reports.
    pub fn name(self) -> &'static str {
        match self {
            Scenario::Churn => "churn",
            Scenario::RstChurn => "rst_churn",
            Scenario::Slowloris => "slowloris",
            Scenario::PendingSockets => "pending_sockets",
            Scenario::StalledReaders => "stalled_readers",
            Scenario::EchoHold => "echo_hold",
            Scenario::MalformedFrames => "malformed_frames",
            Scenario::MalformedHttp => "malformed_http",
            Scenario::PublishFlood => "publish_flood",
            Scenario::ErrorFlood => "error_flood",
            Scenario::OversizedBurst => "oversized_burst",
            Scenario::Shutdown => "shutdown",
            Scenario::ReconnectStorm => "reconnect_storm",
            Scenario::LabelChurn => "label_churn",
            Scenario::HistoryFill => "history_fill",
            Scenario::PresenceChurn => "presence_churn",
            Scenario::ForgedHeaders => "forged_headers",
            Scenario::AbandonedRooms => "abandoned_rooms",
        }
    }

    /// The scenario named `name`.
    pub fn parse(name: &str) -> Result<Scenario, String> {
        Scenario::ALL
            .into_iter()
            .find(|s| s.name() == name)
            .ok_or_else(|| {
                let names: Vec<&str> = Scenario::ALL.iter().map(|s| s.name()).collect();
                format!("unknown scenario {name:?} (one of {})", names.join(", "))
            })
    }
}

/// One run's configuration: a plain struct, built by `cli::abuse`.
#[derive(Debug, Clone)]
pub struct AbuseConfig {
    /// The server (always in 127.0.0.0/8: checked by [`AbuseConfig::validate`]).
    pub target: SocketAddr,
    /// What to play.
    pub scenario: Scenario,
    /// Small counts and short windows (the whole suite in about 90 s).
    pub quick: bool,
    /// Overrides the scenario's main count (cycles, sockets, connections or clients).
    pub count: Option<usize>,
    /// Overrides the scenario's main time window (or its time bound, for churn).
    pub duration: Option<Duration>,
    /// The server's process, to read its RSS and open descriptors from `/proc`; checks that
    /// need them are undecided without it.
    pub server_pid: Option<u32>,
    /// Loopback source addresses connections are spread over (bound before connect).
    pub source_ips: Vec<Ipv4Addr>,
    /// Connections in flight at once in the blocking scenarios (one thread each).
    pub concurrency: usize,
    /// Shutdown: a file created once every client is connected and the pre-shutdown scrape
    /// is taken; whoever stops the server waits for it.
    pub ready_file: Option<PathBuf>,
    /// Shutdown: how long to wait for the server to end the connections after `ready`.
    pub shutdown_wait: Duration,
    /// forged_headers: the proxy (nginx) in front of the server, the clients' way in.
    pub via: Option<SocketAddr>,
    /// abandoned_rooms: the Redis server the server's bus uses, read directly.
    pub redis: Option<SocketAddr>,
    /// forged_headers: the server's log (at debug level), searched after the run.
    pub server_log: Option<PathBuf>,
}

impl AbuseConfig {
    /// A configuration with the suite's defaults for `scenario` against `target`.
    pub fn new(target: SocketAddr, scenario: Scenario) -> AbuseConfig {
        AbuseConfig {
            target,
            scenario,
            quick: false,
            count: None,
            duration: None,
            server_pid: None,
            source_ips: (1..=8).map(|i| Ipv4Addr::new(127, 0, 0, i)).collect(),
            concurrency: 8,
            ready_file: None,
            shutdown_wait: Duration::from_secs(30),
            via: None,
            redis: None,
            server_log: None,
        }
    }

    /// Checks what the scenarios rely on: loopback only, a sane concurrency.
    pub fn validate(&self) -> Result<(), String> {
        if !self.target.ip().is_loopback() {
            return Err(format!(
                "{}: abuse scenarios only target loopback (127.0.0.0/8)",
                self.target
            ));
        }
        for (what, addr) in [("--via", self.via), ("--redis", self.redis)] {
            if addr.is_some_and(|a| !a.ip().is_loopback()) {
                return Err(format!("{what} must be on loopback (127.0.0.0/8)"));
            }
        }
        if self.source_ips.is_empty() || self.source_ips.iter().any(|ip| !ip.is_loopback()) {
            return Err("source addresses must be loopback (127.0.0.0/8)".into());
        }
        if !(1..=256).contains(&self.concurrency) {
            return Err("concurrency must be 1-256".into());
        }
        if self.count == Some(0) {
            return Err("count must be at least 1".into());
        }
        Ok(())
    }

    /// The main count: the override, else the quick or the full default.
    pub fn count_or(&self, quick: usize, full: usize) -> usize {
        self.count.unwrap_or(if self.quick { quick } else { full })
    }

    /// The main window: the override, else the quick or the full default.
    pub fn duration_or(&self, quick: Duration, full: Duration) -> Duration {
        self.duration
            .unwrap_or(if self.quick { quick } else { full })
    }

    /// The source address of connection `i`.
    pub fn source(&self, i: usize) -> Option<Ipv4Addr> {
        Some(self.source_ips[i % self.source_ips.len()])
    }

    /// The `Host` header value for this server.
    pub fn host(&self) -> String {
        self.target.to_string()
    }
}

/// Runs the configured scenario and returns its report (a setup failure is a failed check,
/// so the line is always printed).
pub fn run(cfg: &AbuseConfig) -> Report {
    let started = Instant::now();
    let result = cfg.validate().and_then(|()| {
        if let Err(e) = crate::server::raise_nofile_limit() {
            log::warn!("could not raise the open-file limit: {e}");
        }
        match cfg.scenario {
            Scenario::Churn => drive(cfg, &churn::Churn::new(cfg, churn::Mode::Clean)),
            Scenario::RstChurn => drive(cfg, &churn::Churn::new(cfg, churn::Mode::Reset)),
            Scenario::Slowloris => drive(cfg, &slowloris::Slowloris::new(cfg)),
            Scenario::PendingSockets => drive(cfg, &pending::PendingSockets::new(cfg)),
            Scenario::StalledReaders => drive(cfg, &stalled::StalledReaders::new(cfg)),
            Scenario::EchoHold => drive(cfg, &echo_hold::EchoHold::new(cfg)),
            Scenario::MalformedFrames => drive(cfg, &frames::MalformedFrames::new(cfg)),
            Scenario::MalformedHttp => drive(cfg, &bad_http::MalformedHttp::new(cfg)),
            Scenario::PublishFlood => drive(cfg, &flood::PublishFlood::new(cfg)),
            Scenario::ErrorFlood => drive(cfg, &flood::ErrorFlood::new(cfg)),
            Scenario::OversizedBurst => drive(cfg, &burst::OversizedBurst::new(cfg)),
            Scenario::Shutdown => drive(cfg, &shutdown::Shutdown::new(cfg)),
            Scenario::ReconnectStorm => drive(cfg, &storm::ReconnectStorm::new(cfg)),
            Scenario::LabelChurn => drive(cfg, &label_churn::LabelChurn::new(cfg)),
            Scenario::HistoryFill => drive(cfg, &history_fill::HistoryFill::new(cfg)),
            Scenario::PresenceChurn => drive(cfg, &presence_churn::PresenceChurn::new(cfg)),
            Scenario::ForgedHeaders => drive(cfg, &forged_headers::ForgedHeaders::new(cfg)),
            Scenario::AbandonedRooms => drive(cfg, &abandoned_rooms::AbandonedRooms::new(cfg)),
        }
    });
    let mut report = result.unwrap_or_else(|e| {
        Report::new(
            cfg.scenario.name(),
            "the scenario can be set up",
            format!("setup failed: {e}"),
            vec![Check::new("setup", false, e)],
            serde_json::Map::new(),
        )
    });
    report.quick = cfg.quick;
    report.secs = (started.elapsed().as_secs_f64() * 10.0).round() / 10.0;
    report
}

/// The server's RSS (KiB) and open descriptors now, when its pid is known.
pub fn server_sample(cfg: &AbuseConfig) -> (Option<u64>, Option<u64>) {
    match cfg.server_pid {
        Some(pid) => (probe::rss_kib(pid), probe::fd_count(pid)),
        None => (None, None),
    }
}

/// Waits (at most `limit`) until the server holds no more than `fds` descriptors; returns
/// the last count read.
pub fn wait_for_fds(cfg: &AbuseConfig, fds: u64, limit: Duration) -> Option<u64> {
    let pid = cfg.server_pid?;
    let deadline = Instant::now() + limit;
    loop {
        let now = probe::fd_count(pid)?;
        if now <= fds || Instant::now() >= deadline {
            return Some(now);
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// KiB as MiB, for the measured line.
pub fn mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scenario_names_round_trip() {
        for s in Scenario::ALL {
            assert_eq!(Scenario::parse(s.name()), Ok(s));
        }
        assert!(Scenario::parse("nope").unwrap_err().contains("churn"));
    }

    #[test]
    fn only_loopback_is_a_target() {
        let cfg = AbuseConfig::new("127.0.0.1:1".parse().unwrap(), Scenario::Churn);
        assert!(cfg.validate().is_ok());
        let away = AbuseConfig::new("10.0.0.1:1".parse().unwrap(), Scenario::Churn);
        assert!(away.validate().is_err());
        let mut bad_source = cfg.clone();
        bad_source.source_ips = vec![Ipv4Addr::new(192, 168, 0, 1)];
        assert!(bad_source.validate().is_err());
        let mut quick = cfg.clone();
        quick.quick = true;
        assert_eq!(quick.count_or(5, 500), 5);
        assert_eq!(cfg.count_or(5, 500), 500);
        assert_eq!(cfg.source(9), Some(Ipv4Addr::new(127, 0, 0, 2)));
    }
}
