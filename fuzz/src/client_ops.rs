//! Client operations: `tickcast::protocol::parse_op` on a text message, then what the shard
//! does with an accepted one (topic checks, chat commands on a publish's `data`).
//!
//! Checked:
//! - a refusal carries `invalid_json`, `invalid_message` or `unknown_op`, and a short message
//!   (an error frame is never an echo of the client's input);
//! - an accepted operation encodes back to JSON that parses to the same operation, and a
//!   publish's `data` is relayed byte for byte as valid JSON;
//! - topic names go through the shard's own check; chat commands through [`crate::chat`].

use tickcast::protocol::{ClientOp, ErrorCode, parse_op, validate_topic};

/// Longest error message a refused operation may carry back.
pub use tickcast::protocol::MAX_ERROR_MESSAGE;

/// Parses `data` (when UTF-8, as the frame parser guarantees for text) as an operation.
pub fn check(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let op = match parse_op(text) {
        Ok(op) => op,
        Err(e) => {
            assert!(
                matches!(
                    e.code,
                    ErrorCode::InvalidJson | ErrorCode::InvalidMessage | ErrorCode::UnknownOp
                ),
                "{e:?}"
            );
            assert!(e.message.len() <= MAX_ERROR_MESSAGE, "{}", e.message.len());
            return;
        }
    };
    let again = parse_op(&encode(&op)).expect("an encoded operation parses");
    assert_eq!(again, op);
    match &op {
        ClientOp::Subscribe(topics) | ClientOp::Unsubscribe(topics) => {
            for t in topics {
                let _ = validate_topic(t);
            }
        }
        ClientOp::Publish { topic, data } => {
            let _ = validate_topic(topic);
            let raw = data.get();
            assert!(serde_json::from_str::<serde_json::Value>(raw).is_ok());
            crate::chat::check(raw.as_bytes());
        }
        ClientOp::Resume(since) => {
            for (t, _) in since {
                let _ = validate_topic(t);
            }
        }
    }
}

/// The JSON a client would send for `op` (public for the property tests).
pub fn encode(op: &ClientOp) -> String {
    use serde_json::json;
    match op {
        ClientOp::Subscribe(t) => json!({"op": "subscribe", "topics": t}).to_string(),
        ClientOp::Unsubscribe(t) => json!({"op": "unsubscribe", "topics": t}).to_string(),
        ClientOp::Publish { topic, data } => {
            format!(
                r#"{{"op":"publish","topic":{},"data":{}}}"#,
                serde_json::Value::String(topic.clone()),
                data.get()
            )
        }
        ClientOp::Resume(since) => {
            let map: serde_json::Map<String, serde_json::Value> =
                since.iter().map(|(t, s)| (t.clone(), json!(s))).collect();
            json!({"op": "resume", "since": map}).to_string()
        }
    }
}
