//! The diagnostic endpoints: `/echo` (every data message comes back, fragmented ones
//! reassembled), `/healthz`, and `/metrics` (Prometheus text, every family, counters that move).

mod common;

use common::*;
use tungstenite::Message;

#[test]
fn echo_returns_text_and_binary_messages() {
    let server = start(quiet_config(1));
    let mut ws = connect(server.local_addr(), "/echo");
    let big: Vec<u8> = (0..60 * 1024).map(|i| (i % 251) as u8).collect();
    let messages = [
        Message::text("hello"),
        Message::text("héllo, wörld ✓"),
        Message::text(""),
        Message::binary((0..=255u8).collect::<Vec<u8>>()),
        Message::binary(Vec::<u8>::new()),
        Message::binary(big),
        Message::text("x".repeat(300)),
    ];
    for m in &messages {
        ws.send(m.clone()).unwrap();
        let back = loop {
            match ws.read().unwrap() {
                Message::Ping(_) | Message::Pong(_) => continue,
                other => break other,
            }
        };
        assert_eq!(&back, m);
    }
    close_client(ws);
    server.shutdown();
}

#[test]
fn echo_reassembles_fragmented_messages() {
    let server = start(quiet_config(1));
    let addr = server.local_addr();
    let mut ws = RawWs::connect(addr, "/echo");

    // Text in three fragments with a ping between them: the pong comes first, then the text.
    ws.send(op::TEXT, b"frag");
    ws.send(op::FIN | op::PING, b"mid");
    ws.send(op::CONT, b"men");
    ws.send(op::FIN | op::CONT, b"ted");
    let pong = ws.read_frame().unwrap();
    assert_eq!(
        (pong.opcode(), pong.payload.as_slice()),
        (op::PONG, &b"mid"[..])
    );
    let text = ws.read_frame().unwrap();
    assert!(text.fin());
    assert_eq!(text.opcode(), op::TEXT);
    assert_eq!(text.payload, b"fragmented");

    // A multi-byte character split across fragments is valid UTF-8 once reassembled.
    let s = "añb€c";
    let bytes = s.as_bytes();
    ws.send(op::TEXT, &bytes[..2]);
    ws.send(op::CONT, &bytes[2..5]);
    ws.send(op::FIN | op::CONT, &bytes[5..]);
    assert_eq!(ws.read_frame().unwrap().text(), s);

    // Binary in four fragments, one of them empty.
    ws.send(op::BINARY, &[0, 1, 2]);
    ws.send(op::CONT, &[]);
    ws.send(op::CONT, &[3, 4]);
    ws.send(op::FIN | op::CONT, &[255]);
    let bin = ws.read_frame().unwrap();
    assert_eq!((bin.fin(), bin.opcode()), (true, op::BINARY));
    assert_eq!(bin.payload, [0, 1, 2, 3, 4, 255]);

    // 64 fragments of 1 KiB add up to exactly the 64 KiB limit: allowed, echoed whole.
    let chunk: Vec<u8> = (0..1024).map(|i| (i % 256) as u8).collect();
    let mut all = Vec::new();
    for i in 0..64 {
        let first = match i {
            0 => op::BINARY,
            63 => op::FIN | op::CONT,
            _ => op::CONT,
        };
        ws.send(first, &chunk);
        all.extend_from_slice(&chunk);
    }
    let whole = ws.read_frame().unwrap();
    assert_eq!(whole.opcode(), op::BINARY);
    assert_eq!(whole.payload.len(), 64 * 1024);
    assert_eq!(whole.payload, all);

    // All frames of a message in one write, and a message right behind the handshake.
    let mut burst = client_frame(op::TEXT, b"one ", Some(MASK));
    burst.extend(client_frame(op::FIN | op::CONT, b"write", Some(MASK)));
    burst.extend(client_frame(op::FIN | op::TEXT, b"next", Some(MASK)));
    ws.send_raw(&burst);
    assert_eq!(ws.read_frame().unwrap().text(), "one write");
    assert_eq!(ws.read_frame().unwrap().text(), "next");

    // A frame written a byte at a time is still one message.
    let slow = client_frame(op::FIN | op::TEXT, b"drip", Some(MASK));
    for b in &slow {
        ws.send_raw(std::slice::from_ref(b));
    }
    assert_eq!(ws.read_frame().unwrap().text(), "drip");

    ws.send(op::FIN | op::CLOSE, &1000u16.to_be_bytes());
    assert_eq!(ws.read_close().unwrap().close_code(), 1000);
    assert!(ws.ends());
    server.shutdown();
}

