//! The PROXY protocol (HAProxy's `proxy-protocol.txt`, versions 1 and 2): the header a load
//! balancer sends first on a connection it relays, to say which client it relays for.
//!
//! [`parse`] reads the bytes received so far and decides as early as it can: a first byte
//! that starts neither form, a signature byte that differs, an unknown version, command or
//! address family, a v2 length past [`MAX_V2_HEADER`], or a v1 line that can no longer become
//! a valid one is [`Parsed::Invalid`] at once, without waiting for more bytes; a prefix of a
//! valid header is always [`Parsed::Incomplete`]. The bytes after the header (the HTTP request,
//! or a TLS ClientHello) are not consumed: [`Parsed::Header::used`] says where they start.
//!
//! Version 1 is parsed strictly: `PROXY TCP4|TCP6 <src> <dst> <sport> <dport>\r\n` with single
//! spaces, addresses of the protocol's family (dotted quad for `TCP4`, the textual form for
//! `TCP6`), decimal ports 0-65535 without sign or leading zero, at most
//! [`MAX_V1_HEADER`] bytes with the CRLF; `PROXY UNKNOWN` may be followed by anything up to the
//! CRLF, which is ignored (as the specification requires).
//!
//! Version 2: the 12-byte signature, version 2, command `LOCAL` or `PROXY`, a family/transport
//! byte, a big-endian length, the address block, then TLVs. For `LOCAL` (health checks) the
//! block is skipped whatever it holds, family included, as the specification requires. For
//! `PROXY`, the family must be one the specification names; `UDP` and UNIX datagram ones are
//! refused ("not a stream": this server only relays streams), the length must cover the
//! family's address block, and the TLVs after it must tile the rest of the header (they are
//! not interpreted). `UNSPEC` carries no address: its block is ignored.
//!
//! Nothing here allocates; the work is bounded by the header limits, not by the input's size.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

/// Longest v2 header accepted (16-byte fixed part + address block + TLVs); longer is Invalid.
pub const MAX_V2_HEADER: usize = 16 + 1024;
/// Longest v1 header, CRLF included (the specification's bound).
pub const MAX_V1_HEADER: usize = 107;

/// What v1 headers start with.
const V1_PREFIX: &[u8] = b"PROXY ";
/// What v2 headers start with.
const V2_SIGNATURE: &[u8; 12] = b"\r\n\r\n\0\r\nQUIT\n";

/// What the bytes received so far hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Parsed {
    /// Not enough bytes yet to decide; read more (the caller bounds total bytes/time).
    Incomplete,
    /// A complete header of `used` bytes. `source` is the original client's address, `None` for v2 LOCAL, v1 UNKNOWN, or an address family with no IP (UNSPEC, UNIX) — the caller then keeps the socket's peer address.
    Header {
        /// The client's address and port as the proxy saw them (an IPv4-mapped IPv6 address
        /// in a `TCP6` or 0x21 header is returned as the IPv4 address it maps).
        source: Option<SocketAddr>,
        /// Length of the header; the connection's own bytes start here.
        used: usize,
    },
    /// Not a valid PROXY header; the reason is a short static string for logs.
    Invalid(&'static str),
}

/// Reads a PROXY header (v1 or v2) at the start of `buf`, the bytes received so far.
pub fn parse(buf: &[u8]) -> Parsed {
    match buf.first() {
        None => Parsed::Incomplete,
        Some(b'P') => v1(buf),
        Some(b'\r') => v2(buf),
        Some(_) => Parsed::Invalid("no PROXY header"),
    }
}

// ---------------------------------------------------------------------------------------
// Version 1: one text line
// ---------------------------------------------------------------------------------------

/// The address family a v1 protocol token names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Family {
    V4,
    V6,
}

impl Family {
    /// Longest textual address: `255.255.255.255`, or
    /// `ffff:ffff:ffff:ffff:ffff:ffff:255.255.255.255`.
    fn max_text(self) -> usize {
        match self {
            Family::V4 => 15,
            Family::V6 => 45,
        }
    }

    /// Whether `b` may appear in an address of this family.
    fn allows(self, b: u8) -> bool {
        match self {
            Family::V4 => b.is_ascii_digit() || b == b'.',
            Family::V6 => b.is_ascii_hexdigit() || b == b':' || b == b'.',
        }
    }
}

/// A v1 header: the line up to its CRLF, which must come within [`MAX_V1_HEADER`] bytes.
fn v1(buf: &[u8]) -> Parsed {
    let window = &buf[..buf.len().min(MAX_V1_HEADER)];
    let Some(end) = window.iter().position(|&b| b == b'\r' || b == b'\n') else {
        if buf.len() >= MAX_V1_HEADER {
            return Parsed::Invalid("v1 header too long");
        }
        return match v1_line(buf, false) {
            Ok(_) => Parsed::Incomplete,
            Err(reason) => Parsed::Invalid(reason),
        };
    };
    if window[end] == b'\n' {
        return Parsed::Invalid("v1 line feed without carriage return");
    }
    let used = end + 2;
    if used > MAX_V1_HEADER {
        return Parsed::Invalid("v1 header too long");
    }
    match v1_line(&buf[..end], true) {
        Err(reason) => Parsed::Invalid(reason),
        Ok(source) => match buf.get(end + 1) {
            None => Parsed::Incomplete,
            Some(b'\n') => Parsed::Header {
                source: source.map(canonical),
                used,
            },
            Some(_) => Parsed::Invalid("v1 carriage return without line feed"),
        },
    }
}

