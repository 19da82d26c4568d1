//! Several nodes as one server through a real `redis-server`: a topic's history lives in
//! Redis, so a client resumes on any node (after its own node was killed, or after every
//! node restarted) with exactly the messages it missed; a room's members are the same on
//! every node, and a killed node's members leave everyone's view; and a room nobody uses any
//! more leaves no keys behind.
//!
//! The node that dies is a real process killed with SIGKILL; the others run in-process.

mod common;

use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use tickcast::bus::BusConfig;
use tickcast::server::RunningServer;

/// A node in this process, sharing `prefix` through `url`.
fn node(url: &str, prefix: &str) -> RunningServer {
    let mut cfg = quiet_config(2);
    cfg.redis = Some(BusConfig {
        prefix: prefix.into(),
        node_ttl: NODE_TTL,
        ..BusConfig::new(url)
    });
    start(cfg)
}

/// A short heartbeat, so a killed node's members leave within a test's patience.
const NODE_TTL: Duration = Duration::from_secs(1);

/// A node as its own process (so that it can be killed), listening on a free port.
struct NodeProcess {
    child: Child,
    addr: SocketAddr,
}

impl NodeProcess {
    fn start(url: &str, prefix: &str) -> NodeProcess {
        let port = free_port();
        let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_tickcast"))
            .args(["serve", "--listen", &addr.to_string(), "--no-pin"])
            .args(["--providers", "0", "--telemetry-interval", "0s"])
            .args(["--redis", url, "--redis-prefix", prefix])
            .args(["--node-ttl", "1s"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start tickcast serve");
        let mut node = NodeProcess { child, addr };
        wait_for("the node to answer /healthz with Redis", || {
            if let Some(status) = node.child.try_wait().unwrap() {
                panic!("the node exited at start: {status}");
            }
            std::net::TcpStream::connect(addr).is_ok() && http_get(addr, "/healthz").1 == "ok\n"
        });
        node
    }

    /// SIGKILL: no drain, no goodbye.
    fn kill(mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }
}

impl Drop for NodeProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn a_client_resumes_on_another_node_after_its_node_is_killed() {
    let redis = Redis::start(free_port());
    let prefix = format!("t{}", free_port());
    let a = NodeProcess::start(&redis.url(), &prefix);
    let mut on_a = member(a.addr, "room.k", "alice");
    let seen = publish_and_read(&mut on_a, "room.k", 0..3);
    let k = *seen.last().unwrap();
    a.kill();
    // Five more through node B, by a member that then leaves: B keeps no state of its own
    // for the room, so only Redis can answer the resume.
    let b = node(&redis.url(), &prefix);
    let mut on_b = connect(b.local_addr(), "/ws?room=room.k&client_id=bob");
    assert_eq!(next_json(&mut on_b)["type"], "welcome");
    for n in 3..8 {
        publish(&mut on_b, "room.k", n);
    }
    let client = redis::Client::open(redis.url()).unwrap();
    let mut conn = client.get_connection().unwrap();
    let seq_key = BusConfig {
        prefix: prefix.clone(),
        ..BusConfig::new(&redis.url())
    }
    .seq_key("room.k");
    wait_for("the five to be sequenced in Redis", || {
        redis::cmd("GET")
            .arg(&seq_key)
            .query::<u64>(&mut conn)
            .unwrap()
            == k + 5
    });
    close_client(on_b);
    wait_metric(
        b.local_addr(),
        "tickcast_closes_total",
        &[("code", "1005")],
        1.0,
    );
    assert_eq!(resume(b.local_addr(), "room.k", k, 5), vec![3, 4, 5, 6, 7]);
    b.shutdown();
}

#[test]
fn a_resume_replays_from_redis_after_every_node_restarted() {
    let redis = Redis::start(free_port());
    let prefix = format!("t{}", free_port());
    let a = node(&redis.url(), &prefix);
    let mut on_a = member(a.local_addr(), "room.r", "alice");
    let seqs = publish_and_read(&mut on_a, "room.r", 0..10);
    close_client(on_a);
    a.shutdown();
    // A fresh node: its rings are empty.
    let b = node(&redis.url(), &prefix);
    assert_eq!(
        resume(b.local_addr(), "room.r", seqs[3], 6),
        vec![4, 5, 6, 7, 8, 9]
    );
    b.shutdown();
}

#[test]
fn a_resume_meets_the_live_stream_without_a_gap_or_a_duplicate() {
    let redis = Redis::start(free_port());
    let prefix = format!("t{}", free_port());
    let a = node(&redis.url(), &prefix);
    let b = node(&redis.url(), &prefix);
    let mut on_a = member(a.local_addr(), "room.s", "alice");
    let seqs = publish_and_read(&mut on_a, "room.s", 0..20);
    // A client resumes on B (which never had a member of the room) while A keeps publishing.
    let mut back = connect(
        b.local_addr(),
        &format!("/ws?since=room.s:{}&client_id=back", seqs[4]),
    );
    assert_eq!(next_json(&mut back)["type"], "welcome");
    for n in 20..40 {
        publish(&mut on_a, "room.s", n);
    }
    let got: Vec<u64> = (0..35)
        .map(|_| next_in(&mut back, "room.s")["data"]["n"].as_u64().unwrap())
        .collect();
    assert_eq!(got, (5..40).collect::<Vec<_>>());
    close_client(back);
    close_client(on_a);
    a.shutdown();
    b.shutdown();
}

#[test]
fn a_resume_past_what_redis_keeps_is_a_reset() {
    let redis = Redis::start(free_port());
    let prefix = format!("t{}", free_port());
    let mut cfg = quiet_config(1);
    cfg.history = 5;
    // 400 publishes in a row: over the default burst.
    cfg.publish_rate = 0.0;
    cfg.redis = Some(BusConfig {
        prefix: prefix.clone(),
        history: 5,
        ..BusConfig::new(&redis.url())
    });
    let a = start(cfg);
    let mut on_a = member(a.local_addr(), "room.t", "alice");
    // Far more than the stream keeps (trimming is approximate, by whole blocks).
    let seqs = publish_and_read(&mut on_a, "room.t", 0..400);
    close_client(on_a);
    wait_metric(
        a.local_addr(),
        "tickcast_closes_total",
        &[("code", "1005")],
        1.0,
    );
    let mut ws = connect(
        a.local_addr(),
        &format!("/ws?since=room.t:{}&client_id=late", seqs[0]),
    );
    assert_eq!(next_json(&mut ws)["type"], "welcome");
    // Presence may come first; no message of the room may come before the reset.
    let reset = loop {
        let v = next_json(&mut ws);
        assert!(v.get("seq").is_none(), "a message before the reset: {v}");
        if v["type"] == "reset" {
            break v;
        }
    };
    let oldest = reset["oldest"].as_u64().unwrap();
    assert!(
        oldest > seqs[1] && oldest <= *seqs.last().unwrap(),
        "{reset}"
    );
    // What follows the reset is the oldest kept, then everything up to the last.
    let first = next_in(&mut ws, "room.t");
    assert_eq!(first["seq"].as_u64(), Some(oldest));
    close_client(ws);
    a.shutdown();
}

#[test]
fn an_idle_room_leaves_no_keys_in_redis() {
    let redis = Redis::start(free_port());
    let prefix = format!("t{}", free_port());
    let bus = BusConfig {
        prefix: prefix.clone(),
        room_ttl: Duration::from_millis(500),
        ..BusConfig::new(&redis.url())
    };
    let mut cfg = quiet_config(1);
    cfg.redis = Some(bus.clone());
    let a = start(cfg);
    let mut on_a = member(a.local_addr(), "room.idle", "alice");
    publish_and_read(&mut on_a, "room.idle", 0..3);
    let client = redis::Client::open(redis.url()).unwrap();
    let mut conn = client.get_connection().unwrap();
    let keys = [bus.seq_key("room.idle"), bus.stream_key("room.idle")];
    let exists = |conn: &mut redis::Connection| -> usize {
        keys.iter()
            .map(|k| redis::cmd("EXISTS").arg(k).query::<usize>(conn).unwrap())
            .sum()
    };
    // Right after a publish both keys are there; a room TTL later, neither.
    let started = Instant::now();
    publish_and_read(&mut on_a, "room.idle", 3..4);
    let present = exists(&mut conn);
    assert!(
        present == 2 || started.elapsed() >= Duration::from_millis(500),
        "{present} of 2 keys right after a publish"
    );
    wait_for("the idle room's keys to expire", || exists(&mut conn) == 0);
    close_client(on_a);
    a.shutdown();
}

#[test]
fn members_on_two_nodes_see_each_others_joins_and_leaves() {
    let redis = Redis::start(free_port());
    let prefix = format!("t{}", free_port());
    let a = node(&redis.url(), &prefix);
    let b = node(&redis.url(), &prefix);
    let mut alice = member(a.local_addr(), "room.p", "alice");
    let mut bob = member(b.local_addr(), "room.p", "bob");
    // Alice hears of Bob's join; Bob read the room's members when he came.
    await_presence(&mut alice, "room.p", 2, &[]);
    assert_eq!(await_who(&mut bob, "room.p", 2), ["alice", "bob"]);
    let carol = member(a.local_addr(), "room.p", "carol");
    await_presence(&mut bob, "room.p", 3, &[]);
    assert_eq!(
        who(&mut bob, "room.p"),
        (vec!["alice".into(), "bob".into(), "carol".into()], 3)
    );
    assert_eq!(who(&mut alice, "room.p"), who(&mut bob, "room.p"));
    close_client(carol);
    await_presence(&mut bob, "room.p", 2, &[]);
    assert_eq!(
        who(&mut bob, "room.p"),
        (vec!["alice".into(), "bob".into()], 2)
    );
    close_client(alice);
    close_client(bob);
    a.shutdown();
    b.shutdown();
}

#[test]
fn a_killed_nodes_members_leave_the_others_view_within_the_ttl() {
    let redis = Redis::start(free_port());
    let prefix = format!("t{}", free_port());
    let a = NodeProcess::start(&redis.url(), &prefix);
    let b = node(&redis.url(), &prefix);
    let _alice = member(a.addr, "room.d", "alice");
    let _ann = member(a.addr, "room.d", "ann");
    let mut bob = member(b.local_addr(), "room.d", "bob");
    assert_eq!(await_who(&mut bob, "room.d", 3), ["alice", "ann", "bob"]);
    let killed = Instant::now();
    a.kill();
    // Both of A's members leave B's view (two leave events), by the TTL and a few beats.
    await_presence(&mut bob, "room.d", 1, &[]);
    let took = killed.elapsed();
    assert!(took < NODE_TTL * 8, "took {took:?}");
    assert_eq!(who(&mut bob, "room.d"), (vec!["bob".into()], 1));
    close_client(bob);
    b.shutdown();
}
