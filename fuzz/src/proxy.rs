//! The connection's edge: `tickcast::edge::proxy::parse` on the first bytes of a connection,
//! and `tickcast::edge::forwarded::client_address` on the input read as two header values
//! (`Forwarded` before the first `\n`, `X-Forwarded-For` after it).
//!
//! Checked:
//! - a header used at most the bytes given and at most its version's limit, and parsing
//!   exactly those bytes gives the same header (the end is found, not guessed); every strict
//!   prefix of it is `Incomplete`, never `Invalid`;
//! - an `Incomplete` input is shorter than the v2 limit and every prefix of it is
//!   `Incomplete` too (a refusal is never taken back by more bytes);
//! - a first byte that starts neither form is refused on its own; a refusal has a reason;
//! - a v1 header's source is the address written in its line;
//! - the client's address is the peer (always, when the peer is not trusted) or an address
//!   written in the headers, in its IPv4 form when IPv4-mapped.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use tickcast::edge::forwarded::{Cidr, ForwardedHeader, TrustedProxies, client_address};
use tickcast::edge::proxy::{MAX_V1_HEADER, MAX_V2_HEADER, Parsed, parse};

/// Runs the PROXY parser on `data`, and the forwarding headers' reader on its text.
pub fn check(data: &[u8]) {
    check_proxy(data);
    check_forwarded(data);
}

fn check_proxy(data: &[u8]) {
    match parse(data) {
        Parsed::Header { source, used } => {
            assert!(
                used > 0 && used <= data.len(),
                "used {used} of {}",
                data.len()
            );
            let limit = if data[0] == b'P' {
                MAX_V1_HEADER
            } else {
                MAX_V2_HEADER
            };
            assert!(used <= limit, "used {used}, limit {limit}");
            assert_eq!(
                parse(&data[..used]),
                Parsed::Header { source, used },
                "the header's own bytes parse to the same header"
            );
            for n in 0..used {
                assert_eq!(parse(&data[..n]), Parsed::Incomplete, "prefix of {n} bytes");
            }
            if data[0] == b'P' {
                check_v1_source(&data[..used], source);
            }
        }
        Parsed::Incomplete => {
            let limit = match data.first() {
                Some(b'P') => MAX_V1_HEADER,
                _ => MAX_V2_HEADER,
            };
            assert!(data.len() < limit, "incomplete at {} bytes", data.len());
            for n in 0..data.len() {
                assert_eq!(parse(&data[..n]), Parsed::Incomplete, "prefix of {n} bytes");
            }
        }
        Parsed::Invalid(reason) => assert!(!reason.is_empty()),
    }
    if let Some(&first) = data.first()
        && first != b'P'
        && first != b'\r'
    {
        assert_eq!(parse(&data[..1]), Parsed::Invalid("no PROXY header"));
    }
}

/// A v1 line names its source in its third field, and its source port in its fifth.
fn check_v1_source(line: &[u8], source: Option<std::net::SocketAddr>) {
    let line = line.strip_suffix(b"\r\n").unwrap_or(line);
    let fields: Vec<&str> = line
        .split(|&b| b == b' ')
        .map(|f| std::str::from_utf8(f).unwrap_or("\u{fffd}"))
        .collect();
    match source {
        // UNKNOWN may be followed by any bytes.
        None => assert_eq!(fields.get(1), Some(&"UNKNOWN"), "{line:?}"),
        Some(addr) => {
            assert_eq!(fields.len(), 6, "{line:?}");
            assert_eq!(fields[2].parse::<IpAddr>().ok(), Some(addr.ip()));
            assert_eq!(fields[4].parse::<u16>().ok(), Some(addr.port()));
            let family = if addr.is_ipv4() { "TCP4" } else { "TCP6" };
            assert_eq!(fields[1], family);
        }
    }
}

/// Runs `client_address` with a trusted and an untrusted peer.
fn check_forwarded(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let (forwarded, xff) = match text.split_once('\n') {
        Some((f, x)) => (Some(f), Some(x)),
        None => (Some(&*text), None),
    };
    let forwarded = forwarded.filter(|f| !f.is_empty());
    let trusted = TrustedProxies(
        [
            "10.0.0.0/8",
            "127.0.0.1",
            "fd00::/8",
            "::ffff:192.168.0.0/112",
        ]
        .iter()
        .filter_map(|n| n.parse::<Cidr>().ok())
        .collect(),
    );
    assert_eq!(trusted.0.len(), 4);
    let written = addresses_in(&text);
    let peers = [
        IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1)),
        IpAddr::V6(Ipv4Addr::new(192, 168, 1, 1).to_ipv6_mapped()),
        IpAddr::V4(Ipv4Addr::new(203, 0, 113, 9)),
    ];
    let chains = [
        (ForwardedHeader::Forwarded, forwarded),
        (ForwardedHeader::XForwardedFor, xff),
    ];
    for (peer, (header, chain)) in peers.into_iter().flat_map(|peer| chains.map(|c| (peer, c))) {
        let client = client_address(&trusted, peer, header, chain);
        assert!(
            client.to_canonical() == client,
            "{client} is not in its IPv4 form"
        );
        if !trusted.contains(peer) {
            assert_eq!(
                client,
                peer.to_canonical(),
                "an untrusted peer's headers were read"
            );
        } else {
            assert!(
                client == peer.to_canonical() || written.contains(&client),
                "{client} is neither the peer nor written in {text:?}"
            );
        }
    }
}

/// Every address written in `text`: its pieces between separators, a `:port` taken off an
/// IPv4 one, in IPv4 form when IPv4-mapped.
fn addresses_in(text: &str) -> Vec<IpAddr> {
    let mut out = Vec::new();
    let separators = |c: char| matches!(c, ',' | ';' | '=' | '"' | '[' | ']' | ' ' | '\t' | '\n');
    for piece in text.split(separators).filter(|p| !p.is_empty()) {
        if let Ok(ip) = piece.parse::<IpAddr>() {
            out.push(ip.to_canonical());
        }
        if let Some((host, _)) = piece.split_once(':')
            && let Ok(v4) = host.parse::<Ipv4Addr>()
        {
            out.push(IpAddr::V4(v4));
        }
        if let Ok(v6) = piece.parse::<Ipv6Addr>() {
            out.push(IpAddr::V6(v6).to_canonical());
        }
    }
    out
}
