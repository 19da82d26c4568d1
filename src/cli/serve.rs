//! `tickcast serve`: its options and their conversion into a [`ServerConfig`].

use std::net::SocketAddr;
use std::time::Duration;

use clap::{ArgAction, Args, ValueEnum};

use super::secret::SecretArgs;
use super::{parse_addr, parse_bool, parse_duration};
use crate::config::{Secret, ServerConfig, SlowPolicy, TickerConfig, TickerPace, default_shards};
use crate::edge::forwarded::{Cidr, ForwardedHeader, TrustedProxies};
use crate::sched::WorkerSched;

/// Slow-consumer policy as spelled on the command line.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum SlowPolicyArg {
    /// Drop the frame for that client (it sees a seq gap).
    Drop,
    /// Close the client with 1008 "slow consumer".
    Disconnect,
}

/// Scheduling of the shard and mixer threads as spelled on the command line.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum WorkerSchedArg {
    /// SCHED_BATCH: a woken shard or mixer waits for the thread running on its core.
    Batch,
    /// SCHED_OTHER: every wake-up may preempt.
    Normal,
}

/// A switch spelled `on` or `off`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum OnOff {
    /// Enabled.
    On,
    /// Disabled.
    Off,
}

/// Options of `tickcast serve`.
#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Read options from this TOML file (keys are the long options: `max-connections = 100`);
    /// a flag or a variable overrides the file's value.
    #[arg(long, env = "TICKCAST_CONFIG", value_name = "FILE")]
    pub config: Option<std::path::PathBuf>,
    /// Address to listen on: `host:port` (a name is resolved once, at start) or `:port` for
    /// every interface.
    #[arg(long, env = "TICKCAST_LISTEN", default_value = "127.0.0.1:8080", value_parser = parse_addr)]
    pub listen: SocketAddr,
    /// Shard threads (event loops); 1 is the single hub. Default: number of cores.
    #[arg(long, env = "TICKCAST_SHARDS")]
    pub shards: Option<usize>,
    /// Do not pin shard threads to cores.
    #[arg(long, env = "TICKCAST_NO_PIN", action = ArgAction::SetTrue, value_parser = parse_bool)]
    pub no_pin: bool,
    /// Capacity of each shard's broadcast queue (messages); full = counted drop.
    #[arg(long, env = "TICKCAST_SHARD_QUEUE", default_value_t = 16384)]
    pub shard_queue: usize,
    /// Bytes of frames each shard's queue may hold (the mixer's backlog for it included);
    /// past it broadcasts are counted drops and replays are cut behind a `reset`.
    #[arg(long, env = "TICKCAST_SHARD_QUEUE_BYTES", value_name = "BYTES", default_value_t = 64 << 20)]
    pub shard_queue_bytes: usize,
    /// Capacity of the providers -> mixer channel (messages).
    #[arg(long, env = "TICKCAST_MIXER_QUEUE", default_value_t = 65536)]
    pub mixer_queue: usize,
    /// Bytes of client publishes all shards may have handed the mixer before it takes
    /// them; past it a publish gets `server_busy`.
    #[arg(long, env = "TICKCAST_MIXER_QUEUE_BYTES", value_name = "BYTES", default_value_t = 64 << 20)]
    pub mixer_queue_bytes: usize,
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
    /// Close a client whose socket takes no byte for this long while it has bytes to write.
    #[arg(long, env = "TICKCAST_WRITE_TIMEOUT", default_value = "10s", value_parser = parse_duration)]
    pub write_timeout: Duration,
    /// Bytes written to one connection per event-loop turn.
    #[arg(long, env = "TICKCAST_WRITE_BUDGET", default_value_t = 256 * 1024)]
    pub write_budget: usize,
    /// SO_SNDBUF of every client socket, in bytes; 0 lets the kernel autotune it (which
    /// lets a client that stops reading hold megabytes of kernel memory).
    #[arg(long, env = "TICKCAST_SEND_BUFFER", default_value_t = 64 * 1024)]
    pub send_buffer: usize,
    /// SCHED_FIFO priority of the acceptor thread, 1-99 (0: normal priority; when refused,
    /// a short scheduler slice is asked for instead).
    #[arg(long, env = "TICKCAST_ACCEPTOR_RT_PRIORITY", default_value_t = 10)]
    pub acceptor_rt_priority: u8,
    /// Scheduling of the shard and mixer threads: `batch` (SCHED_BATCH) spares a switch
    /// per wake-up where they share a core; `normal` lets every wake-up preempt.
    #[arg(
        long,
        env = "TICKCAST_WORKER_SCHED",
        value_enum,
        default_value = "batch"
    )]
    pub worker_sched: WorkerSchedArg,
    /// Topics one connection may subscribe to at once.
    #[arg(long, env = "TICKCAST_MAX_TOPICS", default_value_t = 64)]
    pub max_topics: usize,
    /// Messages kept per topic for resumes (`?since=topic:seq`); 0 disables history.
    #[arg(long, env = "TICKCAST_HISTORY", default_value_t = 1000)]
    pub history: usize,
    /// Bytes of history all topics together keep; past it the oldest frames are evicted
    /// (a resume from before them gets `reset`). Default: 1/8 of memory, 64 MiB to 4 GiB.
    #[arg(long, env = "TICKCAST_HISTORY_BUDGET", value_name = "BYTES")]
    pub history_budget: Option<u64>,
    /// Serve /metrics and /healthz on this address, from a thread of their own (keep it
    /// private); the public listener then answers 404 to /metrics.
    #[arg(long, env = "TICKCAST_METRICS_LISTEN", value_name = "ADDR", value_parser = parse_addr)]
    pub metrics_listen: Option<SocketAddr>,
    /// permessage-deflate (RFC 7692): each message is compressed once for every client that
    /// negotiated it. Costs the mixer one compression per message above
    /// --deflate-min-bytes while such a client listens; saves 2-5x of the bytes on the wire
    /// for JSON of a kilobyte. Off: offers are declined and everyone is served plain.
    #[arg(long, env = "TICKCAST_DEFLATE", value_enum, default_value = "on")]
    pub deflate: OnOff,
    /// The /echo endpoint (each message sent back, charged like a /ws message: past the
    /// publish limits it is closed with 1008). Off: /echo answers 404.
    #[arg(long, env = "TICKCAST_ECHO", value_enum, default_value = "on")]
    pub echo: OnOff,
    /// Messages with a smaller payload are never compressed (alone, they barely shrink).
    #[arg(long, env = "TICKCAST_DEFLATE_MIN_BYTES", default_value_t = 256)]
    pub deflate_min_bytes: usize,
    /// Serve wss:// (TLS 1.2/1.3, rustls) with this PEM certificate chain, leaf first. The
    /// port then speaks TLS only; a plain request gets a 400 saying so. Certificate and key
    /// are read again on SIGHUP (new handshakes take the new pair; a bad pair is refused and
    /// logged, the old one kept). Needs --tls-key.
    #[arg(
        long,
        env = "TICKCAST_TLS_CERT",
        requires = "tls_key",
        value_name = "FILE"
    )]
    pub tls_cert: Option<std::path::PathBuf>,
    /// The private key of --tls-cert (PEM: PKCS#8, PKCS#1 or SEC1).
    #[arg(
        long,
        env = "TICKCAST_TLS_KEY",
        requires = "tls_cert",
        value_name = "FILE"
    )]
    pub tls_key: Option<std::path::PathBuf>,
    /// Connections from a --trusted-proxy must open with a PROXY header (HAProxy protocol v1
    /// or v2, before TLS) naming the client; without one they are closed. Other peers are
    /// served directly, and a PROXY header from them is refused (400).
    #[arg(long, env = "TICKCAST_PROXY_PROTOCOL", action = ArgAction::SetTrue, value_parser = parse_bool)]
    pub proxy_protocol: bool,
    /// A proxy (address or CIDR, e.g. 10.0.0.0/8; repeatable) whose PROXY header and
    /// forwarding header (--forwarded-header) are believed: the client is the right-most address in
    /// the chain that is not a trusted proxy. It then drives --max-connections-per-ip and
    /// the logs. From any other peer those headers are ignored.
    #[arg(
        long,
        env = "TICKCAST_TRUSTED_PROXY",
        value_name = "CIDR",
        value_delimiter = ','
    )]
    pub trusted_proxy: Vec<Cidr>,
    /// The forwarding header the trusted proxies write: `xff` (X-Forwarded-For) or
    /// `forwarded` (RFC 7239). The other header is ignored: a proxy passes a client's own
    /// copy of a header it does not write, so reading both would let a client pick its
    /// address.
    #[arg(
        long,
        env = "TICKCAST_FORWARDED_HEADER",
        value_name = "xff|forwarded",
        default_value_t = ForwardedHeader::XForwardedFor
    )]
    pub forwarded_header: ForwardedHeader,
    /// IPv6 clients count toward --max-connections-per-ip by this many leading bits (a
    /// site is usually given a /64); 128 counts every address apart.
    #[arg(long, env = "TICKCAST_IPV6_PREFIX", default_value_t = 64,
          value_parser = clap::value_parser!(u8).range(1..=128))]
    pub ipv6_prefix: u8,
    /// Rooms with more members get only counts instead of member lists and deltas.
    #[arg(long, env = "TICKCAST_PRESENCE_LIST_MAX", default_value_t = 1000)]
    pub presence_list_max: usize,
    /// Messages per second a /ws client may send, errors included (token bucket);
    /// 0 = unlimited, byte limit included.
    #[arg(long, env = "TICKCAST_PUBLISH_RATE", default_value_t = 100.0)]
    pub publish_rate: f64,
    /// Messages allowed in a burst above the rate.
    #[arg(long, env = "TICKCAST_PUBLISH_BURST", default_value_t = 200)]
    pub publish_burst: u32,
    /// Bytes per second a /ws client may send in messages (token bucket); 0 = unlimited.
    #[arg(long, env = "TICKCAST_PUBLISH_BYTE_RATE", default_value_t = 128.0 * 1024.0)]
    pub publish_byte_rate: f64,
    /// Published bytes allowed in a burst above the byte rate (at least --max-message; with
    /// --publish-burst envelopes of 512 bytes, at most --outbox-limit).
    #[arg(long, env = "TICKCAST_PUBLISH_BYTE_BURST", default_value_t = 256 * 1024)]
    pub publish_byte_burst: usize,
    /// WebSocket connections allowed at once (more get 503); 0 = unlimited. Default: 7/8 of
    /// the open-file limit less 128, so sockets still in their handshake keep descriptors.
    #[arg(long, env = "TICKCAST_MAX_CONNECTIONS", value_name = "N")]
    pub max_connections: Option<usize>,
    /// Sockets one client IP may hold before their upgrade (HTTP head, TLS handshake, an
    /// HTTP answer's close); more are closed at accept. Not applied to --trusted-proxy peers;
    /// 0 = unlimited.
    #[arg(long, env = "TICKCAST_MAX_PENDING_PER_IP", default_value_t = 128)]
    pub max_pending_per_ip: usize,
    /// WebSocket connections allowed per client IP (more get 429); 0 = unlimited.
    #[arg(long, env = "TICKCAST_MAX_CONNECTIONS_PER_IP", default_value_t = 0)]
    pub max_connections_per_ip: usize,
    /// The auth secret (`--auth-secret`, `--auth-secret-file`).
    #[command(flatten)]
    pub secret: SecretArgs,
    /// Allowed browser Origin (repeatable); other origins get 403. Default: any.
    #[arg(
        long = "allowed-origin",
        env = "TICKCAST_ALLOWED_ORIGIN",
        value_delimiter = ','
    )]
    pub allowed_origins: Vec<String>,
    /// Refuse tokens whose exp is further than this from now or from their iat (as
    /// expired, 401).
    #[arg(long, env = "TICKCAST_MAX_TOKEN_LIFETIME", default_value = "24h", value_parser = parse_duration)]
    pub max_token_lifetime: Duration,
    /// Share messages with other nodes through Redis Pub/Sub (redis://host:port; a bare
    /// host:port means redis://host:port).
    #[arg(long, env = "TICKCAST_REDIS")]
    pub redis: Option<String>,
    /// Prefix of the Redis channels and keys.
    #[arg(
        long,
        env = "TICKCAST_REDIS_PREFIX",
        default_value = "tickcast",
        requires = "redis"
    )]
    pub redis_prefix: String,
    /// Also send this node's providers (ticks, telemetry) through Redis.
    #[arg(long, env = "TICKCAST_REDIS_PUBLISH_PROVIDERS", action = ArgAction::SetTrue, value_parser = parse_bool)]
    pub redis_publish_providers: bool,
    /// With --redis: a topic's keys (sequence, stream of recent messages) expire after this
    /// long without a publish.
    #[arg(long, env = "TICKCAST_ROOM_TTL", default_value = "24h", value_parser = parse_duration, requires = "redis")]
    pub room_ttl: Duration,
    /// With --redis: a room with no member left on any node expires after this long instead
    /// of --room-ttl (a join anywhere restores --room-ttl).
    #[arg(long, env = "TICKCAST_EMPTY_ROOM_TTL", default_value = "5m", value_parser = parse_duration, requires = "redis")]
    pub empty_room_ttl: Duration,
    /// With --redis: most bytes of messages a topic's stream keeps in Redis (oldest trimmed
    /// first, as well as past --history entries).
    #[arg(long, env = "TICKCAST_REDIS_STREAM_MAX_BYTES", default_value_t = crate::bus::STREAM_MAX_BYTES, requires = "redis")]
    pub redis_stream_max_bytes: usize,
    /// With --redis: a node whose heartbeat is this old is dead, and its members leave
    /// every room (announced by another node).
    #[arg(long, env = "TICKCAST_NODE_TTL", default_value = "10s", value_parser = parse_duration, requires = "redis")]
    pub node_ttl: Duration,
    /// Independent ticker feeds (provider threads); 0 disables ticks.
    #[arg(long, env = "TICKCAST_PROVIDERS", default_value_t = 4)]
    pub providers: usize,
    /// Each feed emits one tick per interval (down to 1ms).
    #[arg(long, env = "TICKCAST_INTERVAL", default_value = "100ms", value_parser = parse_duration)]
    pub interval: Duration,
    /// Instead of --interval: ticks per second per feed (for stress tests).
    #[arg(long, env = "TICKCAST_RATE", conflicts_with = "interval")]
    pub rate: Option<f64>,
    /// Approximate size of each tick's data object (0 = natural, about 100 bytes).
    #[arg(long, env = "TICKCAST_PAYLOAD_BYTES", default_value_t = 0)]
    pub payload_bytes: usize,
    /// Symbols per feed.
    #[arg(long, env = "TICKCAST_SYMBOLS", default_value_t = 4)]
    pub symbols: usize,
    /// How often the `telemetry` topic is published while someone subscribes (0 = off).
    #[arg(long, env = "TICKCAST_TELEMETRY_INTERVAL", default_value = "1s", value_parser = parse_duration)]
    pub telemetry_interval: Duration,
}