#[test]
fn healthz_answers_ok() {
    let server = start(quiet_config(1));
    let (status, head, body) = http_get_full(server.local_addr(), "/healthz");
    assert_eq!(status, 200, "{head}");
    assert_eq!(body.trim(), "ok");
    assert!(head.contains("Content-Length: 3"), "{head}");
    server.shutdown();
}

/// Every family the issue lists, by its name in `# TYPE` lines.
const FAMILIES: [&str; 14] = [
    "tickcast_connections",
    "tickcast_accepted",
    "tickcast_handshakes",
    "tickcast_handshake_failures",
    "tickcast_messages_published",
    "tickcast_frames_delivered",
    "tickcast_bytes_written",
    "tickcast_drops",
    "tickcast_slow_consumer_disconnects",
    "tickcast_closes",
    "tickcast_shard_queue_depth",
    "tickcast_broadcast_latency_seconds",
    "tickcast_handshake_latency_seconds",
    "tickcast_client_errors",
];

#[test]
fn metrics_lists_every_family_and_the_counters_move() {
    let server = start(quiet_config(2));
    let addr = server.local_addr();
    let (status, head, body) = http_get_full(addr, "/metrics");
    assert_eq!(status, 200, "{head}");
    let content_type = head
        .lines()
        .find_map(|l| l.strip_prefix("Content-Type: "))
        .expect("a content type");
    assert!(
        content_type.starts_with("application/openmetrics-text")
            || content_type.starts_with("text/plain"),
        "{content_type}"
    );
    assert!(body.trim_end().ends_with("# EOF"), "{body}");
    let before = parse_metrics(&body);
    // The shard gauges exist from the start, for every shard.
    for shard in ["0", "1"] {
        assert!(
            before
                .text
                .contains(&format!("tickcast_connections{{shard=\"{shard}\"}}"))
        );
    }
    // So do the series of every label value that is known up front, at zero.
    for series in [
        r#"tickcast_handshake_failures_total{reason="not_found"} 0"#,
        r#"tickcast_handshake_failures_total{reason="token_expired"} 0"#,
        r#"tickcast_closes_total{code="1008"} 0"#,
        r#"tickcast_closes_total{code="4xxx"} 0"#,
        r#"tickcast_client_errors_total{code="invalid_json"} 0"#,
        r#"tickcast_accept_errors_total{reason="emfile"} 0"#,
        r#"tickcast_drops_total{shard="1",reason="outbox_full"} 0"#,
    ] {
        assert!(
            before.text.contains(series),
            "{series} missing from the first scrape"
        );
    }

    // Some traffic: one client, five messages on a topic, a refused request, a close.
    let (mut ws, _) = connect_stream(addr, "m");
    let p = server.publisher();
    for i in 0..5 {
        assert!(p.publish("m", &format!(r#"{{"i":{i}}}"#)));
    }
    let mut frame_bytes = 0;
    for _ in 0..5 {
        let m = next_data(&mut ws);
        frame_bytes += m.to_string().len();
    }
    ws.send(Message::text("nope")).unwrap();
    assert_eq!(next_json(&mut ws)["code"], "invalid_json");
    assert_eq!(
        status_of(&raw_http(addr, b"GET /nope HTTP/1.1\r\nHost: x\r\n\r\n")),
        404
    );
    ws.close(Some(tungstenite::protocol::CloseFrame {
        code: tungstenite::protocol::frame::coding::CloseCode::Normal,
        reason: "done".into(),
    }))
    .unwrap();
    // The server echoes the code.
    assert_eq!(read_until_close(&mut ws, READ_TIMEOUT), Some(1000));
    drop(ws);

    let delivered = |m: &Scrape| m.sum("tickcast_frames_delivered_total", &[]);
    wait_metric(
        addr,
        "tickcast_frames_delivered_total",
        &[],
        delivered(&before) + 5.0,
    );
    wait_metric(addr, "tickcast_closes_total", &[("code", "1000")], 1.0);
    // Latency is handed over by the shards about once a second.
    wait_metric(addr, "tickcast_broadcast_latency_seconds_count", &[], 5.0);
    // The one upgrade, timed from its accept.
    wait_metric(addr, "tickcast_handshake_latency_seconds_count", &[], 1.0);
    let after = scrape(addr);
    // Families with labels appear with their first sample; by now every one has one.
    for family in FAMILIES {
        assert!(
            after.has_family(family),
            "{family} missing:\n{}",
            after.text
        );
    }
    let moved =
        |name: &str, labels: &[(&str, &str)]| after.sum(name, labels) - before.sum(name, labels);
    // The client, the 404, and the scrapes in between.
    assert!(moved("tickcast_accepted_total", &[]) >= 3.0);
    assert_eq!(moved("tickcast_handshakes_total", &[]), 1.0);
    assert_eq!(moved("tickcast_frames_delivered_total", &[]), 5.0);
    assert!(moved("tickcast_bytes_written_total", &[]) >= frame_bytes as f64);
    assert_eq!(
        // Rooms share one `topic="rooms"` series; "m" is the only room here.
        after.sum("tickcast_messages_published_total", &[("topic", "rooms")]),
        5.0
    );
    assert_eq!(
        moved(
            "tickcast_handshake_failures_total",
            &[("reason", "not_found")]
        ),
        1.0
    );
    assert_eq!(
        moved("tickcast_client_errors_total", &[("code", "invalid_json")]),
        1.0
    );
    assert_eq!(after.sum("tickcast_drops_total", &[]), 0.0);
    server.shutdown();
}

#[test]
fn a_handshake_in_pieces_or_followed_by_frames_in_the_same_write_works() {
    use std::io::{Read, Write};
    let server = start(quiet_config(1));
    let addr = server.local_addr();
    let request = upgrade_request(
        "/echo",
        &format!("Sec-WebSocket-Key: {WS_KEY}\r\nSec-WebSocket-Version: 13\r\n"),
    );

    // Frames right behind the request head, in one write: processed after the upgrade.
    let mut stream = std::net::TcpStream::connect(addr).unwrap();
    stream.set_read_timeout(Some(READ_TIMEOUT)).unwrap();
    let mut bytes = request.clone().into_bytes();
    bytes.extend(client_frame(op::FIN | op::TEXT, b"early", Some(MASK)));
    bytes.extend(client_frame(op::FIN | op::PING, b"p", Some(MASK)));
    stream.write_all(&bytes).unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 1024];
    let frames = loop {
        let n = stream.read(&mut buf).unwrap();
        assert!(n > 0, "closed early: {got:?}");
        got.extend_from_slice(&buf[..n]);
        let text = String::from_utf8_lossy(&got).into_owned();
        if let Some(end) = text.find("\r\n\r\n") {
            assert!(text.starts_with("HTTP/1.1 101 "), "{text}");
            let mut rest = &got[end + 4..];
            let mut frames = Vec::new();
            while let Some((f, used)) = parse_server_frame(rest) {
                frames.push(f);
                rest = &rest[used..];
            }
            if frames.len() == 2 {
                break frames;
            }
        }
    };
    assert_eq!(frames[0].opcode(), op::TEXT);
    assert_eq!(frames[0].payload, b"early");
    assert_eq!(frames[1].opcode(), op::PONG);
    assert_eq!(frames[1].payload, b"p");
    drop(stream);

    // A request head written a few bytes at a time.
    let mut stream = std::net::TcpStream::connect(addr).unwrap();
    stream.set_nodelay(true).unwrap();
    for piece in request.as_bytes().chunks(7) {
        stream.write_all(piece).unwrap();
        stream.flush().unwrap();
    }
    let mut ws = RawWs::from_upgraded(stream);
    ws.send(op::FIN | op::TEXT, b"pieces");
    assert_eq!(ws.read_frame().unwrap().text(), "pieces");
    drop(ws);
    server.shutdown();
}

#[test]
fn a_burst_bigger_than_one_read_budget_is_echoed_completely() {
    const MESSAGES: usize = 48;
    const SIZE: usize = 16 * 1024;
    // 768 KiB at once is past the default byte burst, which /echo is charged to; this test
    // is about the read budget, so the limits are lifted.
    let mut cfg = quiet_config(1);
    cfg.publish_rate = 0.0;
    let server = start(cfg);
    let mut ws = RawWs::connect(server.local_addr(), "/echo");
    let mut burst = Vec::new();
    let bodies: Vec<Vec<u8>> = (0..MESSAGES)
        .map(|i| {
            let mut b = format!("{i:04}").into_bytes();
            b.resize(SIZE, b'a' + (i % 26) as u8);
            b
        })
        .collect();
    for body in &bodies {
        burst.extend(client_frame(op::FIN | op::BINARY, body, Some(MASK)));
    }
    // About 768 KiB in one write: more than the shard reads for one connection per turn.
    ws.send_raw(&burst);
    for body in &bodies {
        let f = ws.read_frame().expect("an echo");
        assert_eq!(f.opcode(), op::BINARY);
        assert_eq!(&f.payload[..4], &body[..4]);
        assert_eq!(f.payload, *body);
    }
    drop(ws);
    server.shutdown();
}
