//! Hostile or stalled clients under the default limits: each test is one way a client could
//! hurt others (or lose its own answer), on a real server and real sockets on 127.0.0.1.
//!
//! - a failed connection's close frame, or an HTTP error answer, reaches the client instead of
//!   a reset (lingering close);
//! - every message a `/ws` client sends is charged, so an error flood ends in 1008;
//! - a publisher within its limits cannot overflow a room member that reads;
//! - a socket that takes no byte for `--write-timeout` is dropped, one that reads slowly is
//!   not;
//! - the handshake metrics tell the client's time from the server's.

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use common::*;
use tickcast::config::ServerConfig;

/// The default limits, on port 0, with one ticker feed for the healthy clients.
fn default_limits(shards: usize) -> ServerConfig {
    test_config(shards)
}

/// A masked text frame.
fn text(payload: &[u8]) -> Vec<u8> {
    client_frame(op::FIN | op::TEXT, payload, Some(MASK))
}

/// A publish of `data` (valid JSON) into `room`.
fn publish(room: &str, data: &str) -> Vec<u8> {
    text(format!(r#"{{"op":"publish","topic":"{room}","data":{data}}}"#).as_bytes())
}

/// Writes `bytes`, tolerating a peer that closes meanwhile (what it answered is read next).
fn write_lossy(stream: &mut TcpStream, bytes: &[u8]) {
    let _ = stream.write_all(bytes);
}

/// Writes `bytes` in 16 KiB pieces 5 ms apart, as a client on a slower link would: input
/// keeps arriving after the server has answered. A server that closes with input unread
/// answers the next piece with a reset, which fails the write.
fn write_slowly(stream: &mut TcpStream, bytes: &[u8]) -> Result<(), String> {
    for piece in bytes.chunks(16 * 1024) {
        stream
            .write_all(piece)
            .map_err(|e| format!("reset while writing: {e}"))?;
        std::thread::sleep(Duration::from_millis(5));
    }
    Ok(())
}

#[test]
fn an_oversize_message_gets_its_1009_close_frame_not_a_reset() {
    let server = start(default_limits(1));
    let addr = server.local_addr();
    let max = ServerConfig::default().max_message;
    // Header and payload in one write, then more frames behind it: the server must stop
    // parsing, send 1009, shut its side and drain what follows.
    let mut bytes = client_frame(op::FIN | op::BINARY, &vec![7u8; max + 4096], Some(MASK));
    bytes.extend(text(b"after the failure"));
    for attempt in 0..20 {
        let mut ws = RawWs::connect(addr, "/echo");
        write_lossy(&mut ws.stream, &bytes);
        let close = ws.read_close();
        assert_eq!(
            close.map(|f| f.close_code()),
            Some(1009),
            "attempt {attempt}: the close frame was lost"
        );
        assert!(ws.ends(), "the server ends the connection after its close");
    }
    server.shutdown();
}

#[test]
fn a_protocol_violation_with_trailing_garbage_gets_its_close_frame() {
    let server = start(default_limits(1));
    let addr = server.local_addr();
    for attempt in 0..10 {
        let mut ws = RawWs::connect(addr, "/ws");
        // An unmasked frame, then 128 KiB that would not parse as frames either: the server
        // reads and discards it all (no reset), and its close frame is there to read.
        let mut bytes = client_frame(op::FIN | op::TEXT, b"hi", None);
        bytes.extend(std::iter::repeat_n(0xffu8, 128 * 1024));
        assert_eq!(
            write_slowly(&mut ws.stream, &bytes),
            Ok(()),
            "attempt {attempt}"
        );
        let close = ws.read_close();
        assert_eq!(
            close.map(|f| f.close_code()),
            Some(1002),
            "attempt {attempt}: the close frame was lost"
        );
        assert!(ws.ends(), "attempt {attempt}: EOF after the close");
    }
    server.shutdown();
}

/// Sends `request` slowly and reads the answer until EOF: the server must take the whole
/// request without a reset, answer, and end with a clean EOF. Returns the status.
fn status_despite_unread_input(addr: SocketAddr, request: &[u8]) -> Result<u16, String> {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(READ_TIMEOUT)).unwrap();
    write_slowly(&mut s, request)?;
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match s.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => out.extend_from_slice(&buf[..n]),
            Err(e) => return Err(format!("reset while reading: {e}")),
        }
    }
    let text = String::from_utf8_lossy(&out);
    match status_of(&text) {
        0 => Err(format!("no status line: {text:?}")),
        status => Ok(status),
    }
}