/// Checks a v1 line without its CRLF. `complete`: the CRLF follows; otherwise `line` is what
/// has arrived so far, and `Ok(None)` means it can still become a valid line.
fn v1_line(line: &[u8], complete: bool) -> Result<Option<SocketAddr>, &'static str> {
    let Some(rest) = line.strip_prefix(V1_PREFIX) else {
        return if !complete && V1_PREFIX.starts_with(line) {
            Ok(None)
        } else {
            Err("no PROXY header")
        };
    };
    let (proto, tail) = match rest.iter().position(|&b| b == b' ') {
        Some(i) => (&rest[..i], Some(&rest[i + 1..])),
        None => (rest, None),
    };
    const PROTOCOLS: [&[u8]; 3] = [b"TCP4", b"TCP6", b"UNKNOWN"];
    let family = match proto {
        b"TCP4" => Family::V4,
        b"TCP6" => Family::V6,
        // Anything may follow UNKNOWN up to the CRLF; the receiver ignores it.
        b"UNKNOWN" => return Ok(None),
        _ if tail.is_none() && !complete && PROTOCOLS.iter().any(|p| p.starts_with(proto)) => {
            return Ok(None);
        }
        _ => return Err("v1 unknown protocol"),
    };
    let Some(tail) = tail else {
        return if complete {
            Err("v1 addresses missing")
        } else {
            Ok(None)
        };
    };
    let mut fields: [&[u8]; 4] = [&[]; 4];
    let mut count = 0;
    for field in tail.split(|&b| b == b' ') {
        if let Some(slot) = fields.get_mut(count) {
            *slot = field;
        }
        count += 1;
        if count > fields.len() {
            break;
        }
    }
    // The fields in order; when the line is not complete, the last one may still grow.
    for (i, (field, error)) in fields.iter().zip(FIELD_ERRORS).enumerate().take(count) {
        let partial = !complete && i + 1 == count;
        let ok = match (i, partial) {
            (0 | 1, false) => address(field, family).is_some(),
            (0 | 1, true) => address_prefix(field, family),
            (_, false) => port(field).is_some(),
            (_, true) => field.is_empty() || port(field).is_some(),
        };
        if !ok {
            return Err(error);
        }
    }
    if count > fields.len() {
        return Err("v1 too many fields");
    }
    if !complete {
        return Ok(None);
    }
    if count < fields.len() {
        return Err("v1 fields missing");
    }
    let [src, _, sport, _] = fields;
    let [src_error, _, sport_error, _] = FIELD_ERRORS;
    let src = address(src, family).ok_or(src_error)?;
    let sport = port(sport).ok_or(sport_error)?;
    Ok(Some(SocketAddr::new(src, sport)))
}

/// Why each v1 field after the protocol is refused, in order.
const FIELD_ERRORS: [&str; 4] = [
    "v1 bad source address",
    "v1 bad destination address",
    "v1 bad source port",
    "v1 bad destination port",
];

/// A whole textual address of `family`.
fn address(text: &[u8], family: Family) -> Option<IpAddr> {
    if text.len() > family.max_text() || !text.iter().all(|&b| family.allows(b)) {
        return None;
    }
    let text = std::str::from_utf8(text).ok()?;
    match family {
        Family::V4 => text.parse::<Ipv4Addr>().ok().map(IpAddr::V4),
        Family::V6 => text.parse::<Ipv6Addr>().ok().map(IpAddr::V6),
    }
}

/// Whether `text` is the start of some address of `family`: one of a few short completions
/// makes it whole. They cover every way an address can be left unfinished: inside a group
/// (`""`, `"::"`, `":0"`), after a colon (`"0"`, `":"`), or inside a plain or embedded dotted
/// quad (`"0.0.0.0"` and its tails); the tests check the list against a search over every
/// short completion. At most 11 parses of at most 52 bytes, on the stack.
fn address_prefix(text: &[u8], family: Family) -> bool {
    const COMPLETIONS: [&[u8]; 11] = [
        b"", b"0", b":", b"::", b":0", b".0", b"0.0", b".0.0", b"0.0.0", b".0.0.0", b"0.0.0.0",
    ];
    if text.len() > family.max_text() || !text.iter().all(|&b| family.allows(b)) {
        return false;
    }
    let mut scratch = [0u8; 64];
    COMPLETIONS.iter().any(|tail| {
        let n = text.len() + tail.len();
        match scratch.get_mut(..n) {
            Some(whole) => {
                let (head, rest) = whole.split_at_mut(text.len());
                head.copy_from_slice(text);
                rest.copy_from_slice(tail);
                address(whole, family).is_some()
            }
            None => false,
        }
    })
}

