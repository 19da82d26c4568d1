//! Connection caps: `--max-connections` overall and `--max-connections-per-ip`.
//!
//! Checked at the WebSocket upgrade (over the cap: 503 overall, 429 per address). An admitted
//! connection holds a [`Ticket`] that gives its place back when the connection is dropped,
//! whatever path closes it. An address is counted as IPv4 when it is IPv4-mapped, and an IPv6
//! address by its first `--ipv6-prefix` bits (default 64): whoever holds a /64 holds 2^64
//! addresses, and one quota per address would be none at all. The counters are shared by every shard; the per-address map takes
//! a lock, but only at upgrade and close, never per message.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

/// Why an upgrade was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// `--max-connections` reached: 503.
    ServerFull,
    /// `--max-connections-per-ip` reached for this address: 429.
    AddressFull,
}

/// The shared counters. A limit of 0 means unlimited.
#[derive(Debug, Default)]
pub struct Admission {
    max_total: usize,
    max_per_ip: usize,
    /// Leading bits of an IPv6 address that name its client (1-128).
    ipv6_prefix: u8,
    total: AtomicUsize,
    per_ip: Mutex<HashMap<IpAddr, usize>>,
}

impl Admission {
    /// Counters for the given limits (0 = unlimited), IPv6 clients keyed by their first
    /// `ipv6_prefix` bits.
    pub fn new(max_total: usize, max_per_ip: usize, ipv6_prefix: u8) -> Arc<Self> {
        Arc::new(Admission {
            max_total,
            max_per_ip,
            ipv6_prefix,
            ..Admission::default()
        })
    }

    /// The key `ip` is counted under: IPv4 as it is (a mapped address as IPv4), IPv6 with
    /// all but its first `ipv6_prefix` bits cleared.
    pub fn key(&self, ip: IpAddr) -> IpAddr {
        match ip.to_canonical() {
            IpAddr::V6(v6) => {
                let bits = u32::from(self.ipv6_prefix.clamp(1, 128));
                let mask = u128::MAX.checked_shl(128 - bits).unwrap_or(0);
                IpAddr::V6(std::net::Ipv6Addr::from(u128::from(v6) & mask))
            }
            v4 => v4,
        }
    }

    /// Takes a place for a connection from `ip`, or says why not.
    pub fn admit(self: &Arc<Self>, ip: IpAddr) -> Result<Ticket, Refusal> {
        let ip = self.key(ip);
        let prev = self.total.fetch_add(1, Ordering::AcqRel);
        if self.max_total != 0 && prev >= self.max_total {
            self.total.fetch_sub(1, Ordering::AcqRel);
            return Err(Refusal::ServerFull);
        }
        if self.max_per_ip != 0 {
            let mut map = self.per_ip.lock().unwrap_or_else(|p| p.into_inner());
            let n = map.entry(ip).or_insert(0);
            if *n >= self.max_per_ip {
                drop(map);
                self.total.fetch_sub(1, Ordering::AcqRel);
                return Err(Refusal::AddressFull);
            }
            *n += 1;
        }
        Ok(Ticket {
            admission: self.clone(),
            ip,
        })
    }

    /// Admitted connections right now.
    pub fn current(&self) -> usize {
        self.total.load(Ordering::Acquire)
    }
}

/// A place held by one admitted connection; released on drop.
#[derive(Debug)]
pub struct Ticket {
    admission: Arc<Admission>,
    ip: IpAddr,
}

impl Drop for Ticket {
    fn drop(&mut self) {
        let a = &self.admission;
        if a.max_per_ip != 0 {
            let mut map = a.per_ip.lock().unwrap_or_else(|p| p.into_inner());
            if let Some(n) = map.get_mut(&self.ip) {
                *n -= 1;
                if *n == 0 {
                    map.remove(&self.ip);
                }
            }
        }
        a.total.fetch_sub(1, Ordering::AcqRel);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn caps_and_release() {
        let a = Admission::new(3, 2, 64);
        let ip1: IpAddr = "127.0.0.1".parse().unwrap();
        let ip2: IpAddr = "127.0.0.2".parse().unwrap();
        let t1 = a.admit(ip1).unwrap();
        let _t2 = a.admit(ip1).unwrap();
        assert_eq!(a.admit(ip1).unwrap_err(), Refusal::AddressFull);
        let _t3 = a.admit(ip2).unwrap();
        assert_eq!(a.admit(ip2).unwrap_err(), Refusal::ServerFull);
        assert_eq!(a.current(), 3);
        drop(t1);
        assert_eq!(a.current(), 2);
        let _t4 = a.admit(ip1).unwrap();
        assert_eq!(Admission::new(0, 0, 64).admit(ip1).map(|_| ()), Ok(()));
    }

    #[test]
    fn mapped_addresses_are_ipv4_and_ipv6_counts_by_prefix() {
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        let a = Admission::new(0, 1, 64);
        let _t = a.admit(ip("192.0.2.1")).unwrap();
        assert_eq!(
            a.admit(ip("::ffff:192.0.2.1")).unwrap_err(),
            Refusal::AddressFull,
            "a mapped address is the same client"
        );
        let _u = a.admit(ip("2001:db8:1:2::1")).unwrap();
        assert_eq!(
            a.admit(ip("2001:db8:1:2:ffff::7")).unwrap_err(),
            Refusal::AddressFull,
            "the same /64"
        );
        let _v = a.admit(ip("2001:db8:1:3::1")).unwrap();
        let each = Admission::new(0, 1, 128);
        let _w = each.admit(ip("2001:db8::1")).unwrap();
        let _x = each.admit(ip("2001:db8::2")).unwrap();
        assert_eq!(a.key(ip("2001:db8:1:2:3:4:5:6")), ip("2001:db8:1:2::"));
        assert_eq!(
            Admission::new(0, 1, 48).key(ip("2001:db8:1:2::1")),
            ip("2001:db8:1::")
        );
    }
}
