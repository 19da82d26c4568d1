//! Helpers shared by the integration tests: an in-process server on 127.0.0.1:0, real
//! tungstenite clients, a raw WebSocket client that writes frames by hand over a `TcpStream`,
//! raw HTTP, a `/metrics` reader and a "healthy client" that checks it keeps receiving.
//!
//! Every wait here is bounded (read timeouts, [`wait_for`]); none is a speed threshold.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::Value;
use tickcast::config::{ServerConfig, TickerPace};
use tickcast::server::{RunningServer, Server};
use tungstenite::{Message, WebSocket};

pub type Client = WebSocket<TcpStream>;

/// How long any single read in a test may block before the test fails. Generous: the suite
/// runs on a shared 2-core machine.
pub const READ_TIMEOUT: Duration = Duration::from_secs(15);

/// Bound on every "until" loop of the tests.
pub const WAIT_LIMIT: Duration = Duration::from_secs(30);

/// A `Sec-WebSocket-Key` for hand-made handshakes (the RFC 6455 example).
pub const WS_KEY: &str = "dGhlIHNhbXBsZSBub25jZQ==";

/// A config for tests: port 0, no pinning, one ticker feed every 10 ms, short drain and
/// close timeouts so shutdown is quick.
pub fn test_config(shards: usize) -> ServerConfig {
    let mut cfg = ServerConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        shards,
        pin: false,
        drain_timeout: Duration::from_secs(2),
        close_timeout: Duration::from_secs(2),
        ..ServerConfig::default()
    };
    cfg.ticker.feeds = 1;
    cfg.ticker.pace = TickerPace::Interval(Duration::from_millis(10));
    cfg
}

/// The same, with the ticker off: only what the test publishes is broadcast.
pub fn quiet_config(shards: usize) -> ServerConfig {
    let mut cfg = test_config(shards);
    cfg.ticker.feeds = 0;
    cfg
}

pub fn start(cfg: ServerConfig) -> RunningServer {
    Server::bind(cfg).expect("bind").start().expect("start")
}

/// Microseconds since the Unix epoch, by the test's clock.
pub fn now_micros() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_micros() as u64
}

