//! The SVG charts of a sweep, drawn with plotters:
//!
//! - `delivered_vs_offered.svg`: delivered vs offered deliveries/s, a panel per client count,
//!   a line per server (the diagonal is "everything delivered");
//! - `p99_vs_offered.svg`: p99 latency vs offered deliveries/s, a panel per client count, a
//!   line per server, with the 100 ms and 250 ms bars drawn across: each configuration
//!   saturates where its line crosses a bar;
//! - `p99_vs_clients.svg`: p99 latency at the lightest offered rate and at the saturation
//!   point, per server;
//! - `saturation.svg`: the saturation table as grouped bars: the highest sustainable rate
//!   (strict bar) per configuration, grouped by client count, on a log scale; a light bar is
//!   client-bound (the server may sustain more), an outlined one never failed the bar (a
//!   floor);
//! - `cpu_ns_per_msg.svg`: server CPU ns per delivered message vs offered deliveries/s;
//! - `rss_per_conn.svg`: server RSS KiB per connection vs clients;
//!
//! and, for the many-rooms scenario, the charts of [`super::rooms`].

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use plotters::prelude::*;

use super::saturation::{ConfigKey, STRICT_P99_US, saturation_points};
use super::schema::Row;
use super::summary::{main_sweep, median};

/// Points of one named line.
pub(super) type Series = (String, Vec<(f64, f64)>);

/// One panel of a chart.
pub(super) struct Panel {
    pub title: String,
    pub series: Vec<Series>,
}

/// The bars drawn across every p99 chart: the sustainability bar and the looser one.
pub(super) const LATENCY_BARS: &[(f64, &str)] = &[(100.0, "100 ms bar"), (250.0, "250 ms bar")];

/// How a chart's axes look.
pub(super) struct Axes {
    pub x_desc: &'static str,
    pub y_desc: &'static str,
    pub x_log: bool,
    pub y_log: bool,
    pub diagonal: bool,
    /// Horizontal reference lines drawn across (value, label), kept inside the y range.
    pub bars: &'static [(f64, &'static str)],
    /// Where the legend goes (away from where the data usually is).
    pub legend: SeriesLabelPosition,
}

/// Series name -> color index, stable across charts.
fn color_of(names: &BTreeSet<String>, name: &str) -> RGBColor {
    const COLORS: [RGBColor; 8] = [
        RGBColor(31, 119, 180),
        RGBColor(255, 127, 14),
        RGBColor(44, 160, 44),
        RGBColor(214, 39, 40),
        RGBColor(148, 103, 189),
        RGBColor(140, 86, 75),
        RGBColor(227, 119, 194),
        RGBColor(127, 127, 127),
    ];
    let i = names.iter().position(|n| n == name).unwrap_or(0);
    COLORS[i % COLORS.len()]
}

fn bounds(values: impl Iterator<Item = f64>, log: bool) -> (f64, f64) {
    let v: Vec<f64> = values
        .filter(|v| v.is_finite() && (!log || *v > 0.0))
        .collect();
    let (lo, hi) = v
        .iter()
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), &x| {
            (a.min(x), b.max(x))
        });
    if v.is_empty() {
        return if log { (1.0, 10.0) } else { (0.0, 1.0) };
    }
    if log {
        // Whole decades, so the axis always carries labelled powers of ten.
        (
            10f64.powf((lo / 1.2).log10().floor()),
            10f64.powf((hi * 1.2).log10().ceil()),
        )
    } else {
        (0.0_f64.min(lo), if hi > 0.0 { hi * 1.15 } else { 1.0 })
    }
}

