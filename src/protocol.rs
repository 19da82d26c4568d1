//! The JSON protocol spoken on `/ws`: client operations, server replies and error codes.
//!
//! Broadcast messages (`{"topic","seq","ts","data"}`) are built by the mixer; this module
//! covers what is said to one connection: the welcome, acknowledgements and error frames, and
//! the parsing of client operations into precise error codes. Every code listed in
//! [`ErrorCode`] is documented in the README's protocol section.

use serde::{Deserialize, Serialize};

use crate::frame::{self, FrameBytes};

/// Longest topic name, in bytes.
pub const MAX_TOPIC_LEN: usize = 128;

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
}

impl ErrorCode {
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
    /// An error with `code` and `message`.
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        ClientError {
            code,
            message: message.into(),
        }
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

/// A parsed client operation.
#[derive(Debug, PartialEq, Eq)]
pub enum ClientOp {
    /// Add topics to this connection's subscriptions.
    Subscribe(Vec<String>),
    /// Remove topics from this connection's subscriptions.
    Unsubscribe(Vec<String>),
}

/// The fields an operation may carry; which are required depends on `op`.
#[derive(Deserialize)]
struct RawOp<'a> {
    #[serde(borrow)]
    op: Option<&'a str>,
    topics: Option<Vec<String>>,
}

/// Parses one text message into an operation, with a precise error code when it is not one.
pub fn parse_op(text: &str) -> Result<ClientOp, ClientError> {
    let raw: RawOp<'_> = serde_json::from_str(text).map_err(|e| {
        let code = if e.is_data() {
            ErrorCode::InvalidMessage
        } else {
            ErrorCode::InvalidJson
        };
        ClientError::new(code, e.to_string())
    })?;
    let topics = |raw: RawOp<'_>| {
        raw.topics
            .ok_or_else(|| ClientError::new(ErrorCode::InvalidMessage, "missing `topics`"))
    };
    match raw.op {
        Some("subscribe") => Ok(ClientOp::Subscribe(topics(raw)?)),
        Some("unsubscribe") => Ok(ClientOp::Unsubscribe(topics(raw)?)),
        Some(other) => Err(ClientError::new(
            ErrorCode::UnknownOp,
            format!("unknown op `{other}`"),
        )),
        None => Err(ClientError::new(ErrorCode::UnknownOp, "missing `op`")),
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

/// `{"type":"welcome","shard":N,"topics":[...]}`, the first frame of every `/ws` connection.
pub fn welcome_frame(shard: usize, topics: &[impl AsRef<str>]) -> FrameBytes {
    #[derive(Serialize)]
    struct Welcome<'a> {
        #[serde(rename = "type")]
        kind: &'static str,
        shard: usize,
        topics: Vec<&'a str>,
    }
    let topics = topics.iter().map(AsRef::as_ref).collect();
    json_frame(&Welcome {
        kind: "welcome",
        shard,
        topics,
    })
}

/// `{"type":"subscribed"|"unsubscribed","topics":[...]}`: the operation is in effect.
pub fn ack_frame(kind: &'static str, topics: &[impl AsRef<str>]) -> FrameBytes {
    #[derive(Serialize)]
    struct Ack<'a> {
        #[serde(rename = "type")]
        kind: &'static str,
        topics: Vec<&'a str>,
    }
    let topics = topics.iter().map(AsRef::as_ref).collect();
    json_frame(&Ack { kind, topics })
}

/// Serializes `value` into one text frame.
fn json_frame(value: &impl Serialize) -> FrameBytes {
    // Serializing these plain structs of strings and numbers into memory cannot fail.
    frame::text(&serde_json::to_string(value).expect("serializing a reply"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn code(text: &str) -> ErrorCode {
        parse_op(text).unwrap_err().code
    }

    #[test]
    fn parses_subscribe_and_unsubscribe() {
        assert_eq!(
            parse_op(r#"{"op":"subscribe","topics":["a","b"]}"#),
            Ok(ClientOp::Subscribe(vec!["a".into(), "b".into()]))
        );
        assert_eq!(
            parse_op(r#"{"topics":[],"op":"unsubscribe"}"#),
            Ok(ClientOp::Unsubscribe(vec![]))
        );
    }

    #[test]
    fn precise_error_codes() {
        assert_eq!(code("not json"), ErrorCode::InvalidJson);
        assert_eq!(code(r#"{"op":"subscribe""#), ErrorCode::InvalidJson);
        assert_eq!(code("[1,2]"), ErrorCode::InvalidMessage);
        assert_eq!(
            code(r#"{"op":"subscribe","topics":"ticks"}"#),
            ErrorCode::InvalidMessage
        );
        assert_eq!(code(r#"{"op":"subscribe"}"#), ErrorCode::InvalidMessage);
        assert_eq!(code(r#"{"op":"dance"}"#), ErrorCode::UnknownOp);
        assert_eq!(code(r#"{"topics":["a"]}"#), ErrorCode::UnknownOp);
    }

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
    fn error_frame_is_json_text() {
        let f = ClientError::new(ErrorCode::UnknownOp, "nope \"quoted\"").frame();
        assert_eq!(f[0], 0x81);
        let v: serde_json::Value = serde_json::from_slice(&f[2..]).unwrap();
        assert_eq!(v["type"], "error");
        assert_eq!(v["code"], "unknown_op");
        assert_eq!(v["message"], "nope \"quoted\"");
    }
}
