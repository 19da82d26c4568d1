//! Server configuration: one plain struct with documented defaults, validated once.
//!
//! The command line (`src/cli/`) is the only place that knows about clap; it fills a
//! [`ServerConfig`] and calls [`ServerConfig::validate`]. Everything below the edge receives
//! an `Arc<ServerConfig>` and never re-checks it.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use crate::edge::forwarded::{ForwardedHeader, TrustedProxies};
use crate::sched::WorkerSched;

pub use crate::auth::Secret;

/// What a shard does when a broadcast frame would push a client's outbox past its limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SlowPolicy {
    /// Skip this frame for this client only; the client sees a gap in `seq` (default).
    Drop,
    /// Close the connection with 1008 "slow consumer".
    Disconnect,
}

/// How the synthetic ticker feeds pace themselves.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum TickerPace {
    /// One message per feed every interval (default 100 ms, down to 1 ms).
    Interval(Duration),
    /// A fixed number of messages per second per feed, emitted in small bursts (for stress).
    Rate(f64),
}

/// Settings of the built-in `ticker` provider.
#[derive(Debug, Clone, PartialEq)]
pub struct TickerConfig {
    /// Independent feeds, each on its own thread with its own symbols. 0 disables ticks.
    pub feeds: usize,
    /// Pace of each feed.
    pub pace: TickerPace,
    /// Approximate size of each tick's `data` object in bytes; padded with a `pad` field.
    /// 0 means "natural size" (about 100 bytes).
    pub payload_bytes: usize,
    /// Symbols per feed.
    pub symbols_per_feed: usize,
}

impl Default for TickerConfig {
    fn default() -> Self {
        TickerConfig {
            feeds: 4,
            pace: TickerPace::Interval(Duration::from_millis(100)),
            payload_bytes: 0,
            symbols_per_feed: 4,
        }
    }
}

