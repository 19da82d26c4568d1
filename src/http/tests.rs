//! Unit tests of parsing, routing and answers.
use super::parse::*;
use super::response::*;
use super::route::*;
use super::*;

const KEY: &str = "dGhlIHNhbXBsZSBub25jZQ==";

fn upgrade(path: &str, extra: &str) -> String {
    format!(
        "GET {path} HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: keep-alive, Upgrade\r\n\
         Sec-WebSocket-Key: {KEY}\r\n{extra}\r\n"
    )
}

fn parse(s: &str) -> Request {
    parse_request(s.as_bytes(), 8192).unwrap().unwrap().0
}

#[test]
fn valid_upgrade_gets_the_rfc_accept_key() {
    let req = parse(&upgrade(
        "/ws?topics=ticks,telemetry",
        "Sec-WebSocket-Version: 13\r\n",
    ));
    assert_eq!(
        req.query_param("topics").as_deref(),
        Some("ticks,telemetry")
    );
    match route(&req) {
        Target::Upgrade { route, accept } => {
            assert_eq!(route, WsRoute::Stream);
            assert_eq!(accept, "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
        }
        other => panic!("{other:?}"),
    }
}

/// The status and reason `route` refuses `req` with.
fn refusal(req: &str) -> (u16, &'static str) {
    match route(&parse(req)) {
        Target::Reject { status, reason, .. } => (status, reason.as_str()),
        other => panic!("{req:?} -> {other:?}"),
    }
}

/// A valid version 13 upgrade of `path`, with `extra` header lines.
fn v13(path: &str, extra: &str) -> String {
    upgrade(path, &format!("Sec-WebSocket-Version: 13\r\n{extra}"))
}

#[test]
fn statuses_for_bad_requests() {
    assert_eq!(refusal("POST /ws HTTP/1.1\r\nHost: x\r\n\r\n").0, 405);
    assert_eq!(refusal("GET /nope HTTP/1.1\r\nHost: x\r\n\r\n").0, 404);
    assert_eq!(refusal("GET /ws HTTP/1.1\r\nHost: x\r\n\r\n").0, 400);
    assert_eq!(
        refusal(&upgrade("/ws", "Sec-WebSocket-Version: 8\r\n")).0,
        426
    );
    assert_eq!(refusal(&upgrade("/ws", "")).0, 400);
    assert_eq!(refusal(&v13("/echo", "").replace(KEY, "short")).0, 400);
}

#[test]
fn plain_routes() {
    for (target, expected) in [
        ("/healthz", Target::Healthz),
        ("/metrics", Target::Metrics),
        ("/", Target::Dashboard),
        ("/?utm=x", Target::Dashboard),
    ] {
        let req = format!("GET {target} HTTP/1.1\r\nHost: x\r\n\r\n");
        assert_eq!(route(&parse(&req)), expected, "{target}");
    }
    // HTTP/1.0 may leave Host out (`curl --http1.0`).
    assert_eq!(
        route(&parse("GET /healthz HTTP/1.0\r\n\r\n")),
        Target::Healthz
    );
    assert_eq!(
        route(&parse("GET /metrics HTTP/1.0\r\n\r\n")),
        Target::Metrics
    );
}

#[test]
fn an_upgrade_needs_http_1_1() {
    let req = v13("/ws", "").replace("HTTP/1.1", "HTTP/1.0");
    assert_eq!(refusal(&req), (400, "http_version"));
    // Without Host as well: HTTP/1.0 may omit it, but still cannot upgrade.
    assert_eq!(
        refusal(&req.replace("Host: x\r\n", "")),
        (400, "http_version")
    );
}

#[test]
fn host_must_come_once_and_be_valid() {
    let bad_host = (400, "bad_host");
    assert_eq!(
        refusal(&v13("/ws", "").replace("Host: x\r\n", "")),
        bad_host
    );
    assert_eq!(refusal("GET /healthz HTTP/1.1\r\n\r\n"), bad_host);
    assert_eq!(refusal(&v13("/echo", "Host: y\r\n")), bad_host);
    assert_eq!(
        refusal("GET /healthz HTTP/1.0\r\nHost: a\r\nHost: a\r\n\r\n"),
        bad_host
    );
    for value in ["a b", "user@x", "x/y", "x\ty", "bücher.example"] {
        let req = v13("/ws", "").replace("Host: x", &format!("Host: {value}"));
        assert_eq!(refusal(&req), bad_host, "{value:?}");
    }
    for value in ["", "localhost:8080", "[::1]:8080", "xn--bcher-kva.example"] {
        let req = v13("/ws", "").replace("Host: x", &format!("Host: {value}"));
        assert!(
            matches!(route(&parse(&req)), Target::Upgrade { .. }),
            "{value:?}"
        );
    }
}

#[test]
fn websocket_headers_come_once() {
    let twice_key = v13("/ws", &format!("Sec-WebSocket-Key: {KEY}\r\n"));
    assert_eq!(refusal(&twice_key), (400, "duplicate_header"));
    let twice_version = v13("/echo", "Sec-WebSocket-Version: 13\r\n");
    assert_eq!(refusal(&twice_version), (400, "duplicate_header"));
    // Before the version check: a second, wrong version is still a duplicate.
    let wrong_too = v13("/echo", "Sec-WebSocket-Version: 8\r\n");
    assert_eq!(refusal(&wrong_too), (400, "duplicate_header"));
    let twice_origin = v13(
        "/ws",
        "Origin: https://evil.example\r\nOrigin: https://good.example\r\n",
    );
    assert_eq!(refusal(&twice_origin), (400, "duplicate_header"));
}

#[test]
fn a_request_body_is_refused_on_every_route() {
    for header in [
        "Content-Length: 5",
        "Content-Length: 0\r\nContent-Length: 1",
        "Transfer-Encoding: chunked",
        "Transfer-Encoding: identity",
        "Content-Length: +5",
        "Content-Length: -1",
        "Content-Length: 5, 5",
        "Content-Length: ",
        "Content-Length: 99999999999999999999999",
    ] {
        let upgrade = v13("/ws", &format!("{header}\r\n"));
        assert_eq!(refusal(&upgrade), (400, "request_body"), "{header}");
        let plain = format!("GET /healthz HTTP/1.0\r\n{header}\r\n\r\n");
        assert_eq!(refusal(&plain), (400, "request_body"), "{header}");
    }
    let empty = v13("/ws", "Content-Length: 0\r\nContent-Length: 000\r\n");
    assert!(matches!(route(&parse(&empty)), Target::Upgrade { .. }));
}

#[test]
fn absolute_form_targets_are_routed_by_their_path() {
    for (target, path, query) in [
        ("http://localhost:8080/ws?topics=a", "/ws", "topics=a"),
        ("HTTPS://example.com/echo", "/echo", ""),
        ("http://[::1]:8080?x=1", "/", "x=1"),
        ("http://h", "/", ""),
    ] {
        let req = parse(&v13(target, ""));
        assert_eq!((req.path.as_str(), req.query.as_str()), (path, query));
    }
    let req = parse(&v13("http://localhost:8080/ws?topics=a", ""));
    assert_eq!(req.query_param("topics").as_deref(), Some("a"));
    assert!(matches!(
        route(&req),
        Target::Upgrade {
            route: WsRoute::Stream,
            ..
        }
    ));
    for target in [
        "*",
        "localhost:8080",
        "ws",
        "ftp://h/ws",
        "http:///ws",
        "http://u@h/ws",
    ] {
        assert_eq!(refusal(&v13(target, "")), (400, "bad_target"), "{target}");
    }
}

#[test]
fn refusals_come_in_their_documented_order() {
    // Method, target, Host and body, then the path, then the WebSocket checks.
    assert_eq!(refusal("OPTIONS * HTTP/1.1\r\n\r\n").0, 405);
    assert_eq!(
        refusal("GET * HTTP/1.1\r\nContent-Length: 1\r\n\r\n").1,
        "bad_target"
    );
    assert_eq!(
        refusal("GET /nope HTTP/1.1\r\nContent-Length: 1\r\n\r\n").1,
        "bad_host"
    );
    assert_eq!(
        refusal("GET /nope HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\n\r\n").1,
        "request_body"
    );
    assert_eq!(refusal("GET /nope HTTP/1.1\r\nHost: x\r\n\r\n").0, 404);
    let hostless_body = "GET /ws HTTP/1.1\r\nContent-Length: 1\r\n\r\n";
    assert_eq!(refusal(hostless_body).1, "bad_host");
    let old_with_body = v13("/ws", "Content-Length: 1\r\n").replace("HTTP/1.1", "HTTP/1.0");
    assert_eq!(refusal(&old_with_body).1, "request_body");
    let old_twice = v13("/ws", "Sec-WebSocket-Version: 13\r\n").replace("HTTP/1.1", "HTTP/1.0");
    assert_eq!(refusal(&old_twice).1, "http_version");
    assert_eq!(
        refusal("GET /ws HTTP/1.1\r\nHost: x\r\n\r\n").1,
        "not_upgrade"
    );
}

#[test]
fn incomplete_and_oversized_heads() {
    assert_eq!(
        parse_request(b"GET /ws HTTP/1.1\r\nHost: x\r\n", 8192),
        Ok(None)
    );
    let big = format!("GET / HTTP/1.1\r\nX: {}\r\n", "a".repeat(9000));
    assert_eq!(
        parse_request(big.as_bytes(), 8192),
        Err(ParseError::TooLarge)
    );
    let complete_big = format!("{big}\r\n");
    assert_eq!(
        parse_request(complete_big.as_bytes(), 8192),
        Err(ParseError::TooLarge)
    );
    let many: String = (0..100).map(|i| format!("H{i}: v\r\n")).collect();
    let req = format!("GET / HTTP/1.1\r\n{many}\r\n");
    assert_eq!(
        parse_request(req.as_bytes(), 8192),
        Err(ParseError::TooLarge)
    );
    assert_eq!(
        parse_request(b"\x16\x03\x01 garbage\r\n\r\n", 8192),
        Err(ParseError::Malformed)
    );
}

#[test]
fn responses_are_well_formed() {
    let r = String::from_utf8(response(405, "text/plain", b"no\n", reject_headers(405))).unwrap();
    assert!(r.starts_with("HTTP/1.1 405 Method Not Allowed\r\n"));
    assert!(r.contains("Allow: GET, HEAD\r\n") && r.contains("Content-Length: 3\r\n"));
    assert!(r.ends_with("\r\n\r\nno\n"));
}

#[test]
fn head_reaches_the_plain_routes_only() {
    for (target, expected) in [
        ("/healthz", Target::Healthz),
        ("/metrics", Target::Metrics),
        ("/", Target::Dashboard),
    ] {
        let req = format!("HEAD {target} HTTP/1.1\r\nHost: x\r\n\r\n");
        assert_eq!(route(&parse(&req)), expected, "{target}");
    }
    assert_eq!(
        refusal(&v13("/ws", "").replacen("GET", "HEAD", 1)),
        (405, "method_not_allowed")
    );
    assert_eq!(refusal("HEAD /nope HTTP/1.1\r\nHost: x\r\n\r\n").0, 404);
}

#[test]
fn a_head_answer_is_the_get_head_without_the_body() {
    let get = response(200, "text/plain", b"ok\n", &[]);
    let head = response_head(200, "text/plain", b"ok\n", &[]);
    assert_eq!(get[..head.len()], head[..]);
    assert_eq!(&get[head.len()..], b"ok\n");
    let head = String::from_utf8(head).unwrap();
    assert!(head.contains("Content-Length: 3\r\n") && head.ends_with("\r\n\r\n"));
}
