//! Parsing of client operations (`{"op":...}`) into [`ClientOp`], with a precise error code
//! for everything that is not a valid operation.

use std::borrow::Cow;
use std::collections::BTreeMap;

use serde::Deserialize;
use serde_json::value::RawValue;

use super::{ClientError, ErrorCode};

/// A parsed client operation.
#[derive(Debug)]
pub enum ClientOp {
    /// Add topics to this connection's subscriptions.
    Subscribe(Vec<String>),
    /// Remove topics from this connection's subscriptions.
    Unsubscribe(Vec<String>),
    /// Publish `data` (any JSON, relayed byte for byte) to a room.
    Publish {
        /// The room.
        topic: String,
        /// The message body, validated once here and never parsed again.
        data: Box<RawValue>,
    },
    /// Replay what followed each (topic, seq) from history, then continue live.
    Resume(Vec<(String, u64)>),
}

impl PartialEq for ClientOp {
    fn eq(&self, other: &Self) -> bool {
        match (self, other) {
            (ClientOp::Subscribe(a), ClientOp::Subscribe(b)) => a == b,
            (ClientOp::Unsubscribe(a), ClientOp::Unsubscribe(b)) => a == b,
            (
                ClientOp::Publish {
                    topic: t1,
                    data: d1,
                },
                ClientOp::Publish {
                    topic: t2,
                    data: d2,
                },
            ) => t1 == t2 && d1.get() == d2.get(),
            (ClientOp::Resume(a), ClientOp::Resume(b)) => a == b,
            _ => false,
        }
    }
}

/// The fields an operation may carry; which are required depends on `op`.
#[derive(Deserialize)]
struct RawOp<'a> {
    #[serde(borrow)]
    op: Option<Cow<'a, str>>,
    topics: Option<Vec<String>>,
    topic: Option<String>,
    /// `null` is data like any other: `Some`, unlike serde's default for `Option` (found by
    /// the round-trip property test: `"data":null` was refused as missing).
    #[serde(default, deserialize_with = "present")]
    data: Option<Box<RawValue>>,
    since: Option<BTreeMap<String, u64>>,
}

/// A field that is present, whatever its value (`null` included).
fn present<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Box<RawValue>>, D::Error> {
    Box::<RawValue>::deserialize(d).map(Some)
}

fn missing(field: &str) -> ClientError {
    ClientError::new(ErrorCode::InvalidMessage, format!("missing `{field}`"))
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
    match raw.op.as_deref() {
        Some("subscribe") => Ok(ClientOp::Subscribe(
            raw.topics.ok_or_else(|| missing("topics"))?,
        )),
        Some("unsubscribe") => Ok(ClientOp::Unsubscribe(
            raw.topics.ok_or_else(|| missing("topics"))?,
        )),
        Some("publish") => {
            let topic = raw.topic.ok_or_else(|| missing("topic"))?;
            let data = raw.data.ok_or_else(|| missing("data"))?;
            if let Err(e) = check_strict(data.get()) {
                return Err(ClientError::new(
                    ErrorCode::InvalidJson,
                    format!("`data` is not JSON every client can read: {e}"),
                ));
            }
            Ok(ClientOp::Publish { topic, data })
        }
        Some("resume") => Ok(ClientOp::Resume(
            raw.since
                .ok_or_else(|| missing("since"))?
                .into_iter()
                .collect(),
        )),
        Some(other) => {
            let shown: String = other.chars().take(32).collect();
            Err(ClientError::new(
                ErrorCode::UnknownOp,
                format!("unknown op `{shown}`"),
            ))
        }
        None => Err(ClientError::new(ErrorCode::UnknownOp, "missing `op`")),
    }
}

/// Reads `raw` (JSON that `RawValue` accepted) the way a strict client would, without
/// building it: every string unescaped, every number parsed.
///
/// `RawValue` checks the grammar but skips over string contents and number ranges, so
/// without this a publish could carry `"\\ude00"` (a lone surrogate) or `1e400` (no finite
/// double) byte for byte to every member, and every client whose parser refuses those
/// (serde_json, Go's encoding/json) would fail on the whole message. Found by the
/// `client_ops` fuzz target. One pass over `data`, with no allocation unless a string has
/// escapes (serde_json's scratch buffer).
fn check_strict(raw: &str) -> Result<(), serde_json::Error> {
    serde::de::Deserialize::deserialize(&mut serde_json::Deserializer::from_str(raw))
        .map(|Strict| ())
}

/// Any JSON value, read and thrown away (see [`check_strict`]).
struct Strict;

impl<'de> serde::de::Deserialize<'de> for Strict {
    fn deserialize<D: serde::de::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(StrictVisitor)
    }
}

struct StrictVisitor;

