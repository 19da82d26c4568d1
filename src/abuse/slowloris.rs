//! Scenario `slowloris`: many sockets each send an incomplete request head, one byte a
//! second, and never finish it.
//!
//! The server must close every one at its handshake timeout (5 s by default): the time from
//! each `connect()` to the server's close (EOF or reset) is recorded, and all must fall within
//! 4.9-6.5 s; `tickcast_handshake_failures_total{reason="timeout"}` must rise by the number
//! of sockets. Meanwhile 100 normal clients open WebSockets (timed from `connect()` to `101`)
//! and a normal client keeps reading ticks: the attack must not slow them down.
//!
//! The sockets come from addresses of their own, 127.0.1.1 and up, at most three quarters of
//! `--max-pending-per-ip` (128 by default) from each: the scenario measures the handshake
//! timeout, and more from one address would be closed at accept instead (`pending_sockets`
//! plays that).

use std::io::{self, Read, Write};
use std::net::{Ipv4Addr, TcpStream};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use mio::{Events, Interest, Poll, Token};

use super::AbuseConfig;
use super::client::{self, Tally};
use super::crowd;
use super::drive::{Counter, Cx, Judged, Play, Reads, Seen};
use super::probe;
use super::report::{Check, Raw, quantile, sorted};
use super::watch::{self, HandshakeTimes};

/// The head sent a byte at a time (never completed within the timeout).
const SLOW_HEAD: &[u8] =
    b"GET /ws?topics=ticks HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n";
/// Interval between two bytes on one socket.
const BYTE_EVERY: Duration = Duration::from_secs(1);
/// Earliest accepted close, s after connect (timer granularity).
const CLOSE_MIN: f64 = 4.9;
/// Latest accepted close, s after connect.
const CLOSE_MAX: f64 = 6.5;
/// How long a socket is kept before the scenario gives up on the server closing it.
const GIVE_UP: Duration = Duration::from_secs(12);
/// Normal handshakes timed during the attack.
const NORMAL_CLIENTS: usize = 100;
/// Largest p99 connect -> 101 accepted for the normal clients, ms.
const NORMAL_P99_MS: f64 = 1000.0;
/// The server's count of handshakes it timed out.
const TIMEOUTS: Counter = Counter::new(
    "server_timeouts",
    "tickcast_handshake_failures_total",
    &[("reason", "timeout")],
);

/// One slow socket.
pub struct Slow {
    stream: mio::net::TcpStream,
    connected: Instant,
    sent: usize,
    next_byte: Instant,
    /// Seconds from connect to the server's close, once closed.
    closed_after: Option<f64>,
    /// Whether the server sent anything (an HTTP answer) before closing.
    answered: bool,
}

/// Scenario `slowloris`: `sockets` slow request heads.
pub struct Slowloris {
    sockets: usize,
    /// Sockets per source address, under the server's cap on pending sockets per address.
    per_source: usize,
}

impl Slowloris {
    /// The scenario as `cfg` sizes it.
    pub fn new(cfg: &AbuseConfig) -> Slowloris {
        let cap = crate::config::ServerConfig::default().max_pending_per_ip;
        Slowloris {
            sockets: cfg.count_or(200, 2_000),
            per_source: (cap * 3 / 4).max(1),
        }
    }

    /// The source address of slow socket `i`: 127.0.1.1 for the first `per_source`, then
    /// 127.0.1.2, and so on (at most 2,000 sockets: 21 addresses with the default cap).
    fn source(&self, i: usize) -> Ipv4Addr {
        let n = i / self.per_source;
        Ipv4Addr::new(127, 0, 1 + (n / 250) as u8, 1 + (n % 250) as u8)
    }
}

/// The slow sockets on their poll, and the normal handshakes timed meanwhile.
pub struct Attack {
    poll: Poll,
    socks: Vec<Slow>,
    /// Connect failures, then how each socket ended.
    tally: Tally,
    connect_secs: f64,
    normal: JoinHandle<HandshakeTimes>,
}

/// What the attack saw.
pub struct Closed {
    /// Seconds from connect to close of every closed socket, sorted.
    times: Vec<f64>,
    connected: u64,
    connect_secs: f64,
    answered: u64,
    tally: Tally,
    normal: HandshakeTimes,
}

impl Play for Slowloris {
    type Clients = Attack;
    type Outcome = Closed;

