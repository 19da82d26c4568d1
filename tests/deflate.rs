//! permessage-deflate on a real server, with a raw-frame client that negotiates it:
//! the offers and the answer, compressed broadcasts shared by deflate and plain clients in
//! one room, compressed client messages (whole and fragmented), the inflate bound, and
//! replays.

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};

use common::{RawWs, ServerFrame, WS_KEY, metric, op, quiet_config, start, upgrade_request};
use flate2::{Compress, Compression, Decompress, FlushCompress, FlushDecompress};
use serde_json::{Value, json};

/// What tickcast answers to an accepted offer.
const AGREED: &str = "permessage-deflate; server_no_context_takeover; client_no_context_takeover";

/// Sends an upgrade of `path` offering `extensions` (none when empty); returns the
/// connected client and the `Sec-WebSocket-Extensions` of the 101, if any.
fn upgrade(addr: SocketAddr, path: &str, extensions: &str) -> (RawWs, Option<String>) {
    let mut stream = TcpStream::connect(addr).unwrap();
    let offer = if extensions.is_empty() {
        String::new()
    } else {
        format!("Sec-WebSocket-Extensions: {extensions}\r\n")
    };
    let req = upgrade_request(
        path,
        &format!("Sec-WebSocket-Key: {WS_KEY}\r\nSec-WebSocket-Version: 13\r\n{offer}"),
    );
    stream.write_all(req.as_bytes()).unwrap();
    stream.set_read_timeout(Some(common::READ_TIMEOUT)).unwrap();
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        assert_eq!(stream.read(&mut byte).unwrap(), 1, "closed: {head:?}");
        head.push(byte[0]);
    }
    let head = String::from_utf8(head).unwrap();
    assert!(head.starts_with("HTTP/1.1 101 "), "{head}");
    let agreed = head
        .lines()
        .find_map(|l| l.strip_prefix("Sec-WebSocket-Extensions: "))
        .map(str::to_string);
    (RawWs::from_stream(stream), agreed)
}

/// A member of `room` that negotiated deflate (or not), its welcome read.
fn member(addr: SocketAddr, room: &str, id: &str, deflate: bool) -> RawWs {
    member_with(addr, room, id, deflate, false)
}

/// The same, asking for batches (`?batch=1`) when `batch`.
fn member_with(addr: SocketAddr, room: &str, id: &str, deflate: bool, batch: bool) -> RawWs {
    let offer = if deflate {
        "permessage-deflate; client_max_window_bits"
    } else {
        ""
    };
    let flag = if batch { "&batch=1" } else { "" };
    let path = format!("/ws?room={room}&client_id={id}{flag}");
    let (mut ws, agreed) = upgrade(addr, &path, offer);
    assert_eq!(agreed.as_deref(), deflate.then_some(AGREED));
    let welcome = ws.read_until(op::TEXT);
    assert!(welcome.text().contains("welcome"));
    ws
}

/// A message compressed as a client compresses it: raw DEFLATE, sync flush, tail removed.
fn deflated(payload: &[u8]) -> Vec<u8> {
    let mut c = Compress::new(Compression::default(), false);
    let mut out = Vec::with_capacity(payload.len() + 64);
    c.compress_vec(payload, &mut out, FlushCompress::Sync)
        .unwrap();
    assert!(out.ends_with(&[0, 0, 0xff, 0xff]));
    out.truncate(out.len() - 4);
    out
}

/// A data frame's text, inflated when RSV1 says it is compressed.
fn text_of(frame: &ServerFrame) -> String {
    if frame.first & 0x40 == 0 {
        return frame.text();
    }
    let mut input = frame.payload.clone();
    input.extend_from_slice(&[0, 0, 0xff, 0xff]);
    let mut out = Vec::with_capacity(1 << 20);
    Decompress::new(false)
        .decompress_vec(&input, &mut out, FlushDecompress::Sync)
        .unwrap();
    String::from_utf8(out).unwrap()
}

/// The next sequenced message on `room`: its frame (as sent) and its JSON.
fn next_message(ws: &mut RawWs, room: &str) -> (ServerFrame, Value) {
    loop {
        let f = ws.read_until(op::TEXT);
        let v: Value = serde_json::from_str(&text_of(&f)).unwrap();
        assert_ne!(v["type"], "error", "{v}");
        if v["topic"] == room && v.get("seq").is_some() {
            return (f, v);
        }
    }
}

