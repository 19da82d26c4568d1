//! The command line: clap definitions and their conversion into plain config structs.
//!
//! This is the only module that knows about clap. Every option has an environment variable
//! (`TICKCAST_<OPTION>`); durations accept humantime syntax (`100ms`, `5s`, `1m`).
//! One file per subcommand.

use std::time::Duration;

use clap::{Parser, Subcommand};

pub mod abuse;
pub mod baseline;
pub mod health;
pub mod load;
pub mod probe;
pub mod report;
mod secret;
pub mod serve;
pub mod token;

pub use abuse::AbuseArgs;
pub use baseline::BaselineArgs;
pub use health::HealthArgs;
pub use load::LoadArgs;
pub use probe::ProbeArgs;
pub use report::ReportArgs;
pub use serve::ServeArgs;
pub use token::TokenArgs;

/// tickcast: a thread-per-core WebSocket broadcaster.
#[derive(Debug, Parser)]
#[command(name = "tickcast", version, about, propagate_version = true)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands of the `tickcast` binary.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the broadcaster with its built-in ticker feeds.
    #[command(after_help = SERVE_EXAMPLES)]
    Serve(Box<ServeArgs>),
    /// Print a signed token (for --auth-secret servers), e.g.
    /// `tickcast token --sub alice --publish 'room.*' --ttl 1h --secret-file secret.txt`.
    Token(TokenArgs),
    /// Open many WebSocket connections to a server and measure what they receive.
    #[command(after_help = LOAD_EXAMPLES)]
    Load(Box<LoadArgs>),
    /// The bare syscall pattern tickcast is measured against: one thread, one write per
    /// client per loop turn, no queues, outboxes, timers or topics.
    Baseline(Box<BaselineArgs>),
    /// Turn a sweep's raw.csv into summary.md and SVG charts.
    Report(Box<ReportArgs>),
    /// Play one hostile scenario against a server and print what it did as one JSON line.
    Abuse(Box<AbuseArgs>),
    /// Time a client's resume on another node of a Redis-backed cluster (reconnect to the
    /// last replayed message), printed as one JSON line.
    ProbeResume(Box<ProbeArgs>),
    /// Ask a running server for `/healthz` (plain HTTP); exit 0 on 200. A container's
    /// HEALTHCHECK: a scratch image has no curl.
    Health(HealthArgs),
}

const LOAD_EXAMPLES: &str = "\
Examples:
  tickcast load -n 1000 --duration 10              # 1000 clients on ws://127.0.0.1:8080/ws?topics=ticks
  tickcast load -n 9900 --ramp 15 --source-ips 127.0.0.1-127.0.0.8
  tickcast load -n 5000 --csv raw.csv --server-pid $(pidof tickcast) --offered-rate 1000
  tickcast load -n 100 --publishers 10 --publish-rate 50 --json";

const SERVE_EXAMPLES: &str = "\
Examples:
  tickcast serve                                  # 127.0.0.1:8080, one shard per core, 4 feeds
  tickcast serve --shards 1                       # the single hub
  tickcast serve --providers 8 --interval 1ms --payload-bytes 256
  tickcast serve --rate 20000 --linger 1ms        # stress: 20k msgs/s per feed, batched
  TICKCAST_LISTEN=0.0.0.0:9000 tickcast serve     # every option has a TICKCAST_* variable
Watch the stream:
  websocat 'ws://127.0.0.1:8080/ws?topics=ticks'";

/// Parses seconds (`15`, `0.5`) or a humantime duration (`15s`, `500ms`).
pub fn parse_secs(s: &str) -> Result<Duration, String> {
    match s.parse::<f64>() {
        Ok(secs) if secs.is_finite() && secs >= 0.0 => Ok(Duration::from_secs_f64(secs)),
        Ok(_) => Err("must be a positive number of seconds".into()),
        Err(_) => parse_duration(s),
    }
}

/// Parses a humantime duration (`100ms`, `5s`, `1m`).
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    humantime::parse_duration(s).map_err(|e| e.to_string())
}
