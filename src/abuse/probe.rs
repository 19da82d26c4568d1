//! What a scenario reads of the server from outside: its `/metrics` page (a series that does
//! not exist is *absent*, never 0), its RSS and open descriptors from `/proc/PID`, and the
//! kernel's TCP memory from `/proc/net/sockstat` against `/proc/sys/net/ipv4/tcp_mem`.
//!
//! Every reading is optional: a scenario run without `--server-pid` still measures what it
//! can, and a check that needed the missing figure says it could not decide.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

/// Longest `/metrics` page read.
const MAX_PAGE: u64 = 8 << 20;
/// Time allowed for one scrape.
const SCRAPE_TIMEOUT: Duration = Duration::from_secs(3);
/// Bytes in one page of `/proc/net/sockstat`'s `mem` (4 KiB on every Linux this runs on).
pub const PAGE_BYTES: u64 = 4096;

/// One `/metrics` page.
#[derive(Debug, Clone, Default)]
pub struct Metrics {
    text: String,
}

impl Metrics {
    /// Wraps a page's text (for tests and for pages read elsewhere).
    pub fn from_text(text: String) -> Metrics {
        Metrics { text }
    }

    /// The page's body (the text after the HTTP head, or all of it when it has none).
    pub fn body(&self) -> &str {
        match self.text.split_once("\r\n\r\n") {
            Some((head, body)) if head.starts_with("HTTP/") => body,
            _ => &self.text,
        }
    }

    /// The number of series on the page: the body's lines that are neither empty nor
    /// comments (`# TYPE`, `# HELP`).
    pub fn series(&self) -> usize {
        self.body()
            .lines()
            .filter(|l| !l.trim().is_empty() && !l.starts_with('#'))
            .count()
    }

    /// The sum of every series named exactly `name` whose labels include all of `labels`;
    /// `None` when no series has that name at all (the metric does not exist on this server).
    pub fn sum(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        let mut found = false;
        let mut total = 0.0;
        for line in self.text.lines() {
            let Some(rest) = line.strip_prefix(name) else {
                continue;
            };
            let (series_labels, value) = if let Some(r) = rest.strip_prefix('{') {
                match r.rsplit_once('}') {
                    Some((l, v)) => (l, v),
                    None => continue,
                }
            } else if rest.starts_with(' ') {
                ("", rest)
            } else {
                continue;
            };
            found = true;
            let wanted = labels.iter().all(|(k, v)| {
                series_labels
                    .split(',')
                    .any(|l| l.trim() == format!("{k}=\"{v}\""))
            });
            if !wanted {
                continue;
            }
            // The value is the first field after the labels (a timestamp may follow).
            if let Some(v) = value
                .split_whitespace()
                .next()
                .and_then(|v| v.parse::<f64>().ok())
            {
                total += v;
            }
        }
        found.then_some(total)
    }
}

/// Reads `http://addr/metrics`.
pub fn scrape(addr: SocketAddr) -> Result<Metrics, String> {
    let mut s =
        TcpStream::connect_timeout(&addr, SCRAPE_TIMEOUT).map_err(|e| format!("scrape: {e}"))?;
    let _ = s.set_read_timeout(Some(SCRAPE_TIMEOUT));
    let _ = s.set_write_timeout(Some(SCRAPE_TIMEOUT));
    write!(
        s,
        "GET /metrics HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .map_err(|e| format!("scrape: {e}"))?;
    let mut body = String::new();
    s.take(MAX_PAGE)
        .read_to_string(&mut body)
        .map_err(|e| format!("scrape: {e}"))?;
    if !body.starts_with("HTTP/1.1 200") {
        return Err(format!(
            "scrape: {}",
            body.lines().next().unwrap_or("empty answer")
        ));
    }
    Ok(Metrics::from_text(body))
}

/// The value of a counter once it stops moving: scraped every 100 ms until two readings
/// agree (at most `limit`). Counters are updated by the threads that count, so a scrape
/// right after the traffic can still see an older value.
pub fn settled(
    addr: SocketAddr,
    name: &str,
    labels: &[(&str, &str)],
    limit: Duration,
) -> Result<Option<f64>, String> {
    let deadline = std::time::Instant::now() + limit;
    let mut last = scrape(addr)?.sum(name, labels);
    loop {
        std::thread::sleep(Duration::from_millis(100));
        let now = scrape(addr)?.sum(name, labels);
        if now == last || std::time::Instant::now() >= deadline {
            return Ok(now);
        }
        last = now;
    }
}

/// `after - before` of a counter; `None` when either side is absent.
pub fn delta(before: Option<f64>, after: Option<f64>) -> Option<f64> {
    Some(after? - before?)
}

/// A counter's value for a report: the number, or `"absent"`.
pub fn shown(v: Option<f64>) -> String {
    v.map_or_else(|| "absent".to_string(), |v| format!("{v:.0}"))
}

/// The server's resident memory, KiB (`VmRSS` of `/proc/PID/status`).
pub fn rss_kib(pid: u32) -> Option<u64> {
    crate::procstat::status(crate::procstat::Process::Pid(pid))?
        .rss_bytes
        .map(|b| b / 1024)
}

/// The server's open file descriptors (entries of `/proc/PID/fd`).
pub fn fd_count(pid: u32) -> Option<u64> {
    Some(std::fs::read_dir(format!("/proc/{pid}/fd")).ok()?.count() as u64)
}

/// The TCP line of `/proc/net/sockstat`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SockStat {
    /// Sockets in use.
    pub inuse: u64,
    /// Sockets closed by their process but still sending (orphans).
    pub orphan: u64,
    /// Sockets in TIME_WAIT.
    pub tw: u64,
    /// Kernel memory of all TCP sockets, in pages.
    pub mem_pages: u64,
}

