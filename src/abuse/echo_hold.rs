//! Scenario `echo_hold`: clients open `/echo`, write as fast as the socket takes it (up to
//! 1.3 MB each) and never read what comes back.
//!
//! Every echo is the client's own bytes, so unlike a broadcast frame it is shared with no
//! one: what the server holds for these clients is theirs alone. `/echo` is charged to the
//! publish limits like `/ws` (a 256 KiB byte burst at 128 KiB/s by default) and its first
//! message past them closes the connection with 1008, so each client can make the server
//! hold about its byte burst, not its 1 MiB outbox. The server's RSS is sampled while they
//! write (with `--server-pid`); its counters must show a 1008 and a `rate_limited` per
//! client; a normal client keeps reading ticks.

use std::io::{self, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use super::client::{self, Tally, WsConn, op};
use super::crowd;
use super::drive::{Counter, Cx, Judged, Play, Reads, Seen};
use super::probe;
use super::report::{Check, Raw};
use super::{AbuseConfig, server_sample};

/// What each client tries to write, bytes.
const TOTAL: usize = 1_300_000;
/// One message, bytes.
const MESSAGE: usize = 16 * 1024;
/// Largest server RSS growth per client accepted, KiB: the 256 KiB byte burst, what the
/// rate refills while it arrives, and the connection's own buffers; the outbox (1 MiB)
/// would be four times that.
const KIB_PER_CLIENT_LIMIT: f64 = 512.0;
/// Interval between two RSS samples.
const SAMPLE_EVERY: Duration = Duration::from_millis(100);
/// Connections the server closed with 1008.
const POLICY_CLOSES: Counter = Counter::new(
    "server_1008_closes",
    "tickcast_closes_total",
    &[("code", "1008")],
);
/// Messages refused for the rate limits.
const RATE_LIMITED: Counter = Counter::new(
    "server_rate_limited",
    "tickcast_client_errors_total",
    &[("code", "rate_limited")],
);

/// Scenario `echo_hold`: `clients` non-reading `/echo` writers for at most `window`.
pub struct EchoHold {
    clients: usize,
    window: Duration,
}

impl EchoHold {
    /// The scenario as `cfg` sizes it.
    pub fn new(cfg: &AbuseConfig) -> EchoHold {
        EchoHold {
            clients: cfg.count_or(40, 100),
            window: cfg.duration_or(Duration::from_secs(4), Duration::from_secs(8)),
        }
    }
}

/// One writer: its socket and how much it got written.
pub struct Writer {
    stream: TcpStream,
    written: usize,
    /// Why it stopped writing before [`TOTAL`], if it did (`closed_reset`, ...).
    ended: Option<&'static str>,
}

/// What the writers saw.
pub struct Held {
    connected: u64,
    failures: Tally,
    /// Bytes written, over every client.
    written: u64,
    /// How the writers ended.
    endings: Tally,
    rss_peak: Option<u64>,
}

impl Play for EchoHold {
    type Clients = (Vec<Writer>, Tally);
    type Outcome = Held;

    fn expectation(&self) -> &'static str {
        "non-reading /echo writers are closed with 1008 at their byte burst: server RSS growth <= 512 KiB per client (not the 1 MiB outbox), a 1008 and a rate_limited counted per client, a normal client served throughout"
    }

    fn reads(&self) -> Reads {
        Reads::scrape(&[POLICY_CLOSES, RATE_LIMITED]).watched()
    }

    fn connect(&self, cx: &Cx) -> Result<(Vec<Writer>, Tally), String> {
        let cfg = cx.cfg;
        Ok(crowd::each(self.clients, |i| {
            let conn = WsConn::open(cfg.target, cfg.source(i), "/echo", Duration::from_secs(10))?;
            conn.stream
                .set_nonblocking(true)
                .map_err(|_| "socket_error".to_string())?;
            Ok(Writer {
                stream: conn.stream,
                written: 0,
                ended: None,
            })
        }))
    }

    fn run(&self, cx: &Cx, (mut writers, failures): (Vec<Writer>, Tally)) -> Result<Held, String> {
        let connected = writers.len() as u64;
        let message = client::frame(
            op::FIN | op::BINARY,
            &vec![b'e'; MESSAGE],
            Some([7, 7, 7, 7]),
            false,
        );
        let end = Instant::now() + self.window;
        let mut rss_peak = cx.host.rss_kib;
        let mut next_sample = Instant::now();
        while Instant::now() < end {
            let mut busy = false;
            for w in writers
                .iter_mut()
                .filter(|w| w.ended.is_none() && w.written < TOTAL)
            {
                let at = w.written % message.len();
                match w.stream.write(&message[at..]) {
                    Ok(n) => {
                        w.written += n;
                        busy = true;
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) => {
                        w.ended = Some(match e.kind() {
                            io::ErrorKind::ConnectionReset => "closed_reset",
                            io::ErrorKind::BrokenPipe => "closed_pipe",
                            _ => "write_error",
                        });
                    }
                }
            }
            if Instant::now() >= next_sample {
                next_sample += SAMPLE_EVERY;
                rss_peak = rss_peak.max(server_sample(cx.cfg).0);
            }
            if !busy {
                std::thread::sleep(Duration::from_millis(5));
            }
        }
        let mut endings = Tally::new();
        let mut written = 0u64;
        for w in writers.drain(..) {
            written += w.written as u64;
            let label = match w.ended {
                Some(label) => label,
                None if w.written >= TOTAL => "wrote_all",
                None => match client::tcp_state(&w.stream) {
                    Some(client::TCP_ESTABLISHED) => "blocked",
                    _ => "closed",
                },
            };
            client::count(&mut endings, label);
            client::abort(w.stream);
        }
        Ok(Held {
            connected,
            failures,
            written,
            endings,
            rss_peak,
        })
    }

    fn judge(&self, h: Held, seen: &Seen) -> Judged {
        let n = self.clients as u64;
        let closes = seen.delta(&POLICY_CLOSES);
        let limited = seen.delta(&RATE_LIMITED);
        let per_client = match (seen.host_before.rss_kib, h.rss_peak) {
            (Some(before), Some(peak)) if n > 0 => {
                Some(peak.saturating_sub(before) as f64 / n as f64)
            }
            _ => None,
        };
        let checks = vec![
            Check::new(
                "all_connected",
                h.connected == n,
                format!(
                    "{} of {n} upgraded; failures: {}",
                    h.connected,
                    client::tally_text(&h.failures)
                ),
            ),
            Check::maybe(
                "rss_per_client",
                per_client.map(|k| k <= KIB_PER_CLIENT_LIMIT),
                format!(
                    "server RSS growth {} KiB per client at the peak (limit {KIB_PER_CLIENT_LIMIT})",
                    per_client.map_or("?".into(), |k| format!("{k:.0}"))
                ),
            ),
            Check::maybe(
                "closed_1008",
                closes.map(|c| c as u64 >= n),
                format!(
                    "closes{{code=1008}} +{} ({n} clients)",
                    probe::shown(closes)
                ),
            ),
            Check::maybe(
                "rate_limited_counted",
                limited.map(|c| c as u64 >= n),
                format!(
                    "client_errors{{code=rate_limited}} +{}",
                    probe::shown(limited)
                ),
            ),
        ];
        let mut raw = Raw::default();
        raw.put("clients", n);
        raw.put("written_bytes", h.written);
        raw.put("endings", &h.endings);
        raw.put("server_rss_before_kib", seen.host_before.rss_kib);
        raw.put("server_rss_peak_kib", h.rss_peak);
        raw.put("rss_kib_per_client", per_client);
        let summary = format!(
            "{n} writers, {:.1} MB written ({}); RSS {} KiB per client at the peak; 1008 closes +{}",
            h.written as f64 / 1e6,
            client::tally_text(&h.endings),
            per_client.map_or("?".into(), |k| format!("{k:.0}")),
            probe::shown(closes)
        );
        Judged {
            summary,
            checks,
            raw,
        }
    }
}
