//! `summary.md`: the saturation tables of a sweep (single hub vs each shard count, and each
//! against the baseline), the numbers at each saturation point, memory and handshakes per
//! configuration, and the linger comparison.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;

use super::repeats;
use super::saturation::{ConfigKey, LOOSE_P99_US, STRICT_P99_US, Saturation, saturation_points};
use super::schema::Row;

/// Formats deliveries per second as `1.23 M/s` or `456 k/s`.
pub fn rate(v: f64) -> String {
    if v >= 1e6 {
        format!("{:.2} M/s", v / 1e6)
    } else if v >= 1e3 {
        format!("{:.0} k/s", v / 1e3)
    } else {
        format!("{v:.0} /s")
    }
}

fn ms(us: u64) -> String {
    format!("{:.1}", us as f64 / 1000.0)
}

fn opt(v: Option<f64>, digits: usize) -> String {
    v.map_or("-".into(), |v| format!("{v:.digits$}"))
}

/// Rows of the main sweep: no linger, no publishers.
pub fn main_sweep(rows: &[Row]) -> Vec<Row> {
    rows.iter()
        .filter(|r| r.linger_us == 0 && r.publishers == 0)
        .cloned()
        .collect()
}

/// The saturation table for one latency bar: a row per client count, a column per server.
fn saturation_table(out: &mut String, sats: &[Saturation]) {
    let clients: BTreeSet<u64> = sats.iter().map(|s| s.key.clients).collect();
    let mut columns: Vec<(String, u32)> = sats
        .iter()
        .map(|s| (s.key.mode.clone(), s.key.shards))
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    // Baseline first, then tickcast by shard count.
    columns.sort_by_key(|(mode, shards)| (mode != "baseline", mode.clone(), *shards));
    let find = |mode: &str, shards: u32, clients: u64| {
        sats.iter()
            .find(|s| s.key.mode == mode && s.key.shards == shards && s.key.clients == clients)
    };
    let name = |mode: &str, shards: u32| {
        ConfigKey {
            mode: mode.into(),
            shards,
            clients: 0,
            linger_us: 0,
            payload_bytes: 0,
            publishers: 0,
        }
        .series()
    };
    let hub = columns
        .iter()
        .any(|(m, s)| m == "tickcast" && *s == 1)
        .then_some(("tickcast", 1));
    let has_baseline = columns.iter().any(|(m, _)| m == "baseline");
    let mut head = String::from("| clients |");
    let mut rule = String::from("|---:|");
    for (mode, shards) in &columns {
        let _ = write!(head, " {} |", name(mode, *shards));
        rule.push_str("---:|");
    }
    if hub.is_some() && has_baseline {
        head.push_str(" hub / baseline |");
        rule.push_str("---:|");
    }
    let sharded: Vec<u32> = columns
        .iter()
        .filter(|(m, s)| m == "tickcast" && *s > 1)
        .map(|(_, s)| *s)
        .collect();
    if hub.is_some() {
        for s in &sharded {
            let _ = write!(head, " {s} shards / hub |");
            rule.push_str("---:|");
        }
    }
    let _ = writeln!(out, "{head}\n{rule}");
    for c in clients {
        let mut line = format!("| {c} |");
        for (mode, shards) in &columns {
            let cell = match find(mode, *shards, c) {
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
            let _ = write!(line, " {cell} |");
        }
        let ratio = |a: Option<&Saturation>, b: Option<&Saturation>| match (a, b) {
            (Some(a), Some(b)) if a.rate() > 0.0 && b.rate() > 0.0 => {
                let cb = if a.client_bound() || b.client_bound() {
                    " (cb)"
                } else {
                    ""
                };
                format!("{:.2}{cb}", a.rate() / b.rate())
            }
            _ => "-".into(),
        };
        let hub_sat = find("tickcast", 1, c);
        if hub.is_some() && has_baseline {
            let _ = write!(line, " {} |", ratio(hub_sat, find("baseline", 1, c)));
        }
        if hub.is_some() {
            for s in &sharded {
                let _ = write!(line, " {} |", ratio(find("tickcast", *s, c), hub_sat));
            }
        }
        let _ = writeln!(out, "{line}");
    }
    out.push('\n');
}

/// Renders the whole `summary.md`.
pub fn render(rows: &[Row]) -> String {
    let mut out = String::from("# Sweep summary\n\n");
    let points = repeats::points(rows);
    let runs = rows.len();
    let rows = &repeats::median_runs(rows);
    let main = main_sweep(rows);
    let _ = writeln!(
        out,
        "{} measured points ({} in the main sweep), {runs} runs: a point whose first run \
         landed near the bar was measured again, and every table uses each point's median run \
         (the middle one when ranked by how close each came to failing; see `runs`). The saturation point of a configuration is \
         the highest delivered rate (deliveries/s, all clients) with delivery >= 99 % of the \
         offered messages, every client connected, and p99 end-to-end latency within the bar. \
         `(cb)`: the load generator was at >= 90 % CPU at that point, so the server may sustain \
         more (a ratio marked `(cb)` involves such a point and compares client limits as much \
         as servers). `(≥)`: no point of the ladder failed the bar, so the ceiling was not reached. \
         `none`: no point passed.\n",
        rows.len(),
        main.len()
    );
    for (title, bar) in [
        ("strict: p99 <= 100 ms", STRICT_P99_US),
        ("loose: p99 <= 250 ms", LOOSE_P99_US),
    ] {
        let _ = writeln!(out, "## Saturation ({title})\n");
        saturation_table(&mut out, &saturation_points(&main, bar));
    }

    let strict = saturation_points(&main, STRICT_P99_US);
    out.push_str("## At each saturation point (strict)\n\n");
    out.push_str(
        "| server | clients | delivered | offered msgs/s | delivery % | p50 ms | p99 ms | p99.9 ms \
         | server CPU % | CPU ns/msg | load CPU % | drops | runs |\n\
         |---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n",
    );
    for s in &strict {
        let Some(r) = &s.best else {
            continue;
        };
        let _ = writeln!(
            out,
            "| {} | {} | {} | {:.0} | {:.2} | {} | {} | {} | {} | {} | {:.0}{} | {} | {} |",
            s.key.series(),
            r.clients,
            rate(r.delivered_per_s),
            r.offered_rate,
            r.delivery_ratio * 100.0,
            ms(r.lat_p50_us),
            ms(r.lat_p99_us),
            ms(r.lat_p999_us),
            opt(r.server_cpu_pct, 0),
            opt(r.server_cpu_ns_per_msg, 0),
            r.load_cpu_pct,
            if r.client_bound { " (cb)" } else { "" },
            r.server_drops_total.map_or("-".into(), |d| d.to_string()),
            repeats::runs_at(&points, r),
        );
    }
    out.push('\n');

    out.push_str("## Memory and handshakes per configuration\n\n");
    out.push_str(
        "RSS per connection is `(RSS with every client connected - RSS before) / clients`, the \
         median over the points of the configuration, and the median over its lowest offered \
         rate (the nearest to idle connections: at higher rates outboxes hold more). \
         Handshake p99 (TCP connect -> 101 received, as the load generator sees it) is given \
         as the median and the worst over \
         the configuration's points (connections ramp while the server broadcasts); the \
         server's part (socket accepted -> 101 queued, from its `/metrics`) is the worst over \
         the points.\n\n\
         | server | clients | RSS KiB/conn | at the lowest rate | handshake p99 ms (median / worst) | server's part p99 ms | handshake max ms | connect failures |\n\
         |---|---:|---:|---:|---:|---:|---:|---:|\n",
    );
    let mut by_key: BTreeMap<ConfigKey, Vec<&Row>> = BTreeMap::new();
    for r in &main {
        by_key.entry(ConfigKey::of(r)).or_default().push(r);
    }
    for (key, rs) in &by_key {
        let rss = median(rs.iter().filter_map(|r| r.rss_kib_per_conn).collect());
        let lowest = rs
            .iter()
            .map(|r| r.offered_rate)
            .fold(f64::INFINITY, f64::min);
        let rss_lowest = median(
            rs.iter()
                .filter(|r| r.offered_rate == lowest)
                .filter_map(|r| r.rss_kib_per_conn)
                .collect(),
        );
        let hs99 = rs.iter().map(|r| r.handshake_p99_us).max().unwrap_or(0);
        let hs99_median = median(rs.iter().map(|r| r.handshake_p99_us as f64).collect());
        let server_hs99 = rs.iter().filter_map(|r| r.server_handshake_p99_us).max();
        let hsmax = rs.iter().map(|r| r.handshake_max_us).max().unwrap_or(0);
        let fails: u64 = rs.iter().map(|r| r.connect_failures).sum();
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} | {} / {} | {} | {} | {fails} |",
            key.series(),
            key.clients,
            opt(rss, 2),
            opt(rss_lowest, 2),
            hs99_median.map_or("-".into(), |us| ms(us as u64)),
            ms(hs99),
            server_hs99.map_or("-".into(), ms),
            ms(hsmax)
        );
    }
    out.push('\n');
    linger_table(&mut out, rows);
    out
}

