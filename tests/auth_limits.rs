//! Authentication, authorization, Origin checks and connection caps: each refusal gets its
//! precise status or error frame and is counted, while a healthy client keeps receiving.

mod common;

use std::time::{Duration, Instant};

use common::*;
use serde_json::json;
use tickcast::auth::{self, Claims};
use tickcast::config::Secret;
use tungstenite::Message;

const SECRET: &[u8] = b"an-auth-secret-of-some-length";

fn token(sub: &str, subscribe: &[&str], publish: &[&str], ttl: Duration) -> String {
    let strings = |v: &[&str]| v.iter().map(|s| s.to_string()).collect();
    auth::issue(
        SECRET,
        &auth::claims_for(sub, ttl, strings(subscribe), strings(publish)),
    )
    .unwrap()
}

/// `nbf` is honoured, `exp` has a ceiling (`--max-token-lifetime`, default 24 h, from now and
/// from `iat`), and a token without a `subscribe` claim follows the server's topics but joins
/// no room. Each of these was accepted before.
#[test]
fn nbf_lifetime_and_a_missing_subscribe_claim_are_safe() {
    let mut cfg = test_config(1);
    cfg.auth_secret = Some(Secret(SECRET.to_vec()));
    let server = start(cfg);
    let addr = server.local_addr();
    let reason = |r: &str| metric(addr, "tickcast_handshake_failures_total", &[("reason", r)]);

    let mut early = auth::claims_for("bob", Duration::from_secs(600), vec!["*".into()], vec![]);
    early.nbf = Some(early.exp - 60);
    let early = auth::issue(SECRET, &early).unwrap();
    assert_eq!(
        upgrade_status(addr, &format!("/ws?token={early}"), ""),
        401,
        "nbf ahead"
    );
    assert_eq!(reason("token_not_yet_valid"), 1.0);

    let long = token("bob", &["*"], &[], Duration::from_secs(48 * 3600));
    assert_eq!(
        upgrade_status(addr, &format!("/ws?token={long}"), ""),
        401,
        "48 h"
    );
    let mut old = auth::claims_for("bob", Duration::from_secs(600), vec!["*".into()], vec![]);
    old.iat = Some(old.exp - 25 * 3600);
    let old = auth::issue(SECRET, &old).unwrap();
    assert_eq!(
        upgrade_status(addr, &format!("/ws?token={old}"), ""),
        401,
        "iat far back"
    );
    assert_eq!(reason("token_expired"), 2.0);

    // No `subscribe` claim: the server's topics, no room, no `*`.
    let mut bare = auth::claims_for("carol", Duration::from_secs(600), vec![], vec![]);
    bare.subscribe = None;
    let bare = auth::issue(SECRET, &bare).unwrap();
    let room = format!("/ws?room=room.lobby&token={bare}");
    assert_eq!(upgrade_status(addr, &room, ""), 403, "a room by query");
    let star = format!("/ws?topics=*&token={bare}");
    assert_eq!(upgrade_status(addr, &star, ""), 403, "`*` by query");
    assert_eq!(reason("forbidden"), 2.0);
    let mut ws = connect(addr, &format!("/ws?topics=ticks,telemetry&token={bare}"));
    assert_eq!(next_json(&mut ws)["type"], "welcome");
    ws.send(Message::text(
        r#"{"op":"subscribe","topics":["room.lobby"]}"#,
    ))
    .unwrap();
    let refused = next_json_where(&mut ws, |v| v["type"] == "error");
    assert_eq!(refused["code"], "forbidden", "{refused}");
    // An explicit `*` keeps the old behaviour.
    let all = token("dave", &["*"], &[], Duration::from_secs(600));
    let mut ws = connect(addr, &format!("/ws?room=room.lobby&token={all}"));
    assert_eq!(next_json(&mut ws)["type"], "welcome");
    close_client(ws);
}

