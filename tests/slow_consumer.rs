//! Slow consumers: a client that stops reading must not hold back the others, its memory on
//! the server stays within `--outbox-limit`, and each policy does what it says and counts it.
//!
//! The stalled client is a raw socket with a small receive buffer that completes the
//! handshake and then stops reading. The healthy client is a tungstenite client on the same
//! shard that reads every batch before the next is published, so its own outbox never holds
//! more than one batch: any gap it saw would be the stalled client's fault.

mod common;

use std::net::{SocketAddr, TcpStream};

use common::*;
use tickcast::config::{ServerConfig, SlowPolicy};
use tickcast::server::Publisher;

const OUTBOX_LIMIT: usize = 32 * 1024;
/// Frames per batch: well under the outbox limit for the healthy client.
const BATCH: u64 = 8;
/// Upper bound on what a test publishes (about 20 MB of frames).
const MAX_FRAMES: u64 = 20_000;

fn slow_config(policy: SlowPolicy) -> ServerConfig {
    ServerConfig {
        outbox_limit: OUTBOX_LIMIT,
        slow_policy: policy,
        // Clients do not publish here; unlimited publishing has no burst to fit the small
        // outbox.
        publish_rate: 0.0,
        // The largest message still fits the small outbox in its envelope.
        max_message: 16 * 1024,
        ..quiet_config(1)
    }
}

/// A client that connects with a 4 KiB receive buffer, completes the handshake on
/// `/ws?topics=flood` and then reads nothing until the test says so.
fn stalled_client(addr: SocketAddr) -> RawWs {
    let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    socket.connect(&addr.into()).unwrap();
    RawWs::handshake(TcpStream::from(socket), "/ws?topics=flood")
}

