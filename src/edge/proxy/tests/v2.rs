//! Version 2 (binary): each command and family, TLVs, the longest header, and the refusals
//! (signature, version, command, family, lengths, TLVs that do not fit).

use super::super::*;
use super::{assert_header, invalid, sock};

const SIG: &[u8] = b"\r\n\r\n\0\r\nQUIT\n";

/// A v2 header: signature, version/command, family, length, `body`.
fn v2(version_command: u8, family: u8, body: &[u8]) -> Vec<u8> {
    let mut out = SIG.to_vec();
    out.push(version_command);
    out.push(family);
    out.extend_from_slice(&(body.len() as u16).to_be_bytes());
    out.extend_from_slice(body);
    out
}

/// A TCP over IPv4 address block.
fn block4(src: [u8; 4], dst: [u8; 4], sport: u16, dport: u16) -> Vec<u8> {
    let mut out = src.to_vec();
    out.extend_from_slice(&dst);
    out.extend_from_slice(&sport.to_be_bytes());
    out.extend_from_slice(&dport.to_be_bytes());
    out
}

/// A TCP over IPv6 address block.
fn block6(src: Ipv6Addr, dst: Ipv6Addr, sport: u16, dport: u16) -> Vec<u8> {
    let mut out = src.octets().to_vec();
    out.extend_from_slice(&dst.octets());
    out.extend_from_slice(&sport.to_be_bytes());
    out.extend_from_slice(&dport.to_be_bytes());
    out
}

/// A TLV.
fn tlv(kind: u8, value: &[u8]) -> Vec<u8> {
    let mut out = vec![kind];
    out.extend_from_slice(&(value.len() as u16).to_be_bytes());
    out.extend_from_slice(value);
    out
}

// --- v2 valid ------------------------------------------------------------------------------

#[test]
fn v2_tcp4() {
    let body = block4([192, 0, 2, 1], [198, 51, 100, 2], 56324, 443);
    assert_header(&v2(0x21, 0x11, &body), sock("192.0.2.1:56324"));
    let mut with_tlvs = body.clone();
    with_tlvs.extend(tlv(0x01, b"http/1.1"));
    with_tlvs.extend(tlv(0x02, b"example.com"));
    with_tlvs.extend(tlv(0x04, &[0; 5]));
    with_tlvs.extend(tlv(0x20, &[]));
    assert_header(&v2(0x21, 0x11, &with_tlvs), sock("192.0.2.1:56324"));
}

#[test]
fn v2_tcp6() {
    let src: Ipv6Addr = "2001:db8::1".parse().unwrap();
    let dst: Ipv6Addr = "2001:db8::2".parse().unwrap();
    let body = block6(src, dst, 4711, 443);
    assert_header(&v2(0x21, 0x21, &body), sock("[2001:db8::1]:4711"));
    let mut with_tlvs = body;
    with_tlvs.extend(tlv(0x05, b"unique-id"));
    assert_header(&v2(0x21, 0x21, &with_tlvs), sock("[2001:db8::1]:4711"));
    // An IPv4-mapped source is the IPv4 client it maps.
    let mapped: Ipv6Addr = "::ffff:192.0.2.1".parse().unwrap();
    let body = block6(mapped, dst, 4711, 443);
    assert_header(&v2(0x21, 0x21, &body), sock("192.0.2.1:4711"));
}

#[test]
fn v2_local_unspec_unix() {
    // LOCAL: the block, family included, is skipped whatever it holds.
    assert_header(&v2(0x20, 0x00, &[]), None);
    assert_header(&v2(0x20, 0x11, &block4([1; 4], [2; 4], 3, 4)), None);
    assert_header(&v2(0x20, 0xff, &[1, 2, 3]), None);
    assert_header(&v2(0x20, 0x12, &[]), None);
    // PROXY over UNSPEC: no address, the block is ignored.
    assert_header(&v2(0x21, 0x00, &[]), None);
    assert_header(&v2(0x21, 0x00, &[9; 7]), None);
    // UNIX stream: 108 + 108 bytes of paths, no IP.
    let mut paths = vec![0u8; 216];
    paths[..9].copy_from_slice(b"/run/sock");
    assert_header(&v2(0x21, 0x31, &paths), None);
    paths.extend(tlv(0x01, b"h2"));
    assert_header(&v2(0x21, 0x31, &paths), None);
}

