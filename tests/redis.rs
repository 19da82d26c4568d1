//! Two tickcast nodes sharing rooms through a real `redis-server` (started here on a free
//! port): publishes reach both nodes once and in one order, local streams survive Redis going
//! away, and cross-node delivery resumes when it is back.

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use common::*;
use serde_json::{Value, json};
use tickcast::bus::BusConfig;
use tickcast::server::RunningServer;
use tungstenite::Message;

fn node(url: &str, prefix: &str) -> RunningServer {
    let mut cfg = test_config(2);
    cfg.redis = Some(BusConfig {
        prefix: prefix.into(),
        ..BusConfig::new(url)
    });
    start(cfg)
}

fn healthz(addr: SocketAddr) -> String {
    http_get(addr, "/healthz").1
}

/// Joins `room`, waits for the welcome.
fn member(addr: SocketAddr, room: &str, id: &str) -> Client {
    let mut ws = connect(addr, &format!("/ws?room={room}&client_id={id}"));
    assert_eq!(next_json(&mut ws)["type"], "welcome");
    ws
}

fn data_on(ws: &mut Client, topic: &str) -> Value {
    for _ in 0..10_000 {
        let v = next_json(ws);
        if v["topic"] == topic && v.get("seq").is_some() {
            return v;
        }
    }
    panic!("no data on {topic}");
}

fn publish(ws: &mut Client, topic: &str, data: Value) {
    ws.send(Message::text(
        json!({"op":"publish","topic":topic,"data":data}).to_string(),
    ))
    .unwrap();
}

/// Publishes probes from `from` until `to` receives one (both nodes subscribed), bounded.
fn await_bus(from: &mut Client, to: &mut Client, topic: &str) {
    to.get_mut()
        .set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let mut seen = false;
    for i in 0..150 {
        publish(from, topic, json!({"probe": i}));
        let deadline = std::time::Instant::now() + Duration::from_millis(200);
        while std::time::Instant::now() < deadline {
            match to.read() {
                Ok(Message::Text(t)) if t.contains("\"probe\"") && t.contains("\"seq\"") => {
                    seen = true
                }
                _ => {}
            }
            if seen {
                break;
            }
        }
        if seen {
            break;
        }
    }
    to.get_mut().set_read_timeout(Some(READ_TIMEOUT)).unwrap();
    assert!(seen, "cross-node delivery on {topic} did not start");
}

/// Reads until the probes stop and a message with `"n"` arrives; returns it.
fn skip_probes(ws: &mut Client, topic: &str) -> Value {
    loop {
        let m = data_on(ws, topic);
        if m["data"].get("probe").is_none() {
            return m;
        }
    }
}

#[test]
fn two_nodes_share_rooms_through_redis_and_survive_its_loss() {
    let port = free_port();
    let redis = Redis::start(port);
    let url = redis.url();
    let prefix = format!("t{}", free_port());
    let a = node(&url, &prefix);
    let b = node(&url, &prefix);
    wait_for("both nodes to reach redis", || {
        healthz(a.local_addr()) == "ok\n" && healthz(b.local_addr()) == "ok\n"
    });

    let mut on_a = member(a.local_addr(), "room.bus", "alice");
    let mut on_b = member(b.local_addr(), "room.bus", "bob");
    await_bus(&mut on_a, &mut on_b, "room.bus");
    await_bus(&mut on_b, &mut on_a, "room.bus");
    // Publishes from both nodes, interleaved.
    for n in 0..20 {
        publish(&mut on_a, "room.bus", json!({"n": n, "node": "a"}));
        publish(&mut on_b, "room.bus", json!({"n": n, "node": "b"}));
    }
    // Everything from the first test message until the 40th, probes still in flight
    // included (they share the sequence): (seq, node, n), with node "probe" for probes.
    let collect = |ws: &mut Client| -> Vec<(u64, String, u64)> {
        let mut got = vec![skip_probes(ws, "room.bus")];
        while got
            .iter()
            .filter(|m| m["data"].get("node").is_some())
            .count()
            < 40
        {
            got.push(data_on(ws, "room.bus"));
        }
        got.iter()
            .map(|m| {
                let node = m["data"]["node"].as_str().unwrap_or("probe").to_string();
                (
                    m["seq"].as_u64().unwrap(),
                    node,
                    m["data"]["n"].as_u64().unwrap_or(0),
                )
            })
            .collect()
    };
    let seen_a = collect(&mut on_a);
    let seen_b = collect(&mut on_b);
    assert_eq!(
        seen_a, seen_b,
        "both nodes deliver the same messages in the same order"
    );
    assert!(
        seen_a.windows(2).all(|w| w[1].0 == w[0].0 + 1),
        "one cluster-wide sequence, no gap or duplicate"
    );
    for node in ["a", "b"] {
        let ns: Vec<u64> = seen_a.iter().filter(|m| m.1 == node).map(|m| m.2).collect();
        assert_eq!(
            ns,
            (0..20).collect::<Vec<_>>(),
            "each node's publishes once, in order"
        );
    }
    // Counted after Redis's reply (published) and after the hand-over to the mixer
    // (received), so possibly a moment after the clients saw the messages.
    wait_metric(a.local_addr(), "tickcast_bus_published_total", &[], 20.0);
    wait_metric(b.local_addr(), "tickcast_bus_received_total", &[], 40.0);

    // Redis goes away: local streams go on, /healthz says so.
    let healthy_a = Healthy::start(a.local_addr());
    let healthy_b = Healthy::start(b.local_addr());
    drop(redis);
    wait_for("node a to notice", || {
        healthz(a.local_addr()) == "degraded: redis\n"
    });
    wait_for("node b to notice", || {
        healthz(b.local_addr()) == "degraded: redis\n"
    });
    let (ra, rb) = (healthy_a.received(), healthy_b.received());
    healthy_a.wait_for_more(ra);
    healthy_b.wait_for_more(rb);

    // Redis is back (empty, on the same port): both reconnect and resubscribe.
    let redis = Redis::start(port);
    wait_for("both nodes to reconnect", || {
        healthz(a.local_addr()) == "ok\n" && healthz(b.local_addr()) == "ok\n"
    });
    assert!(metric(a.local_addr(), "tickcast_redis_reconnects_total", &[]) >= 1.0);
    await_bus(&mut on_b, &mut on_a, "room.bus");
    publish(&mut on_b, "room.bus", json!({"n": 100, "node": "b"}));
    let after = skip_probes(&mut on_a, "room.bus");
    assert_eq!(after["data"]["n"], 100);
    assert!(
        after["seq"].as_u64().unwrap() > seen_a.last().unwrap().0,
        "seq keeps increasing across a Redis restart"
    );
    healthy_a.finish();
    healthy_b.finish();
    close_client(on_a);
    close_client(on_b);
    a.shutdown();
    b.shutdown();
    drop(redis);
}

