//! The broadcast stream on `/ws`: sequence numbers and timestamps, fan-out across shards,
//! topic filtering at connect time and at run time, and error frames for bad operations.

mod common;

use std::collections::BTreeSet;

use common::*;
use serde_json::{Value, json};
use tickcast::config::ServerConfig;
use tungstenite::Message;

/// Reads data messages until one on `topic` with `seq`, returning every data message read
/// (that one included). Bounded by the read timeout and a message count.
fn read_through(ws: &mut Client, topic: &str, seq: u64) -> Vec<Value> {
    let mut seen = Vec::new();
    for _ in 0..100_000 {
        let m = next_data(ws);
        let done = m["topic"] == topic && m["seq"] == seq;
        seen.push(m);
        if done {
            return seen;
        }
    }
    panic!("never saw {topic} #{seq}");
}

fn topic_seqs(msgs: &[Value]) -> Vec<(String, u64)> {
    msgs.iter()
        .map(|m| {
            (
                m["topic"].as_str().unwrap().to_string(),
                m["seq"].as_u64().unwrap(),
            )
        })
        .collect()
}

#[test]
fn ticks_arrive_with_seq_up_by_one_and_a_current_ts() {
    let server = start(test_config(2));
    let (mut ws, _) = connect_stream(server.local_addr(), "ticks");
    let mut last: Option<u64> = None;
    for _ in 0..50 {
        let m = next_data(&mut ws);
        assert_eq!(m["topic"], "ticks");
        let seq = m["seq"].as_u64().expect("seq is an integer");
        if let Some(prev) = last {
            assert_eq!(seq, prev + 1, "seq must go up by exactly one");
        }
        last = Some(seq);
        let ts = m["ts"].as_u64().expect("ts is an integer");
        let now = now_micros();
        assert!(
            ts.abs_diff(now) < 5_000_000,
            "ts {ts} is not within 5 s of now ({now})"
        );
        assert!(m["data"].is_object(), "{m}");
        assert!(m["data"]["symbol"].is_string(), "{m}");
    }
    close_client(ws);
    server.shutdown();
}

#[test]
fn a_paced_tick_carries_the_time_it_was_due() {
    // 200 ticks/s: due times are exactly 5 ms apart, however the mixer was scheduled.
    let mut cfg = test_config(1);
    cfg.ticker.pace = tickcast::config::TickerPace::Rate(200.0);
    let server = start(cfg);
    let (mut ws, _) = connect_stream(server.local_addr(), "ticks");
    let first = next_data(&mut ws);
    let mut last = first.clone();
    for _ in 0..40 {
        last = next_data(&mut ws);
    }
    close_client(ws);
    server.shutdown();
    let (seq0, ts0) = (
        first["seq"].as_u64().unwrap(),
        first["ts"].as_u64().unwrap(),
    );
    let (seq1, ts1) = (last["seq"].as_u64().unwrap(), last["ts"].as_u64().unwrap());
    assert_eq!(seq1 - seq0, 40);
    let spacing = ts1 - ts0;
    assert!(
        (199_998..=200_002).contains(&spacing),
        "40 ticks at 200/s span {spacing} µs of ts"
    );
}

