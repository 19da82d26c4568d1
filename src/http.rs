//! HTTP/1.1 on a shard: bounded request parsing (httparse), routing, and responses.
//!
//! Every connection starts here. A request is parsed from the bytes received so far; once the
//! head is complete it is routed to a WebSocket upgrade (`/ws`, `/echo`), a plain answer
//! (`/healthz`, `/metrics`, the dashboard at `/`) or a precise error status. Plain answers close the connection
//! after they are written (`Connection: close`): the server speaks HTTP only to open
//! WebSockets and to be scraped.

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
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    let mut out = Request {
        method: req.method.unwrap_or("").to_string(),
        path: path.to_string(),
        query: query.to_string(),
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
            "sec-websocket-key" => out.ws_key = Some(value),
            "sec-websocket-version" => out.ws_version = Some(value),
            "origin" => out.origin = Some(value),
            "authorization" => out.authorization = Some(value),
            _ => {}
        }
    }
    Ok(Some((out, used)))
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

/// Routes a parsed request.
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
    let ws = match req.path.as_str() {
        "/ws" => WsRoute::Stream,
        "/echo" => WsRoute::Echo,
        "/healthz" => return Target::Healthz,
        "/metrics" => return Target::Metrics,
        "/" | "/index.html" => return Target::Dashboard,
        _ => return reject(404, HandshakeFailure::NotFound, "no such path\n"),
    };
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

    #[test]
    fn statuses_for_bad_requests() {
        let status = |req: &str| match route(&parse(req)) {
            Target::Reject { status, .. } => status,
            other => panic!("{other:?}"),
        };
        assert_eq!(status("POST /ws HTTP/1.1\r\n\r\n"), 405);
        assert_eq!(status("GET /nope HTTP/1.1\r\n\r\n"), 404);
        assert_eq!(status("GET /ws HTTP/1.1\r\n\r\n"), 400);
        assert_eq!(status(&upgrade("/ws", "Sec-WebSocket-Version: 8\r\n")), 426);
        assert_eq!(status(&upgrade("/ws", "")), 400);
        let bad_key = upgrade("/echo", "Sec-WebSocket-Version: 13\r\n").replace(KEY, "short");
        assert_eq!(status(&bad_key), 400);
    }

    #[test]
    fn plain_routes() {
        assert_eq!(
            route(&parse("GET /healthz HTTP/1.1\r\n\r\n")),
            Target::Healthz
        );
        assert_eq!(
            route(&parse("GET /metrics HTTP/1.1\r\n\r\n")),
            Target::Metrics
        );
        assert_eq!(route(&parse("GET / HTTP/1.1\r\n\r\n")), Target::Dashboard);
        assert_eq!(
            route(&parse("GET /?utm=x HTTP/1.1\r\n\r\n")),
            Target::Dashboard
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
