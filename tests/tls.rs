//! Native TLS (`--tls-cert`/`--tls-key`): verifying `wss://` clients against a real server,
//! the failures an operator must be able to tell apart (wrong host name, a plain client on
//! the TLS port, a handshake that never finishes), and certificate reloads (SIGHUP on the
//! real binary) with clients streaming through them.

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use tungstenite::Message;

/// A TLS server in this process, ticking every 10 ms.
fn tls_server(pki: &Pki, shards: usize) -> tickcast::server::RunningServer {
    let mut cfg = test_config(shards);
    cfg.tls = Some(pki.files.clone());
    start(cfg)
}

fn failures(server: &tickcast::server::RunningServer, reason: &str) -> f64 {
    parse_metrics(&server.metrics().render())
        .sum("tickcast_handshake_failures_total", &[("reason", reason)])
}

/// Reads data messages until one of `topic` arrives; returns its seq.
fn next_seq<S: Read + Write>(ws: &mut tungstenite::WebSocket<S>, topic: &str) -> u64 {
    loop {
        match ws.read().expect("read") {
            Message::Text(t) => {
                let v: serde_json::Value = serde_json::from_str(&t).expect("json");
                if v["topic"] == topic
                    && let Some(seq) = v["seq"].as_u64()
                {
                    return seq;
                }
            }
            Message::Close(c) => panic!("closed: {c:?}"),
            _ => {}
        }
    }
}

#[test]
fn a_verifying_wss_client_streams_publishes_and_echoes_large_messages() {
    let dir = temp_dir("tls-stream");
    let pki = Pki::new(&dir, "server");
    let server = tls_server(&pki, 2);
    let addr = server.local_addr();

    let mut ws = connect_tls(addr, &pki.ca, "/ws?topics=ticks,chat");
    let welcome = match ws.read().unwrap() {
        Message::Text(t) => serde_json::from_str::<serde_json::Value>(&t).unwrap(),
        other => panic!("{other:?}"),
    };
    assert_eq!(welcome["type"], "welcome", "{welcome}");
    // Ticks arrive in order over TLS.
    let first = next_seq(&mut ws, "ticks");
    for i in 1..=20 {
        assert_eq!(next_seq(&mut ws, "ticks"), first + i);
    }
    // A publish goes through the mixer and comes back.
    ws.send(Message::text(
        r#"{"op":"publish","topic":"chat","data":{"text":"over tls"}}"#,
    ))
    .unwrap();
    next_seq(&mut ws, "chat");
    close_client_tls(ws);

    // /echo with a message far larger than one TLS record (16 KiB) comes back whole, and
    // so do many small ones written before any is read (the limit is --max-message, 64 KiB).
    let mut echo = connect_tls(addr, &pki.ca, "/echo");
    let big: Vec<u8> = (0..60_000u32).map(|i| (i % 251) as u8).collect();
    echo.send(Message::binary(big.clone())).unwrap();
    for i in 0..100u32 {
        echo.send(Message::text(format!("small {i}"))).unwrap();
    }
    let mut got_big = false;
    let mut small = 0;
    while !(got_big && small == 100) {
        match echo.read().unwrap() {
            Message::Binary(b) => {
                assert_eq!(b.as_ref(), big.as_slice());
                got_big = true;
            }
            Message::Text(t) => {
                assert_eq!(t.as_str(), format!("small {small}"));
                small += 1;
            }
            _ => {}
        }
    }
    close_client_tls(echo);

    // /metrics over https. The scrape's own handshake may be counted after its body is
    // rendered (when its Finished and request arrive in one read), so each scrape shows the
    // handshakes before it for sure; a later one shows this one's.
    let (status, body) = https_get(addr, &pki.ca, "/metrics");
    assert_eq!(status, 200);
    assert_eq!(
        parse_metrics(&body).sum("tickcast_tls_errors_total", &[]),
        0.0
    );
    wait_for("the three TLS handshakes counted", || {
        let (status, body) = https_get(addr, &pki.ca, "/metrics");
        status == 200 && parse_metrics(&body).sum("tickcast_tls_handshakes_total", &[]) >= 3.0
    });
    let (_, body) = https_get(addr, &pki.ca, "/metrics");
    assert_eq!(
        parse_metrics(&body).sum("tickcast_tls_errors_total", &[]),
        0.0,
        "{body}"
    );
    server.shutdown();
    let _ = std::fs::remove_dir_all(dir);
}