/// A message body of about 1 KB.
fn body(i: u64) -> String {
    format!(r#"{{"i":{i},"pad":"{}"}}"#, "x".repeat(1000))
}

/// Publishes frames in batches, the healthy client reading each batch completely (and
/// checking every seq) before the next, until `done` says stop. Returns how many were
/// published.
fn flood(
    addr: SocketAddr,
    p: &Publisher,
    healthy: &mut Client,
    mut done: impl FnMut(SocketAddr) -> bool,
) -> u64 {
    let mut published = 0;
    let mut batches = 0u64;
    loop {
        for _ in 0..BATCH {
            published += 1;
            assert!(p.publish("flood", &body(published)));
        }
        for seq in published - BATCH + 1..=published {
            let m = next_data(healthy);
            assert_eq!(m["seq"], seq, "the healthy client must get every seq");
        }
        batches += 1;
        if batches.is_multiple_of(16) && done(addr) {
            return published;
        }
        assert!(
            published < MAX_FRAMES,
            "the slow-consumer policy never applied"
        );
    }
}

/// Bytes queued in the kernel for a TCP connection on 127.0.0.1: the sender's unacknowledged
/// or unsent bytes plus the receiver's unread bytes, from `/proc/net/tcp`.
fn kernel_queued(server_port: u16, client_port: u16) -> u64 {
    let table = std::fs::read_to_string("/proc/net/tcp").unwrap();
    let mut total = 0;
    let mut found = 0;
    for line in table.lines().skip(1) {
        let f: Vec<&str> = line.split_whitespace().collect();
        let port = |addr: &str| u16::from_str_radix(addr.rsplit(':').next().unwrap(), 16).unwrap();
        let (local, remote) = (port(f[1]), port(f[2]));
        let (tx, rx) = f[4].split_once(':').unwrap();
        let (tx, rx) = (
            u64::from_str_radix(tx, 16).unwrap(),
            u64::from_str_radix(rx, 16).unwrap(),
        );
        let ends = [(server_port, client_port), (client_port, server_port)];
        if ends.contains(&(local, remote)) {
            total += tx + rx;
            found += 1;
        }
    }
    assert_eq!(found, 2, "both ends of the connection in /proc/net/tcp");
    total
}

#[test]
fn drop_policy_skips_frames_for_the_stalled_client_only() {
    let server = start(slow_config(SlowPolicy::Drop));
    let addr = server.local_addr();
    let mut stalled = stalled_client(addr);
    let (mut healthy, _) = connect_stream(addr, "flood");
    let p = server.publisher();
    let drops = |addr| metric(addr, "tickcast_drops_total", &[("reason", "outbox_full")]);

    let published = flood(addr, &p, &mut healthy, |addr| drops(addr) >= 200.0);
    // The scrape is served on the shard after the turn that wrote the healthy client's last
    // frame, so every drop is counted by now.
    let dropped = drops(addr) as u64;
    assert!(dropped > 0 && dropped < published);
    assert_eq!(
        metric(
            addr,
            "tickcast_drops_total",
            &[("reason", "shard_queue_full")]
        ),
        0.0
    );
    let client_port = stalled.stream.local_addr().unwrap().port();
    let in_kernel = kernel_queued(addr.port(), client_port);

    // The stalled client resumes: the welcome, then exactly the frames that were not dropped.
    let welcome = stalled.read_frame().expect("welcome");
    assert!(welcome.text().contains(r#""type":"welcome""#));
    let mut prefix_bytes = welcome.wire_len() as u64;
    let mut in_prefix = true;
    let mut last = 0u64;
    let mut gaps = 0;
    let mut data_frames = 0;
    while data_frames < published - dropped {
        let f = stalled.read_frame().expect("a frame");
        let m: serde_json::Value = serde_json::from_str(&f.text()).unwrap();
        // `flood` is a room: presence frames (no seq) come along with the data.
        let Some(seq) = m["seq"].as_u64() else {
            if in_prefix {
                prefix_bytes += f.wire_len() as u64;
            }
            continue;
        };
        data_frames += 1;
        assert!(seq > last, "seq must increase: {last} then {seq}");
        if seq != last + 1 {
            gaps += 1;
            in_prefix = false;
        }
        if in_prefix {
            prefix_bytes += f.wire_len() as u64;
        }
        last = seq;
    }
    // Everything it got before its first gap was in the kernel's buffers or in its outbox
    // when the first frame was dropped: the outbox never held more than the limit.
    assert!(
        prefix_bytes <= in_kernel + OUTBOX_LIMIT as u64,
        "{prefix_bytes} bytes before the first gap, {in_kernel} in the kernel, limit {OUTBOX_LIMIT}"
    );
    // Nothing else was queued: the next frame is the next message published, after a gap.
    assert!(p.publish("flood", &body(published + 1)));
    let next: serde_json::Value =
        serde_json::from_str(&stalled.read_until(op::TEXT).text()).unwrap();
    assert_eq!(next["seq"], published + 1);
    if next["seq"] != last + 1 {
        gaps += 1;
    }
    assert!(gaps > 0, "the stalled client must see a seq gap");
    assert_eq!(next_data(&mut healthy)["seq"], published + 1);

    assert_eq!(
        metric(addr, "tickcast_slow_consumer_disconnects_total", &[]),
        0.0
    );
    drop(stalled);
    close_client(healthy);
    server.shutdown();
}

#[test]
fn disconnect_policy_closes_the_stalled_client_with_1008() {
    let server = start(slow_config(SlowPolicy::Disconnect));
    let addr = server.local_addr();
    let mut stalled = stalled_client(addr);
    let (mut healthy, _) = connect_stream(addr, "flood");
    let p = server.publisher();

    let published = flood(addr, &p, &mut healthy, |addr| {
        metric(addr, "tickcast_slow_consumer_disconnects_total", &[]) >= 1.0
    });
    assert_eq!(
        metric(addr, "tickcast_drops_total", &[("reason", "outbox_full")]),
        0.0,
        "the disconnect policy does not drop frames"
    );
    // What the stalled client was refused, and what it had queued, is counted at its close.
    wait_metric(
        addr,
        "tickcast_drops_total",
        &[("reason", "slow_consumer")],
        1.0,
    );

    // The stalled client resumes: frames in order without a gap, then close 1008.
    let mut last = 0u64;
    let close = loop {
        let f = stalled.read_frame().expect("a frame or the close");
        match f.opcode() {
            op::CLOSE => break f,
            op::TEXT => {
                let m: serde_json::Value = serde_json::from_str(&f.text()).unwrap();
                if let Some(seq) = m["seq"].as_u64() {
                    assert_eq!(seq, last + 1, "no gap before the close");
                    last = seq;
                }
            }
            other => panic!("unexpected opcode {other}"),
        }
    };
    assert!(last > 0 && last < published, "{last} of {published}");
    assert_eq!(close.close_code(), 1008);
    assert_eq!(&close.payload[2..], b"slow consumer");
    stalled.send(op::FIN | op::CLOSE, &1008u16.to_be_bytes());
    assert!(stalled.ends(), "the server ends the connection");
    wait_metric(addr, "tickcast_closes_total", &[("code", "1008")], 1.0);

    // The healthy client goes on.
    assert!(p.publish("flood", &body(published + 1)));
    assert_eq!(next_data(&mut healthy)["seq"], published + 1);
    assert_eq!(
        metric(addr, "tickcast_slow_consumer_disconnects_total", &[]),
        1.0
    );
    close_client(healthy);
    server.shutdown();
}