/// A decimal port: 1 to 5 digits, no sign, no leading zero, at most 65535.
fn port(text: &[u8]) -> Option<u16> {
    let leading_zero = text.len() > 1 && text.first() == Some(&b'0');
    if text.is_empty() || text.len() > 5 || leading_zero || !text.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let value = text.iter().fold(0u32, |n, d| n * 10 + u32::from(d - b'0'));
    u16::try_from(value).ok()
}

// ---------------------------------------------------------------------------------------
// Version 2: binary
// ---------------------------------------------------------------------------------------

/// v2 command `LOCAL`: the proxy's own connection (a health check); no client behind it.
const CMD_LOCAL: u8 = 0x0;
/// v2 command `PROXY`: relayed for the client in the address block.
const CMD_PROXY: u8 = 0x1;

/// A v2 header: 16 fixed bytes, then `length` bytes of addresses and TLVs.
fn v2(buf: &[u8]) -> Parsed {
    let seen = buf.len().min(V2_SIGNATURE.len());
    if buf[..seen] != V2_SIGNATURE[..seen] {
        return Parsed::Invalid("no PROXY header");
    }
    let Some(&version_command) = buf.get(12) else {
        return Parsed::Incomplete;
    };
    if version_command >> 4 != 2 {
        return Parsed::Invalid("v2 version is not 2");
    }
    let local = match version_command & 0x0F {
        CMD_LOCAL => true,
        CMD_PROXY => false,
        _ => return Parsed::Invalid("v2 unknown command"),
    };
    let Some(&family) = buf.get(13) else {
        return Parsed::Incomplete;
    };
    // The address block's size for each family/transport byte the specification names.
    let block = match family {
        _ if local => 0,
        0x00 => 0,
        0x11 => 12,
        0x21 => 36,
        0x31 => 216,
        0x12 | 0x22 | 0x32 => return Parsed::Invalid("not a stream"),
        _ => return Parsed::Invalid("v2 unknown address family"),
    };
    let Some(&[high, low]) = buf.get(14..16) else {
        return Parsed::Incomplete;
    };
    let length = usize::from(u16::from_be_bytes([high, low]));
    let used = 16 + length;
    if used > MAX_V2_HEADER {
        return Parsed::Invalid("v2 header too long");
    }
    if length < block {
        return Parsed::Invalid("v2 length shorter than its addresses");
    }
    let Some(body) = buf.get(16..used) else {
        return Parsed::Incomplete;
    };
    if local || family == 0x00 {
        return Parsed::Header { source: None, used };
    }
    let (addresses, tlvs) = body.split_at(block);
    if !tlvs_fit(tlvs) {
        return Parsed::Invalid("v2 TLVs do not fit the header");
    }
    let source = match family {
        0x11 => v4_source(addresses),
        0x21 => v6_source(addresses),
        _ => None, // UNIX: no IP
    };
    Parsed::Header {
        source: source.map(canonical),
        used,
    }
}

/// `addr` with an IPv4-mapped IPv6 address as IPv4, so a client counts under one key whether
/// its proxy wrote `TCP4`/0x11 or `TCP6`/0x21 with `::ffff:a.b.c.d`.
fn canonical(addr: SocketAddr) -> SocketAddr {
    SocketAddr::new(addr.ip().to_canonical(), addr.port())
}

/// The source of a TCP over IPv4 block: src (4), dst (4), src port (2), dst port (2).
fn v4_source(block: &[u8]) -> Option<SocketAddr> {
    let (ip, rest) = block.split_first_chunk::<4>()?;
    let (_dst, rest) = rest.split_first_chunk::<4>()?;
    let (port, _) = rest.split_first_chunk::<2>()?;
    Some(SocketAddr::new(
        IpAddr::V4(Ipv4Addr::from(*ip)),
        u16::from_be_bytes(*port),
    ))
}

/// The source of a TCP over IPv6 block: src (16), dst (16), src port (2), dst port (2).
fn v6_source(block: &[u8]) -> Option<SocketAddr> {
    let (ip, rest) = block.split_first_chunk::<16>()?;
    let (_dst, rest) = rest.split_first_chunk::<16>()?;
    let (port, _) = rest.split_first_chunk::<2>()?;
    Some(SocketAddr::new(
        IpAddr::V6(Ipv6Addr::from(*ip)),
        u16::from_be_bytes(*port),
    ))
}

/// Whether `rest` is a sequence of whole TLVs: type (1), big-endian length (2), value.
fn tlvs_fit(mut rest: &[u8]) -> bool {
    while !rest.is_empty() {
        let Some((head, after)) = rest.split_first_chunk::<3>() else {
            return false;
        };
        let length = usize::from(u16::from_be_bytes([head[1], head[2]]));
        let Some(next) = after.get(length..) else {
            return false;
        };
        rest = next;
    }
    true
}

#[cfg(test)]
mod tests;
