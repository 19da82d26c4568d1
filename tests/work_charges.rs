//! A message that asks for work out of proportion to its size pays for it: a `subscribe`
//! costs a message token per room it joins, a `resume` one per topic it names, and the bytes
//! a replay queues are owed to the byte bucket, so the messages after a large replay wait
//! until the debt is paid back. Refused operations do nothing.

mod common;

use std::time::{Duration, Instant};

use common::*;
use serde_json::{Value, json};
use tungstenite::Message;

/// The next frame that is neither presence nor telemetry: an ack, an error or a message.
fn next_reply(ws: &mut Client) -> Value {
    loop {
        let v = next_json(ws);
        if v["type"] != "presence" && v["topic"] != "telemetry" {
            return v;
        }
    }
}

fn subscribe(ws: &mut Client, rooms: &[String]) -> Value {
    ws.send(Message::text(
        json!({"op":"subscribe","topics":rooms}).to_string(),
    ))
    .unwrap();
    next_reply(ws)
}

fn rooms(prefix: &str, n: usize) -> Vec<String> {
    (0..n).map(|i| format!("{prefix}{i}")).collect()
}

#[test]
fn a_subscribe_costs_a_token_per_room_and_a_refused_one_joins_nothing() {
    let mut cfg = quiet_config(1);
    // Ten tokens, and hardly any refill over the test.
    cfg.publish_burst = 10;
    cfg.publish_rate = 0.01;
    let server = start(cfg);
    let addr = server.local_addr();
    let mut ws = connect(addr, "/ws?topics=ticks");
    assert_eq!(next_json(&mut ws)["type"], "welcome");

    // 5 rooms: 5 tokens (5 left).
    let v = subscribe(&mut ws, &rooms("a", 5));
    assert_eq!(v["type"], "subscribed", "{v}");
    // 6 rooms: 6 tokens, not there: refused, nothing joined (the message took its one).
    let v = subscribe(&mut ws, &rooms("b", 6));
    assert_eq!(v["type"], "error", "{v}");
    assert_eq!(v["code"], "rate_limited", "{v}");
    // 4 rooms: the 4 left.
    let v = subscribe(&mut ws, &rooms("c", 4));
    assert_eq!(v["type"], "subscribed", "{v}");
    let v = subscribe(&mut ws, &rooms("d", 1));
    assert_eq!(v["code"], "rate_limited", "{v}");

    // Only the accepted joins happened: rooms a* and c* have a member, b* none.
    let members = |room: &str| {
        let mut probe = connect(addr, &format!("/ws?room={room}&client_id=probe-{room}"));
        loop {
            let v = next_json(&mut probe);
            if v["type"] == "presence" && v["event"] == "snapshot" {
                close_client(probe);
                return v["members"].as_array().map_or(0, Vec::len);
            }
        }
    };
    assert_eq!(members("a0"), 2, "a0: the subscriber and the probe");
    assert_eq!(members("c3"), 2);
    assert_eq!(members("b0"), 1, "b0: the probe alone");
    close_client(ws);
    server.shutdown();
}

#[test]
fn a_replay_is_owed_to_the_byte_bucket() {
    let mut cfg = quiet_config(1);
    cfg.publish_byte_rate = 32.0 * 1024.0;
    cfg.publish_byte_burst = 64 * 1024;
    cfg.max_message = 32 * 1024;
    let server = start(cfg);
    let addr = server.local_addr();
    // 256 KiB of history on `ticks` (the ticker is off), all of it sequenced.
    let publisher = server.publisher();
    let body = "x".repeat(2 * 1024);
    for i in 0..128 {
        assert!(publisher.publish("ticks", &json!({"i": i, "pad": body}).to_string()));
    }
    wait_metric(
        addr,
        "tickcast_messages_published_total",
        &[("topic", "ticks")],
        128.0,
    );
    let mut ws = connect(addr, "/ws?topics=telemetry");
    assert_eq!(next_json(&mut ws)["type"], "welcome");
    let mut seen = 0;
    ws.send(Message::text(
        json!({"op":"resume","since":{"ticks":0}}).to_string(),
    ))
    .unwrap();
    while seen < 128 {
        let v = next_json(&mut ws);
        assert_ne!(v["type"], "error", "{v}");
        if v["topic"] == "ticks" && v.get("seq").is_some() {
            seen += 1;
        }
    }
    // The replay left the bucket a burst below zero: the next message is refused...
    ws.send(Message::text(r#"{"op":"unsubscribe","topics":["none"]}"#))
        .unwrap();
    let v = next_reply(&mut ws);
    assert_eq!(v["code"], "rate_limited", "{v}");
    // ...until the debt is paid back at the byte rate (2 s and more here); a try every
    // 500 ms, well short of the strikes that close a connection.
    let refused_at = Instant::now();
    let deadline = refused_at + WAIT_LIMIT;
    loop {
        std::thread::sleep(Duration::from_millis(500));
        ws.send(Message::text(r#"{"op":"unsubscribe","topics":["none"]}"#))
            .unwrap();
        let v = next_reply(&mut ws);
        if v["type"] == "unsubscribed" {
            break;
        }
        assert_eq!(v["code"], "rate_limited", "{v}");
        assert!(Instant::now() < deadline, "the debt was never paid");
    }
    close_client(ws);
    server.shutdown();
}