#[test]
fn an_http_error_answer_survives_the_input_left_unread() {
    let server = start(default_limits(1));
    let addr = server.local_addr();
    let mut long_line = b"GET /".to_vec();
    long_line.extend(std::iter::repeat_n(b'a', 100 * 1024));
    long_line.extend_from_slice(b" HTTP/1.1\r\nHost: x\r\n\r\n");
    // A refused upgrade followed by frames the client sends without waiting for the answer.
    let mut refused = b"GET /nowhere HTTP/1.1\r\nHost: x\r\n\r\n".to_vec();
    refused.extend(std::iter::repeat_n(b'z', 256 * 1024));
    for attempt in 0..10 {
        assert_eq!(
            status_despite_unread_input(addr, &long_line),
            Ok(431),
            "attempt {attempt}"
        );
        assert_eq!(
            status_despite_unread_input(addr, &refused),
            Ok(404),
            "attempt {attempt}"
        );
    }
    server.shutdown();
}

/// Floods `/ws` with `message` (answered with an error frame each) until the server closes;
/// returns the close code and the error frames received before it.
fn flood_until_closed(addr: SocketAddr, message: Vec<u8>) -> (Option<u16>, usize) {
    let mut ws = RawWs::connect(addr, "/ws?topics=quiet");
    let mut writer = ws.stream.try_clone().unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let flood = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            // Bounded: 20,000 messages, or until the server closes.
            for _ in 0..20_000 {
                if stop.load(Ordering::Relaxed) || writer.write_all(&message).is_err() {
                    break;
                }
            }
        })
    };
    let mut errors = 0;
    let mut code = None;
    while let Some(f) = ws.read_frame() {
        match f.opcode() {
            op::CLOSE => {
                code = Some(f.close_code());
                break;
            }
            op::TEXT if f.text().contains(r#""type":"error""#) => errors += 1,
            _ => {}
        }
    }
    stop.store(true, Ordering::Relaxed);
    let _ = ws.stream.shutdown(std::net::Shutdown::Both);
    flood.join().unwrap();
    (code, errors)
}

