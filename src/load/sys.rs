//! What the load generator reads from the operating system: a server process's CPU time and
//! RSS from `/proc`, its own CPU time (`getrusage`), the load average (all three read by
//! [`crate::procstat`], in the units the CSV records), and the server's drop counters and shard
//! count from its `/metrics` page (over TLS too, for a `wss://` server).
//!
//! All of it is optional: a missing file or a server without `/metrics` gives `None`, and the
//! CSV cell stays empty.

use std::collections::BTreeMap;
use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use super::tls::TlsClient;
use crate::procstat::{self, Process, Usage};

/// Longest `/metrics` page read.
const MAX_METRICS_PAGE: u64 = 4 << 20;
/// Time allowed for one scrape.
const SCRAPE_TIMEOUT: Duration = Duration::from_secs(2);

/// A process's CPU time and resident memory at one moment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProcSample {
    /// utime + stime of every thread, ns (resolution: one clock tick, usually 10 ms).
    pub cpu_ns: u64,
    /// VmRSS, KiB.
    pub rss_kib: u64,
}

/// Samples process `pid` from `/proc/PID/stat` and `/proc/PID/status`; `None` when either is
/// unreadable.
pub fn sample_process(pid: u32) -> Option<ProcSample> {
    let process = Process::Pid(pid);
    let cpu = procstat::stat_cpu_time(process)?;
    let rss_bytes = procstat::status(process)?.rss_bytes?;
    Some(ProcSample {
        cpu_ns: cpu.as_nanos() as u64,
        rss_kib: rss_bytes / 1024,
    })
}

/// CPU time used by this whole process so far, ns (0 when unreadable).
pub fn process_cpu_ns() -> u64 {
    cpu_ns(Usage::Process)
}

/// CPU time used by the calling thread so far, ns (0 when unreadable).
pub fn thread_cpu_ns() -> u64 {
    cpu_ns(Usage::Thread)
}

fn cpu_ns(who: Usage) -> u64 {
    procstat::cpu_time(who).map_or(0, |t| t.as_nanos() as u64)
}

/// The 1-minute load average (0 when unreadable).
pub fn loadavg_1m() -> f64 {
    procstat::loadavg_1m().unwrap_or(0.0)
}

/// What the load generator reads from a tickcast server's `/metrics`.
#[derive(Debug, Clone, Default)]
pub struct ServerScrape {
    /// `tickcast_drops_total` summed by reason.
    pub drops: BTreeMap<String, u64>,
    /// `tickcast_handshake_latency_p99_seconds` in µs: the server's own part of the
    /// handshakes so far (accept -> 101 queued).
    pub handshake_p99_us: Option<u64>,
    /// Shards the page has series for (every shard's drop counters exist from the first
    /// scrape).
    pub shards: Option<u32>,
}

/// Reads `http://addr/metrics` (`https://` with `tls`). `None` when the server does not
/// answer with tickcast metrics.
pub fn scrape_server(addr: SocketAddr, tls: Option<&TlsClient>) -> Option<ServerScrape> {
    let page = http_get(addr, "/metrics", tls).ok()?;
    page.contains("tickcast_").then(|| ServerScrape {
        drops: parse_drops(&page),
        handshake_p99_us: parse_gauge(&page, "tickcast_handshake_latency_p99_seconds")
            .map(|s| (s * 1e6).round() as u64),
        shards: parse_shards(&page),
    })
}

/// The number of distinct `shard` labels of `tickcast_drops_total`; `None` when there is none.
fn parse_shards(page: &str) -> Option<u32> {
    let shards: std::collections::BTreeSet<&str> = page
        .lines()
        .filter_map(|line| line.strip_prefix("tickcast_drops_total{"))
        .filter_map(|rest| rest.split_once('}').map(|(labels, _)| labels))
        .filter_map(|labels| {
            labels
                .split(',')
                .find_map(|l| l.trim().strip_prefix("shard=\""))
                .and_then(|v| v.strip_suffix('"'))
        })
        .collect();
    u32::try_from(shards.len()).ok().filter(|&n| n > 0)
}

/// The value of an unlabelled gauge line `name value`.
fn parse_gauge(page: &str, name: &str) -> Option<f64> {
    page.lines().find_map(|line| {
        let value = line.strip_prefix(name)?.strip_prefix(' ')?;
        value.trim().parse::<f64>().ok().filter(|v| v.is_finite())
    })
}

