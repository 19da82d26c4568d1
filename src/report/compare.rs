//! Two modes of one sweep side by side (`tickcast report CSV --compare BASE,OTHER`): the
//! same server measured with two kinds of clients, e.g. plain `tickcast` against `tls`
//! (`scripts/bench.sh --tls`, its `tls.md`).
//!
//! Per client count, each mode's highest sustainable rate (the strict bar); then, at every
//! offered rate both modes were measured at, what one delivery costs the server, the
//! handshake p99 (TCP connect to 101, for the connections of the ramp, made while the
//! server broadcast to those already connected), and RSS per connection, with the ratio of
//! the costs. Each point counts by its median run, as everywhere in the report. `(cb)`
//! marks a value measured with the load generator at >= 90 % CPU, `(ns)` a point that
//! missed the bar.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use super::repeats;
use super::saturation::{STRICT_P99_US, saturation_points};
use super::schema::Row;
use super::summary::{main_sweep, rate};

/// One point's row in the base mode and in the other.
type Pair<'a> = (Option<&'a Row>, Option<&'a Row>);

/// The markdown comparison of mode `other` against mode `base` among `rows` (a raw.csv).
pub fn table(rows: &[Row], base: &str, other: &str) -> String {
    let main = main_sweep(&repeats::median_runs(rows));
    let mut out = String::new();
    let sats = saturation_points(&main, STRICT_P99_US);
    let mut clients: Vec<u64> = main
        .iter()
        .filter(|r| r.mode == base || r.mode == other)
        .map(|r| r.clients)
        .collect();
    clients.sort_unstable();
    clients.dedup();
    let best = |mode: &str, c: u64| {
        sats.iter()
            .find(|s| s.key.mode == mode && s.key.clients == c && s.key.shards == 1)
            .or_else(|| {
                sats.iter()
                    .find(|s| s.key.mode == mode && s.key.clients == c)
            })
    };
    let _ = writeln!(
        out,
        "## Highest sustainable rate (delivery >= 99 %, p99 <= 100 ms)\n\n\
         | clients | {base} | {other} | {other} / {base} |\n|---:|---:|---:|---:|"
    );
    for &c in &clients {
        let cell = |mode: &str| match best(mode, c) {
            Some(s) if s.best.is_some() => {
                let mut cell = rate(s.rate());
                if s.client_bound() {
                    cell.push_str(" (cb)");
                }
                if !s.saturated {
                    cell.push_str(" (≥)");
                }
                cell
            }
            Some(_) => "none".into(),
            None => "-".into(),
        };
        let ratio = match (best(base, c), best(other, c)) {
            (Some(b), Some(o)) if b.rate() > 0.0 && o.rate() > 0.0 => {
                let cb = if b.client_bound() || o.client_bound() {
                    " (cb)"
                } else {
                    ""
                };
                format!("{:.2}{cb}", o.rate() / b.rate())
            }
            _ => "-".into(),
        };
        let _ = writeln!(out, "| {c} | {} | {} | {ratio} |", cell(base), cell(other));
    }

    // Points measured in both modes, by client count and offered rate.
    let mut pairs: BTreeMap<(u64, u64), Pair<'_>> = BTreeMap::new();
    for r in &main {
        // Offered rates are whole msgs/s in the ladder; the key orders them numerically.
        let key = (r.clients, (r.offered_rate * 1000.0).round() as u64);
        let slot = pairs.entry(key).or_default();
        if r.mode == base {
            slot.0 = Some(r);
        } else if r.mode == other {
            slot.1 = Some(r);
        }
    }
    let _ = writeln!(
        out,
        "\n## Cost at each offered rate measured both ways\n\n\
         | clients | msg/s | CPU ns/delivery {base} | {other} | ratio | handshake p99 ms {base} | \
         {other} | RSS KiB/conn {base} | {other} |\n\
         |---:|---:|---:|---:|---:|---:|---:|---:|---:|"
    );
    for ((c, _), pair) in &pairs {
        let (Some(b), Some(o)) = *pair else {
            continue;
        };
        let ratio = match (b.server_cpu_ns_per_msg, o.server_cpu_ns_per_msg) {
            (Some(x), Some(y)) if x > 0.0 => format!("{:.2}x", y / x),
            _ => "-".into(),
        };
        let _ = writeln!(
            out,
            "| {c} | {:.0} | {} | {} | {ratio} | {} | {} | {} | {} |",
            b.offered_rate,
            marked(b, b.server_cpu_ns_per_msg.map(|v| format!("{v:.0}"))),
            marked(o, o.server_cpu_ns_per_msg.map(|v| format!("{v:.0}"))),
            format_args!("{:.2}", b.handshake_p99_us as f64 / 1000.0),
            format_args!("{:.2}", o.handshake_p99_us as f64 / 1000.0),
            b.rss_kib_per_conn.map_or("-".into(), |v| format!("{v:.2}")),
            o.rss_kib_per_conn.map_or("-".into(), |v| format!("{v:.2}")),
        );
    }
    out
}

/// `value` with the row's marks: `(cb)` client-bound, `(ns)` not sustained.
fn marked(row: &Row, value: Option<String>) -> String {
    let mut cell = value.unwrap_or_else(|| "-".into());
    if row.client_bound {
        cell.push_str(" (cb)");
    }
    if !row.sustainable {
        cell.push_str(" (ns)");
    }
    cell
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(mode: &str, clients: u64, offered: f64, ns: f64, ok: bool) -> Row {
        Row {
            mode: mode.into(),
            shards: 1,
            clients,
            connected: clients,
            messages: 1000,
            offered_rate: offered,
            delivered_per_s: offered * clients as f64,
            delivery_ratio: if ok { 1.0 } else { 0.5 },
            lat_p99_us: 1_000,
            handshake_p99_us: if mode == "tls" { 4_000 } else { 1_000 },
            server_cpu_ns_per_msg: Some(ns),
            rss_kib_per_conn: Some(if mode == "tls" { 30.0 } else { 1.0 }),
            sustainable: ok,
            ..Row::default()
        }
    }

    #[test]
    fn both_modes_side_by_side_with_ratios_and_marks() {
        let mut busy = row("tls", 1000, 400.0, 600.0, false);
        busy.client_bound = true;
        let rows = vec![
            row("tickcast", 1000, 200.0, 100.0, true),
            row("tls", 1000, 200.0, 250.0, true),
            row("tickcast", 1000, 400.0, 90.0, true),
            busy,
            // Measured one way only: no cost row, but its mode still has a best rate.
            row("tickcast", 5000, 50.0, 300.0, true),
            // Another sweep's modes are left out.
            row("deflate", 1000, 200.0, 1.0, true),
        ];
        let t = table(&rows, "tickcast", "tls");
        assert!(t.contains("| 1000 | 400 k/s (≥) | 200 k/s | 0.50 |"), "{t}");
        assert!(t.contains("| 5000 | 250 k/s (≥) | - | - |"), "{t}");
        assert!(
            t.contains("| 1000 | 200 | 100 | 250 | 2.50x | 1.00 | 4.00 | 1.00 | 30.00 |"),
            "{t}"
        );
        assert!(
            t.contains("| 1000 | 400 | 90 | 600 (cb) (ns) | 6.67x |"),
            "{t}"
        );
        assert!(
            !t.contains("deflate") && !t.contains("| 5000 | 50 |"),
            "{t}"
        );
        // Rates order numerically, not as text.
        assert!(t.find("| 1000 | 200 |").unwrap() < t.find("| 1000 | 400 |").unwrap());
    }
}