#[test]
fn tokens_are_required_checked_and_grant_rights() {
    let mut cfg = test_config(2);
    cfg.auth_secret = Some(Secret(SECRET.to_vec()));
    let server = start(cfg);
    let addr = server.local_addr();
    let good = token(
        "alice",
        &["ticks", "room.*"],
        &["room.*"],
        Duration::from_secs(600),
    );
    let healthy = {
        // The healthy client needs a token too.
        let mut ws = connect(addr, &format!("/ws?topics=ticks&token={good}"));
        assert_eq!(next_json(&mut ws)["type"], "welcome");
        close_client(ws);
        Healthy::start_path(addr, &format!("/ws?topics=ticks&token={good}"))
    };

    assert_eq!(upgrade_status(addr, "/ws", ""), 401, "missing token");
    let mut expired = auth::claims_for("bob", Duration::ZERO, vec!["*".into()], vec![]);
    expired.exp -= 60;
    let expired = auth::issue(SECRET, &expired).unwrap();
    assert_eq!(
        upgrade_status(addr, &format!("/ws?token={expired}"), ""),
        401,
        "expired"
    );
    let forged = auth::issue(
        b"some-other-secret-entirely",
        &Claims {
            sub: "eve".into(),
            exp: u64::MAX / 2,
            nbf: None,
            iat: None,
            subscribe: Some(vec!["*".into()]),
            publish: vec!["*".into()],
        },
    )
    .unwrap();
    assert_eq!(
        upgrade_status(addr, &format!("/ws?token={forged}"), ""),
        401,
        "forged"
    );
    assert_eq!(
        upgrade_status(addr, "/ws?token=not.a.token", ""),
        401,
        "garbage"
    );
    assert!(
        metric(
            addr,
            "tickcast_handshake_failures_total",
            &[("reason", "token_missing")]
        ) >= 1.0
    );
    assert!(
        metric(
            addr,
            "tickcast_handshake_failures_total",
            &[("reason", "token_expired")]
        ) >= 1.0
    );
    assert!(
        metric(
            addr,
            "tickcast_handshake_failures_total",
            &[("reason", "token_invalid")]
        ) >= 2.0
    );

    // A valid token in the Authorization header; `sub` becomes the client id.
    let stream = std::net::TcpStream::connect(addr).unwrap();
    stream.set_read_timeout(Some(READ_TIMEOUT)).unwrap();
    let mut req = tungstenite::client::IntoClientRequest::into_client_request(format!(
        "ws://{addr}/ws?room=room.a"
    ))
    .unwrap();
    req.headers_mut()
        .insert("Authorization", format!("Bearer {good}").parse().unwrap());
    let (mut ws, _) = tungstenite::client::client(req, stream).unwrap();
    let welcome = next_json(&mut ws);
    assert_eq!(welcome["client_id"], "alice", "{welcome}");
    // Outside its rights: forbidden, on this connection only.
    ws.send(Message::text(
        r#"{"op":"subscribe","topics":["telemetry"]}"#,
    ))
    .unwrap();
    let e = next_json_where(&mut ws, |v| v["type"] == "error");
    assert_eq!(e["code"], "forbidden");
    ws.send(Message::text(r#"{"op":"subscribe","topics":["ticks"]}"#))
        .unwrap();
    assert_eq!(
        next_json_where(&mut ws, |v| v["type"] == "subscribed")["topics"],
        json!(["ticks"])
    );
    let reader = token("reader", &["*"], &[], Duration::from_secs(600));
    let mut r = connect(addr, &format!("/ws?room=room.a&token={reader}"));
    r.send(Message::text(
        r#"{"op":"publish","topic":"room.a","data":"hi"}"#,
    ))
    .unwrap();
    assert_eq!(
        next_json_where(&mut r, |v| v["type"] == "error")["code"],
        "forbidden"
    );
    // A restricted token asking for a forbidden topic at connect time is refused outright.
    assert_eq!(
        upgrade_status(addr, &format!("/ws?topics=telemetry&token={good}"), ""),
        403
    );
    close_client(r);
    close_client(ws);
    healthy.finish();
    server.shutdown();
}

#[test]
fn a_connection_is_closed_when_its_token_expires() {
    let mut cfg = test_config(1);
    cfg.auth_secret = Some(Secret(SECRET.to_vec()));
    let server = start(cfg);
    let addr = server.local_addr();
    let lasting = token("bob", &["*"], &[], Duration::from_secs(600));
    let healthy = Healthy::start_path(addr, &format!("/ws?topics=ticks&token={lasting}"));
    // `exp` is in whole seconds: this token ends 2 to 3 s from now.
    let short = token("carol", &["ticks"], &[], Duration::from_secs(3));
    let connected = Instant::now();
    let mut ws = connect(addr, &format!("/ws?topics=ticks&token={short}"));
    // The same token on `/echo`, which has no session: it is held to `exp` all the same.
    let mut echo = connect(addr, &format!("/echo?token={short}"));
    assert_eq!(next_json(&mut ws)["type"], "welcome");
    assert!(
        next_data(&mut ws)["seq"].is_u64(),
        "it receives while the token holds"
    );
    echo.send(Message::text("still here")).unwrap();
    assert_eq!(
        echo.read().unwrap(),
        Message::text("still here"),
        "/echo answers while the token holds"
    );
    // Both are read turn by turn with a short timeout, so each close is timed when it
    // arrives, not when the other route's close has been read.
    let deadline = connected + Duration::from_secs(15);
    let mut closes: [Option<(u16, String, Duration)>; 2] = [None, None];
    for ws in [&mut ws, &mut echo] {
        ws.get_mut()
            .set_read_timeout(Some(Duration::from_millis(20)))
            .unwrap();
    }
    while closes.iter().any(Option::is_none) {
        assert!(
            Instant::now() < deadline,
            "no close after the token expired: {closes:?}"
        );
        for (i, ws) in [&mut ws, &mut echo].into_iter().enumerate() {
            if closes[i].is_some() {
                continue;
            }
            match ws.read() {
                Ok(Message::Close(Some(f))) => {
                    closes[i] = Some((u16::from(f.code), f.reason.to_string(), connected.elapsed()))
                }
                Ok(_) => {}
                Err(tungstenite::Error::Io(e))
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) => {}
                Err(e) => panic!("read failed before the close frame: {e}"),
            }
        }
    }
    for (route, close) in ["/ws", "/echo"].into_iter().zip(closes) {
        let (code, reason, at) = close.unwrap();
        assert_eq!((code, reason.as_str()), (1008, "token expired"), "{route}");
        assert!(
            at >= Duration::from_millis(1500),
            "{route}: closed after {at:?}, before the token expired"
        );
    }
    wait_metric(addr, "tickcast_token_expiries_total", &[], 2.0);
    // The long-lived token's connection is untouched.
    healthy.finish();
    server.shutdown();
}

fn next_json_where(
    ws: &mut Client,
    pred: impl Fn(&serde_json::Value) -> bool,
) -> serde_json::Value {
    for _ in 0..10_000 {
        let v = next_json(ws);
        if pred(&v) {
            return v;
        }
    }
    panic!("message not found");
}

#[test]
fn foreign_origins_are_refused() {
    let mut cfg = test_config(1);
    cfg.allowed_origins = vec!["https://app.example".into()];
    let server = start(cfg);
    let addr = server.local_addr();
    let healthy = Healthy::start(addr);
    assert_eq!(
        upgrade_status(addr, "/ws", "Origin: https://evil.example\r\n"),
        403
    );
    assert_eq!(
        upgrade_status(addr, "/ws", "Origin: https://app.example\r\n"),
        101
    );
    assert!(
        metric(
            addr,
            "tickcast_handshake_failures_total",
            &[("reason", "origin_forbidden")]
        ) >= 1.0
    );
    healthy.finish();
    server.shutdown();
}

#[test]
fn connection_caps_answer_503_and_429() {
    let mut cfg = test_config(2);
    cfg.max_connections = Some(3);
    let server = start(cfg);
    let addr = server.local_addr();
    let healthy = Healthy::start(addr);
    let a = connect(addr, "/ws?topics=ticks");
    let b = connect(addr, "/ws?topics=ticks");
    assert_eq!(
        upgrade_status(addr, "/ws", ""),
        503,
        "fourth WebSocket over a cap of 3"
    );
    assert_eq!(
        status_of(&raw_http(addr, b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")),
        200,
        "plain HTTP is not capped"
    );
    close_client(a);
    wait_for("a freed place", || upgrade_status(addr, "/echo", "") == 101);
    close_client(b);
    healthy.finish();
    server.shutdown();

    let mut cfg = test_config(1);
    cfg.max_connections_per_ip = 2;
    let server = start(cfg);
    let addr = server.local_addr();
    let healthy = Healthy::start(addr);
    let a = connect(addr, "/ws?topics=ticks");
    assert_eq!(
        upgrade_status(addr, "/ws", ""),
        429,
        "third from one address over a cap of 2"
    );
    assert!(
        metric(
            addr,
            "tickcast_handshake_failures_total",
            &[("reason", "address_full")]
        ) >= 1.0
    );
    close_client(a);
    healthy.finish();
    server.shutdown();
}