fn publish_op(room: &str, data: &Value) -> Vec<u8> {
    json!({"op":"publish","topic":room,"data":data})
        .to_string()
        .into_bytes()
}

/// A kilobyte of JSON like a market snapshot: compresses well.
fn big_data(n: u64) -> Value {
    let levels: Vec<Value> = (0..20)
        .map(|i| json!({"px": 100.0 + i as f64 * 0.25, "qty": 1000 + i * 10, "side": "bid"}))
        .collect();
    json!({"n": n, "book": levels})
}

#[test]
fn offers_are_answered_per_rfc_7692() {
    let server = start(quiet_config(1));
    let addr = server.local_addr();
    for (offer, agreed) in [
        ("permessage-deflate; client_max_window_bits", Some(AGREED)),
        ("permessage-deflate", Some(AGREED)),
        (
            "permessage-deflate; server_max_window_bits=10, permessage-deflate",
            Some(AGREED),
        ),
        // Only the full window can be shared: declined, served plain.
        ("permessage-deflate; server_max_window_bits=10", None),
        ("permessage-deflate; bogus_param", None),
        ("x-webkit-deflate-frame", None),
        ("", None),
    ] {
        let (_ws, got) = upgrade(addr, "/ws?topics=ticks", offer);
        assert_eq!(got.as_deref(), agreed, "offer {offer:?}");
        let (_ws, got) = upgrade(addr, "/echo", offer);
        assert_eq!(got.as_deref(), agreed, "/echo, offer {offer:?}");
    }
    assert_eq!(metric(addr, "tickcast_deflate_negotiated_total", &[]), 6.0);
    assert_eq!(metric(addr, "tickcast_deflate_declined_total", &[]), 4.0);
    server.shutdown();

    let mut cfg = quiet_config(1);
    cfg.deflate = false;
    let server = start(cfg);
    let (_ws, got) = upgrade(server.local_addr(), "/ws", "permessage-deflate");
    assert_eq!(got, None, "--deflate off declines every offer");
    server.shutdown();
}

#[test]
fn deflate_and_plain_members_of_one_room_read_the_same_messages() {
    let server = start(quiet_config(2));
    let addr = server.local_addr();
    let room = "room.mix";
    let mut zipped: Vec<RawWs> = (0..2)
        .map(|i| member(addr, room, &format!("z{i}"), true))
        .collect();
    let mut plain: Vec<RawWs> = (0..2)
        .map(|i| member(addr, room, &format!("p{i}"), false))
        .collect();
    let mut publisher = member(addr, room, "pub", false);
    for n in 0..5u64 {
        publisher.send(op::FIN | op::TEXT, &publish_op(room, &big_data(n)));
        publisher.send(op::FIN | op::TEXT, &publish_op(room, &json!({"n": n})));
    }
    let mut compressed = 0;
    for i in 0..10 {
        let mut texts = Vec::new();
        for ws in zipped.iter_mut() {
            let (f, _) = next_message(ws, room);
            let big = i % 2 == 0;
            // A kilobyte compresses; a tiny message stays plain (under the minimum).
            assert_eq!(f.first & 0x40 != 0, big, "message {i}: {:#x}", f.first);
            if big {
                compressed += 1;
                assert!(
                    f.payload.len() * 2 < text_of(&f).len(),
                    "2x smaller at least"
                );
            }
            texts.push(text_of(&f));
        }
        for ws in plain.iter_mut() {
            let (f, _) = next_message(ws, room);
            assert_eq!(
                f.first,
                op::FIN | op::TEXT,
                "plain clients get plain frames"
            );
            texts.push(f.text());
        }
        assert!(
            texts.windows(2).all(|w| w[0] == w[1]),
            "every member reads the same bytes: {texts:?}"
        );
    }
    assert_eq!(compressed, 10);
    // Compressed once per message, not once per client or per shard.
    assert_eq!(metric(addr, "tickcast_deflate_compressed_total", &[]), 5.0);
    server.shutdown();
}

