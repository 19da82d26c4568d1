//! The wire form of a broadcast message (`{"topic","seq","ts","from"?,"nick"?,"kind"?,"data"}`)
//! and its serialization, straight into the mixer's frame buffer: the mixer's per-message
//! work.

use serde::Serialize;
use serde_json::value::RawValue;

use crate::frame::{FrameBuilder, FrameBytes};
use crate::messages::Publish;

/// Serializes one broadcast message (`{"topic","seq","ts","from"?,"data"}`) straight into
/// `builder` and returns it as a complete text frame: the mixer's per-message work, public
/// for the benchmarks.
pub fn frame_envelope(
    builder: &mut FrameBuilder,
    topic: &str,
    seq: u64,
    ts: u64,
    from: Option<&str>,
    data: &RawValue,
) -> FrameBytes {
    let envelope = Envelope {
        topic,
        seq,
        ts,
        from,
        nick: None,
        kind: None,
        data,
    };
    encode(builder, &envelope)
}

pub(super) fn encode(builder: &mut FrameBuilder, envelope: &Envelope<'_>) -> FrameBytes {
    // Serializing strings, integers and pre-validated raw JSON into memory cannot fail.
    serde_json::to_writer(builder.payload(), envelope).expect("serialize envelope");
    // A raw newline can only come from a client's `data` (relayed as it came), and only
    // between tokens: JSON strings cannot hold one unescaped. As a space it means the same,
    // and no message holds a newline, so `?batch=1` clients can split batches on them.
    let written = builder.written_mut();
    if memchr::memchr(b'\n', written).is_some() {
        written
            .iter_mut()
            .filter(|b| **b == b'\n')
            .for_each(|b| *b = b' ');
    }
    builder.finish_text()
}

/// The wire form of a broadcast message.
#[derive(Serialize)]
pub(super) struct Envelope<'a> {
    topic: &'a str,
    seq: u64,
    ts: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    from: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    nick: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    kind: Option<&'static str>,
    data: &'a RawValue,
}

impl<'a> Envelope<'a> {
    /// The envelope of `p` on `topic` at `seq`, stamped `ts`.
    pub(super) fn of(p: &'a Publish, topic: &'a str, seq: u64, ts: u64) -> Self {
        Envelope {
            topic,
            seq,
            ts,
            from: p.from.as_deref(),
            nick: p.nick.as_deref(),
            kind: p.kind,
            data: &p.data,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_message_holds_a_newline() {
        let data = RawValue::from_string("{\"a\":\n1,\r\n\"b\":\"x\\ny\"}".into()).unwrap();
        let frame = frame_envelope(&mut FrameBuilder::new(), "t", 1, 2, None, &data);
        let text = std::str::from_utf8(crate::frame::payload_of(&frame)).unwrap();
        assert!(!text.contains('\n'), "{text}");
        let v: serde_json::Value = serde_json::from_str(text).unwrap();
        assert_eq!(v["data"], serde_json::json!({"a": 1, "b": "x\ny"}));
    }
}
