//! Who the client is behind HTTP proxies: the `--trusted-proxy` networks ([`Cidr`],
//! [`TrustedProxies`]) and the client's address read from `Forwarded` (RFC 7239) or
//! `X-Forwarded-For` ([`client_address`]).
//!
//! A forwarding header is believed only as far as it was written by proxies the operator
//! trusts: each proxy appends the address it received the request from, so the chain is
//! walked from the right, past trusted hops, and the first address that is not a trusted
//! proxy is the client. Everything left of it was written by the client itself (or by proxies
//! nobody vouches for) and is ignored, so a client cannot pick its address by sending the
//! header itself. A request whose peer is not trusted keeps the peer's address, whatever its
//! headers say.
//!
//! Which header is read is the operator's choice ([`ForwardedHeader`], `--forwarded-header`,
//! default `X-Forwarded-For`), and the other is ignored: a proxy appends to the header it
//! writes and passes any other through as the client sent it, so reading whichever header is
//! present would let a client behind a proxy that writes only `X-Forwarded-For` pick its
//! address with a `Forwarded` of its own.
//!
//! IPv4-mapped IPv6 addresses (`::ffff:192.0.2.1`) are IPv4 everywhere here: in networks, in
//! the comparisons and in the results, so a dual-stack socket's peers and a proxy's IPv4
//! headers agree. The work is bounded ([`MAX_CHAIN`] entries from the right) and no input
//! panics.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::str::FromStr;

/// Entries of a forwarding chain looked at, from the right; past them the walk stops as at
/// an invalid entry.
pub const MAX_CHAIN: usize = 32;

/// Longest entry worth parsing: `"[` + the longest IPv6 text (45) + `]:` + a 5-digit port, and
/// some room; longer ones are not addresses.
const MAX_NODE: usize = 64;

/// An IPv4 or IPv6 network in CIDR notation (`10.0.0.0/8`, `::1/128`, or a bare address = /32 or /128).
///
/// Host bits are accepted and cleared (`10.1.2.3/8` is `10.0.0.0/8`), as `ip route` and most
/// firewalls do: the operator's intent is plain and refusing would only annoy. An
/// IPv4-mapped network of prefix 96 or more (`::ffff:10.0.0.0/104`) is stored as the IPv4
/// network it covers (`10.0.0.0/8`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    /// The network's address: host bits cleared, IPv4-mapped networks as IPv4.
    addr: IpAddr,
    /// Prefix length: at most 32 for IPv4, 128 for IPv6.
    prefix: u8,
}

impl Cidr {
    /// The network of `addr` with a `prefix`-bit mask; host bits are cleared.
    pub fn new(addr: IpAddr, prefix: u8) -> Result<Cidr, String> {
        let max = max_prefix(addr);
        if prefix > max {
            let family = if addr.is_ipv4() { "IPv4" } else { "IPv6" };
            return Err(format!(
                "prefix length /{prefix} is longer than an {family} address (at most /{max})"
            ));
        }
        let (addr, prefix) = match addr {
            IpAddr::V6(v6) if prefix >= 96 => match v6.to_ipv4_mapped() {
                Some(v4) => (IpAddr::V4(v4), prefix - 96),
                None => (addr, prefix),
            },
            _ => (addr, prefix),
        };
        let addr = match addr {
            IpAddr::V4(v4) => IpAddr::V4(Ipv4Addr::from(masked_v4(v4, prefix))),
            IpAddr::V6(v6) => IpAddr::V6(Ipv6Addr::from(masked_v6(v6, prefix))),
        };
        Ok(Cidr { addr, prefix })
    }

    /// The network's first address (host bits cleared).
    pub fn addr(&self) -> IpAddr {
        self.addr
    }

    /// The prefix length.
    pub fn prefix(&self) -> u8 {
        self.prefix
    }

    /// Whether `ip` is in this network. An IPv4-mapped `ip` is taken as IPv4; an IPv4 `ip` is
    /// in an IPv6 network when its mapped form is (so `::/0` holds every address).
    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.addr, ip.to_canonical()) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => masked_v4(ip, self.prefix) == u32::from(net),
            (IpAddr::V6(net), IpAddr::V6(ip)) => masked_v6(ip, self.prefix) == u128::from(net),
            (IpAddr::V6(net), IpAddr::V4(ip)) => {
                masked_v6(ip.to_ipv6_mapped(), self.prefix) == u128::from(net)
            }
            (IpAddr::V4(_), IpAddr::V6(_)) => false,
        }
    }
}

