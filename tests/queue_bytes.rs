//! `--shard-queue-bytes`: what the mixer hands a shard is bounded in bytes, replays included.
//! A resume whose replay is larger than the shard's queue may hold is not dropped (its topic
//! would wait forever) nor let through whole: the client gets a `reset` naming the first frame
//! kept, then the newest frames that fit, contiguous up to the latest, and every frame cut is
//! counted as a `control_overflow` drop.

mod common;

use common::*;

/// Four of the largest messages: the smallest the server accepts with `MAX_MESSAGE`.
const QUEUE_BYTES: usize = 4 * MAX_MESSAGE;
const MAX_MESSAGE: usize = 4096;
const PUBLISHED: u64 = 100;

#[test]
fn a_replay_larger_than_the_queue_is_cut_to_its_newest_frames_behind_a_reset() {
    let mut cfg = quiet_config(1);
    cfg.max_message = MAX_MESSAGE;
    cfg.shard_queue_bytes = QUEUE_BYTES;
    let server = start(cfg);
    let addr = server.local_addr();
    assert_eq!(
        scrape(addr).sum("tickcast_drops_total", &[("reason", "control_overflow")]),
        0.0
    );
    let publisher = server.publisher();
    // About 1 KB per frame: the replay of 99 frames is six times the queue's bytes.
    let pad = "x".repeat(1000);
    for n in 1..=PUBLISHED {
        assert!(publisher.publish("cut-a", &format!("{{\"n\":{n},\"pad\":\"{pad}\"}}")));
    }
    wait_metric(
        addr,
        "tickcast_messages_published_total",
        &[("topic", "rooms")],
        PUBLISHED as f64,
    );

    let mut ws = connect(addr, "/ws?since=cut-a:1&client_id=late");
    assert_eq!(next_json(&mut ws)["type"], "welcome");
    let reset = loop {
        let v = next_json(&mut ws);
        if v["type"] == "reset" || (v["topic"] == "cut-a" && v.get("seq").is_some()) {
            break v;
        }
    };
    assert_eq!(reset["type"], "reset", "the replay is cut: {reset}");
    assert_eq!(reset["latest"], PUBLISHED);
    let oldest = reset["oldest"].as_u64().expect("oldest");
    let mut seqs = Vec::new();
    while seqs.last() != Some(&PUBLISHED) {
        let v = next_json(&mut ws);
        if v["topic"] == "cut-a" && v.get("seq").is_some() {
            assert_eq!(v["data"]["n"], v["seq"], "{v}");
            seqs.push(v["seq"].as_u64().expect("seq"));
        }
    }
    assert_eq!(
        seqs,
        (oldest..=PUBLISHED).collect::<Vec<_>>(),
        "contiguous to the latest"
    );
    let kept_bytes = seqs.len() * (pad.len() + 50);
    assert!(
        !seqs.is_empty() && kept_bytes <= QUEUE_BYTES,
        "{} frames kept of about 1 KB each, within {QUEUE_BYTES} B",
        seqs.len()
    );
    // Replayed from seq 2: the frames before `oldest` were cut, and counted.
    let cut = oldest - 2;
    assert!(cut > 0);
    wait_metric(
        addr,
        "tickcast_drops_total",
        &[("reason", "control_overflow")],
        cut as f64,
    );
    assert_eq!(
        scrape(addr).sum("tickcast_drops_total", &[("reason", "control_overflow")]),
        cut as f64
    );
    close_client(ws);
    server.shutdown();
}

#[test]
fn a_shard_queue_smaller_than_four_messages_is_refused_at_start() {
    let err = refused(
        &[
            "serve",
            "--max-message",
            "4096",
            "--shard-queue-bytes",
            "16383",
        ],
        &[],
    );
    assert!(err.contains("--shard-queue-bytes"), "{err}");
}
