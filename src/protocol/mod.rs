//! The JSON protocol spoken on `/ws`: error codes, names and their rules.
//!
//! Broadcast messages (`{"topic","seq","ts","from","data"}`) are built by the mixer; this
//! module covers what is said to one connection. [`ops`] parses client operations into precise
//! error codes; [`replies`] builds the frames sent back (welcome, acknowledgements, presence,
//! reset). Every code listed in [`ErrorCode`] is documented in the README's protocol section.

pub mod ops;
pub mod replies;

pub use ops::{ClientOp, parse_op, parse_since};

use serde::Serialize;

use crate::frame::{self, FrameBytes};

/// Longest topic name, in bytes.
pub const MAX_TOPIC_LEN: usize = 128;
/// Longest message an error frame carries, in bytes. serde_json's messages quote the
/// value they refused (found by the `client_ops` fuzz target: a 64 KiB string came back
/// whole in the error).
pub const MAX_ERROR_MESSAGE: usize = 200;
/// Longest client id or nickname, in bytes.
pub const MAX_NAME_LEN: usize = 64;
/// The topic of the built-in synthetic market feeds (`provider/ticker.rs`).
pub const TICKS_TOPIC: &str = "ticks";
/// The topic the server describes itself on (`provider/telemetry.rs`; the dashboard).
pub const TELEMETRY_TOPIC: &str = "telemetry";
/// Topics owned by the server's providers: clients may subscribe but never publish.
pub const SERVER_TOPICS: &[&str] = &[TICKS_TOPIC, TELEMETRY_TOPIC];
/// The wildcard subscription: every topic, including ones that appear later.
pub const WILDCARD: &str = "*";

/// Whether clients may publish to `topic` (rooms are every topic but the server's own).
pub fn is_room(topic: &str) -> bool {
    topic != WILDCARD && !SERVER_TOPICS.contains(&topic)
}

/// Error codes sent in `{"type":"error","code":...}` frames. Each is counted in
/// `tickcast_client_errors_total{code}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorCode {
    /// The text was not JSON.
    InvalidJson,
    /// JSON, but not the shape of an operation (not an object, wrong field types).
    InvalidMessage,
    /// `op` is missing or not one the server knows.
    UnknownOp,
    /// A topic name is empty, too long, or has characters outside `[A-Za-z0-9._:/-]`.
    InvalidTopic,
    /// The connection would hold more topics than `--max-topics`.
    TooManyTopics,
    /// Unsubscribing a named topic while subscribed to `*` (unsubscribe `*` first).
    WildcardActive,
    /// A binary message on `/ws`, which only speaks JSON text.
    BinaryUnsupported,
    /// The token does not grant this subscription or publish.
    Forbidden,
    /// Publishing faster than `--publish-rate` allows.
    RateLimited,
    /// Publishing to a server-owned topic (`ticks`, `telemetry`).
    ReadOnlyTopic,
    /// Publishing to a room this connection has not joined.
    NotInRoom,
    /// A chat command (`/...`) the server does not know, or used wrongly.
    UnknownCommand,
    /// A `/nick` or `client_id` outside `[A-Za-z0-9._-]{1,64}`.
    InvalidName,
    /// The server is momentarily unable to take the publish (its mixer queue is full).
    ServerBusy,
}

impl ErrorCode {
    /// Every code, in the order of the enum.
    pub const ALL: [ErrorCode; 14] = [
        ErrorCode::InvalidJson,
        ErrorCode::InvalidMessage,
        ErrorCode::UnknownOp,
        ErrorCode::InvalidTopic,
        ErrorCode::TooManyTopics,
        ErrorCode::WildcardActive,
        ErrorCode::BinaryUnsupported,
        ErrorCode::Forbidden,
        ErrorCode::RateLimited,
        ErrorCode::ReadOnlyTopic,
        ErrorCode::NotInRoom,
        ErrorCode::UnknownCommand,
        ErrorCode::InvalidName,
        ErrorCode::ServerBusy,
    ];

    /// The code as it appears on the wire and in metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::InvalidJson => "invalid_json",
            ErrorCode::InvalidMessage => "invalid_message",
            ErrorCode::UnknownOp => "unknown_op",
            ErrorCode::InvalidTopic => "invalid_topic",
            ErrorCode::TooManyTopics => "too_many_topics",
            ErrorCode::WildcardActive => "wildcard_active",
            ErrorCode::BinaryUnsupported => "binary_unsupported",
            ErrorCode::Forbidden => "forbidden",
            ErrorCode::RateLimited => "rate_limited",
            ErrorCode::ReadOnlyTopic => "read_only_topic",
            ErrorCode::NotInRoom => "not_in_room",
            ErrorCode::UnknownCommand => "unknown_command",
            ErrorCode::InvalidName => "invalid_name",
            ErrorCode::ServerBusy => "server_busy",
        }
    }
}

