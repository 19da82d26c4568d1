//! The `tickcast serve` process: graceful shutdown on SIGTERM (every queued frame, then close
//! 1001, exit 0), the drain timeout, the second signal, and a port already in use.
//!
//! These tests run the real binary on port 0 and learn its address from the
//! "tickcast listening on ADDR: ..." line it logs on stderr at start-up.

mod common;

use std::net::{SocketAddr, TcpListener};

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use common::*;
use tungstenite::Message;

/// `tickcast serve --listen 127.0.0.1:0 --no-pin <args>`, logging at info, once it listens.
fn spawn_server(args: &[&str]) -> ServeProcess {
    let all = [&["serve", "--listen", "127.0.0.1:0", "--no-pin"], args].concat();
    ServeProcess::spawn(&all, &[("RUST_LOG", "info")])
}

/// What one client saw until its connection ended.
#[derive(Debug)]
struct Seen {
    first: u64,
    last: u64,
    count: u64,
    gaps: Vec<(u64, u64)>,
    close: Option<u16>,
}

/// A client on its own thread reading ticks until the server closes; `counter` counts ticks.
/// While `pause` is set it stops reading (if `pausing`), so frames pile up for it.
fn reader(
    addr: SocketAddr,
    counter: Arc<AtomicU64>,
    pause: Arc<AtomicBool>,
    pausing: bool,
) -> JoinHandle<Seen> {
    let (mut ws, _) = connect_stream(addr, "ticks");
    std::thread::spawn(move || {
        let mut seen = Seen {
            first: 0,
            last: 0,
            count: 0,
            gaps: vec![],
            close: None,
        };
        loop {
            match ws.read() {
                Ok(Message::Text(t)) => {
                    let v: serde_json::Value = serde_json::from_str(&t).unwrap();
                    let seq = v["seq"].as_u64().unwrap();
                    if seen.count == 0 {
                        seen.first = seq;
                    } else if seq != seen.last + 1 {
                        seen.gaps.push((seen.last, seq));
                    }
                    seen.last = seq;
                    seen.count += 1;
                    counter.fetch_add(1, Ordering::SeqCst);
                    while pausing && pause.load(Ordering::SeqCst) {
                        std::thread::sleep(Duration::from_millis(5));
                    }
                }
                Ok(Message::Close(frame)) if seen.close.is_none() => {
                    seen.close = Some(frame.map_or(1005, |f| f.code.into()));
                    // tungstenite queues the close reply; keep reading to send it and to
                    // see the server end the connection.
                }
                Ok(_) => {}
                Err(_) => return seen,
            }
        }
    })
}

#[test]
fn sigterm_delivers_every_queued_frame_then_1001_and_exits_0() {
    const CLIENTS: usize = 20;
    let mut server = spawn_server(&[
        "--shards",
        "2",
        "--providers",
        "2",
        "--interval",
        "2ms",
        "--drain-timeout",
        "20s",
    ]);
    let counters: Vec<Arc<AtomicU64>> = (0..CLIENTS).map(|_| Arc::default()).collect();
    let pause = Arc::new(AtomicBool::new(false));
    // Half the clients stop reading for a while before the signal, so frames are queued for
    // them (outbox and kernel buffers) when it comes.
    let readers: Vec<_> = counters
        .iter()
        .enumerate()
        .map(|(i, c)| reader(server.addr, c.clone(), pause.clone(), i % 2 == 0))
        .collect();
    wait_for("every client to receive ticks", || {
        counters.iter().all(|c| c.load(Ordering::SeqCst) >= 20)
    });
    pause.store(true, Ordering::SeqCst);
    std::thread::sleep(Duration::from_millis(300));
    // Everything sequenced up to here was sequenced before the signal.
    let before_signal = metric(
        server.addr,
        "tickcast_messages_published_total",
        &[("topic", "ticks")],
    ) as u64;
    server.signal(libc::SIGTERM);
    std::thread::sleep(Duration::from_millis(100));
    pause.store(false, Ordering::SeqCst);
    let status = server.wait();
    assert_eq!(status.code(), Some(0), "exit status {status:?}");

    let seen: Vec<Seen> = readers.into_iter().map(|r| r.join().unwrap()).collect();
    let last = seen[0].last;
    for (i, s) in seen.iter().enumerate() {
        assert!(s.gaps.is_empty(), "client {i} saw gaps: {s:?}");
        assert_eq!(s.close, Some(1001), "client {i}: {s:?}");
        // Every client got everything the mixer sequenced before it stopped.
        assert_eq!(s.last, last, "client {i} ended elsewhere: {s:?}");
        assert!(
            s.last >= before_signal,
            "{s:?}, {before_signal} before the signal"
        );
        assert!(s.count >= 20 && s.first + s.count - 1 == s.last, "{s:?}");
    }
    // The process has exited: its stderr ends, so every line it logged can be read.
    let log = server.stderr.iter().collect::<Vec<_>>().join("\n");
    assert!(log.contains("shutting down"), "{log}");
}

#[test]
fn a_silent_client_delays_exit_only_until_the_drain_timeout() {
    let mut server = spawn_server(&["--shards", "1", "--providers", "1", "--drain-timeout", "1s"]);
    // Completes the handshake, then never reads nor answers the close.
    let _silent = RawWs::connect(server.addr, "/ws?topics=ticks");
    wait_metric(server.addr, "tickcast_handshakes_total", &[], 1.0);
    server.signal(libc::SIGTERM);
    let status = server.wait();
    assert_eq!(status.code(), Some(0), "exit status {status:?}");
}

#[test]
fn a_second_signal_exits_at_once() {
    let mut server = spawn_server(&[
        "--shards",
        "1",
        "--providers",
        "1",
        "--drain-timeout",
        "10m",
    ]);
    let _silent = RawWs::connect(server.addr, "/ws?topics=ticks");
    wait_metric(server.addr, "tickcast_handshakes_total", &[], 1.0);
    server.signal(libc::SIGTERM);
    // Wait for the first signal to be seen before sending the second.
    server.lines_until("logging the first signal", |l| l.contains("shutting down"));
    server.signal(libc::SIGINT);
    // The drain would wait ten minutes; the second signal ends it (bounded wait).
    let status = server.wait();
    assert_ne!(status.code(), Some(0), "exit status {status:?}");
}

#[test]
fn a_port_in_use_is_a_one_line_error_and_exit_code_1() {
    let holder = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = holder.local_addr().unwrap();
    let (status, stderr) = run_to_exit(
        &["serve", "--no-pin", "--listen", &addr.to_string()],
        &[("RUST_LOG", "off")],
    );
    assert_eq!(
        status.code(),
        Some(1),
        "exit status {status:?}, stderr {stderr:?}"
    );
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(lines.len(), 1, "one line on stderr: {stderr:?}");
    assert!(
        lines[0].contains("address already in use") && lines[0].contains(&addr.to_string()),
        "{stderr:?}"
    );
    drop(holder);
}
