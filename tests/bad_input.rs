//! Bad input from clients: every malformed request gets its HTTP status, every protocol
//! violation its close code, timeouts close what they should, and the metrics count each.
//! Throughout, a healthy client on the same server keeps receiving every tick.
//!
//! Frames are written by hand ([`RawWs`]) after a valid handshake, so each violation is
//! exactly the bytes the test names.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use common::*;
use tickcast::config::ServerConfig;

const MAX_MESSAGE: usize = 1024;

fn bad_input_config() -> ServerConfig {
    ServerConfig {
        handshake_timeout: Duration::from_millis(300),
        max_message: MAX_MESSAGE,
        ..test_config(2)
    }
}

/// The response to `request` must have `status` (and the server closes the connection).
fn expect_status(addr: std::net::SocketAddr, request: &str, status: u16) -> String {
    let resp = raw_http(addr, request.as_bytes());
    assert_eq!(status_of(&resp), status, "{request:?} -> {resp:?}");
    resp
}

#[test]
fn bad_http_requests_get_their_status_while_a_healthy_client_keeps_receiving() {
    let server = start(bad_input_config());
    let addr = server.local_addr();
    let healthy = Healthy::start(addr);
    let key = format!("Sec-WebSocket-Key: {WS_KEY}\r\n");
    let v13 = "Sec-WebSocket-Version: 13\r\n";

    // Header block over 8 KiB: 431.
    let big = format!(
        "GET /ws HTTP/1.1\r\nHost: x\r\nX-Big: {}\r\n\r\n",
        "a".repeat(9000)
    );
    expect_status(addr, &big, 431);
    // Over 8 KiB and still incomplete: 431 too, without waiting for the end.
    let big_partial = format!("GET /ws HTTP/1.1\r\nX-Big: {}", "a".repeat(9000));
    expect_status(addr, &big_partial, 431);
    // More headers than the parser takes, each small: 431 as well.
    let many: String = (0..100).map(|i| format!("X-H{i}: v\r\n")).collect();
    expect_status(addr, &format!("GET /ws HTTP/1.1\r\n{many}\r\n"), 431);
    // Not GET: 405 with Allow.
    let resp = expect_status(addr, "POST /ws HTTP/1.1\r\nHost: x\r\n\r\n", 405);
    assert!(resp.contains("Allow: GET, HEAD\r\n"), "{resp}");
    // Unknown path: 404.
    expect_status(addr, "GET /nope HTTP/1.1\r\nHost: x\r\n\r\n", 404);
    expect_status(addr, &upgrade_request("/nope", &format!("{key}{v13}")), 404);
    // Upgrade without a key, with a malformed key, without the upgrade headers: 400.
    expect_status(addr, &upgrade_request("/ws", v13), 400);
    let short_key = "Sec-WebSocket-Key: c2hvcnQ=\r\n";
    expect_status(
        addr,
        &upgrade_request("/ws", &format!("{short_key}{v13}")),
        400,
    );
    let not_base64 = "Sec-WebSocket-Key: !!!!!!!!!!!!!!!!!!!!!!==\r\n";
    expect_status(
        addr,
        &upgrade_request("/echo", &format!("{not_base64}{v13}")),
        400,
    );
    expect_status(addr, &upgrade_request("/ws", &key), 400);
    let plain_get = format!("GET /ws HTTP/1.1\r\nHost: x\r\n{key}{v13}\r\n");
    expect_status(addr, &plain_get, 400);
    // Wrong version: 426, telling the client which one to use.
    let resp = expect_status(
        addr,
        &upgrade_request("/ws", &format!("{key}Sec-WebSocket-Version: 8\r\n")),
        426,
    );
    assert!(resp.contains("Sec-WebSocket-Version: 13\r\n"), "{resp}");
    // Not HTTP at all: 400.
    expect_status(addr, "\x16\x03\x01\x02\x00 hello\r\n\r\n", 400);

    // An incomplete request is closed after the handshake timeout, without an answer.
    let mut slow = TcpStream::connect(addr).unwrap();
    slow.set_read_timeout(Some(READ_TIMEOUT)).unwrap();
    slow.write_all(b"GET /ws HTTP/1.1\r\nHost: x\r\n").unwrap();
    let mut buf = [0u8; 64];
    match slow.read(&mut buf) {
        Ok(0) => {}
        Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => {}
        other => panic!("expected the server to close the connection, got {other:?}"),
    }

    let m = scrape(addr);
    let failures = |reason| m.sum("tickcast_handshake_failures_total", &[("reason", reason)]);
    assert_eq!(failures("header_too_large"), 3.0);
    assert_eq!(failures("method_not_allowed"), 1.0);
    assert_eq!(failures("not_found"), 2.0);
    assert_eq!(failures("bad_version"), 1.0);
    assert_eq!(failures("timeout"), 1.0);
    assert_eq!(failures("malformed"), 1.0);
    // Missing or bad key, missing version, not an upgrade.
    let upgrade_400 = failures("bad_key") + failures("missing_version") + failures("not_upgrade");
    assert_eq!(upgrade_400, 5.0, "{}", m.text);
    assert_eq!(
        m.sum("tickcast_handshakes_total", &[]),
        1.0,
        "only the healthy client"
    );

    healthy.finish();
    server.shutdown();
}

