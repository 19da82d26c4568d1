//! Clients of rooms shared through Redis: a member that waits until its node receives the
//! room from Redis, publishing and reading numbered messages, and resuming.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tungstenite::Message;

use super::{Client, READ_TIMEOUT, WAIT_LIMIT, close_client, connect, next_json};

/// Joins `room` on `addr` as `id`, reads the welcome, and waits until its node receives the
/// room from Redis: it publishes probes (`{"probe":i}`) until one comes back, since a
/// message published before the node has subscribed never reaches it live.
pub fn member(addr: SocketAddr, room: &str, id: &str) -> Client {
    let mut ws = connect(addr, &format!("/ws?room={room}&client_id={id}"));
    assert_eq!(next_json(&mut ws)["type"], "welcome");
    ws.get_mut()
        .set_read_timeout(Some(Duration::from_millis(100)))
        .unwrap();
    let deadline = Instant::now() + WAIT_LIMIT;
    'probing: for i in 0.. {
        assert!(
            Instant::now() < deadline,
            "{room} never came back from Redis"
        );
        ws.send(Message::text(
            json!({"op":"publish","topic":room,"data":{"probe":i}}).to_string(),
        ))
        .unwrap();
        let wait = Instant::now() + Duration::from_millis(300);
        while Instant::now() < wait {
            if let Ok(Message::Text(t)) = ws.read()
                && t.contains("\"probe\"")
                && t.contains("\"seq\"")
            {
                break 'probing;
            }
        }
    }
    ws.get_mut().set_read_timeout(Some(READ_TIMEOUT)).unwrap();
    ws
}

pub fn publish(ws: &mut Client, room: &str, n: u64) {
    ws.send(Message::text(
        json!({"op":"publish","topic":room,"data":{"n":n}}).to_string(),
    ))
    .unwrap();
}

/// The next message on `room` (skipping presence, acks and late probes); panics on a
/// `reset` or an error.
pub fn next_in(ws: &mut Client, room: &str) -> Value {
    loop {
        let v = next_json(ws);
        assert_ne!(v["type"], "reset", "{v}");
        assert_ne!(v["type"], "error", "{v}");
        if v["topic"] == room && v.get("seq").is_some() && v["data"].get("probe").is_none() {
            return v;
        }
    }
}

/// Publishes `ns` from `ws` (a member of `room`) and reads each back; returns their seqs.
pub fn publish_and_read(ws: &mut Client, room: &str, ns: std::ops::Range<u64>) -> Vec<u64> {
    let mut seqs = Vec::new();
    for n in ns {
        publish(ws, room, n);
        let v = next_in(ws, room);
        assert_eq!(v["data"]["n"], n, "{v}");
        seqs.push(v["seq"].as_u64().unwrap());
    }
    seqs
}

/// Resumes `room` after `since` on `addr` and reads `count` messages: their `n`s, in order.
pub fn resume(addr: SocketAddr, room: &str, since: u64, count: usize) -> Vec<u64> {
    let mut ws = connect(addr, &format!("/ws?since={room}:{since}&client_id=back"));
    assert_eq!(next_json(&mut ws)["type"], "welcome");
    let got: Vec<u64> = (0..count)
        .map(|_| next_in(&mut ws, room)["data"]["n"].as_u64().unwrap())
        .collect();
    close_client(ws);
    got
}

/// Reads presence events on `room` until one says `count` members, with `client_id`
/// having `event` (`join`, `leave`) on the way, or a snapshot with that count listing
/// everyone in `names`.
pub fn await_presence(ws: &mut Client, room: &str, count: u64, names: &[&str]) {
    let deadline = Instant::now() + WAIT_LIMIT;
    loop {
        assert!(
            Instant::now() < deadline,
            "no presence with {count} members"
        );
        let v = next_json(ws);
        if v["type"] != "presence" || v["topic"] != room || v["count"] != count {
            continue;
        }
        match v["members"].as_array() {
            Some(members) => {
                let listed: Vec<&str> = members
                    .iter()
                    .filter_map(|m| m["client_id"].as_str())
                    .collect();
                if names.iter().all(|n| listed.contains(n)) {
                    return;
                }
            }
            None => return,
        }
    }
}

/// `/who` on `room`: the client ids listed and the count.
pub fn who(ws: &mut Client, room: &str) -> (Vec<String>, u64) {
    ws.send(Message::text(
        json!({"op":"publish","topic":room,"data":"/who"}).to_string(),
    ))
    .unwrap();
    loop {
        let v = next_json(ws);
        if v["type"] == "who" {
            let mut ids: Vec<String> = v["members"]
                .as_array()
                .unwrap()
                .iter()
                .map(|m| m["client_id"].as_str().unwrap().to_string())
                .collect();
            ids.sort();
            return (ids, v["count"].as_u64().unwrap());
        }
    }
}

/// Asks `/who` until `room` has `count` members here (bounded); returns the ids.
pub fn await_who(ws: &mut Client, room: &str, count: u64) -> Vec<String> {
    let deadline = Instant::now() + WAIT_LIMIT;
    loop {
        let (ids, n) = who(ws, room);
        if n == count {
            return ids;
        }
        assert!(
            Instant::now() < deadline,
            "{room} has {n} members, not {count}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}
