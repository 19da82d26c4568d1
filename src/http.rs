//! HTTP/1.1 on a shard: bounded request parsing (httparse), routing, and responses.
//!
//! Every connection starts here. A request is parsed from the bytes received so far; once the
//! head is complete it is routed to a WebSocket upgrade (`/ws`, `/echo`), a plain answer
//! (`/healthz`, `/metrics`, the dashboard at `/`) or a precise error status. Plain answers close the connection
//! after they are written (`Connection: close`): the server speaks HTTP only to open
//! WebSockets and to be scraped, so it is strict: it never reads a request body, wants
//! exactly one valid `Host` (RFC 9112 §3.2) and upgrades only HTTP/1.1 (RFC 6455 §4.1).

use std::fmt::Write as _;

use crate::metrics::HandshakeFailure;

/// Headers parsed per request; more is answered with 431.
const MAX_HEADERS: usize = 64;

/// The parts of a request the server acts on.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Request {
    /// Request method, e.g. `GET`.
    pub method: String,
    /// Path without the query.
    pub path: String,
    /// Query string without the `?` (empty when absent).
    pub query: String,
    /// `Upgrade` includes the `websocket` token.
    pub upgrade_websocket: bool,
    /// `Connection` includes the `upgrade` token.
    pub connection_upgrade: bool,
    /// `Sec-WebSocket-Key`, if present.
    pub ws_key: Option<String>,
    /// `Sec-WebSocket-Version`, if present.
    pub ws_version: Option<String>,
    /// `Origin`, if present (browsers send it).
    pub origin: Option<String>,
    /// `Authorization`, if present.
    pub authorization: Option<String>,
    /// Minor HTTP version: 1 for HTTP/1.1, 0 for HTTP/1.0 (httparse accepts no other).
    pub version_minor: u8,
    /// The target is neither origin-form nor absolute-form; `path` then holds it whole.
    pub bad_target: bool,
    /// `Host` lines received: HTTP/1.1 needs exactly one, HTTP/1.0 at most one.
    pub host_count: usize,
    /// Some `Host` value is not a `uri-host [":" port]`.
    pub host_invalid: bool,
    /// `Sec-WebSocket-Key` lines received (at most one, RFC 6455 §11.3.1).
    pub ws_key_count: usize,
    /// `Sec-WebSocket-Version` lines received (at most one, RFC 6455 §11.3.5).
    pub ws_version_count: usize,
    /// The head announces a body (`Content-Length` over 0, any `Transfer-Encoding`) or hides
    /// where it ends (a `Content-Length` that is not a number). The server never reads one.
    pub body: bool,
}

impl Request {
    /// Query parameters, percent-decoded.
    pub fn query_pairs(&self) -> impl Iterator<Item = (String, String)> + '_ {
        form_urlencoded::parse(self.query.as_bytes()).map(|(k, v)| (k.into_owned(), v.into_owned()))
    }

    /// The first value of query parameter `name`.
    pub fn query_param(&self, name: &str) -> Option<String> {
        self.query_pairs().find(|(k, _)| k == name).map(|(_, v)| v)
    }
}

/// Why a request head was refused before routing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ParseError {
    /// Header block larger than the limit, or too many headers: 431.
    TooLarge,
    /// Not HTTP/1.x: 400.
    Malformed,
}

/// Parses a request head from `buf`. `Ok(None)` means incomplete (and still under
/// `max_header`); on success returns the request and the bytes it used.
pub fn parse_request(
    buf: &[u8],
    max_header: usize,
) -> Result<Option<(Request, usize)>, ParseError> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut headers);
    let used = match req.parse(buf) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) if buf.len() > max_header => {
            return Err(ParseError::TooLarge);
        }
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(httparse::Error::TooManyHeaders) => return Err(ParseError::TooLarge),
        Err(_) => return Err(ParseError::Malformed),
    };
    if used > max_header {
        return Err(ParseError::TooLarge);
    }
    let target = req.path.unwrap_or("/");
    let (path, query, bad_target) = match split_target(target) {
        Some((path, query)) => (path, query, false),
        None => (target, "", true),
    };
    let mut out = Request {
        method: req.method.unwrap_or("").to_string(),
        path: path.to_string(),
        query: query.to_string(),
        // A complete parse always has a version; none is treated as the stricter 1.0.
        version_minor: req.version.unwrap_or(0),
        bad_target,
        ..Request::default()
    };
    for h in req.headers.iter() {
        let value = String::from_utf8_lossy(h.value).trim().to_string();
        let has_token = |token: &str| {
            value
                .split(',')
                .any(|t| t.trim().eq_ignore_ascii_case(token))
        };
        match h.name.to_ascii_lowercase().as_str() {
            "upgrade" => out.upgrade_websocket |= has_token("websocket"),
            "connection" => out.connection_upgrade |= has_token("upgrade"),
            "sec-websocket-key" => {
                out.ws_key_count += 1;
                out.ws_key = Some(value);
            }
            "sec-websocket-version" => {
                out.ws_version_count += 1;
                out.ws_version = Some(value);
            }
            "origin" => out.origin = Some(value),
            "authorization" => out.authorization = Some(value),
            "host" => {
                out.host_count += 1;
                out.host_invalid |= !is_valid_host(&value);
            }
            "content-length" => out.body |= !is_zero_length(&value),
            "transfer-encoding" => out.body = true,
            _ => {}
        }
    }
    Ok(Some((out, used)))
}

