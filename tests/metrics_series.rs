//! `/metrics` stays bounded however many rooms come and go: every room counts under one
//! `topic="rooms"` series and no room name is listed; `--metrics-listen` serves the metrics
//! on its own address, and the public port then answers 404 to `/metrics`.

mod common;

use common::*;

/// Series (sample lines) in a scrape.
fn series(s: &Scrape) -> usize {
    s.text
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .count()
}

/// Joins `room`, publishes one message into it, reads it back, and leaves (the room ends).
fn short_lived_room(addr: std::net::SocketAddr, room: &str) {
    let mut ws = connect(addr, &format!("/ws?room={room}"));
    assert_eq!(next_json(&mut ws)["type"], "welcome");
    publish(&mut ws, room, 1);
    assert_eq!(next_in(&mut ws, room)["data"]["n"], 1);
    close_client(ws);
}

#[test]
fn short_lived_rooms_leave_the_series_and_the_size_bounded() {
    let server = start(quiet_config(1));
    let addr = server.local_addr();
    short_lived_room(addr, "warmup");
    wait_metric(addr, "tickcast_messages_published_total", &[], 1.0);
    let before = scrape(addr);
    const ROOMS: usize = 300;
    for i in 0..ROOMS {
        short_lived_room(addr, &format!("churn-{i}"));
    }
    let total = (ROOMS + 1) as f64;
    wait_metric(addr, "tickcast_messages_published_total", &[], total);
    let after = scrape(addr);
    assert_eq!(
        after.sum("tickcast_messages_published_total", &[("topic", "rooms")]),
        total
    );
    assert!(!after.text.contains("churn-"), "a room name is listed");
    assert_eq!(series(&after), series(&before), "rooms added series");
    // Counter values grow by a few digits; 300 room series would add ~20 KB.
    assert!(
        after.text.len() <= before.text.len() + 512,
        "/metrics grew from {} to {} bytes",
        before.text.len(),
        after.text.len()
    );
    server.shutdown();
}

#[test]
fn metrics_listen_serves_the_metrics_and_the_public_port_does_not() {
    let mut cfg = quiet_config(1);
    cfg.metrics_listen = Some("127.0.0.1:0".parse().unwrap());
    let server = start(cfg);
    let public = server.local_addr();
    let private = server.metrics_addr().expect("the metrics address");
    assert_ne!(public, private);
    short_lived_room(public, "private-check");
    wait_metric(
        private,
        "tickcast_messages_published_total",
        &[("topic", "rooms")],
        1.0,
    );
    let (status, body) = http_get(private, "/healthz");
    assert_eq!((status, body.as_str()), (200, "ok\n"));
    assert_eq!(http_get(private, "/").0, 404);
    // The public port does not know /metrics, and counts the refusal like any unknown path.
    assert_eq!(http_get(public, "/metrics").0, 404);
    assert_eq!(http_get(public, "/healthz").0, 200);
    wait_metric(
        private,
        "tickcast_handshake_failures_total",
        &[("reason", "not_found")],
        1.0,
    );
    server.shutdown();
}