fn draw_panel<DB: DrawingBackend>(
    area: &DrawingArea<DB, plotters::coord::Shift>,
    panel: &Panel,
    axes: &Axes,
    names: &BTreeSet<String>,
) -> Result<(), String> {
    let err = |e: DrawingAreaErrorKind<DB::ErrorType>| e.to_string();
    let all = || panel.series.iter().flat_map(|(_, pts)| pts.iter().copied());
    let (x0, x1) = bounds(all().map(|p| p.0), axes.x_log);
    let (y0, y1) = bounds(all().map(|p| p.1), axes.y_log);
    let y1 = axes.bars.iter().fold(y1, |hi, (bar, _)| hi.max(bar * 1.25));
    let mut builder = ChartBuilder::on(area);
    builder
        .caption(&panel.title, ("sans-serif", 16))
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(70);
    macro_rules! body {
        ($chart:expr) => {{
            let mut chart = $chart;
            chart
                .configure_mesh()
                .x_desc(axes.x_desc)
                .y_desc(axes.y_desc)
                .x_label_formatter(&|v| short(*v))
                .y_label_formatter(&|v| short(*v))
                .draw()
                .map_err(err)?;
            for (bar, label) in axes.bars {
                let bar = *bar;
                chart
                    .draw_series(LineSeries::new(
                        vec![(x0, bar), (x1, bar)],
                        RED.mix(0.5).stroke_width(1),
                    ))
                    .map_err(err)?
                    .label(*label)
                    .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 16, y)], RED.mix(0.5)));
            }
            if axes.diagonal {
                let lo = x0.max(y0);
                let hi = x1.min(y1);
                chart
                    .draw_series(LineSeries::new(vec![(lo, lo), (hi, hi)], BLACK.mix(0.3)))
                    .map_err(err)?
                    .label("delivered = offered")
                    .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 16, y)], BLACK.mix(0.3)));
            }
            for (name, pts) in &panel.series {
                let color = color_of(names, name);
                let mut pts = pts.clone();
                pts.sort_by(|a, b| a.0.total_cmp(&b.0));
                chart
                    .draw_series(LineSeries::new(pts.clone(), color.stroke_width(2)))
                    .map_err(err)?
                    .label(name.as_str())
                    .legend(move |(x, y)| {
                        PathElement::new(vec![(x, y), (x + 16, y)], color.stroke_width(2))
                    });
                chart
                    .draw_series(pts.iter().map(|p| Circle::new(*p, 3, color.filled())))
                    .map_err(err)?;
            }
            chart
                .configure_series_labels()
                .position(axes.legend.clone())
                .background_style(WHITE.mix(0.85))
                .border_style(BLACK.mix(0.4))
                .draw()
                .map_err(err)?;
        }};
    }
    match (axes.x_log, axes.y_log) {
        (true, true) => body!(
            builder
                .build_cartesian_2d((x0..x1).log_scale(), (y0..y1).log_scale())
                .map_err(err)?
        ),
        (true, false) => body!(
            builder
                .build_cartesian_2d((x0..x1).log_scale(), y0..y1)
                .map_err(err)?
        ),
        (false, true) => body!(
            builder
                .build_cartesian_2d(x0..x1, (y0..y1).log_scale())
                .map_err(err)?
        ),
        (false, false) => body!(builder.build_cartesian_2d(x0..x1, y0..y1).map_err(err)?),
    }
    Ok(())
}

/// A compact axis label: 1.5M, 200k, 12, 0.25.
fn short(v: f64) -> String {
    let a = v.abs();
    if a >= 1e6 {
        format!("{:.1}M", v / 1e6)
    } else if a >= 1e4 {
        format!("{:.0}k", v / 1e3)
    } else if a >= 10.0 || a == 0.0 {
        format!("{v:.0}")
    } else {
        format!("{v:.2}")
    }
}

pub(super) fn draw(path: &Path, panels: &[Panel], axes: &Axes) -> Result<(), String> {
    let names: BTreeSet<String> = panels
        .iter()
        .flat_map(|p| p.series.iter().map(|(n, _)| n.clone()))
        .collect();
    let width = 520 * panels.len().max(1) as u32;
    let root = SVGBackend::new(path, (width, 440)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| e.to_string())?;
    let areas = root.split_evenly((1, panels.len().max(1)));
    for (area, panel) in areas.iter().zip(panels) {
        draw_panel(area, panel, axes, &names)?;
    }
    root.present().map_err(|e| e.to_string())
}

/// One panel per client count, a series per server, from `point` of each row.
fn per_clients(rows: &[Row], point: impl Fn(&Row) -> Option<(f64, f64)>) -> Vec<Panel> {
    let mut panels: BTreeMap<u64, BTreeMap<String, Vec<(f64, f64)>>> = BTreeMap::new();
    for r in rows {
        if let Some(p) = point(r) {
            panels
                .entry(r.clients)
                .or_default()
                .entry(ConfigKey::of(r).series())
                .or_default()
                .push(p);
        }
    }
    panels
        .into_iter()
        .map(|(clients, series)| Panel {
            title: format!("{clients} clients"),
            series: series.into_iter().collect(),
        })
        .collect()
}

/// One bar of a grouped bar chart.
pub(super) struct Bar {
    /// Index of its group (x position).
    pub group: usize,
    /// Its series (color, legend).
    pub series: String,
    /// Its height.
    pub value: f64,
    /// Drawn light: the load generator was the limit, the server may sustain more.
    pub client_bound: bool,
    /// Drawn outlined: no measured point failed the bar, so this is a floor.
    pub floor: bool,
}