#[test]
fn two_hundred_clients_over_two_shards_receive_the_same_seqs() {
    const CLIENTS: usize = 200;
    const MESSAGES: u64 = 40;
    let server = start(quiet_config(2));
    let addr = server.local_addr();
    let mut clients = Vec::with_capacity(CLIENTS);
    let mut per_shard = [0usize; 2];
    for _ in 0..CLIENTS {
        let (ws, shard) = connect_stream(addr, "fan");
        per_shard[shard as usize] += 1;
        clients.push(ws);
    }
    assert!(
        per_shard[0] > 0 && per_shard[1] > 0,
        "both shards must get clients: {per_shard:?}"
    );
    // The shards' own view agrees (the scrape's own connection is not counted). A
    // shard sets its gauge at the end of the turn that welcomed the client, which may end
    // after the client has read its welcome.
    for (shard, welcomed) in per_shard.iter().enumerate() {
        wait_metric(
            addr,
            "tickcast_connections",
            &[("shard", &shard.to_string())],
            *welcomed as f64,
        );
    }

    let publisher = server.publisher();
    for i in 0..MESSAGES {
        assert!(publisher.publish("fan", &json!({ "i": i }).to_string()));
    }
    let expected: Vec<u64> = (1..=MESSAGES).collect();
    for (n, ws) in clients.iter_mut().enumerate() {
        let got: Vec<u64> = (0..MESSAGES)
            .map(|_| {
                let m = next_data(ws);
                assert_eq!(m["topic"], "fan");
                assert_eq!(
                    m["data"]["i"].as_u64().unwrap() + 1,
                    m["seq"].as_u64().unwrap()
                );
                m["seq"].as_u64().unwrap()
            })
            .collect();
        assert_eq!(got, expected, "client {n}");
    }
    let delivered = (CLIENTS as u64 * MESSAGES) as f64;
    wait_metric(addr, "tickcast_frames_delivered_total", &[], delivered);
    assert_eq!(
        metric(
            addr,
            "tickcast_messages_published_total",
            // Rooms share one series; "fan" is the only room here.
            &[("topic", "rooms")]
        ),
        MESSAGES as f64
    );
    for ws in clients {
        close_client(ws);
    }
    server.shutdown();
}