/// The longest prefix of `addr`'s family.
fn max_prefix(addr: IpAddr) -> u8 {
    if addr.is_ipv4() { 32 } else { 128 }
}

/// `ip` with all but its first `prefix` bits cleared (`prefix` at most 32).
fn masked_v4(ip: Ipv4Addr, prefix: u8) -> u32 {
    let mask = u32::MAX.checked_shl(32 - u32::from(prefix)).unwrap_or(0);
    u32::from(ip) & mask
}

/// `ip` with all but its first `prefix` bits cleared (`prefix` at most 128).
fn masked_v6(ip: Ipv6Addr, prefix: u8) -> u128 {
    let mask = u128::MAX.checked_shl(128 - u32::from(prefix)).unwrap_or(0);
    u128::from(ip) & mask
}

impl FromStr for Cidr {
    type Err = String;

    /// `address/prefix` or a bare address; surrounding whitespace is ignored.
    fn from_str(s: &str) -> Result<Cidr, String> {
        let text = s.trim();
        if text.is_empty() {
            return Err("empty network: expected an address or address/prefix, \
                        e.g. 10.0.0.0/8 or ::1"
                .to_string());
        }
        let (addr_text, prefix_text) = match text.split_once('/') {
            Some((addr, prefix)) => (addr, Some(prefix)),
            None => (text, None),
        };
        let addr: IpAddr = addr_text
            .parse()
            .map_err(|_| format!("`{addr_text}` in `{text}` is not an IPv4 or IPv6 address"))?;
        let prefix = match prefix_text {
            None => max_prefix(addr),
            Some("") => return Err(format!("`{text}`: prefix length missing after `/`")),
            Some(p) if p.len() > 3 || !p.bytes().all(|b| b.is_ascii_digit()) => {
                return Err(format!(
                    "`{text}`: prefix length `{p}` is not a number from 0 to {}",
                    max_prefix(addr)
                ));
            }
            Some(p) => p
                .parse::<u8>()
                .map_err(|_| format!("`{text}`: prefix length `{p}` is too long"))?,
        };
        Cidr::new(addr, prefix).map_err(|e| format!("`{text}`: {e}"))
    }
}

impl fmt::Display for Cidr {
    /// `address/prefix`, always with the prefix (a bare address is shown as `/32` or `/128`).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

/// The forwarding header the trusted proxies write (`--forwarded-header`); the other one is
/// ignored, whoever sent it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum ForwardedHeader {
    /// `X-Forwarded-For` (nginx's `$proxy_add_x_forwarded_for`, haproxy's `option forwardfor`).
    #[default]
    XForwardedFor,
    /// `Forwarded` (RFC 7239).
    Forwarded,
}

impl FromStr for ForwardedHeader {
    type Err = String;

    /// `xff` (or `x-forwarded-for`) and `forwarded`, in any case.
    fn from_str(s: &str) -> Result<Self, String> {
        match s.trim().to_ascii_lowercase().as_str() {
            "xff" | "x-forwarded-for" => Ok(ForwardedHeader::XForwardedFor),
            "forwarded" => Ok(ForwardedHeader::Forwarded),
            other => Err(format!(
                "`{other}` is not a forwarding header: expected `xff` or `forwarded`"
            )),
        }
    }
}

impl fmt::Display for ForwardedHeader {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ForwardedHeader::XForwardedFor => "xff",
            ForwardedHeader::Forwarded => "forwarded",
        })
    }
}

/// The `--trusted-proxy` list.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TrustedProxies(pub Vec<Cidr>);

impl TrustedProxies {
    /// Whether `ip` is in one of the networks.
    pub fn contains(&self, ip: IpAddr) -> bool {
        self.0.iter().any(|net| net.contains(ip))
    }