/// Everything `tickcast serve` needs. Defaults are the production defaults.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// Address of the listening socket. Default `127.0.0.1:8080`.
    pub listen: SocketAddr,
    /// Shard threads (event loops). Default: number of cores. `1` is the single hub.
    pub shards: usize,
    /// Pin each shard to its own core. Skipped (with a log line) when shards > cores.
    pub pin: bool,
    /// Capacity of each shard's broadcast queue, in messages. A full queue is a counted drop
    /// for that shard, never a block of the mixer. Default 16384.
    pub shard_queue: usize,
    /// Bytes of frames each shard's queue may hold, the mixer's backlog for it included
    /// ([`crate::messages::QueueBytes`]): past it a broadcast is a counted drop for that
    /// shard, a reply a counted control drop, and a resume's replay is cut to its newest
    /// frames behind a `reset`. Default 64 MiB; at least 4 × `max_message`.
    pub shard_queue_bytes: usize,
    /// Capacity of the providers -> mixer channel, in messages. Default 65536.
    pub mixer_queue: usize,
    /// Bytes of client publishes every shard together may have handed the mixer before it
    /// takes them ([`crate::messages::MixerPort`]): past it a publish gets `server_busy`.
    /// Default 64 MiB; at least 4 × `max_message`.
    pub mixer_queue_bytes: usize,
    /// How long the mixer may hold frames before waking shards, to batch writes at low
    /// rates. Default 0 (wake at once).
    pub linger: Duration,
    /// Largest accepted client message (after reassembly). Default 64 KiB. Larger: close 1009.
    pub max_message: usize,
    /// Largest HTTP request header block. Default 8 KiB. Larger: 431.
    pub max_header: usize,
    /// A connection that has not completed its HTTP request by then is closed. Default 5 s.
    pub handshake_timeout: Duration,
    /// Interval between server pings on an open WebSocket. Default 30 s.
    pub ping_interval: Duration,
    /// A connection that sent nothing (pongs included) for this long is closed. Default 75 s.
    pub idle_timeout: Duration,
    /// On shutdown, how long to wait for clients to answer the close frame. Default 5 s.
    pub drain_timeout: Duration,
    /// Longest wait for a peer's close reply (or a written error response) before the
    /// socket is dropped. Default 2 s.
    pub close_timeout: Duration,
    /// Bytes a connection may have queued (frame bytes plus 24 bytes of bookkeeping each)
    /// before the slow-consumer policy applies. Default 1 MiB.
    pub outbox_limit: usize,
    /// What happens when `outbox_limit` would be passed. Default [`SlowPolicy::Drop`].
    pub slow_policy: SlowPolicy,
    /// A connection whose socket takes no byte for this long while it has bytes to write is
    /// closed (and counted), whatever its outbox holds. Default 10 s.
    pub write_timeout: Duration,
    /// Bytes written to one connection per event-loop turn, so one fast link cannot starve
    /// the others. Default 256 KiB.
    pub write_budget: usize,
    /// `SO_SNDBUF` for every accepted socket, which bounds the kernel's send buffer per
    /// client (Linux doubles the value for its bookkeeping) and turns off its autotuning.
    /// Default 64 KiB: a client that stops reading then holds about 0.3 MiB of kernel memory
    /// on loopback, both ends counted, where autotuning let it reach 3-4 MiB; throughput at
    /// 1,000-10,000 clients stayed within noise (see the README). `None`: the kernel sizes
    /// each buffer itself, up to `net.ipv4.tcp_wmem`.
    pub send_buffer: Option<usize>,
    /// `SCHED_FIFO` priority of the acceptor thread (1-99; 0 = do not ask), so a connecting
    /// client is accepted at once even while a shard on its core writes a long pass; when
    /// refused the acceptor asks for a short fair-scheduler slice instead (see `sched.rs`).
    /// Default 10.
    pub acceptor_rt_priority: u8,
    /// Scheduling of the shard and mixer threads. Default [`WorkerSched::Batch`]: a woken
    /// shard or mixer does not preempt the thread running on its core (see `sched.rs`).
    pub worker_sched: WorkerSched,
    /// Topics one connection may hold at once. Default 64.
    pub max_topics_per_conn: usize,
    /// Messages kept per topic for resumes (`?since=`). Default 1000; 0 disables history.
    pub history: usize,
    /// Bytes of history every topic together may keep (`--history-budget`); past it the
    /// node's oldest frames are evicted, whichever topic holds them, and a resume from
    /// before them gets `reset`. Default `None`: an eighth of the machine's memory, read
    /// once at start, at least 64 MiB and at most 4 GiB (each ring alone keeps at most
    /// `history` messages and 4 MiB, but rooms are many). Between 64 KiB and 1 TiB.
    pub history_budget: Option<u64>,
    /// A separate address for `/metrics` and `/healthz` (`--metrics-listen`), answered by a
    /// thread of its own, never by a shard; when set, the public listener answers 404 to
    /// `/metrics`. Default `None`: `/metrics` is served on the public listener, as before.
    pub metrics_listen: Option<SocketAddr>,
    /// Whether upgrades may negotiate permessage-deflate (RFC 7692). Default on: each
    /// message is compressed once, by the mixer, for every client that negotiated it, and
    /// only while one subscribes to its topic; clients' compressed messages are inflated
    /// with a per-shard inflater (no memory per connection). Off: offers are declined.
    pub deflate: bool,
    /// Whether `/echo` is served (404 when off). Default on. Its messages are charged to
    /// the same limits as `/ws` messages (`--publish-rate`, `--publish-byte-rate`): past
    /// them the connection is closed with 1008; its answers wait in the same bounded outbox.
    pub echo: bool,
    /// Messages with a smaller payload are sent uncompressed to everyone (a small message
    /// compressed alone barely shrinks, while the compression costs the mixer). Default 256.
    pub deflate_min_bytes: usize,
    /// Rooms with more members get only counts, no member lists or deltas. Default 1000.
    pub presence_list_max: usize,
    /// Serve `wss://` only, with this certificate chain and key (reloaded on SIGHUP).
    /// Default `None`: plain `ws://`.
    pub tls: Option<TlsFiles>,
    /// Connections from a trusted proxy open with a PROXY header (v1 or v2) naming the
    /// client; one without is refused. Other peers are served directly and may not send
    /// one. Needs `trusted_proxies`. Default off.
    pub proxy_protocol: bool,
    /// Peers whose PROXY headers and forwarding header (`forwarded_header`) are believed: the
    /// client is the right-most address in the chain that is not one of them. Default none:
    /// every client is its socket's peer.
    pub trusted_proxies: TrustedProxies,
    /// The forwarding header the trusted proxies write, read for the client's address; the
    /// other is ignored (a proxy passes a client's own copy of a header it does not write).
    /// Default `X-Forwarded-For`.
    pub forwarded_header: ForwardedHeader,
    /// IPv6 clients are counted for `max_connections_per_ip` by their first this many bits
    /// (one site or host is usually given a /64, so counting per /128 would give it 2^64
    /// quotas). Default 64; 128 counts each address.
    pub ipv6_prefix: u8,
    /// Messages per second a `/ws` client may send (token bucket; every message counts,
    /// errors included). Default 100; 0 = unlimited, and lifts the byte limit too
    /// (benchmarks).
    pub publish_rate: f64,
    /// Burst allowed above `publish_rate`. Default 200.
    pub publish_burst: u32,
    /// Bytes per second a `/ws` client may send in messages (token bucket, on top of the
    /// message count; a publish's data is part of its message). Default 128 KiB;
    /// 0 = unlimited.
    pub publish_byte_rate: f64,
    /// Burst allowed above `publish_byte_rate`. Default 256 KiB. Must be at least
    /// `max_message`, and with `publish_burst` envelopes fit in `outbox_limit` (see
    /// [`ServerConfig::worst_publish_burst`]).
    pub publish_byte_burst: usize,
    /// WebSocket connections allowed at once; more get 503. `None` (the default): seven
    /// eighths of what the open-file limit leaves after 128 descriptors, read at start
    /// ([`crate::admission::default_max_connections`]), so sockets still in their handshake
    /// keep descriptors to be answered with. `Some(0)`: unlimited.
    pub max_connections: Option<usize>,
    /// Sockets one address may hold between accept and upgrade (HTTP head, TLS handshake,
    /// an HTTP answer's lingering close); more are closed at accept. Not applied to
    /// `--trusted-proxy` peers. Default 128; 0 = unlimited.
    pub max_pending_per_ip: usize,
    /// WebSocket connections allowed per client address; more get 429. Default 0 (unlimited).
    pub max_connections_per_ip: usize,
    /// When set, upgrades need a token signed with this HS256 secret (401 otherwise).
    pub auth_secret: Option<Secret>,
    /// When not empty, a browser upgrade (with an `Origin` header) from any other origin gets
    /// 403.
    pub allowed_origins: Vec<String>,
    /// Longest a token may live: one whose `exp` is further than this from now, or from its
    /// `iat`, is refused as expired (401, `token_expired`), so a leaked token cannot be used
    /// for years. Default 24 h; 1 s to 365 days.
    pub max_token_lifetime: Duration,
    /// With `Some`, nodes share messages through Redis Pub/Sub (see [`crate::bus`]).
    pub redis: Option<crate::bus::BusConfig>,
    /// The built-in synthetic market feeds.
    pub ticker: TickerConfig,
    /// How often the `telemetry` provider publishes on the `telemetry` topic (only while
    /// someone subscribes). Default 1 s; zero disables the provider. Otherwise 100 ms to 1 h.
    pub telemetry_interval: Duration,
}

