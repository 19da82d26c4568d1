//! Connection caps: `--max-connections` overall and `--max-connections-per-ip`.
//!
//! Checked at the WebSocket upgrade (over the cap: 503 overall, 429 per address). An admitted
//! connection holds a [`Ticket`] that gives its place back when the connection is dropped,
//! whatever path closes it. The counters are shared by every shard; the per-address map takes
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
    total: AtomicUsize,
    per_ip: Mutex<HashMap<IpAddr, usize>>,
}

impl Admission {
    /// Counters for the given limits (0 = unlimited).
    pub fn new(max_total: usize, max_per_ip: usize) -> Arc<Self> {
        Arc::new(Admission {
            max_total,
            max_per_ip,
            ..Admission::default()
        })
    }

    /// Takes a place for a connection from `ip`, or says why not.
    pub fn admit(self: &Arc<Self>, ip: IpAddr) -> Result<Ticket, Refusal> {
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
        let a = Admission::new(3, 2);
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
        assert_eq!(Admission::new(0, 0).admit(ip1).map(|_| ()), Ok(()));
    }
}