/// The saturation table as grouped bars: a group per client count, a bar per configuration.
fn draw_saturation(path: &Path, rows: &[Row]) -> Result<(), String> {
    let points = saturation_points(rows, STRICT_P99_US);
    let groups: Vec<u64> = points
        .iter()
        .map(|s| s.key.clients)
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    let bars = points
        .iter()
        .filter_map(|s| {
            Some(Bar {
                group: groups.iter().position(|c| *c == s.key.clients)?,
                series: s.key.series(),
                value: s.rate(),
                client_bound: s.client_bound(),
                floor: !s.saturated,
            })
        })
        .collect::<Vec<_>>();
    let labels: Vec<String> = groups.iter().map(|c| format!("{c} clients")).collect();
    draw_bars(
        path,
        "highest sustainable rate (p99 <= 100 ms, delivery >= 99 %)",
        "deliveries/s",
        &labels,
        &bars,
    )
}

/// Grouped bars on a log scale: a group per label, a bar per series within it.
pub(super) fn draw_bars(
    path: &Path,
    title: &str,
    y_desc: &str,
    labels: &[String],
    bars: &[Bar],
) -> Result<(), String> {
    let names: BTreeSet<String> = bars.iter().map(|b| b.series.clone()).collect();
    let per_group = names.len().max(1) as f64;
    // A log scale: rates span orders of magnitude between groups.
    let top = bars.iter().map(|b| b.value).fold(1.0, f64::max) * 2.0;
    let floor = bars
        .iter()
        .map(|b| b.value)
        .filter(|r| *r > 0.0)
        .fold(top / 4.0, f64::min)
        / 2.0;
    let width = (160 * labels.len().max(1) as u32 * names.len().max(1) as u32).clamp(520, 1600);
    let root = SVGBackend::new(path, (width, 440)).into_drawing_area();
    let err = |e: DrawingAreaErrorKind<std::io::Error>| e.to_string();
    root.fill(&WHITE).map_err(err)?;
    let mut chart = ChartBuilder::on(&root)
        .caption(title, ("sans-serif", 16))
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(70)
        .build_cartesian_2d(0.0..labels.len().max(1) as f64, (floor..top).log_scale())
        .map_err(err)?;
    chart
        .configure_mesh()
        .disable_x_mesh()
        .x_labels(labels.len().max(1) * 2 + 1)
        .x_label_formatter(&|x| {
            let i = x.floor() as usize;
            if (x - i as f64 - 0.5).abs() < 0.01 {
                labels.get(i).cloned().unwrap_or_default()
            } else {
                String::new()
            }
        })
        .y_desc(y_desc)
        .y_label_formatter(&|v| short(*v))
        .draw()
        .map_err(err)?;
    for (j, name) in names.iter().enumerate() {
        let color = color_of(&names, name);
        let rects: Vec<_> = bars
            .iter()
            .filter(|b| &b.series == name && b.value > 0.0)
            .map(|b| {
                let x0 = b.group as f64 + 0.1 + 0.8 * j as f64 / per_group;
                let x1 = x0 + 0.8 / per_group * 0.9;
                let style = if b.client_bound {
                    color.mix(0.35).filled()
                } else if b.floor {
                    color.stroke_width(2)
                } else {
                    color.filled()
                };
                Rectangle::new([(x0, floor), (x1, b.value)], style)
            })
            .collect();
        chart
            .draw_series(rects)
            .map_err(err)?
            .label(name.as_str())
            .legend(move |(x, y)| Rectangle::new([(x, y - 5), (x + 12, y + 5)], color.filled()));
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperRight)
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK.mix(0.4))
        .draw()
        .map_err(err)?;
    root.present().map_err(|e| e.to_string())
}