#[test]
fn compressed_publishes_are_inflated_whole_or_fragmented() {
    let server = start(quiet_config(1));
    let addr = server.local_addr();
    let room = "room.up";
    let mut zipper = member(addr, room, "zip", true);
    let mut reader = member(addr, room, "reader", false);
    let body = publish_op(room, &big_data(1));
    let z = deflated(&body);
    // One frame: FIN + RSV1 + text.
    zipper.send(op::FIN | 0x40 | op::TEXT, &z);
    // Three fragments, RSV1 on the first only.
    let body2 = publish_op(room, &big_data(2));
    let z2 = deflated(&body2);
    let (a, rest) = z2.split_at(z2.len() / 3);
    let (b, c) = rest.split_at(rest.len() / 2);
    zipper.send(0x40 | op::TEXT, a);
    zipper.send(op::CONT, b);
    zipper.send(op::FIN | op::CONT, c);
    // And a plain one: compression is per message.
    zipper.send(op::FIN | op::TEXT, &publish_op(room, &json!({"n": 3})));
    for n in 1..=3u64 {
        let (_, v) = next_message(&mut reader, room);
        assert_eq!(v["data"]["n"], n);
        assert_eq!(v["from"], "zip");
        if n < 3 {
            assert_eq!(v["data"], big_data(n));
        }
    }
    assert_eq!(metric(addr, "tickcast_inflated_messages_total", &[]), 2.0);

    // /echo reads compressed messages too.
    let (mut echo, agreed) = upgrade(addr, "/echo", "permessage-deflate");
    assert_eq!(agreed.as_deref(), Some(AGREED));
    echo.send(
        op::FIN | 0x40 | op::TEXT,
        &deflated(b"echo me, echo me, echo me"),
    );
    assert_eq!(
        text_of(&echo.read_until(op::TEXT)),
        "echo me, echo me, echo me"
    );
    server.shutdown();
}

#[test]
fn a_deflate_bomb_gets_1009_and_bad_data_1007_while_the_room_goes_on() {
    let mut cfg = quiet_config(1);
    cfg.max_message = 64 * 1024;
    let server = start(cfg);
    let addr = server.local_addr();
    let room = "room.bomb";
    let mut reader = member(addr, room, "reader", true);
    let mut publisher = member(addr, room, "pub", false);

    // 16 MiB of one byte: a few KiB on the wire, 256 times the limit once inflated.
    let mut bomber = member(addr, room, "bomber", true);
    let bomb = deflated(&vec![b' '; 16 << 20]);
    assert!(bomb.len() < 64 * 1024, "the bomb fits the frame limit");
    bomber.send(op::FIN | 0x40 | op::TEXT, &bomb);
    let close = bomber.read_close().expect("a close frame");
    assert_eq!(close.close_code(), 1009);

    let mut garbler = member(addr, room, "garbler", true);
    garbler.send(op::FIN | 0x40 | op::TEXT, b"\xff\xfe\xfd\xfc\xfb");
    assert_eq!(
        garbler.read_close().expect("a close frame").close_code(),
        1007
    );

    // RSV1 from a client that did not negotiate deflate is a protocol error.
    let mut plain = member(addr, room, "plain", false);
    plain.send(op::FIN | 0x40 | op::TEXT, &deflated(b"{}"));
    assert_eq!(
        plain.read_close().expect("a close frame").close_code(),
        1002
    );

    assert_eq!(metric(addr, "tickcast_inflate_refused_total", &[]), 2.0);
    // The room carries on.
    publisher.send(op::FIN | op::TEXT, &publish_op(room, &big_data(7)));
    let (_, v) = next_message(&mut reader, room);
    assert_eq!(v["data"]["n"], 7);
    server.shutdown();
}

#[test]
fn replays_give_deflate_clients_the_compressed_frames() {
    let server = start(quiet_config(1));
    let addr = server.local_addr();
    let room = "room.replay";
    // A deflate member makes the mixer compress the room's messages.
    let mut live = member(addr, room, "live", true);
    let mut publisher = member(addr, room, "pub", false);
    for n in 1..=3u64 {
        publisher.send(op::FIN | op::TEXT, &publish_op(room, &big_data(n)));
    }
    let mut live_texts = Vec::new();
    for _ in 1..=3 {
        live_texts.push(text_of(&next_message(&mut live, room).0));
    }
    for (id, deflate) in [("zr", true), ("pr", false)] {
        let offer = if deflate { "permessage-deflate" } else { "" };
        let (mut ws, _) = upgrade(addr, &format!("/ws?since={room}:0&client_id={id}"), offer);
        let mut texts = Vec::new();
        for _ in 1..=3 {
            let (f, _) = next_message(&mut ws, room);
            assert_eq!(f.first & 0x40 != 0, deflate, "{id}: {:#x}", f.first);
            texts.push(text_of(&f));
        }
        assert_eq!(texts, live_texts, "{id} replays the same messages");
    }
    server.shutdown();
}

