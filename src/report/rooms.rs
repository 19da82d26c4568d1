//! The many-rooms view of a report: rows of `scripts/bench.sh --rooms` (mode `rooms-R-M`,
//! or `uws-rooms-R-M` for the same point against uWebSockets), R rooms of M members, one
//! publisher per room. The broadcast charts count deliveries per client count; here the
//! unit is the publish and the grouping the room case:
//!
//! - `rooms_p99_vs_offered.svg`: p99 latency vs offered publishes/s, a panel per case, a
//!   line per server, with the 100 ms and 250 ms bars drawn across;
//! - `rooms_saturation.svg`: the highest sustainable publishes/s per case and server as
//!   grouped bars (light: client-bound; outlined: no point failed, a floor);
//! - `rooms_cpu_per_publish.svg`: server CPU µs per publish vs offered publishes/s;
//!
//! and [`table`], the same saturation points as a markdown table for `summary.md`.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write;
use std::path::{Path, PathBuf};

use plotters::prelude::SeriesLabelPosition;

use super::charts::{self, Axes, Bar, Panel, draw_bars};
use super::saturation::{STRICT_P99_US, saturation_points};
use super::schema::Row;

/// A room case: `rooms` rooms of `members` members.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Case {
    /// Rooms.
    pub rooms: u64,
    /// Members per room.
    pub members: u64,
}

impl Case {
    fn label(self) -> String {
        format!("{} rooms x {}", self.rooms, self.members)
    }
}

/// The case and server of a many-rooms row, from its mode; `None` for other rows.
pub fn case_of(row: &Row) -> Option<(Case, String)> {
    case_of_config(&row.mode, row.shards, row.publishers)
}

/// The same from a configuration's mode, shard count and publishers (a row's, or a
/// saturation point's key).
fn case_of_config(mode: &str, shards: u32, publishers: u64) -> Option<(Case, String)> {
    let (server, rest) = match mode.strip_prefix("uws-") {
        Some(rest) => ("uWebSockets (Bun)".to_string(), rest),
        None if shards == 1 => ("tickcast 1 shard".to_string(), mode),
        None if shards == 0 => ("tickcast shards=?".to_string(), mode),
        None => (format!("tickcast {shards} shards"), mode),
    };
    let (rooms, members) = rest.strip_prefix("rooms-")?.split_once('-')?;
    let case = Case {
        rooms: rooms.parse().ok()?,
        members: members.parse().ok()?,
    };
    (case.rooms > 0 && publishers > 0).then_some((case, server))
}

/// The rows of the many-rooms scenario.
pub fn rooms_rows(rows: &[Row]) -> Vec<Row> {
    rows.iter()
        .filter(|r| case_of(r).is_some())
        .cloned()
        .collect()
}

/// Publishes per second the server took over the window.
fn publishes_per_s(row: &Row) -> f64 {
    if row.window_s > 0.0 {
        row.published as f64 / row.window_s
    } else {
        0.0
    }
}

/// Offered publishes per second: `offered_rate` is per room.
fn offered(row: &Row, case: Case) -> f64 {
    row.offered_rate * case.rooms as f64
}

/// Server CPU µs per publish, when the server's CPU was sampled.
fn cpu_us_per_publish(row: &Row) -> Option<f64> {
    let pubs = publishes_per_s(row);
    let cpu = row.server_cpu_pct?;
    (pubs > 0.0).then(|| cpu / 100.0 * 1e6 / pubs)
}

/// A panel per case, a line per server, from `point` of each row.
fn per_case(rows: &[Row], point: impl Fn(&Row, Case) -> Option<(f64, f64)>) -> Vec<Panel> {
    let mut panels: BTreeMap<Case, BTreeMap<String, Vec<(f64, f64)>>> = BTreeMap::new();
    for r in rows {
        if let Some((case, server)) = case_of(r)
            && let Some(p) = point(r, case)
        {
            panels
                .entry(case)
                .or_default()
                .entry(server)
                .or_default()
                .push(p);
        }
    }
    panels
        .into_iter()
        .map(|(case, series)| Panel {
            title: case.label(),
            series: series.into_iter().collect(),
        })
        .collect()
}