/// The PEM files `--tls-cert` and `--tls-key` name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    /// The certificate chain, leaf first (PEM, one or more `CERTIFICATE` blocks).
    pub cert: PathBuf,
    /// The private key (PEM: PKCS#8, PKCS#1 RSA or SEC1 EC).
    pub key: PathBuf,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            shards: default_shards(),
            pin: true,
            shard_queue: 16 * 1024,
            shard_queue_bytes: 64 << 20,
            mixer_queue: 64 * 1024,
            mixer_queue_bytes: 64 << 20,
            linger: Duration::ZERO,
            max_message: 64 * 1024,
            max_header: 8 * 1024,
            handshake_timeout: Duration::from_secs(5),
            ping_interval: Duration::from_secs(30),
            idle_timeout: Duration::from_secs(75),
            drain_timeout: Duration::from_secs(5),
            close_timeout: Duration::from_secs(2),
            outbox_limit: 1024 * 1024,
            slow_policy: SlowPolicy::Drop,
            write_timeout: Duration::from_secs(10),
            write_budget: 256 * 1024,
            send_buffer: Some(64 * 1024),
            acceptor_rt_priority: 10,
            worker_sched: WorkerSched::Batch,
            max_topics_per_conn: 64,
            history: 1000,
            history_budget: None,
            metrics_listen: None,
            deflate: true,
            echo: true,
            deflate_min_bytes: 256,
            presence_list_max: 1000,
            tls: None,
            proxy_protocol: false,
            trusted_proxies: TrustedProxies::default(),
            forwarded_header: ForwardedHeader::default(),
            ipv6_prefix: 64,
            publish_rate: 100.0,
            publish_burst: 200,
            publish_byte_rate: 128.0 * 1024.0,
            publish_byte_burst: 256 * 1024,
            max_connections: None,
            max_pending_per_ip: 128,
            max_connections_per_ip: 0,
            auth_secret: None,
            allowed_origins: Vec::new(),
            max_token_lifetime: crate::auth::DEFAULT_MAX_TOKEN_LIFETIME,
            redis: None,
            ticker: TickerConfig::default(),
            telemetry_interval: Duration::from_secs(1),
        }
    }
}

