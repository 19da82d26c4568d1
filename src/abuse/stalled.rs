//! Scenario `stalled_readers`: clients subscribe to `ticks` and then never read, while the
//! server publishes fast (the suite starts it with a faster ticker for this scenario).
//!
//! What a stalled socket costs lives mostly outside the server process: the kernel keeps
//! what was written in the send queue, and send-buffer autotuning let that grow to 3-4 MB
//! per socket. So the host's TCP memory is read from `/proc/net/sockstat` every 250 ms and
//! its peak compared with the stalled count and with the host's `tcp_mem` pressure
//! threshold. Each stalled socket's TCP state is read without reading its data (`TCP_INFO`),
//! to see when the server closed it; the server's counters say whether it timed the write
//! out (`tickcast_write_timeouts_total`) or dropped frames for it (`drops{outbox_full}`).
//! A normal client on the same server must miss no seq.

use std::net::TcpStream;
use std::time::{Duration, Instant};

use super::client::{self, TCP_ESTABLISHED, Tally, WsConn};
use super::crowd;
use super::drive::{Counter, Cx, Judged, Play, Reads, Seen};
use super::probe::{self, SockStat};
use super::report::{Check, Raw, quantile, sorted};
use super::{AbuseConfig, mib, server_sample};

/// Largest kernel TCP memory per stalled socket at the peak, MiB.
pub const MIB_PER_STALLED_LIMIT: f64 = 1.0;
/// The peak must stay below this fraction of the host's `tcp_mem` pressure threshold.
pub const PRESSURE_FRACTION_LIMIT: f64 = 0.25;
/// The server's default write timeout, s.
const WRITE_TIMEOUT: f64 = 10.0;
/// Slack on top of the write timeout for a stalled client's close, s.
const CLOSE_SLACK: f64 = 5.0;
/// Interval between two samples.
const SAMPLE_EVERY: Duration = Duration::from_millis(250);
/// The server's write timeouts.
const WRITE_TIMEOUTS: Counter = Counter::new(
    "server_write_timeouts",
    "tickcast_write_timeouts_total",
    &[],
);
/// Frames the server dropped for a full outbox.
const OUTBOX_DROPS: Counter = Counter::new(
    "server_outbox_drops",
    "tickcast_drops_total",
    &[("reason", "outbox_full")],
);
/// Clients the server closed as slow consumers.
const SLOW_CLOSES: Counter = Counter::new(
    "server_slow_consumer_closes",
    "tickcast_slow_consumer_disconnects_total",
    &[],
);

/// One stalled client.
pub struct Stalled {
    stream: TcpStream,
    connected: Instant,
    /// Seconds from connect to the moment its state left ESTABLISHED, and that state.
    closed: Option<(f64, u8)>,
}

/// Scenario `stalled_readers`: `stalled` clients that never read, for `window`.
pub struct StalledReaders {
    stalled: usize,
    window: Duration,
}

impl StalledReaders {
    /// The scenario as `cfg` sizes it.
    pub fn new(cfg: &AbuseConfig) -> StalledReaders {
        StalledReaders {
            stalled: cfg.count_or(50, 200),
            window: cfg.duration_or(Duration::from_secs(14), Duration::from_secs(30)),
        }
    }
}

/// The stalled clients, and the host's TCP memory before them.
pub struct Connected {
    mem0: SockStat,
    tcp_mem: Option<(u64, u64, u64)>,
    started: Instant,
    stalled: Vec<Stalled>,
    failures: Tally,
}

/// What the window saw.
pub struct Sampled {
    c: Connected,
    peak: SockStat,
    rss_peak: Option<u64>,
    series: Vec<(f64, u64)>,
    server_let_go: Option<f64>,
}

impl Play for StalledReaders {
    type Clients = Connected;
    type Outcome = Sampled;