/// A client error: the code plus a human-readable message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientError {
    /// Machine-readable code.
    pub code: ErrorCode,
    /// What was wrong, for people.
    pub message: String,
}

impl ClientError {
    /// An error with `code` and `message`, cut to [`MAX_ERROR_MESSAGE`] bytes (with `…`):
    /// parser messages quote the offending value, which must not come back whole.
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        let mut message = message.into();
        if message.len() > MAX_ERROR_MESSAGE {
            let mut end = MAX_ERROR_MESSAGE - '…'.len_utf8();
            while !message.is_char_boundary(end) {
                end -= 1;
            }
            message.truncate(end);
            message.push('…');
        }
        ClientError { code, message }
    }

    /// The error frame sent to the offending connection only.
    pub fn frame(&self) -> FrameBytes {
        #[derive(Serialize)]
        struct ErrorFrame<'a> {
            #[serde(rename = "type")]
            kind: &'static str,
            code: &'static str,
            message: &'a str,
        }
        json_frame(&ErrorFrame {
            kind: "error",
            code: self.code.as_str(),
            message: &self.message,
        })
    }
}

/// Checks a topic name (or the wildcard `*`).
pub fn validate_topic(topic: &str) -> Result<(), ClientError> {
    let ok_char = |c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | ':' | '/');
    if topic == "*"
        || (!topic.is_empty() && topic.len() <= MAX_TOPIC_LEN && topic.chars().all(ok_char))
    {
        Ok(())
    } else {
        let shown: String = topic.chars().take(MAX_TOPIC_LEN).collect();
        Err(ClientError::new(
            ErrorCode::InvalidTopic,
            format!("invalid topic `{shown}`"),
        ))
    }
}

/// Splits a `topics=a,b` query value into names, skipping empty entries.
pub fn split_topics(list: &str) -> Vec<String> {
    list.split(',')
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .map(String::from)
        .collect()
}

/// Checks a client id or nickname: `[A-Za-z0-9._-]`, 1 to 64 bytes.
pub fn validate_client_id(name: &str) -> Result<(), ClientError> {
    let ok_char = |c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-');
    if !name.is_empty() && name.len() <= MAX_NAME_LEN && name.chars().all(ok_char) {
        Ok(())
    } else {
        let shown: String = name.chars().take(MAX_NAME_LEN).collect();
        Err(ClientError::new(
            ErrorCode::InvalidName,
            format!("invalid name `{shown}`: use [A-Za-z0-9._-], at most {MAX_NAME_LEN} bytes"),
        ))
    }
}

/// Serializes `value` into one text frame.
pub fn json_frame(value: &impl Serialize) -> FrameBytes {
    // Serializing these plain structs of strings and numbers into memory cannot fail.
    frame::text(&serde_json::to_string(value).expect("serializing a reply"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topic_rules() {
        for ok in [
            "ticks",
            "room.lobby",
            "a:b/c-d_e",
            "*",
            &"x".repeat(MAX_TOPIC_LEN),
        ] {
            assert!(validate_topic(ok).is_ok(), "{ok}");
        }
        for bad in ["", "a b", "ticks*", "é", &"x".repeat(MAX_TOPIC_LEN + 1)] {
            assert!(validate_topic(bad).is_err(), "{bad}");
        }
        assert_eq!(split_topics("a, b,,c"), vec!["a", "b", "c"]);
    }

    #[test]
    fn error_messages_are_cut_at_a_char_boundary() {
        let long = format!("invalid type: string \"{}\"", "é".repeat(500));
        let e = ClientError::new(ErrorCode::InvalidMessage, long);
        assert!(e.message.len() <= MAX_ERROR_MESSAGE, "{}", e.message.len());
        assert!(e.message.ends_with('…') && e.message.starts_with("invalid type"));
        let short = ClientError::new(ErrorCode::InvalidMessage, "short");
        assert_eq!(short.message, "short");
    }

    #[test]
    fn error_frame_is_json_text() {
        let f = ClientError::new(ErrorCode::UnknownOp, "nope \"quoted\"").frame();
        assert_eq!(f[0], 0x81);
        let v: serde_json::Value = serde_json::from_slice(&f[2..]).unwrap();
        assert_eq!(v["type"], "error");
        assert_eq!(v["code"], "unknown_op");
        assert_eq!(v["message"], "nope \"quoted\"");
    }
}
