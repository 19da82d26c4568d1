//! `tickcast load`: its options and their conversion into a [`LoadConfig`] and the
//! [`RowContext`] recorded with its CSV row.

use std::path::PathBuf;
use std::time::Duration;

use clap::Args;

use super::{parse_duration, parse_secs};
use crate::load::{LoadConfig, RowContext, Target, parse_source_ips};

/// Options of `tickcast load`.
#[derive(Debug, Args)]
pub struct LoadArgs {
    /// WebSocket URL to load (loopback only: 127.0.0.0/8 or localhost). `wss://` speaks TLS
    /// on every connection and needs --tls-ca.
    #[arg(default_value = "ws://127.0.0.1:8080/ws?topics=ticks")]
    pub url: String,
    /// Connections to open.
    #[arg(short = 'n', long = "connections", default_value_t = 1000)]
    pub connections: usize,
    /// Event-loop threads. Default: the CPUs this process may run on.
    #[arg(long)]
    pub threads: Option<usize>,
    /// New connections per second while ramping up.
    #[arg(long, default_value_t = 2000.0, conflicts_with = "ramp")]
    pub connect_rate: f64,
    /// Instead of --connect-rate: open all connections over this long (`15`, `15s`).
    #[arg(long, value_parser = parse_secs)]
    pub ramp: Option<Duration>,
    /// Source addresses to spread connections over, bound before connect
    /// (`127.0.0.1-127.0.0.8` or a comma list); lifts the ~28k ports of one address.
    #[arg(long)]
    pub source_ips: Option<String>,
    /// Time after the ramp before measuring (`2`, `2s`).
    #[arg(long, default_value = "2", value_parser = parse_secs)]
    pub warmup: Duration,
    /// Length of the measured window (`10`, `10s`).
    #[arg(long, default_value = "10", value_parser = parse_secs)]
    pub duration: Duration,
    /// Longest wait from connect to 101 before a connection counts as failed.
    #[arg(long, default_value = "10", value_parser = parse_secs)]
    pub connect_timeout: Duration,
    /// Largest server message accepted, in bytes.
    #[arg(long, default_value_t = 16 << 20)]
    pub max_message: usize,
    /// Connections (the first ones) that also publish `{"op":"publish",...}`.
    #[arg(long, default_value_t = 0)]
    pub publishers: usize,
    /// Publishes per second per publisher.
    #[arg(long, default_value_t = 0.0)]
    pub publish_rate: f64,
    /// Topic to publish on. Default: the URL's first topic, else `ticks`.
    #[arg(long)]
    pub publish_topic: Option<String>,
    /// Spread the connections over K rooms: connection k puts `k % K` in place of every
    /// `{r}` in the URL and in --publish-topic (`ws://…/ws?room=chat-{r}`).
    #[arg(long, default_value_t = 0)]
    pub rooms: usize,
    /// With --rooms: this many publishers in each room (the first rooms x N connections;
    /// replaces --publishers).
    #[arg(long)]
    pub publishers_per_room: Option<usize>,
    /// Measure publisher-to-subscriber latency (from the `sent_us` publishers embed) even
    /// without --publishers: subscribers of publishers running elsewhere.
    #[arg(long)]
    pub publish_latency: bool,
    /// Offer permessage-deflate, as browsers do, and inflate compressed messages (a
    /// connection the server does not agree with fails: `deflate_declined`).
    #[arg(long)]
    pub deflate: bool,
    /// With a wss:// URL: the PEM certificate(s) to trust (the authority that signed the
    /// server's certificate; no system roots). The URL's host is the name checked.
    #[arg(long, value_name = "FILE")]
    pub tls_ca: Option<PathBuf>,
    /// Append one row to this CSV file (header written when the file is new).
    #[arg(long)]
    pub csv: Option<PathBuf>,
    /// Print the summary as JSON instead of text.
    #[arg(long)]
    pub json: bool,
    /// No progress bar (it is also off when stderr is not a terminal).
    #[arg(long, short = 'q')]
    pub quiet: bool,
    /// Server process to sample (CPU, RSS from /proc) before connecting, once connected,
    /// and over the window.
    #[arg(long, help_heading = "Server measurement")]
    pub server_pid: Option<u32>,
    /// Read the server's drop counters from /metrics at the window's start and end.
    #[arg(long, help_heading = "Server measurement")]
    pub scrape_metrics: bool,
    /// Recorded in the row: what is measured (`tickcast`, `baseline`).
    #[arg(
        long,
        default_value = "tickcast",
        help_heading = "Recorded in the CSV row"
    )]
    pub mode: String,
    /// Recorded: server shard threads. Default: the count the server's /metrics shows,
    /// else unknown (the report labels it `shards=?`).
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..), help_heading = "Recorded in the CSV row")]
    pub shards: Option<u32>,
    /// Recorded: shard threads were pinned.
    #[arg(long, help_heading = "Recorded in the CSV row")]
    pub pinned: bool,
    /// Recorded: mixer linger.
    #[arg(long, default_value = "0s", value_parser = parse_duration, help_heading = "Recorded in the CSV row")]
    pub linger: Duration,
    /// Recorded: requested payload bytes.
    #[arg(long, default_value_t = 0, help_heading = "Recorded in the CSV row")]
    pub payload_bytes: u64,
    /// Recorded: provider threads.
    #[arg(long, default_value_t = 0, help_heading = "Recorded in the CSV row")]
    pub providers: u32,
    /// Recorded: messages per second the server publishes; sets the expected deliveries.
    #[arg(long, default_value_t = 0.0, help_heading = "Recorded in the CSV row")]
    pub offered_rate: f64,
    /// Recorded: provider interval when interval-paced.
    #[arg(long, value_parser = parse_duration, help_heading = "Recorded in the CSV row")]
    pub interval: Option<Duration>,
    /// Recorded: how CPUs were split (e.g. `server:0 load:1`).
    #[arg(long, default_value = "", help_heading = "Recorded in the CSV row")]
    pub cpu_split: String,
}

