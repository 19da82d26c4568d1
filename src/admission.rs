//! Connection caps: `--max-pending-per-ip` from accept, then `--max-connections` overall and
//! `--max-connections-per-ip` at the upgrade.
//!
//! A socket is counted from the moment it is accepted: until its upgrade (the HTTP head, the
//! TLS handshake, an HTTP answer and its lingering close) it holds a [`Pending`] place under
//! its address, taken by the acceptor; over `--max-pending-per-ip` the acceptor closes it at
//! once. Sockets from a `--trusted-proxy` are not capped per address (a proxy carries many
//! clients; their own address is known only once the request is read). The upgrade checks
//! the caps on open WebSockets (over the cap: 503 overall, 429 per address), and an admitted
//! connection holds a [`Ticket`] that gives its place back when the connection is dropped,
//! whatever path closes it; its [`Pending`] place is given back then. So every socket is
//! counted under one of the two at every instant. An address is counted as IPv4 when it is IPv4-mapped, and an IPv6
//! address by its first `--ipv6-prefix` bits (default 64): whoever holds a /64 holds 2^64
//! addresses, and one quota per address would be none at all. The counters are shared by
//! every shard and the acceptor; the per-address maps take a lock, but only at accept,
//! upgrade and close, never per message.

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
    /// `--max-pending-per-ip` (0 = unlimited).
    max_pending_per_ip: usize,
    /// Sockets not yet upgraded, per address key.
    pending: Mutex<HashMap<IpAddr, usize>>,
}

impl Admission {
    /// Counters for the given limits (0 = unlimited), IPv6 clients keyed by their first
    /// `ipv6_prefix` bits.
    pub fn new(max_total: usize, max_per_ip: usize, ipv6_prefix: u8) -> Arc<Self> {
        Admission::with_pending(max_total, max_per_ip, 0, ipv6_prefix)
    }

    /// [`Admission::new`], with at most `max_pending_per_ip` sockets per address before
    /// their upgrade (0 = unlimited).
    pub fn with_pending(
        max_total: usize,
        max_per_ip: usize,
        max_pending_per_ip: usize,
        ipv6_prefix: u8,
    ) -> Arc<Self> {
        Arc::new(Admission {
            max_total,
            max_per_ip,
            ipv6_prefix,
            max_pending_per_ip,
            ..Admission::default()
        })
    }

    /// Takes a pending place for a socket just accepted from `ip`, or `None` when the
    /// address already holds `--max-pending-per-ip` sockets not yet upgraded. `capped`
    /// false (a trusted proxy) counts it without a cap.
    pub fn hold(self: &Arc<Self>, ip: IpAddr, capped: bool) -> Option<Pending> {
        let ip = self.key(ip);
        let mut map = self.pending.lock().unwrap_or_else(|p| p.into_inner());
        let n = map.entry(ip).or_insert(0);
        if capped && self.max_pending_per_ip != 0 && *n >= self.max_pending_per_ip {
            return None;
        }
        *n += 1;
        Some(Pending {
            admission: self.clone(),
            ip,
        })
    }

    /// Sockets accepted and not yet upgraded (or answered and not yet closed), right now.
    pub fn pending(&self) -> usize {
        let map = self.pending.lock().unwrap_or_else(|p| p.into_inner());
        map.values().sum()
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
            release(&a.per_ip, self.ip);
        }
        a.total.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Gives one place of `ip` back in a per-address map, dropping the address at zero.
fn release(places: &Mutex<HashMap<IpAddr, usize>>, ip: IpAddr) {
    let mut map = places.lock().unwrap_or_else(|p| p.into_inner());
    if let Some(n) = map.get_mut(&ip) {
        *n -= 1;
        if *n == 0 {
            map.remove(&ip);
        }
    }
}

/// A place held by one socket between its accept and its upgrade; released on drop.
#[derive(Debug)]
pub struct Pending {
    admission: Arc<Admission>,
    ip: IpAddr,
}

impl Drop for Pending {
    fn drop(&mut self) {
        release(&self.admission.pending, self.ip);
    }
}

/// The default `--max-connections`: seven eighths of what the open-file limit leaves after
/// [`FD_RESERVE`], so the last eighth stays for sockets not yet upgraded (and an upgrade
/// over the cap still gets its 503 instead of an `accept` that fails).
pub fn default_max_connections(open_file_limit: u64) -> usize {
    let usable = open_file_limit.saturating_sub(FD_RESERVE);
    usize::try_from(usable / 8 * 7).unwrap_or(usize::MAX).max(1)
}

/// Descriptors the process keeps for itself: listeners, polls and wakers, Redis
/// connections, `/proc` reads.
pub const FD_RESERVE: u64 = 128;

/// The soft open-file limit now, or `None` when it cannot be read.
pub fn open_file_limit() -> Option<u64> {
    rlimit::getrlimit(rlimit::Resource::NOFILE)
        .ok()
        .map(|(soft, _)| soft)
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

    #[test]
    fn pending_places_are_capped_per_address_and_given_back() {
        let ip: IpAddr = "192.0.2.9".parse().unwrap();
        let a = Admission::with_pending(0, 0, 2, 64);
        let p1 = a.hold(ip, true).unwrap();
        let _p2 = a.hold(ip, true).unwrap();
        assert!(a.hold(ip, true).is_none(), "the third is refused");
        assert!(
            a.hold("::ffff:192.0.2.9".parse().unwrap(), true).is_none(),
            "a mapped address is the same client"
        );
        let _other = a.hold("192.0.2.10".parse().unwrap(), true).unwrap();
        // A trusted proxy is counted beside them, never refused.
        let proxy = a.hold(ip, false).unwrap();
        assert_eq!(a.pending(), 4);
        drop(p1);
        assert_eq!(a.pending(), 3);
        assert!(
            a.hold(ip, true).is_none(),
            "the proxy's socket holds a place too"
        );
        drop(proxy);
        let _p3 = a.hold(ip, true).unwrap();
        assert!(Admission::new(0, 0, 64).hold(ip, true).is_some());
    }

    #[test]
    fn the_default_cap_leaves_room_for_pending_sockets() {
        assert_eq!(default_max_connections(20_000), (20_000 - 128) / 8 * 7);
        assert_eq!(default_max_connections(1024), 784);
        assert_eq!(default_max_connections(10), 1);
    }
}