#[test]
fn clients_receive_only_the_topics_they_asked_for() {
    let server = start(quiet_config(2));
    let addr = server.local_addr();
    let (mut alpha, _) = connect_stream(addr, "alpha");
    let (mut beta, _) = connect_stream(addr, "beta");
    let (mut both, _) = connect_stream(addr, "alpha,beta");
    let (mut all, _) = connect_stream(addr, "");
    let p = server.publisher();
    // alpha 1, beta 1, gamma 1, alpha 2, beta 2, alpha 3, gamma 2
    for topic in ["alpha", "beta", "gamma", "alpha", "beta", "alpha", "gamma"] {
        assert!(p.publish(topic, r#"{"x":1}"#));
    }
    let pairs = |v: &[(&str, u64)]| -> Vec<(String, u64)> {
        v.iter().map(|(t, s)| (t.to_string(), *s)).collect()
    };
    assert_eq!(
        topic_seqs(&read_through(&mut alpha, "alpha", 3)),
        pairs(&[("alpha", 1), ("alpha", 2), ("alpha", 3)])
    );
    assert_eq!(
        topic_seqs(&read_through(&mut beta, "beta", 2)),
        pairs(&[("beta", 1), ("beta", 2)])
    );
    assert_eq!(
        topic_seqs(&read_through(&mut both, "alpha", 3)),
        pairs(&[
            ("alpha", 1),
            ("beta", 1),
            ("alpha", 2),
            ("beta", 2),
            ("alpha", 3)
        ])
    );
    assert_eq!(
        topic_seqs(&read_through(&mut all, "gamma", 2)),
        pairs(&[
            ("alpha", 1),
            ("beta", 1),
            ("gamma", 1),
            ("alpha", 2),
            ("beta", 2),
            ("alpha", 3),
            ("gamma", 2)
        ])
    );
    // Nothing else was queued for the filtered clients: the next thing beta sees is beta #3.
    assert!(p.publish("alpha", "{}"));
    assert!(p.publish("beta", "{}"));
    assert_eq!(
        topic_seqs(&read_through(&mut beta, "beta", 3)),
        pairs(&[("beta", 3)])
    );
    for ws in [alpha, beta, both, all] {
        close_client(ws);
    }
    server.shutdown();
}

/// Sends an operation and reads until the reply of `kind` (skipping data messages).
fn op_reply(ws: &mut Client, op: &str, kind: &str) -> Value {
    ws.send(Message::text(op)).unwrap();
    for _ in 0..10_000 {
        let v = next_json(ws);
        // Named topics other than the server's are rooms: presence frames come and go.
        if v.get("type").is_some() && v["type"] != "presence" {
            assert_eq!(v["type"], kind, "reply to {op}: {v}");
            return v;
        }
    }
    panic!("no reply to {op}");
}

#[test]
fn subscribe_and_unsubscribe_at_run_time_with_acks() {
    let server = start(quiet_config(1));
    let (mut ws, _) = connect_stream(server.local_addr(), "alpha");
    let p = server.publisher();

    let ack = op_reply(
        &mut ws,
        r#"{"op":"subscribe","topics":["beta","gamma"]}"#,
        "subscribed",
    );
    assert_eq!(ack["topics"], json!(["beta", "gamma"]));
    for topic in ["alpha", "beta", "gamma", "delta"] {
        assert!(p.publish(topic, "{}"));
    }
    assert_eq!(
        topic_seqs(&read_through(&mut ws, "gamma", 1)),
        vec![("alpha".into(), 1), ("beta".into(), 1), ("gamma".into(), 1)]
    );

    let ack = op_reply(
        &mut ws,
        r#"{"op":"unsubscribe","topics":["alpha","gamma","never"]}"#,
        "unsubscribed",
    );
    assert_eq!(ack["topics"], json!(["alpha", "gamma", "never"]));
    for topic in ["alpha", "gamma", "beta"] {
        assert!(p.publish(topic, "{}"));
    }
    // alpha #2 and gamma #2 were published first but are no longer for this client.
    assert_eq!(
        topic_seqs(&read_through(&mut ws, "beta", 2)),
        vec![("beta".into(), 2)]
    );

    // `*` takes every topic, including new ones; a named unsubscribe under it is refused.
    op_reply(
        &mut ws,
        r#"{"op":"subscribe","topics":["*"]}"#,
        "subscribed",
    );
    let err = op_reply(
        &mut ws,
        r#"{"op":"unsubscribe","topics":["beta"]}"#,
        "error",
    );
    assert_eq!(err["code"], "wildcard_active");
    assert!(p.publish("brand-new", "{}"));
    assert_eq!(
        topic_seqs(&read_through(&mut ws, "brand-new", 1)),
        vec![("brand-new".into(), 1)]
    );
    op_reply(
        &mut ws,
        r#"{"op":"unsubscribe","topics":["*"]}"#,
        "unsubscribed",
    );
    op_reply(
        &mut ws,
        r#"{"op":"subscribe","topics":["zeta"]}"#,
        "subscribed",
    );
    // `*` kept the named topic beside it: without `*`, beta comes again, and zeta.
    assert!(p.publish("gamma", "{}"));
    assert!(p.publish("beta", "{}"));
    assert!(p.publish("zeta", "{}"));
    assert_eq!(
        topic_seqs(&read_through(&mut ws, "zeta", 1)),
        vec![("beta".into(), 3), ("zeta".into(), 1)]
    );
    close_client(ws);
    server.shutdown();
}

#[test]
fn bad_operations_get_an_error_frame_on_that_connection_only() {
    let server = start(quiet_config(1));
    let addr = server.local_addr();
    let (mut bad, _) = connect_stream(addr, "alpha");
    let (mut good, _) = connect_stream(addr, "alpha");
    let p = server.publisher();
    let cases = [
        ("not json", "invalid_json"),
        (r#"{"op":"subscribe""#, "invalid_json"),
        ("[1,2,3]", "invalid_message"),
        (r#"{"op":"subscribe","topics":"alpha"}"#, "invalid_message"),
        (r#"{"op":"subscribe"}"#, "invalid_message"),
        (r#"{"op":"dance","topics":["alpha"]}"#, "unknown_op"),
        (r#"{"topics":["alpha"]}"#, "unknown_op"),
        (
            r#"{"op":"subscribe","topics":["no spaces"]}"#,
            "invalid_topic",
        ),
        (r#"{"op":"subscribe","topics":[""]}"#, "invalid_topic"),
    ];
    let mut codes = BTreeSet::new();
    for (i, (text, code)) in cases.iter().enumerate() {
        let err = op_reply(&mut bad, text, "error");
        assert_eq!(err["code"], *code, "{text}: {err}");
        assert!(err["message"].is_string(), "{err}");
        codes.insert(*code);
        // The offending connection stays open and subscribed.
        assert!(p.publish("alpha", "{}"));
        read_through(&mut bad, "alpha", i as u64 + 1);
    }
    bad.send(Message::binary(vec![1u8, 2, 3])).unwrap();
    let err = next_json(&mut bad);
    assert_eq!(err["code"], "binary_unsupported", "{err}");
    codes.insert("binary_unsupported");

    // The other client saw only the broadcasts, never an error frame.
    assert!(p.publish("alpha", "{}"));
    let last = cases.len() as u64 + 1;
    let mut data = 0;
    while data < last {
        let v = next_json(&mut good);
        if v["type"] == "presence" {
            // `alpha` is a room: membership changes are announced to its members.
            continue;
        }
        assert!(v.get("type").is_none(), "the other client got {v}");
        assert_eq!(v["topic"], "alpha");
        data += 1;
    }
    let m = scrape(addr);
    for code in codes {
        assert!(
            m.sum("tickcast_client_errors_total", &[("code", code)]) >= 1.0,
            "client_errors{{code={code}}} did not move"
        );
    }
    close_client(bad);
    close_client(good);
    server.shutdown();
}

#[test]
fn a_bad_topic_list_at_connect_time_is_refused_with_400() {
    let server = start(quiet_config(1));
    let addr = server.local_addr();
    let err = try_connect(addr, "/ws?topics=ok,not%20ok").unwrap_err();
    assert!(err.contains("400"), "{err}");
    wait_metric(
        addr,
        "tickcast_handshake_failures_total",
        &[("reason", "bad_topics")],
        1.0,
    );
    // A good one still works on the same server.
    let (ws, _) = connect_stream(addr, "ok");
    close_client(ws);
    server.shutdown();
}

#[test]
fn a_connection_cannot_hold_more_topics_than_the_limit() {
    let server = start(ServerConfig {
        max_topics_per_conn: 3,
        ..quiet_config(1)
    });
    let addr = server.local_addr();
    let err = try_connect(addr, "/ws?topics=a,b,c,d").unwrap_err();
    assert!(err.contains("400"), "{err}");
    let (mut ws, _) = connect_stream(addr, "a,b");
    let err = op_reply(&mut ws, r#"{"op":"subscribe","topics":["c","d"]}"#, "error");
    assert_eq!(err["code"], "too_many_topics");
    // Nothing of the refused operation took effect; one more topic still fits.
    op_reply(
        &mut ws,
        r#"{"op":"subscribe","topics":["b","c"]}"#,
        "subscribed",
    );
    let p = server.publisher();
    for topic in ["d", "c"] {
        assert!(p.publish(topic, "{}"));
    }
    assert_eq!(
        topic_seqs(&read_through(&mut ws, "c", 1)),
        vec![("c".into(), 1)]
    );
    close_client(ws);
    server.shutdown();
}

#[test]
fn with_linger_every_frame_still_arrives_in_order() {
    let server = start(ServerConfig {
        linger: std::time::Duration::from_millis(20),
        ..quiet_config(2)
    });
    let addr = server.local_addr();
    let mut clients: Vec<Client> = (0..4).map(|_| connect_stream(addr, "slow").0).collect();
    let p = server.publisher();
    for round in 0..5u64 {
        // A lone message (held for the linger, then sent), then a burst.
        assert!(p.publish("slow", "{}"));
        for ws in clients.iter_mut() {
            assert_eq!(next_data(ws)["seq"], round * 21 + 1);
        }
        for _ in 0..20 {
            assert!(p.publish("slow", "{}"));
        }
        for ws in clients.iter_mut() {
            for i in 2..=21 {
                assert_eq!(next_data(ws)["seq"], round * 21 + i);
            }
        }
    }
    // Each burst reached the shards together (the linger held their wake-up), so it went
    // out as one run: one walk over the subscribers for many frames, not one per frame.
    for shard in ["0", "1"] {
        let labels = [("shard", shard)];
        wait_metric(addr, "tickcast_fanout_walks_total", &labels, 10.0);
        let walks = metric(addr, "tickcast_fanout_walks_total", &labels);
        assert!(
            walks < 105.0 / 2.0,
            "shard {shard}: {walks} walks for 105 frames"
        );
    }
    for ws in clients {
        close_client(ws);
    }
    server.shutdown();
}

/// Reads until this client's presence snapshot of `room`: its join has been handled, and
/// its subscription is queued right behind the snapshot.
fn read_snapshot(ws: &mut Client, room: &str) {
    for _ in 0..100 {
        let v = next_json(ws);
        if v["type"] == "presence" && v["topic"] == room && v["event"] == "snapshot" {
            return;
        }
    }
    panic!("never saw the snapshot of {room}");
}

#[test]
fn a_shard_with_no_subscriber_of_a_topic_does_no_walk_for_it() {
    let server = start(ServerConfig {
        linger: std::time::Duration::from_millis(20),
        ..quiet_config(2)
    });
    let addr = server.local_addr();
    // The acceptor balances by connection count: one client on each shard. Each reads its
    // snapshot (every named topic is a room), so that its join is handled (its delta walks
    // nobody: a newcomer is subscribed behind it) before anything else is published.
    let (mut x, x_shard) = connect_stream(addr, "x");
    read_snapshot(&mut x, "x");
    let (mut y, y_shard) = connect_stream(addr, "y");
    read_snapshot(&mut y, "y");
    assert_ne!(x_shard, y_shard);
    let p = server.publisher();
    for _ in 0..3 {
        // Runs (queued together under the linger) and lone frames.
        for _ in 0..10 {
            assert!(p.publish("x", "{}"));
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    assert_eq!(read_through(&mut x, "x", 30).len(), 30);
    let walks = |shard: u64| {
        metric(
            addr,
            "tickcast_fanout_walks_total",
            &[("shard", &shard.to_string())],
        )
    };
    // Two markers on `y`, the second published only once the first has arrived, so they
    // are walked in two turns of y's shard. A shard counts its walks at the end of each
    // turn and takes its queue in order: once the second marker has been read, every turn
    // before its own has been counted, the first marker's and any (wrong) walk for `x`
    // included, since the x frames and x's join were all queued before the first marker.
    assert!(p.publish("y", "{}"));
    assert_eq!(read_through(&mut y, "y", 1).len(), 1, "y saw no x frame");
    assert!(p.publish("y", "{}"));
    assert_eq!(read_through(&mut y, "y", 2).len(), 1, "y saw no x frame");
    // y's shard walks the two markers (y's own join walked nobody: a newcomer is subscribed
    // behind it); none of the x frames nor x's join. Wait for the second marker's turn to be
    // counted, then the count must be exactly that: a walk for `x` (its join or a run of
    // its frames) would already be counted and show here.
    wait_for("y's shard to count its walk for the second marker", || {
        walks(y_shard) >= 2.0
    });
    assert_eq!(walks(y_shard), 2.0, "walks on y's shard");
    // x's shard walked at least one run of x frames.
    wait_for("x's shard to count its walks", || walks(x_shard) >= 1.0);
    close_client(x);
    close_client(y);
    server.shutdown();
}

#[test]
fn frames_of_several_topics_queued_together_keep_their_order_for_every_subscriber() {
    let server = start(ServerConfig {
        linger: std::time::Duration::from_millis(20),
        ..quiet_config(1)
    });
    let addr = server.local_addr();
    let (mut both, _) = connect_stream(addr, "a,b");
    let (mut only_a, _) = connect_stream(addr, "a");
    let (mut only_b, _) = connect_stream(addr, "b");
    let p = server.publisher();
    // Queued together under the linger: runs of `a`, then `b`, then `a` again.
    let order = ["a", "a", "a", "b", "b", "a", "b", "a", "a"];
    for topic in order {
        assert!(p.publish(topic, "{}"));
    }
    let mut want = Vec::new();
    let mut seq = std::collections::HashMap::new();
    for topic in order {
        let n = seq.entry(topic).or_insert(0u64);
        *n += 1;
        want.push((topic.to_string(), *n));
    }
    let filtered = |t: &str| -> Vec<(String, u64)> {
        want.iter()
            .filter(|(topic, _)| topic == t)
            .cloned()
            .collect()
    };
    assert_eq!(topic_seqs(&read_through(&mut both, "a", 6)), want);
    assert_eq!(
        topic_seqs(&read_through(&mut only_a, "a", 6)),
        filtered("a")
    );
    assert_eq!(
        topic_seqs(&read_through(&mut only_b, "b", 3)),
        filtered("b")
    );
    for ws in [both, only_a, only_b] {
        close_client(ws);
    }
    server.shutdown();
}

/// What the client of `a_full_shard_queue_is_a_counted_drop_never_a_block` has read.
#[derive(Default)]
struct BurstSeen {
    /// `burst` data messages.
    received: u64,
    /// The last `burst` seq.
    last: u64,
    /// `end` markers.
    markers: u64,
}

/// Reads until an `end` marker arrives or nothing does for the read timeout, checking that
/// `burst` seqs increase.
fn read_burst_frames(ws: &mut Client, seen: &mut BurstSeen) {
    loop {
        match ws.read() {
            Ok(Message::Text(t)) => {
                let v: Value = serde_json::from_str(&t).unwrap();
                if v["topic"] == "end" && v.get("seq").is_some() {
                    seen.markers += 1;
                    return;
                }
                // `burst` is a room: its presence frames carry no seq.
                let Some(seq) = v["seq"].as_u64() else {
                    continue;
                };
                assert!(
                    seq > seen.last,
                    "seq must increase: {} then {seq}",
                    seen.last
                );
                seen.last = seq;
                seen.received += 1;
            }
            Ok(_) => {}
            Err(tungstenite::Error::Io(e))
                if e.kind() == std::io::ErrorKind::WouldBlock
                    || e.kind() == std::io::ErrorKind::TimedOut =>
            {
                return;
            }
            Err(e) => panic!("read: {e}"),
        }
    }
}

#[test]
fn a_full_shard_queue_is_a_counted_drop_never_a_block() {
    const BURST: u64 = 3000;
    let server = start(ServerConfig {
        shard_queue: 4,
        ..quiet_config(1)
    });
    let addr = server.local_addr();
    // Both topics are rooms: join one at a time and let each snapshot pass, so that every
    // frame counted below is a data message. A join puts three messages in the queue
    // (snapshot, the delta, which walks nobody since a newcomer is subscribed behind it,
    // and that subscription), so one at a time they fit in its 4 slots and none is dropped.
    let (mut ws, _) = connect_stream(addr, "burst");
    let snapshot_of = |ws: &mut Client, topic: &str| loop {
        let v = next_json(ws);
        if v["topic"] == topic && v["event"] == "snapshot" {
            break;
        }
    };
    snapshot_of(&mut ws, "burst");
    ws.send(Message::text(r#"{"op":"subscribe","topics":["end"]}"#))
        .unwrap();
    snapshot_of(&mut ws, "end");
    let p = server.publisher();
    for i in 0..BURST {
        assert!(p.publish("burst", &format!(r#"{{"i":{i}}}"#)));
    }
    // Until the end marker gets through a queue that may still be full, send it again.
    ws.get_mut()
        .set_read_timeout(Some(std::time::Duration::from_millis(100)))
        .unwrap();
    let mut seen = BurstSeen::default();
    let mut markers = 0u64;
    let deadline = std::time::Instant::now() + WAIT_LIMIT;
    while seen.markers == 0 {
        assert!(
            std::time::Instant::now() < deadline,
            "the end marker never arrived"
        );
        assert!(p.publish("end", "{}"));
        markers += 1;
        read_burst_frames(&mut ws, &mut seen);
    }
    // Every message published is delivered or counted as dropped (at once, when the queue
    // refuses it). A marker slower than the read timeout was sent again, and that copy may
    // still be on its way: read on (bounded) until everything is accounted for.
    let (m, dropped) = loop {
        let m = scrape(addr);
        let dropped = m.sum("tickcast_drops_total", &[("reason", "shard_queue_full")]) as u64;
        let accounted = seen.received + seen.markers + dropped;
        if accounted == BURST + markers {
            break (m, dropped);
        }
        assert!(
            accounted < BURST + markers && std::time::Instant::now() < deadline,
            "of {BURST} + {markers} markers published, {} + {} received and {dropped} dropped",
            seen.received,
            seen.markers
        );
        read_burst_frames(&mut ws, &mut seen);
    };
    assert!(
        dropped > 0,
        "a queue of 4 must overflow under a burst of {BURST}"
    );
    assert_eq!(
        m.sum("tickcast_drops_total", &[("reason", "outbox_full")]),
        0.0
    );
    assert_eq!(
        // Rooms share one `topic="rooms"` series: the burst and the end markers.
        m.sum("tickcast_messages_published_total", &[("topic", "rooms")]),
        (BURST + markers) as f64
    );
    ws.get_mut().set_read_timeout(Some(READ_TIMEOUT)).unwrap();
    close_client(ws);
    server.shutdown();
}