/// Rows at the (shards, clients, offered rate) points where a linger other than 0 was
/// measured, next to their linger-0 counterparts.
fn linger_table(out: &mut String, rows: &[Row]) {
    let points: BTreeSet<(u32, u64, u64)> = rows
        .iter()
        .filter(|r| r.mode == "tickcast" && r.linger_us > 0 && r.publishers == 0)
        .map(|r| (r.shards, r.clients, r.offered_rate as u64))
        .collect();
    if points.is_empty() {
        return;
    }
    out.push_str("## Linger\n\n");
    out.push_str(
        "| shards | clients | offered msgs/s | linger µs | delivered | p50 ms | p99 ms | server CPU % | CPU ns/msg |\n\
         |---:|---:|---:|---:|---:|---:|---:|---:|---:|\n",
    );
    let mut selected: Vec<&Row> = rows
        .iter()
        .filter(|r| {
            r.mode == "tickcast"
                && r.publishers == 0
                && points.contains(&(r.shards, r.clients, r.offered_rate as u64))
        })
        .collect();
    selected.sort_by_key(|r| (r.shards, r.clients, r.offered_rate as u64, r.linger_us));
    for r in selected {
        let _ = writeln!(
            out,
            "| {} | {} | {:.0} | {} | {} | {} | {} | {} | {} |",
            if r.shards == 0 {
                "?".to_string()
            } else {
                r.shards.to_string()
            },
            r.clients,
            r.offered_rate,
            r.linger_us,
            rate(r.delivered_per_s),
            ms(r.lat_p50_us),
            ms(r.lat_p99_us),
            opt(r.server_cpu_pct, 0),
            opt(r.server_cpu_ns_per_msg, 0)
        );
    }
    out.push('\n');
}