/// Path and query of a request target: origin-form (`/p?q`) as it is, absolute-form
/// (`http://host/p?q`, RFC 9112 §3.2.2) without its scheme and authority (no path means `/`).
/// `None` for anything else: asterisk-form and authority-form are not for GET, and an
/// absolute URI needs a scheme of `http` or `https` and a host without userinfo (RFC 9110
/// §4.2).
fn split_target(target: &str) -> Option<(&str, &str)> {
    let rest = if target.starts_with('/') {
        target
    } else {
        let (scheme, rest) = target.split_once("://")?;
        if !(scheme.eq_ignore_ascii_case("http") || scheme.eq_ignore_ascii_case("https")) {
            return None;
        }
        let end = rest.find(['/', '?']).unwrap_or(rest.len());
        let authority = &rest[..end];
        if authority.is_empty() || !is_valid_host(authority) {
            return None;
        }
        &rest[end..]
    };
    let (path, query) = rest.split_once('?').unwrap_or((rest, ""));
    Some((if path.is_empty() { "/" } else { path }, query))
}

/// Whether `value` can be a `uri-host [":" port]` (RFC 3986 §3.2.2): registered names,
/// percent-encoding, IP literals in brackets. Empty is valid (RFC 9112 §3.2); `@` (userinfo),
/// `/`, whitespace and controls are not.
fn is_valid_host(value: &str) -> bool {
    value
        .bytes()
        .all(|c| c.is_ascii_alphanumeric() || b"-._~%!$&'()*+,;=:[]".contains(&c))
}

/// Whether a `Content-Length` value is `1*DIGIT` (RFC 9112 §6.2) and zero. Anything else
/// announces a body, or leaves unknown where the request ends.
fn is_zero_length(value: &str) -> bool {
    !value.is_empty() && value.bytes().all(|c| c == b'0')
}

/// The WebSocket endpoints.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WsRoute {
    /// `/ws`: the broadcast stream.
    Stream,
    /// `/echo`: every data message comes back.
    Echo,
}

/// Where a request goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// A valid WebSocket upgrade: answer 101 with this `Sec-WebSocket-Accept`.
    Upgrade { route: WsRoute, accept: String },
    /// `GET /healthz`.
    Healthz,
    /// `GET /metrics`.
    Metrics,
    /// `GET /`: the dashboard page.
    Dashboard,
    /// An error answer; `reason` labels `tickcast_handshake_failures_total`.
    Reject {
        status: u16,
        reason: HandshakeFailure,
        message: &'static str,
    },
}

/// Routes a parsed request. The first problem found is answered, in this order (431 and
/// 400 `malformed` come before, from [`parse_request`]):
///
/// 1. 405 `method_not_allowed`: not GET;
/// 2. 400 `bad_target`: neither a path nor an `http(s)` URL, so nothing to route;
/// 3. 404 `not_found`: a path the server does not serve, whatever else is wrong;
/// 4. 400 `bad_host`: HTTP/1.1 without `Host`, more than one, or an invalid one (RFC 9112
///    §3.2; HTTP/1.0 may omit it, so `curl --http1.0` still reads `/healthz`);
/// 5. 400 `request_body`: a `Content-Length` over 0 or unreadable, or any
///    `Transfer-Encoding`; the server never reads a body, so it must not follow the head;
///
/// then the plain routes answer, and a WebSocket path goes on with
///
/// 6. 400 `http_version`: an upgrade must be HTTP/1.1 (RFC 6455 §4.1);
/// 7. 400 `duplicate_header`: `Sec-WebSocket-Key` or `Sec-WebSocket-Version` twice;
/// 8. 400 `not_upgrade`, 400 `missing_version`, 426 `bad_version`, 400 `bad_key`.
///
/// What needs the server's state (Origin, token, query, connection caps) comes after, in
/// `conn::handshake`.
pub fn route(req: &Request) -> Target {
    let reject = |status, reason, message| Target::Reject {
        status,
        reason,
        message,
    };
    if req.method != "GET" {
        return reject(
            405,
            HandshakeFailure::MethodNotAllowed,
            "only GET is served\n",
        );
    }
    if req.bad_target {
        return reject(
            400,
            HandshakeFailure::BadTarget,
            "the request target must be a path or an http(s) URL\n",
        );
    }
    // A WebSocket route, or the plain answer once the request passes the checks below.
    let ws = match req.path.as_str() {
        "/ws" => Ok(WsRoute::Stream),
        "/echo" => Ok(WsRoute::Echo),
        "/healthz" => Err(Target::Healthz),
        "/metrics" => Err(Target::Metrics),
        "/" | "/index.html" => Err(Target::Dashboard),
        _ => return reject(404, HandshakeFailure::NotFound, "no such path\n"),
    };
    let host_required = req.version_minor >= 1;
    if req.host_count > 1 || req.host_invalid || (host_required && req.host_count == 0) {
        return reject(
            400,
            HandshakeFailure::BadHost,
            "exactly one valid Host header is required\n",
        );
    }
    if req.body {
        return reject(
            400,
            HandshakeFailure::RequestBody,
            "a request must have no body (Content-Length 0 or none, no Transfer-Encoding)\n",
        );
    }
    let ws = match ws {
        Ok(ws) => ws,
        Err(plain) => return plain,
    };
    if req.version_minor < 1 {
        return reject(
            400,
            HandshakeFailure::HttpVersion,
            "a WebSocket upgrade needs HTTP/1.1\n",
        );
    }
    if req.ws_key_count > 1 || req.ws_version_count > 1 {
        return reject(
            400,
            HandshakeFailure::DuplicateHeader,
            "Sec-WebSocket-Key and Sec-WebSocket-Version may appear only once\n",
        );
    }
    if !req.upgrade_websocket || !req.connection_upgrade {
        return reject(
            400,
            HandshakeFailure::NotUpgrade,
            "expected a WebSocket upgrade request\n",
        );
    }
    match req.ws_version.as_deref() {
        Some("13") => {}
        Some(_) => {
            return reject(
                426,
                HandshakeFailure::BadVersion,
                "only WebSocket version 13 is supported\n",
            );
        }
        None => {
            return reject(
                400,
                HandshakeFailure::MissingVersion,
                "missing Sec-WebSocket-Version\n",
            );
        }
    }
    let Some(key) = req.ws_key.as_deref().filter(|k| is_valid_ws_key(k)) else {
        return reject(
            400,
            HandshakeFailure::BadKey,
            "missing or malformed Sec-WebSocket-Key\n",
        );
    };
    let accept = tungstenite::handshake::derive_accept_key(key.as_bytes());
    Target::Upgrade { route: ws, accept }
}

