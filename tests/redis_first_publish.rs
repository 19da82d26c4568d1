//! With `--redis`, a room's first member on a node may publish at once and hears its own
//! message back (docs/protocol.md: "its own message comes back to it after the snapshot"):
//! the node subscribes to the room on Redis a few milliseconds after the join, and a publish
//! taken before that waits in the shard until it has (`messages/port.rs`). Without the wait,
//! about one such publish in ten reached Redis while the node was not listening and was lost
//! to its sender.

mod common;

use common::*;
use serde_json::json;
use tickcast::bus::BusConfig;
use tungstenite::Message;

/// Connections, one after the other, each the only member of its room on the node.
const NEWCOMERS: usize = 60;
/// Publishes each sends right after its welcome.
const EACH: u64 = 3;

#[test]
fn a_rooms_first_member_hears_every_publish_it_sends_at_once() {
    let redis = Redis::start(free_port());
    let mut cfg = test_config(2);
    cfg.redis = Some(BusConfig {
        prefix: "first".into(),
        ..BusConfig::new(&redis.url())
    });
    let server = start(cfg);
    let addr = server.local_addr();
    for i in 0..NEWCOMERS {
        // Half the rooms fresh, half rejoined after their last member left (the node
        // unsubscribed from them in between).
        let room = format!("first-{}", i / 2);
        let mut ws = connect(addr, &format!("/ws?room={room}&client_id=c{i}"));
        assert_eq!(next_json(&mut ws)["type"], "welcome");
        for n in 1..=EACH {
            ws.send(Message::text(
                json!({"op":"publish","topic":room,"data":{"n":n}}).to_string(),
            ))
            .unwrap();
        }
        let mut heard = Vec::new();
        while heard.len() < EACH as usize {
            let v = next_json(&mut ws);
            assert_ne!(v["type"], "error", "{v}");
            if v["topic"] == room.as_str() && v.get("seq").is_some() {
                heard.push(v["data"]["n"].as_u64().expect("n"));
            }
        }
        assert_eq!(
            heard,
            (1..=EACH).collect::<Vec<_>>(),
            "connection {i} in {room}"
        );
        close_client(ws);
    }
    server.shutdown();
}
