//! Helpers shared by the integration tests: an in-process server on 127.0.0.1:0 and real
//! tungstenite clients (here), raw HTTP and the `/metrics` reader (`http.rs`), a raw
//! WebSocket client that writes frames by hand over a `TcpStream` (`raw.rs`), a "healthy
//! client" that checks it keeps receiving while a test misbehaves (`healthy.rs`), the
//! external programs some tests need, which fail the test when missing (`programs.rs`),
//! nginx and haproxy started from `deploy/` (`proxies.rs`), and a test PKI with verifying
//! TLS clients (`tls.rs`), and the `tickcast` binary as a child process (`binary.rs`).
//!
//! Every wait here is bounded (read timeouts, [`wait_for`]); none is a speed threshold.
#![allow(dead_code)]

mod binary;
mod healthy;
mod http;
mod programs;
mod proxies;
mod raw;
mod redis;
mod rooms;
mod tls;

#[allow(unused_imports)]
pub use binary::*;
#[allow(unused_imports)]
pub use healthy::Healthy;
#[allow(unused_imports)]
pub use http::*;
#[allow(unused_imports)]
pub use programs::*;
#[allow(unused_imports)]
pub use proxies::*;
#[allow(unused_imports)]
pub use raw::*;
#[allow(unused_imports)]
pub use redis::*;
#[allow(unused_imports)]
pub use rooms::*;
#[allow(unused_imports)]
pub use tls::*;

use std::net::{SocketAddr, TcpStream};
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