impl ServeArgs {
    /// The validated server configuration these options describe.
    pub fn to_config(&self) -> Result<ServerConfig, String> {
        // Checked here rather than with clap's `requires`, which a variable set to `0` would
        // trip as well.
        if self.redis_publish_providers && self.redis.is_none() {
            return Err("--redis-publish-providers needs --redis".into());
        }
        let cfg = ServerConfig {
            listen: self.listen,
            shards: self.shards.unwrap_or_else(default_shards),
            pin: !self.no_pin,
            shard_queue: self.shard_queue,
            shard_queue_bytes: self.shard_queue_bytes,
            mixer_queue: self.mixer_queue,
            mixer_queue_bytes: self.mixer_queue_bytes,
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
            write_timeout: self.write_timeout,
            write_budget: self.write_budget,
            send_buffer: (self.send_buffer > 0).then_some(self.send_buffer),
            acceptor_rt_priority: self.acceptor_rt_priority,
            worker_sched: match self.worker_sched {
                WorkerSchedArg::Batch => WorkerSched::Batch,
                WorkerSchedArg::Normal => WorkerSched::Normal,
            },
            max_topics_per_conn: self.max_topics,
            history: self.history,
            history_budget: self.history_budget,
            metrics_listen: self.metrics_listen,
            deflate: self.deflate == OnOff::On,
            echo: self.echo == OnOff::On,
            deflate_min_bytes: self.deflate_min_bytes,
            presence_list_max: self.presence_list_max,
            proxy_protocol: self.proxy_protocol,
            trusted_proxies: TrustedProxies(self.trusted_proxy.clone()),
            forwarded_header: self.forwarded_header,
            ipv6_prefix: self.ipv6_prefix,
            tls: match (&self.tls_cert, &self.tls_key) {
                (Some(cert), Some(key)) => Some(crate::config::TlsFiles {
                    cert: cert.clone(),
                    key: key.clone(),
                }),
                _ => None,
            },
            publish_rate: self.publish_rate,
            publish_burst: self.publish_burst,
            publish_byte_rate: self.publish_byte_rate,
            publish_byte_burst: self.publish_byte_burst,
            max_connections: self.max_connections,
            max_pending_per_ip: self.max_pending_per_ip,
            max_connections_per_ip: self.max_connections_per_ip,
            auth_secret: self.secret.bytes()?.map(Secret),
            allowed_origins: self.allowed_origins.clone(),
            max_token_lifetime: self.max_token_lifetime,
            redis: self.redis.as_ref().map(|url| crate::bus::BusConfig {
                url: redis_url(url),
                prefix: self.redis_prefix.clone(),
                publish_providers: self.redis_publish_providers,
                history: self.history,
                room_ttl: self.room_ttl,
                node_ttl: self.node_ttl,
                empty_room_ttl: self.empty_room_ttl,
                stream_max_bytes: self.redis_stream_max_bytes,
            }),
            ticker: TickerConfig {
                feeds: self.providers,
                pace: match self.rate {
                    Some(r) => TickerPace::Rate(r),
                    None => TickerPace::Interval(self.interval),
                },
                payload_bytes: self.payload_bytes,
                symbols_per_feed: self.symbols,
            },
            telemetry_interval: self.telemetry_interval,
        };
        cfg.validate()?;
        Ok(cfg)
    }
}

