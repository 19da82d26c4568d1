//! The load generator's configuration: a plain struct with documented defaults, plus the
//! parsing of its two structured inputs (the `ws://` or `wss://` URL and the source-address
//! list).
//!
//! The load generator only ever targets loopback (127.0.0.0/8): both the URL and the source
//! addresses are checked here, once, so nothing below can aim it anywhere else.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

/// Most source addresses one run may spread over.
pub const MAX_SOURCE_IPS: usize = 256;
/// Most connections one run may open (the open-file limit caps it lower in practice).
pub const MAX_CONNECTIONS: usize = 1_000_000;

/// Where to connect: a loopback address and the request target of the upgrade.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// The server's address (always in 127.0.0.0/8).
    pub addr: SocketAddr,
    /// The `Host` header value, as written in the URL.
    pub host: String,
    /// Path and query of the upgrade request, e.g. `/ws?topics=ticks`.
    pub path: String,
    /// `wss://`: every connection speaks TLS (see [`super::tls`]).
    pub tls: bool,
}

impl Target {
    /// Parses `ws://HOST:PORT/PATH?QUERY` or `wss://...` where HOST is `localhost` or an
    /// address in 127.0.0.0/8 (port 80, or 443 for `wss://`, when absent).
    pub fn parse(url: &str) -> Result<Target, String> {
        let (rest, tls) = match (url.strip_prefix("ws://"), url.strip_prefix("wss://")) {
            (Some(rest), _) => (rest, false),
            (_, Some(rest)) => (rest, true),
            _ => return Err(format!("{url}: only ws:// and wss:// URLs are supported")),
        };
        let (authority, path) = match rest.find(['/', '?']) {
            Some(i) if rest.as_bytes()[i] == b'/' => (&rest[..i], rest[i..].to_string()),
            Some(i) => (&rest[..i], format!("/{}", &rest[i..])),
            None => (rest, "/".to_string()),
        };
        let (host, port) = match authority.rsplit_once(':') {
            Some((h, p)) => (
                h,
                p.parse::<u16>()
                    .map_err(|_| format!("{url}: bad port {p:?}"))?,
            ),
            None => (authority, if tls { 443 } else { 80 }),
        };
        let ip: Ipv4Addr = if host.eq_ignore_ascii_case("localhost") {
            Ipv4Addr::LOCALHOST
        } else {
            host.parse()
                .map_err(|_| format!("{url}: the host must be an IPv4 address or localhost"))?
        };
        if !ip.is_loopback() {
            return Err(format!(
                "{url}: the load generator only targets loopback (127.0.0.0/8)"
            ));
        }
        Ok(Target {
            addr: SocketAddr::new(IpAddr::V4(ip), port),
            host: authority.to_string(),
            path,
            tls,
        })
    }

    /// The URL's host without the port (`127.0.0.1`, `localhost`).
    pub fn hostname(&self) -> &str {
        self.host
            .rsplit_once(':')
            .map_or(self.host.as_str(), |(h, _)| h)
    }

    /// The first topic named in the URL's `topics=` parameter, if any.
    pub fn first_topic(&self) -> Option<String> {
        let (_, query) = self.path.split_once('?')?;
        form_urlencoded::parse(query.as_bytes())
            .find(|(k, _)| k == "topics" || k == "room")
            .and_then(|(_, v)| {
                v.split(',')
                    .map(str::trim)
                    .find(|t| !t.is_empty())
                    .map(String::from)
            })
    }

    /// Whether the URL asks for runs of messages as one message (`batch=1`).
    pub fn asks_batches(&self) -> bool {
        self.path.split_once('?').is_some_and(|(_, query)| {
            form_urlencoded::parse(query.as_bytes()).any(|(k, v)| k == "batch" && v == "1")
        })
    }
}

/// Parses `127.0.0.1-127.0.0.8` (an inclusive range) or `127.0.0.1,127.0.0.5` (a list, whose
/// items may be ranges). Every address must be loopback.
pub fn parse_source_ips(spec: &str) -> Result<Vec<Ipv4Addr>, String> {
    let mut out = Vec::new();
    for item in spec.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        let (a, b) = item.split_once('-').unwrap_or((item, item));
        let parse = |s: &str| {
            s.trim()
                .parse::<Ipv4Addr>()
                .map_err(|_| format!("bad source address {s:?}"))
        };
        let (a, b) = (u32::from(parse(a)?), u32::from(parse(b)?));
        if b < a {
            return Err(format!("empty source range {item:?}"));
        }
        if (b - a) as usize >= MAX_SOURCE_IPS || out.len() + ((b - a) as usize) >= MAX_SOURCE_IPS {
            return Err(format!("at most {MAX_SOURCE_IPS} source addresses"));
        }
        for n in a..=b {
            let ip = Ipv4Addr::from(n);
            if !ip.is_loopback() {
                return Err(format!("source address {ip} is not loopback (127.0.0.0/8)"));
            }
            out.push(ip);
        }
    }
    if out.is_empty() {
        return Err("no source address given".into());
    }
    Ok(out)
}

