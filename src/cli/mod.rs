//! The command line: clap definitions and their conversion into plain config structs.
//!
//! This is the only module that knows about clap. Every option of `serve` has an environment
//! variable named after it (`--max-connections` is `TICKCAST_MAX_CONNECTIONS`, checked by a
//! test here), and `serve --config FILE` reads the same options from TOML (`file.rs`);
//! durations accept humantime syntax (`100ms`, `5s`, `1m`). One file per subcommand, plus
//! the logging options every subcommand shares (`log.rs`).

use std::net::{SocketAddr, ToSocketAddrs};
use std::time::Duration;

use clap::{Parser, Subcommand};

pub mod abuse;
pub mod baseline;
mod file;
pub mod health;
pub mod load;
pub mod log;
pub mod probe;
pub mod report;
mod secret;
pub mod serve;
pub mod token;

pub use abuse::AbuseArgs;
pub use baseline::BaselineArgs;
pub use file::{ParseError, parse, parse_bool, parse_from};
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
    /// `--log-level`, `--log-format`.
    #[command(flatten)]
    pub log: log::LogArgs,
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
  TICKCAST_LISTEN=:9000 tickcast serve           # every option has a TICKCAST_* variable
  tickcast serve --config /etc/tickcast.toml      # the same options in TOML: max-connections = 100
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

/// Parses an address option: `host:port` with an IP (`127.0.0.1:8080`, `[::1]:8080`) or a
/// name resolved once, now (`localhost:9000`; its first IPv4 address when it has one), or
/// `:port` for every IPv4 interface (`0.0.0.0:port`).
pub fn parse_addr(s: &str) -> Result<SocketAddr, String> {
    if let Some(port) = s.strip_prefix(':') {
        let port: u16 = port
            .parse()
            .map_err(|_| format!("`{s}`: the port must be a number from 0 to 65535"))?;
        return Ok(SocketAddr::from(([0, 0, 0, 0], port)));
    }
    if let Ok(addr) = s.parse::<SocketAddr>() {
        return Ok(addr);
    }
    let Some((host, port)) = s.rsplit_once(':') else {
        return Err(format!(
            "`{s}` is not host:port (or :port for every interface)"
        ));
    };
    if host.is_empty() || port.parse::<u16>().is_err() {
        return Err(format!(
            "`{s}` is not host:port (or :port for every interface)"
        ));
    }
    let addrs: Vec<SocketAddr> = s
        .to_socket_addrs()
        .map_err(|e| format!("cannot resolve `{host}`: {e}"))?
        .collect();
    addrs
        .iter()
        .find(|a| a.is_ipv4())
        .or(addrs.first())
        .copied()
        .ok_or_else(|| format!("`{host}` has no address"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn addresses_take_names_and_a_bare_port() {
        assert_eq!(
            parse_addr("127.0.0.1:80"),
            Ok(SocketAddr::from(([127, 0, 0, 1], 80)))
        );
        assert_eq!(
            parse_addr(":9000"),
            Ok(SocketAddr::from(([0, 0, 0, 0], 9000)))
        );
        assert_eq!(parse_addr("[::1]:7"), Ok("[::1]:7".parse().unwrap()));
        let local = parse_addr("localhost:9000").unwrap();
        assert!(local.ip().is_loopback() && local.port() == 9000, "{local}");
        for bad in [":", ":x", ":70000", "localhost", "localhost:", "127.0.0.1"] {
            let e = parse_addr(bad).unwrap_err();
            assert!(e.contains('`'), "{bad}: {e}");
        }
    }

    #[test]
    fn every_variable_is_named_after_its_option() {
        let mut cmd = Cli::command();
        cmd.build();
        let mut seen = 0;
        for sub in std::iter::once(&cmd).chain(cmd.get_subcommands()) {
            for arg in sub.get_arguments() {
                let (Some(env), Some(long)) = (arg.get_env(), arg.get_long()) else {
                    continue;
                };
                // `token` spells the secret's flags shorter than `serve`, which owns them.
                if sub.get_name() == "token" {
                    continue;
                }
                let want = format!("TICKCAST_{}", long.replace('-', "_").to_ascii_uppercase());
                assert_eq!(env.to_str(), Some(want.as_str()), "--{long}");
                seen += 1;
            }
        }
        assert!(seen > 40, "only {seen} variables checked");
    }

    #[test]
    fn switches_read_their_variables_as_booleans() {
        for (text, want) in [
            ("1", true),
            ("yes", true),
            ("TRUE", true),
            ("On", true),
            ("0", false),
            ("no", false),
            ("False", false),
        ] {
            assert_eq!(parse_bool(text), Ok(want), "{text}");
        }
        assert!(parse_bool("maybe").is_err());
    }
}
