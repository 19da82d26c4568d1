//! Version 1 (text): each valid line, the malformed ones, line endings and length, how early
//! a line that cannot become valid is refused, and the address-prefix check behind that.

use super::super::*;
use super::{assert_header, invalid, sock};

// --- v1 valid ------------------------------------------------------------------------------

#[test]
fn v1_tcp4() {
    assert_header(
        b"PROXY TCP4 192.0.2.1 198.51.100.2 56324 443\r\n",
        sock("192.0.2.1:56324"),
    );
    assert_header(b"PROXY TCP4 0.0.0.0 0.0.0.0 0 0\r\n", sock("0.0.0.0:0"));
    assert_header(
        b"PROXY TCP4 255.255.255.255 255.255.255.255 65535 65535\r\n",
        sock("255.255.255.255:65535"),
    );
}

#[test]
fn v1_tcp6() {
    assert_header(
        b"PROXY TCP6 2001:db8::1 2001:db8::2 4711 443\r\n",
        sock("[2001:db8::1]:4711"),
    );
    assert_header(
        b"PROXY TCP6 ::ffff:192.0.2.1 ::1 1 2\r\n",
        // The IPv4 client it maps: the same key as a TCP4 header for it.
        sock("192.0.2.1:1"),
    );
    assert_header(
        b"PROXY TCP6 2001:DB8:0:0:0:0:0:1 :: 80 8080\r\n",
        sock("[2001:db8::1]:80"),
    );
    // The specification's longest TCP6 line (104 bytes).
    let longest = b"PROXY TCP6 ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff \
                    ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff 65535 65535\r\n";
    assert_eq!(longest.len(), 104);
    assert_header(
        longest,
        sock("[ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff]:65535"),
    );
}

#[test]
fn v1_unknown() {
    assert_header(b"PROXY UNKNOWN\r\n", None);
    assert_header(b"PROXY UNKNOWN 1.2.3.4 whatever \x01\xff\r\n", None);
    // Exactly the limit: 107 bytes with the CRLF.
    let mut line = b"PROXY UNKNOWN ".to_vec();
    line.resize(MAX_V1_HEADER - 2, b'x');
    line.extend_from_slice(b"\r\n");
    assert_eq!(line.len(), MAX_V1_HEADER);
    assert_header(&line, None);
}

// --- v1 invalid ----------------------------------------------------------------------------

#[test]
fn not_a_proxy_header_is_refused_on_its_first_byte() {
    for first in [b'G', 0x16, 0, b' ', b'p', b'\n', 0xff] {
        assert_eq!(invalid(&[first]), "no PROXY header", "{first:#x}");
    }
    assert_eq!(invalid(b"PO"), "no PROXY header");
    assert_eq!(invalid(b"PUT / HTTP/1.1\r\n"), "no PROXY header");
    assert_eq!(invalid(b"PROXY\r\n"), "no PROXY header");
    assert_eq!(invalid(b"PROXYTCP4"), "no PROXY header");
    assert_eq!(parse(b"PROXY"), Parsed::Incomplete);
}