/// `--redis` as a URL: `host:port` (what a compose file or an operator writes) becomes
/// `redis://host:port`; anything with a scheme is kept as it is.
fn redis_url(value: &str) -> String {
    if value.contains("://") {
        value.to_string()
    } else {
        format!("redis://{value}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::{Cli, Command};
    use clap::{CommandFactory, Parser};

    #[test]
    fn a_bare_redis_address_is_a_redis_url() {
        let url = |value: &str| {
            let Command::Serve(args) =
                Cli::parse_from(["tickcast", "serve", "--redis", value]).command
            else {
                panic!("not serve");
            };
            args.to_config().unwrap().redis.unwrap().url
        };
        assert_eq!(url("redis:6379"), "redis://redis:6379");
        assert_eq!(url("redis://redis:6379/2"), "redis://redis:6379/2");
        assert_eq!(
            url("redis://:secret@cache.example:6380"),
            "redis://:secret@cache.example:6380"
        );
    }

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
        // Every field, so a default changed on one side only is caught.
        assert_eq!(
            format!("{cfg:#?}"),
            format!("{:#?}", ServerConfig::default())
        );
    }

    #[test]
    fn telemetry_interval_zero_disables() {
        let Cli {
            command: Command::Serve(args),
            ..
        } = Cli::parse_from(["tickcast", "serve", "--telemetry-interval", "0s"])
        else {
            panic!("serve")
        };
        assert!(args.to_config().unwrap().telemetry_interval.is_zero());
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
