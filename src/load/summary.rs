//! The outcome of one run: merged counts plus the samples taken at the phase boundaries,
//! turned into a CSV [`Row`], a JSON document, or a human summary.

use std::fmt::Write as _;

use hdrhistogram::Histogram;
use serde::Serialize;

use super::stats::{Stats, join_counts};
use super::sys::ProcSample;
use crate::report::saturation::{STRICT_P99_US, is_client_bound, is_sustainable};
use crate::report::schema::Row;

/// Settings of the measured server, recorded verbatim in the row (the load generator cannot
/// know them; `scripts/bench.sh` passes them). Each field is the [`Row`] column of the same
/// name, documented there; [`Row::from`] copies them over, and a test checks that these are
/// exactly the columns a context fills.
#[derive(Debug, Clone, Default, Serialize)]
pub struct RowContext {
    /// `tickcast` or `baseline`.
    pub mode: String,
    /// Shard threads, when given (`--shards`); else the count the server's `/metrics` shows,
    /// else unknown (0 in the row, which the report labels `shards=?`).
    pub shards: Option<u32>,
    /// Whether shards were pinned.
    pub pin: bool,
    /// Mixer linger, µs.
    pub linger_us: u64,
    /// Requested payload bytes.
    pub payload_bytes: u64,
    /// Provider threads.
    pub providers: u32,
    /// Messages per second the server publishes (0 = unknown).
    pub offered_rate: f64,
    /// Provider interval, µs (0 = rate-paced).
    pub interval_us: u64,
    /// CPU split description.
    pub cpu_split: String,
}

impl From<&RowContext> for Row {
    /// A row holding only the context's columns.
    fn from(ctx: &RowContext) -> Row {
        Row {
            mode: ctx.mode.clone(),
            shards: ctx.shards.unwrap_or(0),
            pin: ctx.pin,
            linger_us: ctx.linger_us,
            payload_bytes: ctx.payload_bytes,
            providers: ctx.providers,
            offered_rate: ctx.offered_rate,
            interval_us: ctx.interval_us,
            cpu_split: ctx.cpu_split.clone(),
            ..Row::default()
        }
    }
}

/// The server process at the phase boundaries.
#[derive(Debug, Clone, Copy)]
pub struct ServerSamples {
    /// Before any connection.
    pub start: ProcSample,
    /// Once the ramp was over.
    pub connected: ProcSample,
    /// At the window's start.
    pub window_start: ProcSample,
    /// At the window's end.
    pub window_end: ProcSample,
    /// Wall time between the two window samples.
    pub window_wall_secs: f64,
}

/// Everything one run measured.
#[derive(Debug)]
pub struct Summary {
    /// Connections requested.
    pub connections: usize,
    /// Load threads.
    pub threads: usize,
    /// Publishing connections.
    pub publishers: usize,
    /// Counts of every thread, merged.
    pub stats: Stats,
    /// Seconds from start to the end of the ramp.
    pub ramp_secs: f64,
    /// Server samples, with `--server-pid`.
    pub server: Option<ServerSamples>,
    /// Server drops over the window by reason, when `/metrics` was scraped.
    pub drops: Option<std::collections::BTreeMap<String, u64>>,
    /// The server's own handshake p99 (accept -> 101 queued) over the run, when scraped.
    pub server_handshake_p99_us: Option<u64>,
    /// The server's shard count as its `/metrics` shows it (read when `--shards` is not
    /// given); recorded when the context does not say.
    pub server_shards: Option<u32>,
    /// This process's CPU over the window, % of the CPUs it may use.
    pub load_cpu_pct: f64,
    /// The busiest load thread over the window, % of one core.
    pub load_thread_max_cpu_pct: f64,
    /// Machine load average at the start.
    pub loadavg_1m: f64,
}

/// Deliveries the clients should have received in the window, the larger of two counts:
///
/// - by seq: what arrived plus what is missing from each topic's seq sequence; exact for
///   drops, whatever the window's length;
/// - by production: with a known offered rate, `(offered_rate x window - 1) x connected`;
///   else `due_by_production`, what the server sequenced while each load thread measured
///   (every seq from the first to the last its clients received, per topic) times the
///   thread's clients ([`super::stats::Produced::due`]). This catches clients that received
///   nothing (starved, disconnected) and a server that sequenced slower than it was offered,
///   which the seq count cannot see. Both forgive one message per client (and topic): the
///   one legitimately in flight at a window edge, as every client gets a message at about
///   the same time (at 10 msgs/s over 3 s a boundary alone would otherwise read as 3 % loss).
///
/// Not a rate times the window: the rate read from the stamps of the first and last message
/// runs high when several feeds are due together (4 feeds every 100 ms over 3 s: 120
/// messages whose stamps span 2.9 s, "41/s"), which made a perfect run read 98 %. What is
/// left: a round of messages due together that reaches some of a thread's clients just
/// before a window edge and others just after still reads as that round lost for the first.
pub fn expected_deliveries(
    received: u64,
    gaps: u64,
    offered_rate: f64,
    due_by_production: Option<u64>,
    window_s: f64,
    connected: u64,
) -> f64 {
    let by_seq = (received + gaps) as f64;
    let by_production = if offered_rate > 0.0 {
        (offered_rate * window_s - 1.0).max(0.0) * connected as f64
    } else {
        due_by_production.unwrap_or(0) as f64
    };
    by_seq.max(by_production)
}

