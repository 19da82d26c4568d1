//! The command line: clap definitions and their conversion into plain config structs.
//!
//! This is the only module that knows about clap. Every option has an environment variable
//! (`TICKCAST_<OPTION>`); durations accept humantime syntax (`100ms`, `5s`, `1m`).
//! One file per subcommand.

use std::time::Duration;

use clap::{Parser, Subcommand};

pub mod serve;
pub mod token;

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
}

const SERVE_EXAMPLES: &str = "\
Examples:
  tickcast serve                                  # 127.0.0.1:8080, one shard per core, 4 feeds
  tickcast serve --shards 1                       # the single hub
  tickcast serve --providers 8 --interval 1ms --payload-bytes 256
  tickcast serve --rate 20000 --linger 1ms        # stress: 20k msgs/s per feed, batched
  TICKCAST_LISTEN=0.0.0.0:9000 tickcast serve     # every option has a TICKCAST_* variable
Watch the stream:
  websocat 'ws://127.0.0.1:8080/ws?topics=ticks'";

/// Parses a humantime duration (`100ms`, `5s`, `1m`).
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    humantime::parse_duration(s).map_err(|e| e.to_string())
}