impl SockStat {
    /// The TCP memory in MiB.
    pub fn mem_mib(&self) -> f64 {
        self.mem_pages as f64 * PAGE_BYTES as f64 / (1 << 20) as f64
    }
}

/// Parses `/proc/net/sockstat`'s `TCP: inuse 5 orphan 0 tw 2 alloc 7 mem 1` line.
pub fn parse_sockstat(text: &str) -> Option<SockStat> {
    let line = text.lines().find_map(|l| l.strip_prefix("TCP:"))?;
    let fields: Vec<&str> = line.split_whitespace().collect();
    let get = |name: &str| {
        fields
            .chunks(2)
            .find(|c| c.len() == 2 && c[0] == name)
            .and_then(|c| c[1].parse::<u64>().ok())
    };
    Some(SockStat {
        inuse: get("inuse")?,
        orphan: get("orphan").unwrap_or(0),
        tw: get("tw").unwrap_or(0),
        mem_pages: get("mem")?,
    })
}

/// Reads `/proc/net/sockstat`.
pub fn sockstat() -> Option<SockStat> {
    parse_sockstat(&std::fs::read_to_string("/proc/net/sockstat").ok()?)
}

/// The host's TCP memory thresholds in pages: (min, pressure, max).
pub fn parse_tcp_mem(text: &str) -> Option<(u64, u64, u64)> {
    let mut it = text.split_whitespace().map(|v| v.parse::<u64>().ok());
    Some((it.next()??, it.next()??, it.next()??))
}

/// Reads `/proc/sys/net/ipv4/tcp_mem`.
pub fn tcp_mem() -> Option<(u64, u64, u64)> {
    parse_tcp_mem(&std::fs::read_to_string("/proc/sys/net/ipv4/tcp_mem").ok()?)
}

#[cfg(test)]
mod tests {
    use super::*;

    const PAGE: &str = "HTTP/1.1 200 OK\r\n\r\n\
        # TYPE tickcast_drops_total counter\n\
        tickcast_drops_total{shard=\"0\",reason=\"outbox_full\"} 5\n\
        tickcast_drops_total{shard=\"1\",reason=\"outbox_full\"} 7\n\
        tickcast_drops_total{shard=\"0\",reason=\"shard_queue_full\"} 0\n\
        tickcast_drops_total_extra 99\n\
        tickcast_closes_total{code=\"1001\"} 3\n\
        tickcast_messages_published_total{topic=\"room.a\"} 12\n\
        tickcast_accepted_total 41\n";

    #[test]
    fn metrics_sum_by_labels_and_absent_is_not_zero() {
        let m = Metrics::from_text(PAGE.to_string());
        assert_eq!(m.sum("tickcast_drops_total", &[]), Some(12.0));
        assert_eq!(
            m.sum("tickcast_drops_total", &[("reason", "outbox_full")]),
            Some(12.0)
        );
        assert_eq!(
            m.sum(
                "tickcast_drops_total",
                &[("reason", "outbox_full"), ("shard", "1")]
            ),
            Some(7.0)
        );
        assert_eq!(
            m.sum("tickcast_drops_total", &[("reason", "slow_consumer")]),
            Some(0.0),
            "the metric exists, that series does not: 0"
        );
        assert_eq!(m.sum("tickcast_accepted_total", &[]), Some(41.0));
        assert_eq!(m.sum("tickcast_write_timeouts_total", &[]), None);
        assert_eq!(
            m.sum("tickcast_messages_published_total", &[("topic", "room.a")]),
            Some(12.0)
        );
        assert_eq!(
            m.series(),
            PAGE.lines().filter(|l| l.starts_with("tickcast")).count()
        );
        assert!(m.body().starts_with("# TYPE"), "{}", m.body());
        assert_eq!(delta(Some(3.0), Some(5.0)), Some(2.0));
        assert_eq!(delta(None, Some(5.0)), None);
        assert_eq!(shown(None), "absent");
        assert_eq!(shown(Some(4.0)), "4");
    }

    #[test]
    fn sockstat_and_tcp_mem_parse() {
        let text = "sockets: used 216\n\
                    TCP: inuse 9 orphan 1 tw 3 alloc 12 mem 2050\n\
                    UDP: inuse 0 mem 0\n";
        let s = parse_sockstat(text).unwrap();
        assert_eq!(
            s,
            SockStat {
                inuse: 9,
                orphan: 1,
                tw: 3,
                mem_pages: 2050
            }
        );
        assert!((s.mem_mib() - 2050.0 * 4096.0 / 1048576.0).abs() < 1e-9);
        assert_eq!(parse_sockstat("UDP: inuse 0 mem 0\n"), None);
        assert_eq!(
            parse_tcp_mem("287892\t383858\t575784\n"),
            Some((287892, 383858, 575784))
        );
        assert_eq!(parse_tcp_mem("1 2"), None);
    }

    #[test]
    fn this_process_is_readable() {
        assert!(rss_kib(std::process::id()).unwrap() > 0);
        assert!(fd_count(std::process::id()).unwrap() > 0);
        assert!(sockstat().is_some());
    }
}