    /// No proxy is trusted: every request's client is its peer.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// The client's address for a request that arrived from `peer`: `peer` itself unless `peer`
/// is trusted; then the right-most address in the forwarding chain that is not a trusted
/// proxy.
///
/// `chain` is the value of the header the operator chose ([`ForwardedHeader`], repeated lines
/// joined with `", "`), read as that header's syntax. The chain is walked from the right:
/// trusted entries are passed, the first untrusted address is the client. An entry that is no
/// address (`unknown`, an obfuscated `_name`, an element without `for=`, garbage), or the walk
/// reaching [`MAX_CHAIN`] entries, stops it: the result is then the last address passed
/// (`peer` if none). When every entry is trusted the left-most one is the client. Empty list
/// elements are skipped (but counted). The result is IPv4 for an IPv4-mapped address.
pub fn client_address(
    trusted: &TrustedProxies,
    peer: IpAddr,
    header: ForwardedHeader,
    chain: Option<&str>,
) -> IpAddr {
    let peer = peer.to_canonical();
    if !trusted.contains(peer) {
        return peer;
    }
    match (header, chain.filter(|c| has_element(c))) {
        (ForwardedHeader::Forwarded, Some(f)) => walk(trusted, peer, f, forwarded_for),
        (ForwardedHeader::XForwardedFor, Some(x)) => walk(trusted, peer, x, node),
        (_, None) => peer,
    }
}

/// Whether a header value holds anything but list separators and whitespace.
fn has_element(value: &str) -> bool {
    value.bytes().any(|b| !matches!(b, b',' | b' ' | b'\t'))
}

/// Optional whitespace around list elements and parameters.
const OWS: [char; 2] = [' ', '\t'];

/// Walks `chain`'s comma-separated entries from the right, reading each with `read`.
fn walk(
    trusted: &TrustedProxies,
    peer: IpAddr,
    chain: &str,
    read: fn(&str) -> Option<IpAddr>,
) -> IpAddr {
    let mut client = peer;
    for entry in chain.rsplit(',').take(MAX_CHAIN) {
        let entry = entry.trim_matches(OWS);
        if entry.is_empty() {
            continue;
        }
        let Some(ip) = read(entry) else {
            return client;
        };
        client = ip;
        if !trusted.contains(ip) {
            return ip;
        }
    }
    client
}

/// The address in one `Forwarded` element's `for=` parameter (name case-insensitive, value
/// quoted or not). `None` for a malformed element, one without `for` or with it twice, or a
/// `for` that is no address. A quoted value holding `,` or `;` is cut by the plain split and
/// so ends up malformed: no address is written that way, and the walk stops there.
fn forwarded_for(element: &str) -> Option<IpAddr> {
    let mut value = None;
    for pair in element.split(';') {
        let pair = pair.trim_matches(OWS);
        if pair.is_empty() {
            continue;
        }
        let (name, v) = pair.split_once('=')?;
        if name.trim_matches(OWS).eq_ignore_ascii_case("for") {
            if value.is_some() {
                return None;
            }
            value = Some(v.trim_matches(OWS));
        }
    }
    let value = value?;
    let value = match value.strip_prefix('"') {
        Some(quoted) => quoted.strip_suffix('"')?,
        None => value,
    };
    if value.contains(['"', '\\']) {
        return None;
    }
    node(value)
}

/// One node: `1.2.3.4`, `1.2.3.4:80`, `2001:db8::1`, `[2001:db8::1]`, `[2001:db8::1]:80`
/// (a port may also be an obfuscated `_name`). IPv4-mapped addresses come back as IPv4.
fn node(text: &str) -> Option<IpAddr> {
    if text.len() > MAX_NODE {
        return None;
    }
    let ip = if let Some(rest) = text.strip_prefix('[') {
        let (inner, after) = rest.split_once(']')?;
        if !after.is_empty() {
            port(after.strip_prefix(':')?)?;
        }
        IpAddr::V6(inner.parse().ok()?)
    } else if let Ok(ip) = text.parse::<IpAddr>() {
        ip
    } else {
        let (host, p) = text.split_once(':')?;
        port(p)?;
        IpAddr::V4(host.parse().ok()?)
    };
    Some(ip.to_canonical())
}

/// A node's port: 1 to 5 digits up to 65535, or an obfuscated `_` identifier (RFC 7239 §6.3).
fn port(text: &str) -> Option<()> {
    if let Some(name) = text.strip_prefix('_') {
        let valid = |b: u8| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-');
        return (!name.is_empty() && name.bytes().all(valid)).then_some(());
    }
    let digits = !text.is_empty() && text.len() <= 5 && text.bytes().all(|b| b.is_ascii_digit());
    (digits && text.parse::<u32>().is_ok_and(|p| p <= 65535)).then_some(())
}

#[cfg(test)]
mod tests;
