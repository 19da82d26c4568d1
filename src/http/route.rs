//! Routing a parsed request: a WebSocket upgrade, a plain answer, or the first error status
//! that applies, in the order documented on [`route`].

use super::{Request, Target, WsRoute};
use crate::metrics::HandshakeFailure;

/// Routes a parsed request. The first problem found is answered, in this order (431 and
/// 400 `malformed` come before, from [`parse_request`](super::parse_request)):
///
/// 1. 405 `method_not_allowed`: neither GET nor HEAD (HEAD is answered like GET without
///    the body, on the plain routes);
/// 2. 400 `bad_target`: neither a path nor an `http(s)` URL, so nothing to route;
/// 3. 400 `bad_host`: HTTP/1.1 without `Host`, more than one, or an invalid one (RFC 9112
///    §3.2: "MUST respond with a 400", whatever the path; HTTP/1.0 may omit it, so
///    `curl --http1.0` still reads `/healthz`);
/// 4. 400 `request_body`: a `Content-Length` over 0 or unreadable, or any
///    `Transfer-Encoding`; the server never reads a body, so it must not follow the head;
/// 5. 404 `not_found`: a path the server does not serve;
///
/// then the plain routes answer, and a WebSocket path goes on with
///
/// 6. 405 `method_not_allowed`: HEAD (an upgrade must be GET);
/// 7. 400 `http_version`: an upgrade must be HTTP/1.1 (RFC 6455 §4.1);
/// 8. 400 `duplicate_header`: `Sec-WebSocket-Key`, `Sec-WebSocket-Version` or `Origin` twice;
/// 9. 400 `not_upgrade`, 400 `missing_version`, 426 `bad_version`, 400 `bad_key`.
///
/// What needs the server's state (Origin, token, query, connection caps) comes after, in
/// `conn::handshake`.
pub fn route(req: &Request) -> Target {
    let reject = |status, reason, message| Target::Reject {
        status,
        reason,
        message,
    };
    if req.method != "GET" && req.method != "HEAD" {
        return reject(
            405,
            HandshakeFailure::MethodNotAllowed,
            "only GET and HEAD are served\n",
        );
    }
    if req.bad_target {
        return reject(
            400,
            HandshakeFailure::BadTarget,
            "the request target must be a path or an http(s) URL\n",
        );
    }
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
    let ws = match req.path.as_str() {
        "/ws" => WsRoute::Stream,
        "/echo" => WsRoute::Echo,
        "/healthz" => return Target::Healthz,
        "/metrics" => return Target::Metrics,
        "/" | "/index.html" => return Target::Dashboard,
        _ => return reject(404, HandshakeFailure::NotFound, "no such path\n"),
    };
    if req.method != "GET" {
        return reject(
            405,
            HandshakeFailure::MethodNotAllowed,
            "a WebSocket upgrade must be GET\n",
        );
    }
    if req.version_minor < 1 {
        return reject(
            400,
            HandshakeFailure::HttpVersion,
            "a WebSocket upgrade needs HTTP/1.1\n",
        );
    }
    if req.ws_key_count > 1 || req.ws_version_count > 1 || req.origin_count > 1 {
        return reject(
            400,
            HandshakeFailure::DuplicateHeader,
            "Sec-WebSocket-Key, Sec-WebSocket-Version and Origin may appear only once\n",
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
