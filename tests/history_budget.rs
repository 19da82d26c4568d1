//! The node-wide history budget: filling several rooms keeps every ring together within
//! `--history-budget` (the node's oldest frames go first), a resume from an evicted seq gets
//! `reset`, and a resume inside the kept window replays without one.

mod common;

use common::*;

/// The smallest budget accepted: about 45 of the 1.2 KB frames below (each counted with its
/// bookkeeping, `FRAME_OVERHEAD`).
const BUDGET: u64 = 64 * 1024;
const ROOMS: [&str; 4] = ["fill-a", "fill-b", "fill-c", "fill-d"];
const PER_ROOM: u64 = 100;

/// Reads until the first message of `room` that is a reset or carries a seq.
fn first_of(ws: &mut Client, room: &str) -> serde_json::Value {
    for _ in 0..1000 {
        let v = next_json(ws);
        if v["type"] == "reset" || (v["topic"] == room && v.get("seq").is_some()) {
            return v;
        }
    }
    panic!("nothing on {room}");
}

#[test]
fn filling_rooms_stays_within_the_budget_and_resumes_past_it_reset() {
    let mut cfg = quiet_config(1);
    cfg.history_budget = Some(BUDGET);
    let server = start(cfg);
    let addr = server.local_addr();
    let publisher = server.publisher();
    let pad = "x".repeat(1100);
    // Room by room: fill-a's frames are the node's oldest, fill-d's the newest.
    for room in ROOMS {
        for n in 1..=PER_ROOM {
            assert!(publisher.publish(room, &format!("{{\"n\":{n},\"pad\":\"{pad}\"}}")));
        }
    }
    let total = PER_ROOM * ROOMS.len() as u64;
    wait_metric(
        addr,
        "tickcast_messages_published_total",
        &[("topic", "rooms")],
        total as f64,
    );
    let s = scrape(addr);
    assert_eq!(
        s.sum("tickcast_messages_published_total", &[("topic", "rooms")]),
        total as f64
    );
    assert_eq!(s.sum("tickcast_history_budget_bytes", &[]), BUDGET as f64);
    let kept = s.sum("tickcast_history_bytes", &[]);
    assert!(
        kept > 0.0 && kept <= BUDGET as f64,
        "history keeps {kept} B"
    );
    // 440 KB went in, 64 KiB stays: most frames were evicted, none beyond what was kept.
    let evicted = s.sum("tickcast_history_evicted_frames_total", &[]);
    assert!(
        evicted >= (total - 60) as f64 && evicted < total as f64,
        "{evicted} evicted"
    );

    // fill-a's first frames went first: a resume from there is reset, then what is left.
    let mut old = connect(addr, "/ws?since=fill-a:1&client_id=old");
    assert_eq!(next_json(&mut old)["type"], "welcome");
    let reset = first_of(&mut old, "fill-a");
    assert_eq!(reset["type"], "reset", "{reset}");
    assert_eq!(reset["latest"], PER_ROOM);
    close_client(old);

    // fill-d's last frames are the newest: replayed, no reset.
    let since = PER_ROOM - 5;
    let got = resume(addr, "fill-d", since, 5);
    assert_eq!(got, (since + 1..=PER_ROOM).collect::<Vec<_>>());
    server.shutdown();
}
