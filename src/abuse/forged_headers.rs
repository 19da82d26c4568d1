//! Scenario `forged_headers`: behind a real nginx (`--via`), clients that already hold their
//! one connection try for more, each upgrade carrying a forged `X-Forwarded-For`, a forged
//! `Forwarded`, or both, naming a random address.
//!
//! `scripts/abuse.sh` runs the server with `--trusted-proxy 127.0.0.1/32
//! --max-connections-per-ip 1 --log-level debug` and nginx in front of it with the shipped
//! configuration's proxy settings (`deploy/nginx.conf`: `X-Forwarded-For` appended with the
//! address nginx saw, `Forwarded` cleared). The server believes the right-most address that
//! is not a trusted proxy, so a client's own header changes nothing: every forged attempt
//! must get 429, none a 101; `handshake_failures_total{reason="address_full"}` must rise by
//! exactly as many; the server's log (`--server-log`) must name the clients' real addresses
//! on each refusal and never a forged one. The held connections must still be served, and
//! a normal client (direct, the watcher) too.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use super::AbuseConfig;
use super::client::{self, Tally, WsConn};
use super::crowd::{self, Pool};
use super::drive::{Counter, Cx, Judged, Play, Reads, Seen};
use super::ops::{self, Frames};
use super::probe;
use super::report::{Check, Raw};

/// Sources that hold one connection each and then forge (the watcher uses 127.0.0.1).
const HOLDERS: u8 = 4;
/// Time allowed for each connect and upgrade through the proxy.
const STEP: Duration = Duration::from_secs(5);
/// The refusals the server counts for the per-address cap.
const ADDRESS_FULL: Counter = Counter::new(
    "address_full",
    "tickcast_handshake_failures_total",
    &[("reason", "address_full")],
);
/// The outcome every forged attempt must have.
const REFUSED: &str = "http_429";

/// Which forged header an attempt carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Forgery {
    /// `X-Forwarded-For: <addr>`.
    Xff,
    /// `Forwarded: for=<addr>`.
    Forwarded,
    /// Both.
    Both,
}

impl Forgery {
    /// Attempt `i`'s forgery: the three in turn.
    pub fn of(i: usize) -> Forgery {
        [Forgery::Xff, Forgery::Forwarded, Forgery::Both][i % 3]
    }

    /// The headers naming `addr`.
    pub fn headers(self, addr: &str) -> Vec<(&'static str, String)> {
        let xff = ("X-Forwarded-For", addr.to_string());
        let fwd = ("Forwarded", format!("for={addr}"));
        match self {
            Forgery::Xff => vec![xff],
            Forgery::Forwarded => vec![fwd],
            Forgery::Both => vec![xff, fwd],
        }
    }
}

/// A random public-looking IPv4 address (never loopback, never one of the real sources).
pub fn forged_address() -> String {
    format!(
        "{}.{}.{}.{}",
        fastrand::u8(1..=126),
        fastrand::u8(..),
        fastrand::u8(..),
        fastrand::u8(1..=254)
    )
}

/// The source of holder `k`: 127.0.0.2 ...
fn holder(k: usize) -> std::net::Ipv4Addr {
    std::net::Ipv4Addr::new(127, 0, 0, 2 + (k % HOLDERS as usize) as u8)
}

/// Scenario `forged_headers`: `attempts` forged upgrades through the proxy.
pub struct ForgedHeaders {
    attempts: usize,
}

impl ForgedHeaders {
    /// The scenario as `cfg` sizes it.
    pub fn new(cfg: &AbuseConfig) -> ForgedHeaders {
        ForgedHeaders {
            attempts: cfg.count_or(60, 1_200),
        }
    }
}

/// What the attempts got.
pub struct Forged {
    via: SocketAddr,
    held: usize,
    hold_failures: Tally,
    /// Outcome of each attempt by label, per forgery (`xff`, `forwarded`, `both`).
    tallies: Vec<Tally>,
    /// Every forged address sent.
    forged: Vec<String>,
    /// Held connections that still received ticks after the attempts.
    held_served: usize,
    /// The server's log, when given and readable.
    log: Option<Result<String, String>>,
}

