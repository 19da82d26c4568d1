//! Scenario `malformed_http`: connections that each send one bad HTTP request, one kind per
//! connection in turn (garbage, a 100 KB request line, POST, an unknown path, a broken or
//! old upgrade, a missing Host, a duplicated key, a body).
//!
//! For each kind the client must read the full status line with the expected status, not a
//! reset that discarded the answer: the server has to answer, shut its write side and let
//! the client's bytes drain (a lingering close) rather than close a socket with unread input.

use std::io::{Read, Write};
use std::time::{Duration, Instant};

use super::AbuseConfig;
use super::client::{self, Ending};
use super::drive::{Counter, Cx, Judged, Play, Reads, Seen};
use super::kinds::{self, KindResult, kinds_text, run_kinds};
use super::report::{Check, Raw};

/// Time allowed for the answer.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(3);
/// The RFC 6455 sample key.
const KEY: &str = "dGhlIHNhbXBsZSBub25jZQ==";
/// What the server counted of the requests.
const COUNTERS: &[Counter] = &[
    Counter::new(
        "server_handshake_failures",
        "tickcast_handshake_failures_total",
        &[],
    ),
    Counter::new("server_handshakes", "tickcast_handshakes_total", &[]),
];

/// The bad requests: name, bytes, expected status.
pub fn bad_requests(host: &str) -> Vec<(&'static str, Vec<u8>, u16)> {
    let upgrade = |version_line: &str, extra: &str| {
        format!(
            "GET /ws HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Key: {KEY}\r\n{version_line}{extra}\r\n"
        )
        .into_bytes()
    };
    let v13 = "Sec-WebSocket-Version: 13\r\n";
    let mut garbage = b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03".to_vec();
    garbage.extend_from_slice(&[0xa7; 64]);
    garbage.extend_from_slice(b"\r\n\r\n");
    let long_line = format!(
        "GET /{} HTTP/1.1\r\nHost: {host}\r\n\r\n",
        "a".repeat(100 * 1024)
    );
    let no_host = format!(
        "GET /ws HTTP/1.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: {KEY}\r\n{v13}\r\n"
    );
    let http10 = format!(
        "GET /ws HTTP/1.0\r\nHost: {host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: {KEY}\r\n{v13}\r\n"
    );
    let mut body = upgrade(v13, "Content-Length: 10\r\n");
    body.extend_from_slice(b"0123456789");
    vec![
        ("garbage", garbage, 400),
        ("request_line_100k", long_line.into_bytes(), 431),
        (
            "post",
            format!("POST /ws HTTP/1.1\r\nHost: {host}\r\nContent-Length: 0\r\n\r\n").into_bytes(),
            405,
        ),
        (
            "unknown_path",
            format!("GET /nope HTTP/1.1\r\nHost: {host}\r\n\r\n").into_bytes(),
            404,
        ),
        ("no_version", upgrade("", ""), 400),
        (
            "version_12",
            upgrade("Sec-WebSocket-Version: 12\r\n", ""),
            426,
        ),
        ("http_1_0_upgrade", http10.into_bytes(), 400),
        ("missing_host", no_host.into_bytes(), 400),
        (
            "duplicate_key",
            upgrade(v13, &format!("Sec-WebSocket-Key: {KEY}\r\n")),
            400,
        ),
        ("with_body", body, 400),
    ]
}

/// The status of a complete response head, `None` while incomplete or not HTTP.
pub fn status_of(head: &[u8]) -> Option<u16> {
    let mut headers = [httparse::EMPTY_HEADER; 32];
    let mut resp = httparse::Response::new(&mut headers);
    match resp.parse(head) {
        Ok(httparse::Status::Complete(_)) => resp.code,
        _ => None,
    }
}