/// Draws the many-rooms charts into `dir`; returns the files written.
pub fn draw(rows: &[Row], dir: &Path) -> Result<Vec<PathBuf>, String> {
    let mut written = Vec::new();
    let path = dir.join("rooms_p99_vs_offered.svg");
    let panels = per_case(rows, |r, case| {
        (r.messages > 0).then_some((offered(r, case), r.lat_p99_us as f64 / 1000.0))
    });
    let axes = Axes {
        x_desc: "offered publishes/s (all rooms)",
        y_desc: "p99 latency (ms)",
        x_log: true,
        y_log: true,
        diagonal: false,
        bars: charts::LATENCY_BARS,
        legend: SeriesLabelPosition::UpperLeft,
    };
    charts::draw(&path, &panels, &axes)?;
    written.push(path);

    let path = dir.join("rooms_cpu_per_publish.svg");
    let panels = per_case(rows, |r, case| {
        Some((offered(r, case), cpu_us_per_publish(r)?))
    });
    let axes = Axes {
        x_desc: "offered publishes/s (all rooms)",
        y_desc: "server CPU us per publish",
        x_log: true,
        y_log: false,
        diagonal: false,
        bars: &[],
        legend: SeriesLabelPosition::UpperRight,
    };
    charts::draw(&path, &panels, &axes)?;
    written.push(path);

    let path = dir.join("rooms_saturation.svg");
    let points = saturation(rows);
    let cases: Vec<Case> = points
        .iter()
        .map(|p| p.case)
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    let bars: Vec<Bar> = points
        .iter()
        .filter_map(|p| {
            Some(Bar {
                group: cases.iter().position(|c| *c == p.case)?,
                series: p.server.clone(),
                value: p.best.as_ref().map_or(0.0, publishes_per_s),
                client_bound: p.best.as_ref().is_some_and(|r| r.client_bound),
                floor: !p.saturated,
            })
        })
        .collect();
    let labels: Vec<String> = cases.iter().map(|c| c.label()).collect();
    draw_bars(
        &path,
        "highest sustainable publishes/s (p99 <= 100 ms, delivery >= 99 %)",
        "publishes/s",
        &labels,
        &bars,
    )?;
    written.push(path);
    Ok(written)
}

/// A case and server's highest sustainable point under the strict bar.
struct Point {
    case: Case,
    server: String,
    best: Option<Row>,
    saturated: bool,
}

fn saturation(rows: &[Row]) -> Vec<Point> {
    let mut points: Vec<Point> = saturation_points(rows, STRICT_P99_US)
        .into_iter()
        .filter_map(|s| {
            let (case, server) = case_of_config(&s.key.mode, s.key.shards, s.key.publishers)?;
            Some(Point {
                case,
                server,
                best: s.best,
                saturated: s.saturated,
            })
        })
        .collect();
    points.sort_by(|a, b| (a.case, &a.server).cmp(&(b.case, &b.server)));
    points
}