/// Draws every chart into `dir`; returns the files written: the broadcast charts (unless the
/// rows are all of the many-rooms scenario) and the many-rooms ones (when there are such rows).
pub fn draw_all(rows: &[Row], dir: &Path) -> Result<Vec<PathBuf>, String> {
    let main = main_sweep(rows);
    let rooms = super::rooms::rooms_rows(rows);
    let mut written = Vec::new();
    if !rooms.is_empty() {
        written.extend(super::rooms::draw(&rooms, dir)?);
        if main.is_empty() {
            return Ok(written);
        }
    }

    let path = dir.join("delivered_vs_offered.svg");
    let panels = per_clients(&main, |r| {
        let offered = r.offered_rate * r.clients as f64;
        (offered > 0.0 && r.delivered_per_s > 0.0).then_some((offered, r.delivered_per_s))
    });
    let axes = Axes {
        x_desc: "offered deliveries/s (rate x clients)",
        y_desc: "delivered msgs/s",
        x_log: true,
        y_log: true,
        diagonal: true,
        bars: &[],
        legend: SeriesLabelPosition::UpperLeft,
    };
    draw(&path, &panels, &axes)?;
    written.push(path);

    let path = dir.join("p99_vs_offered.svg");
    let panels = per_clients(&main, |r| {
        let offered = r.offered_rate * r.clients as f64;
        (offered > 0.0 && r.messages > 0).then_some((offered, r.lat_p99_us as f64 / 1000.0))
    });
    let axes = Axes {
        x_desc: "offered deliveries/s (rate x clients)",
        y_desc: "p99 latency (ms)",
        x_log: true,
        y_log: true,
        diagonal: false,
        bars: LATENCY_BARS,
        legend: SeriesLabelPosition::UpperLeft,
    };
    draw(&path, &panels, &axes)?;
    written.push(path);

    let path = dir.join("saturation.svg");
    draw_saturation(&path, &main)?;
    written.push(path);

    let path = dir.join("p99_vs_clients.svg");
    let mut lightest: BTreeMap<String, BTreeMap<u64, (f64, f64)>> = BTreeMap::new();
    for r in main.iter().filter(|r| r.messages > 0) {
        let slot = lightest
            .entry(ConfigKey::of(r).series())
            .or_default()
            .entry(r.clients)
            .or_insert((f64::INFINITY, 0.0));
        if r.offered_rate < slot.0 {
            *slot = (r.offered_rate, r.lat_p99_us as f64 / 1000.0);
        }
    }
    let light = Panel {
        title: "p99 at the lightest offered rate".into(),
        series: lightest
            .into_iter()
            .map(|(name, by_c)| {
                (
                    name,
                    by_c.into_iter().map(|(c, (_, p))| (c as f64, p)).collect(),
                )
            })
            .collect(),
    };
    let mut at_sat: BTreeMap<String, Vec<(f64, f64)>> = BTreeMap::new();
    for s in saturation_points(&main, STRICT_P99_US) {
        if let Some(r) = &s.best {
            at_sat
                .entry(s.key.series())
                .or_default()
                .push((r.clients as f64, r.lat_p99_us as f64 / 1000.0));
        }
    }
    let sat = Panel {
        title: "p99 at the saturation point".into(),
        series: at_sat.into_iter().collect(),
    };
    let axes = Axes {
        x_desc: "clients",
        y_desc: "p99 latency (ms)",
        x_log: false,
        y_log: true,
        diagonal: false,
        bars: &[],
        legend: SeriesLabelPosition::UpperLeft,
    };
    draw(&path, &[light, sat], &axes)?;
    written.push(path);

    let path = dir.join("cpu_ns_per_msg.svg");
    let panels = per_clients(&main, |r| {
        let ns = r.server_cpu_ns_per_msg?;
        let offered = r.offered_rate * r.clients as f64;
        (ns > 0.0 && offered > 0.0).then_some((offered, ns))
    });
    let axes = Axes {
        x_desc: "offered deliveries/s (rate x clients)",
        y_desc: "server CPU ns per delivered message",
        x_log: true,
        y_log: true,
        diagonal: false,
        bars: &[],
        legend: SeriesLabelPosition::UpperRight,
    };
    draw(&path, &panels, &axes)?;
    written.push(path);

    let path = dir.join("rss_per_conn.svg");
    let mut rss: BTreeMap<String, BTreeMap<u64, Vec<f64>>> = BTreeMap::new();
    for r in &main {
        if let Some(kib) = r.rss_kib_per_conn {
            rss.entry(ConfigKey::of(r).series())
                .or_default()
                .entry(r.clients)
                .or_default()
                .push(kib);
        }
    }
    let panel = Panel {
        title: "server RSS per connection (median over points)".into(),
        series: rss
            .into_iter()
            .map(|(name, by_c)| {
                let pts = by_c
                    .into_iter()
                    .filter_map(|(c, v)| Some((c as f64, median(v)?)))
                    .collect();
                (name, pts)
            })
            .collect(),
    };
    let axes = Axes {
        x_desc: "clients",
        y_desc: "KiB per connection",
        x_log: false,
        y_log: false,
        diagonal: false,
        bars: &[],
        legend: SeriesLabelPosition::UpperLeft,
    };
    draw(&path, &[panel], &axes)?;
    written.push(path);
    Ok(written)
}

#[cfg(test)]
mod tests;
