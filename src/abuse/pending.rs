//! Scenario `pending_sockets`: one address opens many sockets and sends each half a request
//! head, to hold descriptors and shard slots without ever upgrading.
//!
//! The server counts a socket from its accept: past `--max-pending-per-ip` (128 by default)
//! from one address, the acceptor closes each new one at once. So after a second, exactly
//! the cap's worth is still open, every other socket has been closed (EOF or reset), and
//! `tickcast_accept_errors_total{reason="pending_per_ip"}` has risen by as many; a normal
//! client from another address keeps reading ticks meanwhile.

use std::io::{self, Read, Write};
use std::net::{Ipv4Addr, TcpStream};
use std::time::{Duration, Instant};

use super::client::{self, Tally};
use super::drive::{Counter, Cx, Judged, Play, Reads, Seen};
use super::probe;
use super::report::{Check, Raw};

/// The one address the sockets come from (the scrapes and the watcher use others).
const SOURCE: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 40);
/// The half head each socket sends.
const HALF_HEAD: &[u8] = b"GET /ws?topics=ticks HTTP/1.1\r\nHost: 127.0.0.1\r\n";
/// How long the server is given to close what is over the cap (it does so at accept).
const SETTLE: Duration = Duration::from_millis(1500);
/// The acceptor's count of sockets closed over the cap.
const REFUSED: Counter = Counter::new(
    "refused",
    "tickcast_accept_errors_total",
    &[("reason", "pending_per_ip")],
);

/// Scenario `pending_sockets`: `sockets` half-sent requests from one address.
pub struct PendingSockets {
    sockets: usize,
    /// The server's cap (its default: the suite runs the server with default settings).
    cap: usize,
}

impl PendingSockets {
    /// The scenario as `cfg` sizes it.
    pub fn new(cfg: &super::AbuseConfig) -> PendingSockets {
        PendingSockets {
            sockets: cfg.count_or(300, 1_000),
            cap: crate::config::ServerConfig::default().max_pending_per_ip,
        }
    }
}

/// What the sockets saw once the server had settled.
pub struct Held {
    connected: u64,
    /// Sockets still open after [`SETTLE`].
    open: u64,
    /// How the others ended (`closed_eof`, `closed_reset`), and connect failures.
    tally: Tally,
}

impl Play for PendingSockets {
    type Clients = (Vec<TcpStream>, Tally);
    type Outcome = Held;

    fn expectation(&self) -> &'static str {
        "of the half-sent requests from one address, exactly --max-pending-per-ip (128) stay open; every other socket is closed at accept and counted as accept_errors{reason=pending_per_ip}; a normal client served throughout"
    }

    fn reads(&self) -> Reads {
        Reads::scrape(&[REFUSED]).watched()
    }

    fn connect(&self, cx: &Cx) -> Result<(Vec<TcpStream>, Tally), String> {
        let mut tally = Tally::new();
        let mut streams = Vec::with_capacity(self.sockets);
        for _ in 0..self.sockets {
            match client::connect(cx.cfg.target, Some(SOURCE), Duration::from_secs(5)) {
                Ok(mut s) => {
                    // A socket closed at accept may refuse the write already: that is its
                    // outcome, read below.
                    let _ = s.write_all(HALF_HEAD);
                    streams.push(s);
                }
                Err(e) => client::count(&mut tally, client::connect_failure(&e)),
            }
        }
        Ok((streams, tally))
    }

    fn run(&self, _: &Cx, (streams, mut tally): (Vec<TcpStream>, Tally)) -> Result<Held, String> {
        let connected = streams.len() as u64;
        let settle = Instant::now() + SETTLE;
        std::thread::sleep(settle.saturating_duration_since(Instant::now()));
        let mut open = 0;
        let mut buf = [0u8; 512];
        for mut s in streams {
            s.set_nonblocking(true).map_err(|e| e.to_string())?;
            let ended = loop {
                match s.read(&mut buf) {
                    Ok(0) => break Some("closed_eof"),
                    Ok(_) => break Some("answered"),
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => break None,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(_) => break Some("closed_reset"),
                }
            };
            match ended {
                Some(label) => client::count(&mut tally, label),
                None => open += 1,
            }
            client::abort(s);
        }
        Ok(Held {
            connected,
            open,
            tally,
        })
    }

    fn judge(&self, h: Held, seen: &Seen) -> Judged {
        let n = self.sockets as u64;
        let cap = (self.cap as u64).min(n);
        let closed = h.connected - h.open;
        let refused = seen.delta(&REFUSED);
        let checks = vec![
            Check::new(
                "all_connected",
                h.connected == n,
                format!("{} of {n} sockets connected", h.connected),
            ),
            Check::new(
                "capped",
                h.open == cap,
                format!("{} still open after {SETTLE:?} (cap {cap})", h.open),
            ),
            Check::new(
                "closed_at_accept",
                closed == n - cap,
                format!(
                    "{closed} closed, {} expected: {}",
                    n - cap,
                    client::tally_text(&h.tally)
                ),
            ),
            Check::maybe(
                "refusals_counted",
                refused.map(|r| r as u64 == closed),
                format!(
                    "accept_errors{{reason=pending_per_ip}} +{} ({closed} closed)",
                    probe::shown(refused)
                ),
            ),
        ];
        let mut raw = Raw::default();
        raw.put("sockets", n);
        raw.put("cap", cap);
        raw.put("open_after_settle", h.open);
        raw.put("outcomes", &h.tally);
        let summary = format!(
            "{} of {n} open after {SETTLE:?} (cap {cap}), {closed} closed at accept; counter +{}",
            h.open,
            probe::shown(refused)
        );
        Judged {
            summary,
            checks,
            raw,
        }
    }
}
