//! The HTTP request head: `tickcast::http::parse_request`, `route`, and the query values an
//! upgrade reads.
//!
//! Invariants checked:
//! - a complete head used at most the bytes given and at most `--max-header`, and parsing
//!   exactly those bytes again gives the same request (the head's end is found, not guessed);
//! - an incomplete head is never longer than `--max-header` (else it must be refused: 431);
//! - the path of a routable target starts with `/`; an upgrade is routed only for a GET on
//!   `/ws` or `/echo` over HTTP/1.1, with one valid Host, the upgrade headers, version 13
//!   and a key, and its `Sec-WebSocket-Accept` is the RFC 6455 digest of that key;
//! - every refusal is a 4xx status;
//! - the query values: `topics`/`room` names carry no separator or edge whitespace, accepted
//!   names and client ids keep to their alphabets and lengths, an accepted `since` formats
//!   back to a value that parses the same, and the token found is the query's or the
//!   `Authorization: Bearer` one.

use tickcast::http::{Target, WsRoute, parse_request, route};
use tickcast::protocol::{self, MAX_NAME_LEN, MAX_TOPIC_LEN};

/// The `--max-header` the checks run with (the server's default is 8 KiB; a smaller one
/// lets the fuzzer reach the bound with short inputs).
const MAX_HEADER: usize = 1024;

/// Runs the request parser, the router and the query readers on `data`.
pub fn check(data: &[u8]) {
    let parsed = parse_request(data, MAX_HEADER);
    let (req, used) = match parsed {
        Ok(Some(done)) => done,
        Ok(None) => {
            assert!(
                data.len() <= MAX_HEADER,
                "an incomplete head past the limit"
            );
            return;
        }
        Err(_) => return,
    };
    assert!(used <= data.len() && used <= MAX_HEADER, "used {used}");
    assert_eq!(
        parse_request(&data[..used], MAX_HEADER),
        Ok(Some((req.clone(), used))),
        "the head's own bytes parse to the same request"
    );
    if !req.bad_target {
        assert!(req.path.starts_with('/'), "path {:?}", req.path);
    }
    match route(&req) {
        Target::Upgrade { route, accept } => {
            assert_eq!(req.method, "GET");
            assert_eq!(req.version_minor, 1);
            assert!(matches!(
                (route, req.path.as_str()),
                (WsRoute::Stream, "/ws") | (WsRoute::Echo, "/echo")
            ));
            assert!(req.upgrade_websocket && req.connection_upgrade);
            assert_eq!(req.host_count, 1);
            assert!(!req.host_invalid && !req.body && !req.bad_target);
            assert_eq!(req.ws_version.as_deref(), Some("13"));
            assert!(req.ws_key_count == 1 && req.ws_version_count == 1);
            let key = req.ws_key.as_deref().expect("an upgrade has a key");
            assert_eq!(
                accept,
                tungstenite::handshake::derive_accept_key(key.as_bytes())
            );
        }
        Target::Reject { status, .. } => assert!((400..500).contains(&status), "{status}"),
        Target::Healthz | Target::Metrics | Target::Dashboard => {
            assert_eq!(req.method, "GET");
        }
    }
    check_query(&req);
}

/// The query values a `/ws` upgrade reads, through the same functions the handshake uses.
fn check_query(req: &tickcast::http::Request) {
    for name in ["topics", "room"] {
        if let Some(list) = req.query_param(name) {
            for topic in protocol::split_topics(&list) {
                assert!(!topic.is_empty() && !topic.contains(','));
                assert_eq!(topic, topic.trim());
                if protocol::validate_topic(&topic).is_ok() {
                    assert!(topic == "*" || topic.len() <= MAX_TOPIC_LEN);
                    assert!(topic.bytes().all(|b| b.is_ascii_graphic()));
                }
            }
        }
    }
    if let Some(id) = req.query_param("client_id")
        && protocol::validate_client_id(&id).is_ok()
    {
        assert!(!id.is_empty() && id.len() <= MAX_NAME_LEN);
        assert!(
            id.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
        );
    }
    if let Some(since) = req.query_param("since") {
        check_since(&since);
    }
    let query_token = req.query_param("token");
    let token = tickcast::auth::token_of(query_token.as_deref(), req.authorization.as_deref());
    match (&query_token, token) {
        (Some(q), Some(t)) => assert_eq!(q, t),
        (Some(_), None) => panic!("a query token was lost"),
        (None, Some(t)) => {
            let auth = req.authorization.as_deref().expect("from Authorization");
            assert!(auth.contains(t) && t == t.trim());
        }
        (None, None) => {}
    }
}

/// A `since` value that parses formats back (`topic:seq,...`) to one that parses the same.
pub fn check_since(value: &str) {
    let Ok(items) = protocol::parse_since(value) else {
        return;
    };
    for (topic, _) in &items {
        assert!(!topic.contains(','), "{topic:?}");
    }
    let formatted: Vec<String> = items.iter().map(|(t, s)| format!("{t}:{s}")).collect();
    assert_eq!(
        protocol::parse_since(&formatted.join(",")).ok(),
        Some(items),
        "since {value:?} does not survive a round trip"
    );
}