fn http_get(addr: SocketAddr, path: &str, tls: Option<&TlsClient>) -> io::Result<String> {
    let s = TcpStream::connect_timeout(&addr, SCRAPE_TIMEOUT)?;
    s.set_read_timeout(Some(SCRAPE_TIMEOUT))?;
    s.set_write_timeout(Some(SCRAPE_TIMEOUT))?;
    match tls {
        None => get_over(s, addr, path),
        Some(tls) => get_over(
            super::tls::blocking_stream(tls, s).map_err(io::Error::other)?,
            addr,
            path,
        ),
    }
}

/// Sends the request and reads the answer until the server closes. A TLS server that
/// closes without close_notify ends the read with an error; what came before it counts.
fn get_over(mut s: impl Read + Write, addr: SocketAddr, path: &str) -> io::Result<String> {
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )?;
    s.flush()?;
    let mut body = Vec::new();
    match s.take(MAX_METRICS_PAGE).read_to_end(&mut body) {
        Ok(_) => {}
        Err(e) if e.kind() == io::ErrorKind::UnexpectedEof && !body.is_empty() => {}
        Err(e) => return Err(e),
    }
    String::from_utf8(body).map_err(io::Error::other)
}

/// Sums `tickcast_drops_total{...reason="R"...} N` lines by reason.
fn parse_drops(page: &str) -> BTreeMap<String, u64> {
    let mut out = BTreeMap::new();
    for line in page.lines() {
        let Some(rest) = line.strip_prefix("tickcast_drops_total{") else {
            continue;
        };
        let Some((labels, value)) = rest.rsplit_once('}') else {
            continue;
        };
        let Some(reason) = labels
            .split(',')
            .find_map(|l| l.trim().strip_prefix("reason=\""))
            .and_then(|r| r.strip_suffix('"'))
        else {
            continue;
        };
        // Counters render as integers; be lenient with a float rendering.
        let Some(n) = value.trim().parse::<f64>().ok().filter(|n| *n >= 0.0) else {
            continue;
        };
        *out.entry(reason.to_string()).or_default() += n as u64;
    }
    out
}

/// `after - before` per key (counters only grow; a restart would show as 0).
pub fn diff_counts(
    before: &BTreeMap<String, u64>,
    after: &BTreeMap<String, u64>,
) -> BTreeMap<String, u64> {
    after
        .iter()
        .map(|(k, v)| {
            (
                k.clone(),
                v.saturating_sub(before.get(k).copied().unwrap_or(0)),
            )
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_process_can_be_sampled() {
        let s = sample_process(std::process::id()).unwrap();
        assert!(s.rss_kib > 0);
        assert!(s.rss_kib < 1 << 30, "under a TiB: {} KiB", s.rss_kib);
        let spin: u64 = (0..2_000_000u64).fold(0, |a, b| a ^ b.wrapping_mul(31));
        assert!(spin != 1 || process_cpu_ns() > 0);
        assert!(process_cpu_ns() > 0);
    }

    #[test]
    fn drops_are_summed_by_reason() {
        let page = "# HELP tickcast_drops_total Broadcast frames dropped.\n\
                    tickcast_drops_total{shard=\"0\",reason=\"outbox_full\"} 5\n\
                    tickcast_drops_total{shard=\"1\",reason=\"outbox_full\"} 7\n\
                    tickcast_drops_total{shard=\"0\",reason=\"shard_queue_full\"} 0\n\
                    tickcast_delivered_total{shard=\"0\"} 99\n";
        let d = parse_drops(page);
        assert_eq!(d["outbox_full"], 12);
        assert_eq!(d["shard_queue_full"], 0);
        let mut before = BTreeMap::new();
        before.insert("outbox_full".to_string(), 2);
        assert_eq!(diff_counts(&before, &d)["outbox_full"], 10);
        assert_eq!(parse_shards(page), Some(2));
        assert_eq!(
            parse_shards("tickcast_delivered_total{shard=\"0\"} 99\n"),
            None
        );
    }

    #[test]
    fn gauges_are_read_by_exact_name() {
        let page = "# TYPE tickcast_handshake_latency_p99_seconds gauge\n\
                    tickcast_handshake_latency_p999_seconds 0.5\n\
                    tickcast_handshake_latency_p99_seconds 0.001327\n";
        let v = parse_gauge(page, "tickcast_handshake_latency_p99_seconds").unwrap();
        assert!((v - 0.001327).abs() < 1e-12);
        assert_eq!(parse_gauge(page, "tickcast_missing_seconds"), None);
    }
}
