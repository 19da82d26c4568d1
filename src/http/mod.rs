//! HTTP/1.1 on a shard: bounded request parsing (httparse), routing, and responses.
//!
//! Every connection starts here. A request is parsed from the bytes received so far; once the
//! head is complete it is routed to a WebSocket upgrade (`/ws`, `/echo`), a plain answer
//! (`/healthz`, `/metrics`, the dashboard at `/`) or a precise error status. Plain answers close the connection
//! after they are written (`Connection: close`): the server speaks HTTP only to open
//! WebSockets and to be scraped, so it is strict: it never reads a request body, wants
//! exactly one valid `Host` (RFC 9112 §3.2) and upgrades only HTTP/1.1 (RFC 6455 §4.1).
//!
//! - `parse.rs`: the request head, bounded, into a [`Request`];
//! - `route.rs`: where a request goes, or which error status answers it, in a fixed order;
//! - `response.rs`: the answers' bytes.

mod parse;
mod response;
mod route;
#[cfg(test)]
mod tests;

pub use parse::parse_request;
pub use response::{reject_headers, response, response_head, switching_protocols};
pub use route::route;

use crate::metrics::HandshakeFailure;

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
    /// Every `Sec-WebSocket-Extensions` value, in order, joined with `, ` (one list, as
    /// RFC 9110 §5.3 combines repeated fields).
    pub extensions: String,
    /// Every `Forwarded` value (RFC 7239), joined like `extensions`; believed only from a
    /// `--trusted-proxy`.
    pub forwarded: Option<String>,
    /// Every `X-Forwarded-For` value, joined like `extensions`; believed only from a
    /// `--trusted-proxy`.
    pub x_forwarded_for: Option<String>,
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
    /// `Origin` lines received (at most one, RFC 6454 §7.3: the origin check must not depend
    /// on which of two the server happens to read).
    pub origin_count: usize,
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

    /// Every value of query parameter `name`, in order: list parameters (`topics`, `room`,
    /// `since`) may be repeated, and each occurrence counts (`?room=a&room=b` joins both).
    pub fn query_values<'a>(&'a self, name: &'a str) -> impl Iterator<Item = String> + 'a {
        self.query_pairs()
            .filter(move |(k, _)| k == name)
            .map(|(_, v)| v)
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
    /// `GET /healthz` (or `HEAD`, as every plain route).
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
