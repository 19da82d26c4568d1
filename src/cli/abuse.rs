//! `tickcast abuse`: its options and their conversion into an [`AbuseConfig`].

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::Args;

use super::parse_duration;
use crate::abuse::{AbuseConfig, Scenario};
use crate::load::parse_source_ips;

/// Options of `tickcast abuse`.
#[derive(Debug, Args)]
pub struct AbuseArgs {
    /// The server to play the scenario against (loopback only: 127.0.0.0/8).
    #[arg(long, default_value = "127.0.0.1:8080", value_parser = super::parse_addr)]
    pub target: SocketAddr,
    /// The scenario: churn, rst_churn, slowloris, pending_sockets, stalled_readers, echo_hold,
    /// malformed_frames, malformed_http, publish_flood, error_flood, oversized_burst, shutdown,
    /// reconnect_storm, label_churn, history_fill, presence_churn, forged_headers,
    /// abandoned_rooms.
    #[arg(long)]
    pub scenario: String,
    /// Small counts and short windows (the whole suite in about 90 s).
    #[arg(long)]
    pub quick: bool,
    /// Overrides the scenario's main count (cycles, sockets, connections or clients).
    #[arg(long)]
    pub count: Option<usize>,
    /// Overrides the scenario's main window, or churn's time bound (`10s`, `2m`).
    #[arg(long, value_parser = parse_duration)]
    pub duration: Option<Duration>,
    /// The server's pid, to read its RSS and open descriptors from /proc (checks that need
    /// them are undecided without it).
    #[arg(long)]
    pub server_pid: Option<u32>,
    /// Loopback source addresses to spread connections over (`127.0.0.1-127.0.0.8`).
    #[arg(long, default_value = "127.0.0.1-127.0.0.8")]
    pub source_ips: String,
    /// Connections in flight at once in the blocking scenarios (one thread each).
    #[arg(long, default_value_t = 8)]
    pub concurrency: usize,
    /// Shutdown: create this file once every client is connected and the pre-shutdown
    /// scrape is taken; then stop the server (SIGTERM).
    #[arg(long)]
    pub ready_file: Option<PathBuf>,
    /// Shutdown: how long to wait for the server to end every connection after `ready`.
    #[arg(long, default_value = "30s", value_parser = parse_duration)]
    pub shutdown_wait: Duration,
    /// forged_headers: the proxy in front of the server (nginx) the clients connect
    /// through (loopback only).
    #[arg(long, value_parser = super::parse_addr)]
    pub via: Option<SocketAddr>,
    /// abandoned_rooms: the Redis server the server's `--redis` names, read directly
    /// (host:port, loopback only).
    #[arg(long, value_parser = super::parse_addr)]
    pub redis: Option<SocketAddr>,
    /// forged_headers: the server's log (written at `--log-level debug`), searched after
    /// the run for the addresses it names.
    #[arg(long)]
    pub server_log: Option<PathBuf>,
}

impl AbuseArgs {
    /// The validated configuration.
    pub fn to_config(&self) -> Result<AbuseConfig, String> {
        let scenario = Scenario::parse(&self.scenario)?;
        let mut cfg = AbuseConfig::new(self.target, scenario);
        cfg.quick = self.quick;
        cfg.count = self.count;
        cfg.duration = self.duration;
        cfg.server_pid = self.server_pid;
        cfg.source_ips = parse_source_ips(&self.source_ips)?;
        cfg.concurrency = self.concurrency;
        cfg.ready_file = self.ready_file.clone();
        cfg.shutdown_wait = self.shutdown_wait;
        cfg.via = self.via;
        cfg.redis = self.redis;
        cfg.server_log = self.server_log.clone();
        cfg.validate()?;
        Ok(cfg)
    }
}

#[cfg(test)]
mod tests {
    use crate::cli::{Cli, Command};
    use clap::Parser;

    fn parse(args: &[&str]) -> super::AbuseArgs {
        let mut all = vec!["tickcast", "abuse"];
        all.extend_from_slice(args);
        match Cli::parse_from(all).command {
            Command::Abuse(a) => *a,
            other => panic!("not abuse: {other:?}"),
        }
    }

    #[test]
    fn options_become_a_config() {
        let a = parse(&[
            "--target",
            "127.0.0.1:9000",
            "--scenario",
            "rst_churn",
            "--quick",
            "--count",
            "50",
            "--duration",
            "3s",
            "--source-ips",
            "127.0.0.2-127.0.0.3",
        ]);
        let cfg = a.to_config().unwrap();
        assert_eq!(cfg.scenario, crate::abuse::Scenario::RstChurn);
        assert!(cfg.quick);
        assert_eq!(cfg.count, Some(50));
        assert_eq!(cfg.duration.unwrap().as_secs(), 3);
        assert_eq!(cfg.source_ips.len(), 2);
    }

    #[test]
    fn unknown_scenarios_and_remote_targets_are_refused() {
        assert!(parse(&["--scenario", "nope"]).to_config().is_err());
        let remote = parse(&["--scenario", "churn", "--target", "192.0.2.1:80"]);
        assert!(remote.to_config().is_err());
        let bad_source = parse(&["--scenario", "churn", "--source-ips", "10.0.0.1"]);
        assert!(bad_source.to_config().is_err());
        let remote_proxy = parse(&["--scenario", "forged_headers", "--via", "192.0.2.1:80"]);
        assert!(remote_proxy.to_config().is_err());
        let remote_redis = parse(&["--scenario", "abandoned_rooms", "--redis", "192.0.2.1:6379"]);
        assert!(remote_redis.to_config().is_err());
        let sidecars = parse(&[
            "--scenario",
            "abandoned_rooms",
            "--redis",
            "127.0.0.1:6400",
            "--via",
            "127.0.0.1:8443",
            "--server-log",
            "/tmp/server.log",
        ])
        .to_config()
        .unwrap();
        assert_eq!(sidecars.redis, Some("127.0.0.1:6400".parse().unwrap()));
        assert_eq!(sidecars.via.unwrap().port(), 8443);
        assert!(sidecars.server_log.is_some());
    }
}