/// Plays one request; returns `status_NNN` or how the connection ended without one.
fn attempt(cfg: &AbuseConfig, i: usize, bytes: &[u8]) -> String {
    let mut stream = match client::connect(cfg.target, cfg.source(i), ANSWER_TIMEOUT) {
        Ok(s) => s,
        Err(e) => return client::connect_failure(&e).to_string(),
    };
    let _ = stream.set_write_timeout(Some(ANSWER_TIMEOUT));
    // The server may answer (and stop reading) before the whole request is written.
    let _ = stream.write_all(bytes);
    let deadline = Instant::now() + ANSWER_TIMEOUT;
    let mut head = Vec::new();
    let mut buf = [0u8; 4096];
    let outcome = loop {
        if let Some(status) = status_of(&head) {
            break format!("status_{status}");
        }
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            break "timeout".into();
        }
        let _ = stream.set_read_timeout(Some(left));
        match stream.read(&mut buf) {
            Ok(0) if head.is_empty() => break "eof_no_answer".into(),
            Ok(0) => break "eof_partial_answer".into(),
            Ok(n) => head.extend_from_slice(&buf[..n]),
            Err(e) => match Ending::of_error(&e) {
                None => {}
                Some(Ending::Reset) if head.is_empty() => break "reset_no_answer".into(),
                Some(Ending::Reset) => break "reset_partial_answer".into(),
                Some(end) => break end.label(),
            },
        }
    };
    if outcome == "status_101" {
        client::abort(stream);
    } else {
        client::linger_close(stream, Duration::from_secs(1));
    }
    outcome
}

/// Scenario `malformed_http`: `total` connections, one bad request each.
pub struct MalformedHttp {
    total: usize,
}

impl MalformedHttp {
    /// The scenario as `cfg` sizes it.
    pub fn new(cfg: &AbuseConfig) -> MalformedHttp {
        MalformedHttp {
            total: cfg.count_or(100, 2_000),
        }
    }
}

impl Play for MalformedHttp {
    type Clients = ();
    type Outcome = Vec<KindResult>;

    fn expectation(&self) -> &'static str {
        "each bad request read back with its status: garbage 400, 100 KB request line 431, POST 405, unknown path 404, no version 400, version 12 426, HTTP/1.0 upgrade 400, no Host 400, duplicated key 400, a body 400 (100 %, no reset)"
    }

    fn reads(&self) -> Reads {
        Reads::scrape(COUNTERS)
    }

    /// Each attempt connects on its own.
    fn connect(&self, _: &Cx) -> Result<(), String> {
        Ok(())
    }

    fn run(&self, cx: &Cx, (): ()) -> Result<Vec<KindResult>, String> {
        let requests = bad_requests(&cx.cfg.host());
        let kinds: Vec<(&'static str, String)> = requests
            .iter()
            .map(|(name, _, status)| (*name, format!("status_{status}")))
            .collect();
        run_kinds(self.total, cx.cfg.concurrency * 2, &kinds, |k, i| {
            attempt(cx.cfg, i, &requests[k].1)
        })
    }

    fn judge(&self, results: Vec<KindResult>, _: &Seen) -> Judged {
        let attempted = kinds::attempted(&results);
        let right = kinds::right(&results);
        let resets = kinds::outcomes(&results, |k| k.starts_with("reset"));
        let text = kinds_text(&results);
        let checks = vec![Check::new(
            "status_read",
            right == attempted && attempted == self.total as u64,
            format!("{right} of {attempted} read the expected status: {text}"),
        )];
        let mut raw = Raw::default();
        raw.put("requests", attempted);
        raw.put("right", right);
        raw.put("reset", resets);
        raw.put("kinds", &results);
        Judged {
            summary: format!(
                "{right}/{attempted} got the expected status ({resets} reset): {text}"
            ),
            checks,
            raw,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_are_read_from_complete_heads_only() {
        assert_eq!(status_of(b"HTTP/1.1 431 Too Large\r\n\r\n"), Some(431));
        assert_eq!(
            status_of(b"HTTP/1.1 400 Bad Request\r\nConnection: close"),
            None
        );
        assert_eq!(status_of(b"\x00\x01garbage\r\n\r\n"), None);
    }

    #[test]
    fn every_kind_has_a_request() {
        let reqs = bad_requests("127.0.0.1:1");
        assert_eq!(reqs.len(), 10);
        let body = &reqs.iter().find(|r| r.0 == "with_body").unwrap().1;
        assert!(body.ends_with(b"\r\n\r\n0123456789"));
        let long = &reqs.iter().find(|r| r.0 == "request_line_100k").unwrap().1;
        assert!(long.len() > 100 * 1024);
        let dup = String::from_utf8(
            reqs.iter()
                .find(|r| r.0 == "duplicate_key")
                .unwrap()
                .1
                .clone(),
        )
        .unwrap();
        assert_eq!(dup.matches("Sec-WebSocket-Key").count(), 2);
    }
}
