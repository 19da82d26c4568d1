//! What a client's subscription requests give it, where a newcomer could be surprised: `*`
//! beside rooms it joined, repeated query parameters, the topics a bare `since` gives, a
//! resume of a topic it already follows, and the presence a newcomer is sent.

mod common;

use std::net::SocketAddr;

use common::*;
use serde_json::{Value, json};
use tickcast::config::ServerConfig;
use tungstenite::Message;

fn send(ws: &mut Client, op: Value) {
    ws.send(Message::text(op.to_string())).unwrap();
}

fn publish(ws: &mut Client, topic: &str, data: Value) {
    send(ws, json!({"op": "publish", "topic": topic, "data": data}));
}

/// Reads until a message matches `pred` (bounded by count and the read timeout), failing on
/// any error frame; returns everything read, the match last.
fn read_until(ws: &mut Client, what: &str, pred: impl Fn(&Value) -> bool) -> Vec<Value> {
    let mut seen = Vec::new();
    for _ in 0..10_000 {
        let v = next_json(ws);
        assert_ne!(v["type"], "error", "while waiting for {what}: {v}");
        let done = pred(&v);
        seen.push(v);
        if done {
            return seen;
        }
    }
    panic!("never saw {what}");
}

/// Joins with `query` as `id`; returns the client and its welcome, once the snapshot of
/// `room` came (the connection is then subscribed).
fn join(addr: SocketAddr, query: &str, id: &str, room: &str) -> (Client, Value) {
    let mut ws = connect(addr, &format!("/ws?{query}&client_id={id}"));
    let welcome = next_json(&mut ws);
    assert_eq!(welcome["type"], "welcome", "{welcome}");
    read_until(&mut ws, "the snapshot", |v| {
        v["event"] == "snapshot" && v["topic"] == room
    });
    (ws, welcome)
}

fn is_data(v: &Value, topic: &str, n: u64) -> bool {
    v["topic"] == topic && v.get("seq").is_some() && v["data"]["n"] == n
}

fn data_of(seen: &[Value], topic: &str) -> Vec<u64> {
    seen.iter()
        .filter(|v| v["topic"] == topic && v.get("seq").is_some())
        .map(|v| v["data"]["n"].as_u64().unwrap())
        .collect()
}

fn presence(seen: &[Value], event: &str, client_id: &str) -> usize {
    seen.iter()
        .filter(|v| v["type"] == "presence" && v["event"] == event && v["client_id"] == client_id)
        .count()
}

