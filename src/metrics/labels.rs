//! The label sets of the exported metrics, and every value each one can take.
//!
//! A Prometheus series that appears only at its first event breaks `rate()` and alerts on
//! it (there is no zero to rise from), and a label whose value comes from the network can
//! grow without bound. So every label here takes its values from a fixed list (the shard
//! index from the shard count; the topic from the server topics plus `rooms`), and [`super::Metrics::new`] creates
//! each series at zero before the first scrape.

use prometheus_client::encoding::EncodeLabelSet;

/// Label: a shard index.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ShardLabel {
    /// Shard index.
    pub shard: u32,
}

/// Label: a reason (handshake failures, accept errors).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReasonLabel {
    /// Short snake_case reason.
    pub reason: &'static str,
}

/// Labels of a dropped frame.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DropLabel {
    /// Shard that dropped it.
    pub shard: u32,
    /// One of [`DROP_REASONS`].
    pub reason: &'static str,
}

/// Every `reason` a [`DropLabel`] takes: the mixer's full shard queue, a client's full
/// outbox (`--slow-policy drop`), a full control queue, the frames a slow consumer was
/// refused or had queued when it was closed (`--slow-policy disconnect`), and control frames
/// (ping, pong, reset) refused past a full outbox's allowance.
pub const DROP_REASONS: [&str; 5] = [
    "shard_queue_full",
    "outbox_full",
    "control_overflow",
    "slow_consumer",
    "control_frame",
];

/// Every `reason` of `tickcast_accept_errors_total`: out of descriptors (process, system),
/// anything else `accept()` returns, a shard that could not take the socket, and an address
/// over `--max-pending-per-ip` (its socket closed at accept).
pub const ACCEPT_ERRORS: [&str; 5] = ["emfile", "enfile", "other", "shard_busy", "pending_per_ip"];

/// Label: a server topic's name (a fixed list), or [`ROOMS_LABEL`] for every room together.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TopicLabel {
    /// Topic name.
    pub topic: String,
}

/// The one `topic` label every room shares: rooms are named by clients and come and go, so
/// a label each would add a series per room ever made (a `Family` never drops one) and list
/// room names to whoever scrapes.
pub const ROOMS_LABEL: &str = "rooms";

/// Label: a WebSocket close code, as [`close_code_label`] names it.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CodeLabel {
    /// The code's number, or its range for codes a client may choose freely.
    pub code: &'static str,
}

/// Close codes with a series of their own: the ones RFC 6455 and the IANA registry define
/// for use on the wire (1013 "try again later" and 1014 "bad gateway" included).
const NAMED_CLOSE_CODES: [(u16, &str); 14] = [
    (1000, "1000"),
    (1001, "1001"),
    (1002, "1002"),
    (1003, "1003"),
    (1005, "1005"),
    (1006, "1006"),
    (1007, "1007"),
    (1008, "1008"),
    (1009, "1009"),
    (1010, "1010"),
    (1011, "1011"),
    (1012, "1012"),
    (1013, "1013"),
    (1014, "1014"),
];

/// Every value of [`CodeLabel`]: the named codes, then the ranges a client picks from.
pub const CLOSE_CODES: [&str; 17] = [
    "1000", "1001", "1002", "1003", "1005", "1006", "1007", "1008", "1009", "1010", "1011", "1012",
    "1013", "1014", "3xxx", "4xxx", "other",
];

/// The label for close code `code`. A peer may close with any of 2,000 registered or
/// private codes; they share `3xxx` and `4xxx`, so a client cannot add series.
pub fn close_code_label(code: u16) -> &'static str {
    match code {
        3000..=3999 => "3xxx",
        4000..=4999 => "4xxx",
        _ => NAMED_CLOSE_CODES
            .iter()
            .find(|(c, _)| *c == code)
            .map_or("other", |(_, label)| label),
    }
}

/// Label: a client error code.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ErrorLabel {
    /// Error code sent in the error frame.
    pub code: &'static str,
}

/// Why a request was answered with an HTTP error instead of `101` (or never finished its
/// handshake): the `reason` of `tickcast_handshake_failures_total`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HandshakeFailure {
    /// The request head did not parse (400).
    Malformed,
    /// The request head passed `--max-header` (431).
    HeaderTooLarge,
    /// Not a GET (405).
    MethodNotAllowed,
    /// No such path (404).
    NotFound,
    /// A WebSocket path without an upgrade (400).
    NotUpgrade,
    /// No `Sec-WebSocket-Version` (400).
    MissingVersion,
    /// A version other than 13 (426).
    BadVersion,
    /// A missing or malformed `Sec-WebSocket-Key` (400).
    BadKey,
    /// An `Origin` outside `--allowed-origins` (403).
    OriginForbidden,
    /// Authentication is on and no token came (401).
    TokenMissing,
    /// The token's `exp` has passed, or lies further ahead than `--max-token-lifetime`
    /// (401).
    TokenExpired,
    /// The token's `nbf` has not come yet (401).
    TokenNotYetValid,
    /// The token's signature or claims are wrong (401).
    TokenInvalid,
    /// The token does not grant a requested topic (403).
    Forbidden,
    /// A `client_id` outside the allowed characters (400).
    BadClientId,
    /// A malformed `since` (400).
    BadSince,
    /// A malformed or too long topic list (400).
    BadTopics,
    /// A `batch` other than `0` or `1` (400).
    BadBatch,
    /// `--max-connections` reached (503).
    ServerFull,
    /// `--max-per-ip` reached for the client's address (429).
    AddressFull,
    /// No complete request within the handshake timeout.
    Timeout,
    /// The peer closed before finishing its request.
    Eof,
    /// A request target neither a path nor an `http(s)` URL (400).
    BadTarget,
    /// HTTP/1.1 without `Host`, more than one `Host`, or an invalid one (400).
    BadHost,
    /// A request body announced: `Content-Length` over 0 or unreadable, or
    /// `Transfer-Encoding` (400).
    RequestBody,
    /// A WebSocket upgrade over HTTP/1.0 (400).
    HttpVersion,
    /// `Sec-WebSocket-Key` or `Sec-WebSocket-Version` more than once (400).
    DuplicateHeader,
    /// The TLS handshake failed (a bad ClientHello, no common cipher, a wrong certificate
    /// refused by the client, ...).
    Tls,
    /// Something other than TLS (a plain HTTP request) on a TLS port (400, in plain text).
    PlainOnTls,
    /// `--proxy-protocol`: a trusted proxy's connection did not open with a valid PROXY
    /// header (closed).
    BadProxyHeader,
    /// A PROXY header from a peer outside `--trusted-proxy` (400, or closed on TLS).
    ProxyUntrusted,
}

