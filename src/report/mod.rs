//! `tickcast report`: turns a sweep's `raw.csv` into the saturation summary and SVG charts.
//!
//! [`schema`] owns the CSV columns (shared with `tickcast load --csv`), [`saturation`] the
//! rule that finds each configuration's saturation point, [`summary`] the markdown tables and
//! [`charts`] the SVGs. Everything computed about a sweep is computed here, in Rust; the
//! bench script only orchestrates processes.

pub mod charts;
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
    std::fs::write(&summary_path, summary::render(&rows))
        .map_err(|e| format!("{}: {e}", summary_path.display()))?;
    let mut files = vec![summary_path];
    files.extend(charts::draw_all(&rows, out_dir)?);
    Ok(files)
}

/// The verdict on the last row of `csv` (the point just measured).
pub fn last_verdict(csv: &Path) -> Result<Verdict, String> {
    let rows = schema::read_rows(csv).map_err(|e| format!("{}: {e}", csv.display()))?;
    rows.last()
        .map(saturation::verdict)
        .ok_or_else(|| format!("{}: no rows", csv.display()))
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
    let main = summary::main_sweep(&rows);
    Ok(
        saturation::saturation_points(&main, saturation::STRICT_P99_US)
            .into_iter()
            .find(|s| s.key.mode == mode && s.key.shards == shards && s.key.clients == clients)
            .and_then(|s| s.best)
            .map(|r| r.offered_rate),
    )
}
