//! `--max-pending-per-ip`: sockets are counted from accept, not from the upgrade. One address
//! holding half-sent requests gets its further sockets closed at once and counted, while
//! other addresses, trusted proxies and upgraded connections are unaffected, and a place is
//! given back when its socket upgrades or closes.

mod common;

use std::io::{ErrorKind, Read, Write};
use std::net::{IpAddr, SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use common::*;
use tickcast::edge::forwarded::{Cidr, TrustedProxies};

const CAP: usize = 8;
/// Long enough that no half-sent request is given up on while the test runs.
const HANDSHAKE: Duration = Duration::from_secs(60);

/// A TCP connection from `source` (any port) that sends half a request head.
fn half_sent(addr: SocketAddr, source: &str) -> TcpStream {
    half_sent_path(addr, source, "/ws")
}

fn half_sent_path(addr: SocketAddr, source: &str, path: &str) -> TcpStream {
    let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    let local: SocketAddr = format!("{source}:0").parse().unwrap();
    socket.bind(&local.into()).unwrap();
    socket.connect(&addr.into()).unwrap();
    let mut stream = TcpStream::from(socket);
    stream
        .write_all(format!("GET {path} HTTP/1.1\r\nHost: x\r\n").as_bytes())
        .unwrap();
    stream
}

/// Whether the server has closed `s` (EOF or reset), waiting at most `limit`.
fn closed_within(s: &mut TcpStream, limit: Duration) -> bool {
    s.set_read_timeout(Some(Duration::from_millis(50))).unwrap();
    let deadline = Instant::now() + limit;
    let mut buf = [0u8; 256];
    loop {
        match s.read(&mut buf) {
            Ok(0) => return true,
            Ok(_) => {}
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                if Instant::now() >= deadline {
                    return false;
                }
            }
            Err(_) => return true,
        }
    }
}

/// Sockets closed at accept so far, read from the registry (a scrape from 127.0.0.1 would
/// itself be over the cap).
fn refused_at_accept(server: &tickcast::server::RunningServer) -> f64 {
    parse_metrics(&server.metrics().render()).sum(
        "tickcast_accept_errors_total",
        &[("reason", "pending_per_ip")],
    )
}

/// Whether a plain request from `source` is answered 200 (not closed at accept).
fn healthz_from(addr: SocketAddr, source: &str) -> bool {
    let mut s = half_sent_path(addr, source, "/healthz");
    if s.write_all(b"Connection: close\r\n\r\n").is_err() {
        return false;
    }
    s.set_read_timeout(Some(READ_TIMEOUT)).unwrap();
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    status_of(&String::from_utf8_lossy(&out)) == 200
}

#[test]
fn an_address_holding_half_sent_requests_gets_no_more_sockets() {
    let mut cfg = quiet_config(2);
    cfg.handshake_timeout = HANDSHAKE;
    cfg.max_pending_per_ip = CAP;
    cfg.max_connections_per_ip = 1;
    cfg.trusted_proxies = TrustedProxies(vec!["127.0.0.3/32".parse::<Cidr>().unwrap()]);
    let server = start(cfg);
    let addr = server.local_addr();

    // 3 × the cap from one address: the first CAP wait for their upgrade, the rest are
    // closed at accept, whatever --max-connections-per-ip says (it is checked at upgrade).
    let mut held: Vec<TcpStream> = (0..CAP).map(|_| half_sent(addr, "127.0.0.1")).collect();
    let mut over: Vec<TcpStream> = (0..2 * CAP).map(|_| half_sent(addr, "127.0.0.1")).collect();
    for (i, s) in over.iter_mut().enumerate() {
        assert!(
            closed_within(s, WAIT_LIMIT),
            "socket {} over the cap still open",
            CAP + i
        );
    }
    assert_eq!(refused_at_accept(&server), (2 * CAP) as f64);
    for (i, s) in held.iter_mut().enumerate() {
        assert!(
            !closed_within(s, Duration::from_millis(100)),
            "socket {i} within the cap was closed"
        );
    }

    // Another address, and a trusted proxy past the cap, are served.
    let mut ws = connect_from(addr, "127.0.0.2");
    let proxied: Vec<TcpStream> = (0..2 * CAP).map(|_| half_sent(addr, "127.0.0.3")).collect();
    ws.send(tungstenite::Message::text("hello")).unwrap();
    assert_eq!(ws.read().unwrap(), tungstenite::Message::text("hello"));
    assert!(healthz_from(addr, "127.0.0.2"));
    assert_eq!(
        refused_at_accept(&server),
        (2 * CAP) as f64,
        "a trusted proxy is not capped per address"
    );

    // A place is given back when its socket closes: the address upgrades again.
    drop(held.pop());
    wait_for("the closed socket's place back", || {
        try_connect_from(addr, "127.0.0.1").is_ok()
    });
    drop(proxied);
    close_client(ws);
    server.shutdown();
}

#[test]
fn an_upgraded_connection_no_longer_counts_as_pending() {
    let mut cfg = quiet_config(1);
    cfg.handshake_timeout = HANDSHAKE;
    cfg.max_pending_per_ip = CAP;
    let server = start(cfg);
    let addr = server.local_addr();
    // Twice the cap in open WebSockets from one address: each gave its place back.
    let open: Vec<_> = (0..2 * CAP).map(|_| connect(addr, "/echo")).collect();
    let mut half: Vec<TcpStream> = (0..CAP).map(|_| half_sent(addr, "127.0.0.1")).collect();
    for (i, s) in half.iter_mut().enumerate() {
        assert!(
            !closed_within(s, Duration::from_millis(100)),
            "pending socket {i} closed beside open WebSockets"
        );
    }
    let mut one_more = half_sent(addr, "127.0.0.1");
    assert!(closed_within(&mut one_more, WAIT_LIMIT), "cap + 1 pending");
    assert_eq!(refused_at_accept(&server), 1.0);
    // An HTTP answer's socket holds its place until it closes, then gives it back.
    drop(half.pop());
    wait_for("a place for a plain request", || {
        healthz_from(addr, "127.0.0.1")
    });
    for ws in open {
        close_client(ws);
    }
    server.shutdown();
}

fn try_connect_from(addr: SocketAddr, source: &str) -> Result<Client, String> {
    let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None)
        .map_err(|e| e.to_string())?;
    let local = SocketAddr::new(source.parse::<IpAddr>().unwrap(), 0);
    socket.bind(&local.into()).map_err(|e| e.to_string())?;
    socket.connect(&addr.into()).map_err(|e| e.to_string())?;
    let stream = TcpStream::from(socket);
    stream.set_read_timeout(Some(READ_TIMEOUT)).unwrap();
    let url = format!("ws://{addr}/echo");
    tungstenite::client::client(url.as_str(), stream)
        .map(|(ws, _)| ws)
        .map_err(|e| e.to_string())
}

fn connect_from(addr: SocketAddr, source: &str) -> Client {
    try_connect_from(addr, source).unwrap_or_else(|e| panic!("connect from {source}: {e}"))
}
