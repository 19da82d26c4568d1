//! The frame parser's tests: framing rules, reassembly, close frames, and compressed
//! messages.

use super::*;

/// Encodes a masked client frame like a browser would.
pub(crate) fn client_frame(first: u8, payload: &[u8], mask: Option<[u8; 4]>) -> Vec<u8> {
    let mut out = vec![first];
    let mask_bit = if mask.is_some() { 0x80 } else { 0 };
    match payload.len() {
        n if n < 126 => out.push(mask_bit | n as u8),
        n if n < 65536 => {
            out.push(mask_bit | 126);
            out.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            out.push(mask_bit | 127);
            out.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    let mut body = payload.to_vec();
    if let Some(m) = mask {
        out.extend_from_slice(&m);
        for (i, b) in body.iter_mut().enumerate() {
            *b ^= m[i % 4];
        }
    }
    out.extend_from_slice(&body);
    out
}

const M: Option<[u8; 4]> = Some([0x11, 0x22, 0x33, 0x44]);

#[derive(Debug, PartialEq)]
enum Owned {
    Text(String),
    Binary(Vec<u8>),
    Ping(Vec<u8>),
    Pong,
    Close(u16, String),
}

fn run(bytes: &[u8], max: usize) -> (Result<usize, Violation>, Vec<Owned>) {
    let mut asm = Assembler::default();
    let mut buf = bytes.to_vec();
    let mut seen = Vec::new();
    let res = asm.feed(&mut buf, max, |ev| {
        seen.push(match ev {
            Event::Text(t) => Owned::Text(t.into()),
            Event::Binary(b) => Owned::Binary(b.into()),
            Event::Ping(p) => Owned::Ping(p.into()),
            Event::Pong => Owned::Pong,
            Event::Close(c, r) => Owned::Close(c, r.into()),
        });
        Flow::Continue
    });
    (res, seen)
}

#[test]
fn masked_text_is_unmasked_and_delivered() {
    let f = client_frame(0x81, b"hello world, a longer text", M);
    let (res, seen) = run(&f, 1024);
    assert_eq!(res, Ok(f.len()));
    assert_eq!(seen, vec![Owned::Text("hello world, a longer text".into())]);
}

#[test]
fn unmask_matches_bytewise_for_every_length() {
    for len in 0..40 {
        let data: Vec<u8> = (0..len as u8).collect();
        let mask = [1, 2, 3, 250];
        let mut fast = data.clone();
        unmask_in_place(&mut fast, mask);
        let slow: Vec<u8> = data
            .iter()
            .enumerate()
            .map(|(i, b)| b ^ mask[i % 4])
            .collect();
        assert_eq!(fast, slow);
    }
}

#[test]
fn partial_frames_consume_nothing_until_complete() {
    let f = client_frame(0x82, &[7u8; 300], M);
    for cut in [1, 2, 4, 8, 100, f.len() - 1] {
        let (res, seen) = run(&f[..cut], 1024);
        assert_eq!(res, Ok(0), "cut at {cut}");
        assert!(seen.is_empty());
    }
}

#[test]
fn unmasked_frame_is_a_protocol_error() {
    let f = client_frame(0x81, b"hi", None);
    assert_eq!(run(&f, 1024).0.unwrap_err().close_code(), 1002);
}

#[test]
fn reserved_bits_and_opcodes_are_protocol_errors() {
    for first in [0xC1u8, 0xA1, 0x91, 0x83, 0x8B] {
        let f = client_frame(first, b"x", M);
        assert_eq!(
            run(&f, 1024).0.unwrap_err().close_code(),
            1002,
            "{first:#x}"
        );
    }
}

#[test]
fn bad_control_frames() {
    let long_ping = client_frame(0x89, &[0u8; 126], M);
    assert_eq!(run(&long_ping, 1024).0.unwrap_err().close_code(), 1002);
    let fragmented_ping = client_frame(0x09, b"x", M);
    assert_eq!(
        run(&fragmented_ping, 1024).0.unwrap_err().close_code(),
        1002
    );
    let one_byte_close = client_frame(0x88, &[3], M);
    assert_eq!(run(&one_byte_close, 1024).0.unwrap_err().close_code(), 1002);
    let bad_code = client_frame(0x88, &1005u16.to_be_bytes(), M);
    assert_eq!(run(&bad_code, 1024).0.unwrap_err().close_code(), 1002);
}

#[test]
fn invalid_utf8_is_1007() {
    let f = client_frame(0x81, &[0xff, 0xfe], M);
    assert_eq!(run(&f, 1024).0.unwrap_err().close_code(), 1007);
    // Split in the middle of a valid multi-byte char across fragments: still fine.
    let text = "héllo".as_bytes();
    let mut two = client_frame(0x01, &text[..2], M);
    two.extend(client_frame(0x80, &text[2..], M));
    assert_eq!(run(&two, 1024).1, vec![Owned::Text("héllo".into())]);
}

#[test]
fn oversized_messages_are_refused_from_the_header() {
    // Only the header of a 1 MB frame: refused without waiting for the payload.
    let f = client_frame(0x82, &vec![0u8; 1 << 20], M);
    assert_eq!(run(&f[..14], 1000).0.unwrap_err().close_code(), 1009);
    // Fragments that add up past the limit.
    let mut frags = client_frame(0x02, &[1u8; 600], M);
    frags.extend(client_frame(0x80, &[1u8; 600], M));
    assert_eq!(run(&frags, 1000).0.unwrap_err().close_code(), 1009);
}

/// A masked frame whose length is written with `field` (126 or 127) and `len` as given.
fn long_form(first: u8, field: u8, len: u64, payload: &[u8]) -> Vec<u8> {
    let mut f = vec![first, 0x80 | field];
    match field {
        126 => f.extend_from_slice(&(len as u16).to_be_bytes()),
        _ => f.extend_from_slice(&len.to_be_bytes()),
    }
    let m = M.unwrap();
    f.extend_from_slice(&m);
    f.extend(payload.iter().enumerate().map(|(i, b)| b ^ m[i % 4]));
    f
}

#[test]
fn lengths_must_be_minimally_encoded() {
    for (first, field, len) in [(0x81, 126, 5), (0x82, 126, 125), (0x82, 127, 65535)] {
        let f = long_form(first, field, len as u64, &vec![b'a'; len]);
        assert_eq!(run(&f, 1 << 20).0.unwrap_err().close_code(), 1002);
        // Refused from the header (mask included), before the payload arrives.
        let header = if field == 126 { 8 } else { 14 };
        assert_eq!(run(&f[..header], 1 << 20).0.unwrap_err().close_code(), 1002);
    }
    let ping = long_form(0x89, 126, 1, b"p");
    assert_eq!(run(&ping, 1024).0.unwrap_err().close_code(), 1002);
    // The smallest length of each form is fine.
    for (field, len) in [(126u8, 126usize), (127, 65536)] {
        let f = long_form(0x82, field, len as u64, &vec![1; len]);
        assert_eq!(run(&f, 1 << 20).0, Ok(f.len()), "{field}/{len}");
    }
    // A 64-bit length with the top bit set is a framing error (1002) under any limit,
    // before its size is looked at.
    let top = long_form(0x82, 127, 1 << 63, b"");
    assert_eq!(run(&top, 1 << 20).0.unwrap_err().close_code(), 1002);
    assert_eq!(run(&top, usize::MAX).0.unwrap_err().close_code(), 1002);
}

#[test]
fn fragments_reassemble_with_interleaved_control_frames() {
    let mut bytes = client_frame(0x02, b"ab", M);
    bytes.extend(client_frame(0x89, b"p", M));
    bytes.extend(client_frame(0x00, b"cd", M));
    bytes.extend(client_frame(0x80, b"ef", M));
    let (res, seen) = run(&bytes, 1024);
    assert_eq!(res, Ok(bytes.len()));
    assert_eq!(
        seen,
        vec![
            Owned::Ping(b"p".to_vec()),
            Owned::Binary(b"abcdef".to_vec())
        ]
    );
}

#[test]
fn continuation_rules() {
    let stray = client_frame(0x80, b"x", M);
    assert_eq!(run(&stray, 1024).0.unwrap_err().close_code(), 1002);
    let mut nested = client_frame(0x01, b"a", M);
    nested.extend(client_frame(0x81, b"b", M));
    assert_eq!(run(&nested, 1024).0.unwrap_err().close_code(), 1002);
}

#[test]
fn close_and_pong_events() {
    let mut payload = 1000u16.to_be_bytes().to_vec();
    payload.extend_from_slice(b"bye");
    let mut bytes = client_frame(0x8A, b"", M);
    bytes.extend(client_frame(0x88, &payload, M));
    let (_, seen) = run(&bytes, 1024);
    assert_eq!(seen, vec![Owned::Pong, Owned::Close(1000, "bye".into())]);
    let (_, seen) = run(&client_frame(0x88, b"", M), 1024);
    assert_eq!(seen, vec![Owned::Close(1005, String::new())]);
}

#[test]
fn stop_leaves_the_rest_unconsumed() {
    let a = client_frame(0x81, b"a", M);
    let mut bytes = a.clone();
    bytes.extend(client_frame(0x81, b"b", M));
    let mut asm = Assembler::default();
    let used = asm.feed(&mut bytes, 1024, |_| Flow::Stop).unwrap();
    assert_eq!(used, a.len());
}

use crate::deflate::compress_like_a_client as deflated;

/// Feeds `bytes` to an assembler of a connection that negotiated deflate.
fn run_deflate(bytes: &[u8], max: usize) -> (Result<usize, Violation>, Vec<String>) {
    let mut asm = Assembler::default();
    let mut inflater = Inflater::new();
    let mut buf = bytes.to_vec();
    let mut seen = Vec::new();
    let res = asm.feed_inflating(&mut buf, max, Some(&mut inflater), |ev| {
        if let Event::Text(t) = ev {
            seen.push(t.to_string());
        }
        Flow::Continue
    });
    (res, seen)
}

#[test]
fn compressed_messages_are_inflated_whole_or_fragmented() {
    let text = "{\"op\":\"publish\",\"data\":\"".to_string() + &"ab".repeat(200) + "\"}";
    let z = deflated(text.as_bytes());
    // One frame: FIN + RSV1 + text.
    let mut bytes = client_frame(0xc1, &z, M);
    // Then a plain message: compression is per message.
    bytes.extend(client_frame(0x81, b"plain", M));
    // Then the compressed one in three fragments, RSV1 on the first only.
    let (a, rest) = z.split_at(z.len() / 3);
    let (b, c) = rest.split_at(rest.len() / 2);
    bytes.extend(client_frame(0x41, a, M));
    bytes.extend(client_frame(0x00, b, M));
    bytes.extend(client_frame(0x80, c, M));
    let (res, seen) = run_deflate(&bytes, 4096);
    assert_eq!(res, Ok(bytes.len()));
    assert_eq!(seen, [text.as_str(), "plain", text.as_str()]);
}

#[test]
fn rsv1_where_it_does_not_belong_is_a_protocol_error() {
    let z = deflated(b"hello");
    // Without deflate negotiated.
    assert_eq!(
        run(&client_frame(0xc1, &z, M), 1024).0,
        Err(Violation::Protocol("reserved bits set"))
    );
    // On a continuation frame.
    let mut bytes = client_frame(0x01, b"he", M);
    bytes.extend(client_frame(0xc0, b"llo", M));
    assert_eq!(
        run_deflate(&bytes, 1024).0,
        Err(Violation::Protocol("reserved bits set"))
    );
    // On a control frame.
    assert_eq!(
        run_deflate(&client_frame(0xc9, b"", M), 1024).0,
        Err(Violation::Protocol("reserved bits set"))
    );
}

#[test]
fn a_deflate_bomb_gets_1009_and_garbage_1007() {
    // 10 MiB of one byte, compressed to a few KiB: under the limit on the wire, far over it
    // once inflated.
    let bomb = deflated(&vec![b'a'; 10 << 20]);
    assert!(bomb.len() < 64 * 1024);
    let (res, seen) = run_deflate(&client_frame(0xc1, &bomb, M), 64 * 1024);
    assert_eq!(res, Err(Violation::InflatedTooBig));
    assert_eq!(Violation::InflatedTooBig.close_code(), 1009);
    assert!(seen.is_empty());
    let (res, _) = run_deflate(&client_frame(0xc1, b"\xff\xfe\xfd\xfc", M), 1024);
    assert_eq!(res, Err(Violation::BadCompression));
    assert_eq!(Violation::BadCompression.close_code(), 1007);
    // Inflated bytes that are not UTF-8 in a text message.
    let (res, _) = run_deflate(&client_frame(0xc1, &deflated(b"\xff\xfe"), M), 1024);
    assert_eq!(res, Err(Violation::InvalidUtf8));
}