/// A `Sec-WebSocket-Key` must be the base64 of 16 bytes: 22 base64 characters and `==`.
fn is_valid_ws_key(key: &str) -> bool {
    let b = key.as_bytes();
    b.len() == 24
        && b[22..] == *b"=="
        && b[..22]
            .iter()
            .all(|c| c.is_ascii_alphanumeric() || *c == b'+' || *c == b'/')
}

/// The standard reason phrase for the statuses this server sends.
fn reason_phrase(status: u16) -> &'static str {
    match status {
        101 => "Switching Protocols",
        200 => "OK",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        426 => "Upgrade Required",
        429 => "Too Many Requests",
        431 => "Request Header Fields Too Large",
        503 => "Service Unavailable",
        _ => "Error",
    }
}

/// A complete `Connection: close` response.
pub fn response(status: u16, content_type: &str, body: &[u8], extra: &[(&str, &str)]) -> Vec<u8> {
    let mut head = String::with_capacity(160);
    // Writing to a String cannot fail.
    let _ = write!(
        head,
        "HTTP/1.1 {status} {}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\n\
         Connection: close\r\nCache-Control: no-store\r\n",
        reason_phrase(status),
        body.len()
    );
    for (name, value) in extra {
        let _ = write!(head, "{name}: {value}\r\n");
    }
    head.push_str("\r\n");
    let mut out = head.into_bytes();
    out.extend_from_slice(body);
    out
}

/// The extra headers that go with an error status (RFC 9110, RFC 6455 §4.4).
pub fn reject_headers(status: u16) -> &'static [(&'static str, &'static str)] {
    match status {
        401 => &[("WWW-Authenticate", "Bearer")],
        405 => &[("Allow", "GET")],
        426 => &[("Sec-WebSocket-Version", "13"), ("Upgrade", "websocket")],
        _ => &[],
    }
}

/// The `101 Switching Protocols` answer completing a WebSocket handshake.
pub fn switching_protocols(accept: &str) -> Vec<u8> {
    format!(
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Accept: {accept}\r\n\r\n"
    )
    .into_bytes()
}

#[cfg(test)]
mod tests {
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
        // Method, target, path, then Host and body, then the WebSocket checks.
        assert_eq!(refusal("OPTIONS * HTTP/1.1\r\n\r\n").0, 405);
        assert_eq!(
            refusal("GET * HTTP/1.1\r\nContent-Length: 1\r\n\r\n").1,
            "bad_target"
        );
        assert_eq!(
            refusal("GET /nope HTTP/1.1\r\nContent-Length: 1\r\n\r\n").0,
            404
        );
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
        let r =
            String::from_utf8(response(405, "text/plain", b"no\n", reject_headers(405))).unwrap();
        assert!(r.starts_with("HTTP/1.1 405 Method Not Allowed\r\n"));
        assert!(r.contains("Allow: GET\r\n") && r.contains("Content-Length: 3\r\n"));
        assert!(r.ends_with("\r\n\r\nno\n"));
    }
}