impl Play for ForgedHeaders {
    type Clients = (SocketAddr, Vec<WsConn>, Tally);
    type Outcome = Forged;

    fn expectation(&self) -> &'static str {
        "behind nginx with --trusted-proxy and --max-connections-per-ip 1, upgrades with forged X-Forwarded-For / Forwarded from clients holding their one connection: every one 429 (none 101), address_full counts each, the log names only the real addresses; held connections and a normal client served"
    }

    fn reads(&self) -> Reads {
        Reads::scrape(&[ADDRESS_FULL]).watched()
    }

    fn connect(&self, cx: &Cx) -> Result<(SocketAddr, Vec<WsConn>, Tally), String> {
        let via = cx
            .cfg
            .via
            .ok_or("forged_headers needs --via (the proxy in front of the server)")?;
        let (held, failures) = crowd::each(HOLDERS as usize, |k| {
            WsConn::open(via, Some(holder(k)), "/ws?topics=ticks", STEP)
        });
        Ok((via, held, failures))
    }

    fn run(
        &self,
        cx: &Cx,
        (via, mut held, hold_failures): (SocketAddr, Vec<WsConn>, Tally),
    ) -> Result<Forged, String> {
        let forged: Vec<String> = (0..self.attempts).map(|_| forged_address()).collect();
        let spec = Pool {
            total: self.attempts,
            threads: cx.cfg.concurrency,
            until: None,
            groups: 3,
        };
        let pooled = crowd::pool(
            &spec,
            |i| {
                let headers = Forgery::of(i).headers(&forged[i]);
                let headers: Vec<(&str, &str)> =
                    headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
                Some(
                    match WsConn::open_with(
                        via,
                        Some(holder(i)),
                        "/ws?topics=ticks",
                        &headers,
                        STEP,
                    ) {
                        Ok(conn) => {
                            client::abort(conn.stream);
                            "upgraded".to_string()
                        }
                        Err(reason) => reason,
                    },
                )
            },
            |_| {},
        )?;
        // The held connections are still open and served: each reads a tick.
        let deadline = Instant::now() + STEP;
        let mut held_served = 0;
        for conn in held.iter_mut() {
            let mut frames = Frames::default();
            if ops::read_for(conn, deadline, &mut frames, |f| f.messages > 0) {
                held_served += 1;
            }
        }
        let count = held.len();
        for conn in held {
            client::abort(conn.stream);
        }
        // The server logs a refusal in the turn that answers it: give the writes a moment.
        std::thread::sleep(Duration::from_millis(300));
        let log = cx
            .cfg
            .server_log
            .as_ref()
            .map(|p| std::fs::read_to_string(p).map_err(|e| format!("{}: {e}", p.display())));
        Ok(Forged {
            via,
            held: count,
            hold_failures,
            tallies: pooled.tallies,
            forged,
            held_served,
            log,
        })
    }

    fn judge(&self, f: Forged, seen: &Seen) -> Judged {
        let n = self.attempts as u64;
        let count = |label: &str| -> u64 {
            f.tallies
                .iter()
                .map(|t| t.get(label).copied().unwrap_or(0))
                .sum()
        };
        let refused = count(REFUSED);
        let upgraded = count("upgraded");
        let counted = seen.delta(&ADDRESS_FULL);
        let real: Vec<String> = (0..HOLDERS as usize)
            .map(|k| format!("{}:0: HTTP 429 (address_full)", holder(k)))
            .collect();
        let log_figures = match &f.log {
            Some(Ok(text)) => {
                let named = f.forged.iter().filter(|a| contains_addr(text, a)).count();
                let logged: usize = real.iter().map(|r| text.matches(r.as_str()).count()).sum();
                Some((named, logged))
            }
            _ => None,
        };
        let mut all = Tally::new();
        for (k, v) in f.tallies.iter().flatten() {
            *all.entry(k.clone()).or_default() += v;
        }
        let checks = vec![
            Check::new(
                "held",
                f.held == HOLDERS as usize,
                format!(
                    "{} of {HOLDERS} clients hold a connection through {}; failures: {}",
                    f.held,
                    f.via,
                    client::tally_text(&f.hold_failures)
                ),
            ),
            Check::new(
                "all_429",
                refused == n && upgraded == 0,
                format!(
                    "{refused} of {n} forged upgrades 429, {upgraded} upgraded; by header: xff {}, forwarded {}, both {}",
                    client::tally_text(&f.tallies[0]),
                    client::tally_text(&f.tallies[1]),
                    client::tally_text(&f.tallies[2])
                ),
            ),
            Check::maybe(
                "counted_address_full",
                counted.map(|c| c as u64 == refused && refused == n),
                format!(
                    "handshake_failures{{reason=address_full}} +{} ({refused} refused)",
                    probe::shown(counted)
                ),
            ),
            Check::maybe(
                "log_real_addresses",
                log_figures.map(|(named, logged)| named == 0 && logged as u64 == n),
                match (&f.log, log_figures) {
                    (None, _) => "no --server-log: the log was not read".to_string(),
                    (Some(Err(e)), _) => format!("log unreadable: {e}"),
                    (_, Some((named, logged))) => format!(
                        "server log: {logged} refusals under the real 127.0.0.2-{} addresses ({n} attempts), {named} of {n} forged addresses named",
                        1 + HOLDERS
                    ),
                    _ => String::new(),
                },
            ),
            Check::new(
                "held_served",
                f.held_served == f.held && f.held > 0,
                format!(
                    "{} of {} held connections still read ticks",
                    f.held_served, f.held
                ),
            ),
        ];
        let mut raw = Raw::default();
        raw.put("attempts", n);
        raw.put("outcomes", &all);
        raw.put("refused_429", refused);
        raw.put("upgraded", upgraded);
        raw.put("held", f.held);
        raw.put("forged_named_in_log", log_figures.map(|x| x.0));
        raw.put("refusals_logged_real", log_figures.map(|x| x.1));
        raw.put("forged_sample", &f.forged[..f.forged.len().min(5)]);
        let summary = format!(
            "{refused} of {n} forged upgrades through nginx got 429, {upgraded} got 101; address_full +{}; log: {}",
            probe::shown(counted),
            log_figures.map_or("not read".into(), |(named, logged)| format!(
                "{logged} refusals under real addresses, {named} forged named"
            ))
        );
        Judged {
            summary,
            checks,
            raw,
        }
    }
}

