//! The one driver every scenario runs under, and the [`Play`] trait a scenario implements.
//!
//! A scenario is a value that says only what is particular to it: which counters and
//! readings it wants ([`Reads`]), how its clients connect ([`Play::connect`], built from
//! [`super::crowd`]), what they do ([`Play::run`]) and how the result is judged
//! ([`Play::judge`]). The driver does the rest, the same way for every scenario: the server's
//! `/proc` figures and `/metrics` before, the watcher (a normal client reading `ticks`)
//! started before the clients connect and stopped after they are done, the descriptors let
//! settle, `/metrics` after, the counters' changes and the watcher's figures added to the raw
//! figures, the `watcher` and `server_pid` checks appended, and one [`Report`].

use std::time::Duration;

use super::probe::{self, Metrics, SockStat};
use super::report::{Check, Raw, Report};
use super::watch::{WatchReport, Watcher};
use super::{AbuseConfig, server_sample, wait_for_fds};

/// A counter read from `/metrics` before and after the run; its change goes into the raw
/// figures under `key` (`"absent"` when the server has no such metric).
#[derive(Debug, Clone, Copy)]
pub struct Counter {
    /// The raw figure's name (`server_drops`).
    pub key: &'static str,
    /// The metric's name (`tickcast_drops_total`).
    pub name: &'static str,
    /// Labels every summed series must carry.
    pub labels: &'static [(&'static str, &'static str)],
}

impl Counter {
    /// The counter `name{labels}`, reported as `key`.
    pub const fn new(
        key: &'static str,
        name: &'static str,
        labels: &'static [(&'static str, &'static str)],
    ) -> Counter {
        Counter { key, name, labels }
    }
}

/// What the driver reads of the server around a scenario.
#[derive(Debug, Clone, Copy)]
pub struct Reads {
    /// `/metrics` scraped before the clients connect and after they are done (the run is a
    /// setup failure if either cannot be read). Off for a scenario that stops the server.
    pub scrape: bool,
    /// A normal client reads `ticks` throughout; what it saw is the `watcher` check.
    pub watcher: bool,
    /// Counters whose change, before to after, goes into the raw figures.
    pub counters: &'static [Counter],
    /// After the run, wait (at most this long) for the server's descriptors to come back to
    /// what they were before, so the after figures are the settled ones.
    pub settle_fds: Option<Duration>,
    /// The checks need the server's `/proc` figures: without `--server-pid`, an undecided
    /// `server_pid` check says so.
    pub needs_pid: bool,
}

impl Reads {
    /// Nothing: the scenario reads the server itself (the server is stopped during it).
    pub const NOTHING: Reads = Reads {
        scrape: false,
        watcher: false,
        counters: &[],
        settle_fds: None,
        needs_pid: false,
    };

    /// `/metrics` before and after, and these counters.
    pub const fn scrape(counters: &'static [Counter]) -> Reads {
        Reads {
            scrape: true,
            counters,
            ..Reads::NOTHING
        }
    }

    /// With a watcher.
    pub const fn watched(self) -> Reads {
        Reads {
            watcher: true,
            ..self
        }
    }

    /// With the descriptors let settle for at most `limit` after the run.
    pub const fn settle_fds(self, limit: Duration) -> Reads {
        Reads {
            settle_fds: Some(limit),
            ..self
        }
    }

    /// With the `server_pid` check.
    pub const fn needs_pid(self) -> Reads {
        Reads {
            needs_pid: true,
            ..self
        }
    }
}

/// The server's process and the host's TCP memory, read from `/proc` (each `None` when it
/// cannot be read, e.g. without `--server-pid`).
#[derive(Debug, Clone, Copy, Default)]
pub struct Host {
    /// The server's RSS, KiB.
    pub rss_kib: Option<u64>,
    /// The server's open descriptors.
    pub fds: Option<u64>,
    /// The host's TCP line of `/proc/net/sockstat`.
    pub sockstat: Option<SockStat>,
}

impl Host {
    /// Reads them now.
    fn read(cfg: &AbuseConfig) -> Host {
        let (rss_kib, fds) = server_sample(cfg);
        Host {
            rss_kib,
            fds,
            sockstat: probe::sockstat(),
        }
    }
}