impl LoadArgs {
    /// The validated run configuration.
    pub fn to_config(&self) -> Result<LoadConfig, String> {
        let target = Target::parse(&self.url)?;
        let mut cfg = LoadConfig::new(target, self.connections);
        if let Some(t) = self.threads {
            cfg.threads = t;
        }
        cfg.connect_rate = match self.ramp {
            Some(ramp) if !ramp.is_zero() => self.connections as f64 / ramp.as_secs_f64(),
            Some(_) => 1e6,
            None => self.connect_rate,
        };
        if let Some(spec) = &self.source_ips {
            cfg.source_ips = parse_source_ips(spec)?;
        }
        cfg.warmup = self.warmup;
        cfg.duration = self.duration;
        cfg.connect_timeout = self.connect_timeout;
        cfg.max_message = self.max_message;
        cfg.publishers = self.publishers;
        cfg.publish_rate = self.publish_rate;
        cfg.track_publish_latency = self.publish_latency;
        cfg.rooms = self.rooms;
        if let Some(per_room) = self.publishers_per_room {
            if self.rooms == 0 {
                return Err("--publishers-per-room needs --rooms".into());
            }
            cfg.publishers = self.rooms.saturating_mul(per_room);
        }
        if let Some(topic) = &self.publish_topic {
            cfg.publish_topic = topic.clone();
        }
        cfg.server_pid = self.server_pid;
        cfg.scrape_metrics = self.scrape_metrics;
        cfg.learn_shards = self.shards.is_none();
        cfg.progress = !self.quiet;
        cfg.deflate = self.deflate;
        cfg.tls_ca = self.tls_ca.clone();
        cfg.validate()?;
        Ok(cfg)
    }

    /// The settings recorded with the row.
    pub fn row_context(&self) -> RowContext {
        RowContext {
            mode: self.mode.clone(),
            shards: self.shards,
            pin: self.pinned,
            linger_us: self.linger.as_micros() as u64,
            payload_bytes: self.payload_bytes,
            providers: self.providers,
            offered_rate: self.offered_rate,
            interval_us: self.interval.map_or(0, |d| d.as_micros() as u64),
            cpu_split: self.cpu_split.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::cli::{Cli, Command};
    use clap::Parser;

    fn parse(args: &[&str]) -> super::LoadArgs {
        let mut all = vec!["tickcast", "load"];
        all.extend_from_slice(args);
        match Cli::parse_from(all).command {
            Command::Load(a) => *a,
            other => panic!("not load: {other:?}"),
        }
    }

    #[test]
    fn ramp_sets_the_connect_rate() {
        let a = parse(&["-n", "9900", "--ramp", "15", "--threads", "2"]);
        let cfg = a.to_config().unwrap();
        assert!((cfg.connect_rate - 660.0).abs() < 1e-9);
        assert_eq!(cfg.threads, 2);
    }

    #[test]
    fn durations_accept_seconds_or_units() {
        let a = parse(&[
            "--warmup",
            "0.5",
            "--duration",
            "3s",
            "--source-ips",
            "127.0.0.1-127.0.0.4",
        ]);
        let cfg = a.to_config().unwrap();
        assert_eq!(cfg.warmup.as_millis(), 500);
        assert_eq!(cfg.duration.as_secs(), 3);
        assert_eq!(cfg.source_ips.len(), 4);
    }

    #[test]
    fn wss_wants_a_ca_file() {
        let err = parse(&["wss://127.0.0.1:8443/ws"]).to_config().unwrap_err();
        assert!(err.contains("--tls-ca"), "{err}");
        let cfg = parse(&["wss://127.0.0.1:8443/ws", "--tls-ca", "ca.pem"])
            .to_config()
            .unwrap();
        assert!(cfg.target.tls);
        assert_eq!(cfg.tls_ca.as_deref(), Some(std::path::Path::new("ca.pem")));
    }

    #[test]
    fn remote_targets_are_refused() {
        assert!(parse(&["ws://192.0.2.1:80/ws"]).to_config().is_err());
    }

    #[test]
    fn context_is_recorded() {
        let a = parse(&[
            "--mode",
            "baseline",
            "--shards",
            "2",
            "--linger",
            "1ms",
            "--offered-rate",
            "500",
        ]);
        let c = a.row_context();
        assert_eq!(
            (c.mode.as_str(), c.shards, c.linger_us, c.offered_rate),
            ("baseline", Some(2), 1000, 500.0)
        );
        assert!(!a.to_config().unwrap().learn_shards);
    }

    #[test]
    fn shards_are_unknown_unless_given_and_never_zero() {
        let a = parse(&[]);
        assert_eq!(a.row_context().shards, None);
        assert!(
            a.to_config().unwrap().learn_shards,
            "asked of the server instead"
        );
        let zero = Cli::try_parse_from(["tickcast", "load", "--shards", "0"]);
        assert!(zero.is_err(), "0 shards is not a server");
    }
}