/// The median of `v` (None when empty).
pub fn median(mut v: Vec<f64>) -> Option<f64> {
    if v.is_empty() {
        return None;
    }
    v.sort_by(f64::total_cmp);
    Some(v[v.len() / 2])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(mode: &str, shards: u32, clients: u64, delivered: f64, p99: u64) -> Row {
        Row {
            mode: mode.into(),
            shards,
            clients,
            connected: clients,
            messages: 10,
            delivered_per_s: delivered,
            offered_rate: delivered / clients as f64,
            delivery_ratio: 1.0,
            lat_p99_us: p99,
            rss_kib_per_conn: Some(0.5),
            ..Row::default()
        }
    }

    #[test]
    fn the_table_compares_hub_shards_and_baseline() {
        let rows = vec![
            row("baseline", 1, 1000, 2e6, 1000),
            row("tickcast", 1, 1000, 1e6, 1000),
            row("tickcast", 1, 1000, 2e6, 500_000),
            row("tickcast", 2, 1000, 1.5e6, 1000),
        ];
        let md = render(&rows);
        assert!(md.contains("| clients | baseline | tickcast 1 shard (hub) | tickcast 2 shards | hub / baseline | 2 shards / hub |"), "{md}");
        assert!(
            md.contains("| 1000 | 2.00 M/s (≥) | 1.00 M/s | 1.50 M/s (≥) | 0.50 | 1.50 |"),
            "{md}"
        );
        assert!(
            md.contains("| tickcast 1 shard (hub) | 1000 | 0.50 |"),
            "{md}"
        );
    }

    #[test]
    fn a_point_measured_three_times_counts_by_its_median_run() {
        let mut rows = vec![
            row("tickcast", 1, 1000, 1e6, 1000),
            row("tickcast", 1, 1000, 2e6, 90_000),
            row("tickcast", 1, 1000, 2e6, 130_000),
            row("tickcast", 1, 1000, 2e6, 140_000),
        ];
        // The median of the three runs at 2 M/s fails the strict bar...
        let md = render(&rows);
        assert!(md.contains("2 measured points"), "{md}");
        assert!(md.contains("| 1000 | 1.00 M/s |"), "{md}");
        // ...and passes it once two of three are within it.
        rows[3].lat_p99_us = 95_000;
        let md = render(&rows);
        assert!(md.contains("| 1000 | 2.00 M/s (≥) |"), "{md}");
        assert!(md.contains("| - | 3 |"), "runs column: {md}");
    }

    #[test]
    fn memory_is_also_given_at_the_lowest_rate() {
        let mut rows = vec![
            row("tickcast", 1, 1000, 1e4, 1000),
            row("tickcast", 1, 1000, 1e6, 1000),
            row("tickcast", 1, 1000, 2e6, 1000),
        ];
        rows[1].rss_kib_per_conn = Some(2.0);
        rows[2].rss_kib_per_conn = Some(3.0);
        let md = render(&rows);
        assert!(
            md.contains("| tickcast 1 shard (hub) | 1000 | 2.00 | 0.50 |"),
            "{md}"
        );
    }

    #[test]
    fn linger_rows_are_grouped_with_their_linger_zero_twin() {
        let mut a = row("tickcast", 1, 1000, 1e5, 1000);
        a.offered_rate = 100.0;
        let mut b = a.clone();
        b.linger_us = 1000;
        let mut other = a.clone();
        other.offered_rate = 200.0;
        let md = render(&[a, b, other]);
        let linger = &md[md.find("## Linger").unwrap()..];
        assert_eq!(linger.matches("| 1 | 1000 | 100 |").count(), 2, "{linger}");
        assert!(!linger.contains("| 200 |"));
    }

    #[test]
    fn formatting_helpers() {
        assert_eq!(rate(1_234_567.0), "1.23 M/s");
        assert_eq!(rate(45_600.0), "46 k/s");
        assert_eq!(median(vec![3.0, 1.0, 2.0]), Some(2.0));
        assert_eq!(median(vec![]), None);
    }
}
