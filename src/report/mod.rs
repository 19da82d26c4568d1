//! `tickcast report`: turns a sweep's `raw.csv` into the saturation summary and SVG charts.
//!
//! [`schema`] owns the CSV columns (shared with `tickcast load --csv`), [`saturation`] the
//! rule that finds each configuration's saturation point, [`repeats`] which run stands for a
//! point measured more than once, [`summary`] the markdown tables and [`charts`] the SVGs;
//! [`rooms`] the same for the many-rooms scenario; [`compare`] two modes of one sweep side by
//! side (TLS against plain clients).
//! Everything computed about a sweep is computed here, in Rust; the bench script only
//! orchestrates processes.

pub mod charts;
pub mod compare;
pub mod repeats;
pub mod rooms;
pub mod saturation;
pub mod schema;
pub mod summary;

use std::path::{Path, PathBuf};

use saturation::Verdict;

/// Reads `csv` and writes `summary.md` and the charts into `out_dir`; returns the files.
pub fn write_report(csv: &Path, out_dir: &Path) -> Result<Vec<PathBuf>, String> {
    let rows = schema::read_rows(csv).map_err(|e| format!("{}: {e}", csv.display()))?;
    std::fs::create_dir_all(out_dir).map_err(|e| format!("{}: {e}", out_dir.display()))?;
    let summary_path = out_dir.join("summary.md");
    let medians = repeats::median_runs(&rows);
    let rooms_table = rooms::table(&medians);
    let text = if summary::main_sweep(&medians).is_empty() && !rooms_table.is_empty() {
        format!("# Many-rooms summary\n\n{rooms_table}")
    } else {
        summary::render(&rows) + &rooms_table
    };
    std::fs::write(&summary_path, text).map_err(|e| format!("{}: {e}", summary_path.display()))?;
    let mut files = vec![summary_path];
    files.extend(charts::draw_all(&medians, out_dir)?);
    Ok(files)
}

/// The markdown comparison of mode `other` against `base` among the rows of `csv`
/// ([`compare::table`]).
pub fn compare_modes(csv: &Path, base: &str, other: &str) -> Result<String, String> {
    let rows = schema::read_rows(csv).map_err(|e| format!("{}: {e}", csv.display()))?;
    Ok(compare::table(&rows, base, other))
}

/// What the bench script needs to know about the point just measured (the last row).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PointVerdict {
    /// The verdict on the point's median run.
    pub verdict: Verdict,
    /// Whether that run is near the bar, so another run could decide the other way.
    pub near: bool,
    /// Runs measured at this point so far.
    pub runs: usize,
}

/// The verdict on the point of the last row of `csv` (the point just measured), over every
/// run of that point so far.
pub fn last_verdict(csv: &Path) -> Result<PointVerdict, String> {
    let rows = schema::read_rows(csv).map_err(|e| format!("{}: {e}", csv.display()))?;
    let last = rows
        .last()
        .ok_or_else(|| format!("{}: no rows", csv.display()))?;
    let points = repeats::points(&rows);
    let point = repeats::point_of(&points, last);
    let median = point.map_or(last, |p| &p.row);
    Ok(PointVerdict {
        verdict: saturation::verdict(median),
        near: repeats::is_near_bar(median),
        runs: point.map_or(1, |p| p.runs),
    })
}

/// The offered rate (msgs/s) at the strict saturation point of `mode` with `shards` shards
/// and `clients` clients, among the main sweep's rows of `csv`.
pub fn best_offered_rate(
    csv: &Path,
    mode: &str,
    shards: u32,
    clients: u64,
) -> Result<Option<f64>, String> {
    let rows = schema::read_rows(csv).map_err(|e| format!("{}: {e}", csv.display()))?;
    let main = summary::main_sweep(&repeats::median_runs(&rows));
    Ok(
        saturation::saturation_points(&main, saturation::STRICT_P99_US)
            .into_iter()
            .find(|s| s.key.mode == mode && s.key.shards == shards && s.key.clients == clients)
            .and_then(|s| s.best)
            .map(|r| r.offered_rate),
    )
}