fn q(h: &Histogram<u64>, quantile: f64) -> u64 {
    if h.is_empty() {
        0
    } else {
        h.value_at_quantile(quantile)
    }
}

impl Summary {
    /// Data messages per second over the window, all clients.
    pub fn delivered_per_s(&self) -> f64 {
        if self.stats.window_secs > 0.0 {
            self.stats.window.messages as f64 / self.stats.window_secs
        } else {
            0.0
        }
    }

    /// The CSV row for this run in `ctx`.
    pub fn row(&self, ctx: &RowContext) -> Row {
        let s = &self.stats;
        let window_s = s.window_secs;
        let expected = expected_deliveries(
            s.window.messages,
            s.window.gaps,
            ctx.offered_rate,
            s.produced.map(|p| p.due),
            window_s,
            s.connected,
        );
        let delivery_ratio = if expected > 0.0 {
            s.window.messages as f64 / expected
        } else {
            0.0
        };
        let unix_time = crate::clock::unix_micros() / 1_000_000;
        let mut row = Row {
            unix_time,
            clients: self.connections as u64,
            loadavg_1m: self.loadavg_1m,
            load_threads: self.threads as u32,
            connected: s.connected,
            connect_failures: s.failure_count(),
            failure_reasons: join_counts(&s.failures),
            handshake_p50_us: q(&s.handshake, 0.5),
            handshake_p99_us: q(&s.handshake, 0.99),
            handshake_max_us: s.handshake.max(),
            server_handshake_p99_us: self.server_handshake_p99_us,
            closes: join_counts(&s.closes),
            window_s,
            messages: s.window.messages,
            bytes: s.window.bytes,
            delivered_per_s: self.delivered_per_s(),
            produced_per_s: match s.produced {
                Some(p) if window_s > 0.0 => p.messages as f64 / window_s,
                _ => 0.0,
            },
            expected,
            delivery_ratio,
            seq_gaps: s.window.gaps,
            lat_p50_us: q(&s.latency, 0.5),
            lat_p90_us: q(&s.latency, 0.9),
            lat_p99_us: q(&s.latency, 0.99),
            lat_p999_us: q(&s.latency, 0.999),
            lat_max_us: s.latency.max(),
            publishers: self.publishers as u64,
            published: s.window.published,
            error_frames: s.window.error_frames,
            pub_lat_p50_us: (!s.publish_latency.is_empty()).then(|| q(&s.publish_latency, 0.5)),
            pub_lat_p99_us: (!s.publish_latency.is_empty()).then(|| q(&s.publish_latency, 0.99)),
            load_cpu_pct: self.load_cpu_pct,
            load_thread_max_cpu_pct: self.load_thread_max_cpu_pct,
            client_bound: is_client_bound(self.load_cpu_pct, self.load_thread_max_cpu_pct),
            ..Row::from(ctx)
        };
        if ctx.shards.is_none() {
            row.shards = self.server_shards.unwrap_or(0);
        }
        if let Some(sv) = &self.server {
            let cpu_ns = sv.window_end.cpu_ns.saturating_sub(sv.window_start.cpu_ns) as f64;
            row.server_cpu_pct = Some(cpu_ns / 1e9 / sv.window_wall_secs.max(1e-9) * 100.0);
            row.server_cpu_ns_per_msg =
                (s.window.messages > 0).then(|| cpu_ns / s.window.messages as f64);
            row.server_rss_start_kib = Some(sv.start.rss_kib);
            row.server_rss_connected_kib = Some(sv.connected.rss_kib);
            row.server_rss_end_kib = Some(sv.window_end.rss_kib);
            row.rss_kib_per_conn = (s.connected > 0).then(|| {
                sv.connected.rss_kib.saturating_sub(sv.start.rss_kib) as f64 / s.connected as f64
            });
        }
        if let Some(drops) = &self.drops {
            row.server_drops = join_counts(drops);
            row.server_drops_total = Some(drops.values().sum());
        }
        row.sustainable = is_sustainable(&row, STRICT_P99_US);
        row
    }

