//! Property tests (proptest) for the round trips a parser must honour: a client frame
//! encoded then parsed (whole or in fragments, any mask, any length form), a server frame
//! encoded then read by a client, a client operation's JSON encoded then parsed, and a
//! `since` value formatted then parsed. The fuzz targets (`fuzz/`) look for inputs that
//! break a parser; these check that every valid input comes back as it went in.

use proptest::prelude::*;
use tickcast::conn::{Assembler, Event, Flow, unmask_in_place};
use tickcast::load::wire;
use tickcast::protocol::{ClientOp, parse_op, parse_since};
use tungstenite::protocol::frame::FrameHeader;
use tungstenite::protocol::frame::coding::{Data, OpCode};

/// `--max-message` for the frame properties (large enough for 64-bit lengths).
const MAX: usize = 70_000;

/// A masked client frame with `fin`, `opcode` and `payload`.
fn client_frame(fin: bool, opcode: OpCode, payload: &[u8], mask: [u8; 4]) -> Vec<u8> {
    let header = FrameHeader {
        is_final: fin,
        rsv1: false,
        rsv2: false,
        rsv3: false,
        opcode,
        mask: Some(mask),
    };
    let mut out = Vec::new();
    header
        .format(payload.len() as u64, &mut out)
        .expect("to a Vec");
    let start = out.len();
    out.extend_from_slice(payload);
    unmask_in_place(&mut out[start..], mask);
    out
}

/// Feeds `bytes` in reads of `step` bytes, as a connection does; returns the messages.
fn parse_all(bytes: &[u8], step: usize) -> Vec<(bool, Vec<u8>)> {
    let mut asm = Assembler::default();
    let mut got = Vec::new();
    let mut kept = Vec::new();
    for chunk in bytes.chunks(step.max(1)) {
        kept.extend_from_slice(chunk);
        let used = asm
            .feed(&mut kept, MAX, |ev| {
                match ev {
                    Event::Text(t) => got.push((true, t.as_bytes().to_vec())),
                    Event::Binary(b) => got.push((false, b.to_vec())),
                    other => panic!("unexpected {other:?}"),
                }
                Flow::Continue
            })
            .expect("a valid stream");
        kept.drain(..used);
    }
    assert!(kept.is_empty(), "{} bytes left over", kept.len());
    got
}

fn json_value() -> impl Strategy<Value = serde_json::Value> {
    use serde_json::Value;
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<f64>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(Value::from),
        any::<String>().prop_map(Value::String),
    ];
    leaf.prop_recursive(3, 24, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::btree_map(any::<String>(), inner, 0..6)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

fn topic() -> impl Strategy<Value = String> {
    "[A-Za-z0-9._:/-]{1,40}"
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// Text or binary, in one frame or several, any mask, read in any step: the message
    /// comes back whole and unchanged.
    #[test]
    fn client_frames_round_trip(
        payload in prop::collection::vec(any::<u8>(), 0..MAX),
        text in any::<bool>(),
        pieces in 1usize..5,
        mask in any::<[u8; 4]>(),
        step in 1usize..9000,
    ) {
        let payload = if text {
            // Invalid bytes become 3-byte replacement characters: cut back under MAX at a
            // character boundary (rejecting instead would exhaust proptest's reject budget).
            let mut s = String::from_utf8_lossy(&payload).into_owned();
            let mut end = s.len().min(MAX);
            while !s.is_char_boundary(end) {
                end -= 1;
            }
            s.truncate(end);
            s.into_bytes()
        } else {
            payload
        };
        let first = if text { Data::Text } else { Data::Binary };
        let size = payload.len().div_ceil(pieces).max(1);
        let parts: Vec<&[u8]> = if payload.is_empty() { vec![&[][..]] } else { payload.chunks(size).collect() };
        let mut stream = Vec::new();
        for (i, part) in parts.iter().enumerate() {
            let opcode = if i == 0 { OpCode::Data(first) } else { OpCode::Data(Data::Continue) };
            stream.extend(client_frame(i + 1 == parts.len(), opcode, part, mask));
        }
        let got = parse_all(&stream, step);
        prop_assert_eq!(got, vec![(text, payload)]);
    }

    /// A server frame in every length form reads back with its payload.
    #[test]
    fn server_frames_round_trip(payload in prop::collection::vec(any::<u8>(), 0..MAX), binary in any::<bool>()) {
        let frame = if binary {
            tickcast::frame::binary(&payload)
        } else {
            tickcast::frame::encode(OpCode::Data(Data::Text), &payload)
        };
        let info = wire::parse_header(&frame, MAX).expect("valid").expect("complete");
        prop_assert!(info.fin);
        prop_assert_eq!(info.total_len(), frame.len());
        prop_assert_eq!(&frame[info.header_len..], &payload[..]);
    }

    /// An operation encoded as a client would send it parses back to the same operation.
    #[test]
    fn ops_round_trip(
        kind in 0u8..4,
        topics in prop::collection::vec(topic(), 0..5),
        data in json_value(),
        seqs in prop::collection::btree_map(topic(), any::<u64>(), 0..5),
    ) {
        let (text, want) = match kind {
            0 => (serde_json::json!({"op": "subscribe", "topics": topics}), ClientOp::Subscribe(topics.clone())),
            1 => (serde_json::json!({"op": "unsubscribe", "topics": topics}), ClientOp::Unsubscribe(topics.clone())),
            2 => {
                let raw = serde_json::value::to_raw_value(&data).expect("serializable");
                let topic = topics.first().cloned().unwrap_or_else(|| "room.a".into());
                (serde_json::json!({"op": "publish", "topic": topic, "data": data}), ClientOp::Publish { topic, data: raw })
            }
            _ => (serde_json::json!({"op": "resume", "since": seqs}), ClientOp::Resume(seqs.clone().into_iter().collect())),
        };
        let got = parse_op(&text.to_string());
        prop_assert_eq!(got.as_ref().ok(), Some(&want), "{}", text);
    }

    /// `since` formatted as a client writes it parses back to the same list.
    #[test]
    fn since_round_trips(items in prop::collection::vec((topic(), any::<u64>()), 0..8)) {
        let value: Vec<String> = items.iter().map(|(t, s)| format!("{t}:{s}")).collect();
        prop_assert_eq!(parse_since(&value.join(",")).expect("valid"), items);
    }
}
