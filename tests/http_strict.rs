//! Strict HTTP on real sockets: an HTTP/1.0 upgrade, a missing or repeated `Host`, a repeated
//! `Sec-WebSocket-Key` or `-Version`, a request body and a target that is neither a path nor
//! a URL each get 400 and their own `tickcast_handshake_failures_total` reason, never a 101;
//! an absolute-form target upgrades; a frame length that is not minimally encoded is closed
//! with 1002. Throughout, a healthy client on the same server keeps receiving. `HEAD` on a
//! plain route gets GET's head without the body; an upgrade must be GET.
//!
//! Requests are written raw. A body is mostly announced but not sent, so every byte the
//! client wrote is read with the head and the answer never depends on how the server's close
//! treats unread input; one case sends the body too, and relies on the lingering close.

mod common;

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};

use common::*;

const FAILURES: &str = "tickcast_handshake_failures_total";

/// The WebSocket headers of a valid upgrade (`upgrade_request` adds `Host: x`).
fn ws_headers() -> String {
    format!("Sec-WebSocket-Key: {WS_KEY}\r\nSec-WebSocket-Version: 13\r\n")
}

/// Writes `request` on a new connection and reads the response head: up to the blank line,
/// or whatever came before the server closed.
fn response_head(addr: SocketAddr, request: &[u8]) -> io::Result<String> {
    let mut s = TcpStream::connect(addr)?;
    s.set_read_timeout(Some(READ_TIMEOUT))?;
    s.write_all(request)?;
    let mut head = Vec::new();
    let mut buf = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = s.read(&mut buf)?;
        if n == 0 {
            break;
        }
        head.extend_from_slice(&buf[..n]);
    }
    Ok(String::from_utf8_lossy(&head).into_owned())
}

/// `request` must get 400 (not 101) and count one more failure for `reason`.
fn expect_refused(addr: SocketAddr, request: &str, reason: &str) {
    let labels = [("reason", reason)];
    let before = metric(addr, FAILURES, &labels);
    let head = response_head(addr, request.as_bytes())
        .unwrap_or_else(|e| panic!("{request:?}: no answer: {e}"));
    assert_eq!(status_of(&head), 400, "{request:?} -> {head:?}");
    wait_metric(addr, FAILURES, &labels, before + 1.0);
    assert_eq!(metric(addr, FAILURES, &labels), before + 1.0, "{request:?}");
}

/// A server with a healthy client on it; `finish` checks it kept receiving and that no
/// request but its own was upgraded.
fn server_with_healthy_client() -> (tickcast::server::RunningServer, Healthy) {
    let server = start(test_config(2));
    let healthy = Healthy::start(server.local_addr());
    (server, healthy)
}

fn finish(server: tickcast::server::RunningServer, healthy: Healthy, upgrades: f64) {
    let addr = server.local_addr();
    assert_eq!(
        metric(addr, "tickcast_handshakes_total", &[]),
        1.0 + upgrades,
        "upgrades besides the healthy client"
    );
    healthy.finish();
    server.shutdown();
}

#[test]
fn an_http_1_0_upgrade_is_refused() {
    let (server, healthy) = server_with_healthy_client();
    let addr = server.local_addr();
    let upgrade = upgrade_request("/ws?topics=ticks", &ws_headers());
    expect_refused(
        addr,
        &upgrade.replace("HTTP/1.1", "HTTP/1.0"),
        "http_version",
    );
    let echo = upgrade_request("/echo", &ws_headers()).replace("HTTP/1.1", "HTTP/1.0");
    expect_refused(addr, &echo.replace("Host: x\r\n", ""), "http_version");
    // A plain HTTP/1.0 GET without Host is still served (`curl --http1.0`).
    for path in ["/healthz", "/metrics"] {
        let request = format!("GET {path} HTTP/1.0\r\n\r\n");
        let head = response_head(addr, request.as_bytes()).expect("an answer");
        assert_eq!(status_of(&head), 200, "{path}: {head:?}");
    }
    finish(server, healthy, 0.0);
}