#[test]
fn v1_malformed_lines() {
    let cases: [(&[u8], &str); 24] = [
        (
            b"PROXY  TCP4 1.2.3.4 5.6.7.8 1 2\r\n",
            "v1 unknown protocol",
        ),
        (b"PROXY tcp4 1.2.3.4 5.6.7.8 1 2\r\n", "v1 unknown protocol"),
        (b"PROXY TCP5 1.2.3.4 5.6.7.8 1 2\r\n", "v1 unknown protocol"),
        (b"PROXY UDP4 1.2.3.4 5.6.7.8 1 2\r\n", "v1 unknown protocol"),
        (b"PROXY UNKNOWNX\r\n", "v1 unknown protocol"),
        (b"PROXY TCP4\r\n", "v1 addresses missing"),
        (b"PROXY TCP4 1.2.3.4 5.6.7.8 1\r\n", "v1 fields missing"),
        (
            b"PROXY TCP4 1.2.3.4  5.6.7.8 1 2\r\n",
            "v1 bad destination address",
        ),
        (b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2 \r\n", "v1 too many fields"),
        (
            b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2 3\r\n",
            "v1 too many fields",
        ),
        (
            b"PROXY TCP4 1.2.3.4\t5.6.7.8 1 2\r\n",
            "v1 bad source address",
        ),
        (b"PROXY TCP4 ::1 5.6.7.8 1 2\r\n", "v1 bad source address"),
        (b"PROXY TCP6 1.2.3.4 ::1 1 2\r\n", "v1 bad source address"),
        (
            b"PROXY TCP6 ::1 5.6.7.8 1 2\r\n",
            "v1 bad destination address",
        ),
        (
            b"PROXY TCP4 256.2.3.4 5.6.7.8 1 2\r\n",
            "v1 bad source address",
        ),
        (
            b"PROXY TCP4 01.2.3.4 5.6.7.8 1 2\r\n",
            "v1 bad source address",
        ),
        (b"PROXY TCP4 1.2.3 5.6.7.8 1 2\r\n", "v1 bad source address"),
        (b"PROXY TCP6 [::1] ::2 1 2\r\n", "v1 bad source address"),
        (
            b"PROXY TCP6 fe80::1%eth0 ::2 1 2\r\n",
            "v1 bad source address",
        ),
        (
            b"PROXY TCP4 1.2.3.4 5.6.7.8 65536 2\r\n",
            "v1 bad source port",
        ),
        (
            b"PROXY TCP4 1.2.3.4 5.6.7.8 +80 2\r\n",
            "v1 bad source port",
        ),
        (
            b"PROXY TCP4 1.2.3.4 5.6.7.8 080 2\r\n",
            "v1 bad source port",
        ),
        (
            b"PROXY TCP4 1.2.3.4 5.6.7.8 1 -2\r\n",
            "v1 bad destination port",
        ),
        (
            b"PROXY TCP4 1.2.3.4 5.6.7.8 1 99999\r\n",
            "v1 bad destination port",
        ),
    ];
    for (line, reason) in cases {
        assert_eq!(invalid(line), reason, "{:?}", String::from_utf8_lossy(line));
    }
}

#[test]
fn v1_line_endings() {
    assert_eq!(
        invalid(b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2\n"),
        "v1 line feed without carriage return"
    );
    assert_eq!(
        invalid(b"PROXY UNKNOWN\n"),
        "v1 line feed without carriage return"
    );
    assert_eq!(
        invalid(b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2\rX"),
        "v1 carriage return without line feed"
    );
    assert_eq!(
        invalid(b"PROXY UNKNOWN \r\r\n"),
        "v1 carriage return without line feed"
    );
    // A CR where the line cannot end is refused before its LF arrives.
    assert_eq!(
        parse(b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2\r"),
        Parsed::Incomplete
    );
    assert_eq!(
        invalid(b"PROXY TCP4 1.2.3.4 5.6.7.8 1\r"),
        "v1 fields missing"
    );
    assert_eq!(invalid(b"PROXY TCP\r"), "v1 unknown protocol");
}

#[test]
fn v1_too_long() {
    // No CRLF in the first 107 bytes: refused at the 107th, not before.
    let mut line = b"PROXY UNKNOWN ".to_vec();
    line.resize(MAX_V1_HEADER - 1, b'x');
    assert_eq!(parse(&line), Parsed::Incomplete);
    line.push(b'x');
    assert_eq!(invalid(&line), "v1 header too long");
    line.extend_from_slice(b"\r\n");
    assert_eq!(invalid(&line), "v1 header too long");
    // The CR is the 107th byte: the header would be 108.
    let mut line = b"PROXY UNKNOWN ".to_vec();
    line.resize(MAX_V1_HEADER - 1, b'x');
    line.push(b'\r');
    assert_eq!(invalid(&line), "v1 header too long");
    line.push(b'\n');
    assert_eq!(invalid(&line), "v1 header too long");
}

#[test]
fn v1_refused_as_soon_as_it_cannot_become_valid() {
    let cases: [(&[u8], &str); 14] = [
        (b"PROXY X", "v1 unknown protocol"),
        (b"PROXY TCP7", "v1 unknown protocol"),
        (b"PROXY TCP4X", "v1 unknown protocol"),
        (b"PROXY  ", "v1 unknown protocol"),
        (b"PROXY TCP4  ", "v1 bad source address"),
        (b"PROXY TCP4 256", "v1 bad source address"),
        (b"PROXY TCP4 1.2.3.4.", "v1 bad source address"),
        (b"PROXY TCP4 1:", "v1 bad source address"),
        (b"PROXY TCP4 00", "v1 bad source address"),
        (b"PROXY TCP6 1.2", "v1 bad source address"),
        (b"PROXY TCP6 :::", "v1 bad source address"),
        (b"PROXY TCP6 12345", "v1 bad source address"),
        (b"PROXY TCP4 1.2.3.4 5.6.7.8 65536", "v1 bad source port"),
        (b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2 ", "v1 too many fields"),
    ];
    for (partial, reason) in cases {
        assert_eq!(
            invalid(partial),
            reason,
            "{:?}",
            String::from_utf8_lossy(partial)
        );
    }
    for viable in [
        &b"PROXY TCP4 1"[..],
        b"PROXY TCP4 1.2.3.",
        b"PROXY TCP6 ::ffff:1.2.",
        b"PROXY TCP6 1:2:3:4:5:6:7",
        b"PROXY UNK",
        b"PROXY TCP4 1.2.3.4 5.6.7.8 6553",
    ] {
        assert_eq!(
            parse(viable),
            Parsed::Incomplete,
            "{:?}",
            String::from_utf8_lossy(viable)
        );
    }
}

/// Every prefix of an address is accepted as a start, whatever its form.
#[test]
fn address_prefixes_of_valid_addresses() {
    let v6 = [
        "::",
        "::1",
        "1::",
        "1:2:3:4:5:6:7:8",
        "1:2:3:4:5:6:7::",
        "::2:3:4:5:6:7:8",
        "1:2:3:4:5:6:1.2.3.4",
        "::ffff:255.255.255.255",
        "::1.2.3.4",
        "1::1.2.3.4",
        "fe80::abcd:ef01",
        "FFFF:ffff:ffff:ffff:ffff:ffff:255.255.255.255",
        "0000:0000:0000:0000:0000:0000:0000:0000",
    ];
    for a in v6 {
        assert!(address(a.as_bytes(), Family::V6).is_some(), "{a}");
        for n in 0..=a.len() {
            assert!(
                address_prefix(&a.as_bytes()[..n], Family::V6),
                "{a} [..{n}]"
            );
        }
    }
    for a in ["0.0.0.0", "255.255.255.255", "10.0.0.1", "192.168.100.200"] {
        for n in 0..=a.len() {
            assert!(
                address_prefix(&a.as_bytes()[..n], Family::V4),
                "{a} [..{n}]"
            );
        }
    }
}

/// Whether some completion of up to `depth` characters over `alphabet` makes `text` whole.
fn completes(text: &mut Vec<u8>, family: Family, alphabet: &[u8], depth: usize) -> bool {
    if address(text, family).is_some() {
        return true;
    }
    if depth == 0 {
        return false;
    }
    alphabet.iter().any(|&c| {
        text.push(c);
        let ok = completes(text, family, alphabet, depth - 1);
        text.pop();
        ok
    })
}

/// All strings over `alphabet` up to `len` characters.
fn strings(alphabet: &[u8], len: usize) -> Vec<Vec<u8>> {
    let mut all = vec![Vec::new()];
    let mut last = vec![Vec::new()];
    for _ in 0..len {
        last = last
            .iter()
            .flat_map(|s| {
                alphabet.iter().map(move |&c| {
                    let mut t: Vec<u8> = s.clone();
                    t.push(c);
                    t
                })
            })
            .collect();
        all.extend(last.iter().cloned());
    }
    all
}

/// The few completions `address_prefix` tries agree with a search over all short ones.
#[test]
fn address_prefix_agrees_with_a_search() {
    for text in strings(b"10:.", 6) {
        let expected = completes(&mut text.clone(), Family::V6, b"0:.", 6);
        let got = address_prefix(&text, Family::V6);
        assert_eq!(got, expected, "{:?}", String::from_utf8_lossy(&text));
    }
    for text in strings(b"025.", 6) {
        let expected = completes(&mut text.clone(), Family::V4, b"0.", 7);
        let got = address_prefix(&text, Family::V4);
        assert_eq!(got, expected, "{:?}", String::from_utf8_lossy(&text));
    }
}

#[test]
fn ports() {
    for (text, value) in [("0", Some(0)), ("1", Some(1)), ("65535", Some(65535))] {
        assert_eq!(port(text.as_bytes()), value, "{text}");
    }
    for text in [
        "", "65536", "00", "01", "+1", "-1", "1a", "123456", " 1", "９",
    ] {
        assert_eq!(port(text.as_bytes()), None, "{text}");
    }
}
