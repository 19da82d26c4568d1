//! Helpers shared by the integration tests: an in-process server on 127.0.0.1:0 and real
//! tungstenite WebSocket clients over real sockets.
#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use serde_json::Value;
use tickcast::config::{ServerConfig, TickerPace};
use tickcast::server::{RunningServer, Server};
use tungstenite::{Message, WebSocket};

pub type Client = WebSocket<TcpStream>;

/// A config for tests: port 0, no pinning, fast ticks on one feed.
pub fn test_config(shards: usize) -> ServerConfig {
    let mut cfg = ServerConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        shards,
        pin: false,
        ..ServerConfig::default()
    };
    cfg.ticker.feeds = 1;
    cfg.ticker.pace = TickerPace::Interval(Duration::from_millis(10));
    cfg
}

pub fn start(cfg: ServerConfig) -> RunningServer {
    Server::bind(cfg).expect("bind").start().expect("start")
}

/// Connects a WebSocket client to `path` (e.g. `/ws?topics=ticks`), with a read timeout.
pub fn connect(addr: SocketAddr, path: &str) -> Client {
    try_connect(addr, path).unwrap_or_else(|e| panic!("connect {path}: {e}"))
}

pub fn try_connect(addr: SocketAddr, path: &str) -> Result<Client, String> {
    let stream = TcpStream::connect(addr).map_err(|e| e.to_string())?;
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let url = format!("ws://{addr}{path}");
    let (ws, _resp) =
        tungstenite::client::client(url.as_str(), stream).map_err(|e| e.to_string())?;
    Ok(ws)
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

/// Reads messages until one with `"topic"` arrives (skips welcome/acks).
pub fn next_data(ws: &mut Client) -> Value {
    loop {
        let v = next_json(ws);
        if v.get("topic").is_some() && v.get("seq").is_some() {
            return v;
        }
    }
}

/// Reads until a close frame arrives; returns its code (None if the stream ended without one).
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

/// Sends a raw HTTP request and returns the whole response text (until the server closes
/// or 3 s pass).
pub fn raw_http(addr: SocketAddr, request: &[u8]) -> String {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
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

/// GET `path` and return (status, body).
pub fn http_get(addr: SocketAddr, path: &str) -> (u16, String) {
    let resp = raw_http(
        addr,
        format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").as_bytes(),
    );
    let status = resp
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let body = resp
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    (status, body)
}

/// The value of a metric sample line starting with `prefix` in `/metrics` (0 if absent).
pub fn metric(addr: SocketAddr, prefix: &str) -> f64 {
    let (_, body) = http_get(addr, "/metrics");
    body.lines()
        .filter(|l| l.starts_with(prefix))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}
