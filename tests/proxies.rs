//! tickcast behind the proxies operators put in front of it, run for real from the Debian
//! packages with the configuration files docs/security.md shows (`deploy/`): nginx
//! terminating TLS and passing the client's address in `X-Forwarded-For`, and haproxy in TCP mode
//! passing TLS through and naming the client in a PROXY v2 header. Clients connect from
//! 127.0.0.2 and 127.0.0.3, so the server must tell them apart behind the proxy's one
//! address: `--max-connections-per-ip 1` refuses a second connection of one client and not
//! the first of another.
//!
//! Also, against the server alone: PROXY v1 and v2 headers written by hand, a trusted peer
//! that sends none, an untrusted peer that sends one, and forwarding headers from peers that
//! are not trusted.

mod common;

use std::io::{Read, Write};
use std::net::{IpAddr, SocketAddr, TcpStream};
use std::path::Path;

use common::*;
use rustls::{ClientConnection, StreamOwned};
use tickcast::config::ServerConfig;
use tickcast::edge::forwarded::TrustedProxies;
use tungstenite::{Message, WebSocket};

/// A TCP connection from `source` (127.0.0.2, 127.0.0.3: one machine, several clients).
fn tcp_from(source: &str, to: SocketAddr) -> std::io::Result<TcpStream> {
    let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None)?;
    let source: IpAddr = source.parse().unwrap();
    socket.bind(&SocketAddr::new(source, 0).into())?;
    socket.connect(&to.into())?;
    let tcp: TcpStream = socket.into();
    tcp.set_read_timeout(Some(READ_TIMEOUT))?;
    Ok(tcp)
}

type Wss = WebSocket<StreamOwned<ClientConnection, TcpStream>>;

/// A verifying wss:// client from `source` through the proxy at `front`: the welcome, or the
/// HTTP status the upgrade got.
fn wss_from(source: &str, front: SocketAddr, pki: &Pki, path: &str) -> Result<Wss, u16> {
    wss_with(source, front, pki, path, &[])
}

