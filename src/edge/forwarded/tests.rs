//! Trusted networks and the client's address: CIDR parsing and matching at the edges, the
//! RFC 7239 examples, `X-Forwarded-For` chains, spoofing, the walk's bound.

use super::*;

fn ip(text: &str) -> IpAddr {
    text.parse().unwrap()
}

fn cidr(text: &str) -> Cidr {
    text.parse().unwrap()
}

fn trusted(nets: &[&str]) -> TrustedProxies {
    TrustedProxies(nets.iter().map(|n| cidr(n)).collect())
}

/// The proxies of most tests: a private IPv4 range, loopback, a private IPv6 range.
fn proxies() -> TrustedProxies {
    trusted(&["10.0.0.0/8", "127.0.0.1", "fd00::/8"])
}

fn xff(peer: &str, header: &str) -> IpAddr {
    client_address(
        &proxies(),
        ip(peer),
        ForwardedHeader::XForwardedFor,
        Some(header),
    )
}

fn fwd(peer: &str, header: &str) -> IpAddr {
    client_address(
        &proxies(),
        ip(peer),
        ForwardedHeader::Forwarded,
        Some(header),
    )
}

// --- Cidr ----------------------------------------------------------------------------------

#[test]
fn cidr_parses_and_displays() {
    for (text, shown) in [
        ("10.0.0.0/8", "10.0.0.0/8"),
        ("192.168.1.7", "192.168.1.7/32"),
        ("0.0.0.0/0", "0.0.0.0/0"),
        ("::1", "::1/128"),
        ("::/0", "::/0"),
        ("2001:DB8::/32", "2001:db8::/32"),
        (" fd00::/8 ", "fd00::/8"),
        ("10.0.0.0/008", "10.0.0.0/8"),
    ] {
        assert_eq!(cidr(text).to_string(), shown, "{text}");
        assert_eq!(cidr(shown), cidr(text), "{text} round trip");
    }
}

#[test]
fn cidr_host_bits_are_cleared() {
    let net = cidr("10.1.2.3/8");
    assert_eq!(net, cidr("10.0.0.0/8"));
    assert_eq!((net.addr(), net.prefix()), (ip("10.0.0.0"), 8));
    assert_eq!(cidr("192.168.1.255/23").to_string(), "192.168.0.0/23");
    assert_eq!(cidr("2001:db8::ffff/64").to_string(), "2001:db8::/64");
    assert_eq!(cidr("1.2.3.4/0").to_string(), "0.0.0.0/0");
}

#[test]
fn cidr_mapped_networks_are_ipv4() {
    assert_eq!(cidr("::ffff:10.0.0.0/104"), cidr("10.0.0.0/8"));
    assert_eq!(cidr("::ffff:1.2.3.4"), cidr("1.2.3.4/32"));
    assert_eq!(cidr("::ffff:0.0.0.0/96"), cidr("0.0.0.0/0"));
    // Wider than the mapped range: stays IPv6.
    assert_eq!(cidr("::ffff:0.0.0.0/95").to_string(), "::fffe:0:0/95");
}

#[test]
fn cidr_errors_say_what_is_wrong() {
    for (text, part) in [
        ("", "empty network"),
        ("   ", "empty network"),
        ("10.0.0.0/33", "at most /32"),
        ("::/129", "at most /128"),
        ("::ffff:1.2.3.4/129", "at most /128"),
        ("10.0.0.0/", "prefix length missing"),
        ("10.0.0.0/x", "is not a number"),
        ("10.0.0.0/+8", "is not a number"),
        ("10.0.0.0/-1", "is not a number"),
        ("10.0.0.0/8/8", "is not a number"),
        ("10.0.0.0/1000", "is not a number"),
        ("10.0.0.0/256", "too long"),
        ("10.0.0/8", "is not an IPv4 or IPv6 address"),
        ("/8", "is not an IPv4 or IPv6 address"),
        ("localhost", "is not an IPv4 or IPv6 address"),
        ("[::1]/128", "is not an IPv4 or IPv6 address"),
        ("010.0.0.0/8", "is not an IPv4 or IPv6 address"),
        ("fe80::1%eth0/64", "is not an IPv4 or IPv6 address"),
    ] {
        let err = text.parse::<Cidr>().unwrap_err();
        assert!(err.contains(part), "{text:?}: {err}");
    }
    assert!(Cidr::new(ip("1.2.3.4"), 33).is_err());
    assert!(Cidr::new(ip("::"), 129).is_err());
}