/// Bytes one published message may add to a member's outbox beyond its data: the largest
/// envelope (`{"topic","seq","ts","from","nick","kind","data"}` with every name at its
/// longest), the frame header and the outbox entry. Checked against the real envelope in
/// `mixer`'s tests.
pub const PUBLISH_OVERHEAD: usize = 512;

/// Number of cores this process may run on (at least 1).
pub fn default_shards() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

impl ServerConfig {
    /// The `--max-connections` in force: the configured one, or the default derived from
    /// the open-file limit now (unlimited when that cannot be read).
    pub fn connection_cap(&self) -> usize {
        self.max_connections.unwrap_or_else(|| {
            crate::admission::open_file_limit().map_or(0, crate::admission::default_max_connections)
        })
    }

    /// The message bucket's settings (`--publish-rate`, `--publish-burst`).
    pub fn message_rate(&self) -> crate::ratelimit::Rate {
        crate::ratelimit::Rate::new(self.publish_rate, u64::from(self.publish_burst))
    }

    /// The publish-bytes bucket's settings (`--publish-byte-rate`, `--publish-byte-burst`).
    pub fn byte_rate(&self) -> crate::ratelimit::Rate {
        crate::ratelimit::Rate::new(self.publish_byte_rate, self.publish_byte_burst as u64)
    }

    /// The most one publisher within its limits can put into a room member's outbox before
    /// the member reads a byte: a full byte burst of data plus a full message burst of
    /// envelopes. `None` when publishing is unlimited (no such bound).
    pub fn worst_publish_burst(&self) -> Option<usize> {
        (self.publish_rate > 0.0 && self.publish_byte_rate > 0.0).then(|| {
            self.publish_byte_burst
                .saturating_add((self.publish_burst as usize).saturating_mul(PUBLISH_OVERHEAD))
        })
    }