/// The many-rooms saturation points as a markdown section (empty without such rows).
pub fn table(rows: &[Row]) -> String {
    let points = saturation(&rooms_rows(rows));
    if points.is_empty() {
        return String::new();
    }
    let mut out = String::from(
        "## Many rooms: highest sustainable publishes/s (strict)\n\n\
         A publish reaches every member of its room, its publisher included. `(≥)`: no point \
         failed the bar; `(cb)`: the load generator was at >= 90 % CPU there.\n\n\
         | rooms x members | server | publishes/s | deliveries/s | p99 ms | server CPU % \
         | CPU us per publish | load CPU % |\n\
         |---|---|---:|---:|---:|---:|---:|---:|\n",
    );
    for p in &points {
        let Some(r) = &p.best else {
            let _ = writeln!(
                out,
                "| {} | {} | none | | | | | |",
                p.case.label(),
                p.server
            );
            continue;
        };
        let marks = format!(
            "{}{}",
            if p.saturated { "" } else { " (≥)" },
            if r.client_bound { " (cb)" } else { "" }
        );
        let _ = writeln!(
            out,
            "| {} | {} | {:.0}{marks} | {:.0} | {:.1} | {} | {} | {:.0} |",
            p.case.label(),
            p.server,
            publishes_per_s(r),
            r.delivered_per_s,
            r.lat_p99_us as f64 / 1000.0,
            r.server_cpu_pct.map_or("-".into(), |c| format!("{c:.0}")),
            cpu_us_per_publish(r).map_or("-".into(), |c| format!("{c:.1}")),
            r.load_cpu_pct,
        );
    }
    out.push('\n');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(mode: &str, shards: u32, rate: f64, published: u64, p99_us: u64, cpu: f64) -> Row {
        Row {
            mode: mode.into(),
            shards,
            clients: 2000,
            connected: 2000,
            publishers: 1000,
            offered_rate: rate,
            window_s: 5.0,
            published,
            messages: published * 2,
            delivered_per_s: published as f64 * 2.0 / 5.0,
            delivery_ratio: 1.0,
            lat_p99_us: p99_us,
            server_cpu_pct: Some(cpu),
            ..Row::default()
        }
    }

    #[test]
    fn cases_and_servers_come_from_the_mode() {
        let r = row("uws-rooms-1000-2", 1, 10.0, 50_000, 500, 20.0);
        let (case, server) = case_of(&r).unwrap();
        assert_eq!((case.rooms, case.members), (1000, 2));
        assert_eq!(server, "uWebSockets (Bun)");
        let t = row("rooms-100-20", 2, 10.0, 50_000, 500, 20.0);
        assert_eq!(case_of(&t).unwrap().1, "tickcast 2 shards");
        assert!(
            case_of(&Row {
                mode: "tickcast".into(),
                ..t.clone()
            })
            .is_none()
        );
        assert!(case_of(&Row { publishers: 0, ..t }).is_none());
    }

    #[test]
    fn charts_and_table_show_each_server_per_case() {
        let dir = std::env::temp_dir().join(format!("tickcast-rooms-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let rows = vec![
            row("rooms-1000-2", 1, 10.0, 50_000, 400, 18.0),
            row("rooms-1000-2", 1, 20.0, 100_000, 150_000, 34.0),
            row("uws-rooms-1000-2", 1, 10.0, 50_000, 700, 18.5),
        ];
        let files = super::super::charts::draw_all(&rows, &dir).unwrap();
        let names: Vec<String> = files
            .iter()
            .map(|f| f.file_name().unwrap().to_string_lossy().into_owned())
            .collect();
        assert_eq!(
            names,
            [
                "rooms_p99_vs_offered.svg",
                "rooms_cpu_per_publish.svg",
                "rooms_saturation.svg"
            ]
        );
        for f in &files {
            let svg = std::fs::read_to_string(f).unwrap();
            assert!(svg.contains("tickcast 1 shard"), "{}", f.display());
            assert!(svg.contains("uWebSockets (Bun)"), "{}", f.display());
            assert!(svg.contains("1000 rooms x 2"), "{}", f.display());
        }
        let table = table(&rows);
        // tickcast's 20/s point failed the bar: its best is 10,000 publishes/s, a ceiling.
        assert!(
            table.contains(
                "| 1000 rooms x 2 | tickcast 1 shard | 10000 | 20000 | 0.4 | 18 | 18.0 |"
            ),
            "{table}"
        );
        // uWebSockets never failed: a floor.
        assert!(
            table.contains("| uWebSockets (Bun) | 10000 (≥) |"),
            "{table}"
        );
    }
}