/// One protocol violation: a name, the bytes sent after the handshake, the expected code.
struct Violation {
    name: &'static str,
    path: &'static str,
    bytes: Vec<u8>,
    code: u16,
}

fn violations() -> Vec<Violation> {
    let masked = |first, payload: &[u8]| client_frame(first, payload, Some(MASK));
    let mut fragmented_too_big = masked(op::BINARY, &[7u8; 600]);
    fragmented_too_big.extend(masked(op::CONT, &[7u8; 300]));
    fragmented_too_big.extend(masked(op::FIN | op::CONT, &[7u8; 300]));
    let mut invalid_utf8_fragments = masked(op::TEXT, "ok é".as_bytes());
    invalid_utf8_fragments.extend(masked(op::FIN | op::CONT, &[0xc3, 0x28]));
    let v = |name, path, bytes, code| Violation {
        name,
        path,
        bytes,
        code,
    };
    vec![
        v(
            "unmasked frame",
            "/echo",
            client_frame(op::FIN | op::TEXT, b"hi", None),
            1002,
        ),
        v(
            "unmasked frame on /ws",
            "/ws?topics=ticks",
            client_frame(op::FIN | op::TEXT, b"{}", None),
            1002,
        ),
        v("RSV1", "/echo", masked(0xC1, b"hi"), 1002),
        v("RSV2", "/echo", masked(0xA1, b"hi"), 1002),
        v("RSV3", "/echo", masked(0x91, b"hi"), 1002),
        v("data opcode 3", "/echo", masked(0x83, b"hi"), 1002),
        v("control opcode 0xB", "/echo", masked(0x8B, b""), 1002),
        v(
            "ping over 125 bytes",
            "/echo",
            masked(op::FIN | op::PING, &[1u8; 126]),
            1002,
        ),
        v(
            "close over 125 bytes",
            "/echo",
            masked(op::FIN | op::CLOSE, &[b'a'; 200]),
            1002,
        ),
        v("fragmented ping", "/echo", masked(op::PING, b"x"), 1002),
        v(
            "close with a one-byte payload",
            "/echo",
            masked(op::FIN | op::CLOSE, &[3]),
            1002,
        ),
        v(
            "close with a reserved code",
            "/echo",
            masked(op::FIN | op::CLOSE, &1006u16.to_be_bytes()),
            1002,
        ),
        v(
            "close with an invalid UTF-8 reason",
            "/echo",
            masked(op::FIN | op::CLOSE, &[0x03, 0xe8, 0xff]),
            1007,
        ),
        v(
            "a new message inside a fragmented one",
            "/echo",
            [masked(op::TEXT, b"a"), masked(op::FIN | op::TEXT, b"b")].concat(),
            1002,
        ),
        v(
            "continuation without a message",
            "/echo",
            masked(op::FIN | op::CONT, b"x"),
            1002,
        ),
        v(
            "invalid UTF-8 text",
            "/echo",
            masked(op::FIN | op::TEXT, &[0x68, 0xff, 0xfe]),
            1007,
        ),
        v(
            "invalid UTF-8 text on /ws",
            "/ws?topics=ticks",
            masked(op::FIN | op::TEXT, &[0xc0, 0x80]),
            1007,
        ),
        v(
            "invalid UTF-8 across fragments",
            "/echo",
            invalid_utf8_fragments,
            1007,
        ),
        v(
            "single frame over max_message",
            "/echo",
            masked(op::FIN | op::BINARY, &vec![1u8; MAX_MESSAGE + 1]),
            1009,
        ),
        v(
            "text over max_message on /ws",
            "/ws?topics=ticks",
            masked(op::FIN | op::TEXT, &vec![b' '; MAX_MESSAGE + 1]),
            1009,
        ),
        v(
            "a 64-bit length with the top bit set",
            "/echo",
            {
                let mut f = vec![op::FIN | op::BINARY, 0x80 | 127];
                f.extend_from_slice(&u64::MAX.to_be_bytes());
                f.extend_from_slice(&MASK);
                f
            },
            1002,
        ),
        v(
            "fragments adding up past max_message",
            "/echo",
            fragmented_too_big,
            1009,
        ),
    ]
}