impl<'de> serde::de::Visitor<'de> for StrictVisitor {
    type Value = Strict;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("any JSON value")
    }
    fn visit_bool<E>(self, _: bool) -> Result<Strict, E> {
        Ok(Strict)
    }
    fn visit_i64<E>(self, _: i64) -> Result<Strict, E> {
        Ok(Strict)
    }
    fn visit_u64<E>(self, _: u64) -> Result<Strict, E> {
        Ok(Strict)
    }
    fn visit_f64<E>(self, _: f64) -> Result<Strict, E> {
        Ok(Strict)
    }
    fn visit_str<E>(self, _: &str) -> Result<Strict, E> {
        Ok(Strict)
    }
    fn visit_unit<E>(self) -> Result<Strict, E> {
        Ok(Strict)
    }
    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<Strict, A::Error> {
        while seq.next_element::<Strict>()?.is_some() {}
        Ok(Strict)
    }
    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<Strict, A::Error> {
        while map.next_entry::<Strict, Strict>()?.is_some() {}
        Ok(Strict)
    }
}

/// Parses a `since=topic:seq[,topic:seq]` query value. Topic names may contain `:`, so the
/// sequence number is what follows the last one.
pub fn parse_since(value: &str) -> Result<Vec<(String, u64)>, ClientError> {
    value
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|item| {
            let bad = || {
                ClientError::new(
                    ErrorCode::InvalidMessage,
                    format!("`since` wants topic:seq, got `{item}`"),
                )
            };
            let (topic, seq) = item.rsplit_once(':').ok_or_else(bad)?;
            let seq = seq.parse::<u64>().map_err(|_| bad())?;
            Ok((topic.to_string(), seq))
        })
        .collect()
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
        assert_eq!(
            code(r#"{"op":"publish","topic":"r"}"#),
            ErrorCode::InvalidMessage
        );
        assert_eq!(
            code(r#"{"op":"publish","data":1}"#),
            ErrorCode::InvalidMessage
        );
        assert_eq!(
            code(r#"{"op":"resume","since":{"a":-1}}"#),
            ErrorCode::InvalidMessage
        );
    }

    #[test]
    fn null_data_is_data_and_absent_data_is_missing() {
        let op = parse_op(r#"{"op":"publish","topic":"room.a","data":null}"#).unwrap();
        let ClientOp::Publish { data, .. } = op else {
            panic!("not a publish")
        };
        assert_eq!(data.get(), "null");
        assert_eq!(
            code(r#"{"op":"publish","topic":"room.a"}"#),
            ErrorCode::InvalidMessage
        );
    }

    #[test]
    fn publish_data_a_strict_parser_refuses_is_refused() {
        // Found by the `client_ops` fuzz target: RawValue let these through, serde_json
        // (and any strict client) then fails on the relayed message.
        for bad in [
            r#"[2, 42.1e4005]"#,
            r#"{"n":-1e309}"#,
            r#""\ude00""#,
            r#""\ud83d""#,
            r#""\ud83d x""#,
            r#"["\ud83d\u0041"]"#,
            r#"{"k":"\ud41d\ude00 \u0000"}"#,
        ] {
            let op = format!(r#"{{"op":"publish","topic":"r","data":{bad}}}"#);
            assert_eq!(code(&op), ErrorCode::InvalidJson, "{bad}");
            assert!(
                serde_json::from_str::<serde_json::Value>(bad).is_err(),
                "{bad}"
            );
        }
        for good in [
            r#""\ud83d\ude00 \u00e9 \\u \" \n""#,
            r#"{"\u0041":["\\ud800"]}"#,
        ] {
            let op = format!(r#"{{"op":"publish","topic":"r","data":{good}}}"#);
            assert!(parse_op(&op).is_ok(), "{good}");
            assert!(
                serde_json::from_str::<serde_json::Value>(good).is_ok(),
                "{good}"
            );
        }
    }

    #[test]
    fn publish_keeps_data_bytes_and_escaped_ops_work() {
        let op =
            parse_op(r#"{"op":"pub\u006cish","topic":"room.a","data":{"x": [1, 2]}}"#).unwrap();
        match op {
            ClientOp::Publish { topic, data } => {
                assert_eq!(topic, "room.a");
                assert_eq!(data.get(), r#"{"x": [1, 2]}"#);
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(
            parse_op(r#"{"op":"resume","since":{"ticks":5,"room:a":7}}"#).unwrap(),
            ClientOp::Resume(vec![("room:a".into(), 7), ("ticks".into(), 5)])
        );
    }

    #[test]
    fn since_query() {
        assert_eq!(
            parse_since("ticks:12, a:b:3").unwrap(),
            vec![("ticks".into(), 12), ("a:b".into(), 3)]
        );
        assert!(parse_since("ticks").is_err());
        assert!(parse_since("ticks:x").is_err());
    }
}
