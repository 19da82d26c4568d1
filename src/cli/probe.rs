//! `tickcast probe-resume`: the command line of the cross-node resume probe ([`crate::probe`]).

use std::net::SocketAddr;
use std::time::Duration;

use clap::Args;

use super::parse_secs;
use crate::probe::ProbeConfig;

/// Options of `tickcast probe-resume`.
#[derive(Debug, Args)]
pub struct ProbeArgs {
    /// Node A, where the messages are published (`127.0.0.1:8080`).
    #[arg(long, value_parser = super::parse_addr)]
    pub publish_on: SocketAddr,
    /// Node B, where the client resumes.
    #[arg(long, value_parser = super::parse_addr)]
    pub resume_on: SocketAddr,
    /// Messages the resuming client missed.
    #[arg(long, default_value_t = 100)]
    pub gap: usize,
    /// Rounds measured (one fresh room each).
    #[arg(long, default_value_t = 20)]
    pub rounds: usize,
    /// Room names: `<prefix>-<round>`.
    #[arg(long, default_value = "probe")]
    pub room_prefix: String,
    /// A member on node B follows each room, so the replay comes from B's ring, not Redis.
    #[arg(long)]
    pub followed: bool,
    /// Longest any step may take (`5`, `5s`).
    #[arg(long, default_value = "5", value_parser = parse_secs)]
    pub timeout: Duration,
}

impl ProbeArgs {
    /// The validated probe configuration.
    pub fn to_config(&self) -> Result<ProbeConfig, String> {
        for addr in [self.publish_on, self.resume_on] {
            if !addr.ip().is_loopback() {
                return Err(format!("{addr}: the probe only talks to 127.0.0.0/8"));
            }
        }
        if self.gap == 0 || self.gap > 10_000 {
            return Err("--gap must be between 1 and 10000".into());
        }
        if self.rounds == 0 || self.rounds > 10_000 {
            return Err("--rounds must be between 1 and 10000".into());
        }
        if self.timeout.is_zero() {
            return Err("--timeout must be positive".into());
        }
        Ok(ProbeConfig {
            publish_on: self.publish_on,
            resume_on: self.resume_on,
            gap: self.gap,
            rounds: self.rounds,
            room_prefix: self.room_prefix.clone(),
            followed: self.followed,
            timeout: self.timeout,
        })
    }
}
