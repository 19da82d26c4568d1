//! `tickcast baseline`: its options and their conversion into a [`BaselineConfig`].

use std::net::SocketAddr;

use clap::Args;

use crate::baseline::BaselineConfig;

/// Options of `tickcast baseline`.
#[derive(Debug, Args)]
pub struct BaselineArgs {
    /// Address to listen on (`host:port`, or `:port` for every interface).
    #[arg(long, default_value = "127.0.0.1:8090", value_parser = super::parse_addr)]
    pub listen: SocketAddr,
    /// Messages generated per second (each goes to every client).
    #[arg(long, default_value_t = 100.0)]
    pub rate: f64,
    /// Approximate size of each message's data object (0 = natural, about 90 bytes).
    #[arg(long, default_value_t = 0)]
    pub payload_bytes: usize,
    /// Bytes a client may have pending before frames are dropped for it.
    #[arg(long, default_value_t = 1024 * 1024)]
    pub max_pending: usize,
    /// Clients served at once.
    #[arg(long, default_value_t = 100_000)]
    pub max_clients: usize,
}

impl BaselineArgs {
    /// The validated configuration.
    pub fn to_config(&self) -> Result<BaselineConfig, String> {
        let cfg = BaselineConfig {
            listen: self.listen,
            rate: self.rate,
            payload_bytes: self.payload_bytes,
            max_pending: self.max_pending,
            max_clients: self.max_clients,
            ..BaselineConfig::default()
        };
        cfg.validate()?;
        Ok(cfg)
    }
}
