//! `tickcast serve`: its options and their conversion into a [`ServerConfig`].

use std::net::SocketAddr;
use std::time::Duration;

use clap::{Args, ValueEnum};

use super::parse_duration;
use crate::config::{ServerConfig, SlowPolicy, TickerConfig, TickerPace, default_shards};

/// Slow-consumer policy as spelled on the command line.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum SlowPolicyArg {
    /// Drop the frame for that client (it sees a seq gap).
    Drop,
    /// Close the client with 1008 "slow consumer".
    Disconnect,
}

/// Options of `tickcast serve`.
#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Address to listen on.
    #[arg(long, env = "TICKCAST_LISTEN", default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,
    /// Shard threads (event loops); 1 is the single hub. Default: number of cores.
    #[arg(long, env = "TICKCAST_SHARDS")]
    pub shards: Option<usize>,
    /// Do not pin shard threads to cores.
    #[arg(long, env = "TICKCAST_NO_PIN")]
    pub no_pin: bool,
    /// Capacity of each shard's broadcast queue (messages); full = counted drop.
    #[arg(long, env = "TICKCAST_SHARD_QUEUE", default_value_t = 16384)]
    pub shard_queue: usize,
    /// Capacity of the providers -> mixer channel (messages).
    #[arg(long, env = "TICKCAST_MIXER_QUEUE", default_value_t = 65536)]
    pub mixer_queue: usize,
    /// How long the mixer may hold frames to batch writes (e.g. 0, 1ms, 500us).
    #[arg(long, env = "TICKCAST_LINGER", default_value = "0s", value_parser = parse_duration)]
    pub linger: Duration,
    /// Largest client message in bytes, after reassembly (larger: close 1009).
    #[arg(long, env = "TICKCAST_MAX_MESSAGE", default_value_t = 64 * 1024)]
    pub max_message: usize,
    /// Largest HTTP request header block in bytes (larger: 431).
    #[arg(long, env = "TICKCAST_MAX_HEADER", default_value_t = 8 * 1024)]
    pub max_header: usize,
    /// Time allowed to complete the HTTP upgrade request.
    #[arg(long, env = "TICKCAST_HANDSHAKE_TIMEOUT", default_value = "5s", value_parser = parse_duration)]
    pub handshake_timeout: Duration,
    /// Interval between server pings.
    #[arg(long, env = "TICKCAST_PING_INTERVAL", default_value = "30s", value_parser = parse_duration)]
    pub ping_interval: Duration,
    /// Close a connection that sent nothing (pongs included) for this long.
    #[arg(long, env = "TICKCAST_IDLE_TIMEOUT", default_value = "75s", value_parser = parse_duration)]
    pub idle_timeout: Duration,
    /// On shutdown, how long to wait for clients to answer the close frame.
    #[arg(long, env = "TICKCAST_DRAIN_TIMEOUT", default_value = "5s", value_parser = parse_duration)]
    pub drain_timeout: Duration,
    /// Longest wait for a peer's close reply before dropping the socket.
    #[arg(long, env = "TICKCAST_CLOSE_TIMEOUT", default_value = "2s", value_parser = parse_duration)]
    pub close_timeout: Duration,
    /// Bytes a client may have queued before the slow-consumer policy applies.
    #[arg(long, env = "TICKCAST_OUTBOX_LIMIT", default_value_t = 1024 * 1024)]
    pub outbox_limit: usize,
    /// What to do with a client whose outbox is full.
    #[arg(long, env = "TICKCAST_SLOW_POLICY", value_enum, default_value = "drop")]
    pub slow_policy: SlowPolicyArg,
    /// Bytes written to one connection per event-loop turn.
    #[arg(long, env = "TICKCAST_WRITE_BUDGET", default_value_t = 256 * 1024)]
    pub write_budget: usize,
    /// Topics one connection may subscribe to at once.
    #[arg(long, env = "TICKCAST_MAX_TOPICS", default_value_t = 64)]
    pub max_topics: usize,
    /// Independent ticker feeds (provider threads); 0 disables ticks.
    #[arg(long, env = "TICKCAST_PROVIDERS", default_value_t = 4)]
    pub providers: usize,
    /// Each feed emits one tick per interval (down to 1ms).
    #[arg(long, env = "TICKCAST_INTERVAL", default_value = "100ms", value_parser = parse_duration)]
    pub interval: Duration,
    /// Instead of --interval: ticks per second per feed (for stress tests).
    #[arg(long, env = "TICKCAST_RATE")]
    pub rate: Option<f64>,
    /// Approximate size of each tick's data object (0 = natural, about 100 bytes).
    #[arg(long, env = "TICKCAST_PAYLOAD_BYTES", default_value_t = 0)]
    pub payload_bytes: usize,
    /// Symbols per feed.
    #[arg(long, env = "TICKCAST_SYMBOLS", default_value_t = 4)]
    pub symbols: usize,
}

impl ServeArgs {
    /// The validated server configuration these options describe.
    pub fn to_config(&self) -> Result<ServerConfig, String> {
        let cfg = ServerConfig {
            listen: self.listen,
            shards: self.shards.unwrap_or_else(default_shards),
            pin: !self.no_pin,
            shard_queue: self.shard_queue,
            mixer_queue: self.mixer_queue,
            linger: self.linger,
            max_message: self.max_message,
            max_header: self.max_header,
            handshake_timeout: self.handshake_timeout,
            ping_interval: self.ping_interval,
            idle_timeout: self.idle_timeout,
            drain_timeout: self.drain_timeout,
            close_timeout: self.close_timeout,
            outbox_limit: self.outbox_limit,
            slow_policy: match self.slow_policy {
                SlowPolicyArg::Drop => SlowPolicy::Drop,
                SlowPolicyArg::Disconnect => SlowPolicy::Disconnect,
            },
            write_budget: self.write_budget,
            max_topics_per_conn: self.max_topics,
            ticker: TickerConfig {
                feeds: self.providers,
                pace: match self.rate {
                    Some(r) => TickerPace::Rate(r),
                    None => TickerPace::Interval(self.interval),
                },
                payload_bytes: self.payload_bytes,
                symbols_per_feed: self.symbols,
            },
        };
        cfg.validate()?;
        Ok(cfg)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::{Cli, Command};
    use clap::{CommandFactory, Parser};

    #[test]
    fn cli_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn defaults_match_the_config_defaults() {
        let Command::Serve(args) = Cli::parse_from(["tickcast", "serve"]).command else {
            panic!("not serve");
        };
        let cfg = args.to_config().unwrap();
        let def = ServerConfig::default();
        assert_eq!(cfg.listen, def.listen);
        assert_eq!(cfg.ticker, def.ticker);
        assert_eq!(cfg.outbox_limit, def.outbox_limit);
        assert_eq!(cfg.idle_timeout, def.idle_timeout);
    }

    #[test]
    fn rate_replaces_interval_and_durations_parse() {
        let Command::Serve(args) = Cli::parse_from([
            "tickcast", "serve", "--rate", "500", "--linger", "1ms", "--shards", "1",
        ])
        .command
        else {
            panic!("not serve");
        };
        let cfg = args.to_config().unwrap();
        assert_eq!(cfg.ticker.pace, TickerPace::Rate(500.0));
        assert_eq!(cfg.linger, Duration::from_millis(1));
        assert_eq!(cfg.shards, 1);
    }
}