/// Polls `cond` every 10 ms until it holds; fails the test after [`WAIT_LIMIT`].
pub fn wait_for(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + WAIT_LIMIT;
    while !cond() {
        assert!(Instant::now() < deadline, "gave up waiting for {what}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

// ---------------------------------------------------------------------------------------------
// tungstenite clients

/// Connects a WebSocket client to `path` (e.g. `/ws?topics=ticks`), with a read timeout.
pub fn connect(addr: SocketAddr, path: &str) -> Client {
    try_connect(addr, path).unwrap_or_else(|e| panic!("connect {path}: {e}"))
}

pub fn try_connect(addr: SocketAddr, path: &str) -> Result<Client, String> {
    let stream = TcpStream::connect(addr).map_err(|e| e.to_string())?;
    stream.set_read_timeout(Some(READ_TIMEOUT)).unwrap();
    let url = format!("ws://{addr}{path}");
    let (ws, _resp) =
        tungstenite::client::client(url.as_str(), stream).map_err(|e| e.to_string())?;
    Ok(ws)
}

/// Connects to `/ws?topics=...` and reads the welcome; returns the client and its shard.
pub fn connect_stream(addr: SocketAddr, topics: &str) -> (Client, u64) {
    let path = if topics.is_empty() {
        "/ws".to_string()
    } else {
        format!("/ws?topics={topics}")
    };
    let mut ws = connect(addr, &path);
    let welcome = next_json(&mut ws);
    assert_eq!(welcome["type"], "welcome", "{welcome}");
    let shard = welcome["shard"].as_u64().expect("welcome names its shard");
    (ws, shard)
}

/// Reads the next text message as JSON (skipping pings/pongs).
pub fn next_json(ws: &mut Client) -> Value {
    loop {
        match ws.read().expect("read") {
            Message::Text(t) => return serde_json::from_str(&t).expect("json"),
            Message::Binary(_) => panic!("unexpected binary message"),
            Message::Close(c) => panic!("unexpected close: {c:?}"),
            _ => continue,
        }
    }
}

/// Reads messages until one with `"topic"` and `"seq"` arrives (skips welcome/acks).
pub fn next_data(ws: &mut Client) -> Value {
    loop {
        let v = next_json(ws);
        if v.get("topic").is_some() && v.get("seq").is_some() {
            return v;
        }
    }
}

/// Reads until a close frame arrives; returns its code (None if the stream ended without one
/// or nothing came within `limit`).
pub fn read_until_close(ws: &mut Client, limit: Duration) -> Option<u16> {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        match ws.read() {
            Ok(Message::Close(Some(frame))) => return Some(frame.code.into()),
            Ok(Message::Close(None)) => return Some(1005),
            Ok(_) => continue,
            Err(_) => return None,
        }
    }
    None
}

/// Closes a client politely and waits (bounded) for the server's close reply.
pub fn close_client(mut ws: Client) {
    let _ = ws.close(None);
    let deadline = Instant::now() + READ_TIMEOUT;
    while Instant::now() < deadline {
        if ws.read().is_err() {
            break;
        }
    }
}

// ---------------------------------------------------------------------------------------------
// A healthy client running alongside a test

/// What a healthy client saw, checked by [`Healthy::finish`].
#[derive(Debug, Default)]
struct HealthyLog {
    /// `(previous, next)` pairs where `seq` did not go up by exactly one.
    gaps: Vec<(u64, u64)>,
    /// Why the client stopped early, if it did.
    error: Option<String>,
}

/// A `/ws?topics=ticks` client reading on its own thread for the whole test, recording any
/// seq gap or error. Meant for a server started with [`test_config`] (ticks every 10 ms).
pub struct Healthy {
    stop: Arc<AtomicBool>,
    received: Arc<AtomicU64>,
    thread: JoinHandle<HealthyLog>,
}

impl Healthy {
    /// Connects, reads the welcome and the first tick, then keeps reading in the background.
    pub fn start(addr: SocketAddr) -> Healthy {
        Healthy::start_path(addr, "/ws?topics=ticks")
    }

    /// The same on another path (e.g. with a token), which must stream `ticks` only.
    pub fn start_path(addr: SocketAddr, path: &str) -> Healthy {
        let mut ws = connect(addr, path);
        assert_eq!(next_json(&mut ws)["type"], "welcome");
        ws.get_mut()
            .set_read_timeout(Some(Duration::from_millis(100)))
            .unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let received = Arc::new(AtomicU64::new(0));
        let thread = {
            let (stop, received) = (stop.clone(), received.clone());
            std::thread::spawn(move || healthy_loop(ws, &stop, &received))
        };
        let h = Healthy {
            stop,
            received,
            thread,
        };
        h.wait_for_more(0);
        h
    }

    /// Ticks received so far.
    pub fn received(&self) -> u64 {
        self.received.load(Ordering::SeqCst)
    }

    /// Waits (bounded) until more than `than` ticks were received.
    pub fn wait_for_more(&self, than: u64) {
        wait_for("the healthy client to receive more ticks", || {
            self.received() > than || self.thread.is_finished()
        });
        assert!(
            self.received() > than,
            "the healthy client stopped receiving"
        );
    }

    /// Checks the client is still receiving, stops it, and asserts it saw no gap and no
    /// error. Returns how many ticks it received.
    pub fn finish(self) -> u64 {
        self.wait_for_more(self.received());
        self.stop.store(true, Ordering::SeqCst);
        let log = self.thread.join().expect("healthy client thread");
        assert_eq!(log.error, None, "the healthy client failed");
        assert!(
            log.gaps.is_empty(),
            "healthy client saw gaps: {:?}",
            log.gaps
        );
        self.received.load(Ordering::SeqCst)
    }
}

fn healthy_loop(mut ws: Client, stop: &AtomicBool, received: &AtomicU64) -> HealthyLog {
    let mut log = HealthyLog::default();
    let mut last: Option<u64> = None;
    let mut idle_since = Instant::now();
    while !stop.load(Ordering::SeqCst) {
        match ws.read() {
            Ok(Message::Text(t)) => {
                idle_since = Instant::now();
                let v: Value = match serde_json::from_str(&t) {
                    Ok(v) => v,
                    Err(e) => {
                        log.error = Some(format!("not JSON: {e}"));
                        break;
                    }
                };
                let Some(seq) = v["seq"].as_u64() else {
                    continue;
                };
                if let Some(prev) = last
                    && seq != prev + 1
                {
                    log.gaps.push((prev, seq));
                }
                last = Some(seq);
                received.fetch_add(1, Ordering::SeqCst);
            }
            Ok(Message::Close(c)) => {
                log.error = Some(format!("closed by the server: {c:?}"));
                break;
            }
            Ok(_) => {}
            Err(tungstenite::Error::Io(e))
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                if idle_since.elapsed() > READ_TIMEOUT {
                    log.error = Some("no tick for the whole read timeout".into());
                    break;
                }
            }
            Err(e) => {
                log.error = Some(format!("read failed: {e}"));
                break;
            }
        }
    }
    if log.error.is_none() {
        ws.get_mut().set_read_timeout(Some(READ_TIMEOUT)).unwrap();
        close_client(ws);
    }
    log
}

// ---------------------------------------------------------------------------------------------
// Raw HTTP

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

// ---------------------------------------------------------------------------------------------
// /metrics

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

/// Waits (bounded) until metric `name{labels}` reaches at least `at_least`.
pub fn wait_metric(addr: SocketAddr, name: &str, labels: &[(&str, &str)], at_least: f64) {
    let mut last = 0.0;
    wait_for(&format!("{name}{labels:?} >= {at_least}"), || {
        last = metric(addr, name, labels);
        last >= at_least
    });
}

// ---------------------------------------------------------------------------------------------
// A raw WebSocket client: frames written and read by hand

/// Encodes a client frame: `first` is the FIN/RSV/opcode byte, `mask` `None` sends it
/// unmasked (a protocol violation).
pub fn client_frame(first: u8, payload: &[u8], mask: Option<[u8; 4]>) -> Vec<u8> {
    let mut out = vec![first];
    let mask_bit = if mask.is_some() { 0x80 } else { 0 };
    match payload.len() {
        n if n < 126 => out.push(mask_bit | n as u8),
        n if n < 65536 => {
            out.push(mask_bit | 126);
            out.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            out.push(mask_bit | 127);
            out.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    let mut body = payload.to_vec();
    if let Some(m) = mask {
        out.extend_from_slice(&m);
        for (i, b) in body.iter_mut().enumerate() {
            *b ^= m[i % 4];
        }
    }
    out.extend_from_slice(&body);
    out
}

/// The mask used by [`RawWs::send`].
pub const MASK: [u8; 4] = [0x37, 0xfa, 0x21, 0x3d];

/// Opcodes, for readability.
pub mod op {
    pub const CONT: u8 = 0x0;
    pub const TEXT: u8 = 0x1;
    pub const BINARY: u8 = 0x2;
    pub const CLOSE: u8 = 0x8;
    pub const PING: u8 = 0x9;
    pub const PONG: u8 = 0xA;
    pub const FIN: u8 = 0x80;
}

/// One frame as the server sent it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerFrame {
    pub first: u8,
    pub payload: Vec<u8>,
}

impl ServerFrame {
    pub fn opcode(&self) -> u8 {
        self.first & 0x0f
    }
    pub fn fin(&self) -> bool {
        self.first & 0x80 != 0
    }
    /// Bytes this frame took on the wire.
    pub fn wire_len(&self) -> usize {
        let n = self.payload.len();
        n + if n < 126 {
            2
        } else if n < 65536 {
            4
        } else {
            10
        }
    }
    /// The close code of a close frame (1005 when it has none).
    pub fn close_code(&self) -> u16 {
        if self.payload.len() >= 2 {
            u16::from_be_bytes([self.payload[0], self.payload[1]])
        } else {
            1005
        }
    }
    pub fn text(&self) -> String {
        String::from_utf8(self.payload.clone()).expect("utf-8 text frame")
    }
}

/// A WebSocket client over a plain `TcpStream` that writes frames byte by byte as the test
/// wants them, valid or not, and parses the server's frames itself.
pub struct RawWs {
    pub stream: TcpStream,
    /// Bytes read but not yet parsed.
    buf: Vec<u8>,
}

impl RawWs {
    /// Connects and completes a valid handshake on `path`.
    pub fn connect(addr: SocketAddr, path: &str) -> RawWs {
        Self::handshake(TcpStream::connect(addr).expect("connect"), path)
    }

    /// Completes a handshake on an already connected stream; panics unless it gets 101.
    pub fn handshake(mut stream: TcpStream, path: &str) -> RawWs {
        let req = upgrade_request(
            path,
            &format!("Sec-WebSocket-Key: {WS_KEY}\r\nSec-WebSocket-Version: 13\r\n"),
        );
        stream.write_all(req.as_bytes()).unwrap();
        Self::from_upgraded(stream)
    }

    /// Reads the answer to an upgrade request the caller already wrote; panics unless it is
    /// a valid 101. Reads the head byte by byte, so nothing after it is consumed.
    pub fn from_upgraded(mut stream: TcpStream) -> RawWs {
        stream.set_read_timeout(Some(READ_TIMEOUT)).unwrap();
        let mut head = Vec::new();
        let mut byte = [0u8; 1];
        while !head.ends_with(b"\r\n\r\n") {
            assert!(head.len() < 4096, "response head too long");
            let n = stream.read(&mut byte).expect("read handshake response");
            assert_eq!(n, 1, "closed during the handshake: {head:?}");
            head.push(byte[0]);
        }
        let head = String::from_utf8(head).unwrap();
        assert!(head.starts_with("HTTP/1.1 101 "), "{head}");
        assert!(
            head.contains("Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n"),
            "{head}"
        );
        RawWs {
            stream,
            buf: Vec::new(),
        }
    }

    /// Writes bytes as they are.
    pub fn send_raw(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).expect("write");
    }

    /// Writes one masked frame with first byte `first` (FIN/RSV bits and opcode).
    pub fn send(&mut self, first: u8, payload: &[u8]) {
        self.send_raw(&client_frame(first, payload, Some(MASK)));
    }

    /// Reads the next frame; `None` on EOF or a reset (the server is gone).
    pub fn read_frame(&mut self) -> Option<ServerFrame> {
        loop {
            if let Some((frame, used)) = parse_server_frame(&self.buf) {
                self.buf.drain(..used);
                return Some(frame);
            }
            let mut chunk = [0u8; 16 * 1024];
            match self.stream.read(&mut chunk) {
                Ok(0) => return None,
                Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                    ) =>
                {
                    panic!("no frame from the server within {READ_TIMEOUT:?}")
                }
                Err(_) => return None,
            }
        }
    }

    /// Reads frames until a close frame; returns it (`None` if the stream ended first).
    /// Other frames (pings, welcome, ticks) are skipped.
    pub fn read_close(&mut self) -> Option<ServerFrame> {
        while let Some(f) = self.read_frame() {
            if f.opcode() == op::CLOSE {
                return Some(f);
            }
        }
        None
    }

    /// Reads frames until one with `opcode`, skipping the others; panics on EOF.
    pub fn read_until(&mut self, opcode: u8) -> ServerFrame {
        loop {
            let f = self.read_frame().expect("stream ended");
            if f.opcode() == opcode {
                return f;
            }
            assert_ne!(f.opcode(), op::CLOSE, "unexpected close {}", f.close_code());
        }
    }

    /// Whether the server ends the stream (EOF or reset) before the read timeout, without
    /// sending anything but control frames.
    pub fn ends(&mut self) -> bool {
        loop {
            match self.read_frame() {
                None => return true,
                Some(f) if f.opcode() >= 0x8 => continue,
                Some(f) => panic!("unexpected data frame after close: {f:?}"),
            }
        }
    }
}

/// Parses one server frame from the front of `buf` (servers never mask).
pub fn parse_server_frame(buf: &[u8]) -> Option<(ServerFrame, usize)> {
    if buf.len() < 2 {
        return None;
    }
    assert_eq!(buf[1] & 0x80, 0, "server frames must not be masked");
    let (len, start) = match buf[1] & 0x7f {
        126 if buf.len() >= 4 => (u16::from_be_bytes([buf[2], buf[3]]) as usize, 4),
        127 if buf.len() >= 10 => {
            let mut b = [0u8; 8];
            b.copy_from_slice(&buf[2..10]);
            (u64::from_be_bytes(b) as usize, 10)
        }
        126 | 127 => return None,
        n => (n as usize, 2),
    };
    if buf.len() < start + len {
        return None;
    }
    let frame = ServerFrame {
        first: buf[0],
        payload: buf[start..start + len].to_vec(),
    };
    Some((frame, start + len))
}