#[test]
fn subscribing_to_every_topic_keeps_the_rooms_joined() {
    let server = start(quiet_config(2));
    let addr = server.local_addr();
    let (mut alice, _) = join(addr, "room=room.a", "alice", "room.a");
    let (mut bob, _) = join(addr, "room=room.a", "bob", "room.a");
    read_until(&mut alice, "bob's join", |v| {
        v["event"] == "join" && v["client_id"] == "bob"
    });

    send(&mut alice, json!({"op": "subscribe", "topics": ["*"]}));
    read_until(&mut alice, "the ack", |v| v["type"] == "subscribed");
    // Still a member: its publish is taken (no `not_in_room`), and reaches bob, who sees no
    // `leave` on the way.
    publish(&mut alice, "room.a", json!({"n": 1}));
    let seen = read_until(&mut bob, "alice's message", |v| is_data(v, "room.a", 1));
    assert_eq!(presence(&seen, "leave", "alice"), 0, "{seen:?}");
    assert_eq!(who(&mut bob, "room.a").0, ["alice", "bob"]);
    // `*` brings the room's messages once, and other topics too.
    publish(&mut bob, "room.a", json!({"n": 2}));
    server.publisher().publish("elsewhere", r#"{"n":3}"#);
    publish(&mut bob, "room.a", json!({"n": 4}));
    let seen = read_until(&mut alice, "the last message", |v| is_data(v, "room.a", 4));
    assert_eq!(data_of(&seen, "room.a"), [1, 2, 4], "each once: {seen:?}");
    assert_eq!(data_of(&seen, "elsewhere"), [3]);

    // Unsubscribing `*` leaves the room joined and subscribed by name, with no presence
    // change: only its messages come, each once.
    send(&mut alice, json!({"op": "unsubscribe", "topics": ["*"]}));
    read_until(&mut alice, "the ack", |v| v["type"] == "unsubscribed");
    server.publisher().publish("elsewhere", r#"{"n":5}"#);
    publish(&mut bob, "room.a", json!({"n": 6}));
    let seen = read_until(&mut alice, "the message after `*`", |v| {
        is_data(v, "room.a", 6)
    });
    assert_eq!(data_of(&seen, "room.a"), [6], "{seen:?}");
    assert!(data_of(&seen, "elsewhere").is_empty(), "{seen:?}");
    publish(&mut alice, "room.a", json!({"n": 7}));
    let seen = read_until(&mut bob, "alice's message", |v| is_data(v, "room.a", 7));
    assert_eq!(presence(&seen, "leave", "alice"), 0, "{seen:?}");

    // The same at the upgrade: `topics=*` beside a room joins the room.
    let (mut carol, welcome) = join(addr, "topics=*&room=room.a", "carol", "room.a");
    assert_eq!(welcome["topics"], json!(["room.a", "*"]));
    publish(&mut carol, "room.a", json!({"n": 8}));
    read_until(&mut carol, "carol's own message", |v| {
        is_data(v, "room.a", 8)
    });
    assert_eq!(who(&mut bob, "room.a").0, ["alice", "bob", "carol"]);
    for ws in [alice, bob, carol] {
        close_client(ws);
    }
    server.shutdown();
}

#[test]
fn every_repeated_room_or_topics_parameter_counts_within_the_topic_limit() {
    let server = start(ServerConfig {
        max_topics_per_conn: 3,
        ..quiet_config(1)
    });
    let addr = server.local_addr();
    let (mut ws, welcome) = join(addr, "room=room.a&room=room.b", "dana", "room.b");
    assert_eq!(welcome["topics"], json!(["room.a", "room.b"]));
    for room in ["room.a", "room.b"] {
        publish(&mut ws, room, json!({"n": 1}));
        read_until(&mut ws, room, |v| is_data(v, room, 1));
    }
    close_client(ws);
    let (mut ws, welcome) = join(
        addr,
        "topics=room.c&topics=ticks&room=room.d",
        "eve",
        "room.d",
    );
    assert_eq!(welcome["topics"], json!(["room.c", "ticks", "room.d"]));
    publish(&mut ws, "room.c", json!({"n": 1}));
    read_until(&mut ws, "room.c", |v| is_data(v, "room.c", 1));
    close_client(ws);
    // Past the limit, repeated or not: 400, as for one long list.
    for query in [
        "room=room.a&room=room.b&room=room.c&room=room.d",
        "topics=a,b&topics=c&room=room.d",
    ] {
        let resp = raw_http(
            addr,
            upgrade_request(
                &format!("/ws?{query}"),
                &format!("Sec-WebSocket-Key: {WS_KEY}\r\nSec-WebSocket-Version: 13\r\n"),
            )
            .as_bytes(),
        );
        assert_eq!(status_of(&resp), 400, "{query}: {resp}");
        assert!(resp.contains("at most 3 topics"), "{resp}");
    }
    server.shutdown();
}

#[test]
fn a_since_names_the_topics_the_client_gets_and_nothing_names_every_topic() {
    let server = start(quiet_config(1));
    let addr = server.local_addr();
    let p = server.publisher();
    let mut ws = connect(addr, "/ws?since=news:0");
    let welcome = next_json(&mut ws);
    assert_eq!(welcome["topics"], json!(["news"]), "{welcome}");
    let mut all = connect(addr, "/ws");
    let welcome = next_json(&mut all);
    assert_eq!(welcome["topics"], json!(["*"]), "{welcome}");
    // The resumed topic only: a message elsewhere, sequenced first, never arrives (`all`
    // was subscribed by the time its welcome came; `news` comes whether sequenced before
    // its replay or after).
    p.publish("other", r#"{"n":1}"#);
    p.publish("news", r#"{"n":2}"#);
    let seen = read_until(&mut ws, "news", |v| is_data(v, "news", 2));
    assert!(data_of(&seen, "other").is_empty(), "{seen:?}");
    let seen = read_until(&mut all, "news", |v| is_data(v, "news", 2));
    assert_eq!(data_of(&seen, "other"), [1], "{seen:?}");
    close_client(ws);
    close_client(all);
    server.shutdown();
}

#[test]
fn a_newcomer_gets_the_snapshot_with_itself_and_no_join_of_its_own() {
    let server = start(quiet_config(2));
    let addr = server.local_addr();
    let (mut alice, _) = join(addr, "room=room.n", "alice", "room.n");
    let mut bob = connect(addr, "/ws?room=room.n&client_id=bob");
    assert_eq!(next_json(&mut bob)["type"], "welcome");
    let seen = read_until(&mut bob, "the snapshot", |v| v["event"] == "snapshot");
    let snapshot = &seen[seen.len() - 1];
    assert_eq!(snapshot["count"], 2, "{snapshot}");
    // The members already there see the newcomer's join.
    read_until(&mut alice, "bob's join", |v| {
        v["event"] == "join" && v["client_id"] == "bob"
    });
    publish(&mut alice, "room.n", json!({"n": 1}));
    let seen = read_until(&mut bob, "alice's message", |v| is_data(v, "room.n", 1));
    assert_eq!(presence(&seen, "join", "bob"), 0, "{seen:?}");
    // A resume of a room not joined yet joins it the same way.
    let mut carol = connect(addr, "/ws?since=room.n:0&client_id=carol");
    assert_eq!(next_json(&mut carol)["type"], "welcome");
    read_until(&mut alice, "carol's join", |v| {
        v["event"] == "join" && v["client_id"] == "carol"
    });
    publish(&mut alice, "room.n", json!({"n": 2}));
    let seen = read_until(&mut carol, "alice's message", |v| is_data(v, "room.n", 2));
    assert_eq!(presence(&seen, "join", "carol"), 0, "{seen:?}");
    assert_eq!(
        data_of(&seen, "room.n"),
        [1, 2],
        "the replay, then live: {seen:?}"
    );
    for ws in [alice, bob, carol] {
        close_client(ws);
    }
    server.shutdown();
}

#[test]
fn a_resume_never_sends_a_message_twice() {
    let server = start(quiet_config(1));
    let addr = server.local_addr();
    let (mut ws, _) = join(addr, "room=room.r", "rita", "room.r");
    for n in 1..=5 {
        publish(&mut ws, "room.r", json!({"n": n}));
    }
    let seen = read_until(&mut ws, "the fifth", |v| is_data(v, "room.r", 5));
    let first = seen
        .iter()
        .find(|v| is_data(v, "room.r", 1))
        .and_then(|v| v["seq"].as_u64())
        .unwrap();
    // Followed live already: the resume adds nothing it was sent, whatever `since` says.
    send(
        &mut ws,
        json!({"op": "resume", "since": {"room.r": first - 1}}),
    );
    send(
        &mut ws,
        json!({"op": "resume", "since": {"room.r": first + 2}}),
    );
    publish(&mut ws, "room.r", json!({"n": 6}));
    let seen = read_until(&mut ws, "the sixth", |v| is_data(v, "room.r", 6));
    assert_eq!(data_of(&seen, "room.r"), [6], "{seen:?}");
    // A topic not followed is replayed after `since`, then live.
    let mut back = connect(
        addr,
        &format!("/ws?since=room.r:{}&client_id=back", first + 2),
    );
    assert_eq!(next_json(&mut back)["type"], "welcome");
    publish(&mut ws, "room.r", json!({"n": 7}));
    let seen = read_until(&mut back, "the seventh", |v| is_data(v, "room.r", 7));
    assert_eq!(data_of(&seen, "room.r"), [4, 5, 6, 7], "{seen:?}");
    close_client(ws);
    close_client(back);
    server.shutdown();
}