#[test]
fn an_error_flood_is_charged_and_ends_in_1008() {
    let server = start(default_limits(1));
    let addr = server.local_addr();
    let healthy = Healthy::start(addr);
    let cfg = ServerConfig::default();
    // Burst, then refusals until the strikes run out: a bound, not millions.
    let most = (cfg.publish_burst + tickcast::ratelimit::STRIKES_BEFORE_CLOSE) as usize + 50;
    for (what, message) in [
        ("invalid JSON", text(b"{not json")),
        ("unknown op", text(br#"{"op":"dance"}"#)),
        ("invalid message", text(br#"[1,2,3]"#)),
        (
            "binary",
            client_frame(op::FIN | op::BINARY, b"\x01\x02", Some(MASK)),
        ),
    ] {
        let (code, errors) = flood_until_closed(addr, message);
        assert_eq!(code, Some(1008), "{what}: closed with {code:?}");
        assert!(errors <= most, "{what}: {errors} error frames before 1008");
        assert!(
            errors >= cfg.publish_burst as usize,
            "{what}: only {errors} answers"
        );
    }
    assert!(
        metric(
            addr,
            "tickcast_client_errors_total",
            &[("code", "rate_limited")]
        ) >= 4.0 * 50.0
    );
    healthy.finish();
    server.shutdown();
}

/// What a member saw: the seqs in its room, the error frames it got, and the close code
/// that ended its stream.
#[derive(Debug, Default)]
struct Seen {
    seqs: Vec<u64>,
    errors: usize,
    close: Option<u16>,
}

/// A room member that reads everything on its own thread, until the server closes.
fn member(addr: SocketAddr, room: &str) -> (RawWs, std::thread::JoinHandle<Seen>) {
    let ws = RawWs::connect(addr, &format!("/ws?room={room}"));
    let mut reader = RawWs::from_stream(ws.stream.try_clone().unwrap());
    let room = room.to_string();
    let handle = std::thread::spawn(move || {
        let mut seen = Seen::default();
        while let Some(f) = reader.read_frame() {
            if f.opcode() == op::CLOSE {
                seen.close = Some(f.close_code());
                break;
            }
            if f.opcode() != op::TEXT {
                continue;
            }
            let v: serde_json::Value = serde_json::from_slice(&f.payload).unwrap();
            if v["type"] == "error" {
                seen.errors += 1;
            } else if v["topic"] == room.as_str()
                && let Some(seq) = v["seq"].as_u64()
            {
                seen.seqs.push(seq);
            }
        }
        seen
    });
    (ws, handle)
}

#[test]
fn a_publisher_bursting_within_its_limits_overflows_no_member_that_reads() {
    let server = start(default_limits(1));
    let addr = server.local_addr();
    let metrics = server.metrics().clone();
    let members: Vec<_> = (0..10).map(|_| member(addr, "big")).collect();
    let (mut flooder, flooded) = member(addr, "big");
    let (mut paced, paced_seen) = member(addr, "big");
    wait_metric(addr, "tickcast_handshakes_total", &[], 12.0);
    // The old limits allowed this burst (200 messages of 60 KiB at once); the byte burst
    // takes a few, the rest is refused until the flooder is closed for insisting.
    let data = format!(r#""{}""#, "x".repeat(60 * 1024));
    for _ in 0..200 {
        if flooder.stream.write_all(&publish("big", &data)).is_err() {
            break;
        }
    }
    let flooded = flooded.join().unwrap();
    assert_eq!(flooded.close, Some(1008), "the flooder is closed");
    // Refusals answered, then the last strike closes it.
    let strikes = tickcast::ratelimit::STRIKES_BEFORE_CLOSE as usize;
    assert!(
        flooded.errors >= strikes - 1,
        "refusals: {}",
        flooded.errors
    );
    // A publisher within its limits: the byte burst at once, then the byte rate.
    let burst = ServerConfig::default().publish_byte_burst / (data.len() + 64);
    for i in 0..burst + 3 {
        if i >= burst {
            std::thread::sleep(Duration::from_millis(600));
        }
        paced.stream.write_all(&publish("big", &data)).unwrap();
    }
    wait_metric(
        addr,
        "tickcast_client_publishes_total",
        &[],
        (burst + 3 + 4) as f64,
    );
    server.shutdown();
    let scrape = parse_metrics(&metrics.render());
    let sequenced = scrape.sum("tickcast_messages_published_total", &[("topic", "rooms")]) as u64; // "big" is the one room
    assert_eq!(
        scrape.sum("tickcast_drops_total", &[]),
        0.0,
        "frames dropped"
    );
    for (i, (ws, seen)) in members.into_iter().enumerate() {
        drop(ws);
        let seen = seen.join().unwrap();
        assert_eq!(
            seen.seqs,
            (1..=sequenced).collect::<Vec<_>>(),
            "member {i} missed messages"
        );
        assert_eq!(seen.close, Some(1001), "member {i}");
    }
    drop(paced);
    let paced = paced_seen.join().unwrap();
    assert_eq!(paced.errors, 0, "the paced publisher was refused");
    assert_eq!(paced.seqs, (1..=sequenced).collect::<Vec<_>>());
}

#[test]
fn a_socket_that_takes_nothing_is_dropped_at_the_write_timeout() {
    let mut cfg = default_limits(1);
    cfg.write_timeout = Duration::from_millis(1500);
    cfg.send_buffer = Some(4096);
    let server = start(cfg);
    let addr = server.local_addr();
    let healthy = Healthy::start(addr);
    // Stalled: a small receive buffer, handshake, then never a read.
    let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    socket.connect(&addr.into()).unwrap();
    let stalled = RawWs::handshake(TcpStream::from(socket), "/ws?topics=flood");
    // Slow but reading: takes up to 64 KiB every 200 ms, well inside the timeout, and at
    // least a segment's worth, so its receive window opens at each read.
    let slow = RawWs::connect(addr, "/ws?topics=flood");
    let slow_done = Arc::new(AtomicBool::new(false));
    let slow_reader = {
        let mut s = slow.stream.try_clone().unwrap();
        let done = slow_done.clone();
        std::thread::spawn(move || {
            let mut buf = vec![0u8; 64 * 1024];
            while !done.load(Ordering::Relaxed) {
                if matches!(s.read(&mut buf), Ok(0) | Err(_)) {
                    return false;
                }
                std::thread::sleep(Duration::from_millis(200));
            }
            true
        })
    };
    let p = server.publisher();
    let body = format!(r#"{{"pad":"{}"}}"#, "x".repeat(1000));
    let started = Instant::now();
    // Publish until the stalled client is dropped (bounded by the wait limit).
    wait_for("the stalled client to be dropped", || {
        for _ in 0..20 {
            assert!(p.publish("flood", &body));
        }
        std::thread::sleep(Duration::from_millis(20));
        metric(addr, "tickcast_write_timeouts_total", &[]) >= 1.0
    });
    assert!(
        started.elapsed() >= Duration::from_millis(1500),
        "not before the timeout"
    );
    slow_done.store(true, Ordering::Relaxed);
    assert!(
        slow_reader.join().unwrap(),
        "the slow reader was disconnected"
    );
    assert_eq!(metric(addr, "tickcast_write_timeouts_total", &[]), 1.0);
    drop(stalled);
    drop(slow);
    healthy.finish();
    server.shutdown();
}

#[test]
fn the_handshake_metrics_tell_the_clients_time_from_the_servers() {
    let server = start(default_limits(1));
    let addr = server.local_addr();
    let mut s = TcpStream::connect(addr).unwrap();
    let request = upgrade_request(
        "/ws",
        &format!("Sec-WebSocket-Key: {WS_KEY}\r\nSec-WebSocket-Version: 13\r\n"),
    );
    let (first, rest) = request.as_bytes().split_at(20);
    s.write_all(first).unwrap();
    // The client takes a second to finish its request.
    std::thread::sleep(Duration::from_millis(1000));
    s.write_all(rest).unwrap();
    let _ws = RawWs::from_upgraded(s);
    let seconds = |name: &str, le: &str| {
        metric(
            addr,
            &format!("tickcast_{name}_seconds_bucket"),
            &[("le", le)],
        )
    };
    wait_metric(addr, "tickcast_handshake_request_seconds_count", &[], 1.0);
    // The client's part holds the second; the server's part does not.
    assert_eq!(seconds("handshake_request", "0.5"), 0.0);
    assert_eq!(seconds("handshake_request", "+Inf"), 1.0);
    assert_eq!(seconds("handshake_latency", "0.5"), 1.0);
    server.shutdown();
}

#[test]
fn every_publish_taken_before_the_drain_is_delivered_before_the_1001() {
    let mut cfg = quiet_config(2);
    cfg.publish_rate = 0.0;
    let server = start(cfg);
    let addr = server.local_addr();
    let metrics = server.metrics().clone();
    // Publishers in one room, one per shard and one more, each reading everything.
    let stop = Arc::new(AtomicBool::new(false));
    // Every member is in before anyone publishes.
    let members: Vec<_> = (0..3).map(|_| member(addr, "last")).collect();
    let publishers: Vec<_> = members
        .into_iter()
        .enumerate()
        .map(|(i, (ws, seen))| {
            let mut writer = ws.stream.try_clone().unwrap();
            let stop = stop.clone();
            let writer = std::thread::spawn(move || {
                let mut sent = 0u64;
                // Bounded: 20 s of publishing at most.
                let until = Instant::now() + Duration::from_secs(20);
                while !stop.load(Ordering::Relaxed) && Instant::now() < until {
                    let msg = publish("last", &format!(r#"{{"p":{i},"n":{sent}}}"#));
                    if writer.write_all(&msg).is_err() {
                        break;
                    }
                    sent += 1;
                    std::thread::sleep(Duration::from_micros(500));
                }
                sent
            });
            (ws, seen, writer)
        })
        .collect();
    wait_metric(addr, "tickcast_client_publishes_total", &[], 300.0);
    // Shut down while they publish; each reader runs until its 1001.
    server.shutdown();
    stop.store(true, Ordering::Relaxed);
    let scrape = parse_metrics(&metrics.render());
    let accepted = scrape.sum("tickcast_client_publishes_total", &[]) as u64;
    let sequenced = scrape.sum("tickcast_messages_published_total", &[("topic", "rooms")]) as u64; // "last" is the one room
    assert!(accepted >= 300);
    assert_eq!(sequenced, accepted, "publishes taken but never sequenced");
    for (i, (ws, seen, writer)) in publishers.into_iter().enumerate() {
        let sent = writer.join().unwrap();
        drop(ws);
        let seen = seen.join().unwrap();
        assert_eq!(
            seen.seqs,
            (1..=sequenced).collect::<Vec<_>>(),
            "publisher {i} (sent {sent}) did not see every sequenced message before its close"
        );
        assert_eq!(seen.close, Some(1001), "publisher {i}");
    }
}

#[test]
fn connections_that_come_and_go_leave_nothing_in_the_timer_wheel() {
    let server = start(default_limits(1));
    let addr = server.local_addr();
    let healthy = Healthy::start(addr);
    // Open and close, cleanly and by reset, some in the middle of the request, for longer
    // than the gauges' one-second sampling.
    let churn = Instant::now();
    for i in 0..600 {
        if i % 100 == 0 {
            std::thread::sleep(Duration::from_millis(250));
        }
        match i % 3 {
            0 => close_client(connect(addr, "/ws?topics=ticks")),
            1 => drop(RawWs::connect(addr, "/echo")),
            _ => {
                let mut s = TcpStream::connect(addr).unwrap();
                s.write_all(b"GET /ws HTTP/1.1\r\nHost: x\r\n").unwrap();
            }
        }
    }
    // Open now: the healthy client, and perhaps the last scrape's connection, which the
    // server keeps until that client's EOF but no longer counts.
    assert!(churn.elapsed() > Duration::from_millis(1500));
    wait_for("every closed connection to be reaped", || {
        metric(addr, "tickcast_connections", &[]) <= 1.0
    });
    // Each connection takes its timer entry with it when it goes; without that, its ping or
    // handshake entry would stay until its deadline, 5 to 30 s away. Gauges are sampled
    // every second.
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let entries = metric(addr, "tickcast_timer_entries", &[]);
        // At least the healthy client's entry: a sample taken since it connected.
        if (1.0..=2.0).contains(&entries) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{entries} timer entries for at most 2 connections"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    healthy.finish();
    server.shutdown();
}

#[test]
fn pongs_past_a_full_outbox_are_dropped_and_counted() {
    let mut cfg = default_limits(1);
    cfg.outbox_limit = 64 * 1024;
    // The server publishes here, not clients: no burst to fit the small outbox.
    cfg.publish_rate = 0.0;
    // The largest message still fits the small outbox in its envelope.
    cfg.max_message = 16 * 1024;
    cfg.send_buffer = Some(4096);
    let server = start(cfg);
    let addr = server.local_addr();
    let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    socket.connect(&addr.into()).unwrap();
    let mut stalled = RawWs::handshake(TcpStream::from(socket), "/ws?topics=flood");
    let p = server.publisher();
    let body = format!(r#"{{"pad":"{}"}}"#, "x".repeat(1000));
    // Fill the outbox: frames start to be dropped for it once it is full.
    wait_for("the stalled client's outbox to fill", || {
        for _ in 0..20 {
            assert!(p.publish("flood", &body));
        }
        metric(addr, "tickcast_drops_total", &[("reason", "outbox_full")]) > 0.0
    });
    // 200 pings of 125 bytes: their pongs get what room the outbox has left (a run that did
    // not fit may have left up to an eighth of the limit) plus 4 KiB, no more: most are
    // refused, and each refusal is counted.
    for _ in 0..200 {
        stalled.send(op::FIN | op::PING, &[b'p'; 125]);
    }
    wait_metric(
        addr,
        "tickcast_drops_total",
        &[("reason", "control_frame")],
        100.0,
    );
    let dropped = metric(addr, "tickcast_drops_total", &[("reason", "control_frame")]);
    assert!(dropped <= 200.0, "{dropped} of 200");
    drop(stalled);
    server.shutdown();
}
