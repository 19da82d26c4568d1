//! `/echo` is charged like `/ws`: a client that writes past the publish limits without
//! reading is closed with 1008 and counted, so what it can make the server hold is its byte
//! burst, not its outbox; other clients keep being echoed. `--echo off` answers 404.

mod common;

use common::*;

const MASK: [u8; 4] = [1, 2, 3, 4];

#[test]
fn an_echo_client_past_its_byte_burst_is_closed_and_the_others_are_served() {
    const SIZE: usize = 8 * 1024;
    const MESSAGES: usize = 96;
    let mut cfg = quiet_config(1);
    // The defaults, stated: 256 KiB of burst at 128 KiB/s.
    cfg.publish_byte_burst = 256 * 1024;
    cfg.publish_byte_rate = 128.0 * 1024.0;
    let server = start(cfg);
    let addr = server.local_addr();
    let mut other = connect(addr, "/echo");

    // 768 KiB written at once, nothing read meanwhile.
    let mut flooder = RawWs::connect(addr, "/echo");
    let body = vec![b'x'; SIZE];
    let mut burst = Vec::new();
    for _ in 0..MESSAGES {
        burst.extend(client_frame(op::FIN | op::BINARY, &body, Some(MASK)));
    }
    // From a thread of its own, errors ignored: the server may close before it is all read.
    let mut writer = flooder.stream.try_clone().unwrap();
    let writer = std::thread::spawn(move || {
        let _ = std::io::Write::write_all(&mut writer, &burst);
    });
    let mut echoed = 0usize;
    let close = loop {
        let f = flooder
            .read_frame()
            .expect("an echo or the close, before the connection ends");
        if f.opcode() == op::CLOSE {
            break f;
        }
        assert_eq!(f.payload.len(), SIZE);
        echoed += 1;
    };
    writer.join().unwrap();
    assert_eq!(close.close_code(), 1008, "{}", close.text());
    // The burst and what the rate refilled while the write arrived; far from all of it.
    assert!(echoed >= 256 * 1024 / SIZE - 1, "only {echoed} echoed");
    assert!(echoed < MESSAGES / 2, "{echoed} of {MESSAGES} echoed");
    assert!(
        metric(
            addr,
            "tickcast_client_errors_total",
            &[("code", "rate_limited")]
        ) >= 1.0
    );
    wait_metric(addr, "tickcast_closes_total", &[("code", "1008")], 1.0);

    other
        .send(tungstenite::Message::text("still here"))
        .unwrap();
    assert_eq!(
        other.read().unwrap(),
        tungstenite::Message::text("still here")
    );
    close_client(other);
    server.shutdown();
}

#[test]
fn echo_off_answers_404_and_leaves_ws_alone() {
    let mut cfg = quiet_config(1);
    cfg.echo = false;
    let server = start(cfg);
    let addr = server.local_addr();
    assert_eq!(upgrade_status(addr, "/echo", ""), 404);
    assert_eq!(upgrade_status(addr, "/ws", ""), 101);
    assert!(
        metric(
            addr,
            "tickcast_handshake_failures_total",
            &[("reason", "not_found")]
        ) >= 1.0
    );
    server.shutdown();

    let server = start(quiet_config(1));
    assert_eq!(
        upgrade_status(server.local_addr(), "/echo", ""),
        101,
        "on by default"
    );
    server.shutdown();
}