    fn expectation(&self) -> &'static str {
        "kernel TCP memory bounded (<= 1 MiB per stalled socket, peak <= 1/4 of tcp_mem pressure); stalled clients closed within the write timeout (10 s + 5 s) or dropped from (outbox_full); a normal reader misses no seq"
    }

    fn reads(&self) -> Reads {
        Reads::scrape(&[WRITE_TIMEOUTS, OUTBOX_DROPS, SLOW_CLOSES]).watched()
    }

    fn connect(&self, cx: &Cx) -> Result<Connected, String> {
        let cfg = cx.cfg;
        let mem0 = cx.host.sockstat.ok_or("cannot read /proc/net/sockstat")?;
        let tcp_mem = probe::tcp_mem();
        let started = Instant::now();
        // Upgraded, then never read again: whatever follows the 101 stays in the kernel.
        let (stalled, failures) = crowd::each(self.stalled, |i| {
            WsConn::open(
                cfg.target,
                cfg.source(i),
                "/ws?topics=ticks",
                Duration::from_secs(10),
            )
            .map(|conn| Stalled {
                stream: conn.stream,
                connected: Instant::now(),
                closed: None,
            })
        });
        Ok(Connected {
            mem0,
            tcp_mem,
            started,
            stalled,
            failures,
        })
    }

    fn run(&self, cx: &Cx, c: Connected) -> Result<Sampled, String> {
        let cfg = cx.cfg;
        let Connected {
            mem0,
            started,
            mut stalled,
            ..
        } = c;
        let window = self.window;
        let mut peak = mem0;
        let mut rss_peak = cx.host.rss_kib;
        let mut series: Vec<(f64, u64)> = Vec::new();
        // The server's own view: its open connections, once a second. Back to what it had
        // before the stalled clients came means it let go of all of them, whether or not the
        // client side saw a FIN (one queued behind unread bytes never arrives).
        let conns0 = cx.before.sum("tickcast_connections", &[]);
        let mut server_let_go: Option<f64> = None;
        let mut next_scrape = Instant::now();
        let end = started + window;
        while Instant::now() < end {
            if server_let_go.is_none() && Instant::now() >= next_scrape {
                next_scrape += Duration::from_secs(1);
                let conns = probe::scrape(cfg.target)
                    .ok()
                    .and_then(|m| m.sum("tickcast_connections", &[]));
                // `before` counted its own scrape; now the watcher is one more.
                if let (Some(now), Some(base)) = (conns, conns0)
                    && now <= base + 1.0
                    && !stalled.is_empty()
                {
                    server_let_go = Some(started.elapsed().as_secs_f64());
                }
            }
            if let Some(s) = probe::sockstat() {
                if s.mem_pages > peak.mem_pages {
                    peak = s;
                }
                series.push((
                    (started.elapsed().as_secs_f64() * 10.0).round() / 10.0,
                    s.mem_pages,
                ));
            }
            let (rss, _) = server_sample(cfg);
            rss_peak = rss_peak.max(rss);
            for s in stalled.iter_mut().filter(|s| s.closed.is_none()) {
                if let Some(state) = client::tcp_state(&s.stream)
                    && state != TCP_ESTABLISHED
                {
                    s.closed = Some((s.connected.elapsed().as_secs_f64(), state));
                }
            }
            std::thread::sleep(SAMPLE_EVERY.min(end.saturating_duration_since(Instant::now())));
        }
        Ok(Sampled {
            c: Connected { stalled, ..c },
            peak,
            rss_peak,
            series,
            server_let_go,
        })
    }

    fn judge(&self, s: Sampled, seen: &Seen) -> Judged {
        let n = self.stalled;
        let window = self.window;
        let Sampled {
            c,
            peak,
            rss_peak,
            series,
            server_let_go,
        } = s;
        let Connected {
            mem0,
            tcp_mem,
            stalled,
            failures,
            ..
        } = c;
        let rss0 = seen.host_before.rss_kib;
        let open_at_end = stalled.iter().filter(|s| s.closed.is_none()).count();
        let close_times = sorted(
            stalled
                .iter()
                .filter_map(|s| s.closed.map(|(t, _)| t))
                .collect(),
        );
        let mut states = Tally::new();
        for s in &stalled {
            let label = match s.closed {
                None => "still_established",
                Some((_, 7)) => "reset_by_server",
                Some((_, 8)) => "fin_from_server",
                Some(_) => "other_state",
            };
            client::count(&mut states, label);
        }
        // Reset them all: their queued bytes are given back at once.
        let count = stalled.len();
        for s in stalled {
            client::abort(s.stream);
        }

        let write_timeouts = seen.delta(&WRITE_TIMEOUTS);
        let outbox_drops = seen.delta(&OUTBOX_DROPS);
        let slow_closes = seen.delta(&SLOW_CLOSES);
        let peak_mib = peak.mem_mib();
        let added_mib = (peak.mem_pages.saturating_sub(mem0.mem_pages)) as f64
            * probe::PAGE_BYTES as f64
            / (1 << 20) as f64;
        let per_socket = added_mib / count.max(1) as f64;
        let pressure_mib = tcp_mem.map(|(_, p, _)| p as f64 * probe::PAGE_BYTES as f64 / 1048576.0);
        let closed_in_time = close_times
            .iter()
            .filter(|t| **t <= WRITE_TIMEOUT + CLOSE_SLACK)
            .count();
        let messages = seen.watch.as_ref().map_or(0, |w| w.messages);
        let ticks_per_s = messages as f64 / window.as_secs_f64();

        let limit = WRITE_TIMEOUT + CLOSE_SLACK;
        let let_go_in_time = server_let_go.is_some_and(|t| t <= limit);
        let handled =
            closed_in_time == count || let_go_in_time || outbox_drops.is_some_and(|d| d > 0.0);
        let checks = vec![
            Check::new(
                "all_connected",
                failures.is_empty() && count == n,
                format!(
                    "{count} of {n} stalled clients upgraded; failures: {}",
                    client::tally_text(&failures)
                ),
            ),
            Check::maybe(
                "kernel_memory",
                pressure_mib.map(|p| {
                    per_socket <= MIB_PER_STALLED_LIMIT && peak_mib <= p * PRESSURE_FRACTION_LIMIT
                }),
                format!(
                    "TCP mem peak {peak_mib:.1} MiB (+{added_mib:.1}, {per_socket:.2} MiB per stalled socket, limit {MIB_PER_STALLED_LIMIT}); pressure threshold {} MiB",
                    pressure_mib.map_or("?".into(), |p| format!("{p:.0}"))
                ),
            ),
            Check::new(
                "stalled_handled",
                handled,
                format!(
                    "{closed_in_time} of {count} seen closed within {limit} s; server connections back to before: {} (write_timeouts +{}, slow-consumer closes +{}); drops{{outbox_full}} +{}",
                    server_let_go.map_or("no".into(), |t| format!("after {t:.1} s")),
                    probe::shown(write_timeouts),
                    probe::shown(slow_closes),
                    probe::shown(outbox_drops)
                ),
            ),
        ];
        let mut raw = Raw::default();
        raw.put("stalled", count);
        raw.put("window_secs", window.as_secs_f64());
        raw.put("ticks_per_s_seen", ticks_per_s.round());
        raw.put("tcp_mem_pages_before", mem0.mem_pages);
        raw.put("tcp_mem_pages_peak", peak.mem_pages);
        raw.put("tcp_mem_peak_mib", (peak_mib * 10.0).round() / 10.0);
        raw.put(
            "tcp_mem_mib_per_stalled",
            (per_socket * 1000.0).round() / 1000.0,
        );
        raw.put("tcp_mem_thresholds_pages", tcp_mem);
        raw.put("orphans_at_peak", peak.orphan);
        raw.put("states", &states);
        raw.put("open_at_end", open_at_end);
        raw.put("server_let_go_after_s", server_let_go);
        raw.put("close_secs_p50", quantile(&close_times, 0.5));
        raw.put("close_secs_max", close_times.last());
        raw.put("server_rss_before_kib", rss0);
        raw.put("server_rss_peak_kib", rss_peak);
        raw.put("tcp_mem_series", &series);
        let summary = format!(
            "{count} stalled, {ticks_per_s:.0} ticks/s: TCP mem peak {peak_mib:.1} MiB ({per_socket:.2} MiB/stalled); {closed_in_time} closed by server ({}), write_timeouts +{}, outbox_full drops +{}; server RSS {} -> {} MiB",
            client::tally_text(&states),
            probe::shown(write_timeouts),
            probe::shown(outbox_drops),
            rss0.map_or("?".into(), |r| format!("{:.0}", mib(r))),
            rss_peak.map_or("?".into(), |r| format!("{:.0}", mib(r))),
        );
        Judged {
            summary,
            checks,
            raw,
        }
    }
}