/// Reads data frames until `count` sequenced messages of `room` arrived (a frame of a
/// `batch` client may hold several, one per line). Returns their texts, how many frames
/// carried them, and how many of those frames were compressed.
fn read_messages(
    ws: &mut RawWs,
    room: &str,
    count: usize,
    batch: bool,
) -> (Vec<String>, usize, usize) {
    let (mut texts, mut frames, mut compressed) = (Vec::new(), 0, 0);
    while texts.len() < count {
        let f = ws.read_until(op::TEXT);
        let mut sequenced = 0;
        let text = text_of(&f);
        let lines: Vec<&str> = if batch {
            text.split('\n').collect()
        } else {
            vec![&text]
        };
        for line in lines {
            let v: Value = serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line:?}"));
            assert_ne!(v["type"], "error", "{v}");
            if v["topic"] == room && v.get("seq").is_some() {
                texts.push(line.to_string());
                sequenced += 1;
            }
        }
        if sequenced > 0 {
            frames += 1;
            compressed += usize::from(f.first & 0x40 != 0);
        }
    }
    (texts, frames, compressed)
}

#[test]
fn batch_clients_read_a_run_as_one_message_compressed_once() {
    let mut cfg = quiet_config(1);
    // Frames pile up for 100 ms before the shard is woken, so they reach it as one run.
    cfg.linger = std::time::Duration::from_millis(100);
    let server = start(cfg);
    let addr = server.local_addr();
    let room = "room.batch";
    let join = |id: &str, deflate: bool, batch: bool| member_with(addr, room, id, deflate, batch);
    let mut clients = [
        join("plain", false, false),
        join("zip", true, false),
        join("batch", false, true),
        join("zipbatch", true, true),
    ];
    let mut publisher = join("pub", false, false);
    // Six messages in one write; the third has a newline between tokens of its data, which
    // every client gets as a space, so that batches split on newlines only.
    let mut burst = Vec::new();
    for n in 0..6u64 {
        let op = if n == 2 {
            format!("{{\"op\":\"publish\",\"topic\":\"{room}\",\"data\":{{\"n\":\n2}}}}")
                .into_bytes()
        } else {
            publish_op(room, &big_data(n))
        };
        burst.extend(common::client_frame(
            op::FIN | op::TEXT,
            &op,
            Some([1, 2, 3, 4]),
        ));
    }
    publisher.send_raw(&burst);
    // Then three more, which batch.
    let mut burst = Vec::new();
    for n in 6..9u64 {
        let op = publish_op(room, &big_data(n));
        burst.extend(common::client_frame(
            op::FIN | op::TEXT,
            &op,
            Some([1, 2, 3, 4]),
        ));
    }
    std::thread::sleep(std::time::Duration::from_millis(300));
    publisher.send_raw(&burst);

    let mut seen = Vec::new();
    for (i, ws) in clients.iter_mut().enumerate() {
        seen.push(read_messages(ws, room, 9, i >= 2));
    }
    let texts: Vec<&Vec<String>> = seen.iter().map(|(t, _, _)| t).collect();
    assert!(
        texts.windows(2).all(|w| w[0] == w[1]),
        "everyone reads the same messages"
    );
    let frames: Vec<usize> = seen.iter().map(|(_, f, _)| *f).collect();
    assert_eq!(frames[..2], [9, 9], "frame per message without ?batch=1");
    assert!(texts[0][2].contains("{\"n\": 2}"), "{}", texts[0][2]);
    assert!(
        frames[2] < 9 && frames[3] < 9,
        "runs arrive as one message: {frames:?}"
    );
    assert_eq!(
        frames[2], frames[3],
        "the same batches, plain or compressed"
    );
    assert!(
        seen[3].2 >= 1,
        "the deflate batch client gets compressed batches"
    );
    assert!(metric(addr, "tickcast_deflate_batches_compressed_total", &[]) >= 1.0);

    // Anything but 0 or 1 is refused.
    let resp = common::raw_http(
        addr,
        upgrade_request(
            "/ws?batch=yes",
            &format!("Sec-WebSocket-Key: {WS_KEY}\r\nSec-WebSocket-Version: 13\r\n"),
        )
        .as_bytes(),
    );
    assert_eq!(common::status_of(&resp), 400, "{resp}");
    assert_eq!(
        metric(
            addr,
            "tickcast_handshake_failures_total",
            &[("reason", "bad_batch")]
        ),
        1.0
    );
    server.shutdown();
}