impl HandshakeFailure {
    /// Every reason, in the order of the enum.
    pub const ALL: [HandshakeFailure; 31] = [
        HandshakeFailure::Malformed,
        HandshakeFailure::HeaderTooLarge,
        HandshakeFailure::MethodNotAllowed,
        HandshakeFailure::NotFound,
        HandshakeFailure::NotUpgrade,
        HandshakeFailure::MissingVersion,
        HandshakeFailure::BadVersion,
        HandshakeFailure::BadKey,
        HandshakeFailure::OriginForbidden,
        HandshakeFailure::TokenMissing,
        HandshakeFailure::TokenExpired,
        HandshakeFailure::TokenNotYetValid,
        HandshakeFailure::TokenInvalid,
        HandshakeFailure::Forbidden,
        HandshakeFailure::BadClientId,
        HandshakeFailure::BadSince,
        HandshakeFailure::BadTopics,
        HandshakeFailure::BadBatch,
        HandshakeFailure::ServerFull,
        HandshakeFailure::AddressFull,
        HandshakeFailure::Timeout,
        HandshakeFailure::Eof,
        HandshakeFailure::BadTarget,
        HandshakeFailure::BadHost,
        HandshakeFailure::RequestBody,
        HandshakeFailure::HttpVersion,
        HandshakeFailure::DuplicateHeader,
        HandshakeFailure::Tls,
        HandshakeFailure::PlainOnTls,
        HandshakeFailure::BadProxyHeader,
        HandshakeFailure::ProxyUntrusted,
    ];

    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            HandshakeFailure::Malformed => "malformed",
            HandshakeFailure::HeaderTooLarge => "header_too_large",
            HandshakeFailure::MethodNotAllowed => "method_not_allowed",
            HandshakeFailure::NotFound => "not_found",
            HandshakeFailure::NotUpgrade => "not_upgrade",
            HandshakeFailure::MissingVersion => "missing_version",
            HandshakeFailure::BadVersion => "bad_version",
            HandshakeFailure::BadKey => "bad_key",
            HandshakeFailure::OriginForbidden => "origin_forbidden",
            HandshakeFailure::TokenMissing => "token_missing",
            HandshakeFailure::TokenExpired => "token_expired",
            HandshakeFailure::TokenNotYetValid => "token_not_yet_valid",
            HandshakeFailure::TokenInvalid => "token_invalid",
            HandshakeFailure::Forbidden => "forbidden",
            HandshakeFailure::BadClientId => "bad_client_id",
            HandshakeFailure::BadSince => "bad_since",
            HandshakeFailure::BadTopics => "bad_topics",
            HandshakeFailure::BadBatch => "bad_batch",
            HandshakeFailure::ServerFull => "server_full",
            HandshakeFailure::AddressFull => "address_full",
            HandshakeFailure::Timeout => "timeout",
            HandshakeFailure::Eof => "eof",
            HandshakeFailure::BadTarget => "bad_target",
            HandshakeFailure::BadHost => "bad_host",
            HandshakeFailure::RequestBody => "request_body",
            HandshakeFailure::HttpVersion => "http_version",
            HandshakeFailure::DuplicateHeader => "duplicate_header",
            HandshakeFailure::Tls => "tls",
            HandshakeFailure::PlainOnTls => "plain_on_tls",
            HandshakeFailure::BadProxyHeader => "bad_proxy_header",
            HandshakeFailure::ProxyUntrusted => "proxy_untrusted",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_close_code_maps_into_the_fixed_list() {
        for code in 0..=u16::MAX {
            assert!(CLOSE_CODES.contains(&close_code_label(code)), "{code}");
        }
        assert_eq!(close_code_label(1008), "1008");
        assert_eq!(close_code_label(4321), "4xxx");
        assert_eq!(close_code_label(3000), "3xxx");
        assert_eq!(close_code_label(1004), "other");
        assert_eq!(close_code_label(1013), "1013");
        assert_eq!(close_code_label(1014), "1014");
        for (code, label) in NAMED_CLOSE_CODES {
            assert_eq!(label, code.to_string());
        }
    }

    #[test]
    fn handshake_failure_labels_are_distinct_and_all_listed() {
        let mut labels: Vec<_> = HandshakeFailure::ALL.iter().map(|r| r.as_str()).collect();
        labels.sort_unstable();
        labels.dedup();
        assert_eq!(labels.len(), HandshakeFailure::ALL.len());
    }
}
