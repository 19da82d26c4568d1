//! Replays every fuzz target's seeds, committed corpus and regression inputs through the
//! same checks the fuzzer runs, on the stable toolchain: a parser change that breaks an
//! invariant on any input the fuzzer ever kept fails here, without running the fuzzer.
//! `scripts/test.sh` runs it.

use std::panic::{AssertUnwindSafe, catch_unwind};

fn replay(target: &str, check: fn(&[u8])) {
    let inputs = tickcast_fuzz::replay_inputs(target);
    assert!(
        !inputs.is_empty(),
        "no inputs for {target}: seeds/{target} is missing"
    );
    let mut failed = Vec::new();
    for (path, bytes) in &inputs {
        if catch_unwind(AssertUnwindSafe(|| check(bytes))).is_err() {
            failed.push(path.display().to_string());
        }
    }
    assert!(
        failed.is_empty(),
        "{target}: {} of {} inputs fail:\n{}",
        failed.len(),
        inputs.len(),
        failed.join("\n")
    );
    eprintln!("{target}: {} inputs replayed", inputs.len());
}

#[test]
fn http_request() {
    replay("http_request", tickcast_fuzz::http_request::check);
}

#[test]
fn ws_frames() {
    replay("ws_frames", tickcast_fuzz::ws_frames::check);
}

#[test]
fn client_ops() {
    replay("client_ops", tickcast_fuzz::client_ops::check);
}

#[test]
fn deflate() {
    replay("deflate", tickcast_fuzz::deflate::check);
}

#[test]
fn chat() {
    replay("chat", tickcast_fuzz::chat::check);
}

#[test]
fn token() {
    replay("token", tickcast_fuzz::token::check);
}

#[test]
fn conn_state() {
    replay("conn_state", tickcast_fuzz::conn_state::check);
}

#[test]
fn proxy() {
    replay("proxy", tickcast_fuzz::proxy::check);
}

/// The harness drives the real connection: seeds reach the states they were written for.
#[test]
fn conn_state_seeds_reach_their_states() {
    let run = |name: &str| {
        let path = format!("{}/seeds/conn_state/{name}", env!("CARGO_MANIFEST_DIR"));
        tickcast_fuzz::conn_state::run(&std::fs::read(path).expect("seed"))
    };
    let o = run("ticks_read");
    assert_eq!(o.status, Some(101), "{o:?}");
    // Welcome, two broadcasts, then the echo of the peer's close.
    assert!(o.frames >= 4, "{o:?}");
    assert_eq!(
        (o.close_on_wire, o.close_code),
        (Some(1000), Some(1000)),
        "{o:?}"
    );
    let o = run("slow_disconnect");
    assert_eq!(o.close_on_wire, Some(1008), "{o:?}");
    let o = run("violation");
    assert_eq!(
        (o.close_on_wire, o.close_code),
        (Some(1002), Some(1002)),
        "{o:?}"
    );
    let o = run("idle");
    assert_eq!(o.close_on_wire, Some(1001), "{o:?}");
    let o = run("shutdown");
    assert_eq!(o.close_on_wire, Some(1001), "{o:?}");
    let o = run("ticks_stalled");
    assert_eq!((o.close_on_wire, o.close_code), (None, Some(1006)), "{o:?}");
    assert_eq!(run("healthz").status, Some(200));
    assert_eq!(run("token").status, Some(101));
    assert_eq!(run("no_token").status, Some(401));
    assert_eq!(run("origin_refused").status, Some(403));
    assert_eq!(run("slowloris").status, None);
}