    /// Checks the relations between settings once, so the rest of the server can trust them.
    pub fn validate(&self) -> Result<(), String> {
        if self.shards == 0 || self.shards > 1024 {
            return Err(format!(
                "--shards must be between 1 and 1024, got {}",
                self.shards
            ));
        }
        if self.shard_queue == 0 || self.mixer_queue == 0 {
            return Err("queue capacities must be at least 1".into());
        }
        self.check_upper_bounds()?;
        if self.max_message < 125 {
            return Err("--max-message must be at least 125 bytes".into());
        }
        for (option, bytes) in [
            ("--shard-queue-bytes", self.shard_queue_bytes),
            ("--mixer-queue-bytes", self.mixer_queue_bytes),
        ] {
            if bytes / 4 < self.max_message {
                return Err(format!(
                    "{option} ({bytes}) must be at least 4 x --max-message ({})",
                    self.max_message
                ));
            }
        }
        if !(1..=128).contains(&self.ipv6_prefix) {
            return Err("--ipv6-prefix must be between 1 and 128 bits".into());
        }
        if self.max_header < 512 {
            return Err("--max-header must be at least 512 bytes".into());
        }
        if self.outbox_limit < 4096 {
            return Err("--outbox-limit must be at least 4096 bytes".into());
        }
        if self.write_budget < 1024 {
            return Err("--write-budget must be at least 1024 bytes".into());
        }
        if self
            .send_buffer
            .is_some_and(|b| !(4096..=64 * 1024 * 1024).contains(&b))
        {
            return Err("--send-buffer must be between 4096 bytes and 64 MiB".into());
        }
        if self.proxy_protocol && self.trusted_proxies.is_empty() {
            return Err("--proxy-protocol needs at least one --trusted-proxy".into());
        }
        if self.acceptor_rt_priority > 99 {
            return Err("--acceptor-rt-priority must be between 0 and 99".into());
        }
        if self.ping_interval.is_zero() || self.idle_timeout.is_zero() {
            return Err("--ping-interval and --idle-timeout must be positive".into());
        }
        if self.idle_timeout <= self.ping_interval {
            return Err(format!(
                "--idle-timeout ({:?}) must be longer than --ping-interval ({:?}), or clients \
                 would be closed before they could answer a ping",
                self.idle_timeout, self.ping_interval
            ));
        }
        if self.handshake_timeout.is_zero() {
            return Err("--handshake-timeout must be positive".into());
        }
        if self.linger > Duration::from_secs(1) {
            return Err("--linger must be at most 1s".into());
        }
        if self.max_topics_per_conn == 0 {
            return Err("--max-topics must be at least 1".into());
        }
        match self.ticker.pace {
            TickerPace::Interval(d) if d < Duration::from_millis(1) => {
                return Err("--interval must be at least 1ms (use --rate for more)".into());
            }
            TickerPace::Rate(r) if !(r > 0.0 && r <= 10_000_000.0) => {
                return Err("--rate must be between 0 and 10,000,000 per feed".into());
            }
            _ => {}
        }
        if self.ticker.payload_bytes > 1024 * 1024 {
            return Err("--payload-bytes must be at most 1 MiB".into());
        }
        if self.history > 1_000_000 {
            return Err("--history must be at most 1,000,000 messages per topic".into());
        }
        if let Some(b) = self.history_budget
            && !(bounds::HISTORY_BUDGET_MIN..=bounds::HISTORY_BUDGET_MAX).contains(&b)
        {
            return Err("--history-budget must be between 65536 bytes (64 KiB) and 1 TiB".into());
        }
        if self
            .metrics_listen
            .is_some_and(|m| m == self.listen && m.port() != 0)
        {
            return Err("--metrics-listen must differ from --listen".into());
        }
        if !(self.publish_rate >= 0.0 && self.publish_rate.is_finite()) {
            return Err("--publish-rate must be 0 (unlimited) or positive".into());
        }
        if self.publish_burst == 0 {
            return Err("--publish-burst must be at least 1".into());
        }
        if !(self.publish_byte_rate >= 0.0 && self.publish_byte_rate.is_finite()) {
            return Err("--publish-byte-rate must be 0 (unlimited) or positive".into());
        }
        self.check_publish_limits()?;
        if self.write_timeout < Duration::from_millis(100) {
            return Err("--write-timeout must be at least 100ms".into());
        }
        if self.auth_secret.as_ref().is_some_and(|s| s.0.len() < 16) {
            return Err("the auth secret must be at least 16 bytes".into());
        }
        if !(Duration::from_secs(1)..=Duration::from_secs(365 * 86400))
            .contains(&self.max_token_lifetime)
        {
            return Err("--max-token-lifetime must be between 1s and 365d".into());
        }
        if let Some(bus) = &self.redis {
            bus.validate()?;
        }
        if !self.telemetry_interval.is_zero()
            && !(Duration::from_millis(100)..=Duration::from_secs(3600))
                .contains(&self.telemetry_interval)
        {
            return Err("--telemetry-interval must be 0 (off) or between 100ms and 1h".into());
        }
        if self.ticker.symbols_per_feed == 0 {
            return Err("--symbols must be at least 1".into());
        }
        Ok(())
    }
}

