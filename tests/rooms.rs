//! Rooms and publishing: publishes from any shard reach every member on every shard once and
//! in one order, with `from`; chat commands; presence deltas and the join snapshot; history
//! and resume across a disconnect.

mod common;

use std::time::Duration;

use common::*;
use serde_json::{Value, json};
use tungstenite::Message;

/// Reads JSON messages until one matches `pred` (bounded by count and the read timeout).
fn next_where(ws: &mut Client, what: &str, pred: impl Fn(&Value) -> bool) -> Value {
    for _ in 0..10_000 {
        let v = next_json(ws);
        if pred(&v) {
            return v;
        }
    }
    panic!("never saw {what}");
}

/// Joins `room` as `client_id`, reads the welcome and the presence snapshot.
fn join(addr: std::net::SocketAddr, room: &str, client_id: &str) -> (Client, Value) {
    let mut ws = connect(addr, &format!("/ws?room={room}&client_id={client_id}"));
    let welcome = next_json(&mut ws);
    assert_eq!(welcome["type"], "welcome", "{welcome}");
    assert_eq!(welcome["client_id"], client_id);
    let snapshot = next_where(&mut ws, "snapshot", |v| v["event"] == "snapshot");
    (ws, snapshot)
}

fn publish(ws: &mut Client, topic: &str, data: Value) {
    let op = json!({"op": "publish", "topic": topic, "data": data});
    ws.send(Message::text(op.to_string())).unwrap();
}

fn data_msg(ws: &mut Client, topic: &str) -> Value {
    next_where(ws, "a data message", |v| {
        v["topic"] == topic && v.get("seq").is_some()
    })
}

#[test]
fn publishes_reach_every_member_on_every_shard_once_in_one_order() {
    let server = start(quiet_config(2));
    let addr = server.local_addr();
    let mut members: Vec<(String, Client, u64)> = (0..6)
        .map(|i| {
            let id = format!("m{i}");
            let mut ws = connect(addr, &format!("/ws?room=room.x&client_id={id}"));
            let welcome = next_json(&mut ws);
            let shard = welcome["shard"].as_u64().unwrap();
            (id, ws, shard)
        })
        .collect();
    let shards: std::collections::BTreeSet<u64> = members.iter().map(|m| m.2).collect();
    assert_eq!(shards.len(), 2, "members spread over both shards");
    // Wait until everyone is in: the last member's snapshot counts 6.
    next_where(&mut members[5].1, "a snapshot of 6", |v| {
        v["event"] == "snapshot" && v["count"] == 6
    });
    // Three publishers, interleaved.
    for n in 0..20 {
        for (p, member) in members.iter_mut().take(3).enumerate() {
            publish(&mut member.1, "room.x", json!({"n": n, "p": p}));
        }
    }
    let mut orders = Vec::new();
    for (id, ws, _) in &mut members {
        let mut got = Vec::new();
        for _ in 0..60 {
            let m = data_msg(ws, "room.x");
            let from = m["from"].as_str().unwrap().to_string();
            assert_eq!(
                from,
                format!("m{}", m["data"]["p"]),
                "from names the publisher: {m}"
            );
            got.push((
                m["seq"].as_u64().unwrap(),
                from,
                m["data"]["n"].as_u64().unwrap(),
            ));
        }
        let seqs: Vec<u64> = got.iter().map(|g| g.0).collect();
        assert_eq!(
            seqs,
            (1..=60).collect::<Vec<_>>(),
            "{id}: every message once, in seq order"
        );
        // Each publisher's own messages stay in the order it sent them.
        for p in 0..3 {
            let mine: Vec<u64> = got
                .iter()
                .filter(|g| g.1 == format!("m{p}"))
                .map(|g| g.2)
                .collect();
            assert_eq!(mine, (0..20).collect::<Vec<_>>());
        }
        orders.push(got);
    }
    assert!(
        orders.windows(2).all(|w| w[0] == w[1]),
        "every member saw the same order"
    );
    for (_, ws, _) in members {
        close_client(ws);
    }
    server.shutdown();
}

