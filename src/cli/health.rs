//! `tickcast health`: the command line of the health probe ([`crate::health`]), which a
//! container's `HEALTHCHECK` runs (a scratch image has no curl).

use std::net::SocketAddr;
use std::time::Duration;

use clap::Args;

use super::parse_secs;

/// Options of `tickcast health`.
#[derive(Debug, Args)]
pub struct HealthArgs {
    /// The server's listening address: the same variable as `serve --listen`, so in a
    /// container the probe follows the server. `0.0.0.0` and `::` are probed on loopback.
    #[arg(long, env = "TICKCAST_LISTEN", default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,
    /// Longest the probe may take, connect included (`2`, `500ms`).
    #[arg(long, default_value = "2", value_parser = parse_secs)]
    pub timeout: Duration,
}

impl HealthArgs {
    /// Probes the server: its `/healthz` body when it answered 200.
    pub fn run(&self) -> Result<String, String> {
        crate::health::check(crate::health::probe_addr(self.listen), self.timeout)
    }
}