/// The largest value each count option takes: far above any sane setting, low enough that
/// memory allocated up front (queues are allocated whole) or a thread per unit stays
/// bounded, so a typo is an error at start and not an abort.
pub mod bounds {
    /// Smallest `--history-budget` accepted, and the floor of the derived default's range.
    pub const HISTORY_BUDGET_MIN: u64 = 64 * 1024;
    /// Largest `--history-budget` accepted.
    pub const HISTORY_BUDGET_MAX: u64 = 1 << 40;
    /// `--providers`: ticker feeds, one thread each.
    pub const PROVIDERS: usize = 256;
    /// `--symbols`: symbols per feed.
    pub const SYMBOLS: usize = 10_000;
    /// `--shard-queue` and `--mixer-queue`, in messages (each queue is allocated whole).
    pub const QUEUE: usize = 1 << 20;
    /// `--shard-queue-bytes` and `--mixer-queue-bytes`.
    pub const QUEUE_BYTES: usize = 1 << 40;
    /// `--max-message`, in bytes.
    pub const MAX_MESSAGE: usize = 16 << 20;
    /// `--max-header`, in bytes.
    pub const MAX_HEADER: usize = 1 << 20;
    /// `--outbox-limit`, in bytes.
    pub const OUTBOX_LIMIT: usize = 1 << 30;
    /// `--write-budget`, in bytes.
    pub const WRITE_BUDGET: usize = 64 << 20;
    /// `--max-topics`: rooms one connection may hold.
    pub const MAX_TOPICS: usize = 10_000;
    /// `--deflate-min-bytes`.
    pub const DEFLATE_MIN_BYTES: usize = 16 << 20;
    /// `--presence-list-max`: members listed in a room's presence.
    pub const PRESENCE_LIST_MAX: usize = 100_000;
    /// `--publish-burst`, in messages.
    pub const PUBLISH_BURST: u32 = 1_000_000;
    /// `--publish-byte-burst`, in bytes.
    pub const PUBLISH_BYTE_BURST: usize = 1 << 30;
    /// `--max-connections` and `--max-connections-per-ip`.
    pub const CONNECTIONS: usize = 10_000_000;
}

