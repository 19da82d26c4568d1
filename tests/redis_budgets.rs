//! What an abandoned room costs Redis (a real `redis-server` on a free port): once the last
//! member leaves, every key of the room lives at most `--empty-room-ttl`; a member joining
//! again restores `--room-ttl`; a topic's stream never holds more than
//! `--redis-stream-max-bytes` of messages.

mod common;

use std::time::Duration;

use common::*;
use serde_json::json;
use tickcast::bus::BusConfig;
use tickcast::server::RunningServer;
use tungstenite::Message;

const EMPTY_TTL: Duration = Duration::from_secs(60);

fn node(url: &str, stream_max_bytes: usize) -> RunningServer {
    let mut cfg = quiet_config(1);
    cfg.redis = Some(BusConfig {
        empty_room_ttl: EMPTY_TTL,
        stream_max_bytes,
        ..BusConfig::new(url)
    });
    start(cfg)
}

fn redis_conn(url: &str) -> redis::Connection {
    redis::Client::open(url).unwrap().get_connection().unwrap()
}

/// Every key of `room` with its PTTL (-1: none, -2: absent).
fn ttls(conn: &mut redis::Connection, room: &str) -> Vec<(String, i64)> {
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg(format!("tickcast:{{{room}}}*"))
        .query(conn)
        .unwrap();
    keys.into_iter()
        .map(|k| {
            let t: i64 = redis::cmd("PTTL").arg(&k).query(conn).unwrap();
            (k, t)
        })
        .collect()
}

#[test]
fn an_abandoned_room_expires_soon_and_a_rejoin_keeps_it() {
    let redis = Redis::start(free_port());
    let server = node(&redis.url(), tickcast::bus::STREAM_MAX_BYTES);
    let mut conn = redis_conn(&redis.url());
    let room = "room.left";
    let mut ws = member(server.local_addr(), room, "alice");
    ws.send(Message::text(
        json!({"op":"publish","topic":room,"data":{"n":1}}).to_string(),
    ))
    .unwrap();
    assert_eq!(next_in(&mut ws, room)["data"]["n"], 1);
    let empty_ms = EMPTY_TTL.as_millis() as i64;
    let long = |t: &[(String, i64)]| {
        ["seq", "pubs", "stream", "members", "pver"]
            .iter()
            .all(|k| t.iter().any(|(n, ttl)| n.ends_with(k) && *ttl > empty_ms))
    };
    let t = ttls(&mut conn, room);
    assert!(long(&t), "a room with a member lives --room-ttl: {t:?}");

    close_client(ws);
    let short = |t: &[(String, i64)]| {
        t.iter().any(|(n, _)| n.ends_with(":seq"))
            && t.iter().all(|(_, ttl)| (0..=empty_ms).contains(ttl))
    };
    wait_for(
        "every key of the empty room to get --empty-room-ttl",
        || short(&ttls(&mut conn, room)),
    );
    let t = ttls(&mut conn, room);
    assert!(
        t.iter().all(|(n, _)| !n.ends_with(":members")),
        "no member is left: {t:?}"
    );

    let _back = connect(
        server.local_addr(),
        &format!("/ws?room={room}&client_id=bob"),
    );
    wait_for("a join to restore --room-ttl on every key", || {
        long(&ttls(&mut conn, room))
    });
}

#[test]
fn a_stream_never_holds_more_than_its_byte_cap() {
    let redis = Redis::start(free_port());
    let cap = 4096;
    let server = node(&redis.url(), cap);
    let mut conn = redis_conn(&redis.url());
    let room = "room.big";
    let mut ws = member(server.local_addr(), room, "alice");
    let stream = BusConfig::new(&redis.url()).stream_key(room);
    let filler = "x".repeat(1000);
    for n in 0..20 {
        ws.send(Message::text(
            json!({"op":"publish","topic":room,"data":{"n":n,"pad":filler}}).to_string(),
        ))
        .unwrap();
        assert_eq!(next_in(&mut ws, room)["data"]["n"], n);
        let entries: Vec<(String, Vec<(String, String)>)> = redis::cmd("XRANGE")
            .arg(&stream)
            .arg("-")
            .arg("+")
            .query(&mut conn)
            .unwrap();
        let bytes: usize = entries
            .iter()
            .flat_map(|(_, fields)| fields.iter().map(|(_, body)| body.len()))
            .sum();
        assert!(
            bytes <= cap,
            "after {n}: {} entries, {bytes} bytes > {cap}",
            entries.len()
        );
        assert!(!entries.is_empty(), "the newest message is kept");
    }
}