#[test]
fn cidr_contains_at_the_edges() {
    let all4 = cidr("0.0.0.0/0");
    assert!(all4.contains(ip("0.0.0.0")) && all4.contains(ip("255.255.255.255")));
    assert!(all4.contains(ip("::ffff:8.8.8.8")));
    assert!(!all4.contains(ip("::1")) && !all4.contains(ip("2001:db8::1")));

    let all6 = cidr("::/0");
    assert!(
        all6.contains(ip("::")) && all6.contains(ip("ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff"))
    );
    assert!(
        all6.contains(ip("8.8.8.8")),
        "an IPv4 address's mapped form is in ::/0"
    );

    let host = cidr("192.0.2.1/32");
    assert!(host.contains(ip("192.0.2.1")));
    assert!(host.contains(ip("::ffff:192.0.2.1")));
    assert!(!host.contains(ip("192.0.2.0")) && !host.contains(ip("192.0.2.2")));

    let net = cidr("10.0.0.0/8");
    assert!(net.contains(ip("10.0.0.0")) && net.contains(ip("10.255.255.255")));
    assert!(!net.contains(ip("9.255.255.255")) && !net.contains(ip("11.0.0.0")));
    assert!(net.contains(ip("::ffff:10.1.2.3")));
    assert!(
        !net.contains(ip("::10.1.2.3")),
        "IPv4-compatible is not IPv4-mapped"
    );

    let v6host = cidr("::1/128");
    assert!(v6host.contains(ip("::1")));
    assert!(!v6host.contains(ip("::2")) && !v6host.contains(ip("127.0.0.1")));

    let v6net = cidr("2001:db8::/32");
    assert!(v6net.contains(ip("2001:db8::")) && v6net.contains(ip("2001:db8:ffff:ffff::1")));
    assert!(!v6net.contains(ip("2001:db9::")) && !v6net.contains(ip("10.0.0.1")));

    let mapped = cidr("::ffff:10.0.0.0/104");
    assert!(mapped.contains(ip("10.9.9.9")) && mapped.contains(ip("::ffff:10.9.9.9")));

    let odd = cidr("192.168.0.0/23");
    assert!(odd.contains(ip("192.168.1.255")) && !odd.contains(ip("192.168.2.0")));
}

#[test]
fn trusted_proxies() {
    let none = TrustedProxies::default();
    assert!(none.is_empty() && !none.contains(ip("127.0.0.1")));
    let some = proxies();
    assert!(!some.is_empty());
    assert!(some.contains(ip("10.2.3.4")) && some.contains(ip("fd12::1")));
    assert!(some.contains(ip("::ffff:127.0.0.1")));
    assert!(!some.contains(ip("127.0.0.2")) && !some.contains(ip("192.0.2.1")));
}

// --- client_address ------------------------------------------------------------------------

#[test]
fn untrusted_peer_is_the_client_whatever_it_says() {
    assert_eq!(xff("192.0.2.9", "1.2.3.4"), ip("192.0.2.9"));
    assert_eq!(fwd("192.0.2.9", "for=1.2.3.4"), ip("192.0.2.9"));
    let empty = TrustedProxies::default();
    assert_eq!(
        client_address(
            &empty,
            ip("10.0.0.1"),
            ForwardedHeader::Forwarded,
            Some("for=1.2.3.4")
        ),
        ip("10.0.0.1")
    );
    assert_eq!(
        client_address(
            &empty,
            ip("10.0.0.1"),
            ForwardedHeader::XForwardedFor,
            Some("1.2.3.4")
        ),
        ip("10.0.0.1")
    );
    // The result is IPv4 for a mapped peer too.
    assert_eq!(xff("::ffff:192.0.2.9", "1.2.3.4"), ip("192.0.2.9"));
}

#[test]
fn trusted_peer_without_headers_is_the_client() {
    assert_eq!(
        client_address(&proxies(), ip("10.0.0.1"), ForwardedHeader::default(), None),
        ip("10.0.0.1")
    );
    assert_eq!(xff("10.0.0.1", ""), ip("10.0.0.1"));
    assert_eq!(xff("10.0.0.1", " , ,"), ip("10.0.0.1"));
}

