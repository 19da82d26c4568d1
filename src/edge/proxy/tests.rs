//! The PROXY header parser's tests: every valid form, every prefix of one, the invalid forms
//! (and how early they are refused), and the bytes after a header left alone; `v1.rs` and
//! `v2.rs` hold each version's cases, this file what they share.

use super::*;

mod v1;
mod v2;

fn sock(text: &str) -> Option<SocketAddr> {
    Some(text.parse().unwrap())
}

/// `header` parses whole to `source`, every strict prefix is Incomplete, and bytes after it
/// are left for the caller.
fn assert_header(header: &[u8], source: Option<SocketAddr>) {
    let whole = Parsed::Header {
        source,
        used: header.len(),
    };
    assert_eq!(
        parse(header),
        whole,
        "{:?}",
        String::from_utf8_lossy(header)
    );
    for n in 0..header.len() {
        assert_eq!(
            parse(&header[..n]),
            Parsed::Incomplete,
            "prefix of {n} bytes of {:?}",
            String::from_utf8_lossy(header)
        );
    }
    for tail in [
        &b"GET / HTTP/1.1\r\n"[..],
        b"\x16\x03\x01\x02\x00\x01",
        b"\r\n",
        b"P",
    ] {
        let mut more = header.to_vec();
        more.extend_from_slice(tail);
        assert_eq!(parse(&more), whole, "followed by {tail:?}");
    }
}

fn invalid(buf: &[u8]) -> &'static str {
    match parse(buf) {
        Parsed::Invalid(reason) => reason,
        other => panic!("{:?}: {other:?}", String::from_utf8_lossy(buf)),
    }
}
#[test]
fn empty_input_waits() {
    assert_eq!(parse(b""), Parsed::Incomplete);
    assert_eq!(parse(b"\r"), Parsed::Incomplete);
    assert_eq!(parse(b"P"), Parsed::Incomplete);
}