#[test]
fn host_must_come_exactly_once() {
    let (server, healthy) = server_with_healthy_client();
    let addr = server.local_addr();
    let hostless = upgrade_request("/ws", &ws_headers()).replace("Host: x\r\n", "");
    expect_refused(addr, &hostless, "bad_host");
    expect_refused(addr, "GET /healthz HTTP/1.1\r\n\r\n", "bad_host");
    let twice = upgrade_request("/echo", &format!("{}Host: y\r\n", ws_headers()));
    expect_refused(addr, &twice, "bad_host");
    let invalid = upgrade_request("/ws", &ws_headers()).replace("Host: x", "Host: a b");
    expect_refused(addr, &invalid, "bad_host");
    finish(server, healthy, 0.0);
}

#[test]
fn websocket_headers_must_come_once() {
    let (server, healthy) = server_with_healthy_client();
    let addr = server.local_addr();
    let key_twice = format!("{}Sec-WebSocket-Key: {WS_KEY}\r\n", ws_headers());
    expect_refused(
        addr,
        &upgrade_request("/ws", &key_twice),
        "duplicate_header",
    );
    let version_twice = format!("{}Sec-WebSocket-Version: 13\r\n", ws_headers());
    expect_refused(
        addr,
        &upgrade_request("/echo", &version_twice),
        "duplicate_header",
    );
    // Two origins: whichever one were read, the check would be the client's choice.
    let origin_twice = format!(
        "{}Origin: https://one.example\r\nOrigin: https://two.example\r\n",
        ws_headers()
    );
    expect_refused(
        addr,
        &upgrade_request("/ws", &origin_twice),
        "duplicate_header",
    );
    finish(server, healthy, 0.0);
}

#[test]
fn a_request_body_is_refused() {
    let (server, healthy) = server_with_healthy_client();
    let addr = server.local_addr();
    // Announced, not sent: the server answers from the head and reads nothing more.
    for header in [
        "Content-Length: 5",
        "Transfer-Encoding: chunked",
        "Content-Length: five",
    ] {
        let upgrade = upgrade_request("/echo", &format!("{}{header}\r\n", ws_headers()));
        expect_refused(addr, &upgrade, "request_body");
    }
    expect_refused(
        addr,
        "GET /healthz HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\n",
        "request_body",
    );
    // With the body sent along: still refused, never parsed as frames after a 101.
    let mut request = upgrade_request("/echo", &format!("{}Content-Length: 8\r\n", ws_headers()));
    request.push_str("hello=ok");
    expect_refused(addr, &request, "request_body");
    finish(server, healthy, 0.0);
}

#[test]
fn a_target_neither_path_nor_url_is_refused() {
    let (server, healthy) = server_with_healthy_client();
    let addr = server.local_addr();
    for target in [
        "*",
        "localhost:8080",
        "ws",
        "ftp://x/ws",
        "http://user@x/ws",
    ] {
        expect_refused(addr, &upgrade_request(target, &ws_headers()), "bad_target");
    }
    finish(server, healthy, 0.0);
}