/// What a scenario's clients are given while they connect and run.
pub struct Cx<'a> {
    /// The run's configuration.
    pub cfg: &'a AbuseConfig,
    /// `/metrics` before the clients connected (empty when [`Reads::scrape`] is off).
    pub before: Metrics,
    /// `/proc` before the clients connected.
    pub host: Host,
}

/// What the judge is shown besides the scenario's own outcome.
pub struct Seen {
    /// `/metrics` before (empty when [`Reads::scrape`] is off).
    pub before: Metrics,
    /// `/metrics` after (likewise).
    pub after: Metrics,
    /// `/proc` before the clients connected.
    pub host_before: Host,
    /// `/proc` after the run (descriptors settled when [`Reads::settle_fds`] asks for it).
    pub host_after: Host,
    /// What the watcher saw, when there was one.
    pub watch: Option<WatchReport>,
}

impl Seen {
    /// The change of `counter`, before to after; `None` when either side is absent.
    pub fn delta(&self, counter: &Counter) -> Option<f64> {
        probe::delta(
            self.before.sum(counter.name, counter.labels),
            self.after.sum(counter.name, counter.labels),
        )
    }
}

/// A scenario's judgement: its own checks, raw figures and one-line summary (the driver adds
/// the counters, the watcher and its summary).
pub struct Judged {
    /// The summary for the measured column.
    pub summary: String,
    /// The scenario's checks, in report order.
    pub checks: Vec<Check>,
    /// The scenario's raw figures.
    pub raw: Raw,
}

/// One hostile scenario, as a value.
pub trait Play {
    /// What `connect` hands to `run` (the clients, and what was measured while connecting).
    type Clients;
    /// What `run` hands to `judge`.
    type Outcome;

    /// What the server is expected to do, in one line.
    fn expectation(&self) -> &'static str;

    /// What the driver reads around the run.
    fn reads(&self) -> Reads;

    /// Brings the scenario's clients up (bounded in count and time); an error is a setup
    /// failure.
    fn connect(&self, cx: &Cx) -> Result<Self::Clients, String>;

    /// Plays the attack with them and collects what was seen.
    fn run(&self, cx: &Cx, clients: Self::Clients) -> Result<Self::Outcome, String>;

    /// Decides the checks (called after the after scrape).
    fn judge(&self, outcome: Self::Outcome, seen: &Seen) -> Judged;
}

/// Plays `play` under `cfg` and returns its report (the name is `cfg.scenario`'s).
pub fn drive<P: Play>(cfg: &AbuseConfig, play: &P) -> Result<Report, String> {
    let reads = play.reads();
    let host = Host::read(cfg);
    let scrape = || {
        if reads.scrape {
            probe::scrape(cfg.target)
        } else {
            Ok(Metrics::default())
        }
    };
    let before = scrape()?;
    let watcher = match reads.watcher {
        true => Some(Watcher::start(cfg.target)?),
        false => None,
    };
    let cx = Cx { cfg, before, host };
    let clients = play.connect(&cx)?;
    let outcome = play.run(&cx, clients)?;
    let watch = watcher.map(Watcher::finish);
    let settled = reads
        .settle_fds
        .map(|limit| host.fds.and_then(|f| wait_for_fds(cfg, f, limit)));
    let mut host_after = Host::read(cfg);
    if let Some(fds) = settled {
        host_after.fds = fds;
    }
    let after = scrape()?;
    let seen = Seen {
        before: cx.before,
        after,
        host_before: host,
        host_after,
        watch,
    };
    let Judged {
        mut summary,
        mut checks,
        mut raw,
    } = play.judge(outcome, &seen);
    for counter in reads.counters {
        raw.metric(counter.key, seen.delta(counter));
    }
    if let Some(watch) = &seen.watch {
        checks.push(Check::new("watcher", watch.healthy(), watch.summary()));
        raw.put("watcher", watch);
        summary = format!("{summary}; {}", watch.summary());
    }
    if reads.needs_pid && cfg.server_pid.is_none() {
        checks.push(Check::maybe(
            "server_pid",
            None,
            "no --server-pid: fds and RSS not read",
        ));
    }
    Ok(Report::new(
        cfg.scenario.name(),
        play.expectation(),
        summary,
        checks,
        raw.0,
    ))
}