/// What `--rooms` replaces with a connection's room number.
pub const ROOM_MARK: &str = "{r}";

/// `text` for the connection in room `room` (`{r}` replaced), or as it is.
pub fn in_room(text: &str, room: Option<usize>) -> std::borrow::Cow<'_, str> {
    match room {
        Some(r) if text.contains(ROOM_MARK) => text.replace(ROOM_MARK, &r.to_string()).into(),
        _ => text.into(),
    }
}

/// Everything one run of `tickcast load` needs.
#[derive(Debug, Clone)]
pub struct LoadConfig {
    /// Where to connect.
    pub target: Target,
    /// Connections to open (`-n`). Each is opened once; failures are counted, not retried.
    pub connections: usize,
    /// Event-loop threads; connection `k` belongs to thread `k % threads`. Default: cores.
    pub threads: usize,
    /// New connections per second during the ramp. Default 2,000/s (from `--ramp`, `n/secs`).
    pub connect_rate: f64,
    /// Local addresses to bind before connecting, used round-robin; empty lets the kernel
    /// choose. Several addresses lift the ~28,000 ephemeral ports of one address pair.
    pub source_ips: Vec<Ipv4Addr>,
    /// Time after the ramp before measuring (steady state). Default 2 s.
    pub warmup: Duration,
    /// The measured window. Default 10 s.
    pub duration: Duration,
    /// Longest wait from connect to 101 before a connection counts as failed. Default 10 s.
    pub connect_timeout: Duration,
    /// Largest server message accepted; larger fails the connection. Default 16 MiB.
    pub max_message: usize,
    /// Connections (the first ones) that also publish. Default 0.
    pub publishers: usize,
    /// Publish operations per second per publisher.
    pub publish_rate: f64,
    /// Topic the publishers publish on (default: the URL's first topic, else `ticks`).
    pub publish_topic: String,
    /// Connections spread over this many rooms (0: all alike): connection k's URL and
    /// publish topic get `k % rooms` in place of `{r}`.
    pub rooms: usize,
    /// Measure publisher-to-subscriber latency from the `sent_us` publishers embed, also on
    /// connections that do not publish (e.g. subscribers on another node).
    pub track_publish_latency: bool,
    /// Server process to sample (CPU and RSS from /proc) at the phase boundaries.
    pub server_pid: Option<u32>,
    /// Read the server's drop counters from `/metrics` at the window's start and end.
    pub scrape_metrics: bool,
    /// Read the server's shard count from `/metrics` before connecting (for the row, when
    /// `--shards` is not given). Default off.
    pub learn_shards: bool,
    /// Show a progress bar on stderr.
    pub progress: bool,
    /// Offer permessage-deflate (as browsers do) and inflate compressed messages; a
    /// connection the server does not agree with fails (`deflate_declined`).
    pub deflate: bool,
    /// The PEM certificates a `wss://` server's chain must lead to (`--tls-ca`); required
    /// with `wss://`, refused without it. No system roots: only what the run trusts.
    pub tls_ca: Option<PathBuf>,
}

impl LoadConfig {
    /// A configuration for `connections` connections to `target` with the defaults.
    pub fn new(target: Target, connections: usize) -> Self {
        let publish_topic = target.first_topic().unwrap_or_else(|| "ticks".into());
        LoadConfig {
            target,
            connections,
            threads: crate::config::default_shards(),
            connect_rate: 2000.0,
            source_ips: Vec::new(),
            warmup: Duration::from_secs(2),
            duration: Duration::from_secs(10),
            connect_timeout: Duration::from_secs(10),
            max_message: 16 << 20,
            publishers: 0,
            publish_rate: 0.0,
            publish_topic,
            track_publish_latency: false,
            rooms: 0,
            server_pid: None,
            scrape_metrics: false,
            learn_shards: false,
            progress: false,
            deflate: false,
            tls_ca: None,
        }
    }