#[test]
fn v2_longest() {
    let mut body = block4([1; 4], [2; 4], 3, 4);
    body.extend(tlv(0x04, &vec![0; 1024 - 12 - 3]));
    let header = v2(0x21, 0x11, &body);
    assert_eq!(header.len(), MAX_V2_HEADER);
    assert_header(&header, sock("1.1.1.1:3"));
}

// --- v2 invalid ----------------------------------------------------------------------------

#[test]
fn v2_signature_refused_at_the_first_wrong_byte() {
    let header = v2(0x21, 0x11, &block4([1; 4], [2; 4], 3, 4));
    for i in 1..SIG.len() {
        let mut bad = header[..=i].to_vec();
        bad[i] ^= 0x40;
        assert_eq!(invalid(&bad), "no PROXY header", "byte {i}");
    }
}

#[test]
fn v2_version_command_family() {
    let body = block4([1; 4], [2; 4], 3, 4);
    for (vc, reason) in [
        (0x11, "v2 version is not 2"),
        (0x31, "v2 version is not 2"),
        (0x01, "v2 version is not 2"),
        (0x22, "v2 unknown command"),
        (0x2f, "v2 unknown command"),
    ] {
        let header = v2(vc, 0x11, &body);
        // Refused as soon as the byte is there.
        assert_eq!(invalid(&header[..13]), reason, "{vc:#x}");
        assert_eq!(invalid(&header), reason, "{vc:#x}");
    }
    for (family, reason) in [
        (0x12, "not a stream"),
        (0x22, "not a stream"),
        (0x32, "not a stream"),
        (0x01, "v2 unknown address family"),
        (0x10, "v2 unknown address family"),
        (0x13, "v2 unknown address family"),
        (0x41, "v2 unknown address family"),
        (0xff, "v2 unknown address family"),
    ] {
        let header = v2(0x21, family, &[0; 216]);
        assert_eq!(invalid(&header[..14]), reason, "{family:#x}");
        assert_eq!(invalid(&header), reason, "{family:#x}");
    }
}

#[test]
fn v2_lengths() {
    // Too long: refused on the length bytes, before the body arrives.
    let mut header = v2(0x21, 0x11, &[]);
    header[14..16].copy_from_slice(&1025u16.to_be_bytes());
    assert_eq!(invalid(&header), "v2 header too long");
    header[14..16].copy_from_slice(&u16::MAX.to_be_bytes());
    assert_eq!(invalid(&header), "v2 header too long");
    assert_eq!(invalid(&v2(0x20, 0x00, &[0; 1025])), "v2 header too long");
    // Shorter than the family's addresses.
    for (family, need) in [(0x11, 12), (0x21, 36), (0x31, 216)] {
        let header = v2(0x21, family, &vec![0; need - 1]);
        assert_eq!(
            invalid(&header[..16]),
            "v2 length shorter than its addresses"
        );
        assert_header(&v2(0x21, family, &vec![0; need]), parse_source(family));
    }
}

fn parse_source(family: u8) -> Option<SocketAddr> {
    match family {
        0x11 => sock("0.0.0.0:0"),
        0x21 => sock("[::]:0"),
        _ => None,
    }
}

#[test]
fn v2_tlvs_must_fit() {
    let body = block4([1; 4], [2; 4], 3, 4);
    for tail in [
        &[0x01][..],
        &[0x01, 0x00],
        &[0x01, 0x00, 0x01],
        &[0x01, 0x00, 0x05, 1, 2, 3, 4],
        &[0x04, 0x00, 0x00, 0x01],
    ] {
        let mut b = body.clone();
        b.extend_from_slice(tail);
        assert_eq!(
            invalid(&v2(0x21, 0x11, &b)),
            "v2 TLVs do not fit the header",
            "{tail:?}"
        );
    }
}