impl ServerConfig {
    /// Every count option within its upper bound ([`bounds`]); the error names the option.
    fn check_upper_bounds(&self) -> Result<(), String> {
        let counts = [
            ("--providers", self.ticker.feeds, bounds::PROVIDERS),
            ("--symbols", self.ticker.symbols_per_feed, bounds::SYMBOLS),
            ("--shard-queue", self.shard_queue, bounds::QUEUE),
            (
                "--shard-queue-bytes",
                self.shard_queue_bytes,
                bounds::QUEUE_BYTES,
            ),
            (
                "--mixer-queue-bytes",
                self.mixer_queue_bytes,
                bounds::QUEUE_BYTES,
            ),
            ("--mixer-queue", self.mixer_queue, bounds::QUEUE),
            ("--max-message", self.max_message, bounds::MAX_MESSAGE),
            ("--max-header", self.max_header, bounds::MAX_HEADER),
            ("--outbox-limit", self.outbox_limit, bounds::OUTBOX_LIMIT),
            ("--write-budget", self.write_budget, bounds::WRITE_BUDGET),
            ("--max-topics", self.max_topics_per_conn, bounds::MAX_TOPICS),
            (
                "--deflate-min-bytes",
                self.deflate_min_bytes,
                bounds::DEFLATE_MIN_BYTES,
            ),
            (
                "--presence-list-max",
                self.presence_list_max,
                bounds::PRESENCE_LIST_MAX,
            ),
            (
                "--publish-burst",
                self.publish_burst as usize,
                bounds::PUBLISH_BURST as usize,
            ),
            (
                "--publish-byte-burst",
                self.publish_byte_burst,
                bounds::PUBLISH_BYTE_BURST,
            ),
            (
                "--max-connections",
                self.max_connections.unwrap_or(0),
                bounds::CONNECTIONS,
            ),
            (
                "--max-pending-per-ip",
                self.max_pending_per_ip,
                bounds::CONNECTIONS,
            ),
            (
                "--max-connections-per-ip",
                self.max_connections_per_ip,
                bounds::CONNECTIONS,
            ),
        ];
        match counts.into_iter().find(|(_, value, max)| value > max) {
            Some((option, value, max)) => {
                Err(format!("{option} must be at most {max}, got {value}"))
            }
            None => Ok(()),
        }
    }