#[test]
fn presence_snapshot_and_deltas() {
    let server = start(quiet_config(2));
    let addr = server.local_addr();
    let (mut alice, snap) = join(addr, "room.p", "alice");
    assert_eq!(snap["count"], 1);
    assert_eq!(snap["members"], json!([{"client_id": "alice"}]));
    let (bob, snap) = join(addr, "room.p", "bob");
    assert_eq!(snap["count"], 2);
    let ids: Vec<&str> = snap["members"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["client_id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["alice", "bob"]);
    let delta = next_where(&mut alice, "bob's join", |v| {
        v["type"] == "presence" && v["event"] == "join" && v["client_id"] == "bob"
    });
    assert_eq!(delta["count"], 2);
    assert!(
        delta.get("members").is_none(),
        "deltas never carry the full list"
    );
    close_client(bob);
    let delta = next_where(&mut alice, "bob's leave", |v| {
        v["type"] == "presence" && v["event"] == "leave"
    });
    assert_eq!(
        (delta["client_id"].as_str(), delta["count"].as_u64()),
        (Some("bob"), Some(1))
    );
    // Leaving by unsubscribe is a leave too.
    let (mut carol, _) = join(addr, "room.p", "carol");
    next_where(&mut alice, "carol's join", |v| {
        v["event"] == "join" && v["client_id"] == "carol"
    });
    carol
        .send(Message::text(r#"{"op":"unsubscribe","topics":["room.p"]}"#))
        .unwrap();
    next_where(&mut alice, "carol's leave", |v| {
        v["event"] == "leave" && v["client_id"] == "carol"
    });
    close_client(carol);
    close_client(alice);
    server.shutdown();
}

#[test]
fn large_rooms_get_counts_instead_of_lists() {
    let mut cfg = quiet_config(1);
    cfg.presence_list_max = 2;
    let server = start(cfg);
    let addr = server.local_addr();
    let (mut first, _) = join(addr, "room.big", "u0");
    let mut others = Vec::new();
    for i in 1..4 {
        let (ws, snap) = join(addr, "room.big", &format!("u{i}"));
        if i >= 2 {
            assert_eq!(snap["truncated"], true, "{snap}");
            assert!(snap.get("members").is_none());
            assert_eq!(snap["count"], i + 1);
        }
        others.push(ws);
    }
    let count = next_where(&mut first, "a count announcement", |v| {
        v["event"] == "count"
    });
    assert_eq!(count["count"], 4);
    for ws in others {
        close_client(ws);
    }
    close_client(first);
    server.shutdown();
}

#[test]
fn chat_commands() {
    let server = start(quiet_config(2));
    let addr = server.local_addr();
    let (mut alice, _) = join(addr, "room.c", "alice");
    let (mut bob, _) = join(addr, "room.c", "bob");
    next_where(&mut alice, "bob's join", |v| {
        v["event"] == "join" && v["client_id"] == "bob"
    });

    publish(&mut alice, "room.c", json!("/shrug well"));
    let m = data_msg(&mut bob, "room.c");
    assert_eq!(m["data"], "well ¯\\_(ツ)_/¯");
    assert_eq!(m["from"], "alice");

    publish(&mut alice, "room.c", json!("/me waves"));
    let m = data_msg(&mut bob, "room.c");
    assert_eq!(
        (m["kind"].as_str(), m["data"].as_str()),
        (Some("me"), Some("waves"))
    );

    publish(&mut alice, "room.c", json!("/nick Ally"));
    let v = next_where(&mut bob, "the nick announcement", |v| v["event"] == "nick");
    assert_eq!(
        (v["client_id"].as_str(), v["nick"].as_str()),
        (Some("alice"), Some("Ally"))
    );
    publish(&mut alice, "room.c", json!("hi"));
    let m = data_msg(&mut bob, "room.c");
    assert_eq!(
        (m["nick"].as_str(), m["data"].as_str()),
        (Some("Ally"), Some("hi"))
    );

    // /who goes to the sender only; bob's next message must be the marker, not a list.
    publish(&mut alice, "room.c", json!("/who"));
    let who = next_where(&mut alice, "the member list", |v| v["type"] == "who");
    assert_eq!(who["count"], 2);
    assert_eq!(
        who["members"][0],
        json!({"client_id": "alice", "nick": "Ally"})
    );
    publish(&mut alice, "room.c", json!("/dance"));
    let err = next_where(&mut alice, "an error", |v| v["type"] == "error");
    assert_eq!(err["code"], "unknown_command");
    publish(&mut alice, "room.c", json!("marker"));
    loop {
        let v = next_json(&mut bob);
        assert_ne!(v["type"], "who", "/who answers the sender only");
        assert_ne!(v["type"], "error", "errors go to the sender only");
        if v["data"] == "marker" {
            break;
        }
    }
    close_client(bob);
    close_client(alice);
    server.shutdown();
}

#[test]
fn resume_after_disconnect_has_no_gap_and_no_duplicate() {
    let server = start(quiet_config(2));
    let addr = server.local_addr();
    let publisher = server.publisher();
    // A member that stays keeps the room (and its sequence) alive.
    let (mut keeper, _) = join(addr, "room.r", "keeper");
    publish(&mut keeper, "room.r", json!({"n": 0}));
    let (mut c, _) = join(addr, "room.r", "roamer");
    publish(&mut keeper, "room.r", json!({"n": 1}));
    let last = data_msg(&mut c, "room.r")["seq"].as_u64().unwrap();
    close_client(c);
    for n in 2..12 {
        publish(&mut keeper, "room.r", json!({"n": n}));
    }
    // The keeper has seen everything up to seq 11 (room seq 1 was n=0).
    next_where(&mut keeper, "seq 11", |v| v["seq"] == 11);
    let mut c = connect(addr, &format!("/ws?client_id=roamer&since=room.r:{last}"));
    assert_eq!(next_json(&mut c)["type"], "welcome");
    // Live messages keep coming while the replay is on its way.
    let live = std::thread::spawn(move || {
        for n in 12..30 {
            publish(&mut keeper, "room.r", json!({"n": n}));
        }
        keeper
    });
    let seqs: Vec<u64> = (0..(30 - last as usize))
        .map(|_| data_msg(&mut c, "room.r")["seq"].as_u64().unwrap())
        .collect();
    assert_eq!(
        seqs,
        ((last + 1)..=30).collect::<Vec<_>>(),
        "replay then live, no gap or duplicate"
    );
    let keeper = live.join().unwrap();
    // A server topic resumes the same way (published by the server, not a room).
    for i in 0..5 {
        assert!(publisher.publish("ticks", &format!("{{\"i\":{i}}}")));
    }
    let mut t = connect(addr, "/ws?since=ticks:2");
    assert_eq!(next_json(&mut t)["type"], "welcome");
    assert_eq!(data_msg(&mut t, "ticks")["seq"], 3);
    close_client(t);
    close_client(c);
    close_client(keeper);
    server.shutdown();
}

#[test]
fn resume_beyond_history_gets_reset_then_what_is_left() {
    let mut cfg = quiet_config(1);
    cfg.history = 5;
    let server = start(cfg);
    let addr = server.local_addr();
    let publisher = server.publisher();
    for i in 0..20 {
        assert!(publisher.publish("ticks", &format!("{{\"i\":{i}}}")));
    }
    let (mut probe, _) = connect_stream(addr, "ticks");
    assert!(publisher.publish("ticks", "{\"i\":20}"));
    next_where(&mut probe, "seq 21", |v| {
        v["topic"] == "ticks" && v["seq"] == 21
    });
    close_client(probe);
    let mut c = connect(addr, "/ws?since=ticks:3");
    assert_eq!(next_json(&mut c)["type"], "welcome");
    let reset = next_json(&mut c);
    assert_eq!(reset["type"], "reset", "{reset}");
    assert_eq!(
        (reset["oldest"].as_u64(), reset["latest"].as_u64()),
        (Some(17), Some(21))
    );
    let seqs: Vec<u64> = (0..5)
        .map(|_| data_msg(&mut c, "ticks")["seq"].as_u64().unwrap())
        .collect();
    assert_eq!(seqs, vec![17, 18, 19, 20, 21]);
    // Resume as an operation on an open connection, with a seq from the future: reset too
    // (of a topic it does not follow: one it follows is left as it is).
    c.send(Message::text(r#"{"op":"unsubscribe","topics":["ticks"]}"#))
        .unwrap();
    c.send(Message::text(r#"{"op":"resume","since":{"ticks":999}}"#))
        .unwrap();
    let reset = next_where(&mut c, "a reset", |v| v["type"] == "reset");
    assert_eq!(reset["latest"], 21);
    close_client(c);
    server.shutdown();
}

#[test]
fn publish_errors_are_precise_and_private() {
    let mut cfg = test_config(2);
    // Every message is charged, errors included: the burst covers the six error cases and
    // leaves three. The refill is slow enough (one token in 20 s) that a slow machine does
    // not earn more during the test.
    cfg.publish_rate = 0.05;
    cfg.publish_burst = 9;
    let server = start(cfg);
    let addr = server.local_addr();
    let healthy = Healthy::start(addr);
    let (mut a, _) = join(addr, "room.e", "a");
    let cases = [
        (
            r#"{"op":"publish","topic":"room.e""#.to_string(),
            "invalid_json",
        ),
        (
            r#"{"op":"publish","topic":7,"data":1}"#.to_string(),
            "invalid_message",
        ),
        (
            r#"{"op":"publish","topic":"ticks","data":1}"#.to_string(),
            "read_only_topic",
        ),
        (
            r#"{"op":"publish","topic":"room.other","data":1}"#.to_string(),
            "not_in_room",
        ),
        (
            r#"{"op":"publish","topic":"bad topic","data":1}"#.to_string(),
            "invalid_topic",
        ),
        (r#"{"op":"shout"}"#.to_string(), "unknown_op"),
    ];
    for (text, code) in &cases {
        a.send(Message::text(text.clone())).unwrap();
        let e = next_where(&mut a, "an error", |v| v["type"] == "error");
        assert_eq!(e["code"], *code, "{text}");
    }
    // Rate limit: a burst of 3, then refusals.
    for n in 0..10 {
        publish(&mut a, "room.e", json!(n));
    }
    let mut limited = 0;
    let mut delivered = 0;
    while delivered + limited < 10 {
        let v = next_json(&mut a);
        if v["type"] == "error" {
            assert_eq!(v["code"], "rate_limited");
            limited += 1;
        } else if v["topic"] == "room.e" && v.get("seq").is_some() {
            delivered += 1;
        }
    }
    assert!(
        limited >= 5,
        "most of a 10-message burst over a limit of 3 is refused ({limited})"
    );
    assert!(
        metric(
            addr,
            "tickcast_client_errors_total",
            &[("code", "rate_limited")]
        ) >= 5.0
    );
    // Persistent abuse: closed with 1008.
    for n in 0..200 {
        if a.send(Message::text(
            json!({"op":"publish","topic":"room.e","data":n}).to_string(),
        ))
        .is_err()
        {
            break;
        }
    }
    assert_eq!(
        read_until_close(&mut a, Duration::from_secs(15)),
        Some(1008)
    );
    healthy.finish();
    server.shutdown();
}

#[test]
fn a_replay_larger_than_the_outbox_is_cut_behind_a_reset() {
    let mut cfg = quiet_config(1);
    cfg.outbox_limit = 4096;
    // Clients do not publish here; unlimited publishing has no burst to fit the small outbox.
    cfg.publish_rate = 0.0;
    // The largest message still fits the small outbox in its envelope.
    cfg.max_message = 2048;
    let server = start(cfg);
    let addr = server.local_addr();
    let publisher = server.publisher();
    let pad = "x".repeat(100);
    for i in 0..200 {
        assert!(publisher.publish("ticks", &format!("{{\"i\":{i},\"pad\":\"{pad}\"}}")));
    }
    assert!(publisher.publish("ticks", "{\"i\":200}"));
    // Sequenced means in the history: the mixer counts a message and stores it in one step,
    // before it reads the resume below. (A subscriber as a probe was racy: it could take the
    // backlog into its 4 KiB outbox and lose seq 201 to the drop policy.)
    wait_metric(
        addr,
        "tickcast_messages_published_total",
        &[("topic", "ticks")],
        201.0,
    );
    let mut c = connect(addr, "/ws?since=ticks:0");
    assert_eq!(next_json(&mut c)["type"], "welcome");
    let reset = next_json(&mut c);
    assert_eq!(reset["type"], "reset", "{reset}");
    let oldest = reset["oldest"].as_u64().unwrap();
    assert!(
        oldest > 1 && oldest <= 201,
        "only the newest frames fit: {reset}"
    );
    assert_eq!(reset["latest"], 201);
    let seqs: Vec<u64> = (oldest..=201)
        .map(|_| data_msg(&mut c, "ticks")["seq"].as_u64().unwrap())
        .collect();
    assert_eq!(
        seqs,
        (oldest..=201).collect::<Vec<_>>(),
        "the kept tail is complete and in order"
    );
    close_client(c);
    server.shutdown();
}

#[test]
fn named_subscribes_under_the_wildcard_are_refused() {
    let server = start(quiet_config(1));
    let mut ws = connect(server.local_addr(), "/ws");
    assert_eq!(next_json(&mut ws)["topics"], json!(["*"]));
    ws.send(Message::text(r#"{"op":"subscribe","topics":["room.w"]}"#))
        .unwrap();
    let e = next_where(&mut ws, "an error", |v| v["type"] == "error");
    assert_eq!(e["code"], "wildcard_active");
    close_client(ws);
    server.shutdown();
}
