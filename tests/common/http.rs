//! Raw HTTP requests and the `/metrics` reader: one scrape parsed into samples with labels.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use super::{READ_TIMEOUT, WAIT_LIMIT, WS_KEY};

/// Sends a raw HTTP request and returns the whole response text (until the server closes
/// or the read timeout passes).
pub fn raw_http(addr: SocketAddr, request: &[u8]) -> String {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(READ_TIMEOUT)).unwrap();
    s.write_all(request).unwrap();
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match s.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => out.extend_from_slice(&buf[..n]),
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The status code of an HTTP response text (0 if there is none).
pub fn status_of(resp: &str) -> u16 {
    resp.split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0)
}

/// GET `path` and return (status, body).
pub fn http_get(addr: SocketAddr, path: &str) -> (u16, String) {
    let (status, _, body) = http_get_full(addr, path);
    (status, body)
}

/// GET `path` and return (status, head, body).
pub fn http_get_full(addr: SocketAddr, path: &str) -> (u16, String, String) {
    let resp = raw_http(
        addr,
        format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").as_bytes(),
    );
    let (head, body) = resp.split_once("\r\n\r\n").unwrap_or((&resp, ""));
    (status_of(&resp), head.to_string(), body.to_string())
}

/// An upgrade request for `path`; `extra` holds the WebSocket headers under test.
pub fn upgrade_request(path: &str, extra: &str) -> String {
    format!(
        "GET {path} HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n{extra}\r\n"
    )
}

// ----- /metrics -----
/// One scrape of `/metrics`: samples by name, each with its labels.
#[derive(Debug, Clone)]
pub struct Scrape {
    pub text: String,
    samples: Vec<(String, BTreeMap<String, String>, f64)>,
}

impl Scrape {
    /// Sum of the samples named `name` whose labels include every `(key, value)` of `labels`.
    pub fn sum(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        self.samples
            .iter()
            .filter(|(n, l, _)| {
                n == name
                    && labels
                        .iter()
                        .all(|(k, v)| l.get(*k).map(String::as_str) == Some(*v))
            })
            .map(|(_, _, v)| v)
            .sum()
    }

    /// Whether a `# TYPE` line declares family `name`.
    pub fn has_family(&self, name: &str) -> bool {
        self.text.lines().any(|l| {
            l.strip_prefix("# TYPE ")
                .is_some_and(|r| r.split(' ').next() == Some(name))
        })
    }
}

/// Parses Prometheus/OpenMetrics text (the subset this server writes).
pub fn parse_metrics(text: &str) -> Scrape {
    let mut samples = Vec::new();
    for line in text
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
    {
        let (series, value) = line.rsplit_once(' ').expect("sample line");
        let value: f64 = value.parse().expect("sample value");
        let (name, labels) = match series.split_once('{') {
            Some((name, rest)) => {
                let inner = rest.strip_suffix('}').expect("closing brace");
                let labels = inner
                    .split(',')
                    .filter(|kv| !kv.is_empty())
                    .map(|kv| {
                        let (k, v) = kv.split_once('=').expect("label");
                        (k.to_string(), v.trim_matches('"').to_string())
                    })
                    .collect();
                (name.to_string(), labels)
            }
            None => (series.to_string(), BTreeMap::new()),
        };
        samples.push((name, labels, value));
    }
    Scrape {
        text: text.to_string(),
        samples,
    }
}

/// Scrapes `/metrics` over HTTP.
pub fn scrape(addr: SocketAddr) -> Scrape {
    let (status, body) = http_get(addr, "/metrics");
    assert_eq!(status, 200, "/metrics answered {status}");
    parse_metrics(&body)
}

/// Shortcut: the sum of metric `name` with `labels` in a fresh scrape.
pub fn metric(addr: SocketAddr, name: &str, labels: &[(&str, &str)]) -> f64 {
    scrape(addr).sum(name, labels)
}

/// Waits (bounded by [`WAIT_LIMIT`]) until metric `name{labels}` is at least `at_least`.
///
/// The only meaning of this wait is "at least". For any other condition (a gauge back to 0,
/// an exact value) spell it out with `wait_for`, e.g.
/// `wait_for("no subscriber", || metric(addr, name, labels) == 0.0)`. A count that must end
/// at an exact value is best waited for with this and then asserted with `assert_eq!`, so
/// that an overshoot fails with the value rather than as a timeout.
pub fn wait_metric(addr: SocketAddr, name: &str, labels: &[(&str, &str)], at_least: f64) {
    assert!(
        at_least > 0.0,
        "waiting for {name}{labels:?} >= {at_least} would wait for nothing: use wait_for"
    );
    let deadline = Instant::now() + WAIT_LIMIT;
    loop {
        let got = metric(addr, name, labels);
        if got >= at_least {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "gave up waiting for {name}{labels:?} >= {at_least}: the last scrape had {got}"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// The status an upgrade of `path` (with `extra_headers`) is answered with; only the head is
/// read, as an upgraded connection stays open.
pub fn upgrade_status(addr: SocketAddr, path: &str, extra_headers: &str) -> u16 {
    let request = upgrade_request(
        path,
        &format!("Sec-WebSocket-Key: {WS_KEY}\r\nSec-WebSocket-Version: 13\r\n{extra_headers}"),
    );
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(READ_TIMEOUT)).unwrap();
    s.write_all(request.as_bytes()).unwrap();
    // Only the response head matters; an upgraded connection stays open, so stop there.
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") && head.len() < 16 * 1024 {
        match s.read(&mut byte) {
            Ok(1) => head.push(byte[0]),
            _ => break,
        }
    }
    status_of(&String::from_utf8_lossy(&head))
}