#[test]
fn rfc7239_examples() {
    let peer = "10.0.0.1";
    // §4 and §7.1.
    assert_eq!(fwd(peer, r#"for="_gazonk""#), ip(peer));
    assert_eq!(
        fwd(peer, r#"For="[2001:db8:cafe::17]:4711""#),
        ip("2001:db8:cafe::17")
    );
    assert_eq!(
        fwd(peer, "for=192.0.2.60;proto=http;by=203.0.113.43"),
        ip("192.0.2.60")
    );
    assert_eq!(
        fwd(peer, "for=192.0.2.43, for=198.51.100.17"),
        ip("198.51.100.17")
    );
    // §7.1: the same chain written in one header or two joined.
    for header in [
        r#"for=192.0.2.43,for="[2001:db8:cafe::17]",for=unknown"#,
        r#"for=192.0.2.43, for="[2001:db8:cafe::17]", for=unknown"#,
    ] {
        assert_eq!(
            fwd(peer, header),
            ip(peer),
            "unknown right-most: stop at once"
        );
    }
    assert_eq!(
        fwd(peer, r#"for=192.0.2.43, for="[2001:db8:cafe::17]""#),
        ip("2001:db8:cafe::17")
    );
    // §6.3: obfuscated identifiers stop the walk.
    assert_eq!(fwd(peer, "for=_hidden, for=_SEVKISEK"), ip(peer));
    // §7.4: the X-Forwarded-For equivalent gives the same client.
    assert_eq!(
        xff(peer, "192.0.2.43, 2001:db8:cafe::17"),
        ip("2001:db8:cafe::17")
    );
}

#[test]
fn forwarded_parameters() {
    let peer = "10.0.0.1";
    assert_eq!(fwd(peer, "FOR=192.0.2.1"), ip("192.0.2.1"));
    assert_eq!(
        fwd(peer, "proto=https;for=\"192.0.2.1:8443\";host=example.com"),
        ip("192.0.2.1")
    );
    assert_eq!(fwd(peer, "for=192.0.2.1:_port"), ip("192.0.2.1"));
    assert_eq!(fwd(peer, "for=\"[2001:db8::1]:_p\""), ip("2001:db8::1"));
    assert_eq!(fwd(peer, "for=\"[::ffff:192.0.2.1]\""), ip("192.0.2.1"));
    assert_eq!(fwd(peer, " for=192.0.2.1 ; proto=http "), ip("192.0.2.1"));
    // Malformed elements stop the walk: no `for`, `for` twice, bad quoting, a pair with no `=`.
    for bad in [
        "proto=https",
        "for=192.0.2.1;for=192.0.2.2",
        "for=\"192.0.2.1",
        "for=192.0.2.1\"",
        "for=\"192.0.2\\.1\"",
        "for=192.0.2.1;secure",
        "for=",
        "for=[2001:db8::1",
        "for=[2001:db8::1]x",
        "for=[2001:db8::1]:",
        "for=192.0.2.1:99999",
        "for=192.0.2.1:_",
    ] {
        assert_eq!(fwd(peer, bad), ip(peer), "{bad}");
    }
    // A Forwarded with no element names nobody.
    assert_eq!(fwd(peer, ""), ip(peer));
    assert_eq!(fwd(peer, " , "), ip(peer));
}

#[test]
fn the_forwarding_header_is_named_by_the_operator() {
    assert_eq!("xff".parse(), Ok(ForwardedHeader::XForwardedFor));
    assert_eq!(
        "X-Forwarded-For".parse(),
        Ok(ForwardedHeader::XForwardedFor)
    );
    assert_eq!("Forwarded".parse(), Ok(ForwardedHeader::Forwarded));
    assert!("both".parse::<ForwardedHeader>().is_err());
    assert_eq!(ForwardedHeader::default(), ForwardedHeader::XForwardedFor);
    for h in [ForwardedHeader::XForwardedFor, ForwardedHeader::Forwarded] {
        assert_eq!(h.to_string().parse(), Ok(h));
    }
    // Each syntax is read only as its own header's: an X-Forwarded-For chain is no
    // Forwarded element, and `for=` is no address.
    assert_eq!(fwd("10.0.0.1", "192.0.2.7"), ip("10.0.0.1"));
    assert_eq!(xff("10.0.0.1", "for=192.0.2.7"), ip("10.0.0.1"));
}

#[test]
fn xff_chains_with_trusted_hops() {
    // client, then two proxies of ours; the request came from a third.
    assert_eq!(
        xff("10.0.0.3", "203.0.113.5, 10.0.0.1, 10.0.0.2"),
        ip("203.0.113.5")
    );
    assert_eq!(
        xff("10.0.0.3", "203.0.113.5,10.0.0.1,10.0.0.2"),
        ip("203.0.113.5")
    );
    assert_eq!(
        xff("127.0.0.1", "\t203.0.113.5 ,  fd00::7 "),
        ip("203.0.113.5")
    );
    assert_eq!(
        xff("10.0.0.3", "203.0.113.5:51234, 10.0.0.1:80"),
        ip("203.0.113.5")
    );
    assert_eq!(
        xff("10.0.0.3", "[2001:db8::5]:443, [fd00::1]"),
        ip("2001:db8::5")
    );
    assert_eq!(xff("10.0.0.3", "2001:db8::5"), ip("2001:db8::5"));
    assert_eq!(xff("fd00::9", "::ffff:203.0.113.5"), ip("203.0.113.5"));
    // A mapped trusted hop is passed like its IPv4 form.
    assert_eq!(
        xff("10.0.0.3", "203.0.113.5, ::ffff:10.0.0.1"),
        ip("203.0.113.5")
    );
    // Empty list elements are skipped.
    assert_eq!(
        xff("10.0.0.3", "203.0.113.5, , 10.0.0.1,"),
        ip("203.0.113.5")
    );
}

#[test]
fn spoofed_left_entries_are_ignored() {
    // The client wrote "1.1.1.1, 10.0.0.1" itself; our proxy appended the client's address.
    assert_eq!(
        xff("10.0.0.2", "1.1.1.1, 10.0.0.1, 198.51.100.4"),
        ip("198.51.100.4")
    );
    assert_eq!(
        fwd("10.0.0.2", "for=1.1.1.1, for=10.0.0.1, for=198.51.100.4"),
        ip("198.51.100.4")
    );
    // Garbage to the left of the client's real address is never reached.
    assert_eq!(
        xff("10.0.0.2", "<script>, unknown, 198.51.100.4"),
        ip("198.51.100.4")
    );
}

#[test]
fn all_trusted_gives_the_left_most() {
    assert_eq!(xff("10.0.0.3", "10.0.0.1, 10.0.0.2"), ip("10.0.0.1"));
    assert_eq!(xff("10.0.0.3", "fd00::1, 127.0.0.1"), ip("fd00::1"));
    assert_eq!(fwd("10.0.0.3", "for=10.0.0.9"), ip("10.0.0.9"));
}

#[test]
fn invalid_entry_stops_the_walk() {
    assert_eq!(
        xff("10.0.0.3", "203.0.113.5, unknown, 10.0.0.1"),
        ip("10.0.0.1")
    );
    assert_eq!(
        xff("10.0.0.3", "203.0.113.5, 10.0.0.1, garbage"),
        ip("10.0.0.3")
    );
    assert_eq!(xff("10.0.0.3", "203.0.113.5, _hidden"), ip("10.0.0.3"));
    for bad in [
        "1.2.3",
        "1.2.3.4.5",
        "01.2.3.4",
        "1.2.3.4:",
        "1.2.3.4:65536",
        "1.2.3.4:80:80",
        "[1.2.3.4]",
        "fe80::1%eth0",
        "\"1.2.3.4\"",
        "1.2.3.4 5.6.7.8",
        "é",
    ] {
        assert_eq!(xff("10.0.0.3", bad), ip("10.0.0.3"), "{bad}");
    }
    let long = format!("[{}::1]", "0:".repeat(40));
    assert_eq!(xff("10.0.0.3", &long), ip("10.0.0.3"));
}

#[test]
fn the_walk_looks_at_32_entries() {
    // 31 trusted hops right of the client: it is the 32nd entry, found.
    let mut chain = vec!["203.0.113.5"];
    chain.extend(std::iter::repeat_n("10.0.0.1", 31));
    assert_eq!(xff("10.0.0.3", &chain.join(", ")), ip("203.0.113.5"));
    // 32 trusted hops: the walk stops at the last one looked at.
    chain.insert(1, "10.0.0.2");
    let got = xff("10.0.0.3", &chain.join(", "));
    assert_eq!(got, ip("10.0.0.2"));
    assert_eq!(MAX_CHAIN, 32);
    // Empty elements count towards the bound.
    let commas = format!("203.0.113.5{}", ",".repeat(40));
    assert_eq!(xff("10.0.0.3", &commas), ip("10.0.0.3"));
}

#[test]
fn huge_and_hostile_headers_do_not_panic() {
    // All trusted, far past the bound: the last one looked at.
    let many = "10.0.0.1,".repeat(100_000);
    assert_eq!(xff("10.0.0.3", &many), ip("10.0.0.1"));
    let long = "1".repeat(1 << 16);
    assert_eq!(xff("10.0.0.3", &long), ip("10.0.0.3"));
    for weird in [
        "[", "]", "[]", ":", "::::", "\"", "=", ";;;", "for", "for=\"", "ﬀ,ﬀ", "\0",
    ] {
        let _ = fwd("10.0.0.3", weird);
        let _ = xff("10.0.0.3", weird);
    }
}