/// Whether `text` names the IPv4 address `addr` as a whole (not as part of a longer one:
/// `1.2.3.4` is not in `11.2.3.45`).
pub fn contains_addr(text: &str, addr: &str) -> bool {
    let part = |c: Option<char>| c.is_some_and(|c| c.is_ascii_digit() || c == '.');
    text.match_indices(addr).any(|(i, _)| {
        !part(text[..i].chars().next_back()) && !part(text[i + addr.len()..].chars().next())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forgeries_take_turns_and_name_the_address() {
        assert_eq!(Forgery::of(0), Forgery::Xff);
        assert_eq!(Forgery::of(4), Forgery::Forwarded);
        assert_eq!(
            Forgery::Both.headers("9.8.7.6"),
            vec![
                ("X-Forwarded-For", "9.8.7.6".to_string()),
                ("Forwarded", "for=9.8.7.6".to_string())
            ]
        );
        for _ in 0..1000 {
            let a: std::net::Ipv4Addr = forged_address().parse().unwrap();
            assert!(!a.is_loopback() && !a.is_unspecified(), "{a}");
        }
    }

    #[test]
    fn an_address_is_found_only_whole() {
        let log = "127.0.0.2:0: HTTP 429 (address_full)\n11.2.3.45 something";
        assert!(contains_addr(log, "127.0.0.2"));
        assert!(!contains_addr(log, "1.2.3.4"));
        assert!(!contains_addr(log, "27.0.0.2"));
        assert!(contains_addr("for 1.2.3.4:0", "1.2.3.4"));
    }
}