    /// Checks the settings once, so the run can trust them.
    pub fn validate(&self) -> Result<(), String> {
        if self.connections == 0 || self.connections > MAX_CONNECTIONS {
            return Err(format!("-n must be between 1 and {MAX_CONNECTIONS}"));
        }
        if self.threads == 0 || self.threads > 256 {
            return Err("--threads must be between 1 and 256".into());
        }
        if !(self.connect_rate > 0.0 && self.connect_rate <= 1e6) {
            return Err("the connect rate must be between 0 and 1,000,000/s".into());
        }
        if self.duration.is_zero() || self.duration > Duration::from_secs(24 * 3600) {
            return Err("--duration must be positive and at most 24h".into());
        }
        if self.warmup > Duration::from_secs(3600) {
            return Err("--warmup must be at most 1h".into());
        }
        if self.connect_timeout.is_zero() {
            return Err("--connect-timeout must be positive".into());
        }
        if self.max_message < 125 {
            return Err("--max-message must be at least 125 bytes".into());
        }
        if self.rooms > 0 && !self.target.path.contains(ROOM_MARK) {
            return Err(format!("--rooms needs `{ROOM_MARK}` in the URL"));
        }
        if self.publishers > self.connections {
            return Err("--publishers cannot exceed -n".into());
        }
        if self.publishers > 0 && !(self.publish_rate > 0.0 && self.publish_rate <= 1e6) {
            return Err("--publish-rate must be between 0 and 1,000,000/s per publisher".into());
        }
        match (self.target.tls, &self.tls_ca) {
            (true, None) => {
                return Err(
                    "a wss:// URL needs --tls-ca FILE: the PEM certificate(s) of the \
                            authority that signed the server's certificate"
                        .into(),
                );
            }
            (false, Some(_)) => return Err("--tls-ca is for wss:// URLs".into()),
            _ => {}
        }
        Ok(())
    }

    /// The time the ramp takes at the configured rate.
    pub fn ramp_time(&self) -> Duration {
        Duration::from_secs_f64(self.connections as f64 / self.connect_rate)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_parse_to_loopback_targets() {
        let t = Target::parse("ws://127.0.0.1:8080/ws?topics=ticks,news").unwrap();
        assert_eq!(t.addr, "127.0.0.1:8080".parse().unwrap());
        assert_eq!(t.path, "/ws?topics=ticks,news");
        assert_eq!(t.host, "127.0.0.1:8080");
        assert_eq!(t.first_topic().as_deref(), Some("ticks"));
        let t = Target::parse("ws://localhost:9000?topics=%2A").unwrap();
        assert_eq!(t.path, "/?topics=%2A");
        assert_eq!(t.first_topic().as_deref(), Some("*"));
        assert_eq!(Target::parse("ws://127.0.0.2").unwrap().addr.port(), 80);
        assert!(!t.tls);
    }

    #[test]
    fn wss_urls_turn_on_tls_and_need_a_ca() {
        let t = Target::parse("wss://127.0.0.1:8443/ws?topics=ticks").unwrap();
        assert!(t.tls);
        assert_eq!((t.addr.port(), t.hostname()), (8443, "127.0.0.1"));
        assert_eq!(t.host, "127.0.0.1:8443");
        let t = Target::parse("wss://localhost/ws").unwrap();
        assert_eq!((t.addr.port(), t.hostname()), (443, "localhost"));
        let mut c = LoadConfig::new(t, 1);
        let err = c.validate().unwrap_err();
        assert!(err.contains("--tls-ca"), "{err}");
        c.tls_ca = Some("ca.pem".into());
        c.validate().unwrap();
        let mut plain = LoadConfig::new(Target::parse("ws://127.0.0.1/ws").unwrap(), 1);
        plain.tls_ca = Some("ca.pem".into());
        assert!(plain.validate().is_err(), "--tls-ca without wss://");
    }

    #[test]
    fn non_loopback_and_other_schemes_are_refused() {
        for bad in [
            "ws://10.0.0.1:80/ws",
            "ws://example.com/ws",
            "wss://10.0.0.1/ws",
            "https://127.0.0.1/ws",
            "http://127.0.0.1/",
            "ws://127.0.0.1:99999/",
        ] {
            assert!(Target::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn source_ranges_and_lists() {
        let ips = parse_source_ips("127.0.0.1-127.0.0.4").unwrap();
        assert_eq!(ips.len(), 4);
        assert_eq!(ips[3], Ipv4Addr::new(127, 0, 0, 4));
        let ips = parse_source_ips("127.0.0.9, 127.0.1.1-127.0.1.2").unwrap();
        assert_eq!(ips.len(), 3);
        assert!(parse_source_ips("127.0.0.5-127.0.0.1").is_err());
        assert!(parse_source_ips("192.168.0.1").is_err());
        assert!(parse_source_ips("127.0.0.1-127.0.5.1").is_err());
        assert!(parse_source_ips("").is_err());
    }

    #[test]
    fn validation_bounds_the_run() {
        let t = Target::parse("ws://127.0.0.1:1/ws").unwrap();
        let mut c = LoadConfig::new(t, 10);
        c.validate().unwrap();
        c.publishers = 11;
        assert!(c.validate().is_err());
        c.publishers = 1;
        assert!(c.validate().is_err(), "a publisher needs a rate");
        c.publish_rate = 10.0;
        c.validate().unwrap();
        c.duration = Duration::ZERO;
        assert!(c.validate().is_err());
    }
}