#[test]
fn unreachable_redis_at_start_still_serves_local_streams() {
    let port = free_port();
    let a = node(&format!("redis://127.0.0.1:{port}"), "tc");
    assert_eq!(healthz(a.local_addr()), "degraded: redis\n");
    let healthy = Healthy::start(a.local_addr());
    let redis = Redis::start(port);
    wait_for("the node to connect late", || {
        healthz(a.local_addr()) == "ok\n"
    });
    healthy.finish();
    a.shutdown();
    drop(redis);
}

#[test]
fn a_bad_redis_url_is_a_clear_error_at_start() {
    let mut cfg = test_config(1);
    cfg.redis = Some(BusConfig {
        prefix: "tc".into(),
        ..BusConfig::new("http://example")
    });
    let err = tickcast::server::Server::bind(cfg).unwrap_err().to_string();
    assert!(err.contains("invalid --redis URL"), "{err}");
}

/// The publish script against a real Redis: a message a node sends again (its reply was
/// lost) is published once, and an older number never again; another node's numbers are
/// its own. Nothing per message is kept besides the stream entry.
#[test]
fn the_publish_script_publishes_each_message_once() {
    let redis = Redis::start(free_port());
    let cfg = BusConfig::new(&redis.url());
    let mut conn = redis::Client::open(redis.url())
        .unwrap()
        .get_connection()
        .unwrap();
    let script = tickcast::bus::publisher::publish_script();
    let mut send = |node: &str, n: u64| -> u64 {
        script
            .key(cfg.seq_key("room.d"))
            .key(cfg.publishers_key("room.d"))
            .key(cfg.stream_key("room.d"))
            .key(cfg.channel("room.d"))
            .key(cfg.members_key("room.d"))
            .key(cfg.stream_bytes_key("room.d"))
            .arg(format!(r#"{{"id":"{node}-{n}","data":{n}}}"#))
            .arg(100)
            .arg(60_000)
            .arg("PUBLISH")
            .arg(node)
            .arg(n)
            .arg(30_000)
            .arg(1 << 20)
            .invoke(&mut conn)
            .unwrap()
    };
    let first = send("a", 1);
    assert!(
        first > 1,
        "the counter starts from the Redis clock: {first}"
    );
    assert_eq!(send("a", 1), 0, "a retry is not published again");
    assert_eq!(send("a", 2), first + 1);
    assert_eq!(send("a", 1), 0, "an older number is not published again");
    assert_eq!(send("b", 1), first + 2, "another node numbers its own");
    let mut conn = redis::Client::open(redis.url())
        .unwrap()
        .get_connection()
        .unwrap();
    let len: u64 = redis::cmd("XLEN")
        .arg(cfg.stream_key("room.d"))
        .query(&mut conn)
        .unwrap();
    assert_eq!(len, 3);
    let keys: Vec<String> = redis::cmd("KEYS").arg("*").query(&mut conn).unwrap();
    assert_eq!(
        keys.len(),
        4,
        "seq, publishers, stream and its byte count only: {keys:?}"
    );
}
