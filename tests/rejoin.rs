//! A rejoin within a second gets the count, not the list: leaving and rejoining a room of
//! many members costs the server one small frame, not the member list again, while the
//! members still see every join and leave, and a newcomer still gets the whole list.

mod common;

use std::time::{Duration, Instant};

use common::*;
use serde_json::{Value, json};
use tungstenite::Message;

/// More than the lists the server always sends whole (32 members).
const MEMBERS: usize = 40;

fn snapshot_of(ws: &mut Client, room: &str) -> Value {
    loop {
        let v = next_json(ws);
        if v["type"] == "presence" && v["event"] == "snapshot" && v["topic"] == room {
            return v;
        }
    }
}

fn op(ws: &mut Client, op: &str, room: &str) {
    ws.send(Message::text(
        json!({"op": op, "topics": [room]}).to_string(),
    ))
    .unwrap();
}

#[test]
fn a_rejoin_within_a_second_gets_the_count_and_the_room_its_deltas() {
    let server = start(quiet_config(2));
    let addr = server.local_addr();
    let mut members: Vec<Client> = (0..MEMBERS)
        .map(|i| {
            let mut ws = connect(addr, &format!("/ws?room=big&client_id=m{i}"));
            assert_eq!(next_json(&mut ws)["type"], "welcome");
            snapshot_of(&mut ws, "big");
            ws
        })
        .collect();

    // `asked` is taken before the request that brought the last full list: the server sent
    // that list after it, so a full list a second after the server's is over a second after
    // `asked` too.
    let mut asked = Instant::now();
    let mut churner = connect(addr, "/ws?room=big&client_id=churner");
    assert_eq!(next_json(&mut churner)["type"], "welcome");
    let first = snapshot_of(&mut churner, "big");
    assert_eq!(first["count"], MEMBERS as u64 + 1);
    assert_eq!(
        first["members"].as_array().map(Vec::len),
        Some(MEMBERS + 1),
        "{first}"
    );

    // Leave and rejoin at once: counts only. (Should the machine stall for a second between
    // the two, the rejoin is listed again, rightly: then try again, a few times.)
    let mut rejoins = 0;
    let again = loop {
        let before = Instant::now();
        op(&mut churner, "unsubscribe", "big");
        op(&mut churner, "subscribe", "big");
        rejoins += 1;
        let v = snapshot_of(&mut churner, "big");
        if v.get("members").is_none() || rejoins == 5 {
            break v;
        }
        asked = before;
    };
    assert_eq!(again["count"], MEMBERS as u64 + 1);
    assert_eq!(again["truncated"], true, "{again}");
    assert!(again.get("members").is_none(), "{again}");

    // Every member saw the leave and the join.
    let last = members.last_mut().unwrap();
    let mut events = Vec::new();
    while events.len() < 1 + 2 * rejoins {
        let v = next_json(last);
        if v["type"] == "presence" && v["client_id"] == "churner" {
            events.push(v["event"].as_str().unwrap().to_string());
        }
    }
    assert_eq!(events[..3], ["join", "leave", "join"]);
    assert!(events.chunks(2).all(|pair| pair[0] == "join"));

    // A newcomer meanwhile gets the whole list.
    let mut newcomer = connect(addr, "/ws?room=big&client_id=new");
    assert_eq!(next_json(&mut newcomer)["type"], "welcome");
    let list = snapshot_of(&mut newcomer, "big");
    assert_eq!(list["members"].as_array().map(Vec::len), Some(MEMBERS + 2));

    // Rejoins keep getting counts until a second after the full list, then the list again.
    let full = loop {
        op(&mut churner, "unsubscribe", "big");
        op(&mut churner, "subscribe", "big");
        let v = snapshot_of(&mut churner, "big");
        if v.get("members").is_some() {
            break v;
        }
        assert!(
            asked.elapsed() < Duration::from_secs(10),
            "never listed again"
        );
        assert_eq!(v["truncated"], true, "{v}");
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(
        asked.elapsed() >= Duration::from_secs(1),
        "listed again {:?} after the last full list was asked for",
        asked.elapsed()
    );
    assert_eq!(full["members"].as_array().map(Vec::len), Some(MEMBERS + 2));

    close_client(churner);
    close_client(newcomer);
    for ws in members {
        close_client(ws);
    }
    server.shutdown();
}