    fn expectation(&self) -> &'static str {
        "every slow request head closed at the 5 s handshake timeout (4.9-6.5 s after connect), counted as reason=timeout; 100 normal handshakes meanwhile succeed with p99 <= 1 s; a normal client served throughout"
    }

    fn reads(&self) -> Reads {
        Reads::scrape(&[TIMEOUTS]).watched()
    }

    fn connect(&self, cx: &Cx) -> Result<Attack, String> {
        let cfg = cx.cfg;
        let poll = Poll::new().map_err(|e| format!("poll: {e}"))?;
        let started = Instant::now();
        let (streams, tally) = crowd::each(self.sockets, |i| {
            client::connect(cfg.target, Some(self.source(i)), Duration::from_secs(5))
                .map(|s| (s, Instant::now()))
                .map_err(|e| client::connect_failure(&e).to_string())
        });
        let mut socks: Vec<Slow> = Vec::with_capacity(streams.len());
        for (s, connected) in streams {
            s.set_nonblocking(true).map_err(|e| e.to_string())?;
            let mut stream = mio::net::TcpStream::from_std(s);
            poll.registry()
                .register(&mut stream, Token(socks.len()), Interest::READABLE)
                .map_err(|e| format!("register: {e}"))?;
            socks.push(Slow {
                stream,
                connected,
                sent: 0,
                next_byte: connected,
                closed_after: None,
                answered: false,
            });
        }
        let connect_secs = started.elapsed().as_secs_f64();
        // Normal handshakes over the heart of the attack: from 1 s in, one every 30 ms.
        let normal = watch::time_handshakes(
            cfg.target,
            Some(std::net::Ipv4Addr::new(127, 0, 0, 9)),
            NORMAL_CLIENTS,
            Duration::from_secs(1).saturating_sub(started.elapsed()),
            Duration::from_millis(30),
            Duration::from_secs(10),
        );
        Ok(Attack {
            poll,
            socks,
            tally,
            connect_secs,
            normal,
        })
    }

    fn run(&self, _: &Cx, a: Attack) -> Result<Closed, String> {
        let Attack {
            mut poll,
            mut socks,
            mut tally,
            connect_secs,
            normal,
        } = a;
        let connected = socks.len() as u64;
        let mut events = Events::with_capacity(1024);
        let mut buf = [0u8; 4096];
        let give_up = Instant::now() + GIVE_UP;
        let mut open = socks.len();
        while open > 0 && Instant::now() < give_up {
            let now = Instant::now();
            for s in socks.iter_mut().filter(|s| s.closed_after.is_none()) {
                if now >= s.next_byte && s.sent < SLOW_HEAD.len() {
                    match s.stream.write(&SLOW_HEAD[s.sent..s.sent + 1]) {
                        Ok(_) => s.sent += 1,
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                        Err(_) => {
                            s.closed_after = Some(s.connected.elapsed().as_secs_f64());
                            client::count(&mut tally, "closed_reset");
                            open -= 1;
                            continue;
                        }
                    }
                    s.next_byte += BYTE_EVERY;
                }
            }
            let wake = socks
                .iter()
                .filter(|s| s.closed_after.is_none() && s.sent < SLOW_HEAD.len())
                .map(|s| s.next_byte)
                .min()
                .unwrap_or(give_up)
                .min(give_up);
            let timeout = wake.saturating_duration_since(Instant::now());
            if let Err(e) = poll.poll(&mut events, Some(timeout))
                && e.kind() != io::ErrorKind::Interrupted
            {
                return Err(format!("poll: {e}"));
            }
            for ev in events.iter() {
                let s = &mut socks[ev.token().0];
                if s.closed_after.is_some() {
                    continue;
                }
                if let Some(label) = drain(&mut s.stream, &mut buf, &mut s.answered) {
                    s.closed_after = Some(s.connected.elapsed().as_secs_f64());
                    client::count(&mut tally, label);
                    open -= 1;
                }
            }
        }
        let mut times = Vec::with_capacity(socks.len());
        let mut answered = 0u64;
        for s in &socks {
            answered += u64::from(s.answered);
            match s.closed_after {
                Some(t) => times.push(t),
                None => client::count(&mut tally, "never_closed"),
            }
        }
        // Nothing of these sockets is worth a FIN handshake: reset whatever is left.
        for s in socks.drain(..) {
            client::abort(TcpStream::from(s.stream));
        }
        let normal = normal.join().map_err(|_| "handshake thread panicked")?;
        Ok(Closed {
            times: sorted(times),
            connected,
            connect_secs,
            answered,
            tally,
            normal,
        })
    }

    fn judge(&self, c: Closed, seen: &Seen) -> Judged {
        let n = self.sockets;
        let times = &c.times;
        let timeouts = seen.delta(&TIMEOUTS);
        let in_window = times
            .iter()
            .filter(|t| (CLOSE_MIN..=CLOSE_MAX).contains(*t))
            .count() as u64;
        let normal_ms = sorted(c.normal.ok_ms.clone());
        let (p50, p99) = (quantile(&normal_ms, 0.5), quantile(&normal_ms, 0.99));
        let normal_failed: u64 = c.normal.failures.values().sum();
        let times_text = if times.is_empty() {
            "no close".to_string()
        } else {
            format!(
                "min {:.2} / p50 {:.2} / p99 {:.2} / max {:.2} s",
                times[0],
                quantile(times, 0.5),
                quantile(times, 0.99),
                times[times.len() - 1]
            )
        };
        let checks = vec![
            Check::new(
                "all_connected",
                c.connected == n as u64,
                format!("{} of {n} slow sockets connected", c.connected),
            ),
            Check::new(
                "closed_at_timeout",
                in_window == n as u64,
                format!(
                    "{in_window} of {n} closed {CLOSE_MIN}-{CLOSE_MAX} s after connect ({times_text}); {}",
                    client::tally_text(&c.tally)
                ),
            ),
            Check::maybe(
                "timeouts_counted",
                timeouts.map(|t| t as u64 == n as u64),
                format!(
                    "handshake_failures{{reason=timeout}} +{} (expected +{n})",
                    probe::shown(timeouts)
                ),
            ),
            Check::new(
                "normal_handshakes",
                normal_failed == 0 && normal_ms.len() == NORMAL_CLIENTS && p99 <= NORMAL_P99_MS,
                format!(
                    "{} of {NORMAL_CLIENTS} normal clients upgraded, connect->101 p50 {p50:.1} ms p99 {p99:.1} ms (limit {NORMAL_P99_MS} ms); failures: {}",
                    normal_ms.len(),
                    client::tally_text(&c.normal.failures)
                ),
            ),
        ];
        let mut raw = Raw::default();
        raw.put("sockets", n);
        raw.put("connect_secs", (c.connect_secs * 1000.0).round() / 1000.0);
        raw.put("outcomes", &c.tally);
        raw.put("answered_before_close", c.answered);
        raw.put("close_secs_min", times.first());
        raw.put("close_secs_p50", quantile(times, 0.5));
        raw.put("close_secs_p99", quantile(times, 0.99));
        raw.put("close_secs_max", times.last());
        raw.put("closed_in_window", in_window);
        raw.put("normal_ok", normal_ms.len());
        raw.put("normal_p50_ms", p50);
        raw.put("normal_p99_ms", p99);
        raw.put("normal_failures", &c.normal.failures);
        let summary = format!(
            "{in_window}/{n} closed in {CLOSE_MIN}-{CLOSE_MAX} s ({times_text}); timeout counter +{}; normal connect->101 p50 {p50:.1} ms p99 {p99:.1} ms ({} ok)",
            probe::shown(timeouts),
            normal_ms.len(),
        );
        Judged {
            summary,
            checks,
            raw,
        }
    }
}

/// Reads what a slow socket received. `Some(label)` once the server has closed it.
fn drain(
    stream: &mut mio::net::TcpStream,
    buf: &mut [u8],
    answered: &mut bool,
) -> Option<&'static str> {
    loop {
        match stream.read(buf) {
            Ok(0) => return Some("closed_eof"),
            Ok(_) => *answered = true,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return None,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(_) => return Some("closed_reset"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_source_holds_more_than_the_pending_cap_allows() {
        let target = "127.0.0.1:1".parse().unwrap();
        let cfg = AbuseConfig::new(target, super::super::Scenario::Slowloris);
        let s = Slowloris::new(&cfg);
        let cap = crate::config::ServerConfig::default().max_pending_per_ip;
        let mut per: std::collections::HashMap<Ipv4Addr, usize> = Default::default();
        for i in 0..s.sockets {
            let ip = s.source(i);
            assert!(ip.is_loopback() && ip.octets()[2] >= 1, "{ip}");
            *per.entry(ip).or_default() += 1;
        }
        assert!(per.values().all(|&n| n < cap), "{per:?}");
        assert_eq!(per.len(), s.sockets.div_ceil(s.per_source));
    }
}