#[test]
fn protocol_violations_get_their_close_codes_while_a_healthy_client_keeps_receiving() {
    let server = start(bad_input_config());
    let addr = server.local_addr();
    let healthy = Healthy::start(addr);
    let before = scrape(addr);
    let cases = violations();
    for case in &cases {
        let mut ws = RawWs::connect(addr, case.path);
        ws.send_raw(&case.bytes);
        let close = ws
            .read_close()
            .unwrap_or_else(|| panic!("{}: no close frame", case.name));
        assert_eq!(close.close_code(), case.code, "{}", case.name);
        assert!(close.payload.len() <= 125, "{}", case.name);
        // The server shuts its side after the close frame and drops the socket once we
        // answer (or go away).
        ws.send(op::FIN | op::CLOSE, &case.code.to_be_bytes());
        assert!(ws.ends(), "{}: the server ends the connection", case.name);
    }
    for code in [1002u16, 1007, 1009] {
        let expected = cases.iter().filter(|c| c.code == code).count() as f64;
        let label = code.to_string();
        let base = before.sum("tickcast_closes_total", &[("code", &label)]);
        wait_metric(
            addr,
            "tickcast_closes_total",
            &[("code", &label)],
            base + expected,
        );
    }
    healthy.finish();
    server.shutdown();
}

#[test]
fn a_client_that_sends_a_violation_and_vanishes_is_dropped() {
    let server = start(bad_input_config());
    let addr = server.local_addr();
    let healthy = Healthy::start(addr);
    for _ in 0..20 {
        let mut ws = RawWs::connect(addr, "/echo");
        ws.send_raw(&client_frame(op::FIN | op::TEXT, b"unmasked", None));
        // Gone without reading the close frame: a reset is the server's problem only.
    }
    wait_metric(addr, "tickcast_closes_total", &[("code", "1002")], 20.0);
    wait_for("every violating connection to be reaped", || {
        let m = scrape(addr);
        // The healthy client only: a scrape does not count itself.
        m.sum("tickcast_connections", &[]) <= 1.0
    });
    healthy.finish();
    server.shutdown();
}

#[test]
fn ping_gets_a_pong_with_its_payload_and_close_gets_a_close_reply() {
    let server = start(bad_input_config());
    let addr = server.local_addr();
    let healthy = Healthy::start(addr);

    let mut ws = RawWs::connect(addr, "/ws?topics=ticks");
    for payload in [&b""[..], b"hello", &[0xAB; 125]] {
        ws.send(op::FIN | op::PING, payload);
        let pong = ws.read_until(op::PONG);
        assert!(pong.fin());
        assert_eq!(pong.payload, payload);
    }
    // Still subscribed after the pings.
    ws.read_until(op::TEXT);
    // A close with a code and reason is answered with the same code, then the server ends
    // the connection.
    let mut close = 4000u16.to_be_bytes().to_vec();
    close.extend_from_slice(b"bye");
    ws.send(op::FIN | op::CLOSE, &close);
    let reply = ws.read_close().expect("a close reply");
    assert_eq!(reply.close_code(), 4000);
    assert!(ws.ends());

    // A close without a code is answered with 1000.
    let mut ws = RawWs::connect(addr, "/echo");
    ws.send(op::FIN | op::CLOSE, b"");
    assert_eq!(ws.read_close().expect("a close reply").close_code(), 1000);
    assert!(ws.ends());

    // A close with an invalid code is a protocol error.
    let mut ws = RawWs::connect(addr, "/echo");
    ws.send(op::FIN | op::CLOSE, &1005u16.to_be_bytes());
    assert_eq!(ws.read_close().expect("a close").close_code(), 1002);
    drop(ws);

    // Codes a client picks freely share one series per range, so none can add series.
    wait_metric(addr, "tickcast_closes_total", &[("code", "4xxx")], 1.0);
    wait_metric(addr, "tickcast_closes_total", &[("code", "1005")], 1.0);
    healthy.finish();
    server.shutdown();
}