/// [`wss_from`] with extra request headers (`name`, `value`).
fn wss_with(
    source: &str,
    front: SocketAddr,
    pki: &Pki,
    path: &str,
    headers: &[(&'static str, &str)],
) -> Result<Wss, u16> {
    use tungstenite::client::IntoClientRequest;
    let tcp = tcp_from(source, front).map_err(|_| 0u16)?;
    let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
    let session = ClientConnection::new(client_config(&pki.ca), name).unwrap();
    let stream = StreamOwned::new(session, tcp);
    let url = format!("wss://localhost:{}{path}", front.port());
    let mut request = url.into_client_request().unwrap();
    for (name, value) in headers {
        request.headers_mut().append(*name, value.parse().unwrap());
    }
    match tungstenite::client::client(request, stream) {
        Ok((ws, _)) => Ok(ws),
        Err(tungstenite::HandshakeError::Failure(tungstenite::Error::Http(resp))) => {
            Err(resp.status().as_u16())
        }
        Err(e) => panic!("wss through the proxy from {source}: {e}"),
    }
}

fn next_text<S: Read + Write>(ws: &mut WebSocket<S>) -> serde_json::Value {
    loop {
        match ws.read().expect("read") {
            Message::Text(t) => return serde_json::from_str(&t).unwrap(),
            Message::Close(c) => panic!("closed: {c:?}"),
            _ => {}
        }
    }
}

fn next_on<S: Read + Write>(ws: &mut WebSocket<S>, topic: &str) -> serde_json::Value {
    loop {
        let v = next_text(ws);
        if v["topic"] == topic && v.get("seq").is_some() {
            return v;
        }
    }
}

fn trusted(cidr: &str) -> TrustedProxies {
    TrustedProxies(vec![cidr.parse().unwrap()])
}

/// What every deployment must do: ticks arrive, publishes come back, a close code set by
/// the server reaches the client, and the per-address cap counts clients, not the proxy.
fn check_deployment(front: SocketAddr, pki: &Pki, server: &tickcast::server::RunningServer) {
    wait_for("the proxy to pass a handshake", || {
        wss_from("127.0.0.2", front, pki, "/healthz-not-a-ws").is_err_and(|s| s == 404)
    });
    let mut a = wss_from("127.0.0.2", front, pki, "/ws?topics=ticks,chat").unwrap();
    assert_eq!(next_text(&mut a)["type"], "welcome");
    let first = next_on(&mut a, "ticks")["seq"].as_u64().unwrap();
    assert_eq!(next_on(&mut a, "ticks")["seq"].as_u64().unwrap(), first + 1);
    a.send(Message::text(
        r#"{"op":"publish","topic":"chat","data":{"text":"through the proxy"}}"#,
    ))
    .unwrap();
    assert_eq!(next_on(&mut a, "chat")["data"]["text"], "through the proxy");

    // One connection per client address: 127.0.0.2 is refused a second, 127.0.0.3 is not.
    let refused = wss_from("127.0.0.2", front, pki, "/ws?topics=ticks");
    assert_eq!(
        refused.err(),
        Some(429),
        "a second connection of one client"
    );
    // Nor can it pass itself off as someone else with a forwarding header of its own:
    // nginx appends the address it saw to X-Forwarded-For and drops a client's Forwarded;
    // behind haproxy, the PROXY header names the client, which is not a trusted proxy.
    for forged in [
        ("X-Forwarded-For", "198.51.100.99"),
        ("Forwarded", "for=198.51.100.98"),
        ("Forwarded", "for=198.51.100.97, for=127.0.0.1"),
    ] {
        let refused = wss_with("127.0.0.2", front, pki, "/ws?topics=ticks", &[forged]);
        assert_eq!(refused.err(), Some(429), "a forged {forged:?}");
    }
    let mut b = wss_from("127.0.0.3", front, pki, "/ws?topics=ticks").unwrap();
    assert_eq!(next_text(&mut b)["type"], "welcome");
    next_on(&mut b, "ticks");
    let scrape = parse_metrics(&server.metrics().render());
    assert!(
        scrape.sum(
            "tickcast_handshake_failures_total",
            &[("reason", "address_full")]
        ) >= 1.0
    );

    // A message over --max-message gets close 1009 from the server, through the proxy.
    b.send(Message::text("x".repeat(4096))).unwrap();
    assert_eq!(read_until_close_any(&mut b), Some(1009));
    // The first client is untouched.
    next_on(&mut a, "ticks");
}

fn read_until_close_any<S: Read + Write>(ws: &mut WebSocket<S>) -> Option<u16> {
    loop {
        match ws.read() {
            Ok(Message::Close(Some(frame))) => return Some(frame.code.into()),
            Ok(Message::Close(None)) => return Some(1005),
            Ok(_) => continue,
            Err(_) => return None,
        }
    }
}

fn behind_proxy_config() -> ServerConfig {
    let mut cfg = test_config(2);
    cfg.max_connections_per_ip = 1;
    cfg.max_message = 1024;
    cfg.trusted_proxies = trusted("127.0.0.1/32");
    cfg
}

#[test]
fn behind_nginx_terminating_tls_the_client_address_comes_from_x_forwarded_for() {
    let dir = temp_dir("nginx");
    let pki = Pki::new(&dir, "front");
    let server = start(behind_proxy_config());
    let nginx = start_nginx(server.local_addr().port(), &pki, &dir);
    let front = SocketAddr::from(([127, 0, 0, 1], nginx.port));
    check_deployment(front, &pki, &server);
    let scrape = parse_metrics(&server.metrics().render());
    assert!(scrape.sum("tickcast_forwarded_clients_total", &[]) >= 3.0);
    // The access log leaves the query string out: a token in it is a credential.
    let mut c = wss_from("127.0.0.4", front, &pki, "/ws?topics=ticks&token=hush-7f3a").unwrap();
    assert_eq!(next_text(&mut c)["type"], "welcome");
    drop(c);
    wait_for("nginx to log the closed WebSocket", || {
        nginx
            .access_log()
            .lines()
            .any(|l| l.starts_with("127.0.0.4 ") && l.contains("GET /ws "))
    });
    let log = nginx.access_log();
    assert!(
        !log.contains("hush-7f3a") && !log.contains("token="),
        "{log}"
    );
    server.shutdown();
}

#[test]
fn behind_haproxy_in_tcp_mode_the_client_address_comes_from_proxy_v2() {
    let dir = temp_dir("haproxy");
    let pki = Pki::new(&dir, "server");
    let mut cfg = behind_proxy_config();
    cfg.tls = Some(pki.files.clone());
    cfg.proxy_protocol = true;
    let server = start(cfg);
    let haproxy = start_haproxy(server.local_addr().port(), &pki, &dir);
    let front = SocketAddr::from(([127, 0, 0, 1], haproxy.port));
    check_deployment(front, &pki, &server);
    let scrape = parse_metrics(&server.metrics().render());
    assert!(scrape.sum("tickcast_proxy_protocol_clients_total", &[]) >= 3.0);
    server.shutdown();
}

/// A plain server with `--proxy-protocol`, trusting `cidr`.
fn proxy_server(cidr: &str) -> tickcast::server::RunningServer {
    let mut cfg = quiet_config(1);
    cfg.proxy_protocol = true;
    cfg.max_connections_per_ip = 1;
    cfg.trusted_proxies = trusted(cidr);
    start(cfg)
}

fn failures(server: &tickcast::server::RunningServer, reason: &str) -> f64 {
    parse_metrics(&server.metrics().render())
        .sum("tickcast_handshake_failures_total", &[("reason", reason)])
}

/// From `source`: writes `head` (a PROXY header, or nothing), then a valid upgrade with the
/// `extra` header lines, in one write. Returns the HTTP status (0 when the connection ended
/// without one) and the socket, which a caller keeps to hold the connection open.
fn upgrade(source: &str, addr: SocketAddr, head: &[u8], extra: &str) -> (u16, TcpStream) {
    let mut tcp = tcp_from(source, addr).unwrap();
    let extra = format!("Sec-WebSocket-Key: {WS_KEY}\r\nSec-WebSocket-Version: 13\r\n{extra}");
    let mut bytes = head.to_vec();
    bytes.extend_from_slice(upgrade_request("/ws", &extra).as_bytes());
    tcp.write_all(&bytes).unwrap();
    let mut buf = [0u8; 512];
    let n = tcp.read(&mut buf).unwrap_or(0);
    (status_of(&String::from_utf8_lossy(&buf[..n])), tcp)
}

/// [`upgrade`] from the trusted proxy (127.0.0.1) after `head`; the status only.
fn upgrade_after(addr: SocketAddr, head: &[u8]) -> u16 {
    upgrade("127.0.0.1", addr, head, "").0
}

fn v2_header(src: [u8; 4], src_port: u16) -> Vec<u8> {
    let mut h = b"\r\n\r\n\0\r\nQUIT\n".to_vec();
    h.extend_from_slice(&[0x21, 0x11, 0x00, 12]);
    h.extend_from_slice(&src);
    h.extend_from_slice(&[127, 0, 0, 1]);
    h.extend_from_slice(&src_port.to_be_bytes());
    h.extend_from_slice(&8080u16.to_be_bytes());
    h
}

#[test]
fn proxy_headers_name_the_client_and_only_trusted_peers_may_send_them() {
    let server = proxy_server("127.0.0.1/32");
    let addr = server.local_addr();
    // v1 and v2 from the trusted peer: two different clients, each admitted once.
    let v1 = b"PROXY TCP4 192.0.2.10 127.0.0.1 40000 8080\r\n";
    let mut held = Vec::new();
    for head in [v1.to_vec(), v2_header([192, 0, 2, 11], 40001)] {
        let (status, tcp) = upgrade("127.0.0.1", addr, &head, "");
        assert_eq!(status, 101);
        held.push(tcp);
    }
    // The same client again (v1): its address is full, though the proxy's socket is new.
    assert_eq!(upgrade_after(addr, v1), 429);
    // The trusted peer without a header, or with a broken one: refused, counted.
    assert_eq!(upgrade_after(addr, b""), 0);
    assert_eq!(
        upgrade_after(addr, b"PROXY TCP4 300.1.1.1 127.0.0.1 1 2\r\n"),
        0
    );
    wait_for("bad headers counted", || {
        failures(&server, "bad_proxy_header") >= 2.0
    });
    // An untrusted peer (127.0.0.2) may not send one.
    let mut tcp = tcp_from("127.0.0.2", addr).unwrap();
    tcp.write_all(v1).unwrap();
    tcp.write_all(upgrade_request("/ws", "").as_bytes())
        .unwrap();
    let mut resp = String::new();
    let _ = tcp.read_to_string(&mut resp);
    assert_eq!(status_of(&resp), 400, "{resp}");
    wait_for("the untrusted header counted", || {
        failures(&server, "proxy_untrusted") >= 1.0
    });
    // ...but is served directly, under its own address.
    assert_eq!(upgrade("127.0.0.2", addr, b"", "").0, 101);
    server.shutdown();
}

#[test]
fn forwarding_headers_are_believed_only_from_trusted_peers() {
    let mut cfg = quiet_config(1);
    cfg.max_connections_per_ip = 1;
    cfg.trusted_proxies = trusted("127.0.0.1/32");
    let server = start(cfg);
    let addr = server.local_addr();
    let upgrade = |source: &str, header: &str| upgrade(source, addr, b"", header);
    // From the trusted proxy: a client named by X-Forwarded-For (the default header).
    let (s1, _a) = upgrade("127.0.0.1", "X-Forwarded-For: 198.51.100.7\r\n");
    // Forwarded is not the header the operator named: ignored, so these are the proxy
    // itself, once.
    let (s2, _b) = upgrade("127.0.0.1", "Forwarded: for=\"[2001:db8::7]:4711\"\r\n");
    let (s2b, _b2) = upgrade("127.0.0.1", "Forwarded: for=198.51.100.8\r\n");
    assert_eq!((s1, s2, s2b), (101, 101, 429));
    // A spoofed left-most entry does not make a client someone else: the right-most
    // untrusted address is 198.51.100.7 again, which is full.
    let (s3, _c) = upgrade(
        "127.0.0.1",
        "X-Forwarded-For: 203.0.113.9, 198.51.100.7\r\n",
    );
    assert_eq!(s3, 429);
    // From an untrusted peer the headers are ignored: 127.0.0.2 is itself, once.
    let (s4, _d) = upgrade("127.0.0.2", "X-Forwarded-For: 203.0.113.50\r\n");
    let (s5, _e) = upgrade("127.0.0.2", "X-Forwarded-For: 203.0.113.51\r\n");
    assert_eq!((s4, s5), (101, 429));
    let scrape = parse_metrics(&server.metrics().render());
    assert_eq!(scrape.sum("tickcast_forwarded_clients_total", &[]), 2.0);
    server.shutdown();
}

#[test]
fn with_forwarded_chosen_the_rfc_7239_header_names_the_client_and_x_forwarded_for_is_ignored() {
    let mut cfg = quiet_config(1);
    cfg.max_connections_per_ip = 1;
    cfg.trusted_proxies = trusted("127.0.0.1/32");
    cfg.forwarded_header = tickcast::edge::forwarded::ForwardedHeader::Forwarded;
    let server = start(cfg);
    let addr = server.local_addr();
    let upgrade = |header: &str| upgrade("127.0.0.1", addr, b"", header);
    let (s1, _a) = upgrade("Forwarded: for=\"[2001:db8::7]:4711\"\r\n");
    // The same /64 is the same client (--ipv6-prefix 64).
    let (s2, _b) = upgrade("Forwarded: for=\"[2001:db8::8]:4711\"\r\n");
    // An IPv4-mapped address is the IPv4 client.
    let (s3, _c) = upgrade("Forwarded: for=\"[::ffff:198.51.100.9]\"\r\n");
    let (s4, _d) = upgrade("Forwarded: for=198.51.100.9\r\n");
    // X-Forwarded-For is ignored: the proxy itself, once.
    let (s5, _e) = upgrade("X-Forwarded-For: 198.51.100.10\r\n");
    let (s6, _f) = upgrade("X-Forwarded-For: 198.51.100.11\r\n");
    assert_eq!((s1, s2, s3, s4, s5, s6), (101, 429, 101, 429, 101, 429));
    server.shutdown();
}

#[test]
fn the_security_page_shows_the_deployment_files_the_tests_run() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let page = std::fs::read_to_string(root.join("docs/security.md")).unwrap();
    for name in ["nginx.conf", "haproxy.cfg"] {
        let text = std::fs::read_to_string(root.join("deploy").join(name)).unwrap();
        assert!(
            page.contains(text.trim_end()),
            "docs/security.md must show deploy/{name} as it is"
        );
    }
}