#[test]
fn an_absolute_form_target_upgrades_and_streams() {
    let (server, healthy) = server_with_healthy_client();
    let addr = server.local_addr();

    let request = upgrade_request(&format!("http://{addr}/ws?topics=ticks"), &ws_headers());
    let mut stream = TcpStream::connect(addr).unwrap();
    stream.write_all(request.as_bytes()).unwrap();
    let mut ws = RawWs::from_upgraded(stream);
    let welcome = ws.read_until(op::TEXT).text();
    assert!(welcome.contains(r#""type":"welcome""#), "{welcome}");
    assert!(welcome.contains("ticks"), "the query was kept: {welcome}");
    // Ticks follow (after any reply to the subscription).
    let tick = (0..100)
        .map(|_| ws.read_until(op::TEXT).text())
        .find(|t| t.contains(r#""seq""#))
        .expect("a tick among the first frames");
    assert!(tick.contains(r#""topic":"ticks""#), "{tick}");

    // Scheme in capitals, no port, on /echo.
    let request = upgrade_request("HTTPS://localhost/echo", &ws_headers());
    let mut stream = TcpStream::connect(addr).unwrap();
    stream.write_all(request.as_bytes()).unwrap();
    let mut echo = RawWs::from_upgraded(stream);
    echo.send(op::FIN | op::TEXT, b"absolute");
    assert_eq!(echo.read_until(op::TEXT).payload, b"absolute");

    // A URL with no path is the dashboard's.
    let head = response_head(
        addr,
        format!("GET http://{addr} HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes(),
    )
    .expect("an answer");
    assert_eq!(status_of(&head), 200, "{head:?}");
    finish(server, healthy, 2.0);
}

#[test]
fn a_frame_length_not_minimally_encoded_is_closed_with_1002() {
    let (server, healthy) = server_with_healthy_client();
    let addr = server.local_addr();
    let before = metric(addr, "tickcast_closes_total", &[("code", "1002")]);
    let payload = b"hello";
    let masked: Vec<u8> = payload
        .iter()
        .enumerate()
        .map(|(i, b)| b ^ MASK[i % 4])
        .collect();
    // "hello" with its length in 16 bits, then in 64 bits.
    let mut sixteen = vec![op::FIN | op::TEXT, 0x80 | 126];
    sixteen.extend_from_slice(&(payload.len() as u16).to_be_bytes());
    let mut sixty_four = vec![op::FIN | op::TEXT, 0x80 | 127];
    sixty_four.extend_from_slice(&(payload.len() as u64).to_be_bytes());
    for (name, mut frame) in [("16-bit", sixteen), ("64-bit", sixty_four)] {
        frame.extend_from_slice(&MASK);
        frame.extend_from_slice(&masked);
        let mut ws = RawWs::connect(addr, "/echo");
        ws.send_raw(&frame);
        // The first frame back must be the close: an echo means the frame was accepted.
        let reply = loop {
            let f = ws.read_frame().expect("a close frame");
            if f.opcode() != op::PING {
                break f;
            }
        };
        assert_eq!(reply.opcode(), op::CLOSE, "{name}: {reply:?}");
        assert_eq!(reply.close_code(), 1002, "{name}");
        ws.send(op::FIN | op::CLOSE, &1002u16.to_be_bytes());
        assert!(ws.ends(), "{name}: the server ends the connection");
    }
    wait_metric(
        addr,
        "tickcast_closes_total",
        &[("code", "1002")],
        before + 2.0,
    );
    finish(server, healthy, 2.0);
}

#[test]
fn head_answers_like_get_without_the_body() {
    let server = start(quiet_config(1));
    let addr = server.local_addr();
    for path in ["/healthz", "/metrics", "/"] {
        let get = raw_http(
            addr,
            format!("GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes(),
        );
        let head = raw_http(
            addr,
            format!("HEAD {path} HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes(),
        );
        assert_eq!(status_of(&head), 200, "{path}: {head}");
        // The whole answer is the head: it ends at the blank line, with GET's length.
        assert!(head.ends_with("\r\n\r\n"), "{path}: {head:?}");
        let length = |resp: &str| {
            resp.lines()
                .find_map(|l| l.strip_prefix("Content-Length: "))
                .map(str::to_string)
        };
        assert!(length(&head).is_some(), "{path}: {head}");
        if path == "/healthz" {
            assert_eq!(length(&head), length(&get));
            assert_eq!(get.split_once("\r\n\r\n").unwrap().1, "ok\n");
        }
    }
    // An upgrade must be GET.
    let head = raw_http(
        addr,
        upgrade_request("/ws", &ws_headers())
            .replacen("GET", "HEAD", 1)
            .as_bytes(),
    );
    assert_eq!(status_of(&head), 405, "{head}");
    assert!(head.contains("Allow: GET, HEAD\r\n"), "{head}");
}