    /// A publisher within its limits must not be able to overflow a room member that reads:
    /// its largest message must fit its byte burst, and its whole burst (data and envelopes)
    /// must fit one outbox.
    fn check_publish_limits(&self) -> Result<(), String> {
        // Limited or not, the largest message in its envelope must fit an empty outbox, or
        // every member of its room would drop it.
        if self.max_message.saturating_add(PUBLISH_OVERHEAD) > self.outbox_limit {
            return Err(format!(
                "--max-message ({}) plus a {}-byte envelope is more than --outbox-limit ({}): \
                 a message that large could never be queued for anyone",
                self.max_message, PUBLISH_OVERHEAD, self.outbox_limit
            ));
        }
        if self.worst_publish_burst().is_none() {
            return Ok(());
        }
        if self.publish_byte_burst < self.max_message {
            return Err(format!(
                "--publish-byte-burst ({}) must be at least --max-message ({}), or the largest \
                 message could never be published",
                self.publish_byte_burst, self.max_message
            ));
        }
        match self.worst_publish_burst() {
            Some(worst) if worst > self.outbox_limit => Err(format!(
                "--publish-byte-burst ({}) plus --publish-burst ({}) envelopes of {} bytes is \
                 {} bytes, more than --outbox-limit ({}): one publisher within its limits \
                 could overflow the outbox of a room member that reads",
                self.publish_byte_burst,
                self.publish_burst,
                PUBLISH_OVERHEAD,
                worst,
                self.outbox_limit
            )),
            _ => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_largest_message_fits_an_empty_outbox_even_when_publishing_is_unlimited() {
        let mut cfg = ServerConfig {
            publish_rate: 0.0,
            outbox_limit: 64 * 1024,
            ..ServerConfig::default()
        };
        cfg.max_message = cfg.outbox_limit;
        let err = cfg.validate().unwrap_err();
        assert!(err.contains("--max-message"), "{err}");
        cfg.max_message = cfg.outbox_limit - PUBLISH_OVERHEAD;
        cfg.validate().unwrap();
    }

    #[test]
    fn defaults_are_valid() {
        ServerConfig::default().validate().unwrap();
    }

    #[test]
    fn a_publisher_within_its_limits_fits_a_members_outbox() {
        let cfg = ServerConfig::default();
        let worst = cfg.worst_publish_burst().unwrap();
        assert!(
            worst <= cfg.outbox_limit / 2,
            "defaults keep a 2x margin: {worst}"
        );
        let too_big = ServerConfig {
            publish_byte_burst: 1024 * 1024,
            ..ServerConfig::default()
        };
        assert!(too_big.validate().unwrap_err().contains("--outbox-limit"));
        let too_small = ServerConfig {
            publish_byte_burst: 1024,
            ..ServerConfig::default()
        };
        assert!(too_small.validate().unwrap_err().contains("--max-message"));
        // Unlimited publishing (benchmarks) has no bound to check.
        let unlimited = ServerConfig {
            publish_rate: 0.0,
            publish_byte_burst: 1024 * 1024,
            ..ServerConfig::default()
        };
        unlimited.validate().unwrap();
    }

    #[test]
    fn idle_timeout_must_exceed_ping_interval() {
        let cfg = ServerConfig {
            ping_interval: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(10),
            ..ServerConfig::default()
        };
        assert!(cfg.validate().unwrap_err().contains("idle-timeout"));
    }

    #[test]
    fn send_buffer_is_unset_or_bounded() {
        let mut cfg = ServerConfig::default();
        for (bytes, ok) in [
            (None, true),
            (Some(1024), false),
            (Some(4096), true),
            (Some(1 << 30), false),
        ] {
            cfg.send_buffer = bytes;
            assert_eq!(cfg.validate().is_ok(), ok, "{bytes:?}");
        }
    }

    #[test]
    fn the_queues_hold_at_least_four_of_the_largest_messages() {
        let mut cfg = ServerConfig::default();
        cfg.shard_queue_bytes = 4 * cfg.max_message;
        assert!(cfg.validate().is_ok());
        cfg.shard_queue_bytes -= 1;
        let err = cfg.validate().unwrap_err();
        assert!(err.contains("--shard-queue-bytes"), "{err}");
        cfg.shard_queue_bytes += 1;
        cfg.mixer_queue_bytes = 4 * cfg.max_message - 1;
        let err = cfg.validate().unwrap_err();
        assert!(err.contains("--mixer-queue-bytes"), "{err}");
    }

    #[test]
    fn telemetry_interval_is_off_or_bounded() {
        let mut cfg = ServerConfig::default();
        for (interval, ok) in [(0, true), (50, false), (100, true), (3_600_000, true)] {
            cfg.telemetry_interval = Duration::from_millis(interval);
            assert_eq!(cfg.validate().is_ok(), ok, "{interval} ms");
        }
        cfg.telemetry_interval = Duration::from_secs(3601);
        assert!(cfg.validate().is_err());
    }

    #[test]
    fn every_count_has_an_upper_bound_named_in_its_error() {
        /// An option's name and a change that puts it past its bound.
        type Case = (&'static str, fn(&mut ServerConfig));
        let cases: [Case; 8] = [
            ("--providers", |c| c.ticker.feeds = 100_000),
            ("--shard-queue", |c| c.shard_queue = usize::MAX),
            ("--shard-queue-bytes", |c| c.shard_queue_bytes = usize::MAX),
            ("--mixer-queue-bytes", |c| {
                c.mixer_queue_bytes = bounds::QUEUE_BYTES + 1
            }),
            ("--mixer-queue", |c| c.mixer_queue = bounds::QUEUE + 1),
            ("--max-topics", |c| c.max_topics_per_conn = usize::MAX),
            ("--presence-list-max", |c| c.presence_list_max = usize::MAX),
            ("--max-connections-per-ip", |c| {
                c.max_connections_per_ip = usize::MAX
            }),
        ];
        for (option, set) in cases {
            let mut cfg = ServerConfig::default();
            set(&mut cfg);
            let err = cfg.validate().unwrap_err();
            assert!(
                err.contains(option) && err.contains("at most"),
                "{option}: {err}"
            );
        }
        let mut cfg = ServerConfig::default();
        cfg.ticker.feeds = bounds::PROVIDERS;
        cfg.validate().unwrap();
    }

    #[test]
    fn interval_floor_is_one_millisecond() {
        let mut cfg = ServerConfig::default();
        cfg.ticker.pace = TickerPace::Interval(Duration::from_micros(500));
        assert!(cfg.validate().is_err());
        cfg.ticker.pace = TickerPace::Interval(Duration::from_millis(1));
        cfg.validate().unwrap();
    }
}