    /// The row plus per-topic counts and the publish latency, as JSON.
    pub fn json(&self, ctx: &RowContext) -> serde_json::Value {
        let mut v = serde_json::to_value(self.row(ctx)).unwrap_or_default();
        let topics: Vec<serde_json::Value> = self
            .stats
            .topics
            .iter()
            .map(|(name, c)| {
                serde_json::json!({
                    "topic": name, "messages": c.messages, "gaps": c.gaps, "reordered": c.reordered
                })
            })
            .collect();
        if let Some(obj) = v.as_object_mut() {
            obj.insert("topics".into(), topics.into());
            obj.insert("ramp_s".into(), self.ramp_secs.into());
            obj.insert(
                "other_messages".into(),
                self.stats.window.other_messages.into(),
            );
            obj.insert(
                "publish_skipped".into(),
                self.stats.window.publish_skipped.into(),
            );
            let pl = &self.stats.publish_latency;
            obj.insert(
                "publish_latency_us".into(),
                serde_json::json!({"count": pl.len(), "p50": q(pl, 0.5), "p99": q(pl, 0.99), "max": pl.max()}),
            );
        }
        v
    }

    /// A short human summary.
    pub fn human(&self, ctx: &RowContext) -> String {
        let r = self.row(ctx);
        let ms = |us: u64| us as f64 / 1000.0;
        let mut out = String::new();
        let _ = writeln!(
            out,
            "connected   {}/{} in {:.1} s ({} failed{}); {} load thread(s)",
            r.connected,
            r.clients,
            self.ramp_secs,
            r.connect_failures,
            if r.failure_reasons.is_empty() {
                String::new()
            } else {
                format!(": {}", r.failure_reasons)
            },
            r.load_threads
        );
        let _ = writeln!(
            out,
            "handshake   p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms{}",
            ms(r.handshake_p50_us),
            ms(r.handshake_p99_us),
            ms(r.handshake_max_us),
            r.server_handshake_p99_us
                .map(|us| format!(" (server's part: p99 {:.2} ms)", ms(us)))
                .unwrap_or_default()
        );
        let _ = writeln!(
            out,
            "delivered   {:.0} msgs/s over {:.1} s ({} msgs, {:.1} MB), delivery {:.2} %, seq gaps {}",
            r.delivered_per_s,
            r.window_s,
            r.messages,
            r.bytes as f64 / 1e6,
            r.delivery_ratio * 100.0,
            r.seq_gaps
        );
        let _ = writeln!(
            out,
            "produced    {:.1} msgs/s sequenced by the server (offered {})",
            r.produced_per_s,
            if r.offered_rate > 0.0 {
                format!("{:.1}", r.offered_rate)
            } else {
                "unknown".into()
            }
        );
        let _ = writeln!(
            out,
            "latency     p50 {:.2} ms, p90 {:.2} ms, p99 {:.2} ms, p99.9 {:.2} ms, max {:.2} ms",
            ms(r.lat_p50_us),
            ms(r.lat_p90_us),
            ms(r.lat_p99_us),
            ms(r.lat_p999_us),
            ms(r.lat_max_us)
        );
        if !r.closes.is_empty() {
            let _ = writeln!(out, "closes      {}", r.closes);
        }
        if r.publishers > 0 {
            let pl = &self.stats.publish_latency;
            let _ = writeln!(
                out,
                "publishing  {} publishers, {} sent, {} skipped, {} error frames; echo p99 {:.2} ms",
                r.publishers,
                r.published,
                self.stats.window.publish_skipped,
                r.error_frames,
                ms(q(pl, 0.99))
            );
        }
        if let (Some(cpu), Some(per_conn)) = (r.server_cpu_pct, r.rss_kib_per_conn) {
            let _ = writeln!(
                out,
                "server      CPU {cpu:.1} %, {} ns/msg; RSS {} -> {} KiB ({per_conn:.2} KiB/conn)",
                r.server_cpu_ns_per_msg
                    .map_or("-".into(), |n| format!("{n:.0}")),
                r.server_rss_start_kib.unwrap_or(0),
                r.server_rss_connected_kib.unwrap_or(0),
            );
        }
        if r.server_drops_total.is_some() {
            let _ = writeln!(
                out,
                "drops       {}",
                if r.server_drops.is_empty() {
                    "none"
                } else {
                    &r.server_drops
                }
            );
        }
        let _ = writeln!(
            out,
            "load gen    CPU {:.1} % of its CPUs (busiest thread {:.1} %){}",
            r.load_cpu_pct,
            r.load_thread_max_cpu_pct,
            if r.client_bound {
                " -- CLIENT-BOUND: the load generator is at its limit"
            } else {
                ""
            }
        );
        out
    }
}

#[cfg(test)]
mod tests;