/// Closes a wss client politely and waits (bounded) for the server's reply.
fn close_client_tls(mut ws: TlsClient) {
    let _ = ws.close(None);
    let deadline = Instant::now() + READ_TIMEOUT;
    while Instant::now() < deadline {
        if ws.read().is_err() {
            break;
        }
    }
}

#[test]
fn wrong_names_and_unknown_authorities_fail_the_handshake_and_are_counted() {
    let dir = temp_dir("tls-names");
    let pki = Pki::new(&dir, "server");
    let other = Pki::new(&dir, "other");
    let server = tls_server(&pki, 1);
    let addr = server.local_addr();

    // The certificate names localhost and 127.0.0.1: another name is refused by the client,
    // which tells the server with an alert.
    let e = try_connect_tls(addr, &pki.ca, "wrong.example", "/ws")
        .expect_err("a wrong host name must fail");
    assert!(
        e.contains("NotValidForName") || e.contains("not valid for name"),
        "{e}"
    );
    // A client that trusts another CA refuses the certificate.
    let e = try_connect_tls(addr, &other.ca, "localhost", "/ws")
        .expect_err("an unknown issuer must fail");
    assert!(
        e.contains("UnknownIssuer") || e.contains("unknown issuer"),
        "{e}"
    );
    wait_for("both refusals counted as TLS handshake failures", || {
        failures(&server, "tls") >= 2.0
    });
    // The IP address in the certificate verifies too, and the server still serves.
    let mut ws = try_connect_tls(addr, &pki.ca, "127.0.0.1", "/ws?topics=ticks").unwrap();
    next_seq(&mut ws, "ticks");
    server.shutdown();
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn a_plain_client_on_the_tls_port_is_told_in_plain_http() {
    let dir = temp_dir("tls-plain");
    let pki = Pki::new(&dir, "server");
    let server = tls_server(&pki, 1);
    let addr = server.local_addr();

    let resp = raw_http(addr, upgrade_request("/ws", "").as_bytes());
    assert_eq!(status_of(&resp), 400, "{resp}");
    assert!(resp.contains("wss://"), "{resp}");
    // A tungstenite ws:// client fails the same way.
    assert!(try_connect(addr, "/ws").is_err());
    wait_for("plain requests counted", || {
        failures(&server, "plain_on_tls") >= 2.0
    });
    assert_eq!(failures(&server, "tls"), 0.0);
    server.shutdown();
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn a_tls_handshake_that_never_finishes_is_cut_at_the_handshake_timeout() {
    let dir = temp_dir("tls-slow");
    let pki = Pki::new(&dir, "server");
    let mut cfg = test_config(1);
    cfg.tls = Some(pki.files.clone());
    cfg.handshake_timeout = Duration::from_secs(1);
    let server = start(cfg);
    let addr = server.local_addr();

    // Slowloris: 30 sockets open a TLS record header (and one byte of a ClientHello) and stop.
    let mut stalled: Vec<TcpStream> = (0..30)
        .map(|_| {
            let mut s = TcpStream::connect(addr).unwrap();
            s.write_all(&[0x16, 0x03, 0x01, 0x02, 0x00, 0x01]).unwrap();
            s.set_read_timeout(Some(READ_TIMEOUT)).unwrap();
            s
        })
        .collect();
    // A real client is served meanwhile.
    let mut ws = connect_tls(addr, &pki.ca, "/ws?topics=ticks");
    let start = next_seq(&mut ws, "ticks");
    // Every stalled socket is closed by the server (EOF or reset), none before it is due.
    for s in &mut stalled {
        let mut buf = [0u8; 64];
        let ended = matches!(s.read(&mut buf), Ok(0) | Err(_));
        assert!(ended);
    }
    wait_for("30 handshake timeouts", || {
        failures(&server, "timeout") >= 30.0
    });
    assert!(next_seq(&mut ws, "ticks") > start);
    server.shutdown();
    let _ = std::fs::remove_dir_all(dir);
}

/// The real binary, serving TLS, with its address from the listening line.
struct TlsProcess {
    child: Child,
    addr: SocketAddr,
}

impl TlsProcess {
    fn start(files: &tickcast::config::TlsFiles) -> TlsProcess {
        let port = free_port();
        let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_tickcast"))
            .args(["serve", "--listen", &addr.to_string(), "--no-pin"])
            .args(["--shards", "2", "--providers", "1", "--interval", "10ms"])
            .arg("--tls-cert")
            .arg(&files.cert)
            .arg("--tls-key")
            .arg(&files.key)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start tickcast serve");
        TlsProcess { child, addr }
    }

    fn hangup(&self) {
        let pid = self.child.id() as libc::pid_t;
        // SAFETY: kill(2) with a child's pid and a valid signal number has no memory effects.
        assert_eq!(unsafe { libc::kill(pid, libc::SIGHUP) }, 0);
    }
}

impl Drop for TlsProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn sighup_reloads_the_pair_without_dropping_streaming_clients_and_keeps_it_on_bad_files() {
    let dir = temp_dir("tls-reload");
    let first = Pki::new(&dir, "first");
    let second = Pki::new(&dir, "second");
    let live = tickcast::config::TlsFiles {
        cert: dir.join("live.crt"),
        key: dir.join("live.key"),
    };
    first.install_as(&live);
    let node = TlsProcess::start(&live);
    let addr = node.addr;
    wait_for("the TLS node to serve", || {
        tls_stream(addr, &first.ca, "localhost").is_ok()
    });

    // Clients streaming ticks, on both shards, before the reload.
    let mut clients: Vec<TlsClient> = (0..20)
        .map(|_| connect_tls(addr, &first.ca, "/ws?topics=ticks"))
        .collect();
    let mut last: Vec<u64> = clients.iter_mut().map(|c| next_seq(c, "ticks")).collect();

    second.install_as(&live);
    node.hangup();
    wait_for("new handshakes to present the second certificate", || {
        tls_stream(addr, &second.ca, "localhost").is_ok()
    });
    assert!(
        tls_stream(addr, &first.ca, "localhost").is_err(),
        "the first certificate is no longer served"
    );
    // Every client opened before the reload keeps its stream, without a gap.
    for _ in 0..30 {
        for (c, seq) in clients.iter_mut().zip(last.iter_mut()) {
            let next = next_seq(c, "ticks");
            assert_eq!(next, *seq + 1, "a gap in a stream across the reload");
            *seq = next;
        }
    }

    // A broken pair is refused: the second stays in use, and the refusal is counted.
    std::fs::write(&live.cert, "not a certificate").unwrap();
    node.hangup();
    wait_for("the refused reload to be counted", || {
        let (status, body) = https_get(addr, &second.ca, "/metrics");
        status == 200
            && parse_metrics(&body).sum("tickcast_tls_reloads_total", &[("result", "failed")])
                >= 1.0
    });
    let (_, body) = https_get(addr, &second.ca, "/metrics");
    let scrape = parse_metrics(&body);
    assert_eq!(
        scrape.sum("tickcast_tls_reloads_total", &[("result", "ok")]),
        1.0
    );
    assert_eq!(scrape.sum("tickcast_closes_total", &[]), 0.0, "{body}");
    let mut late = connect_tls(addr, &second.ca, "/ws?topics=ticks");
    next_seq(&mut late, "ticks");
    for (c, seq) in clients.iter_mut().zip(last.iter_mut()) {
        assert_eq!(next_seq(c, "ticks"), *seq + 1);
    }
    drop(node);
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn a_bad_pair_stops_the_start_with_the_file_named() {
    let dir = temp_dir("tls-start");
    let pki = Pki::new(&dir, "server");
    let mut cfg = test_config(1);
    cfg.tls = Some(tickcast::config::TlsFiles {
        cert: pki.files.cert.clone(),
        key: dir.join("missing.key"),
    });
    let e = tickcast::server::Server::bind(cfg).expect_err("must not start");
    assert!(e.to_string().contains("missing.key"), "{e}");
    let _ = std::fs::remove_dir_all(dir);
}