#[test]
fn an_idle_client_is_closed_after_the_idle_timeout_but_pongs_keep_one_alive() {
    let server = start(ServerConfig {
        ping_interval: Duration::from_millis(200),
        idle_timeout: Duration::from_millis(600),
        ..bad_input_config()
    });
    let addr = server.local_addr();
    // tungstenite answers pings by itself: this client stays alive by reading.
    let healthy = Healthy::start(addr);
    let mut idle = RawWs::connect(addr, "/echo");
    // The server pings first, then gives up on a client that answers nothing.
    let ping = idle.read_frame().expect("a ping");
    assert_eq!(ping.opcode(), op::PING);
    let close = idle.read_close().expect("a close frame");
    assert_eq!(close.close_code(), 1001);
    assert!(idle.ends());
    drop(idle);
    wait_metric(addr, "tickcast_idle_timeouts_total", &[], 1.0);
    wait_metric(addr, "tickcast_closes_total", &[("code", "1001")], 1.0);
    // The healthy client outlived several idle timeouts by answering pings.
    let received = healthy.received();
    std::thread::sleep(Duration::from_millis(1500));
    healthy.wait_for_more(received);
    healthy.finish();
    server.shutdown();
}

#[test]
fn clients_that_vanish_at_any_stage_are_reaped_and_counted() {
    const EACH: usize = 100;
    let server = start(bad_input_config());
    let addr = server.local_addr();
    let healthy = Healthy::start(addr);
    let before = scrape(addr);
    let mut upgraded = 0;
    for i in 0..EACH * 3 {
        match i % 3 {
            // Gone before finishing the request.
            0 => {
                let mut s = TcpStream::connect(addr).unwrap();
                s.write_all(b"GET /ws HTTP/1.1\r\nHo").unwrap();
            }
            // Gone right after the upgrade, without a close frame.
            1 => {
                drop(RawWs::connect(addr, "/ws?topics=ticks"));
                upgraded += 1;
            }
            // Gone in the middle of a frame.
            _ => {
                let mut ws = RawWs::connect(addr, "/echo");
                ws.send_raw(&client_frame(op::FIN | op::TEXT, b"half a frame", Some(MASK))[..6]);
                upgraded += 1;
            }
        }
    }
    wait_metric(
        addr,
        "tickcast_closes_total",
        &[("code", "1006")],
        before.sum("tickcast_closes_total", &[("code", "1006")]) + upgraded as f64,
    );
    wait_for("every vanished connection to be reaped", || {
        // The healthy client only: a scrape does not count itself.
        metric(addr, "tickcast_connections", &[]) <= 1.0
    });
    // A socket that sent half a request and went may still wait in a shard's queue of new
    // sockets, which the gauge does not count: its EOF is counted once the shard reads it.
    wait_metric(
        addr,
        "tickcast_handshake_failures_total",
        &[("reason", "eof")],
        EACH as f64,
    );
    let m = scrape(addr);
    assert_eq!(
        m.sum("tickcast_handshakes_total", &[]) - before.sum("tickcast_handshakes_total", &[]),
        upgraded as f64
    );
    assert_eq!(
        m.sum("tickcast_handshake_failures_total", &[("reason", "eof")]),
        EACH as f64
    );
    healthy.finish();
    server.shutdown();
}

#[test]
fn a_client_that_never_answers_our_close_is_dropped_after_the_close_timeout() {
    let server = start(ServerConfig {
        close_timeout: Duration::from_millis(300),
        ..bad_input_config()
    });
    let addr = server.local_addr();
    let healthy = Healthy::start(addr);
    let mut ws = RawWs::connect(addr, "/echo");
    ws.send(op::FIN | op::PING, &[0u8; 126]);
    assert_eq!(ws.read_close().expect("a close").close_code(), 1002);
    // We keep the socket open and never answer: the server gives up after the timeout.
    wait_metric(addr, "tickcast_closes_total", &[("code", "1002")], 1.0);
    wait_for("the silent connection to be reaped", || {
        metric(addr, "tickcast_connections", &[]) <= 1.0
    });
    drop(ws);
    healthy.finish();
    server.shutdown();
}
